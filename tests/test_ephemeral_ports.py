"""Ephemeral port selection (RFC 6056 §3.3.4, Linux's __inet_hash_connect) and the
reuse of TIME-WAIT identities once the range is spent (RFC 6191, tcp_tw_reuse),
through two sans-IO engines on a virtual clock."""

from __future__ import annotations

import pytest

from rudp.config import Config
from rudp.engine import Connection, Endpoint, State
from rudp.errors import AddressInUseError

A, B, B2 = ("10.0.0.1", 1000), ("10.0.0.2", 2000), ("10.0.0.3", 3000)


class Pair:
    """A client engine at A and listening servers at B and B2 (TCP port 80)."""

    def __init__(self, ports: tuple[int, int] | None = None) -> None:
        self.client = Endpoint(Config(), seed=1)
        if ports is not None:
            self.client.ephemeral_ports = ports
        self.servers = {B: Endpoint(Config(), seed=2), B2: Endpoint(Config(), seed=3)}
        for server in self.servers.values():
            server.listen(80)
        self.now = 0.0

    def pump(self) -> None:
        for _ in range(50):
            moved = False
            for data, dest in self.client.datagrams_to_send(self.now):
                self.servers[dest].receive_datagram(data, A, self.now)
                moved = True
            for addr, server in self.servers.items():
                for data, _dest in server.datagrams_to_send(self.now):
                    self.client.receive_datagram(data, addr, self.now)
                    moved = True
                while server.next_event() is not None:
                    pass
            while self.client.next_event() is not None:
                pass
            if not moved:
                return

    def short_connection(
        self, dest: tuple[str, int] = B, config: Config | None = None
    ) -> Connection:
        """Open, then close from the client first: the client keeps TIME-WAIT."""
        conn = self.client.connect(dest, 80, self.now, config=config)
        self.pump()
        assert conn.state is State.ESTABLISHED
        conn.close(self.now)
        self.pump()
        (server_conn,) = [
            c for c in self.servers[dest].connections.values() if c.state is State.CLOSE_WAIT
        ]
        assert isinstance(server_conn, Connection)
        server_conn.close(self.now)
        self.pump()
        assert conn.state is State.TIME_WAIT and conn.timestamps_ok
        return conn


def test_consecutive_connections_to_one_destination_take_consecutive_ports() -> None:
    pair = Pair()
    lo, hi = pair.client.ephemeral_ports
    span = hi - lo + 1
    for dest in (B, B2):
        ports = [pair.client.connect(dest, 80, 0.0).local_port for _ in range(6)]
        assert all(lo <= p <= hi for p in ports)
        assert [(p - ports[0]) % span for p in ports] == list(range(6)), ports


def test_each_destination_starts_at_its_own_offset() -> None:
    """RFC 6056: the offset is per destination, so the ports used towards one peer
    say nothing about those used towards another."""
    ep = Endpoint(Config(), seed=7)
    starts = {ep.connect(("10.0.1.1", 1000 + i), 80, 0.0).local_port for i in range(20)}
    assert len(starts) > 15  # not one sequence shared by all destinations


def test_a_spent_range_reuses_the_oldest_time_wait_first() -> None:
    pair = Pair(ports=(50000, 50007))
    first_round = [pair.short_connection().local_port for _ in range(8)]
    assert sorted(first_round) == list(range(50000, 50008))
    assert pair.client.counters["time_wait_reused"] == 0
    pair.now = 2.0  # every TIME-WAIT is now over a second old (and far from 2 MSL)
    second_round = [pair.short_connection().local_port for _ in range(8)]
    # The range cycles in order: the identity reused is always the oldest one.
    assert second_round == first_round
    assert pair.client.counters["time_wait_reused"] == 8


def test_young_time_wait_and_live_connections_are_never_taken() -> None:
    pair = Pair(ports=(50000, 50003))
    live = pair.client.connect(B, 80, 0.0)  # holds one port (SYN-SENT)
    for _ in range(3):
        pair.short_connection()
    pair.now = 0.5  # the TIME-WAITs are younger than a second
    with pytest.raises(AddressInUseError):
        pair.client.connect(B, 80, pair.now)
    pair.now = 1.5
    conn = pair.client.connect(B, 80, pair.now)
    assert conn.local_port != live.local_port
    assert pair.client.counters["time_wait_reused"] == 1


def test_another_destination_is_not_held_back_by_a_spent_one() -> None:
    pair = Pair(ports=(50000, 50001))
    for _ in range(2):
        pair.client.connect(B, 80, 0.0)
    with pytest.raises(AddressInUseError):
        pair.client.connect(B, 80, 0.0)
    assert pair.client.connect(B2, 80, 0.0).local_port in (50000, 50001)


def test_time_wait_records_end_at_their_own_deadlines_whatever_their_msl() -> None:
    """TIME-WAIT deadlines wait in a queue, in the order they fall (each record lasts
    2 MSL from when it began); one falling before the last queued (a connection with
    a smaller MSL) goes to the timer heap. Every record ends at its deadline, not
    before, and the host's timer says when."""
    pair = Pair()
    ep = pair.client
    first = pair.short_connection(config=Config(msl=30.0))  # TIME-WAIT 0 .. 60
    pair.now = 1.0
    short = pair.short_connection(config=Config(msl=2.0))  # 1 .. 5: before 60
    pair.now = 2.0
    last = pair.short_connection()  # default MSL 30: 2 .. 62
    keys = [first.key, short.key, last.key]
    assert [ep.connections[k].deadline for k in keys] == [60.0, 5.0, 62.0]
    expected = [(5.0, [first.key, last.key]), (60.0, [last.key]), (62.0, [])]
    for when, left in expected:
        assert ep.get_timer() == when
        ep.handle_timer(when - 0.001)
        assert len(ep.connections) == len(left) + 1  # not before its deadline
        ep.handle_timer(when)
        assert sorted(ep.connections) == sorted(left)
    assert ep.get_timer() is None
