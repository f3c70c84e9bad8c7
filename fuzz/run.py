"""Run a fuzz target under atheris, or replay inputs without it.

    python -m fuzz.run --target engine --seconds 60
    python -m fuzz.run --target parser --runs 20000
    python -m fuzz.run --target engine --replay crash-1234 fuzz/regressions/engine/*
    python -m fuzz.run --target engine --seconds 600 -- -jobs=2 -workers=2
    python -m fuzz.run --target engine --minimize crash-1234  # -> crash-1234.min, no atheris needed

The corpus lives in ``fuzz/corpus/<target>/`` (seeded by :mod:`fuzz.seeds` when
empty; not committed); crashes are written to ``fuzz/artifacts/`` as
``crash-<sha1>``. Arguments after ``--`` go to libFuzzer unchanged. Exit status:
0 when nothing was found, 1 on a finding (libFuzzer's own status otherwise).

``--strict-known`` stops tolerating the engine bugs listed in
``fuzz.harness.KNOWN_BUGS`` (to check whether they are fixed).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _replay(target_name: str, paths: list[str]) -> int:
    from .targets import TARGETS

    target = TARGETS[target_name]
    failed = 0
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        files.extend(sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path])
    for f in files:
        try:
            target(f.read_bytes())
        except Exception:
            failed += 1
            print(f"FAIL {f}", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"ok   {f}")
    print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _signature(exc: BaseException) -> str:
    """What makes two failures the same: the exception type and its message with
    numbers and object reprs left out."""
    msg = re.sub(r"<[^>]*>|\d+", "#", str(exc).split("\n")[0])
    return f"{type(exc).__name__}: {msg}"


def _minimize(target_name: str, path: Path, budget: int) -> int:
    """Shrink a failing input (delta debugging on its bytes, then zeroing bytes)
    while it fails the same way; writes ``<path>.min``. No fuzzer needed."""
    from .targets import TARGETS

    target = TARGETS[target_name]

    def failure(data: bytes) -> str | None:
        try:
            target(data)
        except Exception as exc:
            return _signature(exc)
        return None

    data = path.read_bytes()
    want = failure(data)
    if want is None:
        print(f"{path} does not fail", file=sys.stderr)
        return 1
    print(f"failure: {want}")
    runs = 0
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and runs < budget:
        i = 0
        changed = False
        while i < len(data) and runs < budget:
            cand = data[:i] + data[i + chunk :]
            runs += 1
            if cand and failure(cand) == want:
                data = cand
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    for i in range(len(data)):
        if runs >= budget:
            break
        if data[i]:
            cand = data[:i] + b"\0" + data[i + 1 :]
            runs += 1
            if failure(cand) == want:
                data = cand
    out = path.with_name(path.name + ".min")
    out.write_bytes(data)
    print(f"{len(path.read_bytes())} -> {len(data)} bytes after {runs} runs: {out}")
    return 0


def _known(strict: bool) -> None:
    if strict:
        from . import harness

        harness.TOLERATE_KNOWN_BUGS = False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in args:
        i = args.index("--")
        args, extra = args[:i], args[i + 1 :]
    ap = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=("parser", "engine"), required=True)
    ap.add_argument(
        "--seconds", type=int, default=0, help="stop after this long (libFuzzer -max_total_time)"
    )
    ap.add_argument(
        "--runs", type=int, default=0, help="stop after this many inputs (libFuzzer -runs)"
    )
    ap.add_argument("--corpus", type=Path, help="corpus directory (default fuzz/corpus/<target>)")
    ap.add_argument("--artifacts", type=Path, default=HERE / "artifacts", help="where crashes go")
    ap.add_argument("--no-seed", action="store_true", help="do not seed an empty corpus")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs, no fuzzer")
    ap.add_argument("--minimize", metavar="CRASH", help="shrink a crashing input (libFuzzer)")
    ap.add_argument("--strict-known", action="store_true", help="no tolerance for known bugs")
    ns = ap.parse_args(args)

    if ns.replay:
        _known(ns.strict_known)
        return _replay(ns.target, ns.replay)
    if ns.minimize:
        _known(ns.strict_known)
        return _minimize(ns.target, Path(ns.minimize), ns.runs or 5000)

    try:
        atheris: Any = importlib.import_module("atheris")
    except ImportError:
        print(
            "atheris is not installed (pip install atheris; Linux x86-64 wheels)", file=sys.stderr
        )
        return 2

    # Coverage comes from rudp's own code: import it (through the harness) inside
    # the instrumentation hook, before anything else imports it.
    if any(m == "rudp" or m.startswith("rudp.") for m in sys.modules):
        print("rudp was imported before instrumentation: no coverage", file=sys.stderr)
        return 2
    with atheris.instrument_imports(include=["rudp"]):
        from . import harness  # noqa: F401

    _known(ns.strict_known)
    from .seeds import write_seeds
    from .targets import TARGETS

    target = TARGETS[ns.target]
    corpus = ns.corpus or HERE / "corpus" / ns.target
    corpus.mkdir(parents=True, exist_ok=True)
    if not ns.no_seed and not any(corpus.iterdir()):
        write_seeds(ns.target, corpus)
    ns.artifacts.mkdir(parents=True, exist_ok=True)
    lf = [
        sys.argv[0],
        str(corpus),
        f"-artifact_prefix={ns.artifacts}/",
        "-max_len=4096" if ns.target == "engine" else "-max_len=256",
        "-timeout=30",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
    ]
    if ns.seconds:
        lf.append(f"-max_total_time={ns.seconds}")
    if ns.runs:
        lf.append(f"-runs={ns.runs}")
    lf += extra
    atheris.Setup(lf, target)
    atheris.Fuzz()
    return 0  # (libFuzzer exits the process itself)


if __name__ == "__main__":
    raise SystemExit(main())
