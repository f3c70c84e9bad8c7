"""Wire format: one TCP segment (RFC 9293 §3.1) per UDP datagram."""

from .checksum import checksum, ones_complement_sum, verify
from .segment import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    ParseError,
    Segment,
    build_segment,
    flags_str,
    parse_segment,
)

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "ParseError",
    "Segment",
    "build_segment",
    "checksum",
    "flags_str",
    "ones_complement_sum",
    "parse_segment",
    "verify",
]
