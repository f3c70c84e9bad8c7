"""The ``rudp`` command line (also ``python -m rudp``).

* ``rudp demo`` -- a real transfer between a local server and client over UDP on
  this machine, with a progress bar and a throughput/latency summary.
* ``rudp serve HOST PORT`` / ``rudp connect HOST PORT`` -- netcat-like: stdin to
  the connection, the connection to stdout; EOF on stdin half-closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from . import __version__, log
from .aio import open_connection, start_server
from .config import MAX_MSS, MIN_MSS, Config

CHUNK = 256 * 1024
_DEFAULTS = Config()


def _install_loop(name: str) -> str:
    if name == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise SystemExit("uvloop is not installed (pip install uvloop)") from None
        return "asyncio"
    if sys.version_info >= (3, 12):  # pragma: no cover - newer Pythons
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        uvloop.install()
    return "uvloop"


# --------------------------------------------------------------------- demo
async def _demo(size: int, mss: int, rounds: int, host: str) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    cfg = Config(mss=mss)
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

    server = await start_server(handle, host, 0, config=cfg)
    port = server.addresses[0][1]
    reader, writer = await open_connection(host, port, config=cfg)

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
        TransferSpeedColumn(),
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
        "throughput_MBps": sent / elapsed / 1e6,
        "hash_ok": digest == client_hash.digest() and received == sent,
        "rtt_p50_us": statistics.median(rtts) * 1e6 if rtts else None,
        "rtt_p99_us": rtts[int(len(rtts) * 0.99) - 1] * 1e6 if rtts else None,
        "segments_sent": stats["segments_sent"],
        "retransmissions": stats["retransmissions"],
        "srtt_ms": (stats["srtt"] or 0) * 1e3,
        "mss": mss,
    }


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    loop_name = _install_loop(args.loop)
    size = int(args.size * 1024 * 1024)
    result = asyncio.run(_demo(size, args.mss, args.rounds, args.host))
    table = Table(title=f"rudp demo: {args.host} over UDP, loop={loop_name}, MSS={args.mss}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("transferred", f"{result['bytes'] / 2**20:.1f} MiB")
    table.add_row("time", f"{result['seconds']:.2f} s")
    table.add_row("throughput", f"{result['throughput_MBps']:.1f} MB/s")
    table.add_row("SHA-256 verified", "yes" if result["hash_ok"] else "NO")
    if result["rtt_p50_us"] is not None:
        table.add_row("64 B round trip p50", f"{result['rtt_p50_us']:.0f} µs")
        table.add_row("64 B round trip p99", f"{result['rtt_p99_us']:.0f} µs")
    table.add_row("smoothed RTT", f"{result['srtt_ms']:.2f} ms")
    table.add_row("segments sent", str(result["segments_sent"]))
    table.add_row("retransmissions", str(result["retransmissions"]))
    Console().print(table)
    return 0 if result["hash_ok"] else 1


# ------------------------------------------------------------ serve/connect
async def _pump_stdin(writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    while True:
        # A thread works for every kind of stdin (regular files cannot be polled).
        data = await loop.run_in_executor(None, os.read, fd, CHUNK)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.write_eof()


async def _pump_stdout(reader: asyncio.StreamReader) -> None:
    out = sys.stdout.buffer
    while data := await reader.read(CHUNK):
        out.write(data)
    out.flush()


async def _netcat(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await asyncio.gather(_pump_stdin(writer), _pump_stdout(reader))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await writer.wait_closed()


def _config(args: argparse.Namespace) -> Config:
    return Config(
        mss=args.mss,
        keepalive=args.keepalive,
        user_timeout=args.user_timeout,
    )


async def _serve(args: argparse.Namespace) -> int:
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    busy = False

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal busy
        if busy:  # netcat semantics: one connection at a time
            writer.transport.abort()
            return
        busy = True
        try:
            await _netcat(reader, writer)
        except Exception as exc:
            if not finished.done():
                finished.set_exception(exc)
        else:
            if not finished.done():
                finished.set_result(None)

    server = await start_server(handle, args.host, args.port, config=_config(args))
    print(f"rudp: listening on {server.addresses}", file=sys.stderr)
    try:
        await finished
    finally:
        server.close()
        await server.wait_closed()
    return 0


async def _connect(args: argparse.Namespace) -> int:
    reader, writer = await open_connection(args.host, args.port, config=_config(args))
    await _netcat(reader, writer)
    return 0


def _run_netcat(
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace
) -> int:
    _install_loop(args.loop)
    try:
        return asyncio.run(main(args))
    except (ConnectionError, TimeoutError) as exc:
        print(f"rudp: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def cmd_serve(args: argparse.Namespace) -> int:
    return _run_netcat(_serve, args)


def cmd_connect(args: argparse.Namespace) -> int:
    return _run_netcat(_connect, args)


def _mss(value: str) -> int:
    n = int(value)
    if not MIN_MSS <= n <= MAX_MSS:
        raise argparse.ArgumentTypeError(f"MSS must be in [{MIN_MSS}, {MAX_MSS}]")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rudp", description="TCP segments over UDP, for asyncio.")
    p.add_argument("--version", action="version", version=f"rudp {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log every rudp event")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
        sp.add_argument("--mss", type=_mss, default=_DEFAULTS.mss)

    d = sub.add_parser("demo", help="transfer between a local server and client over UDP")
    common(d)
    d.add_argument("--size", type=float, default=256.0, help="MiB to upload (default 256)")
    d.add_argument("--rounds", type=int, default=2000, help="64-byte round trips to time")
    d.add_argument("--host", default="127.0.0.1")
    d.set_defaults(func=cmd_demo)

    for name, func, text in (
        ("serve", cmd_serve, "accept one connection: stdin -> peer, peer -> stdout"),
        ("connect", cmd_connect, "connect: stdin -> peer, peer -> stdout"),
    ):
        sp = sub.add_parser(name, help=text)
        common(sp)
        sp.add_argument("host")
        sp.add_argument("port", type=int)
        sp.add_argument("--keepalive", action="store_true", help="enable keepalive probes")
        sp.add_argument("--user-timeout", type=float, default=_DEFAULTS.user_timeout)
        sp.set_defaults(func=func)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        log.set_level("debug")
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
