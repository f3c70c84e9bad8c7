"""``python -m benchmarks``: plan the cases, run them, print tables, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from .common import (
    DEFAULT_MSS,
    HOST,
    LOOPS,
    MB,
    NO_GSO,
    STACKS,
    TCP_HEADER,
    UDP_MAX_PAYLOAD,
    WORKLOADS,
    JSONDict,
    Spec,
    resolve_mss,
)
from .machine import machine_info
from .metrics import (
    PRIMARY,
    Case,
    Results,
    case_from_json,
    evaluate_all_targets,
    rep_metrics,
)
from .report import fmt_auto, print_report
from .runner import ROOT, run_measurement
from .stacks import StackUnavailable, import_rudp

DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"
#: Pause between measurements so sockets, TIME-WAIT and CPU settle.
PAUSE_S = 0.2
RR_SIZES = (64, 1024)
#: Largest --mss whose segment (mss + 20) still fits one UDP datagram.
MAX_MSS_ARG = UDP_MAX_PAYLOAD - TCP_HEADER


def parse_list(value: str, choices: Sequence[str] | None, what: str) -> list[str]:
    items = [x.strip() for x in value.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"empty {what} list")
    if choices is not None:
        bad = [x for x in items if x not in choices]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {what}: {', '.join(bad)} (choose from {', '.join(choices)})"
            )
    return list(dict.fromkeys(items))


def parse_mss(value: str) -> list[str]:
    items = parse_list(value, None, "mss")
    for item in items:
        if item != "max" and not (item.isdigit() and 88 <= int(item) <= MAX_MSS_ARG):
            raise argparse.ArgumentTypeError(
                f"bad mss {item!r}: 'max' or an integer in [88, {MAX_MSS_ARG}]"
            )
    return items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark rudp against kernel TCP, aioquic and raw UDP on loopback.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes and 1 rep (smoke test)")
    p.add_argument("--reps", type=int, default=None, help="repetitions per case (default 3)")
    p.add_argument(
        "--loops",
        type=lambda v: parse_list(v, LOOPS, "loop"),
        default=list(LOOPS),
        help="event loops (default asyncio,uvloop)",
    )
    p.add_argument(
        "--stacks",
        type=lambda v: parse_list(v, STACKS, "stack"),
        default=list(STACKS),
        help=f"stacks (default {','.join(STACKS)})",
    )
    p.add_argument(
        "--workloads",
        type=lambda v: parse_list(v, WORKLOADS, "workload"),
        default=list(WORKLOADS),
        help="workloads (default bulk,rr,setup,idle)",
    )
    p.add_argument("--bulk-mb", type=float, default=None, help="bulk size in MB (default 256)")
    p.add_argument(
        "--mss",
        type=parse_mss,
        default=["1200", "1400", "max"],
        help="bulk MSS list: integers and/or max (default 1200,1400,max)",
    )
    p.add_argument(
        "--nogso-mss",
        type=parse_mss,
        default=["1400"],
        help="MSS labels at which rudp bulk also runs without GSO/GRO (default 1400)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help="JSON output path (default benchmarks/results.json)",
    )
    p.add_argument(
        "--show",
        type=Path,
        metavar="JSON",
        default=None,
        help="print the tables of an earlier run's JSON file and exit (runs nothing)",
    )
    p.add_argument("--rr-count", type=int, default=None, help="round trips (default 20000)")
    p.add_argument("--setup-count", type=int, default=None, help="connections (default 2000)")
    p.add_argument(
        "--setup-concurrency",
        type=int,
        default=16,
        help="concurrency of the concurrent setup case (default 16)",
    )
    p.add_argument("--idle-conns", type=int, default=None, help="idle connections (default 1000)")
    p.add_argument("--idle-mb", type=float, default=None, help="idle bulk size MB (default 64)")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="per-measurement timeout in s (default: by size)",
    )
    p.add_argument("--pin", action="store_true", help="pin server to CPU 0 and client to CPU 1")
    return p


def _pick(value: float | None, normal: float, quick: float, is_quick: bool) -> float:
    if value is not None:
        return value
    return quick if is_quick else normal


def build_cases(args: argparse.Namespace) -> tuple[list[Case], list[str]]:
    """The cases to run (stack x workload x variant x loop) and notes on skipped ones."""
    q = bool(args.quick)
    bulk_bytes = int(_pick(args.bulk_mb, 256, 2, q) * MB)
    rr_count = int(_pick(args.rr_count, 20000, 200, q))
    setup_count = int(_pick(args.setup_count, 2000, 50, q))
    idle_conns = int(_pick(args.idle_conns, 1000, 20, q))
    idle_bytes = int(_pick(args.idle_mb, 64, 2, q) * MB)
    cases: list[Case] = []
    notes: list[str] = []
    for loop in args.loops:
        for workload in args.workloads:
            for stack in args.stacks:
                if stack == "udp" and workload in ("setup", "idle"):
                    note = f"udp has no {workload} workload (connectionless): not measured"
                    if note not in notes:
                        notes.append(note)
                    continue
                if stack == "udp-gso" and workload != "bulk":
                    note = f"udp-gso has no {workload} workload (a bulk ceiling): not measured"
                    if note not in notes:
                        notes.append(note)
                    continue
                if workload == "bulk":
                    labels = ["kernel"] if stack == "tcp" else list(args.mss)
                    for label in labels:
                        mss = None if stack == "tcp" else resolve_mss(label, stack)
                        cases.append(Case(loop, workload, stack, label, mss, {"bytes": bulk_bytes}))
                        if stack == "rudp" and label in args.nogso_mss:
                            params = {"bytes": bulk_bytes, "gso": False}
                            variant = f"{label} {NO_GSO}"
                            cases.append(Case(loop, workload, stack, variant, mss, params))
                elif workload == "rr":
                    for size in RR_SIZES:
                        params = {
                            "size": size,
                            "count": rr_count,
                            "warmup": max(10, min(1000, rr_count // 10)),
                        }
                        variant = f"{size} B" if size < 1024 else f"{size // 1024} KiB"
                        mss = None if stack == "udp" else _mss(stack)  # udp: one datagram
                        cases.append(Case(loop, workload, stack, variant, mss, params))
                elif workload == "setup":
                    for conc in dict.fromkeys((1, max(1, args.setup_concurrency))):
                        params = {
                            "count": setup_count,
                            "concurrency": conc,
                            "size": 64,
                            "warmup": max(5, min(50, setup_count // 20)),
                        }
                        variant = "seq" if conc == 1 else f"c{conc}"
                        cases.append(Case(loop, workload, stack, variant, _mss(stack), params))
                elif workload == "idle":
                    params = {
                        "idle_conns": idle_conns,
                        "bytes": idle_bytes,
                        "warmup_bytes": max(MB // 2, idle_bytes // 8),
                    }
                    variant = f"{idle_conns} idle"
                    cases.append(Case(loop, workload, stack, variant, _mss(stack), params))
    return cases, notes


def _mss(stack: str) -> int | None:
    return None if stack == "tcp" else DEFAULT_MSS


def availability(stacks: Sequence[str], loops: Sequence[str]) -> dict[str, str]:
    """Reasons why a stack or loop cannot run here (keyed by name)."""
    reasons: dict[str, str] = {}
    if "rudp" in stacks:
        try:
            import_rudp()
        except StackUnavailable as exc:
            reasons["rudp"] = str(exc)
    if "aioquic" in stacks:
        for mod in ("aioquic", "cryptography"):
            if importlib.util.find_spec(mod) is None:
                reasons["aioquic"] = f"{mod} is not installed (pip install 'rudp[bench]')"
    if "uvloop" in loops and importlib.util.find_spec("uvloop") is None:
        reasons["uvloop"] = "uvloop is not installed"
    return reasons


def timeout_for(case: Case, override: float | None) -> float:
    if override is not None:
        return override
    p = case.params
    if case.workload == "bulk":
        return 60.0 + float(p["bytes"]) / (2 * MB)
    if case.workload == "idle":
        return 90.0 + 2 * float(p["bytes"]) / (2 * MB) + 0.05 * float(p["idle_conns"])
    if case.workload == "rr":
        return 60.0 + 0.005 * float(p["count"])
    return 60.0 + 0.05 * float(p["count"])


def _specs(case: Case, pin: bool) -> tuple[Spec, Spec]:
    two_cpus = (os.cpu_count() or 1) >= 2

    def spec(role: str, cpu: int) -> Spec:
        return Spec(
            role=role,
            stack=case.stack,
            workload=case.workload,
            loop=case.loop,
            mss=case.mss,
            params=case.params,
            host=HOST,
            cpu=cpu if pin and two_cpus else None,
        )

    return spec("server", 0), spec("client", 1)


def _summary(case: Case) -> str:
    m = case.rep_metrics[-1] if case.rep_metrics else {}
    metric = PRIMARY[case.workload]
    value = m.get(metric)
    return f"{metric}={fmt_auto(value)}"


def _payload(
    args: argparse.Namespace,
    machine: JSONDict,
    cases: list[Case],
    notes: list[str],
    started: str,
    finished: str | None,
) -> JSONDict:
    results = Results(cases)
    targets = evaluate_all_targets(results)
    return {
        "schema": 1,
        "started": started,
        "finished": finished,
        "machine": machine,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())},
        "notes": notes,
        "cases": [c.to_json() for c in cases],
        "targets": [t.to_json() for t in targets],
    }


def write_json(path: Path, payload: JSONDict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, allow_nan=False, default=str) + "\n")
    tmp.replace(path)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


async def run_all(args: argparse.Namespace, console: Console) -> int:
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1:
        console.print("[red]--reps must be >= 1")
        return 2
    cases, notes = build_cases(args)
    unavailable = availability(args.stacks, args.loops)
    for case in cases:
        reason = unavailable.get(case.stack) or unavailable.get(case.loop)
        if reason:
            case.skipped = reason
    machine = machine_info(ROOT)
    started = _now()
    console.print(
        f"[bold]rudp benchmarks[/] {machine['cpu_model']} x{machine['cpu_count']}, "
        f"Python {machine['python']}, uvloop {machine['versions']['uvloop']}, "
        f"aioquic {machine['versions']['aioquic']}; {len(cases)} cases x {reps} reps"
    )
    build = machine["rudp_build"]
    if build is not None:
        engine = "compiled engine" if build["compiled"] else "engine as sources"
        console.print(f"[dim]rudp: {engine}, checksum in {build['checksum']}")
        for warning in build["warnings"]:
            console.print(f"[yellow]rudp import warning: {warning}")
    for note in notes:
        console.print(f"[dim]note: {note}")
    for name, reason in unavailable.items():
        console.print(f"[yellow]unavailable: {name}: {reason}")

    runnable = [c for c in cases if not c.skipped]
    total = len(runnable) * reps
    done = 0
    for rep in range(reps):
        for case in runnable:
            done += 1
            server, client = _specs(case, args.pin)
            result = await run_measurement(server, client, timeout_for(case, args.timeout))
            try:
                metrics = rep_metrics(case, result)
            except Exception as exc:  # a malformed result must not end the run
                result.ok = False
                result.error = f"metrics: {type(exc).__name__}: {exc}"
                metrics = {}
            case.reps.append(result)
            case.rep_metrics.append(metrics)
            status = f"[green]{_summary(case)}" if result.ok else f"[red]ERROR {result.error}"
            console.print(
                f"[dim][{done}/{total}][/] {case.key} rep {rep + 1}/{reps}: {status} "
                f"[dim]({result.wall:.1f} s)",
                highlight=False,
            )
            write_json(args.json, _payload(args, machine, cases, notes, started, None))
            await asyncio.sleep(PAUSE_S)

    payload = _payload(args, machine, cases, notes, started, _now())
    write_json(args.json, payload)
    console.print()
    results = Results(cases)
    print_report(console, results, evaluate_all_targets(results), args.workloads, args.stacks)
    console.print(f"JSON written to {args.json}")
    return 0 if any(c.ok_reps for c in cases) else 1


def show(path: Path, console: Console) -> int:
    """Print the tables of a results file written by an earlier run."""
    data = json.loads(path.read_text())
    cases = [case_from_json(c) for c in data.get("cases", [])]
    machine = data.get("machine") or {}
    console.print(
        f"[bold]{path}[/]: {machine.get('date')} {machine.get('cpu_model')} "
        f"x{machine.get('cpu_count')}, Python {machine.get('python')}"
    )
    results = Results(cases)
    workloads = [w for w in WORKLOADS if any(c.workload == w for c in cases)]
    stacks = [s for s in STACKS if any(c.stack == s for c in cases)]
    print_report(console, results, evaluate_all_targets(results), workloads, stacks)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 220)
    if args.show is not None:
        return show(args.show, console)
    t0 = time.perf_counter()
    try:
        code = asyncio.run(run_all(args, console))
    except KeyboardInterrupt:
        console.print("[red]interrupted; partial results are in " + str(args.json))
        return 130
    with contextlib.suppress(Exception):
        console.print(f"[dim]total {time.perf_counter() - t0:.0f} s")
    return code
