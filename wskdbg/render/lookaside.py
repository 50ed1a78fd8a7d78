"""`!lookaside`: one lookaside list's counters, in the shape kdexts' `!lookaside Address` prints
(the MS Learn page for `!lookaside`, its example for an Ntfs list):

    Lookaside "" @ 0xfffff88001294f80  Tag(hex): 0x7366744e "Ntfs"
        Type           =       0011  PagedPool RaiseIfAllocationFailure
        Current Depth  =          0  Max Depth  =          4
        Size           =        496  Max Alloc  =       1984
        AllocateMisses =          8  FreeMisses =          0
        TotalAllocates =     272492  TotalFrees =     272488
        Hit Rate       =         99% Hit Rate   =        100%

Max Alloc is Size x Max Depth (the bytes a full list holds); the hit rates are the allocations and
frees that did not miss, in whole percent.
"""

from __future__ import annotations

from typing import Any

from stack.kernel.lookaside import LOOKASIDE_LIST_EX


def lookaside_row(lookaside: LOOKASIDE_LIST_EX) -> dict[str, Any]:
    return {"address": lookaside.address, "name": lookaside.name, "tag": lookaside.tag_text,
            "tag_value": lookaside.tag_value, "type": lookaside.pool_type, "type_text": lookaside.type_text,
            "current_depth": lookaside.current_depth, "max_depth": lookaside.shown_depth, "size": lookaside.size,
            "allocate_misses": lookaside.allocate_misses, "free_misses": lookaside.free_misses,
            "total_allocates": lookaside.total_allocates, "total_frees": lookaside.total_frees,
            "owner": lookaside.owner}


def _rate(total: int, misses: int) -> int:
    return (total - misses) * 100 // total if total else 0


def lookaside_lines(r: dict[str, Any]) -> list[str]:
    def pair(left: str, lvalue: str, right: str, rvalue: str) -> str:
        return f"    {left:<15}= {lvalue:>10}  {right:<11}= {rvalue:>10}"

    return [f'Lookaside "{r["name"]}" @ 0x{r["address"]:016x}  Tag(hex): 0x{r["tag_value"]:08x} "{r["tag"]}"',
            f"    {'Type':<15}= {format(r['type'], '04x'):>10}  {r['type_text']}",
            pair("Current Depth", str(r["current_depth"]), "Max Depth", str(r["max_depth"])),
            pair("Size", str(r["size"]), "Max Alloc", str(r["size"] * r["max_depth"])),
            pair("AllocateMisses", str(r["allocate_misses"]), "FreeMisses", str(r["free_misses"])),
            pair("TotalAllocates", str(r["total_allocates"]), "TotalFrees", str(r["total_frees"])),
            f"    {'Hit Rate':<15}= {_rate(r['total_allocates'], r['allocate_misses']):>10}% "
            f"{'Hit Rate':<11}= {_rate(r['total_frees'], r['free_misses']):>10}%"]
