"""`dt`: a structure layout, or a structure read from memory, in WinDbg's shape.

    dt nt!_MDL                      rows `   +0x008 Size             : Int2B`
    dt nt!_MDL ffffc10a`3b2f0000    rows `   +0x008 Size             : 0n56`

Signed fields print as `0n<decimal>`, unsigned in hex, pointers with a backtick
(NULL as `(null)`), embedded structures by type name (expanded with -r).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

from stack.kernel.layouts import LAYOUTS, Field, StructLayout

from wskdbg.render.fmt import addr64, char_field, dt_row, dt_value

TYPE_NAMES = {"i8": "Char", "u8": "UChar", "char": "Char", "i16": "Int2B", "u16": "Uint2B", "i32": "Int4B",
              "u32": "Uint4B", "i64": "Int8B", "u64": "Uint8B"}
_SIZES = {"i8": 1, "u8": 1, "char": 1, "i16": 2, "u16": 2, "i32": 4, "u32": 4, "i64": 8, "u64": 8, "ptr": 8}


@dataclass(slots=True)
class DtOptions:
    recurse: int = 0  # -r[N]: levels of embedded structures to expand
    blocks: bool = False  # -b: expand arrays element by element
    fields: tuple[str, ...] = ()  # field filters (wildcards, dotted paths)


UNNAMED = "<unnamed-tag>"


def type_text(f: Field) -> str:
    if f.kind == "union":
        return UNNAMED
    if f.kind == "ptr":
        base = f"Ptr64 {f.target or 'Void'}"
    elif f.kind == "struct":
        base = f.target
    elif f.kind == "bytes":
        if f.size == 0x10 and ("ListEntry" in f.name or "ListHead" in f.name):
            return "_LIST_ENTRY"
        return f"[{f.size}] UChar"
    else:
        base = TYPE_NAMES.get(f.kind, f.kind)
    return f"[{f.count}] {base}" if f.count > 1 else base


def value_text(f: Field, raw: Any) -> str:
    """The value column for a field already unpacked from memory."""
    if f.kind == "ptr":
        if f.count > 1:
            first = raw[0] if raw else 0
            return f"[{f.count}] {dt_value(first, 'pointer', type_name=f.target or 'Void')}"
        return dt_value(raw, "pointer", type_name=f.target or "Void")
    if f.kind in ("i8", "i16", "i32", "i64"):
        return dt_value(raw, "signed", size=_SIZES[f.kind])
    if f.kind == "char":
        return char_field(raw, signed=True)
    if f.kind == "u8":
        return char_field(raw, signed=False)
    if f.kind in ("u16", "u32", "u64"):
        if f.count > 1:
            return f"[{f.count}] {dt_value(raw[0] if raw else 0, 'unsigned', size=_SIZES[f.kind])}"
        return dt_value(raw, "unsigned", size=_SIZES[f.kind])
    if f.kind == "bytes":
        data = bytes(raw)
        if len(data) == 0x10 and ("ListEntry" in f.name or "ListHead" in f.name):
            flink = int.from_bytes(data[:8], "little")
            blink = int.from_bytes(data[8:], "little")
            return f"_LIST_ENTRY [ 0x{addr64(flink)} - 0x{addr64(blink)} ]"
        return f"[{len(data)}] \"" + "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data[:16]) + "\""
    return f.target


def _wanted(name: str, filters: tuple[str, ...]) -> tuple[bool, tuple[str, ...]]:
    """Whether a field passes the filters, and the filters for its members (dotted paths)."""
    if not filters:
        return True, ()
    inner: list[str] = []
    hit = False
    for flt in filters:
        head, dot, rest = flt.partition(".")
        if fnmatch.fnmatchcase(name.lower(), head.lower()) or name.lower() == head.lower():
            hit = True
            if dot and rest:
                inner.append(rest)
    return hit, tuple(inner)


def layout_lines(layout: StructLayout, options: DtOptions, level: int = 0) -> list[str]:
    """`dt Type` without an address: offsets, names and types."""
    lines = []
    for f in layout.fields:
        ok, inner = _wanted(f.name, options.fields)
        if not ok:
            continue
        lines.append(dt_row(f.offset, f.name, type_text(f), level))
        if f.kind in ("struct", "union") and (level < options.recurse or inner) and f.target in LAYOUTS:
            lines += layout_lines(LAYOUTS[f.target], DtOptions(options.recurse, options.blocks, inner), level + 1)
    return lines


def value_lines(layout: StructLayout, data: bytes, options: DtOptions, level: int = 0,
                symbolize: Callable[[int], str | None] | None = None,
                filters: tuple[str, ...] | None = None,
                read_unicode: Callable[[int, int], str | None] | None = None) -> list[str]:
    """`dt Type Address`: each field's value from `data` (the structure's bytes).

    Unions print `<unnamed-tag>` and expand with -r or a dotted path, as WinDbg's
    `dt nt!_IRP addr Tail.Overlay.CurrentStackLocation`:
       +0x078 Tail             : <unnamed-tag>
          +0x000 Overlay          : <unnamed-tag>
             +0x040 CurrentStackLocation : 0xfffffa80`31e11e20 _IO_STACK_LOCATION
    A `_UNICODE_STRING` shows its text (`read_unicode(Buffer, Length)`), a `_LIST_ENTRY`
    its two links."""
    lines = []
    flt = options.fields if filters is None else filters
    for f in layout.fields:
        ok, inner = _wanted(f.name, flt)
        if not ok:
            continue
        raw = layout.unpack_field(f, data)
        if f.kind in ("struct", "union"):
            lines.append(dt_row(f.offset, f.name, _embedded_text(f, bytes(raw), read_unicode), level))
            sub = LAYOUTS.get(f.target)
            if sub is not None and (level < options.recurse or inner):
                lines += value_lines(sub, bytes(raw), options, level + 1, symbolize, inner, read_unicode)
            continue
        text = value_text(f, raw)
        if symbolize is not None and f.kind == "ptr" and f.count == 1 and raw and (f.target or "Void") == "Void":
            name = symbolize(raw)
            if name:
                text = f"0x{addr64(raw)} {name}"
        lines.append(dt_row(f.offset, f.name, text, level))
        if options.blocks and f.count > 1:
            for i, item in enumerate(raw):
                kind = "pointer" if f.kind == "ptr" else "unsigned"
                lines.append(" " * (3 * (level + 2)) + f"[{i:02}] " + dt_value(item, kind, size=_SIZES.get(f.kind, 8)))
    return lines


def _embedded_text(f: Field, raw: bytes, read_unicode: Callable[[int, int], str | None] | None) -> str:
    """The value column of an embedded structure or union."""
    if f.kind == "union":
        return UNNAMED
    if f.target == "_LIST_ENTRY" and len(raw) >= 0x10:
        flink = int.from_bytes(raw[:8], "little")
        blink = int.from_bytes(raw[8:16], "little")
        return f"_LIST_ENTRY [ 0x{addr64(flink)} - 0x{addr64(blink)} ]"
    if f.target == "_UNICODE_STRING" and len(raw) >= 0x10:
        length = int.from_bytes(raw[:2], "little")
        buffer = int.from_bytes(raw[8:16], "little")
        text = read_unicode(buffer, length) if read_unicode is not None and buffer else None
        return f'_UNICODE_STRING "{text}"' if text is not None else "_UNICODE_STRING"
    return f.target
