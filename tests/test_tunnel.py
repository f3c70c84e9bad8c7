"""``rudp tunnel``: TCP programs carried over rudp, in one process and between two
network namespaces (real processes: ``rudp tunnel server``/``client`` and a plain
TCP program, tests/tcp_peer.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import netns
import pytest

import rudp
from rudp.tools.tunnel import TunnelClient, TunnelServer, reset_tcp

HOST = "127.0.0.1"
PEER = [sys.executable, str(Path(__file__).with_name("tcp_peer.py"))]


# -- in one process -------------------------------------------------------------


class Target:
    """A TCP server whose handler the test sets; records what happened."""

    def __init__(self) -> None:
        self.handler: Any = None
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.handler(reader, writer)

        self.server = await asyncio.start_server(handle, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def tunnel(
    config: rudp.Config | None = None,
) -> AsyncIterator[tuple[Target, int, list[str], TunnelClient]]:
    """target <- TunnelServer <- rudp <- TunnelClient; yields (target, the client's
    TCP port, log lines, the client)."""
    logs: list[str] = []
    target = Target()
    await target.start()
    cfg = config or rudp.Config()
    sep = await rudp.create_endpoint((HOST, 0), config=cfg)
    cep = await rudp.create_endpoint((HOST, 0), config=cfg)
    srv = TunnelServer(sep, (HOST, target.port), logs.append)
    await srv.start()
    cli = TunnelClient(cep, (HOST, 0), (HOST, sep.local_address[1]), logs.append)
    await cli.start()
    try:
        yield target, cli.addresses[0][1], logs, cli
    finally:
        await cli.close()
        await srv.close()
        for ep in (sep, cep):
            ep.abort()
        assert target.server is not None
        target.server.close()


async def test_data_and_half_close_both_ways() -> None:
    up, down = os.urandom(3_000_000), os.urandom(2_000_000)
    got: dict[str, bytes] = {}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Half-close from the application: the target gets EOF, yet still sends.
        got["up"] = await reader.read()
        writer.write(down)
        await writer.drain()
        writer.close()

    async with tunnel() as (target, port, logs, _cli):
        target.handler = handler
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(up)
        writer.write_eof()  # shutdown(SHUT_WR) through the tunnel
        got["down"] = await reader.read()
        writer.close()
        await writer.wait_closed()
        for _ in range(500):  # both ends log once they are done (bounded wait)
            if sum(" closed:" in line for line in logs) == 2:
                break
            await asyncio.sleep(0.01)
    assert got["up"] == up and got["down"] == down
    closed = " ".join(line for line in logs if " closed:" in line)
    assert f"{len(up)} bytes up, {len(down)} bytes down" in closed, logs
    assert f"{len(up)} bytes to the target, {len(down)} bytes back" in closed, logs


async def test_half_close_from_the_target_side() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"banner\n")
        writer.write_eof()  # the target is done sending but keeps reading
        data = await reader.read()
        writer.close()
        assert data == b"late request"

    async with tunnel() as (target, port, _logs, _cli):
        target.handler = handler
        reader, writer = await asyncio.open_connection(HOST, port)
        assert await reader.read() == b"banner\n"  # EOF arrives, the connection lives
        writer.write(b"late request")
        writer.write_eof()
        writer.close()
        await writer.wait_closed()


async def test_a_tcp_reset_arrives_as_a_reset() -> None:
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
            ended.set_result("eof")
        except ConnectionResetError:
            ended.set_result("reset")

    async with tunnel() as (target, port, logs, _cli):
        target.handler = handler
        _reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"hello")
        await writer.drain()
        await asyncio.sleep(0.05)  # the connection is through before the RST
        reset_tcp(writer)  # the application's RST ...
        assert await asyncio.wait_for(ended, 10) == "reset"  # ... is the target's RST
    assert any("reset by the TCP peer" in line for line in logs), logs


async def test_a_target_reset_arrives_as_a_reset_and_refusal_too() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        reset_tcp(writer)

    async with tunnel() as (target, port, logs, _cli):
        target.handler = handler
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"x")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 10)
        writer.close()
        # Nobody listening at the target: the application's connection is reset.
        assert target.server is not None
        target.server.close()
        await target.server.wait_closed()
        reader, writer = await asyncio.open_connection(HOST, port)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert any("unreachable" in line for line in logs), logs


async def test_a_stalled_reader_stalls_the_far_writer() -> None:
    """Backpressure end to end: the target's writes stop once the buffers on the
    way are full, and everything arrives once the application reads."""
    progress = {"written": 0}
    block = os.urandom(64 * 1024)
    total = 64 * 1024 * 1024  # far more than all the buffers together

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while progress["written"] < total:
                writer.write(block)
                await writer.drain()
                progress["written"] += len(block)
            writer.close()

    async with tunnel() as (target, port, _logs, _cli):
        target.handler = handler
        reader, writer = await asyncio.open_connection(HOST, port, limit=64 * 1024)
        # Wait until the writer stops making progress (bounded).
        last, still = -1, 0
        for _ in range(400):
            await asyncio.sleep(0.02)
            if progress["written"] == last:
                still += 1
                if still >= 10:
                    break
            else:
                last, still = progress["written"], 0
        stalled_at = progress["written"]
        # Bounded, far below the total: kernel TCP buffers at both ends plus rudp's
        # (each autotuned up to 4-6 MiB).
        assert 0 < stalled_at < 32 * 1024 * 1024, stalled_at
        got = 0
        while got < stalled_at + 1024 * 1024:
            data = await asyncio.wait_for(reader.read(1 << 20), 10)
            assert data
            got += len(data)
        assert progress["written"] > stalled_at  # reading released the writer
        writer.close()


# -- between two network namespaces ---------------------------------------------


def _json_line(p: subprocess.Popen[Any], timeout: float = 60) -> dict[str, Any]:
    while True:
        line = netns.read_line(p, "stdout", timeout)
        if line.startswith("{"):
            return dict(json.loads(line))
        if not line and p.poll() is not None:
            raise AssertionError(f"{p.args} exited with {p.returncode} without a result")


@pytest.mark.netns
def test_tunnel_between_two_namespaces() -> None:
    """A real TCP program through `rudp tunnel` between two "machines": 50 MB each
    way (hashes), half-close, 100 concurrent connections, resets both ways, and a
    stalled reader with bounded memory."""
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    with netns.Pair() as net:
        tserver = net.popen(
            net.a,
            [*netns.RUDP, "tunnel", "server", "--listen", f"{net.a_ip}:4000",
             "--target", f"{HOST}:7000"],
            stderr=subprocess.PIPE,
        )  # fmt: skip
        tclient = net.popen(
            net.b,
            [*netns.RUDP, "tunnel", "client", "--listen", f"{HOST}:2222",
             "--remote", f"{net.a_ip}:4000"],
            stderr=subprocess.PIPE,
        )  # fmt: skip
        assert "tunnel server on" in netns.read_line(tserver)
        assert "tunnel client on" in netns.read_line(tclient)

        def target(mode: str, n: int = 0) -> subprocess.Popen[Any]:
            p = net.popen(
                net.a, [*PEER, "server", HOST, "7000", mode, str(n)], stdout=subprocess.PIPE
            )
            assert netns.read_line(p, "stdout") == "listening"
            return p

        def app(mode: str, *args: str) -> subprocess.Popen[Any]:
            return net.popen(
                net.b,
                [*PEER, "client", HOST, "2222", mode, *args],
                stdout=subprocess.PIPE,
                stdin=subprocess.PIPE,
            )

        # 50 MB each way at once; each side half-closes when its data is out.
        size = 50 * 1024 * 1024
        srv = target("bulk", size)
        cli = app("bulk", str(size))
        s, c = _json_line(srv, 120), _json_line(cli, 120)
        assert s["received"] == c["sent"] == size and s["received_sha"] == c["sent_sha"]
        assert c["received"] == s["sent"] == size and c["received_sha"] == s["sent_sha"]
        line = netns.read_line(tclient)
        while " closed:" not in line:
            line = netns.read_line(tclient)
        assert f"closed: {size} bytes up, {size} bytes down" in line, line

        # 100 tunnelled connections at once (each: data, half-close, answer).
        srv = target("echo")
        res = _json_line(app("many", "20000", "100"), 60)
        assert res == {"ok": 100, "total": 100}
        srv.kill()
        srv.wait()

        # A reset by the target reaches the application as a reset, and back.
        srv = target("reset")
        assert _json_line(app("expect-reset"), 30) == {"client": "reset"}
        assert _json_line(srv, 30) == {"server": "reset sent"}
        srv = target("expect-reset")
        assert _json_line(app("reset"), 30) == {"client": "reset sent"}
        assert _json_line(srv, 30) == {"server": "reset"}

        # A reader that stops: the target's writes stall; memory stays bounded.
        rss0 = netns.rss_kib(tserver.pid) + netns.rss_kib(tclient.pid)
        srv = target("flood")
        reader = app("stall", str(1))
        assert _json_line(reader, 30) == {"client": "stalled"}
        flooded, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                flooded = _json_line(srv, 1.0)["flood"]
            except TimeoutError:
                break  # no progress for a second: stalled
        assert 0 < flooded < 32 * 1024 * 1024, flooded
        rss1 = netns.rss_kib(tserver.pid) + netns.rss_kib(tclient.pid)
        assert rss1 - rss0 < 32 * 1024, (rss0, rss1)  # KiB: bounded, not the flood's size
        print(f"stalled after {flooded} bytes; tunnel RSS {rss0} -> {rss1} KiB")
        reader.stdin.write(b"go\n")  # type: ignore[union-attr]
        reader.stdin.flush()  # type: ignore[union-attr]
        got = _json_line(reader, 30)
        assert got["read"] >= 1
        assert tserver.poll() is None and tclient.poll() is None


def test_cli_tunnel_usage_errors() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*netns.RUDP, "tunnel", *args], capture_output=True, text=True, timeout=30,
            env=netns.env(),
        )  # fmt: skip

    res = run("server", "--listen", ":4000")
    assert res.returncode == 2 and "--target" in res.stderr
    res = run("client", "--listen", "127.0.0.1:2222", "--remote", ":4000")
    assert res.returncode == 2 and "needs a host" in res.stderr
    res = run("client", "--listen", "127.0.0.1:99999", "--remote", "h:1")
    assert res.returncode == 2 and "port must be in" in res.stderr
    with socket.socket() as s:  # a TCP port in use: one clear line, status 1
        s.bind((HOST, 0))
        s.listen()
        port = s.getsockname()[1]
        res = run("client", "--listen", f"{HOST}:{port}", "--remote", f"{HOST}:9")
    assert res.returncode == 1 and "address already in use" in res.stderr
    assert "Traceback" not in res.stderr
