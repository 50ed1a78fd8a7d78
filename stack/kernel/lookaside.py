"""Lookaside lists: ExInitializeLookasideListEx, ExAllocateFromLookasideListEx,
ExFreeToLookasideListEx, ExDeleteLookasideListEx (wdm.h).

A driver that allocates and frees many blocks of one size and tag (khttpd's connection
blocks, receive buffers, header buffers, send contexts) keeps the freed ones on a short
stack of its own and takes them back from there, without a trip to the pool.  What goes in
and out, as on Windows:

- `ExAllocateFromLookasideListEx` pops the last freed entry (a *hit*); with none, it is a
  *miss*: the list's allocate routine (by default `ExAllocatePoolWithTag(Type, Size, Tag)`)
  supplies one, which may be NULL.
- `ExFreeToLookasideListEx` pushes the entry while the list holds fewer than `Depth`
  entries; past that it is a *free miss* and the entry goes back to the pool.
- An entry on the list is still an allocated pool block of the list's tag: `!pool` and
  `!poolused` count it as in use, exactly as they do on Windows.
- `ExDeleteLookasideListEx` frees what the list still holds.
- ExAllocateFromLookasideListEx and ExFreeToLookasideListEx are FORCEINLINE in wdm.h: no routine
  of their own to `bp`, and a hit or a push publishes no pool event (no pool call happens); a miss
  goes through ExAllocatePoolWithTag / ExFreePoolWithTag and is seen as any allocation is.

The structure lives in memory the caller gives it (a LOOKASIDE_LIST_EX, 0x60 bytes on x64:
its GENERAL_LOOKASIDE_POOL), written out when somebody reads it (`dt`, `db`), and every list
is on the kernel's list of lookaside lists, which `!lookaside -all` walks.  A freed entry's
first eight bytes are the SLIST link to the entry freed before it, as in an SLIST_ENTRY.

Depth: Windows starts every list at MINIMUM_LOOKASIDE_DEPTH (4; the `Depth` argument is
reserved) and the balance set manager retunes it once a second from the miss rate (up to 256).
The lab keeps the starting depth: its tuning is not modelled.  While the verifier's low
resources simulation is active, every allocation and free goes to the pool, so each one can be
failed (the lab's choice; Driver Verifier's own handling of lookaside lists is not documented).
With a CPU model a hit costs what costs.py's pool_alloc and pool_free already are: an SList
pop or push (a miss goes to ExAllocatePoolWithTag, which charges its own).

Freeing an entry that is already on the list bug-checks BAD_POOL_CALLER 0x07 (already freed):
on Windows it would corrupt the SLIST silently unless Driver Verifier catches it.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from . import bugcheck as bc
from .layouts import F, StructLayout, register_layout
from .ntstatus import STATUS_INVALID_PARAMETER, STATUS_SUCCESS
from .pool import POOL_TYPE_NAMES, tag_from_str, tag_to_str
from .symbols import _current

LOOKASIDE_LIST_EX_SIZE = 0x60  # sizeof(LOOKASIDE_LIST_EX) on x64: one GENERAL_LOOKASIDE_POOL
MINIMUM_LOOKASIDE_DEPTH = 4  # the WRK's lookasid.c; the starting depth of every list
MAXIMUM_LOOKASIDE_DEPTH = 256  # GENERAL_LOOKASIDE_POOL.MaximumDepth (the tuning ceiling)
EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL = 0x1
EX_LOOKASIDE_LIST_EX_FLAGS_FAIL_NO_RAISE = 0x2
POOL_RAISE_IF_ALLOCATION_FAILURE = 0x10

BPC_ALREADY_FREED = 0x07

# SLIST_HEADER, x64: Depth:16 Sequence:48 in Alignment, then Reserved:4 NextEntry:60 (the top entry's
# address, 16-byte aligned) in Region
register_layout(StructLayout("_SLIST_HEADER", 0x10, [
    F("Alignment", 0x00, "u64"),
    F("Region", 0x08, "u64"),
]))

# GENERAL_LOOKASIDE_POOL, x64 (dt nt!_GENERAL_LOOKASIDE_POOL; offsets from the public symbols)
register_layout(StructLayout("_GENERAL_LOOKASIDE_POOL", LOOKASIDE_LIST_EX_SIZE, [
    F("ListHead", 0x00, "struct", "_SLIST_HEADER", size=0x10),
    F("Depth", 0x10, "u16"),
    F("MaximumDepth", 0x12, "u16"),
    F("TotalAllocates", 0x14, "u32"),
    F("AllocateMisses", 0x18, "u32"),
    F("TotalFrees", 0x1C, "u32"),
    F("FreeMisses", 0x20, "u32"),
    F("Type", 0x24, "u32"),
    F("Tag", 0x28, "u32"),
    F("Size", 0x2C, "u32"),
    F("AllocateEx", 0x30, "ptr", "Void"),
    F("FreeEx", 0x38, "ptr", "Void"),
    F("ListEntry", 0x40, "struct", "_LIST_ENTRY", size=0x10),
    F("LastTotalAllocates", 0x50, "u32"),
    F("LastAllocateMisses", 0x54, "u32"),
]))

# LOOKASIDE_LIST_EX: `L`, the GENERAL_LOOKASIDE_POOL (wdm.h)
register_layout(StructLayout("_LOOKASIDE_LIST_EX", LOOKASIDE_LIST_EX_SIZE, [
    F("L", 0x00, "struct", "_GENERAL_LOOKASIDE_POOL", size=LOOKASIDE_LIST_EX_SIZE),
]))

# SLIST_HEADER (x64: Depth:16 Sequence:48 | Reserved:4 NextEntry:60), then Depth .. Size, then the
# allocate and free routines' addresses, the ListEntry links, the Last* counters and Future[2].
_IMAGE = struct.Struct("<QQHHIIIIIIIQQQQII8x")
_LINK = struct.Struct("<Q")


class LOOKASIDE_LIST_EX:
    """A lookaside list: set up by ExInitializeLookasideListEx at an address in nonpaged memory."""

    struct_size = LOOKASIDE_LIST_EX_SIZE
    layout = "_GENERAL_LOOKASIDE_POOL"

    __slots__ = ("address", "name", "pool_type", "flags", "size", "tag", "tag_value", "depth", "maximum_depth",
                 "total_allocates", "allocate_misses", "total_frees", "free_misses", "sequence", "entries",
                 "allocate", "free", "kernel", "owner")

    def __init__(self, address: int = 0, name: str = "") -> None:
        self.address = address  # where the caller's LOOKASIDE_LIST_EX is (nonpaged, 16-byte aligned)
        self.name = name  # what `!lookaside` prints between the quotes (Windows prints "" for a driver's)
        self.pool_type = 0
        self.flags = 0
        self.size = 0
        self.tag: str | int = 0
        self.tag_value = 0
        self.depth = MINIMUM_LOOKASIDE_DEPTH
        self.maximum_depth = MAXIMUM_LOOKASIDE_DEPTH
        self.total_allocates = 0
        self.allocate_misses = 0
        self.total_frees = 0
        self.free_misses = 0
        self.sequence = 0  # the SLIST_HEADER's sequence: one more per push and pop
        self.entries: list[int] = []  # the SLIST, top last
        self.allocate: Callable[..., int] | None = None
        self.free: Callable[..., None] | None = None
        self.kernel: Any = None
        self.owner = ""  # the routine that initialised it (`module!Routine`)

    # -- what the debugger reads ---------------------------------------------------------
    @property
    def current_depth(self) -> int:
        return len(self.entries)

    def flush(self) -> None:
        """Write the GENERAL_LOOKASIDE_POOL out (AddressSpace calls this before `db`/`dt` reads it)."""
        k = self.kernel
        if k is None:
            return
        head = self.entries[-1] if self.entries else 0
        links = lookaside_lists(k)
        keys = list(links)
        i = keys.index(self.address) if self.address in keys else -1
        # ListEntry: the kernel's list of lookaside lists, in the order they were initialised (its head,
        # ExPoolLookasideListHead, is not in the lab's memory: the two ends read 0)
        flink = keys[i + 1] + 0x40 if 0 <= i < len(keys) - 1 else 0
        blink = keys[i - 1] + 0x40 if i > 0 else 0
        k.mem.write(self.address, _IMAGE.pack(
            len(self.entries) | (self.sequence & 0xFFFF_FFFF_FFFF) << 16, head,
            self.depth, self.maximum_depth, self.total_allocates & 0xFFFFFFFF, self.allocate_misses & 0xFFFFFFFF,
            self.total_frees & 0xFFFFFFFF, self.free_misses & 0xFFFFFFFF, self.pool_type, self.tag_value, self.size,
            _routine_address(k, self.allocate), _routine_address(k, self.free), flink, blink,
            self.total_allocates & 0xFFFFFFFF, self.allocate_misses & 0xFFFFFFFF))

    @property
    def tag_text(self) -> str:
        return tag_to_str(self.tag_value)

    @property
    def type_text(self) -> str:
        base = self.pool_type & ~POOL_RAISE_IF_ALLOCATION_FAILURE
        text = POOL_TYPE_NAMES.get(base, f"Pool{base}")
        if self.pool_type & POOL_RAISE_IF_ALLOCATION_FAILURE:
            text += " RaiseIfAllocationFailure"
        return text


def _routine_address(k: Any, fn: Any) -> int:
    symbol = getattr(fn, "symbol", None)
    return k.symbol_address(symbol) if symbol else 0


def lookaside_lists(k: Any) -> dict[int, LOOKASIDE_LIST_EX]:
    """The kernel's lookaside lists by address, in the order they were initialised (ExPoolLookasideListHead)."""
    return k.extensions.setdefault("lookaside_lists", {})


def ExInitializeLookasideListEx(Lookaside: LOOKASIDE_LIST_EX, Allocate: Callable[..., int] | None,
                                Free: Callable[..., None] | None, PoolType: int, Flags: int, Size: int,
                                Tag: str | int, Depth: int = 0) -> int:
    """Set up an empty list of `Size`-byte `Tag` blocks from `PoolType`, at `Lookaside.address` (the
    caller's nonpaged memory for the LOOKASIDE_LIST_EX).  `Depth` is reserved, as on Windows."""
    k = _current[-1]
    address = Lookaside.address
    if not address:
        return STATUS_INVALID_PARAMETER
    if Flags & EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL and Flags & EX_LOOKASIDE_LIST_EX_FLAGS_FAIL_NO_RAISE:
        return STATUS_INVALID_PARAMETER  # the two flags are mutually exclusive
    Lookaside.address = address
    Lookaside.kernel = k
    Lookaside.pool_type = PoolType | (POOL_RAISE_IF_ALLOCATION_FAILURE
                                      if Flags & EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL else 0)
    Lookaside.flags = Flags
    Lookaside.size = Size
    Lookaside.tag = Tag
    Lookaside.tag_value = tag_from_str(Tag)
    Lookaside.allocate = Allocate
    Lookaside.free = Free
    Lookaside.owner = k.frames[-1][0] if k.frames else "nt!KiIdleLoop"
    lookaside_lists(k)[address] = Lookaside
    k.register_object(Lookaside)
    return STATUS_SUCCESS


def ExAllocateFromLookasideListEx(Lookaside: LOOKASIDE_LIST_EX) -> int:
    """An entry: the last one freed to the list, or (a miss) a new one from the allocate routine."""
    Lookaside.total_allocates += 1
    entries = Lookaside.entries
    k = Lookaside.kernel
    if entries and not k.verifier.active:
        if k.cpu_model is not None:  # an SList pop: what costs.py's pool_alloc already is
            k.charge("pool_alloc")
        Lookaside.sequence += 1
        return entries.pop()
    Lookaside.allocate_misses += 1
    allocate = Lookaside.allocate
    if allocate is not None:
        return allocate(Lookaside.pool_type & ~POOL_RAISE_IF_ALLOCATION_FAILURE, Lookaside.size, Lookaside.tag,
                        Lookaside)
    from .ex import ExAllocatePoolWithTag
    return ExAllocatePoolWithTag(Lookaside.pool_type & ~POOL_RAISE_IF_ALLOCATION_FAILURE, Lookaside.size,
                                 Lookaside.tag)


def ExFreeToLookasideListEx(Lookaside: LOOKASIDE_LIST_EX, Entry: int) -> None:
    """Keep the entry on the list while it holds fewer than Depth; else (a free miss) free it."""
    Lookaside.total_frees += 1
    entries = Lookaside.entries
    k = Lookaside.kernel
    if Entry in entries:  # a second free of one entry: what Driver Verifier makes of it
        _already_freed(k, Entry)
    if len(entries) < Lookaside.depth and not k.verifier.active:
        if k.cpu_model is not None:  # an SList push: costs.py's pool_free
            k.charge("pool_free")
        # SLIST_ENTRY.Next: the entry freed before this one (0 at the bottom)
        k.mem.write(Entry, _LINK.pack(entries[-1] if entries else 0))
        entries.append(Entry)
        Lookaside.sequence += 1
        return
    Lookaside.free_misses += 1
    _free_to_pool(Lookaside, Entry)


def _already_freed(k: Any, Entry: int) -> None:
    """BAD_POOL_CALLER 0x07: P3 the block's POOL_HEADER (0 for a big-pool block, which has none)."""
    block = k.pool.block_containing(Entry)
    header = int.from_bytes(k.mem.read(block.header, 8), "little") if block is not None and not block.big else 0
    k.bugcheck(bc.BAD_POOL_CALLER, BPC_ALREADY_FREED, 0, header, Entry)


def _free_to_pool(Lookaside: LOOKASIDE_LIST_EX, Entry: int) -> None:
    free = Lookaside.free
    if free is not None:
        free(Entry, Lookaside)
        return
    from .ex import ExFreePoolWithTag
    ExFreePoolWithTag(Entry, Lookaside.tag)


def ExDeleteLookasideListEx(Lookaside: LOOKASIDE_LIST_EX) -> None:
    """Free what the list still holds and take it off the kernel's list of lookaside lists."""
    k = Lookaside.kernel
    if k is None:
        return
    while Lookaside.entries:
        _free_to_pool(Lookaside, Lookaside.entries.pop())
    lookaside_lists(k).pop(Lookaside.address, None)
    k.unregister_object(Lookaside)
    Lookaside.kernel = None


__all__ = ["LOOKASIDE_LIST_EX", "LOOKASIDE_LIST_EX_SIZE", "MINIMUM_LOOKASIDE_DEPTH", "ExInitializeLookasideListEx",
           "ExAllocateFromLookasideListEx", "ExFreeToLookasideListEx", "ExDeleteLookasideListEx",
           "EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL", "EX_LOOKASIDE_LIST_EX_FLAGS_FAIL_NO_RAISE", "lookaside_lists"]
