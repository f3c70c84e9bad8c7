"""Owned, batched I/O on one UDP socket: GSO/GRO, PKTINFO and the error queue.

asyncio's datagram transport does one ``sendto`` and one ``datagram_received``
per datagram and cannot pass control messages. :class:`UdpSocketIO` owns the
socket's I/O instead, with ``loop.add_reader``/``add_writer`` (the default loop
and uvloop both support them on sockets):

* **Receive**: one reader callback drains up to ``batch`` datagrams with
  ``recvmsg_into`` into one reused buffer and hands them over in one
  ``on_datagrams(batch)`` call. With ``UDP_GRO`` (Linux >= 5.0) the kernel may
  return several datagrams of one flow as one "super-datagram" and say their
  size in a ``UDP_GRO`` control message; they are split back at that size (the
  last one may be shorter). With PKTINFO each datagram carries the local
  address it arrived at.
* **Send**: ``send(items)`` groups consecutive datagrams to one destination, of
  equal size except a shorter last one, into one ``sendmsg`` with a
  ``UDP_SEGMENT`` control message (GSO, Linux >= 4.18): the kernel cuts the
  buffer back into datagrams, so one syscall sends up to
  :data:`GSO_MAX_SEGMENTS` datagrams. A source address (PKTINFO) makes a
  server bound to a wildcard address answer from the address the peer used.
* **Backpressure**: when the kernel says ``EAGAIN``, the unsent remainder is
  queued (bounded), a writer callback flushes it when the socket is writable
  again, ``send`` returns False and ``writing_paused`` stays True until the
  queue is empty; then ``on_writable()`` is called.
* **Errors**: with ``IP_RECVERR``/``IPV6_RECVERR`` (Linux) ICMP errors reach
  an *unconnected* socket through its error queue, each with the destination
  the failed datagram was sent to, the payload the ICMP message quoted and the
  ``sock_extended_err`` fields; they are reported as :class:`DatagramError` to
  ``on_error``. Elsewhere only a connected socket learns of ICMP errors (as a
  failing ``recv``), reported with the connected peer as destination.

On Linux with the C accelerator, both loops run in C over ``sendmmsg`` and
``recvmmsg``: many messages (datagrams, GSO groups, GRO super-datagrams) per
system call; errors are handed to the Python path for the message concerned
(``features.mmsg``; docs/socket-io.md).

Every Linux feature is probed at runtime and falls back cleanly (older kernel,
``EIO`` from a GSO send without checksum offload, non-Linux systems use plain
``recvfrom_into``/``sendto``). ``features`` says what is in use; environment
switches force features off for testing: ``RUDP_NO_GSO``, ``RUDP_NO_GRO``,
``RUDP_NO_PKTINFO``, ``RUDP_NO_RECVERR``, ``RUDP_NO_MMSG``, and ``RUDP_NO_CMSG`` for the portable
path with no control messages at all. See docs/socket-io.md.
"""

from __future__ import annotations

import asyncio
import enum
import errno as _errno
import mmap
import os
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from .. import log
from ..errors import InvalidStateError
from ..wire.checksum import IMPLEMENTATION

__all__ = [
    "GSO_MAX_BYTES",
    "GSO_MAX_SEGMENTS",
    "Address",
    "DatagramError",
    "ErrorOrigin",
    "Features",
    "IOStats",
    "Payload",
    "ReceivedDatagram",
    "SendItem",
    "UdpSocketIO",
]

Address = tuple[Any, ...]
#: A datagram to send: bytes, or a buffer the caller does not change during ``send``.
Payload = bytes | bytearray | memoryview
#: ``(payload, destination, source)``: destination None on a connected socket;
#: source None to let the kernel choose, else a local address from PKTINFO.
SendItem = tuple[Payload, Address | None, Address | None]
#: ``(payload, source address, local address or None)`` (see :meth:`UdpSocketIO.__init__`).
ReceivedDatagram = tuple[memoryview, Address, Address | None]

_LINUX: Final = sys.platform.startswith("linux")

# --------------------------------------------------------------- constants
# Linux UAPI values, used where the socket module lacks them (checked against
# include/uapi/linux/udp.h, in.h, in6.h; the tests compare them with the socket
# module where it has them). Only used on Linux: other systems (macOS, the BSDs)
# number the PKTINFO options differently.
SOL_UDP: Final[int] = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT: Final[int] = getattr(socket, "UDP_SEGMENT", 103)  # udp.h, Linux 4.18
UDP_GRO: Final[int] = getattr(socket, "UDP_GRO", 104)  # udp.h, Linux 5.0
IP_PKTINFO: Final[int] = getattr(socket, "IP_PKTINFO", 8)  # in.h
IP_RECVERR: Final[int] = getattr(socket, "IP_RECVERR", 11)  # in.h
IPV6_RECVERR: Final[int] = getattr(socket, "IPV6_RECVERR", 25)  # in6.h
IPV6_RECVPKTINFO: Final[int] = getattr(socket, "IPV6_RECVPKTINFO", 49)  # in6.h (RFC 3542)
IPV6_PKTINFO: Final[int] = getattr(socket, "IPV6_PKTINFO", 50)  # in6.h (RFC 3542)
MSG_ERRQUEUE: Final[int] = int(getattr(socket, "MSG_ERRQUEUE", 0x2000))
_IPPROTO_IP: Final[int] = socket.IPPROTO_IP
_IPPROTO_IPV6: Final[int] = socket.IPPROTO_IPV6
# int(): socket.MSG_TRUNC is a MsgFlag, and ``flags & MsgFlag`` runs enum code per receive.
_MSG_TRUNC: Final[int] = int(getattr(socket, "MSG_TRUNC", 0x20))

#: Most datagrams in one GSO ``sendmsg``. The kernel's ``UDP_MAX_SEGMENTS`` was
#: 64 from Linux 4.18 and is 128 since 6.9 (commit 1382e3b6a350, "net: change
#: maximum number of UDP segments to 128"); more fails with EINVAL. 64 works on all.
GSO_MAX_SEGMENTS: Final = 64
#: Most UDP payload bytes in one GSO ``sendmsg``. The kernel accepts an IP
#: packet of up to 65535 bytes (65507 bytes of payload over IPv4, 65527 over
#: IPv6: more is EMSGSIZE), but measured on loopback, a GSO packet whose frame
#: with lo's 14-byte Ethernet header exceeds 65535 bytes is segmented before it
#: reaches the receiver, defeating GRO. 65535 - 14 - 40 - 8 fits both families.
GSO_MAX_BYTES: Final = 65535 - 14 - 40 - 8
#: Receive window per ``recvmsg_into``: the largest UDP payload (or GRO super-datagram).
RECV_WINDOW: Final = 65536
#: Bytes one reader wakeup reads, about (recvmmsg path): large datagrams and GRO
#: messages stop there, so one wakeup's data stays cache-sized.
RECV_BYTES: Final = 512 * 1024
#: Datagrams read per reader wakeup by default.
DEFAULT_BATCH: Final = 256
#: Bytes the send queue holds while the kernel says EAGAIN; more is dropped and counted.
DEFAULT_MAX_QUEUE: Final = 1 << 20
#: Error-queue entries read per wakeup, and bytes of quoted payload kept per entry.
_ERRQUEUE_BUDGET: Final = 64
_ERRQUEUE_PAYLOAD: Final = 2048
#: uvloop only: how often (seconds) the error queue is checked for errors that
#: stopped the reader (libuv stops a poll handle on EPOLLERR; see UdpSocketIO).
UVLOOP_ERRQUEUE_CHECK: Final = 0.5

# struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst; struct in_addr ipi_addr; }
_IN_PKTINFO: Final = struct.Struct("=i4s4s")
# struct in6_pktinfo { struct in6_addr ipi6_addr; unsigned int ipi6_ifindex; }  (RFC 3542 §6.1)
_IN6_PKTINFO: Final = struct.Struct("=16sI")
# struct sock_extended_err { u32 ee_errno; u8 ee_origin, ee_type, ee_code, ee_pad;
#                            u32 ee_info; u32 ee_data; }, then the offender's sockaddr.
_SOCK_EXTENDED_ERR: Final = struct.Struct("=IBBBBII")
_SA_FAMILY: Final = struct.Struct("=H")  # sa_family_t, host order
_SOCKADDR_IN: Final = struct.Struct("!H4s")  # port, address (network order), after the family
_SOCKADDR_IN6: Final = struct.Struct("!HI16s")  # port, flowinfo, address
_SCOPE_ID: Final = struct.Struct("=I")  # sin6_scope_id, host order
_GSO_SIZE: Final = struct.Struct("=H")  # UDP_SEGMENT cmsg: a u16 (udp_cmsg_send)
# Control-message room for a UDP_GRO int and an in6_pktinfo (24 + 40 on 64-bit Linux), and slack.
_ANCBUF: Final = 128
_ERR_ANCBUF: Final = 512

#: errno values a UDP socket reports for an earlier datagram (from ICMP, via the
#: pending socket error ``sk_err``): icmp_err_convert[] and icmpv6_err_convert()
#: in Linux, plus ECONNRESET (Windows reports port unreachable so).
_SOCKET_ERRNOS: Final = frozenset(
    getattr(_errno, name)
    for name in (
        "ECONNREFUSED",
        "ECONNRESET",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "EHOSTDOWN",
        "ENONET",
        "ENOPROTOOPT",
        "EMSGSIZE",
        "EOPNOTSUPP",
        "EPROTO",
        "EACCES",
    )
    if hasattr(_errno, name)
)

# send_batch's code for an item whose source has no control message cached yet
_NEED_SOURCE: Final = -1

# results of one send attempt
_SENT: Final = 0
_BLOCKED: Final = 1
_DROPPED: Final = 2
_SPLIT: Final = 3


class ErrorOrigin(enum.IntEnum):
    """Where a :class:`DatagramError` came from (``ee_origin``, SO_EE_ORIGIN_*)."""

    #: A failing ``send``/``recv`` call (no error queue: non-Linux, or recverr off).
    SOCKET = 0
    #: The local stack (``ip_local_error``: e.g. EMSGSIZE above the path MTU).
    LOCAL = 1
    #: An ICMP (IPv4) message.
    ICMP = 2
    #: An ICMPv6 message.
    ICMP6 = 3


def py_gso_group(
    items: list[SendItem], start: int, limit: int, max_bytes: int, /
) -> tuple[int, int]:
    """``(end, total)``: ``items[start:end]`` can leave in one GSO send -- the same
    destination and source, payloads of ``items[start]``'s size but a shorter last
    one, at most ``limit`` of them and ``max_bytes`` in all; ``total`` bytes."""
    payload, dest, src = items[start]
    size = total = len(payload)
    n = len(items)
    j = start + 1
    if size:
        stop = min(n, start + limit)
        while j < stop:
            nxt, d, s = items[j]
            length = len(nxt)
            if (
                length == 0
                or length > size
                or total + length > max_bytes
                or (d is not dest and d != dest)
                or (s is not src and s != src)
            ):
                break
            total += length
            j += 1
            if length < size:
                break
    return j, total


def py_split_gro(
    batch: list[ReceivedDatagram],
    view: memoryview,
    start: int,
    end: int,
    segment: int,
    source: Address,
    local: Address | None,
    /,
) -> int:
    """Append the datagrams of a GRO receive in ``view[start:end]`` (each
    ``segment`` bytes, the last one shorter) to ``batch``; return how many."""
    append = batch.append
    count = 0
    for i in range(start, end, segment):
        stop = i + segment
        append((view[i : stop if stop < end else end], source, local))
        count += 1
    return count


#: The per-datagram loops of sending and receiving: the C accelerator's when it is
#: in use (rudp.wire.checksum.IMPLEMENTATION), else the functions above.
gso_group = py_gso_group
split_gro = py_split_gro
#: The accelerator's sendmmsg/recvmmsg loops (Linux): None without it.
send_batch: Callable[..., tuple[int, ...]] | None = None
recv_batch: Callable[..., tuple[int, ...]] | None = None
if IMPLEMENTATION == "c":
    from .. import _accel

    gso_group = _accel.gso_group
    split_gro = _accel.split_gro
    if _LINUX:
        send_batch = getattr(_accel, "send_batch", None)
        recv_batch = getattr(_accel, "recv_batch", None)


@dataclass(frozen=True, slots=True)
class DatagramError:
    """A datagram sent earlier failed (an ICMP error, or a local send error).

    Attributes:
        dest: The destination the failed datagram was sent to (from the error
            queue's ``msg_name``: the original destination, not the ICMP sender),
            in the socket's address format; None when unknown (an unconnected
            socket without an error queue).
        errno: ``ECONNREFUSED`` (port unreachable), ``EHOSTUNREACH``,
            ``ENETUNREACH``, ``EMSGSIZE`` (fragmentation needed / packet too big,
            or too large to send), ``EPROTO`` (parameter problem) …
        payload: The start of the failed datagram's UDP payload, as the ICMP
            message quoted it (RFC 1812 §4.3.2.3 routers quote up to 576 bytes in
            all; RFC 792 hosts may quote only the UDP header, leaving this empty),
            at most 2048 bytes; empty when the kernel had none (local errors).
        origin: :class:`ErrorOrigin`.
        icmp_type: The ICMP type (``ee_type``), 0 unless from ICMP.
        icmp_code: The ICMP code (``ee_code``), 0 unless from ICMP.
        info: ``ee_info``: the next-hop MTU for "fragmentation needed" (ICMP
            3/4), "packet too big" (ICMPv6 2) and local EMSGSIZE; else 0.
        offender: Who reported the error (the router or host that sent the ICMP
            message), or None.
    """

    dest: Address | None
    errno: int
    payload: bytes
    origin: ErrorOrigin
    icmp_type: int = 0
    icmp_code: int = 0
    info: int = 0
    offender: Address | None = None


@dataclass(slots=True)
class Features:
    """What the socket uses (after probing, environment switches and fallbacks)."""

    #: GSO sends (``UDP_SEGMENT``); turned off at runtime if the kernel says EIO.
    gso: bool = False
    #: GRO receives (``UDP_GRO``).
    gro: bool = False
    #: Local address of each datagram (``IP_PKTINFO``/``IPV6_RECVPKTINFO``) and
    #: source addresses on send.
    pktinfo: bool = False
    #: The error queue (``IP_RECVERR``/``IPV6_RECVERR``).
    recverr: bool = False
    #: Batched system calls: ``sendmmsg``/``recvmmsg`` through the C accelerator
    #: (Linux; off with ``RUDP_NO_MMSG=1`` or without the accelerator).
    mmsg: bool = False


#: The counters of :class:`IOStats`, in the order of its snapshot.
IOSTATS_FIELDS: Final[tuple[str, ...]] = (
    "bytes_received",
    "bytes_sent",
    "datagrams_received",
    "datagrams_sent",
    "dropped_queue_full",
    "eagain",
    "errors_reported",
    "errqueue_reads",
    "gro_receives",
    "gro_segments",
    "gso_failures",
    "gso_segments",
    "gso_sends",
    "pauses",
    "queued_max",
    "reader_wakeups",
    "recv_calls",
    "recv_errors",
    "recvs",
    "send_calls",
    "send_errors",
    "sends",
    "truncated",
)


class IOStats:
    """Counters of one :class:`UdpSocketIO` (plain ints; ``as_dict()`` for a snapshot)."""

    __slots__ = IOSTATS_FIELDS

    def __init__(self) -> None:
        #: Messages sent (a datagram, or a GSO group), and what they carried.
        self.sends = 0
        #: System calls that sent them (one ``sendmmsg`` sends many).
        self.send_calls = 0
        self.datagrams_sent = 0
        self.bytes_sent = 0
        #: GSO ``sendmsg`` calls and the datagrams they carried.
        self.gso_sends = 0
        self.gso_segments = 0
        #: GSO calls the kernel refused (then sent one by one).
        self.gso_failures = 0
        #: Sends that met EAGAIN; times writing paused; most datagrams ever queued.
        self.eagain = 0
        self.pauses = 0
        self.queued_max = 0
        #: Datagrams dropped because the send queue was full.
        self.dropped_queue_full = 0
        #: Datagrams dropped because sending them failed (reported to on_error).
        self.send_errors = 0
        #: Reader callbacks, messages received (a datagram, or a GRO
        #: super-datagram), datagrams and bytes received.
        self.reader_wakeups = 0
        self.recvs = 0
        #: System calls that received messages (one ``recvmmsg`` reads many).
        self.recv_calls = 0
        self.datagrams_received = 0
        self.bytes_received = 0
        #: Receives that carried several datagrams (GRO), and how many in all.
        self.gro_receives = 0
        self.gro_segments = 0
        #: Datagrams dropped as truncated (``MSG_TRUNC``).
        self.truncated = 0
        #: Pending socket errors seen by a receive call.
        self.recv_errors = 0
        #: Entries read from the error queue; errors reported to ``on_error``.
        self.errqueue_reads = 0
        self.errors_reported = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in IOSTATS_FIELDS}


def _env_off(name: str) -> bool:
    value = os.environ.get(name, "")
    return value not in ("", "0")


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "::ffff:0.0.0.0")


class UdpSocketIO:
    """Batched, owned I/O of one bound, non-blocking UDP socket (see the module docstring).

    Args:
        loop: The running event loop (the default loop or uvloop; a loop
            without ``add_reader``, such as the Windows proactor, raises
            ``NotImplementedError``).
        sock: A bound, non-blocking ``SOCK_DGRAM`` socket (AF_INET, AF_INET6
            dual-stack or not; other families use the portable path). It may be
            ``connect()``-ed: then destinations are ignored. From now on this
            object owns it: :meth:`close` closes it.
        on_datagrams: Called once per reader wakeup with a list of
            ``(payload, source address, local address or None)``. ``payload``
            is a ``memoryview`` into a receive buffer that is **reused as soon
            as the callback returns**: copy (``bytes(payload)``) whatever must
            outlive the call, and do not keep the views. The local address is
            the address the datagram was sent to, as ``(host, port)`` or
            ``(host, port, 0, scope_id)``, when ``features.pktinfo``; else None.
        on_error: Called with each :class:`DatagramError` (from the loop, never
            from inside :meth:`send`). Without it errors are counted and logged.
        on_writable: Called when writing was paused (``send`` returned False)
            and the queue has drained: the caller may produce again.
        gso, gro, recverr: Use the feature if the system has it (default True).
        pktinfo: Report local addresses and accept source addresses; None
            (default) enables it when the socket is bound to a wildcard address
            and not connected.
        batch: Most datagrams per ``on_datagrams`` call.
        max_queue: Most bytes queued while writing is paused.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_datagrams: Callable[[list[ReceivedDatagram]], None],
        *,
        on_error: Callable[[DatagramError], None] | None = None,
        on_writable: Callable[[], None] | None = None,
        gso: bool = True,
        gro: bool = True,
        pktinfo: bool | None = None,
        recverr: bool = True,
        batch: int = DEFAULT_BATCH,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError("UdpSocketIO needs a SOCK_DGRAM socket")
        if sock.gettimeout() != 0.0:
            raise ValueError("UdpSocketIO needs a non-blocking socket (sock.setblocking(False))")
        if batch < 1 or max_queue < 0:
            raise ValueError("batch must be >= 1 and max_queue >= 0")
        self._loop = loop
        self._sock = sock
        self._on_datagrams = on_datagrams
        self._on_error = on_error
        self._on_writable = on_writable
        self._batch = batch
        self._max_queue = max_queue
        self.stats = IOStats()
        self.features = Features()
        family = sock.family
        self._family = family
        self._ip = family in (socket.AF_INET, socket.AF_INET6)
        name = sock.getsockname()
        self._port: int = name[1] if self._ip else 0
        try:
            peer: Any = sock.getpeername()  # a path (str) for an AF_UNIX socket
        except OSError:
            peer = None
        #: The connected peer: destinations are ignored and errors are its.
        self._peer: Any = peer
        self._pktinfo_key: tuple[int, int] | None = None
        self._probe(gso, gro, pktinfo, recverr, name)
        self._gso_cmsg: dict[int, tuple[int, int, bytes]] = {}
        self._src_cmsg: dict[Address, tuple[int, int, bytes]] = {}
        self._local_cache: dict[bytes, Address | None] = {}
        #: Source addresses by their sockaddr bytes (the recvmmsg path).
        self._addr_cache: dict[bytes, Address] = {}
        self._fd = sock.fileno()
        #: The largest message the last recvmmsg call read: the next one asks for
        #: as many windows as RECV_BYTES holds at that size.
        self._rx_largest = 2048
        # One receive arena, reused by every wakeup. Python's receive calls each
        # take a window of RECV_WINDOW bytes from its free part; recvmmsg gives
        # each message a whole window, in a mapping touched only where written.
        if self.features.mmsg:
            # ``batch`` windows (16 MiB of address space by default): its pages
            # become resident only as datagrams fill them, a page or two per
            # datagram but the largest.
            self._arena = memoryview(mmap.mmap(-1, batch * RECV_WINDOW, flags=mmap.MAP_PRIVATE))
        else:
            self._arena = memoryview(bytearray(max(2 * RECV_WINDOW, (batch + 1) * 2048)))
        self._arena_limit = len(self._arena) - RECV_WINDOW
        self._queue: deque[SendItem] = deque()
        self._queued_bytes = 0
        self._writer = False
        self._reading = False
        self._closing = False
        self._closed = False
        self._errors: list[DatagramError] = []
        self._report_scheduled = False
        self._closed_fut: asyncio.Future[None] = loop.create_future()
        # libuv (uvloop) stops a poll handle for good when epoll reports EPOLLERR,
        # which a socket with IP_RECVERR does while its error queue holds an ICMP
        # error: the reader would never run again. On uvloop the error queue is
        # watched (UVLOOP_ERRQUEUE_CHECK) and the reader re-armed after any error
        # found there.
        self._uvloop = type(loop).__module__.startswith("uvloop")
        self._guard: asyncio.TimerHandle | None = None
        self.resume_reading()
        if self._uvloop and self.features.recverr:
            self._guard = loop.call_later(UVLOOP_ERRQUEUE_CHECK, self._check_errqueue)

    # ---------------------------------------------------------------- setup
    def _probe(self, gso: bool, gro: bool, pktinfo: bool | None, recverr: bool, name: Any) -> None:
        """Enable what the system has and the caller wants (setsockopt probes)."""
        features = self.features
        if not (_LINUX and self._ip) or _env_off("RUDP_NO_CMSG"):
            return  # the portable path: recvfrom_into/sendto, no control messages
        sock = self._sock
        v6 = self._family == socket.AF_INET6
        dual = False
        if v6:
            try:
                dual = not sock.getsockopt(_IPPROTO_IPV6, socket.IPV6_V6ONLY)
            except OSError:  # pragma: no cover - Linux always has IPV6_V6ONLY
                dual = False
        if recverr and not _env_off("RUDP_NO_RECVERR"):
            try:
                if v6:
                    sock.setsockopt(_IPPROTO_IPV6, IPV6_RECVERR, 1)
                    if dual:  # IPv4 errors of v4-mapped peers are governed by IP_RECVERR
                        sock.setsockopt(_IPPROTO_IP, IP_RECVERR, 1)
                else:
                    sock.setsockopt(_IPPROTO_IP, IP_RECVERR, 1)
                features.recverr = True
            except OSError:
                pass
        if pktinfo is None:  # a connected socket's local address is fixed already
            pktinfo = self._peer is None and _is_wildcard(str(name[0]))
        if pktinfo and not _env_off("RUDP_NO_PKTINFO"):
            try:
                if v6:  # also covers IPv4 datagrams on a dual-stack socket (v4-mapped)
                    sock.setsockopt(_IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
                else:
                    sock.setsockopt(_IPPROTO_IP, IP_PKTINFO, 1)
                features.pktinfo = True
            except OSError:
                pass
        if gro and not _env_off("RUDP_NO_GRO"):
            try:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                features.gro = True
            except OSError:
                pass
        if gso and not _env_off("RUDP_NO_GSO"):
            try:  # reading the option succeeds where the kernel knows it
                sock.getsockopt(SOL_UDP, UDP_SEGMENT)
                features.gso = True
            except OSError:
                pass
        if features.pktinfo:
            self._pktinfo_key = (_IPPROTO_IPV6, IPV6_PKTINFO) if v6 else (_IPPROTO_IP, IP_PKTINFO)
        if (
            send_batch is not None
            and recv_batch is not None
            and type(sock) is socket.socket  # a socket-like wrapper keeps its own methods
            and not _env_off("RUDP_NO_MMSG")
        ):
            features.mmsg = True

    # ------------------------------------------------------------ properties
    @property
    def socket(self) -> socket.socket:
        """The socket (owned by this object; do not read from or close it)."""
        return self._sock

    @property
    def writing_paused(self) -> bool:
        """True from the ``send`` that met EAGAIN until the queue has drained."""
        return self._writer

    @property
    def queued(self) -> int:
        """Datagrams waiting in the send queue."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Payload bytes waiting in the send queue."""
        return self._queued_bytes

    @property
    def is_closing(self) -> bool:
        return self._closing

    # --------------------------------------------------------------- reading
    def pause_reading(self) -> None:
        """Stop reading: datagrams wait in the kernel's buffer (and drop when it is full)."""
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._sock)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._loop.add_reader(self._sock, self._on_readable)
            self._reading = True

    def _on_readable(self) -> None:
        """Reader callback: drain up to ``batch`` datagrams, deliver them, then errors."""
        if not self._reading:
            return
        stats = self.stats
        stats.reader_wakeups += 1
        features = self.features
        batch: list[ReceivedDatagram] = []
        append = batch.append
        arena = self._arena
        limit = self._arena_limit
        budget = self._batch
        sock = self._sock
        off = 0
        count = 0
        recvs = 0
        nbytes_total = 0
        check_errqueue = False
        calls = 0
        batched = recv_batch if features.mmsg else None
        if batched is not None:
            # recvmmsg: the loop below in C, many datagrams per system call.
            key = self._pktinfo_key if features.pktinfo else None
            level, kind = key if key is not None else (-1, -1)
            slot = 0
            while count < budget and slot < budget and nbytes_total < RECV_BYTES:
                n, used, msgs, nbytes, truncated, gro_msgs, gro_dgrams, ncalls, err, big = batched(
                    self._fd,
                    arena,
                    RECV_WINDOW,
                    slot,
                    budget,
                    budget - count,
                    batch,
                    features.gro,
                    level,
                    kind,
                    self._local_cache,
                    self._decode_pktinfo,
                    self._addr_cache,
                    RECV_BYTES - nbytes_total,
                    self._rx_largest,
                )
                if big:
                    self._rx_largest = big
                slot += used
                count += n
                recvs += msgs
                calls += ncalls
                nbytes_total += nbytes
                if truncated:
                    stats.truncated += truncated
                if gro_msgs:
                    stats.gro_receives += gro_msgs
                    stats.gro_segments += gro_dgrams
                if not err:
                    break
                if not self._recv_failed(OSError(err, os.strerror(err))):
                    break
                check_errqueue = True
                count += 1
            if slot >= budget or nbytes_total >= RECV_BYTES:
                check_errqueue = True  # the windows or bytes are used up: a full batch
        elif features.gro or features.pktinfo:
            recvmsg_into = sock.recvmsg_into
            pktinfo_key = self._pktinfo_key if features.pktinfo else None
            local_cache = self._local_cache
            while count < budget and off <= limit:
                try:
                    nbytes, ancdata, flags, addr = recvmsg_into(
                        [arena[off : off + RECV_WINDOW]], _ANCBUF
                    )
                except BlockingIOError:
                    break
                except OSError as exc:
                    if not self._recv_failed(exc):
                        break
                    check_errqueue = True
                    count += 1
                    continue
                recvs += 1
                if flags & _MSG_TRUNC:
                    stats.truncated += 1
                    continue
                segment = 0
                local: Address | None = None
                for level, kind, data in ancdata:
                    if kind == UDP_GRO and level == SOL_UDP and len(data) >= 4:
                        segment = int.from_bytes(data[:4], sys.byteorder)
                    elif (level, kind) == pktinfo_key:
                        try:
                            local = local_cache[data]
                        except KeyError:
                            local = self._decode_pktinfo(data)
                end = off + nbytes
                nbytes_total += nbytes
                if 0 < segment < nbytes:
                    stats.gro_receives += 1
                    pieces = split_gro(batch, arena, off, end, segment, addr, local)
                    count += pieces
                    stats.gro_segments += pieces
                else:
                    append((arena[off:end], addr, local))
                    count += 1
                off = end
        else:
            recvfrom_into = sock.recvfrom_into
            while count < budget and off <= limit:
                try:
                    nbytes, addr = recvfrom_into(arena[off : off + RECV_WINDOW], RECV_WINDOW)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if not self._recv_failed(exc):
                        break
                    check_errqueue = True
                    count += 1
                    continue
                recvs += 1
                end = off + nbytes
                nbytes_total += nbytes
                append((arena[off:end], addr, None))
                count += 1
                off = end
        stats.recvs += recvs
        stats.recv_calls += calls or recvs
        stats.bytes_received += nbytes_total
        if recvs == 0 or count >= budget or off > limit:
            # Nothing to read: an EPOLLERR wakeup for entries left in the error
            # queue (epoll reports EPOLLERR while it is not empty). Or the batch
            # is full: look at the queue too, so a busy socket cannot starve it.
            check_errqueue = True
        if batch:
            stats.datagrams_received += len(batch)
            self._on_datagrams(batch)
        if check_errqueue and features.recverr and not self._closing:
            self._drain_errqueue()
        if self._errors and not self._closing:
            self._report_errors()

    def _recv_failed(self, exc: OSError) -> bool:
        """A receive call failed; True if reading may go on (a pending socket error)."""
        code = exc.errno or 0
        if code in _SOCKET_ERRNOS:
            # sk_err, set by an ICMP error for an earlier datagram. With the error
            # queue the details (and the right destination) are read from it.
            self.stats.recv_errors += 1
            if not self.features.recverr:
                self._errors.append(DatagramError(self._peer, code, b"", ErrorOrigin.SOCKET))
            return True
        log.warning("udp_recv_error", error=repr(exc))
        return False

    def _decode_pktinfo(self, data: bytes) -> Address | None:
        """The local address of an ``in_pktinfo``/``in6_pktinfo``, cached by its bytes."""
        local: Address | None = None
        if self._family == socket.AF_INET:
            if len(data) >= _IN_PKTINFO.size:
                _ifindex, _spec_dst, addr = _IN_PKTINFO.unpack_from(data)
                local = (socket.inet_ntop(socket.AF_INET, addr), self._port)
        elif len(data) >= _IN6_PKTINFO.size:
            addr6, ifindex = _IN6_PKTINFO.unpack_from(data)
            # As recvfrom fills sin6_scope_id: the interface only for link-local (fe80::/10).
            scope = ifindex if addr6[0] == 0xFE and addr6[1] & 0xC0 == 0x80 else 0
            local = (socket.inet_ntop(socket.AF_INET6, addr6), self._port, 0, scope)
        cache = self._local_cache
        if len(cache) >= 256:
            cache.clear()
        cache[bytes(data)] = local
        return local

    # ----------------------------------------------------------- error queue
    def _drain_errqueue(self) -> list[DatagramError]:
        """Read the error queue (``MSG_ERRQUEUE``) into the pending errors; return the new ones."""
        sock = self._sock
        new: list[DatagramError] = []
        for _ in range(_ERRQUEUE_BUDGET):
            try:
                payload, ancdata, _flags, addr = sock.recvmsg(
                    _ERRQUEUE_PAYLOAD, _ERR_ANCBUF, MSG_ERRQUEUE
                )
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # pragma: no cover - nothing else is documented
                log.warning("udp_errqueue_error", error=repr(exc))
                break
            self.stats.errqueue_reads += 1
            for level, kind, data in ancdata:
                if (level, kind) in (
                    (_IPPROTO_IP, IP_RECVERR),
                    (_IPPROTO_IPV6, IPV6_RECVERR),
                ) and len(data) >= _SOCK_EXTENDED_ERR.size:
                    new.append(self._extended_error(data, payload, addr or None))
                    break
        self._errors.extend(new)
        if new and self._uvloop and self._reading:
            # The poll handle may have been stopped by the EPOLLERR these errors
            # raised (see __init__): a new one.
            self._loop.remove_reader(self._sock)
            self._loop.add_reader(self._sock, self._on_readable)
        return new

    def _check_errqueue(self) -> None:
        """uvloop only: errors nobody read mean the reader may be stopped."""
        self._guard = None
        if self._closing:
            return
        if self._drain_errqueue():
            self._schedule_report()
        self._guard = self._loop.call_later(UVLOOP_ERRQUEUE_CHECK, self._check_errqueue)

    @staticmethod
    def _extended_error(data: bytes, payload: bytes, dest: Address | None) -> DatagramError:
        """Decode a ``sock_extended_err`` and the offender address after it."""
        ee_errno, origin, icmp_type, icmp_code, _pad, info, _data = _SOCK_EXTENDED_ERR.unpack_from(
            data
        )
        offender: Address | None = None
        at = _SOCK_EXTENDED_ERR.size  # SO_EE_OFFENDER(ee): the sockaddr right after it
        if len(data) >= at + 2:
            family = _SA_FAMILY.unpack_from(data, at)[0]
            if family == socket.AF_INET and len(data) >= at + 8:
                _port, addr4 = _SOCKADDR_IN.unpack_from(data, at + 2)
                offender = (socket.inet_ntop(socket.AF_INET, addr4), 0)
            elif family == socket.AF_INET6 and len(data) >= at + 28:
                _port, _flow, addr6 = _SOCKADDR_IN6.unpack_from(data, at + 2)
                scope = _SCOPE_ID.unpack_from(data, at + 24)[0]
                offender = (socket.inet_ntop(socket.AF_INET6, addr6), 0, 0, scope)
        try:
            kind = ErrorOrigin(origin)
        except ValueError:  # timestamping/zerocopy origins never reach a UDP socket here
            kind = ErrorOrigin.LOCAL
        if kind is not ErrorOrigin.ICMP and kind is not ErrorOrigin.ICMP6:
            icmp_type = icmp_code = 0
        return DatagramError(dest, ee_errno, payload, kind, icmp_type, icmp_code, info, offender)

    def _report_errors(self) -> None:
        self._report_scheduled = False
        errors = self._errors
        if not errors or self._closing:
            errors.clear()
            return
        self._errors = []
        self.stats.errors_reported += len(errors)
        on_error = self._on_error
        for err in errors:
            if on_error is not None:
                on_error(err)
            elif log.info_enabled:
                log.logger.info("udp_error", dest=err.dest, errno=err.errno, origin=err.origin.name)

    def _schedule_report(self) -> None:
        if self._errors and not self._report_scheduled:
            self._report_scheduled = True
            self._loop.call_soon(self._report_errors)

    # --------------------------------------------------------------- sending
    def send(self, items: Sequence[SendItem]) -> bool:
        """Send ``(payload, destination, source)`` items in order.

        Returns True when everything was handed to the kernel, False when
        writing is paused: the rest is queued (up to ``max_queue`` bytes;
        beyond that datagrams are dropped and counted) and sent when the socket
        is writable again; ``on_writable`` is called once the queue is empty.
        The caller should stop producing until then. Payloads that are not
        ``bytes`` are copied when queued, so no buffer is kept after the call.

        Send errors never raise: each failed datagram is dropped, counted and
        reported to ``on_error`` (from the loop, not from inside this call).
        """
        if self._closing:
            raise InvalidStateError("send() on a closed UdpSocketIO")
        if self._writer:  # paused: keep the order behind what is queued
            self._enqueue(items, 0)
            return False
        if type(items) is not list:
            items = list(items)
        sent = self._send_items(items, 0)
        if self._errors:
            self._schedule_report()
        if sent < len(items):
            self._enqueue(items, sent)
            self._pause()
            return False
        return True

    def _send_items(self, items: list[SendItem], start: int) -> int:
        """Send ``items[start:]``; return the index of the first one not sent (EAGAIN)."""
        n = len(items)
        i = start
        batched = send_batch if self.features.mmsg else None
        stats = self.stats
        while i < n:
            failed = 0
            if batched is not None:
                # sendmmsg: the loop below in C, many messages per system call.
                i, code, msgs, dgrams, nbytes, gso_msgs, gso_dgrams, calls = batched(
                    self._fd,
                    items,
                    i,
                    self._peer is not None,
                    GSO_MAX_SEGMENTS if self.features.gso else 1,
                    GSO_MAX_BYTES,
                    self._src_cmsg,
                    self._family,
                )
                stats.sends += msgs
                stats.send_calls += calls
                stats.datagrams_sent += dgrams
                stats.bytes_sent += nbytes
                if gso_msgs:
                    stats.gso_sends += gso_msgs
                    stats.gso_segments += gso_dgrams
                if code == 0:
                    return n
                if code == _errno.EAGAIN or code == _errno.EWOULDBLOCK:
                    stats.eagain += 1
                    return i
                if code == _NEED_SOURCE:
                    src = items[i][2]
                    assert src is not None
                    self._source_cmsg(src)  # fills the cache
                    continue
                # The message at i goes the Python way, which handles errors,
                # retries and GSO fallbacks (an errno: its first attempt's).
                failed = max(code, 0)
            j = self._send_message(items, i, failed)
            if j < 0:
                return -1 - j
            i = j
        return n

    def _send_message(self, items: list[SendItem], i: int, failed: int = 0) -> int:
        """Send the message that starts at ``items[i]`` (a datagram, or a GSO group)
        with Python's socket calls; return the index after it, or -1 - k when
        ``items[k]`` met EAGAIN. ``failed``: the errno ``sendmmsg`` met for this
        message (the same grouping), handled as a first attempt's error."""
        payload, dest, src = items[i]
        j = i + 1
        if self.features.gso:
            # Consecutive datagrams to the same destination from the same
            # source, all of this size but a shorter last one.
            j, total = gso_group(items, i, GSO_MAX_SEGMENTS, GSO_MAX_BYTES)
        if j - i > 1:
            result = self._send_gso(items, i, j, len(payload), total, dest, src, failed)
            if result == _SPLIT:
                for k in range(i, j):
                    p, d, s = items[k]
                    if self._send_one(p, d, s) == _BLOCKED:
                        return -1 - k
            elif result == _BLOCKED:
                return -1 - i
        elif self._send_one(payload, dest, src, failed) == _BLOCKED:
            return -1 - i
        return j

    def _send_gso(
        self,
        items: Sequence[SendItem],
        i: int,
        j: int,
        size: int,
        total: int,
        dest: Address | None,
        src: Address | None,
        failed: int = 0,
    ) -> int:
        """One ``sendmsg`` of ``items[i:j]`` with ``UDP_SEGMENT`` = ``size``;
        ``failed``: the errno a first attempt (``sendmmsg``) already met."""
        cmsg = self._gso_cmsg.get(size)
        if cmsg is None:
            cmsg = self._gso_cmsg[size] = (SOL_UDP, UDP_SEGMENT, _GSO_SIZE.pack(size))
        ancdata = [cmsg] if src is None else [cmsg, self._source_cmsg(src)]
        buffers = [items[k][0] for k in range(i, j)]
        stats = self.stats
        for attempt in (0, 1):
            try:
                if attempt == 0 and failed:
                    raise OSError(failed, os.strerror(failed))
                if self._peer is not None or dest is None:
                    self._sock.sendmsg(buffers, ancdata)
                else:
                    self._sock.sendmsg(buffers, ancdata, 0, dest)
            except BlockingIOError:
                stats.eagain += 1
                return _BLOCKED
            except OSError as exc:
                code = exc.errno or 0
                if attempt == 0 and code != _errno.EMSGSIZE and self._maybe_stale(code):
                    if self.features.recverr:
                        self._drain_errqueue()
                    continue
                stats.gso_failures += 1
                if self.features.recverr:
                    self._drain_errqueue()  # it may have consumed a pending error
                if code == _errno.EIO:
                    # No checksum offload on the route's device (or IPsec): Linux
                    # cannot segment this socket's datagrams; never try again.
                    self.features.gso = False
                    log.warning("udp_gso_disabled", error=repr(exc))
                return _SPLIT  # EMSGSIZE (segment above the path MTU), EINVAL …: one by one
            stats.sends += 1
            stats.send_calls += 1
            stats.gso_sends += 1
            stats.gso_segments += j - i
            stats.datagrams_sent += j - i
            stats.bytes_sent += total
            return _SENT
        return _SPLIT  # pragma: no cover - the loop always returns

    def _send_one(
        self, payload: Payload, dest: Address | None, src: Address | None, failed: int = 0
    ) -> int:
        """Send one datagram; ``failed``: the errno a first attempt already met."""
        sock = self._sock
        stats = self.stats
        for attempt in (0, 1):
            try:
                if attempt == 0 and failed:
                    raise OSError(failed, os.strerror(failed))
                if src is not None:
                    anc = [self._source_cmsg(src)]
                    if self._peer is not None or dest is None:
                        sock.sendmsg([payload], anc)
                    else:
                        sock.sendmsg([payload], anc, 0, dest)
                elif self._peer is not None or dest is None:
                    sock.send(payload)
                else:
                    sock.sendto(payload, dest)
            except BlockingIOError:
                stats.eagain += 1
                return _BLOCKED
            except OSError as exc:
                code = exc.errno or 0
                target = dest if self._peer is None else self._peer
                if self.features.recverr and self._claim_local_error(code, target, payload):
                    stats.send_errors += 1
                    return _DROPPED
                if attempt == 0 and self._maybe_stale(code):
                    continue
                stats.send_errors += 1
                self._errors.append(
                    DatagramError(
                        target, code, bytes(payload[:_ERRQUEUE_PAYLOAD]), ErrorOrigin.SOCKET
                    )
                )
                return _DROPPED
            stats.sends += 1
            stats.send_calls += 1
            stats.datagrams_sent += 1
            stats.bytes_sent += len(payload)
            return _SENT
        return _DROPPED  # pragma: no cover - the loop always returns

    def _claim_local_error(self, code: int, target: Address | None, payload: Payload) -> bool:
        """Read the error queue after a failed send; True if it holds this very failure.

        The kernel queues some local send errors itself (``ip_local_error``:
        EMSGSIZE with the MTU in ``ee_info``). That entry is the report, with the
        destination completed (Linux puts the *connected* port there, 0 on an
        unconnected socket) and the datagram's payload.
        """
        new = self._drain_errqueue()
        if not new or target is None:
            return False
        errors = self._errors
        claimed = False
        k = len(errors) - len(new)
        while k < len(errors):
            e = errors[k]
            if (
                e.origin is ErrorOrigin.LOCAL
                and e.errno == code
                and e.dest is not None
                and e.dest[0] == target[0]
                and e.dest[1] in (0, target[1])
            ):
                if claimed:
                    # The same failure queued twice: sendmmsg drops the error of a
                    # message after others were sent (Linux returns their count),
                    # and the retry that reports it queues the entry again.
                    del errors[k]
                    continue
                errors[k] = replace(e, dest=target, payload=bytes(payload[:_ERRQUEUE_PAYLOAD]))
                claimed = True
            k += 1
        return claimed

    def _maybe_stale(self, code: int) -> bool:
        """Whether a failed send may have returned an earlier datagram's pending error.

        The kernel hands the pending socket error (``sk_err``, set by an ICMP
        error) to the next send on the socket, whatever its destination, and
        that send does not happen. Linux sets it on an unconnected socket only
        with IP_RECVERR (whose error queue then has the details, read by the
        caller); on a connected socket it is the peer's. Then the send is
        worth one more try.
        """
        if code not in _SOCKET_ERRNOS:
            return False
        if self.features.recverr:
            return True
        if self._peer is not None:
            self._errors.append(DatagramError(self._peer, code, b"", ErrorOrigin.SOCKET))
            return True
        return False

    def _source_cmsg(self, src: Address) -> tuple[int, int, bytes]:
        """The PKTINFO control message that sends from local address ``src``."""
        cmsg = self._src_cmsg.get(src)
        if cmsg is None:
            if not self.features.pktinfo:
                raise InvalidStateError("a source address needs features.pktinfo")
            if self._family == socket.AF_INET:
                # ipi_spec_dst is the source address; ipi_ifindex 0 lets routing choose.
                data = _IN_PKTINFO.pack(0, socket.inet_pton(socket.AF_INET, src[0]), bytes(4))
                cmsg = (_IPPROTO_IP, IP_PKTINFO, data)
            else:
                # A v4-mapped source is accepted for a v4-mapped destination
                # (ip_cmsg_send with allow_ipv6); the scope picks the interface.
                ifindex = src[3] if len(src) > 3 else 0
                data = _IN6_PKTINFO.pack(socket.inet_pton(socket.AF_INET6, src[0]), ifindex)
                cmsg = (_IPPROTO_IPV6, IPV6_PKTINFO, data)
            if len(self._src_cmsg) >= 256:
                self._src_cmsg.clear()
            self._src_cmsg[src] = cmsg
        return cmsg

    def _enqueue(self, items: Sequence[SendItem], start: int) -> None:
        queue = self._queue
        limit = self._max_queue
        for k in range(start, len(items)):
            payload, dest, src = items[k]
            size = len(payload)
            if self._queued_bytes + size > limit:
                self.stats.dropped_queue_full += len(items) - k
                break
            if src is not None and not self.features.pktinfo:
                raise InvalidStateError("a source address needs features.pktinfo")
            if type(payload) is not bytes:
                payload = bytes(payload)  # the caller's buffer may change after send()
            queue.append((payload, dest, src))
            self._queued_bytes += size
        if len(queue) > self.stats.queued_max:
            self.stats.queued_max = len(queue)

    def _pause(self) -> None:
        if not self._writer:
            self._writer = True
            self.stats.pauses += 1
            self._loop.add_writer(self._sock, self._on_write_ready)

    def _on_write_ready(self) -> None:
        """Writer callback: flush the queue; resume the producer once it is empty."""
        queue = self._queue
        items = list(queue)
        queue.clear()
        self._queued_bytes = 0
        sent = self._send_items(items, 0)
        if self._errors:
            self._schedule_report()
        if sent < len(items):
            queue.extend(items[sent:])
            self._queued_bytes = sum(len(p) for p, _d, _s in queue)
            return
        self._writer = False
        self._loop.remove_writer(self._sock)
        if self._closing:
            self._finalize()
        elif self._on_writable is not None:
            self._on_writable()

    # --------------------------------------------------------------- closing
    def close(self) -> None:
        """Stop reading; send what is queued, then close the socket."""
        if self._closing:
            return
        self._closing = True
        self.pause_reading()
        if not self._queue:
            self._finalize()

    def abort(self) -> None:
        """Close now, dropping anything queued."""
        if self._closed:
            return
        self._closing = True
        self.pause_reading()
        self._queue.clear()
        self._queued_bytes = 0
        self._finalize()

    def _finalize(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None
        if self._writer:
            self._writer = False
            self._loop.remove_writer(self._sock)
        self._errors.clear()
        self._closed = True
        self._sock.close()
        if not self._closed_fut.done():
            self._closed_fut.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until the socket is closed (after :meth:`close` has flushed the queue)."""
        await asyncio.shield(self._closed_fut)
