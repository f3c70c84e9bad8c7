"""Reno: slow start and congestion avoidance (RFC 5681), byte counted (RFC 3465)."""

from __future__ import annotations

from .base import AckSample, CongestionControl


class Reno(CongestionControl):
    """RFC 5681 slow start / congestion avoidance with RFC 3465 byte counting.

    Fast retransmit and NewReno fast recovery (RFC 6582) are loss recovery's job
    (``rudp.engine.recovery``); here a congestion event halves the window.
    """

    name = "reno"

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        self._ca_acc = 0

    def on_ack(self, rs: AckSample, now: float) -> None:
        mss = self.mss
        if self.cwnd < self.ssthresh:
            # RFC 5681 §3.1 slow start with RFC 3465 ABC: at most 2*SMSS per ACK.
            self.cwnd += min(rs.acked, 2 * mss)
        else:
            # RFC 5681 §3.1 eq. (3), byte-counted: one SMSS per cwnd of ACKed data.
            self._ca_acc += rs.acked
            if self._ca_acc >= self.cwnd:
                self._ca_acc -= self.cwnd
                self.cwnd += mss

    def on_congestion_event(self, now: float, in_flight: int) -> None:
        # RFC 5681 §3.2 step 2, eq. (4).
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh

    def on_recovery_end(self, now: float) -> None:
        # RFC 6582 §3.2 step 6 option 1: cwnd <- ssthresh.
        self.cwnd = self.ssthresh
        self._ca_acc = 0

    def on_rto(self, now: float, in_flight: int) -> None:
        # RFC 5681 §3.1 eq. (4) and: cwnd <- loss window (1 SMSS).
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._ca_acc = 0

    def on_idle_restart(self, now: float) -> None:
        # RFC 5681 §4.1: cwnd <- min(cwnd, restart window = initial window).
        self.cwnd = min(self.cwnd, self.initial_cwnd * self.mss)
