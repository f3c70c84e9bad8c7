"""pcap export: rudp segments as IPv4/IPv6 + TCP packets that Wireshark dissects.

:class:`PcapWriter` writes the file; :mod:`rudp.pcap.sim` records simulator
traffic with it. See docs/pcap.md.
"""

from .writer import LINKTYPE_RAW, PcapWriter, PcapWriterClosedError

__all__ = ["LINKTYPE_RAW", "PcapWriter", "PcapWriterClosedError"]
