"""Drive rudp engines inside the simulator with simple scripted applications.

:class:`Host` is a :class:`~rudp.sim.SimNode` that wraps an
:class:`~rudp.engine.Endpoint` and, after every input, lets small application
objects react to engine events: :class:`BulkApp` writes a payload (respecting the
send buffer's high-water mark), reads everything it receives, half-closes when
done, and records the outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine import (
    Connection,
    ConnectionAccepted,
    ConnectionEstablished,
    ConnectionTerminated,
    DataReceived,
    Endpoint,
    Event,
    PeerClosed,
    WritingResumed,
)

Address = tuple[Any, ...]


class BulkApp:
    """Send ``payload`` on a connection, collect what arrives, close when done."""

    def __init__(self, payload: bytes = b"", *, read: bool = True, chunk: int = 65536) -> None:
        self.payload = memoryview(payload)
        self.offset = 0
        self.read = read  # False: never read (the receive window closes)
        self.chunk = chunk
        self.received = bytearray()
        self.conn: Connection | None = None
        self.established_at: float | None = None
        self.eof_at: float | None = None
        self.done_at: float | None = None
        self.error: BaseException | None = None
        self.terminated = False
        self.shut = False

    def attach(self, conn: Connection, now: float) -> None:
        self.conn = conn
        self.established_at = now
        self.pump(now)

    def pump(self, now: float) -> None:
        conn = self.conn
        if conn is None or self.terminated:
            return
        while self.offset < len(self.payload) and not conn.writing_paused:
            end = min(self.offset + self.chunk, len(self.payload))
            conn.send(self.payload[self.offset : end], now)
            self.offset = end
        if self.offset >= len(self.payload) and not self.shut:
            self.shut = True
            conn.shutdown(now)
        if self.read and conn.readable:
            self.received += conn.read()

    def on_event(self, ev: Event, now: float) -> None:
        if isinstance(ev, PeerClosed):
            self.pump(now)
            self.eof_at = now
        elif isinstance(ev, ConnectionTerminated):
            if self.conn is not None and self.read:
                self.received += self.conn.read()
            self.terminated = True
            self.error = ev.error
            self.done_at = now
        else:
            self.pump(now)


class Host:
    """A simulator node: an :class:`Endpoint` plus applications reacting to events."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.apps: dict[Connection, BulkApp] = {}
        self.accept_factory: Any = None  # callable() -> BulkApp for accepted connections
        self.accepted: list[BulkApp] = []
        self.events: list[tuple[float, Event]] = []
        self.record = False

    def connect(self, app: BulkApp, addr: Address, port: int, now: float, **kw: Any) -> Connection:
        conn = self.endpoint.connect(addr, port, now, **kw)
        self.apps[conn] = app
        return conn

    # SimNode
    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.endpoint.receive_datagram(data, addr, now)
        self._react(now)

    def datagrams_to_send(self, now: float) -> Sequence[tuple[bytes, Address]]:
        self._react(now)
        return self.endpoint.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        return self.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self._react(now)

    def _react(self, now: float) -> None:
        ep = self.endpoint
        while (ev := ep.next_event()) is not None:
            if self.record:
                self.events.append((now, ev))
            conn = ev.conn
            if isinstance(ev, ConnectionAccepted):
                if self.accept_factory is None:
                    conn.abort(now)
                    continue
                app = self.accept_factory()
                self.apps[conn] = app
                self.accepted.append(app)
                app.attach(conn, now)
                continue
            app = self.apps.get(conn)
            if app is None:
                continue
            if isinstance(ev, ConnectionEstablished):
                app.attach(conn, now)
            elif isinstance(ev, (DataReceived, WritingResumed, PeerClosed, ConnectionTerminated)):
                app.on_event(ev, now)
