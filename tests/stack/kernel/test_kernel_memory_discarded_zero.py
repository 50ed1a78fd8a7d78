"""Frames discard() gave back to the host read as zeros, so allocate_zeroed hands them out without
clearing them (a 256 KiB big-pool block - afd's copy of a send - is freed, discarded and allocated
again per send); once handed out again they are ordinary frames: dirtied, freed and recycled, they
are cleared as before."""

from __future__ import annotations

import random

import pytest

from stack.kernel import PAGE_SIZE
from stack.kernel.memory import PhysicalMemory


def test_discarded_frames_come_back_zero_without_being_written() -> None:
    phys = PhysicalMemory(16, base_pfn=0x300)
    run = phys.allocate(4, "bigpool")
    for pfn in run:
        phys.frame(pfn)[:] = b"\xC3" * PAGE_SIZE
    phys.free_run(run)
    phys.discard(run)
    assert all(bytes(phys.frame(pfn)) == bytes(PAGE_SIZE) for pfn in run)  # the host gave zeros back
    again = phys.allocate_zeroed(4, "bigpool")
    assert sorted(again) == sorted(run)
    assert all(bytes(phys.frame(pfn)) == bytes(PAGE_SIZE) for pfn in again)
    assert all(pfn - 0x300 not in phys._zero_free for pfn in again)  # their new owner may write them


def test_a_write_into_a_free_discarded_frame_never_reaches_its_next_owner() -> None:
    # A stale MDL or view over freed big pool can still write it (a late DMA, a driver's
    # use-after-free); allocate_zeroed must not trust "known zero" over the bytes themselves.
    phys = PhysicalMemory(16, base_pfn=0x300)
    run = phys.allocate(4, "bigpool")
    phys.free_run(run)
    phys.discard(run)
    phys.frame(run[2])[100:108] = b"\xAB" * 8
    again = phys.allocate_zeroed(4, "bigpool")
    assert sorted(again) == sorted(run)
    assert all(bytes(phys.frame(pfn)) == bytes(PAGE_SIZE) for pfn in again)


def test_a_discarded_frame_handed_out_dirtied_and_freed_again_is_cleared_next_time() -> None:
    phys = PhysicalMemory(16, base_pfn=0x300)
    run = phys.allocate(2, "bigpool")
    phys.free_run(run)
    phys.discard(run)
    taken = phys.allocate(2, "test")  # not zeroed: a small-pool page, say
    for pfn in taken:
        phys.frame(pfn)[:] = b"\x77" * PAGE_SIZE
    phys.free_run(taken)  # freed without a discard: dirty
    again = phys.allocate_zeroed(2, "bigpool")
    assert sorted(again) == sorted(taken)
    assert all(bytes(phys.frame(pfn)) == bytes(PAGE_SIZE) for pfn in again)


@pytest.mark.parametrize("seed", range(30))
def test_allocate_zeroed_is_zero_under_any_mix_of_allocations_frees_discards_and_writes(seed) -> None:
    rng = random.Random(seed)
    phys = PhysicalMemory(64, base_pfn=0x400)
    held: list[list[int]] = []
    for _ in range(200):
        op = rng.random()
        if op < 0.35 and phys._bump < 48:
            count = rng.randrange(1, 6)
            zeroed = rng.random() < 0.5
            pfns = phys.allocate_zeroed(count, "bigpool") if zeroed else phys.allocate(count, "test")
            if zeroed:
                assert all(bytes(phys.frame(pfn)) == bytes(PAGE_SIZE) for pfn in pfns)
            for pfn in pfns:  # the owner writes some of them
                if rng.random() < 0.7:
                    phys.frame(pfn)[rng.randrange(PAGE_SIZE)] = rng.randrange(1, 256)
            held.append(pfns)
        elif held:
            pfns = held.pop(rng.randrange(len(held)))
            phys.free_run(pfns)
            if rng.random() < 0.5:
                phys.discard(pfns)

