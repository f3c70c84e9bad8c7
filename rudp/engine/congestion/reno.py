"""Reno: slow start and congestion avoidance (RFC 5681), byte counted (RFC 3465)."""

from __future__ import annotations

from .base import AckSample, CongestionControl


class Reno(CongestionControl):
    """RFC 5681 slow start and congestion avoidance, as Linux's ``tcp_reno_cong_avoid``.

    * The window grows only while it limits sending (RFC 7661; Linux
      ``tcp_is_cwnd_limited``): an application- or receiver-limited sender does not
      inflate it.
    * Slow start counts every delivered byte (RFC 3465 appropriate byte counting with
      the limit L set to what the ACK delivered, as Linux does: receivers coalesce
      ACKs — GRO there, receive batches here — so a 2*SMSS cap would stall slow start
      on stretch ACKs), up to ssthresh; the rest goes to congestion avoidance.
    * Congestion avoidance adds one SMSS per cwnd of delivered bytes (RFC 5681 eq. 3).

    Fast retransmit and NewReno fast recovery (RFC 6582) are loss recovery's job
    (``rudp.engine.recovery``); a congestion event halves the window (RFC 5681 eq. 4).
    """

    name = "reno"
    __slots__ = ("_ca_acc",)

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        self._ca_acc = 0

    def on_ack(self, rs: AckSample, now: float) -> None:
        if not rs.is_cwnd_limited:
            return
        acked = rs.acked
        cwnd = self.cwnd
        if cwnd < self.ssthresh:
            grown = min(cwnd + acked, self.ssthresh)
            acked -= grown - cwnd
            self.cwnd = cwnd = grown
            if acked <= 0:
                return
        self._ca_acc += acked
        while self._ca_acc >= cwnd:
            self._ca_acc -= cwnd
            cwnd += self.mss
        self.cwnd = cwnd

    def on_congestion_event(self, now: float, basis: int) -> None:
        # RFC 5681 §3.2 step 2, eq. (4): ssthresh = max(FlightSize / 2, 2 * SMSS),
        # FlightSize capped at cwnd (see LossRecovery.reduction_basis).
        self.ssthresh = max(basis // 2, 2 * self.mss)
        self.cwnd = self.ssthresh

    def on_recovery_end(self, now: float) -> None:
        # RFC 6582 §3.2 step 6 option 1: cwnd <- ssthresh.
        self.cwnd = self.ssthresh
        self._ca_acc = 0

    def on_rto(self, now: float, basis: int) -> None:
        # RFC 5681 §3.1 eq. (4) and: cwnd <- loss window (1 SMSS).
        self.ssthresh = max(basis // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._ca_acc = 0

    def on_idle_restart(self, now: float) -> None:
        # RFC 5681 §4.1: cwnd <- min(cwnd, restart window = initial window).
        self.cwnd = min(self.cwnd, self.initial_cwnd * self.mss)
