"""TCP-AO (RFC 5925) for rudp segments: RFC 9235 test vectors through the building
blocks and through AuthSession, round trips, tampering, key IDs, rollover, the
sequence number extension across 2**32 and under reordering (rudp.engine.auth)."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rudp.engine import auth
from rudp.engine.auth import (
    DROP_REASONS,
    OPTION_LEN,
    AuthConfigError,
    AuthSession,
    AuthStateError,
    KeyChain,
    MasterKey,
    as_key_chain,
    available_algorithms,
    compute_mac,
    find_option,
    kdf,
    kdf_context,
    pseudo_header,
)
from rudp.wire.segment import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    ParseError,
    Segment,
    build_segment,
    build_segment_ts,
    encode_options,
    parse_segment,
    sack_option,
)

HAVE_AES = "aes-128-cmac-96" in available_algorithms()
needs_aes = pytest.mark.skipif(
    not HAVE_AES, reason="aes-128-cmac-96 needs the optional 'cryptography' package"
)

# ---------------------------------------------------------------------------
# RFC 9235 (TCP-AO Test Vectors). Master key "testvector", client KeyID 61,
# server KeyID 84, client 10.11.12.13 / fd00::1, server 172.27.28.29 / fd00::2,
# server port 179. Each section: the client's SYN, the server's SYN-ACK, a client
# data segment and a server data segment, as whole IP packets, with the traffic key
# each was MACed with and its MAC (which is also inside the packet).

MASTER = b"testvector"
CLIENT_ID, SERVER_ID = 61, 84
CLIENT4, SERVER4 = bytes((10, 11, 12, 13)), bytes((172, 27, 28, 29))
CLIENT6 = bytes.fromhex("fd000000000000000000000000000001")
SERVER6 = bytes.fromhex("fd000000000000000000000000000002")

# (section, algorithm, TCP option flag, client ISN, server ISN, packets)
VECTORS: list[tuple[str, str, bool, int, int, list[tuple[str, str, str]]]] = [
    (
        "4.1",
        "hmac-sha1-96",
        True,
        0xFBFBAB5A,
        0x11C14261,
        [
            (
                "45e0004cdd0f4000ff06bf6b0a0b0c0dac1b1c1de9d700b3fbfbab5a00000000"
                "e002ffffcac40000020405b4010303080402080a00155ab7000000001d103d54"
                "2ee437c6f8ede6d7c4d602e7",
                "6d63ef1b02fe1509d4b1402707fd7b0416abb74f",
                "2ee437c6f8ede6d7c4d602e7",
            ),
            (
                "45e0004c65064000ff063775ac1b1c1d0a0b0c0d00b3e9d711c14261fbfbab5b"
                "e012ffff37760000020405b4010303080402080a84a50beb00155ab71d10543d"
                "eeab0fe24c3010815116b3be",
                "d9e217e4834a80ca2f3fd8de2e41b8e6797fea96",
                "eeab0fe24c3010815116b3be",
            ),
            (
                "45e0008736a14000ff06659f0a0b0c0dac1b1c1de9d700b3fbfbab5b11c14262"
                "c0180104a16200000101080a00155ac184a50beb1d103d547064cf998cc6c315"
                "c2c2e2bfffffffffffffffffffffffffffffffff00430104dabf00b40a0b0c0d"
                "260206010400010001020280000202020002024200020641040000dabf020840"
                "06006400010100",
                "d2e59c65ffc7b1a39347656463b70edc24a13d71",
                "7064cf998cc6c315c2c2e2bf",
            ),
            (
                "45e000871fa94000ff067c97ac1b1c1d0a0b0c0d00b3e9d711c14262fbfbab9e"
                "c0180100400c00000101080a84a50bf500155ac11d10543da63f0ecbbb2e635c"
                "954deac7ffffffffffffffffffffffffffffffff00430104dac000b4ac1b1c1d"
                "260206010400010001020280000202020002024200020641040000dac0020840"
                "06006400010100",
                "d9e217e4834a80ca2f3fd8de2e41b8e6797fea96",
                "a63f0ecbbb2e635c954deac7",
            ),
        ],
    ),
    (
        "4.2",
        "hmac-sha1-96",
        False,
        0xCB0EFBEE,
        0xACD5B5E1,
        [
            (
                "45e0004c53994000ff0648e20a0b0c0dac1b1c1dff1200b3cb0efbee00000000"
                "e002ffff541f0000020405b4010303080402080a00024cce000000001d103d54"
                "80af3cfeb85368937b8f9ec2",
                "30eaa1560cf0be57dab5c045229fb10a423cd7ea",
                "80af3cfeb85368937b8f9ec2",
            ),
            (
                "45e0004c32844000ff0669f7ac1b1c1d0a0b0c0d00b3ff12acd5b5e1cb0efbef"
                "e012ffff388e0000020405b4010303080402080a576772f300024cce1d10543d"
                "09306f9acea63a8c68cb9a70",
                "b5b2896bb3664e8176b0edc6e799524101a8307f",
                "09306f9acea63a8c68cb9a70",
            ),
            (
                "45e00087a8f54000ff06f34a0a0b0c0dac1b1c1dff1200b3cb0efbefacd5b5e2"
                "c01801046c4500000101080a00024cce576772f31d103d54710608cc696c03a2"
                "71c93aa5ffffffffffffffffffffffffffffffff00430104dabf00b40a0b0c0d"
                "260206010400010001020280000202020002024200020641040000dabf020840"
                "06006400010100",
                "f3db1793d7910ecd806c34f155ea1f00345953e3",
                "710608cc696c03a271c93aa5",
            ),
            (
                "45e0008754374000ff064809ac1b1c1d0a0b0c0d00b3ff12acd5b5e2cb0efc32"
                "c018010046b600000101080a576772f300024cce1d10543d97766e48ac262de9"
                "ae61b4f9ffffffffffffffffffffffffffffffff00430104dac000b4ac1b1c1d"
                "260206010400010001020280000202020002024200020641040000dac0020840"
                "06006400010100",
                "b5b2896bb3664e8176b0edc6e799524101a8307f",
                "97766e48ac262de9ae61b4f9",
            ),
        ],
    ),
    (
        "5.1",
        "aes-128-cmac-96",
        True,
        0x787A1DDF,
        0xFADD6DE9,
        [
            (
                "45e0004c7b9f4000ff0620dc0a0b0c0dac1b1c1dc4fa00b3787a1ddf00000000"
                "e002ffff5a0f0000020405b4010303080402080a00017ed0000000001d103d54"
                "e477e99c8040765498e55091",
                "f5b8b3d5f34fdbb6eb8d4ab9660e60e3",
                "e477e99c8040765498e55091",
            ),
            (
                "45e0004c4bad4000ff0650ceac1b1c1d0a0b0c0d00b3c4fafadd6de9787a1de0"
                "e012fffff3f20000020405b4010303080402080a93f4e9e800017ed01d10543d"
                "d6ada7bc4cdd536d1769db5f",
                "4bc7571a486f3264bbd888474066b4b1",
                "d6ada7bc4cdd536d1769db5f",
            ),
            (
                "45e00087fb4f4000ff06a0f00a0b0c0dac1b1c1dc4fa00b3787a1de0fadd6dea"
                "c0180104950500000101080a00017ed093f4e9e81d103d5477412742fa4dc433"
                "eff0973effffffffffffffffffffffffffffffff00430104dabf00b40a0b0c0d"
                "260206010400010001020280000202020002024200020641040000dabf020840"
                "06006400010100",
                "8c8ae0e8371ec5cbb97ea79d90418391",
                "77412742fa4dc433eff0973e",
            ),
            (
                "45e00087b9144000ff06e32bac1b1c1d0a0b0c0d00b3c4fafadd6dea787a1e23"
                "c0180100e7db00000101080a93f4e9e800017ed01d10543df6d965a78382a748"
                "45f72dacffffffffffffffffffffffffffffffff00430104dac000b4ac1b1c1d"
                "260206010400010001020280000202020002024200020641040000dac0020840"
                "06006400010100",
                "4bc7571a486f3264bbd888474066b4b1",
                "f6d965a78382a74845f72dac",
            ),
        ],
    ),
    (
        "5.2",
        "aes-128-cmac-96",
        False,
        0x389BED71,
        0xD3844A6F,
        [
            (
                "45e0004cf22e4000ff06aa4c0a0b0c0dac1b1c1dda1c00b3389bed7100000000"
                "e002ffff70bf0000020405b4010303080402080a000185e1000000001d103d54"
                "c44e60cb31f7c0b1de3d2749",
                "2cdbae1392c49449fa92c4509735d50e",
                "c44e60cb31f7c0b1de3d2749",
            ),
            (
                "45e0004c6cc04000ff062fbbac1b1c1d0a0b0c0d00b3da1cd3844a6f389bed72"
                "e012ffffe4450000020405b4010303080402080ace459838000185e11d10543d"
                "3a6abb207e49b1be7136db90",
                "3ce67a551869506b6347b633c50a624a",
                "3a6abb207e49b1be7136db90",
            ),
            (
                "45e00087ee914000ff06adae0a0b0c0dac1b1c1dda1c00b3389bed72d3844a70"
                "c0180104885100000101080a000185e1ce4598381d103d547585e9e9d5c3ec85"
                "7b96f837ffffffffffffffffffffffffffffffff00430104dabf00b40a0b0c0d"
                "260206010400010001020280000202020002024200020641040000dabf020840"
                "06006400010100",
                "035bc400a341ffe595f59f58005006ca",
                "7585e9e9d5c3ec857b96f837",
            ),
            (
                "45e000876a214000ff06321fac1b1c1d0a0b0c0d00b3da1cd3844a70389bed72"
                "c0180100044900000101080ace459838000185e11d10543d5c040fd923330476"
                "5c0982f4ffffffffffffffffffffffffffffffff00430104dac000b4ac1b1c1d"
                "260206010400010001020280000202020002024200020641040000dac0020840"
                "06006400010100",
                "3ce67a551869506b6347b633c50a624a",
                "5c040fd9233304765c0982f4",
            ),
        ],
    ),
    (
        "6.1",
        "hmac-sha1-96",
        True,
        0x176A833F,
        0x3F51994B,
        [
            (
                "6e0891dc00380640fd000000000000000000000000000001fd00000000000000"
                "0000000000000002f7e400b3176a833f00000000e002ffff47210000020405a0"
                "010303080402080a0041d087000000001d103d549033ec3d7334b64c5edd039f",
                "625ec09d575836edc9b6428418bbf06989a361bb",
                "9033ec3d7334b64c5edd039f",
            ),
            (
                "6e01009e00380640fd000000000000000000000000000002fd00000000000000"
                "000000000000000100b3f7e43f51994b176a8340e012ffffbfec0000020405a0"
                "010303080402080abd33129b0041d0871d10543df1cba346c3526163f71f1f55",
                "e4a37ada2a0afca8711434913fe138c771ebcb4a",
                "f1cba346c3526163f71f1f55",
            ),
            (
                "6e0891dc00730640fd000000000000000000000000000001fd00000000000000"
                "0000000000000002f7e400b3176a83403f51994cc0180100329c00000101080a"
                "0041d091bd33129b1d103d54bf0805feb4ac7b163d6fcdf2ffffffffffffffff"
                "ffffffffffffffff00430104fde800b401010179260206010400010001020280"
                "000202020002024200020641040000fde802084006006400010100",
                "1ed82975f4ea444c61580c5bd90dbd61bbc91b7e",
                "bf0805feb4ac7b163d6fcdf2",
            ),
            (
                "6e01009e00730640fd000000000000000000000000000002fd00000000000000"
                "000000000000000100b3f7e43f51994c176a8383c0180100ee6e00000101080a"
                "bd3312a50041d0911d10543d6c48125c11335bab9a07a797ffffffffffffffff"
                "ffffffffffffffff00430104fde800b40101017a260206010400010001020280"
                "000202020002024200020641040000fde802084006006400010100",
                "e4a37ada2a0afca8711434913fe138c771ebcb4a",
                "6c48125c11335bab9a07a797",
            ),
        ],
    ),
    (
        "6.2",
        "hmac-sha1-96",
        False,
        0x020C1E69,
        0xEBA3734D,
        [
            (
                "6e078fcd00380640fd000000000000000000000000000001fd00000000000000"
                "0000000000000002c6cd00b3020c1e6900000000e002ffffa41a0000020405a0"
                "010303080402080a009db95b000000001d103d54885698b0530ed4d5a15f8346",
                "31a3faf69effae52931b7f845467315c270a4edc",
                "885698b0530ed4d5a15f8346",
            ),
            (
                "6e0a7e1f00380640fd000000000000000000000000000002fd00000000000000"
                "000000000000000100b3c6cdeba3734d020c1e6ae012ffff774d0000020405a0"
                "010303080402080a5ec99b70009db95b1d10543d3c546bad9743f12df8b8010d",
                "405108947f996575e7bdbc26d40216a2c7fa91bd",
                "3c546bad9743f12df8b8010d",
            ),
            (
                "6e078fcd00730640fd000000000000000000000000000001fd00000000000000"
                "0000000000000002c6cd00b3020c1e6aeba3734ec018010083e600000101080a"
                "009db9655ec99b701d103d5448bd093b1924e001192f5bf0ffffffffffffffff"
                "ffffffffffffffff00430104fde800b401010179260206010400010001020280"
                "000202020002024200020641040000fde802084006006400010100",
                "b34eed6a9396a669f1c4f4f57618f3656f52c7ab",
                "48bd093b1924e001192f5bf0",
            ),
            (
                "6e0a7e1f00730640fd000000000000000000000000000002fd00000000000000"
                "000000000000000100b3c6cdeba3734e020c1eadc0180100716a00000101080a"
                "5ec99b7a009db9651d10543d559a819445b4fde98d9e1317ffffffffffffffff"
                "ffffffffffffffff00430104fde800b40101017a260206010400010001020280"
                "000202020002024200020641040000fde802084006006400010100",
                "405108947f996575e7bdbc26d40216a2c7fa91bd",
                "559a819445b4fde98d9e1317",
            ),
        ],
    ),
    (
        "7.1",
        "aes-128-cmac-96",
        True,
        0x193CCCEC,
        0xA6744ECB,
        [
            (
                "6e04a70600380640fd000000000000000000000000000001fd00000000000000"
                "0000000000000002f85a00b3193cccec00000000e002ffffde5d0000020405a0"
                "010303080402080a13e4ab99000000001d103d5459b588107481ac6dc3927040",
                "fa5a2108882d39d0c71929175ab1b7b8",
                "59b588107481ac6dc3927040",
            ),
            (
                "6e06152000380640fd000000000000000000000000000002fd00000000000000"
                "000000000000000100b3f85aa6744ecb193cccede012ffffeabb0000020405a0"
                "010303080402080a71daabc813e4ab991d10543ddc2843a84e78a6bcfdc5ed80",
                "cf1b1e225e06a63616764a067b46f4b1",
                "dc2843a84e78a6bcfdc5ed80",
            ),
            (
                "6e04a70600730640fd000000000000000000000000000001fd00000000000000"
                "0000000000000002f85a00b3193ccceda6744eccc0180100328000000101080a"
                "13e4aba371daabc81d103d547b6a455c0d4f5f01835baab3ffffffffffffffff"
                "ffffffffffffffff00430104fde800b401010179260206010400010001020280"
                "000202020002024200020641040000fde802084006006400010100",
                "6174c3557abed27574dba37185f00300",
                "7b6a455c0d4f5f01835baab3",
            ),
            (
                "6e06152000730640fd000000000000000000000000000002fd00000000000000"
                "000000000000000100b3f85aa6744ecc193ccd30c018010052f400000101080a"
                "71daabd313e4aba31d10543dc1069b7dfd3d693a6df3f289ffffffffffffffff"
                "ffffffffffffffff00430104fde800b40101017a260206010400010001020280"
                "000202020002024200020641040000fde802084006006400010100",
                "cf1b1e225e06a63616764a067b46f4b1",
                "c1069b7dfd3d693a6df3f289",
            ),
        ],
    ),
    (
        "7.2",
        "aes-128-cmac-96",
        False,
        0xB01DA74A,
        0xA6246145,
        [
            (
                "6e093d7600380640fd000000000000000000000000000001fd00000000000000"
                "0000000000000002f28800b3b01da74a00000000e002ffff75ff0000020405a0"
                "010303080402080a14275b3b000000001d103d543d45b4342de8bb1530847898",
                "a94f511263e4093d35dd818c13bbbf53",
                "3d45b4342de8bb1530847898",
            ),
            (
                "6e0c600a00380640fd000000000000000000000000000002fd00000000000000"
                "000000000000000100b3f288a6246145b01da74be012ffffa70c0000020405a0"
                "010303080402080a1782245b14275b3b1d10543d1d01f6c87c6f93acffa9d4b5",
                "92dea5bbc78b1d9f5b2952e9cd30642a",
                "1d01f6c87c6f93acffa9d4b5",
            ),
            (
                "6e093d7600730640fd000000000000000000000000000001fd00000000000000"
                "0000000000000002f28800b3b01da74ba6246146c0180100c36d00000101080a"
                "14275b4f1782245b1d103d54290cf414ccb47a333276e7f8ffffffffffffffff"
                "ffffffffffffffff00430104fde800b401010179260206010400010001020280"
                "000202020002024200020641040000fde802084006006400010100",
                "4fb2086e402c679079ed65d4bf97693d",
                "290cf414ccb47a333276e7f8",
            ),
            (
                "6e0c600a00730640fd000000000000000000000000000002fd00000000000000"
                "000000000000000100b3f288a6246146b01da78ec0180100345100000101080a"
                "1782246514275b4f1d10543d99515ffcd5403499f619fd1bffffffffffffffff"
                "ffffffffffffffff00430104fde800b40101017a260206010400010001020280"
                "000202020002024200020641040000fde802084006006400010100",
                "92dea5bbc78b1d9f5b2952e9cd30642a",
                "99515ffcd5403499f619fd1b",
            ),
        ],
    ),
]

PACKETS = [
    pytest.param(
        alg,
        inc,
        cisn,
        sisn,
        raw,
        tk,
        mac,
        id=f"{sec}-{name}",
        marks=[needs_aes] if alg.startswith("aes") else [],
    )
    for sec, alg, inc, cisn, sisn, pkts in VECTORS
    for name, (raw, tk, mac) in zip(
        ("syn", "synack", "client-data", "server-data"), pkts, strict=True
    )
]
SECTIONS = [
    pytest.param(
        alg, inc, cisn, sisn, pkts, id=sec, marks=[needs_aes] if alg.startswith("aes") else []
    )
    for sec, alg, inc, cisn, sisn, pkts in VECTORS
]


def _split_ip(hex_packet: str) -> tuple[bytes, bytes, bytes]:
    """(source address, destination address, TCP segment) of an IPv4/IPv6 packet."""
    raw = bytes.fromhex(hex_packet.replace(" ", ""))
    if raw[0] >> 4 == 4:
        ihl = (raw[0] & 15) * 4
        assert int.from_bytes(raw[2:4], "big") == len(raw)
        return raw[12:16], raw[16:20], raw[ihl:]
    assert raw[0] >> 4 == 6 and raw[6] == 6  # next header TCP, no extension headers
    assert int.from_bytes(raw[4:6], "big") == len(raw) - 40
    return raw[8:24], raw[24:40], raw[40:]


@pytest.mark.parametrize(("alg", "inc", "cisn", "sisn", "raw", "tk", "mac"), PACKETS)
def test_rfc9235_traffic_keys_and_macs(
    alg: str, inc: bool, cisn: int, sisn: int, raw: str, tk: str, mac: str
) -> None:
    src, dst, tcp = _split_ip(raw)
    sport, dport = int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big")
    from_client = src in (CLIENT4, CLIENT6)
    src_isn, dst_isn = (cisn, sisn) if from_client else (sisn, cisn)
    if tcp[13] & SYN and not tcp[13] & ACK:
        dst_isn = 0  # the SYN traffic keys (RFC 5925 §5.2)
    assert int.from_bytes(tcp[4:8], "big") in (src_isn, src_isn + 1)
    key = kdf(alg, MASTER, kdf_context(src, dst, sport, dport, src_isn, dst_isn))
    assert key.hex() == tk
    off = find_option(tcp)
    assert off > 20 and tcp[off : off + 4] == bytes(
        (29, 16, CLIENT_ID if from_client else SERVER_ID, SERVER_ID if from_client else CLIENT_ID)
    )
    assert tcp[off + 4 : off + 16].hex() == mac
    got = compute_mac(
        alg, key, tcp, pseudo=pseudo_header(src, dst, len(tcp)), sne=0, include_options=inc
    )
    assert got.hex() == mac
    # The other value of the TCP option flag gives another MAC: the flag matters.
    other = compute_mac(
        alg, key, tcp, pseudo=pseudo_header(src, dst, len(tcp)), include_options=not inc
    )
    assert other != got


def _side(
    alg: str, inc: bool, client: bool, cisn: int, sisn: int, cport: int, v6: bool
) -> AuthSession:
    if client:
        mkt = MasterKey(CLIENT_ID, SERVER_ID, MASTER, alg, include_options=inc)
        addrs = (CLIENT6, SERVER6) if v6 else (CLIENT4, SERVER4)
        return AuthSession.for_connection(KeyChain([mkt]), cisn, None, cport, 179, addresses=addrs)
    mkt = MasterKey(SERVER_ID, CLIENT_ID, MASTER, alg, include_options=inc)
    addrs = (SERVER6, CLIENT6) if v6 else (SERVER4, CLIENT4)
    return AuthSession.for_connection(KeyChain([mkt]), sisn, cisn, 179, cport, addresses=addrs)


def _unsigned(tcp: bytes) -> bytes:
    """The segment as the engine hands it to sign(): MAC and checksum zero."""
    buf = bytearray(tcp)
    off = find_option(buf)
    buf[off + 4 : off + 16] = bytes(12)
    buf[16:18] = b"\0\0"
    return bytes(buf)


def _parse(tcp: bytes) -> Segment:
    # The vectors' checksums include the IP pseudo-header, rudp's do not.
    return parse_segment(tcp, check=False)


@pytest.mark.parametrize(("alg", "inc", "cisn", "sisn", "pkts"), SECTIONS)
def test_rfc9235_through_sessions(
    alg: str, inc: bool, cisn: int, sisn: int, pkts: list[tuple[str, str, str]]
) -> None:
    """Both ends of each RFC 9235 exchange, with AuthSession choosing the keys
    (Send_SYN, Receive_SYN, Send_Other, Receive_Other) and the SNE itself."""
    syn, synack, cdata, sdata = (_split_ip(p[0])[2] for p in pkts)
    v6 = len(_split_ip(pkts[0][0])[0]) == 16
    cport = int.from_bytes(syn[0:2], "big")
    client = _side(alg, inc, True, cisn, sisn, cport, v6)
    server = _side(alg, inc, False, cisn, sisn, cport, v6)
    mac_of = {id(t): p[2] for t, p in zip((syn, synack, cdata, sdata), pkts, strict=True)}

    def signed_mac(sess: AuthSession, tcp: bytes) -> str:
        out = sess.sign(_unsigned(tcp), compute_checksum=False)
        off = find_option(out)
        return out[off + 4 : off + 16].hex()

    assert signed_mac(client, syn) == mac_of[id(syn)]
    assert server.check(syn, _parse(syn)) is None
    assert signed_mac(server, synack) == mac_of[id(synack)]
    assert client.peer_isn is None
    assert client.check(synack, _parse(synack)) is None
    assert client.peer_isn == sisn
    assert signed_mac(client, cdata) == mac_of[id(cdata)]
    assert server.check(cdata, _parse(cdata)) is None
    assert signed_mac(server, sdata) == mac_of[id(sdata)]
    assert client.check(sdata, _parse(sdata)) is None
    assert client.accepted == server.accepted == 2
    assert client.last_keyid == SERVER_ID and server.last_keyid == CLIENT_ID
    # A segment checked by the wrong end fails: its KeyID is the other end's.
    assert client.check(cdata, _parse(cdata)) == "auth_unknown_key"
    assert server.check(sdata, _parse(sdata)) == "auth_unknown_key"


# ---------------------------------------------------------------------------
# The HMAC shortcut and the algorithms


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=1, max_size=150), msg=st.binary(max_size=300))
def test_precomputed_hmac_equals_the_hmac_module(key: bytes, msg: bytes) -> None:
    for name, new in (("sha1", hashlib.sha1), ("sha256", hashlib.sha256)):
        want = hmac.new(key, msg, name).digest()[:12]
        h = auth._HmacKey(new, key, 12)
        cut = len(msg) // 3
        assert h.tag(msg[:cut], memoryview(msg)[cut : 2 * cut], msg[2 * cut :]) == want
        assert h.tag(b"", msg, b"") == want  # and it is reusable


def test_sha256_kdf_is_the_rfc5926_construction() -> None:
    ctx = kdf_context(bytes(4), bytes(4), 1, 2, 3, 4)
    want = hmac.new(MASTER, b"\x01TCP-AO" + ctx + (256).to_bytes(2, "big"), "sha256").digest()
    assert kdf("hmac-sha256-96", MASTER, ctx) == want
    assert len(kdf("hmac-sha1-96", MASTER, ctx)) == 20


def test_aes_unavailable_without_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise ImportError("no cryptography here")

    monkeypatch.setattr(auth, "_load_cmac", missing)
    assert "aes-128-cmac-96" not in available_algorithms()
    assert {"hmac-sha256-96", "hmac-sha1-96"} <= set(available_algorithms())
    with pytest.raises(AuthConfigError, match="cryptography"):
        MasterKey(1, 1, b"k" * 16, "aes-128-cmac-96")


# ---------------------------------------------------------------------------
# Round trips through rudp segments

CPORT, SPORT = 40000, 9000
SECRET = bytes(range(32))


def _chains(
    alg: str = "hmac-sha256-96", inc: bool = True, a_ids: tuple[int, int] = (1, 1)
) -> tuple[KeyChain, KeyChain]:
    a = KeyChain([MasterKey(a_ids[0], a_ids[1], SECRET, alg, inc)])
    b = KeyChain([MasterKey(a_ids[1], a_ids[0], SECRET, alg, inc)])
    return a, b


def _build(
    sess: AuthSession,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    ts: tuple[int, int] | None = None,
    sack: bytes = b"",
    syn_options: bytes = b"",
) -> bytes:
    ao = sess.placeholder()
    if ts is not None:
        raw = build_segment_ts(
            sport, dport, seq, ack, flags, 5000, payload, ts[0], ts[1], ao + sack, False
        )
    else:
        raw = build_segment(
            sport, dport, seq, ack, flags, 5000, payload, syn_options + ao + sack,
            compute_checksum=False,
        )  # fmt: skip
    return sess.sign(raw)


def _check(sess: AuthSession, data: bytes) -> str | None:
    return sess.check(data, parse_segment(data))  # rudp checksum verified first


class Pair:
    """A client and a server session after a (signed) three-way handshake."""

    def __init__(
        self,
        alg: str = "hmac-sha256-96",
        inc: bool = True,
        cisn: int = 0x1000,
        sisn: int = 0x9000_0000,
        chains: tuple[KeyChain, KeyChain] | None = None,
    ) -> None:
        self.cchain, self.schain = chains or _chains(alg, inc)
        self.c = AuthSession.for_connection(self.cchain, cisn, None, CPORT, SPORT)
        syn_opts = encode_options(mss=1400, wscale=7, sack_perm=True, ts=(1, 0))
        syn = _build(self.c, CPORT, SPORT, cisn, 0, SYN, syn_options=syn_opts)
        assert parse_segment(syn).mss == 1400
        self.s = AuthSession.for_connection(self.schain, sisn, cisn, SPORT, CPORT)
        assert _check(self.s, syn) is None
        synack_opts = encode_options(mss=1400, wscale=7, sack_perm=True, ts=(7, 1))
        synack = _build(self.s, SPORT, CPORT, sisn, cisn + 1, SYN | ACK, syn_options=synack_opts)
        assert _check(self.c, synack) is None and self.c.peer_isn == sisn
        self.cseq, self.sseq = cisn + 1, sisn + 1
        ack = _build(self.c, CPORT, SPORT, self.cseq, self.sseq, ACK, ts=(2, 7))
        assert _check(self.s, ack) is None

    def c2s(self, payload: bytes) -> bytes:
        seg = _build(self.c, CPORT, SPORT, self.cseq, self.sseq, ACK | PSH, payload, (3, 8))
        self.cseq = (self.cseq + len(payload)) & 0xFFFFFFFF
        return seg

    def s2c(self, payload: bytes) -> bytes:
        seg = _build(self.s, SPORT, CPORT, self.sseq, self.cseq, ACK | PSH, payload, (9, 3))
        self.sseq = (self.sseq + len(payload)) & 0xFFFFFFFF
        return seg


@pytest.mark.parametrize(
    "alg",
    [pytest.param(a, marks=[needs_aes] if a.startswith("aes") else []) for a in auth._ALGORITHMS],
)
@pytest.mark.parametrize("inc", [True, False])
def test_round_trip(alg: str, inc: bool) -> None:
    p = Pair(alg, inc)
    for n in (0, 1, 100, 1400):
        payload = random.Random(n).randbytes(n)
        seg = p.c2s(payload)
        parsed = parse_segment(seg)
        assert parsed.payload == payload and parsed.ts == (3, 8)
        assert p.s.check(seg, parsed) is None
        back = p.s2c(payload)
        assert _check(p.c, back) is None
    # SACK after the TCP-AO option, FIN, RST: all signed and verified.
    sack = sack_option([(p.sseq + 10, p.sseq + 20)])
    seg = _build(p.c, CPORT, SPORT, p.cseq, p.sseq, ACK, ts=(4, 9), sack=sack)
    assert parse_segment(seg).sack == ((p.sseq + 10, p.sseq + 20),)
    assert len(seg) == 20 + 12 + OPTION_LEN + 12  # the full 40 bytes of options
    assert _check(p.s, seg) is None
    assert _check(p.s, _build(p.c, CPORT, SPORT, p.cseq, p.sseq, FIN | ACK, ts=(5, 9))) is None
    assert _check(p.c, _build(p.s, SPORT, CPORT, p.sseq, p.cseq, RST)) is None
    assert sum(p.s.counters.values()) == sum(p.c.counters.values()) == 0


def test_sign_accepts_memoryview_and_bytearray_and_computes_the_checksum() -> None:
    p = Pair()
    ao = p.c.placeholder()
    raw = build_segment(CPORT, SPORT, p.cseq, p.sseq, ACK, 10, b"xyz", ao, compute_checksum=False)
    a = p.c.sign(memoryview(raw))
    b = p.c.sign(bytearray(raw), 20)
    assert a == b and a[16:18] != b"\0\0"
    parse_segment(a)  # the checksum verifies (else ParseError)
    assert p.c.sign(raw, compute_checksum=False)[16:18] == b"\0\0"
    # The checksum is the one build_segment computes over the signed options.
    assert build_segment(CPORT, SPORT, p.cseq, p.sseq, ACK, 10, b"xyz", a[20:36]) == a


def test_sign_refuses_what_it_cannot_sign() -> None:
    p = Pair()
    plain = build_segment(CPORT, SPORT, p.cseq, p.sseq, ACK, 10, compute_checksum=False)
    with pytest.raises(AuthStateError, match="no TCP-AO option"):
        p.c.sign(plain)
    with pytest.raises(AuthStateError, match="no TCP-AO option"):
        p.c.sign(build_segment(1, 2, 3, 4, ACK, 10, b"", p.c.placeholder()), ao_offset=24)
    fresh = AuthSession.for_connection(_chains()[0], 5, None, CPORT, SPORT)
    ack = build_segment(1, 2, 6, 1, ACK, 10, b"", fresh.placeholder(), compute_checksum=False)
    with pytest.raises(AuthStateError, match="peer's ISN"):
        fresh.sign(ack)


# ---------------------------------------------------------------------------
# Rejections: tampering, keys, missing option


def test_tampering_any_byte_fails() -> None:
    p = Pair()
    seg = p.c2s(b"attack at dawn" * 10)
    assert find_option(seg) == 32
    s_counters = p.s.counters
    for i in range(len(seg)):
        for bit in (0x01, 0x80):
            bad = bytearray(seg)
            bad[i] ^= bit
            try:
                parsed = parse_segment(bytes(bad), check=False)
            except ParseError:
                continue  # a broken header never reaches check()
            result = p.s.check(bytes(bad), parsed)
            if i in (16, 17):
                # The MAC is computed with the checksum zero; the rudp checksum
                # catches this one (RFC 5925 §5.1 and docs/wire.md).
                assert result is None
                with pytest.raises(ParseError, match="checksum"):
                    parse_segment(bytes(bad))
            else:
                assert result in DROP_REASONS, (i, bit)
    assert s_counters["auth_bad_mac"] > 0 and s_counters["auth_unknown_key"] > 0
    assert s_counters["auth_missing"] > 0
    # the original still passes: nothing was learned from the forgeries
    assert _check(p.s, seg) is None


@pytest.mark.parametrize("flags", [ACK, RST, RST | ACK, SYN, FIN | ACK, ACK | PSH])
def test_missing_option_is_dropped_for_every_kind_of_segment(flags: int) -> None:
    p = Pair()
    plain = build_segment(CPORT, SPORT, p.cseq, p.sseq, flags, 10, b"data")
    assert _check(p.s, plain) == "auth_missing"
    # An option of another kind in its place does not help.
    other = build_segment(CPORT, SPORT, p.cseq, p.sseq, flags, 10, b"", bytes([30, 16]) + bytes(14))
    assert _check(p.s, other) == "auth_missing"
    assert p.s.counters["auth_missing"] == 2


def test_blind_reset_and_injection_with_exact_sequence_numbers_fail() -> None:
    p = Pair()
    # The attacker knows the ports and the exact sequence numbers, but not the key:
    # the right KeyID with a random MAC, or a MAC under another key, is dropped.
    chain = KeyChain([MasterKey(1, 1, b"guessed key", "hmac-sha256-96")])
    forger = AuthSession.for_connection(chain, p.cseq - 1, p.sseq - 1, CPORT, SPORT)
    for flags, payload in ((RST, b""), (ACK | PSH, b"rm -rf /"), (SYN, b""), (FIN | ACK, b"")):
        assert _check(p.s, _build(forger, CPORT, SPORT, p.cseq, p.sseq, flags, payload)) == (
            "auth_bad_mac"
        )
        rnd = bytearray(_build(forger, CPORT, SPORT, p.cseq, p.sseq, flags, payload))
        rnd[24:36] = random.Random(flags).randbytes(12)
        assert p.s.check(bytes(rnd), parse_segment(bytes(rnd), check=False)) == "auth_bad_mac"
    assert p.s.counters["auth_bad_mac"] == 8


def test_a_segment_from_another_connection_is_rejected() -> None:
    """Same key, same ports, other ISNs (an earlier connection): other traffic keys."""
    old, new = Pair(cisn=111, sisn=222), Pair(cisn=333, sisn=444)
    new.cseq, new.sseq = old.cseq, old.sseq  # even with matching sequence numbers
    seg = old.c2s(b"replayed")
    assert _check(new.s, seg) == "auth_bad_mac"


def test_wrong_keyid_and_wrong_secret() -> None:
    c, _ = _chains()
    s_other_id = KeyChain([MasterKey(2, 2, SECRET)])
    s_other_secret = KeyChain([MasterKey(1, 1, b"not the secret")])
    s_other_alg = KeyChain([MasterKey(1, 1, SECRET, "hmac-sha1-96")])
    for chain, reason in (
        (s_other_id, "auth_unknown_key"),
        (s_other_secret, "auth_bad_mac"),
        (s_other_alg, "auth_bad_mac"),
    ):
        csess = AuthSession.for_connection(c, 77, None, CPORT, SPORT)
        syn = _build(csess, CPORT, SPORT, 77, 0, SYN)
        ssess = AuthSession.for_connection(chain, 88, 77, SPORT, CPORT)
        assert _check(ssess, syn) == reason
        assert ssess.counters[reason] == 1 and ssess.accepted == 0


def test_malformed_options_never_raise() -> None:
    p = Pair()
    good = p.c2s(b"x")
    dummy = parse_segment(good)
    short = build_segment(CPORT, SPORT, 1, 2, ACK, 1, b"", bytes([29, 3, 1, 1]))
    assert p.s.check(short, parse_segment(short)) == "auth_malformed"
    long_ = build_segment(CPORT, SPORT, 1, 2, ACK, 1, b"", bytes([29, 20, 1, 1]) + bytes(16))
    assert p.s.check(long_, parse_segment(long_)) == "auth_bad_length"
    # An option running past the header (parse_segment would refuse it first).
    past = bytearray(good)
    past[33] = 40
    assert p.s.check(bytes(past), dummy) == "auth_malformed"
    # Truncated datagrams and garbage: a reason, never an exception.
    for n in range(len(good)):
        assert p.s.check(good[:n], dummy) in DROP_REASONS
    assert p.s.check(b"\xff" * 60, dummy) in DROP_REASONS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=20, max_size=120), pos=st.integers(0, 119), val=st.integers(0, 255))
def test_check_never_raises_on_parsed_input(data: bytes, pos: int, val: int) -> None:
    sess = AuthSession.for_connection(_chains()[1], 5, 6, SPORT, CPORT)
    buf = bytearray(data)
    if pos < len(buf):
        buf[pos] = val
    if len(buf) > 32:
        buf[20] = 29  # steer into the option paths
    try:
        seg = parse_segment(bytes(buf), check=False)
    except ParseError:
        return
    assert sess.check(bytes(buf), seg) in DROP_REASONS


# ---------------------------------------------------------------------------
# Handshake variants


def test_simultaneous_open() -> None:
    a_chain, b_chain = _chains(a_ids=(3, 4))
    a = AuthSession.for_connection(a_chain, 1000, None, 5000, 6000)
    b = AuthSession.for_connection(b_chain, 2000, None, 6000, 5000)
    syn_a, syn_b = _build(a, 5000, 6000, 1000, 0, SYN), _build(b, 6000, 5000, 2000, 0, SYN)
    assert _check(b, syn_a) is None and b.peer_isn == 1000
    assert _check(a, syn_b) is None and a.peer_isn == 2000
    assert _check(b, _build(a, 5000, 6000, 1000, 2001, SYN | ACK)) is None
    assert _check(a, _build(b, 6000, 5000, 2000, 1001, SYN | ACK)) is None
    assert _check(b, _build(a, 5000, 6000, 1001, 2001, ACK, b"hi")) is None


def test_syn_ack_with_a_wrong_isn_teaches_nothing() -> None:
    c_chain, s_chain = _chains()
    c = AuthSession.for_connection(c_chain, 10, None, CPORT, SPORT)
    forged_server = AuthSession.for_connection(
        KeyChain([MasterKey(1, 1, b"x")]), 50, 10, SPORT, CPORT
    )
    forged = _build(forged_server, SPORT, CPORT, 50, 11, SYN | ACK)
    assert _check(c, forged) == "auth_bad_mac" and c.peer_isn is None
    real = AuthSession.for_connection(s_chain, 60, 10, SPORT, CPORT)
    assert _check(c, _build(real, SPORT, CPORT, 60, 11, SYN | ACK)) is None
    assert c.peer_isn == 60


def test_stateless_reset_answering_a_syn() -> None:
    """A listener with no listener on the TCP port answers an authenticated SYN with
    an RST (SEQ 0) signed as if its ISN were 0; the client in SYN-SENT accepts it,
    an unsigned or forged one it drops."""
    c_chain, s_chain = _chains()
    c = AuthSession.for_connection(c_chain, 4242, None, CPORT, SPORT)
    syn = _build(c, CPORT, SPORT, 4242, 0, SYN)
    probe = AuthSession.for_connection(s_chain, 0, 4242, SPORT, CPORT)
    assert _check(probe, syn) is None  # verify before answering
    rst = _build(probe, SPORT, CPORT, 0, 4243, RST | ACK)
    unsigned = build_segment(SPORT, CPORT, 0, 4243, RST | ACK, 0)
    assert _check(c, unsigned) == "auth_missing"
    assert _check(c, rst) is None
    assert c.peer_isn is None  # an RST teaches no ISN


def test_syn_cookie_ack_can_be_verified_without_state() -> None:
    c_chain, s_chain = _chains()
    c = AuthSession.for_connection(c_chain, 0xFFFFFFFF, None, CPORT, SPORT)
    cookie_isn = 0x12345678
    stateless = AuthSession.for_connection(s_chain, cookie_isn, 0xFFFFFFFF, SPORT, CPORT)
    assert _check(stateless, _build(c, CPORT, SPORT, 0xFFFFFFFF, 0, SYN)) is None
    synack = _build(stateless, SPORT, CPORT, cookie_isn, 0, SYN | ACK)
    assert _check(c, synack) is None
    # The ISN was 2**32 - 1: the ACK's SEQ 0 is the first byte past the wrap.
    ack = _build(c, CPORT, SPORT, 0, cookie_isn + 1, ACK)
    assert c.snd_sne == 1
    seg = parse_segment(ack)
    later = AuthSession.for_connection(
        s_chain, seg.ack - 1, (seg.seq - 1) & 0xFFFFFFFF, SPORT, CPORT
    )
    assert later.check(ack, seg) is None and later.rcv_sne == 1


# ---------------------------------------------------------------------------
# Sequence number extension (RFC 5925 §6.2)


def test_sne_across_the_wrap_with_reordering_and_retransmission() -> None:
    p = Pair(cisn=0xFFFFFFFF - 5000, sisn=0xFFFFFFFF - 100)
    segs = [p.c2s(bytes([i]) * 1000) for i in range(10)]  # crosses 2**32 at the 6th
    assert p.c.snd_sne == 1
    seqs = [parse_segment(s).seq for s in segs]
    assert seqs[4] > seqs[5] == 0
    order = list(range(10))
    random.Random(7).shuffle(order)
    order += [2, 9, 4]  # retransmissions, from both sides of the wrap
    for i in order:
        assert _check(p.s, segs[i]) is None, i
    assert p.s.rcv_sne == 1
    # The other direction wraps 100 bytes in.
    for _ in range(3):
        assert _check(p.c, p.s2c(b"y" * 60)) is None
    assert p.s.snd_sne == 1 and p.c.rcv_sne == 1


def test_a_segment_from_one_wrap_earlier_fails() -> None:
    """Same SEQ, but 2**32 bytes later (SNE 1 instead of 0): the MAC differs, so a
    capture cannot be replayed after a wrap even where TCP's checks would pass."""
    p = Pair(cisn=0x100)
    first = p.c2s(b"old")
    assert _check(p.s, first) is None and p.s.rcv_sne == 0
    for _ in range(4):  # 2**32 bytes later, in steps the receiver can follow
        p.cseq = (p.cseq + 0x40000000 - 3) & 0xFFFFFFFF
        last = p.c2s(b"new")
        assert _check(p.s, last) is None
    assert parse_segment(last).seq == parse_segment(first).seq
    assert p.s.rcv_sne == 1 and p.c.snd_sne == 1
    assert _check(p.s, first) == "auth_bad_mac"


def test_sne_ignores_forged_segments() -> None:
    """Only verified segments move the receive reference."""
    p = Pair(cisn=0)
    ref = p.s.rcv_ref
    forger = AuthSession.for_connection(KeyChain([MasterKey(1, 1, b"x")]), 0, 0, CPORT, SPORT)
    far = _build(forger, CPORT, SPORT, 0x7FFFFFFF, 1, ACK, b"z")
    assert _check(p.s, far) == "auth_bad_mac" and p.s.rcv_ref == ref
    assert _check(p.s, p.c2s(b"ok")) is None


# ---------------------------------------------------------------------------
# Key rollover (RFC 5925 §7.5.2)


def test_rollover_with_rnext_key_id() -> None:
    p = Pair(chains=_chains(a_ids=(1, 1)))
    k2 = (MasterKey(2, 2, b"the new key 0123"), MasterKey(2, 2, b"the new key 0123"))
    # 1. Both ends add the new key; nothing changes on the wire yet.
    p.cchain.add(k2[0])
    p.schain.add(k2[1])
    old_key_seg = p.c2s(b"a")
    assert old_key_seg[34:36] == b"\x01\x01"  # KeyID 1, RNextKeyID 1
    assert _check(p.s, old_key_seg) is None
    # 2. The client asks for the new key: its segments advertise RNextKeyID 2 ...
    p.cchain.set_rnext(2)
    seg = p.c2s(b"b")
    assert seg[34:36] == b"\x01\x02"
    assert _check(p.s, seg) is None
    # ... so the server sends with it from now on; the client accepts either.
    assert p.s.current_key is k2[1]
    back = p.s2c(b"c")
    assert back[34] == 2 and _check(p.c, back) is None and p.c.last_keyid == 2
    assert p.c.current_key.send_id == 1  # the client still sends with key 1
    # 3. The server asks too; the client switches.
    p.schain.set_rnext(2)
    assert _check(p.c, p.s2c(b"d")) is None
    assert p.c.current_key.send_id == 2
    seg = p.c2s(b"e")
    assert seg[34:36] == b"\x02\x02" and _check(p.s, seg) is None
    # 4. Remove the old key everywhere; a delayed segment under it is now dropped.
    p.cchain.remove(1, 1)
    p.schain.remove(1, 1)
    assert _check(p.s, p.c2s(b"f")) is None
    assert _check(p.s, old_key_seg) == "auth_unknown_key"


def test_rollover_backs_up_with_reordered_segments_and_ignores_unknown_rnext() -> None:
    p = Pair()
    p.cchain.add(MasterKey(2, 2, b"k2"))
    p.schain.add(MasterKey(2, 2, b"k2"))
    old = p.c2s(b"1")  # RNextKeyID 1
    p.cchain.set_rnext(2)
    # A forged segment asking for key 2 switches nothing (checked before learning).
    forger = AuthSession.for_connection(
        KeyChain([MasterKey(1, 1, b"guess"), MasterKey(2, 2, b"k2")], rnext=2),
        p.cseq - 1, p.sseq - 1, CPORT, SPORT,
    )  # fmt: skip
    forged = _build(forger, CPORT, SPORT, p.cseq, p.sseq, ACK, ts=(3, 8))
    assert forged[34:36] == b"\x01\x02" and _check(p.s, forged) == "auth_bad_mac"
    assert p.s.current_key.send_id == 1
    new = p.c2s(b"2")  # RNextKeyID 2
    assert _check(p.s, new) is None and p.s.current_key.send_id == 2
    assert _check(p.s, old) is None and p.s.current_key.send_id == 1  # "backing up"
    assert _check(p.s, p.c2s(b"3")) is None and p.s.current_key.send_id == 2
    # An RNextKeyID naming a key the receiver lacks: no action (§7.5.2 e ii 1).
    p.cchain.add(MasterKey(9, 9, b"k9"))
    p.cchain.set_rnext(9)
    assert _check(p.s, p.c2s(b"4")) is None and p.s.current_key.send_id == 2


def test_asymmetric_ids_and_removing_the_key_in_use() -> None:
    a, b = _chains(a_ids=(10, 20))
    p = Pair(chains=(a, b))
    assert p.c2s(b"x")[34:36] == bytes((10, 20))
    assert p.s2c(b"y")[34:36] == bytes((20, 10))
    # New key pair; the server switches its sending key by removing the old one.
    a.add(MasterKey(11, 21, b"second"))
    b.add(MasterKey(21, 11, b"second"))
    a.set_current(11)  # new connections only: the live session keeps key 10
    assert p.c.current_key.send_id == 10
    b.set_rnext(11)
    b.remove(20, 10)
    assert p.s.current_key.send_id == 21 and p.s.rnext_id == 11
    seg = p.s2c(b"z")
    assert seg[34:36] == bytes((21, 11)) and _check(p.c, seg) is None
    assert p.c.current_key.send_id == 11  # it followed RNextKeyID
    assert _check(p.s, p.c2s(b"w")) is None
    stats = p.s.stats()
    assert stats["auth_send_id"] == 21 and stats["auth_last_keyid"] == 11
    assert stats["auth_bad_mac"] == 0


# ---------------------------------------------------------------------------
# Configuration


def test_master_key_and_chain_validation() -> None:
    with pytest.raises(AuthConfigError, match="send_id"):
        MasterKey(256, 1, b"k")
    with pytest.raises(AuthConfigError, match="recv_id"):
        MasterKey(1, -1, b"k")
    with pytest.raises(AuthConfigError, match="bytes"):
        MasterKey(1, 1, "password")  # type: ignore[arg-type]
    with pytest.raises(AuthConfigError, match=r"1\.\.80"):
        MasterKey(1, 1, b"")
    with pytest.raises(AuthConfigError, match=r"1\.\.80"):
        MasterKey(1, 1, bytes(81))
    with pytest.raises(AuthConfigError, match="unknown TCP-AO algorithm"):
        MasterKey(1, 1, b"k", "hmac-md5")
    with pytest.raises(AuthConfigError, match="include_options"):
        MasterKey(1, 1, b"k", include_options=1)  # type: ignore[arg-type]
    k = MasterKey(1, 2, b"super secret")
    assert "super" not in repr(k)
    with pytest.raises(AuthConfigError, match="at least one"):
        KeyChain([])
    with pytest.raises(AuthConfigError, match="send_id 1"):
        KeyChain([k, MasterKey(1, 3, b"x")])
    with pytest.raises(AuthConfigError, match="recv_id 2"):
        KeyChain([k, MasterKey(3, 2, b"x")])
    chain = KeyChain([k], current=1, rnext=2)
    with pytest.raises(AuthConfigError, match="last key"):
        chain.remove(1, 2)
    with pytest.raises(AuthConfigError, match="no key"):
        chain.remove(1, 3)
    with pytest.raises(AuthConfigError, match="no key"):
        chain.set_current(7)
    with pytest.raises(AuthConfigError, match="no key"):
        chain.set_rnext(7)
    with pytest.raises(AuthConfigError, match="MasterKey"):
        KeyChain([b"raw"])  # type: ignore[list-item]
    assert "super" not in repr(chain)


def test_as_key_chain() -> None:
    k = MasterKey(1, 1, b"k")
    chain = KeyChain([k])
    assert as_key_chain(None) is None
    assert as_key_chain(chain) is chain  # shared, so rollover reaches live sessions
    assert as_key_chain(k).keys == (k,)  # type: ignore[union-attr]
    assert as_key_chain([k, MasterKey(2, 2, b"j")]).rnext == 1  # type: ignore[union-attr]
    for bad in (b"secret", "secret", 42):
        with pytest.raises(AuthConfigError, match="KeyChain or MasterKey"):
            as_key_chain(bad)
    with pytest.raises(AuthConfigError, match="4 or both 16"):
        AuthSession.for_connection(chain, 1, 2, 3, 4, addresses=(bytes(4), bytes(16)))
