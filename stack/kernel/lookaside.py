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
The lab keeps the starting depth: its tuning is not modelled.  Under Driver Verifier Windows sets
every list's Depth to 0 (ExDisableAllLookasideLists), so each allocation and free reaches the pool
and can be failed: while the lab's low resources simulation is active its lists are bypassed the
same way and read Depth 0 (`!lookaside`, `dt`); the entries already on a list stay there, unused.
With a CPU model a hit costs what costs.py's pool_alloc and pool_free already are: an SList
pop or push (a miss goes to ExAllocatePoolWithTag, which charges its own).

Freeing an entry that is already on the list, or one the pool already took back, bug-checks
BAD_POOL_CALLER 0x07 (already freed): on Windows it would corrupt the SLIST silently unless Driver
Verifier catches it.  The lab runs Driver Verifier's standard rules all the time (as it does for
IRQL, MDL and pool-leak rules; `k.verifier` is only its low resources simulation), so the lookaside
rules of bug check 0xC4 hold too (MS Learn's table): 0xCA re-initialising an active list, 0xCB
deleting one that is not initialised (deleted twice), 0xCC freeing the pool block that holds an
active list.  Allocating from or freeing to a deleted list is the lab's own 0xC4 subcode 0x1050.
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
C4_LOOKASIDE_REINITIALIZED = 0xCA  # list, reserved, reserved
C4_LOOKASIDE_NOT_INITIALIZED = 0xCB  # list, reserved, reserved: delete of a list not initialised
C4_LOOKASIDE_IN_FREED_POOL = 0xCC  # list, the pool block's start, its size
EMU_C4_LOOKASIDE_USED_AFTER_DELETE = 0x1050  # list, entry (0 for an allocate), 0
STATUS_ACCESS_VIOLATION = 0xC0000005

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
    F("Future", 0x58, "u32", count=2),
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
                 "allocate", "free", "kernel", "owner", "home")

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
        self.home = 0  # the pool block that holds the structure (0: not in pool)

    # -- what the debugger reads ---------------------------------------------------------
    @property
    def current_depth(self) -> int:
        return len(self.entries)

    def flush(self) -> None:
        """Write the GENERAL_LOOKASIDE_POOL out (AddressSpace calls this before `db`/`dt` reads it)."""
        k = self.kernel
        if k is None or (self.home and not k.pool.is_allocated(self.home)):
            return  # deleted, or its memory is somebody else's now: reading must not write it
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
            self.shown_depth, self.maximum_depth, self.total_allocates & 0xFFFFFFFF, self.allocate_misses & 0xFFFFFFFF,
            self.total_frees & 0xFFFFFFFF, self.free_misses & 0xFFFFFFFF, self.pool_type, self.tag_value, self.size,
            _routine_address(k, self.allocate, "nt!ExAllocatePoolWithTag"),
            _routine_address(k, self.free, "nt!ExFreePoolWithTag"), flink, blink,
            # LastTotalAllocates / LastAllocateMisses: only the balance set manager's scan
            # (ExAdjustLookasideDepth) sets them, and the lab does not model it
            0, 0))

    @property
    def shown_depth(self) -> int:
        """Depth as Windows holds it: under Driver Verifier's low resources simulation every list's
        Depth is 0 (ExDisableAllLookasideLists), so each allocation and free reaches the pool."""
        k = self.kernel
        return 0 if k is not None and k.verifier.active else self.depth

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


def _routine_address(k: Any, fn: Any, default: str) -> int:
    """AllocateEx / FreeEx: the caller's routine, or (NULL passed) the pool routine Windows puts there."""
    symbol = getattr(fn, "symbol", None) if fn is not None else default
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
    if address in lookaside_lists(k):  # a list still active there: Driver Verifier's rule
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, C4_LOOKASIDE_REINITIALIZED, address, 0, 0,
                   detail=f"ExInitializeLookasideListEx on the active lookaside list at {address:x} "
                          f"(tag {lookaside_lists(k)[address].tag_text}); ExDeleteLookasideListEx it first")
    Lookaside.address = address
    Lookaside.kernel = k
    # an empty list: Windows writes a fresh SLIST header and zeroes the counters
    Lookaside.entries = []
    Lookaside.sequence = Lookaside.total_allocates = Lookaside.allocate_misses = 0
    Lookaside.total_frees = Lookaside.free_misses = 0
    Lookaside.depth = MINIMUM_LOOKASIDE_DEPTH
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
    block = k.pool.block_containing(address)
    Lookaside.home = block.address if block is not None and block.allocated else 0
    if Lookaside.home:
        k.pool.guards[Lookaside.home] = lambda block: _free_of_active_list(k, block)
    return STATUS_SUCCESS


def _free_of_active_list(k: Any, block: Any) -> None:
    """The pool is freeing `block`, which holds an active lookaside list: bug check 0xC4 0xCC (the
    list would stay on the kernel's list, and the next owner's bytes would be rewritten through it)."""
    for lookaside in lookaside_lists(k).values():
        if lookaside.home == block.address:
            k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, C4_LOOKASIDE_IN_FREED_POOL, lookaside.address,
                       block.address, block.requested,
                       detail=f"freeing the pool block at {block.address:x} ({block.tag_str}), which holds the "
                              f"active lookaside list at {lookaside.address:x} (tag {lookaside.tag_text}); "
                              "ExDeleteLookasideListEx it first")


def _deleted(Lookaside: LOOKASIDE_LIST_EX, Entry: int) -> None:
    """Allocating from or freeing to a list after ExDeleteLookasideListEx (or before it was ever
    initialised).  Windows would use the dead structure silently; the lab stops at the call."""
    k = _current[-1]
    what = f"ExFreeToLookasideListEx of {Entry:x}" if Entry else "ExAllocateFromLookasideListEx"
    k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, EMU_C4_LOOKASIDE_USED_AFTER_DELETE, Lookaside.address,
               Entry, 0, detail=f"{what} on the lookaside list at {Lookaside.address:x}, which is not "
                                "initialised (deleted, or never set up)")


def ExAllocateFromLookasideListEx(Lookaside: LOOKASIDE_LIST_EX) -> int:
    """An entry: the last one freed to the list, or (a miss) a new one from the allocate routine."""
    k = Lookaside.kernel
    if k is None:
        _deleted(Lookaside, 0)
    Lookaside.total_allocates += 1
    entries = Lookaside.entries
    if entries and not k.verifier.active:
        if k.cpu_model is not None:  # an SList pop: what costs.py's pool_alloc already is
            k.charge("pool_alloc")
        Lookaside.sequence += 1
        entry = entries.pop()
        # The entry's SLIST_ENTRY.Next becomes the list's head: it must still be the entry below
        # (the link never crosses a page: entries are 16-byte aligned; read as the CPU would, no flush)
        if int.from_bytes(k.mem.views(entry, 8)[0], "little") != (entries[-1] if entries else 0):
            _corrupt_link(k, Lookaside, entry)
        return entry
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
    k = Lookaside.kernel
    if k is None:
        _deleted(Lookaside, Entry)
    Lookaside.total_frees += 1
    entries = Lookaside.entries
    if Entry in entries:  # a second free of one entry: what Driver Verifier makes of it
        _already_freed(k, Entry)
    if len(entries) < Lookaside.depth and not k.verifier.active:
        if not k.pool.is_allocated(Entry):  # the pool took it back already (a free miss, then this)
            _already_freed(k, Entry)
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


def _corrupt_link(k: Any, Lookaside: LOOKASIDE_LIST_EX, entry: int) -> None:
    """Something wrote the first eight bytes of an entry while it sat on the list (a use after free).
    On Windows the pop hands the stale value over as the new head and the next pop dereferences it:
    a kernel-mode access violation, bug check 0x1E KMODE_EXCEPTION_NOT_HANDLED (c0000005, the pop,
    0 for a read, the address) - what the lab reports here, one pop early, where the cause is visible."""
    link = k.mem.read_u64(entry)
    k.bugcheck(bc.KMODE_EXCEPTION_NOT_HANDLED, STATUS_ACCESS_VIOLATION,
               k.symbol_address("nt!ExpInterlockedPopEntrySList"), 0, link,
               detail=f"the free entry {entry:x} on the lookaside list at {Lookaside.address:x} (tag "
                      f"{Lookaside.tag_text}) was written while free: its SLIST link reads {link:x}, the "
                      f"next pop would follow it")


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
    if k is None:  # deleted twice, or never initialised: Driver Verifier's 0xC4 0xCB
        kk = _current[-1]
        kk.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, C4_LOOKASIDE_NOT_INITIALIZED, Lookaside.address, 0, 0,
                    detail=f"ExDeleteLookasideListEx of the lookaside list at {Lookaside.address:x}, which is not "
                           "initialised (deleted already, or never set up)")
    while Lookaside.entries:
        _free_to_pool(Lookaside, Lookaside.entries.pop())
    lists = lookaside_lists(k)
    lists.pop(Lookaside.address, None)
    k.unregister_object(Lookaside)
    home = Lookaside.home
    if home and not any(lk.home == home for lk in lists.values()):
        k.pool.guards.pop(home, None)
    Lookaside.kernel = None


__all__ = ["LOOKASIDE_LIST_EX", "LOOKASIDE_LIST_EX_SIZE", "MINIMUM_LOOKASIDE_DEPTH", "ExInitializeLookasideListEx",
           "ExAllocateFromLookasideListEx", "ExFreeToLookasideListEx", "ExDeleteLookasideListEx",
           "EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL", "EX_LOOKASIDE_LIST_EX_FLAGS_FAIL_NO_RAISE", "lookaside_lists"]
