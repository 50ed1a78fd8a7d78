"""The cache manager (nt!Cc*): file contents in cached physical pages.

Each cached file has a *shared cache map*: page frames allocated from the
kernel's PhysicalMemory and mapped at consecutive addresses of the system
cache VA region (``SystemCache``, 0xffff8a00`00000000 and up).  The pages are
filled on first access — that fill is *disk I/O* (counted in
``CacheManager.disk_reads``/``disk_bytes``), never a payload copy.

Two ways out of the cache, as in Windows:

* ``CcCopyRead`` copies into the caller's buffer: a real copy, counted in
  ``kernel.copies`` under ``"CcCopyRead"``.
* ``CcMdlRead`` hands back an MDL chain that describes the cached pages
  themselves (one MDL per 256 KiB view, like a VACB), pages locked and
  referenced: zero copy.  ``CcMdlReadComplete`` drops the references and
  frees the MDLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stack.kernel import (PAGE_SIZE, STATUS_INSUFFICIENT_RESOURCES, IoFreeMdl, Kernel, Mdl, MmUnlockPages, current_kernel,
                          kroutine)
from stack.kernel.mdl import MDL_PAGE_CONTENTS_INVARIANT, MmInitializeMdlForPages, copy_to_mdl
from stack.kernel.memory import PTE_ACCESSED, PTE_GLOBAL, PTE_NX, PTE_VALID, VaRegion

SYSTEM_CACHE_BASE = 0xFFFF8A00_00000000
SYSTEM_CACHE_SIZE = 1 << 36
VACB_MAPPING_GRANULARITY = 256 * 1024  # one MDL of a CcMdlRead chain never spans two views
# Cached file pages are mapped read-only: nobody writes to a read-only volume's cache.
CACHE_PTE_FLAGS = PTE_VALID | PTE_ACCESSED | PTE_GLOBAL | PTE_NX
PFN_OWNER = "cache"


class CacheError(Exception):
    """A cache manager call with arguments that cannot be honoured."""


@dataclass(slots=True)
class SharedCacheMap:
    """The cached pages of one file (what Windows keeps in SHARED_CACHE_MAP + VACBs)."""

    name: str
    file_size: int
    base_va: int = 0  # where the file's first byte is mapped in the system cache
    pfns: list[int] = field(default_factory=list)
    loaded: bool = False
    mdl_reads: int = 0
    copy_reads: int = 0
    outstanding_mdls: int = 0

    @property
    def pages(self) -> int:
        return (self.file_size + PAGE_SIZE - 1) // PAGE_SIZE


class CacheManager:
    """Per-kernel cache state: the system cache region and every shared cache map."""

    def __init__(self, k: Kernel) -> None:
        self.kernel = k
        self.region = VaRegion("SystemCache", SYSTEM_CACHE_BASE, SYSTEM_CACHE_SIZE)
        self.maps: dict[str, SharedCacheMap] = {}
        self.disk_reads = 0  # cache fills (one per file, on first access)
        self.disk_bytes = 0
        self.mdls_outstanding = 0

    @staticmethod
    def of(k: Kernel) -> "CacheManager":
        cc = k.extensions.get("cc")
        if cc is None:
            cc = k.extensions["cc"] = CacheManager(k)
        return cc

    def initialize_cache_map(self, name: str, file_size: int) -> SharedCacheMap:
        scm = self.maps.get(name)
        if scm is None:
            scm = self.maps[name] = SharedCacheMap(name, file_size)
        return scm

    def fill(self, scm: SharedCacheMap, content: bytes) -> bool:
        """Read the file "from disk" into freshly allocated, mapped cache pages; False when
        there are no free pages (the read fails with STATUS_INSUFFICIENT_RESOURCES)."""
        if scm.loaded:
            return True
        if len(content) != scm.file_size:
            raise CacheError(f"{scm.name}: disk returned {len(content)} bytes, expected {scm.file_size}")
        k = self.kernel
        pages = max(1, scm.pages)
        if k.verifier.active and k.verifier.fail(k, "page"):
            return False
        try:
            pfns = k.phys.allocate(pages, PFN_OWNER)
        except MemoryError:
            k.verifier.failed(k, "page")
            return False
        scm.base_va = self.region.reserve(pages)
        scm.pfns = pfns
        phys = k.phys
        for i, pfn in enumerate(scm.pfns):
            k.mem.map_page(scm.base_va + i * PAGE_SIZE, pfn, CACHE_PTE_FLAGS)
            chunk = content[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]
            frame = phys.frame(pfn)
            frame[:len(chunk)] = chunk  # DMA from the disk: device I/O, not a CPU copy
            if len(chunk) < PAGE_SIZE:
                frame[len(chunk):] = bytes(PAGE_SIZE - len(chunk))
        scm.loaded = True
        self.disk_reads += 1
        self.disk_bytes += scm.file_size
        return True

    def purge(self, scm: SharedCacheMap) -> None:
        """Drop a file's pages (volume dismount).  Refused while MDLs still describe them."""
        if scm.outstanding_mdls:
            raise CacheError(f"{scm.name}: {scm.outstanding_mdls} MDL reads not completed")
        k = self.kernel
        if scm.loaded:
            for i, pfn in enumerate(scm.pfns):
                k.mem.unmap_page(scm.base_va + i * PAGE_SIZE)
                k.phys.free(pfn)
            self.region.release(scm.base_va, len(scm.pfns))
        scm.pfns = []
        scm.loaded = False
        self.maps.pop(scm.name, None)

    def purge_all(self) -> None:
        for scm in list(self.maps.values()):
            self.purge(scm)


def _check_range(scm: SharedCacheMap, offset: int, length: int) -> None:
    if not scm.loaded:
        raise CacheError(f"{scm.name}: not cached yet")
    if offset < 0 or length <= 0 or offset + length > scm.file_size:
        raise CacheError(f"{scm.name}: range {offset:#x}+{length:#x} outside a file of {scm.file_size:#x} bytes")


@kroutine("nt")
def CcPurgeCacheSection(SectionObjectPointer: SharedCacheMap, FileOffset: int | None = None, Length: int = 0,
                        Flags: int = 0) -> bool:
    """Drop a file's cached pages (the whole file: the lab never purges a range) so the next read
    fills them again.  FALSE, as in Windows, while any page is locked or described by an
    outstanding MDL read; the shared cache map itself stays, with every file object pointing at it."""
    k = current_kernel()
    scm = SectionObjectPointer
    if scm.outstanding_mdls or (scm.loaded and any(e.lock_count for e in k.phys.entries(scm.pfns))):
        return False
    if scm.loaded:
        cc = CacheManager.of(k)
        for i, pfn in enumerate(scm.pfns):
            k.mem.unmap_page(scm.base_va + i * PAGE_SIZE)
            k.phys.free(pfn)
        cc.region.release(scm.base_va, len(scm.pfns))
    scm.pfns = []
    scm.base_va = 0
    scm.loaded = False
    return True


# --- the nt!Cc* routines -----------------------------------------------------------------

@kroutine("nt")
def CcCopyRead(FileObject: Any, FileOffset: int, Length: int, Wait: bool, Buffer: Mdl | int,
               IoStatus: Any) -> bool:
    """Copy [FileOffset, +Length) of the cached file into Buffer (an MDL chain or a kernel VA)."""
    k = current_kernel()
    scm: SharedCacheMap = FileObject.SectionObjectPointer
    _check_range(scm, FileOffset, Length)
    k.charge("cache_lookup")
    source = k.phys.frames_view(scm.pfns, FileOffset, Length)
    if isinstance(Buffer, Mdl):
        copy_to_mdl(Buffer, 0, source, "CcCopyRead")
    else:
        position = Buffer
        for view in source:
            k.write(position, view)
            position += len(view)
        k.copies.count(Length, "CcCopyRead")
    scm.copy_reads += 1
    IoStatus.Status = 0
    IoStatus.Information = Length
    return True


@kroutine("nt")
def CcMdlRead(FileObject: Any, FileOffset: int, Length: int, IoStatus: Any) -> Mdl | None:
    """An MDL chain over the cached pages of [FileOffset, +Length): no byte is copied.

    One MDL per 256 KiB view; each is PAGES_LOCKED, mapped at its cache
    address, and holds a lock reference on every page it describes until
    CcMdlReadComplete.
    """
    k = current_kernel()
    scm: SharedCacheMap = FileObject.SectionObjectPointer
    _check_range(scm, FileOffset, Length)
    if k.cpu_model is not None:
        k.charge("cache_lookup")
    head: Mdl | None = None
    tail: Mdl | None = None
    position = FileOffset
    end = FileOffset + Length
    while position < end:
        view_end = min(end, (position // VACB_MAPPING_GRANULARITY + 1) * VACB_MAPPING_GRANULARITY)
        first_page = position // PAGE_SIZE
        last_page = (view_end - 1) // PAGE_SIZE
        pfns = scm.pfns[first_page:last_page + 1]
        mdl = MmInitializeMdlForPages(k, pfns, position % PAGE_SIZE, view_end - position,
                                      system_va=scm.base_va + position)
        if mdl is None:  # no pool for the next MDL: give back what was built, fail the read
            if head is not None:
                CcMdlReadComplete(FileObject, head)
            IoStatus.Status = STATUS_INSUFFICIENT_RESOURCES
            IoStatus.Information = 0
            return None
        mdl.flags |= MDL_PAGE_CONTENTS_INVARIANT  # read-only cache pages
        for entry in k.phys.entries(pfns):
            entry.lock_count += 1
            entry.reference_count += 1
        if tail is None:
            head = mdl
        else:
            tail.next = mdl
        tail = mdl
        scm.outstanding_mdls += 1
        CacheManager.of(k).mdls_outstanding += 1
        position = view_end
    scm.mdl_reads += 1
    IoStatus.Status = 0
    IoStatus.Information = Length
    assert head is not None
    return head


@kroutine("nt")
def CcMdlReadComplete(FileObject: Any, MdlChain: Mdl) -> None:
    """Give back a chain from CcMdlRead: unlock and unreference its pages, free the MDLs."""
    k = current_kernel()
    scm: SharedCacheMap = FileObject.SectionObjectPointer
    cc = CacheManager.of(k)
    mdl: Mdl | None = MdlChain
    while mdl is not None:
        following = mdl.next
        mdl.next = None
        mdl.flags &= ~MDL_PAGE_CONTENTS_INVARIANT
        MmUnlockPages(mdl)
        for entry in k.phys.entries(mdl.pfns):
            references = entry.reference_count - 1
            entry.reference_count = references if references > 1 else 1  # the cache keeps its own
        IoFreeMdl(mdl)
        scm.outstanding_mdls -= 1
        cc.mdls_outstanding -= 1
        mdl = following


__all__ = ["CacheManager", "SharedCacheMap", "CacheError", "CcCopyRead", "CcMdlRead", "CcMdlReadComplete",
           "CcPurgeCacheSection",
           "SYSTEM_CACHE_BASE", "VACB_MAPPING_GRANULARITY"]
