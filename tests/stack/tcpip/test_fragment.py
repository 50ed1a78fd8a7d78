"""The reassembly table, driven directly (sans-IO): orders, duplicates, overlaps, lengths, time, caps."""

from __future__ import annotations

import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stack.tcpip.fragment import (COMPLETE, DISCARDED, DROPPED, HEADROOM, HELD, ReassemblyTable, assemble_v4,
                                  assemble_v6, emit_fragment_header)
from stack.tcpip.wire import WireError, build_ipv4, build_ipv6, parse_ipv4, parse_ipv6

SRC4, DST4 = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1])
SRC6 = bytes.fromhex("fd00" + "00" * 13 + "02")
DST6 = bytes.fromhex("fd00" + "00" * 13 + "01")
KEY4 = (SRC4, DST4, 17, 0x1234)
KEY6 = (SRC6, DST6, 0xDEADBEEF)
SECOND = 1_000_000_000


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def pieces(data: bytes, step: int) -> list[tuple[int, bool, bytes]]:
    """(offset, more, bytes) of `data` cut every `step` bytes (a multiple of 8)."""
    out = []
    for start in range(0, len(data), step):
        chunk = data[start:start + step]
        out.append((start, start + len(chunk) < len(data), chunk))
    return out


def first_header_v4(data: bytes) -> bytes:
    """The header of the offset-0 fragment (MF set) as it would arrive."""
    return build_ipv4(SRC4, DST4, 17, data[:8], identification=0x1234, more_fragments=True)[:20]


def feed(table: ReassemblyTable, key, parts, now: int = 0):
    outcomes = []
    for offset, more, chunk in parts:
        first = first_header_v4(chunk) if offset == 0 and table.version == 4 else None
        outcomes.append(table.add(key, offset, more, chunk, now, first, 17))
    return outcomes


# --- order ---------------------------------------------------------------------------------

def test_in_order_fragments_complete_the_datagram_byte_exact():
    data = payload(4000)
    table = ReassemblyTable(4)
    outcomes = feed(table, KEY4, pieces(data, 1480))
    assert [o.kind for o in outcomes] == [HELD, HELD, COMPLETE]
    entry = outcomes[-1].entry
    assert bytes(entry.payload()) == data
    assert sum(o.copied for o in outcomes) == len(data)  # every byte copied once
    assert table.entries == {} and table.bytes_held == 0


def test_reverse_order_completes_on_the_first_fragment():
    data = payload(3000, 1)
    table = ReassemblyTable(4)
    outcomes = feed(table, KEY4, list(reversed(pieces(data, 1000 // 8 * 8))))
    assert [o.kind for o in outcomes[:-1]] == [HELD] * (len(outcomes) - 1)
    assert outcomes[-1].kind == COMPLETE and bytes(outcomes[-1].entry.payload()) == data
    assert outcomes[0].created and not any(o.created for o in outcomes[1:])


@settings(max_examples=60, deadline=None)
@given(size=st.integers(9, 20000), step=st.integers(1, 200).map(lambda n: n * 8), seed=st.integers(0, 2 ** 32),
       version=st.sampled_from([4, 6]), duplicates=st.integers(0, 3))
def test_any_order_with_duplicates_completes_byte_exact(size, step, seed, version, duplicates):
    assume(size > step)  # two fragments at least (one "fragment" with MF clear at offset 0 is no fragment)
    data = payload(size, seed)
    parts = pieces(data, step)
    rng = random.Random(seed)
    parts += [rng.choice(parts) for _ in range(duplicates)]
    rng.shuffle(parts)
    table = ReassemblyTable(version)
    key = KEY4 if version == 4 else KEY6
    outcomes = feed(table, key, parts)
    completes = [o for o in outcomes if o.kind == COMPLETE]
    assert completes, "every byte arrived, so the datagram completed"
    # (duplicates arriving after completion may build the datagram again, as a duplicated
    # unfragmented datagram is delivered twice - but always byte-exact)
    assert all(bytes(o.entry.payload()) == data for o in completes)
    assert all(o.kind in (HELD, COMPLETE) or o.reason == "fragment_duplicate" for o in outcomes)
    first = outcomes.index(completes[0])
    assert {(o, m) for o, m, _ in parts[:first + 1]} == {(o, m) for o, m, _ in pieces(data, step)}


def test_holes_are_reported_until_filled():
    table = ReassemblyTable(6)
    table.add(KEY6, 16, True, b"b" * 16, 0)
    out = table.add(KEY6, 48, False, b"d" * 5, 0)
    assert out.kind == HELD and out.entry.holes() == [(0, 16), (32, 48)]
    table.add(KEY6, 0, True, b"a" * 16, 0, bytes(48), 17)
    done = table.add(KEY6, 32, True, b"c" * 16, 0)
    assert done.kind == COMPLETE and bytes(done.entry.payload()) == b"a" * 16 + b"b" * 16 + b"c" * 16 + b"d" * 5


# --- duplicates and overlaps --------------------------------------------------------------------

def test_exact_duplicates_are_dropped_and_counted_and_the_datagram_still_completes():
    data = payload(2000, 2)
    parts = pieces(data, 800)
    for version, key in ((4, KEY4), (6, KEY6)):
        table = ReassemblyTable(version)
        outcomes = feed(table, key, [parts[0], parts[0], parts[1], parts[1], parts[2]])
        assert [(o.kind, o.reason) for o in outcomes] == [(HELD, ""), (DROPPED, "fragment_duplicate"), (HELD, ""),
                                                          (DROPPED, "fragment_duplicate"), (COMPLETE, "")]
        assert bytes(outcomes[-1].entry.payload()) == data


def test_ipv4_overlap_drops_only_the_overlapping_fragment_first_data_wins():
    table = ReassemblyTable(4)
    table.add(KEY4, 0, True, b"A" * 16, 0, first_header_v4(b""))
    overlap = table.add(KEY4, 8, True, b"X" * 16, 0)  # bytes 8..24 would rewrite 8..16
    assert (overlap.kind, overlap.reason) == (DROPPED, "fragment_overlap")
    same_range = table.add(KEY4, 0, True, b"Z" * 16, 0)  # same range, other bytes: an overlap too
    assert (same_range.kind, same_range.reason) == (DROPPED, "fragment_overlap")
    done = table.add(KEY4, 16, False, b"B" * 4, 0)
    assert done.kind == COMPLETE and bytes(done.entry.payload()) == b"A" * 16 + b"B" * 4


def test_ipv6_overlap_discards_the_whole_datagram_and_every_later_fragment_of_it():
    table = ReassemblyTable(6)
    table.add(KEY6, 0, True, b"A" * 16, 0, bytes(48), 17)
    held = table.bytes_held
    discarded = table.add(KEY6, 8, True, b"X" * 16, 0)
    assert (discarded.kind, discarded.reason) == (DISCARDED, "fragment_overlap")
    assert table.bytes_held < held  # its bytes are gone at once
    later = table.add(KEY6, 16, False, b"B" * 4, 0)  # would have completed it
    assert (later.kind, later.reason) == (DROPPED, "reassembly_discarded")
    # the dead entry leaves with its timer; then the id can be reused
    assert table.expire(discarded.entry)
    assert table.add(KEY6, 0, True, b"C" * 8, 0, bytes(48), 17).kind == HELD


# --- lengths ------------------------------------------------------------------------------------

def test_fragment_not_a_multiple_of_8_is_dropped_unless_last():
    for version, key in ((4, KEY4), (6, KEY6)):
        table = ReassemblyTable(version)
        bad = table.add(key, 0, True, b"x" * 12, 0)
        assert (bad.kind, bad.reason) == (DROPPED, "fragment_length") and table.entries == {}
        empty = table.add(key, 8, True, b"", 0)
        assert (empty.kind, empty.reason) == (DROPPED, "fragment_length")
        assert table.add(key, 8, False, b"x" * 13, 0).kind == HELD  # the last may be any length


def test_datagram_longer_than_65535_is_discarded():
    table = ReassemblyTable(4)
    table.add(KEY4, 0, True, b"a" * 1480, 0, first_header_v4(b""))
    pod = table.add(KEY4, 65528, False, b"x" * 16, 0)  # "ping of death": 65544 bytes
    assert (pod.kind, pod.reason) == (DISCARDED, "reassembly_too_long")
    assert table.add(KEY4, 1480, True, b"b" * 8, 0).reason == "reassembly_discarded"
    table6 = ReassemblyTable(6)
    assert table6.add(KEY6, 65528, False, b"x" * 7, 0).kind == HELD  # ends at 65535: the most IPv6 carries
    too_long = table6.add((SRC6, DST6, 1), 65528, False, b"x" * 8, 0)
    assert (too_long.kind, too_long.reason) == (DISCARDED, "reassembly_too_long")


def test_ipv4_payload_bound_leaves_room_for_the_header():
    table = ReassemblyTable(4)
    assert table.add(KEY4, 65512, False, b"x" * 3, 0).kind == HELD  # 20 + 65515 = 65535
    assert table.add((SRC4, DST4, 17, 9), 65512, False, b"x" * 4, 0).kind == DISCARDED


def test_a_second_last_fragment_or_data_past_the_end_is_inconsistent():
    table = ReassemblyTable(4)
    table.add(KEY4, 16, False, b"e" * 8, 0)
    assert table.add(KEY4, 32, False, b"f" * 8, 0).reason == "fragment_inconsistent"
    assert table.add(KEY4, 24, True, b"g" * 8, 0).reason == "fragment_inconsistent"
    table2 = ReassemblyTable(4)
    table2.add((SRC4, DST4, 17, 2), 40, True, b"h" * 8, 0)
    assert table2.add((SRC4, DST4, 17, 2), 16, False, b"i" * 8, 0).reason == "fragment_inconsistent"


# --- time ----------------------------------------------------------------------------------------

def test_timeout_expires_entries_sixty_seconds_after_their_first_fragment():
    table = ReassemblyTable(4)
    table.add(KEY4, 8, True, b"x" * 8, 10 * SECOND)
    table.add(KEY4, 16, False, b"y" * 8, 50 * SECOND)  # later fragments do not restart the clock
    assert table.expired(69 * SECOND) == []
    gone = table.expired(70 * SECOND)
    assert [e.key for e in gone] == [KEY4] and table.entries == {} and table.bytes_held == 0
    assert gone[0].first_header is None  # no ICMP without the first fragment


def test_the_first_fragment_is_kept_for_the_icmp_quote():
    table = ReassemblyTable(4)
    header = first_header_v4(b"")
    out = table.add(KEY4, 0, True, b"q" * 8, 0, header)
    assert out.entry.first_header == header


def test_expire_after_completion_is_a_no_op():
    table = ReassemblyTable(4)
    out = feed(table, KEY4, pieces(payload(100), 64))[-1]
    assert out.kind == COMPLETE and not table.expire(out.entry)


# --- resource caps ----------------------------------------------------------------------------------

def test_datagram_cap_drops_new_datagrams_and_keeps_those_in_progress():
    table = ReassemblyTable(4, max_datagrams=3)
    for ident in range(3):
        assert table.add((SRC4, DST4, 17, ident), 8, False, b"x" * 8, 0).kind == HELD
    refused = table.add((SRC4, DST4, 17, 99), 0, True, b"y" * 8, 0)
    assert (refused.kind, refused.reason) == (DROPPED, "reassembly_limit") and len(table.entries) == 3
    done = table.add((SRC4, DST4, 17, 0), 0, True, b"z" * 8, 0, first_header_v4(b""))
    assert done.kind == COMPLETE and len(table.entries) == 2


def test_byte_cap_bounds_the_buffers_held():
    table = ReassemblyTable(6, max_bytes=HEADROOM * 2 + 3000)
    assert table.add((SRC6, DST6, 1), 0, True, b"a" * 1448, 0, bytes(48), 17).kind == HELD
    assert table.add((SRC6, DST6, 2), 0, True, b"b" * 1448, 0, bytes(48), 17).kind == HELD
    refused = table.add((SRC6, DST6, 2), 1448, True, b"c" * 1448, 0)
    assert (refused.kind, refused.reason) == (DROPPED, "reassembly_limit")
    assert table.bytes_held <= table.max_bytes
    # a fragment far out (a big sparse buffer) is refused too, and leaves no empty datagram behind
    far = table.add((SRC6, DST6, 3), 60000, True, b"d" * 8, 0)
    assert far.reason == "reassembly_limit" and (SRC6, DST6, 3) not in table.entries


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 8000), st.integers(0, 40), st.booleans()),
                max_size=300))
def test_a_flood_never_holds_more_than_the_caps(fragments):
    table = ReassemblyTable(4, max_datagrams=20, max_bytes=64 * 1024)
    for ident, offset8, length8, more in fragments:
        table.add((SRC4, DST4, 17, ident), offset8 * 8, more, bytes(length8 * 8), 0)
        assert len(table.entries) <= 20 and table.bytes_held <= 64 * 1024
        assert table.bytes_held == sum(e.held for e in table.entries.values())


# --- wire helpers ------------------------------------------------------------------------------------

def test_assemble_v4_rebuilds_an_unfragmented_header_with_the_first_fragments_options():
    options = b"\x94\x04\x00\x00"  # router alert
    first = build_ipv4(SRC4, DST4, 17, b"a" * 8, identification=7, more_fragments=True, ttl=9, tos=0xB8,
                       options=options)
    table = ReassemblyTable(4)
    table.add((SRC4, DST4, 17, 7), 0, True, b"a" * 8, 0, first[:24])
    entry = table.add((SRC4, DST4, 17, 7), 8, False, b"b" * 3, 0).entry
    header, data = parse_ipv4(assemble_v4(entry))
    assert not header.is_fragment and not header.dont_fragment and header.total_length == 24 + 11
    assert (header.ttl, header.tos, header.identification, header.options) == (9, 0xB8, 7, options)
    assert bytes(data) == b"a" * 8 + b"bbb"


def test_assemble_v6_names_the_fragmented_protocol():
    table = ReassemblyTable(6)
    first = build_ipv6(SRC6, DST6, 44, bytes(8), hop_limit=64)
    table.add(KEY6, 0, True, b"u" * 8, 0, first, 17)
    entry = table.add(KEY6, 8, False, b"v", 0).entry
    header, data = parse_ipv6(assemble_v6(entry))
    assert (header.protocol, header.hop_limit, header.payload_length, header.extension_headers) == (17, 64, 9, ())
    assert bytes(data) == b"u" * 8 + b"v"


def test_the_fragment_header_is_found_past_unfragmentable_headers():
    frag = bytearray(8)
    emit_fragment_header(frag, 0, next_header=17, fragment_offset=1448, more=True, identification=5)
    hop_by_hop = bytes([44, 0]) + bytes(6)
    packet = build_ipv6(SRC6, DST6, 0, hop_by_hop + bytes(frag) + b"data")
    assert parse_ipv6(packet)[0].fragment_header_at == 48
    assert parse_ipv6(build_ipv6(SRC6, DST6, 17, b"x" * 8))[0].fragment_header_at is None
    with pytest.raises(WireError):  # the chain runs off the end
        parse_ipv6(build_ipv6(SRC6, DST6, 0, hop_by_hop))
    header, _ = parse_ipv6(packet)
    assert header.fragment_offset == 1448 and header.more_fragments and header.fragment_id == 5


def test_catalog_keeps_the_older_tcpip_routines_first():
    """Fragmentation's routines come after the driver's, so no older routine moved (addresses in transcripts)."""
    from stack.kernel.symbols import CATALOG
    names = CATALOG["tcpip"]
    assert names.index("TcpipDriverEntry") < names.index("IppFragmentPackets")
    assert names[:3] == ["IppSendDatagramsCommon", "IppReceiveHeaderBatch", "IppLoopbackReceive"]
