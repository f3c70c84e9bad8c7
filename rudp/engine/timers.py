"""Every connection timer, declared in one place.

A :class:`~rudp.engine.Connection` keeps one deadline per timer in a flat list indexed
by :class:`Timer` (``inf`` when the timer is not armed); its single next deadline is
the minimum of that list. When several timers are due at once their handlers run in
the order declared here. Adding a timer means adding a member below and a handler
method ``_on_<name>_timer`` on the connection (checked when the class is built).
"""

from __future__ import annotations

import enum

#: "Not armed".
INF = float("inf")


class Timer(enum.IntEnum):
    """Connection timers, in the order their handlers run when due together."""

    #: 2 MSL in TIME-WAIT (RFC 9293 §3.3.2), restarted by a retransmitted FIN.
    TIME_WAIT = 0
    #: An orphaned FIN-WAIT-2 connection gives up (Linux ``tcp_fin_timeout``).
    FIN_WAIT_2 = 1
    #: Sent data unacknowledged for ``Config.user_timeout`` (RFC 9293 §3.8.3).
    USER_TIMEOUT = 2
    #: Retransmission timeout (RFC 6298), also the SYN / SYN-ACK retry timer.
    RTO = 3
    #: Delayed ACK (RFC 1122 §4.2.3.2).
    DELACK = 4
    #: Zero-window probe (RFC 9293 §3.8.6.1).
    PERSIST = 5
    #: Keepalive probes (RFC 1122 §4.2.3.6); re-armed lazily from the last receive time.
    KEEPALIVE = 6


#: Handler method names, indexed like :class:`Timer`.
HANDLERS: tuple[str, ...] = tuple(f"_on_{t.name.lower()}_timer" for t in Timer)
