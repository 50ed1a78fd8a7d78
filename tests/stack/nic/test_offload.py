"""The NIC's offload engines: LSO v2 segmentation, TX checksums, RX validation (checked with scapy)."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from stack.nic import fill_checksums, segment_lso, validate_rx_checksums
from stack.nic.offload import (RX_IP_FAILED, RX_IP_SUCCEEDED, RX_TCP_FAILED, RX_TCP_SUCCEEDED, RX_UDP_SUCCEEDED,
                               TX_CSUM_IP, TX_CSUM_TCP, TX_CSUM_UDP, OffloadError)

SRC, DST = "02:00:00:00:00:01", "02:00:00:00:00:02"


def rebuilt(frame: bytes) -> bytes:
    """What scapy builds for the same packet with every length and checksum recomputed."""
    pkt = Ether(frame)
    for layer in (IP, TCP, UDP):
        if layer in pkt:
            del pkt[layer].chksum
    if IP in pkt:
        del pkt[IP].len
    if IPv6 in pkt:
        del pkt[IPv6].plen
    return bytes(pkt)


def large_ipv4_segment(payload: bytes, flags: str = "PA") -> bytes:
    pkt = Ether(src=SRC, dst=DST) / IP(src="10.0.0.1", dst="10.0.0.2", id=0xFFF0) / \
        TCP(sport=40007, dport=80, seq=0xFFFFF000, ack=77, flags=flags, window=1024)
    raw = bytearray(bytes(pkt) + payload)
    raw[16:18] = b"\0\0"  # the transport leaves the IPv4 total length 0 for LSO v2
    raw[24:26] = b"\0\0"
    raw[50:52] = b"\0\0"
    return bytes(raw)


def test_lso_cuts_a_64k_segment_into_mss_frames_with_correct_headers():
    payload = bytes((i * 7) % 256 for i in range(65495))
    frames = segment_lso(large_ipv4_segment(payload, "FPA"), 1460, 34)
    assert len(frames) == -(-65495 // 1460)
    joined = b""
    for i, frame in enumerate(frames):
        pkt = Ether(frame)
        assert frame == rebuilt(frame)  # lengths and checksums are what scapy computes
        assert pkt[IP].id == (0xFFF0 + i) & 0xFFFF
        assert pkt[TCP].seq == (0xFFFFF000 + i * 1460) & 0xFFFFFFFF
        assert pkt[IP].len == 40 + len(pkt[TCP].payload)
        last = i == len(frames) - 1
        assert bool(pkt[TCP].flags.F) == last and bool(pkt[TCP].flags.P) == last and pkt[TCP].flags.A
        assert len(frame) <= 1514
        joined += bytes(pkt[TCP].payload)
    assert joined == payload


def test_lso_keeps_tcp_options_in_every_frame():
    pkt = Ether(src=SRC, dst=DST) / IP(src="10.0.0.1", dst="10.0.0.2") / \
        TCP(sport=1, dport=2, seq=1, flags="A", options=[("Timestamp", (1, 2)), ("NOP", None), ("NOP", None)])
    payload = bytes(5000)
    frames = segment_lso(bytes(pkt) + payload, 1448)
    assert len(frames) == 4
    for frame in frames:
        assert frame == rebuilt(frame)
        assert Ether(frame)[TCP].options[0] == ("Timestamp", (1, 2))


def test_lso_over_ipv6_fixes_payload_length_and_checksums():
    pkt = Ether(src=SRC, dst=DST) / IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2, seq=10, flags="PA")
    payload = bytes(range(256)) * 20
    frames = segment_lso(bytes(pkt) + payload, 1440)
    assert b"".join(bytes(Ether(f)[TCP].payload) for f in frames) == payload
    for i, frame in enumerate(frames):
        assert frame == rebuilt(frame)
        assert Ether(frame)[TCP].seq == 10 + i * 1440


def test_lso_of_a_non_tcp_frame_is_refused():
    pkt = Ether() / IP() / UDP() / bytes(3000)
    with pytest.raises(OffloadError):
        segment_lso(bytes(pkt), 1460)


def test_tx_checksum_offload_fills_ipv4_tcp_checksums():
    pkt = Ether(src=SRC, dst=DST) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=5, dport=6) / b"data"
    good = bytes(pkt)
    raw = bytearray(good)
    raw[24:26] = b"\0\0"
    raw[50:52] = b"\x12\x34"  # whatever the transport left there (a pseudo-header seed, say)
    fill_checksums(raw, TX_CSUM_IP | TX_CSUM_TCP)
    assert bytes(raw) == good


def test_tx_checksum_offload_fills_udp_over_ipv6():
    pkt = Ether(src=SRC, dst=DST) / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5, dport=6) / b"datagram"
    good = bytes(pkt)
    raw = bytearray(good)
    raw[60:62] = b"\0\0"
    fill_checksums(raw, TX_CSUM_UDP)
    assert bytes(raw) == good


def test_rx_validation_reports_good_checksums():
    frame = bytes(Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / TCP() / b"x")
    assert validate_rx_checksums(frame) == RX_IP_SUCCEEDED | RX_TCP_SUCCEEDED
    frame6 = bytes(Ether() / IPv6(src="fd00::1", dst="fd00::2") / UDP() / b"x")
    assert validate_rx_checksums(frame6) == RX_UDP_SUCCEEDED


def test_rx_validation_flags_bad_tcp_and_bad_ip_header():
    raw = bytearray(bytes(Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / TCP() / b"payload"))
    raw[-1] ^= 1
    assert validate_rx_checksums(raw) == RX_IP_SUCCEEDED | RX_TCP_FAILED
    raw[-1] ^= 1
    raw[22] ^= 1  # TTL: the IP header checksum no longer matches
    assert validate_rx_checksums(raw) & RX_IP_FAILED


def test_rx_validation_skips_udp_without_checksum_and_non_ip():
    raw = bytearray(bytes(Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / UDP() / b"x"))
    raw[40:42] = b"\0\0"
    assert validate_rx_checksums(raw) == RX_IP_SUCCEEDED
    assert validate_rx_checksums(bytes(60)) == 0
    assert validate_rx_checksums(b"\x01") == 0
