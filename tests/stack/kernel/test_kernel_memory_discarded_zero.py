"""Frames discard() gave back to the host read as zeros, so allocate_zeroed hands them out without
clearing them (a 256 KiB big-pool block - afd's copy of a send - is freed, discarded and allocated
again per send); once handed out again they are ordinary frames: dirtied, freed and recycled, they
are cleared as before."""

from __future__ import annotations

import random

import pytest

from stack.kernel import PAGE_SIZE
from stack.kernel.memory import PhysicalMemory


def test_discarded_frames_come_back_zero_without_being_cleared() -> None:
    phys = PhysicalMemory(16, base_pfn=0x300)
    run = phys.allocate(4, "bigpool")
    for pfn in run:
        phys.frame(pfn)[:] = b"\xC3" * PAGE_SIZE
    phys.free_run(run)
    phys.discard(run)
    assert all(bytes(phys.frame(pfn)) == bytes(PAGE_SIZE) for pfn in run)  # the host gave zeros back
    # A marker behind allocate_zeroed's back (nothing writes a free frame): it survives only if
    # allocate_zeroed leaves known-zero frames alone, as it should.
    phys.frame(run[0])[0] = 0x99
    again = phys.allocate_zeroed(4, "bigpool")
    assert sorted(again) == sorted(run)
    assert phys.frame(run[0])[0] == 0x99
    assert all(bytes(phys.frame(pfn)) == bytes(PAGE_SIZE) for pfn in run[1:])


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

