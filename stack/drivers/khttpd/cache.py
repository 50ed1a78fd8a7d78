"""khttpd's response cache (HTTP.sys's design): file name -> response metadata + locked pages.

An entry holds what a hit needs and nothing that can page: the file's size, type and
validators, and an MDL of khttpd's own over the cache manager's pages of the file,
locked with MmProbeAndLockPages (the IRP_MJ_READ/IRP_MN_MDL chain it was read with is
given straight back with IRP_MN_COMPLETE_MDL).  A hit is therefore answerable at
DISPATCH_LEVEL from the receive event: header into a nonpaged buffer, header MDL ->
the entry's MDL, one TDI_SEND.  The cache is bounded by a memory budget (the locked
bytes) and evicts least recently used entries that no send is using.

Fill (PASSIVE_LEVEL only):  entry = KhttpdCacheFill(cache, volume, fs_path, content_type)
Hit (any IRQL <= DISPATCH):  entry = cache.lookup(fs_path); entry.refs += 1 while sending
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from stack.kernel import (NT_SUCCESS, PAGE_SIZE, IoAllocateMdl, IoFreeMdl, KernelMode, Mdl, MmProbeAndLockPages,
                          MmUnlockPages, kroutine)
from stack.kernel.mdl import IoReadAccess
from stack.kernel.memory import ADDRESS_AND_SIZE_TO_SPAN_PAGES

from .conditional import Validators


@dataclass(slots=True, eq=False)
class KhttpdCacheEntry:
    fs_path: str
    size: int
    content_type: str
    validators: Validators
    mdl: Mdl | None  # khttpd's own MDL over the cached pages, locked (None for an empty file)
    pages: int
    refs: int = 0  # sends in flight using mdl
    hits: int = 0


class KhttpdResponseCache:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.entries: OrderedDict[str, KhttpdCacheEntry] = OrderedDict()
        self.used = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.uncacheable = 0  # files bigger than the whole budget (served, not kept)

    def lookup(self, fs_path: str) -> KhttpdCacheEntry | None:
        entry = self.entries.get(fs_path)
        if entry is not None:
            self.entries.move_to_end(fs_path)
        return entry

    def insert(self, entry: KhttpdCacheEntry) -> bool:
        """Keep `entry`, evicting idle least recently used entries to stay within the budget."""
        if entry.size > self.budget:
            self.uncacheable += 1
            return False
        for name in list(self.entries):
            if self.used + entry.size <= self.budget:
                break
            victim = self.entries[name]
            if victim.refs == 0:
                self.remove(victim)
                self.evictions += 1
        if self.used + entry.size > self.budget:
            return False  # everything left is being sent right now
        self.entries[entry.fs_path] = entry
        self.used += entry.size
        return True

    def remove(self, entry: KhttpdCacheEntry) -> None:
        if self.entries.get(entry.fs_path) is entry:
            del self.entries[entry.fs_path]
            self.used -= entry.size
        KhttpdCacheReleaseEntry(entry)

    def flush(self) -> None:
        for entry in list(self.entries.values()):
            self.remove(entry)

    @property
    def locked_pages(self) -> int:
        return sum(e.pages for e in self.entries.values())

    def snapshot(self) -> dict[str, Any]:
        return {"entries": len(self.entries), "hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "locked_pages": self.locked_pages, "used": self.used, "budget": self.budget,
                "files": [{"name": e.fs_path, "size": e.size, "pages": e.pages, "hits": e.hits,
                           "mdl": e.mdl.address if e.mdl else 0} for e in self.entries.values()]}

    def describe(self) -> list[str]:
        lines = [f"  response cache  {len(self.entries)} entries, {self.hits} hits, {self.misses} misses, "
                 f"{self.evictions} evictions",
                 f"                  {self.locked_pages} locked pages, {self.used} of {self.budget} bytes used"]
        if self.entries:
            lines.append(f"    {'Mdl':<18} {'Size':>8} {'Pages':>5} {'Hits':>5}  File")
            for e in reversed(self.entries.values()):  # most recently used first
                mdl = f"{e.mdl.address:016x}" if e.mdl else "-"
                lines.append(f"    {mdl:<18} {e.size:>8} {e.pages:>5} {e.hits:>5}  {e.fs_path}")
        return lines


@kroutine("khttpd")
def KhttpdCacheReleaseEntry(entry: KhttpdCacheEntry) -> None:
    if entry.mdl is not None:
        MmUnlockPages(entry.mdl)
        IoFreeMdl(entry.mdl)
        entry.mdl = None


@kroutine("khttpd")
def KhttpdCacheFill(fs_path: str, file_object: Any, size: int, content_type: str,
                    validators: Validators) -> tuple[int, KhttpdCacheEntry | None]:
    """PASSIVE_LEVEL: IRP_MJ_READ/IRP_MN_MDL, an MDL of our own locked with MmProbeAndLockPages,
    IRP_MN_COMPLETE_MDL.  The entry's pages then stay resident and locked until it is evicted."""
    from stack.fs import fsio
    mdl = None
    pages = 0
    if size:
        status, chain = fsio.fs_mdl_read(file_object, 0, size)
        if not NT_SUCCESS(status) or chain is None:
            return status, None
        va = chain.virtual_address  # the cached file's pages sit at consecutive system cache addresses
        mdl = IoAllocateMdl(va, size)
        if mdl is not None:
            MmProbeAndLockPages(mdl, KernelMode, IoReadAccess)
            pages = ADDRESS_AND_SIZE_TO_SPAN_PAGES(va, size)
        fsio.fs_mdl_read_complete(file_object, chain)
        if mdl is None:
            from stack.kernel import STATUS_INSUFFICIENT_RESOURCES
            return STATUS_INSUFFICIENT_RESOURCES, None
    return 0, KhttpdCacheEntry(fs_path, size, content_type, validators, mdl, pages)


_ = PAGE_SIZE
