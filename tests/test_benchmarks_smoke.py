"""Smoke test of the benchmark suite: ``python -m benchmarks --quick`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import rudp

ROOT = Path(__file__).resolve().parent.parent
PRIMARY = {"bulk": "goodput_MBps", "rr": "p50_us"}


def run_quick(tmp_path: Path, stacks: str, workloads: str = "bulk,rr") -> dict[str, Any]:
    out = tmp_path / "results.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--stacks",
        stacks,
        "--workloads",
        workloads,
        "--reps",
        "1",
        "--loops",
        "asyncio",
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def check_results(data: dict[str, Any], stacks: list[str]) -> None:
    machine = data["machine"]
    assert machine["python"] and machine["cpu_count"] and machine["date"]
    build = machine["rudp_build"]  # how the workers' rudp runs, asked of a child process
    assert build["checksum"] in ("c", "python") and isinstance(build["compiled"], bool)
    assert data["finished"]
    for stack in stacks:
        cases = [c for c in data["cases"] if c["stack"] == stack]
        assert {c["workload"] for c in cases} == {"bulk", "rr"}, stack
        for case in cases:
            assert case["ok_reps"] == 1, (case["key"], case["errors"])
            assert case["loop"] == "asyncio"
            value = case["median"][PRIMARY[case["workload"]]]
            assert value is not None and value > 0, case["key"]
    assert isinstance(data["targets"], list)


def test_quick_tcp_udp(tmp_path: Path) -> None:
    data = run_quick(tmp_path, "tcp,udp")
    check_results(data, ["tcp", "udp"])
    bulk = {c["variant"] for c in data["cases"] if c["workload"] == "bulk"}
    assert bulk == {"kernel", "1200", "1400", "max"}


@pytest.mark.skipif(not hasattr(rudp, "open_connection"), reason="rudp asyncio layer not present")
def test_quick_rudp(tmp_path: Path) -> None:
    data = run_quick(tmp_path, "rudp")
    check_results(data, ["rudp"])
    for case in data["cases"]:
        if case["workload"] == "bulk":
            assert case["median"]["segments_per_MB"] > 0, case["key"]
    verdicts = {t["name"]: t["result"] for t in data["targets"] if t["loop"] == "asyncio"}
    assert verdicts["rr 64 B p50 <= 1.5x tcp"] == "n/a"  # no tcp peer in this run
    assert verdicts["pure ACKs <= 0.5/segment @1400"] in ("PASS", "FAIL")


def test_quick_setup_on_every_stream_stack(tmp_path: Path) -> None:
    """The setup workload (its client drives every stack's streams the same way)
    completes on each stream stack present: kernel TCP, rudp, aioquic."""
    stacks = ["tcp"]
    if hasattr(rudp, "open_connection"):
        stacks.append("rudp")
    try:
        import aioquic  # noqa: F401
    except ImportError:
        pass
    else:
        stacks.append("aioquic")
    data = run_quick(tmp_path, ",".join(stacks), workloads="setup")
    for stack in stacks:
        cases = [c for c in data["cases"] if c["stack"] == stack]
        assert cases, stack
        for case in cases:
            assert case["ok_reps"] == 1, (case["key"], case["errors"])
            assert case["median"]["conn_per_s"] > 0, case["key"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="UDP GSO/GRO are Linux-only")
def test_quick_udp_gso_ceiling(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--stacks", "udp-gso", "--workloads"]
    cmd += ["bulk,rr", "--reps", "1", "--loops", "asyncio", "--mss", "1400", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    (case,) = data["cases"]  # bulk only: the rr workload is skipped with a note
    if case["ok_reps"] == 0 and "not available" in str(case["errors"]):
        pytest.skip(f"no UDP GSO/GRO here: {case['errors']}")
    assert case["ok_reps"] == 1, case["errors"]
    assert case["median"]["goodput_MBps"] > 0
    assert case["reps"][0]["client"]["segments_per_send"] > 1  # GSO batches


def test_conn_cost_runs() -> None:
    cmd = [sys.executable, "-m", "benchmarks.conn_cost", "--conns", "50"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["engine_memory"]["established_ends"] == 100
    assert data["engine_memory"]["bytes_per_end"] > 0
    assert data["engine_setups"]["engine_setups_per_s"] > 0
    assert data["aio_memory"]["bytes_per_end"] > 0
