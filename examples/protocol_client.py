"""An unchanged ``asyncio.Protocol`` running over rudp via ``create_connection``.

``python examples/protocol_client.py`` starts an upper-casing server (also a plain
``asyncio.Protocol``) and a client protocol, exchanges a message and exits.
"""

from __future__ import annotations

import asyncio

import rudp


class UpperServer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())

    def eof_received(self) -> bool:
        self.transport.write_eof()  # half-close back
        return True


class Client(asyncio.Protocol):
    def __init__(self, message: bytes) -> None:
        self.message = message
        self.received = bytearray()
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.message)
        transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.received))


async def main() -> None:
    server = await rudp.create_server(UpperServer, "127.0.0.1", 0)
    port = server.addresses[0][1]
    _transport, client = await rudp.create_connection(
        lambda: Client(b"hello from asyncio.Protocol"), "127.0.0.1", port
    )
    assert isinstance(client, Client)
    print((await client.done).decode())
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
