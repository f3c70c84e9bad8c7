"""``python -m benchmarks.linuxpeer.fair``: flows of one sender sharing a bottleneck,
Linux's kernel against rudp's engine, on the same real-time path.

The simulated path table (``python -m benchmarks.paths --parts fair``) asks whether
``n`` flows of one controller share a link fairly (Jain's index). This runs the
same experiment with real senders so the answer can be read against Linux: ``n``
bulk flows start ``stagger`` seconds apart towards ``n`` receivers in namespace B
(:mod:`.peer`, one process each), all through one impaired path (one
:class:`~.impair.Stage` per direction, so one bottleneck queue), and each flow's
goodput is what its receiver read in a common window: from the last start plus
``warmup`` for ``measure`` seconds.

* ``linux-<cc>``: ``n`` kernel sockets in namespace A (``TCP_CONGESTION`` = cc),
  A's TUN device joined to B's by the :class:`~.bridge.Forwarder`;
* ``rudp-<cc>``: ``n`` connections of one rudp endpoint
  (``Config(congestion_control=cc)``) through the :class:`~.bridge.EngineBridge`
  on B's TUN device.

Needs root (see docs/interop-linux.md). Real time: a run lasts
``(n - 1) * stagger + warmup + measure`` seconds plus start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rudp import Config
from rudp.engine import Connection, Endpoint
from rudp.sim.host import Host

from ..common import JSONDict
from ..machine import machine_info
from ..paths.scenarios import jain
from .bench import (
    LINUX_WMEM_MAX,
    MSS,
    PathSpec,
    ReceiverProcess,
    StreamApp,
    _abort,
    _cpu,
    _git_head,
    _ints,
    _kernel_sender,
    _names,
    kernel_info,
)
from .bridge import EngineBridge, Forwarder
from .lab import A4, B4, TunHost, drain
from .netns import unavailable_reason
from .peer import pattern
from .tcpinfo import tcp_info

PORT_BASE = 9300


@dataclass
class FairSettings:
    senders: list[str] = field(default_factory=lambda: ["linux-cubic", "rudp-cubic"])
    flows: list[int] = field(default_factory=lambda: [2])
    rate_mbps: float = 100.0
    rtt_ms: float = 50.0
    queue_bdp: float = 1.0
    loss: float = 0.0
    stagger: float = 2.0
    warmup: float = 10.0
    measure: float = 40.0
    seeds: list[int] = field(default_factory=lambda: [1])
    mss: int = MSS
    rudp_snd_buf: int = LINUX_WMEM_MAX

    def path(self) -> PathSpec:
        rate = self.rate_mbps * 1e6 / 8
        rtt = self.rtt_ms / 1000
        return PathSpec(
            loss=self.loss, rtt=rtt, rate=rate, queue=max(1500, int(self.queue_bdp * rate * rtt))
        )


@dataclass
class FairRun:
    sender: str
    flows: int
    seed: int
    error: str | None = None
    goodput: list[float] = field(default_factory=list)  # bytes/s of each flow, in the window
    jain: float | None = None
    link_pct: float = 0.0  # all flows' goodput in the window / the bottleneck rate
    per_second: list[list[float]] = field(default_factory=list)  # MB/s of each flow, each second
    verified: bool = False
    cpu: float = 0.0
    path: JSONDict = field(default_factory=dict)  # the stages' counters
    senders: list[JSONDict] = field(default_factory=list)  # each sender's final state


def bytes_at(result: JSONDict, t: float) -> float:
    """Bytes a receiver had read at monotonic time ``t`` (linear between its
    0.25 s marks; 0 before its accept, its last mark after the end)."""
    t0 = float(result["accepted_at"])
    step = float(result["sample_interval"])
    marks: list[int] = result["marks"]
    x = (t - t0) / step
    if x <= 0:
        return 0.0
    i = int(x)
    if i + 1 >= len(marks):
        return float(marks[-1])
    return marks[i] + (marks[i + 1] - marks[i]) * (x - i)


def window_goodput(result: JSONDict, start: float, end: float) -> float:
    return (bytes_at(result, end) - bytes_at(result, start)) / (end - start)


def per_second(result: JSONDict, t_from: float, t_to: float) -> list[float]:
    """MB/s in each whole second from ``t_from`` (monotonic) to ``t_to``."""
    out = []
    t = t_from
    while t + 1 <= t_to + 1e-9:
        out.append(round((bytes_at(result, t + 1) - bytes_at(result, t)) / 1e6, 3))
        t += 1
    return out


async def _sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.monotonic()))


async def run_fair(
    sender: str, n: int, seed: int, a: TunHost, b: TunHost, s: FairSettings, port0: int
) -> FairRun:
    run = FairRun(sender=sender, flows=n, seed=seed)
    kind, _, cc = sender.partition("-")
    path = s.path()
    link = path.link()
    loop = asyncio.get_running_loop()
    # Every receiver reads until the end of the common window (plus a margin).
    receivers: list[ReceiverProcess] = []
    cleanup: list[Callable[[], None]] = []
    tasks: list[asyncio.Future[None]] = []
    stats: Callable[[], tuple[list[JSONDict], JSONDict]]
    try:
        total = (n - 1) * s.stagger + s.warmup + s.measure + 1.0
        for i in range(n):
            receivers.append(await ReceiverProcess.start(b, port0 + i, total - i * s.stagger))
        t_start = time.monotonic() + 0.2
        if kind == "linux":
            fw = Forwarder(a.fd, b.fd, a2b=link, b2a=link, seed=seed)
            fw.start()
            cleanup.append(fw.close)
            socks: list[socket.socket] = []
            for i in range(n):
                await _sleep_until(t_start + i * s.stagger)
                sock = a.tcp_socket()
                socks.append(sock)
                cleanup.append(lambda sock=sock: _abort(sock))  # type: ignore[misc]
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
                await asyncio.wait_for(loop.sock_connect(sock, (B4, port0 + i)), 10)
                tasks.append(asyncio.ensure_future(_kernel_sender(sock, pattern())))

            def linux_stats() -> tuple[list[JSONDict], JSONDict]:
                return [tcp_info(x).as_dict() for x in socks], fw.stats()

            stats = linux_stats
        elif kind == "rudp":
            config = Config(congestion_control=cc, mss=s.mss, snd_buf=s.rudp_snd_buf)
            host = Host(Endpoint(config, seed=seed))
            bridge = EngineBridge(b.fd, host, [A4], to_kernel=link, to_engine=link, seed=seed)
            bridge.start()
            cleanup.append(bridge.close)
            apps: list[StreamApp] = []
            conns: list[Connection] = []
            for i in range(n):
                await _sleep_until(t_start + i * s.stagger)
                app = StreamApp(pattern())
                apps.append(app)
                conns.append(
                    host.connect(app, EngineBridge.kernel_address(B4), port0 + i, bridge.now())
                )
                bridge.kick()

            def stop_rudp() -> None:
                for app, conn in zip(apps, conns, strict=True):
                    app.stopped = True
                    conn.abort(bridge.now())
                bridge.kick()

            cleanup.insert(-1, stop_rudp)  # before the bridge closes

            def rudp_stats() -> tuple[list[JSONDict], JSONDict]:
                return [
                    {k: v for k, v in c.stats().items() if isinstance(v, (int, float, str))}
                    for c in conns
                ], bridge.stats()

            stats = rudp_stats
        else:
            raise ValueError(f"unknown sender {sender!r} (linux-<cc> or rudp-<cc>)")
        w_start = t_start + (n - 1) * s.stagger + s.warmup
        w_end = w_start + s.measure
        cpu0, c0 = _cpu(), time.monotonic()
        await _sleep_until(w_end + 0.1)
        run.cpu = (_cpu() - cpu0) / (time.monotonic() - c0)
        run.senders, run.path = stats()
        results = [await r.result(30 + total) for r in receivers]
        run.verified = all(bool(r["verified"]) for r in results)
        run.goodput = [window_goodput(r, w_start, w_end) for r in results]
        run.jain = jain(run.goodput)
        run.link_pct = 100 * sum(run.goodput) / path.rate if path.rate else 0.0
        run.per_second = [per_second(r, t_start, w_end) for r in results]
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        for t in tasks:
            t.cancel()
        for fn in cleanup:
            with contextlib.suppress(Exception):
                fn()
        for r in receivers:
            await r.stop()
    await asyncio.sleep(0.2)
    drain(a.fd)
    drain(b.fd)
    return run


def table(runs: Sequence[FairRun]) -> str:
    head = f"{'sender':<12} {'flows':>5} {'seed':>4} {'Jain':>6} {'link %':>7}  shares %   ok"
    lines = [head, "-" * len(head)]
    for r in runs:
        if r.error is not None:
            lines.append(f"{r.sender:<12} {r.flows:>5} {r.seed:>4}  error: {r.error}")
            continue
        tot = sum(r.goodput) or 1.0
        shares = " ".join(f"{100 * g / tot:.0f}" for g in r.goodput)
        jain_text = "-" if r.jain is None else f"{r.jain:.3f}"
        lines.append(
            f"{r.sender:<12} {r.flows:>5} {r.seed:>4} {jain_text:>6} {r.link_pct:>7.1f}  "
            f"{shares:<10} {'yes' if r.verified else 'NO'}"
        )
    return "\n".join(lines)


async def run_all(s: FairSettings, say: Callable[[str], None]) -> tuple[JSONDict, list[FairRun]]:
    runs: list[FairRun] = []
    port = PORT_BASE
    with TunHost.side_a() as a, TunHost.side_b() as b:
        kinfo = kernel_info(a)
        say(f"kernel {kinfo['release']}; path: {s.path().describe()}")
        for seed in s.seeds:
            for n in s.flows:
                for sender in s.senders:
                    t = time.monotonic()
                    r = await run_fair(sender, n, seed, a, b, s, port)
                    port += n
                    runs.append(r)
                    say(
                        f"  {sender} x{n} seed {seed}: "
                        + (r.error or f"Jain {r.jain:.3f}, link {r.link_pct:.1f}%")
                        + f" [{time.monotonic() - t:.0f} s]"
                    )
    doc: JSONDict = {
        "settings": asdict(s),
        "path_text": s.path().describe(),
        "kernel": kinfo,
        "machine": machine_info(Path(__file__).resolve().parents[2]),
        "git_commit": _git_head(),
        "runs": [asdict(r) for r in runs],
    }
    return doc, runs


def parser() -> argparse.ArgumentParser:
    d = FairSettings()
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.linuxpeer.fair",
        description="Flows of one sender sharing a bottleneck (Jain's index), Linux's "
        "kernel against rudp's engine on the same real-time path. Needs root.",
    )
    p.add_argument("--senders", type=_names, default=d.senders, help="linux-<cc>,rudp-<cc>")
    p.add_argument("--flows", type=_ints, default=d.flows, help="flow counts, e.g. 2,4 (2)")
    p.add_argument("--rate", type=float, default=d.rate_mbps, help="bottleneck, Mbit/s (100)")
    p.add_argument("--rtt", type=float, default=d.rtt_ms, help="round-trip time, ms (50)")
    p.add_argument("--queue", type=float, default=d.queue_bdp, help="queue, BDPs (1)")
    p.add_argument("--loss", type=float, default=d.loss, help="random loss each way (0)")
    p.add_argument("--stagger", type=float, default=d.stagger, help="s between starts (2)")
    p.add_argument("--warmup", type=float, default=d.warmup, help="s after the last start (10)")
    p.add_argument("--measure", type=float, default=d.measure, help="window, s (40)")
    p.add_argument("--seeds", type=_ints, default=d.seeds, help="seeds, e.g. 1,2,3 (1)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    s = FairSettings(
        senders=args.senders,
        flows=args.flows,
        rate_mbps=args.rate,
        rtt_ms=args.rtt,
        queue_bdp=args.queue,
        loss=args.loss,
        stagger=args.stagger,
        warmup=args.warmup,
        measure=args.measure,
        seeds=args.seeds,
    )
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    doc, runs = asyncio.run(run_all(s, say))
    print(
        f"{doc['path_text']}; flows start {s.stagger:g} s apart; window {s.measure:g} s "
        f"from the last start + {s.warmup:g} s:"
    )
    print(table(runs))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0 if all(r.error is None for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
