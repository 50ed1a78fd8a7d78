"""Number and field formatting in WinDbg's shape, shared by every renderer.

64-bit values print as ``fffff801`4ae80000``; ``dt`` prints signed fields in
decimal with ``0n``, unsigned ones in hex, pointers in full with a backtick and
NULL as ``(null)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

MASK64 = (1 << 64) - 1

# `dt` pads field names to this many columns before " : ".
DT_NAME_WIDTH = 16
DT_INDENT = 3

__all__ = [
    "addr64",
    "addr64_nobt",
    "hex2",
    "hex4",
    "hex8",
    "hex_auto",
    "signed_of",
    "dt_value",
    "char_field",
    "DtRow",
    "dt_row",
    "dt_table",
    "set_status_names",
    "status_name",
    "format_status",
    "DtKind",
]


def addr64(value: int) -> str:
    """``fffff801`4ae80000``: 16 hex digits with a backtick in the middle."""
    value &= MASK64
    return f"{value >> 32:08x}`{value & 0xFFFFFFFF:08x}"


def addr64_nobt(value: int) -> str:
    """``fffff8014ae80000``: 16 hex digits, no backtick (as in `!irp` rows)."""
    return f"{value & MASK64:016x}"


def hex8(value: int) -> str:
    """``00000103``: the low 32 bits as 8 hex digits."""
    return f"{value & 0xFFFFFFFF:08x}"


def hex4(value: int) -> str:
    return f"{value & 0xFFFF:04x}"


def hex2(value: int) -> str:
    return f"{value & 0xFF:02x}"


def hex_auto(value: int) -> str:
    """WinDbg's display rule: 32-bit form when the value fits (or is a sign-extended
    32-bit value), else the 64-bit backtick form."""
    value &= MASK64
    high = value >> 32
    if high == 0 or (high == 0xFFFFFFFF and value & 0x80000000):
        return hex8(value)
    return addr64(value)


def signed_of(value: int, size: int) -> int:
    """Interpret the low ``size`` bytes of ``value`` as two's complement."""
    bits = size * 8
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


DtKind = Literal["signed", "unsigned", "pointer", "char", "uchar", "bool"]


def dt_value(value: int | None, kind: str, *, size: int = 4, type_name: str | None = None) -> str:
    """One ``dt`` field value.

    - ``signed``: ``0n6``, ``0n-2`` (``size`` gives the width for the sign)
    - ``unsigned``: ``0x118``; zero is ``0``; 8-byte fields print in full,
      ``0x00000000`00001234``
    - ``pointer``: ``0xffffc10a`3b2f1000`` plus `` type_name`` if given; NULL is ``(null)``
    - ``char``/``uchar``/``bool``: see :func:`char_field`
    """
    if value is None:
        return "??"
    if kind == "signed":
        return f"0n{signed_of(value, size)}"
    if kind == "unsigned":
        value &= (1 << (size * 8)) - 1
        if size == 8:
            return f"0x{addr64(value)}"
        return "0" if value == 0 else f"{value:#x}"
    if kind == "pointer":
        value &= MASK64
        if value == 0:
            return "(null)"
        text = f"0x{addr64(value)}"
        return f"{text} {type_name}" if type_name else text
    if kind == "char":
        return char_field(value, signed=True)
    if kind in ("uchar", "bool"):
        return char_field(value, signed=False)
    raise ValueError(f"unknown dt field kind {kind!r}")


def char_field(value: int, *, signed: bool = True) -> str:
    """A one-byte field: ``1 ''`` (Char), ``0xe ''`` (UChar), ``65 'A'``.

    Printable characters appear between the quotes; others leave them empty.
    """
    value &= 0xFF
    shown = chr(value) if 0x20 <= value < 0x7F else ""
    if signed:
        number = str(signed_of(value, 1))
    else:
        number = "0" if value == 0 else f"{value:#x}"
    return f"{number} '{shown}'"


@dataclass(slots=True, frozen=True)
class DtRow:
    offset: int
    name: str
    value: str
    level: int = 0  # nesting depth for `dt -r`


def dt_row(offset: int, name: str, value: str, level: int = 0) -> str:
    """``   +0x018 MappedSystemVa   : 0xffffc10a`3b2f1000 Void``.

    Names shorter than the column are padded; longer ones run on (as WinDbg does).
    """
    indent = " " * (DT_INDENT * (level + 1))
    return f"{indent}+{offset:#05x} {name.ljust(DT_NAME_WIDTH)} : {value}"


def dt_table(rows: Iterable[DtRow | tuple[int, str, str] | tuple[int, str, str, int]]) -> list[str]:
    """Lines for a ``dt`` display; each row is a DtRow or (offset, name, value[, level])."""
    lines: list[str] = []
    for row in rows:
        if isinstance(row, DtRow):
            lines.append(dt_row(row.offset, row.name, row.value, row.level))
        else:
            lines.append(dt_row(*row))
    return lines


# ---------------------------------------------------------------- NTSTATUS names

# Filled in by whoever owns the status table (stack.kernel); render never imports stack.
_status_names: dict[int, str] = {}


def set_status_names(names: Mapping[int, str]) -> None:
    """Install the default NTSTATUS name table used when none is passed."""
    _status_names.clear()
    _status_names.update({code & 0xFFFFFFFF: name for code, name in names.items()})


def status_name(code: int, names: Mapping[int, str] | None = None) -> str | None:
    table = _status_names if names is None else names
    return table.get(code & 0xFFFFFFFF)


def format_status(code: int, names: Mapping[int, str] | None = None, *, style: str = "name") -> str:
    """An NTSTATUS for display.

    - ``name``: ``STATUS_PENDING``, or ``0xc0000001`` when unknown (always 8 digits)
    - ``both``: ``STATUS_PENDING (0x00000103)``, or ``0x00000103`` when unknown
    - ``code``: ``0x00000103``
    """
    code &= 0xFFFFFFFF
    name = status_name(code, names)
    if style not in ("name", "both", "code"):
        raise ValueError(f"unknown status style {style!r}")
    if style == "code" or name is None:
        return f"0x{code:08x}"
    if style == "name":
        return name
    return f"{name} (0x{code:08x})"
