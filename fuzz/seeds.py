"""Seed corpus generator: ``python -m fuzz.seeds --target engine --out DIR``.

Parser seeds are real datagrams (recorded from a pair of engines transferring data
over a lossy network: SYNs with every option, SACK blocks, timestamps, FINs, RSTs)
plus hand-made malformed ones, each behind a mode byte (as is / checksum fixed).
Engine seeds are small programs (:class:`fuzz.targets.ProgramWriter`) for every
starting point: transfers with loss and reordering, NAT rebinding, closes and
aborts, and the classic attacks (blind and exact RST, SYN in a synchronized state,
ACKs of unsent data, SACK blocks with wrapping edges, old timestamps, data from a
new address).
"""

from __future__ import annotations

import argparse
import hashlib
import struct
from pathlib import Path

from rudp.wire.segment import ACK, FIN, PSH, RST, SYN, URG, build_segment, encode_options

from .harness import CLIENT, O_MSS, O_SACK, O_SACKOK, O_TS, O_WS, SERVER, Craft, Pair, Setup
from .targets import ProgramWriter


def parser_seeds() -> list[bytes]:
    out: list[bytes] = []
    pair = Pair(Setup.from_bits(0))
    pair.prefix(3)
    for i in range(60):
        if i % 5 == 0:
            pair.drop(SERVER, 1)
        pair.deliver(SERVER, 1 if i % 7 == 0 else 0)
        pair.deliver(CLIENT, 0)
        pair.advance(0.01)
    pair.deliver_all()
    pair.shutdown(CLIENT, 0)
    pair.abort(SERVER, 0)
    seen = set()
    for side in (CLIENT, SERVER):
        for pkt in pair.history[side]:
            head = pkt.data[:60]  # headers matter; payload bytes do not
            if head[:20] not in seen:
                seen.add(head[:20])
                out.append(b"\x00" + pkt.data[:200])
    opts = encode_options(mss=1400, wscale=14, sack_perm=True, ts=(1, 2))
    out += [
        b"\x00" + build_segment(1, 2, 3, 4, SYN, 5, b"", opts),
        b"\x00" + build_segment(1, 2, 3, 4, ACK, 5, b"x", encode_options(sack=((1, 2),) * 4)),
        b"\x01"
        + build_segment(
            1, 2, 3, 4, ACK | URG | PSH | FIN, 5, b"abc", b"\x01\x01\x08\x0a" + bytes(8), urp=9
        ),
        b"\x01" + build_segment(1, 2, 3, 4, RST, 5)[:12] + bytes([0xF0]) + bytes(7 + 40),
        b"\x01" + struct.pack("!HHIIBBHHH", 1, 2, 3, 4, 0x60, ACK, 5, 0, 0) + b"\x05\x01\x00\x00",
        b"\x02" + struct.pack("!HHIIBBHHH", 1, 2, 3, 4, 0x60, ACK, 5, 0, 0) + b"\x02\x04\x05",
        b"\x00" + bytes(19),
    ]
    return out


def engine_seeds() -> list[bytes]:
    W = ProgramWriter
    seeds: list[ProgramWriter] = []
    for setup in (0, 0x30F0, 0x0004, 0x000C, 0x0002, 0x4000):
        for start in range(6):
            seeds.append(W(setup, start).deliver_all().advance(3).deliver_all())
    # Transfers with loss, reordering and duplication.
    w = W(0, 2).send(CLIENT, 0, 6).send(SERVER, 0, 5)
    for i in range(24):
        w.deliver(SERVER, i % 3).deliver(CLIENT, 0, duplicate=i % 5 == 0).drop(SERVER, 1).advance(1)
    seeds.append(w.advance(4).deliver_all())
    seeds.append(W(0x0004, 3).burst(15).drop(SERVER, 0).burst(15).advance(5).burst(15).advance(6))
    # NAT rebinding, with and without timestamps.
    for setup in (0, 0x00A0):
        seeds.append(
            W(setup, 2)
            .rebind()
            .send(CLIENT, 0, 2)
            .deliver_all()
            .send(SERVER, 0, 5)
            .deliver_all()
            .advance(4)
        )
    # Closing and aborting in every order.
    seeds.append(W(0, 2).close(CLIENT).deliver_all().close(SERVER).deliver_all().advance(7))
    seeds.append(W(0, 3).abort(SERVER).deliver_all().advance(4))
    seeds.append(W(0, 3).auto_read(CLIENT, False).close(CLIENT).deliver_all())
    # Attacks on an established connection with data in flight.
    attacks = [
        Craft(flags=RST),  # exact: RCV.NXT
        Craft(flags=RST, seq_delta=1),  # in window: challenge ACK
        Craft(flags=RST | ACK, seq_base=1, seq_delta=-1),  # right edge
        Craft(flags=SYN),  # SYN in a synchronized state
        Craft(flags=SYN | FIN, options=((O_MSS, 0), (O_WS, 255))),
        Craft(flags=ACK, ack_base=1, ack_delta=1000),  # ACK of unsent data
        Craft(flags=ACK, ack_base=3),  # too old
        Craft(flags=ACK, options=((O_SACK, 4, 2**31, 9, -5, 2, 2**32 - 1),)),
        Craft(flags=ACK | PSH, payload=100, options=((O_TS, 1, -100, 0, 0),)),
        Craft(flags=ACK | PSH, payload=1400, seq_delta=1400),  # out of order
        Craft(flags=ACK | FIN, payload=1, seq_delta=3000),
        Craft(flags=ACK, src=3),  # from a new address: a migration attempt
        Craft(flags=ACK | PSH, payload=536, src=1),
        Craft(flags=URG | ACK, urp=7, payload=2),
        Craft(
            flags=SYN,
            victim=5,
            ports=2,
            src=2,
            options=((O_MSS, 1), (O_SACKOK,), (O_TS, 0, 5, 1, 0)),
        ),
    ]
    for c in attacks:
        for side in (CLIENT, SERVER):
            seeds.append(W(0, 3).deliver(SERVER).craft(side, c).burst(15).advance(3).deliver_all())
    seeds.append(
        W(0, 1).craft(CLIENT, Craft(flags=SYN | ACK, ack_base=2, ack_delta=1)).deliver_all()
    )
    seeds.append(
        W(0, 0).craft(SERVER, Craft(flags=SYN, options=((O_MSS, 88), (O_WS, 14), (O_SACKOK,))))
    )
    seeds.append(
        W(0, 2).raw(SERVER, bytes(range(40)), fix=True).raw(CLIENT, b"\xff" * 24, stranger=True)
    )
    return [w.build() for w in seeds]


def write_seeds(target: str, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    seeds = parser_seeds() if target == "parser" else engine_seeds()
    for s in seeds:
        (out / f"seed-{hashlib.sha1(s).hexdigest()[:16]}").write_bytes(s)
    return len(seeds)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.seeds", description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=("parser", "engine"), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ns = ap.parse_args()
    n = write_seeds(ns.target, ns.out)
    print(f"wrote {n} seeds to {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
