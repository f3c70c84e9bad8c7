"""Per-segment CPU cost of the sans-IO engine (no sockets, no event loop).

    python -m benchmarks.engine_cost [--mb 50] [--mss 1400] [--auth ALGORITHM]

Two :class:`rudp.engine.Endpoint` objects exchange a bulk transfer by direct
hand-off of datagrams (a lossless, zero-delay path, like the simulator without
impairments). Time spent inside the sender's and the receiver's engine calls is
measured separately and divided by the number of data segments, giving the cost
to *send* one segment (including processing its ACKs) and to *receive* one
(including generating ACKs). ``--auth hmac-sha256-96`` (or another TCP-AO
algorithm) signs and checks every segment (docs/authentication.md).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from rudp import Config
from rudp.engine import ConnectionAccepted, DataReceived, Endpoint

A = ("10.0.0.1", 1)
B = ("10.0.0.2", 2)


def run(total: int, mss: int, auth: str | None = None) -> dict[str, float]:
    cfg = Config(mss=mss, rcv_buf=1 << 20, snd_buf=1 << 20)
    snd, rcv = Endpoint(_with_auth(cfg, auth), seed=1), Endpoint(_with_auth(cfg, auth), seed=2)
    rcv.listen(80)
    now = 0.0
    conn = snd.connect(B, 80, now)
    pc = time.perf_counter
    t_snd = t_rcv = 0.0
    server = None
    got = 0
    chunk = bytes(1 << 16)
    queued = 0
    while got < total:
        now += 0.0001
        t0 = pc()
        while queued < total and not conn.writing_paused and conn.state.value == "ESTABLISHED":
            conn.send(chunk, now)
            queued += len(chunk)
        out = snd.datagrams_to_send(now)
        t1 = pc()
        for data, _ in out:
            rcv.receive_datagram(data, A, now)
        while (ev := rcv.next_event()) is not None:
            if isinstance(ev, ConnectionAccepted):
                server = ev.conn
            elif isinstance(ev, DataReceived) and server is not None:
                got += len(server.read())
        if server is not None:
            got += len(server.read())
        back = rcv.datagrams_to_send(now)
        t2 = pc()
        for data, _ in back:
            snd.receive_datagram(data, B, now)
        while snd.next_event() is not None:
            pass
        t3 = pc()
        t_snd += (t1 - t0) + (t3 - t2)
        t_rcv += t2 - t1
    segs = conn.segments_sent
    assert server is not None
    return {
        "mb": total / 1e6,
        "mss": mss,
        "auth": auth,
        "data_segments": segs,
        "acks": server.segments_sent,
        "us_per_segment_sent": t_snd / segs * 1e6,
        "us_per_segment_received": t_rcv / segs * 1e6,
        "engine_goodput_MBps": total / (t_snd + t_rcv) / 1e6,
    }


def _with_auth(cfg: Config, algorithm: str | None) -> Config:
    """``cfg`` with a TCP-AO key of ``algorithm`` (each endpoint its own chain)."""
    if algorithm is None:
        return cfg
    from rudp.engine.auth import MasterKey

    return replace(cfg, auth_keys=MasterKey(1, 1, bytes(range(32)), algorithm))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=50.0)
    p.add_argument("--mss", type=int, default=1400)
    p.add_argument(
        "--auth",
        metavar="ALGORITHM",
        default=None,
        help="TCP-AO on every segment: hmac-sha256-96, hmac-sha1-96 or aes-128-cmac-96",
    )
    args = p.parse_args()
    print(json.dumps(run(int(args.mb * 1e6), args.mss, args.auth), indent=2))


if __name__ == "__main__":
    main()
