"""Execution control: t, p, gu, g, counts, the run cap, break-in, determinism."""

from __future__ import annotations

import threading

import pytest
from dbg_harness import factory

from stack.kernel.events import RoutineEntered
from wskdbg.engine import Engine


@pytest.fixture
def dbg():
    engine = Engine(factory=factory("client"), seed=1)
    yield engine
    engine.close()


def stop_of(result):
    return result.data["stops"][-1]


def test_t_stops_at_the_next_hand_off_which_is_the_client_thread_switching_in(dbg):
    r = dbg.execute("t")
    stop = stop_of(r)
    assert stop["reason"] == "step"
    assert stop["event"]["kind"] == "thread.switch"
    assert stop["hand_off"] == 1 and stop["events_run"] == 4
    lines = r.text.splitlines()
    assert lines[0] == "nt!KiIdleLoop:"  # the new thread has no frames yet: it switches in from idle
    assert "[winsrv] thread.switch: switch to thread" in lines[1]


def test_t_with_a_count_prints_each_stop_and_the_third_is_the_client_routine_entry(dbg):
    r = dbg.execute("t 3")
    assert len(r.data["stops"]) == 3
    kinds = [s["event"]["kind"] for s in r.data["stops"]]
    assert kinds[0] == "thread.switch" and kinds[1] == "call"
    assert r.data["stops"][1]["frames"][0] == "testdrv!TestClientThread"


def test_bp_then_g_stops_inside_the_lower_driver_with_the_whole_call_stack(dbg):
    dbg.execute("bp testbus!TestBusDispatchInternal")
    r = dbg.execute("g")
    assert r.text.splitlines()[0] == "Breakpoint 0 hit"
    assert r.text.splitlines()[1] == "testbus!TestBusDispatchInternal:"
    frames = [line.split()[-1] for line in dbg.execute("kn").text.splitlines()[1:]]
    assert frames == ["testbus!TestBusDispatchInternal", "nt!IofCallDriver+0x4a",
                      "testdrv!TestDrvDispatchInternal+0x1d4", "nt!IofCallDriver+0x1e4",
                      "testdrv!TestClientThread+0x1d4", "nt!PspSystemThreadStartup+0x240",
                      "nt!KiStartSystemThread+0x39a"]


def test_p_at_a_call_runs_the_whole_routine_and_stops_at_its_return(dbg):
    dbg.execute("bp testbus!TestBusDispatchInternal")
    dbg.execute("g")
    r = dbg.execute("p")
    stop = stop_of(r)
    assert stop["event"]["kind"] == "ret"
    assert stop["event"]["description"].endswith("testbus!TestBusDispatchInternal")


def test_p_stays_in_the_thread_context_and_skips_the_nested_calls(dbg):
    dbg.execute("bp testdrv!TestDrvDispatchInternal")
    dbg.execute("g")  # at `call testdrv!TestDrvDispatchInternal`
    r = dbg.execute("p")  # over the whole dispatch, including the lower driver
    assert stop_of(r)["event"]["description"].endswith("testdrv!TestDrvDispatchInternal")
    assert stop_of(r)["frames"][0] == "nt!IofCallDriver+0x1e4"  # back in the caller, after the call


def test_gu_runs_until_the_current_routine_returns(dbg):
    dbg.execute("bp testbus!TestBusDispatchInternal")
    dbg.execute("g")
    r = dbg.execute("gu")
    assert stop_of(r)["event"]["kind"] == "ret"
    assert stop_of(r)["event"]["description"].endswith("testbus!TestBusDispatchInternal")


def test_gu_at_a_return_finishes_the_caller(dbg):
    dbg.execute("bp testbus!TestBusDispatchInternal")
    dbg.execute("g")
    assert stop_of(dbg.execute("t"))["event"]["kind"] == "ret"  # nothing else is published in between
    r = dbg.execute("gu")
    assert stop_of(r)["event"]["description"].endswith("nt!IofCallDriver")
    assert stop_of(r)["frames"][0] == "testdrv!TestDrvDispatchInternal+0x1d4"  # IofCallDriver's caller


def _returned_to(dbg, command):
    """Run `command` at the `call testbus!TestBusDispatchInternal` stop; (k before, k after, text)."""
    dbg.execute("bp testbus!TestBusDispatchInternal")
    dbg.execute("g")
    before = dbg.stack()
    r = dbg.execute(command)
    return before, dbg.stack(), r.text.splitlines()


# WinDbg's gu stops in the caller at the instruction after the call, the address `k` showed as
# frame 0's RetAddr; the callee's frame is gone:
#   0: kd> k
#    # Child-SP          RetAddr               Call Site
#   00 fffff805`5a86f4c8 fffff805`57e6fd3d     nt!IopfCompleteRequest
#   01 fffff805`5a86f4d0 fffff805`5a4d2b1b     nt!IofCompleteRequest+0x1d
#   0: kd> gu
#   nt!IofCompleteRequest+0x1d:
#   fffff805`57e6fd3d 4883c428        add     rsp,28h
@pytest.mark.parametrize("command", ["gu", "p"])
def test_gu_and_p_over_a_call_land_at_the_ret_addr_k_showed(dbg, command):
    before, after, lines = _returned_to(dbg, command)
    assert before[0].symbol == "testbus!TestBusDispatchInternal"
    assert lines[0] == f"{before[1].call_site}:" == "nt!IofCallDriver+0x4a:"
    assert lines[1].startswith(f"{before[0].ret_addr >> 32:08x}`{before[0].ret_addr & 0xffffffff:08x} [")
    assert after[0].location == before[0].ret_addr
    assert [f.call_site for f in after] == [f.call_site for f in before[1:]]
    assert int(dbg.execute("? @rip").text.split()[-1].replace("`", ""), 16) == before[0].ret_addr


def test_p_after_gu_steps_on_in_the_caller(dbg):
    before, after, _ = _returned_to(dbg, "gu")
    r = dbg.execute("p")
    assert stop_of(r)["frames"][1:] == [f.call_site for f in before[2:]]  # still in IofCallDriver's frame


def test_gu_between_events_is_refused_without_running(dbg):
    before = dbg.position()
    r = dbg.execute("gu")
    assert r.error and "between events" in r.text
    assert dbg.position().seq == before.seq


def test_g_runs_to_idle_and_prints_the_drivers_dbgprint_on_the_way(dbg):
    r = dbg.execute("g")
    lines = r.text.splitlines()
    assert lines[0] == "testdrv: request done, status 00000000, 40 bytes"
    assert lines[1].startswith("The machine is idle: no events are pending (event 7, hand-off ")


def test_stopping_mid_event_freezes_the_dpc_stack_under_ki_retire_dpc_list(dbg):
    dbg.execute("bp testbus!TestBusCompleteDpc")
    dbg.execute("g")
    frames = [line.split()[-1] for line in dbg.execute("k").text.splitlines()[1:]]
    assert len(frames) == 3 and frames[0] == "testbus!TestBusCompleteDpc"
    assert frames[1].startswith("nt!KiRetireDpcList+") and frames[2].startswith("nt!KiIdleLoop+")
    assert dbg.execute("!irql").text == "Debugger saved IRQL for processor 0x0 -- 2 (DISPATCH_LEVEL)"


def test_the_same_seed_and_commands_give_identical_output():
    def session() -> list[str]:
        engine = Engine(factory=factory("client"), seed=3)
        try:
            return [engine.execute(c).text for c in ("bp testdrv!TestDrvCompletion", "g", "kb", "t 4", "p", "r",
                                                    "!irpfind", "g", ".position")]
        finally:
            engine.close()

    assert session() == session()


def test_the_run_cap_stops_an_endless_timer_with_a_clear_message():
    engine = Engine(factory=factory("ticker"), seed=1)
    try:
        assert "Run cap: 0.010000000 s" in engine.execute(".runcap 0.01").text
        r = engine.execute("g")
        assert r.text.startswith("Stopped by the run cap (0.010000000 s of virtual time per g)")
        assert stop_of(r)["reason"] == "timecap"
        assert engine.scheduler.now_ns <= 10_000_000
    finally:
        engine.close()


@pytest.mark.parametrize("command", ["g", "t", "p"])
def test_a_run_moves_when_the_next_event_is_past_the_run_cap(command):
    # The ticker's timer fires every 1 ms; a 0.1 ms run cap used to leave g/t/p stuck in
    # place ("Stopped by the run cap ... (g continues)" forever), as TIME_WAIT's 240 s did
    # with the default 60 s cap.  The cap now counts from the first event the run meets.
    engine = Engine(factory=factory("ticker"), seed=1)
    try:
        engine.execute(".runcap 0.0001")
        engine.execute("g")  # boot: the ticker's thread arms the timer
        start = engine.scheduler.now_ns
        for _ in range(3):
            stop = engine.last_stop
            before = (stop.events_run, stop.seq, stop.reason)
            engine.execute(command)
            stop = engine.last_stop
            assert (stop.events_run, stop.seq, stop.reason) != before
        assert engine.scheduler.now_ns >= start + 1_000_000  # it reached the timer 1 ms away
    finally:
        engine.close()


def test_break_in_from_another_thread_stops_an_endless_g():
    engine = Engine(factory=factory("ticker"), seed=1, run_cap_ns=1 << 62, event_cap=1 << 40)
    running = threading.Event()
    seen = [0]

    def watch(ev) -> None:
        seen[0] += 1
        if seen[0] == 500:
            running.set()

    engine.bus.subscribe(watch)
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", engine.execute("g")))
    worker.start()
    running.wait()
    engine.break_in()
    worker.join()
    try:
        r = box["r"]
        assert r.text.splitlines()[0] == "Break instruction exception - code 80000003 (first chance)"
        assert stop_of(r)["reason"] == "break"
        assert seen[0] >= 500
        # the machine is stopped and inspectable, and runs again on request
        assert engine.execute("k").text.startswith(" # Child-SP")
        assert not engine.running
    finally:
        engine.close()


def test_a_step_publishes_nothing_extra_so_watching_does_not_change_the_run():
    plain = factory("client")(1)
    plain.bus.subscribe(lambda ev: None)
    plain.scheduler.run_until_idle()
    engine = Engine(factory=factory("client"), seed=1)
    try:
        engine.execute("t 10")
        engine.execute("g")
        assert engine.bus.seq == plain.bus.seq
        assert engine.scheduler.events_run == plain.scheduler.events_run
    finally:
        engine.close()


def test_routine_entered_events_drive_call_stops():
    engine = Engine(factory=factory("client"), seed=1)
    try:
        calls = []
        engine.bus.subscribe(lambda ev: calls.append(ev.symbol) if isinstance(ev, RoutineEntered) else None)
        engine.execute("g")
        assert "testbus!TestBusDispatchInternal" in calls
    finally:
        engine.close()
