"""``--auth-key-file`` on ``rudp serve``/``connect``/``demo`` (TCP-AO, key id 0)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from test_cli import HOST, Proc, procs, run, serve  # noqa: F401 (procs: a fixture)

from rudp import cli
from rudp.engine.auth import MasterKey


def _keys(path: Path) -> object:
    return cli._auth_keys(argparse.Namespace(auth_key_file=str(path)))


def test_key_file_hex_or_raw(tmp_path: Path) -> None:
    secret = os.urandom(32)
    hexfile = tmp_path / "hex"
    hexfile.write_text(secret.hex().upper() + "\n")
    key = _keys(hexfile)
    assert isinstance(key, MasterKey)
    assert (key.secret, key.send_id, key.recv_id) == (secret, 0, 0)
    raw = tmp_path / "raw"
    raw.write_bytes(b"\xff" + secret)  # not hex: taken byte for byte
    key = _keys(raw)
    assert isinstance(key, MasterKey) and key.secret == b"\xff" + secret
    assert cli._auth_keys(argparse.Namespace()) is None  # commands without the option


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "secret must be 1..80 bytes"), (b"x" * 81, "secret must be 1..80 bytes"), (None, "")],
)
def test_bad_key_files_are_one_line_errors(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(cli.CliError, match=message or "cannot read the key file"):
        _keys(path)
    res = run("connect", HOST, "9", "--auth-key-file", str(path), "--timeout", "1")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "key file" in res.stderr


def test_the_option_is_on_serve_connect_and_demo() -> None:
    for command in ("serve", "connect", "demo"):
        assert "--auth-key-file FILE" in run(command, "--help").stdout


def test_serve_and_connect_with_a_key(tmp_path: Path, procs: list[Proc]) -> None:  # noqa: F811
    key = tmp_path / "key"
    key.write_text(os.urandom(32).hex())
    data = os.urandom(200_000)
    (tmp_path / "data").write_bytes(data)
    with open(tmp_path / "out", "wb") as out:
        server, port = serve(procs, "--auth-key-file", str(key), stdout=out)
        # Another secret: its SYNs are dropped, so it times out (no refusal).
        other = tmp_path / "other"
        other.write_text(os.urandom(32).hex())
        wrong = run("connect", HOST, str(port), "--auth-key-file", str(other), "--timeout", "1.5")
        assert wrong.returncode == 1 and "gave up after --timeout 1.5 s" in wrong.stderr
        # No key at all: the same.
        none = run("connect", HOST, str(port), "--timeout", "1.5")
        assert none.returncode == 1 and "timeout" in none.stderr
        with open(tmp_path / "data", "rb") as f:
            ok = run("connect", HOST, str(port), "--auth-key-file", str(key), stdin=f)
        status, err = server.finish()
    assert ok.returncode == 0, ok.stderr
    assert status == 0, err
    assert (tmp_path / "out").read_bytes() == data


def test_demo_with_a_key(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(os.urandom(16))
    res = run(
        "demo", "--size", "1", "--rounds", "5", "--loop", "asyncio", "--auth-key-file", str(key)
    )
    assert res.returncode == 0, res.stderr
    assert "SHA-256 verified: yes" in res.stdout
