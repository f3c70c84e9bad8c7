"""Record simulator traffic as pcap: a network tap and a host-side capture.

Two vantage points, because they see different things:

* :func:`pcap_tap` -- a :meth:`rudp.sim.Network.add_tap` callback: a capture *on
  the wire at the entrance of a link*. It sees every datagram offered to the
  network, timestamped when it was sent, with the bytes as sent, and chooses by
  its fate which ones to record (default: those that reach their destination).
* :class:`HostCapture` -- wraps a node, like ``tcpdump`` on that host: every
  datagram the host sends (timestamped when sent, whatever the network does to it
  afterwards: a capture on the sender shows the segments that are lost later)
  and every datagram delivered to it (timestamped on arrival, with the bytes as
  received: corrupted, and duplicated copies twice). Round-trip times in such a
  file are the ones the host measures.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..sim.link import FATES, Address
from ..sim.network import SimNode, Tap
from ..wire import ParseError, parse_segment
from .writer import PcapWriter

__all__ = ["ALL_FATES", "DELIVERED_FATES", "DROPPED_FATES", "HostCapture", "pcap_tap"]

#: Fates of datagrams that reach their destination (possibly late, twice or damaged).
DELIVERED_FATES = frozenset({"delivered", "reordered", "duplicated", "corrupted"})
#: Fates of datagrams the network drops.
DROPPED_FATES = FATES - DELIVERED_FATES
#: Everything offered to the network: what the senders put on the wire.
ALL_FATES = FATES


def pcap_tap(
    writer: PcapWriter,
    *,
    link: tuple[Address, Address] | None = None,
    address: Address | None = None,
    fates: Collection[str] = DELIVERED_FATES,
) -> Tap:
    """A tap for :meth:`rudp.sim.Network.add_tap` that records into ``writer``.

    ``link=(src, dst)`` records one direction of one path; ``address=a`` records
    every datagram from or to ``a``; neither records everything. Only datagrams
    whose fate is in ``fates`` are written: the default, :data:`DELIVERED_FATES`,
    is what crossed the network; :data:`ALL_FATES` is what was sent, drops
    included. Each datagram is recorded once, at its send time, with the bytes as
    sent (a ``"corrupted"`` datagram appears undamaged, a ``"duplicated"`` one
    once). For a capture as a host sees it, use :class:`HostCapture`.
    """
    if link is not None and address is not None:
        raise ValueError("pcap_tap: give link or address, not both")
    wanted = frozenset(fates)
    unknown = wanted - FATES
    if unknown:
        raise ValueError(f"pcap_tap: unknown fates {sorted(unknown)}; known: {sorted(FATES)}")
    write = writer.write

    if link is not None:
        link_src, link_dst = link

        def tap(t: float, src: Address, dst: Address, data: bytes, fate: str) -> None:
            if fate in wanted and src == link_src and dst == link_dst:
                write(t, src, dst, data)

    elif address is not None:
        addr = address

        def tap(t: float, src: Address, dst: Address, data: bytes, fate: str) -> None:
            if fate in wanted and (src == addr or dst == addr):
                write(t, src, dst, data)

    else:

        def tap(t: float, src: Address, dst: Address, data: bytes, fate: str) -> None:
            if fate in wanted:
                write(t, src, dst, data)

    return tap


class HostCapture:
    """A :class:`rudp.sim.SimNode` wrapper that records a host's own traffic.

    Attach the wrapper instead of the node: ``net.add_node(HostCapture(host, A,
    writer), A)``. ``sent`` and ``received`` choose the directions recorded.

    ``damaged=False`` leaves out received datagrams that rudp drops as malformed
    (bad checksum, broken header). A real capture holds them, and so does this
    one by default; but Wireshark's TCP analysis does not skip segments whose
    checksum is bad, so a damaged header misleads it (a flipped SYN bit starts a
    new conversation for it). Leave them out when the file is for analysis.
    """

    __slots__ = ("addr", "damaged", "node", "received", "sent", "writer")

    def __init__(
        self,
        node: SimNode,
        addr: Address,
        writer: PcapWriter,
        *,
        sent: bool = True,
        received: bool = True,
        damaged: bool = True,
    ) -> None:
        self.node = node
        self.addr = addr
        self.writer = writer
        self.sent = sent
        self.received = received
        self.damaged = damaged

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if self.received and (self.damaged or _well_formed(data)):
            self.writer.write(now, addr, self.addr, data)
        self.node.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> Sequence[tuple[bytes, Address]]:
        out = self.node.datagrams_to_send(now)
        if self.sent and out:
            write = self.writer.write
            me = self.addr
            for data, dst in out:
                write(now, me, dst, data)
        return out

    def get_timer(self) -> float | None:
        return self.node.get_timer()

    def handle_timer(self, now: float) -> None:
        self.node.handle_timer(now)


def _well_formed(data: bytes) -> bool:
    """True if rudp's parser accepts ``data`` (docs/wire.md, "Malformed datagrams")."""
    try:
        parse_segment(data)
    except ParseError:
        return False
    return True
