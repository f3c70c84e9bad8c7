"""The optional mypyc build: when compiled engine modules may be used (rudp._compiled)."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rudp import _compiled

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(tmp_path: Path, built: list[str]) -> Path:
    """A fake package: every module's source, and an extension for those in ``built``."""
    pkg = tmp_path / "rudp"
    for module in _compiled.MODULES:
        src = _compiled.source_path(module, pkg)
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(f"# {module}\n")
        if module in built:
            src.with_suffix(SUFFIX).write_bytes(b"")
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
    not _compiled.COMPILED, reason="the engine is not compiled (RUDP_MYPYC=1 build)"
)
def test_compiled_build_is_fresh() -> None:
    use, stale = _compiled.decide(
        Path(_compiled.__file__).parent,
        False,
        _compiled._load_manifest(Path(_compiled.__file__).parent),
    )
    assert use and not stale
