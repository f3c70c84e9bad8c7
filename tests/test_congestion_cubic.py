"""CUBIC (RFC 9438) with HyStart++ (RFC 9406), driven by synthetic ACK samples.

Each test plays the connection: it fills an :class:`AckSample` per ACK and calls
the hooks in the order base.py documents. The expected windows are computed here
from the RFC's formulas, in segments, independently of the controller's code.
"""

from __future__ import annotations

import pytest

from rudp.engine.congestion import ALGORITHMS, INITIAL_SSTHRESH, AckSample, Cubic, lookup

MSS = 1000
C = 0.4  # RFC 9438 §5.1
BETA = 0.7  # RFC 9438 §4.6
ALPHA = 3 * (1 - BETA) / (1 + BETA)  # RFC 9438 §4.3


def w_cubic(t: float, w_max: float, k: float) -> float:
    """RFC 9438 eq. 1, in segments."""
    return C * (t - k) ** 3 + w_max


def k_of(w_max: float, cwnd_epoch: float) -> float:
    """RFC 9438 eq. 2, in seconds (segments in)."""
    return ((w_max - cwnd_epoch) / C) ** (1 / 3)


def sample(
    acked: int = MSS,
    srtt: float = 0.1,
    rtt: float = -1.0,
    limited: bool = True,
    round_start: bool = False,
) -> AckSample:
    rs = AckSample()
    rs.acked = acked
    rs.srtt = srtt
    rs.rtt = rtt
    rs.is_cwnd_limited = limited
    rs.round_start = round_start
    return rs


def ack_clock(cc: Cubic, start: float, until: float, rtt: float, limited: bool = True) -> float:
    """A window-limited flow's ACK clock: one ACK per MSS, cwnd/MSS ACKs spread
    evenly over each RTT, from ``start`` to ``until``; returns the next ACK time."""
    t = start
    while t < until:
        cc.on_ack(sample(srtt=rtt, limited=limited), t)
        t += rtt / max(cc.cwnd // MSS, 1)
    return t


def after_congestion_event(w: int = 100) -> Cubic:
    """A controller in congestion avoidance that just lost at cwnd = w segments
    with the window full (flight_size = cwnd) and finished recovery at t = 0."""
    cc = Cubic(MSS, 10)
    cc.cwnd = w * MSS
    cc.ssthresh = w * MSS // 2
    cc.save_undo_state()
    cc.on_congestion_event(0.0, cc.cwnd)
    cc.on_recovery_end(0.0)
    return cc


def test_registered_and_factory_signature() -> None:
    assert ALGORITHMS["cubic"] is Cubic and lookup("cubic") is Cubic
    cc = ALGORITHMS["cubic"](1400, 10)
    assert cc.name == "cubic" and cc.uses_prr
    assert cc.cwnd == 14000 and cc.ssthresh == INITIAL_SSTHRESH and cc.pacing_rate == 0
    cc.set_mss(1200)  # the handshake settled the MSS
    assert cc.cwnd == 12000 and cc.mss == 1200


def test_multiplicative_decrease_beta_and_floor() -> None:
    cc = after_congestion_event(100)
    # RFC 9438 §4.6: ssthresh = flight_size * beta_cubic, cwnd = ssthresh.
    assert cc.ssthresh == cc.cwnd == 70 * MSS
    assert cc.w_max == 100 * MSS and cc.cwnd_prior == 100 * MSS
    # ... and at least 2 MSS.
    cc.on_congestion_event(1.0, 2 * MSS)
    assert cc.ssthresh == cc.cwnd == 2 * MSS


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
def test_window_follows_w_cubic(t: float) -> None:
    """cwnd at time t after the epoch start equals W_cubic(t), concave then convex."""
    cc = after_congestion_event(100)
    t0 = 1.0  # the first ACK of congestion avoidance starts the epoch
    ack_clock(cc, t0, t0 + t, rtt=0.1)
    k = k_of(100, 70)
    assert k == pytest.approx((100 * (1 - BETA) / C) ** (1 / 3))
    assert cc.t_epoch == t0 and cc.k == pytest.approx(k, rel=1e-9)
    expected = w_cubic(t, 100, k)
    # The ACK clock quantizes time by RTT / cwnd: a fraction of a segment.
    assert cc.cwnd / MSS == pytest.approx(expected, abs=0.5)
    # t < K: below W_max (concave); t > K: above it (convex).
    assert (cc.cwnd < 100 * MSS) == (t < k)


def test_target_is_w_cubic_one_rtt_ahead() -> None:
    """§4.2: each ACK adds (target - cwnd) / cwnd per segment, target = W_cubic(t + RTT)."""
    cc = after_congestion_event(100)
    cc.on_ack(sample(srtt=0.1), 1.0)  # starts the epoch
    before = cc.cwnd
    cc.on_ack(sample(acked=4 * MSS, srtt=0.1), 2.0)
    target = w_cubic(1.0 + 0.1, 100, cc.k) * MSS
    assert cc.cwnd - before == pytest.approx((target - before) / before * 4 * MSS, abs=1)


def test_target_clamped_to_one_and_a_half_cwnd() -> None:
    cc = after_congestion_event(100)
    cc.on_ack(sample(), 1.0)
    # 30 s into the epoch W_cubic(t + RTT) is ~ 8000 segments: target = 1.5 cwnd,
    # so an ACK of 10 segments adds half of them.
    before = cc.cwnd
    assert w_cubic(30.1, 100, cc.k) > 1.5 * before / MSS
    cc.on_ack(sample(acked=10 * MSS), 31.0)
    assert cc.cwnd - before == pytest.approx(5 * MSS, abs=1)


def test_target_clamped_to_cwnd_no_growth_above_the_curve() -> None:
    cc = after_congestion_event(100)
    cc.on_ack(sample(), 1.0)
    cc.cwnd = 95 * MSS  # above W_cubic(t + RTT) ~ 81 segments at t = 0.5 s
    assert w_cubic(0.6, 100, cc.k) < 95
    cc.on_ack(sample(acked=10 * MSS), 1.5)
    assert cc.cwnd == 95 * MSS  # target = cwnd: neither growth nor decrease


def test_reno_friendly_region_wins_with_a_short_rtt() -> None:
    """§4.3: with RTT = 20 ms, W_est (alpha_cubic segments per RTT until it reaches
    cwnd_prior, then 1) outgrows W_cubic, and cwnd follows W_est."""
    rtt = 0.02
    cc = after_congestion_event(100)
    t0 = 1.0
    ack_clock(cc, t0, t0 + 2.0, rtt=rtt)
    t_reach = (100 - 70) * rtt / ALPHA  # W_est reaches cwnd_prior = 100 segments
    w_est = 100 + (2.0 - t_reach) / rtt
    assert cc.cwnd / MSS == pytest.approx(w_est, rel=0.02)
    assert cc.cwnd / MSS > 1.4 * w_cubic(2.0, 100, cc.k)
    # With a long RTT the cubic curve is above W_est and wins instead.
    slow = after_congestion_event(100)
    ack_clock(slow, t0, t0 + 2.0, rtt=0.1)
    assert slow.cwnd / MSS == pytest.approx(w_cubic(2.0, 100, slow.k), abs=0.5)
    assert slow.w_est < slow.cwnd


def test_fast_convergence() -> None:
    """§4.7: a loss below the previous W_max lowers W_max further."""
    cc = after_congestion_event(100)
    assert cc.w_max == 100 * MSS
    cc.on_congestion_event(1.0, cc.cwnd)  # at cwnd = 70 segments < W_max
    assert cc.w_max == pytest.approx(70 * MSS * (1 + BETA) / 2)
    assert cc.ssthresh == 49 * MSS
    cc.on_recovery_end(1.0)
    cc.on_ack(sample(), 2.0)
    assert cc.k == pytest.approx(k_of(70 * (1 + BETA) / 2, 49))
    # A loss at or above W_max just remembers cwnd.
    up = after_congestion_event(100)
    up.cwnd = 120 * MSS
    up.on_congestion_event(1.0, up.cwnd)
    assert up.w_max == 120 * MSS


def test_no_growth_when_not_cwnd_limited_and_epoch_excludes_the_pause() -> None:
    """§5.8: an application-limited flow does not grow cwnd, and §4.2: t does not
    include that time, so growth resumes on the curve where it paused."""
    ss = Cubic(MSS, 10)
    ss.on_ack(sample(acked=5 * MSS, limited=False), 0.1)
    assert ss.cwnd == 10 * MSS
    straight = after_congestion_event(100)
    paused = after_congestion_event(100)
    t = ack_clock(straight, 1.0, 2.0, rtt=0.1)
    t = ack_clock(paused, 1.0, 2.0, rtt=0.1)
    frozen = paused.cwnd
    ack_clock(paused, t, t + 5.0, rtt=0.1, limited=False)
    assert paused.cwnd == frozen
    ack_clock(straight, t, t + 1.0, rtt=0.1)
    ack_clock(paused, t + 5.0, t + 6.0, rtt=0.1)
    assert paused.cwnd == pytest.approx(straight.cwnd, abs=MSS)
    assert paused.cwnd / MSS == pytest.approx(w_cubic(2.0, 100, paused.k), abs=1.0)


def test_slow_start_counts_every_delivered_byte() -> None:
    cc = Cubic(MSS, 10)
    cc.on_ack(sample(acked=10 * MSS), 0.1)  # a coalesced ACK (no 2-MSS cap)
    assert cc.cwnd == 20 * MSS
    cc.ssthresh = 25 * MSS
    cc.on_ack(sample(acked=10 * MSS), 0.2)  # stops at ssthresh, the rest is CA
    assert 25 * MSS <= cc.cwnd < 26 * MSS and cc.t_epoch == 0.2


def test_rto_then_k_zero_and_w_max_at_ca_start() -> None:
    """§4.8: cwnd to 1 MSS, ssthresh by beta_cubic; the first CA stage after the
    timeout uses K = 0 and W_max = cwnd at its start."""
    cc = Cubic(MSS, 10)
    cc.cwnd = 100 * MSS
    cc.ssthresh = 50 * MSS
    cc.save_undo_state()
    cc.on_rto(0.0, 100 * MSS)
    assert cc.cwnd == MSS and cc.ssthresh == 70 * MSS
    cc.save_undo_state()
    cc.on_rto(1.0, MSS)  # backed-off RTO: ssthresh is kept
    assert cc.cwnd == MSS and cc.ssthresh == 70 * MSS
    t = 2.0
    rtt = 0.2  # long enough for the cubic curve to beat W_est by t = 4 s
    while cc.t_epoch is None:  # slow start to ssthresh, then the CA stage begins
        cc.on_ack(sample(acked=MSS, srtt=rtt), t)
        t += 0.01
    t0 = cc.t_epoch
    assert t0 is not None and cc.k == 0.0 and cc.w_max == cc.cwnd_epoch == 70 * MSS
    ack_clock(cc, t, t0 + 4.0, rtt=rtt)
    assert cc.cwnd / MSS == pytest.approx(w_cubic(4.0, 70, 0.0), rel=0.01)
    assert cc.w_est < cc.cwnd


def test_undo_restores_the_saved_state() -> None:
    """§4.9.2: a spurious loss restores cwnd, cwnd_prior, ssthresh, W_max, K,
    t_epoch and W_est."""
    cc = after_congestion_event(100)
    t = ack_clock(cc, 1.0, 3.0, rtt=0.1)
    state = (cc.cwnd, cc.cwnd_prior, cc.ssthresh, cc.w_max, cc.k, cc.t_epoch, cc.w_est)
    cc.save_undo_state()
    cc.on_congestion_event(t, cc.cwnd)
    assert cc.cwnd < state[0] and cc.t_epoch is None
    cc.undo(t + 0.05)
    assert (cc.cwnd, cc.cwnd_prior, cc.ssthresh, cc.w_max, cc.k, cc.t_epoch, cc.w_est) == state
    # Growth goes on along the original curve.
    ack_clock(cc, t + 0.05, 1.0 + 4.0, rtt=0.1)
    assert cc.cwnd / MSS == pytest.approx(w_cubic(4.0, 100, cc.k), abs=0.5)
    # An RTO found spurious is undone the same way.
    saved = (cc.cwnd, cc.ssthresh, cc.w_max, cc.t_epoch)
    cc.save_undo_state()
    cc.on_rto(6.0, cc.cwnd)
    cc.undo(6.1)
    assert (cc.cwnd, cc.ssthresh, cc.w_max, cc.t_epoch) == saved


def test_undo_after_cwnd_regrew_keeps_current_state() -> None:
    cc = after_congestion_event(100)
    cc.save_undo_state()
    cc.on_congestion_event(0.5, cc.cwnd)  # cwnd_prior = 70 segments
    cc.on_recovery_end(0.5)
    ack_clock(cc, 1.0, 8.0, rtt=0.1)  # back above cwnd_prior
    now = (cc.cwnd, cc.w_max, cc.t_epoch)
    cc.undo(8.0)
    assert (cc.cwnd, cc.w_max, cc.t_epoch) == now


def test_idle_restart() -> None:
    cc = after_congestion_event(100)
    ack_clock(cc, 1.0, 8.0, rtt=0.1)
    big = cc.cwnd
    assert 3 * big // 4 > cc.ssthresh
    cc.on_idle_restart(10.0)
    # RFC 5681 §4.1 restart window; ssthresh keeps 3/4 of the old cwnd.
    assert cc.cwnd == 10 * MSS and cc.ssthresh == 3 * big // 4 and cc.t_epoch is None
    # Slow start back to ssthresh, then a new epoch on the same W_max.
    t = 10.0
    while cc.t_epoch is None:
        cc.on_ack(sample(acked=MSS), t)
        t += 0.001
    assert cc.cwnd_epoch == 3 * big // 4 and cc.w_max == 100 * MSS


def feed_round(cc: Cubic, t: float, rtts: list[float], acked: int = MSS) -> float:
    """One packet-timed round: an ACK per RTT sample, the first marked round_start."""
    for i, rtt in enumerate(rtts):
        cc.on_ack(sample(acked=acked, rtt=rtt, srtt=rtt, round_start=i == 0), t)
        t += 0.001
    return t


def test_hystart_enters_css_on_delay_increase_then_congestion_avoidance() -> None:
    cc = Cubic(MSS, 10)
    feed_round(cc, 0.0, [0.100] * 10)
    feed_round(cc, 0.1, [0.100] * 10)
    assert cc.hystart == "ss"
    # RttThresh = clamp(100 ms / 8, 4 ms, 16 ms) = 12.5 ms, judged only once the
    # round has N_RTT_SAMPLE = 8 samples.
    t = feed_round(cc, 0.2, [0.1125] * 7)
    assert cc.hystart == "ss"
    before = cc.cwnd
    cc.on_ack(sample(rtt=0.1125, srtt=0.1125), t)  # the 8th sample of the round
    assert cc.hystart == "css" and cc.cwnd == before + MSS
    # CSS grows by acked / CSS_GROWTH_DIVISOR.
    before = cc.cwnd
    cc.on_ack(sample(acked=8 * MSS, rtt=0.113, srtt=0.113), t + 0.001)
    assert cc.cwnd == before + 2 * MSS
    # The partial round counts: four more rounds of high RTT complete CSS_ROUNDS
    # = 5, and the next round starts congestion avoidance with ssthresh = cwnd.
    for r in range(4):
        feed_round(cc, 0.4 + 0.1 * r, [0.115] * 10)
        assert cc.hystart == "css"
    cc.on_ack(sample(acked=MSS, rtt=0.115, srtt=0.115, round_start=True), 0.9)
    assert cc.hystart == "off" and cc.ssthresh <= cc.cwnd
    # RFC 9438 §4.10: W_max undefined -> K = 0, W_max = cwnd at the CA start.
    assert cc.k == 0.0 and cc.w_max == cc.cwnd_epoch == cc.cwnd_prior == cc.ssthresh


def test_hystart_resumes_slow_start_when_rtt_falls_back() -> None:
    cc = Cubic(MSS, 10)
    feed_round(cc, 0.0, [0.100] * 10)
    feed_round(cc, 0.1, [0.100] * 10)
    feed_round(cc, 0.2, [0.120] * 10)
    assert cc.hystart == "css"
    feed_round(cc, 0.3, [0.119] * 10)  # below the CSS baseline (120 ms)
    assert cc.hystart == "ss"
    before = cc.cwnd
    cc.on_ack(sample(acked=4 * MSS, rtt=0.119, srtt=0.119), 0.4)
    assert cc.cwnd == before + 4 * MSS  # full slow-start growth again


@pytest.mark.parametrize(
    ("base", "threshold"),
    [(0.020, 0.004), (0.100, 0.0125), (0.200, 0.016)],  # clamp to [4 ms, 16 ms]
)
def test_hystart_rtt_threshold_clamp(base: float, threshold: float) -> None:
    for delta, enters in ((threshold * 0.98, False), (threshold * 1.02, True)):
        cc = Cubic(MSS, 10)
        feed_round(cc, 0.0, [base] * 10)
        feed_round(cc, 1.0, [base] * 10)
        feed_round(cc, 2.0, [base + delta] * 10)
        assert (cc.hystart == "css") is enters, (base, delta)


def test_hystart_only_in_the_initial_slow_start() -> None:
    cc = Cubic(MSS, 10)
    cc.cwnd = 100 * MSS
    cc.on_congestion_event(0.0, cc.cwnd)
    cc.on_recovery_end(0.0)
    cc.on_rto(0.5, 100 * MSS)  # slow start again, from 1 MSS up to 70 MSS
    feed_round(cc, 1.0, [0.100] * 10)
    feed_round(cc, 1.1, [0.100] * 10)
    feed_round(cc, 1.2, [0.200] * 10)
    assert cc.hystart == "off" and cc.cwnd == 31 * MSS  # plain slow start


def test_stats() -> None:
    cc = after_congestion_event(100)
    cc.on_ack(sample(), 1.0)
    st = cc.stats()
    assert set(st) == {"cc_w_max", "cc_k", "cc_epoch", "cc_cwnd_prior", "cc_w_est", "cc_hystart"}
    assert st["cc_w_max"] == 100 * MSS and st["cc_epoch"] == 1.0
    assert st["cc_k"] == pytest.approx(75 ** (1 / 3))
