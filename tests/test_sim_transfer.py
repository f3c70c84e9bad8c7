"""Transfers through the deterministic simulator (TEST-MATRIX rows, simulated).

Every impairment test also asserts that its impairment actually happened.
"""

from __future__ import annotations

import time

import pytest
from simutil import A, B, pair, transfer

from rudp import Config
from rudp.engine import State
from rudp.sim import LinkConfig
from rudp.wire import parse_segment


def test_issue_demo_10mb_under_loss_reorder_dup_corruption() -> None:
    """The issue's demonstration: 10 MB, 5% loss, 10% reordering, 2% duplication,
    1% corruption, 50 ms RTT; byte-identical, in seconds of wall time."""
    link = LinkConfig(delay=0.025, loss=0.05, reorder=0.10, duplicate=0.02, corrupt=0.01)
    t0 = time.perf_counter()
    out = transfer(link, 10_000_000, 1_000_000, seed=7)
    wall = time.perf_counter() - t0
    assert out.ok
    st = out.net.total_stats()
    assert st.lost > 0 and st.reordered > 0 and st.duplicated > 0 and st.corrupted > 0
    drops = (
        out.client_host.endpoint.counters["dropped"] + out.server_host.endpoint.counters["dropped"]
    )
    assert drops > 0  # corrupted datagrams were caught by the checksum
    assert out.client.conn is not None and out.client.conn.retransmissions > 0
    assert wall < 60, wall


def test_h1_both_directions_orderly_close() -> None:
    out = transfer(LinkConfig(delay=0.015), 1000, 1000, seed=2)
    assert out.ok  # hashes both ways, no error on either side
    assert not out.client_host.endpoint.connections or all(
        c.state is State.TIME_WAIT for c in out.client_host.endpoint.connections.values()
    )


def test_h1_exact_segments() -> None:
    from rudp.sim.host import BulkApp

    net, ch, sh = pair(LinkConfig(delay=0.015), seed=3)
    sh.accept_factory = lambda: BulkApp(b"", read=True)
    flags: list[tuple[str, int]] = []
    net.add_tap(lambda t, s, d, data, fate: flags.append((s[0], parse_segment(data).flags)))
    client = BulkApp(b"x" * 1000)
    conn = ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: bool(sh.accepted) and sh.accepted[0].eof_at is not None, 10)
    # The server closes after the client's FIN: client ends in TIME-WAIT.
    server_conn = sh.accepted[0].conn
    assert server_conn is not None
    server_conn.close(net.now)
    net.flush()
    net.run_for(1.0)
    assert conn.state is State.TIME_WAIT
    syns = [f for _, f in flags if f & 0x02]
    assert len(syns) == 2  # exactly one SYN and one SYN-ACK
    fins = [(s, f) for s, f in flags if f & 0x01]
    assert {s for s, _ in fins} == {A[0], B[0]}
    assert sh.accepted[0].received == b"x" * 1000
    net.run_for(61.0)
    assert conn.state is State.CLOSED
    assert not ch.endpoint.connections and not sh.endpoint.connections


def test_h2_long_rtt_retransmits_syn() -> None:
    out = transfer(LinkConfig(delay=0.75), 1000, seed=4)
    assert out.ok
    assert out.client.conn is not None
    # 1.5 s RTT > initial RTO of 1 s: the SYN is sent at least twice.
    assert out.client.conn.retransmissions >= 1


@pytest.mark.parametrize("loss", [0.02, 0.05, 0.10])
def test_l2_transfer_loss_bursts(loss: float) -> None:
    link = LinkConfig(delay=0.01, loss=loss, loss_max_burst=3)
    out = transfer(link, 2_000_000, seed=11)
    assert out.ok
    assert out.net.total_stats().lost > 0


def test_c2_corruption_counted() -> None:
    link = LinkConfig(delay=0.01, corrupt=0.02)
    out = transfer(link, 2_000_000, seed=12)
    assert out.ok
    corrupted = out.net.total_stats().corrupted
    assert corrupted > 0
    rejected = sum(h.endpoint.counters["dropped"] for h in (out.client_host, out.server_host))
    # Every corrupted datagram is rejected (single-byte flips never pass the checksum).
    assert rejected == corrupted


def test_r1_reordering() -> None:
    link = LinkConfig(delay=0.01, reorder=0.25, reorder_delay=0.01)
    out = transfer(link, 8_000_000, seed=13)
    assert out.ok
    assert out.net.total_stats().reordered > 0


def test_d1_duplication_no_doubled_bytes() -> None:
    link = LinkConfig(delay=0.01, duplicate=0.10)
    out = transfer(link, 8_000_000, 1_000_000, seed=14)
    assert out.ok
    assert out.net.total_stats().duplicated > 0


def test_b1_periodic_blackhole() -> None:
    link = LinkConfig(
        delay=0.01,
        rate=2_000_000,
        queue_limit=200_000,
        blackhole=((5.0, 7.0),),
        blackhole_period=7.0,
    )
    out = transfer(link, 10_000_000, seed=15)
    assert out.ok
    assert out.net.total_stats().blackholed > 0


def test_b2_permanent_blackhole_user_timeout() -> None:
    """Both ends error out within the user timeout. The sender notices through its
    unacknowledged data (user timeout); a pure receiver has nothing outstanding, so
    -- exactly as with TCP -- it needs keepalive to notice a vanished path."""
    cfg = Config(user_timeout=20.0)
    server_cfg = Config(
        user_timeout=20.0,
        keepalive=True,
        keepalive_idle=10,
        keepalive_interval=2,
        keepalive_count=3,
    )
    # 2 MB/s: the transfer still runs when the path goes dark at 0.2 s.
    link = LinkConfig(delay=0.01, rate=2_000_000, blackhole=((0.2, 1e9),))
    out = transfer(link, 5_000_000, seed=16, config=cfg, server_config=server_cfg, timeout=600)
    assert out.client.terminated and out.server.terminated
    assert isinstance(out.client.error, TimeoutError)
    assert isinstance(out.server.error, TimeoutError)
    assert out.net.total_stats().blackholed > 0
    assert out.client.done_at is not None and out.client.done_at <= 0.2 + 20.0 + 1.0
    assert out.server.done_at is not None and out.server.done_at <= 0.2 + 20.0 + 1.0
    assert not out.client_host.endpoint.connections
    assert not out.server_host.endpoint.connections


def test_z1_zero_window_reader_pauses() -> None:
    """The receiver does not read for 30 s: probes, nothing lost, no abort."""
    from rudp.sim.host import BulkApp

    cfg = Config(rcv_buf=64 * 1024)
    net, ch, sh = pair(LinkConfig(delay=0.01), seed=17, config=cfg)
    sink = BulkApp(b"", read=False)
    sh.accept_factory = lambda: sink
    payload = bytes(range(256)) * 16384  # 4 MiB
    client = BulkApp(payload)
    ch.connect(client, B, 80, 0.0)
    net.run_for(30.0)
    assert sink.conn is not None and client.conn is not None
    assert client.conn.window_probes > 0
    # Bounded by the receive buffer; the scaled window is rounded down, so up to
    # 2**wscale - 1 bytes of it may stay empty.
    assert 64 * 1024 - (1 << sink.conn.rcv_wscale) < sink.conn.readable <= 64 * 1024
    sink.read = True
    sink.pump(net.now)
    net.flush()
    net.run_until(lambda: client.terminated and sink.terminated, 600)
    assert bytes(sink.received) == payload
    assert client.error is None and sink.error is None


def test_t1_small_receive_buffer_window_updates() -> None:
    cfg = Config(rcv_buf=4096, mss=1400)
    out = transfer(LinkConfig(delay=0.005), 2_000_000, seed=18, config=cfg)
    assert out.ok


def test_k1_keepalive_peer_vanishes() -> None:
    cfg = Config(keepalive=True, keepalive_idle=60, keepalive_interval=5, keepalive_count=3)
    from rudp.sim.host import BulkApp

    net, ch, sh = pair(LinkConfig(delay=0.01), seed=19, config=cfg)
    idle = BulkApp(b"")
    idle.shut = True  # never half-close: stay idle
    sh.accept_factory = lambda: idle
    client = BulkApp(b"")
    client.shut = True
    ch.connect(client, B, 80, 0.0)
    net.run_for(200.0)  # idle but alive: probes answered, no abort
    assert client.conn is not None and client.conn.keepalive_probes >= 2
    assert not client.terminated
    net.remove_node(B)  # the peer vanishes
    t0 = net.now
    net.run_until(lambda: client.terminated, 1000)
    assert client.terminated and isinstance(client.error, TimeoutError)
    # Abort after (at most) idle + interval * count of silence.
    assert client.done_at is not None and client.done_at - t0 <= 60 + 5 * 3 + 1


def test_m1_many_connections_server_holds_nothing() -> None:
    from rudp.sim.host import BulkApp

    net, ch, sh = pair(LinkConfig(delay=0.001), seed=20, backlog=4096)
    sh.accept_factory = lambda: BulkApp(b"pong")
    apps = [BulkApp(b"p" * 32) for _ in range(2000)]
    for app in apps:
        ch.connect(app, B, 80, net.now)
    net.flush()
    net.run_until(lambda: all(a.terminated for a in apps), 600)
    assert all(a.error is None and a.received == b"pong" for a in apps)
    assert len(sh.accepted) == 2000
    assert all(s.received == b"p" * 32 for s in sh.accepted)
    net.run_for(120.0)  # past TIME-WAIT
    assert not sh.endpoint.connections and not ch.endpoint.connections


def test_l1_handshake_loss_50_sequential_connections() -> None:
    """30% loss each way, at most 3 in a row: exactly 50 connections established."""
    from rudp.sim.host import BulkApp

    net, ch, sh = pair(LinkConfig(delay=0.01, loss=0.30, loss_max_burst=3), seed=21)
    sh.accept_factory = lambda: BulkApp(b"")
    done = []
    for i in range(50):
        payload = bytes([i]) * 1000
        app = BulkApp(payload)
        ch.connect(app, B, 80, net.now)
        net.flush()
        assert net.run_until(lambda app=app: app.terminated, 3600)
        assert app.error is None
        done.append(app)
    net.run_until(lambda: len(sh.accepted) == 50 and all(s.terminated for s in sh.accepted), 3600)
    assert len(sh.accepted) == 50
    assert [bytes(s.received) for s in sh.accepted] == [bytes([i]) * 1000 for i in range(50)]
    assert net.total_stats().lost > 0


def test_w1_time_wait_replays() -> None:
    """Old segments and an RST replayed into TIME-WAIT: the FIN is re-ACKed and the
    2MSL timer restarted; the RST does not end TIME-WAIT (RFC 1337)."""
    from rudp.sim.host import BulkApp

    net, ch, sh = pair(LinkConfig(delay=0.01), seed=22)
    sh.accept_factory = lambda: BulkApp(b"", read=True)
    captured: list[bytes] = []

    def tap(t: float, src: object, dst: object, data: bytes, fate: str) -> None:
        if src == B:
            captured.append(data)

    net.add_tap(tap)
    client = BulkApp(b"hello")
    conn = ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: bool(sh.accepted) and sh.accepted[0].eof_at is not None, 10)
    srv = sh.accepted[0].conn
    assert srv is not None
    srv.close(net.now)  # the server closes second: the client enters TIME-WAIT
    net.flush()
    net.run_for(0.5)
    assert conn.state is State.TIME_WAIT
    fin = next(d for d in reversed(captured) if parse_segment(d).flags & 0x01)
    t_replay = net.now + 20.0
    net.run_for(20.0)
    ch.receive_datagram(fin, B, net.now)  # the peer's FIN, replayed
    (reply,) = ch.datagrams_to_send(net.now)  # re-ACKed, once (by the TIME-WAIT record)
    ack = parse_segment(reply[0])
    assert ack.flags == 0x10 and ack.ack == conn.rcv_nxt
    (record,) = ch.endpoint.connections.values()  # the compact TIME-WAIT record
    assert record.deadline == pytest.approx(t_replay + 60.0)  # 2MSL restarted
    rst = parse_segment(fin)
    from rudp.wire import RST, build_segment

    ch.receive_datagram(
        build_segment(rst.sport, rst.dport, conn.rcv_nxt, 0, RST, 0), B, net.now + 1
    )
    assert conn.state is State.TIME_WAIT  # RFC 1337: not assassinated
    net.run_for(61.0)
    assert conn.state is State.CLOSED
