"""WinDbg-shaped number and `dt` field formatting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskdbg.render import fmt
from wskdbg.render.fmt import (
    DtRow,
    addr64,
    addr64_nobt,
    char_field,
    dt_row,
    dt_table,
    dt_value,
    format_status,
    hex2,
    hex4,
    hex8,
    hex_auto,
    set_status_names,
    signed_of,
    status_name,
)


@pytest.mark.parametrize(
    ("value", "with_backtick", "without"),
    [
        (0xFFFFF8014AE80000, "fffff801`4ae80000", "fffff8014ae80000"),
        (0, "00000000`00000000", "0000000000000000"),
        (0x10, "00000000`00000010", "0000000000000010"),
        (-1, "ffffffff`ffffffff", "ffffffffffffffff"),
        (1 << 64 | 5, "00000000`00000005", "0000000000000005"),
    ],
)
def test_addr64_prints_16_digits_with_and_without_backtick(value: int, with_backtick: str, without: str) -> None:
    assert addr64(value) == with_backtick
    assert addr64_nobt(value) == without


@given(st.integers(0, (1 << 64) - 1))
def test_addr64_is_the_nobt_form_with_a_backtick_after_8_digits(value: int) -> None:
    plain = addr64_nobt(value)
    assert addr64(value) == f"{plain[:8]}`{plain[8:]}"
    assert int(plain, 16) == value


def test_fixed_width_hex_helpers_truncate_and_pad() -> None:
    assert hex8(0x103) == "00000103"
    assert hex8(0xC0000001) == "c0000001"
    assert hex8(0x1_0000_0001) == "00000001"
    assert hex4(0x1F0) == "01f0"
    assert hex2(0xE1) == "e1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0x1234, "00001234"),
        (0xFFFFFFFF80000000, "80000000"),  # sign-extended 32-bit values print short
        (0xFFFFFFFF7FFFFFFF, "ffffffff`7fffffff"),
        (0x100000000, "00000001`00000000"),
    ],
)
def test_hex_auto_follows_windbg_32_or_64_bit_display_rule(value: int, expected: str) -> None:
    assert hex_auto(value) == expected


@pytest.mark.parametrize(
    ("value", "kind", "size", "expected"),
    [
        (6, "signed", 2, "0n6"),
        (266, "signed", 2, "0n266"),
        (0, "signed", 4, "0n0"),
        (0xFFFE, "signed", 2, "0n-2"),
        (0xFFFFFFFF, "signed", 4, "0n-1"),
        (0x118, "unsigned", 2, "0x118"),
        (0x800, "unsigned", 4, "0x800"),
        (0, "unsigned", 4, "0"),
        (0x1_0000_0118, "unsigned", 4, "0x118"),  # truncated to the field size
        (0xAAE0C8, "unsigned", 8, "0x00000000`00aae0c8"),
        (0xFFFFC10A3B2F1000, "pointer", 8, "0xffffc10a`3b2f1000"),
        (0, "pointer", 8, "(null)"),
        (1, "char", 1, "1 ''"),
        (0xE, "uchar", 1, "0xe ''"),
        (0, "bool", 1, "0 ''"),
        (None, "unsigned", 4, "??"),
    ],
)
def test_dt_value_prints_each_kind_like_windbg(value: int | None, kind: str, size: int, expected: str) -> None:
    assert dt_value(value, kind, size=size) == expected


def test_dt_value_appends_the_pointer_type() -> None:
    assert dt_value(0xFFFFC10A3B2F1000, "pointer", type_name="Void") == "0xffffc10a`3b2f1000 Void"
    assert dt_value(0, "pointer", type_name="_EPROCESS") == "(null)"


def test_dt_value_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError):
        dt_value(1, "float")


@pytest.mark.parametrize(
    ("value", "signed", "expected"),
    [
        (1, True, "1 ''"),
        (0, True, "0 ''"),
        (0x41, True, "65 'A'"),
        (0xFF, True, "-1 ''"),
        (0x41, False, "0x41 'A'"),
        (0, False, "0 ''"),
        (0x7F, False, "0x7f ''"),
    ],
)
def test_char_field_shows_number_and_printable_character(value: int, signed: bool, expected: str) -> None:
    assert char_field(value, signed=signed) == expected


def test_signed_of_interprets_twos_complement_by_width() -> None:
    assert signed_of(0x80, 1) == -128
    assert signed_of(0x7F, 1) == 127
    assert signed_of(0xFFFFFFFFFFFFFFFF, 8) == -1


def test_dt_table_reproduces_the_mdl_layout() -> None:
    rows = [
        (0x000, "Next", dt_value(0, "pointer")),
        (0x008, "Size", dt_value(56, "signed", size=2)),
        (0x00A, "MdlFlags", dt_value(4, "signed", size=2)),
        (0x00C, "AllocationProcessorNumber", dt_value(0, "unsigned", size=2)),
        (0x00E, "Reserved", dt_value(0, "unsigned", size=2)),
        (0x010, "Process", dt_value(0, "pointer")),
        (0x018, "MappedSystemVa", dt_value(0xFFFFC10A3B2F1000, "pointer", type_name="Void")),
        (0x020, "StartVa", dt_value(0xFFFFC10A3B2F1000, "pointer", type_name="Void")),
        (0x028, "ByteCount", dt_value(0x800, "unsigned")),
        (0x02C, "ByteOffset", dt_value(0, "unsigned")),
    ]
    assert dt_table(rows) == [
        "   +0x000 Next             : (null)",
        "   +0x008 Size             : 0n56",
        "   +0x00a MdlFlags         : 0n4",
        "   +0x00c AllocationProcessorNumber : 0",
        "   +0x00e Reserved         : 0",
        "   +0x010 Process          : (null)",
        "   +0x018 MappedSystemVa   : 0xffffc10a`3b2f1000 Void",
        "   +0x020 StartVa          : 0xffffc10a`3b2f1000 Void",
        "   +0x028 ByteCount        : 0x800",
        "   +0x02c ByteOffset       : 0",
    ]


def test_dt_table_indents_nested_rows_and_accepts_dtrow() -> None:
    lines = dt_table([
        DtRow(0x30, "IoStatus", "_IO_STATUS_BLOCK"),
        DtRow(0x0, "Status", "0n0", level=1),
        (0x8, "Information", "0", 1),
        (0x1000, "Far", "0"),
    ])
    assert lines == [
        "   +0x030 IoStatus         : _IO_STATUS_BLOCK",
        "      +0x000 Status           : 0n0",
        "      +0x008 Information      : 0",
        "   +0x1000 Far              : 0",
    ]
    assert dt_row(0x42, "StackCount", char_field(1)) == "   +0x042 StackCount       : 1 ''"


NAMES = {0: "STATUS_SUCCESS", 0x103: "STATUS_PENDING", 0xC0000001: "STATUS_UNSUCCESSFUL"}


@pytest.mark.parametrize(
    ("code", "style", "expected"),
    [
        (0x103, "name", "STATUS_PENDING"),
        (0x103, "both", "STATUS_PENDING (0x00000103)"),
        (0x103, "code", "0x00000103"),
        (-0x3FFFFFFF, "name", "STATUS_UNSUCCESSFUL"),  # negative NTSTATUS from a signed read
        (0xC000000D, "name", "0xc000000d"),
        (0xC000000D, "both", "0xc000000d"),
    ],
)
def test_format_status_uses_a_passed_name_table(code: int, style: str, expected: str) -> None:
    assert format_status(code, NAMES, style=style) == expected


def test_status_hook_installs_a_default_table() -> None:
    saved = dict(fmt._status_names)
    try:
        set_status_names({0x103: "STATUS_PENDING"})
        assert status_name(0x103) == "STATUS_PENDING"
        assert format_status(0x103) == "STATUS_PENDING"
        assert format_status(0x103, {}) == "0x00000103"  # an explicit table wins
    finally:
        set_status_names(saved)


def test_format_status_rejects_unknown_style() -> None:
    with pytest.raises(ValueError):
        format_status(0, NAMES, style="loud")
