"""Deterministic network simulator: virtual clock, seeded impairments, no sockets.

Nodes (anything satisfying :class:`SimNode`, such as :class:`rudp.engine.Endpoint`)
are attached to a :class:`Network` at an address; each direction between two
addresses is a link with a :class:`LinkConfig` (delay, jitter, loss, duplication,
reordering, corruption, rate limit, blackholes, MTU) and :class:`LinkStats`.
"""

from .link import FATES, Address, LinkConfig, LinkStats
from .network import Network, NetworkStats, SimNode, Tap

__all__ = [
    "FATES",
    "Address",
    "LinkConfig",
    "LinkStats",
    "Network",
    "NetworkStats",
    "SimNode",
    "Tap",
]
