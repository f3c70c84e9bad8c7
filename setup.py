"""Build the compiled parts of rudp; metadata lives in pyproject.toml.

* ``rudp._accel`` (C, always attempted): the segment checksum and parse/build. The
  extension is ``optional``: where no C compiler or Python headers exist,
  setuptools prints a warning and the install completes without it, and
  ``rudp.wire`` uses its pure-Python functions (see docs/wire.md).
* The engine compiled with mypyc (docs/performance.md): the modules of
  ``rudp._compiled.MODULES`` become extension modules, and ``rudp/_compiled.json``
  records the SHA-256 of each source so that edited sources are never shadowed by
  stale compiled code. ``RUDP_MYPYC`` chooses:

  - unset (the default): compile when mypyc is in the build environment (pip's
    isolated build installs it: ``[build-system] requires``). A failed compile
    leaves the pure-Python engine, as a missing ``rudp._accel`` leaves the
    pure-Python wire code (rudp._compiled decides at import);
  - ``0``: do not compile (the pure-Python engine; a faster install);
  - ``1``: compile, and fail the build when mypyc is missing.

``pip install -e .`` builds in place, next to the sources; after editing the C file
or an engine module, run it again (or ``python setup.py build_ext --inplace``).
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
    choice = os.environ.get("RUDP_MYPYC", "")
    if choice == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        if choice == "":
            print("rudp: mypyc is not installed: the engine runs as pure Python")
            return []
        raise SystemExit(
            "RUDP_MYPYC=1 needs mypy (mypyc) in the build environment: "
            "pip install mypy, then RUDP_MYPYC=1 pip install --no-build-isolation ."
        ) from exc
    modules = _compiled_modules()
    paths = [str(Path(*m.split(".")).with_suffix(".py")) for m in modules]
    try:
        extensions: list[Extension] = mypycify(paths, opt_level="3", group_name="rudp._engine")
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error it finds
        if choice != "":
            raise
        print(f"rudp: mypyc could not compile the engine ({exc!r}): it runs as pure Python")
        return []
    # The sources these extensions are built from (rudp._compiled compares them).
    manifest = {
        "modules": {
            m: hashlib.sha256((ROOT / p).read_bytes()).hexdigest()
            for m, p in zip(modules, paths, strict=True)
        }
    }
    (ROOT / "rudp" / "_compiled.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if choice == "":
        # As rudp._accel: a failed compile is a warning, and rudp._compiled finds the
        # build incomplete and runs the sources.
        for ext in extensions:
            ext.optional = True
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
