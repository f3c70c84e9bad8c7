"""Congestion control: a small interface and a registry by name.

Built in: ``"reno"``, ``"cubic"`` (RFC 9438 with HyStart++) and ``"bbr"`` (BBR v1;
see docs/congestion.md). ``Config(congestion_control=NAME)`` selects one; register
your own with :func:`register` (a factory called as ``factory(mss, initial_cwnd)``
that returns a :class:`CongestionControl`)::

    from rudp.engine.congestion import CongestionControl, register

    class Fixed(CongestionControl):
        name = "fixed"          # cwnd stays at the initial window

    register("fixed", Fixed)
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import ConfigError
from .base import INITIAL_SSTHRESH, AckSample, CongestionControl
from .bbr import BBR
from .cubic import Cubic
from .reno import Reno

Factory = Callable[[int, int], CongestionControl]

#: Name -> factory(mss, initial_cwnd).
ALGORITHMS: dict[str, Factory] = {"reno": Reno, "cubic": Cubic, "bbr": BBR}


def register(name: str, factory: Factory) -> None:
    """Make an algorithm available as ``Config(congestion_control=name)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"congestion control name must be a non-empty str, not {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for {name!r} is not callable")
    ALGORITHMS[name] = factory


def lookup(name: str) -> Factory:
    """The factory registered as ``name``; :class:`~rudp.ConfigError` if none."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ConfigError(
            f"Config.congestion_control={name!r}: unknown; known: {sorted(ALGORITHMS)}"
        ) from None


__all__ = [
    "ALGORITHMS",
    "BBR",
    "INITIAL_SSTHRESH",
    "AckSample",
    "CongestionControl",
    "Cubic",
    "Reno",
    "lookup",
    "register",
]
