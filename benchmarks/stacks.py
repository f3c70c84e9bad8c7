"""Stream stacks under test: rudp, kernel TCP and aioquic behind one interface.

Each stack hands the workloads :class:`BenchStream` objects: an asyncio
``StreamReader`` plus write/drain/write_eof/close, and optional transport
statistics. The raw UDP peer is not a stream stack; see :mod:`benchmarks.udp_peer`.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from .common import JSONDict, bounded

#: Longest wait for a graceful close before giving up on it.
CLOSE_TIMEOUT = 5.0

StreamHandler = Callable[["BenchStream"], Awaitable[None]]


class StackUnavailable(RuntimeError):
    """The stack cannot run in this environment (missing module or API)."""


class BenchStream:
    """One bidirectional byte stream: a TCP/rudp connection or a QUIC stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def write_eof(self) -> None:
        self.writer.write_eof()

    async def close(self, timeout: float | None = CLOSE_TIMEOUT) -> None:
        """Close and wait until the stack reports the stream closed: at most
        ``timeout`` seconds (None: the caller bounds the wait)."""
        self.writer.close()
        with contextlib.suppress(Exception):
            if timeout is None:
                await self.writer.wait_closed()
            else:
                await bounded(self.writer.wait_closed(), timeout)

    def abort(self) -> None:
        self.writer.transport.abort()

    def stats(self) -> JSONDict | None:
        """Transport statistics, if the stack has any."""
        return None


class StreamStack(ABC):
    """Factory of client streams and owner of at most one server."""

    name: str = ""

    def __init__(self, mss: int | None) -> None:
        self.mss = mss
        self.handler_errors: list[str] = []
        #: Handlers ended by a reset or a truncated stream (expected when aborting).
        self.handler_resets = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    @abstractmethod
    async def start_server(self, host: str, handler: StreamHandler) -> int:
        """Listen on ``host`` (port chosen by the OS); return the port."""

    @abstractmethod
    async def stop_server(self) -> None:
        """Stop listening and drop the server's connections (bounded time)."""

    @abstractmethod
    async def connect(self, host: str, port: int) -> BenchStream:
        """Open a connection and return its stream; returns once it is usable."""

    async def shutdown(self) -> None:
        """Client side: finish background work (e.g. QUIC draining periods)."""
        return None

    async def run_handler(self, handler: StreamHandler, stream: BenchStream) -> None:
        """Run a server handler, recording (not raising) its failures."""
        try:
            await handler(stream)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.handler_resets += 1
            with contextlib.suppress(Exception):
                stream.abort()
        except Exception as exc:
            if len(self.handler_errors) < 20:
                self.handler_errors.append(f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                stream.abort()

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` as a task whose reference is kept until it finishes."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# ----------------------------------------------------- asyncio-style streams


class AsyncioStreamStack(StreamStack):
    """A stack with asyncio's stream API (``start_server``/``open_connection``)."""

    stream_class: type[BenchStream] = BenchStream

    def __init__(self, mss: int | None) -> None:
        super().__init__(mss)
        self._server: Any = None
        self._writers: set[asyncio.StreamWriter] = set()

    @abstractmethod
    async def _start(self, on_client: Callable[..., Awaitable[None]], host: str) -> Any:
        """Start and return the stack's server on ``host``, port chosen by the OS."""

    @abstractmethod
    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a client connection."""

    async def start_server(self, host: str, handler: StreamHandler) -> int:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.add(writer)
            try:
                await self.run_handler(handler, self.stream_class(reader, writer))
            finally:
                self._writers.discard(writer)

        self._server = await self._start(on_client, host)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop_server(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT)

    async def connect(self, host: str, port: int) -> BenchStream:
        reader, writer = await self._open(host, port)
        return self.stream_class(reader, writer)


class TcpStack(AsyncioStreamStack):
    """asyncio streams over kernel TCP (asyncio enables TCP_NODELAY itself)."""

    name = "tcp"

    async def _start(self, on_client: Callable[..., Awaitable[None]], host: str) -> Any:
        return await asyncio.start_server(on_client, host, 0, backlog=1024)

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)


class RudpStream(BenchStream):
    def stats(self) -> JSONDict | None:
        stats = self.writer.get_extra_info("rudp_stats")
        return dict(stats) if stats is not None else None


def import_rudp() -> Any:
    """Import rudp and check that its asyncio API exists; else StackUnavailable."""
    try:
        import rudp
    except Exception as exc:
        raise StackUnavailable(f"cannot import rudp: {type(exc).__name__}: {exc}") from exc
    missing = [
        name for name in ("open_connection", "start_server", "Config") if not hasattr(rudp, name)
    ]
    if missing:
        raise StackUnavailable(
            "rudp asyncio layer not present: rudp does not export "
            + ", ".join(missing)
            + " (expected from rudp/aio/)"
        )
    return rudp


class RudpStack(AsyncioStreamStack):
    """rudp.open_connection / rudp.start_server with Config(mss=...)."""

    name = "rudp"
    stream_class = RudpStream

    def __init__(self, mss: int | None) -> None:
        super().__init__(mss)
        self._rudp = import_rudp()
        self._config = self._rudp.Config(mss=mss) if mss is not None else self._rudp.Config()

    async def _start(self, on_client: Callable[..., Awaitable[None]], host: str) -> Any:
        return await self._rudp.start_server(on_client, host, 0, config=self._config, backlog=1024)

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self._rudp.open_connection(host, port, config=self._config)
        return reader, writer


def make_stack(name: str, mss: int | None) -> StreamStack:
    """Instantiate a stream stack by name (raises StackUnavailable if it cannot run)."""
    if name == "tcp":
        return TcpStack(mss)
    if name == "rudp":
        return RudpStack(mss)
    if name == "aioquic":
        try:
            from .quic import QuicStack
        except ImportError as exc:
            raise StackUnavailable(f"aioquic not importable: {exc}") from exc
        return QuicStack(mss)
    raise ValueError(f"not a stream stack: {name!r}")
