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
