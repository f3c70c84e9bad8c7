"""Each atheris target runs briefly under the real fuzzer (bounded by ``-runs``),
in a subprocess (libFuzzer ends its process). Skipped when atheris is not installed
(it ships wheels for CPython on Linux x86-64 only)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (pip install atheris: CPython on Linux x86-64)",
)


@pytest.mark.parametrize(("target", "runs"), [("parser", 4000), ("engine", 120)])
def test_atheris_target_runs_clean(target: str, runs: int, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fuzz.run",
            "--target",
            target,
            "--runs",
            str(runs),
            "--corpus",
            str(tmp_path / "corpus"),
            "--artifacts",
            str(tmp_path / "artifacts"),
            "--",
            "-seed=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"Done \d+ runs", out), out[-2000:]
    assert not list((tmp_path / "artifacts").glob("crash-*")), out[-4000:]
    # The seeds were written and rudp is instrumented: the fuzzer finds new coverage.
    assert len(list((tmp_path / "corpus").iterdir())) > 10
    added = re.search(r"stat::new_units_added:\s+(\d+)", out)
    assert added is not None and int(added.group(1)) > 0, out[-2000:]
