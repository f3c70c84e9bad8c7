"""The sans-IO endpoint: many connections and listeners behind one UDP address.

Shape (as aioquic's ``QuicConnection``, one level up):

* :meth:`Endpoint.receive_datagram` — feed one UDP payload and its source address;
* :meth:`Endpoint.datagrams_to_send` — collect ``(payload, address)`` pairs to send;
* :meth:`Endpoint.get_timer` / :meth:`Endpoint.handle_timer` — when to run the
  timers next (the earliest deadline, or an earlier time at which a deadline
  that has since moved later was due), and its handler;
* :meth:`Endpoint.next_event` — application events (:mod:`rudp.engine.events`).

A connection's identity is (peer UDP address, local TCP port, peer TCP port), so one
socket hosts listeners and any number of connections, to one or many peers.

Nothing from the network raises out of :meth:`receive_datagram`: malformed
datagrams are dropped and counted in :attr:`Endpoint.counters`.

Against spoofed sources (docs/security.md): SYN cookies when a listener's queue is
full (:mod:`.syncookies`), fewer SYN,ACK retransmissions under pressure, at most 3x
the bytes received sent to an address before it completes a handshake, and RSTs to
unknown addresses rate limited and never larger than their trigger. Every reply not
sent is counted.
"""

from __future__ import annotations

import heapq
import itertools
import random
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from .. import log
from ..config import Config
from ..errors import AddressInUseError
from ..seq import SEQ_MASK, seq_gt
from ..wire.segment import (
    ACK,
    COALESCE_MAX,
    FIN,
    RST,
    SYN,
    ParseError,
    Segment,
    build_segment,
    coalesce,
    encode_options,
    parse_segment,
)
from .auth import AuthSession, KeyChain, as_key_chain
from .congestion import lookup
from .connection import AMPLIFICATION_FACTOR, DEFAULT_PEER_MSS, Connection, offered_wscale
from .events import (
    ConnectionAccepted,
    ConnectionEstablished,
    ConnectionTerminated,
    DataReceived,
    Event,
    PeerClosed,
    WritingResumed,
)
from .isn import isn_rfc6528
from .states import CLOSED, SYN_RECEIVED, TIME_WAIT
from .syncookies import MAX_AGE, PERIOD, SynCookies, cookie_tsval, identity, ts_options
from .timers import INF
from .timewait import TimeWait

#: What the endpoint holds per identity: a connection, or its compacted TIME-WAIT.
Held = Connection | TimeWait

Address = tuple[Any, ...]
ConnKey = tuple[Address, int, int]
#: ``isn(identity, now)``; the identity is a connection key (or a key with a tag).
IsnFunc = Callable[[Any, float], int]

EPHEMERAL_PORTS = (49152, 65535)
#: ``Endpoint.listen(ANY_PORT)``: a listener for every TCP port without its own.
ANY_PORT: Final = 0
#: An identity in TIME-WAIT may be reused for an active open after this long, if the
#: old connection used timestamps (Linux tcp_tw_reuse waits one second).
TW_REUSE_DELAY: Final = 1.0
#: Ephemeral port selection (RFC 6056 §3.3.4): destinations with a cursor of their
#: own (the table is cleared when full).
PORT_CURSORS: Final = 1024
#: RSTs to addresses with no connection: at most this many per second, in bursts of
#: at most :data:`RST_BURST` (FreeBSD's default ``icmplim``, which also bounds its
#: RSTs); the rest are counted in ``rst_rate_limited``.
RST_RATE: Final = 200.0
RST_BURST: Final = 200.0
#: A SYN,ACK is retransmitted at least this many times whatever the pressure (Linux
#: reqsk_timer_handler's floor).
MIN_SYNACK_RETRIES: Final = 2
#: A listener counts as under pressure this long after its queue was last full.
PRESSURE_HOLD: Final = 10.0
_DEFAULT_CONFIG: Final = Config()
#: Datagrams one connection sends per round-robin turn when several connections
#: send at once (:meth:`Endpoint.datagrams_to_send`). All of one connection's
#: datagrams, then the next's, would let the first take a nearly full bottleneck
#: queue every time and the others lose what arrives after it (measured against
#: Linux over a 1-BDP tail-drop queue, benchmarks/linuxpeer/fair.py: two BBR flows
#: of one endpoint shared 86/14, Linux's two 50/50; interleaved, rudp's too).
#: Linux interleaves flows in its qdisc: fq's default quantum is two full-size
#: packets. A connection alone keeps its whole batch (UDP GSO batches intact).
SEND_QUANTUM: Final = 2


def _interleave(
    out: list[tuple[bytes, Address]], runs: list[tuple[Held, int, int]]
) -> list[tuple[bytes, Address]]:
    """``out`` with the connections' runs (``(conn, start, end)``: what each
    flush appended; adjacent, so together they are ``out[runs[0][1]:]``) dealt
    round-robin, :data:`SEND_QUANTUM` at a time, each connection's datagrams in
    their order; anything before the first run (the endpoint's own replies to
    datagrams received) first."""
    per_conn: dict[Held, list[tuple[bytes, Address]]] = {}
    for conn, start, end in runs:
        lst = per_conn.get(conn)
        if lst is None:
            per_conn[conn] = out[start:end]
        else:
            lst.extend(out[start:end])
    if len(per_conn) == 1:
        return out[:]
    batch = out[: runs[0][1]]
    queues = list(per_conn.values())
    q = SEND_QUANTUM
    pos = 0
    while queues:
        still = []
        for lst in queues:
            batch.extend(lst[pos : pos + q])
            if len(lst) > pos + q:
                still.append(lst)
        queues = still
        pos += q
    return batch


class Listener:
    """A passive open on one TCP port (the LISTEN state, RFC 9293 §3.10.7.2)."""

    __slots__ = (
        "accept_pending",
        "backlog",
        "cookies_until",
        "full_at",
        "port",
        "syn_received",
    )

    def __init__(self, port: int, backlog: int) -> None:
        self.port = port
        self.backlog = backlog
        #: Half-open connections, oldest first (a dict keeps insertion order).
        self.syn_received: dict[Connection, None] = {}
        self.accept_pending = 0  # established, ConnectionAccepted not yet taken
        #: SYN cookies sent recently may be answered until then (Linux checks a
        #: cookie only after a recent queue overflow, tcp_synq_no_recent_overflow).
        self.cookies_until = float("-inf")
        #: When a SYN last found the queue full.
        self.full_at = float("-inf")

    @property
    def half_open(self) -> int:
        """Connections in SYN-RECEIVED."""
        return len(self.syn_received)

    @property
    def full(self) -> bool:
        """The queue (half-open plus not yet accepted connections) is at its backlog."""
        return len(self.syn_received) + self.accept_pending >= self.backlog

    def synack_retries(self, base: int, now: float) -> int:
        """SYN,ACK retransmissions a half-open connection may make now.

        Under pressure old entries are pruned sooner, as Linux's reqsk_timer_handler
        does: half the queue is reserved for young entries (those that have not
        retransmitted yet), and each halving of the young share costs one
        retransmission, down to :data:`MIN_SYNACK_RETRIES`. A flood of spoofed SYNs,
        whose entries all grow old, then holds a slot 7 s (1 + 2 + 4), not 63 s.
        Pressure: the half-open queue is more than half the backlog (Linux's test),
        or it was full less than :data:`PRESSURE_HOLD` ago. Linux looks at the
        length alone, so a burst's entries, all expiring together, stop being pruned
        once half of them are gone; the hold lets the rest go too."""
        qlen = len(self.syn_received)
        if base <= MIN_SYNACK_RETRIES or (
            2 * qlen <= max(8, self.backlog) and now - self.full_at >= PRESSURE_HOLD
        ):
            return base
        young = 2 * sum(1 for c in self.syn_received if not c.retransmissions)
        while base > MIN_SYNACK_RETRIES and qlen >= young:
            base -= 1
            young *= 2
        return base


class Endpoint:
    """All TCP state behind one UDP socket, driven with explicit ``now`` values.

    It is the host of its connections (:class:`~rudp.engine.connection.ConnectionHost`):
    they reach it only through that interface.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        isn: IsnFunc | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config if config is not None else _DEFAULT_CONFIG
        lookup(self.config.congestion_control)  # ConfigError now, not at the first SYN
        #: TCP-AO master keys (docs/authentication.md), or None: authentication off.
        self.auth_keys: KeyChain | None = as_key_chain(self.config.auth_keys)
        #: Identity -> connection (or its compacted TIME-WAIT, :mod:`.timewait`).
        self.connections: dict[ConnKey, Held] = {}
        #: (local TCP port, remote TCP port) -> connections, for NAT rebinding.
        # (local port, remote port) -> the connection, or a set when several peers
        # share the ports (a set per entry would cost ~300 bytes per connection).
        self._by_ports: dict[tuple[int, int], Held | set[Held]] = {}
        self._to_compact: list[Connection] = []
        self.listeners: dict[int, Listener] = {}
        self._isn: IsnFunc = isn if isn is not None else isn_rfc6528
        self.syncookies = SynCookies()
        self._rst_tokens = RST_BURST
        self._rst_time = float("-inf")
        self._seed = seed
        self._rng: random.Random | None = None  # created on first use (ephemeral ports)
        #: The range (inclusive) active opens take local ports from, as Linux's
        #: ``ip_local_port_range``; settable.
        self.ephemeral_ports: tuple[int, int] = EPHEMERAL_PORTS
        #: Per destination, where the next ephemeral port search starts (RFC 6056).
        self._port_cursor: dict[tuple[Address, int], int] = {}
        #: Datagrams waiting for :meth:`datagrams_to_send` (drained in place).
        self.output: list[tuple[bytes, Address]] = []
        self._dirty: dict[Held, None] = {}
        self._events: deque[Event] = deque()
        self._heap: list[tuple[float, int, Held]] = []
        self._tie = itertools.count()
        #: TIME-WAIT deadlines, in the order they fall: every record lasts 2 MSL from
        #: when it began, so a queue keeps them sorted at O(1) a record, and the heap
        #: holds only the live connections' timers (a few dozen, where thousands of
        #: TIME-WAIT records made every push and pop walk 12-16 levels). A deadline
        #: that would fall before the queue's last one (a smaller MSL) goes to the heap.
        self._tw_queue: deque[tuple[float, Held]] = deque()
        #: Endpoint-wide counters: datagrams, drops by reason, RSTs sent, …
        self.counters: dict[str, int] = {
            "datagrams_received": 0,
            "datagrams_sent": 0,
            "segments_coalesced": 0,
            "dropped": 0,
            "rst_sent": 0,
            "syn_dropped": 0,
            "internal_errors": 0,
            "migrations": 0,
            "time_wait_reused": 0,
            "rst_rate_limited": 0,
            "syncookies_sent": 0,
            "syncookies_ok": 0,
            "syncookies_failed": 0,
            "half_open_evicted": 0,
            "listen_overflows": 0,
            # Totals of connections that are gone (stats() adds the live ones).
            "amplification_limited": 0,
            "acks_rate_limited": 0,
        }

    # ------------------------------------------------------------ public API
    def listen(self, port: int = ANY_PORT, backlog: int = 128) -> None:
        """Accept connections to TCP ``port``, or with ``port=ANY_PORT`` (0) to any
        TCP port no other listener has (docs/wire.md: TCP ports identify connections,
        UDP addresses route them, so a SYN's ports are mirrored whatever a port
        mapping did to the UDP ports). At most ``backlog`` half-open plus
        not-yet-accepted connections are held; past that, SYNs are answered with
        SYN cookies (``Config.syncookies``; docs/security.md)."""
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port must be in 0..65535 (0: any), not {port!r}")
        if backlog < 1:
            raise ValueError(f"backlog must be >= 1, not {backlog!r}")
        if port in self.listeners:
            what = "any port" if port == ANY_PORT else f"port {port}"
            raise AddressInUseError(f"already listening on {what}")
        self.listeners[port] = Listener(port, backlog)

    def stop_listening(self, port: int) -> None:
        """Stop accepting on ``port``; established connections are unaffected."""
        self.listeners.pop(port, None)

    def connect(
        self,
        addr: Address,
        remote_port: int,
        now: float,
        *,
        local_port: int | None = None,
        config: Config | None = None,
    ) -> Connection:
        """Active open to TCP ``remote_port`` at UDP address ``addr``; sends SYN.

        The same identity cannot be reopened while a previous connection holds it,
        TIME-WAIT included (RFC 9293 §3.4.2 quiet time); with no ``local_port``
        an unused ephemeral port is picked.
        """
        if not 0 < remote_port <= 0xFFFF:
            raise ValueError(f"remote_port must be in 1..65535, not {remote_port!r}")
        addr = tuple(addr)
        if local_port is None:
            local_port = self._pick_port(addr, remote_port, now)
        elif not 0 < local_port <= 0xFFFF:
            raise ValueError(f"local_port must be in 1..65535, not {local_port!r}")
        key = (addr, local_port, remote_port)
        old = self.connections.get(key)
        if old is not None:
            raise AddressInUseError(f"connection {key} exists (state {old.state})")
        if config is not None:
            lookup(config.congestion_control)
        cfg = config or self.config
        iss = self._isn(key, now)
        conn = Connection(
            self,
            cfg,
            addr,
            local_port,
            remote_port,
            iss,
            now,
            ts_offset=self._ts_offset(key),
            auth=_session(as_key_chain(cfg.auth_keys), iss, None, local_port, remote_port),
        )
        self._index(conn)
        conn.open_active(now)
        return conn

    def receive_datagram(self, data: bytes | memoryview, addr: Address, now: float) -> None:
        """Process one UDP payload from ``addr``. Never raises for any input.

        ``data`` may be a borrowed view of a receive buffer reused after the call:
        the engine copies what it keeps (received data, out-of-order runs)."""
        counters = self.counters
        counters["datagrams_received"] += 1
        try:
            seg = parse_segment(data)
        except ParseError as exc:
            counters["dropped"] += 1
            key = "drop_" + exc.reason
            counters[key] = counters.get(key, 0) + 1
            if log.debug_enabled:
                log.logger.debug("drop", reason=exc.reason, peer=addr, size=len(data))
            return
        try:
            conn = self.connections.get((addr, seg.dport, seg.sport))
            if conn is not None:
                if conn.auth is not None and not self._authentic(conn.auth, data, seg, addr):
                    return  # RFC 5925 §7.5: before anything else looks at it
                if conn.state is TIME_WAIT and self._time_wait_reuse(conn, seg, now):
                    conn = None
                else:
                    conn.receive(seg, now, len(data))
                    return
            elif self._migrate(seg, addr, now, len(data), data):
                return
            listener = self.listeners.get(seg.dport) or self.listeners.get(ANY_PORT)
            if listener is not None and seg.dport:
                self._listen_segment(listener, seg, addr, now, len(data), data)
            else:
                self._closed_segment(seg, addr, now, len(data), data)
        except Exception:  # pragma: no cover - a bug in rudp, never the peer's fault
            counters["internal_errors"] += 1
            log.warning("internal_error", peer=addr, error=traceback.format_exc())

    def receive_datagrams(
        self, datagrams: Sequence[bytes | memoryview], addr: Address, now: float
    ) -> None:
        """Process UDP payloads that arrived from ``addr`` in this order (a receive
        batch, or a GRO super-datagram split at its segment size). Never raises.

        Receive coalescing (docs/performance.md), as Linux's GRO merges segments
        before TCP sees them: a run of in-order data segments of one connection
        that could be one TCP send (same ports, ACK, window and options,
        consecutive sequence numbers, valid checksums) is processed as one segment
        when the connection's header-prediction path takes it, which gives the
        same result as one at a time; anything else goes through
        :meth:`receive_datagram`. Each datagram may be a borrowed view, as there."""
        n = len(datagrams)
        i = 0
        receive = self.receive_datagram
        while i < n:
            if i + 1 < n:
                k, payload = coalesce(datagrams, i, COALESCE_MAX)
                if payload is not None:
                    if not self._receive_run(datagrams, i, k, payload, addr, now):
                        for j in range(i, i + k):
                            receive(datagrams[j], addr, now)
                    i += k
                    continue
            receive(datagrams[i], addr, now)
            i += 1

    def _receive_run(
        self,
        datagrams: Sequence[bytes | memoryview],
        i: int,
        k: int,
        payload: bytes,
        addr: Address,
        now: float,
    ) -> bool:
        """Hand ``k`` coalesced datagrams from ``datagrams[i]`` to their connection as
        one segment; False if it does not take them that way (nothing was done)."""
        first = datagrams[i]
        try:
            try:
                seg = parse_segment(first, check=False)  # coalesce() checked the checksums
            except ParseError:
                return False  # malformed options: dropped one by one, counted by reason
            conn = self.connections.get((addr, seg.dport, seg.sport))
            if not isinstance(conn, Connection) or conn.auth is not None:
                return False
            seg_size = len(seg.payload)
            hlen = len(first) - seg_size
            last_seq = (seg.seq + len(payload) - (len(datagrams[i + k - 1]) - hlen)) & SEQ_MASK
            seg.payload = payload
            if not conn.receive_run(seg, k, seg_size, last_seq, now):
                return False
        except Exception:  # pragma: no cover - a bug in rudp, never the peer's fault
            self.counters["internal_errors"] += 1
            log.warning("internal_error", peer=addr, error=traceback.format_exc())
            return True
        counters = self.counters
        counters["datagrams_received"] += k
        counters["segments_coalesced"] += k
        return True

    def _migrate(
        self, seg: Segment, addr: Address, now: float, size: int, data: bytes | memoryview
    ) -> bool:
        """NAT rebinding (docs/migration.md): a segment from an unknown address with
        the TCP ports of a live connection moves that connection only if it passes
        the connection's strict checks (with TCP-AO, its MAC first); the new address
        stays unvalidated (and amplification-limited) until it proves it receives."""
        candidates = self.held_by_ports((seg.dport, seg.sport))
        if not candidates or seg.flags & (SYN | ACK) == SYN:
            return False  # nothing to move; a SYN goes to the listener
        reason = "migration_rejected"
        for conn in candidates:
            if not isinstance(conn, Connection):
                continue
            if conn.auth is not None and (bad := conn.auth.check(data, seg)) is not None:
                reason = bad  # RFC 5925 §7.5: not authentic, so nothing else counts
                continue
            if conn.migration_acceptable(seg, addr, now):
                old_key = conn.key
                conn.migrate(addr, now)
                if self.connections.get(old_key) is conn:
                    del self.connections[old_key]
                self.connections[conn.key] = conn
                self.counters["migrations"] += 1
                if log.info_enabled:
                    log.logger.info("migrate", conn=conn.name, old=old_key[0], new=addr)
                conn.receive(seg, now, size)
                return True
        # A new connection that happens to use the same TCP ports from another
        # address may be completing a SYN-cookie handshake.
        listener = self.listeners.get(seg.dport) or self.listeners.get(ANY_PORT)
        if (
            listener is not None
            and seg.flags & (SYN | RST | ACK) == ACK
            and self._cookie_ack(listener, seg, addr, now, size, data)
        ):
            return True
        # Not proven: drop it silently. Answering it with an RST (as a segment for no
        # connection would be) could reset the real connection through the NAT.
        self._drop(reason)
        return True

    def held_by_ports(self, ports: tuple[int, int]) -> list[Held]:
        """Connections and TIME-WAIT records with these (local, remote) TCP ports."""
        same = self._by_ports.get(ports)
        if same is None:
            return []
        return list(same) if isinstance(same, set) else [same]

    def _index(self, conn: Held) -> None:
        self.connections[conn.key] = conn
        ports = (conn.local_port, conn.remote_port)
        same = self._by_ports.get(ports)
        if same is None:
            self._by_ports[ports] = conn
        elif isinstance(same, set):
            same.add(conn)
        elif same is not conn:
            self._by_ports[ports] = {same, conn}

    def _unindex_ports(self, conn: Held, replacement: Held | None = None) -> None:
        """Take ``conn`` out of the by-ports index (putting ``replacement`` in)."""
        ports = (conn.local_port, conn.remote_port)
        same = self._by_ports.get(ports)
        if same is None:
            return
        if isinstance(same, set):
            same.discard(conn)
            if replacement is not None:
                same.add(replacement)
            if len(same) == 1:
                self._by_ports[ports] = next(iter(same))
            elif not same:
                del self._by_ports[ports]
        elif same is conn:
            if replacement is not None:
                self._by_ports[ports] = replacement
            else:
                del self._by_ports[ports]

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Everything to send now, as ``(payload, destination address)`` pairs.

        When several connections have datagrams in one call, they are interleaved
        round-robin, :data:`SEND_QUANTUM` datagrams per connection per turn, each
        connection's own order kept (see :func:`_interleave`).
        """
        out = self.output
        runs: list[tuple[Held, int, int]] = []
        for _ in range(8):
            dirty = self._dirty
            if not dirty:
                break
            self._dirty = {}
            for conn in dirty:
                start = len(out)
                conn.flush(now)  # a CLOSED one may still owe its last RST
                if len(out) > start:
                    runs.append((conn, start, len(out)))
        if self._to_compact:
            self._compact()
        if not out:
            return []
        self.counters["datagrams_sent"] += len(out)
        if len(runs) > 1 and len(out) - runs[0][1] > SEND_QUANTUM:
            batch = _interleave(out, runs)
        else:
            batch = out[:]
        out.clear()
        return batch

    def get_timer(self) -> float | None:
        """When to call :meth:`handle_timer` next: the earliest deadline of any
        connection, or None -- or a little earlier. A deadline that moved later
        since it was scheduled (an ACK restarting the retransmission timer, on
        nearly every segment) keeps its place until its old time comes, and
        handle_timer() then finds it later and reschedules it (Linux's timer
        wheel defers the same way): a host wakes up once per such timer instead
        of re-sorting it at every segment."""
        heap = self._heap
        t_heap: float | None = None
        while heap:
            t, _, conn = heap[0]
            if conn.sched_at != t or conn.state is CLOSED:
                heapq.heappop(heap)  # stale entry
                continue
            if conn.deadline == INF:
                heapq.heappop(heap)  # no timer armed any more
                conn.sched_at = INF
                continue
            t_heap = t
            break
        queue = self._tw_queue
        while queue:
            t, conn = queue[0]
            if conn.sched_at != t or conn.state is CLOSED or conn.deadline == INF:
                queue.popleft()  # ended early (a new SYN reused the identity)
                if conn.sched_at == t:
                    conn.sched_at = INF
                continue
            if t_heap is None or t < t_heap:
                return t
            break
        return t_heap

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now``."""
        heap = self._heap
        # Only what is due on entry, each connection once: a timer (re-)armed at or
        # before ``now`` while these run waits for the next call, so no timer can
        # make this spin.
        due: list[tuple[float, Held]] = []
        while heap and heap[0][0] <= now:
            t, _, conn = heapq.heappop(heap)
            due.append((t, conn))
        queue = self._tw_queue
        while queue and queue[0][0] <= now:
            due.append(queue.popleft())
        ran: set[int] = set()
        for t, conn in due:
            if conn.sched_at != t or conn.state is CLOSED or id(conn) in ran:
                continue
            ran.add(id(conn))
            conn.sched_at = INF
            d = conn.deadline
            if d > now:
                if d != INF:
                    self.schedule(conn, d)
                continue
            try:
                conn.handle_timer(now)
            except Exception:  # pragma: no cover - a bug in rudp
                self.counters["internal_errors"] += 1
                log.warning("internal_error", conn=conn.name, error=traceback.format_exc())

    def next_event(self) -> Event | None:
        """The next application event, or None."""
        if not self._events:
            return None
        ev = self._events.popleft()
        if type(ev) is ConnectionAccepted:
            listener = self.listeners.get(ev.port)
            if listener is not None and listener.accept_pending > 0:
                listener.accept_pending -= 1
        return ev

    def stats(self) -> dict[str, int]:
        """Endpoint counters plus the number of connections by state.

        ``amplification_limited`` and ``acks_rate_limited`` count replies the
        connections did not send (the amplification limit; the limits on replies to
        unacceptable segments), live connections and gone ones together."""
        out = dict(self.counters)
        out["connections"] = len(self.connections)
        for conn in self.connections.values():
            key = "state_" + conn.state.value
            out[key] = out.get(key, 0) + 1
            if isinstance(conn, Connection):
                out["amplification_limited"] += conn.amplification_limited
                out["acks_rate_limited"] += conn.acks_rate_limited
        return out

    # ------------------------------------------- ConnectionHost (for connections)
    def wake(self, conn: Held) -> None:
        self._dirty[conn] = None

    def schedule(self, conn: Held, at: float) -> None:
        conn.sched_at = at
        heapq.heappush(self._heap, (at, next(self._tie), conn))

    def established(self, conn: Connection) -> None:
        port = conn.listener_port
        if port is None:
            self._events.append(ConnectionEstablished(conn))
            return
        listener = self.listeners.get(port)
        if listener is not None:
            listener.syn_received.pop(conn, None)
            listener.accept_pending += 1
        self._events.append(ConnectionAccepted(conn, port))

    def readable(self, conn: Connection) -> None:
        self._events.append(DataReceived(conn))

    def peer_closed(self, conn: Connection) -> None:
        self._events.append(PeerClosed(conn))

    def writable(self, conn: Connection) -> None:
        self._events.append(WritingResumed(conn))

    def terminated(self, conn: Connection, error: BaseException | None) -> None:
        self._events.append(ConnectionTerminated(conn, error))

    def entered_time_wait(self, conn: Connection) -> None:
        self._to_compact.append(conn)
        self.wake(conn)  # its final ACK (if owed) leaves before it is compacted

    def _compact(self) -> None:
        """Replace connections in TIME-WAIT by compact records (their final ACKs have
        been flushed)."""
        for conn in self._to_compact:
            if conn.state is not TIME_WAIT or self.connections.get(conn.key) is not conn:
                continue
            self._retire_counters(conn)
            tw = TimeWait(conn, self, conn.time_wait_until)
            self.connections[conn.key] = tw
            self._unindex_ports(conn, tw)
            self._dirty.pop(conn, None)
            at = tw.deadline
            queue = self._tw_queue
            if not queue or queue[-1][0] <= at:
                tw.sched_at = at
                queue.append((at, tw))
            else:
                self.schedule(tw, at)
        self._to_compact.clear()

    def synack_retries(self, conn: Connection, now: float) -> int:
        base = conn.config.synack_retries
        port = conn.listener_port
        listener = self.listeners.get(port) if port is not None else None
        return base if listener is None else listener.synack_retries(base, now)

    def released(self, conn: Held) -> None:
        if isinstance(conn, Connection):
            self._retire_counters(conn)
        if self.connections.get(conn.key) is conn:
            del self.connections[conn.key]
        self._unindex_ports(conn)
        if isinstance(conn, Connection) and conn.listener_port is not None:
            listener = self.listeners.get(conn.listener_port)
            if listener is not None:
                listener.syn_received.pop(conn, None)
        # Stays in the dirty set if it still owes its last RST (flush sends it).

    def _retire_counters(self, conn: Connection) -> None:
        """Keep a leaving connection's counts of replies it did not send."""
        c = self.counters
        c["amplification_limited"] += conn.amplification_limited
        c["acks_rate_limited"] += conn.acks_rate_limited

    # ------------------------------------------------------------- internals
    def _pick_port(self, addr: Address, remote_port: int, now: float) -> int:
        """An ephemeral TCP port whose identity towards ``addr``/``remote_port`` is
        free, chosen as RFC 6056 §3.3.4 ("double-hash port selection") and Linux's
        ``__inet_hash_connect`` do: each destination starts at its own random offset
        into the range and moves on through it, so the next port tried is the one that
        destination used longest ago. An identity in TIME-WAIT is reused when the old
        connection used timestamps and ended over a second ago (Linux's
        ``tcp_tw_reuse``): our new SYN's timestamp and ISN are then above anything the
        old incarnation sent, so the peer tells them apart (RFC 6191). With the ports
        cycling in order that is the first port tried once the range is spent, where
        random probing would have to search the whole range for it."""
        lo, hi = self.ephemeral_ports
        span = hi - lo + 1
        rng = self._rng
        if rng is None:
            rng = self._rng = random.Random(self._seed)
        dest = (addr, remote_port)
        cursors = self._port_cursor
        start = cursors.get(dest)
        if start is None:
            if len(cursors) >= PORT_CURSORS:
                cursors.clear()  # bounded: a destination seen again starts afresh
            start = rng.randrange(span)
        connections = self.connections
        for i in range(span):
            port = lo + (start + i) % span
            held = connections.get((addr, port, remote_port))
            if held is not None:
                if not (
                    isinstance(held, TimeWait)
                    and held.timestamps_ok
                    and now - held.entered >= TW_REUSE_DELAY
                ):
                    continue
                held.discard(now)
                self.counters["time_wait_reused"] += 1
            # RFC 6056's table entry counts every port tried. (Linux adds a small
            # random step since 5.18 against tracking through its table shared by
            # hashed destinations; these cursors are not shared.)
            cursors[dest] = (start + i + 1) % span
            return port
        raise AddressInUseError(f"no free local port towards {addr} port {remote_port}")

    def _ts_offset(self, key: ConnKey) -> int:
        """A per-connection offset for our timestamp clock, as Linux's tsoffset: a
        keyed hash of the identity, so the clock reveals nothing across connections
        (RFC 7323 §7.1)."""
        return self._isn((key, "tsoffset"), 0.0)

    def _time_wait_reuse(self, conn: Held, seg: Segment, now: float) -> bool:
        """RFC 6191: a new SYN for an identity in TIME-WAIT may end it and open a new
        incarnation through the listener when it cannot be an old duplicate: its
        TSval is above the old connection's TS.Recent (both used timestamps), or,
        without timestamps, its sequence number is above the final RCV.NXT."""
        if seg.flags & (SYN | ACK | RST | FIN) != SYN or not (
            seg.dport in self.listeners or ANY_PORT in self.listeners
        ):
            return False
        if conn.timestamps_ok and seg.ts is not None:
            newer = seq_gt(seg.ts[0], conn.ts_recent)
        else:
            newer = seq_gt(seg.seq, conn.rcv_nxt)
        if newer:
            conn.discard(now)
            return True
        return False

    def _listen_segment(
        self,
        listener: Listener,
        seg: Segment,
        addr: Address,
        now: float,
        size: int,
        data: bytes | memoryview,
    ) -> None:
        """RFC 9293 §3.10.7.2: a segment for a listener with no connection."""
        flags = seg.flags
        if flags & SYN and flags & (FIN | RST):
            # Nonsense in LISTEN (Linux discards SYN+FIN here): no half-open
            # connection, no reply.
            self._drop("listen_bad_flags")
            return
        if flags & RST:
            self._drop("listen_rst")  # first: an incoming RST is ignored
            return
        if flags & ACK:
            # Second: any ACK -> <SEQ=SEG.ACK><CTL=RST>, unless it completes a
            # handshake answered with a SYN cookie.
            if not flags & SYN and self._cookie_ack(listener, seg, addr, now, size, data):
                return
            if self.auth_keys is not None:
                self._drop("auth_no_connection")  # an RST could not be signed
                return
            self._send_rst(seg, addr, now, size)
            return
        if not flags & SYN:
            self._drop("listen_no_syn")
            return
        auth = None
        if self.auth_keys is not None:
            # TCP-AO: the SYN's MAC first (RFC 5925 §7.5); a forged SYN touches
            # nothing, not even the listener's pressure state.
            auth = self._verified_syn(self.auth_keys, seg, addr, now, data)
            if auth is None:
                return
        # Third: SYN. Bounded half-open + accept queue (backlog).
        if listener.accept_pending >= listener.backlog:
            # Nobody accepts: a cookie would only complete into a full queue (Linux
            # drops the SYN too, LINUX_MIB_LISTENOVERFLOWS).
            listener.full_at = now
            self.counters["syn_dropped"] += 1
            self.counters["listen_overflows"] += 1
            self._drop("backlog_full")
            return
        mode = self.config.syncookies
        full = listener.full
        if full:
            listener.full_at = now
        if mode == "always" or (full and mode == "auto"):
            self._send_cookie(listener, seg, addr, now, size)
            return
        if full:
            # No cookies: make room by evicting the oldest half-open connection (a
            # flood's entries grow old first; a real client's SYN gets a slot).
            if not listener.syn_received:
                self.counters["syn_dropped"] += 1
                self._drop("backlog_full")
                return
            oldest = next(iter(listener.syn_received))
            oldest.discard(now)
            self.counters["half_open_evicted"] += 1
        key = (addr, seg.dport, seg.sport)
        conn = Connection(
            self,
            self.config,
            addr,
            seg.dport,
            seg.sport,
            self._isn(key, now) if auth is None else auth.local_isn,
            now,
            listener_port=listener.port,
            ts_offset=self._ts_offset(key),
            auth=auth,
        )
        listener.syn_received[conn] = None
        self._index(conn)
        conn.open_passive(seg, now, size)

    def _send_cookie(
        self, listener: Listener, seg: Segment, addr: Address, now: float, size: int
    ) -> None:
        """Answer a SYN statelessly (RFC 4987 §3.6): a SYN,ACK whose ISN is a SYN
        cookie (:mod:`.syncookies`); nothing is kept. As a connection's SYN,ACK it
        offers only what the SYN offered; without timestamps, neither window scaling
        nor SACK (the cookie cannot carry them)."""
        cfg = self.config
        key = (addr, seg.dport, seg.sport)
        mss = DEFAULT_PEER_MSS if seg.mss is None else seg.mss
        ts = None
        ws: int | None = None
        sack_perm = False
        opts: int | None = None
        if cfg.timestamps and seg.ts is not None:
            sack_perm = cfg.sack and seg.sack_perm
            if seg.wscale is not None:
                ws = offered_wscale(cfg)
            opts = ts_options(seg.wscale, sack_perm)
            tsval = (int(now * 1000) + self._ts_offset(key)) & SEQ_MASK
            ts = (cookie_tsval(tsval, opts), seg.ts[0])
        cookie = self.syncookies.make(identity(addr, seg.dport, seg.sport), seg.seq, mss, opts, now)
        options = encode_options(mss=cfg.mss, wscale=ws, sack_perm=sack_perm, ts=ts)
        keys = self.auth_keys
        auth = None
        if keys is not None:
            # TCP-AO (the SYN verified already): signed as the connection would sign
            # it, under the traffic key of our ISN (the cookie) and the SYN's.
            auth = AuthSession.for_connection(keys, cookie, seg.seq, seg.dport, seg.sport)
            options += auth.placeholder()
        data = build_segment(
            seg.dport,
            seg.sport,
            cookie,
            (seg.seq + 1) & SEQ_MASK,
            SYN | ACK,
            min(cfg.rcv_buf, 0xFFFF),
            b"",
            options,
            compute_checksum=cfg.checksum and auth is None,
        )
        if auth is not None:
            data = auth.sign(data, compute_checksum=cfg.checksum)
        if len(data) > AMPLIFICATION_FACTOR * size:
            # Never more than 3x what the (possibly spoofed) source sent us.
            self._drop("synack_amplification")
            return
        listener.cookies_until = now + MAX_AGE * PERIOD
        self.output.append((data, addr))
        self.counters["syncookies_sent"] += 1
        if log.info_enabled and self.counters["syncookies_sent"] == 1:
            # Linux logs "Possible SYN flooding on port N. Sending cookies." once.
            log.logger.info("syncookies", port=listener.port, mode=cfg.syncookies)

    def _cookie_ack(
        self,
        listener: Listener,
        seg: Segment,
        addr: Address,
        now: float,
        size: int,
        data: bytes | memoryview,
    ) -> bool:
        """An ACK at a listener: if it acknowledges a valid SYN cookie, create the
        connection from it (with the options the cookie carries) and give it the
        ACK, data and FIN included. True if the segment was taken (or dropped
        because nobody accepts); False to answer it with an RST."""
        mode = self.config.syncookies
        if mode == "never" or (mode == "auto" and now > listener.cookies_until):
            return False  # no cookie of ours can be out there
        ts = seg.ts if self.config.timestamps else None
        found = self.syncookies.check(
            identity(addr, seg.dport, seg.sport),
            (seg.seq - 1) & SEQ_MASK,
            (seg.ack - 1) & SEQ_MASK,
            None if ts is None else ts[1],
            now,
        )
        if found is None:
            self.counters["syncookies_failed"] += 1
            return False
        auth = None
        if self.auth_keys is not None:
            # TCP-AO: the ACK's MAC, under the ISNs the cookie stands for, before
            # anything is created (docs/authentication.md); a forged one is dropped
            # and counted, never answered.
            local_isn, peer_isn = (seg.ack - 1) & SEQ_MASK, (seg.seq - 1) & SEQ_MASK
            auth = AuthSession.for_connection(
                self.auth_keys, local_isn, peer_isn, seg.dport, seg.sport
            )
            if not self._authentic(auth, data, seg, addr):
                return True
        if listener.accept_pending >= listener.backlog:
            self.counters["listen_overflows"] += 1
            self._drop("backlog_full")
            return True  # the peer retransmits; Linux drops it too
        self.counters["syncookies_ok"] += 1
        key = (addr, seg.dport, seg.sport)
        conn = Connection(
            self,
            self.config,
            addr,
            seg.dport,
            seg.sport,
            (seg.ack - 1) & SEQ_MASK,
            now,
            listener_port=listener.port,
            ts_offset=self._ts_offset(key),
            auth=auth,
        )
        syn = Segment(seg.sport, seg.dport, (seg.seq - 1) & SEQ_MASK, 0, SYN, seg.wnd)
        syn.mss = found.mss
        syn.wscale = found.wscale
        syn.sack_perm = found.sack_perm
        if found.timestamps and ts is not None:
            syn.ts = (ts[0], 0)
        listener.syn_received[conn] = None
        self._index(conn)
        conn.open_cookie(syn, now)
        conn.receive(seg, now, size)
        if conn.state is SYN_RECEIVED:  # pragma: no cover - the ACK was checked
            conn.discard(now)  # never left without the timers a SYN,ACK would arm
        return True

    def _closed_segment(
        self, seg: Segment, addr: Address, now: float, size: int, data: bytes | memoryview
    ) -> None:
        """RFC 9293 §3.10.7.1: no connection and no listener -> RST (never for an RST)."""
        if seg.flags & RST:
            self._drop("closed_rst")
            return
        if self.auth_keys is not None:
            self._signed_refusal(self.auth_keys, seg, addr, data)
            return
        self._send_rst(seg, addr, now, size)

    def _send_rst(self, seg: Segment, addr: Address, now: float, size: int) -> None:
        """An RST to an address with no connection: rate limited (a token bucket,
        :data:`RST_RATE`) and never larger than the ``size``-byte datagram that
        triggered it, so spoofed junk cannot turn the endpoint into a reflector."""
        tokens = min(RST_BURST, self._rst_tokens + (now - self._rst_time) * RST_RATE)
        self._rst_time = now
        if tokens < 1.0:
            self._rst_tokens = tokens
            self.counters["rst_rate_limited"] += 1
            return
        csum = self.config.checksum
        if seg.flags & ACK:
            data = build_segment(seg.dport, seg.sport, seg.ack, 0, RST, 0, compute_checksum=csum)
        else:
            ack = (seg.seq + seg.seg_len) & SEQ_MASK
            data = build_segment(seg.dport, seg.sport, 0, ack, RST | ACK, 0, compute_checksum=csum)
        if len(data) > size:  # pragma: no cover - a segment is at least 20 bytes, as an RST
            self.counters["rst_rate_limited"] += 1
            return
        self._rst_tokens = tokens - 1.0
        self.output.append((data, addr))
        self.counters["rst_sent"] += 1

    # ------------------------------------------------------------------ TCP-AO
    def _authentic(
        self, auth: AuthSession, data: bytes | memoryview, seg: Segment, addr: Address
    ) -> bool:
        """RFC 5925 §7.5: verify a received segment's MAC; if it fails, drop it and
        count ``drop_auth_<why>`` (docs/authentication.md, Counters)."""
        reason = auth.check(data, seg)
        if reason is None:
            return True
        self._drop(reason)
        if log.debug_enabled:
            log.logger.debug("drop", reason=reason, peer=addr, size=len(data))
        return False

    def _verified_syn(
        self, keys: KeyChain, seg: Segment, addr: Address, now: float, data: bytes | memoryview
    ) -> AuthSession | None:
        """A SYN for a listener, with TCP-AO: the session of the connection it would
        open (our ISS chosen first, the SYN's SEQ as the peer's ISN), if its MAC
        verifies; None if it was dropped (docs/authentication.md)."""
        iss = self._isn((addr, seg.dport, seg.sport), now)
        auth = AuthSession.for_connection(keys, iss, seg.seq, seg.dport, seg.sport)
        return auth if self._authentic(auth, data, seg, addr) else None

    def _signed_refusal(
        self, keys: KeyChain, seg: Segment, addr: Address, data: bytes | memoryview
    ) -> None:
        """A segment for no connection and no listener, with TCP-AO: no RST, since it
        could not be signed (the ISNs are unknown; RFC 5925 §7.7) — except for an
        authentic SYN, answered with <SEQ=0><ACK=SYN.SEQ+1><CTL=RST,ACK> signed under
        the traffic key of peer ISN SYN.SEQ and local ISN 0, which the client in
        SYN-SENT verifies (docs/authentication.md, Engine integration)."""
        if seg.flags & (SYN | ACK) != SYN:
            self._drop("auth_no_connection")
            return
        auth = AuthSession.for_connection(keys, 0, seg.seq, seg.dport, seg.sport)
        if not self._authentic(auth, data, seg, addr):
            return
        ack = (seg.seq + seg.seg_len) & SEQ_MASK
        raw = build_segment(
            seg.dport,
            seg.sport,
            0,
            ack,
            RST | ACK,
            0,
            options=auth.placeholder(),
            compute_checksum=False,
        )
        self.output.append((auth.sign(raw, compute_checksum=self.config.checksum), addr))
        self.counters["rst_sent"] += 1

    def _drop(self, reason: str) -> None:
        c = self.counters
        c["dropped"] += 1
        key = "drop_" + reason
        c[key] = c.get(key, 0) + 1


def _session(
    keys: KeyChain | None, iss: int, peer_isn: int | None, local_port: int, remote_port: int
) -> AuthSession | None:
    """The TCP-AO session of a new connection (None: authentication off)."""
    if keys is None:
        return None
    return AuthSession.for_connection(keys, iss, peer_isn, local_port, remote_port)
