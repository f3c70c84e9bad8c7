"""Real-time impairment of one direction of the bridge: a seeded decision stage and a
delay line on the event loop.

:class:`Stage` applies a :class:`rudp.sim.LinkConfig` to each packet at the time it
is offered. It is a minimal stand-in, with the same interface, for the simulator's
per-datagram decision that is being factored out of ``rudp/sim/network.py`` into
``rudp.sim.link.Link.decide`` (branch ``proxy``, with the real-time UDP proxy).
Once that lands, :func:`make_stage` should return ``Link(..., rng=rng)`` instead and
every LinkConfig field works here too; until then only these stages are
implemented, in the simulator's order: ``rate`` + ``queue_limit`` (serialization
behind earlier packets, tail drop), ``loss`` (with ``loss_max_burst``), ``delay``.
Other fields raise :class:`ValueError`.

:class:`DelayLine` hands packets over when their arrival time comes, in arrival
order (ties in the order offered), with one ``loop.call_at`` for the earliest.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections.abc import Callable
from typing import Generic, TypeVar

from rudp.sim import LinkConfig, LinkStats

__all__ = ["Copy", "DelayLine", "Stage", "make_stage"]

#: One copy to deliver: ``(arrival time, bytes)``, as ``Link.decide`` returns them.
Copy = tuple[float, bytes]
_NO_COPIES: tuple[Copy, ...] = ()
_QUEUE_EPS = 1e-6
_SUPPORTED = frozenset({"delay", "loss", "loss_max_burst", "rate", "queue_limit"})
_DEFAULTS = LinkConfig()

T = TypeVar("T")


class Stage:
    """Seeded loss / delay / rate decisions for one direction (see the module doc)."""

    __slots__ = ("busy_until", "cfg", "loss_run", "rng", "stats")

    def __init__(self, cfg: LinkConfig, rng: random.Random) -> None:
        unsupported = [
            name
            for name in LinkConfig.__dataclass_fields__
            if name not in _SUPPORTED and getattr(cfg, name) != getattr(_DEFAULTS, name)
        ]
        if unsupported:
            raise ValueError(
                f"the bridge's own impairment stage supports {sorted(_SUPPORTED)}, not "
                f"{unsupported} (those need rudp.sim.link.Link.decide, see impair.py)"
            )
        self.cfg = cfg
        self.rng = rng
        self.stats = LinkStats()
        self.busy_until = -math.inf
        self.loss_run = 0

    def decide(self, now: float, data: bytes) -> tuple[str, tuple[Copy, ...]]:
        """``(fate, copies)`` for ``data`` offered at ``now``: ``"queue_drop"`` or
        ``"lost"`` with no copy, or ``"delivered"`` with one. Counts everything in
        :attr:`stats` except ``delivered``/``bytes_delivered`` (the caller counts a
        copy when it arrives), like ``Link.decide``."""
        cfg = self.cfg
        st = self.stats
        st.sent += 1
        t = now
        rate = cfg.rate
        if rate is not None:
            size = len(data)
            busy = self.busy_until
            if busy > now:
                limit = cfg.queue_limit
                if limit is not None and (busy - now) * rate + size > limit + _QUEUE_EPS:
                    st.queue_drops += 1
                    return "queue_drop", _NO_COPIES
                t = busy
            t += size / rate
            self.busy_until = t
        if cfg.loss and self.rng.random() < cfg.loss:
            burst = cfg.loss_max_burst
            if burst is None or self.loss_run < burst:
                self.loss_run += 1
                st.lost += 1
                return "lost", _NO_COPIES
        self.loss_run = 0
        return "delivered", ((t + cfg.delay, data),)


def make_stage(cfg: LinkConfig, seed: int | str, direction: str) -> Stage:
    """The stage for one named direction; its random stream depends only on
    ``seed`` and ``direction``, so two runs with the same seed drop the same packet
    numbers of each direction whatever the other direction does."""
    return Stage(cfg, random.Random(f"{seed}|{direction}"))


class DelayLine(Generic[T]):
    """Items waiting for their arrival time; ``deliver`` gets each due batch."""

    __slots__ = ("_deliver", "_heap", "_loop", "_tie", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[list[T]], None]) -> None:
        self._loop = loop
        self._deliver = deliver
        self._heap: list[tuple[float, int, T]] = []
        self._tie = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, item: T) -> None:
        heapq.heappush(self._heap, (at, next(self._tie), item))
        if at < self._timer_at:
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        heap = self._heap
        # The loop may run a handle up to its clock resolution early.
        now = self._loop.time() + 1e-6
        batch: list[T] = []
        while heap and heap[0][0] <= now:
            batch.append(heapq.heappop(heap)[2])
        if heap:
            self._arm(heap[0][0])
        if batch:
            self._deliver(batch)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf
        self._heap.clear()
