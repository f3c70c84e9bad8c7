"""A UDP impairment proxy: the simulator's link impairments on real sockets.

:class:`UdpProxy` listens on a UDP address and forwards every datagram to a
target address, and the answers back, applying a :class:`~rudp.sim.LinkConfig`
to each direction with the simulator's own code (:meth:`rudp.sim.link.Link.decide`):
loss (with a burst cap), duplication, reordering, corruption, delay and jitter,
rate limit and queue, blackhole windows, MTU. Randomness is seeded.

It behaves like a NAT or a port-mapping forwarder (``docker -p 9000:9001/udp``):
each client address gets its own upstream socket, so the target sees one source
port per client, and :meth:`UdpProxy.rebind` moves a client to a new source port
(NAT rebinding). It runs on any asyncio loop (default or uvloop) with no task:
sockets are read with ``loop.add_reader`` and datagrams leave from one
``loop.call_at`` timer per batch of due datagrams, kept in one heap.

Also a command line for manual use, see docs/proxy.md::

    python -m rudp.sim.proxy --listen 127.0.0.1:9000 --target 127.0.0.1:9001 --loss 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import ipaddress
import itertools
import math
import random
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from types import TracebackType
from typing import Any

from .link import Link, LinkConfig, LinkStats

#: A socket address as Python's socket module gives it: (host, port) for IPv4,
#: (host, port, flowinfo, scope_id) for IPv6.
SockAddr = tuple[Any, ...]

#: UDP socket buffers requested (best effort; the kernel may cap them).
SOCKET_BUFFER = 4 * 1024 * 1024
#: Most datagrams read from one socket per wakeup, so one busy socket cannot
#: starve the others (or the timer).
READ_BUDGET = 512
#: Large enough for any UDP payload (65,507 bytes over IPv4, 65,527 over IPv6).
_MAX_DATAGRAM = 65536


@dataclass(slots=True)
class ProxyStats:
    """What the proxy itself did (each direction's impairments are in a
    :class:`~rudp.sim.LinkStats`: :attr:`UdpProxy.up_stats`, :attr:`UdpProxy.down_stats`)."""

    clients: int = 0  #: client addresses seen (an upstream socket opened for each)
    rebinds: int = 0  #: upstream sockets replaced by :meth:`UdpProxy.rebind`
    expired: int = 0  #: clients forgotten after ``idle_timeout``
    client_errors: int = 0  #: datagrams dropped: no upstream socket could be opened
    send_errors: int = 0  #: copies not sent: the socket refused them (or was closed)
    recv_errors: int = 0  #: socket errors while reading (e.g. ICMP port unreachable)
    rule_drops: int = 0  #: datagrams the ``drop`` rule discarded


class _Client:
    """One client address and its upstream socket (its "NAT mapping")."""

    __slots__ = ("addr", "last_seen", "sock")

    def __init__(self, addr: SockAddr, now: float) -> None:
        self.addr = addr
        self.sock: socket.socket | None = None  # None once closed
        self.last_seen = now


def _tune(sock: socket.socket) -> None:
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):  # platform limits
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)


async def _resolve(
    loop: asyncio.AbstractEventLoop, host: str, port: int, passive: bool
) -> tuple[int, SockAddr]:
    """The first IPv4/IPv6 address of ``host``:``port`` (numeric hosts without a lookup)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if ip.version == 4:
            return int(socket.AF_INET), (str(ip), port)
        return int(socket.AF_INET6), (str(ip), port, 0, 0)
    infos = await loop.getaddrinfo(
        host,
        port,
        type=socket.SOCK_DGRAM,
        proto=socket.IPPROTO_UDP,
        flags=socket.AI_PASSIVE if passive else 0,
    )
    for fam, _type, _proto, _canon, sockaddr in infos:
        if fam in (socket.AF_INET, socket.AF_INET6):
            return int(fam), tuple(sockaddr)
    raise OSError(f"getaddrinfo({host!r}, {port!r}) returned no IPv4/IPv6 address")


def _link(direction: str, cfg: LinkConfig | None, seed: int) -> Link:
    # A stream named by seed and direction: the proxy's addresses (ephemeral
    # ports) must not change the fates.
    client, target = ("client", 0), ("target", 0)
    src, dst = (client, target) if direction == "up" else (target, client)
    cfg = cfg if cfg is not None else LinkConfig()
    return Link(src, dst, cfg, seed, rng=random.Random(f"{seed}|{direction}"))


class UdpProxy:
    """Forward UDP between clients of ``listen`` and ``target``, with impairments.

    Datagrams from a client go through the ``up`` :class:`~rudp.sim.LinkConfig`
    and leave towards ``target`` from that client's own upstream socket; what the
    target sends to that socket goes through ``down`` and back to the client from
    the listening socket. The listening port may differ from the target's (a
    port-mapping forwarder). Each direction is one link shared by every client
    (a shared bottleneck for ``rate``), with its own random stream derived from
    ``seed``: the same datagrams offered in the same order meet the same fates.

    Times in the configs (blackhole windows) count from :meth:`start`. A datagram
    leaves at its arrival time as the link computes it, or up to ``batch_window``
    seconds earlier, so that one timer serves every datagram due in that window
    (uvloop's clock has millisecond resolution anyway); with no delay, no jitter
    and no rate limit it leaves at once. Upstream datagrams leave from the
    client's upstream socket *at the time they leave*: after :meth:`rebind`,
    datagrams still in flight come from the new port too.

    ``idle_timeout`` (seconds): forget a client, and close its upstream socket,
    after that long without a datagram either way (None: never).

    ``drop(up, data)``: a rule called for every datagram (``up``: client to target)
    before the impairments; True discards it (counted in ``stats.rule_drops``) —
    for losing one chosen segment in a test.

    Use ``async with UdpProxy(...) as proxy:`` or :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        *,
        up: LinkConfig | None = None,
        down: LinkConfig | None = None,
        seed: int = 0,
        idle_timeout: float | None = None,
        batch_window: float = 0.0005,
        drop: Callable[[bool, bytes], bool] | None = None,
    ) -> None:
        if idle_timeout is not None and not 0 < idle_timeout < math.inf:
            raise ValueError(f"idle_timeout must be > 0 (finite) or None, got {idle_timeout!r}")
        if not 0 <= batch_window < 1:
            raise ValueError(f"batch_window must be in [0, 1) seconds, got {batch_window!r}")
        self._listen = listen
        self._target_spec = target
        self.seed = seed
        #: ``drop(up, data)``: True discards that datagram before any impairment
        #: (``up``: client -> target). For targeted losses in tests.
        self.drop = drop
        self.idle_timeout = idle_timeout
        self.batch_window = batch_window
        self._up = _link("up", up, seed)
        self._down = _link("down", down, seed)
        self.stats = ProxyStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._target: SockAddr | None = None
        self._target_family = 0
        self._t0 = 0.0
        self._clients: dict[SockAddr, _Client] = {}
        # (time to leave, tie-break, client, upstream?, bytes)
        self._heap: list[tuple[float, int, _Client, bool, bytes]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    # -- configuration and inspection --------------------------------------------

    @property
    def up_config(self) -> LinkConfig:
        """Impairments client -> target (may be replaced at any time)."""
        return self._up.cfg

    @up_config.setter
    def up_config(self, cfg: LinkConfig) -> None:
        self._up.cfg = cfg

    @property
    def down_config(self) -> LinkConfig:
        """Impairments target -> client (may be replaced at any time)."""
        return self._down.cfg

    @down_config.setter
    def down_config(self, cfg: LinkConfig) -> None:
        self._down.cfg = cfg

    @property
    def up_stats(self) -> LinkStats:
        """Live counters client -> target (``delivered``: copies handed to the kernel)."""
        return self._up.stats

    @property
    def down_stats(self) -> LinkStats:
        """Live counters target -> client."""
        return self._down.stats

    @property
    def address(self) -> SockAddr:
        """The listening socket's address (the port is known after :meth:`start`)."""
        if self._sock is None:
            raise RuntimeError("the proxy is not started (or is closed)")
        return tuple(self._sock.getsockname())

    @property
    def target(self) -> SockAddr:
        """The resolved target address."""
        if self._target is None:
            raise RuntimeError("the proxy is not started")
        return self._target

    def clients(self) -> dict[SockAddr, SockAddr]:
        """Each live client address -> the source address the target sees for it."""
        return {
            addr: tuple(c.sock.getsockname())
            for addr, c in self._clients.items()
            if c.sock is not None
        }

    def time(self) -> float:
        """The proxy's clock: seconds since :meth:`start` (the time the configs use)."""
        if self._loop is None:
            raise RuntimeError("the proxy is not started")
        return self._loop.time() - self._t0

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Resolve the addresses, bind the listening socket and start forwarding."""
        if self._loop is not None or self._closed:
            raise RuntimeError("the proxy was already started (or closed)")
        loop = asyncio.get_running_loop()
        lhost, lport = self._listen
        thost, tport = self._target_spec
        fam, laddr = await _resolve(loop, lhost, lport, passive=True)
        self._target_family, self._target = await _resolve(loop, thost, tport, passive=False)
        if self._closed:
            raise RuntimeError("the proxy was closed while starting")
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _tune(sock)
            sock.bind(laddr)
            loop.add_reader(sock.fileno(), self._on_client_datagrams)
        except BaseException:
            sock.close()
            raise
        self._loop = loop
        self._sock = sock
        self._t0 = loop.time()
        if self.idle_timeout is not None:
            self._sweeper = loop.call_later(self.idle_timeout / 4, self._sweep)

    def close(self) -> None:
        """Stop forwarding: close every socket, drop what is still in flight."""
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        for handle in (self._timer, self._sweeper):
            if handle is not None:
                handle.cancel()
        self._timer = self._sweeper = None
        self._heap.clear()
        for client in self._clients.values():
            self._close_upstream(client)
        self._clients.clear()
        if self._sock is not None:
            if loop is not None:
                loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def is_closing(self) -> bool:
        return self._closed

    async def __aenter__(self) -> UdpProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"{self._sock.getsockname()}" if self._sock is not None else "not listening"
        return f"<UdpProxy {where} -> {self._target or self._target_spec}>"

    # -- NAT-like behaviour -------------------------------------------------------

    def rebind(self, client: SockAddr | None = None) -> int:
        """Move ``client`` (every client if None) to a new upstream socket, so the
        target sees a new source port, as after a NAT rebinding. The new port is
        always different (it is bound before the old socket closes); datagrams the
        target still sends to the old port are lost. Returns how many clients
        were moved. KeyError for a client the proxy does not know."""
        if self._closed or self._loop is None:
            raise RuntimeError("the proxy is not running")
        if client is None:
            targets = list(self._clients.values())
        else:
            try:
                targets = [self._clients[tuple(client)]]
            except KeyError:
                raise KeyError(f"{client!r} is not a client of this proxy") from None
        for c in targets:
            new = self._open_upstream(c)  # OSError (out of sockets) is the caller's
            self._close_upstream(c)
            c.sock = new
            self.stats.rebinds += 1
        return len(targets)

    def _open_upstream(self, client: _Client) -> socket.socket:
        loop = self._loop
        assert loop is not None and self._target is not None
        sock = socket.socket(self._target_family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _tune(sock)
            # connect(): the kernel then only passes datagrams from the target, and
            # reports its ICMP errors.
            sock.connect(self._target)
            loop.add_reader(sock.fileno(), self._on_target_datagrams, client)
        except BaseException:
            sock.close()
            raise
        return sock

    def _close_upstream(self, client: _Client) -> None:
        sock = client.sock
        if sock is not None:
            client.sock = None
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()

    def _sweep(self) -> None:
        loop = self._loop
        timeout = self.idle_timeout
        assert loop is not None and timeout is not None
        now = loop.time()
        idle = [c for c in self._clients.values() if now - c.last_seen >= timeout]
        for c in idle:
            self._close_upstream(c)
            del self._clients[c.addr]
        self.stats.expired += len(idle)
        self._sweeper = loop.call_later(timeout / 4, self._sweep)

    # -- datagram path --------------------------------------------------------------

    def _on_client_datagrams(self) -> None:
        sock = self._sock
        loop = self._loop
        if sock is None or loop is None:
            return
        clients = self._clients
        now = loop.time()
        link = self._up
        for _ in range(READ_BUDGET):
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.stats.recv_errors += 1
                continue
            client = clients.get(addr)
            if client is None:
                client = _Client(addr, now)
                try:
                    client.sock = self._open_upstream(client)
                except OSError:
                    self.stats.client_errors += 1  # e.g. out of file descriptors
                    continue
                clients[addr] = client
                self.stats.clients += 1
            client.last_seen = now
            self._offer(link, client, True, data, now)
        self._arm()

    def _on_target_datagrams(self, client: _Client) -> None:
        sock = client.sock
        loop = self._loop
        if sock is None or loop is None:
            return
        now = loop.time()
        link = self._down
        for _ in range(READ_BUDGET):
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ICMP port unreachable from the target, ...
                self.stats.recv_errors += 1
                continue
            client.last_seen = now
            self._offer(link, client, False, data, now)
        self._arm()

    def _offer(self, link: Link, client: _Client, up: bool, data: bytes, now: float) -> None:
        if self.drop is not None and self.drop(up, data):
            self.stats.rule_drops += 1
            return
        t0 = self._t0
        _fate, copies = link.decide(now - t0, data)
        heap = self._heap
        due = now + self.batch_window
        for arrival, copy in copies:
            when = arrival + t0
            if when <= due and (not heap or heap[0][0] > when):
                self._send(client, up, copy)  # nothing is due before it: no queueing
            else:
                heapq.heappush(heap, (when, next(self._seq), client, up, copy))

    def _send(self, client: _Client, up: bool, data: bytes) -> None:
        try:
            if up:
                sock = client.sock
                if sock is None:  # forgotten (idle) or closed meanwhile
                    self.stats.send_errors += 1
                    return
                sock.send(data)
                st = self._up.stats
            else:
                assert self._sock is not None
                self._sock.sendto(data, client.addr)
                st = self._down.stats
        except OSError:  # buffer full, ICMP error reported on a connected socket, ...
            self.stats.send_errors += 1
            return
        st.delivered += 1
        st.bytes_delivered += len(data)

    def _arm(self) -> None:
        heap = self._heap
        if not heap or self._closed:
            return
        when = heap[0][0]
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = self._loop
        if loop is None or self._closed:
            return
        due = loop.time() + self.batch_window
        heap = self._heap
        pop = heapq.heappop
        send = self._send
        while heap and heap[0][0] <= due:
            _, _, client, up, data = pop(heap)
            send(client, up, data)
        self._arm()


# -- command line ----------------------------------------------------------------

# LinkConfig fields settable from the command line: (field, type, metavar, help).
_OPTIONS: list[tuple[str, type, str, str]] = [
    ("delay", float, "S", "one-way delay, seconds"),
    ("jitter", float, "S", "extra delay, uniform in [0, S) seconds (never reorders)"),
    ("loss", float, "P", "loss probability"),
    ("loss_max_burst", int, "N", "at most N losses in a row"),
    ("duplicate", float, "P", "duplication probability"),
    ("reorder", float, "P", "probability a datagram is held back by --reorder-delay"),
    ("reorder_delay", float, "S", "how long a reordered datagram is held back (0.01)"),
    ("corrupt", float, "P", "probability random bytes are flipped"),
    ("corrupt_bytes", int, "N", "bytes flipped per corrupted datagram (1)"),
    ("rate", float, "B/S", "rate limit, bytes per second"),
    ("queue_limit", int, "BYTES", "queue in front of the rate limit (needs --rate)"),
    ("mtu", int, "BYTES", "drop larger datagrams"),
    ("blackhole_period", float, "S", "repeat the --blackhole windows every S seconds"),
]


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, not {port!r}") from None
    if not 0 <= number <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, not {number}")
    return host, number


def _window(text: str) -> tuple[float, float]:
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(start), float(end)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:END seconds, not {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rudp.sim.proxy",
        description="Forward UDP from --listen to --target and back, with seeded "
        "impairments (rudp's simulator links on real sockets). Each client address "
        "gets its own source port towards the target. Counters go to stderr on exit.",
        epilog="Impairment options apply to both directions; --up-NAME (client -> "
        "target) and --down-NAME (target -> client) override one direction, e.g. "
        "--loss 0.01 --down-loss 0. Ends on Ctrl-C (exit status 130) or SIGTERM (143).",
    )
    p.add_argument("--listen", required=True, type=_host_port, metavar="HOST:PORT")
    p.add_argument("--target", required=True, type=_host_port, metavar="HOST:PORT")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="forget a client after S idle seconds; 0: never (300)",
    )
    p.add_argument(
        "--stats", type=float, default=0.0, metavar="S", help="print counters every S seconds"
    )
    p.add_argument(
        "--loop", choices=("auto", "uvloop", "asyncio"), default="auto", help="event loop (auto)"
    )
    for prefix, title in (("", "impairments"), ("up-", None), ("down-", None)):
        if title is None:
            direction = "client -> target" if prefix == "up-" else "target -> client"
            g = p.add_argument_group(f"--{prefix}NAME: only {direction}")
        else:
            g = p.add_argument_group(title + " (both directions)")
        for name, typ, metavar, text in _OPTIONS:
            flag = "--" + prefix + name.replace("_", "-")
            g.add_argument(
                flag,
                dest=prefix.replace("-", "_") + name,
                type=typ,
                metavar=metavar,
                help=text if not prefix else argparse.SUPPRESS,
            )
        g.add_argument(
            f"--{prefix}blackhole",
            dest=prefix.replace("-", "_") + "blackhole",
            type=_window,
            action="append",
            metavar="START:END",
            help="drop everything sent in [START, END) seconds after the start (repeatable)"
            if not prefix
            else argparse.SUPPRESS,
        )
        if prefix:
            names = [name for name, *_rest in _OPTIONS] + ["blackhole"]
            g.description = ", ".join(f"--{prefix}{n.replace('_', '-')}" for n in names)
    return p


def _configs(args: argparse.Namespace) -> tuple[LinkConfig, LinkConfig]:
    names = [name for name, *_rest in _OPTIONS] + ["blackhole"]
    out = []
    for prefix in ("up_", "down_"):
        kw: dict[str, Any] = {}
        for name in names:
            value = getattr(args, prefix + name)
            if value is None:
                value = getattr(args, name)
            if value is not None:
                kw[name] = value
        out.append(LinkConfig(**kw))
    return out[0], out[1]


def _describe(cfg: LinkConfig) -> str:
    default = LinkConfig()
    parts = [
        f"{f.name}={getattr(cfg, f.name)}"
        for f in fields(cfg)
        if getattr(cfg, f.name) != getattr(default, f.name)
    ]
    return " ".join(parts) or "none"


def _say(text: str) -> None:
    print(f"proxy: {text}", file=sys.stderr, flush=True)


def _report(proxy: UdpProxy) -> None:
    for name, st in (("up", proxy.up_stats), ("down", proxy.down_stats)):
        counters = " ".join(f"{k}={v}" for k, v in asdict(st).items())
        _say(f"{name}: {counters}")
    _say(" ".join(f"{k}={v}" for k, v in asdict(proxy.stats).items()))


async def _serve(args: argparse.Namespace, up: LinkConfig, down: LinkConfig) -> int:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()

    def on_signal(signum: int) -> None:
        if not stop.done():
            stop.set_result(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, int(signum))
    idle = args.idle_timeout or None
    proxy = UdpProxy(args.listen, args.target, up=up, down=down, seed=args.seed, idle_timeout=idle)
    async with proxy:
        _say(f"{proxy.address[0]}:{proxy.address[1]} -> {proxy.target[0]}:{proxy.target[1]}")
        _say(f"up (client -> target): {_describe(up)}")
        _say(f"down (target -> client): {_describe(down)}")
        while True:
            try:
                rc = await asyncio.wait_for(asyncio.shield(stop), args.stats or None)
            except asyncio.TimeoutError:
                _report(proxy)
                continue
            _report(proxy)
            return rc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rudp.sim.proxy``: returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        up, down = _configs(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.idle_timeout < 0 or args.stats < 0:
        parser.error("--idle-timeout and --stats must be >= 0")
    factory = asyncio.new_event_loop
    if args.loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if args.loop == "uvloop":
                parser.error("uvloop is not installed")
        else:
            factory = uvloop.new_event_loop
    loop = factory()
    try:
        return loop.run_until_complete(_serve(args, up, down))
    except OSError as exc:
        _say(f"error: {exc}")
        return 1
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
