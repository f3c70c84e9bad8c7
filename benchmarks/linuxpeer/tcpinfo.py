"""``TCP_INFO`` of a kernel socket (``struct tcp_info``, include/uapi/linux/tcp.h).

The kernel copies ``min(optlen, sizeof(struct tcp_info))`` bytes, so older kernels
return a prefix: fields past the returned length are None. The first 104 bytes
(up to ``tcpi_total_retrans``) exist on every kernel this runs on.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "TCPI_OPT_ECN",
    "TCPI_OPT_SACK",
    "TCPI_OPT_TIMESTAMPS",
    "TCPI_OPT_WSCALE",
    "TcpInfo",
    "tcp_info",
]

TCPI_OPT_TIMESTAMPS = 1
TCPI_OPT_SACK = 2
TCPI_OPT_WSCALE = 4
TCPI_OPT_ECN = 8

#: ``tcpi_ca_state`` values (enum tcp_ca_state).
CA_STATES = ("open", "disorder", "cwr", "recovery", "loss")

# Field name, struct code, in the kernel's order; all naturally aligned, so the
# native-order, no-padding layout ("=") is the kernel's.
_LAYOUT: tuple[tuple[str, str], ...] = (
    ("state", "B"),
    ("ca_state", "B"),
    ("retransmits", "B"),
    ("probes", "B"),
    ("backoff", "B"),
    ("options", "B"),
    ("wscale", "B"),  # snd_wscale : 4 (low bits), rcv_wscale : 4
    ("flags", "B"),  # delivery_rate_app_limited : 1, fastopen_client_fail : 2
    ("rto", "I"),
    ("ato", "I"),
    ("snd_mss", "I"),
    ("rcv_mss", "I"),
    ("unacked", "I"),
    ("sacked", "I"),
    ("lost", "I"),
    ("retrans", "I"),
    ("fackets", "I"),
    ("last_data_sent", "I"),
    ("last_ack_sent", "I"),
    ("last_data_recv", "I"),
    ("last_ack_recv", "I"),
    ("pmtu", "I"),
    ("rcv_ssthresh", "I"),
    ("rtt", "I"),
    ("rttvar", "I"),
    ("snd_ssthresh", "I"),
    ("snd_cwnd", "I"),
    ("advmss", "I"),
    ("reordering", "I"),
    ("rcv_rtt", "I"),
    ("rcv_space", "I"),
    ("total_retrans", "I"),
    ("pacing_rate", "Q"),
    ("max_pacing_rate", "Q"),
    ("bytes_acked", "Q"),
    ("bytes_received", "Q"),
    ("segs_out", "I"),
    ("segs_in", "I"),
    ("notsent_bytes", "I"),
    ("min_rtt", "I"),
    ("data_segs_in", "I"),
    ("data_segs_out", "I"),
    ("delivery_rate", "Q"),
    ("busy_time", "Q"),
    ("rwnd_limited", "Q"),
    ("sndbuf_limited", "Q"),
    ("delivered", "I"),
    ("delivered_ce", "I"),
    ("bytes_sent", "Q"),
    ("bytes_retrans", "Q"),
    ("dsack_dups", "I"),
    ("reord_seen", "I"),
    ("rcv_ooopack", "I"),
    ("snd_wnd", "I"),
    ("rcv_wnd", "I"),
    ("rehash", "I"),
    ("total_rto", "H"),
    ("total_rto_recoveries", "H"),
    ("total_rto_time", "I"),
)
_FULL = struct.Struct("=" + "".join(code for _, code in _LAYOUT))
#: Bytes to ask for: everything above.
TCP_INFO_LEN = _FULL.size


@dataclass(frozen=True)
class TcpInfo:
    """Decoded ``struct tcp_info``: times in microseconds, as the kernel gives them."""

    state: int
    ca_state: int
    retransmits: int
    probes: int
    backoff: int
    options: int
    wscale: int
    flags: int
    rto: int
    ato: int
    snd_mss: int
    rcv_mss: int
    unacked: int
    sacked: int
    lost: int
    retrans: int
    fackets: int
    last_data_sent: int
    last_ack_sent: int
    last_data_recv: int
    last_ack_recv: int
    pmtu: int
    rcv_ssthresh: int
    rtt: int
    rttvar: int
    snd_ssthresh: int
    snd_cwnd: int
    advmss: int
    reordering: int
    rcv_rtt: int
    rcv_space: int
    total_retrans: int
    pacing_rate: int | None = None
    max_pacing_rate: int | None = None
    bytes_acked: int | None = None
    bytes_received: int | None = None
    segs_out: int | None = None
    segs_in: int | None = None
    notsent_bytes: int | None = None
    min_rtt: int | None = None
    data_segs_in: int | None = None
    data_segs_out: int | None = None
    delivery_rate: int | None = None
    busy_time: int | None = None
    rwnd_limited: int | None = None
    sndbuf_limited: int | None = None
    delivered: int | None = None
    delivered_ce: int | None = None
    bytes_sent: int | None = None
    bytes_retrans: int | None = None
    dsack_dups: int | None = None
    reord_seen: int | None = None
    rcv_ooopack: int | None = None
    snd_wnd: int | None = None
    rcv_wnd: int | None = None
    rehash: int | None = None
    total_rto: int | None = None
    total_rto_recoveries: int | None = None
    total_rto_time: int | None = None

    @property
    def snd_wscale(self) -> int:
        """The shift the peer announced (applied to the windows it sends us)."""
        return self.wscale & 0xF

    @property
    def rcv_wscale(self) -> int:
        """The shift we announced."""
        return self.wscale >> 4

    @property
    def timestamps(self) -> bool:
        return bool(self.options & TCPI_OPT_TIMESTAMPS)

    @property
    def sack(self) -> bool:
        return bool(self.options & TCPI_OPT_SACK)

    @property
    def window_scaling(self) -> bool:
        return bool(self.options & TCPI_OPT_WSCALE)

    @property
    def ca_state_name(self) -> str:
        return CA_STATES[self.ca_state] if self.ca_state < len(CA_STATES) else str(self.ca_state)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(
            snd_wscale=self.snd_wscale,
            rcv_wscale=self.rcv_wscale,
            ca_state_name=self.ca_state_name,
        )
        return out

    @classmethod
    def decode(cls, data: bytes) -> TcpInfo:
        """Decode what ``getsockopt(TCP_INFO)`` returned (a prefix is fine, >= 104)."""
        values: list[int] = []
        offset = 0
        for _name, code in _LAYOUT:
            size = struct.calcsize("=" + code)
            if offset + size > len(data):
                break
            values.append(struct.unpack_from("=" + code, data, offset)[0])
            offset += size
        return cls(*values)


def tcp_info(sock: socket.socket) -> TcpInfo:
    """The kernel's ``TCP_INFO`` for ``sock``."""
    return TcpInfo.decode(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN))
