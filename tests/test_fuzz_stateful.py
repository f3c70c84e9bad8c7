"""Stateful fuzzing of two engines over a hostile network (TEST-MATRIX "malformed
input"; the "Hostile networks" issue).

A hypothesis ``RuleBasedStateMachine`` drives :class:`fuzz.harness.Pair`: a client
and a server endpoint joined by an in-test network that loses, reorders,
duplicates, replays and corrupts datagrams; both applications (send, read,
shutdown, close, abort, connect); NAT rebinding; and an attacker who injects raw
bytes and well-formed segments (valid checksums) built around the live sequence
numbers: every flag combination, SACK blocks with wrapping and overlapping edges,
old and new timestamps, window scale and MSS values, from the right address and
from new ones. After every step ``Pair.check()`` asserts the invariants (no
internal error, sequence variables, scoreboard accounting, timers, receive-buffer
bounds, delivered data is exactly the peer's stream, amplification limit); at the
end ``Pair.finish()`` checks liveness (untainted connections deliver everything;
after closing, the endpoints hold nothing).

Runs are short and derandomized by default. For a long run::

    HYPOTHESIS_PROFILE=fuzz python -m pytest tests/test_fuzz_stateful.py -q
    RUDP_FUZZ_EXAMPLES=20000 HYPOTHESIS_PROFILE=fuzz python -m pytest tests/test_fuzz_stateful.py

(the ``fuzz`` profile is random, keeps a database of failures in
``.hypothesis/``, and runs ``RUDP_FUZZ_EXAMPLES`` examples, 2000 by default).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from fuzz.harness import (
    CLIENT,
    N_OPTIONS,
    O_EOL,
    O_MSS,
    O_NOP,
    O_RAW,
    O_SACK,
    O_SACKOK,
    O_TS,
    O_WS,
    SERVER,
    SERVER_ADDR,
    Craft,
    Pair,
    Setup,
)
from rudp.wire.segment import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "")
SHORT = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
LONG = settings(
    max_examples=int(os.environ.get("RUDP_FUZZ_EXAMPLES", "2000")),
    stateful_step_count=120,
    deadline=None,
    # No "explain" phase: tracing every line makes shrinking a long stateful run slow.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)
SETTINGS = LONG if PROFILE == "fuzz" else SHORT

sides = st.sampled_from([CLIENT, SERVER])
small_index = st.integers(0, 7)

#: Sequence/ack deltas: exact, off by a little, window-sized, half the space, anything.
deltas = st.one_of(
    st.just(0),
    st.integers(-3, 3),
    st.sampled_from([-65536, -65535, -1448, -1400, 536, 1400, 65535, 65536, 2**31, -(2**31)]),
    st.integers(-70_000, 70_000),
    st.integers(-(2**32), 2**32),
)
FLAG_COMBOS = [
    ACK,
    ACK | PSH,
    ACK | FIN,
    ACK | PSH | FIN,
    FIN,
    SYN,
    SYN | ACK,
    SYN | FIN,
    SYN | RST,
    SYN | ACK | FIN,
    RST,
    RST | ACK,
    URG | ACK,
    ECE | CWR | ACK,
    0,
    0xFF,
]
flag_values = st.one_of(st.sampled_from(FLAG_COMBOS), st.integers(0, 255))
u32 = st.integers(0, 2**32 - 1)

options = st.one_of(
    st.tuples(
        st.just(O_MSS),
        st.one_of(st.sampled_from([0, 1, 47, 88, 536, 65535]), st.integers(0, 65535)),
    ),
    st.tuples(st.just(O_WS), st.one_of(st.integers(0, 16), st.integers(0, 255))),
    st.just((O_SACKOK,)),
    # Timestamps: TSval from TS.Recent/0/our clock/anything plus a delta; TSecr from
    # our clock (fresh or old)/0/anything.
    st.tuples(st.just(O_TS), st.integers(0, 2**32 - 1), deltas, st.integers(0, 2**32 - 1), deltas),
    # SACK: 1-4 blocks of (base + delta, signed length): wrapping, inverted, overlapping.
    st.lists(
        st.tuples(
            st.tuples(st.integers(0, 3), st.integers(-2000, 70_000)).map(
                lambda t: (t[1] << 2) | t[0]
            ),
            st.one_of(st.integers(-10, 10), st.integers(-70_000, 70_000), st.just(2**31), u32),
        ),
        min_size=1,
        max_size=4,
    ).map(lambda blocks: (O_SACK, *[v for b in blocks for v in b])),
    st.tuples(
        st.just(O_RAW),
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 12),
    ),
    st.just((O_NOP,)),
    st.just((O_EOL,)),
)
assert N_OPTIONS == 8

crafts = st.builds(
    Craft,
    victim=small_index,
    flags=flag_values,
    seq_base=st.integers(0, 5),
    seq_delta=deltas,
    ack_base=st.integers(0, 5),
    ack_delta=deltas,
    wnd=st.one_of(st.sampled_from([0, 1, 512, 65535]), st.integers(0, 65535)),
    urp=st.one_of(st.just(0), st.integers(0, 65535)),
    options=st.lists(options, max_size=4).map(tuple),
    payload=st.one_of(st.just(0), st.sampled_from([1, 2, 100, 536, 1400, 1401, 3000])),
    src=st.one_of(st.just(0), st.integers(0, 3)),
    ports=st.one_of(st.just(0), st.integers(0, 3)),
    zero_checksum=st.booleans(),
)

#: A few fixed setups worth visiting often, plus any combination of the bits.
SETUPS = [0, 0x30F0, 0x0004, 0x000C, 0x0001, 0x0002, 0x0100, 0x0200, 0x0400, 0x4000, 0x8002]


class EnginePair(RuleBasedStateMachine):
    """Client and server engines, the network, both applications and an attacker."""

    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair()

    @initialize(
        bits=st.one_of(st.sampled_from(SETUPS), st.integers(0, 0xFFFF)),
        start=st.integers(0, len(Pair.PREFIXES) - 1),
    )
    def start(self, bits: int, start: int) -> None:
        self.pair = Pair(Setup.from_bits(bits))
        self.pair.prefix(start)

    # ------------------------------------------------------------ network
    @rule(side=sides, index=small_index, duplicate=st.booleans())
    def deliver(self, side: int, index: int, duplicate: bool) -> None:
        self.pair.deliver(side, index, duplicate=duplicate)

    @rule(
        plan=st.lists(
            st.tuples(st.sampled_from("ddddxr2"), small_index, sides), min_size=1, max_size=24
        )
    )
    def network(self, plan: list[tuple[str, int, int]]) -> None:
        """Several datagrams' fates at once: deliver, drop (x), reorder (r), duplicate (2)."""
        p = self.pair
        for op, index, side in plan:
            if op == "d":
                p.deliver(side, 0)
            elif op == "x":
                p.drop(side, 0)
            elif op == "r":
                p.deliver(side, index)
            else:
                p.deliver(side, index, duplicate=True)

    @rule()
    def deliver_all(self) -> None:
        self.pair.deliver_all()

    @rule(side=sides, index=small_index)
    def drop(self, side: int, index: int) -> None:
        self.pair.drop(side, index)

    @rule(
        side=sides,
        index=small_index,
        pos=st.integers(0, 2000),
        xor=st.integers(1, 255),
        fix=st.booleans(),
    )
    def corrupt(self, side: int, index: int, pos: int, xor: int, fix: bool) -> None:
        self.pair.corrupt(side, index, pos, xor, fix)

    @rule(side=sides, index=st.integers(0, 300))
    def replay(self, side: int, index: int) -> None:
        self.pair.replay(side, index)

    @rule(
        dt=st.one_of(
            st.sampled_from([0.001, 0.01, 0.04, 0.2, 1.0, 3.0, 12.0, 61.0]), st.floats(0, 100)
        )
    )
    def advance(self, dt: float) -> None:
        self.pair.advance(dt)

    @rule()
    def rebind(self) -> None:
        self.pair.rebind()

    # ------------------------------------------------------------ attacker
    @rule(side=sides, craft=crafts)
    def inject(self, side: int, craft: Craft) -> None:
        self.pair.inject_crafted(side, craft)

    @rule(
        side=sides,
        data=st.binary(max_size=80),
        fix=st.booleans(),
        src=st.sampled_from([0, 1]),
    )
    def inject_bytes(self, side: int, data: bytes, fix: bool, src: int) -> None:
        """Raw bytes; with ``fix`` and 20+ bytes, the checksum made valid."""
        from rudp.wire.checksum import checksum

        p = self.pair
        if fix and len(data) >= 20:
            buf = bytearray(data)
            buf[16:18] = b"\0\0"
            buf[16:18] = (checksum(buf) or 0xFFFF).to_bytes(2, "big")
            data = bytes(buf)
        addr = (
            (p.client_addr if side == SERVER else SERVER_ADDR) if src == 0 else ("10.66.0.1", 6666)
        )
        p.inject(side, data, addr)

    # ------------------------------------------------------------ applications
    @rule(
        side=sides,
        which=small_index,
        n=st.one_of(st.sampled_from([1, 100, 1400, 5000]), st.integers(0, 70_000)),
    )
    def send(self, side: int, which: int, n: int) -> None:
        self.pair.send(side, which, n)

    @rule(side=sides, which=small_index, n=st.one_of(st.just(-1), st.integers(0, 5000)))
    def read(self, side: int, which: int, n: int) -> None:
        self.pair.read(side, which, n)

    @rule(side=sides, on=st.booleans())
    def auto_read(self, side: int, on: bool) -> None:
        self.pair.auto_read[side] = on

    @rule(side=sides, which=small_index)
    def shutdown(self, side: int, which: int) -> None:
        self.pair.shutdown(side, which)

    @rule(side=sides, which=small_index)
    def close(self, side: int, which: int) -> None:
        self.pair.close(side, which)

    @rule(side=sides, which=small_index)
    def abort(self, side: int, which: int) -> None:
        self.pair.abort(side, which)

    @rule()
    def connect(self) -> None:
        self.pair.connect()

    # ------------------------------------------------------------ checks
    @invariant()
    def pair_invariants(self) -> None:
        self.pair.settle()
        self.pair.check()

    def teardown(self) -> None:
        self.pair.finish()


def test_engine_pair_stateful() -> None:
    run_state_machine_as_test(EnginePair, settings=SETTINGS)


@pytest.mark.skipif(PROFILE == "fuzz", reason="the long profile replaces this check")
def test_the_fuzzer_exercises_what_it_claims() -> None:
    """A fixed scenario through the same harness: impairments, attacker and
    application actions all happen (so the machine's rules are not dead code)."""
    m = EnginePair()
    m.start(0, 3)
    m.network([("d", 0, SERVER), ("x", 0, CLIENT), ("r", 3, SERVER), ("2", 1, CLIENT)])
    m.corrupt(SERVER, 0, 30, 0x40, False)
    m.deliver_all()
    m.inject(SERVER, Craft(flags=SYN | FIN, options=((O_SACK, 1, 100, 9, -5),)))
    m.inject(CLIENT, Craft(flags=RST | ACK, seq_delta=1))
    m.replay(SERVER, 0)
    m.rebind()
    m.send(CLIENT, 0, 3000)
    m.advance(0.2)
    m.deliver_all()
    m.pair_invariants()
    p = m.pair
    st_ = p.stats
    assert st_.dropped and st_.reordered and st_.duplicated and st_.corrupted
    assert st_.injected == 2 and st_.replayed == 1 and st_.rebinds == 1
    assert st_.app_bytes_read > 20_000
    server = p.eps[SERVER].counters
    assert server["drop_checksum"] >= 1  # the corrupted datagram was caught and counted
    assert server["migrations"] == 1  # the rebinding passed the migration checks
    m.teardown()
