"""Loss recovery: RTT estimation, loss detection and retransmission decisions.

* :mod:`.rtt` — RFC 6298 / RFC 7323 RTT estimation and the RTO;
* :mod:`.scoreboard` — the record of every sent segment, SACK marks, in-flight bytes
  and delivery-rate bookkeeping;
* :mod:`.rack` — RACK-TLP time-based loss detection (RFC 8985);
* :mod:`.prr` — Proportional Rate Reduction (RFC 6937);
* :mod:`.loss` — :class:`LossRecovery`, which ties them to the congestion controller.
"""

from .loss import LOSS, OPEN, RECOVERY, STATE_NAMES, LossRecovery
from .rtt import RttEstimator

__all__ = ["LOSS", "OPEN", "RECOVERY", "STATE_NAMES", "LossRecovery", "RttEstimator"]
