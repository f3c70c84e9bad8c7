"""Loss recovery: RTT estimation, loss detection and retransmission decisions."""

from .newreno import NewReno
from .rtt import RttEstimator

__all__ = ["NewReno", "RttEstimator"]
