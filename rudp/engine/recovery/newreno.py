"""Fast retransmit and NewReno fast recovery (RFC 5681 §3.2, RFC 6582).

Duplicate-ACK counting, the recovery point ("recover") and the window allowance
that RFC 5681 expresses as cwnd inflation: here it is kept apart from the
congestion controller's ``cwnd`` (``inflation``), and the connection may send up to
``cwnd + inflation`` while recovering.
"""

from __future__ import annotations

from ...seq import seq_le, seq_lt

#: RFC 5681 §3.2: duplicate ACKs that trigger fast retransmit.
DUPTHRESH = 3

#: Results of :meth:`NewReno.on_new_ack`.
ACK_NORMAL = 0
ACK_RECOVERY_END = 1
ACK_PARTIAL = 2


class NewReno:
    """Duplicate-ACK loss detection and NewReno recovery state of one connection."""

    __slots__ = ("dupacks", "in_recovery", "inflation", "recover")

    def __init__(self, iss: int) -> None:
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss  # RFC 6582 "recover": the highest sequence sent at the last event
        self.inflation = 0  # bytes the window is inflated by during recovery

    def on_dup_ack(self, snd_una: int, snd_max: int, mss: int) -> bool:
        """A duplicate ACK (RFC 5681 §2). True: enter fast recovery and retransmit."""
        if self.in_recovery:
            # RFC 5681 §3.2 step 4: one SMSS per additional duplicate ACK.
            self.inflation += mss
            return False
        self.dupacks += 1
        if self.dupacks == DUPTHRESH and seq_lt(self.recover, snd_una):
            # RFC 6582 §3.2 step 2: enter fast recovery, recover <- highest sent;
            # RFC 5681 §3.2 step 3: the three segments that left the network.
            self.in_recovery = True
            self.recover = snd_max
            self.inflation = DUPTHRESH * mss
            return True
        return False

    def on_new_ack(self, ack: int, acked: int, cwnd: int, mss: int) -> int:
        """New data acknowledged up to ``ack`` (``acked`` bytes)."""
        self.dupacks = 0
        if not self.in_recovery:
            return ACK_NORMAL
        if seq_le(self.recover, ack):
            self.in_recovery = False
            self.inflation = 0
            return ACK_RECOVERY_END
        # RFC 6582 §3.2 step 5: partial ACK; deflate by the amount acknowledged and
        # add back one SMSS (never below one SMSS in all).
        total = max(cwnd + self.inflation - acked + mss, mss)
        self.inflation = total - cwnd
        return ACK_PARTIAL

    def on_rto(self, snd_max: int) -> None:
        """RFC 6582 §4: after a timeout, no fast retransmit for old duplicate ACKs."""
        self.in_recovery = False
        self.dupacks = 0
        self.inflation = 0
        self.recover = snd_max
