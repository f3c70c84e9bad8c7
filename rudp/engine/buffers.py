"""The send buffer and the receive buffer with reassembly (RFC 9293 §3.10.7.4, seventh).

Both are plain containers: sequence-number rules (windows, acceptability) stay in the
connection. The connection's hot path reaches ``SendBuffer.data`` (from ``head``)
and ``ReceiveBuffer.size`` directly.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Final

from ..seq import SEQ_MASK

#: A write into an empty send buffer up to this size is kept at its own size.
SMALL_WRITE: Final = 16384


class SendBuffer:
    """Data accepted from the application and not yet acknowledged by the peer.

    ``data[head:tail]`` holds it, ``data[head]`` has sequence number ``seq``; sent and
    unsent data live together, the connection's SND.UNA/SND.NXT say how far each
    got. The buffer has room after ``tail``: appending copies the new bytes in
    place, and acknowledging only moves ``head``. When an append finds no room, the
    held bytes move to the front (if that leaves at least half free) or to a buffer
    twice the size needed: with a steady amount held, each byte is moved about once
    more on average, never more than twice. (A bytearray trimmed at the front with
    ``del`` and grown at the end copies all it holds each time it grows by an
    eighth: measured at 11% of a bulk sender's CPU.) An emptied buffer is released:
    an idle connection holds none. A small write into an empty buffer is kept at
    its own size, one copy and no views: a request or a response costs what
    appending to a bytearray did.
    """

    __slots__ = ("data", "head", "seq", "tail")

    def __init__(self, seq: int) -> None:
        self.data = bytearray()
        self.head = 0
        self.tail = 0
        self.seq = seq

    def __len__(self) -> int:
        return self.tail - self.head

    @property
    def end(self) -> int:
        """Sequence number just past the buffered data."""
        return (self.seq + self.tail - self.head) & SEQ_MASK

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if self.tail == self.head and len(data) <= SMALL_WRITE:
            # Empty, and a small write (a request, a response): one copy of exactly
            # what was written. A large one gets room for the writes that follow.
            self.data = bytearray(data)
            self.head = 0
            self.tail = len(self.data)
            return
        src = memoryview(data)
        n = src.nbytes
        tail = self.tail
        end = tail + n
        if end > len(self.data):
            tail = self._make_room(n)
            end = tail + n
        # Through a view of the buffer: one copy, in place (a bytearray's own slice
        # assignment first copies anything but a bytearray into a temporary one).
        view = memoryview(self.data)
        try:
            view[tail:end] = src.cast("B") if src.format != "B" or src.ndim != 1 else src
        finally:
            view.release()
            src.release()
        self.tail = end

    def _make_room(self, n: int) -> int:
        """Room for ``n`` more bytes after the held ones; returns the new tail."""
        buf = self.data
        head = self.head
        live = self.tail - head
        need = live + n
        if need <= len(buf) // 2:
            if live:
                view = memoryview(buf)
                try:
                    view[:live] = view[head : head + live]
                finally:
                    view.release()
        else:
            grown = bytearray(2 * need)
            if live:
                view, into = memoryview(buf), memoryview(grown)
                try:
                    into[:live] = view[head : head + live]
                finally:
                    view.release()
                    into.release()
            self.data = grown
        self.head = 0
        self.tail = live
        return live

    def acknowledge(self, n: int) -> None:
        """The first ``n`` bytes were acknowledged: drop them."""
        self.seq = (self.seq + n) & SEQ_MASK
        head = self.head + n
        if head >= self.tail:
            self.clear()
        else:
            self.head = head

    def clear(self) -> None:
        self.data = bytearray()
        self.head = self.tail = 0


class ReceiveBuffer:
    """In-order data not yet read, plus out-of-order runs awaiting a hole.

    In-order data is a list of chunks (``size`` bytes in all, the first one read
    from ``head``): a received segment's payload, or a coalesced run's, is kept as
    the object it arrived in when that is ``bytes`` or a ``bytearray`` the engine
    owns, and copied once otherwise (a view of a receive buffer). One bytearray
    grown by appending would copy everything it holds at each of its
    reallocations, and take fresh pages each time it is emptied and refilled.

    Out-of-order data is kept as sorted, non-overlapping runs keyed by *unwrapped*
    sequence position (plain ints, so ordering is trivial); at most ``max_runs`` runs
    are held, which bounds memory and per-segment work against 1-byte holes.
    """

    __slots__ = ("chunks", "head", "max_runs", "ooo_bytes", "ooo_data", "ooo_starts", "size")

    def __init__(self, max_runs: int) -> None:
        #: None while nothing is held: an idle connection keeps no list.
        self.chunks: list[bytes | bytearray] | None = None
        self.head = 0  # bytes of chunks[0] already read
        self.size = 0  # in-order bytes held
        self.ooo_starts: list[int] = []
        self.ooo_data: list[bytearray] = []
        self.ooo_bytes = 0
        self.max_runs = max_runs

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Keep ``data`` (non-empty) after the in-order data held."""
        if type(data) is memoryview:
            data = bytes(data)  # a borrowed view: copy what we keep
        chunks = self.chunks
        if chunks is None:
            self.chunks = [data]
        else:
            chunks.append(data)
        self.size += len(data)

    def read(self, max_bytes: int = -1) -> bytes:
        """Take up to ``max_bytes`` (all if negative) of the in-order data."""
        size = self.size
        if max_bytes < 0 or max_bytes > size:
            max_bytes = size
        chunks = self.chunks
        if max_bytes == 0 or chunks is None:
            return b""
        first = chunks[0]
        head = self.head
        if max_bytes == size and len(chunks) == 1 and head == 0:
            self.chunks = None
            self.size = 0
            return first if type(first) is bytes else bytes(first)
        # One copy: the pieces, as views, joined into the bytes returned.
        pieces = self._take(max_bytes)
        out = b"".join(pieces)
        for piece in pieces:
            piece.release()
        return out

    def read_into(self, out: memoryview) -> int:
        """Copy up to ``len(out)`` bytes of the in-order data into ``out`` and drop
        them: one copy, where ``read()`` and a copy of its result are two."""
        n = min(len(out), self.size)
        pos = 0
        if n:
            for piece in self._take(n):
                end = pos + len(piece)
                out[pos:end] = piece
                piece.release()
                pos = end
        return n

    def _take(self, n: int) -> list[memoryview]:
        """Remove the first ``n`` (1..size) held bytes; views of them, in order."""
        chunks = self.chunks
        assert chunks is not None
        head = self.head
        pieces: list[memoryview] = []
        pos = 0
        used = 0
        while pos < n:
            chunk = chunks[used]
            take = min(len(chunk) - head, n - pos)
            with memoryview(chunk) as view:
                pieces.append(view[head : head + take])
            pos += take
            if head + take == len(chunk):
                used += 1
                head = 0
            else:
                head += take
        self._drop(chunks, used, head, n)
        return pieces

    def _drop(self, chunks: list[bytes | bytearray], used: int, head: int, n: int) -> None:
        """``n`` bytes were taken: the first ``used`` chunks whole, then ``head``."""
        self.size -= n
        if self.size:
            del chunks[:used]
            self.head = head
        else:
            self.chunks = None
            self.head = 0

    def discard(self) -> None:
        """Drop the in-order data held (an application that will not read it)."""
        self.chunks = None
        self.head = 0
        self.size = 0

    def store(self, start: int, data: bytes | bytearray | memoryview) -> int:
        """Keep the bytes of ``data`` (at position ``start``) not already held,
        merging touching runs so that each run is one SACK block (RFC 2018).

        Returns the number of new bytes kept (0: all were held already), or -1 when
        the run cap stopped it from keeping everything new.
        """
        end = start + len(data)
        starts = self.ooo_starts
        datas = self.ooo_data
        i = bisect_right(starts, start) - 1
        first = max(i, 0)
        # Bytes before ``cur`` are already held (by the run starting at or before us).
        cur = max(start, starts[i] + len(datas[i])) if i >= 0 else start
        i += 1
        new = 0
        while cur < end:
            nxt_start = starts[i] if i < len(starts) else end
            if nxt_start > cur:
                piece_end = min(nxt_start, end)
                if len(starts) >= self.max_runs:
                    self._merge(first, i)
                    return -1
                starts.insert(i, cur)
                datas.insert(i, bytearray(data[cur - start : piece_end - start]))
                new += piece_end - cur
                i += 1
                cur = piece_end
            else:
                cur = max(cur, starts[i] + len(datas[i]))
                i += 1
        self.ooo_bytes += new
        self._merge(first, i)
        return new

    def _merge(self, lo: int, hi: int) -> None:
        """Join runs in ``[lo, hi]`` that touch (``hi`` inclusive, for the right neighbour)."""
        starts = self.ooo_starts
        datas = self.ooo_data
        j = lo
        while j < len(starts) - 1 and j < hi:
            if starts[j] + len(datas[j]) == starts[j + 1]:
                datas[j] += datas[j + 1]
                del starts[j + 1]
                del datas[j + 1]
                hi -= 1
            else:
                j += 1

    def run_containing(self, pos: int) -> int:
        """Index of the run holding position ``pos``, or -1."""
        i = bisect_right(self.ooo_starts, pos) - 1
        if i >= 0 and pos < self.ooo_starts[i] + len(self.ooo_data[i]):
            return i
        return -1

    def take_in_order(self, nxt: int) -> list[bytearray]:
        """Remove and return the out-of-order pieces that now continue position ``nxt``."""
        starts = self.ooo_starts
        datas = self.ooo_data
        out: list[bytearray] = []
        while starts and starts[0] <= nxt:
            s = starts.pop(0)
            d = datas.pop(0)
            self.ooo_bytes -= len(d)
            skip = nxt - s
            if skip < len(d):
                piece = d[skip:] if skip else d
                out.append(piece)
                nxt += len(piece)
        return out

    def clear(self) -> None:
        self.discard()
        self.ooo_starts.clear()
        self.ooo_data.clear()
        self.ooo_bytes = 0
