"""Proportional Rate Reduction (RFC 6937): how much to send during fast recovery.

PRR spreads the window reduction decided by the congestion controller over the
recovery round trip, in proportion to the data the receiver reports delivered,
instead of halting and then bursting (RFC 5681) or collapsing (RFC 3517).
"""

from __future__ import annotations


class Prr:
    """PRR state of one recovery episode (RFC 6937 §3)."""

    __slots__ = ("delivered", "out", "recover_fs")

    def __init__(self) -> None:
        self.delivered = 0  # prr_delivered
        self.out = 0  # prr_out
        self.recover_fs = 1  # RecoverFS

    def start(self, in_flight: int) -> None:
        """Recovery begins with ``in_flight`` bytes outstanding (RecoverFS: RFC 6937
        says snd.nxt - snd.una; its update, draft-ietf-tcpm-prr-rfc6937bis, uses pipe
        as here, so SACKed data does not count)."""
        self.delivered = 0
        self.out = 0
        self.recover_fs = max(in_flight, 1)

    def send_quota(
        self, delivered: int, in_flight: int, ssthresh: int, mss: int, una_advanced: bool
    ) -> int:
        """RFC 6937 §3.1 on an ACK that reports ``delivered`` new bytes: the number of
        bytes that may be sent now (``sndcnt``)."""
        self.delivered += delivered
        if in_flight > ssthresh:
            # Proportional part: sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out.
            sndcnt = -(-self.delivered * ssthresh // self.recover_fs) - self.out
        else:
            # Slow-start reduction bound (PRR-SSRB): grow back to ssthresh no faster
            # than slow start, plus one MSS when the cumulative ACK advanced.
            limit = max(self.delivered - self.out, delivered)
            if una_advanced:
                limit += mss
            sndcnt = min(ssthresh - in_flight, limit)
        # The first ACK of recovery always lets the fast retransmission out.
        if self.out == 0 and sndcnt < mss:
            sndcnt = mss
        return max(sndcnt, 0)
