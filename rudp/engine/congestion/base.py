"""The congestion-control interface.

A controller owns ``cwnd`` and ``ssthresh`` (bytes) and, if it paces, ``pacing_rate``
(bytes per second). The connection's loss recovery (``rudp.engine.recovery``) decides
*what* to send and tells the controller what happened in terms that fit every
algorithm: data delivered (with RTT and delivery-rate samples), the start and end of
a congestion event, a retransmission timeout, an idle restart, and a detected
spurious congestion event.
"""

from __future__ import annotations

from typing import Any, ClassVar

#: RFC 5681 §3.1: the initial ssthresh is "arbitrarily high".
INITIAL_SSTHRESH = 1 << 30


class AckSample:
    """What one ACK told the sender (one object per connection, refilled per ACK).

    Sizes in bytes, times in seconds. ``rtt`` and ``delivery_rate`` are ``-1.0`` when
    this ACK gave no sample.
    """

    __slots__ = (
        "acked",
        "app_limited",
        "delivered",
        "delivery_rate",
        "in_flight",
        "in_recovery",
        "lost",
        "min_rtt",
        "prior_in_flight",
        "round_start",
        "rtt",
    )

    def __init__(self) -> None:
        #: Bytes newly delivered by this ACK (cumulatively acknowledged or SACKed).
        self.acked = 0
        #: Total bytes delivered over the connection so far.
        self.delivered = 0
        #: Bytes in flight before and after processing this ACK.
        self.prior_in_flight = 0
        self.in_flight = 0
        #: Bytes newly marked lost while processing this ACK.
        self.lost = 0
        #: RTT sample from this ACK, and the connection's windowed minimum RTT.
        self.rtt = -1.0
        self.min_rtt = -1.0
        #: Delivery rate sample (bytes/s) and whether the sender was application
        #: limited while the sampled data was in flight.
        self.delivery_rate = -1.0
        self.app_limited = False
        #: True on the first ACK of a new packet-timed round trip.
        self.round_start = False
        #: True while the connection is in loss recovery.
        self.in_recovery = False


class CongestionControl:
    """Base class of every algorithm; sizes in bytes, ``now`` in seconds.

    Subclasses set :attr:`name`, and override the hooks they need. The connection
    reads :attr:`cwnd` before every transmission and :attr:`pacing_rate` (0 means
    "not paced") in its send loop.
    """

    name: ClassVar[str] = "base"
    #: True for window-based loss controllers: during loss recovery the connection's
    #: loss recovery sizes sending (RFC 6937 PRR) and :meth:`on_ack` is not called.
    #: False for controllers that manage ``cwnd`` through recovery themselves.
    uses_prr: ClassVar[bool] = True

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        self.mss = mss
        self.initial_cwnd = initial_cwnd
        self.cwnd = initial_cwnd * mss
        self.ssthresh = INITIAL_SSTHRESH
        self.pacing_rate = 0.0

    def set_mss(self, mss: int) -> None:
        """The send MSS is now known (end of the handshake, before any data)."""
        self.mss = mss
        self.cwnd = self.initial_cwnd * mss

    def on_ack(self, rs: AckSample, now: float) -> None:
        """An ACK delivered new data (outside loss recovery for window-based controllers)."""

    def on_congestion_event(self, now: float, in_flight: int) -> None:
        """Loss detected: a congestion event (one per recovery episode) begins."""

    def on_recovery_end(self, now: float) -> None:
        """The loss recovery episode started by :meth:`on_congestion_event` ended."""

    def on_rto(self, now: float, in_flight: int) -> None:
        """The retransmission timer expired."""

    def on_idle_restart(self, now: float) -> None:
        """Sending restarts after an idle period longer than the RTO (RFC 5681 §4.1)."""

    def stats(self) -> dict[str, Any]:
        """Algorithm-specific state for ``rudp_stats``."""
        return {}
