"""Structural rules of the engine (docs/engine.md), checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rudp
from rudp import Config, ConfigError
from rudp.engine import Endpoint
from rudp.engine.congestion import ALGORITHMS, CongestionControl, register

PKG = Path(rudp.__file__).parent


def _imports(path: Path) -> set[str]:
    """Modules imported by ``path`` (relative imports resolved within rudp)."""
    tree = ast.parse(path.read_text())
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + (path.name == "__init__.py")]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
    return out


def test_config_imports_nothing_of_the_engine() -> None:
    assert not any(m.startswith("rudp.engine") for m in _imports(PKG / "config.py"))


def test_connection_does_not_import_its_endpoint_or_events() -> None:
    imports = _imports(PKG / "engine" / "connection.py")
    assert "rudp.engine.endpoint" not in imports
    assert "rudp.engine.events" not in imports


def test_segments_leave_a_connection_from_flush_only() -> None:
    """Every call that builds a segment sits in flush() or the helpers it calls."""
    tree = ast.parse((PKG / "engine" / "connection.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Connection")
    emitters = {
        "flush",
        "_emit_syn",
        "_emit_data",
        "_send_new",
        "_resend",
        "_send_loss_probe",
        "_send_data",
        "_emit",
    }
    callers: dict[str, set[str]] = {}
    for fn in cls.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for node in ast.walk(fn):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "self"
            ):
                callers.setdefault(node.func.attr, set()).add(fn.name)
    for sink in ("_emit", "_emit_syn", "_emit_data", "_send_new", "_resend", "_send_data"):
        assert callers.get(sink, set()) <= emitters, (sink, callers.get(sink))
    # and flush() itself is only called by the host
    assert "flush" not in callers
    # build_segment is used in _emit only
    uses = [
        fn.name
        for fn in cls.body
        if isinstance(fn, ast.FunctionDef)
        and any(isinstance(n, ast.Name) and n.id == "build_segment" for n in ast.walk(fn))
    ]
    assert uses == ["_emit"]


def test_unknown_congestion_control_is_a_config_error_on_use() -> None:
    cfg = Config(congestion_control="no-such-algorithm")
    with pytest.raises(ConfigError, match="no-such-algorithm"):
        Endpoint(cfg)
    with pytest.raises(ConfigError, match="non-empty"):
        Config(congestion_control="")


def test_a_registered_controller_is_used() -> None:
    class Fixed(CongestionControl):
        name = "fixed-test"

    register("fixed-test", Fixed)
    try:
        ep = Endpoint(Config(congestion_control="fixed-test"))
        conn = ep.connect(("10.0.0.2", 1), 80, 0.0)
        assert isinstance(conn.cc, Fixed) and conn.stats()["congestion_control"] == "fixed-test"
    finally:
        del ALGORITHMS["fixed-test"]
    with pytest.raises(TypeError):
        register("bad", 42)  # type: ignore[arg-type]
