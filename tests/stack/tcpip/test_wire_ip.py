"""IPv4 and IPv6 headers: round trips, scapy cross-checks, validation reasons."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop

from stack.tcpip.wire import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    WireError,
    build_ipv4,
    build_ipv6,
    emit_ipv4,
    multicast_mac_v6,
    parse_ipv4,
    parse_ipv6,
    solicited_node_multicast,
)
from stack.tcpip.wire.ipv4 import ipv4_header_checksum_ok

SRC4 = bytes([10, 0, 0, 2])
DST4 = bytes([10, 0, 0, 1])
SRC6 = IPv6Address("fe80::2").packed
DST6 = IPv6Address("2001:db8::1").packed


def error_of(call) -> tuple[str, str]:
    with pytest.raises(WireError) as info:
        call()
    return info.value.key


def test_ipv4_round_trip_with_all_fields() -> None:
    datagram = build_ipv4(SRC4, DST4, IPPROTO_UDP, b"payload", ttl=64, identification=0x1234,
                          dont_fragment=True, tos=0xB8)
    header, payload = parse_ipv4(datagram)
    assert (header.src, header.dst, header.protocol, header.ttl) == (SRC4, DST4, IPPROTO_UDP, 64)
    assert (header.identification, header.tos, header.total_length) == (0x1234, 0xB8, 27)
    assert header.dont_fragment and not header.more_fragments and not header.is_fragment
    assert header.src_address == IPv4Address("10.0.0.2") and header.payload_length == 7
    assert bytes(payload) == b"payload"


def test_ipv4_built_here_matches_scapy_bytes_and_checksum() -> None:
    ours = build_ipv4(SRC4, DST4, IPPROTO_TCP, b"abc", ttl=128, identification=7, dont_fragment=True)
    theirs = bytes(IP(src="10.0.0.2", dst="10.0.0.1", proto=6, ttl=128, id=7, flags="DF") / b"abc")
    assert ours == theirs


def test_ipv4_from_scapy_with_options_parses_options_and_checksum() -> None:
    raw = bytes(IP(src="192.0.2.1", dst="192.0.2.9", ttl=3, options=b"\x01\x01\x01\x00") / b"data")
    header, payload = parse_ipv4(raw)
    assert header.header_length == 24 and header.options == b"\x01\x01\x01\x00"
    assert header.checksum == IP(raw).chksum
    assert bytes(payload) == b"data"


def test_ipv4_options_emitted_are_seen_by_scapy() -> None:
    raw = build_ipv4(SRC4, DST4, IPPROTO_UDP, b"", options=b"\x94\x04\x00\x00")  # router alert
    packet = IP(raw)
    assert packet.ihl == 6 and packet.options[0].option == 20
    assert ipv4_header_checksum_ok(raw)


def test_ipv4_ethernet_padding_is_cut_to_total_length() -> None:
    header, payload = parse_ipv4(build_ipv4(SRC4, DST4, IPPROTO_UDP, b"xy") + bytes(20))
    assert bytes(payload) == b"xy"


def test_ipv4_fragment_fields_parsed_in_bytes() -> None:
    raw = bytes(IP(src="10.0.0.2", dst="10.0.0.1", proto=17, id=99, flags="MF", frag=185) / (b"z" * 16))
    header, _ = parse_ipv4(raw)
    assert header.is_fragment and header.more_fragments and header.fragment_offset == 1480
    assert header.identification == 99
    middle = build_ipv4(SRC4, DST4, 17, b"q" * 8, fragment_offset=2960, more_fragments=False)
    assert IP(middle).frag == 370
    last, _ = parse_ipv4(middle)
    assert last.is_fragment and not last.more_fragments


def test_ipv4_header_emitted_in_shared_buffer_leaves_neighbours_alone() -> None:
    buf = bytearray(b"\xee" * 40)
    end = emit_ipv4(buf, 10, src=SRC4, dst=DST4, protocol=6, payload_length=0)
    assert end == 30 and buf[:10] == b"\xee" * 10 and buf[30:] == b"\xee" * 10
    assert ipv4_header_checksum_ok(bytes(buf[10:30]))


@pytest.mark.parametrize("cut", range(27))
def test_ipv4_truncated_at_every_length_is_reported_as_truncated(cut: int) -> None:
    raw = build_ipv4(SRC4, DST4, IPPROTO_UDP, b"payload")
    assert error_of(lambda: parse_ipv4(raw[:cut])) == ("ipv4", "truncated")


def test_ipv4_validation_reasons() -> None:
    raw = bytearray(build_ipv4(SRC4, DST4, IPPROTO_UDP, b"payload"))
    bad_version = bytearray(raw)
    bad_version[0] = 0x65
    assert error_of(lambda: parse_ipv4(bad_version)) == ("ipv4", "bad_version")
    short_ihl = bytearray(raw)
    short_ihl[0] = 0x44
    assert error_of(lambda: parse_ipv4(short_ihl, verify_checksum=False)) == ("ipv4", "bad_header_length")
    small_total = bytearray(raw)
    small_total[2:4] = (12).to_bytes(2, "big")
    assert error_of(lambda: parse_ipv4(small_total, verify_checksum=False)) == ("ipv4", "bad_length")
    corrupt = bytearray(raw)
    corrupt[8] ^= 0x01  # TTL
    assert error_of(lambda: parse_ipv4(corrupt)) == ("ipv4", "bad_checksum")
    header, _ = parse_ipv4(corrupt, verify_checksum=False)
    assert header.ttl == 129


def test_ipv4_allow_truncated_returns_what_is_there() -> None:
    raw = build_ipv4(SRC4, DST4, IPPROTO_UDP, b"0123456789")
    header, payload = parse_ipv4(raw[:24], allow_truncated=True)
    assert header.total_length == 30 and bytes(payload) == b"0123"


def test_emit_ipv4_rejects_unpadded_options_and_bad_fragment_offset() -> None:
    with pytest.raises(ValueError):
        build_ipv4(SRC4, DST4, 6, b"", options=b"\x01")
    with pytest.raises(ValueError):
        build_ipv4(SRC4, DST4, 6, b"", fragment_offset=3)


def test_ipv6_round_trip_and_matches_scapy_bytes() -> None:
    ours = build_ipv6(SRC6, DST6, IPPROTO_UDP, b"hello", hop_limit=64, traffic_class=0x20, flow_label=0xABCDE)
    theirs = bytes(IPv6(src="fe80::2", dst="2001:db8::1", nh=17, hlim=64, tc=0x20, fl=0xABCDE) / b"hello")
    assert ours == theirs
    header, payload = parse_ipv6(ours)
    assert (header.traffic_class, header.flow_label, header.hop_limit) == (0x20, 0xABCDE, 64)
    assert header.protocol == header.next_header == IPPROTO_UDP and header.payload_length == 5
    assert header.dst_address == IPv6Address("2001:db8::1") and bytes(payload) == b"hello"


def test_ipv6_extension_headers_are_skipped_to_the_upper_layer() -> None:
    raw = bytes(IPv6(src="fe80::2", dst="fe80::1") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                / UDP(sport=1, dport=2) / b"x")
    header, payload = parse_ipv6(raw + bytes(6))  # plus Ethernet padding
    assert header.next_header == 0 and header.protocol == IPPROTO_UDP
    assert header.extension_headers == (0, 60)
    assert bytes(payload[:4]) == b"\x00\x01\x00\x02" and bytes(payload[8:]) == b"x"
    plain, _ = parse_ipv6(raw, skip_extension_headers=False)
    assert plain.protocol == 0


def test_ipv6_fragment_header_sets_is_fragment() -> None:
    raw = bytes(IPv6(src="fe80::2", dst="fe80::1") / IPv6ExtHdrFragment(offset=10, m=1, id=0xDEAD, nh=17) / (b"q" * 8))
    header, payload = parse_ipv6(raw)
    assert header.is_fragment and header.fragment_offset == 80 and header.more_fragments
    assert header.fragment_id == 0xDEAD and header.protocol == 17 and len(payload) == 8
    atomic = bytes(IPv6(src="fe80::2", dst="fe80::1") / IPv6ExtHdrFragment(offset=0, m=0, nh=17) / (b"q" * 8))
    assert not parse_ipv6(atomic)[0].is_fragment


def test_ipv6_later_fragment_data_is_never_read_as_an_extension_header() -> None:
    # The first fragment's next header is a Destination Options header; a later fragment's
    # data starts wherever the cut fell, so its bytes must not be walked as headers.
    data = bytes([60, 200]) + b"\xff" * 14  # looks like an overlong Destination Options header
    raw = bytes(IPv6(src="fe80::2", dst="fe80::1") / IPv6ExtHdrFragment(offset=2, m=0, id=7, nh=60) / data)
    header, payload = parse_ipv6(raw)
    assert header.is_fragment and header.fragment_offset == 16 and header.protocol == 60
    assert bytes(payload) == data


@pytest.mark.parametrize("cut", range(45))
def test_ipv6_truncated_at_every_length_is_reported_as_truncated(cut: int) -> None:
    raw = build_ipv6(SRC6, DST6, IPPROTO_UDP, b"hello")
    assert error_of(lambda: parse_ipv6(raw[:cut])) == ("ipv6", "truncated")


def test_ipv6_bad_version_and_overlong_extension_header() -> None:
    raw = bytearray(build_ipv6(SRC6, DST6, IPPROTO_UDP, b"hello"))
    raw[0] = 0x40
    assert error_of(lambda: parse_ipv6(raw)) == ("ipv6", "bad_version")
    hop = bytearray(bytes(IPv6(src="fe80::2", dst="fe80::1") / IPv6ExtHdrHopByHop() / b"abcdefgh"))
    hop[41] = 5  # claims 48 bytes of options
    assert error_of(lambda: parse_ipv6(hop)) == ("ipv6", "truncated")


def test_solicited_node_group_and_its_mac() -> None:
    group = solicited_node_multicast(IPv6Address("fe80::1234:5678:9abc"))
    assert IPv6Address(group) == IPv6Address("ff02::1:ff78:9abc")
    assert multicast_mac_v6(group) == bytes.fromhex("3333ff789abc")
