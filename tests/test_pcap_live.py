"""``Config(pcap=path)`` and ``--pcap FILE``: captures of real sockets, read by the
real tshark (skipped, with the reason, when tshark is not installed).

The impaired transfer runs through :class:`rudp.sim.proxy.UdpProxy` (loss on real
sockets); the capture is on the sender, where every retransmission is seen.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import netns
import pytest
from test_pcap import TSHARK, is_error, needs_tshark, read_pcap, retransmitted, tshark

import rudp
from rudp import Config, ConfigError
from rudp.aio.capture import _open
from rudp.sim import LinkConfig
from rudp.sim.proxy import UdpProxy

HOST = "127.0.0.1"


async def _sink() -> tuple[rudp.Server, list[int]]:
    got: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        while data := await reader.read(1 << 16):
            n += len(data)
        got.append(n)
        writer.close()

    return await rudp.start_server(handle, HOST, 0), got


async def _send(port: int, size: int, cfg: Config) -> dict[str, Any]:
    ep = await rudp.create_endpoint((HOST, 0), config=cfg)
    reader, writer = await ep.open_connection(HOST, port)
    writer.write(os.urandom(size))
    writer.write_eof()
    await reader.read()
    stats: dict[str, Any] = writer.get_extra_info("rudp_stats")
    writer.close()
    await writer.wait_closed()
    ep.abort()  # closes the capture (a running one is flushed every FLUSH_DELAY)
    return stats


def test_config_pcap_is_validated() -> None:
    assert Config(pcap="x.pcap").pcap == "x.pcap" and Config(pcap=Path("x")).pcap == Path("x")
    for bad in ("", 42, b"x.pcap"):
        with pytest.raises(ConfigError, match="pcap"):
            Config(pcap=bad)  # type: ignore[arg-type]


async def test_endpoints_naming_one_file_share_one_writer(tmp_path: Path) -> None:
    """Server and client in one process, one file: one writer, closed with the last
    endpoint; every datagram appears twice (sent by one, received by the other)."""
    path = tmp_path / "both.pcap"
    cfg = Config(pcap=str(path))
    server = await rudp.start_server(lambda r, w: w.close(), HOST, 0, config=cfg)
    ep = await rudp.create_endpoint((HOST, 0), config=cfg)
    assert len([c for c in _open.values() if c.key == str(path)]) == 1
    assert next(c for c in _open.values() if c.key == str(path)).users == 2
    reader, writer = await ep.open_connection(HOST, server.addresses[0][1])
    await reader.read()
    writer.close()
    await writer.wait_closed()
    sent = ep.stats()["datagrams_sent"]
    received = ep.stats()["datagrams_received"]
    assert ep.stats()["pcap"]["file"] == str(path)
    ep.abort()
    server.close()
    await server.wait_closed()
    server.endpoints[0].abort()
    assert str(path) not in _open  # the last user closed it
    _, records = read_pcap(path.read_bytes())
    assert len(records) == 2 * (sent + received)


async def test_capture_is_off_by_default() -> None:
    ep = await rudp.create_endpoint((HOST, 0))
    assert ep.stats()["pcap"] is None and ep._pcap is None
    ep.abort()


@needs_tshark
async def test_tshark_on_an_impaired_real_transfer(tmp_path: Path) -> None:
    """Through a lossy proxy, both ways: tshark finds nothing malformed, every
    checksum good, one TCP conversation with the real addresses, and the sender's
    retransmissions equal rudp's counter (docs/pcap.md explains the definitions)."""
    path = tmp_path / "sender.pcap"
    server, got = await _sink()
    up, down = LinkConfig(loss=0.05), LinkConfig(loss=0.03)
    size = 1_000_000
    async with UdpProxy((HOST, 0), server.addresses[0], up=up, down=down, seed=7) as proxy:
        proxy_port = str(proxy.address[1])
        stats = await _send(proxy.address[1], size, Config(pcap=str(path), rto_min=0.05))
    server.close()
    # The proxy drops 5% upstream, the client's last ACK too at times: the server is
    # then in LAST-ACK, retransmitting its FIN to a client endpoint that is gone.
    server.abort_clients()
    await server.wait_closed()
    assert got == [size]
    assert proxy.up_stats.lost > 0 and proxy.down_stats.lost > 0  # the impairment happened
    rows = tshark(path, tmp_path)
    assert rows and not [r for r in rows if is_error(r)]  # no malformed frame, no bad checksum
    assert {r["tcp.checksum.status"] for r in rows} == {"1"}
    assert {r["ip.src"] for r in rows} == {HOST}
    assert {r["tcp.stream"] for r in rows} == {"0"}
    mine = [r for r in rows if r["tcp.dstport"] == proxy_port]
    flagged = sum(map(retransmitted, mine))
    fast = sum(bool(r["tcp.analysis.fast_retransmission"]) for r in mine)
    spurious = sum(bool(r["tcp.analysis.spurious_retransmission"]) for r in mine)
    print(
        f"rudp: {stats['retransmissions']} retransmissions ({stats['fast_retransmits']} fast "
        f"recoveries, {stats['rto_expiries']} RTOs, {stats['tlp_probes']} TLPs); tshark: "
        f"{flagged} flagged ({fast} fast, {spurious} spurious, "
        f"{sum(bool(r['tcp.analysis.out_of_order']) for r in mine)} as out-of-order)"
    )
    assert stats["retransmissions"] > 0
    assert flagged == stats["retransmissions"]
    # Every data byte the sender put on the wire is in the file.
    sent_payload = sum(int(r["tcp.len"]) for r in mine)
    assert sent_payload == stats["bytes_sent"]


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_cli_pcap_option(tmp_path: Path) -> None:
    """`rudp connect --pcap FILE` records the session; tshark reads it cleanly."""
    path = tmp_path / "connect.pcap"
    data = tmp_path / "data"
    data.write_bytes(os.urandom(300_000))
    server = subprocess.Popen(
        [*netns.RUDP, "serve", HOST, "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=netns.env(),
    )
    try:
        line = netns.read_line(server)
        port = line.rsplit(" port ", 1)[1].split()[0]
        with data.open("rb") as f:
            res = subprocess.run(
                [*netns.RUDP, "connect", HOST, port, "--pcap", str(path)],
                stdin=f,
                capture_output=True,
                timeout=60,
                env=netns.env(),
            )
        assert res.returncode == 0, res.stderr
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    rows = tshark(path, tmp_path)
    assert not [r for r in rows if is_error(r)]
    assert {r["tcp.stream"] for r in rows} == {"0"}
    mine = [r for r in rows if r["tcp.dstport"] == port and not retransmitted(r)]
    assert sum(int(r["tcp.len"]) for r in mine) == 300_000
