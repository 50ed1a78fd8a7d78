"""UDP and TCP headers, options and pseudo-header checksums, cross-checked with scapy."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from stack.tcpip.wire import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    TcpOptions,
    WireError,
    build_tcp,
    build_udp,
    emit_tcp,
    emit_udp,
    format_flags,
    parse_tcp,
    parse_tcp_options,
    parse_udp,
    tcp_header_length,
)

SRC4 = IPv4Address("10.0.0.2").packed
DST4 = IPv4Address("10.0.0.1").packed
SRC6 = IPv6Address("2001:db8::2").packed
DST6 = IPv6Address("2001:db8::1").packed


def key_of(call) -> tuple[str, str]:
    with pytest.raises(WireError) as info:
        call()
    return info.value.key


# --- UDP ---------------------------------------------------------------------------------------

def test_udp_over_ipv4_matches_scapy_bytes_and_checksum() -> None:
    ours = build_udp(SRC4, DST4, 5000, 53, b"query")
    theirs = bytes(IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=5000, dport=53) / b"query")[20:]
    assert ours == theirs
    header, payload = parse_udp(ours, SRC4, DST4)
    assert (header.src_port, header.dst_port, header.length) == (5000, 53, 13) and bytes(payload) == b"query"


def test_udp_over_ipv6_matches_scapy_and_zero_checksum_is_refused() -> None:
    ours = build_udp(SRC6, DST6, 1, 2, b"v6!")
    theirs = bytes(IPv6(src="2001:db8::2", dst="2001:db8::1") / UDP(sport=1, dport=2) / b"v6!")[40:]
    assert ours == theirs
    parse_udp(ours, SRC6, DST6)
    no_checksum = ours[:6] + b"\x00\x00" + ours[8:]
    assert key_of(lambda: parse_udp(no_checksum, SRC6, DST6)) == ("udp", "bad_checksum")
    parse_udp(no_checksum, SRC4, DST4)  # IPv4: zero means "not computed"


def test_udp_computed_zero_checksum_is_sent_as_all_ones() -> None:
    # Pick a payload word that makes the complement come out 0.
    base = build_udp(SRC4, DST4, 7, 7, b"\x00\x00")
    needed = int.from_bytes(base[6:8], "big")  # adding this word drives the checksum to 0
    datagram = build_udp(SRC4, DST4, 7, 7, needed.to_bytes(2, "big"))
    assert datagram[6:8] == b"\xff\xff"
    parse_udp(datagram, SRC4, DST4)


def test_udp_payload_cut_to_length_field_and_validation_reasons() -> None:
    datagram = build_udp(SRC4, DST4, 1, 2, b"abc")
    header, payload = parse_udp(datagram + b"pad", SRC4, DST4)
    assert bytes(payload) == b"abc"
    for cut in range(len(datagram)):
        assert key_of(lambda: parse_udp(datagram[:cut])) == ("udp", "truncated")
    short = datagram[:4] + (7).to_bytes(2, "big") + datagram[6:]
    assert key_of(lambda: parse_udp(short)) == ("udp", "bad_length")
    corrupt = datagram[:-1] + b"X"
    assert key_of(lambda: parse_udp(corrupt, SRC4, DST4)) == ("udp", "bad_checksum")


def test_emit_udp_over_payload_chunks_matches_joined_payload() -> None:
    payload = [memoryview(b"a"), memoryview(b"bcd"), memoryview(b""), memoryview(b"efghi")]
    header = bytearray(8)
    assert emit_udp(header, 0, src_port=9, dst_port=10, payload=payload, src=SRC4, dst=DST4) == 8
    assert bytes(header) + b"abcdefghi" == build_udp(SRC4, DST4, 9, 10, b"abcdefghi")


def test_emit_udp_without_addresses_leaves_checksum_for_offload() -> None:
    header = bytearray(8)
    emit_udp(header, 0, src_port=9, dst_port=10, payload=b"xyz")
    assert header[6:8] == b"\x00\x00" and int.from_bytes(header[4:6], "big") == 11


# --- TCP ---------------------------------------------------------------------------------------

SYN_OPTIONS = TcpOptions(mss=1460, wscale=8, sack_permitted=True, timestamps=(1, 0))


def test_format_flags_like_tcpdump() -> None:
    assert format_flags(SYN) == "S"
    assert format_flags(SYN | ACK) == "S."
    assert format_flags(PSH | ACK) == "P."
    assert format_flags(FIN | ACK) == "F."
    assert format_flags(RST) == "R"
    assert format_flags(FIN | PSH | ACK) == "FP."
    assert format_flags(SYN | ECE | CWR) == "SEW"
    assert format_flags(URG | ACK) == ".U"
    assert format_flags(0) == "none"


def test_tcp_syn_round_trip_with_all_options() -> None:
    segment = build_tcp(SRC4, DST4, 49152, 40007, 1000, 0, SYN, 65535, options=SYN_OPTIONS)
    assert len(segment) == tcp_header_length(SYN_OPTIONS) == 40
    header, payload = parse_tcp(segment, SRC4, DST4)
    assert (header.src_port, header.dst_port, header.seq, header.ack) == (49152, 40007, 1000, 0)
    assert (header.flags, header.window, header.data_offset, header.header_length) == (SYN, 65535, 10, 40)
    assert header.options == SYN_OPTIONS and len(payload) == 0 and header.has(SYN) and not header.has(SYN | ACK)


def test_tcp_built_here_is_read_by_scapy_with_same_checksum() -> None:
    options = TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(123456, 654321),
                         sack_blocks=((5000, 6000),))
    segment = build_tcp(SRC4, DST4, 1234, 80, 0xFFFFFFF0, 77, PSH | ACK, 512, options=options, payload=b"GET /")
    packet = IP(bytes(IP(src="10.0.0.2", dst="10.0.0.1", proto=6) / segment))
    tcp = packet[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.window) == (1234, 80, 0xFFFFFFF0, 77, 512)
    assert str(tcp.flags) == "PA" and bytes(tcp.payload) == b"GET /"
    seen = {name: value for name, value in tcp.options if name != "NOP"}
    assert seen["MSS"] == 1460 and seen["WScale"] == 7 and seen["Timestamp"] == (123456, 654321)
    assert seen["SAckOK"] == b"" and seen["SAck"] == (5000, 6000)
    original = tcp.chksum
    del tcp.chksum
    assert IP(bytes(packet))[TCP].chksum == original


def test_tcp_from_scapy_parses_options_in_any_order_over_ipv6() -> None:
    raw = bytes(IPv6(src="2001:db8::2", dst="2001:db8::1") / TCP(
        sport=443, dport=50000, seq=9, ack=10, flags="SA", window=8192,
        options=[("Timestamp", (7, 8)), ("NOP", None), ("WScale", 14), ("SAckOK", b""), ("MSS", 1220),
                 ("EOL", None)]))[40:]
    header, payload = parse_tcp(raw, SRC6, DST6)
    assert header.options == TcpOptions(mss=1220, wscale=14, sack_permitted=True, timestamps=(7, 8))
    assert format_flags(header.flags) == "S." and len(payload) == 0


def test_tcp_unknown_option_skipped_by_its_length() -> None:
    raw = bytes(IP(src="10.0.0.2", dst="10.0.0.1") / TCP(options=[(30, b"\x01\x02\x03\x04"), ("MSS", 536)]))[20:]
    header, _ = parse_tcp(raw, SRC4, DST4)
    assert header.options.mss == 536 and header.options.unknown_kinds == (30,)


def test_tcp_payload_checksum_over_chunks_with_odd_borders() -> None:
    payload = b"0123456789abcdefX"
    chunks = [memoryview(payload)[0:3], memoryview(payload)[3:4], memoryview(payload)[4:]]
    options = TcpOptions(timestamps=(1, 2))
    header = bytearray(tcp_header_length(options))
    end = emit_tcp(header, 0, src_port=1, dst_port=2, seq=3, ack=4, flags=ACK, window=5, options=options,
                   payload=chunks, src=SRC6, dst=DST6)
    assert end == 32
    assert bytes(header) + payload == build_tcp(SRC6, DST6, 1, 2, 3, 4, ACK, 5, options=options, payload=payload)
    parse_tcp(bytes(header) + payload, SRC6, DST6)


def test_emit_tcp_writes_at_offset_in_a_shared_header_buffer() -> None:
    buf = bytearray(b"\xaa" * 80)
    end = emit_tcp(buf, 34, src_port=1, dst_port=2, seq=1, flags=SYN, window=100, options=SYN_OPTIONS,
                   src=SRC4, dst=DST4)
    assert end == 74 and buf[:34] == b"\xaa" * 34 and buf[74:] == b"\xaa" * 6
    assert parse_tcp(buf[34:74], SRC4, DST4)[0].options == SYN_OPTIONS


@pytest.mark.parametrize("options", [
    TcpOptions(),
    TcpOptions(mss=536),
    TcpOptions(wscale=0),
    TcpOptions(sack_permitted=True),
    TcpOptions(timestamps=(0xFFFFFFFF, 0)),
    TcpOptions(sack_permitted=True, timestamps=(5, 6)),
    TcpOptions(sack_blocks=((1, 2), (3, 4), (5, 6), (7, 8))),
    TcpOptions(timestamps=(1, 1), sack_blocks=((1, 2), (3, 4), (5, 6))),
])
def test_tcp_options_round_trip_and_are_padded_to_four_bytes(options: TcpOptions) -> None:
    segment = build_tcp(SRC4, DST4, 1, 2, 3, options=options)
    assert len(segment) % 4 == 0
    assert parse_tcp(segment, SRC4, DST4)[0].options == options


def test_tcp_options_that_do_not_fit_in_forty_bytes_are_refused() -> None:
    with pytest.raises(ValueError):
        build_tcp(SRC4, DST4, 1, 2, 3, options=TcpOptions(timestamps=(1, 1), sack_blocks=((1, 2),) * 4))


@pytest.mark.parametrize("option_bytes", [
    b"\x02\x03\x05\xb4",  # MSS with length 3
    b"\x02\x04\x05",  # MSS running past the header
    b"\x03\x04\x07\x00",  # WS with length 4
    b"\x04\x03\x00\x00",  # SACK-permitted with length 3
    b"\x05\x06\x00\x00\x00\x00",  # SACK without a whole block
    b"\x08\x08\x00\x00\x00\x00\x00\x00",  # TS with length 8
    b"\x1e\x01\x00\x00",  # unknown option with length 1
    b"\x01\x01\x01\x1e",  # kind with no room for a length
])
def test_tcp_malformed_options_are_bad_option(option_bytes: bytes) -> None:
    assert key_of(lambda: parse_tcp_options(option_bytes)) == ("tcp", "bad_option")


def test_tcp_options_stop_at_end_of_list() -> None:
    assert parse_tcp_options(b"\x02\x04\x05\xb4\x00\xff\xff\xff") == TcpOptions(mss=1460)


def test_tcp_validation_reasons() -> None:
    segment = build_tcp(SRC4, DST4, 1, 2, 3, options=SYN_OPTIONS, payload=b"data")
    for cut in range(40):
        assert key_of(lambda: parse_tcp(segment[:cut])) == ("tcp", "truncated")
    low_offset = segment[:12] + bytes([0x40]) + segment[13:]
    assert key_of(lambda: parse_tcp(low_offset)) == ("tcp", "bad_header_length")
    assert key_of(lambda: parse_tcp(segment[:-1] + b"X", SRC4, DST4)) == ("tcp", "bad_checksum")
    assert key_of(lambda: parse_tcp(segment, SRC4, bytes([10, 0, 0, 3]))) == ("tcp", "bad_checksum")
    header, payload = parse_tcp(segment[:-1] + b"X", SRC4, DST4, verify_checksum=False)
    assert bytes(payload) == b"datX"


@given(
    seq=st.integers(0, 2**32 - 1), ack=st.integers(0, 2**32 - 1), flags=st.integers(0, 255),
    window=st.integers(0, 0xFFFF), mss=st.none() | st.integers(0, 0xFFFF), wscale=st.none() | st.integers(0, 255),
    sack_ok=st.booleans(), ts=st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    payload=st.binary(max_size=64),
)
def test_tcp_round_trip_for_any_field_values(seq, ack, flags, window, mss, wscale, sack_ok, ts, payload) -> None:
    options = TcpOptions(mss=mss, wscale=wscale, sack_permitted=sack_ok, timestamps=ts)
    segment = build_tcp(SRC4, DST4, 10, 20, seq, ack, flags, window, options=options, payload=payload)
    header, data = parse_tcp(segment, SRC4, DST4)
    assert (header.seq, header.ack, header.flags, header.window) == (seq, ack, flags, window)
    assert header.options == options and bytes(data) == payload
    # scapy recomputes the checksum of the same segment and agrees.
    packet = IP(src="10.0.0.2", dst="10.0.0.1") / TCP(segment)
    assert bytes(packet[TCP]) == segment
    del packet[TCP].chksum
    assert IP(bytes(packet))[TCP].chksum == header.checksum
