"""The send buffer (rudp.engine.buffers.SendBuffer): what it holds, against a plain
model, for any sequence of appends and acknowledgements; that it moves held bytes
a bounded number of times; that an emptied buffer is released."""

from __future__ import annotations

import array

from hypothesis import given, settings
from hypothesis import strategies as st

from rudp.engine.buffers import SendBuffer
from rudp.seq import SEQ_MASK

# An operation: ("append", payload, kind) or ("ack", fraction of what is held).
appends = st.tuples(
    st.just("append"),
    st.one_of(st.binary(max_size=5000), st.binary(min_size=16000, max_size=20000)),
    st.sampled_from(["bytes", "bytearray", "memoryview", "array"]),
)
acks = st.tuples(st.just("ack"), st.floats(min_value=0.0, max_value=1.0), st.just(""))


def _as(payload: bytes, kind: str) -> bytes | bytearray | memoryview:
    if kind == "bytearray":
        return bytearray(payload)
    if kind == "memoryview":
        return memoryview(b"\0" + payload)[1:]  # a view that does not start its object
    if kind == "array" and len(payload) % 4 == 0:
        return memoryview(array.array("I", payload))  # items of 4 bytes: nbytes != len
    return payload


def held(buf: SendBuffer) -> bytes:
    return bytes(buf.data[buf.head : buf.tail])


@settings(max_examples=300, deadline=None)
@given(
    start=st.sampled_from([0, 1000, SEQ_MASK - 3000, SEQ_MASK]),
    ops=st.lists(st.one_of(appends, acks), max_size=60),
)
def test_holds_what_a_plain_model_holds(start: int, ops: list[tuple[str, object, str]]) -> None:
    buf = SendBuffer(start)
    model = b""
    seq = start
    for op, arg, kind in ops:
        if op == "append":
            assert isinstance(arg, bytes)
            buf.append(_as(arg, kind))
            model += arg
        else:
            assert isinstance(arg, float)
            n = int(len(model) * arg)
            buf.acknowledge(n)
            model = model[n:]
            seq = (seq + n) & SEQ_MASK
        assert len(buf) == len(model)
        assert held(buf) == model
        assert buf.seq == seq
        assert buf.end == (seq + len(model)) & SEQ_MASK
        assert 0 <= buf.head <= buf.tail <= len(buf.data)
        if not model:
            assert len(buf.data) == 0  # emptied: released


def test_bulk_moves_each_byte_at_most_about_once_more() -> None:
    """A sender keeping ~1 MB in flight, appending 64 KiB and acknowledging two
    segments at a time: the held bytes moved when room is made stay within one
    extra copy of what was appended (a bytearray trimmed with ``del`` and grown at
    the end copied all it held at every eighth of growth)."""
    buf = SendBuffer(0)
    chunk = bytes(range(256)) * 256
    moved = appended = 0
    expected_first = 0

    for _ in range(2000):
        if buf.tail + len(chunk) > len(buf.data):
            moved += buf.tail - buf.head
        buf.append(chunk)
        appended += len(chunk)
        while len(buf) > 1 << 20:
            buf.acknowledge(2800)
            expected_first = (expected_first + 2800) % 256
        assert buf.data[buf.head] == expected_first
    assert appended == 2000 * 65536
    assert moved <= appended
    assert len(buf.data) <= 2 * ((1 << 20) + 2 * len(chunk))


def test_views_handed_out_do_not_block_appends_or_acks() -> None:
    """The engine builds segments from a memoryview of ``data``: making room and
    acknowledging replace or move within the buffer, never resize it, so an
    outstanding view cannot make them raise BufferError."""
    buf = SendBuffer(0)
    buf.append(b"a" * 100)
    view = memoryview(buf.data)[buf.head : buf.tail]
    buf.append(b"b" * 10_000)  # needs room: a new buffer, the view keeps the old one
    buf.acknowledge(50)
    buf.acknowledge(len(buf))  # emptied
    assert bytes(view) == b"a" * 100
    view.release()
