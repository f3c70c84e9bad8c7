"""Each example runs end to end as a user would run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_echo_server_and_client() -> None:
    port = free_udp_port()
    server = subprocess.Popen(
        [sys.executable, str(EX / "echo_server.py"), "127.0.0.1", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert "listening" in server.stdout.readline()
        res = run(str(EX / "echo_client.py"), "127.0.0.1", str(port), "one", "two")
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines() == ["one", "two"]
    finally:
        server.terminate()
        server.wait(10)


def test_file_transfer(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(3_000_000))
    res = run(str(EX / "file_transfer.py"), str(path))
    assert res.returncode == 0, res.stderr
    assert "SHA-256 OK" in res.stdout


def test_protocol_client() -> None:
    res = run(str(EX / "protocol_client.py"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "HELLO FROM ASYNCIO.PROTOCOL"
