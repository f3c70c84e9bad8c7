"""Round-trip time estimation and the retransmission timeout (RFC 6298, RFC 7323 §4)."""

from __future__ import annotations

from typing import Final

# RFC 6298 §2: alpha = 1/8, beta = 1/4, K = 4, clock granularity G.
_ALPHA: Final = 0.125
_BETA: Final = 0.25
_K: Final = 4
_G: Final = 0.001
#: Window of the minimum-RTT filter (Linux ``tcp_min_rtt_wlen``: 300 s).
MIN_RTT_WINDOW: Final = 300.0


class RttEstimator:
    """SRTT / RTTVAR / RTO per RFC 6298 with exponential backoff (§5.5), and the
    windowed minimum RTT that RACK (RFC 8985) and the controllers use.

    Several samples per round trip (every ACK, with timestamps or a per-segment send
    record) would make RFC 6298's gains forget too fast; RFC 7323 Appendix G scales
    them by the number of samples expected per RTT, which :meth:`sample` does when
    given ``expected_samples``.
    """

    __slots__ = (
        "backoff",
        "min_rtt",
        "min_rtt_at",
        "rto",
        "rto_max",
        "rto_min",
        "rttvar",
        "srtt",
    )

    def __init__(self, rto_initial: float, rto_min: float, rto_max: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.rto = rto_initial  # §2.1: RTO <- 1 second before any measurement
        self.backoff = 0
        self.min_rtt = float("inf")
        self.min_rtt_at = 0.0

    def sample(self, r: float, now: float = 0.0, expected_samples: int = 1) -> None:
        """Take one RTT measurement ``r`` (never an ambiguous one: RFC 6298 §3 Karn,
        or resolved by timestamps, RFC 7323 §4). ``expected_samples`` > 1 applies
        RFC 7323 Appendix G: alpha' = alpha / ExpectedSamples, beta' = beta / ExpectedSamples.
        """
        if r < 0:
            return
        if r <= self.min_rtt or now - self.min_rtt_at > MIN_RTT_WINDOW:
            self.min_rtt = r
            self.min_rtt_at = now
        if self.srtt is None:
            # §2.2: first measurement.
            self.srtt = r
            self.rttvar = r / 2
        else:
            n = expected_samples if expected_samples > 1 else 1
            beta = _BETA / n
            alpha = _ALPHA / n
            # §2.3: RTTVAR first, using the old SRTT.
            self.rttvar = (1 - beta) * self.rttvar + beta * abs(self.srtt - r)
            self.srtt = (1 - alpha) * self.srtt + alpha * r
        self.backoff = 0
        # §2.3 RTO = SRTT + max(G, K*RTTVAR), with the lower bound applied as Linux
        # does (__tcp_set_rto: rttvar is at least tcp_rto_min), to the variance
        # term rather than to the sum (§2.4): RTO >= SRTT + rto_min. A queue that
        # grows faster than SRTT follows (slow start filling a deep buffer, the
        # RTT doubling within two rounds) then does not make the timer fire
        # while the ACKs are merely late. §2.5 upper bound.
        var = _K * self.rttvar
        floor = self.rto_min if self.rto_min > _G else _G
        rto = self.srtt + (var if var > floor else floor)
        self.rto = rto if rto < self.rto_max else self.rto_max

    def note_min(self, r: float, now: float) -> None:
        """Feed the minimum-RTT filter only (samples too noisy for SRTT)."""
        if r >= 0 and (r <= self.min_rtt or now - self.min_rtt_at > MIN_RTT_WINDOW):
            self.min_rtt = r
            self.min_rtt_at = now

    def on_timeout(self) -> None:
        """§5.5: back the timer off (RTO <- RTO * 2), capped at ``rto_max``."""
        self.backoff += 1
        self.rto = min(self.rto * 2, self.rto_max)
