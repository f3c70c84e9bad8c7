"""Rich tables of the medians, peer ratios and PASS/FAIL targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .common import STACKS
from .metrics import TARGET_LOOP, Case, Results, Target

Fmt = Callable[[float | None], str]


def fmt(decimals: int) -> Fmt:
    def f(value: float | None) -> str:
        if value is None:
            return "—"
        return f"{value:,.{decimals}f}"

    return f


def fmt_auto(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


#: Per workload: (column title, metric, formatter).
COLUMNS: dict[str, list[tuple[str, str, Fmt]]] = {
    "bulk": [
        ("MB/s", "goodput_MBps", fmt(1)),
        ("cli CPU s/GB", "client_cpu_s_per_GB", fmt(2)),
        ("srv CPU s/GB", "server_cpu_s_per_GB", fmt(2)),
        ("segs/MB", "segments_per_MB", fmt(0)),
        ("ACKs/MB", "pure_acks_per_MB", fmt(1)),
        ("ACK/seg", "pure_acks_per_segment", fmt(3)),
        ("rexmit", "retransmissions", fmt(0)),
        ("loss %", "loss_pct", fmt(2)),
    ],
    "rr": [
        ("p50 µs", "p50_us", fmt(1)),
        ("p99 µs", "p99_us", fmt(1)),
        ("p99.9 µs", "p999_us", fmt(1)),
        ("msg/s", "rate_per_s", fmt(0)),
        ("cli CPU µs/rt", "client_cpu_us_per_rt", fmt(1)),
        ("segs/rt", "segments_per_rt", fmt(2)),
    ],
    "setup": [
        ("conn/s", "conn_per_s", fmt(0)),
        ("hs p50 µs", "handshake_p50_us", fmt(0)),
        ("hs p99 µs", "handshake_p99_us", fmt(0)),
        ("total p99 µs", "total_p99_us", fmt(0)),
        ("failed", "failures", fmt(0)),
    ],
    "idle": [
        ("MB/s no idle", "goodput_no_idle_MBps", fmt(1)),
        ("MB/s w/ idle", "goodput_idle_MBps", fmt(1)),
        ("w/ ÷ w/o %", "idle_ratio_pct", fmt(1)),
        ("srv KiB/conn", "server_KiB_per_conn", fmt(2)),
        ("cli KiB/conn", "client_KiB_per_conn", fmt(2)),
        ("open s", "open_s", fmt(2)),
    ],
}

#: Per workload: (column title, peer, metric) ratio columns (row value ÷ peer value).
RATIOS: dict[str, list[tuple[str, str, str]]] = {
    "bulk": [
        ("÷tcp", "tcp", "goodput_MBps"),
        ("÷aioquic", "aioquic", "goodput_MBps"),
        ("÷udp", "udp", "goodput_MBps"),
    ],
    "rr": [("p50 ÷tcp", "tcp", "p50_us"), ("p99 ÷tcp", "tcp", "p99_us")],
    "setup": [("÷tcp", "tcp", "conn_per_s"), ("÷aioquic", "aioquic", "conn_per_s")],
    "idle": [],
}

TITLES = {
    "bulk": "bulk: one connection, client → server, goodput and cost",
    "rr": "rr: closed-loop request/response latency",
    "setup": "setup: open + one 64 B exchange + close",
    "idle": "idle: bulk goodput with idle connections open; memory per idle connection",
}


def _verdict_text(targets: Sequence[Target]) -> Text:
    text = Text()
    for i, t in enumerate(targets):
        if i:
            text.append("\n")
        style = {True: "bold green", False: "bold red", None: "dim"}[t.passed]
        text.append(t.verdict, style=style)
        text.append(f" {t.name}", style="dim")
    return text


def _stack_order(stack: str) -> int:
    return STACKS.index(stack) if stack in STACKS else len(STACKS)


def workload_table(
    workload: str, results: Results, targets: Sequence[Target], peers: Sequence[str]
) -> Table | None:
    cases = [c for c in results.cases if c.workload == workload]
    if not cases:
        return None
    table = Table(title=TITLES[workload], title_justify="left", show_lines=False)
    table.add_column("loop")
    table.add_column("stack")
    table.add_column("variant")
    table.add_column("mss", justify="right")
    cols = [c for c in COLUMNS[workload] if any(c[1] in x.median() for x in cases)]
    for title, _, _ in cols:
        table.add_column(title, justify="right")
    ratios = [r for r in RATIOS[workload] if r[1] in peers]
    for title, _, _ in ratios:
        table.add_column(title, justify="right", style="cyan")
    show_targets = any(c.stack == "rudp" and c.loop == "uvloop" for c in cases) and any(
        t.workload == workload for t in targets
    )
    if show_targets:
        table.add_column(f"target ({TARGET_LOOP} = reference)")
    table.add_column("reps", justify="right")

    variants = list(dict.fromkeys(c.variant for c in cases))
    ordered = sorted(
        cases,  # kernel TCP's single bulk row first, then by variant, then by stack
        key=lambda c: (
            c.loop,
            c.variant != "kernel",
            variants.index(c.variant),
            _stack_order(c.stack),
        ),
    )
    previous: tuple[str, str] | None = None
    for case in ordered:
        group = (case.loop, case.variant)
        if previous is not None and group != previous:
            table.add_section()
        previous = group
        med = case.median()
        row: list[str | Text] = [
            case.loop,
            case.stack,
            case.variant,
            str(case.mss) if case.mss is not None else "—",
        ]
        row.extend(f(med.get(metric)) for _, metric, f in cols)
        row.extend(fmt_ratio(results.ratio(case, peer, metric)) for _, peer, metric in ratios)
        if show_targets:
            mine = [
                t
                for t in targets
                if case.stack == "rudp"
                and t.loop == case.loop
                and t.workload == workload
                and t.variant == case.variant
            ]
            row.append(_verdict_text(mine))
        n_ok = case.ok_reps
        reps = f"{n_ok}/{len(case.reps)}"
        if case.skipped:
            row.append(Text("skipped", style="yellow"))
        else:
            row.append(Text(reps, style="red") if n_ok < len(case.reps) else reps)
        table.add_row(*row)
    return table


def targets_table(targets: Sequence[Target]) -> Table:
    table = Table(
        title="targets (rudp medians; dim: not the target's reference loop)",
        title_justify="left",
    )
    table.add_column("loop")
    table.add_column("target")
    table.add_column("measured", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("result")
    table.add_column("detail", style="dim")
    for t in targets:
        style = {True: "bold green", False: "bold red", None: "dim"}[t.passed]
        if not t.reference:
            style = "dim"
        table.add_row(
            t.loop,
            t.name,
            f"{fmt_auto(t.measured)} {t.unit}" if t.measured is not None else "—",
            f"{t.op} {t.threshold:g} {t.unit}",
            Text(t.verdict, style=style),
            t.detail,
        )
    return table


def errors_table(cases: Sequence[Case]) -> Table | None:
    failing = [c for c in cases if c.errors]
    if not failing:
        return None
    table = Table(title="failed measurements", title_justify="left")
    table.add_column("case")
    table.add_column("failed", justify="right")
    table.add_column("first error", overflow="fold")
    for case in failing:
        failed = "skipped" if case.skipped else f"{len(case.reps) - case.ok_reps}/{len(case.reps)}"
        table.add_row(case.key, failed, case.errors[0][:300])
    return table


def print_report(
    console: Console,
    results: Results,
    targets: Sequence[Target],
    workloads: Sequence[str],
    peers: Sequence[str],
) -> None:
    for workload in workloads:
        table = workload_table(workload, results, targets, peers)
        if table is not None:
            console.print(table)
            console.print()
    shown = [t for t in targets if t.workload in workloads]
    if shown:
        console.print(targets_table(shown))
        console.print()
    errs = errors_table(results.cases)
    if errs is not None:
        console.print(errs)
