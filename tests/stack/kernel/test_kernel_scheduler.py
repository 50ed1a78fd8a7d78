"""Part 1: the virtual clock, the deterministic loop, threads, events, timers, DPCs, work items."""

from __future__ import annotations

from kernel_harness import assert_running, crash, new_machine, record_events, run

from stack.kernel import (DISPATCH_LEVEL, NS_PER_MS, PASSIVE_LEVEL, STATUS_SUCCESS, STATUS_TIMEOUT, STATUS_WAIT_0,
                          KeAcquireSpinLock, KeCancelTimer, KeDelayExecutionThread, KeGetCurrentIrql,
                          KeInsertQueueDpc, KeReleaseSpinLock, KeResetEvent, KeSetEvent, KeSetTimer, KeSetTimerEx,
                          KeWaitForMultipleObjects, KeWaitForSingleObject, IoAllocateWorkItem, IoFreeWorkItem,
                          IoQueueWorkItem, PsCreateSystemThread, kroutine)
from stack.kernel.events import DpcQueued, DpcRun, ThreadSwitched, TimerFired, WorkItemRun
from stack.kernel.ke import (KDPC, KEVENT, KSPIN_LOCK, KTIMER, DelayedWorkQueue, NotificationEvent,
                             SynchronizationEvent, relative_ms)

# --- the loop ----------------------------------------------------------------------


def test_clock_starts_at_zero_and_jumps_to_the_next_event_time():
    m = new_machine()
    s = m.scheduler
    seen: list[int] = []
    s.call_later(5 * NS_PER_MS, None, lambda: seen.append(s.now_ns))
    assert s.now_ns == 0
    assert s.run_until_idle() == 1
    assert seen == [5 * NS_PER_MS]
    assert s.now_ns == 5 * NS_PER_MS
    assert s.idle


def test_events_due_at_the_same_time_run_in_insertion_order():
    m = new_machine()
    s = m.scheduler
    order: list[str] = []
    s.call_at(100, None, order.append, "b1")
    s.call_at(50, None, order.append, "a")
    s.call_at(100, None, order.append, "b2")
    s.call_at(100, None, order.append, "b3")
    s.run_until_idle()
    assert order == ["a", "b1", "b2", "b3"]


def test_run_one_runs_exactly_one_event_and_reports_when_nothing_is_left():
    m = new_machine()
    s = m.scheduler
    order: list[int] = []
    for i in range(3):
        s.call_soon(None, order.append, i)
    assert s.run_one() is True
    assert order == [0]
    assert s.events_run == 1
    assert s.run_one() and s.run_one()
    assert s.run_one() is False
    assert order == [0, 1, 2]


def test_run_until_stops_at_the_time_and_sets_the_clock_to_it():
    m = new_machine()
    s = m.scheduler
    order: list[int] = []
    for t in (10, 20, 30):
        s.call_at(t, None, order.append, t)
    assert s.run_until(20) == 2
    assert order == [10, 20]
    assert s.now_ns == 20
    assert s.run_until(25) == 0
    assert s.now_ns == 25
    s.run_for(100)
    assert order == [10, 20, 30] and s.now_ns == 125


def test_cancelled_event_never_runs_and_does_not_count():
    m = new_machine()
    s = m.scheduler
    order: list[str] = []
    ev = s.call_later(10, None, order.append, "cancelled")
    s.call_later(20, None, order.append, "kept")
    ev.cancel()
    assert s.peek_time() == 20
    assert s.run_until_idle() == 1
    assert order == ["kept"]


def test_event_queued_in_the_past_runs_now_not_backwards():
    m = new_machine()
    s = m.scheduler
    s.run_until(1000)
    seen: list[int] = []
    s.call_at(10, None, lambda: seen.append(s.now_ns))
    s.run_until_idle()
    assert seen == [1000]


def test_run_in_runs_earlier_queued_events_first_and_returns_the_result():
    m = new_machine()
    order: list[str] = []
    m.scheduler.call_soon(m.kernel, order.append, "earlier")
    assert run(m, lambda: order.append("mine") or 42) == 42
    assert order == ["earlier", "mine"]


def test_run_in_code_runs_at_passive_level_without_a_thread():
    m = new_machine()
    assert run(m, lambda: (KeGetCurrentIrql(), m.kernel.current_thread)) == (PASSIVE_LEVEL, None)


def test_run_while_stops_when_the_condition_turns_false():
    m = new_machine()
    s = m.scheduler
    hits: list[int] = []
    for t in range(1, 10):
        s.call_at(t * 10, None, hits.append, t)
    assert s.run_while(lambda: len(hits) < 4) is True
    assert hits == [1, 2, 3, 4]


# --- threads and events -----------------------------------------------------------------


@kroutine("testdrv")
def WaitingThread(ctx: dict):
    ctx["log"].append(("start", KeGetCurrentIrql()))
    status = yield KeWaitForSingleObject(ctx["event"], Timeout=ctx.get("timeout"))
    ctx["log"].append(("woke", status, ctx["m"].scheduler.now_ns))
    return status


def _start_waiters(m, event, count: int, timeout=None) -> tuple[list, list]:
    log: list = []
    threads = run(m, lambda: [PsCreateSystemThread(WaitingThread, {"event": event, "log": log, "m": m,
                                                                    "timeout": timeout}) for _ in range(count)])
    m.scheduler.run_until_idle()
    assert_running(m)
    return threads, log


def test_system_thread_runs_at_passive_and_blocks_on_an_unsignaled_event():
    m = new_machine()
    ev = KEVENT(NotificationEvent)
    (t,), log = _start_waiters(m, ev, 1)
    assert log == [("start", PASSIVE_LEVEL)]
    assert t.state == "Waiting" and t.wait is not None
    assert m.scheduler.idle


def test_set_event_wakes_the_waiter_as_a_separate_scheduler_event():
    m = new_machine()
    ev = KEVENT(NotificationEvent)
    (t,), log = _start_waiters(m, ev, 1)
    events = record_events(m)
    m.scheduler.run_until(3 * NS_PER_MS)
    run(m, KeSetEvent, ev)
    assert log == [("start", 0)]  # not yet: the resume is its own event
    assert t.state == "Ready"
    m.scheduler.run_until_idle()
    assert log[-1] == ("woke", STATUS_WAIT_0, 3 * NS_PER_MS)
    assert t.state == "Terminated" and t.exit_status == STATUS_WAIT_0
    assert any(isinstance(e, ThreadSwitched) and e.thread == t.address for e in events)


def test_notification_event_wakes_every_waiter_and_stays_signaled():
    m = new_machine()
    ev = KEVENT(NotificationEvent)
    threads, log = _start_waiters(m, ev, 3)
    assert run(m, KeSetEvent, ev) == 0  # previous state
    m.scheduler.run_until_idle()
    assert [entry[0] for entry in log].count("woke") == 3
    assert ev.signaled
    assert run(m, KeSetEvent, ev) == 1
    assert run(m, KeResetEvent, ev) == 1
    assert not ev.signaled


def test_synchronization_event_wakes_one_waiter_per_set_and_auto_resets():
    m = new_machine()
    ev = KEVENT(SynchronizationEvent)
    threads, log = _start_waiters(m, ev, 3)
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    woke = [t for t in threads if t.terminated]
    assert woke == [threads[0]]  # first come, first served
    assert not ev.signaled
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    assert [t for t in threads if t.terminated] == threads[:2]


def test_synchronization_event_set_with_no_waiter_satisfies_exactly_one_later_wait():
    m = new_machine()
    ev = KEVENT(SynchronizationEvent)
    run(m, KeSetEvent, ev)
    threads, log = _start_waiters(m, ev, 2)
    assert [t.terminated for t in threads] == [True, False]
    assert not ev.signaled


def test_wait_on_a_signaled_event_continues_within_the_same_event():
    m = new_machine()
    ev = KEVENT(NotificationEvent, True)
    log: list = []
    run(m, PsCreateSystemThread, WaitingThread, {"event": ev, "log": log, "m": m})
    assert m.scheduler.run_one()  # the thread start
    assert log[-1] == ("woke", STATUS_WAIT_0, 0)


def test_wait_with_timeout_returns_status_timeout_at_the_virtual_deadline():
    m = new_machine()
    ev = KEVENT(NotificationEvent)
    (t,), log = _start_waiters(m, ev, 1, timeout=relative_ms(250))
    assert log[-1] == ("woke", STATUS_TIMEOUT, 250 * NS_PER_MS)
    assert not ev.waiters  # the timed-out wait left the event's wait list
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    assert_running(m)


def test_wait_satisfied_before_timeout_cancels_the_timeout():
    m = new_machine()
    ev = KEVENT(NotificationEvent)
    log: list = []
    run(m, PsCreateSystemThread, WaitingThread, {"event": ev, "log": log, "m": m, "timeout": relative_ms(100)})
    m.scheduler.run_until(10 * NS_PER_MS)
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    assert log[-1] == ("woke", STATUS_WAIT_0, 10 * NS_PER_MS)
    assert m.scheduler.now_ns == 10 * NS_PER_MS  # no stray timeout event advanced the clock


def test_wait_for_multiple_objects_returns_the_index_of_the_signaled_one():
    m = new_machine()
    a, b = KEVENT(), KEVENT()
    got: list[int] = []

    @kroutine("testdrv")
    def TwoWaiter(_):
        got.append((yield KeWaitForMultipleObjects([a, b])))

    run(m, PsCreateSystemThread, TwoWaiter, None)
    m.scheduler.run_until_idle()
    run(m, KeSetEvent, b)
    m.scheduler.run_until_idle()
    assert got == [STATUS_WAIT_0 + 1]
    assert not a.waiters


def test_delay_execution_sleeps_for_virtual_time_only():
    m = new_machine()
    times: list[int] = []

    @kroutine("testdrv")
    def Sleeper(_):
        yield KeDelayExecutionThread(Interval=relative_ms(40))
        times.append(m.scheduler.now_ns)

    run(m, PsCreateSystemThread, Sleeper, None)
    m.scheduler.run_until_idle()
    assert times == [40 * NS_PER_MS]


def test_waiting_on_a_thread_object_returns_when_it_exits():
    m = new_machine()
    ev = KEVENT()
    order: list[str] = []

    @kroutine("testdrv")
    def Child(_):
        yield KeWaitForSingleObject(ev)
        order.append("child done")
        return 0x1234

    @kroutine("testdrv")
    def Parent(_):
        child = PsCreateSystemThread(Child, None)
        yield KeWaitForSingleObject(child)
        order.append(f"parent saw {child.exit_status:#x}")

    run(m, PsCreateSystemThread, Parent, None)
    m.scheduler.run_until_idle()
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    assert order == ["child done", "parent saw 0x1234"]


def test_plain_start_routine_runs_on_the_new_thread_not_in_its_creator():
    m = new_machine()
    seen: list = []

    @kroutine("testdrv")
    def PlainStart(_):
        seen.append(m.kernel.current_thread)
        return STATUS_SUCCESS

    t = run(m, PsCreateSystemThread, PlainStart, None)
    assert seen == []
    m.scheduler.run_until_idle()
    assert seen == [t] and t.terminated


def test_thread_yielding_something_other_than_a_wait_bugchecks_0x1e():
    m = new_machine()

    @kroutine("testdrv")
    def BadThread(_):
        yield 5

    run(m, PsCreateSystemThread, BadThread, None)
    m.scheduler.run_until_idle()
    assert crash(m).code == 0x1E


# --- timers, DPCs, work items -------------------------------------------------------


@kroutine("testdrv")
def RecordingDpc(dpc, context, arg1, arg2):
    context["runs"].append((KeGetCurrentIrql(), context["m"].scheduler.now_ns, arg1, arg2,
                            context["m"].kernel.current_thread))


def test_dpc_runs_later_at_dispatch_level_as_its_own_event():
    m = new_machine()
    ctx = {"runs": [], "m": m}
    dpc = KDPC(RecordingDpc, ctx)
    events = record_events(m)
    assert run(m, KeInsertQueueDpc, dpc, "a1", "a2") is True
    assert ctx["runs"] == []
    m.scheduler.run_until_idle()
    assert ctx["runs"] == [(DISPATCH_LEVEL, 0, "a1", "a2", None)]
    kinds = [type(e) for e in events if isinstance(e, (DpcQueued, DpcRun))]
    assert kinds == [DpcQueued, DpcRun]


def test_dpc_queued_twice_before_it_runs_runs_once():
    m = new_machine()
    ctx = {"runs": [], "m": m}
    dpc = KDPC(RecordingDpc, ctx)
    assert run(m, lambda: (KeInsertQueueDpc(dpc), KeInsertQueueDpc(dpc))) == (True, False)
    m.scheduler.run_until_idle()
    assert len(ctx["runs"]) == 1


def test_set_timer_signals_the_timer_and_queues_its_dpc_at_the_due_time():
    m = new_machine()
    ctx = {"runs": [], "m": m}
    timer, dpc = KTIMER(), KDPC(RecordingDpc, ctx)
    events = record_events(m)
    run(m, KeSetTimer, timer, relative_ms(30), dpc)
    m.scheduler.run_until(29 * NS_PER_MS)
    assert not timer.signaled and ctx["runs"] == []
    m.scheduler.run_until_idle()
    assert timer.signaled
    assert ctx["runs"] == [(DISPATCH_LEVEL, 30 * NS_PER_MS, None, None, None)]
    fired = [e for e in events if isinstance(e, TimerFired)]
    assert [e.time_ns for e in fired] == [30 * NS_PER_MS]


def test_thread_waiting_on_a_timer_wakes_when_it_expires():
    m = new_machine()
    timer = KTIMER()
    log: list = []
    run(m, KeSetTimer, timer, relative_ms(7))
    run(m, PsCreateSystemThread, WaitingThread, {"event": timer, "log": log, "m": m})
    m.scheduler.run_until_idle()
    assert log[-1] == ("woke", STATUS_WAIT_0, 7 * NS_PER_MS)


def test_cancelled_timer_never_fires_and_periodic_timer_repeats():
    m = new_machine()
    ctx = {"runs": [], "m": m}
    once, periodic = KTIMER(), KTIMER()
    run(m, KeSetTimer, once, relative_ms(5), KDPC(RecordingDpc, ctx))
    assert run(m, KeCancelTimer, once) is True
    run(m, KeSetTimerEx, periodic, relative_ms(10), 10, KDPC(RecordingDpc, ctx))
    m.scheduler.run_until(35 * NS_PER_MS)
    assert [r[1] for r in ctx["runs"]] == [10 * NS_PER_MS, 20 * NS_PER_MS, 30 * NS_PER_MS]
    run(m, KeCancelTimer, periodic)
    m.scheduler.run_until_idle()
    assert len(ctx["runs"]) == 3


def test_work_item_runs_at_passive_level_with_its_device_and_context():
    m = new_machine()
    seen: list = []
    device = object()

    @kroutine("testdrv")
    def WorkRoutine(DeviceObject, Context):
        seen.append((DeviceObject, Context, KeGetCurrentIrql()))

    events = record_events(m)

    def queue_from_dpc(dpc, ctx, a1, a2):
        item = IoAllocateWorkItem(device)
        IoQueueWorkItem(item, WorkRoutine, DelayedWorkQueue, "ctx")
        ctx.append(item)

    items: list = []
    run(m, KeInsertQueueDpc, KDPC(queue_from_dpc, items))
    m.scheduler.run_until_idle()
    assert seen == [(device, "ctx", PASSIVE_LEVEL)]
    assert any(isinstance(e, WorkItemRun) and e.routine == "testdrv!WorkRoutine" for e in events)
    run(m, IoFreeWorkItem, items[0])
    assert_running(m)


# A system worker thread running an IoQueueWorkItem routine, outermost first, as published `k`
# output of a worker thread reads it bottom up (... driver!Routine, nt!IopProcessWorkItem+0x..,
# nt!ExpWorkerThread+0x.., nt!PspSystemThreadStartup+0x.., nt!KiStartSystemThread+0x..).
WORKER_FRAMES = ["nt!KiStartSystemThread", "nt!PspSystemThreadStartup", "nt!ExpWorkerThread",
                 "nt!IopProcessWorkItem"]


def test_work_item_routine_runs_under_exp_worker_thread_and_iop_process_work_item():
    m = new_machine()
    stacks: list = []

    @kroutine("testdrv")
    def PeekWork(DeviceObject, Context):
        stacks.append([f.symbol for f in m.kernel.frames])

    run(m, lambda: IoQueueWorkItem(IoAllocateWorkItem(None), PeekWork, DelayedWorkQueue, None))
    m.scheduler.run_until_idle()
    assert stacks == [WORKER_FRAMES + ["testdrv!PeekWork"]]


def test_work_item_routine_that_waits_gets_a_thread_of_its_own():
    m = new_machine()
    ev = KEVENT()
    done: list[int] = []

    @kroutine("testdrv")
    def WaitingWork(DeviceObject, Context):
        status = yield KeWaitForSingleObject(ev)
        done.append(status)

    run(m, lambda: IoQueueWorkItem(IoAllocateWorkItem(None), WaitingWork, DelayedWorkQueue, None))
    m.scheduler.run_until_idle()
    assert done == []
    worker = m.kernel.threads[-1]
    assert [f.symbol for f in worker.frames] == WORKER_FRAMES + ["testdrv!WaitingWork"]
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    assert done == [STATUS_WAIT_0]


def test_spin_lock_raises_to_dispatch_level_and_release_restores_the_old_irql():
    m = new_machine()
    lock = KSPIN_LOCK()

    def body():
        old = KeAcquireSpinLock(lock)
        inside = (KeGetCurrentIrql(), lock.owned, list(m.kernel.held_locks))
        KeReleaseSpinLock(lock, old)
        return old, inside, KeGetCurrentIrql(), lock.owned

    old, inside, after, owned = run(m, body)
    assert old == PASSIVE_LEVEL
    assert inside == (DISPATCH_LEVEL, True, [lock])
    assert after == PASSIVE_LEVEL and not owned


def test_no_wall_clock_is_consulted(monkeypatch):
    import time

    def forbidden(*_a):
        raise AssertionError("wall clock used")

    for name in ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "sleep"):
        monkeypatch.setattr(time, name, forbidden)
    m = new_machine()
    ev = KEVENT()
    _start_waiters(m, ev, 2, timeout=relative_ms(5))
    run(m, KeSetTimer, KTIMER(), relative_ms(9), KDPC(RecordingDpc, {"runs": [], "m": m}))
    m.scheduler.run_until_idle()
    assert_running(m)
    assert m.scheduler.now_ns == 14 * NS_PER_MS  # waiters time out at 5 ms, then a 9 ms timer


# --- the heap stays bounded -----------------------------------------------------------

def test_scheduler_heap_stays_bounded_after_many_cancelled_timers():
    # A far timer set and cancelled for every connection (a TCB's 2*MSL timer, a keep-alive) must
    # not pile up in the heap until its deadline: cancelled entries are dropped once they are half
    # of it (asyncio's rule), so the heap stays within a small multiple of what is really pending.
    from stack.kernel.scheduler import HEAP_COMPACT_MIN
    m = new_machine()
    s = m.scheduler
    s.run_until_idle()
    live = [s.call_later(3600 * NS_PER_MS * 1000, None, lambda: None) for _ in range(10)]
    for _ in range(50_000):
        s.call_later(240_000 * NS_PER_MS, None, lambda: None).cancel()
    assert s.heap_size() <= 2 * HEAP_COMPACT_MIN
    assert s.compactions > 0
    pending = s.pending()
    assert [e for e in pending if e in live] == live  # nothing live was dropped, and the order is kept


def test_scheduler_compaction_keeps_the_run_order():
    from stack.kernel.scheduler import HEAP_COMPACT_MIN
    m = new_machine()
    s = m.scheduler
    s.run_until_idle()
    order: list[int] = []
    for i in range(3 * HEAP_COMPACT_MIN):
        ev = s.call_later((i % 7 + 1) * NS_PER_MS, None, order.append, i)
        if i % 3:
            ev.cancel()
    s.run_until_idle()
    kept = [i for i in range(3 * HEAP_COMPACT_MIN) if not i % 3]
    assert order == sorted(kept, key=lambda i: (i % 7, i))
