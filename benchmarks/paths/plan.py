"""What a run measures: controllers found at run time, the path grid, durations and
the fairness, reordering and lost-tail scenarios."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rudp import ConfigError
from rudp.engine.congestion import ALGORITHMS, lookup

from .scenarios import MSS, Job, JSONDict, PathSpec

#: The controllers the issue asks about, always listed (as "not available" if absent).
ISSUE_CONTROLLERS = ("reno", "cubic", "bbr")
#: Mixed pairs sharing one bottleneck (first named starts first).
MIXED_PAIRS = (("cubic", "reno"), ("bbr", "cubic"))

#: The grid of the issue: loss x RTT x link x buffer.
FULL_GRID: JSONDict = {
    "loss": [0.0, 0.001, 0.01, 0.05],
    "rtt_ms": [10.0, 50.0, 200.0],
    "rate_mbps": [10.0, 100.0],
    "buffer_bdp": [0.5, 2.0],
}
QUICK_GRID: JSONDict = {
    "loss": [0.0, 0.01],
    "rtt_ms": [50.0],
    "rate_mbps": [10.0, 100.0],
    "buffer_bdp": [0.5, 2.0],
}
#: Buffer of the zero-loss utilisation rows (the ">= 95 % at 1 BDP" target).
UTIL_BUFFER_BDP = 1.0

PARTS = ("grid", "util", "fair", "mixed", "reorder", "tail")

# Datagram of a full segment as the simulator counts it: payload + 20-byte TCP header.
_WIRE_SEGMENT = MSS + 20


def registered_controllers() -> list[str]:
    """Names in the engine's congestion-control registry."""
    return sorted(ALGORITHMS)


def controller_available(name: str) -> bool:
    """True if ``name`` is a registered congestion controller."""
    try:
        lookup(name)
    except ConfigError:
        return False
    return True


def resolve_controllers(requested: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(available, not available) among the requested names, or among the issue's
    three plus anything else registered when nothing is requested."""
    if requested:
        names = list(dict.fromkeys(requested))
    else:
        names = list(ISSUE_CONTROLLERS)
        names += [n for n in registered_controllers() if n not in names]
    available = [n for n in names if controller_available(n)]
    return available, [n for n in names if n not in available]


@dataclass(slots=True)
class Settings:
    """Everything that shapes a run (recorded in the JSON output)."""

    quick: bool = False
    seed: int = 1
    grid: JSONDict = field(default_factory=lambda: dict(FULL_GRID))
    ack_loss: bool = False
    warmup: float | None = None  # fixed warm-up for every row, else the rule below
    measure: float | None = None  # fixed measurement window, else the rule below
    scale: float = 1.0  # multiplies the rule's durations
    parts: tuple[str, ...] = PARTS
    fair_flows: tuple[int, ...] = (2, 4)
    fair_rate_mbps: float = 100.0
    fair_rtt_ms: float = 50.0
    fair_buffer_bdp: float = 1.0
    fair_stagger: float = 2.0
    fair_warmup: float = 10.0
    fair_measure: float = 40.0
    #: Jitter on the fairness jobs' ACK path, ms. With none, the simulator is in
    #: lock-step: flows' sending phases stay aligned with the tail-drop queue's
    #: free slots, and a drop-tail queue then discriminates between flows by
    #: phase alone (Floyd & Jacobson, "On Traffic Phase Effects in Packet-Switched
    #: Gateways", 1992, whose remedy is this: a small random delay). Measured at
    #: 0 ms: cubic 2 flows Jain 0.808, bbr 4 flows 0.854; at 1 ms 0.948, 0.946.
    #: Real paths always have some (benchmarks/linuxpeer/fair.py, against Linux).
    fair_ack_jitter_ms: float = 1.0
    mixed: tuple[tuple[str, str], ...] = MIXED_PAIRS
    reorder: float = 0.1
    reorder_delay_ms: float = 5.0
    special_rate_mbps: float = 10.0  # the reordering and lost-tail path
    special_rtt_ms: float = 50.0
    special_buffer_bdp: float = 2.0
    tail_bytes: int = 140_000

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if not quick:
            return cls()
        return cls(
            quick=True,
            grid=dict(QUICK_GRID),
            fair_rate_mbps=10.0,
            fair_stagger=1.0,
            fair_warmup=5.0,
            fair_measure=15.0,
        )

    def durations(self, path: PathSpec) -> tuple[float, float]:
        """(warm-up, measurement) in virtual seconds for one grid row.

        Full: warm-up max(2 s, 20 RTT); measurement max(100 RTT, the time the link
        needs for 100,000 full segments, capped at 40 s), i.e. 11.4 s at 100 Mbit/s
        (20 s at 200 ms) and 40 s at 10 Mbit/s. Quick: max(1 s, 10 RTT) and
        max(40 RTT, 25,000 segments capped at 20 s).
        """
        seg_per_s = path.rate / _WIRE_SEGMENT
        if self.quick:
            warmup = max(1.0, 10 * path.rtt)
            measure = max(40 * path.rtt, min(20.0, 25_000 / seg_per_s))
        else:
            warmup = max(2.0, 20 * path.rtt)
            measure = max(100 * path.rtt, min(40.0, 100_000 / seg_per_s))
        warmup *= self.scale
        measure *= self.scale
        if self.warmup is not None:
            warmup = self.warmup
        if self.measure is not None:
            measure = self.measure
        return round(warmup, 6), round(measure, 6)

    def grid_paths(self) -> list[PathSpec]:
        g = self.grid
        return [
            PathSpec(rate, rtt, buf, loss, ack_loss=self.ack_loss and loss > 0)
            for rate in g["rate_mbps"]
            for rtt in g["rtt_ms"]
            for buf in g["buffer_bdp"]
            for loss in g["loss"]
        ]

    def util_paths(self) -> list[PathSpec]:
        g = self.grid
        return [
            PathSpec(rate, rtt, UTIL_BUFFER_BDP) for rate in g["rate_mbps"] for rtt in g["rtt_ms"]
        ]

    def fair_path(self) -> PathSpec:
        return PathSpec(
            self.fair_rate_mbps,
            self.fair_rtt_ms,
            self.fair_buffer_bdp,
            ack_jitter_ms=self.fair_ack_jitter_ms,
        )

    def special_path(self, reorder: bool) -> PathSpec:
        return PathSpec(
            self.special_rate_mbps,
            self.special_rtt_ms,
            self.special_buffer_bdp,
            reorder=self.reorder if reorder else 0.0,
            reorder_delay_ms=self.reorder_delay_ms if reorder else 0.0,
        )


def build_jobs(settings: Settings, controllers: Sequence[str]) -> list[Job]:
    """Every job of a run, in report order."""
    s = settings
    jobs: list[Job] = []
    for cc in controllers:
        if "grid" in s.parts:
            for path in s.grid_paths():
                jobs.append(Job("grid", (cc,), path, *s.durations(path), s.seed))
        if "util" in s.parts:
            for path in s.util_paths():
                jobs.append(Job("util", (cc,), path, *s.durations(path), s.seed))
        if "reorder" in s.parts:
            path = s.special_path(reorder=True)
            jobs.append(Job("reorder", (cc,), path, *s.durations(path), s.seed))
        if "tail" in s.parts:
            path = s.special_path(reorder=False)
            jobs.append(Job("tail", (cc,), path, 0.0, 0.0, s.seed, size=s.tail_bytes))
        if "fair" in s.parts:
            for n in s.fair_flows:
                jobs.append(
                    Job(
                        "fair",
                        (cc,) * n,
                        s.fair_path(),
                        s.fair_warmup,
                        s.fair_measure,
                        s.seed,
                        stagger=s.fair_stagger,
                    )
                )
    if "mixed" in s.parts:
        for pair in s.mixed:
            if all(cc in controllers for cc in pair):
                jobs.append(
                    Job(
                        "mixed",
                        tuple(pair),
                        s.fair_path(),
                        s.fair_warmup,
                        s.fair_measure,
                        s.seed,
                        stagger=s.fair_stagger,
                    )
                )
    return jobs
