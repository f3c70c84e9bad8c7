"""TLS over rudp streams (docs/tls.md), over real UDP sockets, on both loops.

A throwaway CA and a server certificate for ``localhost``/127.0.0.1 are made once
per session, with the ``cryptography`` package if it is installed, else with the
``openssl`` command; without either the tests skip, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import random
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

import rudp
from rudp.sim import LinkConfig
from rudp.sim.proxy import UdpProxy

HOST = "127.0.0.1"
NAME = "localhost"  # the name in the server's certificate (and 127.0.0.1)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# -- certificates -----------------------------------------------------------------


def _certs_with_cryptography(d: Path) -> bool:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        return False
    now = datetime.datetime.now(datetime.timezone.utc)
    life = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))

    def builder(
        subject: str, issuer: str, key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(life[0])
            .not_valid_after(life[1])
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )

    usage = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("rudp test CA", "rudp test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.KeyUsage(**{**usage, "key_cert_sign": True, "crl_sign": True}), True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address(HOST))]
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    leaf = (
        builder(NAME, "rudp test CA", key)
        .add_extension(x509.SubjectAlternativeName(names), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.KeyUsage(**{**usage, "digital_signature": True}), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "cert.pem").write_bytes(leaf.public_bytes(pem))
    (d / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return True


def _certs_with_openssl(d: Path) -> str | None:
    """Make the files with the openssl command; None, or why it could not."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return "neither the cryptography package nor the openssl command is available"
    (d / "leaf.ext").write_text(
        f"subjectAltName=DNS:{NAME},IP:{HOST}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        [
            *(openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"),
            *("-subj", "/CN=rudp test CA", "-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
            *("-addext", "subjectKeyIdentifier=hash"),
        ],
        [openssl, "req", *ec, "-keyout", "key.pem", "-out", "leaf.csr", "-subj", f"/CN={NAME}"],
        [
            *(openssl, "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
            *("-CAcreateserial", "-out", "cert.pem", "-days", "2", "-extfile", "leaf.ext"),
        ],
    ]
    for cmd in steps:
        res = subprocess.run(cmd, cwd=d, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            return f"openssl could not make a test certificate: {res.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls")
    if not _certs_with_cryptography(d) and (why := _certs_with_openssl(d)) is not None:
        pytest.skip(why)
    return d


@pytest.fixture
def server_ctx(certs: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    return ctx


@pytest.fixture
def client_ctx(certs: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs / "ca.pem"))


# -- helpers ----------------------------------------------------------------------


def on_uvloop() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (polling) until ``predicate()``; TimeoutError otherwise. Never asserts on time."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.002)


@contextlib.asynccontextmanager
async def serving(handler: Handler, **kw: object) -> AsyncIterator[rudp.Server]:
    server = await rudp.start_server(handler, HOST, 0, **kw)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.close()
        server.abort_clients()
        await server.wait_closed()


def port_of(server: rudp.Server) -> int:
    return int(server.addresses[0][1])


def rudp_state(writer: asyncio.StreamWriter) -> str:
    """The state of the rudp connection under a (TLS) writer."""
    return str(writer.get_extra_info(rudp.STATS_KEY)["state"])


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        return
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


# -- streams over TLS ---------------------------------------------------------------


async def test_echo_over_tls13(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    async with serving(echo, ssl=server_ctx) as server:
        reader, writer = await rudp.open_connection(
            HOST, port_of(server), ssl=client_ctx, server_hostname=NAME
        )
        writer.write(b"hello over TLS over rudp\n")
        assert await reader.readline() == b"hello over TLS over rudp\n"
        sslobj = writer.get_extra_info("ssl_object")
        assert sslobj.version() == "TLSv1.3"
        assert writer.get_extra_info("peercert")["subjectAltName"][0] == ("DNS", NAME)
        assert writer.get_extra_info("cipher") is not None
        # What TLS does not know falls through to the rudp transport under it.
        assert writer.get_extra_info("peername") == (HOST, port_of(server))
        assert rudp_state(writer) == "ESTABLISHED"
        assert isinstance(writer.get_extra_info("rudp_connection"), rudp.engine.Connection)
        # Half-close: as asyncio's TLS transports, no write_eof (TLS has no
        # half-close of its own; close() sends close_notify).
        assert not writer.can_write_eof()
        with pytest.raises(NotImplementedError):
            writer.write_eof()
        (conn,) = server.connections
        assert isinstance(conn, rudp.RudpTransport)
        writer.close()
        await writer.wait_closed()


async def test_4mb_each_way_sha256(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    size = 4 * 1024 * 1024
    rng = random.Random(4)
    up, down = rng.randbytes(size), rng.randbytes(size)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send() -> None:
            for i in range(0, size, 1 << 20):
                writer.write(down[i : i + (1 << 20)])
                await writer.drain()

        sender = asyncio.ensure_future(send())
        got = await reader.readexactly(size)
        await sender
        writer.write(hashlib.sha256(got).digest())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with serving(handle, ssl=server_ctx) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server), ssl=client_ctx)
        assert writer.get_extra_info("ssl_object").server_hostname == HOST  # default: host

        async def send() -> None:
            for i in range(0, size, 1 << 20):
                writer.write(up[i : i + (1 << 20)])
                await writer.drain()

        sender = asyncio.ensure_future(send())
        got = await asyncio.wait_for(reader.readexactly(size), 60)
        await sender
        assert hashlib.sha256(got).digest() == hashlib.sha256(down).digest()
        assert await reader.readexactly(32) == hashlib.sha256(up).digest()
        assert await reader.read() == b""  # the server's close_notify
        writer.close()
        await writer.wait_closed()


async def test_server_hostname_mismatch_raises_cert_verification_error(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    called = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal called
        called += 1

    async with serving(handle, ssl=server_ctx) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match=r"wrong\.example"):
            await rudp.open_connection(
                HOST, port_of(server), ssl=client_ctx, server_hostname="wrong.example"
            )
        # ssl=True: the default context, which does not trust the test CA.
        with pytest.raises(ssl.SSLCertVerificationError):
            await rudp.open_connection(HOST, port_of(server), ssl=True, server_hostname=NAME)
        # Both connections are gone on the server too, and its callback never ran.
        await until(lambda: not server.connections)
        assert called == 0
        # server_hostname="" skips the name check, not the chain's (asyncio's rule).
        _reader, writer = await rudp.open_connection(
            HOST, port_of(server), ssl=client_ctx, server_hostname=""
        )
        assert writer.get_extra_info("ssl_object").server_hostname is None
        writer.close()
        await writer.wait_closed()


async def test_handshake_timeout_against_a_non_tls_peer(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """A client's handshake with a plain rudp server that never answers ends with
    asyncio's ConnectionAbortedError after ssl_handshake_timeout, and the connection
    is reset (one that hangs up or resets first: ConnectionResetError); a TLS
    server's handshake with a silent plain client times out too."""
    got: list[bytes] = []
    ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                got.append(data)  # the ClientHello, unanswered
        except ConnectionError as exc:
            ended.set_result(exc)
            return
        ended.set_result(None)

    async with serving(silent) as server:
        with pytest.raises(ConnectionAbortedError, match="handshake"):
            await rudp.open_connection(
                HOST, port_of(server), ssl=client_ctx, ssl_handshake_timeout=0.3
            )
        assert isinstance(await asyncio.wait_for(ended, 10), ConnectionResetError)
        assert got and got[0][0] == 0x16  # a TLS handshake record did arrive

    def hang_up(reset: bool) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)  # in the middle of the TLS handshake:
            if reset:
                writer.transport.abort()  # RST
            else:
                writer.close()  # FIN

        return handle

    for reset in (False, True):
        async with serving(hang_up(reset)) as server:
            with pytest.raises(ConnectionResetError):
                await rudp.open_connection(HOST, port_of(server), ssl=client_ctx)

    async with serving(echo, ssl=server_ctx, ssl_handshake_timeout=0.3) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server))  # no TLS
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 10)
        assert not server.connections
        writer.close()


async def test_close_sends_close_notify_before_fin(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """close() ends TLS first: the peer reads EOF from close_notify while the rudp
    connection is still ESTABLISHED (no FIN yet; Python 3.11+), answers with its
    own, and both ends finish cleanly, the application seeing connection_lost(None)
    (a peer that does not answer: test_shutdown_timeout_when_the_peer_never_answers)."""
    seen: asyncio.Future[tuple[bytes, str]] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        seen.set_result((data, rudp_state(writer)))
        writer.close()
        await writer.wait_closed()

    async with serving(handle, ssl=server_ctx) as server:
        _reader, writer = await rudp.open_connection(
            HOST, port_of(server), ssl=client_ctx, ssl_shutdown_timeout=10
        )
        conn = writer.get_extra_info("rudp_connection")
        writer.write(b"last words")
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 10)  # no TimeoutError: answered
        data, state = await seen
        assert data == b"last words"
        if sys.version_info >= (3, 11):  # 3.10 reports EOF on the FIN that follows
            assert state == "ESTABLISHED"  # EOF from close_notify
        await until(lambda: not server.connections)
        # Then FINs, no RST: an orderly end on both sides.
        assert conn.state.value in ("TIME-WAIT", "CLOSED") and conn.error is None
        (client_ep,) = rudp.aio.shared_endpoints()
        assert client_ep.stats()["rst_sent"] == server.endpoints[0].stats()["rst_sent"] == 0


async def test_server_close_clients_sends_close_notify(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async with serving(echo, ssl=server_ctx) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server), ssl=client_ctx)
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        server.close_clients()
        assert await reader.read() == b""
        if sys.version_info >= (3, 11):  # 3.10 reports EOF on the FIN that follows
            assert rudp_state(writer) == "ESTABLISHED"  # EOF from close_notify
        assert writer.get_extra_info("rudp_connection").error is None
        writer.close()
        await writer.wait_closed()


async def test_abort_resets_both_ends(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    result: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ready\n")
        try:
            await reader.read()
        except ConnectionError as exc:
            result.set_result(exc)
        else:
            result.set_result(None)

    async with serving(handle, ssl=server_ctx) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server), ssl=client_ctx)
        assert await reader.readline() == b"ready\n"
        conn = writer.get_extra_info("rudp_connection")
        writer.transport.abort()
        assert writer.is_closing()
        await writer.wait_closed()  # connection_lost(None): our own abort
        assert isinstance(await asyncio.wait_for(result, 10), ConnectionResetError)
        assert conn.state.value == "CLOSED"
        await until(lambda: not server.connections)


async def test_shutdown_timeout_when_the_peer_never_answers(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """A peer that does not read never answers close_notify: after
    ssl_shutdown_timeout the connection is aborted with TimeoutError (Python 3.10's
    TLS layer has no such timeout: rudp adds it)."""
    release = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.pause_reading()
        writer.write(b"paused\n")
        await release
        with contextlib.suppress(ConnectionError):
            await reader.read()

    async with serving(handle, ssl=server_ctx) as server:
        reader, writer = await rudp.open_connection(
            HOST, port_of(server), ssl=client_ctx, ssl_shutdown_timeout=0.3
        )
        assert await reader.readline() == b"paused\n"
        conn = writer.get_extra_info("rudp_connection")
        writer.close()
        with pytest.raises(TimeoutError, match="SSL shutdown timed out"):
            await asyncio.wait_for(writer.wait_closed(), 10)
        assert conn.state.value == "CLOSED"  # reset, not closed
        release.set_result(None)
        await until(lambda: not server.connections)


async def test_backpressure_through_tls(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """A server that does not read closes rudp's window through the TLS layer
    (memory stays bounded) and the writer's drain() blocks; once it reads, all
    arrives, byte-exact."""
    # Larger than every buffer on the way (rudp's autotune up to 4 MiB each end).
    size = 24 * 1024 * 1024
    chunk = 1 << 18
    payload = random.Random(8).randbytes(size)
    go = asyncio.get_running_loop().create_future()
    digest: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    server_writer: list[asyncio.StreamWriter] = []
    sent = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_writer.append(writer)
        await go
        digest.set_result(hashlib.sha256(await reader.readexactly(size)).digest())
        writer.close()

    async with serving(handle, ssl=server_ctx) as server:
        _reader, writer = await rudp.open_connection(HOST, port_of(server), ssl=client_ctx)
        tls = writer.transport

        async def send() -> None:
            nonlocal sent
            for i in range(0, size, chunk):
                writer.write(payload[i : i + chunk])
                await writer.drain()
                sent += chunk

        sender = asyncio.ensure_future(send())
        # The receiver's window closes (the server's reader, its TLS layer and its
        # rudp receive buffer are full) and the sender's buffers fill up to the
        # high-water mark, where drain() blocks: a fraction of the 8 MiB is taken.
        await until(
            lambda: (
                writer.get_extra_info(rudp.STATS_KEY)["snd_wnd"] == 0
                and tls.get_write_buffer_size() >= tls.get_write_buffer_limits()[1]
            )
        )
        (srv,) = server_writer
        assert srv.get_extra_info(rudp.STATS_KEY)["rcv_wnd"] == 0
        assert sent < size // 2 and not sender.done()
        go.set_result(None)
        await asyncio.wait_for(sender, 60)
        assert await asyncio.wait_for(digest, 60) == hashlib.sha256(payload).digest()
        writer.close()
        await writer.wait_closed()


async def test_tls_through_a_lossy_path(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """Through rudp.sim.proxy.UdpProxy with 2 % loss each way (and 1 ms delay): the
    handshake and 1 MiB each way arrive byte-exact (TLS's MAC would fail on any
    damage), after real losses and retransmissions."""
    size = 1 << 20
    payload = random.Random(2).randbytes(size)
    cfg = LinkConfig(loss=0.02, delay=0.001)
    async with serving(echo, ssl=server_ctx) as server:
        target = (HOST, port_of(server))
        async with UdpProxy((HOST, 0), target, up=cfg, down=cfg, seed=12) as proxy:
            reader, writer = await rudp.open_connection(
                HOST, proxy.address[1], ssl=client_ctx, server_hostname=NAME
            )

            async def send() -> None:
                for i in range(0, size, 1 << 16):
                    writer.write(payload[i : i + (1 << 16)])
                    await writer.drain()

            sender = asyncio.ensure_future(send())
            got = await asyncio.wait_for(reader.readexactly(size), 120)
            await sender
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
            assert proxy.up_stats.lost > 0 and proxy.down_stats.lost > 0
            assert writer.get_extra_info(rudp.STATS_KEY)["retransmissions"] > 0
            writer.close()
            await writer.wait_closed()


# -- protocols, endpoints ------------------------------------------------------------


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.data = bytearray()
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


class BufferedEcho(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buf = bytearray(1000)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        assert transport.get_extra_info("ssl_object") is not None  # after the handshake
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        assert self.transport is not None
        self.transport.write(bytes(self.buf[:nbytes]).upper())


async def test_protocols_over_tls(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    server = await rudp.create_server(BufferedEcho, HOST, 0, ssl=server_ctx)
    async with server:
        transport, protocol = await rudp.create_connection(
            Collect, HOST, port_of(server), ssl=client_ctx, server_hostname=NAME
        )
        assert isinstance(protocol, Collect) and protocol.transport is transport
        assert not isinstance(transport, rudp.RudpTransport)  # asyncio's TLS transport
        transport.write(b"buffered protocol")
        await until(lambda: bytes(protocol.data) == b"BUFFERED PROTOCOL")
        transport.close()
        assert await asyncio.wait_for(protocol.lost, 10) is None


async def test_endpoint_methods_take_ssl(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async with (
        await rudp.create_endpoint((HOST, 0)) as a,
        await rudp.create_endpoint((HOST, 0)) as b,
    ):
        server = await a.start_server(echo, ssl=server_ctx)
        reader, writer = await b.open_connection(
            HOST, a.local_address[1], ssl=client_ctx, server_hostname=NAME
        )
        writer.write(b"endpoint\n")
        assert await reader.readline() == b"endpoint\n"
        assert writer.get_extra_info("socket") is b.socket
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()


# -- STARTTLS ----------------------------------------------------------------------


def starttls_handler(server_ctx: ssl.SSLContext, how: str) -> Handler:
    """A server that reads STARTTLS, answers OK, upgrades, then upper-cases a line."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"OK\n")
        try:
            if how == "writer.start_tls":
                await writer.start_tls(server_ctx)  # type: ignore[attr-defined]
            else:
                await rudp.start_tls(writer, server_ctx)
            assert writer.get_extra_info("ssl_object") is not None
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            return  # the client gave up (test_start_tls_failure_closes_the_connection)

    return handle


@pytest.mark.parametrize("how", ["writer.start_tls", "rudp.start_tls"])
async def test_starttls_with_streams(
    how: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """Upgrade an open connection to TLS: asyncio's own StreamWriter.start_tls() on
    the default loop (uvloop's start_tls accepts only uvloop transports), rudp's
    start_tls() on every loop."""
    if how == "writer.start_tls":
        if on_uvloop():
            pytest.skip("uvloop's start_tls() accepts only uvloop's own transports")
        if sys.version_info < (3, 11):
            pytest.skip("StreamWriter.start_tls() is new in Python 3.11")
    async with serving(starttls_handler(server_ctx, how)) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server))
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"OK\n"
        plain = writer.transport
        if how == "writer.start_tls":
            await writer.start_tls(client_ctx, server_hostname=NAME)  # type: ignore[attr-defined]
        else:
            tls = await rudp.start_tls(writer, client_ctx, server_hostname=NAME)
            assert writer.transport is tls
        assert writer.transport is not plain
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        writer.write(b"secret\n")
        assert await reader.readline() == b"SECRET\n"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()


async def test_starttls_with_loop_start_tls_on_the_default_loop(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """loop.start_tls() on a rudp transport (a protocol, not streams): the default
    loop accepts it since RudpTransport sets _start_tls_compatible."""
    if on_uvloop():
        pytest.skip("uvloop's start_tls() accepts only uvloop's own transports")
    loop = asyncio.get_running_loop()
    async with serving(starttls_handler(server_ctx, "rudp.start_tls")) as server:
        transport, protocol = await rudp.create_connection(Collect, HOST, port_of(server))
        assert isinstance(protocol, Collect)
        transport.write(b"STARTTLS\n")
        await until(lambda: bytes(protocol.data) == b"OK\n")
        protocol.data.clear()
        tls = await loop.start_tls(transport, protocol, client_ctx, server_hostname=NAME)
        assert tls is not None and tls.get_extra_info("ssl_object") is not None
        tls.write(b"secret\n")
        await until(lambda: bytes(protocol.data) == b"SECRET\n")
        tls.abort()


async def test_rudp_start_tls_on_a_transport(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async with serving(starttls_handler(server_ctx, "rudp.start_tls")) as server:
        transport, protocol = await rudp.create_connection(Collect, HOST, port_of(server))
        assert isinstance(protocol, Collect)
        transport.write(b"STARTTLS\n")
        await until(lambda: bytes(protocol.data) == b"OK\n")
        protocol.data.clear()
        tls = await rudp.start_tls(transport, client_ctx, server_hostname=NAME)
        assert tls.get_protocol() is protocol
        tls.write(b"secret\n")
        await until(lambda: bytes(protocol.data) == b"SECRET\n")
        tls.close()
        assert await asyncio.wait_for(protocol.lost, 10) is None


async def test_start_tls_failure_closes_the_connection(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async with serving(starttls_handler(server_ctx, "rudp.start_tls")) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server))
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"OK\n"
        conn = writer.get_extra_info("rudp_connection")
        with pytest.raises(ssl.SSLCertVerificationError):
            await rudp.start_tls(writer, client_ctx, server_hostname="wrong.example")
        await until(lambda: conn.state.value == "CLOSED")
        await until(lambda: not server.connections)


# -- argument checks (asyncio's rules) --------------------------------------------------


async def test_arguments_are_checked_as_asyncio_does(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    port = 9  # never reached: every call fails before anything is sent
    with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
        await rudp.open_connection(HOST, port, server_hostname=NAME)
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
        await rudp.open_connection(HOST, port, ssl_handshake_timeout=1)
    with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful"):
        await rudp.create_connection(asyncio.Protocol, HOST, port, ssl_shutdown_timeout=1)
    with pytest.raises(ValueError, match="positive"):
        await rudp.open_connection(HOST, port, ssl=client_ctx, ssl_handshake_timeout=0)
    with pytest.raises(TypeError, match="ssl must be"):
        await rudp.open_connection(HOST, port, ssl="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
        await rudp.start_server(echo, HOST, 0, ssl=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
        await rudp.start_server(echo, HOST, 0, ssl_handshake_timeout=1)
    with pytest.raises((ValueError, ssl.SSLError)):
        await rudp.start_server(echo, HOST, 0, ssl=client_ctx)  # a client-only context
    async with serving(echo) as server:
        _reader, writer = await rudp.open_connection(HOST, port_of(server))
        with pytest.raises(TypeError, match="SSLContext"):
            await rudp.start_tls(writer, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not supported"):
            await rudp.start_tls(writer.transport.get_protocol(), client_ctx)  # type: ignore[arg-type]
        writer.close()
        await writer.wait_closed()
        with pytest.raises(BrokenPipeError):
            await rudp.start_tls(writer, client_ctx)


# -- the transport contract the TLS layer relies on ------------------------------------


class Raises(Collect):
    """A protocol whose data_received() and eof_received() raise."""

    def data_received(self, data: bytes) -> None:
        raise RuntimeError("boom in data_received")

    def eof_received(self) -> bool | None:
        raise RuntimeError("boom in eof_received")


class RaisesBuffered(asyncio.BufferedProtocol, Raises):
    """The same with buffer_updated()."""

    def get_buffer(self, sizehint: int) -> bytearray:
        return bytearray(max(sizehint, 1))

    def buffer_updated(self, nbytes: int) -> None:
        raise RuntimeError("boom in buffer_updated")


@pytest.mark.parametrize("where", ["data_received", "buffer_updated", "eof_received"])
async def test_a_raising_protocol_aborts_its_connection_only(where: str) -> None:
    """As asyncio's socket transports: a protocol that raises while receiving is
    reported to the loop's exception handler and its connection is reset with that
    error; the endpoint's receive path (and the connections sharing it) go on."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        async with serving(echo) as server:
            factory = RaisesBuffered if where == "buffer_updated" else Raises
            transport, protocol = await rudp.create_connection(factory, HOST, port_of(server))
            _reader, other = await rudp.open_connection(HOST, port_of(server))
            assert other.get_extra_info("socket") is transport.get_extra_info("socket")
            if where != "eof_received":
                transport.write(b"echoed back, then the protocol raises")
            else:
                server.close_clients()  # FIN: eof_received raises
            exc = await asyncio.wait_for(protocol.lost, 10)
            assert isinstance(exc, RuntimeError) and f"boom in {where}" in str(exc)
            (context,) = reported
            assert context["message"] == f"protocol.{where}() call failed"
            assert context["exception"] is exc and context["transport"] is transport
            assert transport.get_extra_info("rudp_connection").state.value == "CLOSED"
            if where != "eof_received":  # the shared endpoint still serves the other one
                other.write(b"still here\n")
                assert await _reader.readline() == b"still here\n"
            other.close()
    finally:
        loop.set_exception_handler(None)


async def test_start_tls_roles_are_chosen_by_server_side(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """The rudp client can be the TLS server (server_side=True), as two peers of a
    simultaneous open must decide (docs/p2p.md)."""
    client_ctx.check_hostname = False  # the rudp server has no name here
    done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await rudp.start_tls(writer, client_ctx, server_side=False)
        writer.write(b"from the TLS client\n")
        done.set_result(await reader.readline())
        writer.close()

    async with serving(handle) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server))
        await rudp.start_tls(writer, server_ctx, server_side=True)
        assert writer.get_extra_info("ssl_object").server_side
        assert await reader.readline() == b"from the TLS client\n"
        writer.write(b"from the TLS server\n")
        assert await asyncio.wait_for(done, 10) == b"from the TLS server\n"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()


async def test_cancelling_during_the_handshake_resets_the_connection(
    client_ctx: ssl.SSLContext,
) -> None:
    hello: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello.set_result(await reader.read(65536))  # the ClientHello, unanswered
        try:
            await reader.read()
        except ConnectionError as exc:
            ended.set_result(exc)
        else:
            ended.set_result(None)

    async with serving(silent) as server:
        task = asyncio.ensure_future(rudp.open_connection(HOST, port_of(server), ssl=client_ctx))
        assert (await asyncio.wait_for(hello, 10))[0] == 0x16
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert isinstance(await asyncio.wait_for(ended, 10), ConnectionResetError)
        await until(lambda: not server.connections)
