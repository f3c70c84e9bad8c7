"""Every connection timer, declared in one place.

A :class:`~rudp.engine.Connection` keeps one deadline per timer in a flat list indexed
by :class:`Timer` (``inf`` when the timer is not armed); its single next deadline is
the minimum of that list. When several timers are due at once their handlers run in
the order declared here. Adding a timer means adding a member below and a handler
method ``_on_<name>_timer`` on the connection (checked when the class is built).
"""

from __future__ import annotations

import enum
from typing import Final

#: "Not armed".
INF: Final = float("inf")


class Timer(enum.IntEnum):
    """Connection timers, in the order their handlers run when due together."""

    #: 2 MSL in TIME-WAIT (RFC 9293 §3.3.2), restarted by a retransmitted FIN.
    TIME_WAIT = 0
    #: An orphaned FIN-WAIT-2 connection gives up (Linux ``tcp_fin_timeout``).
    FIN_WAIT_2 = 1
    #: Sent data unacknowledged for ``Config.user_timeout`` (RFC 9293 §3.8.3).
    USER_TIMEOUT = 2
    #: Tail loss probe timeout, PTO (RFC 8985 §7.2). Before RTO: a probe clamped to
    #: the RTO's time is sent instead of the timeout (§7.2, as Linux does).
    TLP = 3
    #: Retransmission timeout (RFC 6298), also the SYN / SYN-ACK retry timer.
    RTO = 4
    #: RACK reordering window: look for losses again (RFC 8985 §6.2).
    REO = 5
    #: Delayed ACK (RFC 1122 §4.2.3.2).
    DELACK = 6
    #: Zero-window probe (RFC 9293 §3.8.6.1).
    PERSIST = 7
    #: Keepalive probes (RFC 1122 §4.2.3.6); re-armed lazily from the last receive time.
    KEEPALIVE = 8
    #: The pacer lets the next segment leave (rate from the congestion controller).
    PACING = 9


#: Handler method names, indexed like :class:`Timer`.
HANDLERS: tuple[str, ...] = tuple(f"_on_{t.name.lower()}_timer" for t in Timer)
