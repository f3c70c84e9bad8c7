"""Congestion control: a small interface and a registry by name.

The connection calls the hooks below; an algorithm only manages ``cwnd`` and
``ssthresh``. Loss recovery itself (which segment to resend) stays in the
connection. SACK, RACK and CUBIC plug in here later.
"""

from __future__ import annotations

from collections.abc import Callable


class CongestionControl:
    """Interface every algorithm implements (all sizes in bytes)."""

    name = "base"

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        self.mss = mss
        self.cwnd = initial_cwnd * mss
        self.ssthresh = 1 << 30  # RFC 5681 §3.1: "arbitrarily high"

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        """New data acknowledged outside loss recovery."""

    def on_dup_ack(self) -> None:
        """A duplicate ACK arrived during fast recovery (window inflation)."""

    def on_fast_retransmit(self, flight: int) -> None:
        """Three duplicate ACKs: entering fast recovery."""

    def on_partial_ack(self, acked: int) -> None:
        """A partial ACK during fast recovery (RFC 6582)."""

    def on_recovery_exit(self) -> None:
        """Fast recovery ended by a full ACK."""

    def on_rto(self, flight: int) -> None:
        """The retransmission timer expired."""

    def on_idle_restart(self) -> None:
        """RFC 5681 §4.1: sending restarts after an idle period longer than RTO."""


class Reno(CongestionControl):
    """Slow start, congestion avoidance, fast retransmit / fast recovery.

    RFC 5681 with NewReno partial-ACK handling (RFC 6582) and appropriate byte
    counting in slow start (RFC 3465, L = 2 * SMSS).
    """

    name = "reno"

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        self._initial = initial_cwnd * mss
        self._ca_acc = 0

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        mss = self.mss
        if self.cwnd < self.ssthresh:
            # RFC 5681 §3.1 slow start with RFC 3465 ABC: at most 2*SMSS per ACK.
            self.cwnd += min(acked, 2 * mss)
        else:
            # RFC 5681 §3.1 eq. (3), byte-counted: one SMSS per cwnd of ACKed data.
            self._ca_acc += acked
            if self._ca_acc >= self.cwnd:
                self._ca_acc -= self.cwnd
                self.cwnd += mss

    def on_dup_ack(self) -> None:
        # RFC 5681 §3.2 step 4: inflate by one SMSS per additional duplicate ACK.
        self.cwnd += self.mss

    def on_fast_retransmit(self, flight: int) -> None:
        # RFC 5681 §3.2 steps 2-3, eq. (4).
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss

    def on_partial_ack(self, acked: int) -> None:
        # RFC 6582 §3.2 step 5: deflate by the amount acked, add back one SMSS.
        self.cwnd = max(self.cwnd - acked + self.mss, self.mss)

    def on_recovery_exit(self) -> None:
        # RFC 6582 §3.2 step 6 option 1: cwnd <- ssthresh.
        self.cwnd = self.ssthresh
        self._ca_acc = 0

    def on_rto(self, flight: int) -> None:
        # RFC 5681 §3.1 eq. (4) and: cwnd <- loss window (1 SMSS).
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._ca_acc = 0

    def on_idle_restart(self) -> None:
        self.cwnd = min(self.cwnd, self._initial)


ALGORITHMS: dict[str, Callable[[int, int], CongestionControl]] = {"reno": Reno}


def register(name: str, factory: Callable[[int, int], CongestionControl]) -> None:
    """Make an algorithm available as ``Config(congestion_control=name)``."""
    ALGORITHMS[name] = factory
