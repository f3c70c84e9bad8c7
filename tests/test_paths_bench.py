"""Smoke and unit tests of the simulated path table (``python -m benchmarks.paths``).

Tiny configurations only (virtual seconds, a few wall seconds in all). The engine's
performance is never asserted here: the benchmark itself judges the targets.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.paths.model import FlowMeter
from benchmarks.paths.plan import Settings, build_jobs, resolve_controllers
from benchmarks.paths.scenarios import Job, PathSpec, jain, run_job
from rudp.wire import ACK, SYN, build_segment

ROOT = Path(__file__).resolve().parent.parent
ISN = 0xFFFFF000  # close to the wrap, so relative offsets must wrap correctly


def _strip_wall(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_wall(v) for k, v in value.items() if k not in ("wall_s", "cpu_s")}
    if isinstance(value, list):
        return [_strip_wall(v) for v in value]
    return value


def _data(rel: int, n: int) -> bytes:
    return build_segment(40000, 80, (ISN + 1 + rel) & 0xFFFFFFFF, 1, ACK, 1000, bytes(n))


def _meter() -> FlowMeter:
    m = FlowMeter(40000)
    m.on_sent(build_segment(40000, 80, ISN, 0, SYN, 1000), 0.0)
    assert m.base == (ISN + 1) & 0xFFFFFFFF
    return m


def test_meter_counts_retransmissions_duplicates_and_rtt() -> None:
    m = _meter()
    m.measuring = True
    m.on_sent(_data(0, 1000), 0.000)
    m.on_sent(_data(1000, 1000), 0.001)
    m.on_sent(_data(0, 1000), 0.500)  # a retransmission
    assert (m.sent_bytes, m.retx_bytes, m.retx_segs, m.snd_max) == (3000, 1000, 1, 2000)
    ack = build_segment(80, 40000, 1, (ISN + 1) & 0xFFFFFFFF, ACK, 1000)
    m.on_ack_sent(ack, 0.010)
    m.on_ack_arrival(ack, 0.015)
    assert m.rev_owd == pytest.approx(0.005)
    m.on_data_arrival(_data(1000, 1000), 0.011)  # out of order, sent once: sampled
    assert m.rtt_samples == [pytest.approx(0.010 + 0.005)] and m.ooo_segs == 1
    assert (m.rcv_cum, m.ooo_starts, m.ooo_ends) == (0, [1000], [2000])
    m.on_data_arrival(_data(0, 1000), 0.6)  # retransmitted: no sample (Karn)
    assert len(m.rtt_samples) == 1 and m.rcv_cum == 2000 and not m.ooo_starts
    m.on_data_arrival(_data(0, 1000), 0.7)  # the original, late: a spurious copy
    m.on_data_arrival(_data(1500, 1000), 0.8)  # half old, half new
    assert (m.dup_bytes, m.dup_segs, m.rcv_cum) == (1500, 2, 2500)


def test_meter_merge_matches_a_byte_set() -> None:
    rnd = random.Random(5)
    for _ in range(30):
        m = _meter()
        have: set[int] = set()
        dup = 0
        for _ in range(60):
            s = rnd.randrange(0, 400)
            n = rnd.randrange(1, 40)
            new = set(range(s, s + n))
            dup += len(new & have)
            have |= new
            m.on_data_arrival(_data(s, n), 0.0)
        assert m.dup_bytes == dup
        cum = 0
        while cum in have:
            cum += 1
        assert m.rcv_cum == cum
        runs = {b for s, e in zip(m.ooo_starts, m.ooo_ends, strict=True) for b in range(s, e)}
        assert runs == {b for b in have if b >= cum}
        assert all(
            e < s2 for e, s2 in zip(m.ooo_ends, m.ooo_starts[1:], strict=False)
        )  # disjoint, merged


def test_jain() -> None:
    assert jain([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert jain([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert jain([0.0, 0.0]) is None


def test_bulk_row_is_deterministic_and_measured_on_the_wire() -> None:
    job = Job("grid", ("reno",), PathSpec(10, 10, 0.5, loss=0.01), 1.0, 3.0, seed=3)
    first = run_job(job)
    assert "error" not in first, first.get("error")
    assert _strip_wall(first) == _strip_wall(run_job(job))
    f = first["flows"][0]
    assert first["bottleneck"]["lost"] > 0  # the impairment happened
    assert f["wire"]["retx_bytes"] > 0 and f["retx_pct"] > 0
    assert 0 < f["goodput_pct"] <= 100
    assert f["engine_bytes_sent_matches_wire"] is True
    # No segment can beat the empty-queue RTT; with a 0.5-BDP queue some meet it.
    assert f["rtt_min_s"] == pytest.approx(f["base_rtt_s"], abs=1e-9)
    assert f["rtt_inflation"] >= 1.0 and f["rtt_samples"] > 100
    assert first["mathis_pct"] == pytest.approx(
        100 * 1400 / f["base_rtt_s"] * 1.5**0.5 / 0.1 / f["max_goodput_Bps"]
    )


def test_flows_share_one_bottleneck() -> None:
    job = Job("fair", ("reno", "reno"), PathSpec(10, 10, 1.0), 1.0, 3.0, seed=2, stagger=0.5)
    r = run_job(job)
    assert "error" not in r, r.get("error")
    goodputs = [f["goodput_pct"] for f in r["flows"]]
    assert all(g > 0 for g in goodputs)
    # One queue and one serializer: together they cannot exceed the link.
    assert sum(goodputs) == pytest.approx(r["total_goodput_pct"])
    assert r["total_goodput_pct"] <= 100.0
    sent = sum(f["wire"]["sent_segs"] for f in r["flows"])
    assert r["bottleneck"]["sent"] >= sent  # every data segment of both went through it
    assert r["jain"] is not None and 0.5 <= r["jain"] <= 1.0


def test_reordering_and_lost_tail_scenarios_do_what_they_say() -> None:
    reorder = PathSpec(10, 50, 2.0, reorder=0.1, reorder_delay_ms=5.0)
    r = run_job(Job("reorder", ("reno",), reorder, 0.5, 2.0, seed=1))
    assert "error" not in r, r.get("error")
    assert r["bottleneck"]["reordered"] > 0
    assert r["flows"][0]["wire"]["ooo_segs"] > 0  # the receiver saw them out of order
    t = run_job(Job("tail", ("reno",), PathSpec(10, 50, 2.0), 0.0, 0.0, seed=1, size=30_000))
    assert "error" not in t, t.get("error")
    assert t["baseline"]["dropped"] == 0 and t["baseline"]["completed"]
    lost = t["lost_tail"]
    assert lost["dropped"] == 1 and lost["completed"]
    assert len(lost["tail_transmissions"]) >= 2  # the original and at least one resend
    assert lost["recovery_rtts"] > 0 and t["extra_rtts"] > 0


def test_plan_finds_controllers_and_reports_missing_ones() -> None:
    available, missing = resolve_controllers(["reno", "no-such-cc"])
    assert available == ["reno"] and missing == ["no-such-cc"]
    available, missing = resolve_controllers(None)
    assert "reno" in available and set(available) | set(missing) >= {"reno", "cubic", "bbr"}
    jobs = build_jobs(Settings.for_mode(quick=False), ["reno"])
    grid = [j for j in jobs if j.kind == "grid"]
    assert len(grid) == 4 * 3 * 2 * 2  # loss x RTT x link x buffer
    assert {j.kind for j in jobs} == {"grid", "util", "reorder", "tail", "fair"}
    for j in jobs:
        j.check()  # every full-size job fits the wire meters


def test_a_newly_registered_controller_is_picked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """cubic and bbr will arrive through the engine's registry: simulate that."""
    from rudp.engine import congestion

    monkeypatch.setitem(congestion.ALGORITHMS, "reno-copy", congestion.Reno)
    available, _ = resolve_controllers(None)
    assert "reno-copy" in available
    r = run_job(Job("grid", ("reno-copy",), PathSpec(10, 10, 0.5), 0.2, 0.5, seed=1))
    assert "error" not in r, r.get("error")
    assert r["flows"][0]["controller"] == "reno-copy" and r["flows"][0]["goodput_pct"] > 0


def _cli(tmp_path: Path, name: str, hashseed: str) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.paths",
        "--cc",
        "reno,no-such-cc",
        "--rate",
        "10",
        "--rtt",
        "10",
        "--buffer",
        "0.5",
        "--loss",
        "0.01",
        "--parts",
        "grid,tail,mixed",
        "--mixed",
        "reno:no-such-cc",
        "--warmup",
        "0.5",
        "--measure",
        "2",
        "--tail-kb",
        "20",
        "--jobs",
        "2",
        "--plain",
        "--json",
        str(out),
    ]
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "not available" in proc.stderr and "Targets" in proc.stdout
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_cli_runs_and_is_deterministic_across_processes(tmp_path: Path) -> None:
    a = _cli(tmp_path, "a", "1")
    b = _cli(tmp_path, "b", "2")
    assert a["controllers"] == {"available": ["reno"], "not_available": ["no-such-cc"]}
    assert [r["key"] for r in a["results"]] == [
        "grid/reno/10M/10ms/0.5BDP/loss0.01",
        "tail/reno/10M/50ms/2BDP/loss0",
    ]
    assert _strip_wall(a["results"]) == _strip_wall(b["results"])
    verdicts = {(t["name"], t["controller"]): t["result"] for t in a["targets"]}
    assert verdicts[("lost tail segment recovered without an RTO", "reno")] in ("PASS", "FAIL")
    assert verdicts[("lost tail segment recovered without an RTO", "no-such-cc")] == "n/a"


def test_fairness_jobs_jitter_the_ack_path() -> None:
    """The fairness path has ACK-path jitter by default (phase effects, see
    Settings.fair_ack_jitter_ms); with it, two seeds give two outcomes, without
    it the simulator is in lock-step and the seed changes nothing."""
    s = Settings()
    assert s.fair_path().ack_jitter_ms == s.fair_ack_jitter_ms == 1.0
    assert s.fair_path().ack_path().jitter == pytest.approx(0.001)
    assert s.fair_path().as_dict()["ack_jitter_ms"] == 1.0

    def shares(jitter: float, seed: int) -> list[float]:
        path = PathSpec(10, 10, 1.0, ack_jitter_ms=jitter)
        r = run_job(Job("fair", ("reno", "reno"), path, 1.0, 3.0, seed=seed, stagger=0.5))
        assert "error" not in r, r.get("error")
        return [f["goodput_pct"] for f in r["flows"]]

    assert shares(0.0, 2) == shares(0.0, 3)
    assert shares(1.0, 2) != shares(1.0, 3)
