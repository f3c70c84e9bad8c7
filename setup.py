"""Build the optional compiled parts of rudp; metadata lives in pyproject.toml.

* ``rudp._accel`` (C, always attempted): the segment checksum and parse/build. The
  extension is ``optional``: where no C compiler or Python headers exist,
  setuptools prints a warning and the install completes without it, and
  ``rudp.wire`` uses its pure-Python functions (see docs/wire.md).
* The engine compiled with mypyc (only with ``RUDP_MYPYC=1``, which needs mypy in
  the build environment: ``RUDP_MYPYC=1 pip install --no-build-isolation .`` with
  mypy installed): the modules of ``rudp._compiled.MODULES`` become extension
  modules, and ``rudp/_compiled.json`` records the SHA-256 of each source so that
  edited sources are never shadowed by stale compiled code (benchmarks/RESULTS.md).

``pip install -e .`` builds in place, next to the sources; after editing the C file,
run it again (or ``python setup.py build_ext --inplace``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).parent
SOURCE = "rudp/_accel.c"
# Compiled in as rudp._accel.source_sha256, so tests can detect a stale build.
SHA256 = hashlib.sha256((ROOT / SOURCE).read_bytes()).hexdigest()


def _compiled_modules() -> tuple[str, ...]:
    """rudp._compiled.MODULES, read without importing rudp."""
    tree = ast.parse((ROOT / "rudp" / "_compiled.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "MODULES":
            assert node.value is not None
            return tuple(ast.literal_eval(node.value))
    raise RuntimeError("rudp/_compiled.py defines no MODULES")


def _mypyc_extensions() -> list[Extension]:
    if os.environ.get("RUDP_MYPYC", "") in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        raise SystemExit(
            "RUDP_MYPYC=1 needs mypy (mypyc) in the build environment: "
            "pip install mypy, then RUDP_MYPYC=1 pip install --no-build-isolation ."
        ) from exc
    modules = _compiled_modules()
    paths = [str(Path(*m.split(".")).with_suffix(".py")) for m in modules]
    manifest = {
        "modules": {
            m: hashlib.sha256((ROOT / p).read_bytes()).hexdigest()
            for m, p in zip(modules, paths, strict=True)
        }
    }
    (ROOT / "rudp" / "_compiled.json").write_text(json.dumps(manifest, indent=1) + "\n")
    extensions: list[Extension] = mypycify(paths, opt_level="3", group_name="rudp._engine")
    return extensions


setup(
    ext_modules=[
        Extension(
            "rudp._accel",
            sources=[SOURCE],
            define_macros=[("RUDP_ACCEL_SOURCE_SHA256", SHA256)],
            optional=True,
        ),
        *_mypyc_extensions(),
    ]
)
