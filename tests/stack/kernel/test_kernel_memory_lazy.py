"""Emulated RAM backed lazily: an untouched frame costs no host memory, reads as zeros and has a
Free PFN row; a freed big-pool block of more than 256 KiB gives its frames back to the host (they
read as zeros again), a smaller one stays resident and is cleared for its next owner, as is a
recycled frame that becomes a small-pool page."""

from __future__ import annotations

import pytest
from kernel_harness import new_machine, run

from stack.kernel import PAGE_SIZE, ExAllocatePoolWithTag, ExFreePoolWithTag, NonPagedPoolNx
from stack.kernel.memory import NEVER_USED_FRAME, PhysicalMemory


def test_an_untouched_frame_reads_as_zeros_and_its_pfn_row_is_free_with_its_own_number():
    phys = PhysicalMemory(64, base_pfn=0x2000)
    assert bytes(phys.frame(0x2000 + 40)) == bytes(PAGE_SIZE)
    assert phys.pfns[40] is NEVER_USED_FRAME  # nothing built for it yet
    entry = phys.entry(0x2000 + 40)
    assert (entry.pfn, entry.state, entry.color, entry.share_count) == (0x2028, "Free", 40 & 0x3F, 0)
    assert phys.pfns[40] is entry  # materialised once, then the same row


def test_the_shared_never_used_row_refuses_writes():
    with pytest.raises(AttributeError, match="not materialised"):
        NEVER_USED_FRAME.lock_count = 1


def test_allocated_frames_get_their_own_active_rows_in_the_lowest_first_order():
    phys = PhysicalMemory(64, base_pfn=0x2000)
    pfns = phys.allocate(3, "test")
    assert pfns == [0x2000, 0x2001, 0x2002]
    assert [phys.entry(p).state for p in pfns] == ["Active"] * 3
    assert len({id(phys.pfns[i]) for i in range(3)}) == 3


def test_a_freed_large_big_pool_run_goes_back_to_the_host_and_reads_as_zeros():
    m = new_machine()
    k = m.kernel
    size = 65 * PAGE_SIZE  # over 256 KiB (a copy-mode file body): a run that may not be wanted again soon
    va = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, size, "Lazy")
    pfns = k.mem.pfns_for(va, size)
    k.mem.write(va, b"\xAB" * size)
    run(m, ExFreePoolWithTag, va, "Lazy")
    for pfn in pfns:  # the host got the memory back: the frames hold zeros, not the old bytes
        assert bytes(k.phys.frame(pfn)) == bytes(PAGE_SIZE)
        assert k.phys.entry(pfn).state == "Free"


def test_a_freed_small_big_pool_block_stays_resident_and_reads_as_zeros_when_handed_out_again():
    # A socket's 64 KiB buffer freed per request is the next request's buffer: no madvise and no
    # page faults each time, and its next owner still sees zeros, not the old bytes.
    m = new_machine()
    k = m.kernel
    size = 16 * PAGE_SIZE
    va = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, size, "Lazy")
    pfns = k.mem.pfns_for(va, size)
    k.mem.write(va, b"\xAB" * size)
    run(m, ExFreePoolWithTag, va, "Lazy")
    assert all(k.phys.entry(pfn).state == "Free" for pfn in pfns)
    va = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, size, "Lazy")
    assert k.mem.pfns_for(va, size) == pfns
    assert k.mem.read(va, size) == bytes(size)


def test_afds_256_kib_send_copy_stays_resident_when_freed_and_reads_as_zeros_for_its_next_owner():
    # afd copies each 256 KiB user-mode send into a big-pool block it frees on the ACK and allocates
    # again for the next send: no madvise, no compare with the zero page and no 64 page faults per
    # send, and the next owner still sees zeros and gets the same frames (LIFO), as before.
    m = new_machine()
    k = m.kernel
    size = 64 * PAGE_SIZE
    va = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, size, "AfdB")
    pfns = k.mem.pfns_for(va, size)
    k.mem.write(va, b"\xAB" * size)
    run(m, ExFreePoolWithTag, va, "AfdB")
    assert all(k.phys.entry(pfn).state == "Free" for pfn in pfns)
    assert all(bytes(k.phys.frame(pfn)) == b"\xAB" * PAGE_SIZE for pfn in pfns)  # still resident
    assert not k.phys._zero_free  # not given back to the host: cleared when handed out again
    va = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, size, "AfdB")
    assert k.mem.pfns_for(va, size) == pfns
    assert k.mem.read(va, size) == bytes(size)
    usage = k.pool.usage[(int.from_bytes(b"AfdB", "little"), False)]
    assert (usage.allocs, usage.frees, usage.bytes_in_use) == (2, 1, size)


def test_a_fresh_small_pool_page_shows_no_old_bytes_past_its_carved_blocks():
    # A small-pool page is a recycled frame (the most recently freed first: here one of afd's
    # resident 256 KiB send copies).  Its carved blocks are cleared, and so must the rest of it
    # be: `db` past the last block would otherwise show the previous owner's data, and a
    # transcript would depend on what ran before.
    m = new_machine()
    k = m.kernel
    size = 64 * PAGE_SIZE
    va = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, size, "AfdB")
    freed = set(k.mem.pfns_for(va, size))
    k.mem.write(va, b"SECRET!!" * (size // 8))
    run(m, ExFreePoolWithTag, va, "AfdB")
    pages: dict[int, int] = {}  # small-pool page va -> end of its last carved block
    for _ in range(200):
        block = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 200, "Smal")
        page = block & ~(PAGE_SIZE - 1)
        pages[page] = k.pool._small[block].header + k.pool._small[block].block_size - page
    recycled = [page for page in pages if k.mem.pfns_for(page, PAGE_SIZE)[0] in freed]
    assert recycled  # the scenario reaches a recycled frame
    for page in recycled:
        assert k.mem.read(page + pages[page], PAGE_SIZE - pages[page]) == bytes(PAGE_SIZE - pages[page])


def test_a_run_freed_and_allocated_again_reuses_its_frames_not_fresh_ones():
    # As Mm takes pages from its free/zeroed lists first: a 16 KB buffer allocated and freed per
    # request must not walk the never-used frames through all of memory (a PFN row each).
    m = new_machine()
    k = m.kernel
    size = 4 * PAGE_SIZE
    va = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, size, "Lazy")
    first = k.mem.pfns_for(va, size)
    run(m, ExFreePoolWithTag, va, "Lazy")
    rows = sum(1 for e in k.phys.pfns if e is not NEVER_USED_FRAME)
    for _ in range(100):
        va = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, size, "Lazy")
        assert k.mem.pfns_for(va, size) == first  # the same contiguous run, in order
        k.mem.write(va, b"\xCD" * size)
        run(m, ExFreePoolWithTag, va, "Lazy")
    assert sum(1 for e in k.phys.pfns if e is not NEVER_USED_FRAME) == rows
    va = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, size, "Lazy")
    assert bytes(k.mem.read(va, size)) == bytes(size)  # recycled frames are handed out zeroed
