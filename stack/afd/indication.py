"""Receive indications: WSK_DATA_INDICATION chains whose MDLs describe the received bytes.

The transport offers received data as runs (physical address, view), valid only during its
upcall.  A run with an address lies in emulated physical memory (the NIC's receive pages, the
NBL tcpip holds), and the indication's MDL is built over those very page frames - zero copy,
as tcpip indicates the NDIS receive buffers themselves to a WSK client when it can.  A run
without one (the transport had to copy the payload out of an NBL it returned) is copied once
into nonpaged pool, the way tcpip indicates from its own buffers otherwise.

If the client keeps an indication (returns STATUS_PENDING), the pages it describes must
outlive the upcall, so each zero-copy node is copied once into provider pool and its
`Buffer.Mdl` replaced; `WskRelease` frees it.  Both copies are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.kernel import ExAllocatePoolWithTag, ExFreePoolWithTag, IoAllocateMdl, IoFreeMdl, MmBuildMdlForNonPagedPool
from stack.kernel.kernel import Kernel
from stack.kernel.mdl import (MDL_PAGES_LOCKED, Mdl, MmUnmapLockedPages, copy_to_mdl, mdl_chain_views,
                              mdl_over_physical_run)
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


def build_pieces(k: Kernel, runs: list[tuple[int, memoryview]],
                 datagram: bool = False) -> tuple[int, list[IndicationPiece]]:
    """Indication nodes over the transport's runs (physical address, view), linked through Next
    (the first piece's node heads the chain): an MDL over each run's page frames, or over a
    pool copy of a run that has no address.

    Returns STATUS_INSUFFICIENT_RESOURCES and no pieces when a copy cannot be allocated.
    """
    pieces: list[IndicationPiece] = []
    for address, view in runs:
        if not len(view):
            continue
        buffer = 0
        mdl = mdl_over_physical_run(k, address, len(view)) if address >= 0 else None
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
