"""pcap export (rudp.pcap): the file's structure, parsed here independently of the
writer, and the real tshark's reading of simulated transfers.

The tshark tests need Wireshark's command-line reader:
``apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y tshark``.
They skip, saying so, when ``tshark`` is not on PATH.
"""

from __future__ import annotations

import io
import ipaddress
import os
import random
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rudp import Config
from rudp.engine import Connection, Endpoint
from rudp.pcap import LINKTYPE_RAW, PcapWriter, PcapWriterClosedError
from rudp.pcap.sim import ALL_FATES, DELIVERED_FATES, DROPPED_FATES, HostCapture, pcap_tap
from rudp.sim import FATES, LinkConfig, Network
from rudp.sim.host import BulkApp, Host
from rudp.wire import ACK, FIN, PSH, SYN, build_segment, verify
from rudp.wire.segment import encode_options

A4 = ("10.0.0.1", 40001)
B4 = ("10.0.0.2", 40002)
A6 = ("2001:db8::1", 40001)
B6 = ("2001:db8::2", 40002)


# -- an independent reader ------------------------------------------------------


@dataclass
class Record:
    sec: int
    frac: int
    caplen: int
    origlen: int
    data: bytes


def read_pcap(raw: bytes) -> tuple[dict[str, int], list[Record]]:
    """Parse a classic pcap file of either byte order (pcap-savefile(5))."""
    magic_le = struct.unpack_from("<I", raw)[0]
    order = "<" if magic_le in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    magic, vmaj, vmin, zone, sigfigs, snaplen, linktype = struct.unpack_from(order + "IHHiIII", raw)
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), hex(magic)
    header = dict(magic=magic, major=vmaj, minor=vmin, zone=zone, sigfigs=sigfigs, snaplen=snaplen)
    header["linktype"] = linktype
    records = []
    off = 24
    while off < len(raw):
        sec, frac, caplen, origlen = struct.unpack_from(order + "IIII", raw, off)
        off += 16
        records.append(Record(sec, frac, caplen, origlen, raw[off : off + caplen]))
        off += caplen
    assert off == len(raw), "trailing bytes"
    return header, records


def ones_sum(data: bytes) -> int:
    """RFC 1071 one's-complement sum, the plain way (word by word)."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


@dataclass
class IPPacket:
    version: int
    src: bytes
    dst: bytes
    tcp: bytes  # the IP payload
    header_ok: bool  # IPv4 header checksum (True for IPv6, which has none)
    ttl: int


def parse_ip(pkt: bytes) -> IPPacket:
    version = pkt[0] >> 4
    if version == 4:
        ihl = (pkt[0] & 0xF) * 4
        assert ihl == 20
        total, _ident, frag, ttl, proto = struct.unpack_from("!HHHBB", pkt, 2)
        assert proto == 6 and frag == 0x4000  # TCP, DF, no fragment
        assert total == len(pkt)
        return IPPacket(4, pkt[12:16], pkt[16:20], pkt[20:], ones_sum(pkt[:20]) == 0xFFFF, ttl)
    assert version == 6
    assert struct.unpack_from("!I", pkt)[0] == 0x60000000
    plen, nxt, hop = struct.unpack_from("!HBB", pkt, 4)
    assert nxt == 6 and plen == len(pkt) - 40
    return IPPacket(6, pkt[8:24], pkt[24:40], pkt[40:], True, hop)


def tcp_checksum_ok(ip: IPPacket) -> bool:
    """RFC 9293 §3.1 / RFC 8200 §8.1: the checksum over pseudo-header + segment."""
    n = len(ip.tcp)
    if ip.version == 4:
        pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, 6, n)
    else:
        pseudo = ip.src + ip.dst + struct.pack("!IxxxB", n, 6)
    return ones_sum(pseudo + ip.tcp) == 0xFFFF


def same_but_checksum(a: bytes, b: bytes) -> bool:
    return len(a) == len(b) and a[:16] == b[:16] and a[18:] == b[18:]


def written(**kw: Any) -> tuple[PcapWriter, io.BytesIO]:
    buf = io.BytesIO()
    return PcapWriter(buf, **kw), buf


def random_segment(rnd: random.Random, size: int) -> bytes:
    flags = rnd.choice([ACK, ACK | PSH, SYN, SYN | ACK, FIN | ACK])
    opts = encode_options(mss=1400, wscale=7) if flags & SYN else b""
    return build_segment(
        rnd.randrange(1, 65536),
        rnd.randrange(1, 65536),
        rnd.getrandbits(32),
        rnd.getrandbits(32),
        flags,
        rnd.randrange(65536),
        rnd.randbytes(size),
        opts,
    )


# -- structure --------------------------------------------------------------------


def test_global_header_microseconds_and_nanoseconds() -> None:
    w, buf = written()
    w.close()
    header, records = read_pcap(buf.getvalue())
    assert header["magic"] == 0xA1B2C3D4  # microseconds
    assert (header["major"], header["minor"]) == (2, 4)
    assert header["zone"] == 0 and header["sigfigs"] == 0
    assert header["snaplen"] == 262144
    assert header["linktype"] == LINKTYPE_RAW == 101
    assert records == []
    w, buf = written(nanosecond=True, snaplen=1500)
    w.close()
    header, _ = read_pcap(buf.getvalue())
    assert header["magic"] == 0xA1B23C4D and header["snaplen"] == 1500


@pytest.mark.parametrize(
    ("src", "dst", "version"),
    [(A4, B4, 4), (A6, B6, 6), (("::1", 5, 0, 0), ("fe80::1%eth0", 6, 0, 3), 6)],
    ids=["ipv4", "ipv6", "ipv6-4tuple-scoped"],
)
def test_packet_headers_and_checksums(src: Any, dst: Any, version: int) -> None:
    rnd = random.Random(version)
    w, buf = written(epoch=0.0)
    segments = [random_segment(rnd, n) for n in (0, 1, 2, 3, 1399, 1400)]
    for i, seg in enumerate(segments):
        w.write(1.0 + i, src, dst, seg)
    assert w.packets == len(segments)
    w.close()
    _, records = read_pcap(buf.getvalue())
    assert len(records) == len(segments)
    hdr = 20 if version == 4 else 40
    for i, (rec, seg) in enumerate(zip(records, segments, strict=True)):
        assert (rec.sec, rec.frac) == (1 + i, 0)
        assert rec.caplen == rec.origlen == len(rec.data) == hdr + len(seg)
        ip = parse_ip(rec.data)
        assert ip.version == version and ip.header_ok and ip.ttl == 64
        assert ip.src == ipaddress.ip_address(src[0].split("%")[0]).packed
        assert ip.dst == ipaddress.ip_address(dst[0].split("%")[0]).packed
        assert same_but_checksum(ip.tcp, seg)  # the segment itself, unchanged
        assert tcp_checksum_ok(ip)
        assert not verify(ip.tcp)  # rewritten: rudp's own rule no longer holds


def test_ipv4_identification_advances() -> None:
    w, buf = written(epoch=0.0)
    seg = build_segment(1, 2, 3, 4, ACK, 5)
    for _ in range(3):
        w.write(0.0, A4, B4, seg)
    w.close()
    idents = [struct.unpack_from("!H", r.data, 4)[0] for r in read_pcap(buf.getvalue())[1]]
    assert len(set(idents)) == 3


@pytest.mark.parametrize(
    ("src", "dst", "version", "want_src", "want_dst"),
    [
        ("::ffff:10.0.0.1", "::ffff:10.0.0.2", 4, "10.0.0.1", "10.0.0.2"),
        ("::ffff:10.0.0.1", "10.0.0.2", 4, "10.0.0.1", "10.0.0.2"),
        ("2001:db8::1", "::ffff:10.0.0.2", 6, "2001:db8::1", "::ffff:10.0.0.2"),
        ("2001:db8::1", "10.0.0.2", 6, "2001:db8::1", "::ffff:10.0.0.2"),
        ("10.0.0.1", "2001:db8::2", 6, "::ffff:10.0.0.1", "2001:db8::2"),
    ],
)
def test_ipv4_mapped_addresses(
    src: str, dst: str, version: int, want_src: str, want_dst: str
) -> None:
    w, buf = written()
    w.write(0.0, (src, 1), (dst, 2), build_segment(1, 2, 3, 4, ACK, 5, b"xyz"))
    w.close()
    ip = parse_ip(read_pcap(buf.getvalue())[1][0].data)
    assert ip.version == version
    assert ip.src == ipaddress.ip_address(want_src).packed
    assert ip.dst == ipaddress.ip_address(want_dst).packed
    assert tcp_checksum_ok(ip)


def test_checksum_validity_is_preserved_exactly() -> None:
    """Valid under rudp's rule <=> valid under RFC 9293's, damaged or not, including
    the checksum values 0x0000 and 0xFFFF and odd lengths."""
    rnd = random.Random(1)
    cases: list[tuple[Any, Any, bytes]] = []
    addrs = [A4, B4, A6, B6, ("192.0.2.255", 1), ("255.255.255.255", 2), ("::", 3)]
    for i in range(2000):
        seg = bytearray(random_segment(rnd, rnd.randrange(0, 300)))
        if i % 2:  # damage 1..3 bytes, as the simulator's corruption does
            for j in rnd.sample(range(len(seg)), rnd.randint(1, 3)):
                seg[j] ^= rnd.randrange(1, 256)
        src, dst = rnd.sample(addrs, 2)
        cases.append((src, dst, bytes(seg)))
    # rudp checksums 0x0000 (sum 0xFFFF) and 0xFFFF (sum 0: an all-zero segment).
    base = bytearray(build_segment(1, 2, 3, 4, ACK, 5, b"\0\0"))
    base[16:18] = b"\0\0"
    base[-2:] = struct.pack("!H", ~ones_sum(bytes(base)) & 0xFFFF)
    assert verify(base) and base[16:18] == b"\0\0"
    zero = bytearray(20)
    zero[16:18] = b"\xff\xff"
    assert verify(zero)
    cases += [(A4, B4, bytes(base)), (A6, B6, bytes(base)), (A4, B4, bytes(zero))]
    w, buf = written()
    for src, dst, seg in cases:
        w.write(0.0, src, dst, seg)
    w.close()
    _, records = read_pcap(buf.getvalue())
    valid = 0
    for (_, _, seg), rec in zip(cases, records, strict=True):
        ip = parse_ip(rec.data)
        assert same_but_checksum(ip.tcp, seg)
        assert tcp_checksum_ok(ip) == verify(seg)
        valid += verify(seg)
    assert 1000 < valid < len(cases)  # both kinds were exercised


def test_short_and_odd_payloads_are_recorded_and_never_raise() -> None:
    w, buf = written()
    payloads = [bytes(range(n)) for n in range(21)] + [b"\xff" * 17]
    for i, p in enumerate(payloads):
        w.write(float(i), A4 if i % 2 else A6, B4 if i % 2 else B6, p)
        w.write(float(i), A4, B4, bytearray(p))
        w.write(float(i), A6, B6, memoryview(p))
    w.close()
    _, records = read_pcap(buf.getvalue())
    assert len(records) == 3 * len(payloads)
    for rec, p in zip(records, [p for p in payloads for _ in range(3)], strict=True):
        ip = parse_ip(rec.data)
        assert rec.origlen == len(rec.data) == (20 if ip.version == 4 else 40) + len(p)
        if len(p) < 18:
            assert ip.tcp == p  # nothing to rewrite: recorded as it came
        else:
            assert same_but_checksum(ip.tcp, p)


def test_oversized_segment_saturates_the_ipv4_length() -> None:
    w, buf = written()
    big = build_segment(1, 2, 3, 4, ACK, 5, bytes(65_600))
    w.write(0.0, A4, B4, big)
    w.close()
    (rec,) = read_pcap(buf.getvalue())[1]
    assert rec.origlen == rec.caplen == 20 + len(big)
    assert struct.unpack_from("!H", rec.data, 2)[0] == 0xFFFF
    assert ones_sum(rec.data[:20]) == 0xFFFF


def test_snaplen_truncates_and_keeps_the_original_length() -> None:
    w, buf = written(snaplen=60)
    seg = build_segment(1, 2, 3, 4, ACK, 5, bytes(range(200)))
    w.write(0.0, A4, B4, seg)
    w.write(0.0, A4, B4, seg[:30])
    w.close()
    header, (rec, small) = read_pcap(buf.getvalue())
    assert header["snaplen"] == 60
    assert (rec.caplen, rec.origlen) == (60, 20 + len(seg))
    assert rec.data[20:36] == seg[:16] and rec.data[38:] == seg[18:40]
    assert small.caplen == small.origlen == 50
    for bad in (0, -1, 262145, True, 1.5):
        with pytest.raises(ValueError, match="snaplen"):
            PcapWriter(io.BytesIO(), snaplen=bad)  # type: ignore[arg-type]


def test_timestamps_epoch_and_resolution() -> None:
    seg = build_segment(1, 2, 3, 4, ACK, 5)
    w, buf = written(epoch=1_700_000_000.0, nanosecond=True)
    w.write(0.123456789, A4, B4, seg)
    w.write(86_400.000000001, A4, B4, seg)
    w.close()
    r1, r2 = read_pcap(buf.getvalue())[1]
    assert (r1.sec, r1.frac) == (1_700_000_000, 123_456_789)  # ns survive a Unix epoch
    assert (r2.sec, r2.frac) == (1_700_086_400, 1)
    w, buf = written(epoch=0.0)
    w.write(2.5, A4, B4, seg)
    w.write(-5.0, A4, B4, seg)  # before 1970: clamped, not an error
    w.close()
    r1, r2 = read_pcap(buf.getvalue())[1]
    assert (r1.sec, r1.frac) == (2, 500_000) and (r2.sec, r2.frac) == (0, 0)
    # Default: the first t is "now"; later ones keep their distance from it.
    w, buf = written()
    before = time.time()
    w.write(12_345.0, A4, B4, seg)
    w.write(12_346.25, A4, B4, seg)
    after = time.time()
    w.close()
    r1, r2 = read_pcap(buf.getvalue())[1]
    first = r1.sec + r1.frac / 1e6
    assert before - 1e-6 <= first <= after + 1e-6
    assert (r2.sec * 10**6 + r2.frac) - (r1.sec * 10**6 + r1.frac) == 1_250_000


def test_names_that_are_not_ip_addresses_get_stable_synthetic_addresses() -> None:
    w, buf = written()
    seg = build_segment(1, 2, 3, 4, ACK, 5)
    w.write(0.0, ("client", 1), ("server", 2), seg)
    w.write(0.0, ("server", 2), ("client", 1), seg)
    w.write(0.0, ("client", 1), ("10.9.9.9", 2), seg)
    w.close()
    ips = [parse_ip(r.data) for r in read_pcap(buf.getvalue())[1]]
    client, server = (
        ipaddress.ip_address("198.18.0.1").packed,
        ipaddress.ip_address("198.18.0.2").packed,
    )
    assert (ips[0].src, ips[0].dst) == (client, server)
    assert (ips[1].src, ips[1].dst) == (server, client)
    assert ips[2].src == client and all(tcp_checksum_ok(ip) for ip in ips)


def test_file_ownership_close_and_misuse(tmp_path: Path) -> None:
    seg = build_segment(1, 2, 3, 4, ACK, 5)
    path = tmp_path / "x.pcap"
    with PcapWriter(path) as w:
        w.write(0.0, A4, B4, seg)
        w.flush()
        assert len(path.read_bytes()) == 24 + 16 + 20 + 20
    assert w.closed
    w.close()  # idempotent
    w.flush()  # harmless once closed
    with pytest.raises(PcapWriterClosedError):
        w.write(0.0, A4, B4, seg)
    buf = io.BytesIO()
    with PcapWriter(buf) as w2:
        w2.write(0.0, A4, B4, seg)
    assert not buf.closed  # a caller's file object stays open
    assert len(buf.getvalue()) == 24 + 16 + 40
    with pytest.raises(TypeError, match="epoch"):
        PcapWriter(io.BytesIO(), epoch="now")  # type: ignore[arg-type]


# -- simulator adapters -----------------------------------------------------------


@dataclass
class Run:
    net: Network
    client: Host
    server: Host
    conn: Connection
    app: BulkApp
    payload: bytes


def transfer(
    link: LinkConfig,
    *,
    seed: int,
    size: int,
    a: tuple[str, int] = A4,
    b: tuple[str, int] = B4,
    back: LinkConfig | None = None,
    wrap_client: Any = None,
    wrap_server: Any = None,
    tap: Any = None,
) -> Run:
    """One connection a -> b moving ``size`` random bytes; TCP ports = UDP ports."""
    net = Network(seed=seed)
    ch = Host(Endpoint(Config(), seed=seed))
    sh = Host(Endpoint(Config(), seed=seed + 1000))
    net.add_node(wrap_client(ch) if wrap_client else ch, a)
    net.add_node(wrap_server(sh) if wrap_server else sh, b)
    net.set_link(a, b, link)
    net.set_link(b, a, back or link)
    if tap is not None:
        net.add_tap(tap)
    sh.endpoint.listen(b[1])
    payload = random.Random(seed).randbytes(size)
    sh.accept_factory = lambda: BulkApp(b"")
    app = BulkApp(payload)
    conn = ch.connect(app, b, b[1], 0.0, local_port=a[1])

    def done() -> bool:
        return app.terminated and bool(sh.accepted) and sh.accepted[0].terminated

    assert net.run_until(done, timeout=600.0)
    assert app.error is None and bytes(sh.accepted[0].received) == payload
    return Run(net, ch, sh, conn, app, payload)


def test_fate_sets() -> None:
    assert DELIVERED_FATES | DROPPED_FATES == ALL_FATES == FATES
    assert not DELIVERED_FATES & DROPPED_FATES
    with pytest.raises(ValueError, match="unknown fates"):
        pcap_tap(PcapWriter(io.BytesIO()), fates={"delivered", "eaten"})
    with pytest.raises(ValueError, match="not both"):
        pcap_tap(PcapWriter(io.BytesIO()), link=(A4, B4), address=A4)


def test_tap_records_by_link_address_and_fate() -> None:
    writers = {
        "link_delivered": PcapWriter(io.BytesIO(), epoch=0.0),
        "link_all": PcapWriter(io.BytesIO(), epoch=0.0),
        "link_dropped": PcapWriter(io.BytesIO(), epoch=0.0),
        "address": PcapWriter(io.BytesIO(), epoch=0.0),
        "all": PcapWriter(io.BytesIO(), epoch=0.0),
    }
    taps = [
        pcap_tap(writers["link_delivered"], link=(A4, B4)),
        pcap_tap(writers["link_all"], link=(A4, B4), fates=ALL_FATES),
        pcap_tap(writers["link_dropped"], link=(A4, B4), fates=DROPPED_FATES),
        pcap_tap(writers["address"], address=B4, fates=ALL_FATES),
        pcap_tap(writers["all"], fates=ALL_FATES),
    ]

    def tap(*args: Any) -> None:
        for t in taps:
            t(*args)

    link = LinkConfig(delay=0.01, loss=0.1, duplicate=0.05, corrupt=0.02)
    run = transfer(link, seed=3, size=100_000, tap=tap)
    ab = run.net.link_stats(A4, B4)
    ba = run.net.link_stats(B4, A4)
    assert ab.lost > 0 and ab.duplicated > 0 and ab.corrupted > 0  # the impairments happened
    n = {k: w.packets for k, w in writers.items()}
    assert n["link_all"] == ab.sent
    assert n["link_dropped"] == ab.lost
    assert n["link_delivered"] == ab.sent - ab.lost  # each datagram once, duplicated or not
    assert n["address"] == n["all"] == ab.sent + ba.sent


def test_host_capture_sees_what_the_host_sends_and_receives() -> None:
    caps: dict[str, PcapWriter] = {}

    def wrap(name: str, addr: tuple[str, int]) -> Any:
        caps[name] = PcapWriter(io.BytesIO(), epoch=0.0)
        return lambda node: HostCapture(node, addr, caps[name])

    clean = PcapWriter(io.BytesIO(), epoch=0.0)
    wrap_a = wrap("a", A4)
    link = LinkConfig(delay=0.01, loss=0.1, duplicate=0.05, corrupt=0.05)
    run = transfer(
        link,
        seed=4,
        size=100_000,
        wrap_client=lambda node: HostCapture(wrap_a(node), A4, clean, damaged=False),
        wrap_server=wrap("b", B4),
    )
    ab = run.net.link_stats(A4, B4)
    ba = run.net.link_stats(B4, A4)
    assert ab.lost > 0 and ab.duplicated > 0 and ba.corrupted > 0  # impairments happened
    # A host capture holds all it sent (lost ones too) and every copy it received.
    assert caps["a"].packets == ab.sent + ba.delivered
    assert caps["b"].packets == ba.sent + ab.delivered
    assert ab.sent == run.conn.segments_sent
    # damaged=False leaves out exactly what the host's rudp dropped as malformed.
    dropped = run.client.endpoint.counters["dropped"]
    assert dropped > 0 and clean.packets == caps["a"].packets - dropped


# -- the real tshark --------------------------------------------------------------

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(
    TSHARK is None,
    reason="tshark is not installed (apt-get update && DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y tshark)",
)

PI_ERROR = 0x00800000  # expert severity "error" (epan/proto.h)
FIELDS = (
    "frame.number",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.stream",
    "tcp.len",
    "tcp.flags.syn",
    "tcp.flags.fin",
    "tcp.checksum.status",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
    "tcp.analysis.out_of_order",
    "_ws.malformed",
    "_ws.expert.severity",
)


def tshark(path: Path, tmp_path: Path) -> list[dict[str, str]]:
    """Every frame's FIELDS as tshark dissects them, checksum validation on."""
    assert TSHARK is not None
    conf = tmp_path / "wireshark-config"  # no user preferences can change the result
    conf.mkdir(exist_ok=True)
    cmd = [TSHARK, "-r", str(path), "-n"]
    cmd += ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
    cmd += ["-o", "tcp.analyze_sequence_numbers:TRUE"]
    # No reassembly into application PDUs (the payload is no protocol tshark knows):
    # when a lost SYN makes the handshake's RTT ~1 s, tshark 4.0 takes later fast
    # retransmissions for out-of-order data, queues them for reassembly and reports
    # "New fragment overlaps old data" as a malformed frame though the bytes are
    # identical (seen on the trees before and after the batching work, ~1 in 40 runs
    # under load).
    cmd += ["-o", "tcp.desegment_tcp_streams:FALSE"]
    cmd += ["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(conf))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    # tshark warns on stderr when run as root; anything else there is a read error.
    errors = [ln for ln in res.stderr.splitlines() if ln and "as user" not in ln]
    assert res.returncode == 0 and not errors, res.stderr
    rows = []
    for line in res.stdout.splitlines():
        values = line.split("\t")
        assert len(values) == len(FIELDS), line
        rows.append(dict(zip(FIELDS, values, strict=True)))
    return rows


def is_error(row: dict[str, str]) -> bool:
    return bool(row["_ws.malformed"]) or any(
        int(v) >= PI_ERROR for v in row["_ws.expert.severity"].split(",") if v
    )


def retransmitted(row: dict[str, str]) -> bool:
    """A segment that tshark says does not advance the sequence space.

    ``tcp.analysis.retransmission`` is also set on fast and spurious ones. tshark
    calls a segment "out-of-order" instead when it comes less than the
    handshake's RTT after the highest sequence seen; in a capture on the sender,
    where nothing is reordered, those are retransmissions too.
    """
    return bool(row["tcp.analysis.retransmission"] or row["tcp.analysis.out_of_order"])


def sender_capture(
    tmp_path: Path, link: LinkConfig, *, seed: int, a: Any, b: Any, back: LinkConfig | None = None
) -> tuple[Run, Path]:
    path = tmp_path / "sender.pcap"
    with PcapWriter(path) as w:
        run = transfer(
            link,
            seed=seed,
            size=400_000,
            a=a,
            b=b,
            back=back,
            wrap_client=lambda node: HostCapture(node, a, w),
        )
    return run, path


@needs_tshark
@pytest.mark.parametrize(
    ("a", "b", "link"),
    [
        (A4, B4, LinkConfig(delay=0.02, loss=0.05)),
        (A6, B6, LinkConfig(delay=0.02, jitter=0.005, loss=0.08, reorder=0.05, duplicate=0.03)),
    ],
    ids=["ipv4-loss", "ipv6-loss-reorder-dup"],
)
def test_tshark_retransmissions_equal_rudp_counter(
    tmp_path: Path, a: Any, b: Any, link: LinkConfig
) -> None:
    run, path = sender_capture(tmp_path, link, seed=5, a=a, b=b)
    assert run.net.link_stats(a, b).lost > 0  # the impairment happened
    rows = tshark(path, tmp_path)
    st = run.conn.stats()
    ab, ba = run.net.link_stats(a, b), run.net.link_stats(b, a)
    assert len(rows) == ab.sent + ba.delivered
    assert [r for r in rows if is_error(r)] == []  # nothing malformed, no bad checksum
    assert {r["tcp.checksum.status"] for r in rows} == {"1"}  # every checksum verified good
    src_field = "ip.src" if a is A4 else "ipv6.src"
    assert {r[src_field] for r in rows} == {a[0], b[0]}
    assert {r["tcp.stream"] for r in rows} == {"0"}  # one TCP conversation
    assert {(r["tcp.srcport"], r["tcp.dstport"]) for r in rows} == {
        (str(a[1]), str(b[1])),
        (str(b[1]), str(a[1])),
    }
    mine = [r for r in rows if r["tcp.srcport"] == str(a[1])]
    assert all(int(r["tcp.len"]) or r["tcp.flags.syn"] == "1" or r["tcp.flags.fin"] == "1"
               for r in mine if retransmitted(r))  # fmt: skip
    assert st["retransmissions"] > 0
    assert sum(map(retransmitted, mine)) == st["retransmissions"]


@needs_tshark
def test_tshark_flags_exactly_the_segments_rudp_drops(tmp_path: Path) -> None:
    """With corruption on the way back, the sender's capture holds damaged ACKs:
    tshark's errors are exactly those frames, and rudp dropped exactly those.

    tshark's sequence analysis does not skip segments with a bad checksum, so a
    damaged header can mislead it (a flipped SYN bit restarts its conversation);
    the retransmission count is compared on the same capture without them
    (``HostCapture(damaged=False)``), where it is exact.
    """
    back = LinkConfig(delay=0.02, loss=0.03, corrupt=0.05, duplicate=0.02)
    full, clean = tmp_path / "full.pcap", tmp_path / "clean.pcap"
    with PcapWriter(full) as wf, PcapWriter(clean) as wc:
        run = transfer(
            LinkConfig(delay=0.02, loss=0.03),
            seed=6,
            size=400_000,
            back=back,
            wrap_client=lambda node: HostCapture(HostCapture(node, A4, wf), A4, wc, damaged=False),
        )
    ba = run.net.link_stats(B4, A4)
    assert ba.corrupted > 0 and run.net.link_stats(A4, B4).lost > 0  # impairments happened
    rows = tshark(full, tmp_path)
    _, records = read_pcap(full.read_bytes())
    assert len(rows) == len(records)
    # Damaged: the rewritten checksum fails (independent check, frame numbers from 1).
    damaged = {i for i, rec in enumerate(records, 1) if not tcp_checksum_ok(parse_ip(rec.data))}
    errors = {int(r["frame.number"]) for r in rows if is_error(r)}
    bad_checksum = {int(r["frame.number"]) for r in rows if r["tcp.checksum.status"] == "0"}
    assert damaged and errors == damaged
    assert bad_checksum <= damaged  # the rest: a damaged header tshark could not parse
    assert len(damaged) == run.client.endpoint.counters["dropped"]
    clean_rows = tshark(clean, tmp_path)
    assert len(clean_rows) == len(rows) - len(damaged)
    assert not any(map(is_error, clean_rows))
    mine = [r for r in clean_rows if r["tcp.srcport"] == str(A4[1])]
    assert sum(map(retransmitted, mine)) == run.conn.retransmissions > 0


@needs_tshark
def test_tshark_reads_tap_captures_and_junk(tmp_path: Path) -> None:
    """A link tap (drops included) and datagrams too short to be TCP: tshark reads
    every frame; only the short ones are malformed, as they are."""
    path = tmp_path / "tap.pcap"
    with PcapWriter(path, nanosecond=True) as w:
        run = transfer(
            LinkConfig(delay=0.01, loss=0.1),
            seed=7,
            size=50_000,
            tap=pcap_tap(w, link=(A4, B4), fates=ALL_FATES),
        )
        t = run.net.now
        for n in range(20):
            w.write(t, A4, B4, bytes(range(n)))
    ab = run.net.link_stats(A4, B4)
    assert ab.lost > 0  # the impairment happened
    rows = tshark(path, tmp_path)
    assert len(rows) == ab.sent + 20
    good, junk = rows[: ab.sent], rows[ab.sent :]
    assert not any(map(is_error, good))
    assert {r["tcp.checksum.status"] for r in good} == {"1"}
    assert not is_error(junk[0])  # an empty payload: an IP packet with no TCP header
    assert all(map(is_error, junk[1:]))


def test_docs_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first Python block of docs/pcap.md runs as written."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "pcap.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/pcap.md", "exec"), scope)
    _, records = read_pcap((tmp_path / "client.pcap").read_bytes())
    assert len(records) == scope["pcap"].packets > 700
    assert scope["conn"].retransmissions > 0
    assert all(tcp_checksum_ok(parse_ip(r.data)) for r in records)
