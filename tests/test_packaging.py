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


def test_library_has_no_runtime_dependencies_and_cli_extra_has_rich_and_uvloop() -> None:
    text = _pyproject()
    assert re.search(r"^dependencies = \[\]$", text, re.MULTILINE)
    cli_extra = re.search(r"^cli = \[(.*?)^\]", text, re.MULTILINE | re.DOTALL)
    assert cli_extra is not None
    assert '"rich>=' in cli_extra.group(1) and '"uvloop>=' in cli_extra.group(1)


def test_sdist_manifest_carries_what_the_tests_read() -> None:
    manifest = (ROOT / "MANIFEST.in").read_text().split()
    for tree in ("tests", "examples", "docs", "benchmarks"):
        assert f"{tree}" in manifest, tree
    assert ".ci/run" in manifest and "README.md" in manifest
