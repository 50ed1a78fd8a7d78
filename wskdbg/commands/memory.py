"""Memory and types: d*, dt, !pool, !poolused, !pte, !pfn."""

from __future__ import annotations

import fnmatch
import importlib
import re
from typing import TYPE_CHECKING

from stack.kernel.layouts import find_layout
from stack.kernel.memory import PFN_MASK
from stack.kernel.pool import is_paged, tag_to_str

from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command, tokenize
from wskdbg.expr import ExprError, parse_address_range
from wskdbg.render.dt import DtOptions, layout_lines, value_lines
from wskdbg.render.dump import DumpError, default_length, unit_size
from wskdbg.render.fmt import addr64, addr64_nobt
from wskdbg.render.memory import PoolUsedRow, big_pool_lines, pfn_lines, pool_lines, poolused_lines, pte_lines

if TYPE_CHECKING:
    from wskdbg.engine import Engine

# Modules whose import registers more structure layouts (NDIS, WSK, the file system).
LAYOUT_MODULES = ("stack.ndis.nbl", "stack.afd.socket", "stack.fs.kfs")


def ensure_layouts() -> None:
    """Import the layers that register their structure layouts (NBL, WSK socket, file objects).

    Every one of them exists; an import error is a real bug and surfaces.
    """
    for name in LAYOUT_MODULES:
        importlib.import_module(name)


def read_cells(dbg: "Engine", address: int, length: int) -> list[int | None]:
    if length <= 0:
        return []
    if address + length > 1 << 64:
        length = (1 << 64) - address
    return dbg.kernel.mem.read_partial(address, length)


DISPLAY_HELP = """
db bytes+ASCII, dw words, dW words+ASCII, dd dwords, dc dwords+ASCII, dq qwords, dp pointers,
da ASCII string, du Unicode string.  Range: `addr` (128 bytes; da/du up to NUL), `addr L count`
(count in units), `addr L?count`, `addr end`.  /c N sets the columns.  With no range a display
continues where the last one ended; a bare `d` repeats the last kind.  Unmapped memory shows ??."""


@command("db", "dw", "dW", "dd", "dc", "dq", "dp", "da", "du", "d", area="memory",
         syntax="d{b|w|W|d|c|q|p|a|u} [/c Columns] [Range]", summary="Display memory",
         help=DISPLAY_HELP, case_sensitive=True)
def cmd_display(dbg: "Engine", inv: Invocation) -> CommandResult:
    name = inv.name if inv.name in ("dW",) else inv.name.lower()
    if name not in ("db", "dw", "dW", "dd", "dc", "dq", "dp", "da", "du", "d"):
        raise CommandError(f"Syntax error at '{inv.line}': unknown command '{inv.name}' (try 'help')", 0)
    args = inv.args
    columns = None
    offset = 0
    m = re.match(r"/c\s*(\S+)\s*", args)
    if m:
        columns = dbg.evaluate(m.group(1), inv.args_offset + m.start(1))
        if not 1 <= columns <= 256:
            raise inv.error("columns must be 1..0x100", m.start(1))
        offset = m.end()
        args = args[offset:]
    cursor = dbg.dump_cursor
    try:
        kind = cursor.resolve_kind(name)
        if args:
            unit = unit_size(kind)
            start, count = parse_address_range(args, dbg.expr_context(), default_length(kind), unit,
                                               radix=dbg.radix)
            req = cursor.request(kind, start, count)
        else:
            req = cursor.request(kind)
    except ExprError as exc:
        raise CommandError(exc.message, inv.args_offset + offset + exc.position) from None
    except DumpError as exc:
        raise inv.error(str(exc)) from None
    cells = read_cells(dbg, req.address, req.length)
    lines = cursor.display(req, cells, columns)
    dbg.note_address(addr64(req.address))
    return CommandResult("\n".join(lines), {"kind": req.kind, "address": req.address, "length": req.length,
                                             "bytes": [c if c is not None else -1 for c in cells]})


# --- dt ------------------------------------------------------------------------------------------

@command("dt", area="memory", syntax="dt [-r[N]] [-b] [mod!]Type [Field] [Address]",
         summary="Display a type, or a structure at an address",
         help="""
Types: _IRP, _IO_STACK_LOCATION, _MDL, _NET_BUFFER_LIST, _NET_BUFFER, _DEVICE_OBJECT,
_DRIVER_OBJECT, _IO_STATUS_BLOCK, _KEVENT, _KDPC, _ETHREAD and those the layers register.
Values come from emulated memory: signed fields as 0n<decimal>, unsigned in hex, pointers with
a backtick (NULL as (null)).  -r[N] expands embedded structures N levels; -b lists array
elements.  Field filters accept wildcards (Mdl*) and dotted paths (IoStatus.Status).""")
def cmd_dt(dbg: "Engine", inv: Invocation) -> CommandResult:
    ensure_layouts()
    options = DtOptions()
    type_name = None
    type_at = 0
    address = None
    fields: list[str] = []
    for word, at in tokenize(inv.args):
        if re.fullmatch(r"-(r\d{0,2}|b|v|a|c|o|y)", word):
            if word.startswith("-r"):
                options.recurse = int(word[2:]) if len(word) > 2 else 8
            elif word == "-b":
                options.blocks = True
            continue
        if word.startswith("-") and type_name is None:
            raise inv.error(f"unknown option '{word}'", at)
        if type_name is None:
            type_name, type_at = word, at
            continue
        layout = find_layout(type_name)
        if layout is not None and (re.fullmatch(r"[A-Za-z_*][A-Za-z0-9_.*]*", word) and
                                   (_field_exists(layout, word) or "*" in word)):
            fields.append(word)
            continue
        if address is not None:
            raise inv.syntax_error(at)
        address = dbg.evaluate(word, inv.args_offset + at)
    if type_name is None:
        raise inv.error("a type name is required, e.g. dt nt!_MDL", 0)
    layout = find_layout(type_name)
    if layout is None:
        raise inv.error(f"Symbol {type_name} not found.", type_at)
    options.fields = tuple(fields)
    if address is None:
        lines = layout_lines(layout, options)
        return CommandResult("\n".join(lines), {"type": layout.name, "size": layout.size,
                                                 "fields": [f.name for f in layout.fields]})
    cells = read_cells(dbg, address, layout.size)
    if any(c is None for c in cells):
        raise inv.error(f"Memory read error {addr64_nobt(address)}")
    data = bytes(cells)  # type: ignore[arg-type]
    k = dbg.kernel

    def symbolize(value: int) -> str | None:
        name = k.symbol_for_address(value) if value else None
        return name if name and "!" in name else None

    def read_unicode(buffer: int, length: int) -> str | None:
        cells = read_cells(dbg, buffer, length)
        if any(c is None for c in cells):
            return None
        return bytes(cells).decode("utf-16-le", "replace")  # type: ignore[arg-type]

    lines = value_lines(layout, data, options, symbolize=symbolize, read_unicode=read_unicode)
    if not lines:
        raise inv.error("Cannot find specified field members.")
    values = {}
    for f in layout.fields:
        v = layout.unpack_field(f, data)
        values[f.name] = v.hex() if isinstance(v, (bytes, bytearray)) else v
    dbg.note_address(addr64(address))
    return CommandResult("\n".join(lines), {"type": layout.name, "address": address, "values": values})


def _field_exists(layout, word: str) -> bool:
    head = word.split(".", 1)[0]
    return any(f.name.lower() == head.lower() or fnmatch.fnmatchcase(f.name.lower(), head.lower())
               for f in layout.fields)


# --- pools ---------------------------------------------------------------------------------------

POOL_FLAGS = 0x80000003


@command("!pool", area="memory", syntax="!pool Address [Flags]", summary="Show the pool block holding an address",
         help="""
Lists the blocks of the small-pool page around Address (the one holding it marked *) with sizes
and tags, or the big-pool allocation it is in.  Tags come from the POOL_HEADER in memory.
Flags (MS Learn): 1 also dumps each block's contents, 2 shows only the block holding Address,
80000000 leaves out the tag description; other bits are refused.""")
def cmd_pool(dbg: "Engine", inv: Invocation) -> CommandResult:
    if not inv.args:
        raise inv.error("an address is required", 0)
    words = tokenize(inv.args)
    if len(words) > 2:
        raise inv.syntax_error(words[2][1])
    address = dbg.evaluate(words[0][0], inv.args_offset + words[0][1])
    # Flags is a ULONG (the expression evaluator sign-extends 80000000).
    flags = dbg.evaluate(words[1][0], inv.args_offset + words[1][1]) & 0xFFFFFFFF if len(words) == 2 else 0
    if flags & ~POOL_FLAGS:
        raise inv.error(f"unsupported flag bits {flags & ~POOL_FLAGS:#x} (1 contents, 2 only the block, "
                        "80000000 no tag description)", words[1][1])
    k = dbg.kernel
    pool = k.pool
    ptype = pool.pool_type_of(address)
    if ptype is None:
        raise inv.error(f"{addr64_nobt(address)} is not a valid pool address (not in paged or nonpaged pool)")
    region = "Paged pool" if is_paged(ptype) else "Nonpaged pool"
    block = pool.block_containing(address)
    if block is not None and block.big:
        lines = big_pool_lines(address, block)
        if flags & 0x80000000:
            lines = lines[:-1]
        return CommandResult("\n".join(lines),
                             {"block": block.address, "tag": block.tag_str, "big": True, "size": block.requested})
    blocks = pool.blocks_in_page(address)
    if not blocks:
        raise inv.error(f"{addr64_nobt(address)}: no pool blocks in this page")

    def contents(b) -> bytes:
        cells = k.mem.read_partial(b.header + 0x10, max(b.block_size - 0x10, 0))
        return bytes(c or 0 for c in cells)

    lines = pool_lines(address, region, blocks, block, flags, contents)
    return CommandResult("\n".join(lines), {
        "block": block.address if block else None, "tag": block.tag_str if block else None,
        "allocated": block.allocated if block else None,
        "page": [{"header": b.header, "size": b.block_size, "tag": b.tag_str, "allocated": b.allocated}
                 for b in blocks]})


@command("!poolused", area="memory", syntax="!poolused [Flags [TagString]]",
         summary="Pool usage by tag",
         help="""
Outstanding allocations and bytes per tag, nonpaged and paged, under the `Pool Used:` header.
Flags (hex, combinable): 1 verbose (Allocs, Frees, Diff and Used per pool), 2 sort by nonpaged
bytes, 4 sort by paged bytes (2 and 4 cannot be used together); 8 (session pool) is not
supported: the lab has no sessions.  TagString is case-sensitive, four characters unless it has
a `*`; `?` matches one character (`!poolused 2 Irp?`, `!poolused 0 wsk*`).""")
def cmd_poolused(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if len(words) > 2:
        raise inv.syntax_error(words[2][1])
    flags = dbg.evaluate(words[0][0], inv.args_offset + words[0][1]) if words else 0
    if flags & 6 == 6:
        raise inv.error("flags 2 (sort by nonpaged) and 4 (sort by paged) cannot be used together", words[0][1])
    if flags & 8:
        raise inv.error("flag 8 (session pool) is not supported: the lab has no session pool", words[0][1])
    if flags & ~0xF:
        raise inv.error(f"unknown flags {flags & ~0xF:#x} (1 verbose, 2 nonpaged sort, 4 paged sort)", words[0][1])
    pattern = words[1][0] if len(words) == 2 else None
    if pattern is not None and "*" not in pattern and len(pattern) != 4:
        raise inv.error("TagString must be exactly four characters unless it uses *", words[1][1])
    per_tag: dict[str, list[int]] = {}
    for (tag, paged), usage in dbg.kernel.pool.usage.items():
        row = per_tag.setdefault(tag_to_str(tag), [0, 0, 0, 0, 0, 0])
        base = 3 if paged else 0
        row[base] += usage.allocs
        row[base + 1] += usage.frees
        row[base + 2] += usage.bytes_in_use
    rows = [PoolUsedRow(tag, *vals) for tag, vals in per_tag.items()
            if vals[0] != vals[1] or vals[3] != vals[4] or (flags & 1 and any(vals))]
    if pattern is not None:
        rows = [r for r in rows if fnmatch.fnmatchcase(r.tag, pattern)]
    if flags & 2:
        rows.sort(key=lambda r: (-r.nonpaged_used, r.tag))
    elif flags & 4:
        rows.sort(key=lambda r: (-r.paged_used, r.tag))
    else:
        rows.sort(key=lambda r: r.tag)
    return CommandResult("\n".join(poolused_lines(rows, flags)), {"tags": [
        {"tag": r.tag, "nonpaged_allocs": r.nonpaged_allocs - r.nonpaged_frees, "nonpaged_bytes": r.nonpaged_used,
         "paged_allocs": r.paged_allocs - r.paged_frees, "paged_bytes": r.paged_used} for r in rows]})


# --- page tables ---------------------------------------------------------------------------------

@command("!pte", area="memory", syntax="!pte VirtualAddress | !pte PTE",
         summary="Show the four-level page-table walk of an address",
         help="""
The x64 walk: `VA ...`, then PXE, PPE, PDE and PTE columns with the address of each entry (in
the self-map, whose PML4 index is randomised per boot as on Windows 10 1607+), its contents and
its PFN and flag letters (C G L D A N T U/K W/R E V; - when clear).  An address inside the
self-map is taken as the address of a PTE, and the walk of the address it maps is shown.
`dq` of any of the entry addresses reads the same values.  (The paging-structure pages are
numbered above the lab's RAM: the emulator derives them from its page table.)""")
def cmd_pte(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        raise inv.error("an address is required", 0)
    if len(words) > 1:
        raise inv.error("only the one-argument forms are supported (!pte VirtualAddress, !pte PTE)", words[1][1])
    va = dbg.evaluate(words[0][0], inv.args_offset + words[0][1])
    mem = dbg.kernel.mem
    if mem.in_self_map(va) and not mem.in_self_map(va_of_pte(mem, va)):
        va = va_of_pte(mem, va)
    addresses = [mem.pxe_address(va), mem.ppe_address(va), mem.pde_address(va), mem.pte_address(va)]
    entries = [mem.table_entry(level, va) for level in (3, 2, 1, 0)]
    lines = pte_lines(va, addresses, entries)
    pte = entries[3]
    valid = all(e & 1 for e in entries)
    pfn = (pte & PFN_MASK) >> 12
    return CommandResult("\n".join(lines), {"va": va, "pte": pte, "pte_address": addresses[3],
                                             "entries": entries, "addresses": addresses,
                                             "pfn": pfn if valid else None, "valid": valid})


def va_of_pte(mem, pte_address: int) -> int:
    """The virtual address a PTE (given by its self-map address) maps."""
    n = ((pte_address & ((1 << 48) - 1)) - (mem.pte_base & ((1 << 48) - 1))) >> 3
    va = n << 12
    return va | 0xFFFF000000000000 if va >> 47 else va


@command("!pfn", area="memory", syntax="!pfn PageFrameNumber", summary="Show a PFN database entry",
         help="State, share and reference counts, the PTE that maps the page, and (emulator) the MDL lock "
              "count and owner.")
def cmd_pfn(dbg: "Engine", inv: Invocation) -> CommandResult:
    if not inv.args:
        raise inv.error("a page frame number is required", 0)
    pfn = dbg.evaluate(inv.args, inv.args_offset)
    k = dbg.kernel
    if not 0 <= pfn - k.phys.base_pfn < k.phys.page_count:
        raise inv.error(f"PFN {pfn:x} is not in physical memory ({k.phys.base_pfn:x} - "
                        f"{k.phys.base_pfn + k.phys.page_count - 1:x})", 0)
    entry = k.phys.entry(pfn)
    database_va = 0xFFFFFA8000000000 + pfn * 0x30
    containing = (k.mem.table_entry(1, va_of_pte(k.mem, entry.pte_address)) & PFN_MASK) >> 12 if entry.pte_address else 0
    lines = pfn_lines(pfn, entry, database_va, containing)
    return CommandResult("\n".join(lines), {"pfn": pfn, "state": entry.state, "share_count": entry.share_count,
                                             "reference_count": entry.reference_count,
                                             "lock_count": entry.lock_count, "pte_address": entry.pte_address})

