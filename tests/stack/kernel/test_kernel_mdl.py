"""Part 4: MDLs as in wdm.h — fields in memory, building, locking, mapping, partial MDLs, chain views."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_harness import assert_running, crash, new_machine, record_events, run

from stack.kernel import (PAGE_SIZE, NonPagedPoolNx, PagedPool, ExAllocatePoolWithTag, IoAllocateIrp, IoAllocateMdl,
                          IoBuildPartialMdl, IoFreeMdl, MmBuildMdlForNonPagedPool, MmGetMdlByteCount,
                          MmGetMdlByteOffset, MmGetMdlPfnArray, MmGetMdlVirtualAddress, MmGetSystemAddressForMdlSafe,
                          MmProbeAndLockPages, MmUnlockPages)
from stack.kernel.events import MdlBuilt, MdlFreed
from stack.kernel.layouts import LAYOUTS
from stack.kernel.mdl import (MDL_ALLOCATED_FIXED_SIZE, MDL_MAPPED_TO_SYSTEM_VA, MDL_PAGES_LOCKED, MDL_PARTIAL,
                              MDL_SOURCE_IS_NONPAGED_POOL, MDL_WRITE_OPERATION, IoWriteAccess, Mdl,
                              MmInitializeMdlForPages, copy_to_mdl, mdl_chain_bytes, mdl_chain_length,
                              mdl_chain_views, mdl_flag_names)

MDL = LAYOUTS["_MDL"]


def _decode(k, mdl: Mdl) -> dict:
    raw = k.mem.read(mdl.address, 0x30)
    return {f.name: MDL.unpack_field(f, raw) for f in MDL.fields}


def _nonpaged_mdl(m, size: int, offset: int = 0, tag: str = "Buf ") -> tuple[int, Mdl]:
    def body():
        buf = ExAllocatePoolWithTag(NonPagedPoolNx, size + offset, tag)
        mdl = IoAllocateMdl(buf + offset, size)
        MmBuildMdlForNonPagedPool(mdl)
        return buf + offset, mdl

    return run(m, body)


def test_io_allocate_mdl_writes_a_real_mdl_header_and_pfn_array_to_memory():
    m = new_machine()
    k = m.kernel
    events = record_events(m)
    va, mdl = _nonpaged_mdl(m, 0x2345, offset=0x10)
    fields = _decode(k, mdl)
    pages = (((va & 0xFFF) + 0x2345) + 0xFFF) // 0x1000
    assert fields["Next"] == 0
    assert fields["Size"] == 0x30 + 8 * pages
    assert fields["MdlFlags"] == MDL_SOURCE_IS_NONPAGED_POOL
    assert fields["StartVa"] == va & ~0xFFF
    assert fields["ByteOffset"] == va & 0xFFF
    assert fields["ByteCount"] == 0x2345
    assert fields["MappedSystemVa"] == va
    pfn_bytes = k.mem.read(mdl.address + 0x30, 8 * pages)
    assert [int.from_bytes(pfn_bytes[i:i + 8], "little") for i in range(0, 8 * pages, 8)] == mdl.pfns
    assert mdl.pfns == k.mem.pfns_for(va, 0x2345)
    assert (MmGetMdlVirtualAddress(mdl), MmGetMdlByteCount(mdl), MmGetMdlByteOffset(mdl)) == \
        (va, 0x2345, va & 0xFFF)
    assert MmGetMdlPfnArray(mdl) == mdl.pfns
    built = [e for e in events if isinstance(e, MdlBuilt)]
    assert [e.how for e in built] == ["IoAllocateMdl", "MmBuildMdlForNonPagedPool"]
    assert mdl_flag_names(MDL_PAGES_LOCKED | MDL_PARTIAL) == ["PAGES_LOCKED", "PARTIAL"]


def test_mdl_chain_next_pointer_is_in_memory():
    m = new_machine()
    k = m.kernel
    _, a = _nonpaged_mdl(m, 100)
    _, b = _nonpaged_mdl(m, 200)
    a.next = b
    assert _decode(k, a)["Next"] == b.address
    assert mdl_chain_length(a) == 300
    assert list(a.chain()) == [a, b]


def test_io_allocate_mdl_with_an_irp_sets_mdl_address_then_chains_secondary_buffers():
    m = new_machine()

    def body():
        irp = IoAllocateIrp(1)
        buf = ExAllocatePoolWithTag(NonPagedPoolNx, 64, "Buf ")
        first = IoAllocateMdl(buf, 16, False, False, irp)
        second = IoAllocateMdl(buf + 16, 16, True, False, irp)
        third = IoAllocateMdl(buf + 32, 16, True, False, irp)
        return irp, first, second, third

    irp, first, second, third = run(m, body)
    assert irp.mdl_address is first
    assert first.next is second and second.next is third and third.next is None


def test_system_address_of_a_nonpaged_pool_mdl_is_the_buffer_itself():
    m = new_machine()
    va, mdl = _nonpaged_mdl(m, 0x1800, offset=0x20)
    assert run(m, MmGetSystemAddressForMdlSafe, mdl) == va
    assert mdl.map_va == 0


def test_probe_and_lock_pins_the_pages_and_unlock_releases_them():
    m = new_machine()
    k = m.kernel

    def body():
        buf = ExAllocatePoolWithTag(PagedPool, 3 * PAGE_SIZE, "Pgd ")
        mdl = IoAllocateMdl(buf + 0x80, 2 * PAGE_SIZE)
        MmProbeAndLockPages(mdl, 0, IoWriteAccess)
        return buf, mdl

    buf, mdl = run(m, body)
    assert mdl.flags & MDL_PAGES_LOCKED and mdl.flags & MDL_WRITE_OPERATION
    assert len(mdl.pfns) == 3
    assert all(k.phys.entry(p).lock_count == 1 for p in mdl.pfns)
    assert _decode(k, mdl)["MdlFlags"] == MDL_PAGES_LOCKED | MDL_WRITE_OPERATION
    run(m, MmUnlockPages, mdl)
    assert not mdl.flags & MDL_PAGES_LOCKED
    assert all(k.phys.entry(p).lock_count == 0 for p in mdl.pfns)
    run(m, IoFreeMdl, mdl)
    assert_running(m)


def test_mapping_a_locked_mdl_gives_a_second_address_over_the_same_pages():
    m = new_machine()
    k = m.kernel

    def body():
        buf = ExAllocatePoolWithTag(PagedPool, 2 * PAGE_SIZE, "Pgd ")
        mdl = IoAllocateMdl(buf + 0x100, PAGE_SIZE)
        MmProbeAndLockPages(mdl)
        return buf, mdl, MmGetSystemAddressForMdlSafe(mdl)

    buf, mdl, sysva = run(m, body)
    assert k.system_ptes.contains(sysva)
    assert sysva & 0xFFF == 0x100
    assert mdl.flags & MDL_MAPPED_TO_SYSTEM_VA and _decode(k, mdl)["MappedSystemVa"] == sysva
    k.mem.write(sysva, b"through the mapping")
    assert k.mem.read(buf + 0x100, 19) == b"through the mapping"
    assert run(m, MmGetSystemAddressForMdlSafe, mdl) == sysva  # mapped once
    run(m, MmUnlockPages, mdl)  # unlocking also tears the mapping down
    assert not k.mem.is_mapped(sysva)
    assert not mdl.flags & MDL_MAPPED_TO_SYSTEM_VA


def test_partial_mdl_describes_a_subrange_of_its_source():
    m = new_machine()
    k = m.kernel
    va, src = _nonpaged_mdl(m, 3 * PAGE_SIZE, offset=0x30)
    k.mem.write(va, bytes(i & 0xFF for i in range(3 * PAGE_SIZE)))

    def body():
        part = IoAllocateMdl(va + 0x1000, 0x1800)
        IoBuildPartialMdl(src, part, va + 0x1000 + 0x10, 0x1500)
        return part

    part = run(m, body)
    assert part.flags & MDL_PARTIAL
    assert part.virtual_address == va + 0x1010 and part.byte_count == 0x1500
    assert mdl_chain_bytes(part) == k.mem.read(va + 0x1010, 0x1500)
    fields = _decode(k, part)
    assert (fields["StartVa"], fields["ByteOffset"], fields["ByteCount"]) == \
        ((va + 0x1010) & ~0xFFF, (va + 0x1010) & 0xFFF, 0x1500)


def test_system_address_of_a_partial_mdl_of_nonpaged_pool_reuses_the_parent_mapping():
    m = new_machine()
    k = m.kernel
    va, src = _nonpaged_mdl(m, 2 * PAGE_SIZE)

    def body():
        part = IoAllocateMdl(va, 2 * PAGE_SIZE)
        IoBuildPartialMdl(src, part, va + 0x200, 0x300)
        sysva = MmGetSystemAddressForMdlSafe(part)
        IoFreeMdl(part)
        return sysva

    sysva = run(m, body)
    assert_running(m)  # freeing it must not look like a leaked mapping
    assert sysva == va + 0x200
    assert k.mem.read(sysva, 4) == k.mem.read(va + 0x200, 4)


def test_partial_mdl_of_a_mapped_locked_mdl_uses_the_parent_system_address():
    m = new_machine()

    def body():
        buf = ExAllocatePoolWithTag(PagedPool, 2 * PAGE_SIZE, "Pgd ")
        src = IoAllocateMdl(buf, 2 * PAGE_SIZE)
        MmProbeAndLockPages(src)
        parent_va = MmGetSystemAddressForMdlSafe(src)
        part = IoAllocateMdl(buf, 2 * PAGE_SIZE)
        IoBuildPartialMdl(src, part, buf + 0x1004, 0x10)
        part_va = MmGetSystemAddressForMdlSafe(part)
        IoFreeMdl(part)
        MmUnlockPages(src)
        IoFreeMdl(src)
        return parent_va, part_va

    parent_va, part_va = run(m, body)
    assert_running(m)
    assert part_va == parent_va + 0x1004


def test_io_free_mdl_returns_its_pool_and_publishes_mdl_freed():
    m = new_machine()
    k = m.kernel
    _, mdl = _nonpaged_mdl(m, 64)
    events = record_events(m)
    run(m, IoFreeMdl, mdl)
    assert_running(m)
    assert mdl.freed
    assert k.object_at(mdl.address) is None
    assert [e.mdl for e in events if isinstance(e, MdlFreed)] == [mdl.address]
    assert not any(b.address == mdl.address for b in k.pool.allocated_blocks())


def test_mdl_over_known_page_frames_reads_those_frames():
    m = new_machine()
    k = m.kernel
    pfns = k.phys.allocate(2, "test")
    k.phys.frame(pfns[0])[:] = b"A" * PAGE_SIZE
    k.phys.frame(pfns[1])[:] = b"B" * PAGE_SIZE
    mdl = run(m, MmInitializeMdlForPages, k, [pfns[1], pfns[0]], 0xFF0, 0x20)
    assert mdl.flags & MDL_PAGES_LOCKED and mdl.flags & MDL_ALLOCATED_FIXED_SIZE
    assert mdl_chain_bytes(mdl) == b"B" * 0x10 + b"A" * 0x10


def test_copy_to_mdl_writes_across_mdls_and_is_counted():
    m = new_machine()
    k = m.kernel
    va1, a = _nonpaged_mdl(m, 5)
    va2, b = _nonpaged_mdl(m, 10)
    a.next = b
    assert run(m, copy_to_mdl, a, 2, [memoryview(b"hello"), b"world!"], "test copy") == 11
    assert mdl_chain_bytes(a, 2, 11) == b"helloworld!"
    assert k.mem.read(va1 + 2, 3) == b"hel"
    assert k.mem.read(va2, 8) == b"loworld!"
    assert k.copies.snapshot() == {"test copy": (1, 11)}


def test_chain_view_outside_the_chain_raises_value_error():
    m = new_machine()
    _, a = _nonpaged_mdl(m, 10)
    with pytest.raises(ValueError):
        mdl_chain_views(a, 5, 6)
    with pytest.raises(ValueError):
        mdl_chain_views(a, -1, 2)
    assert mdl_chain_views(a, 10, 0) == []


# --- zero-copy chain views over random chains ------------------------------------------

segment = st.tuples(st.integers(0, PAGE_SIZE - 1), st.integers(1, 3 * PAGE_SIZE))


def _scattered_buffer(k, rng: random.Random, byte_offset: int, length: int) -> int:
    """A virtually contiguous system buffer over physically scattered page frames."""
    pages = (byte_offset + length + PAGE_SIZE - 1) // PAGE_SIZE
    frames = k.phys.allocate(pages + 2, "test")
    rng.shuffle(frames)
    base = k.system_ptes.reserve(pages)
    for i in range(pages):
        k.mem.map_page(base + i * PAGE_SIZE, frames[i])
        k.phys.frame(frames[i])[:] = rng.randbytes(PAGE_SIZE)
    return base + byte_offset


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=st.lists(segment, min_size=1, max_size=5), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_mdl_chain_views_return_exactly_the_described_bytes_without_copying(segments, seed, data):
    m = new_machine()
    k = m.kernel
    rng = random.Random(seed)
    vas = [_scattered_buffer(k, rng, off, length) for off, length in segments]

    def build():
        mdls = []
        for va, (_, length) in zip(vas, segments):
            mdl = IoAllocateMdl(va, length)
            MmProbeAndLockPages(mdl)
            mdls.append(mdl)
        for a, b in zip(mdls, mdls[1:]):
            a.next = b
        return mdls

    mdls = run(m, build)
    total = sum(length for _, length in segments)
    expected = b"".join(k.mem.read(va, length) for va, (_, length) in zip(vas, segments))
    offset = data.draw(st.integers(0, total), label="offset")
    length = data.draw(st.integers(0, total - offset), label="length")

    views = mdl_chain_views(mdls[0], offset, length)
    assert b"".join(views) == expected[offset:offset + length]
    assert sum(len(v) for v in views) == length
    assert all(v.obj is k.phys.data for v in views)  # views over physical memory, not copies
    assert k.copies.total_bytes == 0

    if length:
        pos = data.draw(st.integers(0, length - 1), label="poke")
        # find the view holding byte `pos` and the virtual address it backs
        for v in views:
            if pos < len(v):
                old = v[pos]
                v[pos] = old ^ 0xFF
                break
            pos -= len(v)
        chain_pos = offset + data_pos_to_chain(views, offset, pos, v)
        mdl_index, within = _locate(segments, chain_pos)
        assert k.mem.read(vas[mdl_index] + within, 1)[0] == old ^ 0xFF


def data_pos_to_chain(views, offset, pos_in_view, view) -> int:
    """Chain offset (relative to `offset`) of byte `pos_in_view` of `view`."""
    before = 0
    for v in views:
        if v is view:
            return before + pos_in_view
        before += len(v)
    raise AssertionError("view not found")


def _locate(segments, chain_pos: int) -> tuple[int, int]:
    for i, (_, length) in enumerate(segments):
        if chain_pos < length:
            return i, chain_pos
        chain_pos -= length
    raise AssertionError("position outside the chain")


def test_freeing_an_mdl_twice_bugchecks_bad_pool_caller_7():
    m = new_machine()
    _, mdl = _nonpaged_mdl(m, 64)
    run(m, lambda: (IoFreeMdl(mdl), IoFreeMdl(mdl)))
    info = crash(m)
    assert info.code == 0xC2 and info.params[0] == 0x07
