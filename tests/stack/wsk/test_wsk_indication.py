"""Indication chains: copies into provider pool are counted once, and pool exhaustion is a status."""

from __future__ import annotations

from stack.kernel import PAGE_SIZE, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, ExAllocatePoolWithTag
from stack.kernel.machine import Machine
from stack.kernel.mdl import MmInitializeMdlForPages, mdl_chain_bytes, mdl_chain_views
from stack.kernel.memory import NO_PHYSICAL_ADDRESS
from stack.kernel.pool import NonPagedPoolNx, tag_from_str
from stack.afd.indication import INDICATION_TAG, IndicationPiece, build_pieces, free_pieces, retain_pieces
from stack.wsk.structs import WSK_BUF, WSK_DATA_INDICATION


def _machine() -> Machine:
    return Machine(seed=11, memory_mb=4)


def _indication_bytes_in_use(k) -> int:
    usage = k.pool.usage.get((tag_from_str(INDICATION_TAG), False))
    return 0 if usage is None else usage.bytes_in_use


def test_retaining_a_piece_over_two_separate_page_runs_copies_it_once_and_counts_it():
    m = _machine()
    k = m.kernel
    payload = bytes(range(256)) * 8  # 2 KiB straddling a page boundary

    def body():
        va = ExAllocatePoolWithTag(NonPagedPoolNx, 3 * PAGE_SIZE, "Nic ")
        first, _, third = k.mem.pfns_for(va, 3 * PAGE_SIZE)
        # Pages one and three: two runs of frames, so the MDL yields two views.
        mdl = MmInitializeMdlForPages(k, [first, third], PAGE_SIZE - 1024, len(payload))
        views = mdl_chain_views(mdl)
        assert len(views) == 2
        views[0][:] = payload[:1024]
        views[1][:] = payload[1024:]
        piece = IndicationPiece(WSK_DATA_INDICATION(None, WSK_BUF(mdl, 0, len(payload))), mdl)
        status = retain_pieces(k, [piece])
        kept = mdl_chain_bytes(piece.mdl)
        retained = bool(piece.pool_buffer) and piece.node.Buffer.Mdl is piece.mdl
        free_pieces([piece])
        return status, kept, retained

    status, kept, retained = m.run_in(k, body)
    assert m.scheduler.halted is None
    assert status == STATUS_SUCCESS and retained and kept == payload
    assert k.copies.snapshot()["wsk retained indication"] == (1, len(payload))
    assert _indication_bytes_in_use(k) == 0


def test_building_a_pool_copy_without_pool_returns_insufficient_resources():
    m = _machine()
    k = m.kernel

    def body():
        def exhausted(*args, **kwargs):
            raise MemoryError
        k.pool.allocate = exhausted  # every allocation fails from here on
        return build_pieces(k, [(NO_PHYSICAL_ADDRESS, memoryview(b"not in physical memory"))])

    status, pieces = m.run_in(k, body)
    assert m.scheduler.halted is None
    assert status == STATUS_INSUFFICIENT_RESOURCES and pieces == []


def test_building_fails_cleanly_when_only_the_mdl_cannot_be_allocated():
    m = _machine()
    k = m.kernel
    real_allocate = k.pool.allocate

    def body():
        def no_mdls(pool_type, size, tag, owner=""):
            if tag == "Mdl ":
                raise MemoryError
            return real_allocate(pool_type, size, tag, owner)
        k.pool.allocate = no_mdls
        return build_pieces(k, [(NO_PHYSICAL_ADDRESS, memoryview(b"first")),
                                (NO_PHYSICAL_ADDRESS, memoryview(b"second"))])

    status, pieces = m.run_in(k, body)
    assert m.scheduler.halted is None
    assert status == STATUS_INSUFFICIENT_RESOURCES and pieces == []
    assert _indication_bytes_in_use(k) == 0  # the pool buffer for the copy was given back
