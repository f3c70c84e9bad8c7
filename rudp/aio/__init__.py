"""The asyncio layer: UDP endpoint, transports, streams and servers."""

from .api import Server, create_connection, create_server, open_connection, start_server
from .endpoint import UdpEndpoint
from .transport import STATS_KEY, RudpTransport

__all__ = [
    "STATS_KEY",
    "RudpTransport",
    "Server",
    "UdpEndpoint",
    "create_connection",
    "create_server",
    "open_connection",
    "start_server",
]
