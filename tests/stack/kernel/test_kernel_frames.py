"""Part 8: @kroutine frames, the logical call stack, and symbols."""

from __future__ import annotations

from kernel_harness import assert_running, crash, new_machine, record_events, run

from stack.kernel import (KeInsertQueueDpc, KeSetEvent, KeWaitForSingleObject, PsCreateSystemThread, kroutine,
                          symbol_of)
from stack.kernel.events import RoutineEntered, RoutineReturned
from stack.kernel.ke import KDPC, KEVENT


@kroutine("testdrv")
def Inner(x):
    return x * 2


@kroutine("testdrv")
def Outer(x):
    return Inner(x) + 1


@kroutine("testdrv", name="RenamedRoutine")
def python_name(x):
    return x


def test_kroutine_publishes_entered_and_returned_with_call_depth():
    m = new_machine()
    events = record_events(m)
    assert run(m, Outer, 5) == 11
    calls = [(type(e).__name__, e.symbol, e.depth) for e in events if isinstance(e, (RoutineEntered, RoutineReturned))]
    assert calls == [("RoutineEntered", "testdrv!Outer", 1), ("RoutineEntered", "testdrv!Inner", 2),
                     ("RoutineReturned", "testdrv!Inner", 2), ("RoutineReturned", "testdrv!Outer", 1)]
    returned = [e for e in events if isinstance(e, RoutineReturned)]
    assert [e.result for e in returned] == [10, 11]
    entered = next(e for e in events if isinstance(e, RoutineEntered))
    assert entered.address == m.kernel.symbol_address("testdrv!Outer")
    assert entered.describe() == "call testdrv!Outer"


def test_kroutine_symbol_uses_the_module_and_the_given_name():
    assert symbol_of(Outer) == "testdrv!Outer"
    assert symbol_of(python_name) == "testdrv!RenamedRoutine"
    assert symbol_of(lambda: 0).startswith("test_kernel_frames!")


def test_frames_are_pushed_while_a_routine_runs_and_popped_after():
    m = new_machine()
    k = m.kernel
    seen: list[list[str]] = []

    @kroutine("testdrv")
    def Peek():
        seen.append([f.symbol for f in k.frames])

    @kroutine("testdrv")
    def Caller():
        Peek()
        return [f.symbol for f in k.frames]

    assert run(m, Caller) == ["testdrv!Caller"]
    assert seen == [["testdrv!Caller", "testdrv!Peek"]]
    assert run(m, lambda: list(k.frames)) == []


def test_bug_check_records_the_logical_stack_innermost_first():
    m = new_machine()
    k = m.kernel

    @kroutine("testdrv")
    def Crasher():
        k.bugcheck(0xE2, 1, 2, 3, 4)

    @kroutine("testdrv")
    def Middle():
        Crasher()

    @kroutine("testdrv")
    def DpcRoutine(dpc, ctx, a1, a2):
        Middle()

    run(m, KeInsertQueueDpc, KDPC(DpcRoutine))
    m.scheduler.run_until_idle()
    info = crash(m)
    assert info.code == 0xE2 and info.params == (1, 2, 3, 4)
    assert info.frames == ["testdrv!Crasher", "testdrv!Middle", "testdrv!DpcRoutine", "nt!KiRetireDpcList",
                           "nt!KiIdleLoop"]
    assert [f.symbol for f in info.extra["current_frames"]] == list(reversed(info.frames))


def test_generator_routine_keeps_its_frames_across_waits_in_its_own_thread():
    m = new_machine()
    k = m.kernel
    ev_a, ev_b = KEVENT(), KEVENT()
    snapshots: dict[str, list[str]] = {}

    @kroutine("testdrv")
    def Receive(name, ev):
        yield KeWaitForSingleObject(ev)
        snapshots[name] = [f.symbol for f in k.frames]

    @kroutine("testdrv")
    def WorkerA(_):
        yield from Receive("a", ev_a)

    @kroutine("testdrv")
    def WorkerB(_):
        yield from Receive("b", ev_b)

    ta, tb = run(m, lambda: (PsCreateSystemThread(WorkerA, None), PsCreateSystemThread(WorkerB, None)))
    m.scheduler.run_until_idle()
    base = ["nt!KiStartSystemThread", "nt!PspSystemThreadStartup"]
    # while parked, each thread's own list holds its stack
    assert [f.symbol for f in ta.frames] == base + ["testdrv!WorkerA", "testdrv!Receive"]
    assert [f.symbol for f in tb.frames] == base + ["testdrv!WorkerB", "testdrv!Receive"]
    assert run(m, lambda: list(k.frames)) == []  # an unrelated event sees an empty stack
    run(m, KeSetEvent, ev_b)
    run(m, KeSetEvent, ev_a)
    m.scheduler.run_until_idle()
    assert_running(m)
    assert snapshots == {"a": base + ["testdrv!WorkerA", "testdrv!Receive"],
                         "b": base + ["testdrv!WorkerB", "testdrv!Receive"]}
    assert ta.frames == [] and tb.frames == []


def test_generator_routine_publishes_entered_and_returned_around_its_waits():
    m = new_machine()
    ev = KEVENT()

    @kroutine("testdrv")
    def Waiter(_):
        yield KeWaitForSingleObject(ev)
        return 7

    events = record_events(m)
    run(m, PsCreateSystemThread, Waiter, None)
    m.scheduler.run_until_idle()
    run(m, KeSetEvent, ev)
    m.scheduler.run_until_idle()
    mine = [e for e in events if isinstance(e, (RoutineEntered, RoutineReturned)) and e.symbol == "testdrv!Waiter"]
    assert [(type(e).__name__, e.depth) for e in mine] == [("RoutineEntered", 3), ("RoutineReturned", 3)]
    assert mine[0].time_ns == 0 and mine[1].result == 7


def test_an_exception_a_driver_catches_leaves_no_stale_frames():
    m = new_machine()
    k = m.kernel

    @kroutine("testdrv")
    def Raises():
        raise KeyError("missing")

    @kroutine("testdrv")
    def Catches():
        try:
            Raises()
        except KeyError:
            pass
        return [f.symbol for f in k.frames]

    assert run(m, Catches) == ["testdrv!Catches"]
    assert_running(m)


def test_symbol_addresses_do_not_depend_on_the_order_they_are_first_asked_for():
    a, b = new_machine().kernel, new_machine().kernel
    names = ["nt!IofCallDriver", "nt!IoCancelIrp", "testdrv!Outer", "nt!SomethingNew"]
    b.load_module("testdrv", "testdrv.sys")
    a.load_module("testdrv", "testdrv.sys")
    first = [a.symbol_address(n) for n in names]
    second = [b.symbol_address(n) for n in reversed(names)][::-1]
    assert first == second
    assert len(set(first)) == len(first)
    for name, addr in zip(names, first):
        mod = a.module(name.split("!")[0])
        assert mod.contains(addr)
        assert a.symbol_for_address(addr) == name
        assert a.symbol_for_address(addr + 3) == f"{name}+0x3"
    assert a.symbol_address("notloaded!Routine") == 0
    assert a.symbol_for_address(0x1000) is None
