"""Per-segment CPU cost of the sans-IO engine (no sockets, no event loop).

    python -m benchmarks.engine_cost [--mb 50] [--mss 1400] [--auth ALGORITHM]
    python -m benchmarks.engine_cost --icount [--mb 5]   # instructions (valgrind)

Two :class:`rudp.engine.Endpoint` objects exchange a bulk transfer by direct
hand-off of datagrams (a lossless, zero-delay path, like the simulator without
impairments). Time spent inside the sender's and the receiver's engine calls is
measured separately and divided by the number of data segments, giving the cost
to *send* one segment (including processing its ACKs) and to *receive* one
(including generating ACKs). ``--auth hmac-sha256-96`` (or another TCP-AO
algorithm) signs and checks every segment (docs/authentication.md).

Wall-clock figures on a shared machine vary by ±30% between runs; ``--icount``
counts CPU instructions instead (stable to a fraction of a percent): it runs the
benchmark twice under valgrind's callgrind, each time with one side's engine
calls made through ``contextvars.Context.run`` (a C function that the benchmark
alone uses) and collection toggled on inside it, and divides by the segments.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace

from rudp import Config
from rudp.engine import ConnectionAccepted, DataReceived, Endpoint
from rudp.engine.endpoint import Address

A = ("10.0.0.1", 1)
B = ("10.0.0.2", 2)


#: Virtual seconds after which a transfer that has not finished is an error (it
#: takes well under one).
STALL_LIMIT = 60.0

#: ``--trace``: the side whose engine calls run inside ``Context.run``.
SIDES = {"send": "sent", "receive": "received"}


def _direct(fn: Callable[[], None]) -> None:
    fn()


def run(
    total: int, mss: int, trace: str | None = None, auth: str | None = None
) -> dict[str, float | str | None]:
    # Fixed 1 MiB buffers (autotuning off): the per-segment path at the operating
    # point this benchmark always measured. Autotuned, the windows grow to 4 MiB
    # and each step moves ~3,000 segments through buffers larger than the cache:
    # the same instructions, ~15% (sent) and ~40% (received) more time here.
    buf = 1 << 20
    cfg = _with_auth(
        Config(mss=mss, rcv_buf=buf, snd_buf=buf, rcv_buf_max=buf, snd_buf_max=buf), auth
    )
    # Fixed initial sequence numbers (and timestamp offsets): the same work every run.
    snd = Endpoint(cfg, seed=1, isn=lambda _identity, _now: 0x3B9ACA00)
    rcv = Endpoint(cfg, seed=2, isn=lambda _identity, _now: 0xB2D05E00)
    rcv.listen(80)
    now = 0.0
    conn = snd.connect(B, 80, now)
    pc = time.perf_counter
    t_snd = t_rcv = 0.0
    server = None
    got = 0
    chunk = bytes(1 << 16)
    queued = 0
    wrap_snd = contextvars.copy_context().run if trace == "send" else _direct
    wrap_rcv = contextvars.copy_context().run if trace == "receive" else _direct
    out: list[tuple[bytes, Address]] = []
    # Trees from before receive coalescing have no batch call (before/after runs).
    batched = hasattr(rcv, "receive_datagrams") and not os.environ.get("RUDP_NO_COALESCE")
    back: list[tuple[bytes, Address]] = []

    def send_out() -> None:
        nonlocal queued, out
        while queued < total and not conn.writing_paused and conn.state.value == "ESTABLISHED":
            conn.send(chunk, now)
            queued += len(chunk)
        out = snd.datagrams_to_send(now)

    def receive() -> None:
        nonlocal server, got, back
        if batched:
            # As the asyncio layer hands over what one socket read brought
            # (receive coalescing, docs/performance.md).
            rcv.receive_datagrams([data for data, _ in out], A, now)
        else:
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

    def send_in() -> None:
        for data, _ in back:
            snd.receive_datagram(data, B, now)
        while snd.next_event() is not None:
            pass

    while got < total:
        now += 0.0001
        if now > STALL_LIMIT:
            raise RuntimeError(f"the transfer stalled: {got} of {total} bytes in {now:.0f} s")
        # Timers (a delayed ACK, say) run outside the timed parts: the measure is
        # the per-segment path, as it always was; they run so nothing can stall.
        for ep in (snd, rcv):
            due = ep.get_timer()
            if due is not None and due <= now:
                ep.handle_timer(now)
        t0 = pc()
        wrap_snd(send_out)
        t1 = pc()
        wrap_rcv(receive)
        t2 = pc()
        wrap_snd(send_in)
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


def icount(mb: float, mss: int, auth: str | None = None) -> dict[str, float | str | None]:
    """Instructions per data segment on each side, counted by callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--icount needs valgrind (apt install valgrind)")
    result: dict[str, float | str | None] = {"mb": mb, "mss": mss, "auth": auth}
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        for side in SIDES:
            out = os.path.join(tmp, f"cg.{side}")
            cmd = [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "--toggle-collect=context_run",
                sys.executable,
                "-m",
                "benchmarks.engine_cost",
                "--mb",
                str(mb),
                "--mss",
                str(mss),
                "--trace",
                side,
                *(["--auth", auth] if auth else []),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            report = json.loads(proc.stdout)
            found = re.search(r"Collected : (\d+)", proc.stderr)
            if found is None:
                raise SystemExit(f"no instruction count in callgrind's output:\n{proc.stderr}")
            result["data_segments"] = report["data_segments"]
            result[f"instructions_per_segment_{SIDES[side]}"] = round(
                int(found.group(1)) / report["data_segments"]
            )
    return result


def _with_auth(cfg: Config, algorithm: str | None) -> Config:
    """``cfg`` with a TCP-AO key of ``algorithm`` (each endpoint its own chain)."""
    if algorithm is None:
        return cfg
    from rudp.engine.auth import MasterKey

    return replace(cfg, auth_keys=MasterKey(1, 1, bytes(range(32)), algorithm))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--mb", type=float, default=None, help="MB to transfer (default 50; 5 with --icount)"
    )
    p.add_argument("--mss", type=int, default=1400)
    p.add_argument(
        "--auth",
        metavar="ALGORITHM",
        default=None,
        help="TCP-AO on every segment: hmac-sha256-96, hmac-sha1-96 or aes-128-cmac-96",
    )
    p.add_argument(
        "--icount",
        action="store_true",
        help="count instructions per segment with callgrind instead of timing",
    )
    p.add_argument("--trace", choices=SIDES, help=argparse.SUPPRESS)  # used by --icount
    args = p.parse_args()
    if args.icount:
        print(json.dumps(icount(args.mb or 5.0, args.mss, args.auth), indent=2))
        return
    mb = 50.0 if args.mb is None else args.mb
    print(json.dumps(run(int(mb * 1e6), args.mss, args.trace, args.auth), indent=2))


if __name__ == "__main__":
    main()
