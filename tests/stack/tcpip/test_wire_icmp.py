"""ICMPv4 and ICMPv6 (echo, unreachable, neighbor discovery), cross-checked with scapy."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)

from stack.tcpip.wire import (
    ICMP_DEST_UNREACHABLE,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_PORT_UNREACHABLE,
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_PORT_UNREACHABLE,
    NeighborAdvertisement,
    NeighborSolicitation,
    WireError,
    build_icmp_dest_unreachable,
    build_icmp_echo_reply,
    build_icmp_echo_request,
    build_icmpv6_dest_unreachable,
    build_icmpv6_echo_reply,
    build_icmpv6_echo_request,
    build_ipv4,
    build_ipv6,
    build_neighbor_advertisement,
    build_neighbor_solicitation,
    build_udp,
    emit_icmp,
    emit_icmpv6,
    parse_icmp,
    parse_icmp_quote,
    parse_icmpv6,
    parse_neighbor_message,
    solicited_node_multicast,
)

SRC4 = bytes([10, 0, 0, 2])
DST4 = bytes([10, 0, 0, 1])
LL_A = IPv6Address("fe80::a").packed
LL_B = IPv6Address("fe80::b").packed
MAC_A = bytes.fromhex("180373c1e872")


def test_icmp_echo_request_matches_scapy_and_round_trips() -> None:
    ours = build_icmp_echo_request(0x1234, 7, b"abcdefgh")
    assert ours == bytes(ICMP(type=8, id=0x1234, seq=7) / b"abcdefgh")
    header, data = parse_icmp(ours)
    assert (header.icmp_type, header.code, header.identifier, header.sequence) == (ICMP_ECHO_REQUEST, 0, 0x1234, 7)
    assert bytes(data) == b"abcdefgh" and not header.is_error


def test_icmp_echo_reply_with_odd_payload_parsed_from_scapy() -> None:
    raw = bytes(ICMP(type=0, id=1, seq=65535) / b"odd")
    header, data = parse_icmp(raw)
    assert header.icmp_type == ICMP_ECHO_REPLY and header.sequence == 65535 and bytes(data) == b"odd"
    assert build_icmp_echo_reply(1, 65535, b"odd") == raw


def test_icmp_port_unreachable_quotes_ip_header_and_eight_bytes() -> None:
    original = build_ipv4(SRC4, DST4, 17, build_udp(SRC4, DST4, 5000, 9, b"long payload here"))
    message = build_icmp_dest_unreachable(ICMP_PORT_UNREACHABLE, original)
    assert len(message) == 8 + 20 + 8
    theirs = ICMP(message)
    assert theirs.type == 3 and theirs.code == 3
    assert theirs.chksum == ICMP(bytes(ICMP(type=3, code=3) / original[:28])).chksum
    header, data = parse_icmp(message)
    assert header.icmp_type == ICMP_DEST_UNREACHABLE and header.is_error
    quote = parse_icmp_quote(data)
    assert (quote.ip.src, quote.ip.dst, quote.ip.protocol) == (SRC4, DST4, 17)
    assert (quote.src_port, quote.dst_port) == (5000, 9)


def test_icmp_quote_from_scapy_unreachable() -> None:
    inner = IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=1234, dport=53) / b"q"
    raw = bytes(ICMP(type=3, code=3) / bytes(inner)[:28])
    quote = parse_icmp_quote(parse_icmp(raw)[1])
    assert (quote.src_port, quote.dst_port) == (1234, 53)


def test_emit_icmp_checksums_scatter_gather_payload_without_copying() -> None:
    chunks = [memoryview(b"abc"), memoryview(b"defg"), memoryview(b"h")]
    header = bytearray(8)
    emit_icmp(header, 0, icmp_type=8, rest_of_header=(5 << 16) | 6, payload=chunks)
    assert bytes(header) + b"abcdefgh" == build_icmp_echo_request(5, 6, b"abcdefgh")


def test_icmp_truncated_and_corrupt() -> None:
    raw = build_icmp_echo_request(1, 1, b"x")
    for cut in range(8):
        with pytest.raises(WireError) as info:
            parse_icmp(raw[:cut])
        assert info.value.key == ("icmp", "truncated")
    corrupt = bytearray(raw)
    corrupt[-1] ^= 0xFF
    with pytest.raises(WireError) as info:
        parse_icmp(corrupt)
    assert info.value.key == ("icmp", "bad_checksum")
    assert parse_icmp(corrupt, verify_checksum=False)[0].identifier == 1


def test_icmpv6_echo_matches_scapy_checksum_both_ways() -> None:
    ours = build_icmpv6_echo_request(LL_A, LL_B, 0x42, 3, b"ping")
    theirs = bytes(IPv6(src="fe80::a", dst="fe80::b") / ICMPv6EchoRequest(id=0x42, seq=3, data=b"ping"))[40:]
    assert ours == theirs
    header, data = parse_icmpv6(theirs, LL_A, LL_B)
    assert (header.icmp_type, header.identifier, header.sequence) == (ICMPV6_ECHO_REQUEST, 0x42, 3)
    assert bytes(data) == b"ping"
    reply = bytes(IPv6(src="fe80::b", dst="fe80::a") / ICMPv6EchoReply(id=0x42, seq=3, data=b"ping"))[40:]
    assert build_icmpv6_echo_reply(LL_B, LL_A, 0x42, 3, b"ping") == reply


def test_icmpv6_checksum_depends_on_pseudo_header_addresses() -> None:
    message = build_icmpv6_echo_request(LL_A, LL_B, 1, 1)
    with pytest.raises(WireError) as info:
        parse_icmpv6(message, LL_A, IPv6Address("fe80::c").packed)
    assert info.value.key == ("icmpv6", "bad_checksum")
    parse_icmpv6(message)  # without addresses nothing is verified


def test_neighbor_solicitation_with_source_link_address_matches_scapy() -> None:
    group = solicited_node_multicast(LL_B)
    ours = build_neighbor_solicitation(LL_A, group, LL_B, MAC_A)
    theirs = bytes(IPv6(src="fe80::a", dst=str(IPv6Address(group)), hlim=255) / ICMPv6ND_NS(tgt="fe80::b")
                   / ICMPv6NDOptSrcLLAddr(lladdr="18:03:73:c1:e8:72"))[40:]
    assert ours == theirs
    header, body = parse_icmpv6(ours, LL_A, group)
    message = parse_neighbor_message(header, body)
    assert message == NeighborSolicitation(LL_B, MAC_A)


def test_neighbor_solicitation_for_dad_has_no_link_address() -> None:
    unspecified = bytes(16)
    group = solicited_node_multicast(LL_A)
    header, body = parse_icmpv6(build_neighbor_solicitation(unspecified, group, LL_A), unspecified, group)
    assert parse_neighbor_message(header, body) == NeighborSolicitation(LL_A, None)


def test_neighbor_advertisement_flags_and_target_link_address_match_scapy() -> None:
    ours = build_neighbor_advertisement(LL_B, LL_A, LL_B, MAC_A, router=False, solicited=True, override=True)
    theirs = bytes(IPv6(src="fe80::b", dst="fe80::a", hlim=255) / ICMPv6ND_NA(tgt="fe80::b", R=0, S=1, O=1)
                   / ICMPv6NDOptDstLLAddr(lladdr="18:03:73:c1:e8:72"))[40:]
    assert ours == theirs
    header, body = parse_icmpv6(theirs, LL_B, LL_A)
    assert parse_neighbor_message(header, body) == NeighborAdvertisement(LL_B, False, True, True, MAC_A)
    router = bytes(IPv6(src="fe80::b", dst="fe80::a") / ICMPv6ND_NA(tgt="fe80::b", R=1, S=0, O=0))[40:]
    header, body = parse_icmpv6(router, LL_B, LL_A)
    assert parse_neighbor_message(header, body) == NeighborAdvertisement(LL_B, True, False, False, None)


def test_neighbor_options_unknown_are_skipped_and_bad_lengths_rejected() -> None:
    # An MTU option (type 5, 8 bytes) before the source link-layer address.
    body = LL_B + bytes([5, 1, 0, 0, 0, 0, 5, 0xDC]) + bytes([1, 1]) + MAC_A
    header, parsed = parse_icmpv6(emit_and_join(body))
    assert parse_neighbor_message(header, parsed).source_link_addr == MAC_A
    for bad in (bytes([1, 0]) + MAC_A, bytes([1, 2]) + MAC_A, bytes([1])):
        header, parsed = parse_icmpv6(emit_and_join(LL_B + bad))
        with pytest.raises(WireError) as info:
            parse_neighbor_message(header, parsed)
        assert info.value.key == ("icmpv6", "bad_option")
    header, parsed = parse_icmpv6(emit_and_join(LL_B[:10]))
    with pytest.raises(WireError) as info:
        parse_neighbor_message(header, parsed)
    assert info.value.key == ("icmpv6", "truncated")


def emit_and_join(body: bytes) -> bytes:
    header = bytearray(8)
    emit_icmpv6(header, 0, src=LL_A, dst=LL_B, icmp_type=135, payload=body)
    return bytes(header) + body


def test_icmpv6_port_unreachable_quotes_the_packet_and_matches_scapy() -> None:
    original = build_ipv6(LL_A, LL_B, 17, build_udp(LL_A, LL_B, 4000, 9, b"hello"))
    ours = build_icmpv6_dest_unreachable(LL_B, LL_A, ICMPV6_PORT_UNREACHABLE, original)
    theirs = bytes(IPv6(src="fe80::b", dst="fe80::a") / ICMPv6DestUnreach(code=4) / original)[40:]
    assert ours == theirs
    header, quoted = parse_icmpv6(ours, LL_B, LL_A)
    assert header.icmp_type == ICMPV6_DEST_UNREACHABLE and header.is_error and bytes(quoted) == original


def test_icmpv6_unreachable_quote_is_capped_at_minimum_mtu() -> None:
    original = build_ipv6(LL_A, LL_B, 17, bytes(1400))
    assert 40 + len(build_icmpv6_dest_unreachable(LL_B, LL_A, 4, original)) == 1280
