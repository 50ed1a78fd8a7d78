"""Memory display in the shape of WinDbg's ``d*`` commands.

::

    fffff801`4ae80000  4d 5a 90 00 03 00 00 00-04 00 00 00 ff ff 00 00  MZ..............
    fffff801`4ae80000  00905a4d 00000003 00000004 0000ffff
    fffff801`4ae80000  00000003`00905a4d 0000ffff`00000004
    fffff801`4ae80000  "MZ"

Data comes in as bytes, or as a list whose ``None`` entries are unreadable
bytes; an unreadable unit prints as question marks of the unit's width.
Lines start at the given address (no alignment), and a short last line keeps the
ASCII column aligned with the lines above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wskdbg.render.fmt import addr64

__all__ = [
    "DumpError",
    "DumpFormat",
    "DumpRequest",
    "DumpCursor",
    "DUMP_FORMATS",
    "DEFAULT_LENGTH",
    "DEFAULT_STRING_CHARS",
    "dump_format",
    "default_length",
    "unit_size",
    "dump_extent",
    "format_dump",
]

DEFAULT_LENGTH = 128  # bytes, for the numeric kinds
DEFAULT_STRING_CHARS = 256  # da/du stop at NUL or after this many characters
STRING_CHARS_PER_LINE = 48


class DumpError(ValueError):
    """Bad arguments to a memory display (unknown kind, no address to continue from)."""


@dataclass(slots=True, frozen=True)
class DumpFormat:
    kind: str
    unit: int  # bytes per displayed value or character
    columns: int  # values (or characters) per line by default
    ascii: bool = False  # trailing ASCII column (db, dc, dW)
    string: bool = False  # da / du: quoted text up to NUL


DUMP_FORMATS: dict[str, DumpFormat] = {
    "db": DumpFormat("db", 1, 16, ascii=True),
    "dw": DumpFormat("dw", 2, 8),
    "dW": DumpFormat("dW", 2, 8, ascii=True),
    "dd": DumpFormat("dd", 4, 4),
    "dc": DumpFormat("dc", 4, 4, ascii=True),
    "dq": DumpFormat("dq", 8, 2),
    "dp": DumpFormat("dp", 8, 2),
    "da": DumpFormat("da", 1, STRING_CHARS_PER_LINE, string=True),
    "du": DumpFormat("du", 2, STRING_CHARS_PER_LINE, string=True),
}


def dump_format(kind: str, pointer_size: int = 8) -> DumpFormat:
    """The layout of a display kind; ``dp`` follows the target's pointer size."""
    found = DUMP_FORMATS.get(kind)
    if found is None:
        raise DumpError(f"unknown display kind {kind!r}")
    if kind == "dp" and pointer_size == 4:
        return DumpFormat("dp", 4, 4)
    return found


def unit_size(kind: str, pointer_size: int = 8) -> int:
    return dump_format(kind, pointer_size).unit


def default_length(kind: str, pointer_size: int = 8) -> int:
    """Bytes displayed when a range gives only an address."""
    fmt = dump_format(kind, pointer_size)
    return DEFAULT_STRING_CHARS * fmt.unit if fmt.string else DEFAULT_LENGTH


def _as_cells(data: bytes | bytearray | memoryview | Sequence[int | None]) -> list[int | None]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return list(bytes(data))
    cells = list(data)
    for cell in cells:
        if cell is not None and (not isinstance(cell, int) or not 0 <= cell <= 0xFF):
            raise DumpError(f"memory cell {cell!r} is not a byte or None")
    return cells


def _printable(code: int | None) -> str:
    if code is None:
        return "?"
    return chr(code) if 0x20 <= code < 0x7F else "."


def _unit_text(cells: list[int | None], unit: int) -> str:
    if any(c is None for c in cells):
        return "????????`????????" if unit == 8 else "??" * unit
    value = int.from_bytes(bytes(cells), "little")  # type: ignore[arg-type]
    if unit == 8:
        return addr64(value)
    return f"{value:0{unit * 2}x}"


def _string_chars(cells: list[int | None], unit: int) -> tuple[list[str], bool]:
    """Characters up to the first NUL, and whether a NUL ended them."""
    chars: list[str] = []
    for index in range(0, len(cells) - unit + 1, unit):
        piece = cells[index : index + unit]
        if any(c is None for c in piece):
            chars.append("?")
            continue
        code = int.from_bytes(bytes(piece), "little")  # type: ignore[arg-type]
        if code == 0:
            return chars, True
        chars.append(_printable(code))
    return chars, False


def dump_extent(kind: str, data: bytes | Sequence[int | None], pointer_size: int = 8) -> int:
    """Bytes a display covers: where the next bare ``d`` continues from.

    Strings end after their NUL; other kinds cover all whole units given.
    """
    fmt = dump_format(kind, pointer_size)
    cells = _as_cells(data)
    if fmt.string:
        chars, terminated = _string_chars(cells, fmt.unit)
        return (len(chars) + int(terminated)) * fmt.unit
    return -(-len(cells) // fmt.unit) * fmt.unit


def format_dump(
    kind: str,
    address: int,
    data: bytes | Sequence[int | None],
    columns: int | None = None,
    *,
    pointer_size: int = 8,
) -> list[str]:
    """Lines of a ``d*`` display of ``data`` read at ``address``.

    ``columns`` is ``/c``: values (or characters, for da/du) per line.
    """
    fmt = dump_format(kind, pointer_size)
    per_line = fmt.columns if columns is None else columns
    if per_line <= 0:
        raise DumpError("columns must be positive")
    cells = _as_cells(data)
    if fmt.string:
        return _format_string(fmt, address, cells, per_line)
    return _format_values(fmt, address, cells, per_line)


def _format_string(fmt: DumpFormat, address: int, cells: list[int | None], per_line: int) -> list[str]:
    chars, _ = _string_chars(cells, fmt.unit)
    if not chars:
        return [f"{addr64(address)}  \"\""]
    lines = []
    for first in range(0, len(chars), per_line):
        chunk = "".join(chars[first : first + per_line])
        lines.append(f"{addr64(address + first * fmt.unit)}  \"{chunk}\"")
    return lines


def _format_values(fmt: DumpFormat, address: int, cells: list[int | None], per_line: int) -> list[str]:
    unit = fmt.unit
    real_length = len(cells)
    remainder = len(cells) % unit
    if remainder:
        cells = cells + [None] * (unit - remainder)  # a torn last unit cannot be shown
    unit_width = 17 if unit == 8 else unit * 2
    full_width = per_line * (unit_width + 1) - 1
    line_bytes = per_line * unit
    lines = []
    for offset in range(0, len(cells), line_bytes):
        line_cells = cells[offset : offset + line_bytes]
        parts: list[str] = []
        for index in range(0, len(line_cells), unit):
            if index:
                # db puts a hyphen between the 8th and 9th byte (every 8 with /c).
                parts.append("-" if unit == 1 and index % 8 == 0 else " ")
            parts.append(_unit_text(line_cells[index : index + unit], unit))
        values = "".join(parts)
        line = f"{addr64(address + offset)}  {values}"
        if fmt.ascii:
            text = "".join(_printable(c) for c in cells[offset : min(offset + line_bytes, real_length)])
            line = f"{addr64(address + offset)}  {values.ljust(full_width)}  {text}"
        lines.append(line)
    return lines


@dataclass(slots=True, frozen=True)
class DumpRequest:
    kind: str
    address: int
    length: int  # bytes to read


@dataclass(slots=True)
class DumpCursor:
    """Remembers the last display so a bare ``db`` continues and a bare ``d`` repeats.

    Use: ``req = cursor.request(kind, start, count)``, read ``req.length`` bytes
    at ``req.address``, then ``cursor.display(req, data)``.
    """

    kind: str = "db"  # WinDbg: a bare `d` before any display acts as `db`
    next_address: int | None = None
    pointer_size: int = 8

    def resolve_kind(self, kind: str) -> str:
        if kind == "d":
            return self.kind
        dump_format(kind, self.pointer_size)  # validates
        return kind

    def request(
        self,
        kind: str,
        start: int | None = None,
        count: int | None = None,
        *,
        fallback_address: int | None = None,
    ) -> DumpRequest:
        """What to read. ``count`` is in units (an ``L`` count); None means the default.

        With no ``start`` the display continues where the last one ended, or at
        ``fallback_address`` (the instruction pointer) if there was none.
        """
        resolved = self.resolve_kind(kind)
        if start is None:
            start = self.next_address if self.next_address is not None else fallback_address
        if start is None:
            raise DumpError("no address given and no previous display to continue")
        unit = unit_size(resolved, self.pointer_size)
        length = default_length(resolved, self.pointer_size) if count is None else count * unit
        return DumpRequest(resolved, start, length)

    def display(
        self,
        request: DumpRequest,
        data: bytes | Sequence[int | None],
        columns: int | None = None,
    ) -> list[str]:
        """Format what was read and remember where the next display starts."""
        lines = format_dump(request.kind, request.address, data, columns, pointer_size=self.pointer_size)
        extent = dump_extent(request.kind, data, self.pointer_size)
        self.kind = request.kind
        self.next_address = (request.address + extent) & ((1 << 64) - 1)
        return lines
