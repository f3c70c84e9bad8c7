"""Cases, per-repetition metrics, medians, peer ratios and the PASS/FAIL targets."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .common import GB, MB, NO_GSO, JSONDict
from .runner import RepResult

Metrics = dict[str, float | None]


@dataclass
class Case:
    """One row of the results: a (loop, workload, stack, variant) and its repetitions."""

    loop: str
    workload: str
    stack: str
    variant: str  # "1400", "max", "kernel", "64 B", "seq", "c16", "1000 idle" ...
    mss: int | None
    params: JSONDict
    reps: list[RepResult] = field(default_factory=list)
    rep_metrics: list[Metrics] = field(default_factory=list)
    skipped: str | None = None  # reason, if the case could not run at all

    @property
    def key(self) -> str:
        return f"{self.loop}/{self.workload}/{self.stack}/{self.variant}"

    @property
    def ok_reps(self) -> int:
        return sum(1 for r in self.reps if r.ok)

    @property
    def errors(self) -> list[str]:
        errs = [r.error for r in self.reps if not r.ok and r.error]
        if self.skipped:
            errs.insert(0, self.skipped)
        return errs

    def median(self) -> Metrics:
        names: list[str] = []
        for m in self.rep_metrics:
            names.extend(k for k in m if k not in names)
        out: Metrics = {}
        for name in names:
            values = [
                v for m in self.rep_metrics if (v := m.get(name)) is not None and math.isfinite(v)
            ]
            out[name] = statistics.median(values) if values else None
        return out

    def to_json(self) -> JSONDict:
        return {
            "key": self.key,
            "loop": self.loop,
            "workload": self.workload,
            "stack": self.stack,
            "variant": self.variant,
            "mss": self.mss,
            "params": self.params,
            "ok_reps": self.ok_reps,
            "reps_run": len(self.reps),
            "skipped": self.skipped,
            "median": self.median(),
            "errors": self.errors,
            "reps": [
                {
                    "ok": r.ok,
                    "error": r.error,
                    "wall": r.wall,
                    "metrics": m,
                    "client": r.client,
                    "server": r.server,
                }
                for r, m in zip(self.reps, self.rep_metrics, strict=True)
            ],
        }


def case_from_json(data: JSONDict) -> Case:
    """Rebuild a :class:`Case` (with its repetitions) from :meth:`Case.to_json` output."""
    case = Case(
        loop=data["loop"],
        workload=data["workload"],
        stack=data["stack"],
        variant=data["variant"],
        mss=data.get("mss"),
        params=data.get("params") or {},
        skipped=data.get("skipped"),
    )
    for rep in data.get("reps") or []:
        case.reps.append(
            RepResult(
                ok=bool(rep.get("ok")),
                client=rep.get("client"),
                server=rep.get("server"),
                error=rep.get("error"),
                wall=float(rep.get("wall") or 0.0),
            )
        )
        case.rep_metrics.append(dict(rep.get("metrics") or {}))
    return case


# ------------------------------------------------------------ per-rep metrics


def _f(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _stat(stats: Any, name: str) -> float | None:
    return _f(stats.get(name)) if isinstance(stats, dict) else None


def _server_record(server: JSONDict | None, label: str | None = None) -> JSONDict:
    records = (server or {}).get("records") or []
    for rec in records:
        if label is None or rec.get("label") == label:
            return dict(rec)
    return {}


def _bulk_metrics(client: JSONDict, server_rec: JSONDict) -> Metrics:
    nbytes = _f(client.get("bytes"))
    gb = nbytes / GB if nbytes else None
    out: Metrics = {
        "goodput_MBps": _div(_f(client.get("goodput")), MB),
        "client_cpu_s_per_GB": _div(_f(client.get("cpu")), gb),
        "server_cpu_s_per_GB": _div(_f(server_rec.get("cpu")), gb),
    }
    cstats, sstats = client.get("stats"), server_rec.get("stats")
    if isinstance(cstats, dict) and isinstance(sstats, dict) and nbytes:
        mb = nbytes / MB
        data_segments = _stat(cstats, "segments_sent")
        pure_acks = _stat(sstats, "pure_acks_sent")
        mss = _stat(cstats, "snd_mss")
        full_segments = math.ceil(nbytes / mss) if mss else None
        out["segments_per_MB"] = _div(data_segments, mb)
        out["pure_acks_per_MB"] = _div(pure_acks, mb)
        out["pure_acks_per_segment"] = _div(pure_acks, _f(full_segments))
        retrans = [_stat(cstats, "retransmissions"), _stat(sstats, "retransmissions")]
        out["retransmissions"] = sum(r for r in retrans if r is not None)
    return out


def metrics_bulk(case: Case, client: JSONDict, server: JSONDict | None) -> Metrics:
    if case.stack == "udp":
        nbytes = _f(client.get("bytes"))
        gb = nbytes / GB if nbytes else None
        return {
            "goodput_MBps": _div(_f(client.get("goodput")), MB),
            "client_cpu_s_per_GB": _div(_f(client.get("cpu")), gb),
            "server_cpu_s_per_GB": _div(_f((server or {}).get("cpu")), gb),
            "loss_pct": _f(client.get("loss_pct")),
            "send_MBps": _div(_f(client.get("send_rate")), MB),
        }
    return _bulk_metrics(client, _server_record(server))


def metrics_rr(case: Case, client: JSONDict, server: JSONDict | None) -> Metrics:
    count = _f(client.get("count"))
    out: Metrics = {
        "p50_us": _f(client.get("p50_us")),
        "p99_us": _f(client.get("p99_us")),
        "p999_us": _f(client.get("p999_us")),
        "rate_per_s": _f(client.get("rate")),
        "client_cpu_us_per_rt": _div(_f(client.get("cpu")), count),
    }
    if out["client_cpu_us_per_rt"] is not None:
        out["client_cpu_us_per_rt"] *= 1e6
    s0, s1 = client.get("stats0"), client.get("stats")
    if isinstance(s0, dict) and isinstance(s1, dict) and count:
        for name, metric in (
            ("segments_sent", "segments_per_rt"),
            ("pure_acks_sent", "pure_acks_per_rt"),
        ):
            a, b = _stat(s0, name), _stat(s1, name)
            out[metric] = (b - a) / count if a is not None and b is not None else None
    return out


def metrics_setup(case: Case, client: JSONDict, server: JSONDict | None) -> Metrics:
    hs = client.get("handshake") or {}
    total = client.get("total") or {}
    return {
        "conn_per_s": _f(client.get("rate")),
        "handshake_p50_us": _f(hs.get("p50_us")),
        "handshake_p99_us": _f(hs.get("p99_us")),
        "total_p99_us": _f(total.get("p99_us")),
        "failures": _f(client.get("failures")),
    }


def metrics_idle(case: Case, client: JSONDict, server: JSONDict | None) -> Metrics:
    n = _f(client.get("idle_conns")) or 0.0
    with_idle = client.get("with_idle") or {}
    without = client.get("without_idle") or {}
    g_with = _div(_f(with_idle.get("goodput")), MB)
    g_without = _div(_f(without.get("goodput")), MB)
    snaps = (server or {}).get("rss_snapshots") or {}
    first, last = _f(snaps.get("1")), _f(snaps.get(str(int(n))))
    server_kib = (last - first) / (n - 1) / 1024 if first and last and n > 1 else None
    c0, c1 = _f(client.get("client_rss0")), _f(client.get("client_rss_idle"))
    client_kib = (c1 - c0) / n / 1024 if c0 is not None and c1 is not None and n else None
    ratio = _div(g_with, g_without)
    return {
        "goodput_idle_MBps": g_with,
        "goodput_no_idle_MBps": g_without,
        "idle_ratio_pct": ratio * 100 if ratio is not None else None,
        "server_KiB_per_conn": server_kib,
        "client_KiB_per_conn": client_kib,
        "open_s": _f(client.get("open_s")),
    }


METRICS: dict[str, Callable[[Case, JSONDict, JSONDict | None], Metrics]] = {
    "bulk": metrics_bulk,
    "rr": metrics_rr,
    "setup": metrics_setup,
    "idle": metrics_idle,
}

#: The metric a workload is judged and compared on.
PRIMARY = {
    "bulk": "goodput_MBps",
    "rr": "p50_us",
    "setup": "conn_per_s",
    "idle": "idle_ratio_pct",
}


def rep_metrics(case: Case, rep: RepResult) -> Metrics:
    if not rep.ok or rep.client is None:
        return {}
    return METRICS[case.workload](case, rep.client, rep.server)


# ------------------------------------------------------------------- peers


class Results:
    """All cases of a run, indexed for peer lookups."""

    def __init__(self, cases: list[Case]) -> None:
        self.cases = cases
        self._by_key = {c.key: c for c in cases}

    def find(self, loop: str, workload: str, stack: str, variant: str) -> Case | None:
        if workload == "bulk" and stack == "tcp":
            variant = "kernel"  # kernel TCP is measured once, compared at every MSS
        return self._by_key.get(f"{loop}/{workload}/{stack}/{variant}")

    def peer_value(self, case: Case, peer: str, metric: str) -> float | None:
        other = self.find(case.loop, case.workload, peer, case.variant)
        return other.median().get(metric) if other is not None else None

    def ratio(self, case: Case, peer: str, metric: str) -> float | None:
        if peer == case.stack:
            return None
        return _div(case.median().get(metric), self.peer_value(case, peer, metric))


# ----------------------------------------------------------------- targets

#: The loop the targets are defined on; other loops' verdicts are informational.
TARGET_LOOP = "uvloop"


@dataclass
class Target:
    name: str
    workload: str
    variant: str | None  # the row it belongs to (None: several rows)
    op: str  # ">=" or "<="
    threshold: float
    unit: str
    measured: float | None = None
    detail: str = ""
    loop: str = TARGET_LOOP
    #: The loop whose verdict counts (the default loop for the aioquic ratio).
    reference_loop: str = TARGET_LOOP

    @property
    def reference(self) -> bool:
        return self.loop == self.reference_loop

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        if self.op == ">=":
            return self.measured >= self.threshold
        return self.measured <= self.threshold

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]

    def to_json(self) -> JSONDict:
        return {
            "name": self.name,
            "loop": self.loop,
            "reference": self.reference,
            "workload": self.workload,
            "variant": self.variant,
            "op": self.op,
            "threshold": self.threshold,
            "unit": self.unit,
            "measured": self.measured,
            "result": self.verdict,
            "detail": self.detail,
        }


def evaluate_all_targets(results: Results) -> list[Target]:
    """Targets for every loop that has rudp results, the reference loop first."""
    loops = sorted(
        {c.loop for c in results.cases if c.stack == "rudp"}, key=lambda lp: lp != TARGET_LOOP
    )
    return [t for loop in loops for t in evaluate_targets(results, loop)]


def evaluate_targets(results: Results, loop: str = TARGET_LOOP) -> list[Target]:
    """The project's performance targets (issue 10), judged on rudp's medians under
    ``loop``; each target names the loop its verdict counts on."""
    targets: list[Target] = []

    def rudp(workload: str, variant: str) -> Case | None:
        return results.find(loop, workload, "rudp", variant)

    def peer(workload: str, stack: str, variant: str, metric: str) -> float | None:
        other = results.find(loop, workload, stack, variant)
        return other.median().get(metric) if other is not None else None

    def goodput(case: Case | None) -> float | None:
        return case.median().get("goodput_MBps") if case is not None else None

    nogso = rudp("bulk", f"1400 {NO_GSO}")
    t = Target(f"bulk@1400 {NO_GSO} >= 50% of udp", "bulk", f"1400 {NO_GSO}", ">=", 50.0, "%")
    r = _div(goodput(nogso), peer("bulk", "udp", "1400", "goodput_MBps"))
    t.measured = r * 100 if r is not None else None
    targets.append(t)

    bulk = rudp("bulk", "1400")
    t = Target("bulk@1400 GSO/GRO >= 1000 MB/s", "bulk", "1400", ">=", 1000.0, "MB/s")
    t.measured = goodput(bulk)
    ceiling = _div(t.measured, peer("bulk", "udp-gso", "1400", "goodput_MBps"))
    if ceiling is not None:
        t.detail = f"{ceiling * 100:.0f}% of udp-gso"
    targets.append(t)
    t = Target("bulk@1400 >= 8x aioquic", "bulk", "1400", ">=", 8.0, "x")
    t.reference_loop = "asyncio"  # aioquic's pacer needs the default loop's clock
    t.measured = results.ratio(bulk, "aioquic", "goodput_MBps") if bulk else None
    targets.append(t)

    largest = rudp("bulk", "max")
    t = Target("bulk@max >= 50% of tcp", "bulk", "max", ">=", 50.0, "%")
    r = results.ratio(largest, "tcp", "goodput_MBps") if largest else None
    t.measured = r * 100 if r is not None else None
    targets.append(t)

    rr = rudp("rr", "64 B")
    t = Target("rr 64 B p50 <= 1.5x tcp", "rr", "64 B", "<=", 1.5, "x")
    t.measured = results.ratio(rr, "tcp", "p50_us") if rr else None
    targets.append(t)
    t = Target("rr 64 B p99 <= 2x tcp", "rr", "64 B", "<=", 2.0, "x")
    t.measured = results.ratio(rr, "tcp", "p99_us") if rr else None
    targets.append(t)

    setup_rates = [
        (c.variant, v)
        for c in results.cases
        if c.loop == loop
        and c.workload == "setup"
        and c.stack == "rudp"
        and (v := c.median().get("conn_per_s")) is not None
    ]
    t = Target("setup >= 10000 conn/s (best mode)", "setup", None, ">=", 10000.0, "conn/s")
    if setup_rates:
        variant, best = max(setup_rates, key=lambda x: x[1])
        t.measured, t.detail, t.variant = best, f"mode {variant}", variant
    targets.append(t)

    idle_cases = [
        c for c in results.cases if c.loop == loop and c.workload == "idle" and c.stack == "rudp"
    ]
    idle = idle_cases[0] if idle_cases else None
    # The server's RSS per idle connection includes what the application holds (the
    # handler's task and asyncio stream objects), the same over kernel TCP: rudp is
    # judged on what it adds to that (kernel TCP's socket memory is not in RSS, so
    # this is, if anything, strict). `python -m benchmarks.conn_cost` measures
    # rudp's own objects per connection directly (tracemalloc).
    t = Target(
        "<= 4 KiB per idle connection beyond tcp's",
        "idle",
        idle.variant if idle else None,
        "<=",
        4.0,
        "KiB",
    )
    if idle is not None:
        mine = idle.median().get("server_KiB_per_conn")
        theirs = peer("idle", "tcp", idle.variant, "server_KiB_per_conn")
        t.measured = mine - theirs if mine is not None and theirs is not None else None
        if mine is not None and theirs is not None:
            t.detail = f"server RSS per connection: rudp {mine:.2f}, tcp {theirs:.2f} KiB"
    targets.append(t)
    t = Target(
        "bulk with idle conns within 10%",
        "idle",
        idle.variant if idle else None,
        ">=",
        90.0,
        "% of no-idle",
    )
    t.measured = idle.median().get("idle_ratio_pct") if idle else None
    targets.append(t)

    for case in results.cases:
        if case.loop == loop and case.workload == "bulk" and case.stack == "rudp":
            t = Target(
                f"pure ACKs <= 0.5/segment @{case.variant}",
                "bulk",
                case.variant,
                "<=",
                0.5,
                "ACK/seg",
            )
            t.measured = case.median().get("pure_acks_per_segment")
            targets.append(t)
    for t in targets:
        t.loop = loop
    return targets
