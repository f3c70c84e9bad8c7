"""Cost of a connection: memory per idle connection and setups per second.

    python -m benchmarks.conn_cost [--conns 2000] [--loop asyncio|uvloop]

Memory is what :mod:`tracemalloc` sees allocated (and still held after a full
collection) while N established, idle connections exist, divided by N for each
end, so it counts Python objects only (not socket buffers):

* ``engine``: two :class:`rudp.engine.Endpoint` objects hand datagrams to each
  other directly; N connections are opened and accepted (the application keeps
  both ends); the growth divided by 2N is the cost of one connection end;
* ``aio``: a server and N clients in this process on loopback
  (:func:`rudp.aio.create_server`/:func:`rudp.aio.create_connection` with a do-nothing
  protocol on each end, the client's on one shared endpoint): growth / 2N.

``engine_setups_per_s`` is N handshakes and closes through the two engines,
timed (concurrent: all N opened before the first answer); the asyncio setup rate
with the server in another process is the ``setup`` workload of ``python -m
benchmarks``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from rudp import Config
from rudp.engine import ConnectionAccepted, Endpoint
from rudp.engine.connection import Connection

A = ("10.0.0.1", 1)
B = ("10.0.0.2", 2)
PORT = 80


def _pump(cli: Endpoint, srv: Endpoint, now: float, accepted: list[Connection]) -> None:
    while True:
        out_c, out_s = cli.datagrams_to_send(now), srv.datagrams_to_send(now)
        if not out_c and not out_s:
            return
        for data, _ in out_c:
            srv.receive_datagram(data, A, now)
        for data, _ in out_s:
            cli.receive_datagram(data, B, now)
        while (ev := srv.next_event()) is not None:
            if isinstance(ev, ConnectionAccepted):
                accepted.append(ev.conn)
        while cli.next_event() is not None:
            pass


def _endpoints(n: int) -> tuple[Endpoint, Endpoint]:
    cfg = Config()
    cli, srv = Endpoint(cfg, seed=1), Endpoint(cfg, seed=2)
    srv.listen(PORT, backlog=n)
    return cli, srv


def _measure(build: Callable[[], object]) -> tuple[int, object]:
    """Bytes still allocated after ``build()`` (and a full collection), and its result."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, kept


def engine_memory(n: int) -> dict[str, Any]:
    cli, srv = _endpoints(n)
    _pump(cli, srv, 0.0, [])

    def build() -> object:
        accepted: list[Connection] = []
        conns = [cli.connect(B, PORT, 0.0) for _ in range(n)]
        _pump(cli, srv, 0.0, accepted)
        return conns, accepted

    grown, kept = _measure(build)
    conns, accepted = kept  # type: ignore[misc]
    established = sum(c.state.value == "ESTABLISHED" for c in conns + accepted)
    return {"conns": n, "established_ends": established, "bytes_per_end": grown / (2 * n)}


def engine_setups(n: int) -> dict[str, Any]:
    cli, srv = _endpoints(n)
    accepted: list[Connection] = []
    t0 = time.perf_counter()
    conns = [cli.connect(B, PORT, 0.0) for _ in range(n)]
    _pump(cli, srv, 0.0, accepted)
    for c in conns:
        c.close(0.0)
    for c in accepted:
        c.close(0.0)
    _pump(cli, srv, 0.0, accepted)
    wall = time.perf_counter() - t0
    if len(accepted) != n:
        raise RuntimeError(f"{len(accepted)} of {n} connections were accepted")
    return {"conns": n, "wall": wall, "engine_setups_per_s": n / wall}


class _Idle(asyncio.Protocol):
    pass


async def aio_memory(n: int) -> dict[str, Any]:
    from rudp import aio

    host = "127.0.0.1"
    server = await aio.create_server(_Idle, host, 0, backlog=n)
    port = server.addresses[0][1]
    # One connection first: the shared client endpoint and its socket exist before.
    first, _ = await aio.create_connection(_Idle, host, port)
    kept: list[Any] = []

    async def open_all() -> None:
        for start in range(0, n, 64):
            batch = [aio.create_connection(_Idle, host, port) for _ in range(min(64, n - start))]
            kept.extend(await asyncio.gather(*batch))
        await asyncio.sleep(0.2)  # the server accepts the last ones

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await open_all()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    for transport, _ in kept:
        transport.abort()
    first.abort()
    server.close()
    await server.wait_closed()
    return {"conns": n, "bytes_per_end": (after - before) / (2 * n)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conns", type=int, default=2000)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = p.parse_args()
    result: dict[str, Any] = {
        "engine_memory": engine_memory(args.conns),
        "engine_setups": engine_setups(args.conns),
    }
    if args.loop == "uvloop":
        import uvloop

        result["aio_memory"] = uvloop.run(aio_memory(args.conns))
    else:
        result["aio_memory"] = asyncio.run(aio_memory(args.conns))
    result["loop"] = args.loop
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
