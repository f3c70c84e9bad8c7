"""Wire format: segment parser and builder, options, malformed input, the checksum,
sequence-number arithmetic, and fuzzing the endpoint with hostile datagrams."""

from __future__ import annotations

import struct

import pytest
import simutil
from drill import (
    LPORT,
    PEER,
    RPORT,
    STATE_HELPERS,
    Drill,
    established,
    pattern,
    syn_received,
    syn_sent,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rudp.engine import Connection, Endpoint, State
from rudp.errors import InvalidStateError
from rudp.seq import SEQ_MASK, seq_add, seq_ge, seq_gt, seq_in, seq_le, seq_lt, seq_sub
from rudp.wire import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    ParseError,
    build_segment,
    checksum,
    flags_str,
    ones_complement_sum,
    parse_segment,
    verify,
)
from rudp.wire.segment import HEADER_LEN, encode_options

FAST = settings(simutil.FAST, max_examples=100)

# ---------------------------------------------------------------------------
# A reference RFC 1071 implementation, written the straightforward way.


def ref_sum(data: bytes) -> int:
    """RFC 1071 §4.1: add 16-bit big-endian words, folding each carry back in;
    an odd last byte is padded with a zero byte."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ref_checksum(data: bytes) -> int:
    return ~ref_sum(data) & 0xFFFF


def raw_segment(
    *,
    sport: int = RPORT,
    dport: int = LPORT,
    seq: int = 1,
    ack: int = 0,
    offset: int | None = None,
    flags: int = SYN,
    wnd: int = 1000,
    options: bytes = b"",
    payload: bytes = b"",
    good_checksum: bool = True,
) -> bytes:
    """A segment assembled by hand (independently of build_segment)."""
    if offset is None:
        offset = (HEADER_LEN + len(options)) // 4
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, wnd, 0, 0)
    data = head + options + payload
    csum = ref_checksum(data)
    if not good_checksum:
        csum ^= 0x0100
    return data[:16] + struct.pack("!H", csum) + data[18:]


# ---------------------------------------------------------------------------
# Options


def test_each_option_round_trips() -> None:
    cases = [
        ({"mss": 1460}, "mss", 1460),
        ({"mss": 0}, "mss", 0),
        ({"mss": 65535}, "mss", 65535),
        ({"wscale": 0}, "wscale", 0),
        ({"wscale": 14}, "wscale", 14),
        ({"sack_perm": True}, "sack_perm", True),
        ({"sack": ((1, 2),)}, "sack", ((1, 2),)),
        ({"sack": ((5, 9), (2**32 - 1, 3), (7, 8))}, "sack", ((5, 9), (2**32 - 1, 3), (7, 8))),
        ({"ts": (123456, 2**32 - 1)}, "ts", (123456, 2**32 - 1)),
    ]
    for kw, attr, value in cases:
        opts = encode_options(**kw)
        assert len(opts) % 4 == 0
        seg = parse_segment(build_segment(1, 2, 3, 4, SYN | ACK, 5, b"xyz", opts))
        assert getattr(seg, attr) == value, kw
        others = {"mss": None, "wscale": None, "sack_perm": False, "sack": None, "ts": None}
        del others[attr]
        for name, absent in others.items():
            assert getattr(seg, name) == absent, (kw, name)
        assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.wnd) == (1, 2, 3, 4, 5)
        assert seg.payload == b"xyz" and seg.flags == SYN | ACK


@FAST
@given(
    mss=st.none() | st.integers(0, 0xFFFF),
    wscale=st.none() | st.integers(0, 255),
    sack_perm=st.booleans(),
    ts=st.none() | st.tuples(st.integers(0, SEQ_MASK), st.integers(0, SEQ_MASK)),
    sack=st.none()
    | st.lists(
        st.tuples(st.integers(0, SEQ_MASK), st.integers(0, SEQ_MASK)), min_size=1, max_size=4
    ).map(tuple),
    payload=st.binary(max_size=64),
    seq=st.integers(0, SEQ_MASK),
    ack=st.integers(0, SEQ_MASK),
    flags=st.integers(0, 255),
    wnd=st.integers(0, 0xFFFF),
    urp=st.integers(0, 0xFFFF),
)
def test_options_and_header_round_trip(  # type: ignore[no-untyped-def]
    mss, wscale, sack_perm, ts, sack, payload, seq, ack, flags, wnd, urp
) -> None:
    try:
        opts = encode_options(mss=mss, wscale=wscale, sack_perm=sack_perm, sack=sack, ts=ts)
    except ValueError:
        assume(False)  # more than 40 bytes of options
        return
    data = build_segment(4000, 80, seq, ack, flags, wnd, payload, opts, urp)
    assert verify(data)
    seg = parse_segment(data)
    assert (seg.sport, seg.dport, seg.seq, seg.ack) == (4000, 80, seq, ack)
    assert (seg.flags, seg.wnd, seg.urp, seg.payload) == (flags, wnd, urp, payload)
    assert (seg.mss, seg.wscale, seg.sack_perm, seg.ts) == (mss, wscale, sack_perm, ts)
    assert seg.sack == sack
    assert seg.seg_len == len(payload) + bool(flags & SYN) + bool(flags & FIN)


def test_linux_syn_parses() -> None:
    """Linux's SYN: MSS, SACK-permitted, timestamps, NOP, window scale (no padding)."""
    opts = bytes.fromhex("020405b40402080a0001e2400000000001030307")
    assert len(opts) == 20
    data = raw_segment(sport=43210, dport=80, seq=0xDEADBEEF, flags=SYN, wnd=64240, options=opts)
    seg = parse_segment(data)
    assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags) == (43210, 80, 0xDEADBEEF, 0, SYN)
    assert (seg.wnd, seg.mss, seg.sack_perm, seg.ts, seg.wscale) == (
        64240,
        1460,
        True,
        (123456, 0),
        7,
    )
    assert seg.sack is None and seg.payload == b""
    assert flags_str(seg.flags) == "S" and "mss=1460" in repr(seg)


def test_eol_ends_the_option_list() -> None:
    # MSS, EOL, then bytes that would be a window scale if parsing went on.
    opts = bytes.fromhex("020405b400030307")
    seg = parse_segment(raw_segment(options=opts))
    assert seg.mss == 1460 and seg.wscale is None


def test_nop_padding_skipped() -> None:
    opts = bytes.fromhex("01010101020405b401010101")
    seg = parse_segment(raw_segment(options=opts))
    assert seg.mss == 1460


def test_unknown_options_skipped_by_length() -> None:
    # kind 30 (MPTCP) length 6, kind 253 (experiment) length 2, then a window scale.
    opts = bytes.fromhex("1e06aabbccddfd0201030305")
    assert len(opts) == 12
    seg = parse_segment(raw_segment(options=opts))
    assert seg.wscale == 5 and seg.mss is None


def test_known_option_with_wrong_length_ignored() -> None:
    # MSS with length 6, then SACK-permitted: the MSS is ignored, parsing goes on.
    opts = bytes.fromhex("020605b400000402")
    seg = parse_segment(raw_segment(options=opts))
    assert seg.mss is None and seg.sack_perm


# ---------------------------------------------------------------------------
# Malformed datagrams

MALFORMED = [
    pytest.param(b"", "short", id="empty"),
    pytest.param(bytes(19), "short", id="19-bytes"),
    pytest.param(raw_segment(offset=4), "data_offset", id="offset-4"),
    pytest.param(raw_segment(offset=0), "data_offset", id="offset-0"),
    pytest.param(raw_segment(offset=6), "data_offset", id="offset-past-end"),
    pytest.param(raw_segment(offset=15, payload=bytes(39)), "data_offset", id="offset-15-short"),
    pytest.param(raw_segment(options=bytes.fromhex("02000000")), "option_length", id="optlen-0"),
    pytest.param(raw_segment(options=bytes.fromhex("02010000")), "option_length", id="optlen-1"),
    pytest.param(raw_segment(options=bytes.fromhex("02080000")), "option_overflow", id="past-hdr"),
    pytest.param(
        raw_segment(options=bytes.fromhex("01010102"), payload=b"\x04"),
        "option_truncated",
        id="kind-without-length",
    ),
    pytest.param(raw_segment(good_checksum=False), "checksum", id="bad-checksum"),
    pytest.param(
        raw_segment(payload=b"hello", good_checksum=False), "checksum", id="bad-checksum-data"
    ),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_malformed_raises_parse_error_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_segment(data)
    assert info.value.reason == reason


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_malformed_dropped_and_counted_by_endpoint(data: bytes, reason: str) -> None:
    d = established(Drill(), passive=True)  # a listener and a live connection
    before = dict(d.ep.counters)
    d.inject_raw(data, at=1.0)  # never raises
    d.expect_nothing(until=10)
    c = d.ep.counters
    assert c["dropped"] == before["dropped"] + 1
    assert c[f"drop_{reason}"] == before.get(f"drop_{reason}", 0) + 1
    assert c["internal_errors"] == 0 and c["rst_sent"] == before["rst_sent"]
    assert d.state is State.ESTABLISHED and len(d.ep.connections) == 1
    d.expect_events()


def test_valid_segment_parses_without_check() -> None:
    data = raw_segment(good_checksum=False)
    assert parse_segment(data, check=False).seq == 1


# ---------------------------------------------------------------------------
# Checksum


def test_checksum_rfc1071_example() -> None:
    data = bytes.fromhex("0001f203f4f5f6f7")  # RFC 1071 §3 numerical example
    assert ref_sum(data) == 0xDDF2
    assert ones_complement_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D


def test_checksum_zero_and_all_ones() -> None:
    assert ones_complement_sum(b"") == 0 and ones_complement_sum(bytes(7)) == 0
    assert checksum(bytes(20)) == 0xFFFF
    assert ones_complement_sum(b"\xff\xff") == 0xFFFF
    assert ones_complement_sum(b"\xff\xff\xff\xff\x00") == ref_sum(b"\xff\xff\xff\xff\x00")


@FAST
@given(st.binary(max_size=301))
def test_checksum_matches_reference(data: bytes) -> None:
    assert ones_complement_sum(data) == ref_sum(data)
    assert checksum(data) == ref_checksum(data)


@pytest.mark.parametrize("n", range(0, 12))
def test_odd_and_even_payload_lengths(n: int) -> None:
    payload = pattern(0, n)
    data = build_segment(RPORT, LPORT, 2**32 - 1, 17, PSH | ACK, 500, payload)
    zeroed = data[:16] + b"\0\0" + data[18:]
    assert struct.unpack("!H", data[16:18])[0] == ref_checksum(zeroed)
    assert verify(data) and ref_sum(data) == 0xFFFF
    assert parse_segment(data).payload == payload
    # Appending a zero byte to an odd payload must not be an undetected change.
    if n % 2:
        assert not verify(data + b"\x01")


segments = st.builds(
    lambda sport, dport, seq, ack, flags, wnd, payload, opts: build_segment(
        sport, dport, seq, ack, flags, wnd, payload, opts
    ),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, SEQ_MASK),
    st.integers(0, SEQ_MASK),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.binary(max_size=41),
    st.sampled_from(
        [
            b"",
            encode_options(mss=1400),
            encode_options(mss=536, wscale=7, sack_perm=True, ts=(1, 2)),
            encode_options(sack=((1, 2), (3, 4))),
        ]
    ),
)


@settings(FAST, max_examples=40)
@given(segments)
def test_every_single_bit_flip_is_detected(data: bytes) -> None:
    assert verify(data)
    parse_segment(data)
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        assert not verify(flipped), bit
        with pytest.raises(ParseError):
            parse_segment(bytes(flipped))


# ---------------------------------------------------------------------------
# Sequence-number arithmetic around the wrap


@FAST
@given(a=st.integers(0, SEQ_MASK), dist=st.integers(-(2**31) + 1, 2**31 - 1))
def test_seq_helpers_around_the_wrap(a: int, dist: int) -> None:
    b = seq_add(a, dist)
    assert 0 <= b <= SEQ_MASK
    assert seq_sub(b, a) == dist and seq_sub(a, b) == -dist
    assert seq_lt(a, b) == (dist > 0) == seq_gt(b, a)
    assert seq_le(a, b) == (dist >= 0) == seq_ge(b, a)
    assert seq_lt(b, a) == (dist < 0)
    assert seq_add(b, -dist) == a
    lo, hi = (a, b) if dist >= 0 else (b, a)
    assert seq_in(lo, lo, hi) == (dist != 0)
    assert not seq_in(hi, lo, hi)
    if abs(dist) > 1:
        assert seq_in(seq_add(lo, 1), lo, hi)


def test_seq_helpers_fixed_points() -> None:
    top = SEQ_MASK
    assert seq_add(top, 1) == 0 and seq_add(0, -1) == top
    assert seq_lt(top, 0) and seq_gt(0, top) and seq_le(top, top) and seq_ge(0, 0)
    assert seq_sub(0, top) == 1 and seq_sub(top, 0) == -1
    assert seq_in(top, top - 5, 5) and seq_in(0, top - 5, 5) and not seq_in(5, top - 5, 5)
    # Exactly half the space apart: neither is before the other (RFC 1982).
    assert seq_sub(2**31, 0) == 2**31
    assert not seq_lt(0, 2**31) and not seq_gt(0, 2**31)


# ---------------------------------------------------------------------------
# Fuzzing the endpoint


def _listener() -> Drill:
    d = Drill()
    d.listen()
    return d


def _check(d: Drill) -> None:
    assert d.ep.counters["internal_errors"] == 0
    for conn in d.ep.connections.values():
        if not isinstance(conn, Connection) or conn.state in (State.SYN_SENT, State.SYN_RECEIVED):
            continue  # (TIME-WAIT records keep only what TIME-WAIT needs)
        assert seq_le(conn.snd_una, conn.snd_nxt), conn
        assert seq_le(conn.snd_nxt, conn.snd_max), conn
        assert conn.rcv_nxt == (conn.irs + 1 + conn._rcv_nxt_abs) & SEQ_MASK, conn


@settings(FAST, max_examples=150)
@given(st.lists(st.binary(max_size=120), max_size=8))
def test_fuzz_arbitrary_bytes_never_raise(datagrams: list[bytes]) -> None:
    for d in (_listener(), established(Drill(), passive=True)):
        for i, data in enumerate(datagrams):
            d.inject_raw(data, at=1.0 + i)
            _check(d)
        d.advance(200)
        _check(d)


def _near(*bases: int) -> st.SearchStrategy[int]:
    """Exactly a base, just around one, within a window of one, or anywhere."""
    return st.sampled_from(bases).flatmap(
        lambda base: st.one_of(
            st.just(base),
            st.integers(-3, 3).map(lambda k: (base + k) & SEQ_MASK),
            st.integers(-3000, 70000).map(lambda k: (base + k) & SEQ_MASK),
            st.integers(0, SEQ_MASK),
        )
    )


@st.composite
def peer_segments(draw: st.DrawFn, d: Drill) -> bytes:
    """A well-formed segment (valid checksum) aimed at the drill's connection, with
    sequence and acknowledgment numbers drawn around its live RCV.NXT and SND.MAX."""
    conn = d.conn
    flags = draw(
        st.one_of(
            st.sampled_from([ACK, ACK | PSH, ACK | FIN, SYN, SYN | ACK, RST, RST | ACK, FIN, 0]),
            st.integers(0, 255),
        )
    )
    seq = draw(_near(conn.rcv_nxt, d.R(0)))
    ack = draw(_near(conn.snd_max, d.L(1)))
    opts = draw(
        st.sampled_from(
            [b"", encode_options(mss=1), encode_options(mss=9000, wscale=14, sack_perm=True)]
        )
    )
    n = draw(st.sampled_from([0, 0, 1, 100, 1000, 3000]))
    wnd = draw(st.sampled_from([0, 1, 1000, 65535]))
    sport = draw(st.sampled_from([RPORT, RPORT, RPORT, 5001]))
    return build_segment(sport, LPORT, seq, ack, flags, wnd, pattern(seq % 97, n), opts)


def _into(state: State, d: Drill, passive: bool, sending: bool) -> None:
    """Bring ``d`` into ``state``; with a listener too, so SYNs to it are exercised,
    and with data in flight if ``sending`` and the state allows it."""
    if state is State.SYN_SENT:
        d.listen()
        syn_sent(d)
    elif state is State.SYN_RECEIVED:
        syn_received(d)
    else:
        if not passive:
            d.listen()  # the passive helpers open their own listener
        STATE_HELPERS[state](d, passive)
        if sending and state in (State.ESTABLISHED, State.CLOSE_WAIT):
            d.send(pattern(0, 5000), at=d.now)
    assert d.state is state


@settings(FAST, max_examples=25)
@given(data=st.data(), passive=st.booleans(), sending=st.booleans())
@pytest.mark.parametrize("state", list(STATE_HELPERS), ids=str)
def test_fuzz_well_formed_segments_never_raise(  # type: ignore[no-untyped-def]
    state: State, data: st.DataObject, passive: bool, sending: bool
) -> None:
    d = Drill()
    _into(state, d, passive, sending)
    t = 1.0
    for _ in range(data.draw(st.integers(1, 16))):
        action = data.draw(
            st.sampled_from(["segment"] * 6 + ["wait", "read", "send", "shutdown", "close"])
        )
        if action == "segment":
            d.inject_raw(data.draw(peer_segments(d)), at=t)
        elif action == "wait":
            t += data.draw(st.sampled_from([0.04, 0.5, 3.0, 100.0]))
            d.advance(t)
        else:
            try:
                if action == "read":
                    d.read(data.draw(st.integers(-1, 2000)), at=t)
                elif action == "send":
                    d.send(pattern(0, data.draw(st.integers(0, 3000))), at=t)
                elif action == "shutdown":
                    d.shutdown(at=t)
                else:
                    d.close(at=t)
            except (BrokenPipeError, ConnectionError, TimeoutError, InvalidStateError):
                pass
        _check(d)
        t += 0.01
    d.advance(t + 1000)  # every timer runs out
    _check(d)
    d.events()
    assert d.ep.counters["internal_errors"] == 0


def test_fuzz_endpoint_survives_garbage_from_many_addresses() -> None:
    ep = Endpoint(seed=0)
    ep.listen(LPORT)
    for i in range(200):
        data = build_segment(1000 + i, LPORT, i * 7919, i, i & 0xFF, i, bytes(i % 5))
        ep.receive_datagram(data, (f"10.1.{i % 7}.{i}", 1000 + i), i * 0.01)
        ep.receive_datagram(data[: i % 23], PEER, i * 0.01)
        ep.datagrams_to_send(i * 0.01)
    assert ep.counters["internal_errors"] == 0
    assert ep.counters["datagrams_received"] == 400


# ---------------------------------------------------------------------------
# FreeBSD TCP-over-UDP compatibility (docs/wire.md)


def test_zero_checksum_means_not_computed() -> None:
    seg = build_segment(1, 2, 3, 4, ACK, 5, b"payload", compute_checksum=False)
    assert seg[16:18] == b"\0\0"
    assert parse_segment(seg).payload == b"payload"  # accepted: nothing to verify
    damaged = bytearray(seg)
    damaged[-1] ^= 0xFF
    assert parse_segment(bytes(damaged)).payload != b"payload"  # (UDP's checksum's job)


def test_a_computed_zero_checksum_is_sent_as_ffff() -> None:
    """0 on the wire means "not computed", so a sum that comes out 0 is sent as its
    one's-complement twin 0xFFFF (as UDP does, RFC 768), and still verifies."""
    for i in range(1 << 16):
        seg = build_segment(1, 2, 3, i, ACK, 5, b"")
        if seg[16:18] == b"\xff\xff":
            break
    else:  # pragma: no cover
        raise AssertionError("no segment with a zero sum among 65536")
    assert parse_segment(seg).ack == i  # verifies
    tampered = bytearray(seg)
    tampered[13] ^= 0x10  # the ACK flag
    with pytest.raises(ParseError):
        parse_segment(bytes(tampered))


def test_freebsd_style_peer_transfer() -> None:
    """TEST-MATRIX F1: a peer that sends TCP checksum 0 and TCP ports unrelated to
    its UDP ports; 1 MB, hash checked; the server saw only zero checksums."""
    from rudp import Config
    from rudp.engine import ANY_PORT
    from rudp.sim import LinkConfig, Network
    from rudp.sim.host import BulkApp, Host

    net = Network(seed=9)
    client = Host(Endpoint(Config(checksum=False), seed=1))
    server = Host(Endpoint(Config(), seed=2))
    a, b = ("10.0.0.1", 4000), ("10.0.0.2", 5000)
    net.add_node(client, a)
    net.add_node(server, b)
    net.set_default_link(LinkConfig(delay=0.005, loss=0.01))
    server.endpoint.listen(ANY_PORT)
    server.accept_factory = lambda: BulkApp(b"")
    zero = []
    net.add_tap(lambda t, s, d, data, fate: zero.append(data[16:18] == b"\0\0") if s == a else None)
    payload = bytes(range(256)) * 4096
    app = BulkApp(payload)
    conn = client.connect(app, b, 9, 0.0)  # TCP port 9 on UDP port 5000
    assert net.run_until(lambda: app.terminated and server.accepted[0].terminated, 120)
    assert bytes(server.accepted[0].received) == payload and app.error is None
    assert conn.remote_port == 9 and server.accepted[0].conn.local_port == 9
    assert zero and all(zero)
    assert net.total_stats().lost > 0
