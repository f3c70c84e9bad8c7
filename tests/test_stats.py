"""Live statistics: a connection's TCP_INFO-like fields and an endpoint's counters."""

from __future__ import annotations

import asyncio
import socket

from drill import Drill, pattern
from test_recovery import _sack, opened

import rudp
from rudp.aio.endpoint import DROP_REASONS
from rudp.wire import RST, build_segment

HOST = "127.0.0.1"

#: What docs/stats.md maps from Linux's tcp_info (ss -ti).
TCP_INFO_FIELDS = {
    "state", "recovery_state", "rto", "rto_backoff", "keepalive_probes_unanswered",
    "snd_mss", "rcv_mss", "advmss", "snd_wscale", "rcv_wscale", "ato",
    "unacked_segments", "sacked_segments", "lost_segments", "retrans_segments",
    "srtt", "rttvar", "min_rtt", "ssthresh", "cwnd", "max_snd_wnd", "snd_wnd", "rcv_wnd",
    "retransmissions", "pacing_rate", "delivery_rate", "delivery_rate_app_limited",
    "bytes_acked", "bytes_received", "bytes_sent", "bytes_retransmitted", "segments_sent",
    "segments_received", "notsent_bytes", "in_flight", "outstanding_bytes", "delivered",
    "dsacks_received", "reordering_seen", "ooo_segments", "rcv_buf", "snd_buf",
}  # fmt: skip


def test_connection_stats_fields_and_segment_counts_under_loss() -> None:
    """Mid-recovery, the scoreboard's SACKed/lost/retransmitted segments show."""
    d = opened(Drill())
    d.send(pattern(0, 10_000), at=1.0)
    assert len(d.take_sent()) == 10
    _sack(d, 1001, [(2001, 5001)], 1.253)  # 3 SACKed beyond a hole: RACK marks it lost
    st = d.conn.stats(d.now)
    assert set(st) >= TCP_INFO_FIELDS
    assert st["recovery_state"] == "recovery"
    assert st["unacked_segments"] == 9  # the first was acknowledged
    assert st["sacked_segments"] == 3
    assert st["lost_segments"] == 1 and st["retrans_segments"] == 1  # resent, in flight
    assert st["outstanding_bytes"] == 9000 and st["notsent_bytes"] == 0
    assert st["in_flight"] == 9000 - 3000  # RFC 6675 pipe: minus SACKed; lost but resent
    assert st["last_send_age"] == 0.0 and st["last_receive_age"] == 0.0
    assert st["unacked_age"] is not None and st["time_wait_left"] is None
    assert "last_send_age" not in d.conn.stats()  # ages need the clock


async def test_endpoint_counters_are_complete() -> None:
    ep = await rudp.create_endpoint((HOST, 0))
    port = ep.local_address[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"xy", (HOST, port))  # too short to be a segment
        s.sendto(build_segment(1, port, 5, 0, RST, 0), (HOST, port))  # an RST for nobody
        for _ in range(200):  # bounded wait for the loop to read both
            if ep.stats()["datagrams_received"] == 2:
                break
            await asyncio.sleep(0.01)
    st = ep.stats()
    assert set(DROP_REASONS) <= set(st["drops"])
    assert st["drops"]["short"] == 1 and st["drops"]["closed_rst"] == 1
    assert st["dropped"] == 2 == sum(st["drops"].values())
    assert st["suppressed"]["rst_to_rst"] == 1  # an RST is never answered
    assert st["rst_sent"] == 0 and st["listeners"] == 0 and st["connections"] == 0
    assert {"socket", "features", "soft_errors", "pcap"} <= set(st)
    ep.abort()


async def test_transport_stats_carry_ages() -> None:
    server = await rudp.start_server(lambda r, w: None, HOST, 0)
    _reader, writer = await rudp.open_connection(HOST, server.addresses[0][1])
    writer.write(b"x" * 5000)
    await writer.drain()
    st = writer.get_extra_info(rudp.STATS_KEY)
    assert st["last_send_age"] >= 0 and st["last_receive_age"] >= 0
    assert st["advmss"] == 1400 and st["rcv_wscale"] > 0
    writer.transport.abort()
    server.close()
    server.abort_clients()
    await server.wait_closed()
