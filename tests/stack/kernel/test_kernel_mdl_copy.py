"""copy_to_mdl: the bytes land where the chain describes, however the source is cut and the
destination's pages lie (one contiguous run, or frames scattered over physical memory)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_harness import new_machine, run

from stack.kernel import PAGE_SIZE, NonPagedPoolNx, ExAllocatePoolWithTag, IoAllocateMdl, MmBuildMdlForNonPagedPool
from stack.kernel.mdl import MmProbeAndLockPages, copy_to_mdl, mdl_chain_bytes, mdl_chain_views


def _scattered_mdl(k, rng: random.Random, byte_offset: int, length: int):
    """An MDL over a system buffer whose page frames are apart and shuffled (a run per page)."""
    pages = (byte_offset + length + PAGE_SIZE - 1) // PAGE_SIZE
    frames = k.phys.allocate(2 * pages, "test")[::2]  # every other frame: no two adjacent
    rng.shuffle(frames)
    base = k.system_ptes.reserve(pages)
    for i in range(pages):
        k.mem.map_page(base + i * PAGE_SIZE, frames[i])
    mdl = IoAllocateMdl(base + byte_offset, length)
    MmProbeAndLockPages(mdl)
    return mdl


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, 3000), min_size=0, max_size=40), scattered=st.booleans(),
       byte_offset=st.integers(0, PAGE_SIZE - 1), dest_offset=st.integers(0, 100), seed=st.integers(0, 2**32 - 1))
def test_copy_to_mdl_puts_every_chunk_at_its_place_in_contiguous_and_scattered_chains(
        cuts, scattered, byte_offset, dest_offset, seed):
    m = new_machine()
    k = m.kernel
    rng = random.Random(seed)
    chunks = [memoryview(rng.randbytes(n)) for n in cuts]  # empty chunks included
    total = sum(cuts)
    size = dest_offset + total + 7

    def build():
        if scattered:
            return _scattered_mdl(k, rng, byte_offset, size)
        buf = ExAllocatePoolWithTag(NonPagedPoolNx, size, "Test")
        mdl = IoAllocateMdl(buf, size)
        MmBuildMdlForNonPagedPool(mdl)
        return mdl

    mdl = run(m, build)
    before = mdl_chain_bytes(mdl, 0, size)
    assert run(m, copy_to_mdl, mdl, dest_offset, chunks, "test copy") == total
    after = mdl_chain_bytes(mdl, 0, size)
    assert after[dest_offset:dest_offset + total] == b"".join(chunks)
    assert after[:dest_offset] == before[:dest_offset]  # nothing written outside the range
    assert after[dest_offset + total:] == before[dest_offset + total:]
    assert k.copies.total_bytes == total
    if scattered and total > PAGE_SIZE:
        assert len(mdl_chain_views(mdl, dest_offset, total)) > 1  # the scattered way was taken
