"""The benchmark's receiving application, run as its own process inside side B's
namespace: ``ip netns exec NS python -m benchmarks.linuxpeer.peer PORT DURATION``.

It listens on PORT, prints ``ready`` once listening, accepts one connection, reads
as fast as the kernel delivers for DURATION seconds after ``accept()`` returned,
checks every byte against :func:`pattern`, then prints one JSON line and resets the
connection. A process of its own, so that it reads while the bridge writes packets
into the TUN device: in the bridge's own event loop it could only read between two
bursts, and the kernel would then acknowledge a whole burst with one stretch ACK.

Standard library only (it starts quickly and imports nothing of rudp).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import time
from collections.abc import Sequence

__all__ = ["CHUNK", "PATTERN_SIZE", "main", "pattern"]

CHUNK = 65536
PATTERN_SIZE = 16 * CHUNK
#: Seconds between two samples of the byte count.
SAMPLE_INTERVAL = 0.25


def pattern() -> bytes:
    """The stream both ends agree on: this block, repeated."""
    return random.Random(0x5EED).randbytes(PATTERN_SIZE)


def receive(sock: socket.socket, duration: float) -> dict[str, object]:
    """Read for ``duration`` seconds from now; byte counts every SAMPLE_INTERVAL."""
    expected = memoryview(pattern())
    size = len(expected)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    verified = True
    t0 = time.monotonic()
    end = t0 + duration
    marks = [0]
    next_mark = t0 + SAMPLE_INTERVAL
    eof = False
    while True:
        now = time.monotonic()
        while now >= next_mark and next_mark <= end + 1e-9:
            marks.append(total)
            next_mark += SAMPLE_INTERVAL
        if now >= end or eof:
            break
        sock.settimeout(max(0.001, min(next_mark, end) - now))
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            continue
        except OSError:
            break
        if n == 0:
            eof = True
            continue
        pos = total % size
        i = 0
        while i < n:
            k = min(n - i, size - pos)
            if view[i : i + k] != expected[pos : pos + k]:
                verified = False
            i += k
            pos = 0
        total += n
    return {
        "bytes": total,
        "accepted_at": t0,  # time.monotonic() (CLOCK_MONOTONIC, as the benchmark's)
        "elapsed": time.monotonic() - t0,
        "marks": marks,
        "sample_interval": SAMPLE_INTERVAL,
        "verified": verified,
        "eof": eof,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: python -m benchmarks.linuxpeer.peer HOST PORT DURATION", file=sys.stderr)
        return 2
    host, port, duration = args[0], int(args[1]), float(args[2])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((host, port))
        lsock.listen(1)
        lsock.settimeout(30)
        print("ready", flush=True)
        sock, _ = lsock.accept()
    with sock:
        result = receive(sock, duration)
        # Reset, not close: nothing may linger into the next run.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
