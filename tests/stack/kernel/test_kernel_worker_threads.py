"""System worker threads are a pool, as in Windows: a work routine that waits runs on an existing
nt!ExpWorkerThread when one is idle (waiting on its queue, WrQueue), and a new one is made only
when none is; a few idle workers are kept, the rest exit."""

from __future__ import annotations

from kernel_harness import new_machine, run

from stack.kernel import STATUS_WAIT_0, IoAllocateWorkItem, IoQueueWorkItem, KeSetEvent, KeWaitForSingleObject, \
    kroutine
from stack.kernel.ke import EXP_IDLE_WORKERS_MAX, KEVENT, DelayedWorkQueue, ExpWorkerPool, WrQueue

WORKER_FRAMES = ["nt!KiStartSystemThread", "nt!PspSystemThreadStartup", "nt!ExpWorkerThread", "nt!IopProcessWorkItem"]
IDLE_FRAMES = ["nt!KiStartSystemThread", "nt!PspSystemThreadStartup", "nt!ExpWorkerThread"]


def _queue(m, routine, context=None) -> None:
    run(m, lambda: IoQueueWorkItem(IoAllocateWorkItem(None), routine, DelayedWorkQueue, context))


def test_a_second_waiting_work_item_runs_on_the_same_worker_thread_which_waited_on_its_queue():
    m = new_machine()
    k = m.kernel
    ran: list[tuple[int, list[str], int]] = []
    ev = KEVENT()

    @kroutine("testdrv")
    def WaitingWork(DeviceObject, Context):
        status = yield KeWaitForSingleObject(ev)
        ran.append((k.current_thread.tid, [f.symbol for f in k.current_thread.frames], status))

    _queue(m, WaitingWork)
    m.scheduler.run_until_idle()
    worker = next(t for t in k.threads if t.name == "worker testdrv!WaitingWork")
    assert worker.start_symbol == "nt!ExpWorkerThread" and worker.win32_start_symbol == "nt!ExpWorkerThread"
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    # Done with the item: the thread did not exit, it waits on its queue for the next one.
    assert not worker.terminated and worker.state == "Waiting" and worker.wait_reason == WrQueue
    assert [f.symbol for f in worker.frames] == IDLE_FRAMES
    threads = len(k.threads)
    _queue(m, WaitingWork)
    m.scheduler.run_until_idle()
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    assert len(k.threads) == threads  # no new thread
    assert [tid for tid, _, _ in ran] == [worker.tid, worker.tid]
    assert all(frames == WORKER_FRAMES + ["testdrv!WaitingWork"] and status == STATUS_WAIT_0
               for _, frames, status in ran)
    workers = ExpWorkerPool.of(k)
    assert (workers.created, workers.reused) == (1, 1)


def test_concurrent_waiting_items_get_a_worker_each_and_only_a_few_idle_workers_stay():
    m = new_machine()
    k = m.kernel
    ev = KEVENT()  # a notification event: one set releases every waiting item
    count = EXP_IDLE_WORKERS_MAX + 4

    @kroutine("testdrv")
    def BlockedWork(DeviceObject, Context):
        yield KeWaitForSingleObject(ev)

    baseline = len(k.threads)
    for _ in range(count):
        _queue(m, BlockedWork)
    m.scheduler.run_until_idle()
    assert len(k.threads) == baseline + count  # all blocked at once: a worker each
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    workers = ExpWorkerPool.of(k)
    assert len(workers.idle) == EXP_IDLE_WORKERS_MAX
    assert len(k.threads) == baseline + EXP_IDLE_WORKERS_MAX  # the others exited
    assert all(t.state == "Waiting" and t.wait_reason == WrQueue for t in workers.idle)


def test_a_plain_work_routine_still_shows_its_own_frame_under_iopprocessworkitem_on_a_reused_worker():
    from stack.kernel.symbols import symbol_of
    m = new_machine()
    k = m.kernel
    ev = KEVENT()
    seen: list[list[str]] = []

    def PlainWork(DeviceObject, Context):  # not a @kroutine: the thread pushes its frame for it
        yield KeWaitForSingleObject(ev)
        seen.append([f.symbol for f in k.current_thread.frames])

    for _ in range(2):  # a new worker, then the same one again
        _queue(m, PlainWork)
        m.scheduler.run_until_idle()
        run(m, KeSetEvent, ev)
        m.scheduler.run_until_idle()
    assert seen == [WORKER_FRAMES + [symbol_of(PlainWork)]] * 2
    assert ExpWorkerPool.of(k).reused == 1


# MS Learn, Bug Check 0xE1 WORKER_THREAD_RETURNED_AT_BAD_IRQL: Arg1 the worker routine's address,
# Arg2 the IRQL it returned at, Arg3 the work item parameter, Arg4 the work item address.  For
# IoQueueWorkItem the executive worker routine is nt!IopProcessWorkItem and its parameter the
# IO_WORKITEM (whose WORK_QUEUE_ITEM is its first field).
def _leaves_dispatch_level(waits: bool):
    from stack.kernel.ke import DISPATCH_LEVEL, KeRaiseIrql
    m = new_machine()
    ev = KEVENT()
    items = []

    @kroutine("testdrv")
    def WaitingBadWork(DeviceObject, Context):
        yield KeWaitForSingleObject(ev)
        KeRaiseIrql(DISPATCH_LEVEL)  # and returns without KeLowerIrql

    @kroutine("testdrv")
    def PlainBadWork(DeviceObject, Context):
        KeRaiseIrql(DISPATCH_LEVEL)

    def queue() -> None:
        items.append(IoAllocateWorkItem(None))
        IoQueueWorkItem(items[0], WaitingBadWork if waits else PlainBadWork, DelayedWorkQueue, None)

    run(m, queue)
    m.scheduler.run_until_idle()
    if waits:
        run(m, KeSetEvent, ev)
        m.scheduler.run_until_idle()
    return m, items[0]


def test_a_waiting_work_routine_that_returns_at_dispatch_level_bug_checks_0xe1():
    from stack.kernel import bugcheck as bc
    from kernel_harness import crash
    m, item = _leaves_dispatch_level(waits=True)
    info = crash(m)
    assert info.code == bc.WORKER_THREAD_RETURNED_AT_BAD_IRQL == 0xE1
    assert info.params == (m.kernel.symbol_address("nt!IopProcessWorkItem"), 2, item.address, item.address)
    assert "testdrv!WaitingBadWork" in info.detail
    assert bc.bugcheck_name(0xE1) == "WORKER_THREAD_RETURNED_AT_BAD_IRQL"
    assert bc.argument_meanings(0xE1, info.params)[1] == "IRQL that the worker thread returned at"


def test_a_plain_work_routine_that_returns_at_dispatch_level_bug_checks_0xe1():
    from kernel_harness import crash
    m, item = _leaves_dispatch_level(waits=False)
    info = crash(m)
    assert (info.code, info.params[1], info.params[3]) == (0xE1, 2, item.address)


def test_an_idle_worker_no_longer_carries_the_name_of_its_last_work_item():
    from stack.kernel.ke import IDLE_WORKER_NAME
    m = new_machine()
    ev = KEVENT()

    @kroutine("testdrv")
    def NamedWork(DeviceObject, Context):
        yield KeWaitForSingleObject(ev)

    _queue(m, NamedWork)
    m.scheduler.run_until_idle()
    worker = next(t for t in m.kernel.threads if t.name == "worker testdrv!NamedWork")
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    assert worker.wait_reason == WrQueue and worker.name == IDLE_WORKER_NAME
