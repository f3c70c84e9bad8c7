"""The congestion-control interface.

A controller owns ``cwnd`` and ``ssthresh`` (bytes) and, if it paces, ``pacing_rate``
(bytes per second). The connection's loss recovery (``rudp.engine.recovery``) decides
*what* to send and tells the controller what happened in terms that fit every
algorithm: data delivered (with RTT and delivery-rate samples), the start and end of
a congestion event, a retransmission timeout, an idle restart, and a congestion event
found to be spurious (undo).

Call sequence, per connection:

* :meth:`set_mss` once the handshake fixed the send MSS (before any data);
* :meth:`on_ack` for every ACK that delivered data (cumulatively or by SACK). For
  controllers with :attr:`uses_prr` True it is *not* called while the connection is
  in loss recovery (RFC 6937 PRR sizes sending then); for the others it is called
  always, with ``rs.in_recovery`` telling them;
* :meth:`on_congestion_event` when loss recovery starts (at most once per round trip
  of data: one event per recovery episode), after :meth:`save_undo_state`; its
  ``basis`` is the window to reduce from: FlightSize, capped at ``cwnd`` (see
  docs/recovery.md);
* :meth:`on_recovery_end` when that episode's data is all acknowledged;
* :meth:`on_rto` when the retransmission timer expires (after :meth:`save_undo_state`);
* :meth:`undo` when the last congestion event or RTO proved spurious (D-SACK or
  timestamps showed nothing was lost, RFC 2883 / RFC 3522): restore the state saved;
* :meth:`on_idle_restart` when sending restarts after an idle period (RFC 5681 §4.1).
"""

from __future__ import annotations

from typing import Any, ClassVar

#: RFC 5681 §3.1: the initial ssthresh is "arbitrarily high".
INITIAL_SSTHRESH = 1 << 30


class AckSample:
    """What one ACK told the sender (one object per connection, refilled per ACK).

    Sizes in bytes, times in seconds. ``rtt``, ``min_rtt``, ``srtt`` and
    ``delivery_rate`` are ``-1.0`` when unknown or when this ACK gave no sample.
    """

    __slots__ = (
        "acked",
        "app_limited",
        "delivered",
        "delivery_rate",
        "in_flight",
        "in_recovery",
        "is_cwnd_limited",
        "lost",
        "min_rtt",
        "prior_in_flight",
        "round_start",
        "rtt",
        "srtt",
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
        #: RTT sample from this ACK; the connection's windowed minimum and smoothed RTT.
        self.rtt = -1.0
        self.min_rtt = -1.0
        self.srtt = -1.0
        #: Delivery-rate sample (bytes/s; draft-cheng-iccrg-delivery-rate-estimation)
        #: and whether the sender was application limited while that data was in flight.
        self.delivery_rate = -1.0
        self.app_limited = False
        #: True on the first ACK of a new packet-timed round trip (a round ends when
        #: data sent after the previous round's end is delivered).
        self.round_start = False
        #: True while the connection is in loss recovery (fast recovery or after RTO).
        self.in_recovery = False
        #: True if the window, not the application or the receiver, limited sending
        #: recently (RFC 7661: do not grow cwnd that is not being used).
        self.is_cwnd_limited = True


class CongestionControl:
    """Base class of every algorithm; sizes in bytes, ``now`` in seconds.

    Subclasses set :attr:`name` and override the hooks they need. The connection
    reads :attr:`cwnd` before every transmission and :attr:`pacing_rate` in its send
    loop (0 means the controller does not ask for pacing).
    """

    # Slots keep a connection's controller small (no instance dict); a subclass
    # without __slots__ (BBR, a user's controller) gets a dict as usual.
    __slots__ = (
        "_undo_cwnd",
        "_undo_ssthresh",
        "cwnd",
        "initial_cwnd",
        "mss",
        "pacing_rate",
        "ssthresh",
    )

    name: ClassVar[str] = "base"
    #: True for window-based loss controllers: during loss recovery the connection
    #: sizes sending with Proportional Rate Reduction (RFC 6937) and :meth:`on_ack`
    #: is not called. False for controllers that manage ``cwnd`` through recovery.
    uses_prr: ClassVar[bool] = True

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        self.mss = mss
        self.initial_cwnd = initial_cwnd
        self.cwnd = initial_cwnd * mss
        self.ssthresh = INITIAL_SSTHRESH
        self.pacing_rate = 0.0
        self._undo_cwnd = 0
        self._undo_ssthresh = 0

    def set_mss(self, mss: int) -> None:
        """The send MSS is now known (end of the handshake, before any data)."""
        self.mss = mss
        self.cwnd = self.initial_cwnd * mss

    def on_ack(self, rs: AckSample, now: float) -> None:
        """An ACK delivered new data (see the module docstring for when)."""

    def on_congestion_event(self, now: float, basis: int) -> None:
        """Loss detected: a congestion event (one per recovery episode) begins;
        reduce from ``basis`` bytes."""

    def on_recovery_end(self, now: float) -> None:
        """The loss recovery episode started by :meth:`on_congestion_event` ended."""

    def on_rto(self, now: float, basis: int) -> None:
        """The retransmission timer expired (``basis``: as in on_congestion_event)."""

    def on_idle_restart(self, now: float) -> None:
        """Sending restarts after an idle period longer than the RTO (RFC 5681 §4.1)."""

    def save_undo_state(self) -> None:
        """Remember the state a later :meth:`undo` restores (called just before
        :meth:`on_congestion_event` and :meth:`on_rto`). Subclasses with more state
        extend both methods."""
        self._undo_cwnd = self.cwnd
        self._undo_ssthresh = self.ssthresh

    def undo(self, now: float) -> None:
        """The last congestion event was spurious: restore what was saved, as Linux's
        ``tcp_undo_cwnd`` does (never lowering the current window)."""
        self.cwnd = max(self.cwnd, self._undo_cwnd)
        self.ssthresh = max(self.ssthresh, self._undo_ssthresh)

    def stats(self) -> dict[str, Any]:
        """Algorithm-specific state for ``rudp_stats`` (keys prefixed ``cc_``)."""
        return {}
