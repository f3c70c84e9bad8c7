"""Regression tests for what the fuzzers found (fuzz/README.md).

Two kinds:

* a minimal reproducer written by hand for each engine bug, marked
  ``xfail(strict=True)`` while the bug is open (so the fix turns it into a failure
  that asks for the marker's removal);
* every saved fuzz input under ``fuzz/regressions/<target>/`` replayed through its
  target with no tolerance for known bugs; an input reproducing an open bug is
  listed in :data:`OPEN` with the bug's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz import harness
from fuzz.harness import CLIENT, SERVER, Craft, Pair, Setup, make_config
from fuzz.targets import TARGETS
from rudp._compiled import COMPILED
from rudp.engine import Connection, State
from rudp.wire.segment import ACK, SYN

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ROOT / "fuzz" / "regressions"


@pytest.fixture
def strict() -> Iterator[None]:
    """No tolerance for the known bugs (harness.KNOWN_BUGS)."""
    saved = harness.TOLERATE_KNOWN_BUGS, harness.HANG_SECONDS
    harness.TOLERATE_KNOWN_BUGS = False
    harness.HANG_SECONDS = 2.0  # a hang fails fast
    try:
        yield
    finally:
        harness.TOLERATE_KNOWN_BUGS, harness.HANG_SECONDS = saved


# ---------------------------------------------------------------------------
# Hand-written reproducers


def test_migrated_connection_without_timestamps_can_send(strict: None) -> None:
    """Found by the stateful fuzzer (rebind, then close: the server stuck in CLOSING
    with no timer). Request/response after the client's NAT mapping changed; the
    client does not use timestamps, so the path is validated by data only."""
    p = Pair(Setup(make_config(timestamps=False), make_config()))
    p.connect()
    p.deliver_all()
    p.advance(5.0)
    p.rebind()
    p.send(CLIENT, 0, 10)  # a request from the new address: the server migrates
    p.deliver_all()
    server = p.apps[SERVER][0]
    assert p.eps[SERVER].counters["migrations"] == 1 and server.rcvd == 10
    p.send(SERVER, 0, 5000)  # the reply
    for _ in range(100):
        p.deliver_all()
        p.advance(1.0)
    assert p.apps[CLIENT][0].rcvd == 5000, (
        f"client got {p.apps[CLIENT][0].rcvd} of 5000 bytes; server deadline "
        f"{server.conn.deadline}, validated {server.conn._validated}"
    )
    # And the orderly close completes (it stalled in CLOSING, no timer, forever).
    p.close(SERVER, 0)
    p.close(CLIENT, 0)
    p.finish()


def test_migrated_path_with_an_exhausted_budget_arms_a_timer(strict: None) -> None:
    """The budget left after the move (3 x one bare ACK, less our ACK and path
    probe) holds not even a header: with nothing in flight, the persist timer must
    run, and its probe's answer buys the budget for the data that validates the
    path (before the fix: no timer, the reply never left)."""
    p = Pair(Setup(make_config(timestamps=False), make_config()))
    p.connect()
    p.deliver_all()
    p.advance(1.0)
    p.send(SERVER, 0, 100)
    p.rebind()
    p.deliver(CLIENT, 0)
    p.advance(0.05)  # the client's delayed ACK leaves from its new address
    assert p.deliver(SERVER, 0)
    conn = p.apps[SERVER][0].conn
    assert conn.migrations == 1 and not conn._validated
    assert conn.snd_una == conn.snd_max  # nothing in flight to draw an ACK
    while p.drop(CLIENT, 0):  # our ACK and path probe are lost
        pass
    p.send(SERVER, 0, 5000)
    assert conn._amp_room() <= 0 and conn.send_buffered == 5000
    assert conn.deadline < float("inf"), "data to send and no timer armed"
    for _ in range(40):
        p.deliver_all()
        if p.apps[CLIENT][0].rcvd == 5100:
            break
        p.advance(0.5)
    assert p.apps[CLIENT][0].rcvd == 5100 and conn._validated
    assert conn.window_probes >= 1 and conn.amplification_limited == 0
    p.close(SERVER, 0)
    p.close(CLIENT, 0)
    p.finish()


def _rtt_deliver_all(p: Pair, rtt: float = 0.1) -> None:
    """Deliver everything queued, each datagram half an RTT after it left."""
    for _ in range(20):
        if not (p.queues[CLIENT] or p.queues[SERVER]):
            return
        p.advance(rtt / 2)
        for side in (CLIENT, SERVER):
            for _ in range(len(p.queues[side])):
                p.deliver(side, 0)


@pytest.mark.parametrize("cc", ["reno", "bbr"])
def test_duplicate_acks_after_rto_keep_in_flight_non_negative(cc: str, strict: None) -> None:
    """Found by atheris (bbr, no SACK, MSS 88, FIN-WAIT-1: in_flight = -264). Without
    SACK, after an RTO marked everything lost, the network duplicates one ACK nine
    times while the pacer holds the retransmissions back."""
    p = Pair(Setup(make_config(sack=False, cc=cc, pacing=True), make_config(sack=False)))
    p.connect()
    _rtt_deliver_all(p)
    p.advance(1.0)
    p.send(CLIENT, 0, 14_000)
    p.advance(0.05)
    p.deliver(SERVER, 0)  # the first segment arrives, the rest are lost
    while p.drop(SERVER, 0):
        pass
    p.advance(0.05)
    p.deliver_all()  # its ACK
    conn = p.apps[CLIENT][0].conn
    while conn.rto_expiries == 0:
        p.advance(0.01)
    while p.drop(SERVER, 0):
        pass
    assert conn.recovery.sb.lost > 0
    ack = len(p.history[CLIENT]) - 1
    for _ in range(9):
        p.replay(CLIENT, ack)  # the same ACK, duplicated by the network
    assert conn.dup_acks_received == 9
    st = conn.stats()
    assert st["in_flight"] >= 0, (
        f"in_flight {st['in_flight']}: lost {st['lost_bytes']}, retransmitted "
        f"{st['retrans_in_flight']}, reno_sacked {conn.recovery.reno_sacked}"
    )


def test_user_timeout_timer_never_rearms_at_now(strict: None) -> None:
    """Found by atheris as a hang (libFuzzer timeout; the endpoint spun inside
    handle_timer). Data sent at t = 3.001 goes unacknowledged; the user timeout
    (30 s) falls due at 33.001. Driven through the connection directly, so the
    test cannot hang: after the timer ran, the connection must be closed or have
    its next deadline strictly later."""
    p = Pair(Setup(make_config(), make_config()))
    p.connect()
    p.deliver_all()
    p.advance(3.001 - p.now)
    p.send(CLIENT, 0, 1000)  # unacknowledged from now on: everything is lost
    conn = p.apps[CLIENT][0].conn
    since = conn._unacked_since
    assert since == 3.001 and (since + 30.0) - since < 30.0
    due = since + conn.config.user_timeout
    while p.drop(SERVER, 0):
        pass
    # Every timer due before the user timeout, datagrams dropped (as the network would).
    while (d := conn.deadline) < due:
        conn.handle_timer(d)
        p.eps[CLIENT].datagrams_to_send(d)
        while p.drop(SERVER, 0):
            pass
    assert conn.deadline == due
    conn.handle_timer(due)
    assert conn.error is not None or conn.deadline > due, (
        f"the user timeout re-armed at {conn.deadline} == now: the endpoint would "
        "pop it again forever"
    )


@pytest.mark.skipif(
    COMPILED, reason="patches the (compiled) Connection class: runs in the pure-Python pass"
)
def test_endpoint_does_not_spin_on_a_timer_rearmed_at_now(
    strict: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Endpoint.handle_timer runs what was due when it was called: a connection
    whose timer handler re-arms at ``now`` (a bug of its own) waits for the next
    call instead of spinning the endpoint."""
    p = Pair()
    p.connect()
    p.deliver_all()
    ep = p.eps[CLIENT]
    conn = p.apps[CLIENT][0].conn
    calls: list[float] = []

    def rearm_at_now(self: Connection, now: float) -> None:
        calls.append(now)
        if len(calls) < 5:  # bounded, so the old behaviour fails instead of hanging
            self.deadline = now
            ep.schedule(self, now)

    monkeypatch.setattr(Connection, "handle_timer", rearm_at_now)
    t = p.now + 1.0
    conn.deadline = t
    ep.schedule(conn, t)
    ep.handle_timer(t)
    assert calls == [t]
    assert ep.get_timer() == t  # still due: the host calls again
    ep.handle_timer(t)
    assert calls == [t, t]


def test_shutdown_in_syn_received_keeps_the_stream(strict: None) -> None:
    """Found by the stateful fuzzer (send buffer one byte ahead of SND.UNA in
    FIN-WAIT-1). A simultaneous open (RFC 9293 §3.5 figure 7: the peer's SYN reaches
    our SYN-SENT), then the application writes 100 bytes and shuts down before the
    handshake completes; the peer's ACK of our SYN must not acknowledge data."""
    p = Pair()
    p.connect()
    p.drop(SERVER, 0)  # our SYN is lost; the peer's own SYN arrives instead
    conn = p.apps[CLIENT][0].conn
    p.inject_crafted(CLIENT, Craft(flags=SYN, seq_base=5, seq_delta=1000))
    assert conn.state is State.SYN_RECEIVED
    p.send(CLIENT, 0, 100)
    p.shutdown(CLIENT, 0)
    p.inject_crafted(CLIENT, Craft(flags=ACK, seq_base=0, ack_base=2, ack_delta=1))  # ACK = ISS+1
    assert conn.snd_una == (conn.iss + 1) & 0xFFFFFFFF
    assert conn.bytes_acked == 0 and conn.send_buffered == 100, (
        f"the ACK of our SYN acknowledged {conn.bytes_acked} byte(s) of data; "
        f"{conn.send_buffered} of 100 left in the send buffer"
    )


def test_denormal_time_steps_give_a_finite_delivery_rate(strict: None) -> None:
    """Found by the stateful fuzzer (advance(dt=2.2e-313) at t ~ 0, BBR: ValueError
    'cannot convert float NaN to integer' caught as an internal error). Sans-IO time
    is the caller's: a simulator starting at t = 0 may step by any float."""
    p = Pair(Setup(make_config(cc="bbr"), make_config(cc="bbr")))
    p.connect()
    p.advance(1e-320)
    p.deliver_all()
    p.send(CLIENT, 0, 5000)
    p.advance(1e-320)
    p.deliver_all()  # raises EngineBug (strict counters) while the bug is open
    rate = p.apps[CLIENT][0].conn.stats()["delivery_rate"]
    assert rate is None or rate < float("inf")


def test_rate_samples_need_a_positive_interval_and_bbr_takes_only_finite_ones() -> None:
    """A delivery-rate sample over less than MIN_RATE_INTERVAL is no sample (Linux:
    an interval of 0 us); BBR ignores a non-finite rate should one reach it."""
    from rudp.engine.congestion.base import AckSample
    from rudp.engine.congestion.bbr import BBR
    from rudp.engine.recovery.loss import MIN_RATE_INTERVAL

    assert 0 < MIN_RATE_INTERVAL <= 1e-6
    bbr = BBR(1400, 14_000, seed=1)
    before = bbr.btl_bw
    for bad in (float("inf"), float("nan"), -1.0, 0.0):
        rs = AckSample()
        rs.delivery_rate = bad
        rs.acked = rs.delivered = 1400
        bbr.on_ack(rs, 1.0)
        assert bbr.btl_bw == before and bbr.cwnd > 0


def test_close_with_unread_data_is_not_a_short_eof(strict: None) -> None:
    """Found by the stateful fuzzer (a harness false positive, not an engine bug):
    the server's application never reads, the peer sends 100 bytes and its FIN,
    then the server closes. close() discards the unread data and resets (RFC 2525
    §2.17, as Linux), so the receive buffer is empty and at_eof holds: the harness
    took that for an EOF after 0 of 100 bytes."""
    p = Pair()
    p.prefix(2)  # established
    p.auto_read[SERVER] = False
    p.send(CLIENT, 0, 100)
    p.close(CLIENT, 0)
    p.deliver_all()
    server = p.apps[SERVER][0]
    assert server.conn.readable == 100 and server.conn.state is State.CLOSE_WAIT
    p.close(SERVER, 0)  # the check after it must pass
    assert server.rcvd == 0 and server.conn.state is State.CLOSED
    p.deliver_all()
    assert isinstance(p.apps[CLIENT][0].conn.error, ConnectionResetError)  # the RST
    p.finish()


# ---------------------------------------------------------------------------
# Saved fuzz inputs

#: Saved inputs that reproduce an open bug: file name -> reason (xfail, strict).
OPEN: dict[str, str] = {}


def _inputs() -> list[tuple[str, Path]]:
    out = []
    for target in sorted(TARGETS):
        d = REGRESSIONS / target
        if d.is_dir():
            out += [(target, f) for f in sorted(d.iterdir()) if f.is_file() and f.name != "README"]
    return out


def _param(target: str, path: Path) -> object:
    marks = []
    if path.name in OPEN:
        marks.append(pytest.mark.xfail(strict=True, reason=OPEN[path.name]))
    return pytest.param(target, path, id=f"{target}/{path.name}", marks=marks)


@pytest.mark.parametrize(("target", "path"), [_param(t, p) for t, p in _inputs()])
def test_saved_fuzz_input(target: str, path: Path, strict: None) -> None:
    TARGETS[target](path.read_bytes())
