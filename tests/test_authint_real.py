"""TCP-AO over real UDP sockets on loopback (asyncio and uvloop; issue 12 item 5).

During a live transfer each way, 100,000 segments with the right ports and exactly
the right sequence numbers — RSTs, SYNs, data, FINs, ACKs — but no or a wrong MAC
are injected into both ends, each through the other end's own UDP socket (so they
come from exactly the address the connection knows, as an on-path attacker's
would). Nothing changes: both hashes are right, no challenge ACK or RST is sent,
and every injected segment is counted as a drop. Then: a key rollover
mid-transfer keeps the transfer going. And an ICMP hard error for an established,
authenticated connection is ignored (RFC 5925 §7.8).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
from collections.abc import Callable
from typing import Any

import rudp
from rudp import Config
from rudp.aio.endpoint import Endpoint
from rudp.aio.sockio import DatagramError, ErrorOrigin
from rudp.engine import Connection
from rudp.engine.auth import AO_KIND, OPTION_LEN, KeyChain, MasterKey
from rudp.seq import SEQ_MASK
from rudp.wire import ACK, FIN, PSH, RST, SYN, build_segment

SECRET = bytes(range(1, 33))
INJECTIONS = 100_000
#: Injected segments per batch before yielding to the event loop.
BATCH = 250
KINDS = (RST, RST | ACK, SYN, PSH | ACK, FIN | ACK, ACK)


def chain(*keys: tuple[int, int, bytes]) -> KeyChain:
    return KeyChain([MasterKey(s, r, k) for s, r, k in keys or ((1, 1, SECRET),)])


def _engine_conn(ep: Endpoint) -> Connection | None:
    for c in ep.engine.connections.values():
        if isinstance(c, Connection):
            return c
    return None


def _forged(conn: Connection, i: int, rnd: random.Random) -> bytes:
    """Segment number ``i`` into ``conn`` from its peer: the connection's own ports,
    SEQ = RCV.NXT, ACK = SND.NXT, the peer's next timestamp; no TCP-AO option (even
    ``i``) or one with the right KeyID and a random MAC (odd ``i``)."""
    flags = KINDS[i // 2 % len(KINDS)]
    options = b""
    if conn.timestamps_ok:
        tsval = (conn.ts_recent + 1) & SEQ_MASK
        options = b"\x01\x01\x08\x0a" + tsval.to_bytes(4, "big") + bytes(4)
    if i % 2:
        options += bytes((AO_KIND, OPTION_LEN, 1, 1)) + rnd.randbytes(12)
    payload = b"injected" * 16 if flags & PSH else b""
    return build_segment(
        conn.remote_port,
        conn.local_port,
        conn.rcv_nxt,
        conn.snd_nxt,
        flags,
        65535,
        payload,
        options,
    )


async def _inject(
    targets: list[tuple[Endpoint, Endpoint]], count: int, during: Callable[[], bool]
) -> list[int]:
    """Send ``count`` forged segments, alternating over ``targets`` (victim, the
    endpoint whose socket they leave from), in batches; returns how many each
    victim was sent. Every batch uses the connection's numbers of that moment."""
    rnd = random.Random(1)
    sent = [0] * len(targets)
    i = 0
    while i < count:
        assert during(), "the transfer ended before the injections did"
        for n, (victim, via) in enumerate(targets):
            conn = _engine_conn(victim)
            assert conn is not None
            sock = via.socket
            dest = victim.local_address
            for _ in range(min(BATCH, count - i)):
                data = _forged(conn, i, rnd)
                while True:
                    try:
                        sock.sendto(data, dest)
                        break
                    except BlockingIOError:  # pragma: no cover - a full socket buffer
                        await asyncio.sleep(0.001)
                sent[n] += 1
                i += 1
        await asyncio.sleep(0)
    return sent


async def _settle(eps: list[Endpoint], total: int) -> None:
    """Wait until the endpoints have read every injected datagram (or ~1 s of no
    change: the kernel may have dropped some)."""
    last = -1
    for _ in range(200):
        dropped = sum(ep.engine.counters.get("dropped", 0) for ep in eps)
        if dropped >= total or dropped == last:
            return
        last = dropped
        await asyncio.sleep(0.005)


class Transfer:
    """A server sending ``down`` while reading until EOF; a client writing until told
    to stop, then reading ``down``; SHA-256 of both directions."""

    def __init__(self, down: bytes) -> None:
        self.down = down
        self.stop = asyncio.Event()
        self.up_hash = hashlib.sha256()
        self.server_got = hashlib.sha256()
        self.server_done = asyncio.Event()
        self.up_bytes = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send() -> None:
            for i in range(0, len(self.down), 16384):
                writer.write(self.down[i : i + 16384])
                await writer.drain()
                await asyncio.sleep(0.001)
            writer.write_eof()

        sender = asyncio.create_task(send())
        while data := await reader.read(65536):
            self.server_got.update(data)
        await sender
        writer.close()
        self.server_done.set()

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        rnd = random.Random(2)

        async def send() -> None:
            while not self.stop.is_set():
                chunk = rnd.randbytes(32768)
                self.up_hash.update(chunk)
                self.up_bytes += len(chunk)
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.002)
            writer.write_eof()

        sender = asyncio.create_task(send())
        got = await reader.read(-1)
        await sender
        await self.server_done.wait()
        writer.close()
        await writer.wait_closed()
        return got


async def _pair(
    keys_s: KeyChain, keys_c: KeyChain, transfer: Transfer
) -> tuple[Endpoint, Endpoint, Any, asyncio.StreamReader, asyncio.StreamWriter]:
    s_ep = await rudp.create_endpoint(("127.0.0.1", 0), config=Config(auth_keys=keys_s))
    c_ep = await rudp.create_endpoint(("127.0.0.1", 0), config=Config(auth_keys=keys_c))
    server = await s_ep.start_server(transfer.handle)
    reader, writer = await c_ep.open_connection(*s_ep.local_address, timeout=10)
    return s_ep, c_ep, server, reader, writer


async def test_100k_forged_segments_during_a_transfer_change_nothing() -> None:
    down = random.Random(3).randbytes(1_500_000)
    t = Transfer(down)
    s_ep, c_ep, server, reader, writer = await _pair(chain(), chain(), t)
    try:
        client_task = asyncio.create_task(t.client(reader, writer))
        # Into the server (the bulk receiver) and into the client.
        sent = await _inject(
            [(s_ep, c_ep), (c_ep, s_ep)], INJECTIONS, lambda: not client_task.done()
        )
        await _settle([s_ep, c_ep], INJECTIONS)
        s_conn, c_conn = _engine_conn(s_ep), _engine_conn(c_ep)
        assert s_conn is not None and c_conn is not None
        s_stats, c_stats = s_conn.stats(), c_conn.stats()
        t.stop.set()
        got = await asyncio.wait_for(client_task, 30)
    finally:
        server.close()
        s_ep.close()
        c_ep.close()
    assert sum(sent) == INJECTIONS and t.up_bytes > 0
    assert got == down
    assert t.server_got.digest() == t.up_hash.digest()
    for ep, n, st in ((s_ep, sent[0], s_stats), (c_ep, sent[1], c_stats)):
        es = ep.stats()
        drops = es.get("drop_auth_missing", 0) + es.get("drop_auth_bad_mac", 0)
        # Every injected segment the kernel delivered was dropped for its MAC (and
        # loopback with 4 MiB socket buffers delivers nearly all of them).
        assert drops == es["dropped"] and n * 0.95 <= drops <= n, (drops, n)
        assert st["auth_missing"] + st["auth_bad_mac"] == drops
        assert st["challenge_acks"] == st["paws_drops"] == 0
        assert es["rst_sent"] == 0
    assert c_stats["fast_retransmits"] == 0 and c_stats["dup_acks_received"] <= 5


async def test_key_rollover_mid_transfer_keeps_it_going() -> None:
    new = bytes(range(50, 82))
    keys_s, keys_c = chain((1, 1, SECRET)), chain((1, 1, SECRET))
    down = random.Random(4).randbytes(300_000)
    t = Transfer(down)
    s_ep, c_ep, server, reader, writer = await _pair(keys_s, keys_c, t)
    try:
        client_task = asyncio.create_task(t.client(reader, writer))

        async def after(n: int) -> int:
            start = t.up_bytes
            while t.up_bytes < start + n:
                assert not client_task.done()
                await asyncio.sleep(0.005)
            return t.up_bytes

        await after(500_000)
        for keys in (keys_s, keys_c):
            keys.add(MasterKey(2, 2, new))
        for keys in (keys_s, keys_c):
            keys.set_rnext(2)
        await after(500_000)
        s_conn, c_conn = _engine_conn(s_ep), _engine_conn(c_ep)
        assert s_conn is not None and c_conn is not None
        for conn in (s_conn, c_conn):
            st = conn.stats()
            assert st["auth_send_id"] == 2 and st["auth_last_keyid"] == 2
        for keys in (keys_s, keys_c):
            keys.remove(1, 1)
        await after(500_000)
        t.stop.set()
        got = await asyncio.wait_for(client_task, 30)
    finally:
        server.close()
        s_ep.close()
        c_ep.close()
    assert got == down and t.server_got.digest() == t.up_hash.digest()
    for ep in (s_ep, c_ep):
        es = ep.stats()
        assert not {k: v for k, v in es.items() if k.startswith("drop_auth") and v}


async def test_icmp_hard_error_is_ignored_once_synchronized() -> None:
    """RFC 5925 §7.8: an ICMP port unreachable (unauthenticated, so anyone can send
    one) for an established authenticated connection changes nothing."""
    down = b"x" * 1000
    t = Transfer(down)
    s_ep, c_ep, server, reader, writer = await _pair(chain(), chain(), t)
    try:
        conn = _engine_conn(c_ep)
        assert conn is not None and conn.auth is not None
        quote = build_segment(conn.local_port, conn.remote_port, conn.snd_nxt, 0, ACK, 0)
        before = c_ep.soft_errors
        c_ep._on_udp_error(
            DatagramError(
                s_ep.local_address,
                errno.ECONNREFUSED,
                quote,
                ErrorOrigin.ICMP,
                icmp_type=3,
                icmp_code=3,
            )
        )
        assert c_ep.soft_errors == before + 1
        t.stop.set()
        got = await asyncio.wait_for(t.client(reader, writer), 30)
        assert got == down and conn.error is None
    finally:
        server.close()
        s_ep.close()
        c_ep.close()
