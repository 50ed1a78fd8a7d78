"""Executive pools with four-character tags (ExAllocatePoolWithTag and friends).

Small blocks carry a real 16-byte x64 POOL_HEADER in front of them (PreviousSize,
PoolIndex, BlockSize, PoolType, PoolTag), so `db` on `address-0x10` shows what
`!pool` decodes.  Blocks over 4064 bytes come from the big-pool table: whole
pages, page aligned, no header — as in Windows.  Freed small blocks go on a
per-size free list (reused LIFO), which keeps allocation O(1) and deterministic.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from .memory import PAGE_SIZE, ZERO_PAGE, AddressSpace, PhysicalMemory, VaRegion

NonPagedPool = 0
PagedPool = 1
NonPagedPoolMustSucceed = 2
NonPagedPoolNx = 512

POOL_TYPE_NAMES = {NonPagedPool: "NonPagedPool", PagedPool: "PagedPool", NonPagedPoolNx: "NonPagedPoolNx"}

POOL_HEADER_SIZE = 0x10
POOL_GRANULARITY = 0x10
MAX_SMALL_BLOCK = 0xFF0  # BlockSize is one byte of 16-byte units

# BAD_POOL_CALLER (0xC2) Parameter 1 values used here
BAD_POOL_CALLER = 0xC2
BPC_ALREADY_FREED = 0x07
BPC_WRONG_TAG = 0x0A  # emulator's choice for a tag mismatch at ExFreePoolWithTag
BPC_INVALID_ADDRESS = 0x46

# POOL_HEADER: PreviousSize, PoolIndex, BlockSize, PoolType (bytes), PoolTag (ULONG), ProcessBilled (8 bytes)
_POOL_HEADER = struct.Struct("<BBBBI8x")

# Tag strings seen so far -> their ULONG: drivers pass the same few literals on every call.
_TAG_VALUES: dict[str, int] = {}
_TAG_CACHE_LIMIT = 4096


def tag_from_str(tag: str | bytes | int) -> int:
    """'Echo' -> the ULONG as stored in the header (little-endian characters)."""
    if isinstance(tag, str):
        value = _TAG_VALUES.get(tag)
        if value is None:
            value = int.from_bytes(tag.encode("latin-1")[:4].ljust(4, b" "), "little")
            if len(_TAG_VALUES) < _TAG_CACHE_LIMIT:
                _TAG_VALUES[tag] = value
        return value
    if isinstance(tag, int):
        return tag & 0xFFFFFFFF
    return int.from_bytes(bytes(tag)[:4].ljust(4, b" "), "little")


def tag_to_str(tag: int) -> str:
    return (tag & 0xFFFFFFFF).to_bytes(4, "little").decode("latin-1")


def is_paged(pool_type: int) -> bool:
    return pool_type & 1 == 1


@dataclass(slots=True)
class PoolBlock:
    address: int  # what the caller got
    header: int  # POOL_HEADER address (== address for big blocks, which have none)
    block_size: int  # bytes including the header
    requested: int
    tag: int
    pool_type: int
    allocated: bool
    big: bool = False
    owner: str = ""  # routine that allocated it (for leak reports)
    # Header and body of a small block as one writable view, taken once when the block is carved:
    # a small block never crosses its page, and pool pages stay mapped, so every later
    # allocation and free of the block writes its header without a page-table walk.
    view: memoryview | None = None
    lookaside: "_Lookaside | None" = None  # what it was last allocated as (small blocks)

    @property
    def tag_str(self) -> str:
        return tag_to_str(self.tag)

    @property
    def type_name(self) -> str:
        return POOL_TYPE_NAMES.get(self.pool_type, f"Pool{self.pool_type}")


@dataclass(slots=True)
class TagUsage:
    allocs: int = 0
    frees: int = 0
    bytes_in_use: int = 0


class _Lookaside:
    """One kind of small allocation — (tag as the caller spelled it, pool type, size) — with all
    that allocating and freeing it needs worked out once: the tag's ULONG, the block size, the
    POOL_HEADER bytes of an allocated and of a free block, its free list and its tag counters.
    What a driver's lookaside list is to the driver, this is to the emulator: the per-request
    IRPs, MDLs and contexts come back through here without a struct.pack or a dict of dicts."""

    __slots__ = ("tag_arg", "tag", "pool_type", "need", "header", "free_header", "zeros", "free", "usage")

    def __init__(self, tag_arg: str | int, tag: int, pool_type: int, need: int, free: list["PoolBlock"],
                 usage: TagUsage) -> None:
        self.tag_arg = tag_arg
        self.tag = tag
        self.pool_type = pool_type
        self.need = need
        self.header = _POOL_HEADER.pack(0, 0, need >> 4, (pool_type & 0xFF) + 1, tag)
        self.free_header = _POOL_HEADER.pack(0, 0, need >> 4, 0, tag)
        self.zeros = ZERO_PAGE[:need - POOL_HEADER_SIZE]
        self.free = free
        self.usage = usage


_LOOKASIDE_LIMIT = 4096  # kinds of allocation remembered (drivers use a few dozen)
# A freed big-pool run of up to this many pages (256 KiB) stays resident: it is what the next
# request or send allocates again (afd's copy of a user-mode send of 256 KiB, a socket's 64 KiB
# buffer; freed frames are handed out again first, LIFO), as Mm keeps recently freed pages on its
# lists, instead of a madvise, a compare with the zero page and 64 page faults per send.  A larger
# run (a copy-mode file body) may not be wanted again for a long time: its host memory goes back
# (the frames read as zeros; its next owner zeroes them anyway).
_RESIDENT_MAX_PAGES = 64

BugcheckFn = Callable[[int, int, int, int, int], None]


class PoolManager:
    def __init__(
        self,
        space: AddressSpace,
        phys: PhysicalMemory,
        nonpaged: VaRegion,
        paged: VaRegion,
        bugcheck: BugcheckFn,
    ) -> None:
        self.space = space
        self.phys = phys
        self.regions = {False: nonpaged, True: paged}
        self._bugcheck = bugcheck
        self.blocks: dict[int, PoolBlock] = {}  # caller address -> big block (allocated or freed)
        self._small: dict[int, PoolBlock] = {}  # caller address -> small block (allocated or freed)
        self._page_blocks: dict[int, list[PoolBlock]] = {}  # page va -> small blocks carved from it
        self._free: dict[tuple[bool, int], list[PoolBlock]] = {}
        self._carve: dict[bool, tuple[int, int]] = {}  # paged? -> (page va, next offset)
        self.usage: dict[tuple[int, bool], TagUsage] = {}
        self.pages_in_use = 0
        self._lookaside: dict[tuple[str | int, int, int], _Lookaside] = {}
        # block address -> what to do before it is freed (a block that holds an active lookaside list)
        self.guards: dict[int, Callable[[PoolBlock], None]] = {}

    # -- allocation ----------------------------------------------------------
    def allocate(self, pool_type: int, size: int, tag: str | int, owner: str = "") -> int:
        key = (tag, pool_type, size)
        lookasides = self._lookaside
        if key not in lookasides:  # (a test and a subscript: no method call on the per-request path)
            return self._allocate_first(pool_type, size, tag, owner)
        lookaside = lookasides[key]
        # A kind of block allocated before: the same steps as below, with nothing to work out.
        free = lookaside.free
        need = lookaside.need
        block = free.pop() if free else self._allocate_small(pool_type & 1 == 1, need)
        block.requested = size
        block.tag = lookaside.tag
        block.pool_type = pool_type
        block.allocated = True
        block.owner = owner
        block.lookaside = lookaside
        view = block.view
        view[:POOL_HEADER_SIZE] = lookaside.header
        view[POOL_HEADER_SIZE:] = lookaside.zeros
        usage = lookaside.usage
        usage.allocs += 1
        usage.bytes_in_use += need
        return block.address

    def _allocate_first(self, pool_type: int, size: int, tag: str | int, owner: str) -> int:
        """The general path: a big block, or the first small block of its kind (which then gets
        a _Lookaside, so the next one takes the fast path)."""
        # The tag literal drivers pass on every call is looked up once (tag_from_str's cache).
        tag_val = _TAG_VALUES.get(tag) if tag.__class__ is str else None  # type: ignore[arg-type]
        if tag_val is None:
            tag_val = tag_from_str(tag)
        paged = pool_type & 1 == 1  # is_paged(), inlined: this runs for every IRP, MDL and context
        need = (size + POOL_HEADER_SIZE + POOL_GRANULARITY - 1) & ~(POOL_GRANULARITY - 1)
        if need <= MAX_SMALL_BLOCK:
            free = self._free.get((paged, need))
            block = free.pop() if free else self._allocate_small(paged, need)
            block.requested = size
            block.tag = tag_val
            block.pool_type = pool_type
            block.allocated = True
            block.owner = owner
            # Fresh pool memory is not zeroed in Windows, but stale bytes from a previous
            # owner make transcripts depend on history; zero it.
            view = block.view
            view[:POOL_HEADER_SIZE] = _POOL_HEADER.pack(0, 0, need >> 4, (pool_type & 0xFF) + 1, tag_val)
            view[POOL_HEADER_SIZE:] = ZERO_PAGE[:need - POOL_HEADER_SIZE]
        else:
            block = self._allocate_big(paged, size, tag_val, pool_type, owner)
        key = (tag_val, paged)
        usage = self.usage.get(key)
        if usage is None:
            usage = self.usage[key] = TagUsage()
        usage.allocs += 1
        usage.bytes_in_use += block.block_size
        block.lookaside = None
        if not block.big and len(self._lookaside) < _LOOKASIDE_LIMIT:
            free_list = self._free.get((paged, need))
            if free_list is None:
                free_list = self._free[(paged, need)] = []
            block.lookaside = self._lookaside[(tag, pool_type, size)] = _Lookaside(
                tag, tag_val, pool_type, need, free_list, usage)
        return block.address

    def _allocate_small(self, paged: bool, need: int) -> PoolBlock:
        """Carve a new block of `need` bytes (the free list for that size is empty)."""
        page, offset = self._carve.get(paged, (0, PAGE_SIZE))
        if offset + need > PAGE_SIZE:
            # Zeroed, as each carved block is: the page past the carved blocks must not show a
            # previous owner's bytes (a freed 256 KiB send copy stays resident) to `db`.
            page = self._new_pages(paged, 1, "pool")
            offset = 0
        header = page + offset
        self._carve[paged] = (page, offset + need)
        block = PoolBlock(header + POOL_HEADER_SIZE, header, need, 0, 0, 0, False)
        block.view = self.space.span(header, need)
        self._page_blocks.setdefault(page, []).append(block)
        self._small[block.address] = block
        return block

    def _allocate_big(self, paged: bool, size: int, tag: int, pool_type: int, owner: str) -> PoolBlock:
        pages = (size + PAGE_SIZE - 1) // PAGE_SIZE
        # Zeroed pages, as the small blocks are zeroed; fresh frames already are.
        va = self._new_pages(paged, pages, "bigpool")
        block = PoolBlock(va, va, pages * PAGE_SIZE, size, tag, pool_type, True, big=True, owner=owner)
        self.blocks[va] = block
        return block

    def _new_pages(self, paged: bool, pages: int, owner: str) -> int:
        """`pages` zeroed pages mapped at a new va of the region (recycled frames are cleared)."""
        region = self.regions[paged]
        va = region.reserve(pages)
        pfns = self.phys.allocate_zeroed(pages, owner)
        self.space.map_pages(va, pfns)
        self.pages_in_use += pages
        return va

    # -- free ------------------------------------------------------------------
    def free(self, address: int, tag: str | int | None = None) -> PoolBlock:
        small = self._small
        block = small[address] if address in small else None
        if self.guards and address in self.guards:
            self._guarded_free(address)
        if block is not None and block.allocated:
            lookaside = block.lookaside
            if lookaside is not None and (tag is None or tag == lookaside.tag_arg) and (
                    lookaside.pool_type == block.pool_type):
                # Freed as it was allocated: the same steps as below, nothing to work out.
                usage = lookaside.usage
                usage.frees += 1
                usage.bytes_in_use -= block.block_size
                block.allocated = False
                block.view[:POOL_HEADER_SIZE] = lookaside.free_header
                lookaside.free.append(block)
                return block
        return self._free_general(address, tag)

    def _guarded_free(self, address: int) -> None:
        block = self._small.get(address) or self.blocks.get(address)
        if block is not None and block.allocated:
            self.guards[address](block)

    def is_allocated(self, va: int) -> bool:
        """Whether `va` is the start of an allocated pool block (what a caller got, not yet freed)."""
        block = self._small.get(va) or self.blocks.get(va)
        return block is not None and block.allocated

    def _free_general(self, address: int, tag: str | int | None) -> PoolBlock:
        block = self._small.get(address) or self.blocks.get(address)
        if block is None:
            block = self._find_small(address)
        if block is None or block.address != address:
            self._bugcheck(BAD_POOL_CALLER, BPC_INVALID_ADDRESS, address, 0, 0)
            raise AssertionError("unreachable")
        if not block.allocated:
            header = int.from_bytes(self.space.read(block.header, 8), "little") if not block.big else 0
            self._bugcheck(BAD_POOL_CALLER, BPC_ALREADY_FREED, 0, header, address)
        if tag is not None:
            tag_val = _TAG_VALUES.get(tag) if tag.__class__ is str else None  # type: ignore[arg-type]
            if tag_val is None:
                tag_val = tag_from_str(tag)
            if tag_val != block.tag:
                self._bugcheck(BAD_POOL_CALLER, BPC_WRONG_TAG, address, block.tag, tag_val)
        paged = block.pool_type & 1 == 1
        usage = self.usage[(block.tag, paged)]
        usage.frees += 1
        usage.bytes_in_use -= block.block_size
        block.allocated = False
        if block.big:
            self._free_big(block, paged)
            # keep the record so a second free is recognised as a double free
        else:
            # The header of a free block: PoolType 0, the tag kept (what `!pool` shows as Free).
            block.view[:POOL_HEADER_SIZE] = _POOL_HEADER.pack(0, 0, block.block_size >> 4, 0, block.tag)
            free = self._free.get((paged, block.block_size))
            if free is None:
                free = self._free[(paged, block.block_size)] = []
            free.append(block)
        return block

    def _free_big(self, block: PoolBlock, paged: bool) -> None:
        pages = block.block_size // PAGE_SIZE
        freed = self.space.unmap_pages(block.address, pages)
        self.phys.free_run(freed)
        if pages > _RESIDENT_MAX_PAGES:
            self.phys.discard(freed)
        self.regions[paged].release(block.address, pages)
        self.pages_in_use -= pages

    def _find_small(self, address: int) -> PoolBlock | None:
        for block in self._page_blocks.get(address & ~(PAGE_SIZE - 1), ()):
            if block.header <= address < block.header + block.block_size:
                return block
        return None

    # -- inspection ------------------------------------------------------------
    def block_containing(self, address: int) -> PoolBlock | None:
        block = self._find_small(address)
        if block is not None:
            return block
        for b in self.blocks.values():
            if b.big and b.address <= address < b.address + b.block_size:
                return b
        return None

    def blocks_in_page(self, address: int) -> list[PoolBlock]:
        return list(self._page_blocks.get(address & ~(PAGE_SIZE - 1), ()))

    def allocated_blocks(self) -> list[PoolBlock]:
        small = [b for blocks in self._page_blocks.values() for b in blocks if b.allocated]
        big = [b for b in self.blocks.values() if b.allocated]
        return sorted(small + big, key=lambda b: b.address)

    def pool_type_of(self, address: int) -> int | None:
        if self.regions[True].contains(address):
            return PagedPool
        if self.regions[False].contains(address):
            return NonPagedPoolNx
        return None
