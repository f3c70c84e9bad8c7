"""The raw UDP peer with GSO and GRO: the ceiling for batched UDP from Python.

bulk only. The client sends datagrams of ``mss + 20`` bytes (the UDP payload of a
full rudp segment) as GSO batches: one ``sendmsg`` carries up to 64 of them in one
buffer with a ``UDP_SEGMENT`` control message and the kernel cuts it into
datagrams (Linux >= 4.18). The server enables ``UDP_GRO`` (Linux >= 5.0), drains
the socket with ``recvmsg_into`` into one reused buffer from a reader callback and
counts datagrams by the segment size the kernel reports. Both use
``loop.add_reader``/``add_writer`` on plain non-blocking sockets, as rudp's socket
layer does, with none of rudp's work per datagram. Control datagrams (END, STAT)
follow the udp peer's protocol (:mod:`benchmarks.udp_peer`).

Where the system lacks GSO or GRO the measurement fails with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import sys
import time

from .common import CpuTimer, JSONDict, Spec
from .udp_peer import END, STAT, ask_end, bulk_result, payload_size

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
#: Datagrams per GSO send (the kernel's UDP_MAX_SEGMENTS is 64 before Linux 6.9).
GSO_SEGMENTS = 64
#: Payload bytes per GSO send: one IP packet (65535 - IPv4/UDP headers, loopback frame).
GSO_MAX_BYTES = 65535 - 14 - 40 - 8
#: Receives per reader wakeup; bytes of the reused receive buffer.
RECV_BUDGET = 256
RECV_BUFFER = 65536
SOCKET_BUFFER = 4 * 1024 * 1024
#: Yield to the loop after this many GSO sends.
YIELD_EVERY = 16


def _socket(host: str) -> socket.socket:
    if not sys.platform.startswith("linux"):
        raise RuntimeError("the udp-gso peer needs Linux (UDP_SEGMENT, UDP_GRO)")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    sock.bind((host, 0))
    return sock


class UdpGsoServer:
    """Server process: a GRO receiver counting datagrams and bytes."""

    def __init__(self, spec: Spec) -> None:
        if spec.workload != "bulk":
            raise ValueError(f"the udp-gso peer has no {spec.workload!r} workload")
        self.spec = spec
        self.sock = _socket(spec.host)
        try:
            self.sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError as exc:
            self.sock.close()
            raise RuntimeError(f"UDP_GRO is not available: {exc}") from exc
        self.buf = bytearray(RECV_BUFFER)
        self.count = 0
        self.bytes = 0
        self.recvs = 0
        self.first = self.last = 0.0
        self.cpu0 = 0.0
        self.final: JSONDict | None = None

    async def start(self) -> int:
        asyncio.get_running_loop().add_reader(self.sock, self._readable)
        return int(self.sock.getsockname()[1])

    def _readable(self) -> None:
        recvmsg_into = self.sock.recvmsg_into
        view = memoryview(self.buf)
        for _ in range(RECV_BUDGET):
            try:
                nbytes, ancdata, _flags, addr = recvmsg_into([view], 64)
            except BlockingIOError:
                return
            if nbytes and self.buf[0] == 0xFF:
                self._control(bytes(view[:nbytes]), addr)
                continue
            segment = nbytes
            for level, kind, data in ancdata:
                if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
                    segment = int.from_bytes(data[:4], sys.byteorder) or nbytes
            now = time.perf_counter()
            if self.count == 0:
                self.first = now
                self.cpu0 = time.process_time()
            self.last = now
            self.count += math.ceil(nbytes / segment) if segment else 1
            self.bytes += nbytes
            self.recvs += 1

    def _control(self, data: bytes, addr: tuple[str, int]) -> None:
        if data != END:
            return
        if self.final is None:
            self.final = {
                "count": self.count,
                "bytes": self.bytes,
                "recvs": self.recvs,
                "span": self.last - self.first,
                "cpu": time.process_time() - self.cpu0 if self.count else 0.0,
            }
        self.sock.sendto(STAT + json.dumps(self.final).encode(), addr)

    async def stop(self) -> JSONDict:
        asyncio.get_running_loop().remove_reader(self.sock)
        self.sock.close()
        cpu = time.process_time() - self.cpu0 if self.count else 0.0
        return {"count": self.count, "bytes": self.bytes, "cpu": cpu, "final": self.final}


async def _writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_writer(sock, ready)
    try:
        await fut
    finally:
        loop.remove_writer(sock)


async def run_client(spec: Spec) -> JSONDict:
    if spec.workload != "bulk":
        raise ValueError(f"the udp-gso peer has no {spec.workload!r} workload")
    loop = asyncio.get_running_loop()
    size = payload_size(spec.mss)
    per_send = max(1, min(GSO_SEGMENTS, GSO_MAX_BYTES // size))
    total = int(spec.params["bytes"])
    count = math.ceil(total / size)
    sock = _socket(spec.host)
    sock.connect((spec.host, spec.port))
    cmsg = [(SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))]
    batch = bytes(size * per_send)
    sent = sends = blocked = 0
    timer = CpuTimer()
    try:
        while sent < count:
            n = min(per_send, count - sent)
            buf = batch if n == per_send else batch[: n * size]
            try:
                if n > 1:
                    sock.sendmsg([buf], cmsg)
                else:
                    sock.send(buf)
            except BlockingIOError:
                blocked += 1
                await _writable(loop, sock)
                continue
            except OSError as exc:
                raise RuntimeError(f"GSO send failed ({exc}): no UDP_SEGMENT here?") from exc
            sent += n
            sends += 1
            if sends % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        window = timer.result()
        stat: asyncio.Future[bytes] = loop.create_future()

        def readable() -> None:
            try:
                data = sock.recv(4096)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if data.startswith(STAT) and not stat.done():
                stat.set_result(data[len(STAT) :])

        loop.add_reader(sock, readable)
        try:
            final = await ask_end(sock.send, stat, "udp-gso")
        finally:
            loop.remove_reader(sock)
    finally:
        sock.close()
    return {
        **bulk_result(size, count, final, window),
        "segments_per_send": per_send,
        "sends": sends,
        "blocked": blocked,
        "recvs": int(final.get("recvs", 0)),
    }
