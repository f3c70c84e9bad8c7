"""Regression tests for what the fuzzers found (fuzz/README.md).

Two kinds:

* a minimal reproducer written by hand for each engine bug, marked
  ``xfail(strict=True)`` while the bug is open (so the fix turns it into a failure
  that asks for the marker's removal);
* every saved fuzz input under ``fuzz/regressions/<target>/`` replayed through its
  target with no tolerance for known bugs; an input reproducing an open bug is
  listed in :data:`OPEN` with the bug's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz import harness
from fuzz.harness import CLIENT, SERVER, Pair, Setup, make_config
from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ROOT / "fuzz" / "regressions"


@pytest.fixture
def strict() -> Iterator[None]:
    """No tolerance for the known bugs (harness.KNOWN_BUGS)."""
    saved = harness.TOLERATE_KNOWN_BUGS
    harness.TOLERATE_KNOWN_BUGS = False
    try:
        yield
    finally:
        harness.TOLERATE_KNOWN_BUGS = saved


# ---------------------------------------------------------------------------
# Hand-written reproducers


@pytest.mark.xfail(
    strict=True,
    reason="open: after NAT rebinding without timestamps the server never sends "
    "(the amplification check in Connection._send_data reserves mss + 60 bytes, the "
    "path is validated only by an ACK of data sent after the move, and no timer runs)",
)
def test_migrated_connection_without_timestamps_can_send(strict: None) -> None:
    """Found by the stateful fuzzer (rebind, then close: the server stuck in CLOSING
    with no timer). Request/response after the client's NAT mapping changed; the
    client does not use timestamps, so the path is validated by data only."""
    p = Pair(Setup(make_config(timestamps=False), make_config()))
    p.connect()
    p.deliver_all()
    p.advance(5.0)
    p.rebind()
    p.send(CLIENT, 0, 10)  # a request from the new address: the server migrates
    p.deliver_all()
    server = p.apps[SERVER][0]
    assert p.eps[SERVER].counters["migrations"] == 1 and server.rcvd == 10
    p.send(SERVER, 0, 5000)  # the reply
    for _ in range(100):
        p.deliver_all()
        p.advance(1.0)
    assert p.apps[CLIENT][0].rcvd == 5000, (
        f"client got {p.apps[CLIENT][0].rcvd} of 5000 bytes; server deadline "
        f"{server.conn.deadline}, validated {server.conn._validated}"
    )
    # And the orderly close completes (it stalled in CLOSING, no timer, forever).
    p.close(SERVER, 0)
    p.close(CLIENT, 0)
    p.finish()


# ---------------------------------------------------------------------------
# Saved fuzz inputs

#: Saved inputs that reproduce an open bug: file name -> reason (xfail, strict).
OPEN: dict[str, str] = {}


def _inputs() -> list[tuple[str, Path]]:
    out = []
    for target in sorted(TARGETS):
        d = REGRESSIONS / target
        if d.is_dir():
            out += [(target, f) for f in sorted(d.iterdir()) if f.is_file() and f.name != "README"]
    return out


def _param(target: str, path: Path) -> object:
    marks = []
    if path.name in OPEN:
        marks.append(pytest.mark.xfail(strict=True, reason=OPEN[path.name]))
    return pytest.param(target, path, id=f"{target}/{path.name}", marks=marks)


@pytest.mark.parametrize(("target", "path"), [_param(t, p) for t, p in _inputs()])
def test_saved_fuzz_input(target: str, path: Path, strict: None) -> None:
    TARGETS[target](path.read_bytes())
