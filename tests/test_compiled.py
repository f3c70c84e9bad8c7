"""The mypyc build of the engine: when compiled engine modules may be used (rudp._compiled)."""

from __future__ import annotations

import gc
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rudp import _compiled

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(tmp_path: Path, built: list[str], shared: bool = True) -> Path:
    """A fake package: every module's source, an extension for those in ``built``, and
    (with ``shared``) the shared library holding their code."""
    pkg = tmp_path / "rudp"
    for module in _compiled.MODULES:
        src = _compiled.source_path(module, pkg)
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(f"# {module}\n")
        if module in built:
            src.with_suffix(SUFFIX).write_bytes(b"")
    if built and shared:
        (pkg / (_compiled.SHARED_LIBRARY.rsplit(".", 1)[1] + SUFFIX)).write_bytes(b"")
    return pkg


def _hashes(pkg: Path) -> dict[str, str]:
    return {m: _compiled.source_hash(_compiled.source_path(m, pkg)) for m in _compiled.MODULES}


def test_nothing_built_means_pure_python(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, [])
    assert _compiled.decide(pkg, False, None) == (False, [])


def test_fresh_complete_build_is_used_unless_pure_python_is_forced(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, list(_compiled.MODULES))
    assert _compiled.decide(pkg, False, _hashes(pkg)) == (True, [])
    assert _compiled.decide(pkg, True, _hashes(pkg)) == (False, [])


def test_an_edited_source_makes_the_build_stale(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, list(_compiled.MODULES))
    manifest = _hashes(pkg)
    edited = _compiled.MODULES[2]
    _compiled.source_path(edited, pkg).write_text("# edited\n")
    assert _compiled.decide(pkg, False, manifest) == (False, [edited])
    assert _compiled.decide(pkg, False, None) == (False, list(_compiled.MODULES))


def test_a_partial_build_is_not_used(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, list(_compiled.MODULES[1:]))
    use, stale = _compiled.decide(pkg, False, _hashes(pkg))
    assert not use and stale == [_compiled.MODULES[0]]


def test_modules_without_their_shared_library_are_not_used(tmp_path: Path) -> None:
    # A compile that failed part-way: the per-module shims import the shared library.
    pkg = _tree(tmp_path, list(_compiled.MODULES), shared=False)
    assert _compiled.decide(pkg, False, _hashes(pkg)) == (False, list(_compiled.MODULES))
    assert _compiled.shared_library_path(pkg) is None
    assert _compiled.shared_library_path(_tree(tmp_path / "b", list(_compiled.MODULES)))


def test_setup_compiles_the_modules_the_runtime_expects() -> None:
    text = (ROOT / "setup.py").read_text()
    assert "_compiled_modules()" in text and 'group_name="rudp._engine"' in text
    assert _compiled.SHARED_LIBRARY == "rudp._engine__mypyc"


def test_loaded_modules_match_the_decision() -> None:
    import rudp.engine.connection  # noqa: F401

    for module in _compiled.MODULES:
        origin = sys.modules[module].__file__ or ""
        assert origin.endswith(".py") is not _compiled.COMPILED, (module, origin)


def test_pure_python_switch_loads_sources() -> None:
    code = (
        "import rudp, rudp._compiled as c, sys\n"
        "import rudp.engine.connection\n"
        "print(c.COMPILED, all(sys.modules[m].__file__.endswith('.py') for m in c.MODULES))\n"
    )
    env = {**os.environ, "RUDP_PURE_PYTHON": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


@pytest.mark.skipif(
    not _compiled.COMPILED,
    reason="the engine is not compiled (built with RUDP_MYPYC=0, or mypyc missing)",
)
def test_compiled_build_is_fresh() -> None:
    use, stale = _compiled.decide(
        Path(_compiled.__file__).parent,
        False,
        _compiled._load_manifest(Path(_compiled.__file__).parent),
    )
    assert use and not stale


def _closed_pair() -> tuple[Any, Any]:
    """Two engines whose connection has been closed by both sides: the active
    closer's is in TIME-WAIT, compacted into a record."""
    import rudp
    from rudp.engine import Endpoint

    ep_a, ep_b = Endpoint(rudp.Config(), seed=1), Endpoint(rudp.Config(), seed=2)
    ep_b.listen(80)
    a, b = ("10.0.0.1", 1), ("10.0.0.2", 2)

    def pump() -> None:
        for _ in range(20):
            out_a, out_b = ep_a.datagrams_to_send(0.0), ep_b.datagrams_to_send(0.0)
            for data, _ in out_a:
                ep_b.receive_datagram(data, a, 0.0)
            for data, _ in out_b:
                ep_a.receive_datagram(data, b, 0.0)
            while ep_a.next_event() is not None or ep_b.next_event() is not None:
                pass
            if not out_a and not out_b:
                return

    conn = ep_a.connect(b, 80, 0.0)
    pump()
    (server,) = [c for c in ep_b.connections.values() if c is not conn]
    conn.close(0.0)
    pump()
    server.close(0.0)  # type: ignore[union-attr]
    pump()
    return ep_a, conn


def test_time_wait_end_closes_a_held_connection() -> None:
    import rudp
    from rudp.engine import State

    ep_a, conn = _closed_pair()
    assert conn.state is State.TIME_WAIT
    assert type(ep_a.connections[conn.key]).__name__ == "TimeWait"  # compacted
    ep_a.handle_timer(2 * rudp.Config().msl - 1)
    assert conn.state is State.TIME_WAIT
    ep_a.handle_timer(2 * rudp.Config().msl + 1)
    assert conn.state is State.CLOSED
    assert conn.key not in ep_a.connections
    assert "CLOSED" in repr(conn) and conn.stats()["state"] == State.CLOSED.value


def test_a_connection_in_time_wait_is_freed_by_its_last_reference() -> None:
    """The compact record never keeps the connection, and nothing forms a cycle
    with it: dropping it frees it at once, without the garbage collector (which
    would otherwise have to find every short connection's whole object graph)."""
    from rudp.engine import Connection

    ep_a, conn = _closed_pair()
    record = ep_a.connections[conn.key]
    assert type(record).__name__ == "TimeWait"
    assert not any(r is conn for r in gc.get_referents(record))
    ep_a.handle_timer(5.0)  # stale timer-heap entries for it pop (lazy deletion)
    assert sys.getrefcount(conn) == 2  # ours and the call's: the engine let it go
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        del conn
        gc.collect()
        assert not [o for o in gc.garbage if isinstance(o, Connection)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _setup_namespace(monkeypatch: pytest.MonkeyPatch, mypycify: Any) -> dict[str, Any]:
    """setup.py's functions, with setuptools.setup() a no-op and a stand-in mypyc."""
    import runpy
    import types

    import setuptools

    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: None)
    fake = types.ModuleType("mypyc.build")
    fake.mypycify = mypycify  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mypyc.build", fake)
    return runpy.run_path(str(ROOT / "setup.py"))


def _failing_mypycify(*args: object, **kwargs: object) -> list[object]:
    raise SystemExit("error: a type error")  # what mypyc does on one


def test_setup_falls_back_to_sources_when_mypyc_fails_unless_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = ROOT / "rudp" / _compiled.MANIFEST
    before = manifest.read_bytes() if manifest.exists() else None
    monkeypatch.setenv("RUDP_MYPYC", "0")
    ns = _setup_namespace(monkeypatch, _failing_mypycify)
    assert ns["_mypyc_extensions"]() == []  # skipped: mypycify is not even called
    monkeypatch.setenv("RUDP_MYPYC", "")
    assert ns["_mypyc_extensions"]() == []  # the default: a failure leaves the sources
    monkeypatch.setenv("RUDP_MYPYC", "1")
    with pytest.raises(SystemExit, match="type error"):
        ns["_mypyc_extensions"]()
    # No manifest was written for a build that did not happen.
    assert (manifest.read_bytes() if manifest.exists() else None) == before


def test_setup_makes_the_default_build_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    from setuptools import Extension

    def mypycify(paths: list[str], **kwargs: object) -> list[Extension]:
        assert kwargs["group_name"] == "rudp._engine"
        return [Extension("rudp._engine__mypyc", ["x.c"]), Extension("rudp.seq", ["y.c"])]

    ns = _setup_namespace(monkeypatch, mypycify)
    written: list[str] = []
    monkeypatch.setattr(Path, "write_text", lambda self, text: written.append(str(self)))
    monkeypatch.setenv("RUDP_MYPYC", "")
    assert all(ext.optional for ext in ns["_mypyc_extensions"]())
    monkeypatch.setenv("RUDP_MYPYC", "1")
    assert not any(ext.optional for ext in ns["_mypyc_extensions"]())
    assert written == [str(ROOT / "rudp" / _compiled.MANIFEST)] * 2
