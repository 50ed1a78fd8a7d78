"""`d*` memory displays: exact lines, unreadable memory, strings, continuation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskdbg.render.dump import (
    DumpCursor,
    DumpError,
    DumpRequest,
    default_length,
    dump_extent,
    format_dump,
    unit_size,
)

BASE = 0xFFFFF8014AE80000
MZ = bytes.fromhex("4d5a9000030000000400000" "0ffff0000" "b800000000000000" "4000000000000000" "00")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("db", [
            "fffff801`4ae80000  4d 5a 90 00 03 00 00 00-04 00 00 00 ff ff 00 00  MZ..............",
            "fffff801`4ae80010  b8 00 00 00 00 00 00 00-40 00 00 00 00 00 00 00  ........@.......",
            "fffff801`4ae80020  00                                               .",
        ]),
        ("dw", [
            "fffff801`4ae80000  5a4d 0090 0003 0000 0004 0000 ffff 0000",
            "fffff801`4ae80010  00b8 0000 0000 0000 0040 0000 0000 0000",
            "fffff801`4ae80020  ????",
        ]),
        ("dW", [
            "fffff801`4ae80000  5a4d 0090 0003 0000 0004 0000 ffff 0000  MZ..............",
            "fffff801`4ae80010  00b8 0000 0000 0000 0040 0000 0000 0000  ........@.......",
            "fffff801`4ae80020  ????                                     .",
        ]),
        ("dd", [
            "fffff801`4ae80000  00905a4d 00000003 00000004 0000ffff",
            "fffff801`4ae80010  000000b8 00000000 00000040 00000000",
            "fffff801`4ae80020  ????????",
        ]),
        ("dc", [
            "fffff801`4ae80000  00905a4d 00000003 00000004 0000ffff  MZ..............",
            "fffff801`4ae80010  000000b8 00000000 00000040 00000000  ........@.......",
            "fffff801`4ae80020  ????????                             .",
        ]),
        ("dq", [
            "fffff801`4ae80000  00000003`00905a4d 0000ffff`00000004",
            "fffff801`4ae80010  00000000`000000b8 00000000`00000040",
            "fffff801`4ae80020  ????????`????????",
        ]),
        ("dp", [
            "fffff801`4ae80000  00000003`00905a4d 0000ffff`00000004",
            "fffff801`4ae80010  00000000`000000b8 00000000`00000040",
            "fffff801`4ae80020  ????????`????????",
        ]),
    ],
)
def test_numeric_displays_match_windbg_layout(kind: str, expected: list[str]) -> None:
    # 33 bytes: the last byte is a torn unit for every kind wider than a byte.
    assert format_dump(kind, BASE, MZ) == expected


def test_unreadable_bytes_print_as_question_marks_per_unit() -> None:
    data = [0x41, None, 0x42, 0x43] + [None] * 4 + list(b"GET / HT")
    assert format_dump("db", 0x1000, data) == [
        "00000000`00001000  41 ?? 42 43 ?? ?? ?? ??-47 45 54 20 2f 20 48 54  A?BC????GET / HT",
    ]
    assert format_dump("dd", 0x1000, data) == [
        "00000000`00001000  ???????? ???????? 20544547 5448202f",
    ]
    assert format_dump("dc", 0x1000, data) == [
        "00000000`00001000  ???????? ???????? 20544547 5448202f  A?BC????GET / HT",
    ]
    assert format_dump("dq", 0x1000, data) == [
        "00000000`00001000  ????????`???????? 5448202f`20544547",
    ]
    assert format_dump("dw", 0x1000, data[:4]) == ["00000000`00001000  ???? 4342"]


def test_wholly_unreadable_page_looks_like_windbg() -> None:
    assert format_dump("db", 0, [None] * 16) == [
        "00000000`00000000  ?? ?? ?? ?? ?? ?? ?? ??-?? ?? ?? ?? ?? ?? ?? ??  ????????????????",
    ]


def test_display_starts_at_unaligned_address_without_rounding() -> None:
    lines = format_dump("db", 0x1003, bytes(range(0x30, 0x44)))
    assert lines == [
        "00000000`00001003  30 31 32 33 34 35 36 37-38 39 3a 3b 3c 3d 3e 3f  0123456789:;<=>?",
        "00000000`00001013  40 41 42 43                                      @ABC",
    ]


def test_non_printable_and_high_bytes_show_as_dots() -> None:
    line = format_dump("db", 0, bytes([0x0D, 0x0A, 0x7F, 0x80, 0xFF, 0x20, 0x7E, 0x00]))[0]
    assert line.split("  ")[-1] == "..... ~."


def test_columns_option_changes_values_per_line() -> None:
    assert format_dump("dd", 0x2000, bytes(range(8)), columns=1) == [
        "00000000`00002000  03020100",
        "00000000`00002004  07060504",
    ]
    assert format_dump("db", 0x2000, bytes(range(4)), columns=2) == [
        "00000000`00002000  00 01  ..",
        "00000000`00002002  02 03  ..",
    ]
    # With /c 24, db still breaks every eight bytes with a hyphen.
    assert format_dump("db", 0, bytes(24), columns=24) == [
        "00000000`00000000  " + "-".join([" ".join(["00"] * 8)] * 3) + "  " + "." * 24,
    ]


def test_empty_data_gives_no_lines_for_numeric_kinds() -> None:
    assert format_dump("db", 0, b"") == []


def test_da_stops_at_nul_and_wraps_every_48_characters() -> None:
    request = b"GET /index.html HTTP/1.1\r\nHost: 10.0.0.1\r\nUser-Agent: x\r\n\r\n\x00junk"
    assert format_dump("da", 0x1000, request) == [
        '00000000`00001000  "GET /index.html HTTP/1.1..Host: 10.0.0.1..User-A"',
        '00000000`00001030  "gent: x...."',
    ]
    assert format_dump("da", 0x1000, b"\x00abc") == ['00000000`00001000  ""']
    assert format_dump("da", 0x1000, b"abc") == ['00000000`00001000  "abc"']


def test_du_reads_utf16_and_wraps_every_48_characters() -> None:
    text = "C:\\Program Files\\Internet Explorer\\iexplore.exe SCODEF:2684"
    lines = format_dump("du", 0x592CC8, (text + "\0").encode("utf-16-le"))
    assert lines == [
        '00000000`00592cc8  "C:\\Program Files\\Internet Explorer\\iexplore.exe "',
        '00000000`00592d28  "SCODEF:2684"',
    ]


def test_strings_show_unreadable_characters_as_question_marks() -> None:
    assert format_dump("da", 0, [0x41, None, 0x42, 0]) == ['00000000`00000000  "A?B"']
    assert format_dump("du", 0, [0x41, 0, None, 0, 0, 0]) == ['00000000`00000000  "A?"']


@pytest.mark.parametrize(
    ("kind", "data", "extent"),
    [
        ("db", bytes(5), 5),
        ("dd", bytes(5), 8),  # a torn unit still covers its whole width
        ("da", b"abc\0def", 4),
        ("da", b"abc", 3),
        ("du", "ab\0".encode("utf-16-le"), 6),
    ],
)
def test_dump_extent_is_where_the_next_display_starts(kind: str, data: bytes, extent: int) -> None:
    assert dump_extent(kind, data) == extent


def test_unknown_kind_and_bad_cells_raise_dump_error() -> None:
    with pytest.raises(DumpError):
        format_dump("dz", 0, b"")
    with pytest.raises(DumpError):
        format_dump("db", 0, [256])
    with pytest.raises(DumpError):
        format_dump("db", 0, b"\x00", columns=0)


def test_unit_sizes_and_default_lengths() -> None:
    assert [unit_size(k) for k in ("db", "dw", "dW", "dd", "dc", "dq", "dp", "da", "du")] == [1, 2, 2, 4, 4, 8, 8, 1, 2]
    assert unit_size("dp", pointer_size=4) == 4
    assert default_length("db") == default_length("dq") == 128
    assert default_length("du") == 2 * default_length("da")


@given(st.binary(min_size=0, max_size=100), st.integers(0, (1 << 64) - 0x1000))
def test_db_lines_round_trip_to_the_original_bytes(data: bytes, address: int) -> None:
    lines = format_dump("db", address, data)
    assert len(lines) == -(-len(data) // 16)
    recovered = bytearray()
    for index, line in enumerate(lines):
        addr_text, rest = line.split("  ", 1)
        assert int(addr_text.replace("`", ""), 16) == address + 16 * index
        hex_part = rest[:47]
        recovered += bytes.fromhex(hex_part.replace("-", " "))
        assert rest[47:49] == "  "
        assert len(rest[49:]) == min(16, len(data) - 16 * index)
    assert bytes(recovered) == data


# ---------------------------------------------------------------- continuation


def read(address: int, length: int) -> bytes:
    return bytes((address + i) & 0xFF for i in range(length))


def test_bare_db_continues_where_the_last_display_ended() -> None:
    cursor = DumpCursor()
    first = cursor.request("db", 0x1000)
    assert first == DumpRequest("db", 0x1000, 128)
    lines = cursor.display(first, read(0x1000, first.length))
    assert len(lines) == 8
    follow = cursor.request("db")
    assert follow == DumpRequest("db", 0x1080, 128)
    cursor.display(follow, read(follow.address, follow.length))
    assert cursor.next_address == 0x1100


def test_bare_d_repeats_the_last_format() -> None:
    cursor = DumpCursor()
    cursor.display(cursor.request("dd", 0x2000, 4), read(0x2000, 16))
    again = cursor.request("d")
    assert again == DumpRequest("dd", 0x2010, 128)
    lines = cursor.display(again, read(again.address, 16))
    assert lines[0] == "00000000`00002010  13121110 17161514 1b1a1918 1f1e1d1c"


def test_first_bare_d_acts_as_db_at_the_instruction_pointer() -> None:
    cursor = DumpCursor()
    assert cursor.request("d", fallback_address=0xFFFFF8014AE81230) == DumpRequest("db", 0xFFFFF8014AE81230, 128)
    with pytest.raises(DumpError):
        DumpCursor().request("db")


def test_count_is_in_units_of_the_display_kind() -> None:
    cursor = DumpCursor()
    assert cursor.request("dq", 0x3000, 5).length == 40
    assert cursor.request("du", 0x3000, 10).length == 20
    assert cursor.request("dp", 0x3000, 2).length == 16


def test_string_display_continues_after_its_terminator() -> None:
    cursor = DumpCursor()
    req = cursor.request("da", 0x4000)
    assert req.length == default_length("da")
    cursor.display(req, b"HTTP/1.1 200 OK\0more")
    assert cursor.next_address == 0x4010
    assert cursor.request("d").kind == "da"


def test_unreadable_display_still_advances_the_cursor() -> None:
    cursor = DumpCursor()
    lines = cursor.display(cursor.request("db", 0, 16), [None] * 16)
    assert lines[0].startswith("00000000`00000000  ??")
    assert cursor.next_address == 0x10
