"""Receive indications: WSK_DATA_INDICATION chains whose MDLs describe the received bytes.

The transport offers received data as memoryviews that are valid only during its upcall.
When a view lies in emulated physical memory (the NIC's receive pages), the indication's
MDL is built over those very page frames — zero copy.  Otherwise (the transport had to
copy the payload out of an NBL it returned) the bytes are copied once into nonpaged pool.

If the client keeps an indication (returns STATUS_PENDING), the pages it describes must
outlive the upcall, so each zero-copy node is copied once into provider pool and its
`Buffer.Mdl` replaced; `WskRelease` frees it.  Both copies are counted.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from stack.kernel import ExAllocatePoolWithTag, ExFreePoolWithTag, IoAllocateMdl, IoFreeMdl, MmBuildMdlForNonPagedPool
from stack.kernel.kernel import Kernel
from stack.kernel.mdl import (MDL_PAGES_LOCKED, Mdl, MmInitializeMdlForPages, MmUnmapLockedPages, copy_to_mdl,
                              mdl_chain_views)
from stack.kernel.memory import PAGE_SHIFT, PAGE_SIZE, ADDRESS_AND_SIZE_TO_SPAN_PAGES
from stack.kernel.ntstatus import STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS
from stack.kernel.pool import NonPagedPoolNx

from stack.wsk.structs import WSK_BUF, WSK_DATA_INDICATION, WSK_DATAGRAM_INDICATION

INDICATION_TAG = "WskI"


@dataclass(slots=True, eq=False)
class IndicationPiece:
    """One node of an indication chain and what backs its MDL."""

    node: WSK_DATA_INDICATION | WSK_DATAGRAM_INDICATION
    mdl: Mdl
    pool_buffer: int = 0  # provider pool holding a copy (0 = the MDL is over the NIC's pages)


def _physical_offset(k: Kernel, view: memoryview) -> int | None:
    """Offset of `view` inside emulated physical memory, or None when it lies elsewhere."""
    if view.obj is not k.phys.data or view.readonly or not len(view):
        return None
    base = ctypes.addressof(ctypes.c_char.from_buffer(k.phys.data))
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) - base


def _zero_copy_mdl(k: Kernel, view: memoryview) -> Mdl | None:
    offset = _physical_offset(k, view)
    if offset is None:
        return None
    first = offset >> PAGE_SHIFT
    within = offset & (PAGE_SIZE - 1)
    pages = ADDRESS_AND_SIZE_TO_SPAN_PAGES(within, len(view))
    pfns = [k.phys.base_pfn + first + i for i in range(pages)]
    return MmInitializeMdlForPages(k, pfns, within, len(view))


def _pool_copy_mdl(k: Kernel, data: list[memoryview], reason: str) -> tuple[int, Mdl | None, int]:
    """Copy `data` (one or more runs) into fresh nonpaged pool: (status, MDL, pool buffer).

    Pool or MDL exhaustion gives STATUS_INSUFFICIENT_RESOURCES with nothing left allocated.
    """
    length = sum([len(chunk) for chunk in data])
    buffer = ExAllocatePoolWithTag(NonPagedPoolNx, length, INDICATION_TAG)
    if not buffer:
        return STATUS_INSUFFICIENT_RESOURCES, None, 0
    mdl = IoAllocateMdl(buffer, length, False, False, None)
    if mdl is None:
        ExFreePoolWithTag(buffer, INDICATION_TAG)
        return STATUS_INSUFFICIENT_RESOURCES, None, 0
    MmBuildMdlForNonPagedPool(mdl)
    copy_to_mdl(mdl, 0, data, reason)  # one counted copy, however many runs
    return STATUS_SUCCESS, mdl, buffer


def build_pieces(k: Kernel, views: list[memoryview],
                 datagram: bool = False) -> tuple[int, list[IndicationPiece]]:
    """Indication nodes over `views`, linked through Next (the first piece's node heads the chain).

    Returns STATUS_INSUFFICIENT_RESOURCES and no pieces when a copy cannot be allocated.
    """
    pieces: list[IndicationPiece] = []
    for view in views:
        if not len(view):
            continue
        mdl = _zero_copy_mdl(k, view)
        buffer = 0
        if mdl is None:
            status, mdl, buffer = _pool_copy_mdl(k, [view], "wsk indication (transport copy)")
            if mdl is None:
                free_pieces(pieces)
                return status, []
        buf = WSK_BUF(mdl, 0, len(view))
        node: WSK_DATA_INDICATION | WSK_DATAGRAM_INDICATION = (
            WSK_DATAGRAM_INDICATION(None, buf) if datagram else WSK_DATA_INDICATION(None, buf))
        if pieces:
            pieces[-1].node.Next = node  # type: ignore[assignment]
        pieces.append(IndicationPiece(node, mdl, buffer))
    return STATUS_SUCCESS, pieces


def _free_mdl(mdl: Mdl, zero_copy: bool) -> None:
    if zero_copy:
        # The pages are locked by their owner (NDIS), not through this MDL; undo any
        # system mapping the client made, then drop the MDL alone.
        if mdl.map_va:
            MmUnmapLockedPages(mdl.mapped_system_va, mdl)
        mdl.flags &= ~MDL_PAGES_LOCKED
    IoFreeMdl(mdl)


def free_pieces(pieces: list[IndicationPiece]) -> None:
    for piece in pieces:
        _free_mdl(piece.mdl, piece.pool_buffer == 0)
        if piece.pool_buffer:
            ExFreePoolWithTag(piece.pool_buffer, INDICATION_TAG)
            piece.pool_buffer = 0


def retain_pieces(k: Kernel, pieces: list[IndicationPiece]) -> int:
    """The client returned STATUS_PENDING: move zero-copy nodes onto provider pool.

    On STATUS_INSUFFICIENT_RESOURCES the pieces moved so far stay moved and the rest
    still describe the NIC's pages; every piece can still be freed with free_pieces.
    """
    for piece in pieces:
        if piece.pool_buffer:
            continue  # already provider memory
        # The MDL may span several runs of pages: hand all the views to one counted copy.
        data = mdl_chain_views(piece.mdl, 0, piece.mdl.byte_count)
        status, mdl, buffer = _pool_copy_mdl(k, data, "wsk retained indication")
        if mdl is None:
            return status
        _free_mdl(piece.mdl, True)
        piece.mdl, piece.pool_buffer = mdl, buffer
        piece.node.Buffer.Mdl = mdl
    return STATUS_SUCCESS
