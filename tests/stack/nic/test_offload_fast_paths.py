"""The per-packet fast paths of the offload engines agree with the general code on any input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from stack.nic.offload import _validate_rx_checksums_any, segment_lso, validate_rx_checksums


def _ipv4(proto: str, payload: bytes, flags: int = 0, frag: int = 0, options: bytes = b"") -> bytearray:
    l4 = TCP(sport=1, dport=2, seq=5) if proto == "tcp" else UDP(sport=1, dport=2)
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / \
        IP(src="10.0.0.1", dst="10.0.0.2", flags=flags, frag=frag, options=options) / l4 / payload
    return bytearray(bytes(pkt))


@settings(max_examples=300, deadline=None)
@given(proto=st.sampled_from(["tcp", "udp"]), payload=st.binary(max_size=80),
       flips=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=3),
       fragment=st.booleans(), cut=st.integers(0, 40))
def test_rx_checksum_fast_path_matches_the_general_validator(proto, payload, flips, fragment, cut):
    frame = _ipv4(proto, payload, flags=1 if fragment else 0)
    for pos, xor in flips:  # corrupt any byte: lengths, version, protocol, checksums, data
        if pos < len(frame):
            frame[pos] ^= xor
    frame = frame[:len(frame) - cut] if cut < len(frame) else frame
    assert validate_rx_checksums(bytes(frame)) == _validate_rx_checksums_any(bytes(frame))


def test_rx_checksum_fast_path_handles_ip_options_and_udp_without_checksum():
    with_options = bytes(_ipv4("tcp", b"data", options=b"\x01\x01\x01\x00"))
    assert validate_rx_checksums(with_options) == _validate_rx_checksums_any(with_options) != 0
    udp = _ipv4("udp", b"data")
    udp[40:42] = b"\0\0"  # IPv4 UDP checksum 0: nothing to validate
    assert validate_rx_checksums(bytes(udp)) == _validate_rx_checksums_any(bytes(udp))


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 9000), mss=st.integers(200, 1460), odd_headers=st.booleans())
def test_lso_frames_carry_valid_checksums_and_the_whole_payload(size, mss, odd_headers):
    payload = bytes(i % 251 for i in range(size))
    frame = _ipv4("tcp", b"", options=b"\x01\x01\x01\x00" if odd_headers else b"")
    frames = segment_lso(bytes(frame) + payload, mss)
    header_len = len(frame)
    assert b"".join(f[header_len:] for f in frames) == payload
    for f in frames:
        assert validate_rx_checksums(f) == _validate_rx_checksums_any(f) == 0x28  # IP and TCP succeeded


@settings(max_examples=300, deadline=None)
@given(pseudo=st.integers(0, 0xFFFF), segment=st.binary(max_size=64))
def test_one_chunk_checksum_check_matches_transport_checksum_ok(pseudo, segment):
    from stack.nic.offload import _sum_ok
    from stack.wire.checksum import transport_checksum_ok
    assert _sum_ok(pseudo, memoryview(segment)) == transport_checksum_ok(pseudo, (segment,))
    # and on segments whose checksum field is right (the usual case)
    from stack.wire.checksum import transport_checksum
    fixed = bytearray(segment.ljust(2, b"\0"))
    fixed[0:2] = b"\0\0"
    fixed[0:2] = transport_checksum(pseudo, (bytes(fixed),)).to_bytes(2, "big")
    assert _sum_ok(pseudo, memoryview(bytes(fixed))) == transport_checksum_ok(pseudo, (bytes(fixed),)) is True
