"""TIME-WAIT, compacted (as Linux's ``inet_timewait_sock``).

When a connection reaches TIME-WAIT its application has been told it is over; what
is left to do for 2 MSL is small (RFC 9293 §3.3.2, §3.10.7.4): acknowledge a
retransmitted FIN and restart the timer, ignore RSTs (RFC 1337), answer other old
segments with an ACK, and let a new SYN reuse the identity when it cannot be an old
duplicate (RFC 6191, checked by the endpoint). :class:`TimeWait` does exactly that,
in a few hundred bytes instead of a full :class:`~rudp.engine.Connection`, so a busy
client's short connections cost little while they wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

from ..seq import SEQ_MASK, seq_lt
from ..wire.segment import ACK, FIN, RST, SYN, Segment, build_segment, build_segment_ts
from .states import State
from .timers import INF

if TYPE_CHECKING:
    from .auth import AuthSession
    from .connection import Address, Connection


class TimeWaitHost(Protocol):
    """What a :class:`TimeWait` needs from its endpoint (a subset of ConnectionHost)."""

    output: list[tuple[bytes, Address]]

    def wake(self, conn: TimeWait) -> None: ...

    def schedule(self, conn: TimeWait, at: float) -> None: ...

    def released(self, conn: TimeWait) -> None: ...


#: Least time between ACKs sent in reply to old segments (as in Connection).
OOW_ACK_INTERVAL: Final = 0.5


class TimeWait:
    """The TIME-WAIT of one identity. Host API as :class:`Connection`'s: ``receive``,
    ``handle_timer``, ``flush``, ``discard``, ``deadline``/``sched_at``, ``state``."""

    __slots__ = (
        "_ack_owed",
        "_checksum",
        "_handoff",
        "_oow_ack_at",
        "_out",
        "_wnd",
        "addr",
        "auth",
        "deadline",
        "entered",
        "host",
        "key",
        "local_port",
        "msl",
        "rcv_nxt",
        "remote_port",
        "sched_at",
        "snd_nxt",
        "timestamps_ok",
        "ts_offset",
        "ts_recent",
    )

    state: ClassVar[State] = State.TIME_WAIT
    listener_port: ClassVar[int | None] = None
    migrations: ClassVar[int] = 0

    def __init__(self, conn: Connection, host: TimeWaitHost, expires: float) -> None:
        self.host = host
        self._out = host.output
        # The application may still hold the connection: it reads CLOSED once we
        # mark the handoff ended; no reference to it is kept (connection.Handoff).
        self._handoff = conn.detach()
        self.addr = conn.addr
        self.key = conn.key
        self.local_port = conn.local_port
        self.remote_port = conn.remote_port
        self.snd_nxt = conn.snd_max
        self.rcv_nxt = conn.rcv_nxt
        self.timestamps_ok = conn.timestamps_ok
        self.ts_recent = conn.ts_recent
        self.ts_offset = conn.ts_offset
        self._wnd = conn.last_window_field
        self._checksum = conn.config.checksum
        #: TCP-AO: the connection's session, to verify a retransmitted FIN (the host
        #: checks before :meth:`receive`) and to sign the ACK answering it.
        self.auth: AuthSession | None = conn.auth
        self.msl = conn.config.msl
        self._ack_owed = False
        self._oow_ack_at = -1.0
        self.deadline = expires
        #: When TIME-WAIT began (2 MSL before its first deadline).
        self.entered = expires - 2 * self.msl
        self.sched_at = INF

    @property
    def name(self) -> str:
        """As :attr:`Connection.name`."""
        addr = self.addr
        return f"{addr[0]}:{addr[1]}/{self.local_port}>{self.remote_port}"

    def __repr__(self) -> str:
        return f"<TimeWait {self.name}>"

    def receive(self, seg: Segment, now: float, size: int = 0) -> None:
        """RFC 9293 §3.10.7.4 in TIME-WAIT."""
        flags = seg.flags
        if flags & RST:
            return  # RFC 1337: an RST must not end TIME-WAIT early
        ts = seg.ts
        if self.timestamps_ok and ts is not None and seq_lt(ts[0], self.ts_recent):
            self._reply(now)  # RFC 7323 §5.3 R1 (PAWS): an old duplicate
            return
        if flags & FIN and not flags & SYN:
            # A retransmitted FIN: our last ACK was lost. ACK it and restart 2 MSL.
            self.deadline = now + 2 * self.msl
            if self.deadline < self.sched_at:
                self.host.schedule(self, self.deadline)
            self._ack_owed = True
            self.host.wake(self)
            return
        if flags & SYN or seg.payload or seg.seq != self.rcv_nxt:
            self._reply(now)

    def _reply(self, now: float) -> None:
        """An ACK for an old or unacceptable segment, rate limited."""
        if now - self._oow_ack_at >= OOW_ACK_INTERVAL:
            self._oow_ack_at = now
            self._ack_owed = True
            self.host.wake(self)

    def handle_timer(self, now: float) -> None:
        if now >= self.deadline:
            self._end(now)

    def _end(self, now: float) -> None:
        self.deadline = INF
        self._handoff.ended_at = now
        self.host.released(self)

    def flush(self, now: float) -> None:
        if not self._ack_owed:
            return
        self._ack_owed = False
        auth = self.auth
        more = b"" if auth is None else auth.placeholder()
        csum = self._checksum and auth is None  # with TCP-AO, after the MAC
        if self.timestamps_ok:
            tsval = (int(now * 1000) + self.ts_offset) & SEQ_MASK
            data = build_segment_ts(
                self.local_port,
                self.remote_port,
                self.snd_nxt,
                self.rcv_nxt,
                ACK,
                self._wnd,
                b"",
                tsval,
                self.ts_recent,
                more,
                compute_checksum=csum,
            )
        else:
            data = build_segment(
                self.local_port,
                self.remote_port,
                self.snd_nxt,
                self.rcv_nxt,
                ACK,
                self._wnd,
                options=more,
                compute_checksum=csum,
            )
        if auth is not None:
            data = auth.sign(
                data, 32 if self.timestamps_ok else 20, compute_checksum=self._checksum
            )
        self._out.append((data, self.addr))

    def discard(self, now: float) -> None:
        """RFC 6191: a new SYN reuses the identity."""
        self._end(now)

    def abort(self, now: float) -> None:
        """Forget the identity at once (the endpoint is closing)."""
        self.discard(now)

    def migration_acceptable(self, seg: Segment, addr: Any, now: float) -> bool:
        return False

    def stats(self) -> dict[str, Any]:
        return {"state": self.state.value, "time_wait_until": self.deadline}
