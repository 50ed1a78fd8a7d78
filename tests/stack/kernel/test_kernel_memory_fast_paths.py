"""The cheap paths of memory and pool (one-page writes, spans, known-zero frames, O(1) free)
must give exactly what the general paths give."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from kernel_harness import crash, new_machine, run

from stack.kernel import PAGE_SIZE, ExAllocatePoolWithTag, ExFreePoolWithTag, MemoryAccessError, NonPagedPoolNx
from stack.kernel.memory import AddressSpace, PhysicalMemory
from stack.kernel.pool import BAD_POOL_CALLER, BPC_INVALID_ADDRESS, POOL_HEADER_SIZE, tag_from_str

BASE_VA = 0xFFFF_A000_0000_0000


def _space(pages: int = 8, pfns: list[int] | None = None) -> AddressSpace:
    """An address space with `pages` virtual pages over the given (possibly scattered) frames."""
    phys = PhysicalMemory(32, base_pfn=0x100)
    space = AddressSpace(phys)
    frames = pfns if pfns is not None else phys.allocate(pages, "test")
    for i, pfn in enumerate(frames):
        space.map_page(BASE_VA + i * PAGE_SIZE, pfn)
    return space


@settings(max_examples=60, deadline=None)
@given(offset=st.integers(0, 3 * PAGE_SIZE), length=st.integers(1, 2 * PAGE_SIZE))
def test_write_then_read_round_trips_at_any_offset_over_scattered_frames(offset: int, length: int) -> None:
    space = _space(pfns=[0x105, 0x101, 0x102, 0x110, 0x103, 0x104])  # runs and gaps in PFN order
    data = bytes((offset + i) & 0xFF for i in range(length))
    space.write(BASE_VA + offset, data)
    assert space.read(BASE_VA + offset, length) == data
    assert b"".join(space.views(BASE_VA + offset, length)) == data
    # Nothing outside the range was touched.
    assert space.read(BASE_VA, offset) == bytes(offset)


def test_one_page_write_to_an_unmapped_page_raises_memory_access_error_with_the_address() -> None:
    space = _space(pages=1)
    with pytest.raises(MemoryAccessError) as err:
        space.write(BASE_VA + PAGE_SIZE + 0x10, b"abc")
    assert err.value.address == BASE_VA + PAGE_SIZE + 0x10


def test_empty_write_and_view_touch_nothing_even_when_unmapped() -> None:
    space = _space(pages=1)
    space.write(BASE_VA + 5 * PAGE_SIZE, b"")
    assert space.views(BASE_VA + 5 * PAGE_SIZE, 0) == []


def test_pfns_for_names_the_first_faulting_byte_of_a_hole_in_the_middle() -> None:
    space = _space(pages=4)
    space.unmap_page(BASE_VA + 2 * PAGE_SIZE)
    assert space.pfns_for(BASE_VA + 0x800, PAGE_SIZE) == [space.translate(BASE_VA), space.translate(BASE_VA + PAGE_SIZE)]
    with pytest.raises(MemoryAccessError) as err:
        space.pfns_for(BASE_VA + 0x800, 3 * PAGE_SIZE)
    assert err.value.address == BASE_VA + 2 * PAGE_SIZE
    assert space.pfns_for(BASE_VA, 0) == []


def test_span_is_one_writable_view_inside_a_page_and_refuses_a_page_crossing() -> None:
    space = _space(pages=2)
    view = space.span(BASE_VA + 0xFF0, 0x10)
    view[:] = b"x" * 0x10
    assert space.read(BASE_VA + 0xFF0, 0x10) == b"x" * 0x10
    with pytest.raises(ValueError):
        space.span(BASE_VA + 0xFF8, 0x10)
    with pytest.raises(MemoryAccessError):
        space.span(BASE_VA + 4 * PAGE_SIZE, 8)


def test_allocate_zeroed_clears_a_recycled_frame_but_hands_fresh_ones_out_untouched() -> None:
    phys = PhysicalMemory(8, base_pfn=0x200)
    [dirty] = phys.allocate(1, "test")
    phys.frame(dirty)[:] = b"\xAA" * PAGE_SIZE
    phys.free(dirty)
    [again] = phys.allocate_zeroed(1, "bigpool")
    assert again == dirty and bytes(phys.frame(again)) == bytes(PAGE_SIZE)
    assert phys.entry(again).owner == "bigpool" and phys.entry(again).state == "Active"
    fresh = phys.allocate_zeroed(3, "bigpool")
    assert all(bytes(phys.frame(pfn)) == bytes(PAGE_SIZE) for pfn in fresh)


def test_big_pool_block_is_zero_even_over_frames_a_freed_block_dirtied() -> None:
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 2 * PAGE_SIZE, "Big ")
    k.mem.write(a, b"\x5A" * (2 * PAGE_SIZE))
    run(m, ExFreePoolWithTag, a, "Big ")
    b = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 2 * PAGE_SIZE, "Big ")
    assert k.mem.read(b, 2 * PAGE_SIZE) == bytes(2 * PAGE_SIZE)


def test_reused_small_block_gets_a_fresh_header_and_a_zeroed_body() -> None:
    m = new_machine()
    k = m.kernel
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x40, "Aaaa")
    k.mem.write(a, b"\xEE" * 0x40)
    run(m, ExFreePoolWithTag, a, "Aaaa")
    b = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x40, "Bbbb")
    assert b == a  # LIFO reuse of the same block
    header = k.mem.read(b - POOL_HEADER_SIZE, POOL_HEADER_SIZE)
    assert header[2] == (0x40 + POOL_HEADER_SIZE) // 16 and header[3] == NonPagedPoolNx % 256 + 1
    assert header[4:8] == b"Bbbb" and header[8:] == bytes(8)
    assert k.mem.read(b, 0x40) == bytes(0x40)


def test_freeing_an_address_inside_a_small_block_bugchecks_invalid_address() -> None:
    m = new_machine()
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x40, "Test")
    run(m, ExFreePoolWithTag, a + 8, "Test")
    info = crash(m)
    assert (info.code, info.params[0], info.params[1]) == (BAD_POOL_CALLER, BPC_INVALID_ADDRESS, a + 8)


def test_tag_values_are_the_same_from_str_bytes_and_int_and_repeat_from_the_cache() -> None:
    assert tag_from_str("Irp ") == tag_from_str(b"Irp ") == tag_from_str(int.from_bytes(b"Irp ", "little"))
    assert tag_from_str("Irp ") == tag_from_str("Irp ")  # second lookup comes from the cache
    assert tag_from_str("TooLong") == int.from_bytes(b"TooL", "little")
    assert tag_from_str(-1) == 0xFFFFFFFF


def test_entries_of_a_run_are_the_same_rows_entry_gives_built_on_first_use_and_out_of_range_raises() -> None:
    phys = PhysicalMemory(32, base_pfn=0x100)
    used = phys.allocate(3, "test")
    never = [0x100 + 20, 0x100 + 21]  # frames never handed out: their rows do not exist yet
    assert phys.entries(used) == [phys.entry(pfn) for pfn in used]
    rows = phys.entries(never)
    assert [row.pfn for row in rows] == never and all(a is b for a, b in zip(rows, [phys.entry(p) for p in never]))
    with pytest.raises(MemoryAccessError):
        phys.entries([used[0], 0x100 + 32])
    with pytest.raises(MemoryAccessError):
        phys.entries([0xFF])


@settings(max_examples=40, deadline=None)
@given(offset=st.integers(0, 2 * PAGE_SIZE), length=st.integers(1, 5 * PAGE_SIZE),
       order=st.permutations(list(range(0x100, 0x108))))
def test_pfns_for_is_each_page_translated_in_turn(offset: int, length: int, order: list[int]) -> None:
    # pfns_for looks every PTE up at once (afd locks 64 pages per 256 KiB send); it must give
    # what translating each page of the range one by one gives, over any order of frames.
    space = _space(pfns=order)
    va = BASE_VA + offset
    last = (va + length - 1) & ~(PAGE_SIZE - 1)
    expected = [space.translate(page) for page in range(va & ~(PAGE_SIZE - 1), last + 1, PAGE_SIZE)]
    assert space.pfns_for(va, length) == expected


def _frames_view_per_page(phys: PhysicalMemory, pfns: list[int], offset: int, length: int) -> list[bytes]:
    """frames_view's general walk: consecutive frames merged into one run, page by page."""
    out, page, within = [], offset // PAGE_SIZE, offset % PAGE_SIZE
    while length > 0:
        run = 1
        while page + run < len(pfns) and pfns[page + run] == pfns[page] + run:
            run += 1
        take = min(run * PAGE_SIZE - within, length)
        start = (pfns[page] - phys.base_pfn) * PAGE_SIZE + within
        out.append(bytes(phys.view[start:start + take]))
        length -= take
        page += run
        within = 0
    return out


# Steps from one frame to the next: mostly +1 (a run), with breaks that keep a run's end frames
# right while its middle is wrong (repeated frames, out of order: [a, a+2, a+2], [a, a+2, a+1]).
_STEPS = st.lists(st.sampled_from([1, 1, 1, 2, 0, -1]), min_size=9, max_size=9)


@settings(max_examples=120, deadline=None)
@given(offset=st.integers(0, 3 * PAGE_SIZE), length=st.integers(1, 5 * PAGE_SIZE), steps=_STEPS)
@example(offset=0, length=3 * PAGE_SIZE, steps=[2, 0] + [1] * 7)  # [a, a+2, a+2]: the ends of a run
@example(offset=0, length=3 * PAGE_SIZE, steps=[0, 2] + [1] * 7)  # [a, a, a+2]
@example(offset=100, length=3 * PAGE_SIZE, steps=[2, -1, 2] + [1] * 6)  # [a, a+2, a+1, a+3]
def test_frames_view_of_one_run_of_frames_checked_in_c_is_the_page_walk_s_views(offset, length, steps) -> None:
    # A locked buffer is usually one run of consecutive frames: frames_view checks that in C and
    # returns one view; any break in the run takes the walk, even one whose end frames are where
    # a run's would be.  Same views, same bytes, either way.
    phys = PhysicalMemory(32, base_pfn=0x100)
    for i in range(32):
        phys.frame(0x100 + i)[:] = bytes([i + 1]) * PAGE_SIZE
    pfns = [0x10A]
    for step in steps:
        pfns.append(pfns[-1] + step)
    views = phys.frames_view(pfns, offset, length)
    assert [bytes(v) for v in views] == _frames_view_per_page(phys, pfns, offset, length)
    first, last = offset // PAGE_SIZE, (offset + length - 1) // PAGE_SIZE
    if pfns[first:last + 1] == list(range(pfns[first], pfns[first] + last - first + 1)):
        assert len(views) == 1


@pytest.mark.parametrize("seed", range(20))
def test_a_recycled_run_cleared_in_one_slice_is_zero_and_its_neighbours_keep_their_bytes(seed) -> None:
    # allocate_zeroed clears a recycled run of consecutive frames with one slice assignment
    # instead of a page at a time: every byte of the run reads zero, and not one byte beside it
    # changes (frames before and after it keep what their owners wrote).
    import random
    rng = random.Random(seed)
    phys = PhysicalMemory(64, base_pfn=0x200)
    before = phys.allocate(2, "test")
    count = rng.randint(2, 20)
    run_pfns = phys.allocate(count, "bigpool")
    after = phys.allocate(2, "test")
    for pfn in before + run_pfns + after:
        phys.frame(pfn)[:] = bytes([rng.randrange(1, 256)]) * PAGE_SIZE
    kept = {pfn: bytes(phys.frame(pfn)) for pfn in before + after}
    phys.free_run(run_pfns)
    again = phys.allocate_zeroed(count, "bigpool")
    assert again == run_pfns  # the same run, back in order
    assert all(bytes(phys.frame(pfn)) == bytes(PAGE_SIZE) for pfn in again)
    assert {pfn: bytes(phys.frame(pfn)) for pfn in before + after} == kept


@pytest.mark.parametrize("pfns, offset, length", [
    ([0xFF], 0, 16),                        # one page, the frame below physical memory
    ([0x120], 100, 16),                     # one page, the first frame past it
    ([0xFE, 0xFF, 0x100], 0, 3 * PAGE_SIZE),  # one run that starts below it
    ([0x11E, 0x11F, 0x120], 0, 3 * PAGE_SIZE),  # one run that ends past it
    ([0x105, 0x11F, 0x120], 0, 3 * PAGE_SIZE),  # the page walk, its last run past it
    ([0x105, 0xFF, 0x107], 10, 2 * PAGE_SIZE),  # the page walk, a frame below it
])
def test_frames_view_of_a_frame_outside_physical_memory_is_a_memory_access_error(pfns, offset, length) -> None:
    # A slice past the mapping comes back short and one below it wraps to its end: like any other
    # access to memory that is not there, it raises instead of returning the wrong bytes.
    phys = PhysicalMemory(32, base_pfn=0x100)
    with pytest.raises(MemoryAccessError, match="not in physical memory"):
        phys.frames_view(pfns, offset, length)


def test_frames_view_up_to_the_last_frame_of_physical_memory_is_allowed() -> None:
    phys = PhysicalMemory(32, base_pfn=0x100)
    phys.frame(0x11F)[:] = b"\x5A" * PAGE_SIZE
    assert [bytes(v) for v in phys.frames_view([0x11E, 0x11F], PAGE_SIZE, PAGE_SIZE)] == [b"\x5A" * PAGE_SIZE]
    assert [len(v) for v in phys.frames_view([0x100, 0x11F, 0x120], 0, 2 * PAGE_SIZE)] == [PAGE_SIZE, PAGE_SIZE]
