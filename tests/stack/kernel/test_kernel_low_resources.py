"""Allocation failure the Windows way (NULL, no thread, STATUS_INSUFFICIENT_RESOURCES) and the
verifier's low resources simulation; thread teardown; O(1) removal of satisfied wait blocks."""

from __future__ import annotations

from kernel_harness import assert_running, new_machine, run

from stack.kernel import (NonPagedPoolNx, ExAllocatePoolWithTag, ExFreePoolWithTag, IoAllocateIrp, IoAllocateMdl,
                          IoAllocateWorkItem, KeSetEvent, KeWaitForSingleObject, PsCreateSystemThread)
from stack.kernel.ke import KEVENT, KernelMode, relative_ms


def test_pool_exhaustion_returns_null_and_is_counted():
    m = new_machine()
    k = m.kernel
    assert run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 64 << 20, "Huge") == 0  # more than the 4 MiB machine
    assert k.verifier.exhausted["pool"] == 1 and k.verifier.log[-1].tag == "Huge"
    assert_running(m)


def test_every_allocation_class_fails_with_null_when_the_verifier_says_so():
    m = new_machine()
    k = m.kernel
    k.verifier.configure(10_000)
    ran: list[int] = []

    def start(_):
        ran.append(1)
        yield KeWaitForSingleObject(KEVENT(), Timeout=relative_ms(1))

    assert run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 32, "Test") == 0
    assert run(m, IoAllocateIrp, 2) is None
    assert run(m, IoAllocateMdl, 0x1000, 100) is None
    assert run(m, IoAllocateWorkItem, None) is None
    assert run(m, PsCreateSystemThread, start, None) is None
    m.scheduler.run_until_idle()
    assert ran == []  # no thread, so its start routine never ran
    assert dict(k.verifier.injected) == {"pool": 1, "irp": 1, "mdl": 1, "workitem": 1, "thread": 1}
    k.verifier.disable()
    assert run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 32, "Test") != 0
    assert_running(m)


def test_a_tag_filter_fails_only_that_tag():
    m = new_machine()
    k = m.kernel
    k.verifier.configure(10_000, tags=["Bad "], classes=["pool"])
    assert run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 32, "Bad ") == 0
    good = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 32, "Good")
    assert good != 0
    run(m, ExFreePoolWithTag, good, "Good")


def test_an_exited_thread_frees_its_thread_block_stack_and_list_entry():
    m = new_machine()
    k = m.kernel

    def body(_):
        yield KeWaitForSingleObject(KEVENT(), Timeout=relative_ms(1))

    baseline = (len(k.threads), k.pool.usage.get((int.from_bytes(b"Thre", "little"), False)))
    threads = [run(m, PsCreateSystemThread, body, None) for _ in range(50)]
    stacks = {t.stack_limit for t in threads}
    m.scheduler.run_until_idle()
    assert all(t.terminated and t.deleted for t in threads)
    assert len(k.threads) == baseline[0]
    usage = k.pool.usage[(int.from_bytes(b"Thre", "little"), False)]
    assert usage.allocs - usage.frees == (baseline[1].allocs - baseline[1].frees if baseline[1] else 0)
    again = run(m, PsCreateSystemThread, body, None)
    assert again.stack_limit in stacks  # the kernel stack's address range was given back
    m.scheduler.run_until_idle()


def test_waits_that_time_out_leave_no_pile_of_blocks_on_the_object():
    m = new_machine()
    event = KEVENT()

    def waiter(_):
        for _ in range(500):
            yield KeWaitForSingleObject(event, KernelMode, Timeout=relative_ms(1))

    run(m, PsCreateSystemThread, waiter, None)
    m.scheduler.run_until_idle()
    assert len(event.waiters) <= 2 * 32 + 2  # compacted: satisfied blocks do not accumulate
    run(m, KeSetEvent, event)
    assert_running(m)
