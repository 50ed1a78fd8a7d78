"""Part 3: pages and the PFN database, kernel virtual addresses, pools with tags, copies."""

from __future__ import annotations

import pytest
from kernel_harness import assert_running, crash, new_machine, run

from stack.kernel import (PAGE_SIZE, MemoryAccessError, NonPagedPoolNx, PagedPool, ExAllocatePoolWithTag,
                          ExAllocatePoolZero, ExFreePoolWithTag, PsCreateSystemThread, RtlCopyMemory, kroutine)
from stack.kernel.ke import KEVENT, KeWaitForSingleObject
from stack.kernel.pool import POOL_HEADER_SIZE, tag_from_str, tag_to_str


def _canonical(va: int) -> bool:
    top = va >> 47
    return top in (0, (1 << 17) - 1)


def test_kernel_addresses_are_canonical_upper_half_64_bit():
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 64, "Test")
    p = run(m, ExAllocatePoolWithTag, PagedPool, 64, "Test")
    for va in (a, p, k.image_base, k.system_ptes.base, k.stack_region.base, k.idle_thread.address):
        assert va >> 63 == 1, hex(va)
        assert _canonical(va), hex(va)
    assert k.nonpaged_region.contains(a) and k.paged_region.contains(p)


def test_seed_moves_the_regions_but_the_same_seed_repeats_them():
    a, b, c = new_machine(1).kernel, new_machine(1).kernel, new_machine(2).kernel
    assert (a.nonpaged_region.base, a.image_base) == (b.nonpaged_region.base, b.image_base)
    assert (a.nonpaged_region.base, a.paged_region.base, a.image_base) != \
        (c.nonpaged_region.base, c.paged_region.base, c.image_base)


def test_pool_block_is_preceded_by_a_pool_header_with_size_type_and_tag():
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x30, "Echo")
    header = k.mem.read(a - POOL_HEADER_SIZE, POOL_HEADER_SIZE)
    assert header[2] == (0x30 + POOL_HEADER_SIZE) // 16  # BlockSize in 16-byte units
    assert header[3] != 0  # PoolType (+1): allocated
    assert header[4:8] == b"Echo"
    assert tag_to_str(tag_from_str("Echo")) == "Echo"
    assert tag_from_str("Ab") == int.from_bytes(b"Ab  ", "little")
    usage = k.pool.usage[(tag_from_str("Echo"), False)]
    assert (usage.allocs, usage.frees) == (1, 0)
    run(m, ExFreePoolWithTag, a, "Echo")
    assert k.mem.read(a - POOL_HEADER_SIZE, 4)[3] == 0  # PoolType 0: free
    assert (usage.allocs, usage.frees, usage.bytes_in_use) == (1, 1, 0)


def test_pool_memory_reads_back_what_was_written_at_any_offset():
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 3 * PAGE_SIZE, "Big ")
    assert a % PAGE_SIZE == 0  # big pool: whole pages, no header
    payload = bytes(range(256)) * 20
    k.mem.write(a + 0xFF0, payload)  # crosses two page boundaries
    assert k.mem.read(a + 0xFF0, len(payload)) == payload
    assert k.mem.read_u32(a + 0xFF0) == int.from_bytes(payload[:4], "little")
    k.mem.write_u64(a, 0x1122334455667788)
    assert k.mem.read_u64(a) == 0x1122334455667788


def test_allocate_pool_zero_hands_out_zeroed_memory_even_when_reusing_a_freed_block():
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x40, "Dirt")
    k.mem.write(a, b"\xAA" * 0x40)
    run(m, ExFreePoolWithTag, a, "Dirt")
    b = run(m, ExAllocatePoolZero, NonPagedPoolNx, 0x40, "Zero")
    assert b == a  # LIFO reuse of the same size class
    assert k.mem.read(b, 0x40) == bytes(0x40)
    assert k.mem.read(b - POOL_HEADER_SIZE + 4, 4) == b"Zero"


def test_pfn_database_marks_pool_frames_active_and_freed_big_pool_frames_free():
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 2 * PAGE_SIZE, "Big ")
    pfns = k.mem.pfns_for(a, 2 * PAGE_SIZE)
    assert len(pfns) == 2
    for pfn in pfns:
        entry = k.phys.entry(pfn)
        assert entry.state == "Active" and entry.reference_count == 1
        assert entry.pte_address == k.mem.pte_address(a + PAGE_SIZE * pfns.index(pfn))
    run(m, ExFreePoolWithTag, a, "Big ")
    assert all(k.phys.entry(p).state == "Free" for p in pfns)
    assert not k.mem.is_mapped(a)
    with pytest.raises(MemoryAccessError):
        k.phys.entry(k.phys.base_pfn + k.phys.page_count)


def test_reading_an_unmapped_address_raises_memory_access_error_with_the_address():
    m = new_machine()
    k = m.kernel
    bad = k.nonpaged_region.base + 0x7_0000_0000
    with pytest.raises(MemoryAccessError) as err:
        k.mem.read(bad + 8, 4)
    assert err.value.address == bad + 8
    assert f"{bad + 8:#018x}" in str(err.value)
    with pytest.raises(MemoryAccessError):
        k.mem.write(bad, b"x")
    assert k.mem.read_partial(bad - 2, 4) == [None, None, None, None]


def test_read_spanning_into_an_unmapped_page_raises_memory_access_error():
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, PAGE_SIZE, "One ")
    with pytest.raises(MemoryAccessError) as err:
        k.mem.read(a + PAGE_SIZE - 4, 8)
    assert err.value.address == a + PAGE_SIZE


def test_driver_read_of_an_unmapped_address_bugchecks_page_fault_in_nonpaged_area():
    m = new_machine()
    k = m.kernel
    bad = k.nonpaged_region.base + 0x7_0000_0000
    run(m, k.read, bad, 4)
    info = crash(m)
    assert info.code == 0x50 and info.params[:2] == (bad, 0)


def test_driver_access_that_spans_an_unmapped_middle_page_bugchecks_0x50_not_0x1e():
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 3 * PAGE_SIZE, "Hole")
    k.mem.unmap_page(a + PAGE_SIZE)
    run(m, k.read, a, 3 * PAGE_SIZE)
    info = crash(m)
    assert info.code == 0x50 and info.params[0] == a + PAGE_SIZE


def test_views_are_memoryviews_over_physical_memory_not_copies():
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 2 * PAGE_SIZE, "View")
    views = k.mem.views(a + 100, PAGE_SIZE)
    assert all(isinstance(v, memoryview) and v.obj is k.phys.data for v in views)
    views[0][0:3] = b"abc"
    assert k.mem.read(a + 100, 3) == b"abc"


def test_rtl_copy_memory_is_a_counted_copy():
    m = new_machine()
    k = m.kernel
    src = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 100, "Src ")
    dst = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 100, "Dst ")
    k.mem.write(src, b"z" * 100)
    run(m, RtlCopyMemory, dst, src, 100)
    assert k.mem.read(dst, 100) == b"z" * 100
    assert k.copies.snapshot() == {"RtlCopyMemory": (1, 100)}
    assert k.copies.total_bytes == 100


def test_thread_object_does_not_overwrite_the_next_pool_blocks_header():
    m = new_machine()
    k = m.kernel
    ev = KEVENT()

    @kroutine("testdrv")
    def Sleeper(_):
        yield KeWaitForSingleObject(ev)

    def body():
        t = PsCreateSystemThread(Sleeper, None)
        after = ExAllocatePoolWithTag(NonPagedPoolNx, 0x20, "Next")
        return t, after

    t, after = run(m, body)
    k.mem.read(t.address, 0x100)  # flushes the ETHREAD into memory
    assert k.mem.read(after - POOL_HEADER_SIZE + 4, 4) == b"Next"
    block = k.pool.block_containing(t.address)
    assert block.address + block.requested >= t.address + t.struct_size


def test_pool_allocation_of_zero_bytes_bugchecks():
    m = new_machine()
    run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0, "Zero")
    assert crash(m).code == 0xC4


def test_paged_pool_allocation_at_dispatch_bugchecks():
    from stack.kernel import KeRaiseIrqlToDpcLevel
    m = new_machine()
    run(m, lambda: (KeRaiseIrqlToDpcLevel(), ExAllocatePoolWithTag(PagedPool, 8, "Page")))
    info = crash(m)
    assert info.code == 0xC4 and info.params[:2] == (0x01, 2)


def test_freed_small_block_is_recognised_by_address_inside_it_as_bad_caller():
    m = new_machine()
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x40, "Tags")
    run(m, ExFreePoolWithTag, a + 8, "Tags")
    info = crash(m)
    assert info.code == 0xC2 and info.params[:2] == (0x46, a + 8)


def test_pool_usage_survives_many_allocations_and_frees():
    m = new_machine()
    k = m.kernel

    def churn():
        live = []
        for i in range(200):
            live.append(ExAllocatePoolWithTag(NonPagedPoolNx, 16 + (i % 7) * 40, "Chrn"))
            if i % 3 == 0:
                ExFreePoolWithTag(live.pop(0), "Chrn")
        return live

    live = run(m, churn)
    assert_running(m)
    assert len(set(live)) == len(live)
    owned = {b.address for b in k.pool.allocated_blocks() if b.tag_str == "Chrn"}
    assert owned == set(live)


def test_a_kernel_stack_freed_and_taken_again_gets_its_frames_back_last_freed_first_and_zeroed():
    """allocate_stack / free_stack move a stack's pages as one run: the next stack takes the same
    virtual range and the frames in the order one-by-one pops gave (the last freed first)."""
    from stack.kernel.kstack import KERNEL_STACK_PAGES, allocate_stack, free_stack
    m = new_machine()
    k = m.kernel
    base, limit, pfns = allocate_stack(k, "KernelStack")
    assert base - limit == KERNEL_STACK_PAGES * PAGE_SIZE
    assert all(k.phys.entry(p).state == "Active" and k.phys.entry(p).owner == "KernelStack" for p in pfns)
    k.mem.write(limit, b"\xCC" * 64)
    free_stack(k, limit, pfns)
    assert not any(k.mem.is_mapped(limit + i * PAGE_SIZE) for i in range(KERNEL_STACK_PAGES))
    assert all(k.phys.entry(p).state == "Free" and k.phys.entry(p).owner == "" for p in pfns)
    k.stack_region.release(limit, KERNEL_STACK_PAGES)  # as PspThreadDelete gives the range back
    again_base, again_limit, again_pfns = allocate_stack(k, "KernelStack")
    assert (again_base, again_limit) == (base, limit)
    assert again_pfns == list(reversed(pfns))
    assert k.mem.read(limit, 64) == bytes(64)  # a freed stack frame comes back zeroed
    free_stack(k, again_limit, again_pfns)


def test_taking_top_frames_is_all_or_nothing_when_memory_runs_out():
    m = new_machine()
    phys = m.kernel.phys
    phys._top_free.clear()
    phys._top = phys._bump + 2  # two frames left between the bump region and the top
    with pytest.raises(MemoryError):
        phys.allocate_top(3, "KernelStack")
    # The two frames taken on the way went back (free, for the next stack); none is lost.
    assert sorted(phys._top_free) == [phys._bump, phys._bump + 1]
    assert all(phys.entry(phys.base_pfn + i).state == "Free" for i in phys._top_free)
    assert len(phys.allocate_top(2, "KernelStack")) == 2


def test_unmapping_a_run_with_a_hole_unmaps_the_pages_before_it_and_names_the_hole():
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 3 * PAGE_SIZE, "Big ")
    pfns = k.mem.pfns_for(a, 3 * PAGE_SIZE)
    assert k.mem.unmap_page(a + PAGE_SIZE)  # a hole in the middle
    with pytest.raises(MemoryAccessError) as hole:
        k.mem.unmap_pages(a, 3)
    assert hole.value.address == a + PAGE_SIZE
    assert not k.mem.is_mapped(a) and k.mem.is_mapped(a + 2 * PAGE_SIZE)
    assert k.mem.unmap_pages(a + 2 * PAGE_SIZE, 1) == [pfns[2]]
