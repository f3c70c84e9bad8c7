"""Round-trip time estimation and the retransmission timeout (RFC 6298)."""

from __future__ import annotations

# RFC 6298 §2: alpha = 1/8, beta = 1/4, K = 4, clock granularity G.
_ALPHA = 0.125
_BETA = 0.25
_K = 4
_G = 0.001


class RttEstimator:
    """SRTT / RTTVAR / RTO per RFC 6298, with exponential backoff (§5.5)."""

    __slots__ = ("backoff", "rto", "rto_max", "rto_min", "rttvar", "srtt")

    def __init__(self, rto_initial: float, rto_min: float, rto_max: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.rto = rto_initial  # §2.1: RTO <- 1 second before any measurement
        self.backoff = 0

    def sample(self, r: float) -> None:
        """Take one RTT measurement ``r`` (never from a retransmitted segment, §3 Karn)."""
        if r < 0:
            return
        if self.srtt is None:
            # §2.2: first measurement.
            self.srtt = r
            self.rttvar = r / 2
        else:
            # §2.3: RTTVAR first, using the old SRTT.
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - r)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * r
        self.backoff = 0
        self._compute()

    def _compute(self) -> None:
        assert self.srtt is not None
        rto = self.srtt + max(_G, _K * self.rttvar)
        # §2.4 lower bound, §2.5 upper bound.
        self.rto = min(max(rto, self.rto_min), self.rto_max)

    def on_timeout(self) -> None:
        """§5.5: back the timer off (RTO <- RTO * 2), capped at ``rto_max``."""
        self.backoff += 1
        self.rto = min(self.rto * 2, self.rto_max)
