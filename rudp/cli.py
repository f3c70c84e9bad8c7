"""The ``rudp`` command line (also ``python -m rudp``).

* ``rudp demo`` -- a real transfer between a server and a client that share this
  one process, over UDP, with a progress bar and a throughput/latency summary
  (needs the ``cli`` extra: rich).
* ``rudp serve HOST PORT`` / ``rudp connect HOST PORT`` -- netcat-like: standard
  input goes to the peer, the peer's data to standard output. EOF on standard
  input sends FIN (half-close); the peer's FIN ends standard output. The program
  exits once both directions are closed. When standard input is a terminal, the
  peer's FIN also ends the session, as ``nc -l`` does, so nobody has to type ^D.
  ``serve`` takes one client (others are refused while it is busy: their connect
  fails with "connection refused") and exits after it, or with ``-k`` goes on to
  the next.
* ``rudp bench --server`` / ``rudp bench HOST`` -- measure a path between two
  machines, as iperf3 does (:mod:`rudp.tools.bench`, docs/bench.md).
* ``rudp tunnel server|client`` -- carry TCP connections over rudp, as kcptun does
  (:mod:`rudp.tools.tunnel`, docs/tunnel.md).

Every command takes ``--pcap FILE`` (docs/pcap.md).

Diagnostics go to stderr, one line each, prefixed ``rudp:``; data alone goes to
stdout. Exit status: 0 success, 1 error (as netcat), 2 usage error, 128+N when
ended by signal N (130 for one Ctrl-C; the peer gets a reset).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import queue
import signal
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from . import __version__, log
from .aio import Endpoint, create_endpoint, open_connection, start_server
from .config import MAX_MSS, MIN_MSS, Config
from .engine.congestion import ALGORITHMS
from .errors import ConfigError, ConnectTimeoutError, KeepaliveTimeoutError, UserTimeoutError

#: The distribution name on the Python Package Index (the import name is ``rudp``).
DISTRIBUTION = "rudp-asyncio"
CLI_EXTRA = f"pip install '{DISTRIBUTION}[cli]' (in a checkout: pip install -e '.[cli]')"

CHUNK = 256 * 1024
#: Chunks read ahead from stdin / queued for stdout (back-pressure beyond this).
PIPE_CHUNKS = 4
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_SIGPIPE = 128 + 13

_DEFAULTS = Config()
#: CLI keepalive defaults: probe an idle connection every 25 s (UDP NAT mappings
#: expire after 30-120 s), declare the peer dead after 4 unanswered probes 5 s apart.
KEEPALIVE_IDLE = 25.0
KEEPALIVE_INTERVAL = 5.0
KEEPALIVE_COUNT = 4


class CliError(Exception):
    """An error reported as one ``rudp: …`` line on stderr (exit status 1)."""


def _say(message: str) -> None:
    print(f"rudp: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ event loops
def _loop_factory(name: str) -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    if name == "asyncio":
        return asyncio.new_event_loop, "asyncio"
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise CliError(
                "uvloop is not installed (a dependency of rudp-asyncio where it builds: "
                "not on Windows or PyPy): pip install uvloop"
            ) from None
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def _run(main: Coroutine[Any, Any, int], loop_name: str) -> int:
    """Run ``main`` on a fresh loop; SIGINT/SIGTERM cancel it once, cleanly.

    ``main`` cleans up on cancellation (resetting its connections); we report
    "interrupted" and return 128 + the signal number. A second signal during that
    cleanup leaves at once.
    """
    try:
        factory, _ = _loop_factory(loop_name)
    except CliError:
        main.close()
        raise
    loop = factory()
    task = loop.create_task(main)
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if received:
            os._exit(128 + received[0])
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows, nor outside the main thread: KeyboardInterrupt then.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
    try:
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if not received:
                raise
        except KeyboardInterrupt:
            received.append(signal.SIGINT)
        _say("interrupted" if received[0] == signal.SIGINT else "terminated")
        return 128 + received[0]
    finally:
        try:
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


# --------------------------------------------------- argument value types
def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{what} must be finite, not {text!r}")
    return value


def _integer(text: str, what: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be an integer, not {text!r}") from None


def _positive(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = _number(text, what)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be > 0, not {text!r}")
        return value

    return parse


def _non_negative(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = _number(text, what)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{what} must be >= 0, not {text!r}")
        return value

    return parse


def _count(what: str, low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _integer(text, what)
        if value < low:
            raise argparse.ArgumentTypeError(f"{what} must be >= {low}, not {text!r}")
        return value

    return parse


def _port(allow_zero: bool) -> Callable[[str], int]:
    low = 0 if allow_zero else 1

    def parse(text: str) -> int:
        value = _integer(text, "port")
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"port must be in {low}..65535, not {text!r}")
        return value

    return parse


def _mss(text: str) -> int:
    value = _integer(text, "MSS")
    if not MIN_MSS <= value <= MAX_MSS:
        raise argparse.ArgumentTypeError(f"MSS must be in {MIN_MSS}..{MAX_MSS}, not {text!r}")
    return value


# ------------------------------------------------------- TCP-AO key file
def _auth_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--auth-key-file",
        metavar="FILE",
        default=None,
        help="authenticate every segment with TCP-AO (RFC 5925, docs/authentication.md) "
        "under the secret in FILE: hex digits (e.g. from 'openssl rand -hex 32') or "
        "else its raw bytes, 1-80 bytes, key id 0; the peer needs the same secret "
        "(default: none)",
    )


def _auth_keys(args: argparse.Namespace) -> object:
    """The ``--auth-key-file`` secret as a TCP-AO master key (ids 0), or None."""
    path = getattr(args, "auth_key_file", None)
    if path is None:
        return None
    from .engine.auth import AuthConfigError, MasterKey

    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError as exc:
        raise CliError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    text = data.strip()
    if text and len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text):
        data = bytes.fromhex(text.decode())
    try:
        return MasterKey(0, 0, data)
    except AuthConfigError as exc:  # (the message never shows the secret)
        raise CliError(f"key file {path}: {exc}") from None


# ------------------------------------------------------------ error text
def _where(host: str, port: int) -> str:
    return f"{host} port {port}"


def _describe(exc: BaseException, host: str, port: int, action: str) -> str:
    """One line for an error of a serve/connect run (no traceback, no class names).

    ``action`` ("listen", "connect") words errors of binding and opening.
    """
    where = _where(host, port)
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host!r}: {exc.strerror or exc}"
    if isinstance(exc, KeepaliveTimeoutError):
        return f"connection dropped: {exc}"
    if isinstance(exc, UserTimeoutError):
        return f"connection dropped: {exc}"
    if isinstance(exc, TimeoutError):
        detail = str(exc) or "timed out"
        return f"no answer from {where}: {detail}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (nobody listening there, or busy)"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, (BrokenPipeError, ConnectionAbortedError)):
        return f"connection closed: {exc}"
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename:  # the --pcap file
        return f"cannot write {exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, OSError):
        action = f"cannot {action} {'on' if action == 'listen' else 'to'}"
        if exc.errno == errno.EADDRINUSE:
            return f"{action} {where}: address already in use"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{action} {where}: {host} is not an address of this host"
        return f"{action} {where}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


class _StdoutClosed(Exception):
    """Writing to standard output failed (for example EPIPE: the reader went away)."""


# -------------------------------------------------------- stdin / stdout
class _Stdin:
    """Reads standard input in a daemon thread.

    A thread works for every kind of stdin (regular files cannot be polled; a
    terminal must not be switched to non-blocking mode under the shell), and a
    daemon thread blocked in ``read()`` never holds up exit. It reads at most
    :data:`PIPE_CHUNKS` chunks ahead. One reader serves every session of
    ``serve -k``: once EOF is seen, every later read returns EOF.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int = 0) -> None:
        self._loop = loop
        self._fd = fd
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._credit = threading.Semaphore(PIPE_CHUNKS)
        self._thread: threading.Thread | None = None
        self._eof = False
        try:
            self.isatty = os.isatty(fd)
        except OSError:
            self.isatty = False

    def _reader(self) -> None:
        while True:
            self._credit.acquire()
            try:
                data = os.read(self._fd, CHUNK)
            except OSError:  # closed fd, EIO on a vanished terminal: end of input
                data = b""
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, data)
            except RuntimeError:  # the loop is closed: the program is ending
                return
            if not data:
                return

    async def read(self) -> bytes:
        """The next chunk, or ``b""`` at end of input."""
        if self._eof:
            return b""
        if self._thread is None:
            self._thread = threading.Thread(target=self._reader, name="rudp-stdin", daemon=True)
            self._thread.start()
        data = await self._queue.get()
        self._credit.release()
        if not data:
            self._eof = True
        return data


class _Stdout:
    """Writes standard output in a daemon thread, at most :data:`PIPE_CHUNKS` behind.

    A slow consumer (``| less``) makes :meth:`write` wait, so the connection stops
    reading and its advertised window closes: the peer waits, nothing is lost,
    and the event loop never blocks on a full pipe.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int = 1) -> None:
        self._loop = loop
        self._fd = fd
        self._queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._pending = 0
        self._progress = asyncio.Event()
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None

    def _writer(self) -> None:
        while True:
            data = memoryview(self._queue.get())
            error: OSError | None = None
            try:
                while data:
                    data = data[os.write(self._fd, data) :]
            except OSError as exc:
                error = exc
            try:
                self._loop.call_soon_threadsafe(self._wrote, error)
            except RuntimeError:
                return
            if error is not None:
                return

    def _wrote(self, error: OSError | None) -> None:
        self._pending -= 1
        if error is not None and self._error is None:
            self._error = error
        self._progress.set()

    def _check(self) -> None:
        if self._error is not None:
            raise _StdoutClosed(self._error.strerror or str(self._error))

    async def write(self, data: bytes) -> None:
        self._check()
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="rudp-stdout", daemon=True)
            self._thread.start()
        while self._pending >= PIPE_CHUNKS:
            self._progress.clear()
            await self._progress.wait()
            self._check()
        self._pending += 1
        self._queue.put(data)

    async def drain(self) -> None:
        """Wait until everything written so far is out."""
        while self._pending:
            self._progress.clear()
            await self._progress.wait()
            self._check()


# ------------------------------------------------------- serve / connect
class _Console:
    """The standard input and output that serve/connect copy to and from."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stdin = _Stdin(loop)
        self.stdout = _Stdout(loop)


async def _session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, console: _Console
) -> None:
    """stdin -> connection and connection -> stdout, until both directions are closed."""
    eof_sent = False

    async def send() -> None:
        nonlocal eof_sent
        while data := await console.stdin.read():
            writer.write(data)
            await writer.drain()
        eof_sent = True
        writer.write_eof()

    async def receive() -> None:
        while data := await reader.read(CHUNK):
            await console.stdout.write(data)
        await console.stdout.drain()

    sending = asyncio.ensure_future(send())
    receiving = asyncio.ensure_future(receive())
    pending: set[asyncio.Future[None]] = {sending, receiving}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                # Both directions may fail in the same iteration (a user timeout
                # fails the writer and the reader): mark every error retrieved,
                # or asyncio logs the one not raised with a traceback.
                if not fut.cancelled():
                    fut.exception()
            for fut in done:
                fut.result()  # an error ends the session
            if receiving in done and sending in pending and console.stdin.isatty:
                # The peer is done and our input is a person at a terminal: end
                # the session as nc -l does instead of waiting for ^D.
                sending.cancel()
                await asyncio.wait({sending})  # (our own cancellation still propagates)
                pending.discard(sending)
                if not eof_sent:
                    writer.write_eof()
        writer.close()
        await writer.wait_closed()
    except BaseException:
        # On an error or an interruption the peer learns at once (RST); wait
        # briefly so the reset really leaves before the loop stops.
        writer.transport.abort()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(writer.wait_closed(), 1)
        raise
    finally:
        for fut in pending:
            fut.cancel()
        # Let the cancelled copies finish (and the RST leave) before returning.
        await asyncio.gather(*pending, return_exceptions=True)


def _config(args: argparse.Namespace) -> Config:
    keepalive = args.keepalive > 0
    return Config(
        auth_keys=_auth_keys(args),
        mss=args.mss,
        keepalive=keepalive,
        keepalive_idle=args.keepalive if keepalive else _DEFAULTS.keepalive_idle,
        keepalive_interval=args.keepalive_interval,
        keepalive_count=args.keepalive_count,
        user_timeout=args.user_timeout,
        pcap=args.pcap,
    )


def _addresses(addresses: list[tuple[Any, ...]]) -> str:
    return ", ".join(_where(str(a[0]), int(a[1])) for a in addresses)


async def _serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    cfg = _config(args)
    console = _Console(loop)
    port: int = args.port
    status = EXIT_OK
    try:
        # One endpoint for the whole run: between clients only the listener stops
        # and starts again (no rebinding gap; TIME-WAIT stays on the socket).
        endpoint = await create_endpoint((args.host, port), config=cfg)
    except (OSError, ConfigError) as exc:
        raise CliError(_describe(exc, args.host, port, "listen")) from None
    port = int(endpoint.local_address[1])
    first = True
    try:
        while True:
            if first or args.verbose:
                _say(f"listening on {_addresses([endpoint.local_address])} (UDP)")
            first = False
            accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
            accepted = loop.create_future()

            def on_client(
                reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                accepted: asyncio.Future[Any] = accepted,
            ) -> None:
                if accepted.done():  # arrived in the same instant as the first: no room
                    writer.transport.abort()
                else:
                    accepted.set_result((reader, writer))

            server = await endpoint.start_server(on_client)
            writer: asyncio.StreamWriter | None = None
            try:
                reader, writer = await accepted
                # One client at a time: stop listening, so others are refused (a RST
                # to their SYN: "connection refused") rather than accepted and reset.
                server.close()
                peer = writer.get_extra_info("peername")
                if args.verbose:
                    _say(f"connection from {_where(str(peer[0]), int(peer[1]))}")
                await _session(reader, writer, console)
                status = EXIT_OK
            except (OSError, TimeoutError) as exc:
                if not args.keep_listening:
                    raise CliError(_describe(exc, args.host, port, "listen")) from None
                _say(_describe(exc, args.host, port, "listen"))
                status = EXIT_ERROR
            finally:
                server.close()
                if writer is not None and not writer.transport.is_closing():
                    writer.transport.abort()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 5)
            if args.verbose:
                _say("connection closed")
            if not args.keep_listening:
                return status
    finally:
        endpoint.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(endpoint.wait_closed(), 5)


async def _connect(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await open_connection(
            args.host, args.port, config=_config(args), timeout=args.timeout
        )
    except (OSError, TimeoutError, ConfigError) as exc:
        if isinstance(exc, ConnectTimeoutError) and exc.timeout is not None:
            exc = TimeoutError(f"gave up after --timeout {args.timeout:g} s")
        raise CliError(_describe(exc, args.host, args.port, "connect")) from None
    if args.verbose:
        _say(f"connected to {_where(args.host, args.port)}")
    try:
        await _session(reader, writer, _Console(loop))
    except (OSError, TimeoutError) as exc:
        raise CliError(_describe(exc, args.host, args.port, "connect")) from None
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    return _run(_serve(args), args.loop)


def cmd_connect(args: argparse.Namespace) -> int:
    return _run(_connect(args), args.loop)


# --------------------------------------------------------------------- demo
def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


async def _demo(
    size: int,
    mss: int,
    rounds: int,
    host: str,
    pcap: str | None = None,
    auth_keys: object = None,
) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class MiBPerSecond(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("?" if speed is None else f"{speed / 2**20:.1f} MiB/s")

    console = Console(stderr=True)
    cfg = Config(mss=mss, auth_keys=auth_keys)
    received = 0
    server_hash = hashlib.sha256()
    done = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        # Phase 1: request/response latency (64-byte messages echoed back).
        for _ in range(rounds):
            msg = await reader.readexactly(64)
            writer.write(msg)
        # Phase 2: bulk upload until EOF, then answer with the SHA-256.
        while data := await reader.read(CHUNK):
            received += len(data)
            server_hash.update(data)
        writer.write(server_hash.digest())
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        if not done.done():
            done.set_result(None)

    handlers: list[asyncio.Task[None]] = []

    def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task, not asyncio's: on Ctrl-C it is cancelled quietly (before 3.12
        # asyncio logs a cancelled client_connected_cb task as an error).
        handlers.append(asyncio.ensure_future(handle(reader, writer)))

    server = await start_server(on_client, host, 0, config=cfg)
    port = server.addresses[0][1]
    # Only the client records: both ends share this process, and a file written by
    # both would hold every datagram twice (once sent, once received).
    reader, writer = await open_connection(
        host, port, config=Config(mss=mss, pcap=pcap, auth_keys=auth_keys)
    )

    rtts = []
    msg = os.urandom(64)
    for _ in range(rounds):
        t0 = time.perf_counter()
        writer.write(msg)
        await reader.readexactly(64)
        rtts.append(time.perf_counter() - t0)

    payload = os.urandom(min(size, 16 * 1024 * 1024))
    client_hash = hashlib.sha256()
    sent = 0
    t_start = time.perf_counter()
    with Progress(
        TextColumn("[bold]upload"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        MiBPerSecond(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("upload", total=size)
        while sent < size:
            n = min(CHUNK, size - sent)
            off = sent % len(payload)
            chunk = payload[off : off + n]
            if len(chunk) < n:
                chunk = chunk + payload[: n - len(chunk)]
            client_hash.update(chunk)
            writer.write(chunk)
            await writer.drain()
            sent += n
            progress.update(task, completed=sent)
        writer.write_eof()
        digest = await reader.readexactly(32)
        progress.update(task, completed=sent)
    elapsed = time.perf_counter() - t_start
    stats = writer.get_extra_info("rudp_stats")
    await reader.read()  # the server's FIN
    writer.close()
    await writer.wait_closed()
    await done
    server.close()
    await server.wait_closed()
    rtts.sort()
    return {
        "bytes": sent,
        "seconds": elapsed,
        "hash_ok": digest == client_hash.digest() and received == sent,
        "rtt_p50": statistics.median(rtts) if rtts else None,
        "rtt_p99": rtts[max(0, math.ceil(len(rtts) * 0.99) - 1)] if rtts else None,
        "stats": stats,
    }


def _demo_table(result: dict[str, Any], args: argparse.Namespace, loop_name: str) -> Any:
    from rich import box
    from rich.table import Table

    stats = result["stats"]
    table = Table(
        title=f"rudp demo: client and server share this one process, over UDP on {args.host}"
        f" ({loop_name} event loop, MSS {args.mss} bytes)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("measure", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("what it is")
    ok = "yes" if result["hash_ok"] else "NO"
    table.add_row("uploaded", _mib(result["bytes"]), f"client to server; SHA-256 verified: {ok}")
    table.add_row(
        "time", f"{result['seconds']:.2f} s", "from the first byte to the server's digest"
    )
    table.add_row("throughput", f"{result['bytes'] / result['seconds'] / 2**20:.1f} MiB/s", "")
    if result["rtt_p50"] is not None:
        table.add_row(
            "echo p50",
            f"{result['rtt_p50'] * 1e6:,.0f} µs",
            "64-byte message to the server and back, as the application sees it "
            "(both stacks and the event loop), before the upload",
        )
        table.add_row("echo p99", f"{result['rtt_p99'] * 1e6:,.0f} µs", "")
    table.add_row(
        "srtt",
        f"{(stats['srtt'] or 0) * 1e6:,.0f} µs",
        "rudp's own round-trip estimate from ACK timing (RFC 6298) at the end of the "
        "upload: includes queueing behind a full window",
    )
    table.add_row("segments sent", f"{stats['segments_sent']:,}", "")
    table.add_row("retransmissions", f"{stats['retransmissions']:,}", "")
    # cwnd limits sending only below the peer's window; Reno goes on growing it
    # while the receive window is the limit, so report what actually applied.
    cwnd, rwnd = stats["cwnd"], stats["snd_wnd"]
    limit = "the peer's receive window" if rwnd and cwnd >= rwnd else "the congestion window"
    table.add_row("send window", f"{min(cwnd, rwnd or cwnd) / 1024:,.0f} KiB", f"set by {limit}")
    return table


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
    except ImportError:
        raise CliError(f"the demo needs the 'cli' extra (rich): {CLI_EXTRA}") from None
    _, loop_name = _loop_factory(args.loop)
    size = max(1, int(args.size * 2**20))
    result: dict[str, Any] = {}

    async def run() -> int:
        result.update(
            await _demo(size, args.mss, args.rounds, args.host, args.pcap, _auth_keys(args))
        )
        return EXIT_OK

    try:
        rc = _run(run(), args.loop)
    except (OSError, TimeoutError) as exc:
        raise CliError(_describe(exc, args.host, 0, "listen")) from None
    if rc != EXIT_OK:
        return rc
    console = Console()
    console.width = min(console.width, 80)
    console.print(_demo_table(result, args, loop_name))
    return EXIT_OK if result["hash_ok"] else EXIT_ERROR


# -------------------------------------------------------------------- bench
PLOT_EXTRA = f"pip install '{DISTRIBUTION}[plot]' (in a checkout: pip install -e '.[plot]')"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _amount(text: str) -> int:
    """Bytes, with iperf3's suffixes: 500K, 10M, 1G (binary multiples)."""
    t = text.strip().upper().removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    try:
        value = float(t[: len(t) - len(unit)] if unit else t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bytes must be a number with an optional K/M/G/T suffix, not {text!r}"
        ) from None
    n = int(value * _UNITS[unit]) if math.isfinite(value) else 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"bytes must be >= 1, not {text!r}")
    return n


class _UsageError(Exception):
    """A combination of options that cannot work (exit status 2)."""


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


async def _bench_endpoint(args: argparse.Namespace, cfg: Config) -> Endpoint:
    """The server's endpoint: --bind, or every address (dual-stack "::", else IPv4)."""
    hosts = [args.bind] if args.bind else ["::", "0.0.0.0"]
    for i, host in enumerate(hosts):
        try:
            return await create_endpoint((host, args.port), config=cfg)
        except OSError as exc:
            if i == len(hosts) - 1 or exc.errno == errno.EADDRINUSE:
                raise CliError(_describe(exc, host, args.port, "listen")) from None
    raise AssertionError("unreachable")  # pragma: no cover


async def _bench_server(args: argparse.Namespace) -> int:
    from .tools.bench import BenchServer
    from .tools.benchfmt import PlainDisplay, summary_lines

    cfg = _config(args)
    ep = await _bench_endpoint(args, cfg)
    out = PlainDisplay(client=False)
    host, port = ep.local_address[0], ep.local_address[1]
    if not args.json:
        out.say("-" * 60)
        out.say(f"Server listening on {host} port {port} (UDP)")
        out.say("-" * 60)
    else:
        _say(f"listening on {_where(str(host), int(port))} (UDP)")
    finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    tests: dict[str, Any] = {}

    def report(kind: str, data: dict[str, Any]) -> None:
        if kind == "test":
            tests.clear()
            tests.update(start=data, intervals=[])
            if not args.json:
                out.start(
                    {"peer": data["peer"], "test": data["params"], "streams": data["streams"]}
                )
        elif kind == "interval":
            tests.setdefault("intervals", []).append(data)
            if not args.json:
                out.interval(data)
        elif kind == "result":
            if args.json:
                doc = {**tests, "end": {"streams": data["streams"]}}
                print(json.dumps(doc, separators=(",", ":")), flush=True)
            else:
                result = {
                    "start": {"test": tests.get("start", {}).get("params", {"bidir": False})},
                    "end": {
                        "streams": [{"id": st["id"], st["role"]: st} for st in data["streams"]],
                    },
                }
                for line in summary_lines(result, client=False):
                    if "(no " not in line:
                        out.say(line)
                out.say("-" * 60)
            if not finished.done():
                finished.set_result(EXIT_OK)
        elif kind in ("error", "refused"):
            peer = data.get("peer") or ["?", 0]
            what = "refused a test from" if kind == "refused" else "test from"
            _say(f"{what} {_where(str(peer[0]), int(peer[1]))}: {data['message']}")
            if kind == "error" and not finished.done():
                finished.set_result(EXIT_ERROR)

    server = BenchServer(ep, cfg, report, data_host=str(host))
    await server.start()
    try:
        while True:
            status = await asyncio.shield(finished)
            if args.one_off:
                return status
            finished = asyncio.get_running_loop().create_future()
    finally:
        await server.close()
        ep.abort()


async def _bench_client(args: argparse.Namespace) -> int:
    from .tools.bench import BenchError, BenchParams, run_client
    from .tools.benchfmt import LiveDisplay, PlainDisplay, plot

    try:
        params = BenchParams(
            time=args.time,
            bytes=args.bytes,
            parallel=args.parallel,
            reverse=args.reverse,
            bidir=args.bidir,
            mss=args.mss,
            cc=args.cc,
            interval=args.interval,
            trace=args.plot is not None,
        )
    except BenchError as exc:
        raise _UsageError(str(exc)) from None
    display: PlainDisplay | None = None
    if not args.json:
        if sys.stdout.isatty() and _have("rich"):
            total = float(args.bytes if args.bytes is not None else args.time)
            display = LiveDisplay(
                total * (2 if args.bidir and args.bytes else 1), args.bytes is not None
            )
        else:
            display = PlainDisplay()
    try:
        if display is not None:
            async with display:
                result = await run_client(
                    args.host,
                    args.port,
                    params,
                    _config(args),
                    bind=args.bind,
                    on_start=display.start,
                    on_interval=display.interval,
                    connect_timeout=args.timeout or 10.0,
                )
            display.summary(result)
        else:
            result = await run_client(
                args.host,
                args.port,
                params,
                _config(args),
                bind=args.bind,
                connect_timeout=args.timeout or 10.0,
            )
    except BenchError as exc:
        raise CliError(str(exc)) from None
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, ConnectTimeoutError) and exc.timeout is not None:
            exc = TimeoutError(f"gave up after --timeout {args.timeout:g} s")
        raise CliError(_describe(exc, args.host, args.port, "connect")) from None
    if args.json:
        print(json.dumps(result, indent=2), flush=True)
    if args.plot is not None:
        plot(result, args.plot)
        if display is not None:
            display.say(f"plot written to {args.plot}")
    failed = [
        st for st in result["end"]["streams"] for role in ("sender", "receiver")
        if (st.get(role) or {}).get("error")
    ]  # fmt: skip
    return EXIT_ERROR if failed else EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    if args.server:
        if args.host is not None:
            raise _UsageError("give HOST (client) or --server, not both")
        client_only = ("bytes", "reverse", "bidir", "plot", "timeout")
        given = [f"--{name}" for name in client_only if getattr(args, name) not in (None, False)]
        if given:
            raise _UsageError(f"{', '.join(given)}: client options (not with --server)")
        return _run(_bench_server(args), args.loop)
    if args.host is None:
        raise _UsageError("give the server's HOST, or --server to be one")
    if args.one_off:
        raise _UsageError("--one-off is a server option")
    if args.reverse and args.bidir:
        raise _UsageError("--reverse and --bidir exclude each other")
    if args.plot is not None and not _have("matplotlib"):
        raise CliError(f"--plot needs matplotlib, from the 'plot' extra: {PLOT_EXTRA}")
    return _run(_bench_client(args), args.loop)


# ------------------------------------------------------------------- tunnel
def _host_port(what: str, *, need_host: bool) -> Callable[[str], tuple[str, int]]:
    """``HOST:PORT``, ``[V6]:PORT`` or (when the host may be omitted) ``:PORT``."""

    def parse(text: str) -> tuple[str, int]:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"{what} must be HOST:PORT, not {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if need_host and not host:
            raise argparse.ArgumentTypeError(f"{what} needs a host: HOST:PORT, not {text!r}")
        port = _port(allow_zero=not need_host)(port_text)
        return host, port

    return parse


def _tunnel_log(line: str) -> None:
    _say(f"{time.strftime('%H:%M:%S')} {line}")


async def _tunnel_server(args: argparse.Namespace) -> int:
    from .tools.tunnel import TunnelServer

    cfg = _config(args)
    host, port = args.listen
    hosts = [host] if host else ["::", "0.0.0.0"]
    ep: Endpoint | None = None
    for i, h in enumerate(hosts):
        try:
            ep = await create_endpoint((h, port), config=cfg)
            break
        except OSError as exc:
            if i == len(hosts) - 1 or exc.errno == errno.EADDRINUSE:
                raise CliError(_describe(exc, h, port, "listen")) from None
    assert ep is not None
    tunnel = TunnelServer(ep, args.target, _tunnel_log, connect_timeout=args.timeout)
    await tunnel.start()
    bound = ep.local_address
    _tunnel_log(
        f"tunnel server on {_where(str(bound[0]), int(bound[1]))} (UDP) -> TCP "
        f"{_where(*args.target)}"
    )
    try:
        await asyncio.Future()  # until interrupted
    finally:
        await tunnel.close()
        ep.abort()
    return EXIT_OK  # pragma: no cover - only a signal ends it


async def _tunnel_client(args: argparse.Namespace) -> int:
    from .tools.tunnel import TunnelClient

    cfg = _config(args)
    rhost, rport = args.remote
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(rhost, rport, type=socket.SOCK_DGRAM)
        family = infos[0][0]
        ep = await create_endpoint(
            ("::" if family == socket.AF_INET6 else "0.0.0.0", 0), config=cfg
        )
    except OSError as exc:
        raise CliError(_describe(exc, rhost, rport, "connect")) from None
    lhost, lport = args.listen
    tunnel = TunnelClient(
        ep, (lhost, lport), args.remote, _tunnel_log, connect_timeout=args.timeout
    )
    try:
        await tunnel.start()
    except OSError as exc:
        ep.abort()
        raise CliError(_describe(exc, lhost or "*", lport, "listen")) from None
    where = ", ".join(_where(str(a[0]), int(a[1])) for a in tunnel.addresses)
    _tunnel_log(f"tunnel client on {where} (TCP) -> rudp {_where(rhost, rport)}")
    try:
        await asyncio.Future()
    finally:
        await tunnel.close()
        ep.abort()
    return EXIT_OK  # pragma: no cover


def cmd_tunnel(args: argparse.Namespace) -> int:
    if args.mode == "server":
        return _run(_tunnel_server(args), args.loop)
    return _run(_tunnel_client(args), args.loop)


# ----------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _verbosity(p: argparse.ArgumentParser, dest: str, default: Any) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        dest=dest,
        action="count",
        default=default,
        help="diagnostics on stderr: -v connections and rudp's retransmissions, "
        "timeouts and aborts (log level INFO); -vv also every state change and "
        "dropped datagram (DEBUG)",
    )


def _pcap_option(sp: argparse.ArgumentParser, what: str = "") -> None:
    sp.add_argument(
        "--pcap",
        metavar="FILE",
        default=None,
        help="write every segment sent and received to FILE as a pcap capture that "
        "Wireshark and tshark dissect as TCP, with the real UDP addresses"
        f"{what} (default: none)",
    )


def _liveness_options(sp: argparse.ArgumentParser) -> None:
    """--keepalive*, --user-timeout: how a dead peer or a NAT is handled."""
    sp.add_argument(
        "--keepalive",
        type=_non_negative("keepalive"),
        default=KEEPALIVE_IDLE,
        metavar="SECONDS",
        help="send a keepalive probe after this long without hearing from the peer; "
        "keeps UDP NAT mappings (30-120 s) open and detects a dead peer; "
        "0 turns keepalive off (default: %(default)g)",
    )
    sp.add_argument(
        "--keepalive-interval",
        type=_positive("keepalive interval"),
        default=KEEPALIVE_INTERVAL,
        metavar="SECONDS",
        help="time between unanswered keepalive probes (default: %(default)g)",
    )
    sp.add_argument(
        "--keepalive-count",
        type=_count("keepalive count", 1),
        default=KEEPALIVE_COUNT,
        metavar="N",
        help="unanswered probes after which the peer is declared dead and its "
        "connection dropped (serve/connect exit with status 1) (default: %(default)s)",
    )
    sp.add_argument(
        "--user-timeout",
        type=_positive("user timeout"),
        default=_DEFAULTS.user_timeout,
        metavar="SECONDS",
        help="give up when sent data stays unacknowledged this long "
        "(RFC 9293 user timeout; default: %(default)g)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="rudp",
        description="TCP segments (RFC 9293) over UDP, for asyncio. Data goes to stdout; "
        "diagnostics to stderr.",
        epilog="Exit status: 0 ok, 1 error, 2 usage error, 128+N ended by signal N "
        "(130: Ctrl-C, 143: SIGTERM). 'rudp COMMAND --help' describes each command.",
    )
    p.add_argument("--version", action="version", version=f"rudp {__version__}")
    _verbosity(p, "verbose", 0)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        _verbosity(sp, "verbose_sub", argparse.SUPPRESS)
        sp.add_argument(
            "--loop",
            choices=["auto", "uvloop", "asyncio"],
            default="auto",
            help="event loop; auto = uvloop when installed (default: %(default)s)",
        )
        sp.add_argument(
            "--mss",
            type=_mss,
            default=_DEFAULTS.mss,
            metavar="BYTES",
            help=f"maximum segment size, {MIN_MSS}..{MAX_MSS} bytes; the default fits a "
            "1500-byte path over IPv4 and IPv6 (default: %(default)s)",
        )
        _pcap_option(sp)

    d = sub.add_parser(
        "demo",
        help="a transfer between a server and a client in this one process, over UDP",
        description="Runs a rudp server and client in this one process over UDP on HOST: "
        "times ROUNDS 64-byte echoes, uploads SIZE MiB with a progress bar, checks the "
        "SHA-256 and prints a summary. Needs the 'cli' extra.",
    )
    common(d)
    _auth_option(d)
    d.add_argument(
        "--size",
        type=_positive("size"),
        default=256.0,
        metavar="MiB",
        help="data to upload, in MiB (default: %(default)g)",
    )
    d.add_argument(
        "--rounds",
        type=_count("rounds", 0),
        default=2000,
        metavar="N",
        help="64-byte echoes to time before the upload (default: %(default)s)",
    )
    d.add_argument(
        "--host",
        default="127.0.0.1",
        help="local address to use, e.g. ::1 (default: %(default)s)",
    )
    d.set_defaults(func=cmd_demo)

    from .tools.bench import DEFAULT_PORT as bench_port

    b = sub.add_parser(
        "bench",
        help="measure a path: 'bench --server' on one machine, 'bench HOST' on the other "
        "(like iperf3)",
        description="Measures throughput, retransmissions, cwnd and RTT between two "
        "machines, as iperf3 does: run 'rudp bench --server' on one and 'rudp bench HOST' "
        "on the other. The server serves tests one after another. Every option below "
        "but --server, --bind, --port and --one-off is the client's.",
    )
    common(b)
    b.add_argument("host", metavar="HOST", nargs="?", help="the server to test against")
    b.add_argument("-s", "--server", action="store_true", help="run a server (like iperf3 -s)")
    b.add_argument(
        "-B",
        "--bind",
        metavar="HOST",
        default=None,
        help="local address to bind (default: all addresses; the client: any)",
    )
    b.add_argument(
        "-p",
        "--port",
        type=_port(allow_zero=True),
        default=bench_port,
        metavar="PORT",
        help="the server's UDP port; the server accepts 0 (a free one, printed) "
        "(default: %(default)s)",
    )
    b.add_argument(
        "-1",
        "--one-off",
        action="store_true",
        help="server: exit after one test (status 1 if it failed)",
    )
    b.add_argument(
        "-t",
        "--time",
        type=_positive("time"),
        default=10.0,
        metavar="SECONDS",
        help="how long each sender sends (default: %(default)g)",
    )
    b.add_argument(
        "-n",
        "--bytes",
        type=_amount,
        default=None,
        metavar="N[KMG]",
        help="send this many bytes per direction instead (shared by the streams; "
        "K/M/G = 2^10/2^20/2^30)",
    )
    b.add_argument(
        "-P",
        "--parallel",
        type=_count("parallel streams", 1),
        default=1,
        metavar="N",
        help="streams (rudp connections) per direction (default: %(default)s)",
    )
    b.add_argument(
        "-R", "--reverse", action="store_true", help="the server sends, the client receives"
    )
    b.add_argument("--bidir", action="store_true", help="send both ways at once")
    b.add_argument(
        "-C",
        "--cc",
        choices=sorted(ALGORITHMS),
        default=_DEFAULTS.congestion_control,
        help="congestion control of the senders (default: %(default)s)",
    )
    b.add_argument(
        "-i",
        "--interval",
        type=_positive("interval"),
        default=1.0,
        metavar="SECONDS",
        help="seconds between interval reports (default: %(default)g)",
    )
    b.add_argument(
        "-J",
        "--json",
        action="store_true",
        help="print the result as one JSON document at the end (the server: one "
        "line per test), nothing else on stdout",
    )
    b.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="draw throughput, cwnd and RTT over time into FILE.png "
        "(needs the 'plot' extra: matplotlib)",
    )
    b.add_argument(
        "--timeout",
        type=_positive("timeout"),
        default=None,
        metavar="SECONDS",
        help="give up connecting after this many seconds (default: 10)",
    )
    _liveness_options(b)
    b.set_defaults(func=cmd_bench)

    t = sub.add_parser(
        "tunnel",
        help="carry TCP connections over rudp: 'tunnel server' near the target, "
        "'tunnel client' near the application (like kcptun)",
        description="Carries TCP connections over rudp: 'rudp tunnel client' accepts TCP "
        "connections and opens one rudp connection for each to 'rudp tunnel server', "
        "which opens a TCP connection to its target. Half-close, resets and "
        "backpressure pass through. Connections are logged on stderr with byte counts.",
    )
    tsub = t.add_subparsers(dest="mode", required=True, metavar="MODE")
    ts = tsub.add_parser(
        "server",
        help="rudp on --listen (UDP) -> TCP to --target",
        description="Accepts rudp connections on --listen (UDP) and connects each to "
        "--target over TCP. Example: rudp tunnel server --listen :4000 --target 127.0.0.1:22",
    )
    tc = tsub.add_parser(
        "client",
        help="TCP on --listen -> rudp to --remote",
        description="Accepts TCP connections on --listen and carries each over its own rudp "
        "connection to the tunnel server at --remote. Example: rudp tunnel client "
        "--listen 127.0.0.1:2222 --remote HOST:4000, then ssh -p 2222 127.0.0.1",
    )
    for sp in (ts, tc):
        common(sp)
        sp.add_argument(
            "--listen",
            required=True,
            type=_host_port("--listen", need_host=False),
            metavar="[HOST]:PORT",
            help="UDP address to accept rudp connections on (no HOST: every address)"
            if sp is ts
            else "TCP address to accept connections on (no HOST: every address; "
            "127.0.0.1 keeps it local)",
        )
        if sp is ts:
            sp.add_argument(
                "--target",
                required=True,
                type=_host_port("--target", need_host=True),
                metavar="HOST:PORT",
                help="TCP address every connection is carried to",
            )
        else:
            sp.add_argument(
                "--remote",
                required=True,
                type=_host_port("--remote", need_host=True),
                metavar="HOST:PORT",
                help="the tunnel server (UDP)",
            )
        sp.add_argument(
            "--timeout",
            type=_positive("timeout"),
            default=10.0,
            metavar="SECONDS",
            help="give up opening a connection to the "
            + ("target" if sp is ts else "tunnel server")
            + " after this long; the tunnelled connection is then reset (default: %(default)g)",
        )
        _liveness_options(sp)
        sp.set_defaults(func=cmd_tunnel)

    for name, func in (("serve", cmd_serve), ("connect", cmd_connect)):
        listening = name == "serve"
        if listening:
            sp = sub.add_parser(
                name,
                help="wait for one client: stdin -> peer, peer -> stdout (like nc -l)",
                description="Listens on HOST PORT (UDP) for one rudp client and copies "
                "stdin to it and its data to stdout, until both directions are closed. "
                "Other clients are refused while one is served.",
            )
        else:
            sp = sub.add_parser(
                name,
                help="connect to a server: stdin -> peer, peer -> stdout (like nc -N)",
                description="Connects to HOST PORT (UDP) and copies stdin to the server "
                "(EOF sends FIN: half-close) and its data to stdout, until both "
                "directions are closed.",
            )
        common(sp)
        _auth_option(sp)
        sp.add_argument(
            "host",
            metavar="HOST",
            help="address or name to listen on (0.0.0.0 or :: for all)"
            if listening
            else "server address or name",
        )
        sp.add_argument(
            "port",
            metavar="PORT",
            type=_port(allow_zero=listening),
            help="UDP port, 0..65535; 0 picks a free one and prints it"
            if listening
            else "UDP port, 1..65535",
        )
        if listening:
            sp.add_argument(
                "-k",
                "--keep-listening",
                action="store_true",
                help="after a client, wait for the next one instead of exiting (like nc -k)",
            )
        else:
            sp.add_argument(
                "--timeout",
                type=_positive("timeout"),
                default=None,
                metavar="SECONDS",
                help="give up connecting after this many seconds (default: after "
                f"{_DEFAULTS.syn_retries} SYN retransmissions, about 2 minutes)",
            )
        _liveness_options(sp)
        sp.set_defaults(func=func)
    return p


def _setup_logging(verbose: int) -> None:
    """The CLI is an application: it routes logging to stderr, never to stdout."""
    logging.basicConfig(stream=sys.stderr, format="rudp: %(levelname)s %(message)s")
    if verbose >= 2:
        log.set_level("debug")
    elif verbose == 1:
        log.set_level("info")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rudp`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.verbose = args.verbose + getattr(args, "verbose_sub", 0)
    _setup_logging(args.verbose)
    try:
        rc: int = args.func(args)
    except CliError as exc:
        _say(str(exc))
        return EXIT_ERROR
    except _UsageError as exc:
        _say(f"{args.command}: {exc} (see 'rudp {args.command} --help')")
        return EXIT_USAGE
    except _StdoutClosed:
        return EXIT_SIGPIPE
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
