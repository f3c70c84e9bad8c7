"""Documentation generated from code stays in sync with it."""

from __future__ import annotations

from pathlib import Path

from rudp.engine.states import TRANSITIONS, mermaid

ROOT = Path(__file__).resolve().parent.parent


def test_state_diagram_is_generated_from_transitions() -> None:
    text = (ROOT / "docs" / "states.md").read_text()
    assert mermaid() in text, "regenerate docs/states.md: python -m rudp.engine.states"
    for a, b in TRANSITIONS:
        assert f"{a.name} --> {b.name}" in text


def test_readme_commands_match_ci() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = "python3 -m pip install -e '.[test]' && python3 -m pytest"
    assert test_cmd in readme and test_cmd in ci
    assert "python3 -m pip install -e '.[cli]' && python3 -m rudp demo" in readme
