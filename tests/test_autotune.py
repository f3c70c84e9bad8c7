"""Receive- and send-buffer autotuning (Linux's tcp_rcv_space_adjust and
tcp_sndbuf_expand), through the deterministic simulator.

The path: 100 Mbit/s, 60 ms round trip, a queue of one bandwidth-delay product
(750 KB). A 256 KiB window moves at most 256 KiB per round trip (~4.4 MB/s); the
link carries 12.5 MB/s.
"""

from __future__ import annotations

from simutil import B, pair, transfer

from rudp import Config
from rudp.engine.connection import offered_wscale, wscale_for
from rudp.sim import LinkConfig
from rudp.sim.host import BulkApp
from rudp.wire import parse_segment

RATE = 12_500_000.0  # bytes/s
LINK = LinkConfig(delay=0.030, rate=RATE, queue_limit=750_000)
BACK = LinkConfig(delay=0.030)
SIZE = 30_000_000
FIXED = Config(rcv_buf_max=256 * 1024, snd_buf_max=256 * 1024)  # autotuning off


def _goodput(config: Config) -> tuple[float, int, int]:
    """Client -> server bulk: goodput (bytes/s from the server's accept to its EOF),
    the server's receive buffer and the client's send buffer at the end."""
    out = transfer(LINK, SIZE, 0, seed=5, config=config, back=BACK)
    assert out.ok
    server = out.server_host.accepted[0]
    assert server.eof_at is not None and server.established_at is not None
    assert server.conn is not None and out.client.conn is not None
    rate = SIZE / (server.eof_at - server.established_at)
    return rate, server.conn.rcv_buf, out.client.conn.write_high


def test_autotuning_fills_a_path_a_fixed_window_cannot() -> None:
    fixed_rate, fixed_rcv, fixed_snd = _goodput(FIXED)
    auto_rate, auto_rcv, auto_snd = _goodput(Config())
    # Without autotuning the window holds the transfer to ~256 KiB per round trip.
    assert fixed_rcv == 256 * 1024 and fixed_snd == 256 * 1024
    assert fixed_rate < 0.40 * RATE, fixed_rate
    # With it both buffers grew past one BDP, within their ceilings, and the
    # transfer runs near the link's rate.
    assert 750_000 < auto_rcv <= Config().rcv_buf_max, auto_rcv
    assert 750_000 < auto_snd <= Config().snd_buf_max, auto_snd
    assert auto_rate > 0.75 * RATE, (auto_rate, fixed_rate)


def test_a_reader_that_does_not_read_grows_nothing() -> None:
    """The buffer grows only with what the application reads: a server that never
    reads keeps the configured buffer, and the window closes at it."""
    net, ch, sh = pair(LINK, seed=3, back=BACK)
    sh.accept_factory = lambda: BulkApp(b"", read=False)
    client = BulkApp(b"x" * 2_000_000)
    ch.connect(client, B, 80, 0.0)
    net.run_for(10.0)
    server = sh.accepted[0].conn
    assert server is not None
    assert server.rcv_buf == Config().rcv_buf
    # The whole buffer, unread (the scaled window is rounded down: up to
    # 2**wscale - 1 bytes may stay empty).
    assert Config().rcv_buf - 128 < server.readable <= Config().rcv_buf
    assert server.stats()["rcv_wnd"] == 0


def test_window_scale_offered_covers_the_ceiling() -> None:
    """RFC 7323 §2.2: the shift is fixed in the SYN, so it is sized for the largest
    buffer autotuning may reach (4 MiB: 7), or for ``rcv_buf`` when it is off."""
    assert offered_wscale(Config()) == wscale_for(4 * 1024 * 1024) == 7
    assert offered_wscale(FIXED) == wscale_for(256 * 1024) == 3
    assert offered_wscale(Config(rcv_buf=16 << 20)) == 9  # a larger fixed buffer wins
    net, ch, sh = pair(LinkConfig(delay=0.01), seed=1)
    syns: list[int | None] = []
    net.add_tap(lambda t, s, d, data, fate: syns.append(parse_segment(data).wscale))
    sh.accept_factory = lambda: BulkApp(b"")
    ch.connect(BulkApp(b""), B, 80, 0.0)
    net.run_for(1.0)
    assert syns[:2] == [7, 7]  # SYN and SYN,ACK (the listener's cookie path too)


def test_application_write_limits_stop_send_autotuning() -> None:
    """As SO_SNDBUF locks Linux's send buffer: limits the application sets stay."""
    net, ch, sh = pair(LINK, seed=4, back=BACK)
    sh.accept_factory = lambda: BulkApp(b"")
    client = BulkApp(b"y" * 5_000_000)
    conn = ch.connect(client, B, 80, 0.0)
    conn.set_write_buffer_limits(300_000, 200_000)
    net.run_for(6.0)
    assert sh.accepted[0].received  # data moved
    assert conn.cc.cwnd > 200_000  # autotuning would have grown the buffer past this
    assert (conn.write_low, conn.write_high) == (200_000, 300_000)
