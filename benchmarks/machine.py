"""Description of the machine and software a run was measured on."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from .common import JSONDict


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    """The "model name" line of /proc/cpuinfo (Linux), else platform.processor()."""
    text = _read("/proc/cpuinfo")
    if text:
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Processor") and value.strip():
                return value.strip()
    return platform.processor() or None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit(root: Path) -> str | None:
    """HEAD's commit, read from .git without running git."""
    head = _read(str(root / ".git" / "HEAD"))
    if not head:
        return None
    if not head.startswith("ref:"):
        return head
    ref = head.split(None, 1)[1]
    commit = _read(str(root / ".git" / ref))
    if commit:
        return commit
    packed = _read(str(root / ".git" / "packed-refs")) or ""
    for line in packed.splitlines():
        if line.endswith(" " + ref):
            return line.split()[0]
    return None


_BUILD_PROBE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import rudp, rudp._compiled
    from rudp.wire.checksum import IMPLEMENTATION
print(json.dumps({"compiled": rudp._compiled.COMPILED, "checksum": IMPLEMENTATION,
                  "warnings": [str(w.message) for w in caught]}))
"""


def rudp_build(root: Path) -> JSONDict | None:
    """How rudp runs in a worker started from ``root``: its engine compiled (mypyc)
    or as sources, its checksum in C or Python, and any warning its import gave
    (a stale in-place build falls back to the sources with a RuntimeWarning).
    Asked of a child process: the orchestrator does not import rudp."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _BUILD_PROBE],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        info: JSONDict = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return info


def machine_info(root: Path) -> JSONDict:
    affinity: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        affinity = len(os.sched_getaffinity(0))
    load = None
    with contextlib.suppress(AttributeError, OSError):
        load = list(os.getloadavg())
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "loadavg": load,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "versions": {
            "rudp": _version("rudp"),
            "uvloop": _version("uvloop"),
            "aioquic": _version("aioquic"),
            "cryptography": _version("cryptography"),
            "rich": _version("rich"),
        },
        "rudp_commit": _git_commit(root),
        "rudp_build": rudp_build(root),
        "net_core_rmem_max": _read("/proc/sys/net/core/rmem_max"),
        "net_core_wmem_max": _read("/proc/sys/net/core/wmem_max"),
    }
