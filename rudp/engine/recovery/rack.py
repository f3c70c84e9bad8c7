"""RACK-TLP loss detection (RFC 8985).

RACK marks a segment lost when a segment sent sufficiently later has been delivered:
time replaces duplicate-ACK counting, and a reordering window that adapts to D-SACK
feedback keeps reordering from looking like loss. TLP (the tail loss probe) resends
or sends one segment when the ACK clock stops, so a lost tail is repaired in about
two round trips instead of an RTO.
"""

from __future__ import annotations

from typing import Final

from .scoreboard import (
    ACKED,
    END,
    FLAGS,
    LOST,
    RETRANS,
    SACKED,
    START,
    XMIT,
    Scoreboard,
    boundary_at_or_before,
)

#: RFC 8985 §6.2 step 4: reo_wnd_persist starts at 16 recoveries.
REO_WND_PERSIST: Final = 16
#: RFC 5681 DupThresh, used by RACK before reordering has been seen (§6.2 step 4).
DUPTHRESH: Final = 3
#: RFC 8985 §7.2: worst-case delayed-ACK time added to the PTO with one segment in flight.
WCDELACKT: Final = 0.2


class Rack:
    """RACK state of one connection (RFC 8985 §6.1)."""

    __slots__ = (
        "dsack_round",
        "end",
        "reo_wnd_mult",
        "reo_wnd_persist",
        "reordering_seen",
        "rtt",
        "xmit",
    )

    def __init__(self) -> None:
        self.xmit = float("-inf")  # RACK.xmit_ts
        self.end = 0  # RACK.end_seq
        self.rtt = 0.0  # RACK.rtt
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = 0
        self.dsack_round: int | None = None
        self.reordering_seen = False

    def update(self, xmit: float, end: int, now: float) -> None:
        """RFC 8985 §6.2 step 2 for the most recently sent delivered segment."""
        if xmit > self.xmit or (xmit == self.xmit and end > self.end):
            self.rtt = now - xmit
            self.xmit = xmit
            self.end = end

    def on_dsack(self, snd_una: int, snd_max: int) -> None:
        """RFC 8985 §6.2 step 4: widen the reordering window once per round on D-SACK."""
        if self.dsack_round is not None and snd_una >= self.dsack_round:
            self.dsack_round = None
        if self.dsack_round is None:
            self.dsack_round = snd_max
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = REO_WND_PERSIST

    def on_recovery_exit(self) -> None:
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1

    def reo_wnd(
        self, in_recovery: bool, sacked_segments: int, min_rtt: float, srtt: float
    ) -> float:
        """RFC 8985 §6.2 step 4, RACK_reo_wnd()."""
        if not self.reordering_seen and (in_recovery or sacked_segments >= DUPTHRESH):
            return 0.0
        return min(self.reo_wnd_mult * min_rtt / 4, srtt)

    def detect_loss(self, sb: Scoreboard, now: float, reo_wnd: float) -> tuple[int, float]:
        """RFC 8985 §6.2 step 5: mark every segment sent before RACK.segment lost if
        it has been outstanding for more than RACK.rtt + reo_wnd.

        Returns (bytes newly marked lost, seconds until the next segment would be
        due, or 0 for none). Scans the send-time queue from its front and stops at
        the first segment not yet due: later entries were sent later still. The
        segments of one entry were sent together: all are due, or none.
        """
        tsq = sb.tsq
        lost = 0
        rack_xmit = self.xmit
        rack_end = self.end
        deadline = rack_xmit + self.rtt + reo_wnd
        recs = sb.recs
        while tsq:
            t, start, end = tsq[0]
            i = sb.find_containing(start)
            n = len(recs)
            due = t + self.rtt + reo_wnd - now <= 0
            while i < n:
                rec = recs[i]
                if rec[START] >= end:
                    break
                flags = rec[FLAGS]
                if (
                    rec[XMIT] != t  # resent since: a later entry stands for it
                    or flags & (SACKED | ACKED)
                    or flags & (LOST | RETRANS) == LOST  # waiting for its retransmission
                ):
                    i += 1
                    continue
                if t >= rack_xmit:
                    # Segments sent after RACK.segment (later, or at the same time
                    # and higher in sequence, §6.2) are not candidates, nor is
                    # anything after them. A record reaching RACK.segment's end
                    # (its SACK reneged) may hold candidates below it: split them off.
                    cut = rec[START]
                    if t == rack_xmit:
                        cut = boundary_at_or_before(rec, rack_end - 1)
                    if cut <= rec[START]:
                        tsq[0] = (t, rec[START], end)
                        return lost, 0.0
                    if due and cut < rec[END]:
                        sb.split(i, cut)
                        n += 1
                if not due:
                    tsq[0] = (t, rec[START], end)
                    return lost, deadline - now
                lost += sb.mark_lost(rec)
                i += 1
            tsq.popleft()
        return lost, 0.0


def sacked_segments(sb: Scoreboard, mss: int) -> int:
    """Segments SACKed (RFC 8985 RACK.segs_sacked), from the SACKed bytes."""
    return sb.sacked // mss if mss else 0
