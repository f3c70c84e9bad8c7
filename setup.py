"""Build the optional C accelerator ``rudp._accel``; metadata lives in pyproject.toml.

The extension is ``optional``: where no C compiler or Python headers exist,
setuptools prints a warning and the install completes without it, and
``rudp.wire.checksum`` uses its pure-Python functions (see docs/wire.md).
``pip install -e .`` builds it in place next to ``rudp/_accel.c``; after editing
the C file, run that again (or ``python setup.py build_ext --inplace``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "rudp/_accel.c"
# Compiled in as rudp._accel.source_sha256, so tests can detect a stale build.
SHA256 = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()

setup(
    ext_modules=[
        Extension(
            "rudp._accel",
            sources=[SOURCE],
            define_macros=[("RUDP_ACCEL_SOURCE_SHA256", SHA256)],
            optional=True,
        )
    ]
)
