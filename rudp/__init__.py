"""rudp: real TCP segments over UDP for asyncio.

A sans-IO TCP engine (:mod:`rudp.engine`), a deterministic network simulator
(:mod:`rudp.sim`) and an asyncio layer whose API mirrors asyncio's streams.
"""

from .aio import (
    STATS_KEY,
    Endpoint,
    RudpTransport,
    Server,
    create_connection,
    create_endpoint,
    create_server,
    open_connection,
    start_server,
    start_tls,
)
from .config import Config
from .errors import (
    AddressInUseError,
    ConfigError,
    ConnectTimeoutError,
    InvalidStateError,
    KeepaliveTimeoutError,
    RudpError,
    UserTimeoutError,
)

__version__ = "0.1.0"

__all__ = [
    "STATS_KEY",
    "AddressInUseError",
    "Config",
    "ConfigError",
    "ConnectTimeoutError",
    "Endpoint",
    "InvalidStateError",
    "KeepaliveTimeoutError",
    "RudpError",
    "RudpTransport",
    "Server",
    "UserTimeoutError",
    "__version__",
    "create_connection",
    "create_endpoint",
    "create_server",
    "open_connection",
    "start_server",
    "start_tls",
]
