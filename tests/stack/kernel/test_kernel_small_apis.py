"""Emulated kernel routines no sample driver calls yet: they still behave as in wdm.h."""

from __future__ import annotations

from kernel_harness import assert_running, new_machine, run

from stack.kernel import (DISPATCH_LEVEL, PASSIVE_LEVEL, STATUS_WAIT_0, ExAllocatePool2, KeAcquireSpinLock,
                          KeGetCurrentIrql, KeInitializeSemaphore, KeInitializeSpinLock, KeReadStateEvent,
                          KeReleaseSemaphore, KeReleaseSpinLock, KeResetEvent, KeSetEvent, KeWaitForSingleObject,
                          KSEMAPHORE, PsCreateSystemThread, RtlZeroMemory, kroutine)
from stack.kernel.ke import KEVENT, KSPIN_LOCK, NotificationEvent
from stack.kernel.pool import NonPagedPoolNx, PagedPool

POOL_FLAG_NON_PAGED = 0x40
POOL_FLAG_PAGED = 0x100


def test_ke_read_state_event_follows_set_and_reset():
    m = new_machine()
    ev = KEVENT(NotificationEvent)
    assert run(m, KeReadStateEvent, ev) == 0
    run(m, KeSetEvent, ev)
    assert run(m, KeReadStateEvent, ev) == 1
    run(m, KeResetEvent, ev)
    assert run(m, KeReadStateEvent, ev) == 0


@kroutine("testdrv")
def SemaphoreWaiter(ctx: dict):
    status = yield KeWaitForSingleObject(ctx["semaphore"])
    ctx["log"].append(status)
    return status


def test_semaphore_initialised_at_zero_blocks_until_released_and_each_wait_takes_one_count():
    m = new_machine()
    sem = KSEMAPHORE(5, 5)
    log: list[int] = []
    run(m, KeInitializeSemaphore, sem, 0, 2)  # re-initialise: count 0, limit 2
    assert sem.count == 0 and not sem.signaled
    run(m, lambda: [PsCreateSystemThread(SemaphoreWaiter, {"semaphore": sem, "log": log}) for _ in range(2)])
    m.scheduler.run_until_idle()
    assert log == []  # both wait
    assert run(m, KeReleaseSemaphore, sem, 0, 1) == 0  # returns the previous count
    m.scheduler.run_until_idle()
    assert log == [STATUS_WAIT_0]  # one count wakes one waiter
    assert sem.count == 0 and not sem.signaled
    run(m, KeReleaseSemaphore, sem, 0, 1)
    m.scheduler.run_until_idle()
    assert log == [STATUS_WAIT_0, STATUS_WAIT_0]
    assert_running(m)


def test_semaphore_with_a_count_satisfies_a_wait_at_once():
    m = new_machine()
    sem = KSEMAPHORE(0, 1)
    run(m, KeInitializeSemaphore, sem, 1, 1)
    assert sem.signaled
    log: list[int] = []
    run(m, PsCreateSystemThread, SemaphoreWaiter, {"semaphore": sem, "log": log})
    m.scheduler.run_until_idle()
    assert log == [STATUS_WAIT_0] and sem.count == 0 and not sem.signaled


def test_initialised_spin_lock_is_free_and_acquire_release_restores_the_irql():
    m = new_machine()
    lock = KSPIN_LOCK()
    lock.owned = True  # whatever the memory held before
    run(m, KeInitializeSpinLock, lock)
    assert not lock.owned

    def body():
        old = KeAcquireSpinLock(lock)
        held = (lock.owned, KeGetCurrentIrql())
        KeReleaseSpinLock(lock, old)
        return old, held, (lock.owned, KeGetCurrentIrql())

    old, held, after = run(m, body)
    assert old == PASSIVE_LEVEL and held == (True, DISPATCH_LEVEL) and after == (False, PASSIVE_LEVEL)
    assert_running(m)


def test_ex_allocate_pool2_picks_the_pool_from_its_flags_and_zeroes_the_block():
    m = new_machine()
    k = m.kernel
    paged = run(m, ExAllocatePool2, POOL_FLAG_PAGED, 48, "Pg2 ")
    nonpaged = run(m, ExAllocatePool2, POOL_FLAG_NON_PAGED, 48, "Np2 ")
    assert k.pool.pool_type_of(paged) == PagedPool
    assert k.pool.pool_type_of(nonpaged) == NonPagedPoolNx
    assert k.mem.read(paged, 48) == bytes(48) and k.mem.read(nonpaged, 48) == bytes(48)


def test_rtl_zero_memory_clears_exactly_the_range():
    m = new_machine()
    k = m.kernel
    va = run(m, ExAllocatePool2, POOL_FLAG_NON_PAGED, 16, "Zero")
    k.write(va, bytes(range(1, 17)))
    run(m, RtlZeroMemory, va + 4, 8)
    assert k.mem.read(va, 16) == bytes(range(1, 5)) + bytes(8) + bytes(range(13, 17))
