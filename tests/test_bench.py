"""``rudp bench``: settings, output, the protocol in one process, the command line,
and goodput through a rate limit between two network namespaces (with iperf3's
kernel-TCP figure beside it when iperf3 is installed)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import netns
import pytest

import rudp
from rudp import cli
from rudp.tools import benchfmt
from rudp.tools.bench import BenchError, BenchParams, BenchServer, run_client

HOST = "127.0.0.1"


def test_params_validation_and_shares() -> None:
    with pytest.raises(BenchError, match="parallel"):
        BenchParams(parallel=0)
    with pytest.raises(BenchError, match="unknown congestion control"):
        BenchParams(cc="vegas")
    with pytest.raises(BenchError, match="time"):
        BenchParams(time=float("inf"))
    with pytest.raises(BenchError, match="unknown parameters: evil"):
        BenchParams.from_json({"evil": 1})
    p = BenchParams(bytes=10, parallel=3, bidir=True)
    assert p.directions() == ["up"] * 3 + ["down"] * 3
    assert p.budgets() == [4, 3, 3, 4, 3, 3]  # each direction sends 10 bytes
    assert BenchParams(reverse=True, parallel=2).directions() == ["down", "down"]


def test_units_as_iperf3() -> None:
    assert benchfmt.size(6_165_626) == "5.88 MBytes"
    assert benchfmt.size(117_440_512) == "112 MBytes"
    assert benchfmt.bitrate(49_300_000) == "49.3 Mbits/sec"
    assert benchfmt.bitrate(950) == "950 bits/sec"
    assert cli._amount("10M") == 10 << 20 and cli._amount("1.5K") == 1536
    assert cli._amount("1000") == 1000
    for bad in ("x", "0", "-1M", "nanG"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli._amount(bad)


async def _server(config: rudp.Config | None = None) -> tuple[BenchServer, rudp.Endpoint]:
    cfg = config or rudp.Config()
    ep = await rudp.create_endpoint((HOST, 0), config=cfg)
    server = BenchServer(ep, cfg, data_host=HOST)
    await server.start()
    return server, ep


@pytest.mark.parametrize(
    "params",
    [
        BenchParams(bytes=3_000_000, parallel=2, interval=0.05),
        BenchParams(bytes=2_000_000, bidir=True, interval=0.05, trace=True),
        BenchParams(bytes=2_000_000, reverse=True, cc="bbr", mss=1200, interval=0.05),
    ],
    ids=["parallel", "bidir", "reverse-bbr"],
)
async def test_one_test_end_to_end(params: BenchParams) -> None:
    server, ep = await _server()
    try:
        intervals: list[dict[str, Any]] = []
        result = await run_client(
            HOST, ep.local_address[1], params, rudp.Config(), on_interval=intervals.append
        )
    finally:
        await server.close()
        ep.abort()
    json.loads(json.dumps(result))  # plain JSON
    assert server.completed == 1 and server.failed == 0
    end = result["end"]
    assert len(end["streams"]) == len(params.directions())
    for st in end["streams"]:
        # Every byte sent was acknowledged, read, and counted on both sides.
        assert st["sender"]["bytes"] == st["receiver"]["bytes"] > 0
        assert st["sender"]["error"] is None and st["receiver"]["error"] is None
        assert st["sender"]["stats"]["congestion_control"] == params.cc
        assert st["sender"]["stats"]["snd_mss"] == min(params.mss, 1400)
    assert params.bytes is not None
    assert end["sum_received"]["bytes"] == params.bytes * (2 if params.bidir else 1)
    assert intervals == result["intervals"] and intervals
    assert result["server_intervals"]
    # A different controller or MSS than the server's needs a data endpoint of its own.
    data_port = result["start"]["data_port"]
    default = rudp.Config()
    assert (data_port != ep.local_address[1]) == (
        params.cc != default.congestion_control or params.mss != default.mss
    )
    if params.trace:
        assert result["trace"] and result["server_trace"]
    text = "\n".join(benchfmt.summary_lines(result))
    assert text.count("sender") >= len(params.directions())
    if params.bidir:
        assert "[TX-C]" in text and "[RX-C]" in text


async def test_a_second_test_while_one_runs_is_refused() -> None:
    server, ep = await _server()
    port = ep.local_address[1]
    try:
        first = asyncio.ensure_future(
            run_client(HOST, port, BenchParams(time=1.0, interval=0.5), rudp.Config())
        )
        while server._test is None:  # bounded by the test timeout
            await asyncio.sleep(0.01)
        with pytest.raises(BenchError, match="busy"):
            await run_client(HOST, port, BenchParams(bytes=1000), rudp.Config())
        await first
        # And the server goes on serving, one test after another.
        await run_client(HOST, port, BenchParams(bytes=1000), rudp.Config())
    finally:
        await server.close()
        ep.abort()
    assert server.completed == 2


def _bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*netns.RUDP, "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=netns.env(),
    )


def _start_server(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    server = subprocess.Popen(
        [*netns.RUDP, "bench", "--server", "--bind", HOST, "-p", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=netns.env(),
    )
    stream = "stderr" if "--json" in args else "stdout"
    while True:
        line = netns.read_line(server, stream)
        if "listening on" in line:
            return server, int(line.split(" port ")[1].split()[0])


def test_cli_plain_json_and_plot(tmp_path: Path) -> None:
    server, port = _start_server()
    try:
        res = _bench(HOST, "-p", str(port), "-n", "4M", "-P", "2", "-i", "0.1")
        assert res.returncode == 0, res.stderr
        out = res.stdout
        assert "Connecting to host 127.0.0.1" in out
        assert "Retr  Cwnd        SRTT" in out and "[SUM]" in out
        assert out.count(" sender") == 3 and out.count(" receiver") == 3
        plot = tmp_path / "bench.png"
        res = _bench(HOST, "-p", str(port), "-n", "2M", "-R", "--json", "--plot", str(plot))
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)  # only the JSON document on stdout
        assert doc["end"]["sum_received"]["bytes"] == 2 << 20
        assert doc["start"]["test"]["reverse"] and doc["server_trace"]
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        server.kill()
        server.wait()
    # The server printed each test: its own view, interval lines and summary.
    assert server.stdout is not None
    text = server.stdout.read().decode()
    assert text.count("Accepted connection from 127.0.0.1") == 2
    assert " receiver" in text and " sender" in text


def test_cli_server_json_one_off() -> None:
    server, port = _start_server("--json", "--one-off")
    res = _bench(HOST, "-p", str(port), "-n", "1M")
    assert res.returncode == 0, res.stderr
    assert server.wait(30) == 0
    assert server.stdout is not None
    doc = json.loads(server.stdout.read())
    assert doc["end"]["streams"][0]["role"] == "receiver"
    assert doc["end"]["streams"][0]["bytes"] == 1 << 20


def test_cli_errors() -> None:
    res = _bench("--server", "-R")
    assert res.returncode == 2 and "client options" in res.stderr
    res = _bench()
    assert res.returncode == 2 and "give the server's HOST" in res.stderr
    res = _bench(HOST, "-R", "--bidir")
    assert res.returncode == 2 and "exclude each other" in res.stderr
    res = _bench(HOST, "-C", "vegas")
    assert res.returncode == 2 and "invalid choice" in res.stderr
    res = _bench(HOST, "-p", "9", "--timeout", "0.5", "-n", "1K")  # nobody there
    assert res.returncode == 1 and res.stderr.startswith("rudp: ")
    assert "Traceback" not in res.stderr


def test_plot_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_have", lambda module: module != "matplotlib")
    assert cli.main(["bench", HOST, "--plot", "x.png"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "rudp-asyncio[plot]" in err and cli.PLOT_EXTRA in err


# -- between two network namespaces, through a rate limit ----------------------

RATE = 50e6  # bit/s


@pytest.mark.netns
def test_goodput_through_a_50mbit_tbf_is_within_10_percent() -> None:
    reason = netns.unavailable(tc=True)
    if reason is not None:
        pytest.skip(reason)
    with netns.Pair(rate="50mbit") as net:
        server = net.popen(
            net.a,
            [*netns.RUDP, "bench", "--server", "--bind", net.a_ip, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert "listening on" in netns.read_line(server)
        res = net.run(net.b, [*netns.RUDP, "bench", net.a_ip, "-t", "3", "--json"], timeout=60)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        goodput = doc["end"]["sum_received"]["bits_per_second"]
        assert abs(goodput - RATE) <= 0.10 * RATE, goodput
        print(f"rudp goodput through tbf 50mbit: {goodput / 1e6:.1f} Mbit/s")
        if shutil.which("iperf3") is not None:  # kernel TCP on the same link, for the docs
            net.popen(net.a, ["iperf3", "-s", "-1", "-B", net.a_ip], stdout=subprocess.DEVNULL)
            for _ in range(100):  # until the server is up (it prints nothing unbuffered)
                probe = net.run(net.b, ["iperf3", "-c", net.a_ip, "-t", "3", "-J"], timeout=30)
                if "Connection refused" not in probe.stdout:
                    break
                time.sleep(0.05)
            assert probe.returncode == 0, probe.stdout
            tcp = json.loads(probe.stdout)["end"]["sum_received"]["bits_per_second"]
            print(f"iperf3 (kernel TCP) through tbf 50mbit: {tcp / 1e6:.1f} Mbit/s")
