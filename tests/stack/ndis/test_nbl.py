"""NET_BUFFER_LIST / NET_BUFFER structures, pools and data-start moves."""

from __future__ import annotations

import pytest

from stack.kernel.bugcheck import KernelBugCheck
from stack.kernel.machine import Machine
from stack.kernel.mdl import MDL_NETWORK_HEADER
from stack.kernel.pool import NonPagedPoolNx
from stack.ndis import (NDIS_STATUS_SUCCESS, NET_BUFFER_LIST_POOL_PARAMETERS, NET_BUFFER_POOL_PARAMETERS,
                        NdisAdvanceNetBufferDataStart, NdisAllocateNetBuffer, NdisAllocateNetBufferAndNetBufferList,
                        NdisAllocateNetBufferList, NdisAllocateNetBufferListPool, NdisAllocateNetBufferPool,
                        NdisFreeNetBuffer, NdisFreeNetBufferList, NdisGetDataBuffer, NdisRetreatNetBufferDataStart,
                        build_sg_list, ndis_state)
from stack.ndis.nbl import build_nonpaged_mdl


@pytest.fixture
def k():
    return Machine(seed=9, memory_mb=8).kernel


def buffer_mdl(k, data: bytes):
    va = k.pool.allocate(NonPagedPoolNx, len(data), "Test")
    k.mem.write(va, data)
    return build_nonpaged_mdl(k, va, len(data))


def chain(k, *parts: bytes):
    mdls = [buffer_mdl(k, p) for p in parts]
    for a, b in zip(mdls, mdls[1:]):
        a.next = b
    return mdls[0]


def pool_bytes(k) -> dict:
    return {tag: u.bytes_in_use for tag, u in k.pool.usage.items() if u.bytes_in_use}


def pool(k, **kw):
    return NdisAllocateNetBufferListPool(k, NET_BUFFER_LIST_POOL_PARAMETERS(fAllocateNetBuffer=True, **kw))


def test_nbl_and_nb_fields_are_written_at_their_x64_offsets(k):
    p = pool(k)
    nbl = NdisAllocateNetBufferAndNetBufferList(p, 0, 0, chain(k, b"a" * 10, b"b" * 20), 4, 22)
    nbl.Status = 0xC023002A
    nbl.NetBufferListInfo[2] = 0x1234
    nb = nbl.FirstNetBuffer
    mem = k.mem
    assert mem.read_u64(nbl.address + 0x08) == nb.address
    assert mem.read_u64(nbl.address + 0x20) == p.address
    assert mem.read_u32(nbl.address + 0x8C) == 0xC023002A
    assert mem.read_u64(nbl.address + 0x90 + 2 * 8) == 0x1234
    assert mem.read_u64(nb.address + 0x20) == nb.MdlChain.address
    assert mem.read_u32(nb.address + 0x18) == 22
    assert mem.read_u32(nb.address + 0x28) == 4
    assert mem.read_u64(nb.address + 0x08) == nb.CurrentMdl.address
    assert k.object_at(nbl.address) is nbl and k.object_at(nb.address) is nb


def test_nb_views_cover_exactly_the_data_across_mdls(k):
    p = pool(k)
    nbl = NdisAllocateNetBufferAndNetBufferList(p, 0, 0, chain(k, b"0123456789", b"abcdefghij", b"KLMNO"), 7, 15)
    nb = nbl.FirstNetBuffer
    assert nb.data() == b"789abcdefghijKL"
    assert nb.CurrentMdl is nb.MdlChain and nb.CurrentMdlOffset == 7
    assert b"".join(nb.views(5, 6)) == b"cdefgh"
    with pytest.raises(ValueError):
        nb.views(10, 6)


def test_freed_nbl_goes_back_to_the_free_list_and_is_reused(k):
    p = pool(k)
    first = NdisAllocateNetBufferList(p)
    NdisFreeNetBufferList(first)
    second = NdisAllocateNetBufferList(p)
    assert second is first and p.pool_allocations == 1
    events = [e.event for e in ndis_state(k).nbl_history(first.address)]
    assert events == ["Allocated", "Freed", "Allocated"]


def test_double_free_of_an_nbl_bugchecks(k):
    p = pool(k)
    nbl = NdisAllocateNetBufferList(p)
    NdisFreeNetBufferList(nbl)
    with pytest.raises(KernelBugCheck) as crash:
        NdisFreeNetBufferList(nbl)
    assert crash.value.info.code == 0x7C


def test_data_size_pool_nbl_has_all_its_data_space_in_front(k):
    p = pool(k, DataSize=256)
    nbl = NdisAllocateNetBufferList(p)
    nb = nbl.FirstNetBuffer
    assert nb.DataOffset == 256 and nb.DataLength == 0
    assert NdisRetreatNetBufferDataStart(nb, 54, 0) == NDIS_STATUS_SUCCESS
    assert nb.DataOffset == 202 and nb.DataLength == 54 and nb.MdlChain is nb.own_mdl


def test_retreat_within_unused_space_moves_back_across_mdls(k):
    p = pool(k)
    nbl = NdisAllocateNetBufferAndNetBufferList(p, 0, 0, chain(k, b"HHHH", b"xxpayload"), 6, 7)
    nb = nbl.FirstNetBuffer
    assert nb.data() == b"payload"
    assert NdisRetreatNetBufferDataStart(nb, 4, 0) == NDIS_STATUS_SUCCESS
    assert nb.data() == b"HHxxpayload"
    assert nb.CurrentMdl is nb.MdlChain and nb.CurrentMdlOffset == 2


def test_retreat_past_unused_space_chains_a_new_header_mdl_and_advance_frees_it(k):
    p = pool(k)
    original = chain(k, b"..payload")
    nbl = NdisAllocateNetBufferAndNetBufferList(p, 0, 0, original, 2, 7)
    nb = nbl.FirstNetBuffer
    before = pool_bytes(k)
    assert NdisRetreatNetBufferDataStart(nb, 14, 16) == NDIS_STATUS_SUCCESS
    header = nb.MdlChain
    assert header is not original and header.flags & MDL_NETWORK_HEADER
    assert nb.DataOffset == 16 and nb.DataLength == 21
    views = nb.views()
    views[0][:14] = b"E" * 14
    assert nb.data() == b"E" * 14 + b"payload"
    NdisAdvanceNetBufferDataStart(nb, 14, True)
    assert nb.MdlChain is original and nb.DataOffset == 2 and nb.data() == b"payload"
    assert header.freed
    assert pool_bytes(k) == before


def test_retreat_from_the_middle_of_an_mdl_keeps_the_data_contiguous(k):
    p = pool(k)
    original = chain(k, b"abcdefgh")
    nbl = NdisAllocateNetBufferAndNetBufferList(p, 0, 0, original, 3, 5)
    nb = nbl.FirstNetBuffer
    assert NdisRetreatNetBufferDataStart(nb, 5, 0) == NDIS_STATUS_SUCCESS
    nb.views()[0][:5] = b"HEADR"
    assert nb.data() == b"HEADRdefgh"
    assert len(nb.views()) == 2  # the header MDL, then a partial MDL over the rest of the original
    NdisAdvanceNetBufferDataStart(nb, 5, True)
    assert nb.MdlChain is original and nb.data() == b"defgh"


def test_freeing_an_nbl_releases_header_mdls_left_by_retreats(k):
    p = pool(k)
    nbl = NdisAllocateNetBufferAndNetBufferList(p, 0, 0, chain(k, b"data"), 0, 4)
    before = pool_bytes(k)
    NdisRetreatNetBufferDataStart(nbl.FirstNetBuffer, 20, 0)
    NdisFreeNetBufferList(nbl)
    assert pool_bytes(k) == before


def test_get_data_buffer_is_zero_copy_when_contiguous(k):
    p = pool(k)
    nbl = NdisAllocateNetBufferAndNetBufferList(p, 0, 0, chain(k, b"0123456789"), 2, 8)
    view = NdisGetDataBuffer(nbl.FirstNetBuffer, 4, None)
    assert bytes(view) == b"2345"
    view[0:1] = b"Z"  # the view is the page itself
    assert nbl.FirstNetBuffer.data().startswith(b"Z")
    assert k.copies.total_bytes == 0


def test_get_data_buffer_copies_into_storage_when_split_and_counts_it(k):
    p = pool(k)
    nbl = NdisAllocateNetBufferAndNetBufferList(p, 0, 0, chain(k, b"0123", b"4567"), 1, 7)
    nb = nbl.FirstNetBuffer
    assert NdisGetDataBuffer(nb, 5, None) is None
    storage = bytearray(16)
    view = NdisGetDataBuffer(nb, 5, storage)
    assert bytes(view) == b"12345"
    assert k.copies.snapshot() == {"NdisGetDataBuffer": (1, 5)}
    assert NdisGetDataBuffer(nb, 8, storage) is None


def test_net_buffer_pool_allocates_and_reuses_nbs(k):
    nb_pool = NdisAllocateNetBufferPool(k, NET_BUFFER_POOL_PARAMETERS())
    nb = NdisAllocateNetBuffer(nb_pool, chain(k, b"abc"), 1, 2)
    assert nb.data() == b"bc"
    NdisFreeNetBuffer(nb)
    assert NdisAllocateNetBuffer(nb_pool, chain(k, b"xyz"), 0, 3) is nb


def test_sg_list_merges_physically_contiguous_pages(k):
    va = k.pool.allocate(NonPagedPoolNx, 3 * 4096, "Test")
    mdl = build_nonpaged_mdl(k, va, 3 * 4096)
    p = pool(k)
    nbl = NdisAllocateNetBufferAndNetBufferList(p, 0, 0, mdl, 100, 3 * 4096 - 200)
    sg = build_sg_list(nbl.FirstNetBuffer)
    contiguous = mdl.pfns == list(range(mdl.pfns[0], mdl.pfns[0] + 3))
    assert sum(e[2] for e in sg) == 3 * 4096 - 200
    assert sg[0][1] == 100
    if contiguous:
        assert len(sg) == 1


def _sg_list_page_by_page(nb) -> list[tuple[int, int, int]]:
    """build_sg_list's page walk: every page of every MDL, merged into the element before it when it
    continues it (the next frame from its start after a full page, or the same frame right after)."""
    out: list[tuple[int, int, int]] = []
    remaining, m, off = nb.DataLength, nb.CurrentMdl, nb.CurrentMdlOffset
    last_pfn, last_end = -2, -1
    while m is not None and remaining > 0:
        take_mdl = min(m.byte_count - off, remaining)
        pos = m.byte_offset + off
        while take_mdl > 0:
            within = pos % 4096
            take = min(4096 - within, take_mdl)
            pfn = m.pfns[pos // 4096]
            if out and ((within == 0 and pfn == last_pfn + 1 and last_end == 4096)
                        or (pfn == last_pfn and within == last_end)):
                p, o, n = out[-1]
                out[-1] = (p, o, n + take)
            else:
                out.append((pfn, within, take))
            last_pfn, last_end = pfn, within + take
            pos += take
            take_mdl -= take
            remaining -= take
        m = m.next
        off = 0
    return out


@pytest.mark.parametrize("seed", range(60))
def test_sg_list_of_mdls_in_runs_of_frames_is_what_the_page_walk_gives(k, seed):
    # build_sg_list takes an MDL whose part lies in one run of consecutive frames in one step (a
    # check in C); MDLs with breaks in their frames, and chains that continue on the next frame or
    # in the same page, must give exactly the elements the page-by-page walk gives.
    import random
    from stack.kernel.mdl import Mdl
    rng = random.Random(seed)
    mdls, pfn, end = [], 0x400, 0
    for _ in range(rng.randint(1, 5)):
        offset = rng.choice([0, rng.randrange(4096)])
        length = rng.choice([rng.randint(1, 5 * 4096), 4096 - offset, 2 * 4096 - offset])
        if mdls and rng.random() < 0.6:  # the part before ends where this one begins (a frame's split)
            offset, pfn = (0, pfn + 1) if end == 4096 else (end, pfn)
        else:
            pfn += 7
        pages = (offset + length + 4095) // 4096
        mdl = Mdl(k, 0, 0x10000 + offset, length, pages)
        frames = []
        for i in range(pages):
            frames.append(pfn)
            # Breaks include repeated frames and out-of-order middles ([a, a+2, a+2], [a, a+2, a+1]):
            # an MDL whose end frames are where a run's would be is still not one run.
            pfn += 1 if rng.random() < 0.7 else rng.choice([2, -5, 0, -1])
        mdl.pfns = frames
        mdls.append(mdl)
        pfn = frames[-1]
        end = (offset + length - 1) % 4096 + 1
    for a, b in zip(mdls, mdls[1:]):
        a.next = b
    total = sum(m.byte_count for m in mdls)
    start = rng.choice([0, rng.randrange(min(total, 6000))])
    nbl = NdisAllocateNetBufferAndNetBufferList(pool(k), 0, 0, mdls[0], start, rng.randint(1, total - start))
    nb = nbl.FirstNetBuffer
    assert build_sg_list(nb) == _sg_list_page_by_page(nb)


@pytest.mark.parametrize("steps", [(2, 0), (0, 2), (2, -1, 2), (3, -1, 1)])
def test_sg_list_of_an_mdl_whose_end_frames_match_a_run_but_whose_middle_breaks_it(k, steps):
    # [a, a+2, a+2], [a, a, a+2], [a, a+2, a+1, a+3]: the last frame is where a run's would be,
    # but the frames between are repeated or out of order, so these are not one element.
    from stack.kernel.mdl import Mdl
    frames = [0x400]
    for step in steps:
        frames.append(frames[-1] + step)
    mdl = Mdl(k, 0, 0x10000 + 100, len(frames) * 4096 - 200, len(frames))
    mdl.pfns = frames
    nbl = NdisAllocateNetBufferAndNetBufferList(pool(k), 0, 0, mdl, 0, mdl.byte_count)
    nb = nbl.FirstNetBuffer
    assert build_sg_list(nb) == _sg_list_page_by_page(nb)
    assert len(build_sg_list(nb)) > 1
