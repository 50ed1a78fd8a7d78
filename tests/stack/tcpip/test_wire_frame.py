"""Whole frames: parse_frame dispatch, tcpdump-like summaries, and fuzzing."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from stack.tcpip.wire import (
    ACK,
    BROADCAST_MAC,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ICMP_PORT_UNREACHABLE,
    ICMPV6_PORT_UNREACHABLE,
    PSH,
    SYN,
    ArpPacket,
    DecodedFrame,
    IcmpHeader,
    Icmpv6Header,
    Ipv4Header,
    Ipv6Header,
    NeighborSolicitation,
    TcpHeader,
    TcpOptions,
    UdpHeader,
    WireError,
    build_arp_reply,
    build_arp_request,
    build_ethernet,
    build_icmp_dest_unreachable,
    build_icmp_echo_request,
    build_icmpv6_dest_unreachable,
    build_icmpv6_echo_request,
    build_ipv4,
    build_ipv6,
    build_neighbor_advertisement,
    build_neighbor_solicitation,
    build_tcp,
    build_udp,
    parse_frame,
    solicited_node_multicast,
    summarize_frame,
)

MAC_A = bytes.fromhex("180373c1e872")
MAC_B = bytes.fromhex("02000000000b")
IP_A = bytes([10, 0, 0, 2])
IP_B = bytes([10, 0, 0, 1])
LL_A = IPv6Address("fe80::a").packed
LL_B = IPv6Address("fe80::b").packed


def ipv4_frame(protocol: int, segment: bytes, **fields) -> bytes:
    return build_ethernet(MAC_B, MAC_A, ETHERTYPE_IPV4, build_ipv4(IP_A, IP_B, protocol, segment, **fields))


def ipv6_frame(protocol: int, segment: bytes, src: bytes = LL_A, dst: bytes = LL_B) -> bytes:
    return build_ethernet(MAC_B, MAC_A, ETHERTYPE_IPV6, build_ipv6(src, dst, protocol, segment))


SYN_FRAME = ipv4_frame(6, build_tcp(IP_A, IP_B, 49152, 40007, 1000, 0, SYN, 65535,
                                    options=TcpOptions(mss=1460, wscale=8, sack_permitted=True, timestamps=(1, 0))))
DATA_FRAME = ipv4_frame(6, build_tcp(IP_A, IP_B, 49152, 40007, 1001, 5001, PSH | ACK, 512, payload=b"x" * 100))
UDP_FRAME = ipv4_frame(17, build_udp(IP_A, IP_B, 5000, 53, b"hello"))
PING_FRAME = ipv4_frame(1, build_icmp_echo_request(1, 2, bytes(56)))
UNREACH_FRAME = build_ethernet(MAC_A, MAC_B, ETHERTYPE_IPV4, build_ipv4(
    IP_B, IP_A, 1, build_icmp_dest_unreachable(ICMP_PORT_UNREACHABLE, build_ipv4(IP_A, IP_B, 17, build_udp(
        IP_A, IP_B, 5000, 9, b"hi")))))
ARP_REQUEST_FRAME = build_ethernet(BROADCAST_MAC, MAC_A, ETHERTYPE_ARP, build_arp_request(MAC_A, IP_A, IP_B))
ARP_REPLY_FRAME = build_ethernet(MAC_A, MAC_B, ETHERTYPE_ARP, build_arp_reply(MAC_B, IP_B, MAC_A, IP_A))
NS_FRAME = ipv6_frame(58, build_neighbor_solicitation(LL_A, solicited_node_multicast(LL_B), LL_B, MAC_A),
                      dst=solicited_node_multicast(LL_B))
NA_FRAME = ipv6_frame(58, build_neighbor_advertisement(LL_B, LL_A, LL_B, MAC_B), src=LL_B, dst=LL_A)
PING6_FRAME = ipv6_frame(58, build_icmpv6_echo_request(LL_A, LL_B, 7, 8, b"abcd"))
UNREACH6_FRAME = ipv6_frame(58, build_icmpv6_dest_unreachable(LL_B, LL_A, ICMPV6_PORT_UNREACHABLE, build_ipv6(
    LL_A, LL_B, 17, build_udp(LL_A, LL_B, 4000, 9, b"x"))), src=LL_B, dst=LL_A)
TCP6_FRAME = ipv6_frame(6, build_tcp(LL_A, LL_B, 1, 2, 3, 4, ACK, 5, payload=b"six"))

VALID_FRAMES = [SYN_FRAME, DATA_FRAME, UDP_FRAME, PING_FRAME, UNREACH_FRAME, ARP_REQUEST_FRAME, ARP_REPLY_FRAME,
                NS_FRAME, NA_FRAME, PING6_FRAME, UNREACH6_FRAME, TCP6_FRAME]


def test_parse_frame_dispatches_each_protocol_to_its_record() -> None:
    expected = [
        (SYN_FRAME, Ipv4Header, TcpHeader), (UDP_FRAME, Ipv4Header, UdpHeader), (PING_FRAME, Ipv4Header, IcmpHeader),
        (ARP_REQUEST_FRAME, ArpPacket, type(None)), (NS_FRAME, Ipv6Header, Icmpv6Header),
        (TCP6_FRAME, Ipv6Header, TcpHeader),
    ]
    for frame, network, transport in expected:
        decoded = parse_frame(frame)
        assert isinstance(decoded, DecodedFrame)
        assert isinstance(decoded.network, network) and isinstance(decoded.transport, transport)
    assert bytes(parse_frame(DATA_FRAME).payload) == b"x" * 100
    assert parse_frame(NS_FRAME).neighbor == NeighborSolicitation(LL_B, MAC_A)


def test_parse_frame_accepts_scapy_frames_with_padding() -> None:
    frame = bytes(Ether(dst="02:00:00:00:00:0b", src="18:03:73:c1:e8:72") / IP(src="10.0.0.2", dst="10.0.0.1")
                  / UDP(sport=1, dport=2) / b"a")
    padded = frame + bytes(60 - len(frame))
    decoded = parse_frame(padded)
    assert bytes(decoded.payload) == b"a" and decoded.transport.dst_port == 2


def test_parse_frame_leaves_fragments_and_unknown_ethertypes_undecoded() -> None:
    fragment = ipv4_frame(17, b"\x00" * 16, more_fragments=True, identification=5)
    decoded = parse_frame(fragment)
    assert decoded.transport is None and decoded.network.is_fragment
    lldp = build_ethernet(MAC_B, MAC_A, 0x88CC, b"lldp")
    assert parse_frame(lldp).network is None


def test_parse_frame_verifies_checksums_unless_told_not_to() -> None:
    corrupt = bytearray(UDP_FRAME)
    corrupt[-1] ^= 0x20
    with pytest.raises(WireError) as info:
        parse_frame(corrupt)
    assert info.value.key == ("udp", "bad_checksum")
    assert bytes(parse_frame(corrupt, verify_checksum=False).payload) == b"hellO"


@pytest.mark.parametrize("frame, expected", [
    (SYN_FRAME, "10.0.0.2.49152 > 10.0.0.1.40007: Flags [S], seq 1000, win 65535, "
                "options [mss 1460,wscale 8,sackOK,TS val 1 ecr 0], length 0"),
    (DATA_FRAME, "10.0.0.2.49152 > 10.0.0.1.40007: Flags [P.], seq 1001:1101, ack 5001, win 512, length 100"),
    (UDP_FRAME, "10.0.0.2.5000 > 10.0.0.1.53: UDP, length 5"),
    (PING_FRAME, "10.0.0.2 > 10.0.0.1: ICMP echo request, id 1, seq 2, length 64"),
    (UNREACH_FRAME, "10.0.0.1 > 10.0.0.2: ICMP 10.0.0.1 udp port 9 unreachable, length 36"),
    (ARP_REQUEST_FRAME, "ARP, Request who-has 10.0.0.1 tell 10.0.0.2, length 28"),
    (ARP_REPLY_FRAME, "ARP, Reply 10.0.0.1 is-at 02:00:00:00:00:0b, length 28"),
    (NS_FRAME, "fe80::a > ff02::1:ff00:b: ICMP6, neighbor solicitation, who has fe80::b, length 32"),
    (NA_FRAME, "fe80::b > fe80::a: ICMP6, neighbor advertisement, tgt is fe80::b, length 32"),
    (PING6_FRAME, "fe80::a > fe80::b: ICMP6, echo request, id 7, seq 8, length 12"),
    (UNREACH6_FRAME, "fe80::b > fe80::a: ICMP6, destination unreachable, unreachable port, "
                     "fe80::b udp port 9, length 57"),
    (TCP6_FRAME, "fe80::a.1 > fe80::b.2: Flags [.], seq 3:6, ack 4, win 5, length 3"),
])
def test_summaries_read_like_tcpdump(frame: bytes, expected: str) -> None:
    assert summarize_frame(frame) == expected


def test_summary_with_link_level_prefix() -> None:
    assert summarize_frame(ARP_REQUEST_FRAME, link_level=True) == (
        "18:03:73:c1:e8:72 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: "
        "ARP, Request who-has 10.0.0.1 tell 10.0.0.2, length 28")


def test_summary_marks_bad_checksums_and_malformed_layers() -> None:
    corrupt = bytearray(DATA_FRAME)
    corrupt[-1] ^= 1
    assert summarize_frame(corrupt).endswith("length 100 [bad tcp cksum]")
    bad_ip = bytearray(UDP_FRAME)
    bad_ip[22] ^= 1  # TTL
    assert summarize_frame(bad_ip).endswith("[bad ip cksum]")
    assert summarize_frame(b"\x00" * 5) == "malformed (ethernet: truncated)"
    assert summarize_frame(UDP_FRAME[:20]) == "malformed (ipv4: truncated)"
    bad_option = bytearray(SYN_FRAME)
    bad_option[14 + 20 + 21] = 3  # MSS option length 4 -> 3
    assert summarize_frame(bad_option) == "10.0.0.2 > 10.0.0.1: malformed (tcp: bad_option)"
    assert summarize_frame(build_ethernet(MAC_B, MAC_A, 0x88CC, b"lldp")) == "ethertype 0x88cc, length 4"


def test_summary_of_fragment_and_unknown_protocol() -> None:
    fragment = ipv4_frame(17, bytes(16), more_fragments=True, identification=5, fragment_offset=1480)
    assert summarize_frame(fragment) == "10.0.0.2 > 10.0.0.1: udp fragment id 5, offset 1480, flags [+], length 16"
    assert summarize_frame(ipv4_frame(47, b"gre!")) == "10.0.0.2 > 10.0.0.1: ip-proto-47, length 4"


def test_scapy_built_frames_decode_and_summarize() -> None:
    ether = Ether(dst="02:00:00:00:00:0b", src="18:03:73:c1:e8:72")  # explicit: scapy would look up routes
    frames = [
        ether / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=80, dport=1025, flags="FA", seq=10, ack=20),
        ether / IP(src="192.0.2.1", dst="192.0.2.2") / ICMP(type=0, id=3, seq=4) / b"pong",
        ether / ARP(op=1, hwsrc="18:03:73:c1:e8:72", psrc="192.0.2.1", pdst="192.0.2.2"),
        ether / IPv6(src="fe80::1", dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt="fe80::2")
        / ICMPv6NDOptSrcLLAddr(lladdr="18:03:73:c1:e8:72"),
        ether / IPv6(src="fe80::2", dst="fe80::1") / ICMPv6ND_NA(tgt="fe80::2"),
    ]
    for packet in frames:
        raw = bytes(packet)
        parse_frame(raw)
        assert not summarize_frame(raw).startswith(("malformed", "unprintable"))
    assert summarize_frame(bytes(frames[0])) == "192.0.2.1.80 > 192.0.2.2.1025: Flags [F.], seq 10, ack 20, win 8192, length 0"


@pytest.mark.parametrize("frame", VALID_FRAMES, ids=lambda f: summarize_frame(f)[:40])
def test_every_truncation_of_a_valid_frame_raises_wire_error(frame: bytes) -> None:
    parse_frame(frame)
    for cut in range(len(frame)):
        with pytest.raises(WireError):
            parse_frame(frame[:cut])
        assert summarize_frame(frame[:cut]).startswith("malformed ("), cut


def check_never_crashes(frame: bytes) -> None:
    for verify in (True, False):
        try:
            decoded = parse_frame(frame, verify_checksum=verify)
        except WireError as exc:
            assert exc.reason in ("truncated", "bad_checksum", "bad_version", "bad_header_length", "bad_length",
                                  "bad_option", "unsupported")
        else:
            assert isinstance(decoded, DecodedFrame)
    summary = summarize_frame(frame)
    assert isinstance(summary, str) and not summary.startswith("unprintable")


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_random_bytes_give_records_or_wire_errors_only(frame: bytes) -> None:
    check_never_crashes(frame)


@settings(max_examples=600)
@given(st.sampled_from(VALID_FRAMES),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, 200))
def test_mutated_valid_frames_give_records_or_wire_errors_only(frame: bytes, edits, cut: int) -> None:
    mutated = bytearray(frame)
    for position, value in edits:
        mutated[position % len(mutated)] = value
    check_never_crashes(bytes(mutated))
    check_never_crashes(bytes(mutated[: len(mutated) - cut % len(mutated)]))
