"""The ``rudp`` command as a user meets it: real processes, exit codes, stderr lines.

Every subprocess is bounded by a timeout, so a hang fails the test instead of
blocking the suite. Servers listen on port 0 and the test reads the chosen port
from their "listening on" line.
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rudp import cli

RUDP = [sys.executable, "-m", "rudp"]
HOST = "127.0.0.1"
#: Generous bound for one CLI process to do its job (startup is ~0.2 s).
WAIT = 30


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RUDP_LOG"}
    env.update(extra)
    return env


def run(*args: str, timeout: float = WAIT, **kw: object) -> subprocess.CompletedProcess[str]:
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("env", _env())
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*RUDP, *args], capture_output=True, text=True, timeout=timeout, **kw
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_error_line(stderr: str, pattern: str) -> None:
    """The whole diagnostic is one line (plus serve's "listening" line), no traceback."""
    got = [line for line in lines(stderr) if "listening on" not in line]
    assert "Traceback" not in stderr, stderr
    assert len(got) == 1, stderr
    assert re.search(pattern, got[0]), got[0]


class Proc:
    """A CLI process whose stderr lines the test can wait for."""

    def __init__(self, args: list[str], **kw: object) -> None:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        self.p = subprocess.Popen(  # type: ignore[call-overload]
            [*RUDP, *args], stderr=subprocess.PIPE, env=_env(), **kw
        )
        self.err: list[str] = []

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Read stderr lines until one matches (bounded by ``timeout``)."""
        assert self.p.stderr is not None
        deadline = time.monotonic() + timeout
        os.set_blocking(self.p.stderr.fileno(), False)
        buf = b""
        while time.monotonic() < deadline:
            chunk = self.p.stderr.read1(65536)  # None or b"" when nothing is there yet
            if chunk:
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.decode()
                    self.err.append(text)
                    m = re.search(pattern, text)
                    if m:
                        return m
            elif self.p.poll() is not None:
                break
            else:
                time.sleep(0.02)
        raise AssertionError(f"no stderr line matching {pattern!r}; got {self.err}")

    def finish(self, timeout: float = WAIT) -> tuple[int, str]:
        """Wait for exit; return (status, all stderr)."""
        try:
            self.p.wait(timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        assert self.p.stderr is not None
        os.set_blocking(self.p.stderr.fileno(), True)
        rest = self.p.stderr.read().decode()
        return self.p.returncode, "\n".join([*self.err, rest])

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def serve(procs: list[Proc], *args: str, **kw: object) -> tuple[Proc, int]:
    p = Proc(["serve", HOST, "0", *args], **kw)
    procs.append(p)
    port = int(p.wait_for(r"listening on \S+ port (\d+) \(UDP\)").group(1))
    return p, port


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------- usage errors
USAGE_ERRORS = [
    (["serve", HOST, "70000"], r"port must be in 0\.\.65535, not '70000'"),
    (["serve", HOST, "-1"], r"port must be in 0\.\.65535"),
    (["connect", HOST, "0"], r"port must be in 1\.\.65535, not '0'"),
    (["connect", HOST, "http"], r"port must be an integer"),
    (["serve", HOST, "9", "--user-timeout", "-1"], r"user timeout must be > 0"),
    (["serve", HOST, "9", "--keepalive", "-5"], r"keepalive must be >= 0"),
    (["connect", HOST, "9", "--timeout", "nan"], r"timeout must be finite"),
    (["demo", "--size", "-1"], r"size must be > 0, not '-1'"),
    (["demo", "--size", "nan"], r"size must be finite"),
    (["demo", "--size", "inf"], r"size must be finite"),
    (["demo", "--mss", "abc"], r"argument --mss: MSS must be an integer, not 'abc'"),
    (["demo", "--mss", "20"], r"MSS must be in 88\.\.65447"),
    (["frobnicate"], r"invalid choice"),
    ([], r"required"),
]


@pytest.fixture(scope="module")
def usage_results() -> dict[tuple[str, ...], tuple[int, str, str]]:
    """Every usage-error case, run as concurrent processes (they only parse arguments)."""
    running = {
        tuple(args): subprocess.Popen(
            [*RUDP, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for args, _ in USAGE_ERRORS
    }
    results = {}
    try:
        for args, p in running.items():
            out, err = p.communicate(timeout=WAIT)
            results[args] = (p.returncode, out, err)
    finally:
        for p in running.values():
            p.kill()
            p.wait()
    return results


@pytest.mark.parametrize(("args", "pattern"), USAGE_ERRORS)
def test_usage_errors_are_one_line_exit_2(
    args: list[str], pattern: str, usage_results: dict[tuple[str, ...], tuple[int, str, str]]
) -> None:
    status, out, err = usage_results[tuple(args)]
    assert status == 2, (status, err)
    assert_one_error_line(err, pattern)
    assert "_mss" not in err and "_port" not in err
    assert out == ""


# ------------------------------------------------------------- runtime errors
def test_unknown_host() -> None:
    for cmd in ("serve", "connect"):
        res = run(cmd, "no-such-host.invalid", "9000")
        assert res.returncode == 1
        assert_one_error_line(res.stderr, r"^rudp: cannot resolve 'no-such-host\.invalid': ")


def test_address_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        res = run("serve", HOST, str(port))
    assert res.returncode == 1
    assert_one_error_line(
        res.stderr, rf"cannot listen on {HOST} port {port}: address already in use"
    )


def test_address_not_on_this_host() -> None:
    res = run("serve", "192.0.2.1", "9000")  # TEST-NET-1 (RFC 5737): binding sends nothing
    assert res.returncode == 1
    assert_one_error_line(res.stderr, r"192\.0\.2\.1 is not an address of this host")


def test_connection_refused() -> None:
    port = free_udp_port()
    res = run("connect", HOST, str(port))
    assert res.returncode == 1
    assert_one_error_line(res.stderr, rf"^rudp: connection refused by {HOST} port {port}")


def test_connect_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # never answers
        silent.bind((HOST, 0))
        t0 = time.monotonic()
        res = run("connect", HOST, str(silent.getsockname()[1]), "--timeout", "0.5")
        elapsed = time.monotonic() - t0
        assert silent.recv(2048)  # the SYN did arrive
    assert res.returncode == 1
    assert_one_error_line(res.stderr, r"no answer from .*--timeout 0\.5 s")
    assert elapsed < WAIT


def _shadow(tmp_path: Path, module: str) -> dict[str, str]:
    """An environment in which ``import module`` fails, as if it were not installed."""
    pkg = tmp_path / module
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"raise ImportError('no {module} here')\n")
    return _env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))


def test_demo_without_rich_names_the_extra(tmp_path: Path) -> None:
    res = run("demo", "--size", "1", env=_shadow(tmp_path, "rich"))
    assert res.returncode == 1
    assert_one_error_line(res.stderr, r"needs the 'cli' extra.*pip install 'rudp-asyncio\[cli\]'")


def test_loop_uvloop_without_uvloop_says_how_to_get_it(tmp_path: Path) -> None:
    env = _shadow(tmp_path, "uvloop")  # as on a platform where uvloop does not build
    res = run("connect", HOST, "9", "--loop", "uvloop", env=env)
    assert res.returncode == 1
    assert_one_error_line(res.stderr, r"uvloop is not installed .*: pip install uvloop$")
    # --loop auto falls back to asyncio: the library and serve/connect work without it.
    res = run("connect", HOST, str(free_udp_port()), env=env)
    assert_one_error_line(res.stderr, r"connection refused")


# ----------------------------------------------------------------------- help
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def _all_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser, nested ones (``tunnel server``) included."""
    out = {"": parser}
    for name, sub in _subparsers(parser).items():
        out[name] = sub
        if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            out.update({f"{name} {n}": p for n, p in _subparsers(sub).items()})
    return out


def test_every_option_has_help_with_default_and_unit() -> None:
    parser = cli.build_parser()
    for name, sub in _all_parsers(parser).items():
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, (name, action.dest)
            has_default = action.default not in (None, False, 0, argparse.SUPPRESS)
            if has_default and action.option_strings:
                assert "default" in action.help, (name, action.dest)
            if action.metavar in (
                "SECONDS",
                "BYTES",
                "MiB",
                "PORT",
                "N[KMG]",
                "HOST:PORT",
                "[HOST]:PORT",
            ):
                continue  # the unit is the metavar
            if action.type is not None and action.option_strings:
                assert action.metavar == "N" or action.choices, (name, action.dest)
    out = run("serve", "--help").stdout
    for option in ("--keepalive SECONDS", "--user-timeout SECONDS", "-k, --keep-listening"):
        assert option in out
    assert "--timeout SECONDS" in run("connect", "--help").stdout


def test_verbose_before_or_after_the_subcommand() -> None:
    parser = cli.build_parser()
    for argv, level in (
        (["serve", HOST, "1"], 0),
        (["-v", "serve", HOST, "1"], 1),
        (["serve", HOST, "1", "-v"], 1),
        (["-v", "serve", "-v", HOST, "1"], 2),
        (["connect", "-vv", HOST, "1"], 2),
    ):
        args = parser.parse_args(argv)
        assert args.verbose + getattr(args, "verbose_sub", 0) == level, argv


def test_demo_table_fits_80_columns_in_one_unit_family() -> None:
    res = run("demo", "--size", "2", "--rounds", "20", "--loop", "asyncio", env=_env(COLUMNS="200"))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "SHA-256 verified: yes" in out
    assert "this one process" in out
    assert "MiB" in out and "MiB/s" in out and " MB" not in out and "MB/s" not in out
    assert "echo p50" in out and "srtt" in out and "RFC 6298" in out
    m = re.search(r"send window\s+([\d,]+) KiB", out)
    assert m and int(m.group(1).replace(",", "")) <= 4096  # never above the 4 MiB ceilings


# --------------------------------------------------- serve/connect lifecycles
def test_readme_recipe_ends_when_both_directions_close(tmp_path: Path, procs: list[Proc]) -> None:
    """``rudp serve 0.0.0.0 9000 > out`` at a terminal, ``rudp connect … < file``:
    both exit once the file is across, without anyone typing ^D."""
    data = os.urandom(1_500_000)
    (tmp_path / "file").write_bytes(data)
    master, slave = pty.openpty()  # the server's stdin is a terminal nobody types into
    try:
        with open(tmp_path / "out", "wb") as out:
            server, port = serve(procs, stdin=slave, stdout=out)
            with open(tmp_path / "file", "rb") as f:
                client = run("connect", HOST, str(port), stdin=f)
            status, err = server.finish()
    finally:
        os.close(master)
        os.close(slave)
    assert client.returncode == 0, client.stderr
    assert client.stderr == "" and client.stdout == ""
    assert status == 0, err
    assert (tmp_path / "out").read_bytes() == data


def test_keep_listening_serves_clients_in_sequence(procs: list[Proc]) -> None:
    server, port = serve(procs, "-k", "-v")
    for word in ("one", "two"):
        res = run("connect", HOST, str(port), input=f"{word}\n", stdin=None)
        assert res.returncode == 0, res.stderr
        server.wait_for(r"listening on")  # back to listening for the next one
    server.p.send_signal(signal.SIGINT)
    status, err = server.finish()
    assert status == 130, err
    assert server.p.stdout is not None
    assert server.p.stdout.read() == b"one\ntwo\n"
    assert err.count("connection from") == 2
    assert lines(err)[-1] == "rudp: interrupted" and "Traceback" not in err


def test_second_client_is_refused_while_the_first_is_served(procs: list[Proc]) -> None:
    server, port = serve(procs)
    first = Proc(["connect", HOST, str(port)], stdin=subprocess.PIPE)
    procs.append(first)
    assert first.p.stdin is not None and server.p.stdout is not None
    first.p.stdin.write(b"first\n")
    first.p.stdin.flush()
    assert server.p.stdout.readline() == b"first\n"  # the first session is running
    second = run("connect", HOST, str(port))
    assert second.returncode == 1
    assert_one_error_line(second.stderr, rf"connection refused by {HOST} port {port}")
    first.p.stdin.close()  # the first client ends: everyone exits 0
    assert first.finish()[0] == 0
    status, err = server.finish()
    assert status == 0, err


def test_killed_client_keepalive_ends_serve(procs: list[Proc]) -> None:
    server, port = serve(
        procs,
        "--keepalive",
        "1",
        "--keepalive-interval",
        "0.3",
        "--keepalive-count",
        "2",
        stdin=subprocess.PIPE,  # kept open: the server stays ESTABLISHED and idle
    )
    client = Proc(["connect", HOST, str(port)], stdin=subprocess.PIPE)
    procs.append(client)
    assert client.p.stdin is not None and server.p.stdout is not None
    client.p.stdin.write(b"hello\n")
    client.p.stdin.flush()
    assert server.p.stdout.readline() == b"hello\n"
    client.p.send_signal(signal.SIGKILL)
    client.p.wait(WAIT)
    t0 = time.monotonic()
    status, err = server.finish()
    assert status == 1, err
    assert_one_error_line(err, r"^rudp: connection dropped: peer did not answer 2 keepalive probes")
    assert time.monotonic() - t0 < WAIT


def test_killed_client_user_timeout_ends_serve(tmp_path: Path, procs: list[Proc]) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(64 * 1024 * 1024))
    with open(big, "rb") as f:
        server, port = serve(procs, "--keepalive", "0", "--user-timeout", "1.5", stdin=f)
        client = Proc(["connect", HOST, str(port)], stdin=subprocess.PIPE)
        procs.append(client)
        assert client.p.stdout is not None
        got = 0
        while got < 1_000_000:  # the transfer is under way: data is in flight
            chunk = client.p.stdout.read1(65536)
            assert chunk, "client ended early"
            got += len(chunk)
        client.p.send_signal(signal.SIGKILL)
        client.p.wait(WAIT)
        status, err = server.finish()
    assert status == 1, err
    assert_one_error_line(err, r"^rudp: connection dropped: data unacknowledged for 1\.5 s")


def test_one_sigint_while_listening(procs: list[Proc]) -> None:
    server, _ = serve(procs)
    server.p.send_signal(signal.SIGINT)
    status, err = server.finish()
    assert status == 130
    assert lines(err)[-1] == "rudp: interrupted" and len(lines(err)) == 2, err


def test_one_sigint_mid_session_resets_the_peer(procs: list[Proc]) -> None:
    server, port = serve(procs, stdin=subprocess.PIPE)
    client = Proc(["connect", HOST, str(port)], stdin=subprocess.PIPE)
    procs.append(client)
    assert client.p.stdin is not None and server.p.stdout is not None
    client.p.stdin.write(b"hi\n")
    client.p.stdin.flush()
    assert server.p.stdout.readline() == b"hi\n"
    server.p.send_signal(signal.SIGINT)
    status, err = server.finish()
    assert status == 130
    assert lines(err)[-1] == "rudp: interrupted" and "Traceback" not in err
    c_status, c_err = client.finish()
    assert c_status == 1
    assert_one_error_line(c_err, r"^rudp: connection reset by peer$")


def test_sigterm_is_143(procs: list[Proc]) -> None:
    server, _ = serve(procs)
    server.p.send_signal(signal.SIGTERM)
    status, err = server.finish()
    assert status == 143
    assert lines(err)[-1] == "rudp: terminated", err


def test_verbose_logs_go_to_stderr_never_stdout(procs: list[Proc]) -> None:
    """``rudp -vv serve … > out``: out holds exactly the peer's data."""
    server, port = serve(procs, "-vv")
    res = run("-vv", "connect", HOST, str(port), input="payload\n", stdin=None)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert "DEBUG state" in res.stderr and "new=ESTABLISHED" in res.stderr
    status, err = server.finish()
    assert status == 0, err
    assert server.p.stdout is not None
    assert server.p.stdout.read() == b"payload\n"
    assert "DEBUG state" in err


def test_closed_stdout_ends_quietly(tmp_path: Path, procs: list[Proc]) -> None:
    """``rudp connect … | head -c 10``: the client leaves as a SIGPIPE death would
    (status 141, nothing on stderr) and the server learns at once (reset)."""
    (tmp_path / "big").write_bytes(os.urandom(8 * 1024 * 1024))
    with open(tmp_path / "big", "rb") as f:
        server, port = serve(procs, stdin=f)
    client = Proc(["connect", HOST, str(port)])
    procs.append(client)
    assert client.p.stdout is not None
    assert len(client.p.stdout.read(10)) == 10
    client.p.stdout.close()  # what head does after 10 bytes
    status, err = client.finish()
    assert status == 141 and err.strip() == "", err
    status, err = server.finish()
    assert status == 1
    assert_one_error_line(err, r"^rudp: connection reset by peer$")
