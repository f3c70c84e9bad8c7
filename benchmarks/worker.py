"""One side of one measurement, in its own process.

Usage (by the orchestrator): ``python -m benchmarks.worker '<Spec as JSON>'``.

The worker talks JSON lines on its original stdout; anything else the process
prints (libraries, warnings) is redirected to stderr. Events:

* server: ``{"event": "ready", "port": N}`` once listening; then, after the
  orchestrator writes ``stop`` (or closes stdin), ``{"event": "result", ...}``;
* client: ``{"event": "result", ...}`` when the workload is done.

A result is ``{"ok": true, "metrics": {...}}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine
from typing import IO, Any, Protocol

from .common import JSONDict, Spec, raise_fd_limit

Emit = Callable[[JSONDict], None]


class _Server(Protocol):
    async def start(self) -> int: ...

    async def stop(self) -> JSONDict: ...


def _clean(value: Any) -> Any:
    """NaN/inf are not JSON: map them to None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _protocol_stream() -> IO[str]:
    """Keep the real stdout for the JSON protocol; send everything else to stderr."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def _make_server(spec: Spec) -> _Server:
    if spec.stack == "udp":
        from .udp_peer import UdpServer

        return UdpServer(spec)
    if spec.stack == "udp-gso":
        from .udp_gso import UdpGsoServer

        return UdpGsoServer(spec)
    from .workloads import StreamServer

    return StreamServer(spec)


async def _server_main(spec: Spec, emit: Emit) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def wait_stdin() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.readline()  # "stop", or EOF if the orchestrator went away
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stop.set)

    server = _make_server(spec)
    port = await server.start()
    threading.Thread(target=wait_stdin, name="stdin", daemon=True).start()
    emit({"event": "ready", "port": port, "pid": os.getpid()})
    await stop.wait()
    metrics = await server.stop()
    emit({"event": "result", "ok": True, "metrics": metrics})


async def _client_main(spec: Spec, emit: Emit) -> None:
    if spec.stack == "udp":
        from .udp_peer import run_client
    elif spec.stack == "udp-gso":
        from .udp_gso import run_client
    else:
        from .workloads import run_client
    metrics = await run_client(spec)
    emit({"event": "result", "ok": True, "metrics": metrics})


def _run(spec: Spec, main: Coroutine[Any, Any, None]) -> None:
    if spec.loop == "uvloop":
        import uvloop

        if hasattr(asyncio, "Runner"):  # Python >= 3.11
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main)
        else:
            uvloop.install()
            asyncio.run(main)
    elif spec.loop == "asyncio":
        asyncio.run(main)
    else:
        main.close()
        raise ValueError(f"unknown event loop {spec.loop!r}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = _protocol_stream()

    def emit(event: JSONDict) -> None:
        out.write(json.dumps(_clean(event)) + "\n")
        out.flush()

    try:
        if len(args) != 1:
            raise SystemExit("usage: python -m benchmarks.worker '<spec json>'")
        spec = Spec.from_json(args[0])
        if spec.params.get("gso") is False:
            # rudp's socket layer without UDP GSO/GRO (read when a socket is set up).
            os.environ["RUDP_NO_GSO"] = os.environ["RUDP_NO_GRO"] = "1"
        raise_fd_limit()
        if spec.cpu is not None and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {spec.cpu})
        coro = _server_main(spec, emit) if spec.role == "server" else _client_main(spec, emit)
        _run(spec, coro)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        emit(
            {
                "event": "result",
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8),
            }
        )
        out.close()
        os._exit(1)
    out.close()
    # Skip interpreter teardown: lingering sockets/tasks must not delay the exit.
    os._exit(0)


if __name__ == "__main__":
    main()
