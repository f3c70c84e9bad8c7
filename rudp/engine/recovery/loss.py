"""Loss recovery of one connection: what was delivered, what is lost, how much to send.

:class:`LossRecovery` owns the sent-segment record (:class:`Scoreboard`), the RTT
estimator, RACK-TLP (RFC 8985), PRR (RFC 6937) and the congestion controller, as
aioquic's recovery object does. The connection tells it what it sent and what each
ACK said, asks it which segment to retransmit and how large the window is, and arms
the timers it reports.

States (Linux's ``tcp_ca_state`` names in brackets):

* ``OPEN``: no loss outstanding [Open/Disorder];
* ``RECOVERY``: fast recovery after loss detected by RACK (with SACK) or three
  duplicate ACKs (RFC 5681/6582, without SACK); sending sized by PRR [Recovery];
* ``LOSS``: after a retransmission timeout; every unSACKed segment is marked lost and
  the controller slow-starts from one segment [Loss].

Both recovery states end when SND.UNA passes the recovery point (the highest sequence
sent when they began, RFC 6582 "recover" / RFC 6675 RecoveryPoint).

A congestion response found unnecessary is undone: when every retransmission of the
episode was reported as a duplicate (D-SACK, RFC 2883, Linux ``undo_retrans``) or the
ACK's echoed timestamp predates the first retransmission (Eifel, RFC 3522).
"""

from __future__ import annotations

from typing import Final

from ..congestion.base import AckSample, CongestionControl
from ..timers import INF
from .prr import Prr
from .rack import WCDELACKT, Rack
from .rtt import RttEstimator
from .scoreboard import (
    APP_LIMITED,
    DELIVERED,
    DELIVERED_TIME,
    END,
    FIRST_SENT,
    SACKED,
    START,
    XMIT,
    Record,
    Scoreboard,
)

OPEN: Final = 0
RECOVERY: Final = 1
LOSS: Final = 2
STATE_NAMES = ("open", "recovery", "loss")

#: RFC 5681 §3.2: duplicate ACKs that trigger fast retransmit without SACK.
DUPTHRESH: Final = 3
#: Shortest interval (seconds) a delivery-rate sample may span: Linux measures it
#: in microseconds and rejects zero (tcp_rate_gen), so a rate is never infinite.
MIN_RATE_INTERVAL: Final = 1e-6


class LossRecovery:
    """Loss detection and recovery for one connection (see the module docstring)."""

    __slots__ = (
        "cc",
        "dsacks_received",
        "dupacks",
        "fast_recoveries",
        "max_in_flight",
        "mss",
        "next_round",
        "prr",
        "prr_cwnd",
        "rack",
        "recover",
        "reno_sacked",
        "reo_timeout",
        "retrans_stamp",
        "rs",
        "rtt",
        "sack_ok",
        "sb",
        "spurious_undos",
        "state",
        "tlp_end",
        "tlp_is_retrans",
        "tlp_probes",
        "tlp_recoveries",
        "undo_marker",
        "undo_retrans",
        "undo_start",
    )

    def __init__(self, cc: CongestionControl, rtt: RttEstimator, mss: int) -> None:
        self.cc = cc
        self.rtt = rtt
        self.mss = mss
        self.sb = Scoreboard()
        self.rack = Rack()
        self.prr = Prr()
        self.rs = AckSample()
        self.state = OPEN
        self.sack_ok = False
        self.recover = 0
        self.prr_cwnd = 0
        # Without SACK: duplicate ACKs, and the bytes they say left the network
        # (RFC 6675's pipe emulated as Linux's tcp_add_reno_sack does).
        self.dupacks = 0
        self.reno_sacked = 0
        # Undo (RFC 2883 D-SACK, RFC 3522 Eifel).
        self.undo_marker = False
        self.undo_retrans = 0
        self.undo_start = 0  # SND.UNA when the episode began (Linux's undo_marker)
        self.retrans_stamp = 0.0
        # TLP (RFC 8985 §7): the episode's end and whether the probe was a resend.
        self.tlp_end: int | None = None
        self.tlp_is_retrans = False
        #: Largest in-flight seen in the current round (for is_cwnd_limited).
        self.max_in_flight = 0
        #: Delivered count that ends the current packet-timed round.
        self.next_round = 0
        #: After on_ack/on_reo_timer: seconds until RACK's reordering timer should
        #: fire (0: none).
        self.reo_timeout = 0.0
        # Counters.
        self.fast_recoveries = 0
        self.spurious_undos = 0
        self.tlp_probes = 0
        self.tlp_recoveries = 0
        self.dsacks_received = 0

    # ------------------------------------------------------------ queries
    def in_flight(self, outstanding: int) -> int:
        """Bytes in the network (RFC 6675 pipe) given ``outstanding`` = SND.MAX - SND.UNA."""
        sb = self.sb
        return outstanding - sb.sacked - sb.lost + sb.retrans - self.reno_sacked

    def send_window(self) -> int:
        """The congestion window the sender uses now (PRR's during fast recovery)."""
        if self.state == RECOVERY and self.cc.uses_prr:
            return self.prr_cwnd
        return self.cc.cwnd

    def next_retransmission(self) -> Record | None:
        return self.sb.next_lost()

    # ------------------------------------------------------------ sending
    def on_sent(self, start: int, end: int, now: float, in_flight: int) -> None:
        self.sb.on_sent(start, end, now, in_flight)
        if self.state == RECOVERY:
            self.prr.out += end - start
        if in_flight + end - start > self.max_in_flight:
            self.max_in_flight = in_flight + end - start

    def on_sent_many(self, start: int, count: int, size: int, now: float, in_flight: int) -> None:
        """``count`` new segments of ``size`` bytes from ``start`` (a send burst)."""
        self.sb.on_sent_many(start, count, size, now, in_flight)
        self._sent(count * size, in_flight)

    def on_resent(self, rec: Record, now: float, in_flight: int) -> None:
        self.sb.on_resent(rec, now, in_flight)
        if self.undo_marker:
            self.undo_retrans += 1
            if not self.retrans_stamp:
                self.retrans_stamp = now
        self._sent(rec[END] - rec[START], in_flight)

    def _sent(self, size: int, in_flight: int) -> None:
        if self.state == RECOVERY:
            self.prr.out += size
        if in_flight + size > self.max_in_flight:
            self.max_in_flight = in_flight + size

    # ---------------------------------------------------------------- ACK
    def on_ack(
        self,
        now: float,
        una: int,
        snd_max: int,
        acked: int,
        sack: list[tuple[int, int]],
        dsack: tuple[int, int] | None,
        dupack: bool,
        echo_ms: int,
        ts_rtt: float,
    ) -> None:
        """Process one ACK. Positions are unwrapped: ``una`` the new SND.UNA, ``acked``
        how far it advanced, ``sack`` validated SACK blocks, ``dsack`` a D-SACK block;
        ``dupack`` an RFC 5681 duplicate ACK (used without SACK); ``echo_ms`` the
        TSecr in send-time milliseconds (-1 none); ``ts_rtt`` an RTT measured from
        the echoed timestamp (RFC 7323 §4, -1 none)."""
        sb = self.sb
        rtt = self.rtt
        cc = self.cc
        mss = self.mss
        # The ACK that ends fast recovery does not grow the window (RFC 6582 §3.2
        # step 6: cwnd = ssthresh).
        was_in_recovery = self.state == RECOVERY
        outstanding_before = snd_max - (una - acked)
        prior_in_flight = self.in_flight(outstanding_before)
        min_rtt = rtt.min_rtt if rtt.min_rtt != INF else 0.0
        sb.begin_ack(min_rtt)
        if acked:
            sb.ack(una, now)
        if dsack is not None:
            self._on_dsack(dsack, una, snd_max)
        # Lowest block first, as Linux sorts them (tcp_sacktag_write_queue): blocks
        # come most recent first (RFC 2018 §4), and walking them in that order
        # would take an older block, repeated after the ACK that first carried it
        # was lost, for reordering (RFC 8985 §6.2 step 3).
        for left, right in sorted(sack) if len(sack) > 1 else sack:
            sb.sack(left, right, now)
        if sb.sacked and (first := sb.first()) is not None and first[3] & SACKED:
            # RFC 2018 §8: the cumulative ACK stopped at data the receiver had
            # SACKed: it reneged. SACK marks are not proof of delivery any more.
            sb.clear_sacked()

        # --- RTT (RFC 6298 §3 with Karn's rule, RFC 7323 §4 with timestamps) ---
        # Linux's order (tcp_ack_update_rtt): the cumulatively ACKed segment, else
        # the earliest newly SACKed one (both never retransmitted: Karn), else the
        # echoed timestamp of an ACK that acknowledged new data (RFC 7323 §4.1).
        # The SACK sample keeps the RTO following a queue that grows while the
        # cumulative ACK is held at a hole during recovery.
        sample = -1.0
        if acked and sb.rtt_rec is not None:
            sample = now - sb.rtt_rec[XMIT]
        elif sb.sack_rtt_rec is not None:
            sample = now - sb.sack_rtt_rec[XMIT]
        elif acked and ts_rtt >= 0:
            sample = ts_rtt
        if sample >= 0:
            expected = -(-prior_in_flight // (2 * mss)) if mss else 1
            rtt.sample(sample, now, expected)
        rack_rec = sb.rack_rec
        newest_rtt = sample
        if rack_rec is not None:
            self.rack.update(rack_rec[XMIT], rack_rec[END], now)
            # The newest delivered segment's RTT: least inflated by delayed ACKs
            # (Linux's ca_rtt); it feeds the minimum RTT and the controller.
            newest_rtt = now - rack_rec[XMIT]
            rtt.note_min(newest_rtt, now)
        if sb.reordering:
            self.rack.reordering_seen = True

        # --- without SACK: duplicate ACKs (RFC 5681 §3.2, RFC 6582) ---
        if not self.sack_ok:
            if acked:
                self.dupacks = 0
                self.reno_sacked = max(0, self.reno_sacked - acked)
            elif dupack:
                self.dupacks += 1
                self.reno_sacked += mss

        # --- loss detection ---
        newly_lost = 0
        reo_timeout = 0.0
        if una == snd_max:
            # Everything acknowledged: nothing can be lost, and every send-time entry
            # is stale (what RACK's scan would find, without the scan).
            if sb.tsq:
                sb.tsq.clear()
            self.reno_sacked = 0
        elif self.sack_ok:
            srtt = rtt.srtt if rtt.srtt is not None else 0.0
            reo = self.rack.reo_wnd(
                self.state != OPEN, sb.sacked // mss if mss else 0, min_rtt, srtt
            )
            newly_lost, reo_timeout = self.rack.detect_loss(sb, now, reo)
        else:
            first = sb.first()
            if first is not None:
                if self.state == OPEN and self.dupacks >= DUPTHRESH and una >= self.recover:
                    # RFC 6582 §3.2 step 2 (una >= recover: not old duplicates).
                    newly_lost = sb.mark_first_lost()
                elif self.state == RECOVERY and acked and una < self.recover:
                    # RFC 6582 §3.2 step 5: a partial ACK; the next hole is lost too.
                    newly_lost = sb.mark_first_lost()
            if self.reno_sacked:
                # Linux tcp_limit_reno_sacked: sacked_out <= packets_out - lost_out
                # (at least one hole), so the pipe stays >= 0 when duplicate ACKs
                # follow an RTO that marked everything lost.
                limit = snd_max - una - max(sb.lost, mss)
                self.reno_sacked = min(self.reno_sacked, max(limit, 0))

        # --- state machine ---
        in_flight = self.in_flight(snd_max - una)
        if self.tlp_end is not None:
            self._tlp_on_ack(now, una, dsack, in_flight)
        if self.state != OPEN and self.undo_marker and self._may_undo(echo_ms, acked > 0):
            # Linux tcp_try_undo_recovery/_partial/_dsack/_loss: nothing was lost.
            self._undo(now)
            self._exit_recovery(now)
        elif self.state != OPEN and acked and una >= self.recover:
            self._exit_recovery(now)
        if self.state == OPEN and (newly_lost or sb.lost > sb.retrans):
            self._enter_recovery(now, outstanding_before, prior_in_flight, snd_max)
            in_flight = self.in_flight(snd_max - una)

        # --- the controller ---
        rs = self.rs
        delivered = sb.newly_delivered
        if not self.sack_ok and dupack:
            delivered = mss  # RFC 6937: a duplicate ACK stands for one SMSS delivered
        rs.acked = delivered
        rs.delivered = sb.delivered
        rs.prior_in_flight = prior_in_flight
        rs.in_flight = in_flight
        rs.lost = newly_lost
        rs.rtt = newest_rtt
        rs.min_rtt = rtt.min_rtt if rtt.min_rtt != INF else -1.0
        rs.srtt = rtt.srtt if rtt.srtt is not None else -1.0
        rs.in_recovery = self.state != OPEN
        self._rate_sample(now)
        if rs.round_start:
            rs.is_cwnd_limited = self._cwnd_limited()
            self.max_in_flight = in_flight
        if self.state == RECOVERY and cc.uses_prr:
            sndcnt = self.prr.send_quota(delivered, in_flight, cc.ssthresh, mss, acked > 0)
            self.prr_cwnd = in_flight + sndcnt
        elif delivered and not (was_in_recovery and cc.uses_prr):
            cc.on_ack(rs, now)
        self.reo_timeout = reo_timeout

    def on_reo_timer(self, now: float, una: int, snd_max: int) -> int:
        """RACK's reordering timer fired (RFC 8985 §6.2): detect again; returns the
        bytes newly marked lost (recovery is entered if needed)."""
        sb = self.sb
        rtt = self.rtt
        min_rtt = rtt.min_rtt if rtt.min_rtt != INF else 0.0
        srtt = rtt.srtt if rtt.srtt is not None else 0.0
        reo = self.rack.reo_wnd(self.state != OPEN, sb.sacked // self.mss, min_rtt, srtt)
        lost, self.reo_timeout = self.rack.detect_loss(sb, now, reo)
        if lost and self.state == OPEN:
            outstanding = snd_max - una
            self._enter_recovery(now, outstanding, self.in_flight(outstanding), snd_max)
            self.prr_cwnd = self.in_flight(outstanding) + self.mss  # let one out now
        return lost

    def reduction_basis(self, flight_size: int) -> int:
        """What a congestion response reduces from: FlightSize (RFC 5681 eq. 4,
        RFC 9438 §4.6), but never more than cwnd. SACKed data held behind a hole
        that outlives a round trip still counts in FlightSize, so it can exceed
        what the window let into the network, and a "reduction" from it would
        raise the window (Linux bases every reduction on cwnd)."""
        cwnd = self.cc.cwnd
        return flight_size if flight_size < cwnd else cwnd

    def _cwnd_limited(self) -> bool:
        """RFC 7661 / Linux tcp_is_cwnd_limited: was the window used last round?"""
        cc = self.cc
        if cc.cwnd < cc.ssthresh:
            return 2 * self.max_in_flight > cc.cwnd  # slow start: allow doubling
        return self.max_in_flight + self.mss > cc.cwnd

    def _rate_sample(self, now: float) -> None:
        """draft-cheng-iccrg-delivery-rate-estimation §3.3 (and round counting)."""
        sb = self.sb
        rs = self.rs
        rs.delivery_rate = -1.0
        rs.round_start = False
        rec = sb.rate_rec
        if sb.app_limited and sb.delivered > sb.app_limited:
            sb.app_limited = 0
        if rec is None:
            return
        prior_delivered = rec[DELIVERED]
        if prior_delivered >= self.next_round:
            # A packet-timed round trip ended: data sent after the last round's end
            # has been delivered (BBR's round counting).
            self.next_round = sb.delivered
            rs.round_start = True
        rs.app_limited = rec[APP_LIMITED]
        send_elapsed = rec[XMIT] - rec[FIRST_SENT]
        ack_elapsed = now - rec[DELIVERED_TIME]
        sb.first_sent_time = rec[XMIT]
        interval = max(send_elapsed, ack_elapsed)
        min_rtt = self.rtt.min_rtt
        if interval < MIN_RATE_INTERVAL or interval < min_rtt:
            # Shorter than a round trip: ACK compression, not a rate. Linux counts
            # in microseconds and drops a zero interval; a float interval of a few
            # denormal seconds would give an infinite rate.
            return
        rs.delivery_rate = (sb.delivered - prior_delivered) / interval

    # ------------------------------------------------------------ episodes
    def _enter_recovery(
        self, now: float, outstanding: int, prior_in_flight: int, snd_max: int
    ) -> None:
        """RFC 6675 §5 / RFC 6937: a loss starts a fast-recovery episode; the
        controller's reduction is based on FlightSize (RFC 5681 eq. 4)."""
        cc = self.cc
        self.state = RECOVERY
        self.recover = snd_max
        self.fast_recoveries += 1
        self.undo_marker = True
        self.undo_retrans = 0
        self.undo_start = snd_max - outstanding
        self.retrans_stamp = 0.0
        cc.save_undo_state()
        cc.on_congestion_event(now, self.reduction_basis(outstanding))
        self.prr.start(prior_in_flight)
        self.prr_cwnd = 0

    def _exit_recovery(self, now: float) -> None:
        if self.state == RECOVERY:
            self.cc.on_recovery_end(now)
            self.rack.on_recovery_exit()
        elif self.state == LOSS:
            self.rack.on_recovery_exit()
        self.state = OPEN
        self.undo_marker = False
        self.dupacks = 0

    def _may_undo(self, echo_ms: int, acked: bool) -> bool:
        """Linux tcp_may_undo: the episode's retransmissions were all unnecessary."""
        if not self.retrans_stamp:
            return False
        if self.undo_retrans <= 0:
            return True  # every retransmission D-SACKed (RFC 2883 §4)
        # RFC 3522 Eifel (Linux tcp_packet_delayed): an ACK that cumulatively
        # acknowledges data retransmitted in this episode echoes a timestamp older
        # than the episode's *first* retransmission: the segment that moved the
        # receiver's RCV.NXT was an original, so nothing had been lost. (Comparing
        # with the newest retransmission it covers would be wrong: a receiver that
        # ACKs two hole-filling retransmissions at once echoes the first one's
        # timestamp, RFC 7323 §4.3.) TSvals are int(send time in ms).
        rtx = self.sb.rtx_acked_xmit
        if not acked or echo_ms < 0 or rtx < self.retrans_stamp:
            return False
        return 0 < (int(self.retrans_stamp * 1000) - echo_ms) & 0xFFFFFFFF < 1 << 31

    def _undo(self, now: float) -> None:
        self.cc.undo(now)
        self.sb.clear_lost()
        self.spurious_undos += 1
        self.rack.reordering_seen = True
        self.undo_marker = False

    def _on_dsack(self, dsack: tuple[int, int], una: int, snd_max: int) -> None:
        """RFC 2883: the receiver got ``dsack`` twice."""
        left, right = dsack
        self.dsacks_received += 1
        # RFC 8985 §6.2 step 4: a D-SACK widens the reordering window; it does not
        # by itself say the path reorders (a TLP probe or an RTO duplicating a
        # segment whose ACK was late or lost draws one too), so reordering_seen is
        # left to step 3 and to a full undo.
        self.rack.on_dsack(una, snd_max)
        # Only duplicates of this episode's data count towards undoing it (Linux:
        # after(end_seq, undo_marker)); a late D-SACK for an older episode's
        # retransmission says nothing about this one.
        if self.undo_marker and self.undo_retrans > 0 and right > self.undo_start:
            if right <= una:
                # Below SND.UNA the records are gone: count one segment per block,
                # as Linux does for "already forgotten data".
                self.undo_retrans -= 1
            else:
                self.undo_retrans -= self.sb.retransmitted_within(left, right)

    def on_rto(self, now: float, una: int, snd_max: int) -> None:
        """The retransmission timer expired (RFC 6298 §5.5-5.7, RFC 8985 §6.3): every
        unSACKed segment is lost; the controller falls back to one segment."""
        sb = self.sb
        if self.state != LOSS or not self.undo_marker:
            self.undo_marker = True
            self.undo_retrans = 0
            self.undo_start = una
            self.retrans_stamp = 0.0
            self.cc.save_undo_state()
        self.cc.on_rto(now, self.reduction_basis(snd_max - una))
        for rec in sb.outstanding_records():
            sb.mark_lost(rec)
        self.state = LOSS
        self.recover = snd_max
        self.dupacks = 0
        self.reno_sacked = 0
        self.tlp_end = None
        self.max_in_flight = 0

    # ----------------------------------------------------------------- TLP
    def tlp_timeout(self, in_flight: int, srtt: float) -> float:
        """RFC 8985 §7.2: the probe timeout (PTO)."""
        pto = 2 * srtt
        if in_flight <= self.mss:
            pto += WCDELACKT
        return max(pto, 0.002)

    def may_probe(self) -> bool:
        """RFC 8985 §7.2: a probe may be scheduled (SACK on, no loss episode, no
        probe outstanding)."""
        return self.sack_ok and self.state == OPEN and self.tlp_end is None

    def on_probe_sent(self, end: int, retransmission: bool) -> None:
        self.tlp_end = end
        self.tlp_is_retrans = retransmission
        self.tlp_probes += 1

    def _tlp_on_ack(
        self, now: float, una: int, dsack: tuple[int, int] | None, in_flight: int
    ) -> None:
        """RFC 8985 §7.4: did the probe repair a loss?"""
        end = self.tlp_end
        assert end is not None
        if dsack is not None and dsack[1] >= end and self.tlp_is_retrans:
            self.tlp_end = None  # the probe was a duplicate: nothing was lost
        elif una >= end:
            self.tlp_end = None
            if self.tlp_is_retrans and self.state == OPEN:
                # The probe repaired a tail loss: respond to congestion once (Linux
                # tcp_process_tlp_ack: a window reduction, then back to Open).
                self.tlp_recoveries += 1
                self.cc.save_undo_state()
                self.cc.on_congestion_event(now, self.reduction_basis(in_flight))
                self.cc.on_recovery_end(now)
