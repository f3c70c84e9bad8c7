"""BBR version 1: a model-based controller (bottleneck bandwidth and min RTT).

As described in "BBR: Congestion-Based Congestion Control" (Cardwell et al., ACM
Queue 14(5), 2016), draft-cardwell-iccrg-bbr-congestion-control-00 and Linux's
``net/ipv4/tcp_bbr.c``: on every ACK the model is updated —

* ``btl_bw``: the windowed maximum delivery rate over the last 10 round trips
  (application-limited samples count only if they raise it);
* ``min_rtt``: the minimum RTT over the last 10 seconds —

and the sending is set from it: ``pacing_rate = pacing_gain * btl_bw`` and
``cwnd = cwnd_gain * btl_bw * min_rtt`` plus allowances. The gains come from a
state machine: STARTUP (2/ln 2) until the bandwidth stops growing by 25% for
three rounds, DRAIN (ln 2 / 2) until the queue STARTUP built is gone, PROBE_BW
(gain cycle 5/4, 3/4, 1 x 6) in steady state and PROBE_RTT (cwnd 4 segments for
200 ms and a round) when ``min_rtt`` has not been refreshed for 10 s.

Version 1 does not treat loss as a congestion signal (only packet conservation
for the first round of a recovery and deducting lost data from cwnd), which is
what makes it loss tolerant; see docs/congestion.md for why this version. One
departure: the quantization budget is a floor on in-flight targets, as in the
later drafts, not an addition (``_quantization_budget``). Sizes are in bytes
(Linux counts packets), times in seconds.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from typing import Any

from .base import AckSample, CongestionControl

#: The smallest pacing gain that doubles the sending rate every round (the
#: same packets per round as slow start); cwnd gets it too in STARTUP and DRAIN.
HIGH_GAIN = 2.0 / math.log(2.0)
#: Drains STARTUP's queue in about one round.
DRAIN_GAIN = 1.0 / HIGH_GAIN
#: Steady-state cwnd gain: tolerates delayed and stretched ACKs.
CWND_GAIN = 2.0
#: PROBE_BW's gain cycle: probe, drain what the probe queued, cruise six rounds.
PACING_GAIN_CYCLE = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
CYCLE_LEN = len(PACING_GAIN_CYCLE)
#: PROBE_BW starts at a random phase among all but the 3/4 one.
CYCLE_RAND = 7
#: Bandwidth filter window (rounds): a full gain cycle plus two.
BW_FILTER_ROUNDS = CYCLE_LEN + 2
#: min_rtt filter window (seconds).
MIN_RTT_WINDOW = 10.0
#: Least time PROBE_RTT holds the minimal window (bounds its cost near 2%).
PROBE_RTT_DURATION = 0.2
#: Least cwnd (segments): two 2-segment sequences with ACK-every-other-segment.
MIN_CWND_SEGMENTS = 4
#: Full pipe: the bandwidth grew by less than 25% ...
FULL_BW_THRESH = 1.25
#: ... for three rounds that were not application limited.
FULL_BW_COUNT = 3
#: Pace 1% below the estimate, to keep the bottleneck queue drained.
PACING_MARGIN = 0.01
#: ACK aggregation: max extra_acked over 5 to 10 rounds ...
EXTRA_ACKED_WIN_ROUNDS = 5
#: ... and never more than this much time at btl_bw.
EXTRA_ACKED_MAX_TIME = 0.1
#: Restart an aggregation epoch after this many segments (an old epoch).
ACK_EPOCH_RESET_SEGMENTS = 1 << 20
#: Nominal RTT for the initial pacing rate before any RTT sample.
NOMINAL_RTT = 0.001
#: Send quantum: about 1 ms of data at the pacing rate (Linux: pacing_rate >>
#: sk_pacing_shift = 10), at least 2 segments (1 below 1.2 Mbit/s), at most 64 KB
#: and 127 segments; the quantization budget is three of them.
QUANTUM_TIME = 1.0 / 1024
MIN_QUANTUM_RATE = 1_200_000 / 8
MAX_QUANTUM_BYTES = 65536

STARTUP, DRAIN, PROBE_BW, PROBE_RTT = "STARTUP", "DRAIN", "PROBE_BW", "PROBE_RTT"

# Loss-recovery states as the controller tracks them (Linux's TCP_CA_*).
_OPEN, _RECOVERY, _LOSS = 0, 1, 2

_INF = float("inf")
#: Connections created so far in this process: part of each one's RNG seed.
_instances = itertools.count()


class WindowedMax:
    """The maximum of the values seen in the last ``window`` rounds (exact: a
    monotonic deque of (round, value), oldest and largest first). Like Linux's
    ``minmax_running_max``, the estimate only moves when a sample arrives."""

    __slots__ = ("_q", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self._q: deque[tuple[int, float]] = deque()

    def update(self, value: float, round_count: int) -> float:
        q = self._q
        while q and q[-1][1] <= value:
            q.pop()
        q.append((round_count, value))
        oldest = round_count - self.window
        while q[0][0] <= oldest:
            q.popleft()
        return q[0][1]


class BBR(CongestionControl):
    """BBR v1 (Linux ``tcp_bbr.c``); paces at :attr:`pacing_rate`.

    ``seed`` fixes the random PROBE_BW start phase; by default it is derived from
    ``mss``, ``initial_cwnd`` and the number of BBR instances created before in
    this process, so a simulation that creates its connections in the same order
    replays exactly, and concurrent flows get different phases.
    """

    name = "bbr"
    uses_prr = False

    def __init__(self, mss: int, initial_cwnd: int, seed: int | None = None) -> None:
        super().__init__(mss, initial_cwnd)
        if seed is None:
            seed = (next(_instances) << 32) ^ (mss << 16) ^ initial_cwnd
        self.seed = seed
        self._rng = random.Random(seed)
        self.mode = STARTUP
        self.pacing_gain = HIGH_GAIN
        self.cwnd_gain = HIGH_GAIN
        # The model.
        self.round_count = 0
        self._round_start = False
        self._bw_filter = WindowedMax(BW_FILTER_ROUNDS)
        self.btl_bw = 0.0  # bytes/s
        self.min_rtt = _INF
        self._min_rtt_stamp: float | None = None
        self._sample_app_limited = False
        self._app_limited_until = -1  # delivery-rate samples up to here: app limited
        # STARTUP's full-pipe estimator.
        self.full_bw = 0.0
        self.full_bw_count = 0
        self.full_bw_reached = False
        # PROBE_BW.
        self.cycle_idx = 0
        self._cycle_stamp = 0.0
        # PROBE_RTT.
        self._probe_rtt_done_stamp: float | None = None
        self._probe_rtt_round_end = 0
        self._probe_rtt_round_done = False
        self._idle_restart = False
        # Loss recovery.
        self.prior_cwnd = 0
        self._ca_state = _OPEN
        self._saw_recovery_ack = False
        self._exit_pending = False
        self._conservation_pending = False
        self.packet_conservation = False
        self._conservation_end = 0
        self._delivered = 0
        self._in_flight = 0
        # ACK aggregation.
        self._ack_epoch_stamp: float | None = None
        self._ack_epoch_acked = 0
        self._extra_acked = [0, 0]
        self._extra_acked_idx = 0
        self._extra_acked_rounds = 0
        self._has_seen_rtt = False
        self._budget = 0  # 3 send quanta, set with the pacing rate
        self._init_pacing_rate(NOMINAL_RTT)

    def set_mss(self, mss: int) -> None:
        super().set_mss(mss)
        if not self._has_seen_rtt:
            self._init_pacing_rate(NOMINAL_RTT)
        else:
            self._pace(self.pacing_rate)

    # --------------------------------------------------------------- per ACK
    def on_ack(self, rs: AckSample, now: float) -> None:
        self._round_start = rs.round_start
        if rs.round_start:
            self.round_count += 1
        self._update_bw(rs)
        self._update_ack_aggregation(rs, now)
        if self.mode == PROBE_BW and self._is_next_cycle_phase(rs, now):
            self._advance_cycle_phase(now)
        self._check_full_bw_reached()
        self._check_drain(rs, now)
        self._update_min_rtt(rs, now)
        self._update_gains()
        self._set_pacing_rate(rs)
        self._set_cwnd(rs)
        self._delivered = rs.delivered
        self._in_flight = rs.in_flight

    def _update_bw(self, rs: AckSample) -> None:
        bw = rs.delivery_rate
        if bw <= 0.0:
            self._sample_app_limited = True  # no sample: nothing to judge rounds by
            return
        # PROBE_RTT's low rate, and the round after it, say nothing of the path
        # (Linux marks the connection app limited for that span).
        app_limited = (
            rs.app_limited or self.mode == PROBE_RTT or rs.delivered <= self._app_limited_until
        )
        self._sample_app_limited = app_limited
        if not app_limited or bw >= self.btl_bw:
            self.btl_bw = self._bw_filter.update(bw, self.round_count)

    def _update_ack_aggregation(self, rs: AckSample, now: float) -> None:
        """Estimate how much more than ``btl_bw * interval`` the ACKs delivered
        (receivers that ACK per batch, stretched ACKs): cwnd gets that much more
        so sending goes on through the silences between aggregated ACKs."""
        acked = rs.acked
        if acked <= 0:
            return
        if self._round_start:
            self._extra_acked_rounds += 1
            if self._extra_acked_rounds >= EXTRA_ACKED_WIN_ROUNDS:
                self._extra_acked_rounds = 0
                self._extra_acked_idx ^= 1
                self._extra_acked[self._extra_acked_idx] = 0
        if self._ack_epoch_stamp is None:
            self._ack_epoch_stamp = now
        expected = self.btl_bw * (now - self._ack_epoch_stamp)
        if (
            self._ack_epoch_acked <= expected
            or self._ack_epoch_acked + acked >= ACK_EPOCH_RESET_SEGMENTS * self.mss
        ):
            # The ACK rate fell to the expected rate (or the epoch is old): restart.
            self._ack_epoch_acked = 0
            self._ack_epoch_stamp = now
            expected = 0.0
        self._ack_epoch_acked += acked
        extra = min(int(self._ack_epoch_acked - expected), self.cwnd)
        if extra > self._extra_acked[self._extra_acked_idx]:
            self._extra_acked[self._extra_acked_idx] = extra

    def _is_next_cycle_phase(self, rs: AckSample, now: float) -> bool:
        full_length = now - self._cycle_stamp > self.min_rtt
        gain = self.pacing_gain
        if gain == 1.0:
            return full_length
        inflight = rs.prior_in_flight
        if gain > 1.0:
            # Probe until in flight reaches gain * BDP (may take more than a
            # min_rtt on a LAN), but not on through loss: a small buffer may not
            # hold that much.
            return full_length and (rs.lost > 0 or inflight >= self._inflight(gain))
        # Drain until in flight is down to the BDP, or a min_rtt passed.
        return full_length or inflight <= self._inflight(1.0)

    def _advance_cycle_phase(self, now: float) -> None:
        self.cycle_idx = (self.cycle_idx + 1) % CYCLE_LEN
        self._cycle_stamp = now

    def _enter_probe_bw(self, now: float) -> None:
        self.mode = PROBE_BW
        self.cycle_idx = CYCLE_LEN - 1 - self._rng.randrange(CYCLE_RAND)
        self._advance_cycle_phase(now)  # to any phase but the 3/4 one

    def _check_full_bw_reached(self) -> None:
        if self.full_bw_reached or not self._round_start or self._sample_app_limited:
            return
        if self.btl_bw >= self.full_bw * FULL_BW_THRESH:
            self.full_bw = self.btl_bw
            self.full_bw_count = 0
            return
        self.full_bw_count += 1
        self.full_bw_reached = self.full_bw_count >= FULL_BW_COUNT

    def _check_drain(self, rs: AckSample, now: float) -> None:
        if self.mode == STARTUP and self.full_bw_reached:
            self.mode = DRAIN
            self.ssthresh = self._inflight(1.0)
        if self.mode == DRAIN and rs.in_flight <= self._inflight(1.0):
            self._enter_probe_bw(now)  # the queue is estimated drained

    def _update_min_rtt(self, rs: AckSample, now: float) -> None:
        if self._min_rtt_stamp is None:
            self._min_rtt_stamp = now
        expired = now > self._min_rtt_stamp + MIN_RTT_WINDOW
        rtt = rs.rtt
        if rtt > 0.0 and (rtt < self.min_rtt or expired):
            self.min_rtt = rtt
            self._min_rtt_stamp = now
        if expired and not self._idle_restart and self.mode != PROBE_RTT:
            self.mode = PROBE_RTT  # dip: drain the queue, measure min_rtt anew
            self._save_cwnd()
            self._probe_rtt_done_stamp = None
        if self.mode == PROBE_RTT:
            self._app_limited_until = rs.delivered + rs.in_flight
            if self._probe_rtt_done_stamp is None:
                if rs.in_flight <= MIN_CWND_SEGMENTS * self.mss:
                    # Hold for max(200 ms, one round) from now: the round ends
                    # when data sent after this point is delivered.
                    self._probe_rtt_done_stamp = now + PROBE_RTT_DURATION
                    self._probe_rtt_round_done = False
                    self._probe_rtt_round_end = rs.delivered + rs.in_flight
            else:
                if rs.delivered > self._probe_rtt_round_end:
                    self._probe_rtt_round_done = True
                if self._probe_rtt_round_done:
                    self._check_probe_rtt_done(now, rs.delivered, rs.in_flight)
        self._idle_restart = False  # this ACK delivered data

    def _check_probe_rtt_done(self, now: float, delivered: int, in_flight: int) -> None:
        done = self._probe_rtt_done_stamp
        if done is None or now <= done:
            return
        self._min_rtt_stamp = now  # wait a while until the next PROBE_RTT
        self.cwnd = max(self.cwnd, self.prior_cwnd)
        # Rate samples of the first window sent after PROBE_RTT span its dip.
        self._app_limited_until = delivered + in_flight + self.cwnd
        self._probe_rtt_done_stamp = None
        if self.full_bw_reached:
            self._enter_probe_bw(now)
        else:
            self.mode = STARTUP

    def _update_gains(self) -> None:
        mode = self.mode
        if mode == PROBE_BW:
            self.pacing_gain = PACING_GAIN_CYCLE[self.cycle_idx]
            self.cwnd_gain = CWND_GAIN
        elif mode == STARTUP:
            self.pacing_gain = self.cwnd_gain = HIGH_GAIN
        elif mode == DRAIN:
            self.pacing_gain = DRAIN_GAIN
            self.cwnd_gain = HIGH_GAIN  # keep cwnd while the queue drains
        else:
            self.pacing_gain = self.cwnd_gain = 1.0

    def _init_pacing_rate(self, rtt: float) -> None:
        """high_gain * cwnd / RTT (Linux: srtt, or 1 ms before any sample)."""
        self._pace(HIGH_GAIN * self.cwnd / rtt * (1.0 - PACING_MARGIN))

    def _pace(self, rate: float) -> None:
        """Set the pacing rate and the quantization budget that follows from it."""
        self.pacing_rate = rate
        segs = int(min(rate * QUANTUM_TIME, MAX_QUANTUM_BYTES)) // self.mss
        floor = 1 if rate < MIN_QUANTUM_RATE else 2
        self._budget = 3 * min(max(segs, floor), 127) * self.mss

    def _set_pacing_rate(self, rs: AckSample) -> None:
        if not self._has_seen_rtt:
            rtt = rs.srtt if rs.srtt > 0.0 else rs.rtt
            if rtt > 0.0:
                self._has_seen_rtt = True
                self._init_pacing_rate(rtt)
        rate = self.pacing_gain * self.btl_bw * (1.0 - PACING_MARGIN)
        # Until the pipe is full only ever raise it; never to 0.
        if rate > 0.0 and (self.full_bw_reached or rate > self.pacing_rate):
            self._pace(rate)

    # ------------------------------------------------------------------ cwnd
    def _bdp(self, gain: float) -> int:
        return math.ceil(self.btl_bw * self.min_rtt * gain)

    def _quantization_budget(self, cwnd: int) -> int:
        """At least three send quanta in flight (one in the sender's pacer, one
        being sent, one being coalesced by the receiver), and 2 segments more
        while probing so small BDPs still probe.

        Linux's v1 *adds* the three quanta (TSO-sized skbs hidden in the qdisc and
        the NIC); rudp has no TSO and counts a segment in flight only once it is
        sent, and an added budget is what the 0.75 phase drains down to, so it
        stands in the queue. The floor is the form of the later drafts and Linux
        BBR v2/v3 (see docs/congestion.md)."""
        if cwnd < self._budget:
            cwnd = self._budget
        if self.mode == PROBE_BW and self.cycle_idx == 0:
            cwnd += 2 * self.mss
        return cwnd

    def _inflight(self, gain: float) -> int:
        if self.min_rtt == _INF:
            # No RTT sample yet (everything ACKed was retransmitted): be safe,
            # cap at the initial window.
            return self.initial_cwnd * self.mss
        return self._quantization_budget(self._bdp(gain))

    def _target_cwnd(self) -> int:
        if self.min_rtt == _INF:
            return self.initial_cwnd * self.mss
        aggr = 0
        if self.full_bw_reached:
            extra = max(self._extra_acked)
            aggr = int(min(extra, self.btl_bw * EXTRA_ACKED_MAX_TIME))
        return self._quantization_budget(self._bdp(self.cwnd_gain) + aggr)

    def _set_cwnd(self, rs: AckSample) -> None:
        acked = rs.acked
        mss = self.mss
        if acked > 0 and not self._recover_or_restore(rs):
            cwnd = self.cwnd
            target = self._target_cwnd()
            if self.full_bw_reached:
                # Slow start toward the target, or snap down to it.
                cwnd = min(cwnd + acked, target)
            elif cwnd < target or rs.delivered < self.initial_cwnd * mss:
                cwnd += acked
            self.cwnd = max(cwnd, MIN_CWND_SEGMENTS * mss)
        if self.mode == PROBE_RTT and self.cwnd > MIN_CWND_SEGMENTS * mss:
            self.cwnd = MIN_CWND_SEGMENTS * mss

    def _recover_or_restore(self, rs: AckSample) -> bool:
        """Loss: deduct lost data from cwnd, conserve packets for the first round
        of a recovery, restore the prior cwnd after it. True: conserving (cwnd
        is final for this ACK)."""
        if rs.lost > 0:
            self.cwnd = max(self.cwnd - rs.lost, self.mss)
        if self._ca_state != _OPEN:
            if self._exit_pending or (self._saw_recovery_ack and not rs.in_recovery):
                # Recovery ended (and no new one began on the same ACK): restore
                # the cwnd saved when it started; the target caps it below.
                self.cwnd = max(self.cwnd, self.prior_cwnd)
                self._ca_state = _OPEN
                self._exit_pending = self._saw_recovery_ack = False
                self.packet_conservation = self._conservation_pending = False
            elif rs.in_recovery:
                self._saw_recovery_ack = True
        if self._conservation_pending:
            # First ACK of the recovery: cut unused cwnd, send what is acked,
            # for one round (until data sent from now on is delivered).
            self._conservation_pending = False
            self.packet_conservation = True
            self._conservation_end = rs.delivered + rs.in_flight
            self.cwnd = rs.in_flight + rs.acked
        elif self.packet_conservation and rs.delivered > self._conservation_end:
            self.packet_conservation = False
        if self.packet_conservation:
            self.cwnd = max(self.cwnd, rs.in_flight + rs.acked)
            return True
        return False

    # ----------------------------------------------------------- loss events
    def _save_cwnd(self) -> None:
        """The last known good cwnd, to restore after recovery or PROBE_RTT."""
        if self._ca_state == _OPEN and self.mode != PROBE_RTT:
            self.prior_cwnd = self.cwnd
        else:  # recovery or PROBE_RTT cut cwnd already
            self.prior_cwnd = max(self.prior_cwnd, self.cwnd)

    def on_congestion_event(self, now: float, basis: int) -> None:
        if self._exit_pending:
            # A recovery ended and the next began before another ACK was
            # processed: to BBR (which, like Linux's, looks at the recovery
            # state once per ACK) that is one continuing recovery.
            self._exit_pending = False
            self._save_cwnd()
            return
        self._save_cwnd()
        if self._ca_state != _RECOVERY:
            self._conservation_pending = True  # first round of a recovery
        self._ca_state = _RECOVERY
        self._saw_recovery_ack = False

    def on_recovery_end(self, now: float) -> None:
        # Applied on the next ACK (see on_congestion_event).
        if self._ca_state != _OPEN:
            self._exit_pending = True

    def on_rto(self, now: float, basis: int) -> None:
        self._save_cwnd()
        self._ca_state = _LOSS
        self._exit_pending = self._saw_recovery_ack = False
        self._conservation_pending = False
        self.packet_conservation = False
        self.full_bw = 0.0
        # Everything in flight is presumed lost: cwnd = in flight + 1 segment.
        self.cwnd = self.mss

    def undo(self, now: float) -> None:
        # The slow-down was spurious: re-check the full pipe, leave recovery.
        self.full_bw = 0.0
        self.full_bw_count = 0
        if self._ca_state != _OPEN:
            self._exit_pending = True  # restored on the next ACK

    def on_idle_restart(self, now: float) -> None:
        # cwnd stays (Linux exempts controllers with their own cong_control from
        # the RFC 5681 restart window); pace at btl_bw, not above it.
        self._idle_restart = True
        self._ack_epoch_stamp = now
        self._ack_epoch_acked = 0
        if self.mode == PROBE_BW:
            rate = self.btl_bw * (1.0 - PACING_MARGIN)
            if rate > 0.0:
                self._pace(rate)
        elif self.mode == PROBE_RTT:
            self._check_probe_rtt_done(now, self._delivered, self._in_flight)

    def stats(self) -> dict[str, Any]:
        return {
            "cc_state": self.mode,
            "cc_btl_bw": self.btl_bw,
            "cc_min_rtt": self.min_rtt if self.min_rtt != _INF else -1.0,
            "cc_pacing_gain": self.pacing_gain,
            "cc_cwnd_gain": self.cwnd_gain,
            "cc_round_count": self.round_count,
            "cc_full_bw_reached": self.full_bw_reached,
            "cc_cycle_idx": self.cycle_idx,
            "cc_extra_acked": max(self._extra_acked),
        }
