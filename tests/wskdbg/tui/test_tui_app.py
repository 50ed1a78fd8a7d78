"""Pilot tests of the wskdbg TUI over the real engine.

Each test drives the app the way a person would (keys, Enter, the filter bar)
and checks what the views then show against what the engine's commands print.
No wall-clock waits: `app.settle()` waits for the command worker, then
refreshes every view; runs that must be interrupted are bounded by the
engine's run and event caps, so a lost break-in fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Awaitable, Callable

import pytest
from conftest import SIZE, make_app, make_ticker_app, press_while_running, ticker_engine, type_text
from screen_text import screen_text
from textual.pilot import Pilot
from textual.widgets import DataTable, TabbedContent

from wskdbg.engine import Engine
from wskdbg.render.fmt import addr64
from wskdbg.engine_api import DebuggerEngine
from wskdbg.tui import snapshot
from wskdbg.tui.app import TAB_IDS, WskdbgApp
from wskdbg.tui.crash_screen import CrashScreen
from wskdbg.tui.link import BROKEN, BUGCHECKED, RUNNING
from wskdbg.tui.source_view import stopped_picture
from wskdbg.tui.tour import TOUR_STEPS, TourScreen
from wskdbg.tui.trace_view import TraceFilterBar

Scenario = Callable[[WskdbgApp, Pilot], Awaitable[None]]
BREAK_LINE = "Break instruction exception - code 80000003 (first chance)"


def drive(app: WskdbgApp, scenario: Scenario) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            await pilot.pause()
            await scenario(app, pilot)

    try:
        asyncio.run(main())
    finally:
        app.engine.close()


async def type_command(app: WskdbgApp, pilot: Pilot, command: str) -> None:
    app.command_pane.input.focus()
    await type_text(pilot, command)
    await pilot.press("enter")
    await app.settle()
    await pilot.pause()


def commands_run(app: WskdbgApp) -> list[str]:
    return [line.removeprefix("0: kd> ") for line in app.command_pane.transcript if line.startswith("0: kd> ")]


def test_the_real_engine_satisfies_the_interface_the_tui_uses() -> None:
    engine = Engine(seed=1)
    try:
        assert isinstance(engine, DebuggerEngine)
    finally:
        engine.close()


def test_start_shows_welcome_prompt_stack_and_broken_in_status(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        text = screen_text(app)
        assert "F1 tour" in text
        assert "0: kd>" in text
        assert "winsrv" in text and "client" in text
        assert "BROKEN IN" in text
        assert "f5 Go" in text.replace("F5", "f5")
        assert app.focused is app.command_pane.input

    drive(app, scenario)


def test_status_bar_and_stack_view_agree_on_the_events_run_before_the_views_attached(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        position = app.status_bar.position
        assert position.events_run > 0  # the lab booted before the TUI attached
        caption = app.stack_view.picture.caption
        assert f"event {position.events_run:,}" in caption and "no events yet" not in caption

    drive(app, scenario)


def test_typed_command_prints_exactly_what_the_engine_prints(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        expected = Engine(seed=1)
        try:
            await type_command(app, pilot, "!irp zz")
            assert commands_run(app) == ["!irp zz"]
            assert app.command_pane.transcript[-1] == expected.execute("!irp zz").text
        finally:
            expected.close()

    drive(app, scenario)


def test_enter_on_an_empty_command_line_repeats_the_last_command_but_not_elsewhere(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await type_command(app, pilot, "t")
        await pilot.press("enter")
        await app.settle()
        assert commands_run(app) == ["t", "t"]
        await pilot.press("f2")  # the IRP table has the keys now: Enter selects a row
        await pilot.pause()
        assert app.focused is app.irp_view.query_one(DataTable)
        await pilot.press("enter")
        await app.settle()
        assert commands_run(app) == ["t", "t"]

    drive(app, scenario)


def test_tab_completes_a_command_name_and_otherwise_moves_the_focus_on(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await type_command(app, pilot, "k")
        line = app.command_pane.input
        await pilot.press("up")
        assert line.value == "k"
        line.value = ""
        await pilot.press(".", "r", "e", "b", "tab")
        assert line.value == ".reboot "
        line.value = ""
        await pilot.press("tab")  # nothing to complete: Tab leaves the command line
        assert app.focused is not line
        await pilot.press("f8")
        assert app.focused is line

    drive(app, scenario)


def test_f11_and_f10_step_and_the_stack_view_highlight_moves(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await type_command(app, pilot, "bp /h winsrv echosrv!WskSampleReceiveIrpCompletionRoutine")
        await type_command(app, pilot, '!echo "hello"')
        await pilot.press("f5")
        await app.settle()
        seen = []
        for key in ("f11", "f11", "f10"):
            before = app.link.position().event_seq
            await pilot.press(key)
            await app.settle()
            assert app.link.position().event_seq > before
            seen.append(app.stack_view.picture.current)
        assert commands_run(app)[-3:] == ["t", "t", "p"]
        assert all(host == "winsrv" for host, _ in seen)
        assert app.stack_view.picture.previous is not None

    drive(app, scenario)


def _lsa_current(app: WskdbgApp) -> tuple[str, int]:
    """(routine, line) that `.frame` (with .lines) and `lsa .` report for the selected frame."""
    frame = app.engine.execute(".frame").data
    marked = [row for row in app.engine.execute("lsa .").text.splitlines() if row.startswith(">")]
    assert len(marked) == 1 and int(marked[0][1:].split(":")[0]) == frame["line"]
    return frame["symbol"], frame["line"]


def _source_shown(app: WskdbgApp) -> tuple[str, int]:
    picture = app.source_view.picture
    marked = [row for row in picture.text().splitlines() if row.startswith(">")]
    assert len(marked) == 1 and int(marked[0][1:].split(":")[0]) == picture.current
    return picture.title.split()[1].split("+")[0], picture.current


def test_source_pane_shows_the_routine_and_line_lsa_reports_and_follows_steps_and_frame(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await pilot.press("f12")
        await pilot.pause()
        assert app.main.query_one(TabbedContent).active == TAB_IDS["source"]
        assert app.focused is app.source_view
        await type_command(app, pilot, "bp /h winsrv echosrv!WskSampleOpReceive")
        await type_command(app, pilot, '!echo -n 1 "hello, source pane"')
        await pilot.press("f5")  # the bp hit: the routine is called, the pane is on its def line
        await app.settle()
        assert _source_shown(app) == _lsa_current(app) == (
            "echosrv!WskSampleOpReceive", app.engine.execute(".frame").data["line"])
        await pilot.press("f11")  # t: into the first line the routine runs
        await app.settle()
        shown = _source_shown(app)
        frames = app.engine.execute("k").data["frames"]
        assert shown == _lsa_current(app) and shown[0] == frames[0]["symbol"]
        await type_command(app, pilot, ".frame 1")  # the caller, running at its call
        assert _source_shown(app) == _lsa_current(app)
        assert _source_shown(app)[0] == frames[1]["symbol"] and app.source_view.picture.title.startswith("01 ")
        await pilot.press("f10")  # p: a stop selects frame 0 again
        await app.settle()
        assert _source_shown(app) == _lsa_current(app)
        assert app.source_view.picture.title.startswith("00 ")
        text = screen_text(app)
        assert f"{app.source_view.picture.current:5}:" in text  # the marked line is on the screen
        assert "Source [F12]" in text  # the tab names its key

    drive(app, scenario)


def test_cls_clears_the_command_output_in_the_tui(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await type_command(app, pilot, "lm")
        assert any("echosrv" in chunk for chunk in app.command_pane.transcript)
        await type_command(app, pilot, ".cls")
        assert app.command_pane.transcript == []
        assert app.command_pane.log_widget.lines == []
        await type_command(app, pilot, "? 1")
        assert app.command_pane.transcript[0].endswith("? 1")
        await type_command(app, pilot, ".cls; ? 2")  # in a command line of several
        assert app.command_pane.transcript == ["Evaluate expression: 2 = 00000000`00000002"]

    drive(app, scenario)


def test_irp_detail_is_exactly_what_irp_prints(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await pilot.press("f2")
        await pilot.pause()
        table = app.irp_view.query_one(DataTable)
        assert app.focused is table
        keys = [str(k.value) for k in table.rows]
        key = next(k for k in keys if k.startswith("winsrv:"))
        address = int(key.partition(":")[2], 16)
        table.move_cursor(row=keys.index(key))
        await pilot.press("enter")
        await pilot.pause()
        expected = app.engine.execute(f"!irp {address:x}").text  # the machine is stopped
        assert app.irp_view.detail_text == expected
        assert str(app.irp_view.query_one("#irp-detail").render()) == expected

    drive(app, scenario)


def test_clicking_an_mdl_address_shows_its_chain_with_bytes(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        # Stopped where the echo reaches the miniport: the NB's MDL chain is tcpip's header,
        # then echosrv's own buffer (zero copy).
        for command in ("bp /h winsrv afd!WskProAPISend", '!echo "hello"', "g",
                        "bp /h winsrv netvmini!MPSendNetBufferLists", "g"):
            app.run_command(command)
            await app.settle()
        first_mdl = app.engine.execute("? poi(poi(@rdx+8)+20)").data["value"]
        app.action_inspect_address(first_mdl)
        await app.settle()
        mdl_view = app.mdl_view
        assert mdl_view.picture.source == f"MDL {first_mdl:x}" and mdl_view.picture.boxes[0].address == first_mdl
        header = app.engine.execute(f"dt _MDL {first_mdl:x}").text  # the boxes show what dt prints
        assert f"{mdl_view.picture.boxes[0].byte_count:#x}" in header.lower()
        assert app.main.query_one(TabbedContent).active == TAB_IDS["mdl"]
        boxes = str(mdl_view.query_one("#mdl-boxes").render())
        assert "StartVa" in boxes and "ByteCount" in boxes
        assert "hello" in str(mdl_view.query_one("#mdl-dump").render())

    drive(app, scenario)


def test_clicking_an_irp_address_selects_it_and_runs_irp(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        address = next(row.address for row in app.link.view().irps if row.host == "winsrv")
        app.action_inspect_address(address)
        await app.settle()
        assert commands_run(app)[-1] == f"!irp 0x{address:x}"
        assert app.irp_view.selected == ("winsrv", address)
        assert app.command_pane.transcript[-1] == app.irp_view.detail_text

    drive(app, scenario)


def test_clicking_an_address_after_n_10_still_inspects_that_address(app: WskdbgApp) -> None:
    # The command the click runs says its base (0x): `n 10` reads bare numbers as decimal.
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        app.run_command("n 10")
        await app.settle()
        address = next(row.address for row in app.link.view().irps if row.host == "winsrv")
        app.action_inspect_address(address)
        await app.settle()
        assert app.command_pane.transcript[-1] == app.irp_view.detail_text  # !irp of that IRP, no error
        app.action_inspect_address(address + 0x10)  # inside the IRP, not an object's start: dumped
        await app.settle()
        assert app.command_pane.transcript[-1].startswith(addr64(address + 0x10))

    drive(app, scenario)


FOCUS_TARGETS = ("#command-input", "#irp-table", "#irp-detail-scroll", "#mdl-view", "#trace-view",
                 "#trace-filter", "#conn-table", "#source-view", "#stack-view")


TARGET_TABS = {"#irp-table": "irps", "#irp-detail-scroll": "irps", "#mdl-view": "mdl", "#trace-view": "trace",
               "#trace-filter": "trace", "#conn-table": "network", "#source-view": "source"}


async def _view_and_run_keys_from(app: WskdbgApp, pilot: Pilot, target: str, steps_before: int) -> None:
    """From a focus on `target`, each view key shows its view, F11 steps, F7 and F8 move the focus."""
    tabs = app.main.query_one(TabbedContent)
    for key, tab in (("f2", "irps"), ("f3", "mdl"), ("f4", "trace"), ("f6", "network"), ("f12", "source")):
        app.action_show_tab(TARGET_TABS.get(target, "irps"))
        for _ in range(3):  # the tab switch settles (a hidden pane gives its focus up)
            await pilot.pause()
            app.main.query_one(target).focus()
        await pilot.pause()
        assert app.focused is app.main.query_one(target), (target, key)
        await pilot.press(key)
        await pilot.pause()
        assert tabs.active == TAB_IDS[tab], (target, key)
    for _ in range(3):
        await pilot.pause()
        app.main.query_one(target).focus()
    assert app.focused is app.main.query_one(target), (target, "f11")
    await pilot.press("f11")  # the run keys too
    await app.settle()
    assert commands_run(app).count("t") == steps_before + 1, target
    app.main.query_one(target).focus()
    await pilot.press("f7")
    await pilot.pause()
    assert app.focused is app.stack_view, target
    await pilot.press("f8")
    assert app.focused is app.command_pane.input, target


def test_every_view_key_works_from_every_focus(app: WskdbgApp) -> None:
    # One app for every focus: what each key does depends on where the focus is, not on what the
    # machine did before (each focus starts from F8's command line, one F11 step further on).
    # Built once instead of nine times: about 4 s of CPU less (the app and its machine server).
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        for steps, target in enumerate(FOCUS_TARGETS):
            await _view_and_run_keys_from(app, pilot, target, steps)

    drive(app, scenario)


def test_the_pane_with_the_keys_is_marked() -> None:
    app = make_app()

    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        command_pane = app.main.query_one("#command-pane")
        stack_pane = app.main.query_one("#stack-pane")
        assert command_pane.has_pseudo_class("focus-within") and not stack_pane.has_pseudo_class("focus-within")
        await pilot.press("f7")
        await pilot.pause()
        assert stack_pane.has_pseudo_class("focus-within") and not command_pane.has_pseudo_class("focus-within")
        assert stack_pane.styles.border_top != command_pane.styles.border_top  # drawn differently
        views = app.main.query_one("#views")
        outline = views.styles.outline_top
        await pilot.press("f2")  # the tabbed views get the keys: their outline is drawn
        await pilot.pause()
        assert views.has_class("-has-keys") and views.styles.outline_top != outline
        assert not stack_pane.has_pseudo_class("focus-within")
        await pilot.press("f8")
        await pilot.pause()
        assert not views.has_class("-has-keys") and views.styles.outline_top == outline

    drive(app, scenario)


def test_trace_filter_of_tour_step_8_shows_echosrvs_wpp_messages(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        for step in TOUR_STEPS:
            if step.command:
                app.run_command(step.command)
                await app.settle()
        app.run_command("bc *")
        await app.settle()
        await pilot.press("f5")  # the echo finishes, echosrv logs
        await app.settle()
        await pilot.press("f4")
        pane = app.trace_pane
        bar = pane.query_one(TraceFilterBar)
        bar.focus()
        await pilot.pause()
        bar.value = "provider:WskSampleCtlGui"  # typed; the last key is pressed for real
        bar.cursor_position = len(bar.value)
        await pilot.press("d")
        await app.settle()
        lines = [pane.store.line(p) for p in pane.view.selection]
        assert lines and all("[WskSampleCtlGuid]" in line for line in lines)

    drive(app, scenario)


def test_bug_check_shows_exactly_analyze_v_and_reboot_brings_the_machine_back(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await type_command(app, pilot, "sc start buggy")
        await pilot.press("f5")
        await app.settle()
        await pilot.pause()
        assert app.link.position().state == BUGCHECKED
        assert isinstance(app.screen, CrashScreen)
        assert app.screen.analysis == app.engine.execute("!analyze -v").text
        assert "MULTIPLE_IRP_COMPLETE_REQUESTS" in screen_text(app)
        await pilot.press("f5")  # the main screen's keys do nothing here
        await pilot.press("escape")  # inspect the frozen machine
        assert not isinstance(app.screen, CrashScreen)
        assert "BUG-CHECKED" in screen_text(app)
        await pilot.press("f9")
        await pilot.pause()
        assert isinstance(app.screen, CrashScreen)
        await pilot.press("r")
        await app.settle()
        await pilot.pause()
        assert not isinstance(app.screen, CrashScreen)
        position = app.link.position()
        assert position.state == BROKEN and position.generation == 2
        assert commands_run(app) == ["sc start buggy", "g", ".reboot"]  # F5 on the crash screen ran nothing
        booted = position.event_seq
        await type_command(app, pilot, '!echo "hello"')  # the rebooted lab idles until given work
        await pilot.press("f11")  # the new machine steps
        await app.settle()
        assert app.link.position().event_seq > booted, (commands_run(app), app.command_pane.transcript[-2:], app.screen)

    drive(app, scenario)


def test_f1_opens_the_tour_and_it_steps_and_closes(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await pilot.press("f1")
        assert isinstance(app.screen, TourScreen)
        assert TOUR_STEPS[0].title in screen_text(app)
        await pilot.press("right")
        assert TOUR_STEPS[1].title in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, TourScreen)

    drive(app, scenario)


def test_ctrl_t_switches_between_light_and_dark_themes(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        dark = app.current_theme.dark
        await pilot.press("ctrl+t")
        assert app.current_theme.dark is (not dark)
        await pilot.press("ctrl+t")
        assert app.current_theme.dark is dark

    drive(app, scenario)


def test_resizing_keeps_every_pane_and_the_status_bar_visible() -> None:
    app = make_app()

    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await pilot.resize_terminal(90, 30)
        await pilot.pause()
        text = screen_text(app)
        assert "BROKEN IN" in text and "0: kd>" in text and "winsrv" in text

    drive(app, scenario)


# --- the machine running: views from snapshots, break-in never lost ------------------------------

@pytest.mark.parametrize("server", [True, False], ids=["machine server", "in-process"])
def test_while_the_machine_runs_views_are_built_on_its_thread_only(server: bool) -> None:
    app = make_ticker_app(server=server, poll_hz=50)
    seen: list[tuple[bool, str, tuple[int, str]]] = []
    real_view = app.link.view

    def recording_view():  # type: ignore[no-untyped-def]
        view = real_view()
        if view is not None:
            seen.append((app.link.running, view.position.state, view.built_by))
        return view

    app.link.view = recording_view  # type: ignore[method-assign]

    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await press_while_running(pilot, "f5")
        for _ in range(3000):
            await pilot.pause(0.01)  # lets the app's own timer fire (no assertion on time)
            status = app.status_bar.position
            if status is not None and status.state == RUNNING and status.events_run > 50:
                break
        assert app.status_bar.position.state == RUNNING  # a view came from the running machine
        await pilot.press("ctrl+c")
        await app.settle()
        assert app.status_bar.position.state == BROKEN
        frame0 = app.engine.execute("k").data["frames"][0]["symbol"]  # the source pane follows the break-in
        assert app.source_view.picture.title.split()[1].split("+")[0] == frame0
        while_running = {built_by for running, state, built_by in seen if state == RUNNING}
        assert while_running and {thread for _, thread in while_running} == {"wskdbg-machine"}
        pids = {pid for pid, _ in while_running}
        assert (os.getpid() not in pids) if server else (pids == {os.getpid()})

    drive(app, scenario)


def _gate() -> tuple[Callable[[], None], Callable[[], None], Callable[[float], None], Callable[[], None]]:
    """A gate across processes (pipes made before the machine server forks): the machine side
    opens it and waits to be let through; the test waits for it to open and lets it through."""
    opened_r, opened_w = os.pipe()
    through_r, through_w = os.pipe()
    state = {"open": False}

    def open_and_wait() -> None:  # the machine side
        state["open"] = True
        os.write(opened_w, b"o")
        os.read(through_r, 1)

    def is_open() -> bool:
        return state["open"]

    def wait_open(timeout: float) -> None:  # the test
        import select
        select.select([opened_r], [], [], timeout)

    def let_through() -> None:
        os.write(through_w, b"t")

    return open_and_wait, is_open, wait_open, let_through


def _phase_hooks(engine: Engine, phase: str, open_and_wait: Callable[[], None], is_open: Callable[[], bool]) -> None:
    """Stops the machine side at `phase` of `g; g` until the test has pressed Ctrl+C."""
    real_execute, real_execute_one = engine.execute, engine.execute_one
    events = [0]
    runs = [0]

    def execute(line: str):  # type: ignore[no-untyped-def]
        if phase == "before the machine runs":
            open_and_wait()
        return real_execute(line)

    def execute_one(text: str, offset: int = 0):  # type: ignore[no-untyped-def]
        result = real_execute_one(text, offset)
        runs[0] += 1
        if phase == "between the two g" and runs[0] == 1:
            open_and_wait()
        return result

    def on_event(ev) -> None:  # type: ignore[no-untyped-def]
        events[0] += 1
        if (phase == "during the first g" and runs[0] == 0 and events[0] == 5) or \
                (phase == "during the second g" and runs[0] == 1 and not is_open()):
            open_and_wait()

    engine.execute = execute  # type: ignore[method-assign]
    engine.execute_one = execute_one  # type: ignore[method-assign]
    engine.bus.subscribe(on_event)


PHASES = ["before the machine runs", "during the first g", "between the two g", "during the second g"]


@pytest.mark.parametrize("phase", PHASES)
def test_ctrl_c_at_every_phase_of_g_g_breaks_in_through_the_machine_server(phase: str) -> None:
    open_and_wait, is_open, wait_open, let_through = _gate()

    def make_engine() -> Engine:  # runs in the machine server's process
        # each g ends at 5 ms of virtual time: a lost break-in shows as a cap stop
        engine = ticker_engine(run_cap_ns=5_000_000)
        _phase_hooks(engine, phase, open_and_wait, is_open)
        return engine

    app = make_ticker_app(make_engine=make_engine)

    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        app.run_command("g; g")
        await asyncio.to_thread(wait_open, 60)
        await pilot.press("ctrl+c")
        let_through()
        await app.settle()
        last = app.command_pane.transcript[-1]
        assert last.count(BREAK_LINE) == 1, (phase, last)  # a lost break-in ends both g at the run cap
        assert app.link.position().state == BROKEN

    drive(app, scenario)


@pytest.mark.parametrize("phase", PHASES)
def test_ctrl_c_at_every_phase_of_g_g_breaks_in_in_process(phase: str) -> None:
    app = make_ticker_app(server=False)
    engine = app.engine
    engine.run_cap_ns = 5_000_000  # each g ends at 5 ms of virtual time: a lost break-in shows as a cap stop
    gate = threading.Event()  # the machine side waits here for the test's Ctrl+C
    pressed = threading.Event()
    real_execute, real_execute_one = engine.execute, engine.execute_one
    events = [0]
    runs = [0]

    def execute(line: str):  # type: ignore[no-untyped-def]
        if phase == "before the machine runs":
            gate.set()
            pressed.wait(60)
        return real_execute(line)

    def execute_one(text: str, offset: int = 0):  # type: ignore[no-untyped-def]
        result = real_execute_one(text, offset)
        runs[0] += 1
        if phase == "between the two g" and runs[0] == 1:
            gate.set()
            pressed.wait(60)
        return result

    def on_event(ev) -> None:  # type: ignore[no-untyped-def]
        events[0] += 1
        if (phase == "during the first g" and runs[0] == 0 and events[0] == 5) or \
                (phase == "during the second g" and runs[0] == 1 and not gate.is_set()):
            gate.set()
            pressed.wait(60)

    engine.execute = execute  # type: ignore[method-assign]
    engine.execute_one = execute_one  # type: ignore[method-assign]
    engine.bus.subscribe(on_event)

    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        app.run_command("g; g")
        await asyncio.to_thread(gate.wait, 60)
        await pilot.press("ctrl+c")
        pressed.set()
        await app.settle()
        assert engine.last_stop.reason == "break", (phase, engine.last_stop)
        assert app.command_pane.transcript[-1].count(BREAK_LINE) == 1
        assert app.link.position().state == BROKEN

    drive(app, scenario)
