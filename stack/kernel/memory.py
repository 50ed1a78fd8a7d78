"""Emulated physical memory, the PFN database and the kernel virtual address space.

Physical memory is one anonymous mapping; page frame N is the slice [N*4096, N*4096+4096).
Physically contiguous frames are therefore contiguous in Python memory too, so a
buffer over consecutive PFNs can be viewed as one memoryview without copying.  The host
OS backs the mapping lazily (a page costs nothing until first written, and reads as zeros
until then), so an idle 64 MB host costs what it uses, as a guest's untouched RAM does
under a hypervisor.  The PFN database is lazy the same way: a frame never handed out
shares one read-only "free" row until something allocates it or asks for its entry.

Virtual memory is a dict from virtual page number to a 64-bit x64-style PTE value
(PFN in bits 12..51, flag bits below).  Translating an address is one dict lookup.
"""

from __future__ import annotations

import mmap
import zlib
from dataclasses import dataclass

PAGE_SIZE = 0x1000
PAGE_SHIFT = 12
PAGE_MASK = PAGE_SIZE - 1

# A physical address is (PFN << PAGE_SHIFT) | byte within the page.  Bytes that live outside
# emulated physical memory (a Python copy) have none: any negative value says so.  This one lies
# so far below zero that adding an offset inside any buffer keeps it negative, so code that slices
# a run of bytes adds the offset to its address without first asking whether it has one.
NO_PHYSICAL_ADDRESS = -(1 << 62)

# x64 PTE bits (the letters `!pte` prints)
PTE_VALID = 0x1
PTE_WRITE = 0x2
PTE_OWNER = 0x4  # U when set, K when clear
PTE_WRITE_THROUGH = 0x8
PTE_NO_CACHE = 0x10
PTE_ACCESSED = 0x20
PTE_DIRTY = 0x40
PTE_LARGE = 0x80
PTE_GLOBAL = 0x100
PTE_COPY_ON_WRITE = 0x200
PTE_NX = 1 << 63
PFN_MASK = 0x000FFFFFFFFFF000

KERNEL_PTE_FLAGS = PTE_VALID | PTE_WRITE | PTE_ACCESSED | PTE_DIRTY | PTE_GLOBAL | PTE_NX

# One page of zeros to slice from: zero-filling a pool block or a recycled frame copies
# from here instead of building a fresh bytes object each time.
ZERO_PAGE = memoryview(bytes(PAGE_SIZE))
_ZERO_BYTES = bytes(PAGE_SIZE)  # bytes == bytes is a memcmp; a memoryview compares item by item


class MemoryAccessError(Exception):
    """Raised when an address is not mapped; carries the faulting address."""

    def __init__(self, address: int, message: str | None = None) -> None:
        self.address = address
        super().__init__(message or f"Memory access error at {address:#018x}")


def PAGE_ALIGN(va: int) -> int:
    return va & ~PAGE_MASK


def BYTE_OFFSET(va: int) -> int:
    return va & PAGE_MASK


def ADDRESS_AND_SIZE_TO_SPAN_PAGES(va: int, size: int) -> int:
    if size == 0:
        return 0
    return ((va & PAGE_MASK) + size + PAGE_MASK) >> PAGE_SHIFT


@dataclass(slots=True)
class PfnEntry:
    """One row of the PFN database (what `!pfn` shows)."""

    pfn: int
    state: str = "Free"  # Free, Active, Modified
    share_count: int = 0
    reference_count: int = 0
    lock_count: int = 0  # MmProbeAndLockPages references
    pte_address: int = 0
    owner: str = ""  # pool, cache, nic ...
    color: int = 0


class _NeverUsedFrame:
    """The PFN row every frame shares until it is first allocated or looked at (`entry`).

    Read-only: writing to it would change every untouched frame at once, so it refuses."""

    __slots__ = ()
    state = "Free"
    share_count = reference_count = lock_count = pte_address = 0
    owner = ""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"PFN row not materialised: use PhysicalMemory.entry() to change {name}")


NEVER_USED_FRAME = _NeverUsedFrame()

# allocate_zeroed clears a recycled run of up to this many frames (1 MiB) with one slice of this
# buffer (a fresh bytes(n) per run costs half as much again; calloc'd, it takes no resident memory).
ZERO_RUN_PAGES = 256
_ZERO_RUN = memoryview(bytes(ZERO_RUN_PAGES << PAGE_SHIFT))


def _outside(first: int, base: int, end: int) -> MemoryAccessError:
    """The error for a run of frames from `first` not all in physical memory [base, end)."""
    pfn = first if first < base else max(first, end)  # the run's first frame outside
    return MemoryAccessError(pfn << PAGE_SHIFT, f"PFN {pfn:x} is not in physical memory")


class PhysicalMemory:
    """Page frames over one lazily backed mapping, handed out deterministically (lowest free first in runs)."""

    def __init__(self, page_count: int, base_pfn: int) -> None:
        self.page_count = page_count
        self.base_pfn = base_pfn
        self.end_pfn = base_pfn + page_count  # the first frame past physical memory
        # Anonymous, private, zero-filled on first touch: costs resident memory only where written.
        if hasattr(mmap, "MAP_ANONYMOUS"):
            self.data = mmap.mmap(-1, page_count * PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        else:  # Windows: an anonymous section, committed but made resident only when touched
            self.data = mmap.mmap(-1, page_count * PAGE_SIZE)
        self.view = memoryview(self.data)
        # The PFN database: rows materialise on first allocation (see _NeverUsedFrame).
        self.pfns: list[PfnEntry] = [NEVER_USED_FRAME] * page_count  # type: ignore[list-item]
        self._bump = 0  # frames below this index have been handed out at least once
        self._free: list[int] = []  # recycled frame indexes, reused LIFO
        # Free frame indexes that read as zeros since discard() gave their memory back to the host:
        # allocate_zeroed need not clear them (they leave this set when handed out again).
        self._zero_free: set[int] = set()
        self._top = page_count  # frames at and above this index belong to kernel stacks (see allocate_top)
        self._top_free: list[int] = []  # kernel-stack frames given back, reused by the next stack

    def allocate(self, count: int, owner: str) -> list[int]:
        """Allocate `count` frames; contiguous from the bump region when possible."""
        return self._allocate(count, owner)[0]

    def allocate_zeroed(self, count: int, owner: str) -> list[int]:
        """Allocate `count` frames whose bytes are all zero (what a fresh big-pool page must be).

        A frame never handed out before is still zero (the mapping starts zeroed and
        nothing writes a frame nobody owns), so only recycled frames are cleared, as
        Windows takes already-zeroed pages from its zeroed page list.  So are frames discard()
        gave back to the host (they read as zeros): clearing them would only fault them in."""
        pfns, dirty = self._allocate(count, owner)
        if dirty:
            view = self.view
            base = self.base_pfn
            n = len(dirty)
            # dirty ascends without repeats (_allocate sorts the frames it takes, and a frame is on
            # the free list once: its owner frees it once), so its ends tell a run of frames.
            if 1 < n <= ZERO_RUN_PAGES and dirty[-1] - dirty[0] == n - 1:
                start = (dirty[0] - base) << PAGE_SHIFT  # one run of frames (a recycled block): one clear
                view[start:start + (n << PAGE_SHIFT)] = _ZERO_RUN[:n << PAGE_SHIFT]
                return pfns
            for pfn in dirty:
                start = (pfn - base) << PAGE_SHIFT
                view[start:start + PAGE_SIZE] = ZERO_PAGE
        return pfns

    def _allocate(self, count: int, owner: str) -> tuple[list[int], list[int]]:
        """The frames, and those of them that may hold old bytes (recycled, and not known to read
        as zeros since a discard); fresh frames hold none."""
        if count <= 0:
            return [], []
        recycled = True
        free = self._free
        if count == 1 and free:
            indexes = [free.pop()]
        elif len(free) >= count:
            # Freed frames first, as Mm takes pages from its free and zeroed lists before any it
            # never used: otherwise a run allocated and freed per request (a 16 KB socket buffer)
            # would walk the bump region through all of memory, materialising a PFN row and a
            # free-list entry for every frame on the way.  The most recently freed `count` frames,
            # in ascending order: a run freed together comes back as the same contiguous run.
            indexes = sorted(free[-count:])
            del free[-count:]
        elif self._bump + count <= self._top:
            indexes = list(range(self._bump, self._bump + count))
            self._bump += count
            recycled = False
        else:
            raise MemoryError("emulated physical memory exhausted")
        pfns = self._activate(indexes, owner)
        if not recycled:
            return pfns, []
        return pfns, self._dirty_of(indexes, pfns)

    def _dirty_of(self, indexes: list[int], pfns: list[int]) -> list[int]:
        """Of recycled frames just handed out, those not known to read as zeros (see discard); the
        others stop being known zero, as their new owner may write them."""
        zero = self._zero_free
        if not zero:
            return pfns
        known = zero.intersection(indexes)
        if not known:
            return pfns
        zero.difference_update(known)
        # Still check them (reading a discarded page maps the host's zero page: no memory, no
        # write): a stale MDL or view can write a frame while it is free, and only Linux refills
        # a discarded private page with zeros (elsewhere MADV_DONTNEED is a hint).  Old bytes
        # must never reach the next owner of a "zeroed" block.
        data = self.data
        known = {i for i in known if data[i << PAGE_SHIFT:(i + 1) << PAGE_SHIFT] == _ZERO_BYTES}
        base = self.base_pfn
        return [pfn for pfn in pfns if pfn - base not in known]

    def _activate(self, indexes: list[int], owner: str) -> list[int]:
        """Mark frames (by index) Active for `owner`, building a PFN row on first use; their PFNs."""
        pfns = self.pfns
        base = self.base_pfn
        for i in indexes:
            entry = pfns[i]
            if entry is NEVER_USED_FRAME:
                entry = pfns[i] = PfnEntry(base + i, color=i & 0x3F)
            entry.state = "Active"
            entry.share_count = entry.reference_count = 1
            entry.owner = owner
        return [base + i for i in indexes]

    def allocate_top(self, count: int, owner: str) -> list[int]:
        """Frames from the top of memory down, kept apart from the bump region: kernel stacks.

        Threads come and go with connections; taking their stacks from their own end of
        memory (and reusing only each other's frames) leaves every other allocation's PFN
        exactly where it would be without them."""
        top_free = self._top_free
        if count <= len(top_free):  # the usual case (a kernel stack freed before): no call per page
            indexes = top_free[:-count - 1:-1]  # popped one by one, the last freed first
            del top_free[-count:]
            return self._activate(indexes, owner)
        out = []
        for _ in range(count):
            if self._top_free:
                i = self._top_free.pop()
            elif self._top - 1 >= self._bump:
                self._top -= 1
                i = self._top
            else:
                self.free_top_run(out)  # all or nothing: the frames taken so far go back
                raise MemoryError("emulated physical memory exhausted")
            entry = self.pfns[i]
            if entry is NEVER_USED_FRAME:
                entry = self.pfns[i] = PfnEntry(self.base_pfn + i, color=i & 0x3F)
            entry.state = "Active"
            entry.share_count = entry.reference_count = 1
            entry.owner = owner
            out.append(self.base_pfn + i)
        return out

    def free_top(self, pfn: int) -> None:
        """Give back a kernel-stack frame (zeroed, for the next stack)."""
        i = pfn - self.base_pfn
        entry = self.pfns[i]
        entry.state = "Free"
        entry.share_count = entry.reference_count = 0
        entry.owner = ""
        self.view[i << PAGE_SHIFT:(i + 1) << PAGE_SHIFT] = ZERO_PAGE
        self._top_free.append(i)

    def free_top_run(self, pfns: list[int]) -> None:
        """`free_top` for each frame of a run, in order (a kernel stack's pages), in one call."""
        base = self.base_pfn
        rows = self.pfns
        view = self.view
        top_free = self._top_free
        for pfn in pfns:
            i = pfn - base
            entry = rows[i]
            entry.state = "Free"
            entry.share_count = entry.reference_count = 0
            entry.owner = ""
            view[i << PAGE_SHIFT:(i + 1) << PAGE_SHIFT] = ZERO_PAGE
            top_free += (i,)

    def free(self, pfn: int) -> None:
        i = pfn - self.base_pfn
        entry = self.pfns[i]
        entry.state = "Free"
        entry.share_count = entry.reference_count = 0
        entry.owner = ""
        entry.pte_address = 0
        self._free.append(i)

    def free_run(self, pfns: list[int]) -> None:
        """`free` for each frame of a run, in order (a big pool block's pages), in one call."""
        base = self.base_pfn
        rows = self.pfns
        indexes = [pfn - base for pfn in pfns]
        for i in indexes:
            entry = rows[i]
            entry.state = "Free"
            entry.share_count = entry.reference_count = 0
            entry.owner = ""
            entry.pte_address = 0
        self._free += indexes

    def discard(self, pfns: list[int]) -> None:
        """Give the host back the memory behind free frames (madvise MADV_DONTNEED): they read as
        zeros from now on, as pages the zero page thread has cleared, and cost no resident memory
        until written again.  For whole freed runs (big pool), whose next owner zeroes them anyway."""
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        base = self.base_pfn
        data = self.data
        i, n = 0, len(pfns)
        while i < n:
            start = pfns[i]
            run = 1
            while i + run < n and pfns[i + run] == start + run:
                run += 1
            data.madvise(mmap.MADV_DONTNEED, (start - base) << PAGE_SHIFT, run << PAGE_SHIFT)
            i += run
        self._zero_free.update([pfn - base for pfn in pfns])

    def entry(self, pfn: int) -> PfnEntry:
        i = pfn - self.base_pfn
        if not 0 <= i < self.page_count:
            raise MemoryAccessError(pfn << PAGE_SHIFT, f"PFN {pfn:x} is not in physical memory")
        entry = self.pfns[i]
        if entry is NEVER_USED_FRAME:
            entry = self.pfns[i] = PfnEntry(pfn, color=i & 0x3F)
        return entry

    def entries(self, pfns: list[int]) -> list[PfnEntry]:
        """`entry` for each PFN of a run (an MDL's pages), in one call."""
        base = self.base_pfn
        count = self.page_count
        rows = self.pfns
        out = [rows[pfn - base] if 0 <= pfn - base < count else None for pfn in pfns]
        for entry in out:
            if entry is None or entry is NEVER_USED_FRAME:  # out of range, or a row not built yet
                return [self.entry(pfn) for pfn in pfns]  # (raises for the first PFN out of range)
        return out

    def frame(self, pfn: int) -> memoryview:
        start = (pfn - self.base_pfn) << PAGE_SHIFT
        return self.view[start:start + PAGE_SIZE]

    def frames_view(self, pfns: list[int], offset: int, length: int) -> list[memoryview]:
        """Views over `length` bytes starting `offset` into the concatenation of `pfns`.

        Runs of consecutive frames collapse into one memoryview: no byte is copied.  A frame
        outside physical memory raises MemoryAccessError (a slice would come back short or wrap).
        """
        if length <= 0:
            return []
        page = offset >> PAGE_SHIFT
        within = offset & PAGE_MASK
        base = self.base_pfn
        end = self.end_pfn
        view = self.view
        n = len(pfns)
        if within + length <= PAGE_SIZE and page < n:  # inside one page: the usual case for a frame
            pfn = pfns[page]
            if not base <= pfn < end:
                raise _outside(pfn, base, end)
            start = ((pfn - base) << PAGE_SHIFT) + within
            return [view[start:start + length]]
        need = (within + length + PAGE_MASK) >> PAGE_SHIFT
        if page + need <= n:  # one run of consecutive frames (a locked buffer, usually): checked in C
            first = pfns[page]
            if pfns[page + need - 1] == first + need - 1 and pfns[page:page + need] == list(range(first, first + need)):
                if not base <= first <= end - need:
                    raise _outside(first, base, end)
                start = ((first - base) << PAGE_SHIFT) + within
                return [view[start:start + length]]
        out: list[memoryview] = []
        while length > 0:
            if page >= n:
                raise MemoryAccessError(0, "view runs past the end of the page list")
            run_start = pfns[page]
            run_pages = 1
            while page + run_pages < n and pfns[page + run_pages] == run_start + run_pages:
                run_pages += 1
            avail = run_pages * PAGE_SIZE - within
            take = avail if avail < length else length
            if not base <= run_start <= end - ((within + take + PAGE_MASK) >> PAGE_SHIFT):
                raise _outside(run_start, base, end)
            start = ((run_start - base) << PAGE_SHIFT) + within
            out.append(view[start:start + take])
            length -= take
            page += run_pages
            within = 0
        return out


# The x64 page-table self-map: one PML4 entry (the "self-map index") points back at the PML4,
# so the four levels of paging structures appear in virtual memory at fixed offsets from
# PTE_BASE = 0xFFFF000000000000 | index << 39.  Windows 10 1607 and later randomise the index
# at boot (before: 0x1ED, PTE_BASE 0xFFFFF68000000000).
CLASSIC_SELF_MAP_INDEX = 0x1ED
TABLE_ENTRY_FLAGS = PTE_VALID | PTE_WRITE | PTE_ACCESSED | PTE_DIRTY  # a paging-structure entry: ---DA--KWEV
_VA48 = (1 << 48) - 1


def _canonical(va48: int) -> int:
    return va48 | 0xFFFF000000000000 if va48 >> 47 else va48


class AddressSpace:
    """The kernel's virtual address space: page tables plus the regions carved from it.

    The PTEs live in a dict (one lookup per translation).  The paging structures above them
    (PML4, PDPT, PD and PT pages) are derived from that dict when something looks at them
    through the self-map (`!pte`, `dq` of a PTE address), so they cost nothing on the data
    path; their page frames are numbered from `TABLE_PFN_BASE`, above emulated RAM.
    """

    TABLE_PFN_BASE = 0x7F00000  # paging-structure pages are not carved from emulated RAM

    def __init__(self, phys: PhysicalMemory, self_map_index: int = CLASSIC_SELF_MAP_INDEX) -> None:
        self.phys = phys
        self.ptes: dict[int, int] = {}  # virtual page number -> PTE value
        self._struct_pages: dict[int, dict] = {}  # vpn -> {id: structure} to flush before a raw read
        self.self_map_index = self_map_index
        self.pte_base = 0xFFFF000000000000 | (self_map_index << 39)
        self.pde_base = self.pte_base | (self_map_index << 30)
        self.ppe_base = self.pde_base | (self_map_index << 21)
        self.pxe_base = self.ppe_base | (self_map_index << 12)

    # -- mapping ----------------------------------------------------------
    def map_page(self, va: int, pfn: int, flags: int = KERNEL_PTE_FLAGS) -> None:
        vpn = va >> PAGE_SHIFT
        self.ptes[vpn] = (pfn << PAGE_SHIFT) | flags
        self.phys.entry(pfn).pte_address = self.pte_address(va)

    def unmap_page(self, va: int) -> int:
        return self.ptes.pop(va >> PAGE_SHIFT) if (va >> PAGE_SHIFT) in self.ptes else 0

    def map_pages(self, va: int, pfns: list[int], flags: int = KERNEL_PTE_FLAGS) -> None:
        """map_page for a run of pages from `va` (a big pool block, a kernel stack) in one loop."""
        ptes = self.ptes
        phys = self.phys
        rows = phys.pfns
        base = phys.base_pfn
        vpn = va >> PAGE_SHIFT
        pte_address = self.pte_base + (((va & _VA48) >> 12) << 3)
        for pfn in pfns:
            ptes[vpn] = (pfn << PAGE_SHIFT) | flags
            entry = rows[pfn - base]
            if entry is NEVER_USED_FRAME:
                entry = phys.entry(pfn)
            entry.pte_address = pte_address
            vpn += 1
            pte_address += 8

    def unmap_pages(self, va: int, count: int) -> list[int]:
        """Unmap `count` pages from `va`; the frames that were behind them (all must be mapped)."""
        ptes = self.ptes
        vpns = range(va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + count)
        try:  # subscripts, then deletes: no method call per page
            pfns = [(ptes[vpn] & PFN_MASK) >> PAGE_SHIFT for vpn in vpns]
        except KeyError as missing:
            for vpn in vpns:  # the pages before the hole go, as before
                if vpn == missing.args[0]:
                    break
                del ptes[vpn]
            raise MemoryAccessError(missing.args[0] << PAGE_SHIFT) from None
        for vpn in vpns:
            del ptes[vpn]
        return pfns

    def is_mapped(self, va: int) -> bool:
        return (va >> PAGE_SHIFT) in self.ptes or (self.in_self_map(va) and self.pte(va) & PTE_VALID != 0)

    def pte(self, va: int) -> int:
        """The PTE mapping `va`; for a page of the self-map, the entry that maps that paging
        structure (which is how the recursive PML4 entry makes them appear)."""
        return self.table_entry(0, va)

    # -- the self-map: MiGetPteAddress and friends ----------------------------
    def pte_address(self, va: int) -> int:
        return self.pte_base + (((va & _VA48) >> 12) << 3)

    def pde_address(self, va: int) -> int:
        return self.pde_base + (((va & _VA48) >> 21) << 3)

    def ppe_address(self, va: int) -> int:
        return self.ppe_base + (((va & _VA48) >> 30) << 3)

    def pxe_address(self, va: int) -> int:
        return self.pxe_base + (((va & _VA48) >> 39) << 3)

    def in_self_map(self, va: int) -> bool:
        return (va & _VA48) >> 39 == self.self_map_index and va >> 48 == 0xFFFF

    def table_entry(self, level: int, va: int) -> int:
        """The entry at `level` (0 PTE, 1 PDE, 2 PPE, 3 PXE) on the walk for `va`.

        An entry above the PTEs is present when anything below it is mapped; the self-map
        index's entries lead back into the paging structures themselves (the PML4 maps itself).
        """
        v = va & _VA48
        if v >> 39 == self.self_map_index and va >> 48 == 0xFFFF:
            if level == 3:  # the self-map PML4 entry: the PML4 page itself
                return (self._table_pfn(4, 0) << PAGE_SHIFT) | TABLE_ENTRY_FLAGS | PTE_NX
            # Through the recursive entry, level L of a self-map address is level L+1 of the VA it maps.
            return self.table_entry(level + 1, _canonical((v << 9) & _VA48))
        if level == 0:
            return self.ptes.get(_canonical(v) >> PAGE_SHIFT, 0)
        shift = 9 * level  # region of virtual pages one table at this level maps
        region = v >> (PAGE_SHIFT + shift)
        if region not in self._mapped_regions(level):
            return 0
        return (self._table_pfn(level, region) << PAGE_SHIFT) | TABLE_ENTRY_FLAGS

    def _mapped_regions(self, level: int) -> set[int]:
        shift = 9 * level
        return {(vpn & 0xFFFFFFFFF) >> shift for vpn in self.ptes}

    def _table_pfn(self, level: int, region: int) -> int:
        """A stable frame number for the page table at `level` that maps `region`."""
        return self.TABLE_PFN_BASE + (zlib.crc32(f"{level}:{region:x}".encode()) & 0xFFFFF) * 4 + level % 4

    def read_self_map(self, va: int, length: int) -> bytes:
        """Bytes of the paging structures as the self-map shows them (debugger reads)."""
        first = va & ~7
        out = bytearray()
        for a in range(first, va + length, 8):
            n = ((a & _VA48) - (self.pte_base & _VA48)) >> 3  # index of the PTE at `a`
            out += self.pte(_canonical(n << PAGE_SHIFT)).to_bytes(8, "little")
        return bytes(out[va - first:va - first + length])

    def translate(self, va: int) -> int:
        """Virtual to physical page frame number; MemoryAccessError when not mapped."""
        pte = self.ptes.get(va >> PAGE_SHIFT)
        if pte is None:
            raise MemoryAccessError(va)
        return (pte & PFN_MASK) >> PAGE_SHIFT

    def pfns_for(self, va: int, length: int) -> list[int]:
        if length == 0:
            return []
        first = va >> PAGE_SHIFT
        # Look every page up at C speed, then check for a hole once (buffers are tens of pages).
        entries = list(map(self.ptes.get, range(first, (va + length + PAGE_MASK) >> PAGE_SHIFT)))
        if None in entries:
            vpn = first + entries.index(None)
            raise MemoryAccessError(max(va, vpn << PAGE_SHIFT))  # the first byte that faults
        return [(pte & PFN_MASK) >> PAGE_SHIFT for pte in entries]

    def span(self, va: int, length: int) -> memoryview:
        """One writable view of [va, va+length) when it lies inside one page (a pool block,
        a pool header): a single PTE lookup instead of the general `views` walk."""
        within = va & PAGE_MASK
        if length <= 0 or within + length > PAGE_SIZE:
            raise ValueError(f"span {va:#x}+{length:#x} is not inside one page")
        pte = self.ptes.get(va >> PAGE_SHIFT)
        if pte is None:
            raise MemoryAccessError(va)
        start = ((((pte & PFN_MASK) >> PAGE_SHIFT) - self.phys.base_pfn) << PAGE_SHIFT) + within
        return self.phys.view[start:start + length]

    # -- structures that live in memory ------------------------------------
    def register_struct(self, obj) -> None:
        """Remember an object whose fields must be written out before `db` reads its bytes."""
        address = obj.address
        first = address >> PAGE_SHIFT
        last = (address + obj.struct_size - 1) >> PAGE_SHIFT
        pages = self._struct_pages
        key = id(obj)
        if first == last:  # the usual case (an IRP, an MDL, an NBL): one page, no loop
            try:
                pages[first][key] = obj
            except KeyError:
                pages[first] = {key: obj}
            return
        for vpn in range(first, last + 1):
            objs = pages.get(vpn)
            if objs is None:
                pages[vpn] = {key: obj}
            else:
                objs[key] = obj

    def unregister_struct(self, obj) -> None:
        address = obj.address
        first = address >> PAGE_SHIFT
        last = (address + obj.struct_size - 1) >> PAGE_SHIFT
        pages = self._struct_pages
        key = id(obj)
        if first == last:  # the usual case, as in register_struct
            objs = pages[first] if first in pages else None
            if objs is not None and key in objs:
                del objs[key]
                if not objs:
                    del pages[first]
            return
        for vpn in range(first, last + 1):
            objs = pages.get(vpn)
            if objs is not None and key in objs:
                del objs[key]  # by identity, O(1): a page can hold many live structures
                if not objs:
                    del pages[vpn]

    def _flush_structs(self, va: int, length: int) -> None:
        """Write out the live structures that overlap [va, va+length): only those, not every
        structure sharing the page (a driver reading 8 bytes of its own buffer must not
        re-serialise the IRPs and NBLs beside it)."""
        pages = self._struct_pages
        if not pages:
            return
        end = va + max(length, 1)
        flushed: set[int] = set()
        for vpn in range(va >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
            objs = pages.get(vpn)
            if not objs:
                continue
            for key, obj in tuple(objs.items()):
                if key not in flushed and obj.address < end and obj.address + obj.struct_size > va:
                    flushed.add(key)  # a structure across two pages is written once
                    obj.flush()

    # -- access -------------------------------------------------------------
    def views(self, va: int, length: int) -> list[memoryview]:
        """Zero-copy views of [va, va+length), one per physically contiguous run."""
        if length <= 0:
            return []
        within = va & PAGE_MASK
        if within + length <= PAGE_SIZE:  # inside one page, the common case: one PTE lookup
            pte = self.ptes.get(va >> PAGE_SHIFT)
            if pte is None:
                raise MemoryAccessError(va)
            start = ((((pte & PFN_MASK) >> PAGE_SHIFT) - self.phys.base_pfn) << PAGE_SHIFT) + within
            return [self.phys.view[start:start + length]]
        pfns = self.pfns_for(va, length)
        return self.phys.frames_view(pfns, within, length)

    def read(self, va: int, length: int) -> bytes:
        """A copy of the bytes (for the debugger and for tests); flushes live structures first."""
        if self.in_self_map(va) and self.in_self_map(va + length - 1):
            return self.read_self_map(va, length)
        self._flush_structs(va, length)
        parts = self.views(va, length)
        return parts[0].tobytes() if len(parts) == 1 else b"".join(parts)

    def read_partial(self, va: int, length: int) -> list[int | None]:
        """Byte values with None where a page is not mapped (WinDbg prints `??`)."""
        out: list[int | None] = []
        pos = va
        end = va + length
        while pos < end:
            page_end = min(end, PAGE_ALIGN(pos) + PAGE_SIZE)
            n = page_end - pos
            if (pos >> PAGE_SHIFT) in self.ptes or (self.in_self_map(pos) and self.pte(pos) & PTE_VALID):
                out.extend(self.read(pos, n))
            else:
                out.extend([None] * n)
            pos = page_end
        return out

    def write(self, va: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        within = va & PAGE_MASK
        if 0 < n and within + n <= PAGE_SIZE:  # inside one page: one PTE lookup, one slice copy
            pte = self.ptes.get(va >> PAGE_SHIFT)
            if pte is None:
                raise MemoryAccessError(va)
            start = ((((pte & PFN_MASK) >> PAGE_SHIFT) - self.phys.base_pfn) << PAGE_SHIFT) + within
            self.phys.view[start:start + n] = data
            return
        pos = 0
        for view in self.views(va, n):
            n = len(view)
            view[:] = data[pos:pos + n]
            pos += n

    def read_u64(self, va: int) -> int:
        return int.from_bytes(self.read(va, 8), "little")

    def read_u32(self, va: int) -> int:
        return int.from_bytes(self.read(va, 4), "little")

    def write_u64(self, va: int, value: int) -> None:
        self.write(va, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))


class VaRegion:
    """A bump allocator of virtual pages inside one region of the address space."""

    def __init__(self, name: str, base: int, size: int) -> None:
        self.name = name
        self.base = base
        self.size = size
        self._next = base
        self._free_runs: dict[int, list[int]] = {}  # page count -> free bases

    def reserve(self, pages: int) -> int:
        runs = self._free_runs.get(pages)
        if runs:
            return runs.pop()
        va = self._next
        if va + pages * PAGE_SIZE > self.base + self.size:
            raise MemoryError(f"{self.name} virtual region exhausted")
        self._next += pages * PAGE_SIZE
        return va

    def release(self, va: int, pages: int) -> None:
        self._free_runs.setdefault(pages, []).append(va)

    def contains(self, va: int) -> bool:
        return self.base <= va < self.base + self.size
