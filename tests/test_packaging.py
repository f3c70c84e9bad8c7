"""What a new user installs: the distribution name, extras and docs agree."""

from __future__ import annotations

import re
from pathlib import Path

from rudp import cli

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text()


def test_distribution_name_agrees_everywhere() -> None:
    m = re.search(r'^name = "([^"]+)"$', _pyproject(), re.MULTILINE)
    assert m is not None
    name = m.group(1)
    assert name == cli.DISTRIBUTION != "rudp"  # "rudp" on the index is another project
    readme = (ROOT / "README.md").read_text()
    assert f"pip install '{name}[cli]'" in readme
    assert f"pip install {name}" in readme
    assert re.search(r'^rudp = "rudp\.cli:main"$', _pyproject(), re.MULTILINE)  # the command


def _list(name: str) -> str:
    m = re.search(rf"^{name} = \[(.*?)^\]", _pyproject(), re.MULTILINE | re.DOTALL)
    assert m is not None, name
    return m.group(1)


def test_library_needs_structlog_and_uvloop_and_extras_hold_the_cli_tools() -> None:
    """The transport's own needs are dependencies (issue 11: structlog, and uvloop
    where it builds); the CLI's display and plots are extras (issue 13)."""
    deps = _list("dependencies")
    assert '"structlog>=' in deps
    uvloop = [line for line in deps.splitlines() if '"uvloop>=' in line]
    assert uvloop and all("sys_platform != 'win32'" in line for line in uvloop)
    assert all("platform_python_implementation == 'CPython'" in line for line in uvloop)
    assert "rich" not in deps and "matplotlib" not in deps
    cli_extra = _list("cli")
    assert '"rich>=' in cli_extra and "uvloop" not in cli_extra
    assert '"matplotlib>=' in _list("plot")
    test_extra = _list("test")
    assert '"rich>=' in test_extra and '"matplotlib>=' in test_extra
    readme = (ROOT / "README.md").read_text()
    for extra in ("cli", "plot", "test"):
        assert f"`rudp-asyncio[{extra}]`" in readme, extra
    assert cli.PLOT_EXTRA in (ROOT / "docs" / "bench.md").read_text()


def test_sdist_manifest_carries_what_the_tests_read() -> None:
    manifest = (ROOT / "MANIFEST.in").read_text().split()
    for tree in ("tests", "examples", "docs", "benchmarks"):
        assert f"{tree}" in manifest, tree
    assert ".ci/run" in manifest and "README.md" in manifest
