"""The sans-IO TCP engine: no sockets, no clock; every call takes ``now``."""

from .congestion import ALGORITHMS, AckSample, CongestionControl, Reno, register
from .connection import Connection, ConnectionHost
from .endpoint import ANY_PORT, Endpoint, Listener
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
from .timers import Timer

__all__ = [
    "ALGORITHMS",
    "ANY_PORT",
    "TRANSITIONS",
    "AckSample",
    "CongestionControl",
    "Connection",
    "ConnectionAccepted",
    "ConnectionEstablished",
    "ConnectionHost",
    "ConnectionTerminated",
    "DataReceived",
    "Endpoint",
    "Event",
    "Listener",
    "PeerClosed",
    "Reno",
    "State",
    "Timer",
    "WritingResumed",
    "register",
]
