"""Pool, page table and PFN displays: `!pool`, `!poolused`, `!pte`, `!pfn`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wskdbg.render.fmt import addr64_nobt

# What `!pool` and `!poolused` say about a tag (pooltag.txt style: "component, description").
POOL_TAG_DESCRIPTIONS = {
    "Irp ": "Io, IRP packets",
    "Mdl ": "Io, Mdls",
    "Driv": "Io, driver objects",
    "Devi": "Io, device objects",
    "Thre": "nt!ps, thread objects",
    "IoWk": "nt!io, IO_WORKITEM",
    "File": "Io, file objects",
    "NBL ": "ndis, NET_BUFFER_LIST pool",
    "NB  ": "ndis, NET_BUFFER pool",
    "WskS": "afd, WSK socket contexts",
    "Echo": "echosrv, WSK echo sample",
}

PTE_LETTERS = (  # bit, set, clear — in the order `!pte` prints them
    (0x200, "C", "-"), (0x100, "G", "-"), (0x80, "L", "-"), (0x40, "D", "-"), (0x20, "A", "-"),
    (0x10, "N", "-"), (0x08, "T", "-"), (0x04, "U", "K"), (0x02, "W", "R"),
)


def tag_description(tag: str) -> str:
    return pool_tag_text(tag)


def pool_lines(address: int, region: str, blocks: list[Any], target: Any, flags: int = 0,
               contents: Any = None) -> list[str]:
    """`!pool`: the small-pool page holding `address`, the block containing it marked with *.

    Flags as MS Learn documents them: 1 adds each block's contents (dwords), 2 shows only the
    block holding the address, 0x80000000 leaves out the tag description.  `contents(block)`
    returns the block's body bytes (for flag 1)."""
    lines = [f"Pool page {addr64_nobt(address)} region is {region}"]
    previous = 0
    for b in blocks:
        size, prev = b.block_size, previous
        previous = b.block_size
        if flags & 2 and b is not target:
            continue
        mark = "*" if b is target else " "
        state = "Allocated" if b.allocated else "Free     "
        lines.append(f"{mark}{addr64_nobt(b.header)} size: {size:4x} previous size: {prev:4x}  "
                     f"({state}) {'*' if b is target else ' '}{b.tag_str}")
        if flags & 1 and contents is not None:
            body = contents(b) or b""
            for at in range(0, len(body) - len(body) % 16, 16):
                words = " ".join(f"{int.from_bytes(body[at + i:at + i + 4], 'little'):08x}" for i in range(0, 16, 4))
                lines.append(f"    {addr64_nobt(b.header + 0x10 + at)}  {words}")
    if target is not None and not flags & 0x80000000:
        lines.append(f"\t\tPooltag {target.tag_str} : {tag_description(target.tag_str)}")
    return lines


def big_pool_lines(address: int, block: Any) -> list[str]:
    return [f"Pool page {addr64_nobt(address)} region is {'Paged' if block.pool_type & 1 else 'Nonpaged'} pool",
            f"{addr64_nobt(address)} is not a valid small pool allocation, checking large pool...",
            f"*{addr64_nobt(block.address)} : large page allocation, tag is {block.tag_str}, size is "
            f"{block.requested:#x} bytes",
            f"\t\tPooltag {block.tag_str} : {tag_description(block.tag_str)}"]


# `!poolused` as MS Learn documents it ("!poolused", Remarks)::
#
#   0: kd> !poolused
#      Sorting by  Tag
#
#     Pool Used:
#               NonPaged            Paged
#    Tag    Allocs     Used    Allocs     Used
#    1394        1      520         0        0UNKNOWN pooltag '1394', please update pooltag.txt
#    8042        4     3944         0        0PS/2 kb and mouse , Binary: i8042prt.sys
#
# (the `%s` for a session pool leaves two spaces in "Sorting by  Tag").  Flag 1 adds Frees and
# Diff per pool; flag 2 / 4 sort by nonpaged / paged bytes, largest first.
POOLUSED_SORT_TITLES = {0: "   Sorting by  Tag", 2: "   Sorting by  NonPaged Pool Consumed",
                        4: "   Sorting by  Paged Pool Consumed"}


@dataclass(frozen=True, slots=True)
class PoolUsedRow:
    tag: str  # four characters, as in the POOL_HEADER (padded with spaces)
    nonpaged_allocs: int
    nonpaged_frees: int
    nonpaged_used: int
    paged_allocs: int
    paged_frees: int
    paged_used: int


def pool_tag_text(tag: str) -> str:
    """What pooltag.txt says about a tag, or the debugger's UNKNOWN wording."""
    known = POOL_TAG_DESCRIPTIONS.get(tag)
    return known if known else f"UNKNOWN pooltag '{tag}', please update pooltag.txt"


def poolused_lines(rows: list[PoolUsedRow], flags: int) -> list[str]:
    """`!poolused [Flags]`; rows are already filtered and sorted."""
    lines = [POOLUSED_SORT_TITLES[flags & 6], "", "  Pool Used:"]
    if flags & 1:
        lines += ["            NonPaged                    Paged",
                  " Tag    Allocs    Frees     Diff     Used   Allocs    Frees     Diff     Used"]
        for r in rows:
            lines.append(f" {r.tag:<4} {r.nonpaged_allocs:>8} {r.nonpaged_frees:>8} "
                         f"{r.nonpaged_allocs - r.nonpaged_frees:>8} {r.nonpaged_used:>8} {r.paged_allocs:>8} "
                         f"{r.paged_frees:>8} {r.paged_allocs - r.paged_frees:>8} {r.paged_used:>8}"
                         f"{pool_tag_text(r.tag)}")
    else:
        lines += ["            NonPaged            Paged", " Tag    Allocs     Used    Allocs     Used"]
        for r in rows:
            lines.append(f" {r.tag:<4} {r.nonpaged_allocs - r.nonpaged_frees:>8} {r.nonpaged_used:>8} "
                         f"{r.paged_allocs - r.paged_frees:>9} {r.paged_used:>8}{pool_tag_text(r.tag)}")
    return lines


def pte_flags(pte: int) -> str:
    if not pte & 1:
        return "not valid"
    letters = "".join(s if pte & bit else c for bit, s, c in PTE_LETTERS)
    executable = "-" if pte >> 63 else "E"
    return letters + executable + "V"


# The x64 `!pte` walk, from a published capture (Windows 10, randomised self-map)::
#
#                                              VA fffff78000000000
#   PXE at FFFFA8D46A351F78    PPE at FFFFA8D46A3EF000    PDE at FFFFA8D47DE00000    PTE at FFFFA8FBC0000000
#   contains 000000000F202063  contains 000000000F203063  contains 000000000F204063  contains 800000000F22C963
#   pfn f202      ---DA--KWEV  pfn f203      ---DA--KWEV  pfn f204      ---DA--KWEV  pfn f22c      -G-DA--KW-V
#
# Each level is a 27-character column; the walk stops at the first entry that is not valid.
PTE_LEVEL_NAMES = ("PXE", "PPE", "PDE", "PTE")


def pte_lines(va: int, addresses: list[int], entries: list[int]) -> list[str]:
    """`addresses` and `entries` run PXE, PPE, PDE, PTE."""
    at = [f"{name} at {a:016X}" for name, a in zip(PTE_LEVEL_NAMES, addresses)]
    contains: list[str] = []
    pfns: list[str] = []
    for e in entries:
        contains.append(f"contains {e:016X}")
        if not e & 1:
            pfns.append("not valid")
            break
        pfns.append(f"pfn {(e & 0xFFFFFFFFFF000) >> 12:<10x}{pte_flags(e)}")
    return [f"{'':43}VA {va & 0xFFFFFFFFFFFFFFFF:016x}",
            "".join(f"{c:<27}" for c in at).rstrip(),
            "".join(f"{c:<27}" for c in contains).rstrip(),
            "".join(f"{c:<27}" for c in pfns).rstrip()]


def pfn_lines(pfn: int, entry: Any, database_va: int, containing: int) -> list[str]:
    state = {"Active": "Active", "Modified": "Modified", "Free": "Free"}.get(entry.state, entry.state)
    return [
        f"    PFN {pfn:08X} at address {database_va:016X}",
        f"    flink       00000000  blink / share count {entry.share_count:08X}  pteaddress {entry.pte_address:016X}",
        f"    reference count {entry.reference_count:04X}    used entry count  0000      Cached    "
        f"color {entry.color}   Priority 5",
        f"    restore pte 00000080  containing page {containing:06X}  {state}     "
        f"{'M' if entry.state == 'Modified' else ''}",
        f"    locked by MDLs {entry.lock_count}   owner {entry.owner or '-'}",
    ]
