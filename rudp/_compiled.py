"""Which engine modules run compiled: the mypyc build (docs/performance.md).

``pip install`` compiles :data:`MODULES` with mypyc where it can (see setup.py;
``RUDP_MYPYC=0`` skips it) into extension modules next to their sources, and records
each source's SHA-256 in ``rudp/_compiled.json``. Python prefers an extension
module to a source file of the same name, so from then on the compiled code runs —
unless this module, imported first by ``rudp/__init__.py``, decides otherwise:

* ``RUDP_PURE_PYTHON`` set to a non-empty value other than ``0`` (the switch that
  also turns the C accelerator off, :mod:`rudp.wire.checksum`): the sources run;
* a compiled module whose source changed since it was built (an edited checkout
  with an in-place build), with no record of its source, or without the shared
  library holding the compiled code (a compile that failed part-way): the sources
  run, all of them (compiled modules call each other directly, so they are used all or none),
  with a :class:`RuntimeWarning` saying how to rebuild.

:data:`COMPILED` says whether the compiled modules are in use.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

#: Modules the mypyc build compiles (setup.py reads this tuple): the engine's
#: per-segment paths and what they call, and the asyncio layer's per-datagram ones
#: (the endpoint's dispatch and the socket I/O). Their code must stay mypyc-compatible:
#: no weak references to their instances (a mypyc class has no ``__weakref__``;
#: one derived from a Python class has, but mypyc 2.4 does not clear it when the
#: object dies), no monkeypatching, no subclasses outside the compiled set.
#: Not compiled: the congestion controllers (the application may subclass them),
#: the transport (asyncio's TLS layer and applications may hold weak references
#: to it).
MODULES: tuple[str, ...] = (
    "rudp.seq",
    "rudp.engine.buffers",
    "rudp.engine.connection",
    "rudp.engine.endpoint",
    "rudp.engine.events",
    "rudp.engine.states",
    "rudp.engine.timers",
    "rudp.engine.timewait",
    "rudp.engine.recovery.loss",
    "rudp.engine.recovery.prr",
    "rudp.engine.recovery.rack",
    "rudp.engine.recovery.rtt",
    "rudp.engine.recovery.scoreboard",
    "rudp.aio.sockio",
    "rudp.aio.endpoint",
)
#: The extension module holding the compiled code of every module in MODULES.
SHARED_LIBRARY = "rudp._engine__mypyc"
#: Source hashes recorded by the build, next to this file.
MANIFEST = "_compiled.json"

_PACKAGE_DIR = Path(__file__).resolve().parent


def source_path(module: str, package_dir: Path = _PACKAGE_DIR) -> Path:
    """The source file of ``module`` (one of :data:`MODULES`)."""
    parts = module.split(".")[1:]
    return package_dir.joinpath(*parts).with_suffix(".py")


def _built(base: Path) -> Path | None:
    """The extension module ``base`` plus an extension suffix, if one exists."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = base.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def extension_path(module: str, package_dir: Path = _PACKAGE_DIR) -> Path | None:
    """The compiled extension of ``module`` next to its source, if there is one."""
    return _built(source_path(module, package_dir))


def shared_library_path(package_dir: Path = _PACKAGE_DIR) -> Path | None:
    """The extension holding the compiled code of all of :data:`MODULES`, if built."""
    return _built(package_dir / SHARED_LIBRARY.rsplit(".", 1)[1])


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decide(
    package_dir: Path, pure_python: bool, manifest: dict[str, str] | None
) -> tuple[bool, list[str]]:
    """Whether the compiled modules may be used, and the modules that are stale.

    They are used only when every module of :data:`MODULES` has an extension whose
    source is unchanged since the build (``manifest``: module -> SHA-256 of its
    source) and pure Python is not forced. When some are built, a module is stale if
    it has no extension or its source changed; when none is, nothing is stale."""
    built = {m for m in MODULES if extension_path(m, package_dir) is not None}
    if not built:
        return False, []
    if shared_library_path(package_dir) is None:
        return False, list(MODULES)  # the shims would fail to import: none is usable
    recorded = manifest or {}
    stale = [
        m
        for m in MODULES
        if m not in built or recorded.get(m) != source_hash(source_path(m, package_dir))
    ]
    return (not pure_python and not stale), stale


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds :data:`MODULES` as source files, even where an extension module exists."""

    def __init__(self, package_dir: Path) -> None:
        self.package_dir = package_dir

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(
            fullname, source_path(fullname, self.package_dir)
        )


def _load_manifest(package_dir: Path) -> dict[str, str] | None:
    try:
        data = json.loads((package_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    modules = data.get("modules") if isinstance(data, dict) else None
    return modules if isinstance(modules, dict) else None


def _select() -> bool:
    pure = os.environ.get("RUDP_PURE_PYTHON", "") not in ("", "0")
    use, stale = decide(_PACKAGE_DIR, pure, _load_manifest(_PACKAGE_DIR))
    if not use:
        built = any(extension_path(m) is not None for m in MODULES)
        if built:
            sys.meta_path.insert(0, _SourceFinder(_PACKAGE_DIR))
        if stale and not pure:
            warnings.warn(
                f"rudp: compiled {', '.join(stale)} missing or built from other sources: "
                "running the pure-Python engine; rebuild with `pip install -e .` (or "
                "`python setup.py build_ext --inplace`) or delete the compiled files",
                RuntimeWarning,
                stacklevel=3,
            )
    return use


#: True when the mypyc-compiled engine modules are in use.
COMPILED: bool = _select()
