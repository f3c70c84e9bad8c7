"""``rudp tunnel``: carry TCP connections over rudp, in the habits of kcptun.

::

    TCP app --TCP--> TunnelClient --rudp over UDP--> TunnelServer --TCP--> target

:class:`TunnelClient` accepts TCP connections on a local address and opens one
rudp connection per TCP connection to the :class:`TunnelServer`, which opens one
TCP connection per rudp connection to its target and splices the two.

Why one rudp connection per TCP connection, not kcptun's multiplexing (smux):
rudp connections already share one UDP socket per endpoint (one NAT mapping, one
firewall pinhole for all of them), and opening one costs a single round trip, so
the reasons kcptun multiplexes are met without it. Separate connections keep each
stream's flow control, loss recovery and congestion state its own: a stalled
reader or a loss on one stream never holds up another (no head-of-line blocking
across streams), and a reset ends exactly one stream.

What passes through (:func:`splice`):

* **data, both ways, with end-to-end backpressure**: a copy reads a chunk, writes
  it and awaits ``drain()`` before reading more. When the far reader is slow, the
  rudp send buffer fills, ``drain()`` blocks, the copy stops reading, the stream's
  buffer fills and the transport pauses reading -- which closes the TCP (or rudp)
  receive window towards the writer. Memory per connection stays bounded by the
  buffers' high-water marks (docs/tunnel.md), whatever the writer does.
* **half-close**: EOF on one side (``shutdown(SHUT_WR)``, or a FIN) becomes a FIN
  (``write_eof()``) on the other; the other direction goes on until it ends too.
* **resets**: a TCP RST on the local side aborts the rudp connection (RST), and an
  rudp reset aborts the TCP connection with an RST (``SO_LINGER`` 0), so the
  application sees "connection reset by peer" as it would end to end. A target
  that refuses the connection is reported the same way: the tunnelled connection
  is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..aio import Endpoint

__all__ = ["CHUNK", "SpliceResult", "TunnelClient", "TunnelServer", "splice"]

#: Bytes read per copy step.
CHUNK = 64 * 1024
#: TCP/rudp connect timeout (seconds).
CONNECT_TIMEOUT = 10.0
_LINGER_RESET = struct.pack("ii", 1, 0)

Log = Callable[[str], None]


@dataclass
class SpliceResult:
    """How one tunnelled connection ended."""

    #: Bytes from the side that was accepted to the side that was opened, and back.
    forward: int = 0
    backward: int = 0
    #: "closed" (both directions ended with EOF), or "reset by <side>", or "error: …".
    outcome: str = "closed"
    seconds: float = 0.0


def reset_tcp(writer: asyncio.StreamWriter) -> None:
    """Close a TCP connection with an RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class _Side:
    """One of the two connections of a splice."""

    def __init__(
        self,
        name: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        abort: Callable[[asyncio.StreamWriter], None],
    ) -> None:
        self.name = name
        self.reader = reader
        self.writer = writer
        self._abort = abort

    def abort(self) -> None:
        self._abort(self.writer)


class _Failed(Exception):
    def __init__(self, side: str, exc: BaseException) -> None:
        super().__init__(side)
        self.side = side
        self.exc = exc


async def _copy(src: _Side, dst: _Side, count: list[int], i: int) -> None:
    """src -> dst until EOF, then half-close dst. Errors name the side they came from."""
    while True:
        try:
            data = await src.reader.read(CHUNK)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise _Failed(src.name, exc) from None
        if not data:
            break
        try:
            dst.writer.write(data)
            count[i] += len(data)
            await dst.writer.drain()
        except OSError as exc:
            raise _Failed(dst.name, exc) from None
    try:
        if not dst.writer.transport.is_closing():
            dst.writer.write_eof()
    except OSError as exc:
        raise _Failed(dst.name, exc) from None


async def splice(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    a_abort: Callable[[asyncio.StreamWriter], None],
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
    b_abort: Callable[[asyncio.StreamWriter], None],
    *,
    names: tuple[str, str] = ("a", "b"),
) -> SpliceResult:
    """Copy a <-> b until both directions ended (see the module docstring).

    ``a_abort``/``b_abort`` reset their side (for TCP, :func:`reset_tcp`; for rudp,
    ``writer.transport.abort()``). A failure on either side resets the other.
    """
    t0 = time.monotonic()
    a = _Side(names[0], a_reader, a_writer, a_abort)
    b = _Side(names[1], b_reader, b_writer, b_abort)
    count = [0, 0]
    tasks = [
        asyncio.ensure_future(_copy(a, b, count, 0)),
        asyncio.ensure_future(_copy(b, a, count, 1)),
    ]
    # A connection lost while its copy is blocked elsewhere (a TCP reset while the
    # copy waits for the rudp peer's window) must end the splice too.
    watchers = {
        asyncio.ensure_future(a.writer.wait_closed()): a.name,
        asyncio.ensure_future(b.writer.wait_closed()): b.name,
    }
    result = SpliceResult()
    try:
        pending: set[asyncio.Future[None]] = {*tasks, *watchers}
        while not all(t.done() for t in tasks):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                if fut in watchers and fut.exception() is not None:
                    exc = fut.exception()
                    assert exc is not None
                    raise _Failed(watchers[fut], exc)
                if fut not in watchers:
                    fut.result()  # _Failed from a copy
        for side in (a, b):
            side.writer.close()
        for side in (a, b):
            with contextlib.suppress(OSError):
                await side.writer.wait_closed()
    except _Failed as exc:
        reset = isinstance(exc.exc, ConnectionResetError)
        result.outcome = (
            f"reset by the {exc.side} peer" if reset else f"error on the {exc.side} side: {exc.exc}"
        )
        # Whatever happened on one side, the other learns it as a reset.
        for side in (a, b):
            side.abort()
    except BaseException:
        for side in (a, b):
            side.abort()
        raise
    finally:
        for t in (*tasks, *watchers):
            t.cancel()
        await asyncio.gather(*tasks, *watchers, return_exceptions=True)
        result.forward, result.backward = count
        result.seconds = time.monotonic() - t0
    return result


def _abort_rudp(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


def _name(addr: Any) -> str:
    if not addr:
        return "?"
    host = str(addr[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


class _Tunnel:
    def __init__(self, log: Log | None) -> None:
        self.log = log or (lambda line: None)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Connections open now, and in all; by outcome.
        self.active = 0
        self.total = 0
        self.outcomes: dict[str, int] = {}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _done(self, cid: int, what: str, res: SpliceResult, up: str, down: str) -> None:
        self.active -= 1
        key = res.outcome.split(":")[0]
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        self.log(
            f"conn {cid} {what} {res.outcome}: {res.forward} bytes {up}, "
            f"{res.backward} bytes {down}, {res.seconds:.2f} s"
        )

    async def _close_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class TunnelServer(_Tunnel):
    """rudp connections on ``endpoint`` -> TCP connections to ``target``."""

    def __init__(
        self,
        endpoint: Endpoint,
        target: tuple[str, int],
        log: Log | None = None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        super().__init__(log)
        self.endpoint = endpoint
        self.target = target
        self.connect_timeout = connect_timeout
        self._server: Any = None

    async def start(self) -> None:
        self._server = await self.endpoint.start_server(self._on_rudp)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._close_tasks()

    def _on_rudp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._spawn(self._serve(reader, writer))

    async def _serve(self, r_reader: asyncio.StreamReader, r_writer: asyncio.StreamWriter) -> None:
        cid = next(self._ids)
        self.active += 1
        self.total += 1
        peer = _name(r_writer.get_extra_info("peername"))
        host, port = self.target
        try:
            t_reader, t_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.connect_timeout
            )
        except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
            r_writer.transport.abort()  # the client's application sees a reset
            res = SpliceResult(outcome=f"target {host} port {port} unreachable: {exc}")
            self._done(cid, f"from {peer}", res, "to the target", "back")
            return
        self.log(
            f"conn {cid} open: rudp {peer} -> TCP {_name(t_writer.get_extra_info('peername'))}"
        )
        res = await splice(
            r_reader, r_writer, _abort_rudp, t_reader, t_writer, reset_tcp, names=("rudp", "TCP")
        )
        self._done(cid, f"from {peer}", res, "to the target", "back")


class TunnelClient(_Tunnel):
    """TCP connections accepted on ``listen`` -> rudp connections to ``remote``."""

    def __init__(
        self,
        endpoint: Endpoint,
        listen: tuple[str | None, int],
        remote: tuple[str, int],
        log: Log | None = None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        super().__init__(log)
        self.endpoint = endpoint
        self.listen = listen
        self.remote = remote
        self.connect_timeout = connect_timeout
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = self.listen
        self.server = await asyncio.start_server(self._on_tcp, host or None, port)

    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        return [s.getsockname() for s in self.server.sockets] if self.server else []

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        await self._close_tasks()

    def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._spawn(self._serve(reader, writer))

    async def _serve(self, t_reader: asyncio.StreamReader, t_writer: asyncio.StreamWriter) -> None:
        cid = next(self._ids)
        self.active += 1
        self.total += 1
        peer = _name(t_writer.get_extra_info("peername"))
        host, port = self.remote
        try:
            r_reader, r_writer = await self.endpoint.open_connection(
                host, port, timeout=self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            reset_tcp(t_writer)  # the application sees a reset, as from a refusing host
            res = SpliceResult(outcome=f"remote {host} port {port} unreachable: {exc}")
            self._done(cid, f"from {peer}", res, "up", "down")
            return
        conn = r_writer.get_extra_info("rudp_connection")
        self.log(f"conn {cid} open: TCP {peer} -> rudp {_name((host, port))} ({conn.name})")
        res = await splice(
            t_reader, t_writer, reset_tcp, r_reader, r_writer, _abort_rudp, names=("TCP", "rudp")
        )
        self._done(cid, f"from {peer}", res, "up", "down")
