"""End-to-end checks across processes: the CLI, a killed peer, two network namespaces."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import rudp
from rudp import Config

ROOT = Path(__file__).resolve().parent.parent


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_demo_small() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "rudp", "demo", "--size", "8", "--rounds", "50"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "SHA-256 verified" in res.stdout and "yes" in res.stdout


def test_cli_serve_connect_both_ways(tmp_path: Path) -> None:
    port = free_udp_port()
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(4_000_000))
    b.write_bytes(os.urandom(3_000_000))
    with open(a, "rb") as fa, open(tmp_path / "got_b", "wb") as out_s:
        server = subprocess.Popen(
            [sys.executable, "-m", "rudp", "serve", "127.0.0.1", str(port)],
            stdin=fa,
            stdout=out_s,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert server.stderr is not None
        assert "listening" in server.stderr.readline()
        with open(b, "rb") as fb, open(tmp_path / "got_a", "wb") as out_c:
            client = subprocess.run(
                [sys.executable, "-m", "rudp", "connect", "127.0.0.1", str(port)],
                stdin=fb,
                stdout=out_c,
                timeout=120,
            )
        assert client.returncode == 0
        assert server.wait(60) == 0
    assert sha(tmp_path / "got_a") == sha(a)
    assert sha(tmp_path / "got_b") == sha(b)


async def test_peer_killed_mid_transfer() -> None:
    """The survivor errors out within its user timeout; no await hangs."""
    port = free_udp_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rudp", "serve", "127.0.0.1", str(port),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert server.stderr is not None
        assert b"listening" in await server.stderr.readline()
        cfg = Config(user_timeout=3.0, rto_min=0.2)
        reader, writer = await rudp.open_connection("127.0.0.1", port, config=cfg)
        writer.write(b"x" * 100_000)
        await writer.drain()
        server.send_signal(signal.SIGKILL)
        await server.wait()
        with pytest.raises((TimeoutError, ConnectionError)):
            for _ in range(1000):  # keep writing into the void until the error surfaces
                writer.write(b"y" * 65536)
                await asyncio.wait_for(writer.drain(), 30)
                await asyncio.sleep(0)
        with pytest.raises((TimeoutError, ConnectionError)):
            await asyncio.wait_for(reader.read(), 30)
        writer.close()
        with pytest.raises((TimeoutError, ConnectionError)):
            await asyncio.wait_for(writer.wait_closed(), 30)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


def _netns_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 'ip' command not found"
    probe = f"rudpprobe{uuid.uuid4().hex[:6]}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"cannot create network namespaces: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.mark.netns
@pytest.mark.slow
def test_two_hosts_netns_50mb_both_ways(tmp_path: Path) -> None:
    reason = _netns_available()
    if reason is not None:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    ns1, ns2 = f"rudpa{tag}", f"rudpb{tag}"
    v1, v2 = f"va{tag}", f"vb{tag}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    size = 50 * 1024 * 1024
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(size))
    b.write_bytes(os.urandom(size))
    try:
        ip("netns", "add", ns1)
        ip("netns", "add", ns2)
        ip("link", "add", v1, "type", "veth", "peer", "name", v2)
        ip("link", "set", v1, "netns", ns1)
        ip("link", "set", v2, "netns", ns2)
        ip("-n", ns1, "addr", "add", "10.201.0.1/24", "dev", v1)
        ip("-n", ns2, "addr", "add", "10.201.0.2/24", "dev", v2)
        for ns, dev in ((ns1, v1), (ns2, v2)):
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        cmd = [sys.executable, "-m", "rudp"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(a, "rb") as fa, open(tmp_path / "got_b", "wb") as out_s:
            server = subprocess.Popen(
                ["ip", "netns", "exec", ns1, *cmd, "serve", "10.201.0.1", "9000"],
                stdin=fa, stdout=out_s, stderr=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            assert server.stderr is not None
            assert "listening" in server.stderr.readline()
            with open(b, "rb") as fb, open(tmp_path / "got_a", "wb") as out_c:
                client = subprocess.run(
                    ["ip", "netns", "exec", ns2, *cmd, "connect", "10.201.0.1", "9000"],
                    stdin=fb, stdout=out_c, timeout=300, env=env,
                )  # fmt: skip
            assert client.returncode == 0
            assert server.wait(120) == 0
        assert sha(tmp_path / "got_a") == sha(a)
        assert sha(tmp_path / "got_b") == sha(b)
    finally:
        for ns in (ns1, ns2):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
