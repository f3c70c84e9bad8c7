"""The sans-IO TCP engine: no sockets, no clock; every call takes ``now``."""

from .congestion import ALGORITHMS, CongestionControl, Reno, register
from .connection import Connection
from .endpoint import Endpoint, Listener
from .events import (
    ConnectionAccepted,
    ConnectionEstablished,
    ConnectionTerminated,
    DataReceived,
    Event,
    PeerClosed,
    WritingResumed,
)
from .states import TRANSITIONS, State

__all__ = [
    "ALGORITHMS",
    "TRANSITIONS",
    "CongestionControl",
    "Connection",
    "ConnectionAccepted",
    "ConnectionEstablished",
    "ConnectionTerminated",
    "DataReceived",
    "Endpoint",
    "Event",
    "Listener",
    "PeerClosed",
    "Reno",
    "State",
    "WritingResumed",
    "register",
]
