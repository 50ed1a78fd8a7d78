"""Time travel: t-, p-, g-, !tt — re-execution from the seed and the recorded inputs."""

from __future__ import annotations

import pytest
from dbg_harness import TestClientThread, build_lab, factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.kernel import STATUS_SUCCESS, PsCreateSystemThread, kroutine
from stack.kernel.io import DriverImage
from stack.world import default_world
from wskdbg.commands.services import register_driver, unregister_driver
from wskdbg.engine import Engine


@kroutine("ttdrv")
def TtDrvDriverEntry(DriverObject, RegistryPath):
    """A driver whose DriverEntry starts the test lab's client thread (an IRP down the stack)."""
    PsCreateSystemThread(TestClientThread, None, name="tt client")
    return STATUS_SUCCESS


TT_IMAGE = DriverImage("ttdrv", "ttdrv", TtDrvDriverEntry, image="ttdrv.sys")
TRACE_START = "tracelog -start TT -guid TestDrvTrace -flag 0x3 -level 5"


@pytest.fixture
def dbg():
    engine = Engine(factory=factory("client"), seed=1)
    yield engine
    engine.close()


@pytest.fixture
def idle_dbg():
    """The kernel lab with nothing queued: the work starts with `sc start ttdrv` (a recorded input)."""
    register_driver("ttdrv", TT_IMAGE)
    engine = Engine(factory=factory("none"), seed=1)
    yield engine
    engine.close()
    unregister_driver("ttdrv")


def ok(engine: Engine, line: str) -> str:
    result = engine.execute(line)
    assert not result.error, result.text
    return result.text


def position(engine: Engine) -> str:
    return str(engine.time_travel.position())


def moment(engine: Engine, irp: int | None = None) -> tuple[str, str, str, str]:
    """What a person sees at a stop: the position, .position, the call stack and the IRP."""
    irp_text = engine.execute(f"!irp {irp:x}").text if irp is not None else ""
    return position(engine), ok(engine, ".position"), ok(engine, "kn"), irp_text


def body(stop_text: str) -> str:
    """A time-travel stop without its `Time Travel Position` line (the rest is what t printed)."""
    return "\n".join(line for line in stop_text.splitlines() if not line.startswith("Time Travel Position:"))


def first_irp_address(engine: Engine, steps: int) -> int:
    for _ in range(steps):
        ok(engine, "t")
        irp = getattr(engine.last_stop.event, "irp", None)
        if irp:
            return irp
    raise AssertionError("no IRP hand-off in the first steps")


# --- t- -----------------------------------------------------------------------------------------------

def test_each_t_back_reproduces_the_earlier_stop_position_call_stack_and_irp(dbg):
    irp = first_irp_address(dbg, 40)
    ok(dbg, "!tt 0")
    seen = []
    for _ in range(30):
        text = ok(dbg, "t")
        seen.append((moment(dbg, irp), text))
    for i in range(28, -1, -1):
        back = ok(dbg, "t-")
        assert moment(dbg, irp) == seen[i][0]
        assert body(back) == seen[i][1]
        assert back.splitlines()[0] == f"Time Travel Position: {seen[i][0][0]}"


def test_t_back_lands_inside_a_nested_call_with_the_whole_logical_stack(dbg):
    ok(dbg, "bp testbus!TestBusDispatchInternal")
    ok(dbg, "g")
    stack_at_hit = ok(dbg, "kn")
    ok(dbg, "t 3")
    ok(dbg, "t- 3")
    assert ok(dbg, "kn") == stack_at_hit
    assert "testdrv!TestClientThread" in stack_at_hit and "nt!IofCallDriver" in stack_at_hit


def test_t_back_with_a_count_goes_back_that_many_hand_offs(dbg):
    ok(dbg, "t 5")
    fifth = moment(dbg)
    ok(dbg, "t 7")
    ok(dbg, "t- 7")
    assert moment(dbg) == fifth


def test_t_back_at_the_start_of_the_trace_says_so_and_does_not_move(dbg):
    start = position(dbg)
    text = ok(dbg, "t-")
    assert "Already at the start of the trace" in text
    assert position(dbg) == start


def test_t_back_from_the_first_hand_off_returns_to_the_start(dbg):
    start = moment(dbg)
    ok(dbg, "t")
    text = ok(dbg, "t-")
    assert "At the start of the trace" in text
    assert moment(dbg) == start


# --- going forward again ------------------------------------------------------------------------------

def test_going_back_then_forward_reproduces_the_same_stops(dbg):
    forward = [ok(dbg, "t") for _ in range(25)]
    ok(dbg, "t- 0n20")
    again = [ok(dbg, "t") for _ in range(20)]
    assert again == forward[5:]


def test_going_forward_after_going_back_prints_the_debug_output_again_but_the_trip_back_does_not(dbg):
    first = ok(dbg, "g")
    assert "testdrv: request done" in first
    trip = ok(dbg, "!tt 0")
    assert "request done" not in trip
    assert ok(dbg, "g") == first


def test_p_after_going_back_steps_over_as_it_did_the_first_time(dbg):
    ok(dbg, "bp testdrv!TestDrvDispatchInternal")
    ok(dbg, "g")
    over = ok(dbg, "p")
    ok(dbg, "t 4")
    ok(dbg, "g-")
    assert ok(dbg, "p") == over


# --- p- -----------------------------------------------------------------------------------------------

def test_p_back_at_a_return_goes_back_over_the_nested_calls_to_the_call(dbg):
    ok(dbg, "bp testdrv!TestDrvDispatchInternal")
    at_call = ok(dbg, "g")
    call_moment = moment(dbg)
    ok(dbg, "p")  # over the whole dispatch, including the lower driver
    assert dbg.last_stop.event.kind == "ret"
    back = ok(dbg, "p-")
    assert moment(dbg) == call_moment
    assert body(back) == at_call.replace("Breakpoint 0 hit\n", "")


def test_p_back_between_events_acts_like_t_back(dbg):
    ok(dbg, "g")  # runs to idle: the machine is between events
    assert dbg.time_travel.position().handoff is None
    ok(dbg, "t-")
    last_hand_off = moment(dbg)
    ok(dbg, "!tt 100")
    assert dbg.time_travel.position().handoff is None
    ok(dbg, "p-")
    assert moment(dbg) == last_hand_off


# --- g- -----------------------------------------------------------------------------------------------

def test_g_back_returns_to_each_previous_breakpoint_hit_then_to_the_start():
    engine = Engine(factory=factory("ticker"), seed=1)
    try:
        start = moment(engine)
        ok(engine, "bp testdrv!TestTickDpc")
        hits = []
        for _ in range(3):
            text = ok(engine, "g")
            hits.append((moment(engine), text))
        for i in (1, 0):
            back = ok(engine, "g-")
            assert moment(engine) == hits[i][0]
            assert back.splitlines()[0] == "Breakpoint 0 hit"
            assert body(back) == hits[i][1]
        text = ok(engine, "g-")
        assert "No breakpoint hit before this position" in text
        assert moment(engine) == start
    finally:
        engine.close()


def test_g_back_does_not_count_passes_or_hits():
    engine = Engine(factory=factory("ticker"), seed=1)
    try:
        ok(engine, "bp testdrv!TestTickDpc")
        ok(engine, "g")
        ok(engine, "g")
        hits = engine.breakpoints.get(0).hits
        ok(engine, "g-")
        assert engine.breakpoints.get(0).hits == hits
    finally:
        engine.close()


# --- !tt ----------------------------------------------------------------------------------------------

def test_tt_0_goes_to_the_start_and_tt_100_to_the_end(dbg):
    start = moment(dbg)
    ok(dbg, "t 0n12")
    end = moment(dbg)
    ok(dbg, "!tt 0")
    assert moment(dbg) == start
    ok(dbg, "!tt 100")
    assert moment(dbg) == end


def test_tt_position_goes_to_that_hand_off_and_prints_it_as_t_did(dbg):
    ok(dbg, "t 8")
    eighth_text = ok(dbg, "t")
    target = moment(dbg)
    ok(dbg, "t 0n10")
    text = ok(dbg, f"!tt {target[0]}")
    assert moment(dbg) == target
    assert body(text) == eighth_text


def test_tt_50_lands_on_a_hand_off_between_the_start_and_the_end(dbg):
    ok(dbg, "t 0n20")
    end_seq = dbg.time_travel.position().seq
    ok(dbg, "!tt 50")
    pos = dbg.time_travel.position()
    assert pos.handoff is not None and 0 < pos.seq < end_seq


def test_tt_alone_shows_the_position_the_trace_and_the_inputs(idle_dbg):
    ok(idle_dbg, "sc start ttdrv")
    ok(idle_dbg, "t 4")
    text = ok(idle_dbg, "!tt")
    assert text.splitlines()[0].startswith(f"Time Travel Position: {position(idle_dbg)} ")
    assert "Recorded inputs: 1" in text
    assert "sc start ttdrv" in text


@pytest.mark.parametrize("args, message", [
    ("zz", "neither a position"),
    ("150", "from 0 to 100"),
    ("FFFF:FFFF", "past the end of the trace"),
    ("1 2", "Syntax error"),
])
def test_bad_tt_arguments_are_clear_errors(dbg, args, message):
    result = dbg.execute(f"!tt {args}")
    assert result.error and message in result.text


def test_reverse_steps_are_commands_with_help(dbg):
    assert "Trace back" in ok(dbg, "help t-")
    assert "previous breakpoint hit" in ok(dbg, ".help g-")
    assert dbg.execute("t- 0").error
    assert dbg.execute("g- 5").error


def test_time_travel_needs_a_world_factory():
    engine = Engine(build_lab(1, "client"))
    try:
        ok(engine, "t")
        result = engine.execute("t-")
        assert result.error and "world factory" in result.text
    finally:
        engine.close()


def test_t_back_from_a_bug_check_goes_to_the_bug_check_hand_off_and_t_bug_checks_again():
    engine = Engine(factory=factory("double"), seed=1)
    try:
        crash = ok(engine, "g")
        assert crash.startswith("*** Fatal System Error: 0x00000044")
        back = ok(engine, "t-")
        assert "bugcheck:" in back and "testdrv!TestCompleteTwice" in ok(engine, "kn")
        assert ok(engine, "t") == crash
    finally:
        engine.close()


_ENGINE: list[Engine] = []


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(["t-", "p-", "g-", "!tt"]),
       args=st.one_of(st.text(alphabet=st.characters(max_codepoint=0x7E, blacklist_categories=("Cs",)), max_size=12),
                      st.sampled_from(["0", "100", "50", "3:0", "3:2", "-1", "1:", ":", "0n5", "ff", "100%", "1e3"])))
def test_junk_arguments_to_time_travel_commands_never_break_the_debugger(name, args):
    if not _ENGINE:
        _ENGINE.append(Engine(factory=factory("client"), seed=1))
        _ENGINE[0].execute("t 0n12")
    engine = _ENGINE[0]
    result = engine.execute(f"{name} {args}")
    assert "Internal debugger error" not in result.text
    if result.error:
        assert result.text.strip()
    k = engine.execute("kn")
    assert not k.error


# --- recorded inputs ------------------------------------------------------------------------------------

def test_an_input_at_the_start_is_undone_by_going_back_and_replayed_going_forward(idle_dbg):
    ok(idle_dbg, "sc start ttdrv")
    forward = [ok(idle_dbg, "t") for _ in range(0x18)]
    ok(idle_dbg, "!tt 0")  # lands before the input, as the user first saw the machine
    assert "STOPPED" in ok(idle_dbg, "sc query ttdrv")
    again = [ok(idle_dbg, "t") for _ in range(0x18)]
    assert again == forward
    assert "RUNNING" in ok(idle_dbg, "sc query ttdrv")


def test_going_back_across_a_trace_session_start_undoes_it_and_forward_redoes_it(dbg):
    ok(dbg, "t 3")
    ok(dbg, TRACE_START)
    ok(dbg, "g")
    messages = ok(dbg, "tracefmt TT -noprefix -nosummary")
    assert "completed by the bus" in messages
    ok(dbg, "!tt 0")
    assert "TT" not in ok(dbg, "tracelog -l")
    ok(dbg, "g")  # passes the recorded tracelog -start and replays it there
    assert ok(dbg, "tracefmt TT -noprefix -nosummary") == messages


def test_a_new_input_after_going_back_discards_the_recorded_future_and_says_so(idle_dbg):
    ok(idle_dbg, "sc start ttdrv")
    ok(idle_dbg, "t 5")
    ok(idle_dbg, TRACE_START)
    ok(idle_dbg, "t 5")
    ok(idle_dbg, "t- 8")
    text = ok(idle_dbg, "tracelog -start Other -guid TestDrvTrace -flag 0x1 -level 4")
    assert text.splitlines()[0].startswith("Time travel: a new input at ")
    assert "(1 later recorded input discarded)" in text.splitlines()[0]
    inputs = [rec.text for rec in idle_dbg.time_travel.inputs]
    assert inputs == ["sc start ttdrv", "tracelog -start Other -guid TestDrvTrace -flag 0x1 -level 4"]
    ok(idle_dbg, "g")
    assert "TT" not in ok(idle_dbg, "tracelog -l") and "Other" in ok(idle_dbg, "tracelog -l")


def test_reissuing_the_next_recorded_input_at_its_position_follows_history(idle_dbg):
    ok(idle_dbg, "sc start ttdrv")
    ok(idle_dbg, "t 5")
    at_input = position(idle_dbg)
    ok(idle_dbg, TRACE_START)
    ok(idle_dbg, "t 5")
    ok(idle_dbg, "tracelog -stop TT")
    ok(idle_dbg, f"!tt {at_input}")
    text = ok(idle_dbg, TRACE_START)
    assert "rewrites history" not in text
    assert len(idle_dbg.time_travel.inputs) == 3 and idle_dbg.time_travel.applied == 2


def test_a_new_input_in_the_past_ends_the_trace_there_even_with_no_later_inputs(dbg):
    ok(dbg, "t 0n10")
    ok(dbg, "t- 5")
    here = position(dbg)
    text = ok(dbg, TRACE_START)
    assert "the trace now ends here (0 later recorded inputs discarded)" in text
    assert str(dbg.time_travel.end) == position(dbg) and here == position(dbg)


def test_an_input_from_a_breakpoint_command_is_followed_not_rewritten_when_the_hit_recurs(dbg):
    ok(dbg, f'bp testbus!TestBusDispatchInternal "{TRACE_START}; g"')
    first = ok(dbg, "g")
    ok(dbg, "!tt 0")
    again = ok(dbg, "g")
    assert again == first and "rewrites history" not in again
    assert [rec.text for rec in dbg.time_travel.inputs] == [TRACE_START]


def test_a_failing_command_in_the_past_keeps_the_recorded_future(idle_dbg):
    ok(idle_dbg, "sc start ttdrv")
    ok(idle_dbg, "t 5")
    ok(idle_dbg, TRACE_START)
    ok(idle_dbg, "!tt 0")
    assert idle_dbg.execute("sc start nosuchdriver").error
    assert len(idle_dbg.time_travel.inputs) == 2


def test_reboot_starts_a_new_trace(idle_dbg):
    ok(idle_dbg, "sc start ttdrv")
    ok(idle_dbg, "t 5")
    ok(idle_dbg, ".reboot")
    tt = idle_dbg.time_travel
    assert tt.inputs == [] and str(tt.origin) == position(idle_dbg)
    assert "Already at the start" in ok(idle_dbg, "t-")


def test_queries_and_breakpoints_are_not_recorded_as_inputs(idle_dbg):
    for line in ("sc query", "tracelog -l", "bp testdrv!TestDrvCompletion", "r $t0 = 5", "kn", "!tt"):
        ok(idle_dbg, line)
    assert idle_dbg.time_travel.inputs == []


# --- the network lab: echo traffic --------------------------------------------------------------------

def test_echo_traffic_g_back_returns_to_the_first_receive_completion_with_its_stack_and_irp():
    engine = Engine(factory=lambda seed: default_world(seed, services=False), seed=1)
    try:
        for line in ("sc start echosrv", "g",
                     "bp /h winsrv echosrv!WskSampleReceiveIrpCompletionRoutine", "!echo -n 2"):
            ok(engine, line)
        first_text = ok(engine, "g")
        irp = engine.evaluate("@rdx")  # the completion routine's Irp argument
        first = moment(engine, irp)
        assert "echosrv!WskSampleReceiveIrpCompletionRoutine" in first[2]
        ok(engine, "g")
        assert moment(engine, irp)[0] != first[0]
        back = ok(engine, "g-")
        assert moment(engine, irp) == first
        assert body(back) == first_text
        rest = ok(engine, "g")  # forward again: the second exchange happens as before
        assert rest.splitlines()[0] == "Breakpoint 0 hit"
    finally:
        engine.close()
