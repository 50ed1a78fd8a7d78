"""NET_BUFFER_LIST and NET_BUFFER over MDL chains, their pools, and data-start moves.

NBLs and NBs live at nonpaged-pool addresses and write themselves through
to emulated memory on `flush()` (so `dt ndis!_NET_BUFFER_LIST` shows real
bytes).  A pool keeps freed NBLs on a free list with their NB (and data
buffer, for pools with a DataSize): the per-packet path reuses them and
never reaches the pool allocator.  Data is only ever reached through the
MDLs' page frames (`NetBuffer.views`), never copied, except where
`NdisGetDataBuffer` has to make a contiguous copy (counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from stack.kernel.kernel import Kernel
from stack.kernel.layouts import Field as F
from stack.kernel.layouts import LAYOUTS, StructLayout, register_layout
from stack.kernel.mdl import (MDL_HEADER_SIZE, MDL_NETWORK_HEADER, MDL_SOURCE_IS_NONPAGED_POOL, MDL_TAG, Mdl,
                              mdl_chain_views)
from stack.kernel.memory import ADDRESS_AND_SIZE_TO_SPAN_PAGES, PAGE_MASK, PAGE_SHIFT
from stack.kernel.pool import NonPagedPoolNx

from .constants import MaxNetBufferListInfo, NDIS_STATUS_RESOURCES, NDIS_STATUS_SUCCESS
from .ownership import NBL_ALLOCATED, NBL_FREED

if TYPE_CHECKING:
    from .state import NdisState

NBL_STRUCT_SIZE = 0x90 + 8 * MaxNetBufferListInfo
NB_STRUCT_SIZE = 0xB0
NDIS_MDL_TAG = "NDmd"  # header buffers NdisRetreatNetBufferDataStart allocates

register_layout(StructLayout("_NET_BUFFER_LIST", NBL_STRUCT_SIZE, [
    F("Next", 0x00, "ptr", "_NET_BUFFER_LIST"),
    F("FirstNetBuffer", 0x08, "ptr", "_NET_BUFFER"),
    F("Context", 0x10, "ptr", "_NET_BUFFER_LIST_CONTEXT"),
    F("ParentNetBufferList", 0x18, "ptr", "_NET_BUFFER_LIST"),
    F("NdisPoolHandle", 0x20, "ptr", "Void"),
    F("NdisReserved", 0x30, "ptr", "Void", count=2),
    F("ProtocolReserved", 0x40, "ptr", "Void", count=4),
    F("MiniportReserved", 0x60, "ptr", "Void", count=2),
    F("Scratch", 0x70, "ptr", "Void"),
    F("SourceHandle", 0x78, "ptr", "Void"),
    F("NblFlags", 0x80, "u32"),
    F("ChildRefCount", 0x84, "i32"),
    F("Flags", 0x88, "u32"),
    F("Status", 0x8C, "i32"),
    F("NetBufferListInfo", 0x90, "ptr", "Void", count=MaxNetBufferListInfo),
]))

register_layout(StructLayout("_NET_BUFFER", NB_STRUCT_SIZE, [
    F("Next", 0x00, "ptr", "_NET_BUFFER"),
    F("CurrentMdl", 0x08, "ptr", "_MDL"),
    F("CurrentMdlOffset", 0x10, "u32"),
    F("DataLength", 0x18, "u32"),
    F("MdlChain", 0x20, "ptr", "_MDL"),
    F("DataOffset", 0x28, "u32"),
    F("ChecksumBias", 0x30, "u16"),
    F("NdisPoolHandle", 0x38, "ptr", "Void"),
    F("NdisReserved", 0x40, "ptr", "Void", count=2),
    F("ProtocolReserved", 0x50, "ptr", "Void", count=6),
    F("MiniportReserved", 0x80, "ptr", "Void", count=4),
    F("DataPhysicalAddress", 0xA0, "u64"),
    F("SharedMemoryInfo", 0xA8, "ptr", "Void"),
]))


def _addr(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFFFFFFFFFFFFFFFF
    return getattr(value, "address", 0) or 0


@dataclass(slots=True)
class _Retreat:
    """What NdisRetreatNetBufferDataStart changed when it had to allocate a header MDL."""

    chain: Mdl | None
    data_offset: int
    header: Mdl
    partial: Mdl | None
    header_length: int  # bytes of the new chain before the original data start


class NetBuffer:
    """NET_BUFFER: one packet's data, described by an MDL chain."""

    __slots__ = ("kernel", "address", "Next", "CurrentMdl", "CurrentMdlOffset", "DataLength", "MdlChain",
                 "DataOffset", "ChecksumBias", "NdisPoolHandle", "ProtocolReserved", "MiniportReserved",
                 "struct_size", "freed", "own_mdl", "_retreats")

    def __init__(self, kernel: Kernel, address: int, pool: Any) -> None:
        self.kernel = kernel
        self.address = address
        self.struct_size = NB_STRUCT_SIZE
        self.NdisPoolHandle = pool
        self.Next: NetBuffer | None = None
        self.CurrentMdl: Mdl | None = None
        self.CurrentMdlOffset = 0
        self.DataLength = 0
        self.MdlChain: Mdl | None = None
        self.DataOffset = 0
        self.ChecksumBias = 0
        self.ProtocolReserved: list[Any] = [None] * 6
        self.MiniportReserved: list[Any] = [None] * 4
        self.freed = False
        self.own_mdl: Mdl | None = None  # the data MDL of a pool with a DataSize
        self._retreats: list[_Retreat] = []

    def set_data(self, mdl_chain: Mdl | None, data_offset: int, data_length: int) -> None:
        """Point the NB at `data_length` bytes starting `data_offset` into `mdl_chain`."""
        self.MdlChain = mdl_chain
        self.DataOffset = data_offset
        self.DataLength = data_length
        if mdl_chain is not None and mdl_chain.next is None:  # _locate's one-MDL case, inlined
            self.CurrentMdl = mdl_chain
            self.CurrentMdlOffset = data_offset
        else:
            _locate(self)

    def views(self, offset: int = 0, length: int | None = None) -> list[memoryview]:
        """Zero-copy views of the data (one per physically contiguous run)."""
        if length is None:
            length = self.DataLength - offset
        if offset < 0 or length < 0 or offset + length > self.DataLength:
            raise ValueError(f"range {offset:#x}+{length:#x} outside NET_BUFFER data of {self.DataLength:#x} bytes")
        m = self.CurrentMdl
        if length == 0 or m is None:
            return []
        start = self.CurrentMdlOffset + offset
        if m.next is None or start + length <= m.byte_count:
            return m.views(start, length)
        return mdl_chain_views(m, start, length)

    def data(self) -> bytes:
        """A copy of the data (for tests and the debugger)."""
        return b"".join(self.views())

    def mdls(self) -> Iterator[Mdl]:
        m = self.MdlChain
        while m is not None:
            yield m
            m = m.next

    def flush(self) -> None:
        values = {
            "Next": _addr(self.Next), "CurrentMdl": _addr(self.CurrentMdl),
            "CurrentMdlOffset": self.CurrentMdlOffset, "DataLength": self.DataLength,
            "MdlChain": _addr(self.MdlChain), "DataOffset": self.DataOffset, "ChecksumBias": self.ChecksumBias,
            "NdisPoolHandle": _addr(self.NdisPoolHandle),
            "ProtocolReserved": [_addr(v) for v in self.ProtocolReserved],
            "MiniportReserved": [_addr(v) for v in self.MiniportReserved],
        }
        self.kernel.mem.write(self.address, LAYOUTS["_NET_BUFFER"].pack(values))

    def __repr__(self) -> str:
        return f"<NET_BUFFER {self.address:x} len={self.DataLength:#x} off={self.DataOffset:#x}>"


class NetBufferList:
    """NET_BUFFER_LIST: a list of NET_BUFFERs with out-of-band information."""

    __slots__ = ("kernel", "address", "Next", "FirstNetBuffer", "Context", "ParentNetBufferList",
                 "NdisPoolHandle", "SourceHandle", "Status", "Flags", "NblFlags", "ChildRefCount",
                 "NetBufferListInfo", "ProtocolReserved", "MiniportReserved", "Scratch", "struct_size",
                 "owner", "freed", "own_nb", "indicate_refs", "pool")

    def __init__(self, kernel: Kernel, address: int, pool: Any) -> None:
        self.kernel = kernel
        self.address = address
        self.struct_size = NBL_STRUCT_SIZE
        self.pool = pool
        self.NdisPoolHandle = pool
        self.Next: NetBufferList | None = None
        self.FirstNetBuffer: NetBuffer | None = None
        self.Context: Any = None
        self.ParentNetBufferList: NetBufferList | None = None
        self.SourceHandle: Any = None
        self.Status = NDIS_STATUS_SUCCESS
        self.Flags = 0
        self.NblFlags = 0
        self.ChildRefCount = 0
        self.NetBufferListInfo: list[int] = [0] * MaxNetBufferListInfo
        self.ProtocolReserved: list[Any] = [None] * 4
        self.MiniportReserved: list[Any] = [None] * 2
        self.Scratch: Any = None
        self.owner = ""
        self.freed = False
        self.own_nb: NetBuffer | None = None  # the NB allocated together with this NBL
        self.indicate_refs = 0

    def nbs(self) -> Iterator[NetBuffer]:
        nb = self.FirstNetBuffer
        while nb is not None:
            yield nb
            nb = nb.Next

    def chain(self) -> Iterator["NetBufferList"]:
        nbl: NetBufferList | None = self
        while nbl is not None:
            yield nbl
            nbl = nbl.Next

    def flush(self) -> None:
        values = {
            "Next": _addr(self.Next), "FirstNetBuffer": _addr(self.FirstNetBuffer), "Context": _addr(self.Context),
            "ParentNetBufferList": _addr(self.ParentNetBufferList), "NdisPoolHandle": _addr(self.NdisPoolHandle),
            "ProtocolReserved": [_addr(v) for v in self.ProtocolReserved],
            "MiniportReserved": [_addr(v) for v in self.MiniportReserved], "Scratch": _addr(self.Scratch),
            "SourceHandle": _addr(self.SourceHandle), "NblFlags": self.NblFlags,
            "ChildRefCount": self.ChildRefCount, "Flags": self.Flags, "Status": _signed32(self.Status),
            "NetBufferListInfo": [v & 0xFFFFFFFFFFFFFFFF for v in self.NetBufferListInfo],
        }
        self.kernel.mem.write(self.address, LAYOUTS["_NET_BUFFER_LIST"].pack(values))

    def __repr__(self) -> str:
        return f"<NET_BUFFER_LIST {self.address:x} owner={self.owner}>"


NET_BUFFER_LIST = NetBufferList
NET_BUFFER = NetBuffer


def _signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# --- macros ----------------------------------------------------------------------------

def NET_BUFFER_LIST_NEXT_NBL(nbl: NetBufferList) -> NetBufferList | None:
    return nbl.Next


def NET_BUFFER_LIST_FIRST_NB(nbl: NetBufferList) -> NetBuffer | None:
    return nbl.FirstNetBuffer


def NET_BUFFER_NEXT_NB(nb: NetBuffer) -> NetBuffer | None:
    return nb.Next


def NET_BUFFER_DATA_LENGTH(nb: NetBuffer) -> int:
    return nb.DataLength


def NET_BUFFER_DATA_OFFSET(nb: NetBuffer) -> int:
    return nb.DataOffset


def NET_BUFFER_CURRENT_MDL(nb: NetBuffer) -> Mdl | None:
    return nb.CurrentMdl


def NET_BUFFER_CURRENT_MDL_OFFSET(nb: NetBuffer) -> int:
    return nb.CurrentMdlOffset


def NET_BUFFER_FIRST_MDL(nb: NetBuffer) -> Mdl | None:
    return nb.MdlChain


def NET_BUFFER_LIST_INFO(nbl: NetBufferList, info_id: int) -> int:
    return nbl.NetBufferListInfo[info_id]


def NET_BUFFER_LIST_STATUS(nbl: NetBufferList) -> int:
    return nbl.Status


def nbl_chain_count(nbl: NetBufferList | None) -> int:
    n = 0
    while nbl is not None:
        n += 1
        nbl = nbl.Next
    return n


# --- MDL helpers NDIS uses ------------------------------------------------------------------

def build_nonpaged_mdl(k: Kernel, va: int, length: int, owner: str = "ndis") -> Mdl:
    """An MDL over nonpaged pool (NdisAllocateMdl): header in pool, PFNs filled in."""
    pages = max(1, ADDRESS_AND_SIZE_TO_SPAN_PAGES(va, length))
    address = k.pool.allocate(NonPagedPoolNx, MDL_HEADER_SIZE + 8 * pages, MDL_TAG, owner=owner)
    mdl = Mdl(k, address, va, length, pages)
    mdl.pfns = k.mem.pfns_for(va, length) if length else [k.mem.translate(va)]
    mdl.flags = MDL_SOURCE_IS_NONPAGED_POOL
    mdl.mapped_system_va = va
    mdl.owner = owner
    k.register_object(mdl)
    return mdl


def _try_nonpaged_mdl(k: Kernel, va: int, length: int, owner: str) -> Mdl | None:
    """build_nonpaged_mdl, or None when there is no pool for the MDL itself."""
    try:
        return build_nonpaged_mdl(k, va, length, owner=owner)
    except MemoryError:
        k.verifier.failed(k, "mdl", MDL_TAG)
        return None


def free_mdl(k: Kernel, mdl: Mdl) -> None:
    if mdl.freed:
        return
    mdl.freed = True
    k.unregister_object(mdl)
    k.pool.free(mdl.address, MDL_TAG)


def _partial_mdl(k: Kernel, source: Mdl, offset: int) -> Mdl:
    """An MDL describing `source` from `offset` to its end (same page frames, no copy)."""
    start = source.byte_offset + offset
    first = start >> PAGE_SHIFT
    length = source.byte_count - offset
    pages = ADDRESS_AND_SIZE_TO_SPAN_PAGES(start & PAGE_MASK, length)
    address = k.pool.allocate(NonPagedPoolNx, MDL_HEADER_SIZE + 8 * max(1, pages), MDL_TAG, owner="ndis")
    va = source.virtual_address + offset
    mdl = Mdl(k, address, va, length, max(1, pages))
    mdl.pfns = source.pfns[first:first + pages]
    mdl.flags = source.flags & MDL_SOURCE_IS_NONPAGED_POOL
    mdl.mapped_system_va = source.mapped_system_va + offset if source.mapped_system_va else 0
    mdl.owner = "ndis"
    k.register_object(mdl)
    return mdl


def _locate(nb: NetBuffer) -> None:
    """Set CurrentMdl / CurrentMdlOffset for the NB's DataOffset."""
    m = nb.MdlChain
    off = nb.DataOffset
    while m is not None and off >= m.byte_count and m.next is not None:
        off -= m.byte_count
        m = m.next
    nb.CurrentMdl = m
    nb.CurrentMdlOffset = off


def build_sg_list(nb: NetBuffer) -> list[tuple[int, int, int]]:
    """The NB's data as a scatter-gather list of (pfn, offset, length), contiguous frames merged.

    What NdisMAllocateNetBufferSGList hands a bus-master miniport.
    """
    out: list[tuple[int, int, int]] = []
    remaining = nb.DataLength
    m = nb.CurrentMdl
    off = nb.CurrentMdlOffset
    last_pfn = -2
    last_end = -1
    while m is not None and remaining > 0:
        take_mdl = m.byte_count - off
        if take_mdl > remaining:
            take_mdl = remaining
        if take_mdl > 0:
            pos = m.byte_offset + off
            pfns = m.pfns
            page = pos >> PAGE_SHIFT
            pages = ((pos + take_mdl - 1) >> PAGE_SHIFT) - page  # after the first
            first = pfns[page]
            if not pages or (pfns[page + pages] == first + pages
                             and pfns[page:page + pages + 1] == list(range(first, first + pages + 1))):
                # The MDL's part lies in one run of consecutive frames (checked in C): one element,
                # as the page walk below would merge it, joined to the one before when that ends
                # where this begins.
                within = pos & PAGE_MASK
                if out and ((within == 0 and first == last_pfn + 1 and last_end == 0x1000)
                            or (first == last_pfn and within == last_end)):
                    p, o, n = out[-1]
                    out[-1] = (p, o, n + take_mdl)
                else:
                    out.append((first, within, take_mdl))
                last_pfn = first + pages
                last_end = ((pos + take_mdl - 1) & PAGE_MASK) + 1
                remaining -= take_mdl
            else:  # not one run of frames: page by page, each merged into the element it continues
                while take_mdl > 0:
                    page = pos >> PAGE_SHIFT
                    within = pos & PAGE_MASK
                    take = 0x1000 - within
                    if take > take_mdl:
                        take = take_mdl
                    pfn = pfns[page]
                    if out and within == 0 and pfn == last_pfn + 1 and last_end == 0x1000:
                        p, o, n = out[-1]
                        out[-1] = (p, o, n + take)
                    elif out and pfn == last_pfn and within == last_end:
                        p, o, n = out[-1]
                        out[-1] = (p, o, n + take)
                    else:
                        out.append((pfn, within, take))
                    last_pfn = pfn
                    last_end = within + take
                    pos += take
                    take_mdl -= take
                    remaining -= take
        m = m.next
        off = 0
    return out


# --- pools ---------------------------------------------------------------------------------

@dataclass(slots=True)
class NET_BUFFER_LIST_POOL_PARAMETERS:
    ProtocolId: int = 0
    ContextSize: int = 0
    fAllocateNetBuffer: bool = False
    DataSize: int = 0  # with fAllocateNetBuffer: each NBL comes with this many bytes of nonpaged data
    PoolTag: str = "NBLp"
    Flags: int = 0


@dataclass(slots=True)
class NET_BUFFER_POOL_PARAMETERS:
    PoolTag: str = "NBp "
    DataSize: int = 0


def _owner_name(handle: Any) -> str:
    name = getattr(handle, "owner_name", None)
    if name:
        return name
    return str(handle) if isinstance(handle, str) else "unknown"


class NblPool:
    """An NBL pool (NdisAllocateNetBufferListPool) with its free list."""

    POOL_STRUCT_SIZE = 0x80

    def __init__(self, state: "NdisState", handle: Any, params: NET_BUFFER_LIST_POOL_PARAMETERS) -> None:
        k = state.kernel
        self.state = state
        self.kernel = k
        self.handle = handle
        self.owner_name = _owner_name(handle)
        self.params = params
        self.tag = params.PoolTag
        self.address = k.pool.allocate(NonPagedPoolNx, self.POOL_STRUCT_SIZE, "NDpl", owner="ndis")
        self.free: list[NetBufferList] = []
        self.all: list[NetBufferList] = []
        self.in_use = 0
        self.allocations = 0
        self.pool_allocations = 0  # times the pool allocator was reached (a new NBL was built)
        self.failures = 0  # allocations that returned NULL (pool short, or the verifier)
        self.destroyed = False
        k.register_object(self)

    def _new(self) -> NetBufferList | None:
        """A new NBL from nonpaged pool (None when the pool is short: the caller gets NULL)."""
        k = self.kernel
        p = self.params
        with_nb = p.fAllocateNetBuffer
        size = NBL_STRUCT_SIZE + (NB_STRUCT_SIZE if with_nb else 0)
        address = k.allocate_pool("nbl", NonPagedPoolNx, size, self.tag, owner=self.owner_name)
        if not address:
            return None
        own_mdl = None
        if with_nb and p.DataSize:
            va = k.allocate_pool("nbl", NonPagedPoolNx, p.DataSize, self.tag, owner=self.owner_name)
            own_mdl = _try_nonpaged_mdl(k, va, p.DataSize, self.owner_name) if va else None
            if own_mdl is None:
                if va:
                    k.pool.free(va, self.tag)
                k.pool.free(address, self.tag)
                return None
        nbl = NetBufferList(k, address, self)
        self.pool_allocations += 1
        if with_nb:
            nb = NetBuffer(k, address + NBL_STRUCT_SIZE, self)
            nb.own_mdl = own_mdl
            nbl.own_nb = nb
            k.register_object(nb)
        k.register_object(nbl)
        self.all.append(nbl)
        return nbl

    def take(self) -> NetBufferList | None:
        if self.destroyed:
            raise ValueError(f"NBL pool {self.address:x} was freed")
        if self.free:
            verifier = self.kernel.verifier  # a recycled NBL can be failed too, as NDIS's lookaside can
            if verifier.active and verifier.fail(self.kernel, "nbl", self.tag):
                return None
            nbl = self.free.pop()
        else:
            nbl = self._new()
            if nbl is None:
                self.failures += 1
                return None
        nbl.freed = False
        self.in_use += 1
        self.allocations += 1
        return nbl

    def give_back(self, nbl: NetBufferList) -> None:
        self.in_use -= 1
        self.free.append(nbl)

    def destroy(self) -> None:
        k = self.kernel
        for nbl in self.all:
            nb = nbl.own_nb
            if nb is not None:
                if nb.own_mdl is not None:
                    va = nb.own_mdl.mapped_system_va
                    free_mdl(k, nb.own_mdl)
                    k.pool.free(va, self.tag)
                k.unregister_object(nb)
            k.unregister_object(nbl)
            k.pool.free(nbl.address, self.tag)
        self.all.clear()
        self.free.clear()
        self.destroyed = True
        k.unregister_object(self)
        k.pool.free(self.address, "NDpl")

    def __repr__(self) -> str:
        return f"<NblPool {self.address:x} '{self.tag}' {self.owner_name} in use {self.in_use}>"


class NbPool:
    """A NET_BUFFER pool (NdisAllocateNetBufferPool) with its free list."""

    POOL_STRUCT_SIZE = 0x80

    def __init__(self, state: "NdisState", handle: Any, params: NET_BUFFER_POOL_PARAMETERS) -> None:
        k = state.kernel
        self.state = state
        self.kernel = k
        self.handle = handle
        self.owner_name = _owner_name(handle)
        self.params = params
        self.tag = params.PoolTag
        self.address = k.pool.allocate(NonPagedPoolNx, self.POOL_STRUCT_SIZE, "NDpl", owner="ndis")
        self.free: list[NetBuffer] = []
        self.all: list[NetBuffer] = []
        self.in_use = 0
        self.destroyed = False
        k.register_object(self)

    def take(self) -> NetBuffer | None:
        if self.destroyed:
            raise ValueError(f"NB pool {self.address:x} was freed")
        k = self.kernel
        if self.free:
            if k.verifier.active and k.verifier.fail(k, "nbl", self.tag):
                return None
            nb = self.free.pop()
        else:
            address = k.allocate_pool("nbl", NonPagedPoolNx, NB_STRUCT_SIZE, self.tag, owner=self.owner_name)
            if not address:
                return None
            nb = NetBuffer(k, address, self)
            k.register_object(nb)
            self.all.append(nb)
        nb.freed = False
        self.in_use += 1
        return nb

    def give_back(self, nb: NetBuffer) -> None:
        self.in_use -= 1
        self.free.append(nb)

    def destroy(self) -> None:
        k = self.kernel
        for nb in self.all:
            k.unregister_object(nb)
            k.pool.free(nb.address, self.tag)
        self.all.clear()
        self.free.clear()
        self.destroyed = True
        k.unregister_object(self)
        k.pool.free(self.address, "NDpl")


def _state_of(handle: Any) -> "NdisState":
    from .state import ndis_state_of_handle
    return ndis_state_of_handle(handle)


def NdisAllocateNetBufferListPool(NdisHandle: Any, Parameters: NET_BUFFER_LIST_POOL_PARAMETERS) -> NblPool:
    """Create an NBL pool owned by `NdisHandle` (a protocol, binding, miniport or adapter handle)."""
    state = _state_of(NdisHandle)
    pool = NblPool(state, NdisHandle, Parameters)
    state.nbl_pools.append(pool)
    return pool


def NdisFreeNetBufferListPool(PoolHandle: NblPool) -> None:
    if PoolHandle.in_use:
        PoolHandle.kernel.bugcheck(0x7C, 0x1F, PoolHandle.address, PoolHandle.in_use, 0,
                                   detail="NdisFreeNetBufferListPool with NBLs still allocated")
    PoolHandle.destroy()
    if PoolHandle in PoolHandle.state.nbl_pools:
        PoolHandle.state.nbl_pools.remove(PoolHandle)


def NdisAllocateNetBufferPool(NdisHandle: Any, Parameters: NET_BUFFER_POOL_PARAMETERS) -> NbPool:
    state = _state_of(NdisHandle)
    pool = NbPool(state, NdisHandle, Parameters)
    state.nb_pools.append(pool)
    return pool


def NdisFreeNetBufferPool(PoolHandle: NbPool) -> None:
    PoolHandle.destroy()
    if PoolHandle in PoolHandle.state.nb_pools:
        PoolHandle.state.nb_pools.remove(PoolHandle)


_NO_INFO = (0,) * MaxNetBufferListInfo
_TWO_NONES = (None,) * 2
_FOUR_NONES = (None,) * 4
_SIX_NONES = (None,) * 6


def _reset_nbl(nbl: NetBufferList) -> None:
    nbl.Next = None
    nbl.FirstNetBuffer = None
    nbl.Context = None
    nbl.ParentNetBufferList = None
    nbl.SourceHandle = None
    nbl.Status = NDIS_STATUS_SUCCESS
    nbl.Flags = 0
    nbl.NblFlags = 0
    nbl.ChildRefCount = 0
    nbl.NetBufferListInfo[:] = _NO_INFO  # in place: callers may hold the list
    nbl.ProtocolReserved[:] = _FOUR_NONES
    nbl.MiniportReserved[:] = _TWO_NONES
    nbl.Scratch = None
    nbl.indicate_refs = 0


def NdisAllocateNetBufferList(PoolHandle: NblPool, ContextSize: int = 0,
                              ContextBackFill: int = 0) -> NetBufferList | None:
    """An NBL from the pool (None, NULL, when nonpaged pool is short).  On a pool with
    fAllocateNetBuffer and a DataSize it has one NB over the pool's data buffer with all of
    it unused in front (DataOffset = DataSize)."""
    pool = PoolHandle
    nbl = pool.take()
    if nbl is None:
        return None
    _reset_nbl(nbl)
    nb = nbl.own_nb
    if nb is not None and nb.own_mdl is not None:
        _reset_nb(nb)
        nb.set_data(nb.own_mdl, pool.params.DataSize, 0)
        nbl.FirstNetBuffer = nb
    pool.state.ownership.record(nbl, NBL_ALLOCATED, pool.owner_name)
    return nbl


def NdisAllocateNetBufferAndNetBufferList(PoolHandle: NblPool, ContextSize: int, ContextBackFill: int,
                                          MdlChain: Mdl | None, DataOffset: int,
                                          DataLength: int) -> NetBufferList | None:
    """An NBL with one NB over `MdlChain` (or over the pool's own data buffer when MdlChain is None);
    None (NULL) when nonpaged pool is short."""
    pool = PoolHandle
    if not pool.params.fAllocateNetBuffer:
        raise ValueError("NdisAllocateNetBufferAndNetBufferList needs a pool created with fAllocateNetBuffer")
    nbl = pool.take()
    if nbl is None:
        return None
    # _reset_nbl(nbl) and _reset_nb(nb), inlined: every frame sent allocates one of these
    nbl.Next = nbl.Context = nbl.ParentNetBufferList = nbl.SourceHandle = nbl.Scratch = None
    nbl.Status = NDIS_STATUS_SUCCESS
    nbl.Flags = nbl.NblFlags = nbl.ChildRefCount = nbl.indicate_refs = 0
    nbl.NetBufferListInfo[:] = _NO_INFO  # in place: callers may hold the list
    nbl.ProtocolReserved[:] = _FOUR_NONES
    nbl.MiniportReserved[:] = _TWO_NONES
    nb = nbl.own_nb
    assert nb is not None
    if nb._retreats:
        _undo_retreats(nb)
    nb.Next = None
    nb.ChecksumBias = 0
    nb.ProtocolReserved[:] = _SIX_NONES
    nb.MiniportReserved[:] = _FOUR_NONES
    nb.set_data(MdlChain if MdlChain is not None else nb.own_mdl, DataOffset, DataLength)
    nbl.FirstNetBuffer = nb
    pool.state.ownership.record(nbl, NBL_ALLOCATED, pool.owner_name)
    return nbl


def _reset_nb(nb: NetBuffer) -> None:
    if nb._retreats:
        _undo_retreats(nb)
    nb.Next = None
    nb.ChecksumBias = 0
    nb.ProtocolReserved[:] = _SIX_NONES
    nb.MiniportReserved[:] = _FOUR_NONES


def NdisFreeNetBufferList(NetBufferList: NetBufferList) -> None:
    """Give the NBL (and the NB allocated with it) back to its pool's free list."""
    nbl = NetBufferList
    pool = nbl.pool
    k = nbl.kernel
    if nbl.freed:
        k.bugcheck(0x7C, 0x21, nbl.address, 0, 0, detail="NdisFreeNetBufferList on a freed NBL")
    state = pool.state
    if nbl.address in state.ownership.held:
        k.bugcheck(0x7C, 0x22, nbl.address, 0, 0,
                   detail=f"NdisFreeNetBufferList on an NBL still held by {nbl.owner}")
    if nbl.own_nb is not None and nbl.own_nb._retreats:
        _undo_retreats(nbl.own_nb)
    nbl.freed = True
    nbl.Next = None
    state.ownership.record(nbl, NBL_FREED, pool.owner_name)
    pool.in_use -= 1  # pool.give_back(nbl), inlined
    pool.free.append(nbl)


def NdisAllocateNetBuffer(PoolHandle: NbPool, MdlChain: Mdl | None, DataOffset: int,
                          DataLength: int) -> NetBuffer | None:
    nb = PoolHandle.take()
    if nb is None:
        return None
    _reset_nb(nb)
    nb.set_data(MdlChain, DataOffset, DataLength)
    return nb


def NdisFreeNetBuffer(NetBuffer: NetBuffer) -> None:
    nb = NetBuffer
    if nb.freed:
        nb.kernel.bugcheck(0x7C, 0x23, nb.address, 0, 0, detail="NdisFreeNetBuffer on a freed NB")
    if nb._retreats:
        _undo_retreats(nb)
    nb.freed = True
    nb.Next = None
    pool = nb.NdisPoolHandle
    if isinstance(pool, NbPool):
        pool.give_back(nb)


# --- moving the data start ----------------------------------------------------------------

def NdisRetreatNetBufferDataStart(NetBuffer: NetBuffer, DataOffsetDelta: int, DataBackFill: int = 0,
                                  AllocateMdlHandler: Callable[[int], Mdl | None] | None = None) -> int:
    """Grow the data at the front by `DataOffsetDelta` bytes.

    Uses the unused space in front of the data (DataOffset) when there is
    enough; otherwise allocates a header buffer of DataBackFill + delta
    bytes with an MDL (or asks `AllocateMdlHandler(size)`) and chains it in
    front, as NDIS does.  Returns NDIS_STATUS_SUCCESS or NDIS_STATUS_RESOURCES.
    """
    nb = NetBuffer
    delta = DataOffsetDelta
    if delta < 0:
        raise ValueError("negative DataOffsetDelta")
    if delta <= nb.DataOffset:
        nb.DataOffset -= delta
        nb.DataLength += delta
        if delta <= nb.CurrentMdlOffset:
            nb.CurrentMdlOffset -= delta
        else:
            _locate(nb)
        return NDIS_STATUS_SUCCESS
    k = nb.kernel
    size = DataBackFill + delta
    if AllocateMdlHandler is not None:
        header = AllocateMdlHandler(size)
        if header is None:
            return NDIS_STATUS_RESOURCES
    else:
        va = k.allocate_pool("mdl", NonPagedPoolNx, size, NDIS_MDL_TAG, owner="ndis")
        header = _try_nonpaged_mdl(k, va, size, "ndis") if va else None
        if header is None:
            if va:
                k.pool.free(va, NDIS_MDL_TAG)
            return NDIS_STATUS_RESOURCES
    header.flags |= MDL_NETWORK_HEADER
    current = nb.CurrentMdl
    partial = None
    if current is not None and nb.CurrentMdlOffset:
        try:
            partial = _partial_mdl(k, current, nb.CurrentMdlOffset)
        except MemoryError:
            k.verifier.failed(k, "mdl", MDL_TAG)
            if AllocateMdlHandler is None:  # ours to give back; a handler's MDL is the caller's
                free_mdl(k, header)
                k.pool.free(header.mapped_system_va, NDIS_MDL_TAG)
            return NDIS_STATUS_RESOURCES
        partial.next = current.next
        header.next = partial
    else:
        header.next = current
    nb._retreats.append(_Retreat(nb.MdlChain, nb.DataOffset, header, partial, size))
    nb.MdlChain = header
    nb.DataOffset = DataBackFill
    nb.DataLength += delta
    nb.CurrentMdl = header
    nb.CurrentMdlOffset = DataBackFill
    return NDIS_STATUS_SUCCESS


def NdisAdvanceNetBufferDataStart(NetBuffer: NetBuffer, DataOffsetDelta: int, FreeMdl: bool,
                                  FreeMdlHandler: Callable[[Mdl], None] | None = None) -> None:
    """Shrink the data at the front; with FreeMdl, free header MDLs a retreat allocated once passed."""
    nb = NetBuffer
    delta = DataOffsetDelta
    if delta < 0 or delta > nb.DataLength:
        raise ValueError(f"cannot advance {delta:#x} bytes over {nb.DataLength:#x} bytes of data")
    nb.DataOffset += delta
    nb.DataLength -= delta
    _locate(nb)
    if FreeMdl:
        while nb._retreats and nb.DataOffset >= nb._retreats[-1].header_length:
            past = nb.DataOffset - nb._retreats[-1].header_length
            _pop_retreat(nb, FreeMdlHandler)
            nb.DataOffset = nb.DataOffset + past  # nb.DataOffset was restored to the original start
            _locate(nb)


def _pop_retreat(nb: NetBuffer, free_handler: Callable[[Mdl], None] | None = None) -> None:
    r = nb._retreats.pop()
    k = nb.kernel
    for mdl in (r.header, r.partial):
        if mdl is None:
            continue
        if mdl is r.header and free_handler is not None:
            free_handler(mdl)
            continue
        va = mdl.mapped_system_va
        free_mdl(k, mdl)
        if mdl is r.header:
            k.pool.free(va, NDIS_MDL_TAG)
    nb.MdlChain = r.chain
    nb.DataOffset = r.data_offset


def _undo_retreats(nb: NetBuffer) -> None:
    """Free every header MDL retreats allocated (the NB is being freed or reused)."""
    while nb._retreats:
        _pop_retreat(nb)
    _locate(nb)


def NdisGetDataBuffer(NetBuffer: NetBuffer, BytesNeeded: int, Storage: bytearray | memoryview | None,
                      AlignMultiple: int = 1, AlignOffset: int = 0) -> memoryview | None:
    """A contiguous view of the first `BytesNeeded` data bytes.

    Zero copy when they sit in one physically contiguous run; otherwise
    they are copied into `Storage` (counted) and a view of it returned; None
    when there are not enough bytes, or no Storage for a copy.
    """
    nb = NetBuffer
    if BytesNeeded > nb.DataLength or BytesNeeded < 0:
        return None
    if BytesNeeded == 0:
        return memoryview(b"")
    m = nb.CurrentMdl
    if m is None:
        return None
    off = nb.CurrentMdlOffset
    if off + BytesNeeded <= m.byte_count:
        views = m.views(off, BytesNeeded)
        if len(views) == 1:
            return views[0]
    if Storage is None or len(Storage) < BytesNeeded:
        return None
    out = memoryview(Storage)
    pos = 0
    for v in nb.views(0, BytesNeeded):
        out[pos:pos + len(v)] = v
        pos += len(v)
    nb.kernel.copies.count(BytesNeeded, "NdisGetDataBuffer")
    return out[:BytesNeeded]


# --- memory helpers -------------------------------------------------------------------------

def NdisAllocateMemoryWithTagPriority(NdisHandle: Any, Length: int, Tag: str | int, Priority: int = 0) -> int:
    """Nonpaged memory for a driver (0 on failure)."""
    state = _state_of(NdisHandle)
    return state.kernel.allocate_pool("pool", NonPagedPoolNx, Length, Tag, owner=_owner_name(NdisHandle))


def NdisFreeMemory(VirtualAddress: int, Length: int = 0, MemoryFlags: int = 0, *, kernel: Kernel | None = None) -> None:
    from stack.kernel.symbols import current_kernel
    k = kernel or current_kernel()
    k.pool.free(VirtualAddress, None)


def NdisAllocateMdl(NdisHandle: Any, VirtualAddress: int, Length: int) -> Mdl | None:
    """An MDL over a nonpaged buffer (None, NULL, when nonpaged pool is short)."""
    state = _state_of(NdisHandle)
    k = state.kernel
    if k.verifier.active and k.verifier.fail(k, "mdl", MDL_TAG):
        return None
    return _try_nonpaged_mdl(k, VirtualAddress, Length, _owner_name(NdisHandle))


def NdisFreeMdl(Mdl: Mdl) -> None:
    free_mdl(Mdl.kernel, Mdl)
