"""Memory descriptor lists, as in wdm.h.

An MDL is a 0x30-byte header in nonpaged pool followed by its PFN array; the
Python `Mdl` object mirrors the fields and writes them through to emulated
memory on demand (so `dt _MDL` and `db` show real bytes).  `mdl_chain_views`
gives zero-copy memoryviews over the pages an MDL chain describes — the basis
of WSK_BUF and NET_BUFFER data access.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Any, Iterator

from . import bugcheck as bc
from .events import MdlBuilt, MdlFreed
from .kernel import Kernel
from .layouts import LAYOUTS
from .memory import ADDRESS_AND_SIZE_TO_SPAN_PAGES, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, MemoryAccessError
from .pool import NonPagedPoolNx, is_paged
from .symbols import _current, current_kernel

MDL_MAPPED_TO_SYSTEM_VA = 0x0001
MDL_PAGES_LOCKED = 0x0002
MDL_SOURCE_IS_NONPAGED_POOL = 0x0004
MDL_ALLOCATED_FIXED_SIZE = 0x0008
MDL_PARTIAL = 0x0010
MDL_PARTIAL_HAS_BEEN_MAPPED = 0x0020
MDL_IO_PAGE_READ = 0x0040
MDL_WRITE_OPERATION = 0x0080
MDL_PARENT_MAPPED_SYSTEM_VA = 0x0100
MDL_FREE_EXTRA_PTES = 0x0200
MDL_DESCRIBES_AWE = 0x0400
MDL_IO_SPACE = 0x0800
MDL_NETWORK_HEADER = 0x1000
MDL_MAPPING_CAN_FAIL = 0x2000
MDL_PAGE_CONTENTS_INVARIANT = 0x4000
MDL_INTERNAL = 0x8000

MDL_FLAG_NAMES = {
    MDL_MAPPED_TO_SYSTEM_VA: "MAPPED_TO_SYSTEM_VA", MDL_PAGES_LOCKED: "PAGES_LOCKED",
    MDL_SOURCE_IS_NONPAGED_POOL: "SOURCE_IS_NONPAGED_POOL", MDL_ALLOCATED_FIXED_SIZE: "ALLOCATED_FIXED_SIZE",
    MDL_PARTIAL: "PARTIAL", MDL_PARTIAL_HAS_BEEN_MAPPED: "PARTIAL_HAS_BEEN_MAPPED",
    MDL_IO_PAGE_READ: "IO_PAGE_READ", MDL_WRITE_OPERATION: "WRITE_OPERATION",
    MDL_PARENT_MAPPED_SYSTEM_VA: "PARENT_MAPPED_SYSTEM_VA", MDL_FREE_EXTRA_PTES: "FREE_EXTRA_PTES",
    MDL_DESCRIBES_AWE: "DESCRIBES_AWE", MDL_IO_SPACE: "IO_SPACE", MDL_NETWORK_HEADER: "NETWORK_HEADER",
    MDL_MAPPING_CAN_FAIL: "MAPPING_CAN_FAIL", MDL_PAGE_CONTENTS_INVARIANT: "PAGE_CONTENTS_INVARIANT",
    MDL_INTERNAL: "INTERNAL",
}

MDL_HEADER_SIZE = 0x30
MDL_TAG = "Mdl "

# LOCK_OPERATION
IoReadAccess = 0
IoWriteAccess = 1
IoModifyAccess = 2

# MM_PAGE_PRIORITY
LowPagePriority = 0
NormalPagePriority = 16
HighPagePriority = 32
MdlMappingNoExecute = 0x40000000


def mdl_flag_names(flags: int) -> list[str]:
    return [name for bit, name in MDL_FLAG_NAMES.items() if flags & bit]


class Mdl:
    """A memory descriptor list header plus its PFN array, at a pool address."""

    def __init__(self, k: Kernel, address: int, va: int, length: int, pages: int) -> None:
        self.kernel = k
        self.address = address
        self.next: Mdl | None = None
        self.flags = 0
        self.process = 0
        self.mapped_system_va = 0
        self.start_va = va & ~PAGE_MASK
        self.byte_offset = va & PAGE_MASK
        self.byte_count = length
        self.capacity = pages
        self.pfns: list[int] = []
        self.struct_size = MDL_HEADER_SIZE + 8 * pages
        self.size = self.struct_size
        self.freed = False
        self.owner = ""
        self.map_va = 0  # start of a system-PTE mapping made by MmMapLockedPages

    # WDK accessors
    @property
    def virtual_address(self) -> int:
        return self.start_va + self.byte_offset

    def flush(self) -> None:
        values = {
            "Next": self.next.address if self.next else 0, "Size": self.size, "MdlFlags": self.flags,
            "Process": self.process, "MappedSystemVa": self.mapped_system_va, "StartVa": self.start_va,
            "ByteCount": self.byte_count, "ByteOffset": self.byte_offset,
        }
        data = LAYOUTS["_MDL"].pack(values)
        pfns = b"".join(p.to_bytes(8, "little") for p in self.pfns[:self.capacity])
        self.kernel.mem.write(self.address, data + pfns)

    def chain(self) -> Iterator["Mdl"]:
        m: Mdl | None = self
        while m is not None:
            yield m
            m = m.next

    def views(self, offset: int = 0, length: int | None = None) -> list[memoryview]:
        """Zero-copy views of this one MDL's bytes."""
        count = self.byte_count
        if length is None:
            length = count - offset
        if offset < 0 or length < 0 or offset + length > count:
            raise ValueError(f"range {offset:#x}+{length:#x} outside MDL of {count:#x} bytes")
        pfns = self.pfns
        byte_offset = self.byte_offset
        # ADDRESS_AND_SIZE_TO_SPAN_PAGES(virtual_address, byte_count), inlined (start_va is page aligned)
        if count and len(pfns) < (byte_offset + count + PAGE_MASK) >> PAGE_SHIFT:
            raise MemoryAccessError(self.virtual_address, f"MDL {self.address:x} has no PFN array (not built or locked)")
        return self.kernel.phys.frames_view(pfns, byte_offset + offset, length)

    def __repr__(self) -> str:
        return f"<Mdl {self.address:x} va={self.virtual_address:x} len={self.byte_count:#x} flags={self.flags:#x}>"


def mdl_chain_length(mdl: Mdl | None) -> int:
    total = 0
    while mdl is not None:
        total += mdl.byte_count
        mdl = mdl.next
    return total


def mdl_chain_views(mdl: Mdl | None, offset: int = 0, length: int | None = None) -> list[memoryview]:
    """Zero-copy views over `length` bytes of an MDL chain starting `offset` bytes in.

    Raises ValueError when the range is not inside the chain.
    """
    if offset < 0:
        raise ValueError("negative offset")
    if mdl is not None and mdl.next is None:  # one MDL: its own range check applies
        if length is None:
            length = mdl.byte_count - offset
        if length < 0 or offset + length > mdl.byte_count:
            raise ValueError(f"range {offset:#x}+{length:#x} outside MDL chain of {mdl.byte_count:#x} bytes")
        return mdl.views(offset, length) if length else []
    total = mdl_chain_length(mdl)
    if length is None:
        length = total - offset
    if length < 0 or offset + length > total:
        raise ValueError(f"range {offset:#x}+{length:#x} outside MDL chain of {total:#x} bytes")
    out: list[memoryview] = []
    m = mdl
    while m is not None and length > 0:
        if offset >= m.byte_count:
            offset -= m.byte_count
            m = m.next
            continue
        take = min(m.byte_count - offset, length)
        out.extend(m.views(offset, take))
        length -= take
        offset = 0
        m = m.next
    return out


def mdl_chain_physical_addresses(mdl: Mdl, offset: int, views: list[memoryview]) -> list[int]:
    """Where each of `views` begins in physical memory, given that they are mdl_chain_views(mdl, offset, ...).

    Each view is one physically contiguous run inside one MDL, so its address is the PFN array
    entry of its first page, shifted, plus the byte within that page (what MmGetMdlPfnArray
    gives a driver that programs DMA)."""
    # Where each view starts in the chain (summed in C: one run per coalesced segment is a hot loop),
    # then each start becomes an address in place.
    out = list(accumulate(map(len, views[:-1]), initial=offset)) if views else []
    base = 0  # chain offset at which `mdl` begins
    for i, start in enumerate(out):
        start -= base
        while start >= mdl.byte_count:
            start -= mdl.byte_count
            base += mdl.byte_count
            mdl = mdl.next  # type: ignore[assignment]
        at = mdl.byte_offset + start
        out[i] = (mdl.pfns[at >> PAGE_SHIFT] << PAGE_SHIFT) | (at & PAGE_MASK)
    return out


def mdl_over_physical_run(k: Kernel, address: int, length: int) -> Mdl | None:
    """An MDL over `length` physically contiguous bytes at physical `address` (consecutive PFNs),
    or None when there is no nonpaged pool for it.  The pages stay locked by their owner."""
    within = address & PAGE_MASK
    first = address >> PAGE_SHIFT
    pages = ADDRESS_AND_SIZE_TO_SPAN_PAGES(within, length)
    return MmInitializeMdlForPages(k, list(range(first, first + pages)), within, length)


def mdl_chain_bytes(mdl: Mdl | None, offset: int = 0, length: int | None = None) -> bytes:
    """A copy (for tests and the debugger; driver code should use the views)."""
    return b"".join(mdl_chain_views(mdl, offset, length))


# --- the WDK routines --------------------------------------------------------------

def IoAllocateMdl(VirtualAddress: int, Length: int, SecondaryBuffer: bool = False,
                  ChargeQuota: bool = False, Irp: Any = None) -> Mdl | None:
    """Allocate an MDL big enough for the buffer; with an IRP, attach it (primary or chained)."""
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    if Length <= 0 or Length > 0xFFFFFFFF:
        return None
    pages = ADDRESS_AND_SIZE_TO_SPAN_PAGES(VirtualAddress, Length)
    if k.cpu_model is not None:
        k.charge("mdl_build")
    frames = k.frames
    owner = frames[-1][0] if frames else "nt!KiIdleLoop"  # k.caller_symbol(), inlined
    address = k.allocate_pool("mdl", NonPagedPoolNx, MDL_HEADER_SIZE + 8 * pages, MDL_TAG, owner=owner)
    if not address:
        return None  # out of nonpaged pool: NULL, as in Windows
    mdl = Mdl(k, address, VirtualAddress, Length, pages)
    mdl.owner = owner
    k.register_object(mdl)
    if Irp is not None:
        if not SecondaryBuffer or Irp.mdl_address is None:
            Irp.mdl_address = mdl
        else:
            tail = Irp.mdl_address
            while tail.next is not None:
                tail = tail.next
            tail.next = mdl
    if k.bus.subscribers:
        k.publish(MdlBuilt, mdl=address, va=VirtualAddress, length=Length, how="IoAllocateMdl")
    return mdl


def MmInitializeMdlForPages(k: Kernel, pfns: list[int], byte_offset: int, length: int,
                            system_va: int = 0) -> Mdl | None:
    """Kernel-internal: an MDL over known page frames (the cache manager and NIC use this);
    None when there is no nonpaged pool for it."""
    pages = len(pfns)
    address = k.allocate_pool("mdl", NonPagedPoolNx, MDL_HEADER_SIZE + 8 * max(1, pages), MDL_TAG,
                              owner=k.caller_symbol())
    if not address:
        return None
    mdl = Mdl(k, address, system_va if system_va else byte_offset, length, max(1, pages))
    mdl.pfns = list(pfns)
    mdl.flags = MDL_PAGES_LOCKED | MDL_ALLOCATED_FIXED_SIZE
    if system_va:
        mdl.mapped_system_va = system_va
        mdl.flags |= MDL_MAPPED_TO_SYSTEM_VA
    k.register_object(mdl)
    if k.bus.subscribers:
        k.publish(MdlBuilt, mdl=address, va=system_va, length=length, how="MmInitializeMdl")
    return mdl


def MmBuildMdlForNonPagedPool(mdl: Mdl) -> None:
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    va = mdl.virtual_address
    ptype = k.pool.pool_type_of(va)
    if ptype is not None and is_paged(ptype):
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.C4_BUILD_MDL_FOR_PAGED_POOL, k.irql, mdl.address,
                   mdl.flags, detail=f"MmBuildMdlForNonPagedPool on a paged pool buffer at {va:x}")
    mdl.pfns = k.mem.pfns_for(va, mdl.byte_count)
    mdl.flags |= MDL_SOURCE_IS_NONPAGED_POOL
    mdl.mapped_system_va = va
    if k.bus.subscribers:
        k.publish(MdlBuilt, mdl=mdl.address, va=va, length=mdl.byte_count, how="MmBuildMdlForNonPagedPool")


def MmProbeAndLockPages(mdl: Mdl, AccessMode: int = 0, Operation: int = IoWriteAccess) -> None:
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    if mdl.flags & MDL_SOURCE_IS_NONPAGED_POOL:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.C4_PROBE_NONPAGED_MDL, mdl.address, mdl.flags,
                   MDL_SOURCE_IS_NONPAGED_POOL, detail="MmProbeAndLockPages on an MDL built for nonpaged pool")
    va = mdl.virtual_address
    try:
        mdl.pfns = k.mem.pfns_for(va, mdl.byte_count)
    except MemoryAccessError as exc:
        k.bugcheck(bc.PAGE_FAULT_IN_NONPAGED_AREA, exc.address, 0, k.symbol_address(k.caller_symbol()), 0)
    phys = k.phys
    entries, base = phys.pfns, phys.base_pfn  # pfns_for proved every frame is in physical memory
    for pfn in mdl.pfns:
        entries[pfn - base].lock_count += 1
    if k.cpu_model is not None:
        k.charge("probe_lock_page", len(mdl.pfns))
    mdl.flags |= MDL_PAGES_LOCKED
    if Operation != IoReadAccess:
        mdl.flags |= MDL_WRITE_OPERATION


def MmUnlockPages(mdl: Mdl) -> None:
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    if mdl.flags & MDL_PARTIAL:
        # Unlocking would drop lock references the partial MDL's parent holds.
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.C4_UNLOCK_PARTIAL_MDL, mdl.address, mdl.flags,
                   MDL_PARTIAL, detail="MmUnlockPages on a partial MDL")
    if mdl.flags & MDL_SOURCE_IS_NONPAGED_POOL:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.C4_UNLOCK_NONPAGED_POOL_MDL, mdl.address, mdl.flags,
                   0, detail="MmUnlockPages on an MDL built by MmBuildMdlForNonPagedPool")
    if not mdl.flags & MDL_PAGES_LOCKED:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.C4_UNLOCK_NOT_LOCKED, mdl.address, mdl.flags, 0,
                   detail="MmUnlockPages on an MDL whose pages were never locked")
    if mdl.flags & MDL_MAPPED_TO_SYSTEM_VA and mdl.map_va:
        MmUnmapLockedPages(mdl.mapped_system_va, mdl)
    phys = k.phys
    entries, base = phys.pfns, phys.base_pfn
    for pfn in mdl.pfns:
        entry = entries[pfn - base] if 0 <= pfn - base < phys.page_count else phys.entry(pfn)
        if entry.lock_count:
            entry.lock_count -= 1
    mdl.flags &= ~(MDL_PAGES_LOCKED | MDL_WRITE_OPERATION)


def MmGetSystemAddressForMdlSafe(mdl: Mdl, Priority: int = NormalPagePriority) -> int:
    """The system VA of the buffer: existing for nonpaged/mapped MDLs, else a new mapping."""
    if mdl.flags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL):
        return mdl.mapped_system_va
    return MmMapLockedPagesSpecifyCache(mdl)


def MmMapLockedPagesSpecifyCache(mdl: Mdl, AccessMode: int = 0, CacheType: int = 1, RequestedAddress: int = 0,
                                 BugCheckOnFailure: bool = False, Priority: int = NormalPagePriority) -> int:
    k = current_kernel()
    pages = len(mdl.pfns)
    base = k.system_ptes.reserve(pages)
    for i, pfn in enumerate(mdl.pfns):
        k.mem.map_page(base + i * PAGE_SIZE, pfn)
    mdl.map_va = base
    mdl.mapped_system_va = base + mdl.byte_offset
    mdl.flags |= MDL_MAPPED_TO_SYSTEM_VA
    if mdl.flags & MDL_PARTIAL:
        mdl.flags |= MDL_PARTIAL_HAS_BEEN_MAPPED
    return mdl.mapped_system_va


def MmUnmapLockedPages(BaseAddress: int, mdl: Mdl) -> None:
    k = current_kernel()
    if not mdl.map_va:
        return
    pages = len(mdl.pfns)
    for i in range(pages):
        k.mem.unmap_page(mdl.map_va + i * PAGE_SIZE)
    k.system_ptes.release(mdl.map_va, pages)
    mdl.map_va = 0
    mdl.mapped_system_va = 0
    mdl.flags &= ~(MDL_MAPPED_TO_SYSTEM_VA | MDL_PARTIAL_HAS_BEEN_MAPPED)


def IoBuildPartialMdl(SourceMdl: Mdl, TargetMdl: Mdl, VirtualAddress: int, Length: int) -> None:
    """Describe [VirtualAddress, +Length) of SourceMdl's buffer with TargetMdl."""
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    if Length == 0:
        Length = SourceMdl.virtual_address + SourceMdl.byte_count - VirtualAddress
    offset = VirtualAddress - SourceMdl.virtual_address
    if offset < 0 or offset + Length > SourceMdl.byte_count:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.EMU_C4_PARTIAL_MDL_OUT_OF_RANGE, SourceMdl.address,
                   VirtualAddress, Length,
                   detail="IoBuildPartialMdl range outside the source MDL")
    first_page = (SourceMdl.byte_offset + offset) >> PAGE_SHIFT
    pages = ADDRESS_AND_SIZE_TO_SPAN_PAGES(VirtualAddress, Length)
    if pages > TargetMdl.capacity:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.EMU_C4_PARTIAL_MDL_TOO_SMALL, TargetMdl.address,
                   pages, TargetMdl.capacity,
                   detail="IoBuildPartialMdl target MDL too small")
    TargetMdl.start_va = VirtualAddress & ~PAGE_MASK
    TargetMdl.byte_offset = VirtualAddress & PAGE_MASK
    TargetMdl.byte_count = Length
    TargetMdl.pfns = SourceMdl.pfns[first_page:first_page + pages]
    # The partial inherits how the source is addressable, so MmGetSystemAddressForMdlSafe
    # reuses the parent's system address instead of mapping the pages a second time.
    inherited = SourceMdl.flags & (MDL_IO_PAGE_READ | MDL_SOURCE_IS_NONPAGED_POOL | MDL_MAPPED_TO_SYSTEM_VA
                                   | MDL_IO_SPACE)
    TargetMdl.flags = (TargetMdl.flags & MDL_ALLOCATED_FIXED_SIZE) | MDL_PARTIAL | inherited
    TargetMdl.map_va = 0
    TargetMdl.mapped_system_va = 0
    if SourceMdl.flags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL):
        if SourceMdl.flags & MDL_MAPPED_TO_SYSTEM_VA:
            TargetMdl.flags |= MDL_PARENT_MAPPED_SYSTEM_VA
        TargetMdl.mapped_system_va = SourceMdl.mapped_system_va + offset
    if k.bus.subscribers:
        k.publish(MdlBuilt, mdl=TargetMdl.address, va=VirtualAddress, length=Length, how="IoBuildPartialMdl")


def IoFreeMdl(mdl: Mdl) -> None:
    """Free the MDL; the verifier catches MDLs freed with pages still locked or mapped."""
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    if mdl.freed:
        k.bugcheck(bc.BAD_POOL_CALLER, 0x07, 0, 0, mdl.address)
    if mdl.flags & MDL_PAGES_LOCKED and not mdl.flags & (MDL_SOURCE_IS_NONPAGED_POOL | MDL_PARTIAL):
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.EMU_C4_MDL_FREED_LOCKED, mdl.address,
                   len(mdl.pfns), 0, detail="IoFreeMdl on an MDL whose pages are still locked")
    if mdl.map_va:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.C4_MDL_FREED_MAPPED, mdl.address, mdl.flags, 0,
                   detail=f"IoFreeMdl on an MDL that is still mapped at {mdl.mapped_system_va:x}")
    mdl.freed = True
    k.unregister_object(mdl)
    k.pool.free(mdl.address, MDL_TAG)
    if k.bus.subscribers:
        k.publish(MdlFreed, mdl=mdl.address)


def MmGetMdlVirtualAddress(mdl: Mdl) -> int:
    return mdl.virtual_address


def MmGetMdlByteCount(mdl: Mdl) -> int:
    return mdl.byte_count


def MmGetMdlByteOffset(mdl: Mdl) -> int:
    return mdl.byte_offset


def MmGetMdlPfnArray(mdl: Mdl) -> list[int]:
    return mdl.pfns


def copy_to_mdl(dest: Mdl, dest_offset: int, src: list[memoryview] | memoryview | bytes, reason: str) -> int:
    """Copy bytes into an MDL chain (a real copy, so it is counted)."""
    k = _current[-1]  # current_kernel(), inlined: every copying receive comes through here
    chunks = [src] if not isinstance(src, list) else src
    # Where each chunk ends in the copy, summed in C (an RSC unit brings dozens of chunks).
    ends = list(accumulate(map(len, chunks)))
    total = ends[-1] if ends else 0
    views = mdl_chain_views(dest, dest_offset, total)
    if len(views) == 1:  # one run of pages (a locked receive buffer, usually): a slice copy per chunk
        target = views[0]
        if len(chunks) == 1:
            target[:] = chunks[0]
        else:
            for chunk, start, end in zip(chunks, (0, *ends), ends):
                target[start:end] = chunk
        k.copies.count(total, reason)
        return total
    _copy_scattered(views, chunks)
    k.copies.count(total, reason)
    return total


def _copy_scattered(views: list[memoryview], chunks: list) -> None:
    """copy_to_mdl into several runs: each chunk split where a run ends."""
    vi = 0
    vpos = 0
    for chunk in chunks:
        cpos = 0
        clen = len(chunk)
        while cpos < clen:
            v = views[vi]
            n = min(len(v) - vpos, clen - cpos)
            v[vpos:vpos + n] = chunk[cpos:cpos + n]
            vpos += n
            cpos += n
            if vpos == len(v):
                vi += 1
                vpos = 0
