"""Peer-to-peer through NATs: a rendezvous, hole punching, a rudp simultaneous open.

Two programs behind NATs cannot simply connect to each other: neither NAT lets an
unsolicited datagram in. This example does what RFC 5128 §3.3 calls UDP hole
punching, then runs rudp over the hole:

1. **Rendezvous.** Each peer sends ``register`` (a room name, a random id, its own
   local address) from its UDP socket to a tiny public server, which answers with
   the address the datagram came from — the peer's public address on its NAT — and,
   once two peers share a room, tells each one the other's public and local
   addresses (``peer``). Requests are repeated until answered (UDP loses datagrams).
2. **Hole punching.** Each peer sends small ``punch`` datagrams to the other's
   address, from the same socket. Its own NAT then accepts datagrams from there; the
   other NAT may drop the first punches, until the other peer has punched too. A
   peer that hears the other answers at once, saying so (``seen``): a peer told
   ``seen`` knows that the path works both ways.
3. **Simultaneous open.** Both hand the socket to rudp
   (``rudp.create_endpoint(sock=...)``) and open a connection to each other at once,
   with the same agreed TCP port on both sides: the SYNs cross, a TCP simultaneous
   open (RFC 9293 §3.5, figure 7). No side listens.

Then each sends its file (after a header line with its size and SHA-256),
half-closes, reads the other's to the end and checks it::

    python examples/p2p.py rendezvous --port 3478
    python examples/p2p.py peer --rendezvous HOST:3478 --room NAME --send FILE --out FILE

Diagnostics go to stderr; without ``--out`` the received data goes to stdout. The
sans-IO parts (:class:`Rendezvous`, :class:`PeerFinder`) also run in rudp's network
simulator (tests/test_p2p.py). docs/p2p.md says which NATs this works through and
what it does not protect against: the rendezvous is unauthenticated and nothing is
encrypted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import hashlib
import io
import ipaddress
import json
import secrets
import socket
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import rudp

Address = tuple[str, int]
Report = Callable[[str], None]

# -- messages --------------------------------------------------------------------

#: Every message of this example starts with these 13 bytes. The 13th byte is where a
#: TCP header has its data offset: 0 there makes rudp's engine drop the datagram as
#: malformed (a late punch reaching the endpoint), never take it for a segment.
MAGIC = b"rudp-p2p/1.0\x00"
MAX_MESSAGE = 1024  # bytes; anything longer is not ours
ROOM_MAX = 64  # characters


def encode(op: str, **fields: Any) -> bytes:
    return MAGIC + json.dumps({"op": op, **fields}, separators=(",", ":")).encode()


def decode(data: bytes) -> dict[str, Any] | None:
    """The message in ``data``, or None if it is not one of ours. Never raises."""
    if len(data) > MAX_MESSAGE or not data.startswith(MAGIC):
        return None
    try:
        msg = json.loads(data[len(MAGIC) :])
    except (ValueError, RecursionError):  # bad JSON or UTF-8; absurd nesting
        return None
    if isinstance(msg, dict) and isinstance(msg.get("op"), str):
        return msg
    return None


def valid_room(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= ROOM_MAX and value.isprintable():
        return value
    return None


def valid_id(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 16 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


def valid_address(value: Any) -> Address | None:
    """``[host, port]`` from a message (a numeric IP address and a port), or None."""
    if not (isinstance(value, list) and len(value) == 2):
        return None
    host, port = value
    if not isinstance(host, str) or type(port) is not int or not 0 < port <= 0xFFFF:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:  # from a dual-stack rendezvous server
        ip = ip.ipv4_mapped
    return (str(ip), port)


def format_address(addr: tuple[Any, ...]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 0xFFFF:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


# -- the rendezvous server (sans-IO) ---------------------------------------------


@dataclass
class Member:
    """A peer waiting in, or introduced through, a room."""

    ident: str
    public: Address  # where its requests came from: its NAT's address for it
    local: Address  # the address it says its socket has
    seen_at: float  # time of its last request


class Rendezvous:
    """The rendezvous server's state. Sans-IO, like rudp's engine: no socket, no
    clock (every call takes ``now``); so it is also a node of rudp's simulator.

    A room holds at most two peers (a third replaces the one that came first, e.g.
    after a restart). State is bounded: a room is forgotten ``ttl`` seconds after
    its last request, and at most ``max_rooms`` rooms exist (the least recently
    used goes first). Nothing a sender does can make it grow beyond that.
    """

    def __init__(
        self, *, ttl: float = 30.0, max_rooms: int = 10_000, report: Report | None = None
    ) -> None:
        self.ttl = ttl
        self.max_rooms = max_rooms
        self.report = report
        self.rooms: OrderedDict[str, list[Member]] = OrderedDict()  # least recently used first
        self.counters = {
            "requests": 0,
            "introductions": 0,
            "dropped": 0,
            "expired": 0,
            "evicted": 0,
        }
        self._out: list[tuple[bytes, Address]] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.expire(now)
        msg = decode(data)
        room = ident = local = None
        if msg is not None and msg["op"] == "register":
            room = valid_room(msg.get("room"))
            ident = valid_id(msg.get("id"))
            local = valid_address(msg.get("local"))
        if room is None or ident is None or local is None:
            self.counters["dropped"] += 1
            return
        self.counters["requests"] += 1
        members = [m for m in self.rooms.pop(room, []) if m.seen_at + self.ttl > now]
        me = next((m for m in members if m.ident == ident), None)
        changed = me is None or (me.public, me.local) != (addr, local)
        if me is None:
            me = Member(ident, addr, local, now)
            members.append(me)
            del members[:-2]  # two per room: the newest replaces the oldest
        me.public, me.local, me.seen_at = addr, local, now
        self.rooms[room] = members  # now the most recently used
        if len(self.rooms) > self.max_rooms:
            self.rooms.popitem(last=False)
            self.counters["evicted"] += 1
        other = next((m for m in members if m is not me), None)
        if other is None:
            self._out.append((encode("wait", room=room, you=list(addr)), addr))
            if changed and self.report:
                self.report(f"room {room!r}: {format_address(addr)} waiting")
            return
        self._out.append((self._introduce(room, me, other), me.public))
        if changed:
            # Tell the one who was waiting at once, rather than on its next request.
            self._out.append((self._introduce(room, other, me), other.public))
            self.counters["introductions"] += 1
            if self.report:
                self.report(
                    f"room {room!r}: introduced {format_address(other.public)}"
                    f" <-> {format_address(me.public)}"
                )

    @staticmethod
    def _introduce(room: str, to: Member, about: Member) -> bytes:
        return encode(
            "peer",
            room=room,
            you=list(to.public),
            peer_id=about.ident,
            peer=list(about.public),
            peer_local=list(about.local),
        )

    def expire(self, now: float) -> None:
        """Forget rooms idle for ``ttl`` (the oldest are first: O(1) per room)."""
        rooms = self.rooms
        while rooms:
            members = next(iter(rooms.values()))
            if max(m.seen_at for m in members) + self.ttl > now:
                break
            rooms.popitem(last=False)
            self.counters["expired"] += 1

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return None  # expiry happens on the next request: state stays bounded anyway

    def handle_timer(self, now: float) -> None:
        pass


# -- one peer: find the other, punch (sans-IO) ------------------------------------


class Phase(enum.Enum):
    REGISTERING = "registering"  # asking the rendezvous server for a peer
    PUNCHING = "punching"  # introduced: punching towards the peer
    READY = "ready"  # the path works both ways: hand the socket to rudp
    FAILED = "failed"  # timed out (see PeerFinder.error)


class PeerFinder:
    """One peer's side of the rendezvous and the hole punching.

    Sans-IO (every call takes ``now``; it is a rudp.sim node as it stands): feed it
    the datagrams its socket receives and send what :meth:`datagrams_to_send`
    returns, until :attr:`phase` is READY (connect to :attr:`peer`) or FAILED
    (:attr:`error` says why, in words).
    """

    REGISTER_RETRY = 0.25  # s, doubling up to REGISTER_RETRY_MAX
    REGISTER_RETRY_MAX = 2.0  # s; also keeps a waiting peer's NAT mapping alive
    PUNCH_INTERVAL = 0.1  # s

    def __init__(
        self,
        room: str,
        rendezvous: Address,
        local: Address,
        now: float,
        *,
        timeout: float = 60.0,
        punch_timeout: float = 10.0,
        ident: str | None = None,
    ) -> None:
        if valid_room(room) is None:
            raise ValueError(f"a room name is 1 to {ROOM_MAX} printable characters: {room!r}")
        self.room = room
        self.rendezvous = rendezvous
        self.local = local  # our socket's address (for a peer on the same host or LAN)
        self.id = ident if ident is not None else secrets.token_hex(8)
        self.timeout = timeout
        self.punch_timeout = punch_timeout
        self.phase = Phase.REGISTERING
        self.deadline = now + timeout
        self.public: Address | None = None  # ours, as the rendezvous server saw it
        self.peer: Address | None = None  # where to punch, then connect
        self.peer_id: str | None = None
        self.heard = False  # a punch from the peer arrived
        self.error: str | None = None
        self.registers_sent = self.punches_sent = self.punches_received = self.dropped = 0
        self._retry = self.REGISTER_RETRY
        self._next = now  # the first request leaves at once
        self._out: list[tuple[bytes, Address]] = []

    @property
    def done(self) -> bool:
        return self.phase in (Phase.READY, Phase.FAILED)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if self.done:
            return
        msg = decode(data)
        if msg is None:
            if self.phase is Phase.PUNCHING and self.heard and addr == self.peer:
                # The peer's first TCP segment: it has moved on, which it does only
                # after our "seen", so the path works both ways. (This segment is
                # lost to rudp; the peer retransmits it.)
                self.phase = Phase.READY
            else:
                self.dropped += 1
            return
        op = msg["op"]
        if addr == self.rendezvous and op in ("wait", "peer") and msg.get("room") == self.room:
            you = valid_address(msg.get("you"))
            if you is None:
                self.dropped += 1
                return
            self.public = you
            if op == "peer" and (
                self.phase is Phase.REGISTERING
                # Introduced again, to another peer (ours was stale, restarted):
                or (not self.heard and msg.get("peer_id") != self.peer_id)
            ):
                self._introduced(msg, now)
            return
        if (
            op == "punch"
            and self.phase is Phase.PUNCHING
            and msg.get("room") == self.room
            and msg.get("id") == self.peer_id
            and msg.get("peer_id") == self.id
        ):
            self._punched(addr, msg.get("seen") is True)
            return
        self.dropped += 1

    def _introduced(self, msg: dict[str, Any], now: float) -> None:
        peer = valid_address(msg.get("peer"))
        peer_local = valid_address(msg.get("peer_local"))
        peer_id = valid_id(msg.get("peer_id"))
        if peer is None or peer_local is None or peer_id is None or peer_id == self.id:
            self.dropped += 1
            return
        assert self.public is not None
        # The same public IP means the same host or the same NAT: reaching the peer's
        # public address would need the NAT to hairpin (many do not), while its local
        # address works directly. Both peers see the same two IPs, so they agree.
        same_nat = (
            peer[0] == self.public[0] and not ipaddress.ip_address(peer_local[0]).is_unspecified
        )
        self.peer = peer_local if same_nat else peer
        self.peer_id = peer_id
        self.phase = Phase.PUNCHING
        self.deadline = now + self.punch_timeout
        self._punch(seen=False)
        self._next = now + self.PUNCH_INTERVAL

    def _punched(self, addr: Address, seen: bool) -> None:
        if addr != self.peer:
            if self.heard:
                self.dropped += 1  # we already talk to it at another address
                return
            # A punch from another address than the one we were told: the peer's NAT
            # gave it another public port towards us (its mapping depends on the
            # destination, "symmetric"). That address works, so use it (a
            # "peer-reflexive" address, as ICE, RFC 8445, calls it).
            self.peer = addr
        self.punches_received += 1
        self.heard = True
        if seen:
            self.phase = Phase.READY  # it hears us and we hear it
        if not seen or self.phase is Phase.READY:
            # Answer at once: it learns that we hear it (or, if we are now READY,
            # that we are moving on). Answering only these never ping-pongs.
            self._punch(seen=True)

    def _punch(self, *, seen: bool) -> None:
        assert self.peer is not None
        msg = encode("punch", room=self.room, id=self.id, peer_id=self.peer_id, seen=seen)
        self._out.append((msg, self.peer))
        self.punches_sent += 1

    def _register(self) -> None:
        msg = encode("register", room=self.room, id=self.id, local=list(self.local))
        self._out.append((msg, self.rendezvous))
        self.registers_sent += 1

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return None if self.done else min(self._next, self.deadline)

    def handle_timer(self, now: float) -> None:
        if self.done:
            return
        if now >= self.deadline:
            self._fail()
        elif now >= self._next:
            if self.phase is Phase.REGISTERING:
                self._register()
                self._next = now + self._retry
                self._retry = min(2 * self._retry, self.REGISTER_RETRY_MAX)
            else:
                self._punch(seen=self.heard)
                self._next = now + self.PUNCH_INTERVAL

    def _fail(self) -> None:
        self.phase = Phase.FAILED
        server = format_address(self.rendezvous)
        if self.peer is None and self.public is None:
            self.error = (
                f"no answer from the rendezvous server at {server}"
                f" ({self.registers_sent} requests in {self.timeout:g} s)"
            )
        elif self.peer is None:
            self.error = f"no peer joined room {self.room!r} within {self.timeout:g} s"
        elif not self.heard:
            self.error = (
                f"hole punching failed: nothing from the peer at {format_address(self.peer)}"
                f" in {self.punch_timeout:g} s ({self.punches_sent} punches sent). If both"
                " NATs give each destination its own public port (symmetric NATs), hole"
                " punching cannot work: see docs/p2p.md"
            )
        else:
            self.error = (
                f"hole punching failed: the peer at {format_address(self.peer)} is heard,"
                f" but it never confirmed hearing us in {self.punch_timeout:g} s"
            )


# -- asyncio: the rendezvous server ----------------------------------------------


class RendezvousProtocol(asyncio.DatagramProtocol):
    def __init__(self, state: Rendezvous) -> None:
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        now = self.loop.time()
        self.state.receive_datagram(data, (addr[0], addr[1]), now)
        assert self.transport is not None
        for out, dst in self.state.datagrams_to_send(now):
            self.transport.sendto(out, dst)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about a peer that went away: nothing to do


async def start_rendezvous(
    host: str,
    port: int,
    *,
    ttl: float = 30.0,
    max_rooms: int = 10_000,
    report: Report | None = None,
) -> tuple[asyncio.DatagramTransport, Rendezvous]:
    """Serve a rendezvous on UDP ``host``:``port`` (0: any free port); close the
    returned transport to stop."""
    state = Rendezvous(ttl=ttl, max_rooms=max_rooms, report=report)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: RendezvousProtocol(state), local_addr=(host, port)
    )
    return transport, state


# -- asyncio: a peer -------------------------------------------------------------


class PeerTimeoutError(TimeoutError):
    """The rendezvous, the hole punching or the connection did not complete in time."""


async def start_peer(
    rendezvous: tuple[str, int],
    room: str,
    *,
    local_port: int = 0,
    timeout: float = 60.0,
    punch_timeout: float = 10.0,
) -> tuple[socket.socket, PeerFinder]:
    """A UDP socket of the rendezvous server's address family, and a PeerFinder."""
    loop = asyncio.get_running_loop()
    host, port = rendezvous
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, sockaddr = infos[0]
    server = (str(sockaddr[0]), int(sockaddr[1]))
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", local_port))
        sock.setblocking(False)
        local = (_source_ip(family, server), sock.getsockname()[1])
    except BaseException:
        sock.close()
        raise
    finder = PeerFinder(
        room, server, local, loop.time(), timeout=timeout, punch_timeout=punch_timeout
    )
    return sock, finder


def _source_ip(family: int, dest: Address) -> str:
    """The local IP the kernel sends to ``dest`` from (connect() on UDP sends nothing)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(dest)
        return str(probe.getsockname()[0])


async def find_peer(sock: socket.socket, finder: PeerFinder) -> None:
    """Run ``finder`` on ``sock`` until the path to the peer is open.

    Reads one datagram at a time and stops the moment the finder is READY, so what
    arrives next (the peer's SYN) stays in the socket for rudp. Raises
    :class:`PeerTimeoutError` with the finder's explanation if it failed.
    """
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    timer: asyncio.TimerHandle | None = None

    def service() -> None:
        nonlocal timer
        now = loop.time()
        for data, addr in finder.datagrams_to_send(now):
            # An error (an ICMP error reported on the socket, a full buffer) is like a
            # lost datagram: we repeat ours anyway.
            with contextlib.suppress(OSError):
                sock.sendto(data, addr)
        if timer is not None:
            timer.cancel()
            timer = None
        if finder.done:
            if not finished.done():
                finished.set_result(None)
            return
        at = finder.get_timer()
        if at is not None:
            timer = loop.call_at(at, on_timer, at)

    def on_timer(at: float) -> None:
        finder.handle_timer(max(loop.time(), at))  # the loop may fire a hair early
        service()

    def on_readable() -> None:
        if not finder.done:
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # an ICMP error (the server is not up yet, say): ignore it
            finder.receive_datagram(data, (addr[0], addr[1]), loop.time())
        service()

    loop.add_reader(sock.fileno(), on_readable)
    try:
        service()
        await finished
    finally:
        loop.remove_reader(sock.fileno())
        if timer is not None:
            timer.cancel()
    if finder.phase is Phase.FAILED:
        raise PeerTimeoutError(finder.error)


def tcp_port_for(room: str) -> int:
    """The TCP port both peers of ``room`` use. Any fixed number would do (each peer
    has its own UDP socket); deriving it from the room agrees on it without asking."""
    digest = hashlib.sha256(room.encode()).digest()
    return 1024 + int.from_bytes(digest[:2], "big") % (65536 - 1024)


async def open_peer_connection(
    sock: socket.socket,
    finder: PeerFinder,
    *,
    config: rudp.Config | None = None,
    timeout: float = 10.0,
) -> tuple[rudp.Endpoint, asyncio.StreamReader, asyncio.StreamWriter]:
    """Hand ``sock`` to rudp and open the connection to the READY finder's peer."""
    if finder.phase is not Phase.READY or finder.peer is None:
        raise ValueError("the finder has not opened a path to a peer yet")
    loop = asyncio.get_running_loop()
    ep = await rudp.create_endpoint(sock=sock, config=config)
    host, port = finder.peer
    tcp = tcp_port_for(finder.room)
    deadline = loop.time() + timeout
    try:
        while True:
            try:
                # Both peers: local TCP port = remote TCP port = tcp. Each sends its SYN
                # to the other: a simultaneous open (RFC 9293 §3.5), no listener.
                reader, writer = await ep.open_connection(
                    host,
                    port,
                    tcp_port=tcp,
                    local_tcp_port=tcp,
                    timeout=max(0.1, deadline - loop.time()),
                )
                return ep, reader, writer
            except (ConnectionRefusedError, ConnectionResetError):
                # An ICMP error from a NAT without our hole yet, or an RST from a peer
                # whose earlier attempt we raced: try again while time remains.
                if loop.time() + 0.2 >= deadline:
                    raise
                await asyncio.sleep(0.2)
    except rudp.ConnectTimeoutError as exc:
        ep.abort()
        raise PeerTimeoutError(
            f"the peer at {format_address(finder.peer)} did not complete the connection"
            f" within {timeout:g} s ({exc})"
        ) from None
    except BaseException:
        ep.abort()
        raise


@dataclass
class Transfer:
    """What one peer sent and received."""

    sent: int
    sent_sha256: str
    received: int
    received_sha256: str
    expected: int | None  # size and SHA-256 from the other side's header
    expected_sha256: str | None

    @property
    def ok(self) -> bool:
        return (self.received, self.received_sha256) == (self.expected, self.expected_sha256)


CHUNK = 64 * 1024


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: BinaryIO, sink: BinaryIO
) -> Transfer:
    """Send ``source`` (after a header line ``SIZE SHA256``) and half-close, while
    reading the other side's header and data into ``sink``, to its end."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    source.seek(0)

    async def send() -> None:
        writer.write(f"{size} {digest.hexdigest()}\n".encode())
        while chunk := source.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()  # FIN: we are done sending, and keep reading

    async def receive() -> tuple[int, str, int | None, str | None]:
        fields = (await reader.readline()).split()
        expected, expected_sha = None, None
        if len(fields) == 2 and fields[0].isdigit():
            expected, expected_sha = int(fields[0]), fields[1].decode("ascii", "replace")
        got = hashlib.sha256()
        n = 0
        while data := await reader.read(CHUNK):
            got.update(data)
            sink.write(data)
            n += len(data)
        return n, got.hexdigest(), expected, expected_sha

    _, (n, sha, expected, expected_sha) = await asyncio.gather(send(), receive())
    return Transfer(size, digest.hexdigest(), n, sha, expected, expected_sha)


def _stderr(text: str) -> None:
    print(f"p2p: {text}", file=sys.stderr, flush=True)


async def run_peer(
    rendezvous: tuple[str, int],
    room: str,
    source: BinaryIO,
    sink: BinaryIO,
    *,
    local_port: int = 0,
    timeout: float = 60.0,
    punch_timeout: float = 10.0,
    connect_timeout: float = 10.0,
    config: rudp.Config | None = None,
    report: Report = _stderr,
) -> Transfer:
    """The whole peer: rendezvous, punching, simultaneous open, exchange, close."""
    loop = asyncio.get_running_loop()
    sock, finder = await start_peer(
        rendezvous, room, local_port=local_port, timeout=timeout, punch_timeout=punch_timeout
    )
    report(
        f"socket {format_address(finder.local)}, rendezvous"
        f" {format_address(finder.rendezvous)}, room {room!r}"
    )
    t0 = loop.time()
    try:
        await find_peer(sock, finder)
    except BaseException:
        sock.close()
        raise
    assert finder.public is not None and finder.peer is not None
    report(f"public address {format_address(finder.public)} (as the rendezvous server saw it)")
    report(
        f"path to the peer at {format_address(finder.peer)} open after {loop.time() - t0:.2f} s"
        f" ({finder.punches_sent} punches sent, {finder.punches_received} received)"
    )
    ep, reader, writer = await open_peer_connection(
        sock, finder, config=config, timeout=connect_timeout
    )
    try:
        report(f"connected (TCP port {tcp_port_for(room)} on both sides)")
        t1 = loop.time()
        result = await exchange(reader, writer, source, sink)
        writer.close()
        await writer.wait_closed()
    except BaseException:
        ep.abort()
        raise
    ep.close()
    await ep.wait_closed()
    elapsed = loop.time() - t1
    report(f"sent {result.sent} bytes, SHA-256 {result.sent_sha256}")
    report(f"received {result.received} bytes, SHA-256 {result.received_sha256}")
    verdict = "OK" if result.ok else f"MISMATCH (the peer sent {result.expected_sha256})"
    report(f"SHA-256 {verdict}; {result.sent + result.received} bytes in {elapsed:.2f} s")
    return result


# -- command line ----------------------------------------------------------------


async def _rendezvous_main(args: argparse.Namespace) -> int:
    transport, _ = await start_rendezvous(
        args.host, args.port, ttl=args.ttl, max_rooms=args.max_rooms, report=_rendezvous_report
    )
    sockname = transport.get_extra_info("sockname")
    _rendezvous_report(f"listening on {format_address(sockname)}")
    try:
        await asyncio.Future()  # until interrupted
    finally:
        transport.close()
    return 0


def _rendezvous_report(text: str) -> None:
    print(f"rendezvous: {text}", file=sys.stderr, flush=True)


async def _peer_main(args: argparse.Namespace) -> int:
    greeting = f"hello from a peer of room {args.room!r}\n".encode()
    try:
        with contextlib.ExitStack() as files:
            source = (
                files.enter_context(open(args.send, "rb")) if args.send else io.BytesIO(greeting)
            )
            sink = files.enter_context(open(args.out, "wb")) if args.out else sys.stdout.buffer
            result = await run_peer(
                args.rendezvous,
                args.room,
                source,
                sink,
                local_port=args.port,
                timeout=args.timeout,
                punch_timeout=args.punch_timeout,
                connect_timeout=args.connect_timeout,
            )
    except OSError as exc:  # TimeoutError and ConnectionError included
        _stderr(f"error: {exc}")
        return 1
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="p2p.py", description="Peer-to-peer rudp through NATs (see docs/p2p.md)."
    )
    roles = parser.add_subparsers(dest="role", required=True)
    r = roles.add_parser("rendezvous", help="run the rendezvous server (on a public address)")
    r.add_argument("--host", default="0.0.0.0", help="address to bind (default: %(default)s)")
    r.add_argument("--port", type=int, required=True, help="UDP port (0: any free one)")
    r.add_argument("--ttl", type=float, default=30.0, help="seconds a room lives (%(default)s)")
    r.add_argument("--max-rooms", type=int, default=10_000, help="(default: %(default)s)")
    p = roles.add_parser("peer", help="meet the other peer of a room and exchange data")
    p.add_argument("--rendezvous", type=parse_address, required=True, metavar="HOST:PORT")
    p.add_argument("--room", required=True, help="a name both peers use")
    p.add_argument("--send", metavar="FILE", help="file to send (default: a greeting)")
    p.add_argument("--out", metavar="FILE", help="where to write what the peer sends (stdout)")
    p.add_argument("--port", type=int, default=0, help="local UDP port (default: any)")
    p.add_argument("--timeout", type=float, default=60.0, help="s to find the peer (60)")
    p.add_argument("--punch-timeout", type=float, default=10.0, help="s of punching (10)")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="s to connect (10)")
    args = parser.parse_args(argv)
    if args.role == "peer" and valid_room(args.room) is None:
        parser.error(f"--room: 1 to {ROOM_MAX} printable characters")
    try:
        if args.role == "rendezvous":
            return asyncio.run(_rendezvous_main(args))
        return asyncio.run(_peer_main(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
