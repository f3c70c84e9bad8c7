"""``Connection.read_into``: in-order data copied straight into the caller's buffer
(what the asyncio layer uses for a ``BufferedProtocol``), with ``read()``'s window
updates and autotuning."""

from __future__ import annotations

import random

from simutil import B, pair

from rudp import Config
from rudp.sim import LinkConfig
from rudp.sim.host import BulkApp


class IntoApp(BulkApp):
    """Reads with read_into() into one reused 1,000-byte buffer."""

    def __init__(self) -> None:
        super().__init__(b"", read=False)
        self.scratch = bytearray(1000)
        self.calls = 0

    def pump(self, now: float) -> None:
        super().pump(now)
        conn = self.conn
        if conn is None:
            return
        view = memoryview(self.scratch)
        while n := conn.read_into(view):
            assert 0 < n <= len(view)
            self.received += view[:n]
            self.calls += 1


def test_read_into_delivers_every_byte_once_in_order_and_reopens_the_window() -> None:
    cfg = Config(rcv_buf=64 * 1024)  # far less than the transfer: the window must reopen
    net, ch, sh = pair(LinkConfig(delay=0.005, loss=0.01), seed=8, config=cfg)
    app = IntoApp()
    sh.accept_factory = lambda: app
    payload = random.Random(3).randbytes(2_000_000)
    client = BulkApp(payload)
    ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: app.eof_at is not None, 600)
    assert net.total_stats().lost > 0  # the impairment happened
    assert bytes(app.received) == payload
    assert app.calls >= len(payload) // 1000
    assert app.conn is not None and app.conn.rcv_buf > 64 * 1024  # autotuning saw the reads


def test_read_into_an_empty_buffer_takes_nothing() -> None:
    net, ch, sh = pair(LinkConfig(delay=0.005), seed=9)
    sink = BulkApp(b"", read=False)
    sh.accept_factory = lambda: sink
    ch.connect(BulkApp(b"z" * 5000), B, 80, 0.0)
    net.run_until(lambda: sink.conn is not None and sink.conn.readable == 5000, 10)
    conn = sink.conn
    assert conn is not None
    assert conn.read_into(memoryview(bytearray(0))) == 0
    out = bytearray(3000)
    assert conn.read_into(memoryview(out)) == 3000 and conn.readable == 2000
    assert conn.read() == b"z" * 2000 and out == b"z" * 3000
    assert conn.read_into(memoryview(out)) == 0
