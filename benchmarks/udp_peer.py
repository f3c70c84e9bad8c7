"""The raw UDP peer: the ceiling any protocol over asyncio UDP sockets can reach.

bulk: the client blasts datagrams of ``mss + 20`` bytes (the UDP payload a full
rudp segment needs) through an ``asyncio.DatagramProtocol``, yielding to the
loop every :data:`YIELD_EVERY` datagrams and waiting whenever the transport
calls ``pause_writing``. The server counts them and times first to last
datagram; goodput is received bytes over that span, and loss is reported. A
final END datagram (repeated until answered) collects the server's counts.

rr: fixed-size datagrams echoed by the server, closed loop; a datagram not
answered within :data:`RR_RESEND_S` is sent again (counted as a resend).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any, cast

from .common import (
    TCP_HEADER,
    CpuTimer,
    JSONDict,
    Spec,
    tune_socket_buffers,
)
from .workloads import latency_summary

#: Control datagrams start with 0xff; data datagrams are all zero bytes.
END = b"\xffEND"
STAT = b"\xffSTAT"
YIELD_EVERY = 256
END_RETRY_S = 0.1
END_ATTEMPTS = 100
RR_RESEND_S = 0.5

Address = Any


def payload_size(mss: int | None) -> int:
    if mss is None:
        raise ValueError("the udp peer needs an MSS")
    return mss + TCP_HEADER


# ------------------------------------------------------------------ server


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.transport: asyncio.DatagramTransport | None = None
        self.count = 0
        self.bytes = 0
        self.first = 0.0
        self.last = 0.0
        self.cpu0 = 0.0
        self.final: JSONDict | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        tune_socket_buffers(transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        transport = self.transport
        assert transport is not None
        if self.echo:
            if self.count == 0:
                self.cpu0 = time.process_time()
            self.count += 1
            transport.sendto(data, addr)
            return
        if data[:1] != b"\xff":
            now = time.perf_counter()
            if self.count == 0:
                self.first = now
                self.cpu0 = time.process_time()
            self.last = now
            self.count += 1
            self.bytes += len(data)
        elif data == END:
            if self.final is None:
                self.final = {
                    "count": self.count,
                    "bytes": self.bytes,
                    "span": self.last - self.first,
                    "cpu": time.process_time() - self.cpu0 if self.count else 0.0,
                }
            transport.sendto(STAT + json.dumps(self.final).encode(), addr)


class UdpServer:
    """Server process for the udp peer (bulk receiver or rr echo)."""

    def __init__(self, spec: Spec) -> None:
        if spec.workload not in ("bulk", "rr"):
            raise ValueError(f"the udp peer has no {spec.workload!r} workload")
        self.spec = spec
        self.protocol = _Receiver(echo=spec.workload == "rr")
        self.transport: asyncio.DatagramTransport | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self.protocol, local_addr=(self.spec.host, 0)
        )
        self.transport = transport
        return int(transport.get_extra_info("sockname")[1])

    async def stop(self) -> JSONDict:
        p = self.protocol
        if self.transport is not None:
            self.transport.close()
        cpu = time.process_time() - p.cpu0 if p.count else 0.0
        return {"count": p.count, "bytes": p.bytes, "cpu": cpu, "final": p.final}


# ------------------------------------------------------------------ client


class _Sender(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.resumed: asyncio.Future[None] | None = None
        self.paused = False
        self.stat: asyncio.Future[bytes] | None = None
        self.expect: bytes = b""
        self.reply: asyncio.Future[None] | None = None
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        tune_socket_buffers(transport)

    def pause_writing(self) -> None:
        self.paused = True
        self.resumed = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self.paused = False
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        self.errors += 1

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if data.startswith(STAT):
            if self.stat is not None and not self.stat.done():
                self.stat.set_result(data[len(STAT) :])
            return
        reply = self.reply
        if reply is not None and not reply.done() and data[:8] == self.expect:
            reply.set_result(None)


async def _open(spec: Spec) -> tuple[asyncio.DatagramTransport, _Sender]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _Sender, remote_addr=(spec.host, spec.port)
    )
    return transport, protocol


async def client_bulk(spec: Spec) -> JSONDict:
    size = payload_size(spec.mss)
    total = int(spec.params["bytes"])
    count = math.ceil(total / size)
    transport, proto = await _open(spec)
    loop = asyncio.get_running_loop()
    payload = bytes(size)
    sendto = transport.sendto
    timer = CpuTimer()
    for i in range(count):
        sendto(payload)
        if proto.paused and proto.resumed is not None:
            await proto.resumed
        elif i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
    window = timer.result()
    proto.stat = loop.create_future()
    try:
        final = await ask_end(sendto, proto.stat, "udp")
    finally:
        transport.close()
    return {**bulk_result(size, count, final, window), "send_errors": proto.errors}


async def ask_end(
    send: Callable[[bytes], object], stat: asyncio.Future[bytes], peer: str
) -> JSONDict:
    """Send END until the receiver's STAT reply resolves ``stat`` (either datagram
    may be lost); the receiver's counters."""
    for _ in range(END_ATTEMPTS):
        send(END)
        try:
            raw = await asyncio.wait_for(asyncio.shield(stat), END_RETRY_S)
        except asyncio.TimeoutError:
            continue
        final: JSONDict = json.loads(raw)
        return final
    raise RuntimeError(f"{peer} receiver never answered END")


def bulk_result(size: int, count: int, final: JSONDict, window: JSONDict) -> JSONDict:
    """A bulk client's result: ``count`` datagrams of ``size`` sent in ``window``
    (CpuTimer), ``final`` the receiver's counters."""
    received = int(final["count"])
    span = float(final["span"])
    rbytes = int(final["bytes"])
    return {
        "payload": size,
        "sent": count,
        "bytes_sent": count * size,
        "received": received,
        "bytes": rbytes,
        "span": span,
        **window,
        "send_rate": count * size / window["wall"],
        "goodput": rbytes / span if received > 1 and span > 0 else float("nan"),
        "loss_pct": 100.0 * (1.0 - received / count) if count else 0.0,
    }


async def client_rr(spec: Spec) -> JSONDict:
    size = int(spec.params["size"])
    if size < 8:
        raise ValueError("udp rr messages need at least 8 bytes")
    count = int(spec.params["count"])
    warmup = int(spec.params.get("warmup", 0))
    transport, proto = await _open(spec)
    loop = asyncio.get_running_loop()
    sendto = transport.sendto
    pad = b"r" * (size - 8)
    clock = time.perf_counter_ns
    samples: list[int] = []
    resends = 0
    current: list[bytes] = [b""]

    async def watchdog() -> None:
        nonlocal resends
        seen = b""
        while True:
            await asyncio.sleep(RR_RESEND_S)
            msg = current[0]
            if msg and msg == seen and proto.reply is not None and not proto.reply.done():
                resends += 1
                sendto(msg)
            seen = msg

    dog = loop.create_task(watchdog())
    timer: CpuTimer | None = None
    try:
        for i in range(warmup + count):
            if i == warmup:
                timer = CpuTimer()
            head = i.to_bytes(8, "big")
            msg = head + pad
            proto.expect = head
            fut = proto.reply = loop.create_future()
            current[0] = msg
            t0 = clock()
            sendto(msg)
            await fut
            if i >= warmup:
                samples.append(clock() - t0)
        assert timer is not None
        window = timer.result()
    finally:
        dog.cancel()
        transport.close()
    return {
        "size": size,
        "count": count,
        **window,
        "rate": count / window["wall"],
        **latency_summary(samples),
        "resends": resends,
    }


async def run_client(spec: Spec) -> JSONDict:
    if spec.workload == "bulk":
        return await client_bulk(spec)
    if spec.workload == "rr":
        return await client_rr(spec)
    raise ValueError(f"the udp peer has no {spec.workload!r} workload")
