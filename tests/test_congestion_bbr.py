"""BBR (v1) on a simulated bottleneck, and its hooks driven by hand.

:class:`Path` is a small packet-level model of one flow through a bottleneck: a
link of ``rate`` bytes/s with a drop-tail buffer, a fixed round-trip propagation
delay, optional seeded random loss, and optionally ACKs coalesced into batches
(as rudp receivers ACK per receive batch). The sender side plays the connection:
it estimates the delivery rate (draft-cheng-iccrg-delivery-rate-estimation),
counts packet-timed rounds, finds a segment lost when a later one is ACKed (RACK
with no reordering window, as during recovery), runs recovery episodes as SACK
does, fires an RTO when everything in flight was dropped, paces at
``cc.pacing_rate`` and calls the controller in the order base.py documents.
Data is abstract: a lost segment is counted, not retransmitted.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import deque
from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Any

import pytest

from rudp.engine.congestion import ALGORITHMS, BBR, AckSample, CongestionControl, Cubic, lookup
from rudp.engine.congestion.bbr import (
    DRAIN,
    HIGH_GAIN,
    PACING_GAIN_CYCLE,
    PACING_MARGIN,
    PROBE_BW,
    PROBE_RTT,
    STARTUP,
)

MSS = 1250
INF = float("inf")


class _Pkt:
    __slots__ = (
        "ack_at",
        "app_limited",
        "delivered",
        "delivered_time",
        "first_sent",
        "sent",
        "seq",
    )


class Path:
    """One flow over a bottleneck; see the module docstring."""

    def __init__(
        self,
        cc: CongestionControl,
        rate: float,
        rtt: float,
        buffer: float,
        loss: float = 0.0,
        ack_batch: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.cc, self.rate, self.rtt, self.buffer = cc, rate, rtt, buffer
        self.loss, self.ack_batch = loss, ack_batch
        self.rng = random.Random(seed)
        self.now = self.next_send = self.link_free = self.last_event = 0.0
        self.flight: deque[_Pkt] = deque()  # sent, neither ACKed nor lost
        self.acks: deque[_Pkt] = deque()  # not dropped: ACKed at ack_at, in order
        self.in_flight = self.delivered = self.seq = self.next_round = 0
        self.delivered_time = self.first_sent = 0.0
        self.app_limited = False  # the application has nothing to send
        self.app_limited_until = 0
        self.in_recovery = self.next_episode = False
        self.recovery_point = 0
        self.repair_time = -1.0
        self.srtt = -1.0
        self.min_rtt = INF
        self.rs = AckSample()
        self.queue_drops = self.random_drops = self.rtos = self.episodes = 0
        self.rtts: list[tuple[float, float]] = []  # (time, RTT sample)

    def run(self, until: float, on_ack: Callable[[Path], None] | None = None) -> None:
        cc = self.cc
        while True:
            if self.app_limited:
                self.app_limited_until = max(self.delivered + self.in_flight, 1)
            t_ack = self.acks[0].ack_at if self.acks else INF
            if not self.acks and self.flight:  # all in flight dropped: RTO
                t_ack = self.last_event + max(0.2, 2 * self.srtt)
            can_send = not self.app_limited and self.in_flight + cc.mss <= cc.cwnd
            t_send = max(self.now, self.next_send) if can_send else INF
            t = min(t_send, t_ack)
            if t > until:
                self.now = until
                return
            self.now = t
            if t_send <= t_ack:
                self._send()
            elif self.acks:
                self._ack()
                if on_ack is not None:
                    on_ack(self)
            else:
                self._rto()

    def _send(self) -> None:
        cc, now = self.cc, self.now
        if self.in_flight == 0:
            self.first_sent = self.delivered_time = now
        p = _Pkt()
        p.seq, p.sent, p.first_sent = self.seq, now, self.first_sent
        p.delivered, p.delivered_time = self.delivered, self.delivered_time
        p.app_limited = self.app_limited_until > 0
        self.seq += 1
        self.flight.append(p)
        self.in_flight += MSS
        self.last_event = now
        if cc.pacing_rate > 0:
            self.next_send = max(self.next_send, now) + MSS / cc.pacing_rate
        if self.loss and self.rng.random() < self.loss:
            self.random_drops += 1
            return
        if (self.link_free - now) * self.rate > self.buffer:
            self.queue_drops += 1
            return
        self.link_free = max(self.link_free, now) + MSS / self.rate
        ack_at = self.link_free + self.rtt
        if self.ack_batch:
            ack_at = math.ceil(ack_at / self.ack_batch) * self.ack_batch
        p.ack_at = ack_at
        self.acks.append(p)

    def _ack(self) -> None:
        cc, rs, now = self.cc, self.rs, self.now
        self.last_event = now
        prior_in_flight = self.in_flight
        acked = lost = 0
        while self.acks and self.acks[0].ack_at <= now:  # one cumulative ACK
            newest = self.acks.popleft()
            while True:
                p = self.flight.popleft()
                self.in_flight -= MSS
                if p is newest:
                    break
                lost += MSS  # a later segment arrived: this one is lost
                if self.in_recovery and p.seq < self.recovery_point:
                    self.repair_time = now + self.srtt  # its retransmission's ACK
                else:
                    self.next_episode = True
            acked += MSS
        p = newest
        self.delivered += acked
        self.delivered_time = now
        if self.app_limited_until and self.delivered > self.app_limited_until:
            self.app_limited_until = 0
        interval = max(p.sent - p.first_sent, now - p.delivered_time)
        self.first_sent = p.sent
        rtt = round(now - p.sent, 6)  # microseconds, as Linux's rtt_us
        self.rtts.append((now, rtt))
        self.min_rtt = min(self.min_rtt, rtt)
        self.srtt = rtt if self.srtt < 0 else 0.875 * self.srtt + 0.125 * rtt
        rs.round_start = p.delivered >= self.next_round
        if rs.round_start:
            self.next_round = self.delivered
        if self.in_recovery and p.seq >= self.recovery_point and now >= self.repair_time:
            self.in_recovery = False
            cc.on_recovery_end(now)
        if self.next_episode and not self.in_recovery:
            # Losses found while the last episode ran start the next one on the
            # same ACK, as with SACK.
            self.next_episode = False
            self.in_recovery = True
            self.episodes += 1
            self.recovery_point = self.seq
            self.repair_time = now + self.srtt
            cc.save_undo_state()
            cc.on_congestion_event(now, prior_in_flight)
        if self.in_recovery and cc.uses_prr:
            return
        rs.acked, rs.delivered, rs.lost = acked, self.delivered, lost
        rs.prior_in_flight, rs.in_flight = prior_in_flight, self.in_flight
        rs.rtt, rs.min_rtt, rs.srtt = rtt, self.min_rtt, self.srtt
        rs.delivery_rate = (self.delivered - p.delivered) / interval if interval > 0 else -1.0
        rs.app_limited = p.app_limited
        rs.in_recovery = self.in_recovery
        rs.is_cwnd_limited = not self.app_limited
        cc.on_ack(rs, now)

    def _rto(self) -> None:
        self.rtos += 1
        if not self.in_recovery:
            self.cc.save_undo_state()
        self.cc.on_rto(self.now, self.in_flight)
        self.flight.clear()
        self.in_flight = 0
        self.in_recovery = True
        self.next_episode = False
        self.recovery_point = self.seq
        self.repair_time = self.next_send = self.last_event = self.now

    def utilisation(self, since: float = 0.0, delivered_then: int = 0) -> float:
        return (self.delivered - delivered_then) / ((self.now - since) * self.rate)


class Trace:
    """Mode changes and per-ACK controller state recorded from a run."""

    def __init__(self, cc: BBR) -> None:
        self.cc = cc
        self.modes: list[tuple[str, float, int]] = []  # (mode, since, round)
        self.acks: list[tuple[float, str, int, int, float]] = []
        self.probe_rtt_low: list[tuple[float, int]] = []  # (time, round): in flight <= 4

    def __call__(self, path: Path) -> None:
        cc = self.cc
        if not self.modes or self.modes[-1][0] != cc.mode:
            self.modes.append((cc.mode, path.now, cc.round_count))
        if cc.mode == PROBE_RTT and not self.probe_rtt_low and path.rs.in_flight <= 4 * MSS:
            self.probe_rtt_low.append((path.now, cc.round_count))
        self.acks.append((path.now, cc.mode, cc.cwnd, cc.cycle_idx, cc.pacing_gain))

    def entered(self, mode: str) -> list[float]:
        return [t for m, t, _ in self.modes if m == mode]


# 10 Mbit/s, 40 ms: a BDP of 50 kB (40 segments).
RATE, RTT = 1.25e6, 0.04
BDP = RATE * RTT


def run_bbr(
    until: float, buffer: float = 10 * BDP, seed: int = 7, **kw: float
) -> tuple[BBR, Path, Trace]:
    cc = BBR(MSS, 10, seed=seed)
    path = Path(cc, RATE, RTT, buffer, **kw)
    trace = Trace(cc)
    path.run(until, trace)
    return cc, path, trace


def test_registered_and_factory_signature() -> None:
    assert ALGORITHMS["bbr"] is BBR and lookup("bbr") is BBR
    cc = ALGORITHMS["bbr"](1400, 10)
    assert cc.name == "bbr" and not cc.uses_prr
    assert cc.cwnd == 14000
    # Paced from the start: high_gain * initial cwnd over a nominal 1 ms RTT.
    assert cc.pacing_rate == pytest.approx(HIGH_GAIN * 14000 / 0.001 * (1 - PACING_MARGIN))
    cc.set_mss(1000)
    assert cc.cwnd == 10000 and cc.pacing_rate == pytest.approx(
        HIGH_GAIN * 10000 / 0.001 * (1 - PACING_MARGIN)
    )


def test_default_seeds_differ_and_a_seed_replays() -> None:
    a, b = BBR(MSS, 10), BBR(MSS, 10)
    assert a.seed != b.seed
    one = run_bbr(3.0, seed=11)[2].acks
    two = run_bbr(3.0, seed=11)[2].acks
    assert one == two


def test_startup_drain_probe_bw_and_the_model_converges() -> None:
    cc, path, trace = run_bbr(3.0)
    modes = [m for m, _, _ in trace.modes]
    assert modes[:3] == [STARTUP, DRAIN, PROBE_BW] and set(modes) == {STARTUP, DRAIN, PROBE_BW}
    # STARTUP doubles per round from 10 segments to 40 (2 rounds), then 3 rounds
    # without 25% growth: full pipe within 8 rounds, queue drained in DRAIN.
    drain_round = trace.modes[1][2]
    assert cc.full_bw_reached and drain_round <= 8
    assert trace.modes[2][1] - trace.modes[1][1] < 5 * RTT
    # btl_bw converges to the link rate, min_rtt to the propagation delay (plus
    # one segment's transmission time at the bottleneck).
    assert cc.btl_bw == pytest.approx(RATE, rel=0.01)
    assert RTT <= cc.min_rtt <= RTT + MSS / RATE + 1e-9
    assert path.queue_drops == 0
    # Steady state: the pipe is full, the queue small.
    start = trace.modes[2][1] + 0.5
    late = [r for t, r in path.rtts if t > start]
    assert statistics.mean(late) < 1.25 * RTT
    assert sum(1 for t, _ in path.rtts if t > start) * MSS / ((3.0 - start) * RATE) > 0.95


def test_pacing_gain_cycle() -> None:
    cc, _, trace = run_bbr(3.0)
    phases: list[tuple[float, int, float]] = []  # PROBE_BW phase changes
    for t, mode, _, idx, gain in trace.acks:
        if mode == PROBE_BW and (not phases or phases[-1][1] != idx):
            phases.append((t, idx, gain))
    assert len(phases) > 2 * len(PACING_GAIN_CYCLE)
    for (_, i0, _), (_, i1, g1) in itertools.pairwise(phases):
        assert i1 == (i0 + 1) % len(PACING_GAIN_CYCLE) and g1 == PACING_GAIN_CYCLE[i1]
    # The 1.0 phases last one min_rtt. The 1.25 phase lasts until in flight has
    # reached 1.25 BDP plus the quantization budget: here a quarter more than a
    # min_rtt. The 0.75 phase at most one.
    for (t0, _, g0), (t1, _, _) in itertools.pairwise(phases):
        if g0 == 1.0:
            assert cc.min_rtt <= t1 - t0 < cc.min_rtt + 2 * MSS / RATE + 1e-9
        elif g0 > 1.0:
            assert t1 - t0 > 1.2 * cc.min_rtt
        else:
            assert t1 - t0 < cc.min_rtt + 2 * MSS / RATE + 1e-9
    # The pacing rate follows: gain * btl_bw less the 1% margin.
    assert cc.pacing_rate == pytest.approx(cc.pacing_gain * cc.btl_bw * (1 - PACING_MARGIN))


@pytest.mark.parametrize(("rate", "rtt"), [(1.25e6, 0.01), (12.5e6, 0.01), (1.25e6, 0.05)])
def test_one_flow_keeps_the_queue_small_in_a_deep_buffer(rate: float, rtt: float) -> None:
    """The median RTT stays within 1.25x of the empty-queue RTT with a 2-BDP buffer,
    even where the BDP is only a few segments (10 Mbit/s, 10 ms: 10 segments)."""
    cc = BBR(MSS, 10, seed=1)
    path = Path(cc, rate, rtt, 2 * rate * rtt)
    path.run(2.0)
    n, before, drops = len(path.rtts), path.delivered, path.queue_drops
    path.run(7.0)
    samples = sorted(r for _, r in path.rtts[n:])
    base = rtt + MSS / rate
    assert samples[len(samples) // 2] <= 1.25 * base
    assert path.utilisation(2.0, before) > 0.95 and path.queue_drops == drops


def test_drain_phase_ends_once_in_flight_is_down_to_the_bdp() -> None:
    cc, t = steady_bbr()
    rs = AckSample()
    rs.acked, rs.rtt, rs.srtt, rs.delivery_rate = MSS, 0.05, 0.05, 1e6
    rs.delivered = cc._test_delivered  # type: ignore[attr-defined]
    rs.prior_in_flight = rs.in_flight = 70_000  # past the probe's 1.25 BDP target

    def ack(at: float) -> None:
        rs.delivered += MSS
        cc.on_ack(rs, at)

    for _ in range(200):  # to the start of the 0.75 phase
        t += 0.005
        ack(t)
        if cc.pacing_gain == 0.75:
            break
    idx = cc.cycle_idx
    assert cc.pacing_gain == 0.75
    rs.prior_in_flight = rs.in_flight = 60_000  # still above the 50 kB BDP
    ack(t + 0.001)
    assert cc.cycle_idx == idx  # in flight above the BDP: keep draining
    rs.prior_in_flight = rs.in_flight = 45_000
    ack(t + 0.002)  # down to it: cruise, well before a min_rtt passed
    assert cc.cycle_idx == idx + 1 and cc.pacing_gain == 1.0


def test_probe_bw_starts_at_a_random_phase_but_never_the_drain_one() -> None:
    starts = set()
    for seed in range(40):
        trace = run_bbr(1.0, seed=seed)[2]
        first = next(idx for _, mode, _, idx, _ in trace.acks if mode == PROBE_BW)
        starts.add(first)
    assert 1 not in starts and len(starts) >= 5
    assert starts <= {0, 2, 3, 4, 5, 6, 7}


def test_probe_rtt_after_ten_seconds_without_a_new_min() -> None:
    cc, path, trace = run_bbr(12.5)
    first_sample = path.rtts[0][0]
    entries = trace.entered(PROBE_RTT)
    # The path's RTT never drops below the first sample, so min_rtt expires 10 s
    # after it: once, and PROBE_BW (full pipe) follows.
    assert len(entries) == 1 and 10.0 < entries[0] - first_sample < 10.1
    i = [m for m, _, _ in trace.modes].index(PROBE_RTT)
    entered, entry_round = trace.modes[i][1], trace.modes[i][2]
    left, exit_round = trace.modes[i + 1][1], trace.modes[i + 1][2]
    assert trace.modes[i + 1][0] == PROBE_BW
    in_probe = [cwnd for t, mode, cwnd, _, _ in trace.acks if mode == PROBE_RTT]
    assert in_probe and max(in_probe) <= 4 * MSS
    # In flight drains to 4 segments within a round; from then on at least 200 ms
    # and at least one round.
    (low_since, low_round) = trace.probe_rtt_low[0]
    assert low_since - entered < 2 * RTT
    assert left - low_since >= 0.2 and exit_round > low_round >= entry_round
    # Afterwards the window is restored and the queue was measured empty.
    assert cc.mode == PROBE_BW and cc.cwnd > 20 * MSS
    assert cc.min_rtt <= RTT + MSS / RATE + 1e-9


def test_probe_rtt_holds_one_round_on_a_long_path() -> None:
    """With a 500 ms RTT one round outlasts 200 ms: PROBE_RTT lasts a round."""
    cc = BBR(MSS, 10, seed=3)
    path = Path(cc, RATE, 0.5, 10 * RATE * 0.5)
    trace = Trace(cc)
    path.run(14.0, trace)
    i = [m for m, _, _ in trace.modes].index(PROBE_RTT)
    low_since = trace.probe_rtt_low[0][0]
    assert trace.modes[i + 1][1] - low_since >= 0.5


def feed(cc: BBR, t: float, rate: float, rtt: float, rounds: int, **kw: object) -> float:
    """Synthetic ACKs: ``rounds`` rounds of 10 ACKs with these samples."""
    rs = AckSample()
    delivered = getattr(cc, "_test_delivered", 0)
    for _ in range(rounds):
        for i in range(10):
            delivered += MSS
            rs.acked, rs.delivered, rs.delivery_rate, rs.rtt, rs.srtt = (
                MSS,
                delivered,
                rate,
                rtt,
                rtt,
            )
            rs.in_flight = rs.prior_in_flight = int(rate * rtt)
            rs.round_start = i == 0
            rs.app_limited = False
            rs.lost = 0
            rs.in_recovery = False
            for k, v in kw.items():
                setattr(rs, k, v)
            cc.on_ack(rs, t)
            t += rtt / 10
    cc._test_delivered = delivered  # type: ignore[attr-defined]
    return t


def test_probe_rtt_needs_both_200_ms_and_a_round() -> None:
    cc, t = steady_bbr()
    t = feed(cc, t, 1e6, 0.06, rounds=160)  # no new min for 10 s
    assert cc.mode == PROBE_RTT and cc.cwnd == 4 * MSS
    d = cc._test_delivered  # type: ignore[attr-defined]

    def ack(at: float, delivered: int, in_flight: int) -> None:
        rs = AckSample()
        rs.acked, rs.delivered, rs.in_flight, rs.prior_in_flight = MSS, delivered, in_flight, 0
        rs.rtt = rs.srtt = 0.06
        rs.delivery_rate = 1e5
        cc.on_ack(rs, at)

    ack(t, d + MSS, 3 * MSS)  # in flight down to 4 segments: the round starts now
    # 300 ms of ACKs for data sent before that point: not a round yet.
    for i in range(1, 4):
        ack(t + 0.1 * i, d + (1 + i) * MSS, 3 * MSS)
        assert cc.mode == PROBE_RTT
    ack(t + 0.35, d + 5 * MSS, 3 * MSS)  # data sent after it: the round is done
    assert cc.mode == PROBE_BW and cc.cwnd > 20 * MSS
    assert cc.btl_bw == 1e6  # PROBE_RTT's low-rate samples were ignored
    # And a round alone does not end it before 200 ms.
    t = feed(cc, t + 0.4, 1e6, 0.06, rounds=170)
    assert cc.mode == PROBE_RTT
    d = cc._test_delivered  # type: ignore[attr-defined]
    ack(t, d + MSS, 3 * MSS)
    ack(t + 0.1, d + 10 * MSS, 3 * MSS)
    assert cc.mode == PROBE_RTT
    ack(t + 0.21, d + 11 * MSS, 3 * MSS)
    assert cc.mode == PROBE_BW


def test_app_limited_samples_do_not_lower_the_estimate() -> None:
    cc = BBR(MSS, 10, seed=1)
    t = feed(cc, 0.0, 1e6, 0.05, rounds=3)
    assert cc.btl_bw == 1e6
    t = feed(cc, t, 1e5, 0.05, rounds=20, app_limited=True)
    assert cc.btl_bw == 1e6  # 20 rounds > the 10-round window: still held
    t = feed(cc, t, 2e6, 0.05, rounds=1, app_limited=True)
    assert cc.btl_bw == 2e6  # an app-limited sample above the max counts
    # Samples that are not app limited age the max out after 10 rounds.
    t = feed(cc, t, 5e5, 0.05, rounds=9)
    assert cc.btl_bw == 2e6
    feed(cc, t, 5e5, 0.05, rounds=1)
    assert cc.btl_bw == 5e5


@pytest.mark.parametrize(("growth", "full"), [(1.24, True), (1.26, False)])
def test_full_pipe_after_three_rounds_without_25_percent_growth(growth: float, full: bool) -> None:
    cc = BBR(MSS, 10, seed=1)
    t = feed(cc, 0.0, 1e6, 0.05, rounds=1)  # the baseline
    for _ in range(2):
        t = feed(cc, t, growth * 1e6, 0.05, rounds=1)
        assert cc.mode == STARTUP
    feed(cc, t, growth * 1e6, 0.05, rounds=1)
    # 24% more than the baseline is "no growth" (3 rounds: full); 26% resets it.
    assert cc.full_bw_reached is full and (cc.mode == STARTUP) is not full


def test_min_rtt_window_is_ten_seconds() -> None:
    cc = BBR(MSS, 10, seed=1)
    t = feed(cc, 0.0, 1e6, 0.05, rounds=2)
    assert cc.min_rtt == 0.05
    t = feed(cc, t, 1e6, 0.08, rounds=150)  # 12 s of larger samples
    assert t > 10 and cc.min_rtt == 0.08  # the old min expired, a new one taken


def test_loss_does_not_collapse_the_estimate() -> None:
    """1% random loss, 20 Mbit/s, 50 ms, 1-BDP buffer: BBR keeps the pipe full
    (the target: at least 80% of the link); CUBIC on the same path cannot."""
    rate, rtt = 2.5e6, 0.05
    results = {}
    for name in ("bbr", "cubic"):
        cc = BBR(MSS, 10, seed=5) if name == "bbr" else Cubic(MSS, 10)
        path = Path(cc, rate, rtt, rate * rtt, loss=0.01, seed=9)
        path.run(2.0)
        before = path.delivered
        path.run(10.0)
        assert path.random_drops > 20 and 0.005 < path.random_drops / path.seq < 0.02
        results[name] = path.utilisation(2.0, before)
        if isinstance(cc, BBR):
            assert cc.btl_bw == pytest.approx(rate, rel=0.05)
            assert cc.mode == PROBE_BW
    assert results["bbr"] >= 0.9
    assert results["cubic"] < 0.5


def test_ack_aggregation_allowance() -> None:
    """Receivers ACKing once per 10 ms batch: extra_acked measures the burst,
    cwnd grows by it, and the link stays full."""
    cc, path, _ = run_bbr(4.0, buffer=BDP, ack_batch=0.01)
    batch = RATE * 0.01
    assert 0.5 * batch <= max(cc._extra_acked) <= 2 * batch
    assert cc.cwnd >= cc._quantization_budget(cc._bdp(cc.cwnd_gain)) + 0.5 * batch
    before = path.delivered
    path.run(8.0)
    assert path.utilisation(4.0, before) > 0.95


def in_recovery_ack(
    cc: BBR, t: float, acked: int, in_flight: int, delivered: int, lost: int = 0
) -> None:
    rs = AckSample()
    rs.acked, rs.in_flight, rs.prior_in_flight = acked, in_flight, in_flight + acked + lost
    rs.delivered, rs.lost, rs.in_recovery = delivered, lost, True
    rs.rtt = rs.srtt = 0.05
    rs.delivery_rate = 1e6
    cc.on_ack(rs, t)


def steady_bbr() -> tuple[BBR, float]:
    cc = BBR(MSS, 10, seed=1)
    t = feed(cc, 0.0, 1e6, 0.05, rounds=12)
    assert cc.mode == PROBE_BW
    return cc, t


def test_recovery_packet_conservation_then_restore() -> None:
    cc, t = steady_bbr()
    prior = cc.cwnd
    d = cc._test_delivered  # type: ignore[attr-defined]
    cc.save_undo_state()
    cc.on_congestion_event(t, 40 * MSS)
    # First round of recovery: cwnd = in flight + acked (packet conservation).
    in_recovery_ack(cc, t, MSS, 30 * MSS, d + MSS, lost=2 * MSS)
    assert cc.cwnd == 31 * MSS and cc.packet_conservation
    in_recovery_ack(cc, t + 0.01, 2 * MSS, 29 * MSS, d + 3 * MSS)
    assert cc.cwnd == 31 * MSS  # still at most what was acked is sent
    # After a round (data sent since is delivered): slow start toward the target.
    in_recovery_ack(cc, t + 0.06, MSS, 29 * MSS, d + 32 * MSS)
    assert not cc.packet_conservation and cc.cwnd == 32 * MSS
    # Losses come off cwnd.
    in_recovery_ack(cc, t + 0.07, MSS, 27 * MSS, d + 33 * MSS, lost=2 * MSS)
    assert cc.cwnd == 31 * MSS
    # Recovery ends: the next ACK restores the cwnd from before it.
    cc.on_recovery_end(t + 0.1)
    feed(cc, t + 0.1, 1e6, 0.05, rounds=1)
    assert prior > 80 * MSS and cc.cwnd == cc._target_cwnd() > 80 * MSS and cc.btl_bw == 1e6


def test_back_to_back_recoveries_are_one_to_bbr() -> None:
    """An episode that ends and another that begins before the next ACK: no new
    packet conservation (as Linux, which samples the recovery state per ACK)."""
    cc, t = steady_bbr()
    d = cc._test_delivered  # type: ignore[attr-defined]
    cc.on_congestion_event(t, 40 * MSS)
    in_recovery_ack(cc, t, MSS, 30 * MSS, d + MSS)
    in_recovery_ack(cc, t + 0.06, MSS, 30 * MSS, d + 40 * MSS)  # a round later
    grown = cc.cwnd
    assert not cc.packet_conservation and grown == 32 * MSS
    cc.on_recovery_end(t + 0.07)
    cc.on_congestion_event(t + 0.07, 40 * MSS)
    in_recovery_ack(cc, t + 0.07, MSS, 30 * MSS, d + 41 * MSS)
    assert not cc.packet_conservation and cc.cwnd == grown + MSS
    # Whereas an episode starting on a later ACK conserves again.
    cc.on_recovery_end(t + 0.08)
    in_recovery_ack(cc, t + 0.08, MSS, 30 * MSS, d + 42 * MSS)
    cc.on_congestion_event(t + 0.09, 40 * MSS)
    in_recovery_ack(cc, t + 0.09, MSS, 20 * MSS, d + 43 * MSS)
    assert cc.packet_conservation and cc.cwnd == 21 * MSS


def test_rto_then_restore() -> None:
    cc, t = steady_bbr()
    prior = cc.cwnd
    btl = cc.btl_bw
    cc.save_undo_state()
    cc.on_rto(t, 40 * MSS)
    assert cc.cwnd == MSS  # all in flight presumed lost: 1 segment
    d = cc._test_delivered  # type: ignore[attr-defined]
    in_recovery_ack(cc, t + 0.05, MSS, 0, d + MSS)
    assert cc.cwnd == 4 * MSS  # grows by what is acked, at least 4 segments
    in_recovery_ack(cc, t + 0.1, 2 * MSS, MSS, d + 3 * MSS)
    assert cc.cwnd == 6 * MSS
    cc.on_recovery_end(t + 0.15)
    feed(cc, t + 0.15, 1e6, 0.05, rounds=1)
    assert prior > 80 * MSS and cc.cwnd == cc._target_cwnd() > 80 * MSS and cc.btl_bw == btl


def test_without_an_rtt_sample_cwnd_is_capped_at_the_initial_window() -> None:
    """An RTO before any RTT sample (all ACKed data was retransmitted): slow start
    from 1 segment toward the initial window, no further (Linux: at least 4
    segments, and + acked while fewer than the initial window were delivered)."""
    cc = BBR(MSS, 10, seed=1)
    cc.on_rto(1.0, 10 * MSS)
    rs = AckSample()  # no RTT sample, no delivery-rate sample
    for i in range(30):
        rs.acked, rs.delivered, rs.in_recovery = MSS, (i + 1) * MSS, True
        cc.on_ack(rs, 2.0 + 0.01 * i)
    assert cc.cwnd == 12 * MSS and cc.min_rtt == INF


def test_undo_leaves_recovery_and_rechecks_full_pipe() -> None:
    cc, t = steady_bbr()
    prior = cc.cwnd
    d = cc._test_delivered  # type: ignore[attr-defined]
    cc.save_undo_state()
    cc.on_congestion_event(t, 40 * MSS)
    in_recovery_ack(cc, t, MSS, 20 * MSS, d + MSS)
    assert cc.cwnd == 21 * MSS
    cc.undo(t + 0.01)
    assert cc.full_bw == 0 and cc.full_bw_count == 0
    feed(cc, t + 0.01, 1e6, 0.05, rounds=1)
    assert prior > 80 * MSS and cc.cwnd == cc._target_cwnd() > 80 * MSS


def test_idle_restart_paces_at_the_estimate_and_keeps_cwnd() -> None:
    cc, t = steady_bbr()
    cwnd = cc.cwnd
    cc.on_idle_restart(t + 5.0)
    assert cc.cwnd == cwnd
    assert cc.pacing_rate == pytest.approx(cc.btl_bw * (1 - PACING_MARGIN))


def test_pacing_rate_from_first_rtt_then_never_zero() -> None:
    cc = BBR(MSS, 10, seed=1)
    rs = AckSample()
    rs.acked, rs.delivered, rs.rtt, rs.srtt, rs.in_flight = MSS, MSS, 0.1, 0.1, 9 * MSS
    cc.on_ack(rs, 0.1)  # no delivery-rate sample yet: pace from cwnd / srtt
    assert cc.pacing_rate == pytest.approx(HIGH_GAIN * 10 * MSS / 0.1 * (1 - PACING_MARGIN))
    cc.on_rto(1.0, 9 * MSS)
    assert cc.pacing_rate > 0


def test_stats() -> None:
    cc, _ = steady_bbr()
    st = cc.stats()
    for key in (
        "cc_state",
        "cc_btl_bw",
        "cc_min_rtt",
        "cc_pacing_gain",
        "cc_cwnd_gain",
        "cc_round_count",
        "cc_full_bw_reached",
    ):
        assert key in st
    assert st["cc_state"] == PROBE_BW and st["cc_btl_bw"] == 1e6 and st["cc_min_rtt"] == 0.05
    assert st["cc_round_count"] == 12 and st["cc_full_bw_reached"] is True
    assert BBR(MSS, 10).stats()["cc_min_rtt"] == -1.0


def test_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The Python block of docs/congestion.md runs as written: a transfer over a
    lossy simulated path with Config(congestion_control="bbr")."""
    text = (FilePath(__file__).resolve().parent.parent / "docs" / "congestion.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/congestion.md", "exec"), scope)
    assert scope["app"].terminated and scope["conn"].retransmissions > 0
    assert isinstance(scope["conn"].cc, BBR)
    assert capsys.readouterr().out.startswith("bbr ")


def test_startup_is_loss_agnostic() -> None:
    """As Linux's BBR v1 (tcp_bbr.c): only the full-pipe rule (bandwidth growing less
    than 25% for three rounds) ends STARTUP. A round of fast recovery that lost 6
    full segments of 60 while the bandwidth samples still double does not: random
    loss must not stop STARTUP at a fraction of the link, and a flow joining a full
    queue must not stop at the share the others leave it (draft-ietf-ccwg-bbr's
    BBRCheckStartupHighLoss belongs to BBR v2/v3, whose inflight_hi it feeds)."""
    cc = BBR(MSS, 10, seed=3)
    t = feed(cc, 0.0, 1e5, 0.05, rounds=2)
    rate = 2e5
    cc.on_congestion_event(t, cc.cwnd)
    rs = AckSample()
    delivered = cc._test_delivered  # type: ignore[attr-defined]
    for rnd in range(2):  # the recovery round, then the next round start
        rate *= 2  # growing: the full-pipe rule does not fire
        for i in range(10):
            delivered += MSS
            rs.acked, rs.delivered, rs.delivery_rate, rs.rtt, rs.srtt = (
                MSS,
                delivered,
                rate,
                0.05,
                0.05,
            )
            rs.in_flight = rs.prior_in_flight = 20 * MSS
            rs.round_start = i == 0
            rs.app_limited = False
            rs.lost = MSS if rnd == 0 and i < 6 else 0
            rs.in_recovery = True
            cc.on_ack(rs, t)
            t += 0.005
    assert cc.btl_bw >= 8e5  # the samples were taken
    assert not cc.full_bw_reached and cc.mode == STARTUP


def test_startup_overshoots_a_shallow_buffer_once() -> None:
    """A 1-BDP buffer: STARTUP's overshoot costs one recovery, after which BBR is
    in PROBE_BW with the queue drained (no second STARTUP burst after the restored
    window)."""
    cc, path, _ = run_bbr(3.0, buffer=BDP)
    assert path.queue_drops > 0 and cc.mode == PROBE_BW
    drops = path.queue_drops
    path.run(6.0)
    assert path.queue_drops - drops < 0.01 * drops + 5
