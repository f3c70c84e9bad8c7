"""The asyncio layer: endpoints, transports, streams and servers."""

from .api import (
    create_connection,
    create_endpoint,
    create_server,
    open_connection,
    shared_endpoints,
    start_server,
)
from .endpoint import Endpoint
from .server import Server
from .tls import start_tls
from .transport import STATS_KEY, RudpTransport

__all__ = [
    "STATS_KEY",
    "Endpoint",
    "RudpTransport",
    "Server",
    "create_connection",
    "create_endpoint",
    "create_server",
    "open_connection",
    "shared_endpoints",
    "start_server",
    "start_tls",
]
