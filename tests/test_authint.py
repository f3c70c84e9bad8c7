"""TCP-AO in the engine (docs/authentication.md, issue 12 item 5), in simulated time.

rudp.engine.auth itself (RFC 9235 vectors, SNE, tampering) is tested in
tests/test_tcpao.py; here the engine uses it: every segment a connection sends is
signed, every segment it receives is checked before anything else looks at it, the
option space and the MSS account for the option, keys roll over mid-transfer, and
TIME-WAIT, listeners, closed ports and NAT rebinding follow the rules.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any

import pytest
from drill import ANY, LPORT, PEER, RPORT, RTT, Drill, flags_of
from simutil import A, B, pair

from rudp import Config, ConfigError
from rudp.engine import (
    ConnectionAccepted,
    ConnectionEstablished,
    State,
)
from rudp.engine.auth import (
    OPTION_LEN,
    AuthSession,
    KeyChain,
    MasterKey,
    available_algorithms,
    find_option,
)
from rudp.engine.timewait import TimeWait
from rudp.errors import ConnectTimeoutError
from rudp.seq import SEQ_MASK
from rudp.sim import LinkConfig
from rudp.sim.host import BulkApp
from rudp.wire import ACK, FIN, RST, SYN, Segment, build_segment, parse_segment
from rudp.wire.segment import encode_options

SECRET = bytes(range(1, 33))
OTHER_SECRET = bytes(range(2, 34))


def chain(secret: bytes = SECRET, ids: tuple[int, int] = (1, 1)) -> KeyChain:
    return KeyChain([MasterKey(ids[0], ids[1], secret)])


def ao(secret: bytes = SECRET, **kw: Any) -> Config:
    """A config with its own key chain (each end gets one, as two hosts would)."""
    return Config(auth_keys=chain(secret), **kw)


def auth_drops(stats: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if k.startswith("drop_auth") and v}


# ---------------------------------------------------------------------------
# Config


def test_config_auth_keys_is_off_by_default_and_normalised() -> None:
    assert Config().auth_keys is None
    key = MasterKey(1, 1, SECRET)
    for value in (key, [key], (k for k in [key])):
        cfg = Config(auth_keys=value)
        assert isinstance(cfg.auth_keys, KeyChain) and cfg.auth_keys.keys == (key,)
    keys = chain()
    cfg = Config(auth_keys=keys)
    assert cfg.auth_keys is keys  # shared: rollover reaches every user of the config
    assert dataclasses.replace(cfg, mss=1000).auth_keys is keys


@pytest.mark.parametrize("bad", [b"hunter2", "hunter2", 42, [b"hunter2"], [], [42]])
def test_config_auth_keys_invalid_values_never_show_the_secret(bad: object) -> None:
    with pytest.raises(ConfigError, match="auth_keys") as info:
        Config(auth_keys=bad)
    assert "hunter2" not in str(info.value)


# ---------------------------------------------------------------------------
# A monitor on the simulated wire: every datagram must verify.


class Monitor:
    """Records every datagram offered to the network and verifies each afterwards
    with sessions of its own, built from the ISNs seen on the wire (as each
    receiver would), over a chain holding every key used."""

    def __init__(self, keys: KeyChain, server_keys: KeyChain | None = None) -> None:
        self.keys = keys  # the client's view (its RecvIDs)
        self.server_keys = keys if server_keys is None else server_keys
        self.wire: list[tuple[Any, Any, bytes, str]] = []

    def tap(self, t: float, src: Any, dst: Any, data: bytes, fate: str) -> None:
        self.wire.append((src, dst, bytes(data), fate))

    def verify(self) -> Counter[str]:
        """Check every datagram; return how many of each kind there were."""
        segs = [(src, dst, data, parse_segment(data)) for src, dst, data, _ in self.wire]
        syn = next(s for *_, s in segs if s.flags & (SYN | ACK) == SYN)
        synack = next(s for *_, s in segs if s.flags & (SYN | ACK) == SYN | ACK)
        client = next(src for src, _, _, s in segs if s is syn)
        at_server = AuthSession.for_connection(
            self.server_keys, synack.seq, syn.seq, synack.sport, synack.dport
        )
        at_client = AuthSession.for_connection(self.keys, syn.seq, synack.seq, syn.sport, syn.dport)
        kinds: Counter[str] = Counter()
        for src, _, data, seg in segs:
            receiver = at_server if src == client else at_client
            assert find_option(data) >= 20, seg
            assert receiver.check(data, seg) is None, (src, seg)
            kinds[_kind(seg)] += 1
        return kinds


def _kind(seg: Segment) -> str:
    f = seg.flags
    if f & RST:
        return "RST"
    if f & SYN:
        return "SYN-ACK" if f & ACK else "SYN"
    if f & FIN:
        return "FIN"
    if seg.payload:
        return "data"
    return "ACK+SACK" if seg.sack else "ACK"


def _monitored_pair(
    link: LinkConfig | None, seed: int, cfg_a: Config, cfg_b: Config
) -> tuple[Any, Any, Any, Monitor]:
    net, ch, sh = pair(link, seed=seed, config=cfg_a, server_config=cfg_b)
    assert isinstance(cfg_a.auth_keys, KeyChain)
    mon = Monitor(KeyChain(list(cfg_a.auth_keys.keys)))
    net.add_tap(mon.tap)
    return net, ch, sh, mon


# ---------------------------------------------------------------------------
# Handshakes and transfers


@pytest.mark.parametrize("timestamps", [True, False])
def test_transfer_both_ways_over_loss_every_datagram_signed(timestamps: bool) -> None:
    """A lossy, reordering path, data both ways: SYN, SYN-ACK, data, ACKs with SACK
    and D-SACK, fast retransmissions, RTO and TLP, FIN — all signed, all verified."""
    link = LinkConfig(delay=0.02, loss=0.03, reorder=0.02, duplicate=0.01)
    cfg_a, cfg_b = ao(timestamps=timestamps), ao(timestamps=timestamps)
    net, ch, sh, mon = _monitored_pair(link, 7, cfg_a, cfg_b)
    rnd = random.Random(7)
    up, down = rnd.randbytes(300_000), rnd.randbytes(200_000)
    sh.accept_factory = lambda: BulkApp(down)
    client = BulkApp(up)
    conn = ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: client.terminated and sh.accepted[0].terminated, timeout=600)
    server = sh.accepted[0]
    assert bytes(server.received) == up and bytes(client.received) == down
    assert client.error is None and server.error is None
    kinds = mon.verify()
    assert {"SYN", "SYN-ACK", "data", "ACK", "ACK+SACK", "FIN"} <= set(kinds), kinds
    st = conn.stats()
    assert st["auth"] and st["auth_accepted"] > 100 and st["retransmissions"] > 0
    assert st["dsacks_sent"] + server.conn.stats()["dsacks_sent"] > 0  # type: ignore[union-attr]
    for ep in (ch.endpoint, sh.endpoint):
        assert auth_drops(ep.stats()) == {}
    # With timestamps, options are full at 40 bytes: one SACK block; without, two.
    room = 1 if timestamps else 2
    blocks = [len(parse_segment(d).sack or ()) for _, _, d, _ in mon.wire]
    assert max(blocks) == room


def test_mss_accounts_for_the_option_and_datagrams_never_grow() -> None:
    """The effective send MSS loses the option's 16 bytes, so no datagram with
    TCP-AO is larger than the largest the same transfer sends without it."""
    link = LinkConfig(delay=0.01, loss=0.02)
    sizes = {}
    common = {}
    for name, cfg in (("plain", Config()), ("ao", ao())):
        net, ch, sh = pair(link, seed=3, config=cfg, server_config=cfg)
        seen: list[int] = []
        net.add_tap(lambda t, s, d, data, fate, seen=seen: seen.append(len(data)))
        rnd = random.Random(3)
        up, down = rnd.randbytes(200_000), rnd.randbytes(200_000)
        sh.accept_factory = lambda down=down: BulkApp(down)
        client = BulkApp(up)
        conn = ch.connect(client, B, 80, 0.0)
        net.run_until(lambda client=client: client.terminated, timeout=600)
        assert bytes(sh.accepted[0].received) == up
        sizes[name] = max(seen)
        common[name] = Counter(seen).most_common(1)[0][0]
        assert conn.snd_mss == 1400 - (OPTION_LEN if name == "ao" else 0)
    assert sizes["ao"] <= sizes["plain"]
    # Full data segments are exactly as large: the option replaced 16 payload bytes.
    assert common["ao"] == common["plain"] == 20 + 12 + 1400
    assert sizes["ao"] == 20 + 40 + 1400 - OPTION_LEN  # with a SACK block: 40 bytes of options


def test_handshake_both_ways_and_simultaneous_open() -> None:
    # Active and passive: the transfer tests above. Simultaneous open, signed SYNs
    # crossing: each end verifies the other's SYN with the Receive_SYN key.
    net, ch, sh = pair(None, seed=1, config=ao(), server_config=ao())
    sh.endpoint.stop_listening(80)
    a_app, b_app = BulkApp(b"from a"), BulkApp(b"from b")
    ch.connect(a_app, B, 80, 0.0, local_port=4000)
    sh.connect(b_app, A, 4000, 0.0, local_port=80)
    net.run_until(lambda: a_app.terminated and b_app.terminated, timeout=60)
    assert bytes(a_app.received) == b"from b" and bytes(b_app.received) == b"from a"
    assert a_app.error is None and b_app.error is None


@pytest.mark.parametrize(
    ("client_keys", "server_keys", "reason"),
    [
        (chain(OTHER_SECRET), chain(SECRET), "drop_auth_bad_mac"),
        (chain(SECRET, (2, 2)), chain(SECRET), "drop_auth_unknown_key"),
        (None, chain(SECRET), "drop_auth_missing"),
    ],
)
def test_mismatched_keys_fail_to_connect_and_count_drops(
    client_keys: KeyChain | None, server_keys: KeyChain, reason: str
) -> None:
    c_cfg = Config(auth_keys=client_keys, syn_retries=2)
    net, ch, sh = pair(None, seed=1, config=c_cfg, server_config=Config(auth_keys=server_keys))
    sent: list[Any] = []
    net.add_tap(lambda t, s, d, data, fate: sent.append(s))
    client = BulkApp(b"x")
    ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: client.terminated, timeout=60)
    assert isinstance(client.error, ConnectTimeoutError)
    st = sh.endpoint.stats()
    assert st[reason] == 3  # the SYN and its two retransmissions, all dropped
    assert st["connections"] == 0 and B not in sent  # nothing allocated, nothing sent


def test_a_server_without_keys_cannot_fool_a_client_with_keys() -> None:
    net, ch, _ = pair(None, seed=1, config=ao(syn_retries=1), server_config=Config())
    client = BulkApp(b"x")
    ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: client.terminated, timeout=60)
    assert isinstance(client.error, ConnectTimeoutError)
    # The server answered (it ignores the unknown option 29); its SYN-ACKs have no MAC.
    assert ch.endpoint.stats()["drop_auth_missing"] >= 2


# ---------------------------------------------------------------------------
# Hand-played peer with keys (tests/drill.py), for exact segments.


class Peer:
    """The drill's remote peer holding the key: signs what it sends and verifies
    what it receives (one session: the peer's ISN is PEER_ISN, ours ISN)."""

    def __init__(self, d: Drill, keys: KeyChain | None = None) -> None:
        self.d = d
        self.keys = keys if keys is not None else chain()
        self.s = AuthSession.for_connection(self.keys, d.peer_isn, d.isn, RPORT, LPORT)

    def build(
        self,
        flags: int | str,
        seq: int,
        ack: int = 0,
        *,
        payload: bytes = b"",
        wnd: int = 65535,
        sport: int = RPORT,
        mac: str = "good",
        **opts: Any,
    ) -> bytes:
        """A segment from the peer: ``mac`` "good", "bad" (one MAC bit flipped,
        checksum still right) or "none" (no TCP-AO option)."""
        options = encode_options(**opts)
        if mac == "none":
            return build_segment(
                sport, LPORT, seq & SEQ_MASK, ack & SEQ_MASK, flags_of(flags), wnd, payload, options
            )
        raw = build_segment(
            sport,
            LPORT,
            seq & SEQ_MASK,
            ack & SEQ_MASK,
            flags_of(flags),
            wnd,
            payload,
            options + self.s.placeholder(),
            compute_checksum=False,
        )
        off = 20 + len(options)
        data = bytearray(self.s.sign(raw, off))
        if mac == "bad":
            data[off + 4] ^= 1
            data[16:18] = b"\0\0"  # "not computed": the MAC alone must catch it
        return bytes(data)

    def send(self, flags: int | str, seq: int, ack: int = 0, **kw: Any) -> None:
        at = kw.pop("at", None)
        addr = kw.pop("addr", PEER)
        self.d.inject_raw(self.build(flags, seq, ack, **kw), at=at, addr=addr)

    def expect(self, flags: int | str, seq: int, ack: int | None = None, **kw: Any) -> Segment:
        """As Drill.expect, and the segment must verify."""
        self.d.advance(kw.get("at"))
        assert self.d.sent, f"expected [{flags}], nothing sent"
        data = self.d.sent[0].data
        seg = self.d.expect(flags, seq, ack, **kw)
        assert self.s.check(data, seg) is None, seg
        return seg

    def verify_all(self) -> list[Segment]:
        """Everything sent and not yet expected; each must verify."""
        out = []
        for s in self.d.take_sent():
            seg = s.seg
            assert self.s.check(s.data, seg) is None, seg
            out.append(seg)
        return out


TS = (1000, 0)


def ao_drill(**kw: Any) -> tuple[Drill, Peer]:
    keys = chain()
    d = Drill(Config(auth_keys=keys, **kw))
    return d, Peer(d)


def ao_established(d: Drill, p: Peer, passive: bool = False) -> None:
    """ESTABLISHED with timestamps and SACK, the peer's MSS 1000; now = RTT."""
    syn_opts: dict[str, Any] = {"mss": 1000, "sack_perm": True, "wscale": 7}
    if passive:
        d.listen()
        p.send("S", d.R(0), at=0.0, ts=(1000, 0), **syn_opts)
        p.expect("S.", d.L(0), d.R(1), at=0.0, mss=d.config.mss, ts=(ANY, 1000))
        p.send(".", d.R(1), d.L(1), at=RTT, ts=(1250, 0))
        d.expect_events(ConnectionAccepted)
    else:
        d.connect(at=0.0)
        p.expect("S", d.L(0), at=0.0, mss=d.config.mss)
        p.send("S.", d.R(0), d.L(1), at=RTT, ts=(1250, 0), **syn_opts)
        p.expect(".", d.L(1), d.R(1), at=RTT)
        d.expect_events(ConnectionEstablished)
    assert d.state is State.ESTABLISHED
    assert d.conn.snd_mss == 1000 - OPTION_LEN


def ts_now(d: Drill) -> tuple[int, int]:
    """A TSval for the peer now (its clock: 1000 + ms) and a valid TSecr."""
    return (1000 + int(d.now * 1000), d.conn._tsval(d.now))


@pytest.mark.parametrize("passive", [False, True])
def test_segments_with_a_missing_or_wrong_mac_change_nothing(passive: bool) -> None:
    """Blind or on-path injection with exactly the right numbers: RST, SYN, data at
    RCV.NXT, FIN, an ACK of everything, an old timestamp (PAWS) — dropped before
    any state change, no reply (not even a challenge ACK), counted by reason."""
    d, p = ao_drill()
    ao_established(d, p, passive)
    conn = d.conn
    before = conn.stats()
    t = 0.5
    for mac in ("none", "bad"):
        for flags, seq, payload, ts in (
            ("R", d.R(1), b"", None),
            ("R.", d.R(1), b"", None),
            ("S", d.R(1), b"", (2000, 0)),
            ("P.", d.R(1), b"injected", (2000, 0)),
            ("F.", d.R(1), b"", (2000, 0)),
            (".", d.R(1), b"", (1, 0)),  # PAWS would ACK it
            ("P.", d.R(5000), b"out of window", (2000, 0)),  # would draw an ACK
        ):
            kw: dict[str, Any] = {"payload": payload, "mac": mac, "at": t}
            if ts is not None:
                kw["ts"] = ts
            p.send(flags, seq, d.L(1), **kw)
            t += 0.01
    d.expect_nothing()
    assert conn.state is State.ESTABLISHED and conn.readable == 0
    after = conn.stats()
    for k in ("segments_received", "challenge_acks", "paws_drops", "dropped_segments", "rcv_wnd"):
        assert after[k] == before[k], k
    assert after["auth_missing"] == 7 and after["auth_bad_mac"] == 7
    st = d.ep.stats()
    assert st["drop_auth_missing"] == 7 and st["drop_auth_bad_mac"] == 7
    # The real peer's segments still pass, at the same sequence numbers.
    p.send("P.", d.R(1), d.L(1), payload=b"real", ts=ts_now(d), at=t)
    assert d.read() == b"real"


def test_a_listener_checks_a_syn_before_allocating_anything() -> None:
    d, p = ao_drill()
    d.listen()
    for mac in ("none", "bad"):
        p.send("S", d.R(0), mac=mac, mss=1000, at=0.0)
    d.inject("S", d.R(0), mss=1000, at=0.0)  # drill's own: no option
    d.expect_nothing()
    st = d.ep.stats()
    assert st["connections"] == 0
    assert st["drop_auth_missing"] == 2 and st["drop_auth_bad_mac"] == 1
    # ACKs for no connection: no RST (it could not be signed), counted.
    p.send(".", d.R(1), d.L(1), at=0.1)
    d.expect_nothing()
    assert d.ep.stats()["drop_auth_no_connection"] == 1 and d.ep.stats()["rst_sent"] == 0
    # The real SYN gets a signed SYN-ACK.
    p.send("S", d.R(0), mss=1000, at=0.2)
    p.expect("S.", d.L(0), d.R(1), at=0.2)


def test_closed_port_answers_only_an_authentic_syn_with_a_signed_rst() -> None:
    d, p = ao_drill()
    # No listener. Forged SYN or any other segment: nothing at all.
    p.send("S", d.R(0), mac="none", at=0.0)
    p.send("S", d.R(0), mac="bad", at=0.0)
    p.send(".", d.R(0), d.L(1), at=0.0)
    p.send("P.", d.R(0), d.L(1), payload=b"x", at=0.0)
    d.expect_nothing()
    st = d.ep.stats()
    assert st["rst_sent"] == 0 and st["drop_auth_no_connection"] == 2
    # An authentic SYN: <SEQ=0><ACK=SYN.SEQ+1><CTL=RST,ACK>, signed with local ISN 0.
    p.send("S", d.R(0), at=0.1)
    data = d.sent[0].data
    seg = d.expect("R.", 0, d.R(1), at=0.1)
    client_view = AuthSession.for_connection(p.keys, d.peer_isn, None, RPORT, LPORT)
    assert client_view.check(data, seg) is None


def test_a_client_is_refused_by_a_signed_rst_from_a_closed_port() -> None:
    net, ch, sh = pair(None, seed=1, config=ao(), server_config=ao())
    sh.endpoint.stop_listening(80)
    client = BulkApp(b"x")
    ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: client.terminated, timeout=60)
    assert isinstance(client.error, ConnectionRefusedError)
    assert sh.endpoint.stats()["rst_sent"] == 1


def test_every_kind_of_segment_is_signed() -> None:
    """Data, retransmissions (RTO and TLP), window probes, keepalive probes,
    SACK and D-SACK ACKs, FIN and RST, each from the engine, each verified."""
    d, p = ao_drill(keepalive=True, keepalive_idle=30.0, keepalive_interval=5.0)
    ao_established(d, p)
    conn = d.conn
    # Data, then silence: a tail loss probe, then RTO retransmissions.
    d.send(bytes(3000), at=0.5)
    d.advance(3.0)
    sent = p.verify_all()
    assert conn.stats()["tlp_probes"] >= 1 and conn.retransmissions >= 2
    assert {len(s.payload) for s in sent} <= {984, 3000 - 3 * 984}
    # The peer ACKs everything with a zero window while more waits: window probes.
    t = d.now
    p.send(".", d.R(1), d.L(3001), wnd=0, ts=ts_now(d), at=t)
    d.send(bytes(500), at=t)
    d.advance(t + 20.0)
    assert conn.window_probes >= 2
    p.verify_all()
    # The window opens; data flows and is acknowledged.
    t = d.now
    p.send(".", d.R(1), d.L(3001), ts=ts_now(d), at=t)
    d.advance(t + 0.01)
    p.verify_all()
    p.send(".", d.R(1), d.L(3501), ts=ts_now(d), at=t + 0.02)
    # Out-of-order data, then a duplicate: SACK, then D-SACK, each one block.
    t = d.now
    p.send("P.", d.R(101), d.L(3501), payload=bytes(100), ts=ts_now(d), at=t)
    p.send("P.", d.R(101), d.L(3501), payload=bytes(100), ts=ts_now(d), at=t)
    acks = p.verify_all()
    assert [a.sack for a in acks] == [
        ((d.R(101), d.R(201)),),
        ((d.R(101), d.R(201)),),  # D-SACK: the duplicate block alone (no room for two)
    ]
    assert conn.dsacks_sent == 1
    p.send("P.", d.R(1), d.L(3501), payload=bytes(100), ts=ts_now(d), at=t + 0.001)
    p.verify_all()
    assert d.read() == bytes(200)
    # Idle: keepalive probes (SEQ = SND.UNA - 1).
    d.advance(d.now + 40.0)
    probes = p.verify_all()
    assert conn.keepalive_probes >= 2 and all(s.seq == d.L(3500) for s in probes)
    # FIN, then an RST from abort() on a second connection.
    p.send(".", d.R(201), d.L(3501), ts=ts_now(d), at=d.now)
    d.shutdown(at=d.now)
    assert [s.flags for s in p.verify_all()] == [FIN | ACK]
    d.abort(at=d.now)
    assert [s.flags & RST for s in p.verify_all()] == [RST]
    assert auth_drops(d.ep.stats()) == {}


def test_time_wait_keeps_the_session() -> None:
    """The compact TIME-WAIT record verifies a retransmitted FIN and signs its ACK;
    a forged FIN neither draws an ACK nor restarts the 2 MSL timer."""
    d, p = ao_drill()
    ao_established(d, p)
    d.shutdown(at=0.5)
    p.expect("F.", d.L(1), d.R(1), at=0.5)
    p.send("F.", d.R(1), d.L(2), ts=ts_now(d), at=0.75)
    p.expect(".", d.L(2), d.R(2), at=0.75)
    tw = d.ep.connections[d.key]
    assert isinstance(tw, TimeWait) and tw.auth is d.conn.auth
    deadline = tw.deadline
    p.send("F.", d.R(1), d.L(2), ts=ts_now(d), mac="bad", at=10.0)
    p.send("F.", d.R(1), d.L(2), ts=ts_now(d), mac="none", at=10.0)
    d.expect_nothing()
    assert tw.deadline == deadline
    p.send("F.", d.R(1), d.L(2), ts=ts_now(d), at=10.0)
    p.expect(".", d.L(2), d.R(2), at=10.0)
    assert tw.deadline == 10.0 + 2 * d.config.msl
    st = d.ep.stats()
    assert st["drop_auth_bad_mac"] == 1 and st["drop_auth_missing"] == 1


def test_a_forged_syn_cannot_end_time_wait() -> None:
    """RFC 6191 reuse of a TIME-WAIT identity needs an authentic SYN."""
    d, p = ao_drill()
    ao_established(d, p, passive=True)
    d.close(at=0.5)
    p.expect("F.", d.L(1), d.R(1), at=0.5)
    p.send("F.", d.R(1), d.L(2), ts=ts_now(d), at=0.75)
    p.expect(".", d.L(2), d.R(2), at=0.75)
    assert isinstance(d.ep.connections[d.key], TimeWait)
    # The peer's new incarnation: a new ISN, so a new session.
    p.s = AuthSession.for_connection(p.keys, d.R(100_000), None, RPORT, LPORT)
    p.send("S", d.R(100_000), ts=(90_000, 0), mss=1000, mac="bad", at=5.0)
    d.expect_nothing()
    assert isinstance(d.ep.connections[d.key], TimeWait)
    assert d.ep.stats()["drop_auth_bad_mac"] == 1
    p.send("S", d.R(100_000), ts=(90_000, 0), mss=1000, at=5.0)
    assert d.ep.stats()["state_SYN-RECEIVED"] == 1
    synack = p.verify_all()
    assert [s.flags for s in synack] == [SYN | ACK] and synack[0].ack == d.R(100_001)


def test_nat_rebinding_is_accepted_at_once_on_an_authentic_segment() -> None:
    """With TCP-AO an authentic segment that brings something new moves the
    connection even where the strict checks would not (here data beyond a hole);
    a forged one or an authentic replay does not; the new address stays limited
    to 3x what it sent until it proves it receives."""
    d, p = ao_drill()
    ao_established(d, p)
    conn = d.conn
    p.send("P.", d.R(1), d.L(1), payload=bytes(500), ts=ts_now(d), at=0.3)
    d.advance(0.39)  # the delayed ACK
    assert len(p.verify_all()) == 1
    new = ("10.0.0.99", 7000)
    # A forged segment, and a replay of the data already received: nothing moves.
    p.send("P.", d.R(501), d.L(1), payload=b"x", ts=ts_now(d), mac="bad", addr=new, at=0.4)
    p.send("P.", d.R(1), d.L(1), payload=bytes(500), ts=ts_now(d), addr=new, at=0.4)
    d.expect_nothing()
    assert conn.addr == PEER and conn.migrations == 0
    st = d.ep.stats()
    assert st["drop_auth_bad_mac"] == 1 and st["drop_migration_rejected"] == 1
    # Out-of-order data from the new address (SEQ beyond RCV.NXT): moved at once.
    p.send("P.", d.R(1001), d.L(1), payload=bytes(100), ts=ts_now(d), addr=new, at=0.5)
    assert conn.addr == new and conn.migrations == 1
    assert conn.stats()["path_validated"] is False
    sent = d.take_sent()
    assert sent and all(s.addr == new for s in sent)
    assert sum(len(s.data) for s in sent) <= 3 * len(p.build("P.", 0, payload=bytes(100), ts=TS))


# ---------------------------------------------------------------------------
# Key rollover (RFC 5925 §6.1, §7.5.2 e; docs/authentication.md)


@pytest.mark.parametrize("ids", [((1, 1), (2, 2)), ((1, 2), (3, 4))])
def test_key_rollover_mid_transfer(ids: tuple[tuple[int, int], tuple[int, int]]) -> None:
    """Both ends add a new key, then ask for it (RNextKeyID); each end switches its
    sending key when it verifies the other's request; the old key is removed;
    the transfer, over loss, never stops and nothing is dropped."""
    (s1, r1), (s2, r2) = ids
    new_secret = bytes(range(100, 132))
    keys_a = KeyChain([MasterKey(s1, r1, SECRET)])
    keys_b = KeyChain([MasterKey(r1, s1, SECRET)])
    link = LinkConfig(delay=0.02, loss=0.01, rate=2_000_000)
    net, ch, sh = pair(
        link, seed=5, config=Config(auth_keys=keys_a), server_config=Config(auth_keys=keys_b)
    )
    mon = Monitor(
        KeyChain([MasterKey(s1, r1, SECRET), MasterKey(s2, r2, new_secret)]),
        KeyChain([MasterKey(r1, s1, SECRET), MasterKey(r2, s2, new_secret)]),
    )
    net.add_tap(mon.tap)
    rnd = random.Random(5)
    up, down = rnd.randbytes(2_000_000), rnd.randbytes(500_000)
    sh.accept_factory = lambda: BulkApp(down)
    client = BulkApp(up)
    conn = ch.connect(client, B, 80, 0.0)
    acked: dict[str, int] = {}

    def add() -> None:
        acked["add"] = conn.bytes_acked
        keys_a.add(MasterKey(s2, r2, new_secret))
        keys_b.add(MasterKey(r2, s2, new_secret))

    def ask() -> None:
        keys_a.set_rnext(r2)
        keys_b.set_rnext(s2)

    def remove() -> None:
        acked["remove"] = conn.bytes_acked
        assert conn.stats()["auth_send_id"] == s2 and conn.stats()["auth_last_keyid"] == r2
        keys_a.remove(s1, r1)
        keys_b.remove(r1, s1)

    net.call_at(0.3, add)
    net.call_at(0.4, ask)
    net.call_at(0.8, remove)
    net.run_until(lambda: client.terminated and sh.accepted[0].terminated, timeout=600)
    server = sh.accepted[0]
    assert bytes(server.received) == up and bytes(client.received) == down
    assert 0 < acked["add"] < acked["remove"] < len(up)  # all of it mid-transfer
    for c, send_id in ((conn, s2), (server.conn, r2)):
        assert c is not None
        st = c.stats()
        assert st["auth_send_id"] == send_id and st["auth_rnext_id"] == (r2 if c is conn else s2)
    for ep in (ch.endpoint, sh.endpoint):
        assert auth_drops(ep.stats()) == {}
    # Both keys were used on the wire, and every datagram verifies.
    used = Counter(d[find_option(d) + 2] for _, _, d, _ in mon.wire)
    assert used[s1] and used[s2] and used[r1] and used[r2]
    mon.verify()


@pytest.mark.parametrize(
    "algorithm",
    [
        pytest.param(
            a,
            marks=pytest.mark.skipif(
                a not in available_algorithms(), reason="needs the 'cryptography' package"
            ),
        )
        for a in ("hmac-sha256-96", "hmac-sha1-96", "aes-128-cmac-96")
    ],
)
def test_every_algorithm_end_to_end(algorithm: str) -> None:
    keys = [KeyChain([MasterKey(7, 7, SECRET, algorithm)]) for _ in range(2)]
    net, ch, sh, mon = _monitored_pair(
        LinkConfig(delay=0.01, loss=0.02), 11, Config(auth_keys=keys[0]), Config(auth_keys=keys[1])
    )
    rnd = random.Random(11)
    up, down = rnd.randbytes(100_000), rnd.randbytes(50_000)
    sh.accept_factory = lambda: BulkApp(down)
    client = BulkApp(up)
    ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: client.terminated and sh.accepted[0].terminated, timeout=600)
    assert bytes(sh.accepted[0].received) == up and bytes(client.received) == down
    assert sum(mon.verify().values()) == len(mon.wire) > 100


# ---------------------------------------------------------------------------
# SYN cookies (docs/security.md) with TCP-AO


def test_syn_cookie_handshake_is_signed_and_its_ack_verified() -> None:
    """The stateless SYN-ACK carries the option, signed under the cookie as our ISN;
    the ACK completing the cookie is checked before anything is created: a valid
    cookie without a valid MAC creates nothing and draws nothing."""
    d, p = ao_drill(syncookies="always")
    d.listen()
    # The peer does not know our ISN (the cookie) yet: a SYN-SENT session.
    p.s = AuthSession.for_connection(p.keys, d.peer_isn, None, RPORT, LPORT)
    p.send("S", d.R(0), ts=(1000, 0), mss=1000, sack_perm=True, wscale=7, at=0.0)
    assert d.ep.stats()["syncookies_sent"] == 1 and d.ep.stats()["connections"] == 0
    (synack,) = p.verify_all()  # verifies, and teaches the session the cookie
    assert synack.flags == SYN | ACK and p.s.peer_isn == synack.seq
    cookie = synack.seq
    for mac in ("none", "bad"):
        p.send(".", d.R(1), cookie + 1, ts=(1010, synack.ts[0]), mac=mac, at=0.01)
    d.expect_nothing()
    st = d.ep.stats()
    assert st["connections"] == 0 and st["syncookies_ok"] == 0 and st["rst_sent"] == 0
    assert st["drop_auth_missing"] == 1 and st["drop_auth_bad_mac"] == 1
    p.send(".", d.R(1), cookie + 1, ts=(1020, synack.ts[0]), at=0.02)
    d.expect_events(ConnectionAccepted)
    conn = d.conn
    assert conn.state is State.ESTABLISHED and conn.iss == cookie and conn.auth is not None
    assert d.ep.stats()["syncookies_ok"] == 1
    p.send("P.", d.R(1), cookie + 1, payload=b"hello", ts=(1030, synack.ts[0]), at=0.03)
    assert d.read() == b"hello"
    assert conn.snd_mss == 536 - OPTION_LEN  # the cookie keeps 536 of the 1000 (its MSS table)


def test_transfer_through_syn_cookies_with_tcp_ao() -> None:
    cfg_a, cfg_b = ao(), ao(syncookies="always")
    net, ch, sh, mon = _monitored_pair(LinkConfig(delay=0.01, loss=0.02), 9, cfg_a, cfg_b)
    rnd = random.Random(9)
    up, down = rnd.randbytes(100_000), rnd.randbytes(100_000)
    sh.accept_factory = lambda: BulkApp(down)
    client = BulkApp(up)
    ch.connect(client, B, 80, 0.0)
    net.run_until(lambda: client.terminated and sh.accepted[0].terminated, timeout=600)
    assert bytes(sh.accepted[0].received) == up and bytes(client.received) == down
    assert sh.endpoint.stats()["syncookies_ok"] == 1
    mon.verify()
