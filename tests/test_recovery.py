"""Drill tests for SACK, D-SACK, timestamps, RACK-TLP, PRR and undo.

Each test plays the peer by hand (tests/drill.py): a segment in at time t, exactly
this segment out. Our ISN and our timestamp offset are both ``ISN`` in the drill
(its ISN function returns one value for every key), so our TSval at time t is
``int(t * 1000) + ISN``; the peer's clock is whatever the test says.
"""

from __future__ import annotations

import pytest
from drill import ANY, ISN, RTT, Drill, pattern

from rudp import Config
from rudp.engine import ConnectionEstablished, State
from rudp.engine.congestion.reno import Reno
from rudp.engine.recovery.loss import LossRecovery
from rudp.engine.recovery.rtt import RttEstimator
from rudp.engine.timers import Timer
from rudp.seq import SEQ_MASK
from rudp.wire.segment import OPT_MSS, OPT_SACK_PERM, OPT_TIMESTAMP, OPT_WSCALE

S = State
PEER_TS0 = 5000  # the peer's TSval in its SYN,ACK


def tsv(t: float) -> int:
    """Our TSval at time ``t``."""
    return (int(t * 1000) + ISN) & SEQ_MASK


def opened(
    d: Drill, *, sack: bool = True, ts: bool = True, wnd: int = 65535, mss: int = 1000
) -> Drill:
    """Active open; the peer's SYN,ACK at RTT offers SACK and/or timestamps."""
    d.connect(at=0.0)
    d.expect("S", seq=d.L(0), at=0.0, sack_perm=True, ts=(tsv(0), 0))
    d.inject(
        "S.",
        seq=d.R(0),
        ack=d.L(1),
        mss=mss,
        sack_perm=sack,
        ts=(PEER_TS0, tsv(0)) if ts else None,
        wnd=wnd,
        at=RTT,
    )
    d.expect(".", seq=d.L(1), ack=d.R(1), at=RTT, ts=(tsv(RTT), PEER_TS0) if ts else None)
    assert d.state is S.ESTABLISHED
    d.expect_events(ConnectionEstablished)
    st = d.conn.stats()
    assert (st["sack"], st["timestamps"]) == (sack, ts)
    return d


# ---------------------------------------------------------------------------
# Negotiation and layout


def test_syn_options_laid_out_as_linux() -> None:
    """MSS, then SACK-permitted sharing a word group with timestamps, then NOP+WS:
    20 bytes, exactly what Linux sends (RFC 2018 §2, RFC 7323 Appendix A)."""
    d = Drill()
    d.connect(at=0.0)
    (sent,) = d.take_sent()
    opts = sent.data[20 : (sent.data[12] >> 4) * 4]
    assert len(opts) == 20
    assert opts[0:2] == bytes((OPT_MSS, 4))
    assert opts[4:8] == bytes((OPT_SACK_PERM, 2, OPT_TIMESTAMP, 10))
    assert int.from_bytes(opts[8:12], "big") == tsv(0) and opts[12:16] == bytes(4)
    assert opts[16:19] == bytes((1, OPT_WSCALE, 3))


def test_synack_echoes_only_what_the_syn_offered() -> None:
    for sack, ts in ((False, False), (True, False), (False, True), (True, True)):
        d = Drill()
        d.listen()
        d.inject("S", seq=d.R(0), mss=1000, sack_perm=sack, ts=(77, 0) if ts else None, at=0.0)
        d.expect(
            "S.",
            seq=d.L(0),
            ack=d.R(1),
            at=0.0,
            sack_perm=sack,
            ts=(tsv(0), 77) if ts else None,
        )


def test_no_sack_or_timestamps_when_disabled_locally() -> None:
    d = Drill(Config(sack=False, timestamps=False))
    d.listen()
    d.inject("S", seq=d.R(0), mss=1000, sack_perm=True, ts=(77, 0), at=0.0)
    d.expect("S.", seq=d.L(0), ack=d.R(1), at=0.0, sack_perm=False, ts=None)


def test_every_segment_carries_timestamps_once_negotiated() -> None:
    d = opened(Drill())
    d.send(pattern(0, 2000), at=1.0)
    d.expect(".", seq=d.L(1), ack=d.R(1), length=1000, at=1.0, ts=(tsv(1.0), PEER_TS0))
    d.expect("P.", seq=d.L(1001), ack=d.R(1), length=1000, at=1.0, ts=(tsv(1.0), PEER_TS0))


# ---------------------------------------------------------------------------
# Receiver: SACK and D-SACK generation, one ACK per out-of-order segment


def _peer_data(d: Drill, data: bytes, i: int, at: float, tsval: int) -> None:
    d.inject(
        ".",
        seq=d.R(1 + 1000 * i),
        ack=d.L(1),
        payload=data[1000 * i : 1000 * (i + 1)],
        ts=(tsval, tsv(RTT)),
        at=at,
    )


def test_sack_blocks_after_holes_most_recent_first() -> None:
    d = opened(Drill())
    data = pattern(0, 6000)
    _peer_data(d, data, 0, 1.0, 6000)  # in order: a delayed ACK is owed
    d.expect_nothing()
    _peer_data(d, data, 2, 1.001, 6001)  # hole at 1: immediate ACK with a SACK block
    d.expect(".", seq=d.L(1), ack=d.R(1001), at=1.001, sack=[(d.R(2001), d.R(3001))])
    _peer_data(d, data, 4, 1.002, 6002)  # RFC 2018 §4: the newest block first
    d.expect(
        ".",
        seq=d.L(1),
        ack=d.R(1001),
        at=1.002,
        sack=[(d.R(4001), d.R(5001)), (d.R(2001), d.R(3001))],
        ts=(ANY, 6000),  # TS.Recent: the last in-order segment (RFC 7323 §4.3)
    )
    _peer_data(d, data, 3, 1.003, 6003)  # bridges 2..4: one block
    d.expect(".", seq=d.L(1), ack=d.R(1001), at=1.003, sack=[(d.R(2001), d.R(5001))])
    _peer_data(d, data, 1, 1.004, 6004)  # fills the hole: a plain cumulative ACK
    d.expect(".", seq=d.L(1), ack=d.R(5001), at=1.004, sack=None, ts=(ANY, 6004))
    d.expect_nothing()
    assert d.read() == data[:5000]


def test_dsack_for_duplicate_below_the_cumulative_ack() -> None:
    """RFC 2883 §4.1.1: a duplicate of delivered data is reported as the first block."""
    d = opened(Drill())
    data = pattern(0, 2000)
    _peer_data(d, data, 0, 1.0, 6000)
    _peer_data(d, data, 1, 1.001, 6001)  # two segments of the size seen: ACK at once
    d.expect(".", seq=d.L(1), ack=d.R(2001), at=1.001, sack=None)
    _peer_data(d, data, 0, 1.1, 6002)  # a spurious retransmission
    d.expect(".", seq=d.L(1), ack=d.R(2001), at=1.1, sack=[(d.R(1), d.R(1001))])
    assert d.conn.dsacks_sent == 1
    d.expect_nothing()


def test_dsack_for_duplicate_of_out_of_order_data() -> None:
    """RFC 2883 §4.1.2: the D-SACK block, then the block that contains it."""
    d = opened(Drill())
    data = pattern(0, 4000)
    _peer_data(d, data, 0, 1.0, 6000)
    _peer_data(d, data, 2, 1.001, 6001)
    _peer_data(d, data, 3, 1.002, 6002)
    d.take_sent()
    _peer_data(d, data, 3, 1.003, 6003)  # duplicate of held out-of-order data
    d.expect(
        ".",
        seq=d.L(1),
        ack=d.R(1001),
        at=1.003,
        sack=[(d.R(3001), d.R(4001)), (d.R(2001), d.R(4001))],
    )


def test_one_immediate_ack_per_out_of_order_segment_in_one_batch() -> None:
    """RFC 5681 §4.2 (issue: duplicate ACKs were merged per receive batch): three
    out-of-order segments processed together still draw three ACKs, each carrying
    the SACK state after its own arrival."""
    d = opened(Drill())
    data = pattern(0, 5000)
    segs = [
        {
            "flags": ".",
            "seq": d.R(1 + 1000 * i),
            "ack": d.L(1),
            "payload": data[1000 * i : 1000 * (i + 1)],
            "ts": (6000 + i, tsv(RTT)),
        }
        for i in (2, 3, 4)
    ]
    d.inject_batch(segs, at=1.0)
    d.expect(".", seq=d.L(1), ack=d.R(1), at=1.0, sack=[(d.R(2001), d.R(3001))])
    d.expect(".", seq=d.L(1), ack=d.R(1), at=1.0, sack=[(d.R(2001), d.R(4001))])
    d.expect(".", seq=d.L(1), ack=d.R(1), at=1.0, sack=[(d.R(2001), d.R(5001))])
    d.expect_nothing()


def test_one_duplicate_ack_per_out_of_order_segment_without_sack() -> None:
    d = opened(Drill(), sack=False, ts=False)
    data = pattern(0, 5000)
    segs = [
        {"flags": ".", "seq": d.R(1 + 1000 * i), "ack": d.L(1), "payload": data[1000 * i :][:1000]}
        for i in (1, 2, 3)
    ]
    d.inject_batch(segs, at=1.0)
    for _ in range(3):
        d.expect(".", seq=d.L(1), ack=d.R(1), at=1.0, sack=None)
    d.expect_nothing()


# ---------------------------------------------------------------------------
# Timestamps: PAWS and RTTM


def test_paws_drops_an_old_duplicate_and_acks() -> None:
    d = opened(Drill())
    data = pattern(0, 2000)
    _peer_data(d, data, 0, 1.0, 6000)
    d.advance(1.05)
    d.take_sent()  # the delayed ACK
    # An old duplicate from a previous incarnation of the sequence space: in window,
    # but TSval older than TS.Recent (RFC 7323 §5.3 R1).
    d.inject(".", seq=d.R(1001), ack=d.L(1), payload=b"old!", ts=(5999, tsv(RTT)), at=1.1)
    d.expect(".", seq=d.L(1), ack=d.R(1001), at=1.1)
    assert d.conn.paws_drops == 1 and d.conn.rcv_nxt == d.R(1001)
    _peer_data(d, data, 1, 1.2, 6001)  # the real one is accepted
    assert d.read() == data


def test_rtt_measured_on_every_ack_with_appendix_g_gains() -> None:
    """RFC 7323 §4 / Appendix G: a sample per ACK, gains divided by the expected
    samples per RTT, ceil(FlightSize / (2 * SMSS))."""
    d = opened(Drill())  # handshake sample 0.25: SRTT 0.25, RTTVAR 0.125
    d.send(pattern(0, 4000), at=1.0)
    d.take_sent()
    d.inject(".", seq=d.R(1), ack=d.L(2001), ts=(6000, tsv(1.0)), at=1.3)  # sample 0.3
    rtt = d.conn.rtt
    # 4000 in flight -> 2 samples expected: alpha 1/16, beta 1/8.
    var = 7 / 8 * 0.125 + 1 / 8 * 0.05
    srtt = 15 / 16 * 0.25 + 1 / 16 * 0.3
    assert abs(rtt.rttvar - var) < 1e-12 and abs(rtt.srtt - srtt) < 1e-12
    d.inject(".", seq=d.R(1), ack=d.L(4001), ts=(6001, tsv(1.0)), at=1.4)  # sample 0.4
    # 2000 in flight -> 1 sample expected: RFC 6298's own gains.
    var2 = 3 / 4 * var + 1 / 4 * abs(srtt - 0.4)
    srtt2 = 7 / 8 * srtt + 1 / 8 * 0.4
    assert abs(rtt.rttvar - var2) < 1e-12 and abs(rtt.srtt - srtt2) < 1e-12
    assert rtt.min_rtt == RTT


def test_timestamp_rtt_measures_a_retransmission() -> None:
    """Karn's ambiguity is resolved by the echoed timestamp (RFC 7323 §4.1): a
    retransmission acknowledged with its own TSval yields a sample."""
    d = opened(Drill())
    d.send(pattern(0, 1000), at=1.0)
    d.take_sent()
    # One segment in flight: PTO = 2 * 0.25 + 0.2 = 0.7 < RTO 0.75: the probe resends.
    d.expect("P.", seq=d.L(1), ack=d.R(1), length=1000, at=1.7)
    assert d.conn.rtt.srtt == RTT
    d.inject(".", seq=d.R(1), ack=d.L(1001), ts=(peer_ts(2.0), tsv(1.7)), at=2.0)
    assert d.conn.rtt.srtt == 7 / 8 * RTT + 1 / 8 * 0.3


# ---------------------------------------------------------------------------
# Sender: scoreboard, RACK, TLP, PRR, undo


def _send_ten(d: Drill, at: float = 1.0) -> bytes:
    data = pattern(0, 10000)
    d.send(data, at=at)
    for i in range(10):
        d.expect("P." if i == 9 else ".", seq=d.L(1 + 1000 * i), ack=d.R(1), length=1000, at=at)
    return data


def peer_ts(t: float) -> int:
    """The peer's TSval at time ``t`` (its clock ticks in µs, so every test segment
    has a newer one)."""
    return 7000 + int(t * 1_000_000)


def _sack(d: Drill, ack: int, blocks: list[tuple[int, int]], at: float, echo: float = 1.0) -> None:
    d.inject(
        ".",
        seq=d.R(1),
        ack=d.L(ack),
        sack=tuple((d.L(a), d.L(b)) for a, b in blocks) or None,
        ts=(peer_ts(at), tsv(echo)),
        at=at,
    )


def test_sacked_data_is_never_retransmitted() -> None:
    d = opened(Drill())
    data = _send_ten(d)
    # The second segment is lost; the receiver SACKs what follows.
    _sack(d, 1001, [], 1.25)
    _sack(d, 1001, [(2001, 3001)], 1.251)
    _sack(d, 1001, [(2001, 4001)], 1.252)
    d.expect_nothing()
    # Three segments SACKed and no reordering seen: RACK's window is 0 (RFC 8985
    # §6.2 step 4), the hole was sent before them: lost. Fast recovery resends it.
    _sack(d, 1001, [(2001, 5001)], 1.253)
    d.expect(".", seq=d.L(1001), ack=d.R(1), payload=data[1000:2000], at=1.253)
    for k, t in ((6001, 1.254), (8001, 1.256), (10001, 1.258)):
        _sack(d, 1001, [(2001, k)], t)
    d.inject(".", seq=d.R(1), ack=d.L(10001), ts=(peer_ts(1.5), tsv(1.253)), at=1.5)
    d.expect_nothing(until=5.0)
    st = d.conn.stats()
    assert st["retransmissions"] == 1 and st["fast_retransmits"] == 1
    assert st["rto_expiries"] == 0 and st["recovery_state"] == "open"


def test_rack_waits_out_its_reordering_window() -> None:
    """With one segment SACKed beyond a hole, RACK waits RACK.rtt + min_rtt/4 after
    the hole's transmission (RFC 8985 §6.2): an ACK arriving within that window
    retransmits nothing."""
    d = opened(Drill())
    d.send(pattern(0, 3000), at=1.0)
    d.take_sent()
    _sack(d, 1, [(2001, 3001)], 1.25)  # only the last SACKed: reo_wnd = 0.25 / 4
    d.expect_nothing(until=1.31)
    d.inject(".", seq=d.R(1), ack=d.L(3001), ts=(peer_ts(1.31), tsv(1.0)), at=1.31)  # not lost
    d.expect_nothing(until=5.0)
    assert d.conn.retransmissions == 0


def test_rack_retransmits_when_the_window_runs_out() -> None:
    d = opened(Drill())
    data = pattern(0, 3000)
    d.send(data, at=1.0)
    d.take_sent()
    _sack(d, 1, [(2001, 3001)], 1.25)
    # Hole sent at 1.0 + RACK.rtt 0.25 + reo_wnd 0.0625 = 1.3125: the REO timer.
    d.expect_nothing(until=1.3124)
    d.expect(".", seq=d.L(1), ack=d.R(1), payload=data[:1000], at=1.3125)
    d.expect_nothing()
    assert d.conn.stats()["recovery_state"] == "recovery"


def test_tail_loss_probe_resends_the_last_segment_before_the_rto() -> None:
    """RFC 8985 §7: the last segment is lost; after PTO = 2 * SRTT (+ WCDelAckT with
    one segment in flight) the probe resends it; no RTO."""
    d = opened(Drill())
    data = _send_ten(d)
    d.inject(".", seq=d.R(1), ack=d.L(9001), ts=(peer_ts(1.25), tsv(1.0)), at=1.25)
    # Sample 0.25 with 10000 in flight (Appendix G: 5 expected): SRTT 0.25,
    # RTTVAR 0.95 * 0.125 = 0.11875, RTO 0.725; PTO = 2 * 0.25 + 0.2 = 0.7 < RTO.
    d.expect_nothing(until=1.9499)
    d.expect("P.", seq=d.L(9001), ack=d.R(1), payload=data[9000:], at=1.95)
    assert d.conn.stats()["tlp_probes"] == 1
    d.inject(".", seq=d.R(1), ack=d.L(10001), ts=(peer_ts(2.2), tsv(1.95)), at=2.2)
    st = d.conn.stats()
    # The probe repaired a loss: one congestion response, never an RTO.
    assert st["tlp_recoveries"] == 1 and st["rto_expiries"] == 0
    d.expect_nothing(until=10.0)


def test_tail_loss_probe_sends_new_data_when_there_is_some() -> None:
    """RFC 8985 §7.3: if unsent data fits the receive window, the probe is new data."""
    d = opened(Drill())
    data = pattern(0, 12000)
    d.send(data, at=1.0)
    for i in range(10):  # the initial window; every ACK is lost
        d.expect(".", seq=d.L(1 + 1000 * i), ack=d.R(1), length=1000, at=1.0)
    # PTO = 2 * SRTT = 0.5 (more than one segment in flight), before the RTO (0.75).
    d.expect_nothing(until=1.4999)
    d.expect(".", seq=d.L(10001), ack=d.R(1), payload=data[10000:11000], at=1.5)
    st = d.conn.stats()
    assert st["tlp_probes"] == 1 and st["retransmissions"] == 0
    # Still nothing back: the RTO, restarted by the probe, fires at 1.5 + 0.75.
    d.expect_nothing(until=2.2499)
    d.expect(".", seq=d.L(1), ack=d.R(1), length=1000, at=2.25)
    assert d.conn.stats()["rto_expiries"] == 1


def test_prr_spreads_the_reduction_over_the_recovery_round() -> None:
    """RFC 6937: during recovery, sending follows delivery in proportion
    ssthresh / RecoverFS, instead of a pause then a burst."""
    d = opened(Drill(Config(congestion_control="reno")), wnd=65535)
    data = pattern(0, 40000)
    d.send(data, at=1.0)
    assert len(d.take_sent()) == 10  # the initial window
    for i in range(10):  # slow start to 20 segments in flight
        d.inject(
            ".", seq=d.R(1), ack=d.L(1 + 1000 * (i + 1)), ts=(peer_ts(1.25) + i, tsv(1.0)), at=1.25
        )
    assert len(d.take_sent()) == 20
    una = 10001  # this segment is lost; SACKs arrive for the ones after it
    sent = []
    for k in range(1, 16):
        _sack(d, una, [(una + 1000, una + 1000 + 1000 * k)], 1.5 + k / 1000, echo=1.25)
        sent.append([(s.seg.seq - d.isn) & SEQ_MASK for s in d.take_sent()])
    # Before loss is declared, each SACKed segment grows cwnd (slow start): two out.
    assert sent[:2] == [[30001, 31001], [32001, 33001]]
    # Third SACK: RACK's DupThresh rule; recovery with FlightSize 24000 capped at
    # cwnd 22000 (2000 of the flight is SACKed), so ssthresh 11000; RecoverFS =
    # pipe = 22000. The retransmission goes at once.
    assert sent[2] == [10001]
    assert (d.conn.cc.ssthresh, d.conn.recovery.prr.recover_fs) == (11000, 22000)
    # Then: total sent = CEIL(prr_delivered * ssthresh / RecoverFS), in whole segments.
    expected, total = [], 1
    for k in range(4, 16):
        allowed = -(-(k - 2) * 1000 * 11000 // 22000) // 1000
        expected.append(allowed - total)
        total = allowed
    assert [len(x) for x in sent[3:]] == expected
    assert [x for x in sent[3:] if x] == [[34001], [35001], [36001], [37001], [38001]]


def test_dsack_of_the_only_retransmission_undoes_the_reduction() -> None:
    """RFC 2883 / Linux undo_retrans: every retransmission of the episode reported
    as a duplicate means nothing was lost; cwnd and ssthresh come back."""
    d = opened(Drill(), ts=False)
    _send_ten(d)
    cwnd = d.conn.cc.cwnd
    for k, t in ((3001, 1.251), (4001, 1.252), (5001, 1.253)):
        d.inject(".", seq=d.R(1), ack=d.L(1001), sack=((d.L(2001), d.L(k)),), at=t)
    d.take_sent()  # the retransmission of L+1001
    assert d.conn.cc.cwnd < cwnd
    # The original arrived late after all; the cumulative ACK carries a D-SACK for
    # the duplicate (below the ACK: RFC 2883 §4).
    d.inject(".", seq=d.R(1), ack=d.L(10001), sack=((d.L(1001), d.L(2001)),), at=1.5)
    st = d.conn.stats()
    assert st["spurious_undos"] == 1 and st["reordering_seen"]
    assert d.conn.cc.cwnd >= cwnd


def test_eifel_undoes_a_spurious_timeout() -> None:
    """RFC 3522: the ACK after an RTO echoes the original's timestamp, so the
    original arrived: the window comes back and the rest is not resent."""
    d = opened(Drill())
    d.send(pattern(0, 3000), at=1.0)
    d.take_sent()
    d.expect("P.", seq=d.L(2001), ack=d.R(1), length=1000, at=1.5)  # the tail probe
    d.expect(".", seq=d.L(1), ack=d.R(1), length=1000, at=2.25)  # RTO 0.75 after it
    assert d.conn.cc.cwnd == 1000
    d.inject(".", seq=d.R(1), ack=d.L(3001), ts=(peer_ts(2.3), tsv(1.0)), at=2.3)
    st = d.conn.stats()
    assert st["spurious_undos"] == 1 and d.conn.cc.cwnd >= 10000
    assert st["recovery_state"] == "open" and st["lost_bytes"] == 0
    d.expect_nothing(until=5.0)
    assert st["retransmissions"] == 2  # the probe and the RTO's, nothing after


# ---------------------------------------------------------------------------
# Found against Linux and on long, deep paths (docs/interop-linux.md, the path table)


def test_hole_filled_in_the_same_batch_still_gets_its_ack() -> None:
    """Out-of-order segments and then the one that fills the hole arrive in one
    receive batch: the duplicate ACKs queued for the out-of-order ones carry the old
    RCV.NXT and must not count as the ACK of the filled hole."""
    d = opened(Drill())
    data = pattern(0, 3000)
    seg = [
        {
            "flags": ".",
            "seq": d.R(1 + 1000 * i),
            "ack": d.L(1),
            "payload": data[1000 * i : 1000 * (i + 1)],
            "ts": (6000 + i, tsv(RTT)),
        }
        for i in range(3)
    ]
    d.inject_batch([seg[1], seg[2], seg[0]], at=1.0)
    d.expect(".", seq=d.L(1), ack=d.R(1), at=1.0, sack=[(d.R(1001), d.R(2001))])
    d.expect(".", seq=d.L(1), ack=d.R(1), at=1.0, sack=[(d.R(1001), d.R(3001))])
    d.expect(".", seq=d.L(1), ack=d.R(3001), at=1.0, sack=None)  # the filled hole
    d.expect_nothing()


def test_full_sized_means_the_largest_segment_seen() -> None:
    """RFC 1122 §4.2.3.2 ACK every second full-sized segment, with "full-sized" as
    Linux measures it (tcp_measure_rcv_mss): a peer using timestamps sends MSS - 12
    byte segments, and two of them are ACKed at once, not after the delayed-ACK
    timer."""
    d = opened(Drill())
    size = d.config.mss - 12
    data = pattern(0, 4 * size)
    for i in range(2):
        d.inject(
            ".",
            seq=d.R(1 + size * i),
            ack=d.L(1),
            payload=data[size * i : size * (i + 1)],
            ts=(6000 + i, tsv(RTT)),
            at=1.0 + i / 1000,
        )
    d.expect(".", seq=d.L(1), ack=d.R(1 + 2 * size), at=1.001)
    d.expect_nothing()


def test_sack_blocks_repeated_after_a_lost_ack_are_not_reordering() -> None:
    """The ACK that first reported a block was lost; the next one repeats it after
    a newer block (RFC 2018 §4). Taken lowest first, as Linux does, that is not a
    segment delivered below the highest SACKed one (RFC 8985 §6.2 step 3)."""
    d = opened(Drill())
    _send_ten(d)
    # (the ACK that SACKed 2001-3001 was lost; 3001-4001 has not arrived yet)
    _sack(d, 1001, [(4001, 5001), (2001, 3001)], 1.252)
    assert not d.conn.stats()["reordering_seen"]
    # A segment that really arrives late, below the highest SACKed: reordering.
    _sack(d, 1001, [(2001, 5001)], 1.253)
    assert d.conn.stats()["reordering_seen"]


def test_sacked_segments_give_rtt_samples() -> None:
    """While a hole holds SND.UNA, the earliest newly SACKed segment (never
    retransmitted) is an RTT sample, as Linux's tcp_ack_update_rtt takes it: SRTT
    keeps following a path whose queue grows during the recovery."""
    d = opened(Drill(), ts=False)
    d.send(pattern(0, 6000), at=1.0)
    d.take_sent()
    srtt = d.conn.rtt.srtt
    for i, t in enumerate((1.8, 1.9, 2.0)):
        d.inject(".", seq=d.R(1), ack=d.L(1), sack=((d.L(1001), d.L(2001 + 1000 * i)),), at=t)
    assert srtt is not None and d.conn.rtt.srtt is not None
    assert d.conn.rtt.srtt > srtt + 0.05  # samples of 0.8, 0.9 and 1.0 s moved it


def test_resending_the_first_unacked_segment_restarts_the_rto() -> None:
    """Linux's tcp_xmit_retransmit_queue: the RTO runs from the retransmission of
    the head, so a repair that waits behind a long queue does not time out."""
    d = opened(Drill())
    data = _send_ten(d)
    for k, t in ((3001, 1.3), (4001, 1.301)):
        _sack(d, 1, [(1001, k)], t)
    d.expect(".", seq=d.L(1), ack=d.R(1), payload=data[:1000], at=1.301)
    d.take_sent()
    # Not 1.0 + RTO: no ACK has moved SND.UNA since the data left at 1.0.
    assert d.conn._timer_at[Timer.RTO] == pytest.approx(1.301 + d.conn.rtt.rto)


def test_eifel_compares_the_echo_with_the_first_retransmission() -> None:
    """Two hole-filling retransmissions ACKed together echo the first one's
    timestamp (RFC 7323 §4.3): older than the second, not older than the first.
    That is no sign of a spurious recovery; only an echo older than the episode's
    first retransmission is (Linux tcp_packet_delayed)."""
    rec = LossRecovery(Reno(1000, 10), RttEstimator(1.0, 0.2, 60.0), 1000)
    rec.undo_retrans = 2  # two retransmissions, neither reported as a duplicate
    rec.retrans_stamp = 1.252  # first retransmission of the episode
    rec.sb.rtx_acked_xmit = 1.262  # the newest retransmission this ACK covers
    first = int(1.252 * 1000)  # TSvals are int(send time in ms)
    assert not rec._may_undo(first, True)  # echoes the first retransmission
    assert rec._may_undo(first - 1, True)  # echoes an original sent before it
    assert not rec._may_undo(first - 1, False)  # only an ACK of new data decides
