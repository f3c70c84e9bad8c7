"""The record of every sent, not yet cumulatively acknowledged segment.

This is RFC 6675's scoreboard plus what RACK (RFC 8985) and delivery-rate estimation
(draft-cheng-iccrg-delivery-rate-estimation) need per segment. A record is a small
list (cheap to create, changed in place), indexed by the constants below; sequence
positions are *unwrapped* (plain ints counted from the ISN), so ordering is trivial.

A record stands for one segment, or for a send burst of equal segments (``SEG``
bytes each) that left together, as a Linux TSO skb does: while nothing sets it
apart, every segment of a burst has the same history (sent at the same time, with
the same delivery snapshot), so one record keeps it. It is split at segment
boundaries (Linux ``tcp_fragment``) as soon as its segments part ways: a SACK
block or a cumulative ACK ending inside it, a loss mark for only the first one
(without SACK), a retransmission (one segment at a time), a tail loss probe (the
last one), a reneged SACK reaching RACK's end.

Records live in sequence order in ``recs[head:]`` (a list with a moving head: O(1)
append, O(1) removal at the head, O(log n) search), contiguous from SND.UNA to
SND.MAX, and, for RACK's time-ordered scan, in ``tsq``: ``(send time, start,
end)`` entries appended at every (re)transmission, each standing for the records
in ``[start, end)`` that were (last) sent at that time. Entries go stale when their
records are resent, acknowledged or SACKed and are dropped when they reach the
front.

In flight (RFC 6675 "pipe", Linux ``tcp_packets_in_flight``), in bytes::

    outstanding - sacked - lost + retrans

where ``lost`` counts records marked lost and ``retrans`` those of them whose
retransmission is in flight.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from operator import itemgetter
from typing import Any, Final

#: Record fields.
START: Final = 0  # first sequence position (unwrapped)
END: Final = 1  # one past the last (a FIN counts one)
XMIT: Final = 2  # time of the latest transmission
FLAGS: Final = 3
DELIVERED: Final = 4  # connection's delivered bytes when (last) sent
DELIVERED_TIME: Final = 5  # connection's delivered_time then
FIRST_SENT: Final = 6  # connection's first_sent_time then
APP_LIMITED: Final = 7  # sent while application limited
SEG: Final = 8  # size of each of its segments (the last may be shorter after a trim)

#: Record flags.
SACKED: Final = 1  # selectively acknowledged
LOST: Final = 2  # marked lost (RACK, duplicate ACKs, RTO) and not SACKed
RETRANS: Final = 4  # marked lost, and a retransmission of it is in flight
EVER_RETRANS: Final = 8  # retransmitted at least once (Karn's ambiguity, spurious checks)
ACKED: Final = 16  # cumulatively acknowledged (removed from recs)

#: [START, END, XMIT, FLAGS, DELIVERED, DELIVERED_TIME, FIRST_SENT, APP_LIMITED, SEG]
Record = list[Any]
#: A send-time entry: (time, start, end) -- the records in [start, end) sent then.
TsqEntry = tuple[float, int, int]

_start_of = itemgetter(START)
#: A plain record's place in sending order: both grow along a run of them.
_sent_order = itemgetter(DELIVERED, XMIT)
_xmit_of_entry = itemgetter(0)


def segments(rec: Record) -> int:
    """How many segments ``rec`` stands for."""
    count: int = -(-(rec[END] - rec[START]) // rec[SEG])
    return count


def boundary_at_or_after(rec: Record, pos: int) -> int:
    """The first segment boundary of ``rec`` at or after ``pos`` (boundaries are
    counted back from its end: a partial acknowledgment trims the first segment
    only); ``rec``'s end when no segment starts at or after ``pos``."""
    end: int = rec[END]
    seg: int = rec[SEG]
    return end - (end - pos) // seg * seg


def boundary_at_or_before(rec: Record, pos: int) -> int:
    """The last segment boundary of ``rec`` at or before ``pos``: at or below its
    start when none is inside; at or beyond its end when ``pos`` is."""
    end: int = rec[END]
    seg: int = rec[SEG]
    return end + (pos - end) // seg * seg


def first_segment_end(rec: Record) -> int:
    """Where the first segment of ``rec`` ends."""
    start: int = rec[START]
    return boundary_at_or_after(rec, start + 1)


class Scoreboard:
    """Sent segments of one connection and the counters derived from them."""

    __slots__ = (
        "app_limited",
        "delivered",
        "delivered_time",
        "fack",
        "first_sent_time",
        "guard_rtt",
        "head",
        "lost",
        "lost_hint",
        "newly_acked",
        "newly_delivered",
        "rack_rec",
        "rate_rec",
        "recs",
        "reordering",
        "retrans",
        "rtt_rec",
        "rtx_acked_xmit",
        "sack_rtt_rec",
        "sacked",
        "tsq",
    )

    def __init__(self) -> None:
        self.recs: list[Record] = []
        self.head = 0
        # Created on first send and dropped when it empties: an idle connection
        # holds no deque (an empty one costs ~620 bytes).
        self.tsq: deque[TsqEntry] | None = None
        self.sacked = 0
        self.lost = 0
        self.retrans = 0
        #: No record below this position is lost and waiting for retransmission.
        self.lost_hint = 0
        #: Highest position acknowledged or SACKed (RFC 8985 RACK.fack).
        self.fack = 0
        # Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation §3.1).
        self.delivered = 0
        self.delivered_time = 0.0
        self.first_sent_time = 0.0
        #: C.app_limited: 0, or the delivered count until which samples are app limited.
        self.app_limited = 0
        # Results of the current ACK (see begin_ack).
        self.newly_delivered = 0
        self.newly_acked = 0
        self.rate_rec: Record | None = None
        self.rack_rec: Record | None = None
        self.rtt_rec: Record | None = None
        #: The earliest-sent never-retransmitted record newly SACKed by this ACK
        #: (Linux's first_sackt): an RTT sample when the cumulative ACK gives none.
        self.sack_rtt_rec: Record | None = None
        self.reordering = False
        #: Latest transmission time of a retransmitted record this ACK acknowledged
        #: cumulatively (-1: none), for Eifel (RFC 3522).
        self.rtx_acked_xmit = -1.0
        #: The minimum RTT, to tell which delivered retransmissions are unambiguous.
        self.guard_rtt = 0.0

    # ------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.recs) - self.head

    def first(self) -> Record | None:
        return self.recs[self.head] if self.head < len(self.recs) else None

    def last_segment(self) -> Record | None:
        """The record of the last segment sent, split from its burst if need be
        (what a tail loss probe resends, RFC 8985 §7.3)."""
        recs = self.recs
        if self.head >= len(recs):
            return None
        rec = recs[-1]
        at = rec[END] - rec[SEG]
        if at > rec[START]:
            self.split(len(recs) - 1, at)
            return recs[-1]
        return rec

    def outstanding_records(self) -> list[Record]:
        return self.recs[self.head :]

    def find(self, pos: int) -> int:
        """Index in ``recs`` of the first record starting at or after ``pos``."""
        return bisect_left(self.recs, pos, lo=self.head, key=_start_of)

    def find_containing(self, pos: int) -> int:
        """Index in ``recs`` of the record that holds ``pos`` (the first one when
        ``pos`` is below SND.UNA; ``len(recs)`` when there is none)."""
        i = bisect_right(self.recs, pos, lo=self.head, key=_start_of) - 1
        if i < self.head:
            return self.head
        if self.recs[i][END] <= pos:
            return i + 1
        return i

    def split(self, i: int, at: int) -> Record:
        """Split ``recs[i]`` at ``at``, a segment boundary inside it (Linux
        tcp_fragment): the record keeps ``[start, at)``, a copy with the same
        history and marks takes ``[at, end)``; returns the record (the head part).
        The send-time entries cover positions, so they stand for both parts."""
        recs = self.recs
        rec = recs[i]
        tail = rec.copy()
        tail[START] = at
        rec[END] = at
        recs.insert(i + 1, tail)
        return rec

    def _split_first(self, i: int) -> Record:
        """Make the first segment of ``recs[i]`` a record of its own; return it."""
        rec = self.recs[i]
        at = first_segment_end(rec)
        if at < rec[END]:
            self.split(i, at)
        return rec

    # ------------------------------------------------------------ sending
    def on_sent(self, start: int, end: int, now: float, in_flight: int) -> Record:
        """A new segment ``[start, end)`` left (draft-cheng §3.2: snapshot the
        delivery state; restart the sampling interval when nothing was in flight)."""
        self.on_sent_many(start, 1, end - start, now, in_flight)
        return self.recs[-1]

    def on_sent_many(self, start: int, count: int, size: int, now: float, in_flight: int) -> None:
        """``count`` new segments of ``size`` bytes from ``start`` left together (one,
        or a send burst): one record for all, with one snapshot (draft-cheng §3.2:
        the delivery state; the sampling interval restarts when nothing was in
        flight)."""
        if in_flight == 0:
            self.first_sent_time = self.delivered_time = now
        end = start + count * size
        self.recs.append(
            [
                start,
                end,
                now,
                0,
                self.delivered,
                self.delivered_time,
                self.first_sent_time,
                self.app_limited != 0,
                size,
            ]
        )
        tsq = self.tsq
        if tsq is None:
            self.tsq = deque(((now, start, end),))
        else:
            tsq.append((now, start, end))

    def on_resent(self, rec: Record, now: float, in_flight: int) -> None:
        """``rec`` was retransmitted."""
        if in_flight == 0:
            self.first_sent_time = self.delivered_time = now
        flags = rec[FLAGS]
        if flags & LOST:
            # A lost segment's retransmission is now in flight (a probe may also
            # resend a segment not marked lost: that one was never out of flight).
            if not flags & RETRANS:
                self.retrans += rec[END] - rec[START]
            flags |= RETRANS
        rec[FLAGS] = flags | EVER_RETRANS
        rec[XMIT] = now
        rec[DELIVERED] = self.delivered
        rec[DELIVERED_TIME] = self.delivered_time
        rec[FIRST_SENT] = self.first_sent_time
        rec[APP_LIMITED] = self.app_limited != 0
        entry = (now, rec[START], rec[END])
        tsq = self.tsq
        if tsq is None:
            self.tsq = deque((entry,))
        else:
            tsq.append(entry)

    def mark_app_limited(self, in_flight: int) -> None:
        """The sender ran out of data to send (draft-cheng §3.4)."""
        self.app_limited = (self.delivered + in_flight) or 1

    # --------------------------------------------------------- loss marks
    def mark_lost(self, rec: Record) -> int:
        """Mark ``rec`` lost -- all of its segments -- (again, if its retransmission
        was lost); returns the bytes that became lost-and-unsent."""
        flags = rec[FLAGS]
        if flags & (SACKED | ACKED):
            return 0
        size: int = rec[END] - rec[START]
        if flags & LOST:
            if not flags & RETRANS:
                return 0
            self.retrans -= size  # the retransmission itself was lost
            rec[FLAGS] = flags & ~RETRANS
        else:
            self.lost += size
            rec[FLAGS] = flags | LOST
        if rec[START] < self.lost_hint:
            self.lost_hint = rec[START]
        return size

    def mark_first_lost(self) -> int:
        """Mark the first outstanding segment lost (RFC 6582 without SACK: one
        segment at a time); returns the bytes that became lost-and-unsent."""
        if self.head >= len(self.recs):
            return 0
        return self.mark_lost(self._split_first(self.head))

    def next_lost(self) -> Record | None:
        """The lowest segment marked lost whose retransmission is not in flight (split
        from its record: a retransmission is one segment)."""
        if self.lost <= self.retrans:
            return None
        recs = self.recs
        i = self.find(self.lost_hint)
        n = len(recs)
        while i < n:
            rec = recs[i]
            if rec[FLAGS] & (LOST | RETRANS) == LOST:
                self.lost_hint = rec[START]
                return self._split_first(i)
            i += 1
        self.lost_hint = recs[-1][END] if recs else 0
        return None

    def clear_lost(self) -> None:
        """Undo: forget the loss marks of records not retransmitted yet."""
        for rec in self.recs[self.head :]:
            flags = rec[FLAGS]
            if flags & LOST and not flags & RETRANS:
                rec[FLAGS] = flags & ~LOST
                self.lost -= rec[END] - rec[START]
        self._rebuild_tsq()

    def clear_sacked(self) -> None:
        """The receiver reneged (RFC 2018 §8): SACK marks no longer mean delivered."""
        for rec in self.recs[self.head :]:
            if rec[FLAGS] & SACKED:
                rec[FLAGS] &= ~SACKED
        self.sacked = 0
        self._rebuild_tsq()

    def _rebuild_tsq(self) -> None:
        """Records that became candidates for RACK again (loss marks or SACK marks
        cleared) left the send-time queue earlier: rebuild it, in send-time order."""
        live = [
            (rec[XMIT], rec[START], rec[END])
            for rec in self.recs[self.head :]
            if not rec[FLAGS] & (SACKED | ACKED) and rec[FLAGS] & (LOST | RETRANS) != LOST
        ]
        live.sort(key=_xmit_of_entry)
        self.tsq = deque(live) if live else None

    # -------------------------------------------------------- acknowledgment
    def begin_ack(self, guard_rtt: float) -> None:
        """Start processing one ACK (``guard_rtt``: the minimum RTT)."""
        self.guard_rtt = guard_rtt
        self.newly_delivered = 0
        self.newly_acked = 0
        self.rate_rec = self.rack_rec = self.rtt_rec = self.sack_rtt_rec = None
        self.reordering = False
        self.rtx_acked_xmit = -1.0

    def _delivered(self, rec: Record, now: float) -> None:
        """``rec`` reached the receiver (first time): delivery and RACK bookkeeping."""
        size = rec[END] - rec[START]
        self.delivered += size
        self.newly_delivered += size
        self.delivered_time = now
        # draft-cheng §3.3: sample from the most recently sent delivered packet.
        best = self.rate_rec
        if (
            best is None
            or rec[DELIVERED] > best[DELIVERED]
            or (rec[DELIVERED] == best[DELIVERED] and rec[XMIT] > best[XMIT])
        ):
            self.rate_rec = rec
        # RFC 8985 §6.2 step 2: RACK.segment is the most recently *sent* delivered one,
        # skipping a retransmission acknowledged faster than any round trip can be
        # (the ACK is for an earlier transmission). Like Linux's tcp_rack_advance, the
        # step's timestamp test is not used: ACKs carrying SACK blocks echo the
        # timestamp of the last in-order segment (RFC 7323 §4.3), older than every
        # retransmission during recovery, so it would hide all of them.
        xmit = rec[XMIT]
        if not (rec[FLAGS] & EVER_RETRANS and now - xmit < self.guard_rtt):
            best = self.rack_rec
            if best is None or xmit > best[XMIT] or (xmit == best[XMIT] and rec[END] > best[END]):
                self.rack_rec = rec
        # RFC 8985 §6.2 step 3: a never-retransmitted segment below the highest
        # delivered one arrived late: reordering.
        if first_segment_end(rec) < self.fack and not rec[FLAGS] & EVER_RETRANS:
            self.reordering = True

    def ack(self, una: int, now: float) -> None:
        """Cumulative acknowledgment up to position ``una``."""
        recs = self.recs
        head = self.head
        n = len(recs)
        while head < n:
            rec = recs[head]
            end = rec[END]
            if end > una:
                if rec[START] < una:
                    # The ACK ends inside this record: its whole segments below
                    # ``una`` are delivered (split them off), a part of one is trimmed.
                    at = boundary_at_or_before(rec, una)
                    if at > rec[START]:
                        self.split(head, at)
                        n += 1
                        continue
                    self._trim(rec, una)
                break
            flags = rec[FLAGS]
            if not flags:
                head = self._ack_plain_run(head, una, now)
                continue
            size = end - rec[START]
            if flags & SACKED:
                self.sacked -= size
            else:
                if flags & LOST:
                    self.lost -= size
                    if flags & RETRANS:
                        self.retrans -= size
                self._delivered(rec, now)
                if not flags & EVER_RETRANS:
                    if self.rtt_rec is None:
                        self.rtt_rec = rec  # the oldest unambiguous one (RFC 6298 §3)
                elif rec[XMIT] > self.rtx_acked_xmit:
                    self.rtx_acked_xmit = rec[XMIT]
            self.newly_acked += size
            rec[FLAGS] = flags | ACKED
            head += 1
        if una > self.fack:
            self.fack = una
        # Compact the list now and then (the head only moves forward).
        if head > 256 and head * 2 > n:
            del recs[:head]
            head = 0
        self.head = head
        tsq = self.tsq
        if tsq is not None:
            while tsq and tsq[0][2] <= una:
                tsq.popleft()
            if not tsq:
                self.tsq = None

    def _ack_plain_run(self, head: int, una: int, now: float) -> int:
        """Cumulatively acknowledge the run of plain records (sent once, never SACKed
        or marked lost) from ``recs[head]`` that ends at or below ``una``; return the
        index after it. The same result as :meth:`_delivered` on each in turn: along
        such a run the delivery snapshot, the transmission time and the end only
        grow, so the run's last record decides RACK and the rate sample (the first
        one with its snapshot and time, as the one-by-one comparisons keep it), its
        first one the RTT sample and reordering."""
        recs = self.recs
        n = len(recs)
        j = head
        while j < n:
            rec = recs[j]
            if rec[FLAGS] or rec[END] > una:
                break
            rec[FLAGS] = ACKED
            j += 1
        first = recs[head]
        last = recs[j - 1]
        size = last[END] - first[START]
        self.delivered += size
        self.newly_delivered += size
        self.newly_acked += size
        self.delivered_time = now
        best = self.rate_rec
        if (
            best is None
            or last[DELIVERED] > best[DELIVERED]
            or (last[DELIVERED] == best[DELIVERED] and last[XMIT] > best[XMIT])
        ):
            # The first record of the run sent with ``last``'s snapshot and time.
            if j == head + 1:
                self.rate_rec = last
            else:
                key = _sent_order(last)
                self.rate_rec = recs[bisect_left(recs, key, head, j, key=_sent_order)]
        xmit = last[XMIT]
        best = self.rack_rec
        if best is None or xmit > best[XMIT] or (xmit == best[XMIT] and last[END] > best[END]):
            self.rack_rec = last
        if first_segment_end(first) < self.fack:
            self.reordering = True
        if self.rtt_rec is None:
            self.rtt_rec = first  # the oldest unambiguous one (RFC 6298 §3)
        return j

    def _trim(self, rec: Record, una: int) -> None:
        """The peer acknowledged part of ``rec``: keep the rest (Linux tcp_trim_head)."""
        cut = una - rec[START]
        flags = rec[FLAGS]
        if flags & SACKED:
            self.sacked -= cut
        elif flags & LOST:
            self.lost -= cut
            if flags & RETRANS:
                self.retrans -= cut
        rec[START] = una
        self.newly_acked += cut

    def sack(self, left: int, right: int, now: float) -> None:
        """Mark the segments inside the SACK block ``[left, right)`` delivered; a
        record with segments on both sides of an edge is split there (segments
        only partly inside stay unmarked, as Linux rounds a block to whole ones)."""
        recs = self.recs
        i = self.find_containing(left)
        n = len(recs)
        if i < n:
            rec = recs[i]
            if rec[START] < left and not rec[FLAGS] & SACKED:
                # The block starts inside this record: its segments from the first
                # boundary at or after ``left`` on may be inside.
                end = rec[END]
                at = boundary_at_or_after(rec, left)
                if at < end:
                    self.split(i, at)
                    n += 1
                i += 1
        fack = self.fack
        while i < n:
            rec = recs[i]
            end = rec[END]
            if end > right:
                if rec[START] >= right or rec[FLAGS] & SACKED:
                    break
                # The block ends inside this record: split at the last boundary
                # at or before ``right``.
                at = boundary_at_or_before(rec, right)
                if at <= rec[START]:
                    break
                self.split(i, at)
                n += 1
                end = at
            flags = rec[FLAGS]
            if not flags & SACKED:
                size = end - rec[START]
                if flags & LOST:
                    self.lost -= size
                    if flags & RETRANS:
                        self.retrans -= size
                rec[FLAGS] = (flags | SACKED) & ~(LOST | RETRANS)
                self.sacked += size
                self._delivered(rec, now)
                if not flags & EVER_RETRANS:
                    best = self.sack_rtt_rec
                    if best is None or rec[XMIT] < best[XMIT]:
                        self.sack_rtt_rec = rec
                if end > fack:
                    fack = end
            i += 1
        self.fack = fack

    def retransmitted_within(self, left: int, right: int) -> int:
        """Records inside ``[left, right)`` that were ever retransmitted (for D-SACK)."""
        recs = self.recs
        i = self.find(left)
        count = 0
        while i < len(recs) and recs[i][END] <= right:
            if recs[i][FLAGS] & EVER_RETRANS:
                count += 1
            i += 1
        return count
