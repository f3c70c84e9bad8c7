"""``rudp bench``: measure a path between two machines, in the habits of iperf3.

One side runs a server (:class:`BenchServer`, ``rudp bench --server``), which serves
tests one after another; the other runs a test against it (:func:`run_client`,
``rudp bench HOST``). Output and plots are in :mod:`rudp.tools.benchfmt`.

Protocol (version 1; docs/bench.md). Every rudp connection of a test starts with
one JSON object on one line (UTF-8, ``\\n``-terminated, at most 64 KiB):

1. The client opens the **control connection** to the server's UDP port and sends
   ``{"op": "hello", "version": 1, "cookie": C, "params": {...}}``; ``C`` is 32 hex
   digits naming the test, ``params`` the test's settings (:class:`BenchParams`).
2. The server answers ``{"op": "ready", "data_port": P, "server": {...}}``, or
   ``{"op": "error", "message": ...}`` (busy with another test, bad settings) and
   closes. ``P`` is the server's UDP port for the data connections: the control
   port, unless the test asks for an MSS or congestion control that differs from
   the server's own, which needs an endpoint configured for them (another port).
3. The client opens the **data connections** to ``P``, one per stream (``parallel``,
   twice that with ``bidir``), each starting with ``{"op": "stream", "cookie": C,
   "id": N, "direction": "up"|"down"}``; "up" streams carry data from the client to
   the server, "down" ones the other way (``reverse``). The rest of a data
   connection is payload.
4. Once every stream is attached the server sends ``{"op": "start"}``; both sides
   start their clocks. Each sender sends until ``time`` has passed or its share of
   ``bytes`` is out, then half-closes (FIN); its receiver reads to EOF and closes,
   so the sender's EOF means "everything delivered".
5. When its streams are done the server sends ``{"op": "results", "streams": [...],
   "intervals": [...], "trace": [...]}``: its view of each stream (see
   :func:`run_client`'s result) and closes the control connection.

The server aborts (RST) a test whose client goes away: a reset or a closed control
connection, or no progress for ``Config.user_timeout``/keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .. import __version__
from ..aio import Endpoint, create_endpoint
from ..config import MAX_MSS, MIN_MSS, Config
from ..engine.congestion import ALGORITHMS
from ..errors import RudpError

__all__ = [
    "DEFAULT_PORT",
    "PROTOCOL_VERSION",
    "BenchError",
    "BenchParams",
    "BenchServer",
    "run_client",
]

#: The protocol version in ``hello`` (the server refuses others).
PROTOCOL_VERSION = 1
#: iperf3's port number (here UDP).
DEFAULT_PORT = 5201
#: Longest control message.
MAX_MESSAGE = 64 * 1024
#: Bytes per write() of a sender; reads take up to this much too.
BLOCK = 128 * 1024
#: Seconds to wait for a control message or a connection before giving up.
CONTROL_TIMEOUT = 10.0
#: Seconds between trace samples (cwnd, srtt, bytes) when a trace is asked for.
TRACE_PERIOD = 0.05
#: Most streams in one test (per direction).
MAX_PARALLEL = 128
#: Longest test.
MAX_TIME = 86400.0


_DEFAULTS = Config()


class BenchError(RudpError):
    """A test could not run: refused by the server, protocol error, lost peer."""


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class BenchParams:
    """One test's settings (the ``params`` of ``hello``)."""

    #: Seconds each sender sends (ignored when ``bytes`` is set).
    time: float = 10.0
    #: Bytes to send per direction, shared among the streams (None: by time).
    bytes: int | None = None
    #: Streams per direction.
    parallel: int = 1
    #: The server sends, the client receives.
    reverse: bool = False
    #: Both directions at once (``parallel`` streams each way).
    bidir: bool = False
    #: MSS both ends announce.
    mss: int = _DEFAULTS.mss
    #: Congestion control of every sender.
    cc: str = _DEFAULTS.congestion_control
    #: Seconds between interval reports.
    interval: float = 1.0
    #: Collect a fine-grained trace (cwnd, srtt, bytes every TRACE_PERIOD) for plots.
    trace: bool = False

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> BenchError:
            return BenchError(f"{name}={getattr(self, name)!r}: {why}")

        for name in ("time", "interval"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value <= MAX_TIME
                or not math.isfinite(value)
            ):
                raise bad(name, f"must be a number of seconds in (0, {MAX_TIME:g}]")
        if self.bytes is not None and (
            isinstance(self.bytes, bool) or not isinstance(self.bytes, int) or self.bytes < 1
        ):
            raise bad("bytes", "must be an integer >= 1, or None")
        if (
            isinstance(self.parallel, bool)
            or not isinstance(self.parallel, int)
            or not 1 <= self.parallel <= MAX_PARALLEL
        ):
            raise bad("parallel", f"must be an integer in 1..{MAX_PARALLEL}")
        for name in ("reverse", "bidir", "trace"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be a bool")
        if isinstance(self.mss, bool) or not isinstance(self.mss, int):
            raise bad("mss", "must be an integer")
        if not MIN_MSS <= self.mss <= MAX_MSS:
            raise bad("mss", f"must be in {MIN_MSS}..{MAX_MSS}")
        if not isinstance(self.cc, str) or self.cc not in ALGORITHMS:
            raise bad("cc", f"unknown congestion control; known: {', '.join(sorted(ALGORITHMS))}")

    @classmethod
    def from_json(cls, data: Any) -> BenchParams:
        """Parameters from a ``hello`` message; :class:`BenchError` when invalid."""
        if not isinstance(data, dict):
            raise BenchError("params must be an object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise BenchError(f"unknown parameters: {', '.join(sorted(unknown))}")
        try:
            return cls(**data)
        except TypeError as exc:  # pragma: no cover - all fields have defaults
            raise BenchError(str(exc)) from None

    def directions(self) -> list[str]:
        """The direction of each stream, in id order (ids count from 1)."""
        if self.bidir:
            return ["up"] * self.parallel + ["down"] * self.parallel
        return ["down" if self.reverse else "up"] * self.parallel

    def budgets(self) -> list[int | None]:
        """Bytes each stream sends (its share of ``bytes``), in id order."""
        dirs = self.directions()
        if self.bytes is None:
            return [None] * len(dirs)
        share, extra = divmod(self.bytes, self.parallel)
        out: list[int | None] = []
        for direction in ("up", "down"):
            n = 0
            for d in dirs:
                if d == direction:
                    out.append(share + (1 if n < extra else 0))
                    n += 1
        return out


# -------------------------------------------------------------- the wire
async def read_message(reader: asyncio.StreamReader, timeout: float | None) -> dict[str, Any]:
    """One JSON line; :class:`BenchError` on EOF, garbage or timeout."""
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), timeout)
    except asyncio.IncompleteReadError:
        raise BenchError("the peer closed the connection") from None
    except asyncio.LimitOverrunError:
        raise BenchError("control message too long") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise BenchError(f"no message from the peer within {timeout:g} s") from None
    try:
        msg = json.loads(line)
    except ValueError:
        raise BenchError("not a JSON control message") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
        raise BenchError("control message without an 'op'")
    return msg


def encode(msg: dict[str, Any]) -> bytes:
    """One control message as it goes on the wire."""
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def write_message(writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
    writer.write(encode(msg))


# ---------------------------------------------------------------- streams
def addresses(writer: asyncio.StreamWriter) -> dict[str, Any]:
    """The UDP addresses and TCP ports of a connection."""
    sock = writer.get_extra_info("sockname")
    peer = writer.get_extra_info("peername")
    conn = writer.get_extra_info("rudp_connection")
    if sock and peer and str(sock[0]) in ("0.0.0.0", "::"):
        # A wildcard-bound socket: the address the kernel's routing uses towards the
        # peer (a connected UDP socket's name; nothing is sent).
        with (
            contextlib.suppress(OSError),
            socket.socket(
                socket.AF_INET6 if len(sock) == 4 else socket.AF_INET, socket.SOCK_DGRAM
            ) as probe,
        ):
            probe.connect(tuple(peer))
            sock = (probe.getsockname()[0], sock[1])
    return {
        "local": [str(sock[0]), int(sock[1])] if sock else None,
        "remote": [str(peer[0]), int(peer[1])] if peer else None,
        "local_tcp_port": getattr(conn, "local_port", None),
        "remote_tcp_port": getattr(conn, "remote_port", None),
    }


class Stream:
    """One data connection of a test, as one side sees it."""

    def __init__(
        self,
        sid: int,
        direction: str,
        sending: bool,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        header: int = 0,
    ) -> None:
        self.id = sid
        #: Bytes this side sent before the payload (its ``stream`` line): acknowledged
        #: with it, not part of it.
        self.header = header
        self.direction = direction
        #: True if this side sends on this stream.
        self.sending = sending
        self.reader = reader
        self.writer = writer
        #: Payload bytes: read by the application (receiver), or acknowledged (sender).
        self.bytes_read = 0
        self.start = 0.0
        self.end: float | None = None
        self.error: str | None = None
        self.final_stats: dict[str, Any] | None = None

    @property
    def role(self) -> str:
        return "sender" if self.sending else "receiver"

    def stats(self) -> dict[str, Any]:
        st = self.writer.get_extra_info("rudp_stats")
        return st if isinstance(st, dict) else {}

    def progress(self) -> int:
        """Bytes delivered so far: acknowledged (sender) or read (receiver)."""
        if self.sending:
            return max(0, int(self.stats().get("bytes_acked", 0)) - self.header)
        return self.bytes_read

    def addresses(self) -> dict[str, Any]:
        return addresses(self.writer)

    async def run(self, t0: float, deadline: float | None, budget: int | None) -> None:
        """Send (until ``deadline`` or ``budget``) or receive, then close."""
        loop = asyncio.get_running_loop()
        self.start = t0
        try:
            if self.sending:
                await self._send(loop, deadline, budget)
            else:
                await self._receive(loop)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.error = str(exc) or type(exc).__name__
            self.writer.transport.abort()
            raise
        finally:
            if self.end is None:
                self.end = loop.time()
            self.final_stats = self.stats()

    async def _send(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None, budget: int | None
    ) -> None:
        writer = self.writer
        block = memoryview(os.urandom(BLOCK))
        left = budget
        while True:
            if left is not None:
                if left <= 0:
                    break
                n = min(BLOCK, left)
                left -= n
            else:
                assert deadline is not None
                if loop.time() >= deadline:
                    break
                n = BLOCK
            writer.write(block[:n])
            await writer.drain()
        writer.write_eof()
        # The receiver closes once it has read everything: its FIN says "delivered".
        await self.reader.read()
        self.end = loop.time()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def _receive(self, loop: asyncio.AbstractEventLoop) -> None:
        reader = self.reader
        while data := await reader.read(BLOCK):
            self.bytes_read += len(data)
        self.end = loop.time()
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    def result(self, t0: float) -> dict[str, Any]:
        """This side's summary of the stream (times relative to ``t0``)."""
        st = self.final_stats if self.final_stats is not None else self.stats()
        end = self.end if self.end is not None else self.start
        seconds = max(end - self.start, 1e-9)
        acked = max(0, int(st.get("bytes_acked", 0)) - self.header)
        nbytes = acked if self.sending else self.bytes_read
        out: dict[str, Any] = {
            "id": self.id,
            "direction": self.direction,
            "role": self.role,
            "start": round(self.start - t0, 6),
            "end": round(end - t0, 6),
            "seconds": round(seconds, 6),
            "bytes": nbytes,
            "bits_per_second": nbytes * 8 / seconds,
            "error": self.error,
        }
        if self.sending:
            out["retransmits"] = int(st.get("retransmissions", 0))
            out["max_cwnd"] = st.get("cwnd")
            out["min_rtt"] = st.get("min_rtt")
        out["stats"] = _jsonable(st)
        return out


def _jsonable(st: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in st.items()
    }


def _sample(stream: Stream) -> dict[str, Any]:
    st = stream.stats()
    return {
        "progress": stream.progress(),
        "retransmissions": int(st.get("retransmissions", 0)),
        "cwnd": st.get("cwnd"),
        "srtt": st.get("srtt"),
        "rttvar": st.get("rttvar"),
        "in_flight": st.get("in_flight"),
        "pacing_rate": st.get("pacing_rate"),
        "delivery_rate": st.get("delivery_rate"),
        "rcv_wnd": st.get("rcv_wnd"),
    }


class Sampler:
    """Interval reports (every ``interval`` s) and an optional fine trace."""

    def __init__(
        self,
        streams: list[Stream],
        t0: float,
        interval: float,
        on_interval: Callable[[dict[str, Any]], None] | None = None,
        trace: bool = False,
    ) -> None:
        self.streams = streams
        self.t0 = t0
        self.interval = interval
        self.on_interval = on_interval
        self.trace_on = trace
        self.intervals: list[dict[str, Any]] = []
        self.trace: list[dict[str, Any]] = []
        self._last = {s.id: _sample(s) for s in streams}
        self._last_t = t0
        self._done = asyncio.Event()

    def stop(self) -> None:
        self._done.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        k = 1
        step = min(TRACE_PERIOD, self.interval) if self.trace_on else self.interval
        next_trace = self.t0 + step
        while not self._done.is_set():
            due = self.t0 + k * self.interval
            wake = min(due, next_trace) if self.trace_on else due
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._done.wait(), max(0.0, wake - loop.time()))
            now = loop.time()
            if self._done.is_set():
                break
            if self.trace_on and now >= next_trace:
                self._trace(now)
                next_trace += step
            if now >= due:
                self._emit(now)
                # A stalled loop may have slept past several boundaries: the next
                # report is at the next boundary still ahead, not an empty one.
                k = max(k + 1, int((now - self.t0) / self.interval) + 1)
        now = loop.time()
        if self.trace_on:
            self._trace(now)
        # The last, partial interval, unless negligible.
        if now - self._last_t > 0.05 * self.interval:
            self._emit(now)

    def _trace(self, now: float) -> None:
        for s in self.streams:
            if s.end is not None and s.end < now - TRACE_PERIOD:
                continue
            row = _sample(s)
            self.trace.append({"t": round(now - self.t0, 4), "id": s.id, "role": s.role, **row})

    def _emit(self, now: float) -> None:
        start = self._last_t - self.t0
        end = now - self.t0
        seconds = max(now - self._last_t, 1e-9)
        rows = []
        for s in self.streams:
            cur = _sample(s)
            prev = self._last[s.id]
            nbytes = cur["progress"] - prev["progress"]
            row: dict[str, Any] = {
                "id": s.id,
                "direction": s.direction,
                "role": s.role,
                "start": round(start, 6),
                "end": round(end, 6),
                "seconds": round(seconds, 6),
                "bytes": nbytes,
                "bits_per_second": nbytes * 8 / seconds,
            }
            if s.sending:
                row["retransmits"] = cur["retransmissions"] - prev["retransmissions"]
                for key in ("cwnd", "srtt", "rttvar", "in_flight", "pacing_rate", "delivery_rate"):
                    row[key] = cur[key]
            else:
                row["rcv_wnd"] = cur["rcv_wnd"]
            rows.append(row)
            self._last[s.id] = cur
        self._last_t = now
        report = {"start": round(start, 6), "end": round(end, 6), "streams": rows}
        report["sum"] = sums(rows, start, end)
        self.intervals.append(report)
        if self.on_interval is not None:
            self.on_interval(report)


def sums(rows: list[dict[str, Any]], start: float, end: float) -> dict[str, dict[str, Any]]:
    """Totals of ``rows`` per (direction, role): ``{"up/sender": {...}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    seconds = max(end - start, 1e-9)
    for row in rows:
        key = f"{row['direction']}/{row['role']}"
        agg = out.setdefault(
            key,
            {
                "direction": row["direction"],
                "role": row["role"],
                "start": round(start, 6),
                "end": round(end, 6),
                "seconds": round(seconds, 6),
                "bytes": 0,
                "streams": 0,
            },
        )
        agg["bytes"] += row["bytes"]
        agg["streams"] += 1
        if "retransmits" in row:
            agg["retransmits"] = agg.get("retransmits", 0) + row["retransmits"]
    for agg in out.values():
        agg["bits_per_second"] = agg["bytes"] * 8 / seconds
    return out


async def _run_streams(
    streams: list[Stream], params: BenchParams, t0: float, sampler: Sampler
) -> None:
    """Run every stream of one side; the first failure aborts the others."""
    deadline = None if params.bytes is not None else t0 + params.time
    budgets = dict(zip(range(1, len(params.directions()) + 1), params.budgets(), strict=True))
    sampler_task = asyncio.ensure_future(sampler.run())
    tasks = [asyncio.ensure_future(s.run(t0, deadline, budgets[s.id])) for s in streams]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for s in streams:
            s.writer.transport.abort()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        sampler.stop()
        await asyncio.gather(sampler_task, return_exceptions=True)


# ------------------------------------------------------------------ server
Report = Callable[[str, dict[str, Any]], None]


@dataclass
class _ServerTest:
    cookie: str
    params: BenchParams
    peer: Any
    streams: dict[int, Stream]
    attached: asyncio.Event


class BenchServer:
    """Serves bench tests one after another on ``endpoint`` (the control port).

    ``report(kind, data)`` is called with ``("test", start-info)``, ``("interval",
    report)``, ``("result", result)`` and ``("error", {"message": ...})``.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        config: Config,
        report: Report | None = None,
        *,
        data_host: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.report = report or (lambda kind, data: None)
        self._data_host = data_host
        self._data: dict[Config, Endpoint] = {config: endpoint}
        self._test: _ServerTest | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._servers: list[Any] = []
        #: Tests completed, and tests that failed.
        self.completed = 0
        self.failed = 0

    async def start(self) -> None:
        self._servers.append(await self.endpoint.start_server(self._on_connection))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for ep in self._data.values():
            if ep is not self.endpoint:
                ep.abort()

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._handle(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            msg = await read_message(reader, CONTROL_TIMEOUT)
        except BenchError:
            writer.transport.abort()
            return
        if msg["op"] == "stream":
            self._attach(msg, reader, writer)
        elif msg["op"] == "hello":
            try:
                await self._control(msg, reader, writer)
            finally:
                writer.transport.abort()  # no-op after a clean close
        else:
            writer.transport.abort()

    def _attach(
        self, msg: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        test = self._test
        sid = msg.get("id")
        if (
            test is None
            or msg.get("cookie") != test.cookie
            or not isinstance(sid, int)
            or sid in test.streams
            or not 1 <= sid <= len(test.params.directions())
            or msg.get("direction") != test.params.directions()[sid - 1]
        ):
            writer.transport.abort()
            return
        direction = test.params.directions()[sid - 1]
        test.streams[sid] = Stream(sid, direction, direction == "down", reader, writer)
        if len(test.streams) == len(test.params.directions()):
            test.attached.set()

    async def _data_endpoint(self, params: BenchParams) -> Endpoint:
        cfg = replace(self.config, mss=params.mss, congestion_control=params.cc)
        ep = self._data.get(cfg)
        if ep is None or ep.is_closing():
            host = self._data_host or str(self.endpoint.local_address[0])
            ep = await create_endpoint((host, 0), config=cfg)
            self._data[cfg] = ep
            self._servers.append(await ep.start_server(self._on_connection))
        return ep

    async def _control(
        self, hello: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        cookie = hello.get("cookie")
        try:
            if hello.get("version") != PROTOCOL_VERSION:
                raise BenchError(
                    f"protocol version {hello.get('version')!r} not supported "
                    f"(this server speaks {PROTOCOL_VERSION}: rudp {__version__})"
                )
            if not isinstance(cookie, str) or len(cookie) != 32:
                raise BenchError("bad cookie")
            params = BenchParams.from_json(hello.get("params"))
            if self._test is not None:
                raise BenchError("the server is busy running a test; try again later")
        except BenchError as exc:
            write_message(writer, {"op": "error", "message": str(exc)})
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), CONTROL_TIMEOUT)
            self.report("refused", {"peer": _addr(peer), "message": str(exc)})
            return
        test = _ServerTest(cookie, params, peer, {}, asyncio.Event())
        self._test = test
        try:
            await self._run_test(test, reader, writer)
            self.completed += 1
        except (BenchError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.failed += 1
            for s in test.streams.values():
                s.writer.transport.abort()
            self.report("error", {"peer": _addr(peer), "message": str(exc) or type(exc).__name__})
        finally:
            self._test = None

    async def _run_test(
        self, test: _ServerTest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        params = test.params
        ep = await self._data_endpoint(params)
        write_message(
            writer,
            {
                "op": "ready",
                "data_port": int(ep.local_address[1]),
                "server": {
                    "version": __version__,
                    "mss": ep.config.mss,
                    "cc": ep.config.congestion_control,
                },
            },
        )
        try:
            await asyncio.wait_for(test.attached.wait(), CONTROL_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            raise BenchError("the client did not open its data connections") from None
        streams = [test.streams[i] for i in sorted(test.streams)]
        write_message(writer, {"op": "start"})
        t0 = loop.time()
        self.report(
            "test",
            {
                "peer": _addr(test.peer),
                "params": asdict(params),
                "streams": [{"id": s.id, "role": s.role, **s.addresses()} for s in streams],
            },
        )
        sampler = Sampler(
            streams, t0, params.interval, lambda r: self.report("interval", r), params.trace
        )
        # The client going away (RST, or its control connection closing early) ends
        # the test at once.
        watch = asyncio.ensure_future(reader.read(1))
        run = asyncio.ensure_future(_run_streams(streams, params, t0, sampler))
        try:
            done, _ = await asyncio.wait({watch, run}, return_when=asyncio.FIRST_COMPLETED)
            if run not in done:
                exc = watch.exception()
                raise BenchError(
                    f"control connection lost: {exc}" if exc else "the client ended the test"
                )
            run.result()
        finally:
            for fut in (watch, run):
                fut.cancel()
            await asyncio.gather(watch, run, return_exceptions=True)
        results = [s.result(t0) for s in streams]
        write_message(
            writer,
            {
                "op": "results",
                "streams": results,
                "intervals": sampler.intervals,
                "trace": sampler.trace,
            },
        )
        writer.write_eof()
        with contextlib.suppress(OSError, asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(reader.read(), CONTROL_TIMEOUT)
        writer.close()
        self.report("result", {"peer": _addr(test.peer), "streams": results})


def _addr(a: Any) -> list[Any] | None:
    return [str(a[0]), int(a[1])] if a else None


# ------------------------------------------------------------------ client
async def _family(host: str, port: int) -> int:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    for fam, *_ in infos:
        if fam in (socket.AF_INET, socket.AF_INET6):
            return int(fam)
    raise OSError(f"{host!r}: no IPv4 or IPv6 address")


async def run_client(
    host: str,
    port: int,
    params: BenchParams,
    config: Config,
    *,
    bind: str | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    on_interval: Callable[[dict[str, Any]], None] | None = None,
    connect_timeout: float | None = CONTROL_TIMEOUT,
) -> dict[str, Any]:
    """Run one test against the server at ``host``:``port``; returns its result.

    ``config`` is the client's connection configuration (``mss`` and
    ``congestion_control`` are set from ``params``). The result (also what
    ``rudp bench --json`` prints) has ``start`` (settings, addresses), ``intervals``
    (this side's interval reports), ``server_intervals``, ``end`` (per stream the
    ``sender`` and ``receiver`` summaries, each from the side that played that
    role, and sums) and, with ``params.trace``, ``trace``/``server_trace``.
    """
    loop = asyncio.get_running_loop()
    cfg = replace(config, mss=params.mss, congestion_control=params.cc)
    family = await _family(host, port)
    local = bind or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    ep = await create_endpoint((local, 0), config=cfg)
    streams: list[Stream] = []
    ctl_writer: asyncio.StreamWriter | None = None
    try:
        reader, ctl_writer = await ep.open_connection(host, port, timeout=connect_timeout)
        cookie = os.urandom(16).hex()
        write_message(
            ctl_writer,
            {
                "op": "hello",
                "version": PROTOCOL_VERSION,
                "cookie": cookie,
                "params": asdict(params),
            },
        )
        ready = await read_message(reader, CONTROL_TIMEOUT)
        if ready["op"] == "error":
            raise BenchError(f"the server refused the test: {ready.get('message')}")
        if ready["op"] != "ready" or not isinstance(ready.get("data_port"), int):
            raise BenchError(f"unexpected answer from the server: {ready['op']!r}")
        data_port = int(ready["data_port"])
        opening = [
            ep.open_connection(host, data_port, timeout=connect_timeout)
            for _ in params.directions()
        ]
        pairs = await asyncio.gather(*opening)
        for sid, (direction, (r, w)) in enumerate(
            zip(params.directions(), pairs, strict=True), start=1
        ):
            line = encode({"op": "stream", "cookie": cookie, "id": sid, "direction": direction})
            w.write(line)
            streams.append(Stream(sid, direction, direction == "up", r, w, header=len(line)))
        msg = await read_message(reader, CONTROL_TIMEOUT)
        if msg["op"] != "start":
            raise BenchError(f"unexpected message from the server: {msg['op']!r}")
        t0 = loop.time()
        start_info = {
            "version": f"rudp {__version__}",
            "protocol": PROTOCOL_VERSION,
            "timestamp": time.time(),
            "connecting_to": {"host": host, "port": port},
            "data_port": data_port,
            "server": ready.get("server"),
            "test": asdict(params),
            "control": addresses(ctl_writer),
            "streams": [{"id": s.id, "direction": s.direction, **s.addresses()} for s in streams],
        }
        if on_start is not None:
            on_start(start_info)
        sampler = Sampler(streams, t0, params.interval, on_interval, params.trace)
        run = asyncio.ensure_future(_run_streams(streams, params, t0, sampler))
        results_msg = asyncio.ensure_future(read_message(reader, None))
        try:
            done, _ = await asyncio.wait({run, results_msg}, return_when=asyncio.FIRST_COMPLETED)
            if run not in done and results_msg.exception() is not None:
                raise BenchError(f"control connection lost: {results_msg.exception()}")
            await run
            results = await asyncio.wait_for(results_msg, CONTROL_TIMEOUT)
        finally:
            for fut in (run, results_msg):
                fut.cancel()
            await asyncio.gather(run, results_msg, return_exceptions=True)
        if results["op"] != "results" or not isinstance(results.get("streams"), list):
            raise BenchError("the server sent no results")
        ctl_writer.write_eof()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(reader.read(), CONTROL_TIMEOUT)
        ctl_writer.close()
        return _client_result(start_info, streams, t0, sampler, results)
    except BaseException:
        for s in streams:
            s.writer.transport.abort()
        if ctl_writer is not None:
            ctl_writer.transport.abort()
        raise
    finally:
        ep.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ep.wait_closed(), 2)


def _client_result(
    start: dict[str, Any],
    streams: list[Stream],
    t0: float,
    sampler: Sampler,
    server: dict[str, Any],
) -> dict[str, Any]:
    theirs = {r.get("id"): r for r in server["streams"] if isinstance(r, dict)}
    per_stream = []
    rows_sent: list[dict[str, Any]] = []
    rows_received: list[dict[str, Any]] = []
    for s in streams:
        mine = s.result(t0)
        other = theirs.get(s.id) or {}
        sender, receiver = (mine, other) if s.sending else (other, mine)
        per_stream.append(
            {"id": s.id, "direction": s.direction, "sender": sender, "receiver": receiver}
        )
        if sender:
            rows_sent.append(sender)
        if receiver:
            rows_received.append(receiver)
    end: dict[str, Any] = {"streams": per_stream}
    end["sum_sent"] = _total(rows_sent)
    end["sum_received"] = _total(rows_received)
    for direction in ("up", "down"):
        sent = [r for r in rows_sent if r.get("direction") == direction]
        received = [r for r in rows_received if r.get("direction") == direction]
        if sent or received:
            end[f"sum_{direction}"] = {
                "sender": dict(_total(sent), direction=direction, role="sender"),
                "receiver": dict(_total(received), direction=direction, role="receiver"),
            }
    out = {
        "start": start,
        "intervals": sampler.intervals,
        "server_intervals": server.get("intervals", []),
        "end": end,
    }
    if sampler.trace_on:
        out["trace"] = sampler.trace
        out["server_trace"] = server.get("trace", [])
    return out


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum of stream summaries: bytes add up, the span covers them all."""
    if not rows:
        return {"bytes": 0, "seconds": 0.0, "bits_per_second": 0.0}
    start = min(float(r["start"]) for r in rows)
    end = max(float(r["end"]) for r in rows)
    seconds = max(end - start, 1e-9)
    nbytes = sum(int(r["bytes"]) for r in rows)
    out: dict[str, Any] = {
        "start": round(start, 6),
        "end": round(end, 6),
        "seconds": round(seconds, 6),
        "bytes": nbytes,
        "bits_per_second": nbytes * 8 / seconds,
    }
    if any("retransmits" in r for r in rows):
        out["retransmits"] = sum(int(r.get("retransmits", 0)) for r in rows)
    return out
