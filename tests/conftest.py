"""Shared configuration: every asyncio test runs on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the [test] extra where it installs
    uvloop = None


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if uvloop is None:  # pragma: no cover
        raise pytest.UsageError("uvloop (from the [test] extra) is not installed")
    factories["uvloop"] = uvloop.new_event_loop
    if item.get_closest_marker("uvloop_only"):  # long tests: the reference loop only
        del factories["asyncio"]
    return factories
