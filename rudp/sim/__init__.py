"""Deterministic network simulator: virtual clock, seeded impairments, no sockets.

Nodes (anything satisfying :class:`SimNode`, such as :class:`rudp.engine.Endpoint`)
are attached to a :class:`Network` at an address; each direction between two
addresses is a link with a :class:`LinkConfig` (delay, jitter, loss, duplication,
reordering, corruption, rate limit, blackholes, MTU) and :class:`LinkStats`.
Nodes can sit behind a :class:`Nat` (RFC 4787 mapping, filtering, timeouts,
rebinding, hairpinning, static forwards), see docs/simulator-nat.md.
"""

from .link import FATES, Address, LinkConfig, LinkStats
from .nat import NAT_FATES, Nat, NatBehavior, NatConfig, NatMapping, NatStats, PortAllocation
from .network import Network, NetworkStats, SimNode, Tap

__all__ = [
    "FATES",
    "NAT_FATES",
    "Address",
    "LinkConfig",
    "LinkStats",
    "Nat",
    "NatBehavior",
    "NatConfig",
    "NatMapping",
    "NatStats",
    "Network",
    "NetworkStats",
    "PortAllocation",
    "SimNode",
    "Tap",
]
