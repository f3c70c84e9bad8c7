# Stub for the optional C extension built from rudp/_accel.c (see setup.py).
# Arguments are any C-contiguous buffer; non-contiguous ones raise BufferError.

from collections.abc import Callable, Sequence

from rudp.aio.sockio import Address, ReceivedDatagram, SendItem
from rudp.wire.segment import ParseError, Segment

#: SHA-256 (hex) of the rudp/_accel.c this module was compiled from.
source_sha256: str

def ones_complement_sum(data: bytes | bytearray | memoryview, /) -> int: ...
def checksum(data: bytes | bytearray | memoryview, /) -> int: ...
def checksum2(
    head: bytes | bytearray | memoryview, payload: bytes | bytearray | memoryview, /
) -> int: ...
def verify(data: bytes | bytearray | memoryview, /) -> bool: ...
def bind_segment(segment_class: type[Segment], parse_error: type[ParseError], /) -> None: ...
def parse_segment(data: bytes | bytearray | memoryview, *, check: bool = True) -> Segment: ...
def build_segment(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    wnd: int,
    payload: bytes | bytearray | memoryview = b"",
    options: bytes = b"",
    urp: int = 0,
    compute_checksum: bool = True,
) -> bytes: ...
def build_segment_ts(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    wnd: int,
    payload: bytes | bytearray | memoryview,
    tsval: int,
    tsecr: int,
    more_options: bytes = b"",
    compute_checksum: bool = True,
) -> bytes: ...
def earliest(deadlines: list[float], /) -> float: ...
def siphash24(
    key: bytes | bytearray | memoryview, data: bytes | bytearray | memoryview, /
) -> int: ...
def coalesce(
    datagrams: Sequence[bytes | bytearray | memoryview], start: int, limit: int, /
) -> tuple[int, bytes | None]: ...
def build_burst(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    last_flags: int,
    wnd: int,
    data: bytes | bytearray | memoryview,
    offset: int,
    size: int,
    count: int,
    ts: tuple[int, int] | None,
    compute_checksum: bool,
    /,
) -> list[bytes]: ...
def gso_group(
    items: list[SendItem], start: int, limit: int, max_bytes: int, /
) -> tuple[int, int]: ...
def split_gro(
    batch: list[ReceivedDatagram],
    view: memoryview,
    start: int,
    end: int,
    segment: int,
    source: Address,
    local: Address | None,
    /,
) -> int: ...
def source_run(batch: list[ReceivedDatagram], start: int, /) -> tuple[int, list[memoryview]]: ...

# Linux only (sendmmsg/recvmmsg); rudp.aio.sockio looks them up with getattr.
def send_batch(
    fd: int,
    items: list[SendItem],
    start: int,
    connected: bool,
    gso_limit: int,
    gso_max_bytes: int,
    sources: dict[Address, tuple[int, int, bytes]],
    family: int,
    /,
) -> tuple[int, int, int, int, int, int, int, int]: ...
def recv_batch(
    fd: int,
    arena: memoryview,
    window: int,
    slot: int,
    slots: int,
    budget: int,
    batch: list[ReceivedDatagram],
    gro: bool,
    pktinfo_level: int,
    pktinfo_type: int,
    locals: dict[bytes, Address | None],
    decode_local: Callable[[bytes], Address | None],
    addresses: dict[bytes, Address],
    max_bytes: int,
    expect: int,
    /,
) -> tuple[int, int, int, int, int, int, int, int, int, int]: ...
