"""Pool, page table and PFN displays: `!pool`, `!poolused`, `!pte`, `!pfn`."""

from __future__ import annotations

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
    return POOL_TAG_DESCRIPTIONS.get(tag, "unknown pool tag")


def pool_lines(address: int, region: str, blocks: list[Any], target: Any) -> list[str]:
    """`!pool`: the small-pool page holding `address`, the block containing it marked with *."""
    lines = [f"Pool page {addr64_nobt(address)} region is {region}"]
    previous = 0
    for b in blocks:
        mark = "*" if b is target else " "
        state = "Allocated" if b.allocated else "Free     "
        tag = b.tag_str
        lines.append(f"{mark}{addr64_nobt(b.header)} size: {b.block_size:4x} previous size: {previous:4x}  "
                     f"({state}) {'*' if b is target else ' '}{tag}")
        previous = b.block_size
    if target is not None:
        lines.append(f"\t\tPooltag {target.tag_str} : {tag_description(target.tag_str)}")
    return lines


def big_pool_lines(address: int, block: Any) -> list[str]:
    return [f"Pool page {addr64_nobt(address)} region is {'Paged' if block.pool_type & 1 else 'Nonpaged'} pool",
            f"{addr64_nobt(address)} is not a valid small pool allocation, checking large pool...",
            f"*{addr64_nobt(block.address)} : large page allocation, tag is {block.tag_str}, size is "
            f"{block.requested:#x} bytes",
            f"\t\tPooltag {block.tag_str} : {tag_description(block.tag_str)}"]


def poolused_lines(rows: list[tuple[str, int, int, int, int]]) -> list[str]:
    """`!poolused`: (tag, nonpaged allocs, nonpaged bytes, paged allocs, paged bytes) per tag."""
    lines = ["   Sorting by Tag", "",
             "               NonPaged                  Paged",
             " Tag     Allocs         Used     Allocs         Used", ""]
    for tag, na, nu, pa, pu in rows:
        lines.append(f" {tag:<4} {na:>10} {nu:>12} {pa:>10} {pu:>12}\t{tag_description(tag)}")
    if not rows:
        lines.append(" (no tags match)")
    return lines


def pte_flags(pte: int) -> str:
    if not pte & 1:
        return "not valid"
    letters = "".join(s if pte & bit else c for bit, s, c in PTE_LETTERS)
    executable = "-" if pte >> 63 else "E"
    return letters + executable + "V"


def pte_lines(va: int, pde_addr: int, pte_addr: int, pde: int, pte: int) -> list[str]:
    pde_pfn = (pde >> 12) & 0xFFFFFFFFFF
    pte_pfn = (pte >> 12) & 0xFFFFFFFFFF
    return [
        f"{'':36}VA {addr64_nobt(va)}",
        f"PDE at {pde_addr:016X}            PTE at {pte_addr:016X}",
        f"contains {pde:016X}  contains {pte:016X}",
        f"pfn {pde_pfn:<10x}{pte_flags(pde):<13} pfn {pte_pfn:<10x}{pte_flags(pte)}"
        if pte & 1 else f"pfn {pde_pfn:<10x}{pte_flags(pde):<13} not valid",
    ]


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
