"""The per-packet fast paths of the wire layer agree with the general code and with scapy:
parse_tcp_segment / emit_tcp_header (the glue's), the NOP NOP TS option shortcut, the IPv4
header checksum computed from field values, and the tuple-based header records."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP

from stack.tcpip.wire import (ACK, IPPROTO_TCP, PSH, TcpOptions, WireError, build_ipv4, build_tcp, emit_tcp,
                              parse_ipv4, parse_tcp, tcp_header_length)
from stack.tcpip.wire.ipv4 import emit_ipv4, emit_ipv4_own, ipv4_address_sum, ipv4_header_checksum_ok
from stack.tcpip.wire.tcp import emit_tcp_header, fill_tcp_checksum, parse_tcp_options, parse_tcp_segment

SRC4 = IPv4Address("10.0.0.2").packed
DST4 = IPv4Address("10.0.0.1").packed

u32 = st.integers(0, 2**32 - 1)
options_strategy = st.builds(
    TcpOptions,
    mss=st.none() | st.integers(1, 0xFFFF),
    wscale=st.none() | st.integers(0, 14),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(u32, u32), max_size=3).map(tuple),
    timestamps=st.none() | st.tuples(u32, u32),
).filter(lambda o: tcp_header_length(o) <= 60)


@given(seq=u32, ack=u32, flags=st.integers(0, 255), window=st.integers(0, 0xFFFF), options=options_strategy,
       payload=st.binary(max_size=40))
def test_parse_tcp_segment_gives_the_fields_parse_tcp_gives(seq, ack, flags, window, options, payload) -> None:
    segment = build_tcp(SRC4, DST4, 1234, 80, seq, ack, flags, window, options=options, payload=payload)
    header, data = parse_tcp(segment, SRC4, DST4)
    o = header.options
    fields = parse_tcp_segment(segment, SRC4, DST4)
    assert fields[:11] == (header.src_port, header.dst_port, header.seq, header.ack, header.flags, header.window,
                           o.mss, o.wscale, o.sack_permitted, o.timestamps, o.sack_blocks)
    assert bytes(fields[11]) == bytes(data) == payload


@given(seq=u32, ack=u32, flags=st.integers(0, 255), window=st.integers(0, 0xFFFF), options=options_strategy,
       payload=st.binary(max_size=40))
def test_emit_tcp_header_writes_the_bytes_emit_tcp_writes(seq, ack, flags, window, options, payload) -> None:
    expected = bytearray(80)
    end = emit_tcp(expected, 6, src_port=1, dst_port=2, seq=seq, ack=ack, flags=flags, window=window,
                   options=options, payload=payload, src=SRC4, dst=DST4)
    ours = bytearray(80)
    assert emit_tcp_header(ours, 6, 1, 2, seq, ack, flags, window, options.mss, options.wscale,
                           options.sack_permitted, options.sack_blocks, options.timestamps) == end
    fill_tcp_checksum(ours, 6, end, [memoryview(payload)], SRC4, DST4)
    assert ours == expected


def test_timestamps_only_options_take_the_shortcut_and_read_like_the_general_parser() -> None:
    nop_nop_ts = b"\x01\x01\x08\x0a" + (7).to_bytes(4, "big") + (9).to_bytes(4, "big")
    assert parse_tcp_options(nop_nop_ts) == TcpOptions(timestamps=(7, 9))
    # the same option after other padding goes the long way and reads the same
    assert parse_tcp_options(b"\x01\x01\x01\x01" + nop_nop_ts[2:] + b"\x00\x00") == TcpOptions(timestamps=(7, 9))


def test_parse_tcp_segment_reports_bad_input_like_parse_tcp() -> None:
    segment = build_tcp(SRC4, DST4, 1, 2, 3, flags=ACK | PSH, options=TcpOptions(timestamps=(1, 2)), payload=b"x")
    for bad in (segment[:10], segment[:12] + b"\x40" + segment[13:], segment[:-1] + b"y"):
        with pytest.raises(WireError) as ours:
            parse_tcp_segment(bad, SRC4, DST4)
        with pytest.raises(WireError) as theirs:
            parse_tcp(bad, SRC4, DST4)
        assert ours.value.key == theirs.value.key


@given(tos=st.integers(0, 255), ident=st.integers(0, 0xFFFF), ttl=st.integers(0, 255), df=st.booleans(),
       src=st.binary(min_size=4, max_size=4), dst=st.binary(min_size=4, max_size=4),
       options=st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00" * 2]), length=st.integers(0, 1400))
def test_ipv4_checksum_from_field_values_matches_scapy(tos, ident, ttl, df, src, dst, options, length) -> None:
    ours = build_ipv4(src, dst, IPPROTO_TCP, bytes(length), tos=tos, identification=ident, ttl=ttl,
                      dont_fragment=df, options=options)
    reference = IP(ours)
    del reference.chksum
    assert ours == bytes(reference)
    parse_ipv4(ours)  # verifies the checksum


@given(ident=st.integers(0, 0x1FFFF), ttl=st.integers(0, 255), protocol=st.integers(0, 255),
       src=st.binary(min_size=4, max_size=4), dst=st.binary(min_size=4, max_size=4),
       length=st.integers(0, 0xFFFF - 20))
def test_emit_ipv4_own_writes_the_bytes_emit_ipv4_writes_for_a_df_header(ident, ttl, protocol, src, dst,
                                                                          length) -> None:
    ours, theirs = bytearray(40), bytearray(40)
    end = emit_ipv4_own(ours, 6, src, dst, ipv4_address_sum(src, dst), protocol, length, ttl, ident)
    assert end == emit_ipv4(theirs, 6, src=src, dst=dst, protocol=protocol, payload_length=length, ttl=ttl,
                            identification=ident, dont_fragment=True)
    assert ours == theirs
    assert ipv4_header_checksum_ok(ours[6:])


def test_ipv4_header_record_is_immutable_and_hashable() -> None:
    header, _ = parse_ipv4(build_ipv4(SRC4, DST4, IPPROTO_TCP, b"abc"))
    with pytest.raises(AttributeError):
        header.ttl = 1  # type: ignore[misc]
    assert hash(header) == hash(parse_ipv4(build_ipv4(SRC4, DST4, IPPROTO_TCP, b"abc"))[0])
    assert repr(header).startswith("Ipv4Header(header_length=20, tos=0, total_length=23")
