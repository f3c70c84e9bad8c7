"""The four workloads over stream stacks (rudp, tcp, aioquic): server and client halves.

Server halves run inside :class:`StreamServer` (one per server process); client
halves are the ``client_*`` coroutines. Both return plain JSON-able dicts; the
orchestrator turns them into metrics (:mod:`benchmarks.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .common import BULK_CHUNK, BULK_REPLY, CpuTimer, JSONDict, Spec, bounded, percentile, rss_bytes
from .stacks import BenchStream, StreamStack, make_stack

#: Give up on one connection attempt of the setup workload after this long.
CONNECT_TIMEOUT = 10.0
#: Idle workload: tag byte that opens each connection.
TAG_IDLE = b"I"
#: Idle workload: pause after aborting the idle connections before the next phase.
#: Kept short: after a longer idle spell the next few MB run measurably slower
#: (CPUs going cold), which would bias the comparison against the second phase.
SETTLE_S = 0.1


# ------------------------------------------------------------------ server


class StreamServer:
    """Server process state for one measurement over a stream stack."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.params = spec.params
        self.stack: StreamStack = make_stack(spec.stack, spec.mss)
        self.records: list[JSONDict] = []
        self.accepted = 0
        self.idle = 0
        self.rss_snapshots: dict[str, int] = {}
        self.rss_start = 0

    async def start(self) -> int:
        gc.collect()
        self.rss_start = rss_bytes()
        return await self.stack.start_server(self.spec.host, self.handle)

    async def stop(self) -> JSONDict:
        await self.stack.stop_server()
        return {
            "accepted": self.accepted,
            "records": self.records,
            "handler_errors": self.stack.handler_errors,
            "handler_resets": self.stack.handler_resets,
            "rss_start": self.rss_start,
            "rss_snapshots": self.rss_snapshots,
        }

    async def handle(self, stream: BenchStream) -> None:
        self.accepted += 1
        workload = self.spec.workload
        if workload == "bulk":
            await self.bulk(stream, "bulk")
        elif workload == "rr":
            await self.echo(stream)
        elif workload == "setup":
            await self.setup(stream)
        elif workload == "idle":
            tag = await stream.reader.readexactly(1)
            if tag == TAG_IDLE:
                await self.idle_connection(stream)
            else:
                await self.bulk(stream, tag.decode("ascii", "replace"))
        else:
            raise ValueError(f"unknown workload {workload!r}")

    async def bulk(self, stream: BenchStream, label: str) -> None:
        """Count bytes until EOF, then reply BULK_REPLY."""
        timer = CpuTimer()
        read = stream.reader.read
        received = 0
        while True:
            data = await read(1 << 20)
            if not data:
                break
            received += len(data)
        window = timer.result()
        stream.write(BULK_REPLY)
        await stream.drain()
        self.records.append({"label": label, "bytes": received, **window, "stats": stream.stats()})
        await stream.close()

    async def echo(self, stream: BenchStream) -> None:
        """Echo fixed-size messages until the client closes."""
        size = int(self.params["size"])
        readexactly = stream.reader.readexactly
        write = stream.write
        timer = CpuTimer()
        count = 0
        try:
            while True:
                write(await readexactly(size))
                count += 1
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
        self.records.append({"messages": count, **timer.result(), "stats": stream.stats()})
        await stream.close()

    async def setup(self, stream: BenchStream) -> None:
        """One echo of a fixed-size message, then wait for the client to close."""
        size = int(self.params["size"])
        stream.write(await stream.reader.readexactly(size))
        await stream.drain()
        with contextlib.suppress(ConnectionError):
            await stream.reader.read()
        await stream.close()

    async def idle_connection(self, stream: BenchStream) -> None:
        """Acknowledge, then hold the connection until the client ends it.

        RSS is sampled (after a full GC) when the first and the last expected idle
        connection arrive, before replying, so the client cannot race ahead.
        """
        self.idle += 1
        key = str(self.idle)
        if key not in self.rss_snapshots and self.idle in (1, int(self.params["idle_conns"])):
            gc.collect()
            self.rss_snapshots[key] = rss_bytes()
        try:
            stream.write(b"i")
            await stream.drain()
            with contextlib.suppress(ConnectionError):
                await stream.reader.read()
        finally:
            self.idle -= 1


# ------------------------------------------------------------------ client


async def send_bulk(stream: BenchStream, total: int, tag: bytes = b"") -> JSONDict:
    """Send ``total`` bytes, half-close, wait for the server's reply; time it all."""
    chunk = memoryview(bytes(BULK_CHUNK))
    write = stream.write
    drain = stream.drain
    timer = CpuTimer()
    if tag:
        write(tag)
    remaining = total
    while remaining >= BULK_CHUNK:
        write(chunk)
        await drain()
        remaining -= BULK_CHUNK
    if remaining:
        write(chunk[:remaining])
        await drain()
    stream.write_eof()
    reply = await stream.reader.readexactly(len(BULK_REPLY))
    window = timer.result()
    if reply != BULK_REPLY:
        raise RuntimeError(f"bad bulk reply {reply!r}")
    return {"bytes": total, **window, "goodput": total / window["wall"], "stats": stream.stats()}


async def client_bulk(stack: StreamStack, spec: Spec) -> JSONDict:
    stream = await stack.connect(spec.host, spec.port)
    result = await send_bulk(stream, int(spec.params["bytes"]))
    await stream.close()
    await stack.shutdown()
    return result


def latency_summary(samples_ns: list[int]) -> JSONDict:
    """Percentiles in microseconds of a list of nanosecond samples."""
    us = sorted(s / 1000.0 for s in samples_ns)
    return {
        "n": len(us),
        "p50_us": percentile(us, 50),
        "p90_us": percentile(us, 90),
        "p99_us": percentile(us, 99),
        "p999_us": percentile(us, 99.9),
        "max_us": us[-1] if us else float("nan"),
        "mean_us": sum(us) / len(us) if us else float("nan"),
    }


async def client_rr(stack: StreamStack, spec: Spec) -> JSONDict:
    size = int(spec.params["size"])
    count = int(spec.params["count"])
    warmup = int(spec.params.get("warmup", 0))
    msg = b"r" * size
    stream = await stack.connect(spec.host, spec.port)
    readexactly = stream.reader.readexactly
    write = stream.write
    for _ in range(warmup):
        write(msg)
        await readexactly(size)
    stats0 = stream.stats()
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    timer = CpuTimer()
    for _ in range(count):
        t0 = clock()
        write(msg)
        await readexactly(size)
        append(clock() - t0)
    window = timer.result()
    result = {
        "size": size,
        "count": count,
        **window,
        "rate": count / window["wall"],
        **latency_summary(samples),
        "stats0": stats0,
        "stats": stream.stats(),
    }
    await stream.close()
    await stack.shutdown()
    return result


async def client_setup(stack: StreamStack, spec: Spec) -> JSONDict:
    count = int(spec.params["count"])
    concurrency = max(1, int(spec.params.get("concurrency", 1)))
    size = int(spec.params["size"])
    warmup = int(spec.params.get("warmup", 0))
    msg = b"s" * size
    clock = time.perf_counter_ns
    handshakes: list[int] = []
    totals: list[int] = []
    failures: list[str] = []

    async def attempt() -> int:
        stream = await stack.connect(spec.host, spec.port)
        t1 = clock()
        stream.write(msg)
        await stream.drain()
        reply = await stream.reader.readexactly(size)
        if reply != msg:
            raise RuntimeError("bad echo")
        await stream.close(timeout=None)  # bounded with the whole attempt
        return t1

    async def one(record: bool) -> None:
        t0 = clock()
        try:
            # One deadline for the whole attempt (connect, echo, close): a timer per
            # step would cost every stack two more per connection.
            t1 = await bounded(attempt(), CONNECT_TIMEOUT)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            return
        t2 = clock()
        if record:
            handshakes.append(t1 - t0)
            totals.append(t2 - t0)

    async def worker(n: int, record: bool) -> None:
        for _ in range(n):
            await one(record)

    async def run(n: int, record: bool) -> None:
        share, extra = divmod(n, concurrency)
        await asyncio.gather(
            *(worker(share + (1 if i < extra else 0), record) for i in range(concurrency))
        )

    await run(warmup, record=False)
    timer = CpuTimer()
    await run(count, record=True)
    window = timer.result()
    await stack.shutdown()
    ok = len(totals)
    if failures and ok == 0:
        raise RuntimeError(f"all {len(failures)} connections failed; first: {failures[0]}")
    return {
        "count": count,
        "concurrency": concurrency,
        **window,
        "ok": ok,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "rate": ok / window["wall"],
        "handshake": latency_summary(handshakes),
        "total": latency_summary(totals),
    }


async def client_idle(stack: StreamStack, spec: Spec) -> JSONDict:
    """Open N idle connections, then compare bulk goodput with them open and without."""
    n_idle = int(spec.params["idle_conns"])
    total = int(spec.params["bytes"])
    warm = int(spec.params.get("warmup_bytes", 0))
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    idle: list[BenchStream] = []
    for _ in range(n_idle):
        stream = await stack.connect(spec.host, spec.port)
        stream.write(TAG_IDLE)
        await stream.drain()
        if await stream.reader.readexactly(1) != b"i":
            raise RuntimeError("bad idle acknowledgement")
        idle.append(stream)
    open_s = time.perf_counter() - t0
    gc.collect()
    rss_idle = rss_bytes()

    async def bulk(tag: bytes, nbytes: int) -> JSONDict:
        stream = await stack.connect(spec.host, spec.port)
        result = await send_bulk(stream, nbytes, tag=tag)
        await stream.close()
        return result

    if warm:
        await bulk(b"W", warm)
    with_idle = await bulk(b"B", total)
    for stream in idle:
        with contextlib.suppress(Exception):
            stream.abort()
    idle.clear()
    await stack.shutdown()
    await asyncio.sleep(SETTLE_S)
    if warm:  # the same warm-up before both phases: neither starts cold
        await bulk(b"W", warm)
    without_idle = await bulk(b"b", total)
    await stack.shutdown()
    return {
        "idle_conns": n_idle,
        "open_s": open_s,
        "client_rss0": rss0,
        "client_rss_idle": rss_idle,
        "with_idle": with_idle,
        "without_idle": without_idle,
    }


ClientFn = Callable[[StreamStack, Spec], Awaitable[JSONDict]]

CLIENTS: dict[str, ClientFn] = {
    "bulk": client_bulk,
    "rr": client_rr,
    "setup": client_setup,
    "idle": client_idle,
}


async def run_client(spec: Spec) -> JSONDict:
    stack = make_stack(spec.stack, spec.mss)
    result: dict[str, Any] = await CLIENTS[spec.workload](stack, spec)
    return result
