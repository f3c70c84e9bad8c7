"""rudp against the Linux kernel's TCP, through the TUN bridge (benchmarks/linuxpeer,
docs/interop-linux.md).

The kernel side runs in a fresh network namespace whose TUN device routes the
engine's addresses into the bridge. The tests that need that (root, /dev/net/tun,
``ip``) skip with the reason otherwise; the packet codec, the impairment stage and
the TCP_INFO decoder are tested everywhere.

Real time is involved (the kernel has its own clock), so the assertions are about
what happened, never about how long it took; every impairment test asserts that its
impairment happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import random
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.common import JSONDict
from benchmarks.linuxpeer.bench import Run
from benchmarks.linuxpeer.bridge import EngineBridge, Forwarder, is_tcp, lateness_summary
from benchmarks.linuxpeer.fair import bytes_at, per_second, window_goodput
from benchmarks.linuxpeer.impair import DelayLine, Stage, make_stage
from benchmarks.linuxpeer.ippacket import PacketCodec, PacketError, tcp_checksum_ok
from benchmarks.linuxpeer.lab import A4, A6, B4, TunHost
from benchmarks.linuxpeer.netns import unavailable_reason
from benchmarks.linuxpeer.tcpinfo import TCP_INFO_LEN, TcpInfo, tcp_info
from rudp import Config
from rudp.engine import Connection, Endpoint, Event, PeerClosed, State
from rudp.pcap import PcapWriter
from rudp.sim import LinkConfig
from rudp.sim.host import BulkApp, Host
from rudp.wire import ACK, FIN, RST, SYN, build_segment, parse_segment
from rudp.wire.segment import Segment, encode_options

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# ============================================================ without root


def _segment(rng: random.Random, size: int, *, checksum: bool = True) -> bytes:
    opts = encode_options(mss=1448, wscale=7, sack_perm=True, ts=(rng.getrandbits(32), 0))
    return build_segment(
        rng.randrange(1, 65536),
        rng.randrange(1, 65536),
        rng.getrandbits(32),
        rng.getrandbits(32),
        SYN | ACK if size == 0 else ACK,
        rng.randrange(65536),
        rng.randbytes(size),
        opts if size == 0 else b"",
        compute_checksum=checksum,
    )


@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 1500),
    v6=st.booleans(),
    checksum=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_codec_round_trip(seed: int, size: int, v6: bool, checksum: bool) -> None:
    """rudp segment -> IP packet with a valid RFC 9293 checksum -> the same segment."""
    rng = random.Random(seed)
    seg = _segment(rng, size, checksum=checksum)
    n = 16 if v6 else 4
    src, dst = rng.randbytes(n), rng.randbytes(n)
    codec = PacketCodec()
    pkt = codec.encode(seg, src, dst)
    assert tcp_checksum_ok(pkt)
    _, got_src, got_dst, back = codec.decode(pkt)
    assert (got_src, got_dst) == (src, dst)
    if checksum:
        assert back == seg  # the incremental update is exact both ways
    else:  # "not computed" on the rudp side: the kernel still gets a real checksum
        assert back[:16] == seg[:16] and back[18:] == seg[18:] and back[16:18] != b"\0\0"
    assert parse_segment(back).payload == parse_segment(seg).payload


def test_codec_damage_stays_damage() -> None:
    """A segment corrupted on one side fails the checksum on the other."""
    rng = random.Random(5)
    codec = PacketCodec()
    for _ in range(200):
        seg = bytearray(_segment(rng, rng.randrange(1, 200)))
        seg[rng.randrange(len(seg))] ^= 1 << rng.randrange(8)
        pkt = codec.encode(bytes(seg), b"\x0a\0\0\x01", b"\x0a\0\0\x02")
        assert not tcp_checksum_ok(pkt)
        bad = bytearray(codec.encode(_segment(rng, 100), b"\x0a\0\0\x01", b"\x0a\0\0\x02"))
        bad[-1] ^= 0x40
        _, _, _, back = codec.decode(bytes(bad))
        with pytest.raises(Exception, match="checksum"):
            parse_segment(back)


@pytest.mark.parametrize(
    ("src", "dst"), [("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")], ids=["v4", "v6"]
)
def test_codec_matches_pcap_writer(src: str, dst: str) -> None:
    """The bridge's packets are byte for byte what rudp's pcap writer records for the
    same segments: the same RFC 1624 conversion and the same IP headers."""
    import ipaddress

    rng = random.Random(9)
    segments = [_segment(rng, n) for n in (0, 1, 2, 3, 100, 1400)]
    buf = io.BytesIO()
    with PcapWriter(buf, epoch=0.0) as writer:
        for seg in segments:
            writer.write(0.0, (src, 1), (dst, 2), seg)
    raw = buf.getvalue()[24:]
    codec = PacketCodec()
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    for seg in segments:
        caplen = struct.unpack_from("!I", raw, 8)[0]
        record, raw = raw[16 : 16 + caplen], raw[16 + caplen :]
        assert codec.encode(seg, s, d) == record


def test_codec_refuses_what_is_not_a_tcp_segment() -> None:
    codec = PacketCodec()
    seg = _segment(random.Random(1), 10)
    v4 = codec.encode(seg, b"\x0a\0\0\x01", b"\x0a\0\0\x02")
    v6 = codec.encode(seg, bytes(15) + b"\1", bytes(15) + b"\2")
    cases = {
        "short": v4[:10],
        "ip_version": b"\x50" + v4[1:],
        "ip_header": b"\x44" + v4[1:],
        "ip_length": v4[:30],
        "fragment": v4[:6] + b"\x20\x00" + v4[8:],  # MF set
        "not_tcp": v4[:9] + b"\x11" + v4[10:],
        "tcp_short": v4[:2] + struct.pack("!H", 30) + v4[4:30],
    }
    cases["not_tcp_v6"] = v6[:6] + b"\x3a" + v6[7:]  # ICMPv6 (or an extension header)
    for reason, pkt in cases.items():
        with pytest.raises(PacketError) as info:
            codec.decode(pkt)
        assert info.value.reason == reason.removesuffix("_v6")
    assert is_tcp(v4) and is_tcp(v6) and not is_tcp(cases["not_tcp"]) and not is_tcp(b"")


def test_stage_is_seeded_and_counts() -> None:
    cfg = LinkConfig(delay=0.02, loss=0.1)
    fates = []
    for _ in range(2):
        stage = make_stage(cfg, 7, "a2b")
        fates.append([stage.decide(i * 0.001, b"x" * 100) for i in range(2000)])
    assert fates[0] == fates[1]
    other = make_stage(cfg, 7, "b2a")
    assert [other.decide(i * 0.001, b"x")[0] for i in range(2000)] != [f for f, _ in fates[0]]
    lost = sum(f == "lost" for f, _ in fates[0])
    assert stage.stats.lost == lost and 120 < lost < 280 and stage.stats.sent == 2000
    assert all(c == ((i * 0.001 + 0.02, b"x" * 100),) for i, (f, c) in enumerate(fates[0]) if c)


def test_stage_rate_and_queue() -> None:
    stage = Stage(LinkConfig(rate=1000.0, queue_limit=300), random.Random(1))
    out = [stage.decide(0.0, b"x" * 100) for _ in range(5)]
    assert [f for f, _ in out] == ["delivered"] * 3 + ["queue_drop"] * 2
    assert [c[0][0] for _, c in out[:3]] == pytest.approx([0.1, 0.2, 0.3])
    assert stage.stats.queue_drops == 2
    burst = Stage(LinkConfig(loss=1.0, loss_max_burst=2), random.Random(1))
    assert [burst.decide(0.0, b"")[0] for _ in range(6)] == ["lost", "lost", "delivered"] * 2


def test_stage_refuses_what_it_cannot_do_yet() -> None:
    with pytest.raises(ValueError, match="reorder"):
        Stage(LinkConfig(reorder=0.1), random.Random(1))


def test_delay_line_orders_by_arrival() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        got: list[int] = []
        done = loop.create_future()

        def deliver(batch: list[int]) -> None:
            got.extend(batch)
            if len(got) == 6:
                done.set_result(None)

        line: DelayLine[int] = DelayLine(loop, deliver)
        now = loop.time()
        for item, dt in ((0, 0.03), (1, 0.01), (2, 0.02), (3, 0.01), (4, -1.0), (5, 0.02)):
            line.push(now + dt, item)
        await asyncio.wait_for(done, 5)
        line.close()
        return got

    assert asyncio.run(main()) == [4, 1, 3, 2, 5, 0]  # ties keep the offered order


def test_fair_window_goodput_interpolates_the_receivers_marks() -> None:
    # A receiver that accepted at t = 100 and read 1,000 bytes per 0.25 s.
    result = {"accepted_at": 100.0, "sample_interval": 0.25, "marks": [i * 1000 for i in range(9)]}
    assert bytes_at(result, 99.0) == 0.0  # before its accept
    assert bytes_at(result, 100.125) == pytest.approx(500.0)
    assert bytes_at(result, 105.0) == 8000.0  # after its last mark
    assert window_goodput(result, 100.5, 101.5) == pytest.approx(4000.0)
    assert per_second(result, 100.0, 102.0) == [0.004, 0.004]


def test_tcp_info_decode() -> None:
    values = [1, 0, 0, 0, 0, 7, 0x7A, 0, *range(24), *range(100, 127)]
    fmt = "=8B24I4Q2I4IQ3Q2I2Q2I2I2I2HI"
    raw = struct.pack(fmt, *values)
    assert len(raw) == TCP_INFO_LEN
    info = TcpInfo.decode(raw)
    assert info.timestamps and info.sack and info.window_scaling
    assert (info.snd_wscale, info.rcv_wscale) == (0xA, 0x7)
    assert info.rto == 0 and info.total_retrans == 23 and info.snd_wnd == 121
    assert info.total_rto == 124 and info.total_rto_time == 126
    short = TcpInfo.decode(raw[:104])
    assert short.total_retrans == 23 and short.pacing_rate is None


def test_timer_lateness_summary() -> None:
    assert lateness_summary([]) == {}
    late = [i / 1e5 for i in range(100)]  # 0 .. 0.99 ms
    assert lateness_summary(late) == {"n": 100, "p50": 0.49, "p90": 0.89, "p99": 0.98, "max": 0.99}
    assert lateness_summary([-1e-6, 0.002])["p50"] == 0.0  # a handle run early counts as 0


def test_run_json_with_and_without_samples() -> None:
    r = Run(sender="rudp-bbr", seed=1, duration=1.0, path="p", samples=[[0.0, 0, 1, 2]])
    assert r.as_json()["samples"] == [[0.0, 0, 1, 2]]
    doc = r.as_json(samples=False)
    assert "samples" not in doc and doc["sender"] == "rudp-bbr" and "timeline" in doc


# ================================================================ with root


@pytest.fixture(scope="module")
def tun_ok() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def kernel(tun_ok: None) -> Iterator[TunHost]:
    """Side B: a kernel in its own namespace; the engine is side A."""
    with TunHost.side_b() as host:
        yield host


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for ``cond()`` (polled), failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"condition not reached in {timeout} s")
        await asyncio.sleep(0.005)


class App(BulkApp):
    """BulkApp that may hold its payload until the peer's FIN (the second closer),
    and may keep the connection open after sending (``shut_after=False``)."""

    def __init__(self, payload: bytes = b"", *, after_eof: bool = False) -> None:
        super().__init__(payload)
        self.after_eof = after_eof
        self.got_fin = False

    def pump(self, now: float) -> None:
        if self.after_eof and not self.got_fin:
            if self.conn is not None and self.conn.readable:
                self.received += self.conn.read()
            return
        super().pump(now)

    def on_event(self, ev: Event, now: float) -> None:
        if isinstance(ev, PeerClosed):
            self.got_fin = True
        super().on_event(ev, now)


class Rig:
    """A rudp Host at side A bridged to the kernel at side B, with a packet log."""

    def __init__(
        self,
        kernel: TunHost,
        *,
        loss: float = 0.0,
        delay: float = 0.0,
        seed: int = 1,
        config: Config | None = None,
    ) -> None:
        self.kernel = kernel
        self.host = Host(Endpoint(config or Config(), seed=seed))
        self.link = LinkConfig(loss=loss, delay=delay)
        self.seed = seed
        self.log: list[tuple[str, bytes, str]] = []  # (direction, rudp segment, fate)
        self._codec = PacketCodec()
        self.bridge: EngineBridge

    def tap(self, direction: str, t: float, packet: bytes, fate: str) -> None:
        self.log.append((direction, self._codec.decode(packet)[3], fate))

    def start(self) -> None:
        self.bridge = EngineBridge(
            self.kernel.fd,
            self.host,
            [A4, A6],
            to_kernel=self.link,
            to_engine=self.link,
            seed=self.seed,
            tap=self.tap,
        )
        self.bridge.start()

    def close(self) -> None:
        self.bridge.close()

    def now(self) -> float:
        return self.bridge.now()

    def connect(self, app: BulkApp, port: int, ip: str = B4) -> Connection:
        conn = self.host.connect(app, EngineBridge.kernel_address(ip), port, self.now())
        self.bridge.kick()
        return conn

    def segments(self, direction: str) -> list[Segment]:
        """Parsed segments offered to ``direction`` ("a2b": from rudp), in order."""
        return [parse_segment(s) for d, s, _ in self.log if d == direction]

    def raw(self, direction: str) -> list[bytes]:
        return [s for d, s, _ in self.log if d == direction]

    def lost_data(self, direction: str) -> int:
        """Data-bearing segments the impairment dropped in ``direction``."""
        return sum(
            1
            for d, s, fate in self.log
            if d == direction and fate == "lost" and parse_segment(s).payload
        )


async def kernel_transfer(sock: socket.socket, payload: bytes, *, after_eof: bool = False) -> bytes:
    """Send ``payload`` then half-close, and read to EOF; with ``after_eof``, read to
    EOF first (the peer closes first), then send and half-close."""
    loop = asyncio.get_running_loop()
    received = bytearray()

    async def reader() -> None:
        while data := await loop.sock_recv(sock, 262144):
            received.extend(data)

    async def writer() -> None:
        await loop.sock_sendall(sock, payload)
        sock.shutdown(socket.SHUT_WR)

    if after_eof:
        await reader()
        await writer()
    else:
        await asyncio.gather(reader(), writer())
    return bytes(received)


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------- option checks

#: Total option length, kind and length octets included (RFC 9293 §3.2, RFC 7323
#: §2.2/§3.2, RFC 2018 §2).
OPTION_LENGTH = {2: 4, 3: 3, 4: 2, 8: 10}
SYN_ONLY = {2, 3, 4}  # MSS, window scale, SACK-permitted


def option_list(seg: bytes) -> list[tuple[int, int, bytes]]:
    """``(offset in the header, kind, body)`` of every option, strictly parsed."""
    hlen = (seg[12] >> 4) * 4
    assert 20 <= hlen <= 60 and hlen % 4 == 0
    out = []
    i = 20
    while i < hlen:
        kind = seg[i]
        if kind == 0:  # EOL: only zero padding may follow
            assert not any(seg[i:hlen])
            break
        if kind == 1:
            i += 1
            continue
        length = seg[i + 1]
        assert length >= 2 and i + length <= hlen, (kind, length)
        out.append((i, kind, seg[i + 2 : i + length]))
        i += length
    return out


def check_options(seg: bytes) -> dict[int, bytes]:
    """Every option exactly as RFC 2018 / RFC 7323 lay it out; returns kind -> body."""
    flags = seg[13]
    found: dict[int, bytes] = {}
    for offset, kind, body in option_list(seg):
        assert kind not in found, f"option {kind} twice"
        found[kind] = body
        if kind in OPTION_LENGTH:
            assert len(body) + 2 == OPTION_LENGTH[kind], (kind, body)
        if kind in SYN_ONLY:
            assert flags & SYN, f"option {kind} on a segment without SYN"
        if kind == 5:  # SACK: 1 to 4 blocks of two 32-bit edges (RFC 2018 §3)
            assert flags & ACK and not flags & SYN
            assert len(body) % 8 == 0 and 1 <= len(body) // 8 <= 4
            assert (offset + 2) % 4 == 0  # edges 32-bit aligned (NOP, NOP, SACK)
            for left, right in struct.iter_unpack("!II", body):
                assert left != right
        if kind == 8:  # timestamps (RFC 7323 §3.2; Appendix A alignment)
            assert (offset + 2) % 4 == 0 or flags & SYN
            if not flags & ACK:
                assert body[4:] == bytes(4), "TSecr must be 0 without ACK"
    if 8 in found and 5 in found:
        assert len(found[5]) // 8 <= 3  # 12 bytes of TS leave room for 3 blocks
    return found


def check_conversation(rig: Rig) -> None:
    """Both directions: option layout; timestamps on every segment but RSTs, each
    TSecr a TSval the other side sent earlier (RFC 7323 §3.2, §4.3)."""
    tsvals: dict[str, set[int]] = {"a2b": set(), "b2a": set()}
    for direction, seg_bytes, _fate in rig.log:
        seg = parse_segment(seg_bytes)
        check_options(seg_bytes)
        other = "b2a" if direction == "a2b" else "a2b"
        if seg.flags & RST:
            continue
        assert seg.ts is not None, (direction, seg)
        tsval, tsecr = seg.ts
        if seg.flags & ACK:
            assert tsecr in tsvals[other], (direction, seg)
        tsvals[direction].add(tsval)


# ------------------------------------------------------------------ handshakes


def test_handshake_kernel_client_to_rudp_listener(kernel: TunHost) -> None:
    rig = Rig(kernel)

    async def main() -> tuple[TcpInfo, App, int]:
        rig.start()
        rig.host.endpoint.listen(7001)
        apps: list[App] = []

        def accept() -> App:
            apps.append(App(b"r" * 100_000))
            return apps[-1]

        rig.host.accept_factory = accept
        sock = kernel.tcp_socket()
        await asyncio.get_running_loop().sock_connect(sock, (A4, 7001))
        got = await kernel_transfer(sock, b"k" * 100_000)
        await until(lambda: bool(apps) and apps[0].terminated)
        info = tcp_info(sock)
        port = sock.getsockname()[1]
        sock.close()
        rig.close()
        assert got == b"r" * 100_000
        return info, apps[0], port

    info, app, kport = run(main())
    assert app.received == b"k" * 100_000 and app.error is None
    syn = rig.raw("b2a")[0]
    synack = rig.raw("a2b")[0]
    assert parse_segment(syn).flags == SYN and parse_segment(synack).flags == SYN | ACK
    # The kernel's SYN offers everything; rudp's SYN-ACK answers everything.
    k = check_options(syn)
    r = check_options(synack)
    assert set(k) == set(r) == {2, 3, 4, 8}
    k_tsval = struct.unpack("!I", k[8][:4])[0]
    assert struct.unpack("!I", r[8][4:])[0] == k_tsval  # TSecr echoes the SYN's TSval
    k_ws, r_ws = k[3][0], r[3][0]
    assert struct.unpack("!H", r[2])[0] == Config().mss
    # Negotiated on both ends.
    assert info.timestamps and info.sack and info.window_scaling
    assert (info.snd_wscale, info.rcv_wscale) == (r_ws, k_ws)
    assert app.conn is not None
    stats = app.conn.stats()
    assert stats["sack"] and stats["timestamps"]
    assert app.conn.snd_wscale == k_ws and app.conn.rcv_wscale == r_ws
    assert app.conn.remote_port == kport
    check_conversation(rig)


def test_handshake_rudp_client_to_kernel_listener(kernel: TunHost) -> None:
    rig = Rig(kernel)
    app = App(b"r" * 200_000)

    async def main() -> TcpInfo:
        loop = asyncio.get_running_loop()
        rig.start()
        lsock = kernel.listener(7002)
        conn = rig.connect(app, 7002)
        sock, _ = await loop.sock_accept(lsock)
        sock.setblocking(False)
        got = await kernel_transfer(sock, b"k" * 200_000)
        assert got == b"r" * 200_000
        await until(lambda: app.terminated)
        info = tcp_info(sock)
        # Window scaling applied the same way on both ends: each side's view of the
        # other's window is the last window field it received, shifted.
        last_rudp = rig.segments("a2b")[-1]
        assert info.snd_wnd == last_rudp.wnd << conn.rcv_wscale
        sock.close()
        lsock.close()
        rig.close()
        return info

    info = run(main())
    assert app.received == b"k" * 200_000 and app.error is None
    syn, synack = rig.raw("a2b")[0], rig.raw("b2a")[0]
    assert parse_segment(syn).flags == SYN and parse_segment(synack).flags == SYN | ACK
    r, k = check_options(syn), check_options(synack)
    assert set(r) == set(k) == {2, 3, 4, 8}
    assert struct.unpack("!I", r[8][4:])[0] == 0
    assert struct.unpack("!I", k[8][4:])[0] == struct.unpack("!I", r[8][:4])[0]
    assert info.timestamps and info.sack and info.window_scaling
    assert (info.snd_wscale, info.rcv_wscale) == (r[3][0], k[3][0])
    assert app.conn is not None
    stats = app.conn.stats()
    assert stats["sack"] and stats["timestamps"]
    assert app.conn.snd_wscale == k[3][0]
    check_conversation(rig)


def test_ipv6_both_ways(kernel: TunHost) -> None:
    rig = Rig(kernel)
    up, down = os.urandom(1_000_000), os.urandom(700_000)

    async def main() -> TcpInfo:
        rig.start()
        rig.host.endpoint.listen(7003)
        apps: list[App] = []

        def accept() -> App:
            apps.append(App(down))
            return apps[-1]

        rig.host.accept_factory = accept
        sock = kernel.tcp_socket(socket.AF_INET6)
        await asyncio.get_running_loop().sock_connect(sock, (A6, 7003))
        got = await kernel_transfer(sock, up)
        await until(lambda: bool(apps) and apps[0].terminated)
        assert sha(got) == sha(down) and sha(apps[0].received) == sha(up)
        info = tcp_info(sock)
        sock.close()
        rig.close()
        return info

    info = run(main())
    assert info.timestamps and info.sack and info.window_scaling
    assert rig.host.endpoint.counters["dropped"] == 0
    check_conversation(rig)


# ----------------------------------------------------- data, half-close, close


@pytest.mark.parametrize("opener", ["kernel", "rudp"])
@pytest.mark.parametrize("first_closer", ["kernel", "rudp"])
def test_data_both_ways_half_close_time_wait(
    kernel: TunHost, opener: str, first_closer: str
) -> None:
    """A few MB each way, SHA-256 checked. The first closer sends its data and FIN;
    the other side keeps sending over the half-closed connection, then closes. The
    first closer ends in TIME-WAIT, the other in CLOSED."""
    k_data, r_data = os.urandom(3_000_000), os.urandom(2_000_000)
    rig = Rig(kernel)
    app = App(r_data, after_eof=first_closer == "kernel")
    port = 7010 + 2 * (opener == "rudp") + (first_closer == "rudp")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rig.start()
        if opener == "kernel":
            rig.host.endpoint.listen(port)
            rig.host.accept_factory = lambda: app
            sock = kernel.tcp_socket()
            await loop.sock_connect(sock, (A4, port))
        else:
            lsock = kernel.listener(port)
            rig.connect(app, port)
            sock, _ = await loop.sock_accept(lsock)
            sock.setblocking(False)
            lsock.close()
        k_port, r_port = sock.getsockname()[1], sock.getpeername()[1]
        got = await kernel_transfer(sock, k_data, after_eof=first_closer == "rudp")
        assert sha(got) == sha(r_data)
        conn = app.conn
        assert conn is not None
        if first_closer == "kernel":
            # rudp: CLOSE-WAIT -> LAST-ACK -> CLOSED; the kernel holds TIME-WAIT.
            await until(lambda: conn.state is State.CLOSED)
            tw = [
                e
                for e in kernel.ns.tcp_sockets()
                if (e.local_port, e.remote_port) == (k_port, r_port)
            ]
            assert [e.state for e in tw] == ["TIME-WAIT"]
            assert not rig.host.endpoint.connections
        else:
            # The kernel: CLOSE-WAIT -> LAST-ACK -> CLOSED; rudp holds TIME-WAIT.
            await until(lambda: conn.state is State.TIME_WAIT)
            await until(lambda: tcp_info(sock).state == 7)  # TCP_CLOSE
            assert not any(
                (e.local_port, e.remote_port) == (k_port, r_port) for e in kernel.ns.tcp_sockets()
            )
        sock.close()
        rig.close()

    run(main())
    assert sha(app.received) == sha(k_data) and app.error is None
    fins = {d for d, s, _ in rig.log if parse_segment(s).flags & FIN}
    assert fins == {"a2b", "b2a"}
    first = next(d for d, s, _ in rig.log if parse_segment(s).flags & FIN)
    assert first == ("b2a" if first_closer == "kernel" else "a2b")
    assert not any(parse_segment(s).flags & RST for _, s, _ in rig.log)
    check_conversation(rig)


def test_rst_when_rudp_aborts(kernel: TunHost) -> None:
    rig = Rig(kernel)
    app = App()
    app.shut = True  # never half-close by itself

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rig.start()
        rig.host.endpoint.listen(7020)
        rig.host.accept_factory = lambda: app
        sock = kernel.tcp_socket()
        await loop.sock_connect(sock, (A4, 7020))
        sender = asyncio.ensure_future(loop.sock_sendall(sock, b"x" * 20_000_000))
        await until(lambda: len(app.received) > 100_000)
        assert app.conn is not None
        app.conn.abort(rig.now())
        rig.bridge.kick()
        with pytest.raises(ConnectionResetError):
            await sender
            await loop.sock_recv(sock, 1)
        assert tcp_info(sock).state == 7
        sock.close()
        rig.close()

    run(main())
    rsts = [s for s in rig.segments("a2b") if s.flags & RST]
    # One RST from the abort (RFC 9293 §3.10.5, with our ACK, as Linux sends it); the
    # others answer kernel segments that were already on their way when the
    # connection was gone (§3.10.7.1: <SEQ=SEG.ACK><CTL=RST>).
    assert [s.flags for s in rsts].count(RST | ACK) == 1
    assert all(s.flags in (RST, RST | ACK) for s in rsts)
    assert not rig.host.endpoint.connections


def test_rst_when_kernel_aborts(kernel: TunHost) -> None:
    rig = Rig(kernel)
    app = App(os.urandom(20_000_000))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rig.start()
        lsock = kernel.listener(7021)
        rig.connect(app, 7021)
        sock, _ = await loop.sock_accept(lsock)
        sock.setblocking(False)
        n = 0
        while n < 100_000:
            n += len(await loop.sock_recv(sock, 65536))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # abortive close: RST (RFC 9293 §3.10.5 ABORT)
        await until(lambda: app.terminated)
        lsock.close()
        rig.close()

    run(main())
    assert isinstance(app.error, ConnectionResetError)
    assert any(s.flags & RST for s in rig.segments("b2a"))
    assert not rig.host.endpoint.connections


def test_refused_both_ways(kernel: TunHost) -> None:
    rig = Rig(kernel)
    app = App()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rig.start()
        sock = kernel.tcp_socket()
        with pytest.raises(ConnectionRefusedError):
            await loop.sock_connect(sock, (A4, 7030))  # nothing listens in rudp
        sock.close()
        rig.connect(app, 7031)  # nothing listens in the kernel
        await until(lambda: app.terminated)
        rig.close()

    run(main())
    assert isinstance(app.error, ConnectionRefusedError)
    # rudp's RST to the kernel's SYN, then rudp's SYN; the kernel's SYN, then its RST.
    assert [s.flags & (SYN | RST) for s in rig.segments("a2b")] == [RST, SYN]
    assert [s.flags & (SYN | RST) for s in rig.segments("b2a")] == [SYN, RST]


# ------------------------------------------------------------- loss and SACK


def test_loss_rudp_sender_recovers_with_kernel_sack(kernel: TunHost) -> None:
    """2% loss each way, rudp sends: the kernel's SACK blocks drive rudp's recovery,
    so rudp resends about what was dropped and needs no retransmission timeouts."""
    data = os.urandom(2_000_000)
    rig = Rig(kernel, loss=0.02, delay=0.005, seed=3)
    app = App(data)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rig.start()
        lsock = kernel.listener(7040)
        rig.connect(app, 7040)
        sock, _ = await loop.sock_accept(lsock)
        sock.setblocking(False)
        got = await kernel_transfer(sock, b"")
        assert sha(got) == sha(data)
        await until(lambda: app.terminated)
        sock.close()
        lsock.close()
        rig.close()

    run(main())
    assert app.conn is not None and app.error is None
    stats = app.conn.stats()
    lost = rig.lost_data("a2b")
    sacks = sum(1 for s in rig.segments("b2a") if s.sack)
    assert lost > 10  # the impairment happened
    assert sacks > lost  # the kernel told rudp what arrived
    assert stats["fast_retransmits"] > 0
    assert lost <= stats["retransmissions"] <= lost + lost // 4 + 5, (lost, stats)
    # An RTO is legitimate when an ACK and the loss probe after it are both lost.
    assert stats["rto_expiries"] <= 2, stats
    check_conversation(rig)


def test_loss_kernel_sender_recovers_with_rudp_sack(kernel: TunHost) -> None:
    """2% loss each way, the kernel sends: rudp's SACK blocks make the kernel resend
    only the holes (retransmissions about equal to the data dropped)."""
    data = os.urandom(2_000_000)
    rig = Rig(kernel, loss=0.02, delay=0.005, seed=4)
    app = App()

    async def main() -> TcpInfo:
        loop = asyncio.get_running_loop()
        rig.start()
        rig.host.endpoint.listen(7041)
        rig.host.accept_factory = lambda: app
        sock = kernel.tcp_socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
        await loop.sock_connect(sock, (A4, 7041))
        await kernel_transfer(sock, data)
        await until(lambda: app.terminated)
        info = tcp_info(sock)
        sock.close()
        rig.close()
        return info

    info = run(main())
    assert sha(app.received) == sha(data) and app.error is None
    lost = rig.lost_data("b2a")
    sacks = sum(1 for s in rig.segments("a2b") if s.sack)
    assert lost > 10
    assert sacks > lost
    assert info.sack
    assert lost <= info.total_retrans <= lost + lost // 4 + 5, (lost, info)
    # No RTO storm. (Today one or two RTOs are common here: rudp sends no ACK for a
    # hole-filling segment that arrives in the same batch as out-of-order ones,
    # see docs/interop-linux.md; when that ACK's successor is lost, the kernel
    # times out.)
    if info.total_rto is not None:
        assert info.total_rto <= 3, info
    check_conversation(rig)


# ------------------------------------------------------- kernel to kernel path


def test_forwarder_kernel_to_kernel_with_loss(tun_ok: None) -> None:
    """The comparison path: two kernels through the same impairment stages."""
    data = os.urandom(1_000_000)
    log: list[tuple[str, bytes, str]] = []

    def tap(direction: str, t: float, packet: bytes, fate: str) -> None:
        log.append((direction, packet, fate))

    async def main(a: TunHost, b: TunHost) -> TcpInfo:
        loop = asyncio.get_running_loop()
        link = LinkConfig(loss=0.02, delay=0.005)
        with Forwarder(a.fd, b.fd, a2b=link, b2a=link, seed=5, tap=tap):
            lsock = b.listener(7050)
            sock = a.tcp_socket()
            await loop.sock_connect(sock, (B4, 7050))
            peer, _ = await loop.sock_accept(lsock)
            peer.setblocking(False)
            got, _ = await asyncio.gather(kernel_transfer(peer, b""), kernel_transfer(sock, data))
            assert sha(got) == sha(data)
            info = tcp_info(sock)
            for s in (sock, peer, lsock):
                s.close()
        return info

    with TunHost.side_a() as a, TunHost.side_b() as b:
        info = run(main(a, b))
    codec = PacketCodec()
    lost = sum(
        1
        for d, p, f in log
        if d == "a2b" and f == "lost" and parse_segment(codec.decode(p)[3]).payload
    )
    assert lost > 5
    assert lost <= info.total_retrans <= lost + lost // 4 + 5


def _run_benchmark(
    module: str, out: Path, *args: str
) -> tuple[JSONDict, subprocess.CompletedProcess[str]]:
    """Run ``python -m module *args --json out``: its JSON, and the process."""
    res = subprocess.run(
        [sys.executable, "-m", module, *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    doc: JSONDict = json.loads(out.read_text())
    return doc, res


def test_benchmark_smoke(tun_ok: None, tmp_path: Path) -> None:
    doc, res = _run_benchmark(
        "benchmarks.linuxpeer",
        tmp_path / "linuxpeer.json",
        *("--duration", "1", "--senders", "linux-cubic,rudp-bbr", "--capacity-duration", "0"),
    )
    runs = {r["sender"]: r for r in doc["runs"]}
    assert set(runs) == {"linux-cubic", "rudp-bbr"}
    for r in runs.values():
        assert r["error"] is None and r["verified"] and r["bytes"] > 0
        assert r["path"]["data"]["sent"] > 0
        assert len(r["samples"]) == 5 and len(r["samples"][0]) == len(doc["sample_fields"])
    # The engine bridge reports how late the loop ran the engine's timer (BBR
    # paces: the pacing timer fires), the engine its pacer's measured slack.
    assert runs["rudp-bbr"]["bridge"]["timer_late_ms"]["n"] > 0
    assert runs["rudp-bbr"]["sender_stats"]["pacing_slack"] > 0
    assert "linux-cubic" in res.stdout and "MB/s" in res.stdout


def test_fair_benchmark_smoke(tun_ok: None, tmp_path: Path) -> None:
    doc, res = _run_benchmark(
        "benchmarks.linuxpeer.fair",
        tmp_path / "fair.json",
        *("--senders", "linux-cubic,rudp-bbr", "--flows", "2", "--rate", "20"),
        *("--stagger", "0.5", "--warmup", "1", "--measure", "3"),
    )
    runs = {r["sender"]: r for r in doc["runs"]}
    assert set(runs) == {"linux-cubic", "rudp-bbr"}
    for r in runs.values():
        why = res.stdout + res.stderr  # the table: every run's Jain, link % and shares
        assert r["error"] is None and r["verified"], why
        # Both flows moved data through the one bottleneck, and together no more
        # than it carries (a smoke test: how well they use it is the benchmark's).
        assert len(r["goodput"]) == 2 and all(g > 0 for g in r["goodput"]), why
        assert 0.5 < r["jain"] <= 1.0, why
        assert 10 < r["link_pct"] <= 101, why
        assert r["path"]["a2b"]["sent"] > 0
    assert "Jain" in res.stdout
