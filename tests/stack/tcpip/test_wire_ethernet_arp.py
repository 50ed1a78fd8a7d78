"""Ethernet framing, MAC helpers and ARP, cross-checked with scapy."""

from __future__ import annotations

import pytest
from scapy.layers.l2 import ARP, Ether

from stack.tcpip.wire import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST_MAC,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    WireError,
    build_arp_reply,
    build_arp_request,
    build_ethernet,
    emit_arp,
    emit_ethernet,
    format_mac,
    mac_from_str,
    parse_arp,
    parse_ethernet,
)

MAC_A = bytes.fromhex("180373c1e872")
MAC_B = bytes.fromhex("02000000000b")
IP_A = bytes([10, 0, 0, 1])
IP_B = bytes([10, 0, 0, 2])


def test_format_mac_uses_ndiskd_dashes_and_optional_colons() -> None:
    assert format_mac(MAC_A) == "18-03-73-c1-e8-72"
    assert format_mac(MAC_A, ":") == "18:03:73:c1:e8:72"


@pytest.mark.parametrize("text", ["18-03-73-c1-e8-72", "18:03:73:C1:E8:72", "180373c1e872", " 18-3-73-c1-e8-72 "])
def test_mac_from_str_accepts_common_spellings(text: str) -> None:
    assert mac_from_str(text) == MAC_A


@pytest.mark.parametrize("text", ["", "18-03-73-c1-e8", "18-03-73-c1-e8-72-00", "zz-03-73-c1-e8-72", "1803"])
def test_mac_from_str_rejects_garbage_with_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        mac_from_str(text)


def test_ethernet_round_trip_keeps_padding_in_payload() -> None:
    frame = build_ethernet(MAC_B, MAC_A, ETHERTYPE_IPV4, b"\x45hello", pad=True)
    assert len(frame) == 60
    header, payload = parse_ethernet(frame)
    assert (header.dst, header.src, header.ethertype) == (MAC_B, MAC_A, ETHERTYPE_IPV4)
    assert bytes(payload[:6]) == b"\x45hello" and len(payload) == 46


def test_emit_ethernet_writes_at_offset_and_returns_end() -> None:
    buf = bytearray(20)
    assert emit_ethernet(buf, 3, dst=BROADCAST_MAC, src=MAC_A, ethertype=ETHERTYPE_ARP) == 17
    assert bytes(buf[3:17]) == BROADCAST_MAC + MAC_A + b"\x08\x06"


def test_ethernet_header_broadcast_and_multicast_flags() -> None:
    header, _ = parse_ethernet(build_ethernet(BROADCAST_MAC, MAC_A, ETHERTYPE_ARP))
    assert header.is_broadcast and header.is_multicast
    header, _ = parse_ethernet(build_ethernet(bytes.fromhex("333300000001"), MAC_A, ETHERTYPE_ARP))
    assert header.is_multicast and not header.is_broadcast


def test_ethernet_parse_matches_scapy() -> None:
    frame = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="18:03:73:c1:e8:72", type=0x88CC) / b"xyz")
    header, payload = parse_ethernet(frame)
    assert header == type(header)(BROADCAST_MAC, MAC_A, 0x88CC)
    assert bytes(payload) == b"xyz"


@pytest.mark.parametrize("length", range(14))
def test_ethernet_shorter_than_header_is_truncated(length: int) -> None:
    with pytest.raises(WireError) as info:
        parse_ethernet(bytes(length))
    assert info.value.key == ("ethernet", "truncated")


def test_arp_request_round_trip_and_matches_scapy_bytes() -> None:
    ours = build_arp_request(MAC_A, IP_A, IP_B)
    theirs = bytes(ARP(op=1, hwsrc="18:03:73:c1:e8:72", psrc="10.0.0.1", hwdst="00:00:00:00:00:00", pdst="10.0.0.2"))
    assert ours == theirs
    arp = parse_arp(ours)
    assert arp.is_request and arp.operation == ARP_REQUEST
    assert (arp.sender_mac, arp.sender_ip, arp.target_mac, arp.target_ip) == (MAC_A, IP_A, bytes(6), IP_B)
    assert str(arp.target_address) == "10.0.0.2"


def test_arp_reply_parsed_from_scapy_frame_with_padding() -> None:
    frame = bytes(Ether(dst="02:00:00:00:00:0b", src="18:03:73:c1:e8:72") /
                  ARP(op=2, hwsrc="18:03:73:c1:e8:72", psrc="10.0.0.1", hwdst="02:00:00:00:00:0b", pdst="10.0.0.2")
                  / (b"\x00" * 18))
    header, payload = parse_ethernet(frame)
    arp = parse_arp(payload)
    assert header.ethertype == ETHERTYPE_ARP
    assert arp.is_reply and arp.sender_mac == MAC_A and arp.target_mac == MAC_B
    assert build_arp_reply(MAC_A, IP_A, MAC_B, IP_B) == bytes(payload[:28])


def test_emit_arp_into_shared_buffer_after_ethernet_header() -> None:
    buf = bytearray(42)
    offset = emit_ethernet(buf, 0, dst=BROADCAST_MAC, src=MAC_A, ethertype=ETHERTYPE_ARP)
    end = emit_arp(buf, offset, operation=ARP_REPLY, sender_mac=MAC_A, sender_ip=IP_A, target_mac=MAC_B,
                   target_ip=IP_B)
    assert end == 42
    packet = Ether(bytes(buf))
    assert packet[ARP].op == 2 and packet[ARP].psrc == "10.0.0.1" and packet[ARP].hwdst == "02:00:00:00:00:0b"


@pytest.mark.parametrize("length", range(28))
def test_arp_truncated_at_every_length_raises_wire_error(length: int) -> None:
    with pytest.raises(WireError) as info:
        parse_arp(build_arp_request(MAC_A, IP_A, IP_B)[:length])
    assert info.value.layer == "arp" and info.value.reason == "truncated"


def test_arp_for_other_hardware_is_unsupported() -> None:
    packet = bytearray(build_arp_request(MAC_A, IP_A, IP_B))
    packet[1] = 6  # IEEE 802 hardware type
    with pytest.raises(WireError) as info:
        parse_arp(packet)
    assert info.value.key == ("arp", "unsupported")
