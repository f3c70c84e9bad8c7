"""NAT rebinding (connection migration) in the simulator, and off-path attacks on it.

TEST-MATRIX row P2 (sim): the client's public port changes mid-transfer, after idle
and while busy; the transfer completes byte for byte and the server sends the new,
unvalidated address no more than 3x what it received from it. Security: segments
from a new address with a wrong sequence number or ACK move nothing; a spoofed
migration cannot make the connection send more than 3x what the spoofer sent.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from rudp import Config
from rudp.engine import Connection, Endpoint, State
from rudp.sim import LinkConfig, Nat, NatConfig, Network, PortAllocation
from rudp.sim.host import BulkApp, Host
from rudp.wire import ACK, build_segment, parse_segment
from rudp.wire.segment import encode_options

PRIVATE = ("192.168.1.10", 5000)
NAT_IP = "203.0.113.1"
SERVER = ("192.0.2.1", 4000)


class Budget:
    """Tap: bytes each way between the server and one address, and the worst ratio
    sent/received while the server's connection had not validated that address."""

    def __init__(self, conn: list[Connection]) -> None:
        self.conn = conn
        self.rx: dict[Any, int] = {}
        self.tx: dict[Any, int] = {}
        self.unvalidated_tx: dict[Any, int] = {}

    def __call__(self, t: float, src: Any, dst: Any, data: bytes, fate: str) -> None:
        if dst == SERVER:
            self.rx[src] = self.rx.get(src, 0) + len(data)
        elif src == SERVER and self.conn:
            self.tx[dst] = self.tx.get(dst, 0) + len(data)
            c = self.conn[0]
            if not c.stats()["path_validated"] and c.addr == dst:
                self.unvalidated_tx[dst] = self.unvalidated_tx.get(dst, 0) + len(data)


def _setup(cfg: Config, payload: bytes, seed: int = 3) -> tuple[Network, Nat, Host, BulkApp, Host]:
    net = Network(seed=seed)
    nat = Nat(NatConfig(timeout=30.0))
    net.add_nat(nat, NAT_IP)
    client = Host(Endpoint(cfg, seed=1))
    server = Host(Endpoint(cfg, seed=2))
    net.add_node(client, PRIVATE, behind=nat)
    net.add_node(server, SERVER)
    net.set_default_link(LinkConfig(delay=0.01, rate=2e6, queue_limit=200_000))
    server.endpoint.listen(80)
    server.accept_factory = lambda: BulkApp(b"")
    app = BulkApp(payload)
    client.connect(app, SERVER, 80, 0.0)
    return net, nat, client, app, server


def _conn(server: Host) -> Connection:
    (app,) = server.accepted
    assert app.conn is not None
    return app.conn


@pytest.mark.parametrize("timestamps", [True, False])
def test_rebinding_while_busy_transfer_completes(timestamps: bool) -> None:
    payload = bytes(range(256)) * 4096 * 10  # 10 MiB
    cfg = Config(timestamps=timestamps, rcv_buf=1 << 20, snd_buf=1 << 20)
    net, nat, _client, app, server = _setup(cfg, payload)
    conns: list[Connection] = []
    budget = Budget(conns)
    net.add_tap(budget)
    net.run_until(
        lambda: bool(server.accepted) and len(server.accepted[0].received) > 2_000_000, 60
    )
    conns.append(_conn(server))
    old = conns[0].addr
    nat.rebind(PRIVATE)  # mid-transfer: the next datagram leaves from a new port
    assert net.run_until(lambda: app.terminated and server.accepted[0].terminated, 300)
    srv = conns[0]
    assert srv.addr != old and srv.addr[0] == NAT_IP and nat.stats.rebinds == 1
    got = bytes(server.accepted[0].received)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert srv.migrations == 1 and app.error is None
    new = srv.addr
    assert budget.unvalidated_tx.get(new, 0) <= 3 * budget.rx[new]
    assert server.endpoint.counters["migrations"] == 1


def test_rebinding_after_idle() -> None:
    """The NAT's mapping expires while the connection is idle; the client's next
    write arrives from a new port and the connection follows it."""
    cfg = Config()
    net = Network(seed=5)
    # A NAT that does not preserve ports: a new mapping gets a new public port.
    nat = Nat(NatConfig(timeout=30.0, port_preservation=False, allocation=PortAllocation.RANDOM))
    net.add_nat(nat, NAT_IP)
    client = Host(Endpoint(cfg, seed=1))
    server = Host(Endpoint(cfg, seed=2))
    net.add_node(client, PRIVATE, behind=nat)
    net.add_node(server, SERVER)
    net.set_default_link(LinkConfig(delay=0.01))
    server.endpoint.listen(80)
    server.accept_factory = lambda: BulkApp(b"", read=True)
    app = BulkApp(b"", read=True)
    app.shut = True  # the client writes by hand below, without closing
    conn = client.connect(app, SERVER, 80, 0.0)
    net.run_until(lambda: bool(server.accepted), 5)
    conn.send(b"before", net.now)
    net.flush()
    net.run_for(1.0)
    srv = _conn(server)
    first = srv.addr
    net.run_for(60.0)  # idle past the NAT's 30 s mapping timeout
    assert nat.stats.mappings_expired >= 1
    conn.send(b"after", net.now)
    net.flush()
    net.run_for(1.0)
    assert bytes(server.accepted[0].received) == b"beforeafter"
    assert srv.addr != first and srv.migrations == 1
    assert srv.stats()["path_validated"]  # the ACK-then-probe exchange proved it
    assert srv.state is State.FIN_WAIT_2  # (the server's app half-closed at once)


def test_migration_disabled_drops_the_new_address() -> None:
    payload = bytes(1_000_000)
    cfg = Config(migration=False, user_timeout=5.0)
    net, nat, _client, _app, server = _setup(cfg, payload)
    net.run_until(lambda: bool(server.accepted) and len(server.accepted[0].received) > 200_000, 60)
    srv = _conn(server)
    nat.rebind(PRIVATE)
    net.run_for(30.0)
    assert srv.migrations == 0
    assert server.endpoint.counters["drop_migration_rejected"] > 0
    assert len(server.accepted[0].received) < len(payload)  # stuck, as plain TCP would be


# ---------------------------------------------------------------------------
# Off-path attacks (sans-IO endpoints, no NAT)

A = ("10.0.0.1", 4000)
B = ("10.0.0.2", 5000)
EVIL = ("6.6.6.6", 6666)


def _established(timestamps: bool = True) -> tuple[Endpoint, Endpoint, Connection, Connection]:
    cfg = Config(timestamps=timestamps)
    client = Endpoint(cfg, seed=1)
    server = Endpoint(cfg, seed=2)
    server.listen(80)
    conn = client.connect(B, 80, 0.0)
    for _ in range(10):
        for d, _ in client.datagrams_to_send(0.0):
            server.receive_datagram(d, A, 0.0)
        for d, _ in server.datagrams_to_send(0.0):
            client.receive_datagram(d, B, 0.0)
    (srv,) = server.connections.values()
    assert conn.state is State.ESTABLISHED and srv.state is State.ESTABLISHED
    return client, server, conn, srv


def _forge(
    srv: Connection, seq: int, ack: int, payload: bytes = b"", echo: int | None = 0
) -> bytes:
    opts = b""
    if srv.timestamps_ok:
        opts = encode_options(ts=(srv.ts_recent, echo if echo is not None else 0))
    return build_segment(srv.remote_port, srv.local_port, seq, ack, ACK, 65535, payload, opts)


@pytest.mark.parametrize(
    "what",
    ["seq below", "seq above", "ack above snd_max", "ack below snd_una", "no timestamp echo"],
)
def test_wrong_numbers_from_a_new_address_move_nothing(what: str) -> None:
    _c, server, _conn, srv = _established()
    seq, ack = srv.rcv_nxt, srv.snd_nxt
    echo = None  # a guess: 0
    if what == "seq below":
        seq = (seq - 1) & 0xFFFFFFFF
    elif what == "seq above":
        seq = (seq + 1000) & 0xFFFFFFFF
    elif what == "ack above snd_max":
        ack = (ack + 1) & 0xFFFFFFFF
    elif what == "ack below snd_una":
        ack = (srv.snd_una - 1) & 0xFFFFFFFF
    server.receive_datagram(_forge(srv, seq, ack, b"evil", echo), EVIL, 1.0)
    assert srv.addr == A and srv.migrations == 0 and srv.readable == 0
    assert server.datagrams_to_send(1.0) == []  # silently: no RST, no ACK to EVIL


def test_spoofed_migration_is_amplification_limited_and_reverts() -> None:
    """An attacker who knows everything (sequence numbers and a recent timestamp of
    ours, as an on-path observer would) can move the connection, but it sends the
    spoofed address at most 3x what the spoofer sent, and the real peer's next
    segment moves it back."""
    client, server, conn, srv = _established()
    # The server has much to send: 200 KB queued.
    srv.send(bytes(200_000), 1.0)
    out = server.datagrams_to_send(1.0)
    assert out
    echo = parse_segment(out[-1][0]).ts
    assert echo is not None
    spoof = _forge(srv, srv.rcv_nxt, srv.snd_una, b"", echo=echo[0])
    server.receive_datagram(spoof, EVIL, 1.001)
    assert srv.addr == EVIL and srv.migrations == 1 and not srv.stats()["path_validated"]
    sent_to_evil = 0
    t = 1.002
    for _ in range(50):  # ACKs from the real client keep arriving at the server...
        for d, addr in server.datagrams_to_send(t):
            if addr == EVIL:
                sent_to_evil += len(d)
        t += 0.01
        server.handle_timer(t)
    assert sent_to_evil <= 3 * len(spoof)
    # The real client's next segment (from A) passes the same checks: back to A.
    conn.send(b"hi", t)
    for d, _ in client.datagrams_to_send(t):
        server.receive_datagram(d, A, t)
    assert srv.addr == A and srv.migrations == 2
