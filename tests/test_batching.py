"""Receive coalescing (software GRO): rudp.wire.segment.coalesce and the engine's
Endpoint.receive_datagrams.

* ``coalesce`` merges exactly the runs Linux's tcp_gro_receive would (same ports,
  ACK, window, urgent field and option bytes; consecutive sequence numbers; ACK
  with PSH only last; valid checksums), in C and in pure Python alike;
* a receiver fed batches through ``receive_datagrams`` sends byte for byte what
  its twin fed one datagram at a time sends, and reads the same bytes, on a
  two-way transfer with loss, reordering, duplication and corruption in the
  batches -- while it really coalesced;
* over real UDP sockets the asyncio layer coalesces and the data arrives exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simutil import FAST

import rudp
from rudp import Config
from rudp._compiled import COMPILED
from rudp.aio import endpoint as aio_endpoint
from rudp.aio import sockio
from rudp.engine import ConnectionAccepted, Endpoint
from rudp.engine import connection as connection_mod
from rudp.engine.buffers import ReceiveBuffer
from rudp.engine.connection import Connection
from rudp.engine.endpoint import Address
from rudp.engine.recovery.rack import Rack
from rudp.engine.recovery.scoreboard import (
    ACKED,
    END,
    FLAGS,
    LOST,
    SACKED,
    SEG,
    START,
    XMIT,
    Scoreboard,
    first_segment_end,
)
from rudp.wire import segment as segment_mod
from rudp.wire.checksum import IMPLEMENTATION
from rudp.wire.segment import (
    ACK,
    COALESCE_MAX,
    FIN,
    OPT_MSS,
    PSH,
    SYN,
    URG,
    py_build_segment,
    py_build_segment_ts,
    py_coalesce,
)


def _accel() -> ModuleType | None:
    """The C accelerator, unless this run uses the pure-Python code (then the C
    module is not even imported: tests/test_accel.py checks that)."""
    if IMPLEMENTATION != "c":
        return None
    from rudp import _accel

    return _accel


IMPLS = [pytest.param(py_coalesce, id="python")]
if (_mod := _accel()) is not None:
    IMPLS.append(pytest.param(_mod.coalesce, id="c"))


def run_of(n: int, size: int = 100, seq: int = 1000, last_flags: int = ACK) -> list[bytes]:
    """``n`` consecutive timestamped data segments of ``size`` bytes (one send)."""
    out = []
    for i in range(n):
        flags = last_flags if i == n - 1 else ACK
        payload = bytes([i % 256]) * size
        pos = (seq + i * size) & 0xFFFFFFFF
        out.append(py_build_segment_ts(80, 90, pos, 7, flags, 500, payload, 11, 22))
    return out


@pytest.mark.parametrize("fn", IMPLS)
def test_a_run_of_one_send_merges_with_its_data_in_order(fn: object) -> None:
    run = run_of(5, last_flags=ACK | PSH)
    k, payload = fn(run, 0, COALESCE_MAX)  # type: ignore[operator]
    assert k == 5
    assert payload == b"".join(bytes([i]) * 100 for i in range(5))
    k, payload = fn(run, 2, COALESCE_MAX)  # type: ignore[operator]
    assert (k, payload) == (3, b"".join(bytes([i]) * 100 for i in (2, 3, 4)))
    assert fn(run, 1, 2) == (2, bytes([1]) * 100 + bytes([2]) * 100)  # type: ignore[operator]
    assert fn(run, 4, COALESCE_MAX) == (1, None)  # type: ignore[operator]
    assert fn(run, 0, 1) == (1, None)  # type: ignore[operator]


def _patch(seg: bytes, offset: int, new: bytes) -> bytes:
    """``seg`` with bytes replaced at ``offset`` (checksum recomputed)."""
    raw = bytearray(seg)
    raw[offset : offset + len(new)] = new
    raw[16:18] = b"\0\0"
    csum = (~segment_mod.ones_complement_sum(bytes(raw))) & 0xFFFF
    raw[16:18] = (csum or 0xFFFF).to_bytes(2, "big")
    return bytes(raw)


BREAKS = {
    "other port": (2, bytes([0, 81])),
    "other ack": (8, bytes([0, 0, 0, 8])),
    "other window": (14, bytes([1, 0])),
    "other urgent field": (18, bytes([0, 1])),
    "other tsval": (24, bytes([0, 0, 0, 12])),
    "a gap": (4, (1000 + 3 * 100 + 1).to_bytes(4, "big")),
    "SYN": (13, bytes([ACK | SYN])),
    "FIN": (13, bytes([ACK | FIN])),
    "URG": (13, bytes([ACK | URG])),
    "no ACK": (13, bytes([PSH])),
}


@pytest.mark.parametrize("fn", IMPLS)
@pytest.mark.parametrize("what", sorted(BREAKS))
def test_a_difference_in_the_fourth_segment_ends_the_run_at_three(fn: object, what: str) -> None:
    run = run_of(6)
    offset, new = BREAKS[what]
    run[3] = _patch(run[3], offset, new)
    k, payload = fn(run, 0, COALESCE_MAX)  # type: ignore[operator]
    assert k == 3 and payload is not None and len(payload) == 300


@pytest.mark.parametrize("fn", IMPLS)
def test_bad_checksums_psh_pure_acks_and_limits(fn: object) -> None:
    run = run_of(6)
    bad = bytearray(run[2])
    bad[-1] ^= 1
    assert fn([*run[:2], bytes(bad), *run[3:]], 0, 64) == (2, run_payloads(run[:2]))  # type: ignore[operator]
    first_bad = bytearray(run[0])
    first_bad[-1] ^= 1
    assert fn([bytes(first_bad), *run[1:]], 0, 64) == (1, None)  # type: ignore[operator]
    # PSH ends the run after it; a first segment with PSH stands alone.
    pushed = run_of(6)
    pushed[1] = _patch(pushed[1], 13, bytes([ACK | PSH]))
    assert fn(pushed, 0, 64)[0] == 2  # type: ignore[operator]
    assert fn(pushed, 1, 64) == (1, None)  # type: ignore[operator]
    # Pure ACKs, short and malformed datagrams never merge.
    ack = py_build_segment(80, 90, 1000, 7, ACK, 500)
    assert fn([ack, ack], 0, 64) == (1, None)  # type: ignore[operator]
    assert fn([run[0], ack], 0, 64) == (1, None)  # type: ignore[operator]
    assert fn([run[0], b"xx", run[1]], 0, 64) == (1, None)  # type: ignore[operator]
    assert fn([b"", run[0]], 0, 64) == (1, None)  # type: ignore[operator]
    # A checksum field of 0 means "not computed" (docs/wire.md): accepted.
    plain = [
        py_build_segment(80, 90, 1 + 10 * i, 7, ACK, 5, bytes(10), compute_checksum=False)
        for i in range(3)
    ]
    assert fn(plain, 0, 64) == (3, bytes(30))  # type: ignore[operator]
    # At most 64, whatever the limit; memoryviews and bytearrays alike.
    many = [memoryview(s) for s in run_of(70, size=10)]
    assert fn(many, 0, 1000)[0] == COALESCE_MAX == 64  # type: ignore[operator]
    assert fn([bytearray(s) for s in run], 0, 64)[0] == 6  # type: ignore[operator]
    # At most 64 KiB of data (Linux's GRO limit): two 30,000-byte segments, not three.
    assert fn(run_of(3, size=30_000), 0, 64)[0] == 2  # type: ignore[operator]
    assert fn(run_of(2, size=40_000), 0, 64) == (1, None)  # type: ignore[operator]
    # Sequence numbers wrap.
    wrapped = run_of(3, size=10, seq=0xFFFFFFFF - 14)
    assert fn(wrapped, 0, 64)[0] == 3  # type: ignore[operator]


def run_payloads(run: list[bytes]) -> bytes:
    return b"".join(s[32:] for s in run)


@pytest.mark.parametrize("fn", IMPLS)
def test_misuse_raises_typed_errors(fn: object) -> None:
    with pytest.raises(IndexError):
        fn([], 0, 64)  # type: ignore[operator]
    with pytest.raises(IndexError):
        fn(run_of(2), 2, 64)  # type: ignore[operator]
    with pytest.raises(TypeError):
        fn([object(), object()], 0, 64)  # type: ignore[operator]


@pytest.mark.skipif(_accel() is None, reason="the C accelerator is not in use")
@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(0, 6),  # which field to disturb (6: none)
            st.integers(0, 255),
            st.integers(1, 40),  # payload size
            st.sampled_from([ACK, ACK, ACK | PSH, ACK | FIN, SYN]),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 11),
    st.integers(0, 70),
)
def test_c_equals_python_on_disturbed_runs(
    spec: list[tuple[int, int, int, int]], start: int, limit: int
) -> None:
    accel = _accel()
    assert accel is not None
    seq = 0xFFFFFF00
    run: list[bytes] = []
    for field, value, size, flags in spec:
        seg = py_build_segment_ts(80, 90, seq, 7, flags, 500, bytes([value]) * size, 5, 6)
        seq = (seq + size) & 0xFFFFFFFF
        if field < 5:
            offset = (2, 4, 8, 14, 24)[field]
            seg = _patch(seg, offset + 1, bytes([value]))
        if field == 5:
            seg = seg[:-1] + bytes([seg[-1] ^ 1])  # a bad checksum
        run.append(seg)
    start %= len(run)
    assert accel.coalesce(run, start, limit) == py_coalesce(run, start, limit)


# ---------------------------------------------------------------------------
# The engine: a batched receiver against its one-at-a-time twin.

A: Address = ("10.0.0.1", 1)
B: Address = ("10.0.0.2", 2)


def _config() -> Config:
    return Config(mss=1000, rcv_buf=1 << 18, snd_buf=1 << 18)


@pytest.mark.parametrize("impair", [False, True], ids=["clean", "impaired"])
def test_a_batched_receiver_sends_and_reads_exactly_what_its_twin_does(impair: bool) -> None:
    rng = random.Random(7)
    cfg = _config()
    isn = {"a": 0x10000000, "b": 0xFFFFF000}  # b's numbers wrap during the transfer
    sender = Endpoint(cfg, seed=1, isn=lambda _i, _n: isn["a"])
    twins = [Endpoint(cfg, seed=2, isn=lambda _i, _n: isn["b"]) for _ in range(2)]
    for ep in twins:
        ep.listen(80)
    now = 0.0
    conn = sender.connect(B, 80, now)
    servers: list[Connection | None] = [None, None]
    total_a, total_b = 3_000_000, 600_000
    data_a = rng.randbytes(total_a)
    data_b = rng.randbytes(total_b)
    got_b = [bytearray(), bytearray()]  # what each twin read
    got_a = bytearray()
    sent_a = 0
    sent_b = [0, 0]
    impaired = {"dropped": 0, "swapped": 0, "duplicated": 0, "corrupted": 0}
    to_sender: list[bytes] = []
    while len(got_b[0]) < total_a or len(got_a) < total_b:
        now += 0.002
        assert now < 120, "stalled"
        for ep in (sender, *twins):
            due = ep.get_timer()
            if due is not None and due <= now:
                ep.handle_timer(now)
        # The data starts once the handshake is over on both sides, so that the
        # first flight (ten segments) reaches an ESTABLISHED receiver as one run.
        while sent_a < total_a and not conn.writing_paused and servers[0] is not None:
            conn.send(data_a[sent_a : sent_a + 65536], now)
            sent_a = min(total_a, sent_a + 65536)
        batch = [d for d, _ in sender.datagrams_to_send(now)]
        if impair:
            batch = _impair(batch, rng, impaired)
        # Twin 0 one datagram at a time, twin 1 in batches of up to 100 (one read).
        for d in batch:
            twins[0].receive_datagram(d, A, now)
        for i in range(0, len(batch), 100):
            twins[1].receive_datagrams(batch[i : i + 100], A, now)
        outs = []
        for t, ep in enumerate(twins):
            while (ev := ep.next_event()) is not None:
                if isinstance(ev, ConnectionAccepted):
                    servers[t] = ev.conn
            server = servers[t]
            if server is not None:
                got_b[t] += server.read()
                while sent_b[t] < total_b and not server.writing_paused:
                    server.send(data_b[sent_b[t] : sent_b[t] + 30000], now)
                    sent_b[t] = min(total_b, sent_b[t] + 30000)
            outs.append([d for d, _ in ep.datagrams_to_send(now)])
        assert outs[1] == outs[0], f"the twins diverged at t={now:.3f}"
        assert got_b[1] == got_b[0]
        assert _state(servers[1]) == _state(servers[0]), f"t={now:.3f}"
        to_sender = outs[0]
        for d in to_sender:
            sender.receive_datagram(d, B, now)
        while sender.next_event() is not None:
            pass
        got_a += conn.read()
    assert bytes(got_b[0]) == data_a and bytes(got_a) == data_b
    s0, s1 = (s.stats() for s in servers if s is not None)
    assert s1 == s0
    coalesced = twins[1].stats()["segments_coalesced"]
    assert twins[0].stats()["segments_coalesced"] == 0
    # It really coalesced: most of the sender's 3,000 segments came in runs.
    assert coalesced > 0.5 * total_a / 1000
    assert twins[1].stats()["datagrams_received"] == twins[0].stats()["datagrams_received"]
    if impair:
        assert all(v > 0 for v in impaired.values()), impaired
        assert conn.retransmissions > 0


def _state(conn: Connection | None) -> object:
    """What a connection shows, and the window-update marks (RFC 9293 SND.WL1/2)."""
    if conn is None:
        return None
    return conn.stats(), conn.snd_wl1, conn.snd_wl2


def _impair(batch: list[bytes], rng: random.Random, seen: dict[str, int]) -> list[bytes]:
    out: list[bytes] = []
    for d in batch:
        r = rng.random()
        if r < 0.01:
            seen["dropped"] += 1
            continue
        if r < 0.02:
            seen["duplicated"] += 1
            out.append(d)
        elif r < 0.03:
            seen["corrupted"] += 1
            raw = bytearray(d)
            raw[rng.randrange(len(raw))] ^= 0x40
            d = bytes(raw)
        out.append(d)
    for i in range(len(out) - 1):
        if rng.random() < 0.01:
            seen["swapped"] += 1
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def test_runs_fall_back_to_one_at_a_time_outside_the_fast_path() -> None:
    """A run that arrives out of order (after a hole) is not merged: the receiver
    SACKs each segment as the twin does -- and counts nothing as coalesced."""
    cfg = _config()
    sender = Endpoint(cfg, seed=1, isn=lambda _i, _n: 1)
    rcv = Endpoint(cfg, seed=2, isn=lambda _i, _n: 2)
    rcv.listen(80)
    conn = sender.connect(B, 80, 0.0)
    for d, _ in sender.datagrams_to_send(0.0):
        rcv.receive_datagram(d, A, 0.0)
    for d, _ in rcv.datagrams_to_send(0.0):
        sender.receive_datagram(d, B, 0.0)
    conn.send(bytes(8000), 0.0)
    batch = [d for d, _ in sender.datagrams_to_send(0.0)]
    assert len(batch) == 8
    rcv.receive_datagrams(batch[1:], A, 0.0)  # the first is missing
    assert rcv.stats()["segments_coalesced"] == 0
    acks = rcv.datagrams_to_send(0.0)
    assert acks  # the out-of-order data is ACKed at once (RFC 5681 §4.2)
    rcv.receive_datagrams(batch[:1], A, 0.0)
    server = next(c for c in rcv.connections.values() if isinstance(c, Connection))
    assert server.read() == bytes(8000)


def test_a_run_with_malformed_options_is_dropped_and_counted_one_by_one() -> None:
    """coalesce() compares option bytes, it does not parse them: a run whose (equal)
    options are malformed goes back to receive_datagram, which drops each datagram
    and counts it by reason -- no internal error, nothing delivered."""
    rcv = Endpoint(_config(), seed=2)
    opts = bytes([OPT_MSS, 1, 1, 1])  # an MSS option of length 1: malformed
    run = [py_build_segment(90, 80, 1000 + 10 * i, 7, ACK, 500, bytes(10), opts) for i in range(4)]
    assert segment_mod.coalesce(run, 0, 64)[0] == 4
    rcv.receive_datagrams(run, A, 0.0)
    stats = rcv.stats()
    assert stats["drop_option_length"] == 4 and stats["dropped"] == 4
    assert stats["internal_errors"] == 0 and stats["segments_coalesced"] == 0


# ---------------------------------------------------------------------------
# Real sockets: the asyncio layer hands its reads over in runs.


@pytest.mark.parametrize("gro", [True, False], ids=["gro", "no-gro"])
async def test_a_transfer_over_udp_is_coalesced_and_exact(
    gro: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not gro:
        monkeypatch.setenv("RUDP_NO_GRO", "1")
    data = os.urandom(8 << 20)
    digest = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h = hashlib.sha256()
        n = 0
        while chunk := await reader.read(1 << 16):
            h.update(chunk)
            n += len(chunk)
        digest.set_result((n, h.hexdigest()))
        writer.close()

    server = await rudp.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _reader, writer = await rudp.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    n, hexdigest = await asyncio.wait_for(digest, 60)
    assert (n, hexdigest) == (len(data), hashlib.sha256(data).hexdigest())
    stats = [ep.stats() for ep in server.endpoints]
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    assert all(s["features"]["gro"] is gro for s in stats) or pytest.skip("no UDP GRO here")
    assert sum(s["segments_coalesced"] for s in stats) > 1000


# ---------------------------------------------------------------------------
# Send bursts: full-sized segments built together (Connection._send_burst).


BURST_IMPLS = [pytest.param(segment_mod.py_build_burst, id="python")]
if (_mod := _accel()) is not None:
    BURST_IMPLS.append(pytest.param(_mod.build_burst, id="c"))


@pytest.mark.parametrize("fn", BURST_IMPLS)
def test_build_burst_builds_what_build_segment_ts_builds(fn: object) -> None:
    data = bytearray(random.Random(1).randbytes(10_000))
    for ts in ((1, 2), None):
        burst = fn(80, 90, 0xFFFFFF00, 7, ACK, ACK | PSH, 99, data, 5, 1000, 9, ts, True)  # type: ignore[operator]
        assert len(burst) == 9
        for j, seg in enumerate(burst):
            flags = ACK | PSH if j == 8 else ACK
            piece = bytes(data[5 + j * 1000 : 5 + (j + 1) * 1000])
            pos = (0xFFFFFF00 + j * 1000) & 0xFFFFFFFF
            if ts is None:
                assert seg == py_build_segment(80, 90, pos, 7, flags, 99, piece)
            else:
                assert seg == py_build_segment_ts(80, 90, pos, 7, flags, 99, piece, *ts)
    assert fn(1, 2, 3, 4, ACK, ACK, 5, data, 0, 100, 0, None, True) == []  # type: ignore[operator]
    plain = fn(1, 2, 3, 4, ACK, ACK, 5, data, 0, 100, 1, None, False)  # type: ignore[operator]
    assert plain == [py_build_segment(1, 2, 3, 4, ACK, 5, data[:100], compute_checksum=False)]


@pytest.mark.parametrize("fn", BURST_IMPLS)
def test_build_burst_misuse_raises_typed_errors(fn: object) -> None:
    data = bytes(1000)
    with pytest.raises(ValueError):
        fn(1, 2, 3, 4, ACK, ACK, 5, data, 1, 100, 10, None, True)  # type: ignore[operator]
    with pytest.raises(ValueError):
        fn(1, 2, 3, 4, ACK, ACK, 5, data, 0, 0, 1, None, True)  # type: ignore[operator]
    with pytest.raises(struct.error):
        fn(1 << 16, 2, 3, 4, ACK, ACK, 5, data, 0, 100, 1, None, True)  # type: ignore[operator]
    with pytest.raises(TypeError):
        fn(1, 2, 3, 4, ACK, ACK, 5, object(), 0, 100, 1, None, True)  # type: ignore[operator]


def _transfer(cfg: Config, seed: int) -> tuple[list[list[bytes]], list[int], dict[str, int]]:
    """A two-way transfer over an impaired direct path, both ends closing; what each
    side emitted at each step, the bytes each side read, what was impaired."""
    rng = random.Random(seed)
    a = Endpoint(cfg, seed=1, isn=lambda _i, _n: 0xFFFF0000)
    b = Endpoint(cfg, seed=2, isn=lambda _i, _n: 5)
    b.listen(80)
    now = 0.0
    conn = a.connect(B, 80, now)
    server: Connection | None = None
    data_a, data_b = rng.randbytes(2_000_000), rng.randbytes(300_000)
    sent_a = sent_b = 0
    got_a, got_b = bytearray(), bytearray()
    impaired = {"dropped": 0, "swapped": 0, "duplicated": 0, "corrupted": 0}
    steps: list[list[bytes]] = []
    closed = False
    while not (closed and conn.state.value in ("TIME-WAIT", "CLOSED")):
        now += 0.001
        assert now < 120, "stalled"
        for ep in (a, b):
            due = ep.get_timer()
            if due is not None and due <= now:
                ep.handle_timer(now)
        if conn.state.value == "ESTABLISHED":
            while sent_a < len(data_a) and not conn.writing_paused:
                conn.send(data_a[sent_a : sent_a + 50_000], now)
                sent_a = min(len(data_a), sent_a + 50_000)
            if sent_a == len(data_a) and not closed and len(got_a) == len(data_b):
                conn.close(now)
                closed = True
        out = [d for d, _ in a.datagrams_to_send(now)]
        steps.append(out)
        for d in _impair(out, rng, impaired):
            b.receive_datagram(d, A, now)
        while (ev := b.next_event()) is not None:
            if isinstance(ev, ConnectionAccepted):
                server = ev.conn
        if server is not None:
            got_b += server.read()
            # 20 segments at a time, once the last are sent: bursts end with PSH.
            if sent_b < len(data_b) and server.stats()["notsent_bytes"] == 0:
                server.send(data_b[sent_b : sent_b + 20_000], now)
                sent_b = min(len(data_b), sent_b + 20_000)
            if sent_b == len(data_b) and server.state.value == "CLOSE-WAIT":
                server.close(now)
        back = [d for d, _ in b.datagrams_to_send(now)]
        steps.append(back)
        for d in _impair(back, rng, impaired):
            a.receive_datagram(d, B, now)
        while a.next_event() is not None:
            pass
        got_a += conn.read()
    assert bytes(got_b) == data_a and bytes(got_a) == data_b
    stats = conn.stats(now)
    for key in ("retransmissions", "fast_retransmits", "tlp_probes", "rto_expiries"):
        impaired[key] = stats[key]
    return steps, [len(got_a), len(got_b)], impaired


@pytest.mark.skipif(COMPILED, reason="patches a module constant of the (compiled) engine")
@pytest.mark.parametrize(
    ("pacing", "sack"),
    [(False, True), (True, True), (False, False)],
    ids=["unpaced", "paced", "no-sack"],
)
def test_bursts_send_exactly_the_segments_one_at_a_time_would(
    pacing: bool, sack: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Send bursts (one record each in the scoreboard, split as their segments part
    ways) change nothing on the wire: the same datagrams as one segment at a time,
    through loss recovery with SACK and RACK, or duplicate ACKs without SACK."""
    cfg = Config(mss=1000, rcv_buf=1 << 18, snd_buf=1 << 18, pacing=pacing, sack=sack)
    bursts = []
    real = Connection._send_burst

    def spy(self: Connection, now: float, count: int, in_flight: int) -> None:
        bursts.append(count)
        real(self, now, count, in_flight)

    monkeypatch.setattr(Connection, "_send_burst", spy)
    with_bursts = _transfer(cfg, seed=3)
    assert len(bursts) > 20 and max(bursts) > 4, bursts  # it really sent bursts
    monkeypatch.setattr(connection_mod, "BURST_MAX", 1)
    bursts.clear()
    one_by_one = _transfer(cfg, seed=3)
    assert bursts == []
    # The same datagrams, byte for byte, at the same steps; the impairments
    # (drops, duplicates, reordering, corruption) happened, and the same ones.
    assert with_bursts == one_by_one
    seen = with_bursts[2]
    assert all(seen[k] > 0 for k in ("dropped", "duplicated", "corrupted", "swapped")), seen
    # Loss recovery ran: fast retransmits, and tail probes (SACK) or timeouts.
    assert seen["retransmissions"] > 0 and seen["fast_retransmits"] > 0, seen
    assert seen["tlp_probes" if sack else "rto_expiries"] > 0, seen


# ---------------------------------------------------------------------------
# The scoreboard: a cumulative ACK of a run of plain records at once.


def _scoreboard_ops(names: list[str], high: int) -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """Up to 60 scoreboard operations: a name and two integers in [0, high]."""
    return st.lists(
        st.tuples(st.sampled_from(names), st.integers(0, high), st.integers(0, high)),
        max_size=60,
    )


class _OneByOne(Scoreboard):
    """The scoreboard as it was: every plain record through _delivered in turn."""

    __slots__ = ()

    def _ack_plain_run(self, head: int, una: int, now: float) -> int:
        rec = self.recs[head]
        self._delivered(rec, now)
        if self.rtt_rec is None:
            self.rtt_rec = rec
        self.newly_acked += rec[END] - rec[START]
        rec[FLAGS] = ACKED
        return head + 1


def _view(sb: Scoreboard) -> tuple[object, ...]:
    def pos(rec: list[Any] | None) -> object:
        return None if rec is None else (rec[START], rec[END])

    return (
        sb.delivered,
        sb.newly_delivered,
        sb.newly_acked,
        sb.delivered_time,
        sb.sacked,
        sb.lost,
        sb.retrans,
        sb.fack,
        sb.reordering,
        sb.rtx_acked_xmit,
        pos(sb.rate_rec),
        pos(sb.rack_rec),
        pos(sb.rtt_rec),
        [list(r) for r in sb.outstanding_records()],
    )


@pytest.mark.skipif(COMPILED, reason="subclasses the (compiled) scoreboard")
@FAST
@given(_scoreboard_ops(["send", "burst", "ack", "sack", "lose", "resend", "limited"], 40))
def test_acking_a_plain_run_at_once_equals_one_record_at_a_time(
    ops: list[tuple[str, int, int]],
) -> None:
    boards = (Scoreboard(), _OneByOne())
    sent = 0  # positions: segments of 10
    una = 0
    now = 0.0
    for op, a, b in ops:
        now += 0.001 * (a % 3)  # several sends may share a time
        for sb in boards:
            outstanding = sb.outstanding_records()
            if op == "send":
                sb.on_sent(sent, sent + 10, now, sent - una)
            elif op == "burst":
                sb.on_sent_many(sent, a % 8 + 1, 10, now, sent - una)
            elif op == "ack":
                sb.begin_ack(0.0005)
                sb.ack(min(sent, una + 10 * a), now)
            elif op == "sack" and outstanding:
                left = outstanding[a % len(outstanding)][START]
                sb.begin_ack(0.0005)
                sb.sack(left, left + 10 * (b % 4 + 1), now)
            elif op == "lose" and outstanding:
                sb.mark_lost(outstanding[a % len(outstanding)])
            elif op == "resend" and outstanding:
                rec = outstanding[a % len(outstanding)]
                if not rec[FLAGS] & SACKED:
                    sb.on_resent(rec, now, sent - una)
            elif op == "limited":
                sb.mark_app_limited(sent - una)
        if op == "send":
            sent += 10
        elif op == "burst":
            sent += 10 * (a % 8 + 1)
        elif op == "ack":
            una = max(una, min(sent, una + 10 * a))
        assert _view(boards[0]) == _view(boards[1]), op


# ---------------------------------------------------------------------------
# The scoreboard: one record per send burst, split when its segments part ways.


def _segments_view(sb: Scoreboard) -> list[tuple[object, ...]]:
    """The outstanding records, one entry per segment (a burst record expanded)."""
    out: list[tuple[object, ...]] = []
    for rec in sb.outstanding_records():
        start = rec[START]
        end = first_segment_end(rec)
        while start < rec[END]:
            out.append((start, end, *rec[XMIT:SEG]))
            start, end = end, min(rec[END], end + rec[SEG])
    return out


def _board_view(sb: Scoreboard, rack: Rack, after_ack: bool) -> tuple[object, ...]:
    """The scoreboard's state; the records an ACK found (``after_ack``: right after
    one; later splits may shorten them, and only the ACK that found them reads
    them)."""

    def at(rec: list[Any] | None, field: int) -> object:
        return None if rec is None or not after_ack else rec[field]

    return (
        sb.delivered,
        sb.newly_delivered,
        sb.newly_acked,
        sb.delivered_time,
        sb.first_sent_time,
        sb.app_limited,
        sb.sacked,
        sb.lost,
        sb.retrans,
        sb.fack,
        sb.reordering,
        sb.rtx_acked_xmit,
        # A record found for the ACK stands for its first segment (the rate and
        # RTT samples read its snapshot and time) or its last (RACK's end).
        at(sb.rate_rec, START),
        at(sb.rate_rec, XMIT),
        at(sb.rack_rec, END),
        at(sb.rack_rec, XMIT),
        at(sb.rtt_rec, START),
        at(sb.sack_rtt_rec, START),
        (rack.xmit, rack.end, rack.rtt),
        _segments_view(sb),
    )


def test_a_burst_is_one_record_until_its_segments_part_ways() -> None:
    sb = Scoreboard()
    sb.on_sent_many(0, 8, 100, 1.0, 0)
    assert [(r[START], r[END], r[SEG]) for r in sb.outstanding_records()] == [(0, 800, 100)]

    def records() -> list[tuple[int, int, int]]:
        return [(r[START], r[END], r[FLAGS]) for r in sb.outstanding_records()]

    sb.begin_ack(0.0)
    sb.sack(250, 520, 1.01)  # the block holds segments 3 and 4 whole
    assert records() == [(0, 300, 0), (300, 500, SACKED), (500, 800, 0)]
    assert sb.sacked == 200 and sb.fack == 500
    sb.begin_ack(0.0)
    sb.ack(250, 1.02)  # segments 0 and 1, and half of segment 2
    assert records() == [(250, 300, 0), (300, 500, SACKED), (500, 800, 0)]
    assert (sb.newly_delivered, sb.newly_acked) == (200, 250)
    assert sb.rtt_rec is not None and sb.rtt_rec[END] == 200  # the delivered part
    # Without SACK, one segment at a time is marked lost.
    sb.clear_sacked()
    assert sb.mark_first_lost() == 50
    lost = sb.next_lost()
    assert lost is not None and (lost[START], lost[END]) == (250, 300)
    # A tail loss probe resends the last segment alone.
    last = sb.last_segment()
    assert last is not None and (last[START], last[END]) == (700, 800)
    assert records() == [(250, 300, LOST), (300, 500, 0), (500, 700, 0), (700, 800, 0)]
    # RACK (one send-time entry for the burst) marks what is left of it lost.
    rack = Rack()
    rack.update(1.5, 900, 1.6)
    assert rack.detect_loss(sb, 2.0, 0.0) == (500, 0.0)
    assert sb.lost == 550


@FAST
@given(
    _scoreboard_ops(
        ["burst", "ack", "sack", "rack", "first", "rto", "resend", "probe", "undo", "renege"], 400
    )
)
def test_a_burst_record_behaves_as_its_segments_one_record_each(
    ops: list[tuple[str, int, int]],
) -> None:
    """The scoreboard keeps a send burst as one record, split as its segments part
    ways; the same sends made one segment at a time give the same answers, segment
    for segment: acknowledgments (at and between boundaries), SACK blocks (edges
    inside bursts), RACK, loss marks without SACK, RTO, retransmissions, tail
    probes, undo and reneging."""
    boards = (Scoreboard(), Scoreboard())
    racks = (Rack(), Rack())
    seg = 10
    sent = una = 0
    now = 0.0
    for op, a, b in ops:
        now += 0.001 * (a % 3)  # several sends may share a time
        answers: tuple[list[Any], list[Any]] = ([], [])
        for k, (sb, rack) in enumerate(zip(boards, racks, strict=True)):
            results = answers[k]
            if op == "burst":
                count = a % 8 + 1
                size = seg if b % 5 else seg // 2 + b % 5  # now and then a short one
                if k == 0:
                    sb.on_sent_many(sent, count, size, now, sent - una)
                else:
                    for i in range(count):
                        sb.on_sent(sent + i * size, sent + (i + 1) * size, now, sent - una)
            elif op == "ack":
                sb.begin_ack(0.0005)
                sb.ack(min(sent, una + a % 40), now)  # anywhere, boundaries or not
                rack_rec = sb.rack_rec
                if rack_rec is not None:
                    rack.update(rack_rec[XMIT], rack_rec[END], now)
            elif op == "sack" and sent > una:
                left = una + a % (sent - una)
                sb.begin_ack(0.0005)
                sb.sack(left, min(sent, left + b % 45 + 1), now)
                rack_rec = sb.rack_rec
                if rack_rec is not None:
                    rack.update(rack_rec[XMIT], rack_rec[END], now)
            elif op == "rack":
                results.append(rack.detect_loss(sb, now, 0.0005 * (b % 3)))
            elif op == "first":
                results.append(sb.mark_first_lost())
            elif op == "rto":
                # One mark per record: the bytes marked lost in all.
                results.append(sum(sb.mark_lost(rec) for rec in sb.outstanding_records()))
            elif op == "resend":
                lost = sb.next_lost()
                results.append(None if lost is None else (lost[START], lost[END]))
                if lost is not None:
                    sb.on_resent(lost, now, sent - una)
            elif op == "probe":
                last = sb.last_segment()
                results.append(None if last is None else (last[START], last[END]))
                if last is not None and not last[FLAGS] & SACKED:
                    sb.on_resent(last, now, sent - una)
            elif op == "undo":
                sb.clear_lost()
            elif op == "renege":
                sb.clear_sacked()
        if op == "burst":
            sent += (a % 8 + 1) * (seg if b % 5 else seg // 2 + b % 5)
        elif op == "ack":
            una = max(una, min(sent, una + a % 40))
        assert answers[0] == answers[1], op
        after_ack = op in ("ack", "sack")
        assert _board_view(boards[0], racks[0], after_ack) == _board_view(
            boards[1], racks[1], after_ack
        ), op


# ---------------------------------------------------------------------------
# The socket layer's per-datagram loops: C and Python alike.


@pytest.mark.skipif(_accel() is None, reason="the C accelerator is not in use")
@FAST
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 2), st.sampled_from([None, ("::1", 5)])),
        min_size=1,
        max_size=30,
    ),
    st.integers(0, 29),
    st.integers(1, 70),
    st.integers(0, 500),
)
def test_gso_group_c_equals_python(
    spec: list[tuple[int, int, tuple[str, int] | None]], start: int, limit: int, max_bytes: int
) -> None:
    accel = _accel()
    assert accel is not None
    # Equal but distinct address tuples: compared by value, not identity.
    items = [(bytes(size), ("10.0.0.1", 1000 + d), src) for size, d, src in spec]
    start %= len(items)
    expect = sockio.py_gso_group(items, start, limit, max_bytes)
    assert accel.gso_group(items, start, limit, max_bytes) == expect
    j, total = expect
    assert start < j <= len(items) and total == sum(len(p) for p, _, _ in items[start:j])


@pytest.mark.skipif(_accel() is None, reason="the C accelerator is not in use")
@FAST
@given(st.integers(0, 300), st.integers(0, 50), st.integers(1, 64))
def test_split_gro_and_source_run_c_equal_python(size: int, off: int, segment: int) -> None:
    accel = _accel()
    assert accel is not None
    arena = memoryview(bytes(range(256)) * 2)
    end = min(len(arena), off + size)
    got: list[Any] = []
    want: list[Any] = []
    count = accel.split_gro(got, arena, off, end, segment, ("a", 1), None)
    assert count == sockio.py_split_gro(want, arena, off, end, segment, ("a", 1), None)
    assert [(bytes(p), s, x) for p, s, x in got] == [(bytes(p), s, x) for p, s, x in want]
    batch = [(memoryview(b"x"), ("a", i // 3), None) for i in range(10)]
    for start in range(10):
        end, payloads = aio_endpoint.py_source_run(batch, start)
        assert accel.source_run(batch, start) == (end, payloads)
        assert end == min(10, (start // 3 + 1) * 3) and len(payloads) == end - start


# ---------------------------------------------------------------------------
# The receive buffer keeps what arrives as chunks (no copy for owned bytes).


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["bytes", "bytearray", "view", "read", "read_into"]),
            st.integers(0, 3000),
        ),
        max_size=40,
    )
)
def test_receive_buffer_equals_one_bytearray(ops: list[tuple[str, int]]) -> None:
    rb = ReceiveBuffer(8)
    model = bytearray()
    counter = 0
    for op, n in ops:
        if op in ("bytes", "bytearray", "view"):
            if n == 0:
                continue
            data = bytes((counter + i) % 251 for i in range(n))
            counter += n
            source = bytearray(data)
            rb.append(
                bytes(data)
                if op == "bytes"
                else source
                if op == "bytearray"
                else memoryview(source)
            )
            if op == "view":
                source[:] = bytes(len(source))  # a borrowed view's buffer is reused
            model += data
        elif op == "read":
            want = n - 1 if n % 7 else -1  # -1: everything
            got = rb.read(want)
            expect = bytes(model if want < 0 else model[:want])
            del model[: len(expect)]
            assert got == expect and type(got) is bytes
        else:
            out = bytearray(n)
            k = rb.read_into(memoryview(out))
            assert bytes(out[:k]) == bytes(model[:k]) and k == min(n, len(model))
            del model[:k]
        assert rb.size == len(model)
    assert rb.read() == bytes(model)
    assert rb.size == 0 and rb.read() == b"" and rb.chunks is None  # nothing kept when idle


def test_a_single_whole_chunk_is_handed_over_without_a_copy() -> None:
    rb = ReceiveBuffer(8)
    data = bytes(range(200))
    rb.append(data)
    assert rb.read() is data
