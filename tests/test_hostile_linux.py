"""The Linux kernel's TCP connects to a rudp listener through SYN cookies, over the
TUN bridge (benchmarks/linuxpeer, tests/test_linux_interop.py): the kernel's SYN
offers every option, the cookie SYN,ACK answers them (window scale and SACK-permitted
carried in the timestamp), and the connection the cookie recreates has them all.
Skipped without the bridge (root, /dev/net/tun, ``ip``)."""

from __future__ import annotations

import asyncio
import struct

import pytest

pytest.importorskip("benchmarks.linuxpeer.bridge", reason="the Linux TUN bridge is not here")

from test_linux_interop import (
    A4,
    App,
    Rig,
    TunHost,
    check_options,
    kernel,  # noqa: F401 - a fixture
    kernel_transfer,
    run,
    tcp_info,
    tun_ok,  # noqa: F401 - a fixture
    until,
)

from rudp import Config
from rudp.engine.syncookies import TS_MASK, TS_SACK
from rudp.wire import ACK, SYN, parse_segment


def test_kernel_client_connects_through_a_syn_cookie(kernel: TunHost) -> None:  # noqa: F811
    rig = Rig(kernel, config=Config(syncookies="always"))

    async def main() -> tuple[object, App]:
        rig.start()
        rig.host.endpoint.listen(7002)
        apps: list[App] = []

        def accept() -> App:
            apps.append(App(b"r" * 200_000))
            return apps[-1]

        rig.host.accept_factory = accept
        sock = kernel.tcp_socket()
        await asyncio.get_running_loop().sock_connect(sock, (A4, 7002))
        got = await kernel_transfer(sock, b"k" * 200_000)
        await until(lambda: bool(apps) and apps[0].terminated)
        info = tcp_info(sock)
        sock.close()
        rig.close()
        assert got == b"r" * 200_000
        return info, apps[0]

    info, app = run(main())
    assert app.received == b"k" * 200_000 and app.error is None
    stats = rig.host.endpoint.stats()
    assert stats["syncookies_sent"] == 1 and stats["syncookies_ok"] == 1
    syn, synack = rig.raw("b2a")[0], rig.raw("a2b")[0]
    assert parse_segment(syn).flags == SYN and parse_segment(synack).flags == SYN | ACK
    k, r = check_options(syn), check_options(synack)
    assert set(k) == set(r) == {2, 3, 4, 8}  # MSS, window scale, SACK-permitted, TS
    # The cookie TSval carries the kernel's window scale and SACK-permitted.
    r_tsval = struct.unpack("!I", r[8][:4])[0]
    assert r_tsval & TS_MASK == k[3][0] | TS_SACK
    assert info.timestamps and info.sack and info.window_scaling  # type: ignore[attr-defined]
    assert (info.snd_wscale, info.rcv_wscale) == (r[3][0], k[3][0])  # type: ignore[attr-defined]
    assert app.conn is not None
    st = app.conn.stats()
    assert st["sack"] and st["timestamps"] and app.conn.snd_wscale == k[3][0]
    assert app.conn.iss == parse_segment(synack).seq  # the cookie
