"""Tables and PASS/FAIL targets from a run's results: rich, plain text and Markdown."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .scenarios import JSONDict


@dataclass(slots=True)
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Column indexes that hold text (left-aligned); the rest are right-aligned numbers.
    text_columns: tuple[int, ...] = (0,)


def _f(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _pct_capped(value: float | None) -> str:
    if value is None:
        return "—"
    return ">100" if value > 100 else f"{value:.1f}"


def _loss(p: float) -> str:
    return "0" if p == 0 else f"{100 * p:g}%"


def _path_cells(path: JSONDict) -> list[str]:
    return [
        f"{path['rate_mbps']:g}M",
        f"{path['rtt_ms']:g}ms",
        f"{path['buffer_bdp']:g}",
        _loss(path["loss"]),
    ]


def _flow(result: JSONDict | None) -> JSONDict | None:
    if result is None or "error" in result:
        return None
    flows: list[JSONDict] = result["flows"]
    return flows[0]


def _index(results: Iterable[JSONDict], kind: str) -> dict[tuple[Any, ...], JSONDict]:
    """Single-flow results of one kind, by (controller, path)."""
    out: dict[tuple[Any, ...], JSONDict] = {}
    for r in results:
        if r["kind"] == kind:
            p = r["path"]
            key = (
                r["controllers"][0],
                p["rate_mbps"],
                p["rtt_ms"],
                p["buffer_bdp"],
                p["loss"],
            )
            out[key] = r
    return out


def _paths(results: Iterable[JSONDict], kind: str) -> list[tuple[Any, ...]]:
    seen: dict[tuple[Any, ...], JSONDict] = {}
    for r in results:
        if r["kind"] == kind:
            p = r["path"]
            seen[(p["rate_mbps"], p["rtt_ms"], p["buffer_bdp"], p["loss"])] = p
    return sorted(seen)


def _cell(result: JSONDict | None) -> list[str]:
    if result is None:
        return ["", "", ""]
    if "error" in result:
        return ["ERROR", "", ""]
    f = _flow(result)
    assert f is not None
    return [_f(f["goodput_pct"]), _f(f["retx_pct"], 2), _f(f["rtt_inflation"], 2)]


def grid_tables(results: Sequence[JSONDict], controllers: Sequence[str]) -> list[Table]:
    tables: list[Table] = []
    for kind, title in (
        ("grid", "Path table: goodput % of max goodput | retransmitted bytes % | RTT p50/base"),
        ("util", "Zero loss, 1-BDP buffer (utilisation target)"),
    ):
        paths = _paths(results, kind)
        if not paths:
            continue
        index = _index(results, kind)
        headers = ["link", "RTT", "buf BDP", "loss", "Mathis %"]
        for cc in controllers:
            headers += [f"{cc} gp%", f"{cc} rtx%", f"{cc} RTT infl"]
        table = Table(title, headers, text_columns=(0, 1, 2, 3))
        for rate, rtt, buf, loss in paths:
            cells: list[str] = []
            mathis: float | None = None
            for cc in controllers:
                r = index.get((cc, rate, rtt, buf, loss))
                cells += _cell(r)
                if r is not None and "error" not in r and r.get("mathis_pct") is not None:
                    mathis = r["mathis_pct"]
            path = {"rate_mbps": rate, "rtt_ms": rtt, "buffer_bdp": buf, "loss": loss}
            table.rows.append([*_path_cells(path), _pct_capped(mathis), *cells])
        tables.append(table)
    return tables


def fairness_table(results: Sequence[JSONDict]) -> Table | None:
    rows = [r for r in results if r["kind"] in ("fair", "mixed")]
    if not rows:
        return None
    table = Table(
        "Sharing one bottleneck",
        ["flows", "path", "total gp%", "Jain", "per-flow share of total %", "RTT infl", "rtx%"],
        text_columns=(0, 1, 4),
    )
    for r in rows:
        p = r["path"]
        path = f"{p['rate_mbps']:g}M {p['rtt_ms']:g}ms {p['buffer_bdp']:g}BDP"
        name = " + ".join(r["controllers"])
        if "error" in r:
            table.rows.append([name, path, "ERROR", "", "", "", ""])
            continue
        flows: list[JSONDict] = r["flows"]
        shares = " / ".join(_f(f["share_pct"], 0) for f in flows)
        infl = [f["rtt_inflation"] for f in flows if f["rtt_inflation"] is not None]
        rtx = [f["retx_pct"] for f in flows if f["retx_pct"] is not None]
        table.rows.append(
            [
                name,
                path,
                _f(r["total_goodput_pct"]),
                _f(r["jain"], 3),
                shares,
                _f(max(infl), 2) if infl else "—",
                _f(max(rtx), 2) if rtx else "—",
            ]
        )
    table.notes.append(
        f"flows start {rows[0].get('stagger_s', 0):g} s apart (first named first); "
        "measured after the last start plus the warm-up; RTT infl and rtx% are the worst flow's; "
        f"ACK path jitter uniform in [0, {rows[0]['path'].get('ack_jitter_ms', 0.0):g}) ms "
        "(0: the simulator in lock-step; see Settings.fair_ack_jitter_ms)"
    )
    return table


def reorder_table(results: Sequence[JSONDict]) -> Table | None:
    rows = [r for r in results if r["kind"] == "reorder"]
    if not rows:
        return None
    p = rows[0]["path"]
    table = Table(
        f"Reordering: {100 * p['reorder']:g}% of data segments held back "
        f"{p['reorder_delay_ms']:g} ms ({p['rate_mbps']:g}M {p['rtt_ms']:g}ms "
        f"{p['buffer_bdp']:g}BDP, no loss)",
        [
            "controller",
            "gp%",
            "rtx%",
            "spurious segs",
            "wire dups",
            "PAWS discards",
            "queue drops",
            "RTO",
        ],
    )
    for r in rows:
        f = _flow(r)
        if f is None:
            table.rows.append([r["controllers"][0], "ERROR", "", "", "", "", "", ""])
            continue
        table.rows.append(
            [
                f["controller"],
                _f(f["goodput_pct"]),
                _f(f["retx_pct"], 2),
                _f(f["spurious_segments"]),
                _f(f["wire_dup_segments"]),
                _f(f["paws_discarded"]),
                _f(r["bottleneck"].get("queue_drops")),
                _f(f["engine_delta"].get("rto_expiries")),
            ]
        )
    table.notes.append(
        "spurious = retransmitted segments whose bytes the receiving TCP already had "
        "(it answers them with D-SACK); wire dups = segments that reached the receiver's "
        "host carrying bytes that had arrived before, which also counts originals the "
        "receiver discarded (PAWS discards: a reordered original older than the "
        "retransmission that filled the hole before it, RFC 7323 §5.3) and then needed"
    )
    return table


def tail_table(results: Sequence[JSONDict]) -> Table | None:
    rows = [r for r in results if r["kind"] == "tail"]
    if not rows:
        return None
    p = rows[0]["path"]
    table = Table(
        f"Lost tail: last segment of a {rows[0]['size']:,}-byte transfer dropped once "
        f"({p['rate_mbps']:g}M {p['rtt_ms']:g}ms {p['buffer_bdp']:g}BDP)",
        ["controller", "done", "RTOs", "resent after", "recovered after", "extra vs no loss"],
    )
    for r in rows:
        if "error" in r:
            table.rows.append([r["controllers"][0], "ERROR", "", "", "", ""])
            continue
        lost = r["lost_tail"]
        table.rows.append(
            [
                r["controllers"][0],
                _f(lost["completed"]),
                _f(lost["rto_expiries"]),
                _f(lost.get("retransmit_after_rtts"), 2, " RTT"),
                _f(lost.get("recovery_rtts"), 2, " RTT"),
                _f(r["extra_rtts"], 2, " RTT"),
            ]
        )
    table.notes.append(
        "resent after / recovered after: from the lost segment's first transmission to its "
        "retransmission, and to the receiving application holding every byte"
    )
    return table


# -- targets -------------------------------------------------------------------


@dataclass(slots=True)
class Target:
    name: str
    controller: str
    result: str  # PASS, FAIL, n/a, ERROR
    measured: str
    rows: list[str] = field(default_factory=list)

    def as_dict(self) -> JSONDict:
        return {
            "name": self.name,
            "controller": self.controller,
            "result": self.result,
            "measured": self.measured,
            "rows": self.rows,
        }


def _judge(
    name: str,
    cc: str,
    rows: list[JSONDict],
    value: Callable[[JSONDict], float | None],
    ok: Callable[[float], bool],
    fmt: Callable[[float], str],
    available: Sequence[str],
    describe: Callable[[float, JSONDict], str] | None = None,
) -> Target:
    if cc not in available:
        return Target(name, cc, "n/a", f"{cc} not available")
    if not rows:
        return Target(name, cc, "n/a", "rows not in this run")
    keys = [r["key"] for r in rows]
    if any("error" in r for r in rows):
        return Target(name, cc, "ERROR", "a job raised (see errors)", keys)
    values = [(value(r), r) for r in rows]
    measured = [(v, r) for v, r in values if v is not None]
    if len(measured) < len(values):
        return Target(name, cc, "FAIL", "no measurement in some rows", keys)
    passed = all(ok(v) for v, _ in measured)
    shown = ", ".join(describe(v, r) if describe else fmt(v) for v, r in measured)
    return Target(name, cc, "PASS" if passed else "FAIL", shown, keys)


def targets(
    results: Sequence[JSONDict], requested: Sequence[str], available: Sequence[str]
) -> list[Target]:
    """The issue's targets, judged on this run's rows (see the README for each rule).

    Per-controller targets get one line per requested controller; an unavailable one
    is "n/a".
    """

    def single(kind: str, cc: str, pred: Callable[[JSONDict], bool]) -> list[JSONDict]:
        return [
            r for r in results if r["kind"] == kind and r["controllers"] == [cc] and pred(r["path"])
        ]

    def gp(r: JSONDict) -> float | None:
        f = _flow(r)
        return f["goodput_pct"] if f else None

    def infl(r: JSONDict) -> float | None:
        f = _flow(r)
        return f["rtt_inflation"] if f else None

    out: list[Target] = []
    out.append(
        _judge(
            "bbr >= 80% of link at 1% loss, 50 ms, 100 Mbit/s",
            "bbr",
            single(
                "grid",
                "bbr",
                lambda p: p["loss"] == 0.01 and p["rtt_ms"] == 50 and p["rate_mbps"] == 100,
            ),
            gp,
            lambda v: v >= 80,
            lambda v: f"{v:.1f}%",
            available,
        )
    )
    util_ccs = list(requested)
    for cc in util_ccs:
        out.append(
            _judge(
                "0 loss, 1-BDP buffer: >= 95% utilisation",
                cc,
                single("util", cc, lambda p: True),
                gp,
                lambda v: v >= 95,
                lambda v: f"{v:.1f}%",
                available,
            )
        )
    out.append(
        _judge(
            "bbr RTT inflation <= 1.25x with a deep (2-BDP) buffer",
            "bbr",
            single("grid", "bbr", lambda p: p["buffer_bdp"] == 2),
            infl,
            lambda v: v <= 1.25,
            lambda v: f"{v:.2f}",
            available,
        )
    )
    for cc in util_ccs:
        fair = [r for r in results if r["kind"] == "fair" and r["controllers"][0] == cc]
        out.append(
            _judge(
                "Jain >= 0.9 for same-controller flows",
                cc,
                fair,
                lambda r: r.get("jain"),
                lambda v: v >= 0.9,
                lambda v: f"{v:.3f}",
                available,
                # Equal shares of an idle link are fair but say little: show the total.
                lambda v, r: (
                    f"{v:.3f} ({len(r['flows'])} flows, {r['total_goodput_pct']:.0f}% of link)"
                ),
            )
        )
    for cc in util_ccs:
        out.append(
            _judge(
                "10% reordering: no spurious retransmission",
                cc,
                single("reorder", cc, lambda p: True),
                lambda r: (_flow(r) or {}).get("spurious_segments"),
                lambda v: v == 0,
                lambda v: f"{v:g} spurious segments",
                available,
            )
        )
    for cc in util_ccs:
        tail = [r for r in results if r["kind"] == "tail" and r["controllers"] == [cc]]
        out.append(
            _judge(
                "lost tail segment recovered without an RTO",
                cc,
                tail,
                lambda r: (
                    None
                    if not r["lost_tail"]["completed"]
                    else float(r["lost_tail"]["rto_expiries"] or 0)
                ),
                lambda v: v == 0,
                lambda v: f"{v:g} RTO expiries",
                available,
            )
        )
    return out


def targets_table(items: Sequence[Target]) -> Table:
    table = Table(
        "Targets", ["result", "target", "controller", "measured"], text_columns=(0, 1, 2, 3)
    )
    for t in items:
        table.rows.append([t.result, t.name, t.controller, t.measured])
    return table


# -- rendering -----------------------------------------------------------------


def render_plain(tables: Sequence[Table]) -> str:
    out = io.StringIO()
    for t in tables:
        widths = [len(h) for h in t.headers]
        for row in t.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        out.write(f"\n{t.title}\n")

        def line(cells: Sequence[str], t: Table = t, widths: list[int] = widths) -> str:
            parts = [
                c.ljust(w) if i in t.text_columns else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip() + "\n"

        out.write(line(t.headers))
        out.write("  ".join("-" * w for w in widths) + "\n")
        for row in t.rows:
            out.write(line(row))
        for note in t.notes:
            out.write(f"  note: {note}\n")
    return out.getvalue()


def render_markdown(tables: Sequence[Table]) -> str:
    out = io.StringIO()
    for t in tables:
        out.write(f"\n**{t.title}**\n\n")
        out.write("| " + " | ".join(t.headers) + " |\n")
        out.write(
            "|"
            + "|".join(":---" if i in t.text_columns else "---:" for i in range(len(t.headers)))
            + "|\n"
        )
        for row in t.rows:
            out.write("| " + " | ".join(c or " " for c in row) + " |\n")
        if t.notes:
            out.write("\n" + "".join(f"* {n}\n" for n in t.notes))
    return out.getvalue()


def print_rich(tables: Sequence[Table]) -> bool:
    """Print with rich; False if rich is not importable (use :func:`render_plain`)."""
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table as RichTable
    except ImportError:
        return False
    console = Console(width=max(160, Console().width))
    for t in tables:
        rt = RichTable(title=t.title, box=box.SIMPLE_HEAVY, title_justify="left")
        for i, h in enumerate(t.headers):
            rt.add_column(h, justify="left" if i in t.text_columns else "right")
        for row in t.rows:
            styled = []
            for c in row:
                if c == "PASS":
                    styled.append("[green]PASS[/green]")
                elif c in ("FAIL", "ERROR"):
                    styled.append(f"[red]{c}[/red]")
                else:
                    styled.append(c.replace("[", r"\["))
            rt.add_row(*styled)
        console.print(rt)
        for note in t.notes:
            console.print(f"  note: {note}", highlight=False)
    return True
