"""Hostile networks (issue 12 items 1-4, docs/security.md), on the sans-IO engine and
the simulator: SYN cookies, half-open pressure relief, the amplification limit and
reply hygiene. The real-socket floods are in tests/test_hostile_real.py."""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from typing import Any

import pytest
from drill import ISN, LPORT, PEER, RPORT, Drill, pattern
from simutil import A, B, pair
from test_recovery import _sack, opened

from rudp import Config, ConfigError
from rudp.engine import Connection, ConnectionAccepted, DataReceived, Endpoint, State
from rudp.engine.endpoint import RST_BURST, RST_RATE
from rudp.engine.syncookies import (
    MSS_TABLE,
    PERIOD,
    TS_MASK,
    TS_NO_WSCALE,
    TS_SACK,
    SynCookies,
    identity,
)
from rudp.seq import SEQ_MASK
from rudp.sim import LinkConfig
from rudp.sim.host import BulkApp
from rudp.wire import ACK, FIN, PSH, RST, SYN, build_segment, parse_segment
from rudp.wire.segment import encode_options

ALWAYS = Config(syncookies="always")
# States in which a connection still moves data (LAST-ACK: its FIN queued behind
# data still being sent).
_OPEN_STATES = {
    State.ESTABLISHED,
    State.CLOSE_WAIT,
    State.FIN_WAIT_1,
    State.FIN_WAIT_2,
    State.LAST_ACK,
}
PEER_TS = 7000


def cookie_syn(d: Drill, *, sport: int = RPORT, at: float = 0.0, **opts: Any) -> int:
    """The peer's SYN; returns the cookie (our ISN) of the SYN,ACK it draws, which
    must leave no state behind."""
    before = len(d.ep.connections)
    d.inject("S", seq=d.R(0), sport=sport, at=at, **opts)
    (sent,) = d.take_sent()
    seg = sent.seg
    assert seg.flags == SYN | ACK and seg.ack == d.R(1) and seg.dport == sport
    assert len(d.ep.connections) == before  # stateless
    return seg.seq


# ---------------------------------------------------------------------------
# 1. SYN cookies


def test_cookie_handshake_carries_options_in_the_timestamp() -> None:
    """With timestamps the SYN,ACK offers what the SYN offered and its TSval's low 6
    bits carry the peer's window scale and SACK-permitted (as Linux); the ACK that
    echoes them recreates the connection with all options, data on it accepted."""
    d = Drill(ALWAYS)
    d.listen()
    d.inject("S", seq=d.R(0), mss=1460, wscale=7, sack_perm=True, ts=(PEER_TS, 0), at=0.0)
    (sent,) = d.take_sent()
    seg = sent.seg
    assert seg.flags == SYN | ACK and seg.ack == d.R(1) and seg.wnd == 65535
    assert (seg.mss, seg.sack_perm, seg.wscale) == (1400, True, 7)  # a 4 MiB ceiling needs 7
    assert not d.ep.connections
    assert seg.ts is not None and seg.ts[1] == PEER_TS
    assert seg.ts[0] & TS_MASK == 7 | TS_SACK
    # Our clock at t=0 (its per-connection offset), low bits replaced, never ahead
    # of it (RFC 7323 §5.4).
    clock = d.ep._ts_offset((PEER, LPORT, RPORT)) & SEQ_MASK
    assert 0 <= (clock - seg.ts[0]) & SEQ_MASK < 64
    cookie = seg.seq
    assert cookie & 3 == MSS_TABLE.index(1400)  # 1460 clamps to the table's 1400
    # The third ACK, with data (RFC 9293 allows it; Linux accepts it on cookies).
    d.inject(
        "P.",
        seq=d.R(1),
        ack=cookie + 1,
        ts=(PEER_TS + 1, seg.ts[0]),
        wnd=1000,
        payload=b"hello",
        at=0.1,
    )
    ev, _ = d.expect_events(ConnectionAccepted, DataReceived)
    conn = ev.conn
    assert conn.state is State.ESTABLISHED and conn.iss == cookie
    assert conn.read() == b"hello"
    st = conn.stats()
    assert (st["sack"], st["timestamps"], st["snd_mss"]) == (True, True, 1400)
    assert conn.snd_wscale == 7 and st["snd_wnd"] == 1000 << 7 and st["path_validated"]
    c = d.ep.counters
    assert (c["syncookies_sent"], c["syncookies_ok"], c["syncookies_failed"]) == (1, 1, 0)
    # It acknowledges the data (delayed ACK) with our clock and offset.
    d.advance(0.2)
    (ack,) = d.take_sent()
    assert ack.t == 0.14 and (ack.seg.flags, ack.seg.seq, ack.seg.ack) == (ACK, cookie + 1, d.R(6))
    assert ack.seg.ts is not None and ack.seg.ts[1] == PEER_TS + 1
    assert ack.seg.ts[0] == (clock + 140) & SEQ_MASK
    d.send(pattern(0, 3000), at=0.2)
    assert [len(s.seg.payload) for s in d.take_sent()] == [1400, 1400, 200]


def test_cookie_without_timestamps_offers_no_scaling_or_sack() -> None:
    """Without timestamps the cookie cannot carry window scale or SACK-permitted: the
    SYN,ACK offers neither (as Linux) and the connection runs without them; the MSS
    comes from the cookie's 2-bit index (a peer's 1000 rounds down to 536)."""
    d = Drill(ALWAYS)
    d.listen()
    d.inject("S", seq=d.R(0), mss=1000, wscale=7, sack_perm=True, at=0.0)
    (sent,) = d.take_sent()
    seg = sent.seg
    assert (seg.wscale, seg.sack_perm, seg.ts, seg.mss) == (None, False, None, 1400)
    d.inject(".", seq=d.R(1), ack=seg.seq + 1, wnd=5000, at=0.1)
    (ev,) = d.expect_events(ConnectionAccepted)
    st = ev.conn.stats()
    assert (st["sack"], st["timestamps"], st["snd_mss"], st["snd_wnd"]) == (False, False, 536, 5000)


def test_cookie_with_timestamps_and_no_window_scale() -> None:
    d = Drill(ALWAYS)
    d.listen()
    d.inject("S", seq=d.R(0), mss=1212, ts=(PEER_TS, 0), at=0.0)
    (sent,) = d.take_sent()
    seg = sent.seg
    assert seg.ts is not None and seg.ts[0] & TS_MASK == TS_NO_WSCALE
    assert seg.wscale is None and not seg.sack_perm
    d.inject(".", seq=d.R(1), ack=seg.seq + 1, ts=(PEER_TS, seg.ts[0]), wnd=5000, at=0.1)
    (ev,) = d.expect_events(ConnectionAccepted)
    st = ev.conn.stats()
    assert (st["sack"], st["timestamps"], st["snd_mss"], st["snd_wnd"]) == (False, True, 1212, 5000)


@pytest.mark.parametrize(
    "what", ["ack", "seq", "sport", "address", "options", "no_timestamps", "stale"]
)
def test_invalid_cookie_creates_nothing(what: str) -> None:
    """A cookie ACK with anything changed (its cookie, the peer's ISN, the identity,
    the option bits echoed in TSecr, timestamps dropped) or older than two periods
    creates nothing: it is answered like any ACK at a listener (an RST) and counted."""
    d = Drill(ALWAYS)
    d.listen()
    d.inject("S", seq=d.R(0), mss=1400, wscale=7, sack_perm=True, ts=(PEER_TS, 0), at=10.0)
    (sent,) = d.take_sent()
    cookie, tsval = sent.seg.seq, sent.seg.ts[0]  # type: ignore[index]
    kw: dict[str, Any] = {"seq": d.R(1), "ack": cookie + 1, "ts": (PEER_TS, tsval), "at": 11.0}
    if what == "ack":
        kw["ack"] = cookie + 9
    elif what == "seq":
        kw["seq"] = d.R(2)
    elif what == "sport":
        kw["sport"] = RPORT + 1
    elif what == "address":
        kw["addr"] = ("10.0.0.3", 5000)
    elif what == "options":
        kw["ts"] = (PEER_TS, tsval ^ TS_SACK)  # SACK-permitted flipped
    elif what == "no_timestamps":
        kw["ts"] = None
    elif what == "stale":
        kw["at"] = 2 * PERIOD  # made in period 0, now period 2
    d.inject(".", **kw)
    assert not d.ep.connections
    assert d.ep.counters["syncookies_failed"] == 1
    (rst,) = d.take_sent()
    assert rst.seg.flags == RST


def test_cookie_valid_until_the_end_of_the_next_period() -> None:
    """A cookie made in period c checks in c and c + 1 (64 to 128 s), as Linux's
    MAX_SYNCOOKIE_AGE 2; the period's key is derived from the secret and the counter,
    so every period uses another one."""
    jar = SynCookies(b"k" * 32)
    ident = identity(PEER, LPORT, RPORT)
    cookie = jar.make(ident, 1234, 1400, None, 10.0)
    assert jar.check(ident, 1234, cookie, None, 10.0) is not None
    assert jar.check(ident, 1234, cookie, None, 2 * PERIOD - 0.001) is not None
    assert jar.check(ident, 1234, cookie, None, 2 * PERIOD) is None
    assert jar.check(ident, 1234, cookie, None, 3 * PERIOD + 1) is None
    # Another secret, another cookie; the same inputs in another period, another one.
    assert SynCookies(b"j" * 32).make(ident, 1234, 1400, None, 10.0) != cookie
    assert jar.make(ident, 1234, 1400, None, PERIOD + 10.0) != cookie
    with pytest.raises(ValueError):
        SynCookies(b"short")


def test_cookie_mss_table() -> None:
    jar = SynCookies(b"k" * 32)
    ident = identity(PEER, LPORT, RPORT)
    for mss, want in ((88, 536), (536, 536), (1211, 536), (1212, 1212), (1460, 1400), (9000, 8900)):
        found = jar.check(ident, 1, jar.make(ident, 1, mss, None, 0.0), None, 0.0)
        assert found is not None and found.mss == want


def test_million_random_acks_forge_no_cookie() -> None:
    """Cookie forgery, measured on the check itself (it alone decides whether an ACK
    at a listener creates a connection): 1,000,000 random 32-bit cookies for random
    identities and ISNs, all rejected (a 29-bit MAC: expected forgeries 0.002). The
    endpoint path (parse, identity, check, RST) is exercised by the next test."""
    jar = SynCookies(b"f" * 32)
    rnd = random.Random(12)
    idents = [identity((f"10.9.{i >> 8}.{i & 255}", 4000 + i), 80, 1024 + i) for i in range(1000)]
    getrandbits = rnd.getrandbits
    check = jar.check
    accepted = 0
    for i in range(1_000_000):
        if check(idents[i % 1000], getrandbits(32), getrandbits(32), None, 100.0) is not None:
            accepted += 1
    assert accepted == 0


def test_random_acks_at_a_cookie_listener_create_nothing() -> None:
    """100,000 random ACKs (random TCP ports, sequence numbers, addresses, some with
    timestamps) at a listener that answers every SYN with a cookie: no connection,
    each counted as a failed cookie; RSTs rate limited, none larger than its ACK."""
    server = Endpoint(ALWAYS, seed=3)
    server.listen(80)
    rnd = random.Random(2)
    out: list[tuple[bytes, Any]] = []
    sizes = []
    for i in range(100_000):
        opts = encode_options(ts=(rnd.getrandbits(32), rnd.getrandbits(32))) if i % 2 else b""
        data = build_segment(
            rnd.randrange(1, 65536),
            80,
            rnd.getrandbits(32),
            rnd.getrandbits(32),
            ACK,
            1000,
            b"",
            opts,
        )
        sizes.append(len(data))
        server.receive_datagram(
            data, (f"10.1.{rnd.randrange(256)}.{rnd.randrange(256)}", 1), i * 1e-4
        )
        out += server.datagrams_to_send(i * 1e-4)
    assert not server.connections
    c = server.counters
    assert c["syncookies_failed"] == 100_000 and c["syncookies_ok"] == 0
    # 10 s of ACKs: a burst, then RST_RATE per second.
    assert len(out) == c["rst_sent"] <= RST_BURST + 10 * RST_RATE + 1
    assert c["rst_sent"] + c["rst_rate_limited"] == 100_000
    assert all(len(d) <= 20 and parse_segment(d).flags == RST for d, _ in out)


def test_auto_mode_cookies_only_when_the_queue_is_full() -> None:
    """Linux's tcp_syncookies=1: state while the queue has room; cookies past it; a
    cookie ACK completes even while the half-open queue is still full; ACKs are
    checked as cookies only while cookies may be out there (2 periods after one)."""
    d = Drill()
    d.listen(backlog=2)
    for port in (5001, 5002):
        d.inject("S", seq=d.R(0), sport=port, at=0.0)
        d.expect("S.", seq=ISN, ack=d.R(1), dport=port, at=0.0)
    # An ACK before any cookie went out is not even checked.
    d.inject(".", seq=d.R(1), ack=12345, sport=5009, at=0.05)
    d.expect("R", seq=12345, dport=5009, at=0.05)
    assert d.ep.counters["syncookies_failed"] == 0
    cookie = cookie_syn(d, sport=5003, at=0.1)
    assert cookie != ISN and d.ep.counters["syncookies_sent"] == 1
    d.inject(".", seq=d.R(1), ack=cookie + 1, sport=5003, at=0.2)
    (ev,) = d.expect_events(ConnectionAccepted)
    assert ev.conn.remote_port == 5003 and ev.conn.state is State.ESTABLISHED
    listener = d.ep.listeners[LPORT]
    assert (listener.half_open, listener.accept_pending) == (2, 0)
    # Long after the last cookie, ACKs are not checked as cookies any more.
    d.inject(".", seq=d.R(1), ack=cookie + 1, sport=5003, at=0.1 + 2 * PERIOD + 1)
    assert d.ep.counters["syncookies_failed"] == 0


def test_never_mode_and_config_validation() -> None:
    d = Drill(Config(syncookies="never"))
    d.listen(backlog=1)
    d.inject("S", seq=d.R(0), sport=5001, at=0.0)
    d.inject("S", seq=d.R(0), sport=5002, at=0.0)
    assert d.ep.counters["syncookies_sent"] == 0 and d.ep.counters["half_open_evicted"] == 1
    with pytest.raises(ConfigError, match="syncookies"):
        Config(syncookies="sometimes")


def test_cookie_ack_with_the_tcp_ports_of_another_connection() -> None:
    """A live connection from another address uses the same TCP ports: the cookie
    ACK is not taken for a NAT rebinding of it (which it fails), it completes."""
    d = Drill(ALWAYS)
    d.listen()
    other = ("10.0.0.9", 6000)
    d.inject("S", seq=d.R(0), addr=other, at=0.0)
    (sent,) = d.take_sent()
    d.inject(".", seq=d.R(1), ack=sent.seg.seq + 1, addr=other, at=0.1)
    d.expect_events(ConnectionAccepted)
    cookie = cookie_syn(d, at=0.2)
    d.inject(".", seq=d.R(1), ack=cookie + 1, at=0.3)
    (ev,) = d.expect_events(ConnectionAccepted)
    assert ev.conn.addr == PEER and len(d.ep.connections) == 2
    assert d.ep.counters.get("drop_migration_rejected", 0) == 0


def test_cookie_ack_into_a_full_accept_queue_is_dropped() -> None:
    """Nobody accepts: the completing ACK is dropped (no RST, the peer retransmits;
    Linux counts it in ListenOverflows); once the application accepts, the peer's
    retransmission completes the handshake."""
    d = Drill(ALWAYS)
    d.listen(backlog=1)
    c1 = cookie_syn(d, sport=5001)
    c2 = cookie_syn(d, sport=5002)
    d.inject(".", seq=d.R(1), ack=c1 + 1, sport=5001, at=0.1)
    d.inject(".", seq=d.R(1), ack=c2 + 1, sport=5002, at=0.1)
    assert d.ep.counters["listen_overflows"] == 1 and d.take_sent() == []
    d.expect_events(ConnectionAccepted)
    d.inject("P.", seq=d.R(1), ack=c2 + 1, sport=5002, payload=b"x", at=0.3)
    ev, _ = d.expect_events(ConnectionAccepted, DataReceived)
    assert ev.conn.read() == b"x"


def test_syn_flood_with_cookies_memory_bounded_and_client_connects() -> None:
    """100,000 spoofed SYNs from distinct addresses (engine level): the half-open
    queue holds its backlog, every other SYN is answered statelessly; once the queue
    is full, SYNs allocate nothing that stays (measured over the last 20,000); a
    real client then connects in one round trip, all options on, and transfers."""
    net, ch, sh = pair(LinkConfig(delay=0.01), seed=5)
    server = sh.endpoint
    rnd = random.Random(3)
    syn = encode_options(mss=1460, sack_perm=True, ts=(1, 0), wscale=7)
    used = 0
    for i in range(100_000):
        if i == 80_000:
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
        addr = (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1000 + i % 5000)
        data = build_segment(
            rnd.randrange(1, 65536), 80, rnd.getrandbits(32), 0, SYN, 65535, b"", syn
        )
        server.receive_datagram(data, addr, 0.0)
        server.datagrams_to_send(0.0)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    st = server.stats()
    assert st["connections"] == 128 and server.listeners[80].half_open == 128
    assert st["syncookies_sent"] == 100_000 - 128
    assert used < 64 * 1024, used
    # A real client: SYN at 0 (RTT 20 ms), established at 20 ms, data flows.
    payload = random.Random(4).randbytes(100_000)
    sh.accept_factory = lambda: BulkApp(b"")
    client = BulkApp(payload)
    conn = ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: bool(sh.accepted) and sh.accepted[0].eof_at is not None, timeout=30)
    assert client.established_at is not None and client.established_at <= 0.0201
    assert hashlib.sha256(sh.accepted[0].received).digest() == hashlib.sha256(payload).digest()
    assert server.counters["syncookies_ok"] == 1
    cst = conn.stats()
    assert cst["sack"] and cst["timestamps"] and cst["retransmissions"] == 0
    assert conn.snd_wscale == 7  # the server's, as offered in the cookie SYN,ACK


def test_burst_of_500_spoofed_syns_then_a_client() -> None:
    """The issue's burst: 500 spoofed SYNs at once used to lock the listener for
    over 20 s. A client trying right after connects in one round trip (a cookie)."""
    net, ch, sh = pair(LinkConfig(delay=0.01), seed=6)
    n = _flood(sh.endpoint, 500, 0.0, encode_options(mss=1460, sack_perm=True, ts=(1, 0)))
    assert n == 500 * 36 and sh.endpoint.counters["syncookies_sent"] == 500 - 128
    sh.accept_factory = lambda: BulkApp(b"")
    client = BulkApp(b"ping")
    ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: bool(sh.accepted) and sh.accepted[0].eof_at is not None, timeout=5)
    assert client.established_at == pytest.approx(0.02)  # one round trip
    assert bytes(sh.accepted[0].received) == b"ping"


# ---------------------------------------------------------------------------
# 2. Half-open pressure relief


def _flood(ep: Endpoint, n: int, now: float, opts: bytes = b"") -> int:
    """``n`` spoofed SYNs from distinct addresses; returns the bytes received."""
    total = 0
    for i in range(n):
        data = build_segment(1000 + i, 80, i * 7919, 0, SYN, 65535, b"", opts)
        ep.receive_datagram(data, (f"10.66.{i >> 8}.{i & 255}", 7), now)
        total += len(data)
    return total


def _run_timers(ep: Endpoint, until: float) -> int:
    """Run ``ep``'s timers up to ``until``; returns the datagrams it sent."""
    sent = len(ep.datagrams_to_send(0.0))
    while (deadline := ep.get_timer()) is not None and deadline <= until:
        ep.handle_timer(deadline)
        sent += len(ep.datagrams_to_send(deadline))
    return sent


def test_pressure_cuts_synack_retransmissions() -> None:
    """A full queue of entries nobody answers (all old, none young): 2 SYN,ACK
    retransmissions (Linux's floor) instead of 5, so the burst's entries all go at
    7 s, not 63 s. A queue under half full that never overflowed keeps the full 5."""
    ep = Endpoint(Config(syncookies="never"), seed=1)
    ep.listen(80, backlog=128)
    _flood(ep, 129, 0.0, encode_options(mss=1460))  # one past the backlog
    assert ep.counters["half_open_evicted"] == 1
    _run_timers(ep, 6.9)
    assert ep.listeners[80].half_open == 128
    _run_timers(ep, 7.0)
    assert ep.listeners[80].half_open == 0
    # Each SYN is 24 bytes, each SYN,ACK 24: 3x allows 3 of them per address, all
    # sent; nothing needed suppressing.
    assert ep.stats()["amplification_limited"] == 0
    ep = Endpoint(Config(syncookies="never"), seed=1)
    ep.listen(80, backlog=128)
    _flood(ep, 64, 0.0, encode_options(mss=1460))
    _run_timers(ep, 62.9)
    assert ep.listeners[80].half_open == 64
    _run_timers(ep, 63.0)
    assert ep.listeners[80].half_open == 0
    # Retransmissions 3 to 5 of each would exceed 3x the SYN: suppressed, counted.
    assert ep.stats()["amplification_limited"] == 64 * 3


def test_sustained_flood_half_open_entries_mostly_live_7s() -> None:
    """Spoofed SYNs at 200/s for 60 s with cookies (the default): the queue stays
    full and most half-open entries go after 7 s (1 + 2 + 4: two retransmissions);
    Linux's young-entry reserve lets some keep more retries (15, 31 s) as slots
    refill with fresh SYNs. Without the relief each would live 63 s."""
    ep = Endpoint(Config(), seed=1)
    ep.listen(80, backlog=128)
    born: dict[Connection, float] = {}
    lives: list[float] = []
    for step in range(60 * 20):
        now = step * 0.05
        while (deadline := ep.get_timer()) is not None and deadline <= now:
            ep.handle_timer(deadline)
            ep.datagrams_to_send(deadline)
        for i in range(10):
            n = step * 10 + i
            data = build_segment(1000 + n % 60000, 80, n * 7919, 0, SYN, 65535)
            ep.receive_datagram(data, (f"10.66.{n >> 8 & 255}.{n & 255}", 7), now)
        ep.datagrams_to_send(now)
        current = ep.listeners[80].syn_received
        for conn in current:
            born.setdefault(conn, now)
        for conn in [c for c in born if c not in current]:
            lives.append(now - born.pop(conn))
    assert ep.listeners[80].half_open == 128
    assert len(lives) > 600
    assert sum(1 for t in lives if 6.9 <= t <= 7.1) >= 0.7 * len(lives)
    assert sum(lives) / len(lives) < 12.0, sum(lives) / len(lives)
    assert ep.counters["syncookies_sent"] > 10_000


def test_pressure_keeps_retries_while_most_entries_are_young() -> None:
    """Linux's rule: half the queue is kept for young entries; a queue past half
    full but mostly young (a legitimate burst) keeps its full retries."""
    ep = Endpoint(Config(syncookies="never"), seed=1)
    ep.listen(80, backlog=16)
    _flood(ep, 10, 0.0)
    listener = ep.listeners[80]
    assert listener.synack_retries(5, 1.0) == 5  # 10 of 16, all young
    for conn in list(listener.syn_received)[:6]:
        conn.retransmissions = 1
    assert listener.synack_retries(5, 1.0) == 4  # 4 young: 2 * 4 * 2 > 10
    for conn in listener.syn_received:
        conn.retransmissions = 1
    assert listener.synack_retries(5, 1.0) == 2


def test_eviction_is_oldest_first() -> None:
    ep = Endpoint(Config(syncookies="never"), seed=1)
    ep.listen(80, backlog=4)
    _flood(ep, 6, 0.0)
    ports = sorted(k[2] for k in ep.connections)
    assert ports == [1002, 1003, 1004, 1005] and ep.counters["half_open_evicted"] == 2


# ---------------------------------------------------------------------------
# 3. Amplification


@pytest.mark.parametrize("mode", ["never", "auto"])
def test_bytes_to_unvalidated_addresses_at_most_three_times_received(mode: str) -> None:
    """A simulated run: spoofed SYNs (bare and with full options) from 300 addresses
    that never answer, a burst past the backlog, SYN,ACK retransmissions running to
    the end, junk ACKs; per address, bytes sent <= 3 x bytes received; suppressed
    replies counted. A real client connecting meanwhile is unaffected."""
    net, ch, sh = pair(LinkConfig(delay=0.005), seed=7, config=Config(syncookies=mode), backlog=64)
    sent: dict[Any, int] = {}
    received: dict[Any, int] = {}

    def tap(now: float, src: Any, dst: Any, data: bytes, fate: str) -> None:
        if src == B:
            sent[dst] = sent.get(dst, 0) + len(data)
        elif dst == B:
            received[src] = received.get(src, 0) + len(data)

    net.add_tap(tap)
    rnd = random.Random(8)
    for i in range(300):
        node = _Spoofed()
        net.add_node(node, (f"10.77.{i >> 8}.{i & 255}", 9))
        opts = encode_options(mss=1460, sack_perm=True, ts=(5, 0), wscale=7) if i % 2 else b""
        syn = build_segment(2000 + i, 80, rnd.getrandbits(32), 0, SYN, 65535, b"", opts)
        junk = build_segment(3000 + i, 80, rnd.getrandbits(32), rnd.getrandbits(32), ACK, 9)
        net.call_at(i * 0.001, node.sender(syn))
        net.call_at(i * 0.001 + 0.5, node.sender(junk))
    payload = rnd.randbytes(50_000)
    sh.accept_factory = lambda: BulkApp(b"")
    client = BulkApp(payload)
    ch.connect(client, B, 80, 0.15)
    net.run(max_time=120.0)
    assert bytes(sh.accepted[0].received) == payload
    spoofed = [a for a in received if a != A]
    assert len(spoofed) == 300
    for addr in spoofed:
        assert sent.get(addr, 0) <= 3 * received[addr], addr
    st = sh.endpoint.stats()
    assert st["amplification_limited"] > 0 and st["connections"] <= 1
    assert (st["syncookies_sent"] > 0) == (mode == "auto")


class _Spoofed:
    """A spoofed source: sends what it is told to, never answers."""

    def __init__(self) -> None:
        self.outbox: list[tuple[bytes, Any]] = []

    def sender(self, data: bytes) -> Any:
        return lambda: self.outbox.append((data, B))

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


def test_rsts_rate_limited_and_never_larger_than_their_trigger() -> None:
    ep = Endpoint(Config(), seed=1)  # no listener: everything is for a closed port
    for i in range(1000):
        ep.receive_datagram(
            build_segment(1, 80, i, 0, SYN, 1), (f"10.5.{i >> 8}.{i & 255}", 1), 0.0
        )
    out = ep.datagrams_to_send(0.0)
    assert len(out) == RST_BURST and ep.counters["rst_rate_limited"] == 1000 - RST_BURST
    assert all(len(d) == 20 for d, _ in out)
    ep.receive_datagram(build_segment(1, 80, 1, 0, SYN, 1), ("10.5.9.9", 1), 0.001)
    assert ep.datagrams_to_send(0.001) == []
    assert ep.counters["rst_rate_limited"] == 1000 - RST_BURST + 1
    ep.receive_datagram(build_segment(1, 80, 1, 0, SYN, 1), ("10.5.9.9", 1), 1.0)
    assert len(ep.datagrams_to_send(1.0)) == 1


def test_cookie_synack_no_larger_than_three_times_the_syn() -> None:
    """The stateless SYN,ACK mirrors the SYN's options: a bare 20-byte SYN draws a
    24-byte SYN,ACK (MSS only)."""
    d = Drill(ALWAYS)
    d.listen()
    d.inject_raw(build_segment(RPORT, LPORT, d.R(0), 0, SYN, 100), at=0.0)
    (sent,) = d.take_sent()
    assert len(sent.data) == 24 and sent.seg.mss == 1400


# ---------------------------------------------------------------------------
# 4. Reply hygiene


@pytest.mark.parametrize(
    "flags",
    [SYN | FIN, SYN | RST, SYN | FIN | RST, SYN | FIN | PSH, SYN | ACK | RST, SYN | ACK | FIN],
)
def test_nonsense_flags_in_listen_dropped_and_counted(flags: int) -> None:
    """SYN with FIN or RST at a listener: no half-open connection, no reply (Linux
    discards SYN+FIN in LISTEN); counted."""
    for mode in ("auto", "always"):
        d = Drill(Config(syncookies=mode))
        d.listen()
        d.inject(flags, seq=d.R(0), ack=d.L(1) if flags & ACK else 0, at=0.0)
        d.expect_nothing(until=10.0)
        assert not d.ep.connections and d.ep.counters["drop_listen_bad_flags"] == 1


def _established(d: Drill) -> Connection:
    d.listen()
    d.inject("S", seq=d.R(0), mss=1000, sack_perm=True, ts=(PEER_TS, 0), at=0.0)
    (sent,) = d.take_sent()
    d.inject(".", seq=d.R(1), ack=sent.seg.seq + 1, ts=(PEER_TS, sent.seg.ts[0]), at=0.25)  # type: ignore[index]
    d.expect_events(ConnectionAccepted)
    return d.conn


@pytest.mark.parametrize("kind", ["beyond", "far_below", "bad_ack", "paws"])
def test_acks_to_unacceptable_data_rate_limited(kind: str) -> None:
    """Data-bearing segments outside the window, far below it, with an ACK of unsent
    data, or failing PAWS: one ACK per 500 ms per connection (Linux's
    tcp_invalid_ratelimit, here with data too); the rest counted."""
    d = Drill()
    conn = _established(d)
    una = conn.snd_una
    for i in range(1000):
        seq, ack, ts = d.R(1 + 70_000 + i), una, (PEER_TS + 1 + i, 0)
        if kind == "far_below":
            seq = d.R(1 - 1_000_000 - i)
        elif kind == "bad_ack":
            seq, ack = d.R(1), una + 1_000_000
        elif kind == "paws":
            seq, ts = d.R(1), (PEER_TS - 1_000, 0)
        d.inject(".", seq=seq, ack=ack, payload=b"evil", ts=ts, at=1.0 + i * 0.001)
    acks = d.take_sent()
    assert len(acks) == 2  # at 1.0 and 1.5
    assert all(s.seg.flags == ACK and not s.seg.payload and s.seg.ack == d.R(1) for s in acks)
    assert conn.acks_rate_limited == 998 and d.ep.stats()["acks_rate_limited"] == 998
    assert conn.readable == 0 and conn.rcv_nxt == d.R(1)


def test_plausible_duplicate_still_acked_at_once_with_dsack() -> None:
    """A spurious retransmission (data at most a window below RCV.NXT) is not rate
    limited: its sender learns from the D-SACK at once (RFC 2883)."""
    d = Drill()
    conn = _established(d)
    d.inject(".", seq=d.R(1), ack=conn.snd_una, payload=b"a" * 100, ts=(PEER_TS + 1, 0), at=1.0)
    d.expect(".", seq=conn.snd_una, ack=d.R(101), at=1.04)
    for i in range(3):
        d.inject(
            ".",
            seq=d.R(1),
            ack=conn.snd_una,
            payload=b"a" * 100,
            ts=(PEER_TS + 2, 0),
            at=1.1 + i * 0.01,
        )
        d.expect(".", seq=conn.snd_una, ack=d.R(101), at=1.1 + i * 0.01, sack=[(d.R(1), d.R(101))])
    # A reordered original arriving after its retransmission carries an older
    # TSval: PAWS rejects it, and it is still reported at once (as Linux does).
    d.inject(".", seq=d.R(1), ack=conn.snd_una, payload=b"a" * 100, ts=(PEER_TS, 0), at=1.2)
    d.expect(".", seq=conn.snd_una, ack=d.R(101), at=1.2, sack=[(d.R(1), d.R(101))])
    assert conn.acks_rate_limited == 0 and conn.paws_drops == 1


def test_duplicate_acks_without_news_move_nothing() -> None:
    """The sender's side (SACK negotiated): during fast recovery, 50 duplicate ACKs
    repeating the same SACK blocks and 50 without any mark nothing more lost and let
    nothing more out (RACK detects loss by time, PRR sends per newly delivered data),
    however many arrive."""
    d = opened(Drill())
    d.send(pattern(0, 20000), at=1.0)
    assert len(d.take_sent()) == 10  # the initial window
    for k, t in ((2001, 1.25), (3001, 1.251), (4001, 1.252), (5001, 1.253)):
        _sack(d, 1001, [(2001, k)], t)
    sent = d.take_sent()
    assert sum(s.seg.seq == d.L(1001) for s in sent) == 1  # the fast retransmission
    st = d.conn.stats()
    assert st["recovery_state"] == "recovery" and st["retransmissions"] == 1
    lost = st["lost_bytes"]
    for i in range(50):
        _sack(d, 1001, [(2001, 5001)], 1.254 + i * 2e-4)
        _sack(d, 1001, [], 1.2541 + i * 2e-4)
    assert d.take_sent() == []
    st = d.conn.stats()
    assert st["retransmissions"] == 1 and st["lost_bytes"] == lost
    assert st["dup_acks_received"] >= 100


def _inject_during_transfer(sack: bool, victim: str, n: int) -> dict[str, Any]:
    """A 2 MB transfer A -> B (10 Mbit/s, 20 ms RTT); an attacker injects ``n``
    data segments with out-of-window sequence numbers (a plausible TSval, the
    victim's own TS.Recent, as a blind attacker could guess it) into the receiver B
    or the sender A, spoofed from the other end's address, spread over the
    transfer."""
    cfg = Config(sack=sack)
    link = LinkConfig(delay=0.01, rate=1_250_000)
    net, ch, sh = pair(link, seed=11, config=cfg)
    rnd = random.Random(12)
    payload = rnd.randbytes(2_000_000)
    sh.accept_factory = lambda: BulkApp(b"")
    client = BulkApp(payload)
    cconn = ch.connect(client, B, 80, 0.0)
    acks = {"to_sender": 0}

    def tap(now: float, src: Any, dst: Any, data: bytes, fate: str) -> None:
        if src == B and dst == A:
            acks["to_sender"] += 1

    net.add_tap(tap)
    injected = [0]

    def inject() -> None:
        conns = [c for c in sh.endpoint.connections.values() if isinstance(c, Connection)]
        conn = cconn if victim == "sender" else (conns[0] if conns else None)
        if conn is not None and conn.state in _OPEN_STATES:
            host, src = (ch, B) if victim == "sender" else (sh, A)
            for _ in range(5):
                wnd = conn.config.rcv_buf_max  # the largest window autotuning may open
                off = rnd.randrange(wnd + 1, 2**32 - 4 * wnd)
                seg = build_segment(
                    conn.remote_port,
                    conn.local_port,
                    (conn.rcv_nxt + off) & SEQ_MASK,
                    conn.snd_una,
                    ACK | PSH,
                    1000,
                    b"injected",
                    encode_options(ts=(conn.ts_recent, 0)),
                )
                host.receive_datagram(seg, src, net.now)
                injected[0] += 1
        if injected[0] < n and not client.terminated:
            net.call_later(0.00007, inject)

    net.call_at(0.05, inject)
    net.run_until(lambda: bool(sh.accepted) and sh.accepted[0].eof_at is not None, timeout=60)
    server = sh.accepted[0]
    assert hashlib.sha256(server.received).digest() == hashlib.sha256(payload).digest()
    sconn = server.conn
    assert sconn is not None
    victim_conn = cconn if victim == "sender" else sconn
    return {
        "injected": injected[0],
        "duration": net.now,
        "sender": cconn.stats(),
        "receiver": sconn.stats(),
        "victim_limited": victim_conn.acks_rate_limited,
        "acks_to_sender": acks["to_sender"],
    }


@pytest.mark.parametrize("sack", [True, False], ids=["sack", "nosack"])
@pytest.mark.parametrize("victim", ["receiver", "sender"])
def test_injected_data_causes_no_spurious_retransmission(sack: bool, victim: str) -> None:
    """100,000 out-of-window data segments injected during a transfer (with SACK,
    and without it, where duplicate ACKs are the loss signal): no retransmission at
    all, and the victim's replies bounded by one ACK per 500 ms."""
    r = _inject_during_transfer(sack, victim, 100_000)
    assert r["injected"] >= 100_000
    snd = r["sender"]
    assert snd["retransmissions"] == 0 and snd["fast_retransmits"] == 0, snd
    assert snd["rto_expiries"] == 0
    bound = r["duration"] / 0.5 + 1
    assert r["injected"] - bound <= r["victim_limited"] <= r["injected"], r
