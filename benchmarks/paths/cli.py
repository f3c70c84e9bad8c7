"""``python -m benchmarks.paths``: the simulated path table for congestion controllers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..machine import machine_info
from . import report
from .plan import PARTS, Settings, build_jobs, resolve_controllers
from .scenarios import INITIAL_CWND, MATHIS_C, MSS, Job, JSONDict, run_job

ROOT = Path(__file__).resolve().parent.parent.parent


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in _names(text):
        a, sep, b = item.partition(":")
        if not sep or not a or not b:
            raise argparse.ArgumentTypeError(f"expected A:B pairs, got {item!r}")
        pairs.append((a, b))
    return pairs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.paths",
        description="Simulated path table: goodput, retransmissions, RTT inflation and "
        "fairness of rudp's congestion controllers over a grid of loss, RTT, link rate "
        "and buffer size (virtual time, deterministic). See benchmarks/README.md.",
    )
    p.add_argument(
        "--cc",
        type=_names,
        default=None,
        help="controllers, comma-separated (default: reno,cubic,bbr plus any other "
        "registered one; missing ones are reported as not available)",
    )
    p.add_argument("--quick", action="store_true", help="small grid, short runs (~1 min)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--loss", type=_floats, help="loss probabilities, e.g. 0,0.001,0.01")
    p.add_argument("--rtt", type=_floats, help="base RTTs in ms, e.g. 10,50,200")
    p.add_argument("--rate", type=_floats, help="link rates in Mbit/s, e.g. 10,100")
    p.add_argument("--buffer", type=_floats, help="buffers in BDP, e.g. 0.5,2")
    p.add_argument(
        "--ack-loss",
        action="store_true",
        help="lose ACKs with the row's loss probability too (loss each way)",
    )
    p.add_argument("--warmup", type=float, help="fixed warm-up (s) for every row")
    p.add_argument("--measure", type=float, help="fixed measurement window (s) for every row")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the rows' durations")
    p.add_argument(
        "--parts",
        type=_names,
        default=list(PARTS),
        help=f"what to run, comma-separated subset of {','.join(PARTS)}",
    )
    p.add_argument("--fair-flows", type=_floats, help="flow counts for fairness (default 2,4)")
    p.add_argument("--fair-rate", type=float, help="fairness link rate, Mbit/s")
    p.add_argument("--fair-rtt", type=float, help="fairness base RTT, ms")
    p.add_argument("--fair-buffer", type=float, help="fairness buffer, BDP")
    p.add_argument("--fair-measure", type=float, help="fairness measurement window, s")
    p.add_argument(
        "--fair-ack-jitter",
        type=float,
        help="fairness jobs: random ACK-path delay in [0, this) ms (default 1; 0: lock-step)",
    )
    p.add_argument("--mixed", type=_pairs, help="mixed pairs, e.g. cubic:reno,bbr:cubic")
    p.add_argument("--reorder", type=float, help="reordering probability (default 0.1)")
    p.add_argument("--reorder-delay", type=float, help="reordering hold-back, ms (default 5)")
    p.add_argument("--tail-kb", type=float, help="lost-tail transfer size, kB (default 140)")
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: CPU count; 1 runs in this process)",
    )
    p.add_argument("--json", type=Path, help="write every result to this JSON file")
    p.add_argument("--markdown", type=Path, help="write the tables as a Markdown section")
    p.add_argument("--plain", action="store_true", help="plain-text tables (no rich)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--strict", action="store_true", help="exit status 1 if a target FAILs or a job errs"
    )
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    s = Settings.for_mode(args.quick)
    s.seed = args.seed
    for key, value in (
        ("loss", args.loss),
        ("rtt_ms", args.rtt),
        ("rate_mbps", args.rate),
        ("buffer_bdp", args.buffer),
    ):
        if value:
            s.grid[key] = value
    s.ack_loss = args.ack_loss
    s.warmup = args.warmup
    s.measure = args.measure
    s.scale = args.scale
    unknown = [x for x in args.parts if x not in PARTS]
    if unknown:
        raise SystemExit(f"unknown --parts {unknown}; choose from {', '.join(PARTS)}")
    s.parts = tuple(args.parts)
    if args.fair_flows:
        s.fair_flows = tuple(int(n) for n in args.fair_flows)
    if args.fair_rate:
        s.fair_rate_mbps = args.fair_rate
    if args.fair_rtt:
        s.fair_rtt_ms = args.fair_rtt
    if args.fair_buffer:
        s.fair_buffer_bdp = args.fair_buffer
    if args.fair_measure:
        s.fair_measure = args.fair_measure
    if args.fair_ack_jitter is not None:
        s.fair_ack_jitter_ms = args.fair_ack_jitter
    if args.mixed is not None:
        s.mixed = tuple(args.mixed)
    if args.reorder is not None:
        s.reorder = args.reorder
    if args.reorder_delay is not None:
        s.reorder_delay_ms = args.reorder_delay
    if args.tail_kb is not None:
        s.tail_bytes = int(args.tail_kb * 1000)
    return s


def run_all(jobs: Sequence[Job], workers: int, progress: bool) -> list[JSONDict]:
    """Run every job (longest first across ``workers`` processes); results in job order."""
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].cost())
    results: dict[int, JSONDict] = {}
    t0 = time.perf_counter()

    def done(i: int, result: JSONDict) -> None:
        results[i] = result
        if progress:
            status = "ERROR" if "error" in result else f"{result['wall_s']:6.1f} s"
            print(
                f"[{len(results):3d}/{len(jobs)}] {status}  {jobs[i].key}"
                f"  (elapsed {time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    if workers <= 1 or len(jobs) <= 1:
        for i in order:
            done(i, run_job(jobs[i]))
    else:
        with multiprocessing.Pool(min(workers, len(jobs))) as pool:
            it: Iterator[tuple[int, JSONDict]] = pool.imap_unordered(
                _run_indexed, [(i, jobs[i]) for i in order]
            )
            for i, result in it:
                done(i, result)
    return [results[i] for i in range(len(jobs))]


def _run_indexed(item: tuple[int, Job]) -> tuple[int, JSONDict]:
    return item[0], run_job(item[1])


def model_notes(settings: Settings, shape: tuple[int, int]) -> list[str]:
    """How the numbers are made, printed above the tables and stored in the JSON."""
    payload, header = shape
    each_way = "each way" if settings.ack_loss else "on the data direction only"
    return [
        f"simulator rudp.sim, virtual time, seed {settings.seed}; engine Config(mss={MSS}, "
        f"initial_cwnd={INITIAL_CWND}, rcv_buf=snd_buf=4x(BDP+buffer)); default delayed ACK; "
        "the receiving application reads everything as soon as it arrives",
        "bottleneck: one link of rate R (bytes of UDP payload per second), tail-drop queue "
        "of buffer x BDP bytes (BDP = R x base RTT), one-way delay RTT/2; ACK path: delay "
        f"RTT/2, no rate limit; random loss {each_way}; all flows share the one queue",
        "gp% = payload bytes reaching the receiver for the first time in the window / window "
        "/ max goodput (the bytes the application read in order are in the JSON as "
        "app_goodput); "
        "max goodput = R x payload/(payload + TCP header) of a full data segment on the "
        f"wire, here {payload}/{payload + header} = {100 * payload / (payload + header):.2f}% "
        "of R; raw % of R = gp% x that ratio (both in the JSON)",
        "rtx% = retransmitted payload bytes / all payload bytes leaving the sender (wire)",
        "RTT infl = p50 per-segment RTT / base RTT; segment RTT = its one-way delay "
        "sender->receiver + the ACKs' one-way delay back, only for segments sent once "
        "(Karn); base RTT = propagation RTT + one full segment's serialization at R",
        f"Mathis % = payload/base RTT x {MATHIS_C:.3f}/sqrt(p) as % of max goodput",
        "each row: a warm-up is excluded, then a measurement window (JSON: warmup_s, "
        "measure_s); anything still going on after the warm-up (e.g. recovery from "
        "slow-start overshoot) counts",
    ]


def markdown_section(
    header: Sequence[str],
    notes: Sequence[str],
    machine: JSONDict,
    tables: Sequence[report.Table],
    json_path: Path | None,
) -> str:
    """A ready-to-paste benchmarks/RESULTS.md section: targets first, then every table."""
    commit = machine.get("rudp_commit") or "unknown"
    lines = [
        "## Simulated path table (congestion control)",
        "",
        f"Machine: {machine.get('cpu_model')} x{machine.get('cpu_count')}, Python "
        f"{machine.get('python')}, rudp commit {commit[:7]}, {machine.get('date')}.",
        "",
        *(f"* {line}" for line in header),
    ]
    if json_path is not None:
        try:
            link = json_path.resolve().relative_to(ROOT / "benchmarks").as_posix()
        except ValueError:
            link = json_path.as_posix()
        lines.append(f"* raw data: [`{link}`]({link})")
    lines += ["", "How the numbers are made:", "", *(f"* {n}" for n in notes)]
    ordered = [t for t in tables if t.title == "Targets"] + [
        t for t in tables if t.title != "Targets"
    ]
    return "\n".join(lines) + "\n" + report.render_markdown(ordered)


def _shape(results: Sequence[JSONDict]) -> tuple[int, int]:
    for r in results:
        for f in r.get("flows", ()):
            return int(f["segment_payload"]), int(f["segment_header"])
    return MSS, 20


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = settings_from(args)
    available, missing = resolve_controllers(args.cc)
    requested = [*available, *missing] if args.cc is None else list(dict.fromkeys(args.cc))
    jobs = build_jobs(settings, available)
    for name in missing:
        print(f"controller {name!r}: not available in this rudp", file=sys.stderr)
    skipped_pairs = [p for p in settings.mixed if not all(cc in available for cc in p)]
    t0 = time.perf_counter()
    results = run_all(jobs, args.jobs, not args.quiet)
    wall = time.perf_counter() - t0
    cpu = sum(r.get("cpu_s", 0.0) for r in results)
    target_list = report.targets(results, requested, available)
    tables: list[report.Table] = report.grid_tables(results, available)
    for extra in (
        report.fairness_table(results),
        report.reorder_table(results),
        report.tail_table(results),
    ):
        if extra is not None:
            tables.append(extra)
    if skipped_pairs and "mixed" in settings.parts:
        note = "not available: " + ", ".join(f"{a} vs {b}" for a, b in skipped_pairs)
        fairness = [t for t in tables if t.title.startswith("Sharing")]
        if fairness:
            fairness[0].notes.append(note)
        else:
            print(f"mixed pairs {note}", file=sys.stderr)
    tables.append(report.targets_table(target_list))
    notes = model_notes(settings, _shape(results))
    command = "python -m benchmarks.paths " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    header = [
        f"command: `{command.strip()}`",
        f"controllers: {', '.join(available) or 'none'}"
        + (f"; not available: {', '.join(missing)}" if missing else ""),
        f"{len(jobs)} simulations: {wall:.0f} s wall on {args.jobs} worker(s), "
        f"{cpu:.0f} s CPU in the simulations",
    ]
    print("\n".join([*header, *notes]).replace("`", ""))
    if args.plain or not report.print_rich(tables):
        print(report.render_plain(tables))
    mismatched = [
        r["key"]
        for r in results
        for f in r.get("flows", ())
        if f.get("engine_bytes_sent_matches_wire") is False
    ]
    if mismatched:
        print(
            "warning: engine bytes_sent differs from the bytes seen on the wire in "
            + ", ".join(mismatched),
            file=sys.stderr,
        )
    errors = [r for r in results if "error" in r]
    for r in errors:
        print(f"\nERROR in {r['key']}:\n{r['error']}", file=sys.stderr)
    machine = machine_info(ROOT)
    if args.json:
        data: JSONDict = {
            "command": command.strip(),
            "machine": machine,
            "wall_s": wall,
            "cpu_s": cpu,
            "workers": args.jobs,
            "settings": dataclasses.asdict(settings),
            "model": notes,
            "controllers": {"available": available, "not_available": missing},
            "results": results,
            "targets": [t.as_dict() for t in target_list],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, default=str) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_section(header, notes, machine, tables, args.json))
    failed = any(t.result in ("FAIL", "ERROR") for t in target_list) or bool(errors)
    return 1 if args.strict and failed else 0
