"""``python -m benchmarks.engine_cost`` runs to the end at every MSS (it once waited
forever at MSS 65,000 for a window update that the engine held back)."""

from __future__ import annotations

import pytest

from benchmarks.engine_cost import run


@pytest.mark.parametrize("mss", [536, 1400, 65000])
def test_engine_cost_completes(mss: int) -> None:
    r = run(2_000_000, mss)
    assert r["mss"] == mss
    assert isinstance(r["data_segments"], int) and r["data_segments"] >= 2_000_000 // mss
    for key in ("us_per_segment_sent", "us_per_segment_received", "engine_goodput_MBps"):
        value = r[key]
        assert isinstance(value, float) and value > 0
