"""``python -m benchmarks.linuxpeer``: rudp's senders and Linux's on the same path.

Every run is one bulk transfer of fixed duration to a Linux receiver (side B, see
:mod:`.lab`) over the same impairment (:mod:`.impair`, seeded: with the same seed
the n-th TCP packet of each direction meets the same fate in every run):

* ``linux-<cc>``: a kernel sender in namespace A with ``TCP_CONGESTION`` = cc,
  its TUN device joined to B's by the :class:`~.bridge.Forwarder`;
* ``rudp-<cc>``: the rudp engine with ``Config(congestion_control=cc)`` as side A,
  through the :class:`~.bridge.EngineBridge` on B's TUN device.

Throughput is what B's application (:mod:`.peer`, a process of its own) read
between ``accept()`` returning and ``duration`` seconds later, divided by
``duration``; the stream is a repeating pseudo-random pattern the receiver checks
as it reads. The sender's state (cwnd, ssthresh, srtt, retransmissions...) is
sampled every 0.25 s. The bridge is Python on one core, so a "capacity" part first
measures the largest rate it forwards with no impairment (kernel to kernel, and
with the rudp engine), for reading the rest. See docs/interop-linux.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import platform
import resource
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rudp import Config
from rudp.engine import Connection, Endpoint, Event
from rudp.sim import LinkConfig
from rudp.sim.host import BulkApp, Host

from ..common import JSONDict
from ..machine import machine_info
from .bridge import EngineBridge, Forwarder
from .lab import A4, B4, TunHost, drain
from .netns import unavailable_reason
from .peer import CHUNK, SAMPLE_INTERVAL, pattern
from .tcpinfo import tcp_info

ROOT = Path(__file__).resolve().parent.parent.parent
SENDERS = ("linux-cubic", "linux-bbr", "rudp-reno", "rudp-cubic", "rudp-bbr")
MB = 1_000_000
#: Linux's largest autotuned send buffer (net.ipv4.tcp_wmem[2] default), given to
#: rudp's sender as snd_buf so neither sender is held back by its buffer.
LINUX_WMEM_MAX = 4 * 1024 * 1024
#: The kernel sender's payload per segment with timestamps on a 1500-byte MTU
#: (1500 - 20 IP - 20 TCP - 12 timestamps): rudp's MSS in the benchmark.
MSS = 1448
PORT_BASE = 9100


@dataclass(frozen=True)
class PathSpec:
    """The impaired path, the same each way."""

    loss: float = 0.01
    rtt: float = 0.040  # seconds (twice the one-way delay)
    rate: float | None = None  # bytes/s bottleneck, None: none
    queue: int | None = None  # bytes of queue before the bottleneck

    def link(self) -> LinkConfig:
        return LinkConfig(
            delay=self.rtt / 2, loss=self.loss, rate=self.rate, queue_limit=self.queue
        )

    def describe(self) -> str:
        text = f"{self.loss:.2%} random loss each way, {self.rtt * 1000:.0f} ms RTT"
        if self.rate is not None:
            text += f", {self.rate * 8 / 1e6:g} Mbit/s bottleneck"
            if self.queue is not None:
                text += f" ({self.queue} B queue)"
        return text


@dataclass
class Settings:
    duration: float = 20.0
    path: PathSpec = field(default_factory=PathSpec)
    seeds: list[int] = field(default_factory=lambda: [1])
    senders: list[str] = field(default_factory=lambda: list(SENDERS))
    capacity_duration: float = 5.0
    capacity_senders: list[str] = field(default_factory=lambda: ["linux-cubic", "rudp-cubic"])
    rudp_snd_buf: int = LINUX_WMEM_MAX
    mss: int = MSS
    loop: str = "asyncio"
    samples: bool = True  # keep the sender's state every 0.25 s in the JSON


# ------------------------------------------------------------ the two ends


class StreamApp(BulkApp):
    """rudp's sending application: the pattern, endlessly, while the send buffer
    is below its high-water mark."""

    def __init__(self, data: bytes) -> None:
        super().__init__(b"")
        self.shut = True  # never half-close: the run ends with an abort
        self.pattern = memoryview(data)
        self.sent = 0
        self.stopped = False

    def pump(self, now: float) -> None:
        conn = self.conn
        if conn is None or self.terminated or self.stopped:
            return
        size = len(self.pattern)
        while not conn.writing_paused:
            pos = self.sent % size
            conn.send(self.pattern[pos : pos + CHUNK], now)
            self.sent += CHUNK
        if conn.readable:
            conn.read()

    def on_event(self, ev: Event, now: float) -> None:
        if not self.stopped:
            super().on_event(ev, now)


async def _kernel_sender(sock: socket.socket, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    pos = 0
    with contextlib.suppress(OSError):
        while True:
            await loop.sock_sendall(sock, view[pos : pos + CHUNK])
            pos = (pos + CHUNK) % len(data)


def _abort(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): nothing lingers into the next run."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class ReceiverProcess:
    """B's application (:mod:`.peer`) in its own process inside B's namespace."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, b: TunHost, port: int, duration: float) -> ReceiverProcess:
        proc = await asyncio.create_subprocess_exec(
            *("ip", "netns", "exec", b.ns.name, sys.executable, "-m", "benchmarks.linuxpeer.peer"),
            B4,
            str(port),
            str(duration),
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        self = cls(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            await self.stop()
            raise RuntimeError(f"receiver did not start: {line!r}")
        return self

    async def result(self, timeout: float) -> JSONDict:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        await self.proc.wait()
        if not line:
            raise RuntimeError(f"receiver exited with {self.proc.returncode} and no result")
        out: JSONDict = json.loads(line)
        return out

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


# ------------------------------------------------------------------- one run


@dataclass
class Run:
    sender: str
    seed: int
    duration: float
    path: str
    error: str | None = None
    bytes: int = 0
    mb_per_s: float = 0.0
    verified: bool = False
    timeline: list[float] = field(default_factory=list)  # MB/s in each second
    samples: list[list[Any]] = field(default_factory=list)  # rows of SAMPLE_FIELDS
    cpu: float = 0.0  # the bridge process's CPU time / wall time
    sender_stats: JSONDict = field(default_factory=dict)
    bridge: JSONDict = field(default_factory=dict)

    def as_json(self, samples: bool = True) -> JSONDict:
        """The run as JSON; without the sender's state every 0.25 s unless ``samples``."""
        out = dataclasses.asdict(self)
        if not samples:
            del out["samples"]
        # The path's counters by role, whichever bridge carried the run.
        br = self.bridge
        out["path"] = {"data": br.get("a2b", {}), "acks": br.get("b2a", {})}
        return out


#: The sample's fields, in order (``Run.samples`` rows).
SAMPLE_FIELDS = (
    "t",  # seconds since the sender's connection was established
    "received",  # bytes B's application had read (its own clock, from accept())
    "cwnd",  # bytes
    "ssthresh",  # bytes, None while unset
    "srtt_ms",
    "retrans",  # retransmitted segments so far
    "in_flight",  # bytes (Linux: unacked segments x MSS)
    "pacing_rate",  # bytes/s, None when not pacing
    "sent",  # bytes the sender sent so far, retransmissions included
    "delivery_rate",  # the sender's last delivery-rate sample, bytes/s (None: none)
)


def linux_sample(sock: socket.socket) -> list[Any]:
    """The sender's state for :data:`SAMPLE_FIELDS` (from cwnd on)."""
    i = tcp_info(sock)
    mss = i.snd_mss
    pacing = i.pacing_rate if i.pacing_rate not in (None, 2**64 - 1) else None
    return [
        i.snd_cwnd * mss,
        None if i.snd_ssthresh >= 0x7FFFFFFF else i.snd_ssthresh * mss,
        i.rtt / 1000,
        i.total_retrans,
        i.unacked * mss,
        pacing,
        i.bytes_sent,
        i.delivery_rate,
    ]


def rudp_sample(conn: Connection) -> list[Any]:
    st = conn.stats()
    ssthresh = st["ssthresh"]
    srtt = st["srtt"]
    return [
        st["cwnd"],
        None if ssthresh is None or ssthresh >= 1 << 30 else ssthresh,
        None if srtt is None else round(srtt * 1000, 3),
        st["retransmissions"],
        st["in_flight"],
        st["pacing_rate"] or None,
        st["bytes_sent"],
        None if st["delivery_rate"] is None else round(st["delivery_rate"]),
    ]


async def _measure(
    run: Run,
    t0: float,
    receiver: ReceiverProcess,
    probe: Callable[[], list[Any]],
    snapshot: Callable[[], tuple[JSONDict, JSONDict]],
) -> None:
    """Sample the sender every :data:`.peer.SAMPLE_INTERVAL` from ``t0`` (its
    connection established), record its state at ``t0 + duration``, then collect
    what the receiver counted in the ``duration`` after its ``accept()``."""
    loop = asyncio.get_running_loop()
    cpu0 = _cpu()
    steps = int(run.duration / SAMPLE_INTERVAL + 1e-9)
    for k in range(steps + 1):
        await asyncio.sleep(max(0.0, t0 + k * SAMPLE_INTERVAL - loop.time()))
        run.samples.append([round(k * SAMPLE_INTERVAL, 3), None, *probe()])
    await asyncio.sleep(max(0.0, t0 + run.duration - loop.time()))
    run.cpu = (_cpu() - cpu0) / max(loop.time() - t0, 1e-9)
    run.sender_stats, run.bridge = snapshot()
    result = await receiver.result(10 + run.duration)
    run.bytes = int(result["bytes"])
    run.verified = bool(result["verified"])
    run.mb_per_s = run.bytes / run.duration / MB
    marks: list[int] = result["marks"]
    for row, mark in zip(run.samples, marks, strict=False):
        row[1] = mark
    per_second = round(1 / SAMPLE_INTERVAL)
    run.timeline = [(b - a) / MB for a, b in itertools.pairwise(marks[::per_second])]


async def run_linux(
    cc: str, a: TunHost, b: TunHost, link: LinkConfig, seed: int, run: Run, port: int
) -> None:
    loop = asyncio.get_running_loop()
    fw = Forwarder(a.fd, b.fd, a2b=link, b2a=link, seed=seed)
    fw.start()
    sock = a.tcp_socket()
    receiver: ReceiverProcess | None = None
    task: asyncio.Future[None] | None = None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        receiver = await ReceiverProcess.start(b, port, run.duration)
        await asyncio.wait_for(loop.sock_connect(sock, (B4, port)), 10)
        t0 = loop.time()
        task = asyncio.ensure_future(_kernel_sender(sock, pattern()))

        def snapshot() -> tuple[JSONDict, JSONDict]:
            return tcp_info(sock).as_dict(), fw.stats()

        await _measure(run, t0, receiver, lambda: linux_sample(sock), snapshot)
    finally:
        if task is not None:
            task.cancel()
        _abort(sock)
        if receiver is not None:
            await receiver.stop()
        fw.close()


async def run_rudp(
    cc: str,
    b: TunHost,
    link: LinkConfig,
    seed: int,
    run: Run,
    port: int,
    settings: Settings,
) -> None:
    loop = asyncio.get_running_loop()
    config = Config(congestion_control=cc, mss=settings.mss, snd_buf=settings.rudp_snd_buf)
    host = Host(Endpoint(config, seed=seed))
    bridge = EngineBridge(b.fd, host, [A4], to_kernel=link, to_engine=link, seed=seed)
    bridge.start()
    app = StreamApp(pattern())
    conn: Connection | None = None
    receiver: ReceiverProcess | None = None
    try:
        receiver = await ReceiverProcess.start(b, port, run.duration)
        conn = host.connect(app, EngineBridge.kernel_address(B4), port, bridge.now())
        bridge.kick()
        deadline = loop.time() + 10
        while app.established_at is None:
            if app.terminated or loop.time() > deadline:
                raise ConnectionError(f"rudp could not connect: {app.error!r}")
            await asyncio.sleep(0.001)
        t0 = loop.time()
        c = conn

        def snapshot() -> tuple[JSONDict, JSONDict]:
            return c.stats(), bridge.stats()

        await _measure(run, t0, receiver, lambda: rudp_sample(c), snapshot)
    finally:
        app.stopped = True
        if conn is not None:
            conn.abort(bridge.now())
            bridge.kick()
        if receiver is not None:
            await receiver.stop()
        bridge.close()


async def run_one(
    sender: str, a: TunHost, b: TunHost, path: PathSpec, seed: int, duration: float, port: int,
    settings: Settings,
) -> Run:  # fmt: skip
    run = Run(sender=sender, seed=seed, duration=duration, path=path.describe())
    kind, _, cc = sender.partition("-")
    link = path.link()
    try:
        if kind == "linux":
            await run_linux(cc, a, b, link, seed, run, port)
        elif kind == "rudp":
            await run_rudp(cc, b, link, seed, run, port, settings)
        else:
            raise ValueError(f"unknown sender {sender!r} (linux-<cc> or rudp-<cc>)")
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    # Let the aborted ends' last packets land, then forget them: every run starts
    # on empty devices.
    await asyncio.sleep(0.2)
    drain(a.fd)
    drain(b.fd)
    return run


# ----------------------------------------------------------------- reporting


def kernel_info(ns_host: TunHost) -> JSONDict:
    def read(key: str) -> str | None:
        try:
            return ns_host.ns.read_sysctl(key)
        except OSError:
            return None

    return {
        "release": platform.release(),
        "available_congestion_control": read("net.ipv4.tcp_available_congestion_control"),
        "default_congestion_control": read("net.ipv4.tcp_congestion_control"),
        "tcp_sack": read("net.ipv4.tcp_sack"),
        "tcp_timestamps": read("net.ipv4.tcp_timestamps"),
        "tcp_window_scaling": read("net.ipv4.tcp_window_scaling"),
        "tcp_rmem": read("net.ipv4.tcp_rmem"),
        "tcp_wmem": read("net.ipv4.tcp_wmem"),
    }


def _row_stats(run: Run) -> tuple[str, str, str, str]:
    """Retransmissions, RTOs, srtt (ms), data packets dropped (lost or queue
    overflow) / sent."""
    st = run.sender_stats
    data = run.bridge.get("a2b", {})
    lost = f"{data.get('lost', 0) + data.get('queue_drops', 0)}/{data.get('sent', 0)}"
    if run.sender.startswith("linux"):
        rtos = st.get("total_rto")
        srtt = st.get("rtt")
        return (
            str(st.get("total_retrans", "")),
            "" if rtos is None else str(rtos),
            "" if srtt is None else f"{srtt / 1000:.1f}",
            lost,
        )
    srtt_s = st.get("srtt")
    return (
        str(st.get("retransmissions", "")),
        str(st.get("rto_expiries", "")),
        "" if srtt_s is None else f"{srtt_s * 1000:.1f}",
        lost,
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def table(runs: Sequence[Run], reference: str = "linux-bbr") -> str:
    """One line per sender (mean over seeds), ratio to ``reference``."""
    by: dict[str, list[Run]] = {}
    for r in runs:
        by.setdefault(r.sender, []).append(r)
    ref_runs = [r for r in by.get(reference, []) if r.error is None]
    ref = _mean([r.mb_per_s for r in ref_runs]) if ref_runs else None
    head = (
        f"{'sender':<13} {'MB/s':>7} {'x ' + reference:>13} {'retrans':>8} {'RTOs':>5} "
        f"{'srtt ms':>8} {'data drop/sent':>15} {'CPU':>5}  ok"
    )
    lines = [head, "-" * len(head)]
    for sender, group in by.items():
        good = [r for r in group if r.error is None]
        if not good:
            lines.append(f"{sender:<13} {'-':>7}  error: {group[0].error}")
            continue
        mbps = _mean([r.mb_per_s for r in good])
        ratio = f"{mbps / ref:.2f}" if ref else "-"
        retrans, rtos, srtt, lost = _row_stats(good[-1])
        cpu = _mean([r.cpu for r in good])
        ok = "yes" if all(r.verified for r in good) else "NO"
        lines.append(
            f"{sender:<13} {mbps:>7.3f} {ratio:>13} {retrans:>8} {rtos:>5} {srtt:>8} "
            f"{lost:>15} {cpu:>5.0%}  {ok}"
        )
    if len({r.seed for r in runs}) > 1:
        lines.append("(MB/s and CPU: mean over seeds; other columns: the last seed's run)")
    return "\n".join(lines)


def capacity_table(runs: Sequence[Run]) -> str:
    head = f"{'sender':<13} {'MB/s':>8} {'packets/s':>10} {'CPU':>5}"
    lines = [head, "-" * len(head)]
    for r in runs:
        if r.error is not None:
            lines.append(f"{r.sender:<13} error: {r.error}")
            continue
        pkts = sum(r.bridge.get(d, {}).get("sent", 0) for d in ("a2b", "b2a"))
        lines.append(f"{r.sender:<13} {r.mb_per_s:>8.1f} {pkts / r.duration:>10.0f} {r.cpu:>5.0%}")
    return "\n".join(lines)


# --------------------------------------------------------------------- main


async def run_all(
    settings: Settings, say: Callable[[str], None]
) -> tuple[JSONDict, list[Run], list[Run]]:
    """Every run of ``settings``: the JSON document, the capacity runs, the runs."""
    port = PORT_BASE
    with TunHost.side_a() as a, TunHost.side_b() as b:
        kinfo = kernel_info(a)
        say(
            f"kernel {kinfo['release']}; congestion controls available: "
            f"{kinfo['available_congestion_control']}"
        )
        capacity: list[Run] = []
        if settings.capacity_duration > 0:
            say(f"capacity (no impairment, {settings.capacity_duration:g} s each):")
            for sender in settings.capacity_senders:
                port += 1
                r = await run_one(
                    sender, a, b, PathSpec(loss=0.0, rtt=0.0), 0, settings.capacity_duration,
                    port, settings,
                )  # fmt: skip
                capacity.append(r)
                say(f"  {sender}: {r.mb_per_s:.1f} MB/s" + (f" ({r.error})" if r.error else ""))
        runs: list[Run] = []
        say(f"path: {settings.path.describe()}; {settings.duration:g} s per run")
        for seed in settings.seeds:
            for sender in settings.senders:
                port += 1
                t = time.monotonic()
                r = await run_one(
                    sender, a, b, settings.path, seed, settings.duration, port, settings
                )
                runs.append(r)
                say(
                    f"  seed {seed} {sender}: {r.mb_per_s:.3f} MB/s"
                    + (f" ({r.error})" if r.error else "")
                    + f" [{time.monotonic() - t:.1f} s]"
                )
    doc = {
        "settings": {
            **{k: v for k, v in dataclasses.asdict(settings).items() if k != "path"},
            "path": dataclasses.asdict(settings.path),
            "path_text": settings.path.describe(),
        },
        "kernel": kinfo,
        "machine": machine_info(ROOT),
        "git_commit": _git_head(),
        "sample_fields": list(SAMPLE_FIELDS) if settings.samples else None,
        "capacity": [r.as_json(settings.samples) for r in capacity],
        "runs": [r.as_json(settings.samples) for r in runs],
        "summary": {
            s: _mean([r.mb_per_s for r in runs if r.sender == s and r.error is None])
            for s in dict.fromkeys(r.sender for r in runs)
        },
    }
    return doc, capacity, runs


def _git_head() -> str | None:
    """The checkout's commit (``benchmarks.machine`` reads ``.git`` as a directory,
    which a git worktree does not have)."""
    try:
        res = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        )
    except OSError:
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.linuxpeer",
        description="Bulk transfers of fixed duration to a Linux receiver over one "
        "impaired path (TUN devices in network namespaces, a Python bridge): Linux's "
        "senders against rudp's. Needs root. See docs/interop-linux.md.",
    )
    p.add_argument("--duration", type=float, default=20.0, help="seconds per run (20)")
    p.add_argument("--loss", type=float, default=0.01, help="random loss each way (0.01)")
    p.add_argument("--rtt", type=float, default=40.0, help="round-trip time in ms (40)")
    p.add_argument("--rate", type=float, default=None, help="bottleneck in Mbit/s each way (none)")
    p.add_argument(
        "--queue",
        type=float,
        default=1.0,
        help="bottleneck queue in bandwidth-delay products (1; with --rate)",
    )
    p.add_argument("--seeds", type=_ints, default=[1], help="impairment seeds, e.g. 1,2,3")
    p.add_argument(
        "--senders",
        type=_names,
        default=list(SENDERS),
        help=f"comma-separated (default {','.join(SENDERS)})",
    )
    p.add_argument(
        "--capacity-duration",
        type=float,
        default=5.0,
        help="seconds per capacity run with no impairment (5; 0 skips them)",
    )
    p.add_argument(
        "--capacity-senders",
        type=_names,
        default=["linux-cubic", "rudp-cubic"],
        help="senders of the capacity part (linux-cubic,rudp-cubic)",
    )
    p.add_argument(
        "--rudp-snd-buf",
        type=int,
        default=LINUX_WMEM_MAX,
        help=f"rudp's Config.snd_buf ({LINUX_WMEM_MAX}, Linux's tcp_wmem maximum)",
    )
    p.add_argument("--mss", type=int, default=MSS, help=f"rudp's Config.mss ({MSS})")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument(
        "--no-samples",
        dest="samples",
        action="store_false",
        help="leave the sender's state every 0.25 s out of the JSON (about 5 times smaller)",
    )
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    rate = None if args.rate is None else args.rate * 1e6 / 8
    rtt = args.rtt / 1000
    queue = None if rate is None else max(1500, int(args.queue * rate * rtt))
    return Settings(
        duration=args.duration,
        path=PathSpec(loss=args.loss, rtt=rtt, rate=rate, queue=queue),
        seeds=args.seeds,
        senders=args.senders,
        capacity_duration=args.capacity_duration,
        capacity_senders=args.capacity_senders,
        rudp_snd_buf=args.rudp_snd_buf,
        mss=args.mss,
        loop=args.loop,
        samples=args.samples,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = settings_from(args)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if settings.loop == "uvloop":
        import uvloop

        doc, capacity, runs = uvloop.run(run_all(settings, say))
    else:
        doc, capacity, runs = asyncio.run(run_all(settings, say))
    if capacity:
        print("Bridge capacity, no impairment:")
        print(capacity_table(capacity))
        print()
    print(f"{settings.path.describe()}, {settings.duration:g} s, seeds {settings.seeds}:")
    print(table(runs))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0 if all(r.error is None for r in runs) else 1
