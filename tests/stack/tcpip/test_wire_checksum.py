"""The fast modulo-0xFFFF checksum against a plain word-by-word RFC 1071 sum."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from stack.wire.checksum import (
    as_chunks,
    internet_checksum,
    ones_add,
    ones_sum,
    ones_sum_chunks,
    pseudo_header_sum,
    pseudo_header_sum_v4,
    pseudo_header_sum_v6,
    transport_checksum,
    transport_checksum_ok,
)


def reference_sum(data: bytes) -> int:
    """RFC 1071 as written: add 16-bit words, fold carries back in."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def split_at(data: bytes, cuts: list[int]) -> list[memoryview]:
    view = memoryview(data)
    points = sorted({min(c, len(data)) for c in cuts})
    chunks, start = [], 0
    for point in points:
        chunks.append(view[start:point])
        start = point
    chunks.append(view[start:])
    return chunks


@given(st.binary(max_size=600))
def test_fast_sum_equals_word_by_word_sum_for_any_length(data: bytes) -> None:
    assert ones_sum(data) == reference_sum(data)
    assert internet_checksum(data) == (~reference_sum(data)) & 0xFFFF


@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_chunked_sum_equals_sum_of_joined_chunks_including_odd_borders(data: bytes, cuts: list[int]) -> None:
    chunks = split_at(data, cuts)
    assert ones_sum_chunks(chunks) == reference_sum(data)


@given(st.integers(min_value=1, max_value=64).flatmap(lambda n: st.just(b"\xff" * n)))
def test_all_ones_data_sums_to_0xffff_not_zero(data: bytes) -> None:
    expected = reference_sum(data)
    assert ones_sum(data) == expected
    assert ones_sum_chunks([data[:1], data[1:]]) == expected


def test_all_zero_data_sums_to_zero_and_checksums_to_0xffff() -> None:
    assert ones_sum(bytes(10)) == 0
    assert ones_sum_chunks([bytes(3), bytes(5)]) == 0
    assert internet_checksum(bytes(4)) == 0xFFFF


def test_words_adding_to_a_multiple_of_0xffff_fold_to_0xffff() -> None:
    # 0x8000 + 0x7fff = 0xffff: the residue is 0 but the folded sum is all ones.
    data = bytes.fromhex("80007fff")
    assert reference_sum(data) == 0xFFFF
    assert ones_sum(data) == 0xFFFF
    assert ones_sum_chunks([data[:3], data[3:]]) == 0xFFFF


def test_rfc1071_worked_example() -> None:
    # RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    assert ones_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_ones_add_is_associative_and_matches_reference(a: int, b: int, c: int) -> None:
    data = a.to_bytes(2, "big") + b.to_bytes(2, "big") + c.to_bytes(2, "big")
    assert ones_add(ones_add(a, b), c) == ones_add(a, ones_add(b, c))
    if a or b or c:
        assert ones_add(ones_add(a, b), c) % 0xFFFF == reference_sum(data) % 0xFFFF


@given(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4), st.integers(0, 255),
       st.integers(0, 0xFFFF))
def test_ipv4_pseudo_header_sum_matches_reference_layout(src: bytes, dst: bytes, proto: int, length: int) -> None:
    layout = src + dst + bytes([0, proto]) + length.to_bytes(2, "big")
    assert pseudo_header_sum_v4(src, dst, proto, length) == reference_sum(layout)
    assert pseudo_header_sum(IPv4Address(src), IPv4Address(dst), proto, length) == reference_sum(layout)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), st.integers(0, 255),
       st.integers(0, 0xFFFFFFFF))
def test_ipv6_pseudo_header_sum_matches_reference_layout(src: bytes, dst: bytes, nh: int, length: int) -> None:
    layout = src + dst + length.to_bytes(4, "big") + bytes([0, 0, 0, nh])
    assert pseudo_header_sum_v6(src, dst, nh, length) == reference_sum(layout)
    assert pseudo_header_sum(IPv6Address(src), IPv6Address(dst), nh, length) == reference_sum(layout)


@given(st.binary(min_size=8, max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_transport_checksum_written_into_segment_verifies(segment: bytes, cuts: list[int]) -> None:
    pseudo = pseudo_header_sum_v4(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 17, len(segment))
    zeroed = bytearray(segment)
    zeroed[6:8] = b"\x00\x00"
    value = transport_checksum(pseudo, split_at(bytes(zeroed), cuts))
    zeroed[6:8] = value.to_bytes(2, "big")
    assert transport_checksum_ok(pseudo, split_at(bytes(zeroed), cuts))
    assert transport_checksum_ok(pseudo, [bytes(zeroed)])


def test_as_chunks_treats_one_buffer_as_one_chunk() -> None:
    assert as_chunks(b"abc") == (b"abc",)
    chunks = [b"a", memoryview(b"bc")]
    assert as_chunks(chunks) is chunks
