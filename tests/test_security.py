"""Security properties from TEST-MATRIX.md, against the sans-IO engine directly."""

from __future__ import annotations

import random
import tracemalloc

from rudp import Config
from rudp.engine import ConnectionAccepted, ConnectionTerminated, Endpoint, State
from rudp.engine.connection import MAX_OOO_RUNS
from rudp.engine.endpoint import RST_BURST
from rudp.wire import ACK, RST, SYN, build_segment, parse_segment
from rudp.wire.segment import encode_options

A = ("10.0.0.1", 4000)
B = ("10.0.0.2", 5000)
EVIL = ("6.6.6.6", 6666)


def pump(a: Endpoint, b: Endpoint, now: float = 0.0) -> None:
    for _ in range(1000):
        moved = False
        for src, dst, src_addr in ((a, b, A), (b, a, B)):
            for data, _addr in src.datagrams_to_send(now):
                dst.receive_datagram(data, src_addr, now)
                moved = True
        if not moved:
            return


def established(config: Config | None = None):  # type: ignore[no-untyped-def]
    cfg = config or Config()
    # Fixed ISNs near the wrap; timestamp offsets (the same keyed hash, tagged
    # "tsoffset") as unguessable as in real use.
    client = Endpoint(
        cfg, seed=1, isn=lambda key, now: 0x6A09E667 if key[-1] == "tsoffset" else 0xFFFFF000
    )
    server = Endpoint(
        cfg, seed=2, isn=lambda key, now: 0xBB67AE85 if key[-1] == "tsoffset" else 0xFFFFFF00
    )
    server.listen(80)
    conn = client.connect(B, 80, 0.0)
    pump(client, server)
    srv = None
    while (ev := server.next_event()) is not None:
        if isinstance(ev, ConnectionAccepted):
            srv = ev.conn
    while client.next_event() is not None:
        pass
    assert srv is not None and conn.state is State.ESTABLISHED
    return client, server, conn, srv


def seg_to(
    srv_conn, seq: int, ack: int, flags: int, payload: bytes = b"", ts: bool = True
) -> bytes:  # type: ignore[no-untyped-def]
    """A forged segment to ``srv_conn``. With timestamps negotiated it carries a
    plausible one (TSval = the connection's TS.Recent, as a blind attacker could
    guess), so the checks behind PAWS are what is tested."""
    opts = b""
    if ts and srv_conn._ts_ok:
        opts = encode_options(ts=(srv_conn._ts_recent, 0))
    return build_segment(
        srv_conn.remote_port, srv_conn.local_port, seq, ack, flags, 65535, payload, opts
    )


def test_blind_rst_flood_survives() -> None:
    _client, server, _conn, srv = established()
    rnd = random.Random(1)
    sent_before = srv.segments_sent
    wnd = srv.stats()["rcv_wnd"]
    in_window = 0
    for i in range(100_000):
        # Random guesses, plus one in a thousand inside the window (never exact).
        seq = rnd.getrandbits(32) if i % 1000 else (srv.rcv_nxt + 1 + i % wnd) & 0xFFFFFFFF
        if seq == srv.rcv_nxt:
            continue
        in_window += 0 < (seq - srv.rcv_nxt) & 0xFFFFFFFF < wnd
        server.receive_datagram(seg_to(srv, seq, 0, RST), A, 1.0 + i * 1e-5)
    assert in_window >= 100
    out = server.datagrams_to_send(2.0)
    assert srv.state is State.ESTABLISHED
    # In-window guesses earned challenge ACKs, at most 10 per second per connection.
    assert 0 < srv.challenge_acks <= 10 * 2
    assert srv.segments_sent - sent_before == srv.challenge_acks
    assert all(parse_segment(d).flags == ACK for d, _ in out)


def test_rst_at_each_window_edge() -> None:
    _client, server, _conn, srv = established()
    nxt = srv.rcv_nxt
    # RCV.WND as acceptance sees it: up to the furthest edge ever advertised, which
    # may lie up to 2**wscale - 1 bytes past the rounded-down window stats() shows
    # (here the handshake's unscaled 65,535).
    wnd = srv._rcv_adv_abs - srv._rcv_nxt_abs
    assert 0 <= wnd - srv.stats()["rcv_wnd"] < 1 << srv.rcv_wscale
    cases = [
        ((nxt - 1) & 0xFFFFFFFF, "ignored"),
        ((nxt + wnd) & 0xFFFFFFFF, "ignored"),
        ((nxt + wnd - 1) & 0xFFFFFFFF, "challenge"),
        ((nxt + 1) & 0xFFFFFFFF, "challenge"),
    ]
    t = 10.0
    for seq, expect in cases:
        t += 2.0  # a fresh challenge-ACK budget each time
        before = srv.challenge_acks
        server.receive_datagram(seg_to(srv, seq, 0, RST), A, t)
        assert srv.state is State.ESTABLISHED
        assert srv.challenge_acks - before == (1 if expect == "challenge" else 0), seq
    server.receive_datagram(seg_to(srv, nxt, 0, RST), A, t + 1)
    assert srv.state is State.CLOSED
    ev = [e for e in iter(server.next_event, None) if isinstance(e, ConnectionTerminated)]
    assert isinstance(ev[-1].error, ConnectionResetError)


def test_syn_in_synchronized_state_gets_challenge_ack_only() -> None:
    _client, server, _conn, srv = established()
    server.receive_datagram(seg_to(srv, 12345, 0, SYN), A, 1.0)
    out = server.datagrams_to_send(1.0)
    assert srv.state is State.ESTABLISHED
    assert len(out) == 1
    s = parse_segment(out[0][0])
    assert s.flags == ACK and s.ack == srv.rcv_nxt and s.seq == srv.snd_nxt


def test_segments_without_timestamps_dropped_once_negotiated() -> None:
    """RFC 7323 §3.2: after negotiation a non-RST segment without TSopt is dropped
    (counted, no reply, no state change): PAWS cannot be sidestepped by omitting it."""
    _client, server, _conn, srv = established()
    assert srv.stats()["timestamps"]
    nxt = srv.rcv_nxt
    for flags, payload in ((SYN, b""), (ACK, b"evil"), (ACK, b"")):
        server.receive_datagram(seg_to(srv, nxt, srv.snd_nxt, flags, payload, ts=False), A, 1.0)
    assert server.datagrams_to_send(1.0) == []
    assert srv.ts_missing_drops == 3 and srv.readable == 0 and srv.rcv_nxt == nxt
    assert srv.state is State.ESTABLISHED


def test_paws_drops_old_timestamp() -> None:
    """RFC 7323 §5.3 R1: a segment whose TSval is older than TS.Recent is an old
    duplicate: not delivered, answered by an ACK."""
    _client, server, _conn, srv = established()
    nxt = srv.rcv_nxt
    old = (srv._ts_recent - 1000) & 0xFFFFFFFF
    opts = encode_options(ts=(old, 0))
    server.receive_datagram(
        build_segment(srv.remote_port, srv.local_port, nxt, srv.snd_nxt, ACK, 65535, b"old", opts),
        A,
        1.0,
    )
    out = server.datagrams_to_send(1.0)
    assert srv.paws_drops == 1 and srv.readable == 0 and srv.rcv_nxt == nxt
    assert [parse_segment(d).flags for d, _ in out] == [ACK]


def test_data_injection_with_bad_ack_not_delivered() -> None:
    _client, server, _conn, srv = established()
    nxt = srv.rcv_nxt
    # ACK of data never sent (above SND.NXT): dropped and ACKed.
    server.receive_datagram(
        seg_to(srv, nxt, (srv.snd_nxt + 10_000) & 0xFFFFFFFF, ACK, b"evil"), A, 1.0
    )
    # ACK far below SND.UNA - MAX.SND.WND: dropped.
    server.receive_datagram(
        seg_to(srv, nxt, (srv.snd_una - 10_000_000) & 0xFFFFFFFF, ACK, b"evil"), A, 1.0
    )
    assert srv.readable == 0 and srv.rcv_nxt == nxt
    out = server.datagrams_to_send(1.0)
    assert out and all(parse_segment(d).flags == ACK for d, _ in out)


def test_forged_acks_at_listener_create_nothing() -> None:
    server = Endpoint(Config(), seed=3)
    server.listen(80)
    rnd = random.Random(2)
    for _ in range(100_000):
        data = build_segment(
            rnd.randrange(1, 65536), 80, rnd.getrandbits(32), rnd.getrandbits(32), ACK, 1000
        )
        server.receive_datagram(data, (f"10.1.{rnd.randrange(256)}.{rnd.randrange(256)}", 1), 0.0)
    assert not server.connections
    out = server.datagrams_to_send(0.0)
    # Forged ACKs are answered by RSTs no larger than the trigger, rate limited
    # (docs/security.md): one burst's worth at one instant, every other one counted.
    assert len(out) == RST_BURST and all(
        len(d) <= 20 and parse_segment(d).flags == RST for d, _ in out
    )
    assert server.counters["rst_rate_limited"] == 100_000 - RST_BURST


def test_syn_flood_memory_capped() -> None:
    server = Endpoint(Config(), seed=4)
    server.listen(80, backlog=128)
    rnd = random.Random(3)
    for i in range(100_000):
        addr = (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1000 + i % 5000)
        data = build_segment(rnd.randrange(1, 65536), 80, rnd.getrandbits(32), 0, SYN, 65535)
        server.receive_datagram(data, addr, 0.0)
    # Past the backlog, SYNs are answered with SYN cookies and leave no state
    # (docs/security.md; without cookies, tests/test_hostile.py: eviction).
    assert len(server.connections) == 128
    assert server.counters["syncookies_sent"] == 100_000 - 128
    assert server.listeners[80].half_open == 128
    # Half-open connections expire after their SYN-ACK retries.
    for t in (1, 3, 7, 15, 31, 63, 127, 255):
        server.handle_timer(float(t))
        server.datagrams_to_send(float(t))
    assert not server.connections and server.listeners[80].half_open == 0


def test_out_of_order_one_byte_holes_bounded() -> None:
    cfg = Config(rcv_buf=256 * 1024)
    _client, server, _conn, srv = established(cfg)
    nxt = srv.rcv_nxt
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for off in range(1, 256 * 1024, 2):
        server.receive_datagram(
            seg_to(srv, (nxt + off) & 0xFFFFFFFF, srv.snd_nxt, ACK, b"x"), A, 1.0
        )
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    server.datagrams_to_send(1.0)
    assert len(srv._rcvq.ooo_starts) <= MAX_OOO_RUNS
    assert used < 512 * 1024  # bounded: a fixed run cap, nothing per rejected byte
    assert srv.state is State.ESTABLISHED


def test_tiny_mss_clamped() -> None:
    for peer_mss in (1, 20, 47):
        server = Endpoint(Config(), seed=5)
        server.listen(80)
        syn = build_segment(1234, 80, 1000, 0, SYN, 65535, b"", encode_options(mss=peer_mss))
        server.receive_datagram(syn, A, 0.0)
        (conn,) = server.connections.values()
        assert conn.snd_mss == 88


def test_address_spoofing_ignored() -> None:
    """A segment with the right ports and even the exact sequence numbers, from
    another UDP address, does not move the connection without the echo of one of
    its recent timestamps (docs/migration.md); it is dropped silently (no RST that
    could reach the real peer) and counted."""
    _client, server, _conn, srv = established()
    nxt = srv.rcv_nxt
    server.receive_datagram(seg_to(srv, nxt, srv.snd_nxt, ACK, b"spoofed"), EVIL, 1.0)
    assert srv.readable == 0 and srv.rcv_nxt == nxt and srv.state is State.ESTABLISHED
    assert srv.addr == A and srv.migrations == 0
    assert server.counters["drop_migration_rejected"] == 1
    assert server.datagrams_to_send(1.0) == []
