"""Pilot tests of the wskdbg TUI over a deterministic engine stand-in.

Each test drives the app the way a person would (keys, Enter, the filter bar)
and checks what the views then show.  No wall-clock waits: `app.settle()`
waits for the command worker, then refreshes every view.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from conftest import SIZE, make_app
from screen_text import screen_text
from textual.pilot import Pilot
from textual.widgets import DataTable

from wskdbg.tui.app import WskdbgApp
from wskdbg.tui.crash_screen import CrashScreen
from wskdbg.tui.link import BROKEN, BUGCHECKED, RUNNING
from wskdbg.tui.tour import TOUR_STEPS, TourScreen
from wskdbg.tui.trace_view import TraceFilterBar

Scenario = Callable[[WskdbgApp, Pilot], Awaitable[None]]


def drive(app: WskdbgApp, scenario: Scenario) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(main())


async def type_command(app: WskdbgApp, pilot: Pilot, command: str) -> None:
    app.command_pane.input.focus()
    await pilot.press(*command, "enter")
    await app.settle()
    await pilot.pause()


async def step_until_irp_outstanding(app: WskdbgApp, pilot: Pilot) -> int:
    """F11 until the I/O manager has an IRP in flight (pended by the miniport)."""
    for _ in range(20):
        if app.link.live_irps():
            return app.link.live_irps()[0][1].address
        await pilot.press("f11")
        await app.settle()
    raise AssertionError("no IRP became outstanding")


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


def test_typed_command_runs_on_the_engine_and_prints_like_the_repl(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await type_command(app, pilot, "!irp zz")
        assert app.engine.executed == ["!irp zz"]
        assert "0: kd> !irp zz" in app.command_pane.transcript
        assert "Invalid IRP address 'zz'" in app.command_pane.transcript

    drive(app, scenario)


def test_enter_on_an_empty_line_repeats_the_last_command(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await type_command(app, pilot, "t")
        await pilot.press("enter")
        await app.settle()
        assert app.engine.executed == ["t", "t"]

    drive(app, scenario)


def test_up_arrow_recalls_history_and_tab_completes_command_names(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await type_command(app, pilot, "k")
        line = app.command_pane.input
        await pilot.press("up")
        assert line.value == "k"
        line.value = ""
        await pilot.press(".", "r", "e", "tab")
        assert line.value == ".reboot "

    drive(app, scenario)


def test_f11_and_f10_step_and_the_stack_view_highlight_moves(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        seen = []
        for key in ("f11", "f11", "f10", "f10"):
            before = app.link.position().events_run
            await pilot.press(key)
            await app.settle()
            assert app.link.position().events_run == before + 1
            seen.append(app.stack_view.picture.current)
        assert app.engine.executed == ["t", "t", "p", "p"]
        assert {layer for _, layer in seen} == {"drivers", "miniport"}
        assert seen[0] != seen[1]  # the highlight moved between layers
        assert app.stack_view.picture.previous == seen[-2]

    drive(app, scenario)


def test_selecting_an_irp_shows_its_stack_locations_and_its_mdl_chain_with_bytes(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        address = await step_until_irp_outstanding(app, pilot)
        await pilot.press("f2")
        table = app.irp_view.query_one(DataTable)
        table.focus()
        keys = [str(k.value) for k in table.rows]
        table.move_cursor(row=keys.index(f"winsrv:{address:x}"))
        await pilot.press("enter")
        await pilot.pause()
        detail = str(app.irp_view.query_one("#irp-detail").render())
        assert f"{address:016x}" in detail
        assert "netvmini" not in detail or "IRP_MJ_INTERNAL_DEVICE_CONTROL" in detail
        assert "echosrv!EchoSendComplete" in detail  # the completion routine of the top location
        await pilot.press("f3")
        await pilot.pause()
        mdl_view = app.mdl_view
        assert mdl_view.mdl is not None and mdl_view.mdl.address == app.link.object_at(address)[1].mdl_address.address
        boxes = str(mdl_view.query_one("#mdl-boxes").render())
        assert "StartVa" in boxes and "ByteCount" in boxes and "0x20 (32)" in boxes
        dump = str(mdl_view.query_one("#mdl-dump").render())
        assert "hello" in dump

    drive(app, scenario)


def test_trace_filter_keeps_only_the_chosen_provider(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        for _ in range(6):
            await pilot.press("f11")
            await app.settle()
        await pilot.press("f4")
        pane = app.trace_pane
        assert len(pane.store) > 20
        bar = pane.query_one(TraceFilterBar)
        bar.focus()
        await pilot.pause()
        bar.value = "provider:echosr"  # typed; the last key is pressed for real
        bar.cursor_position = len(bar.value)
        await pilot.press("v")
        await app.settle()
        selection = pane.view.selection
        lines = [pane.store.line(p) for p in selection]
        assert pane.trace_filter.providers == {"echosrv"}, (pane.trace_filter, bar.value, app.focused)
        assert lines and all("[echosrv]" in line for line in lines)
        assert any("sending 32 bytes" in line for line in lines)

    drive(app, scenario)


def test_break_in_while_running_stops_the_machine_at_once(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        start = app.link.position().events_run
        await pilot.press("f5")
        await asyncio.to_thread(app.engine.running_for_a_while.wait)  # it has run 200 events
        assert app.refresh_views().state == RUNNING
        assert app.run_command("k") is False  # commands wait while it runs; break-in does not
        assert "*BUSY*" in app.command_pane.transcript[-1]  # commands wait; break-in does not
        await pilot.press("ctrl+c")
        await app.settle()
        position = app.link.position()
        assert position.state == BROKEN
        assert position.events_run > start + 200
        assert any("Break instruction exception" in line for line in app.command_pane.transcript)
        assert "BROKEN IN" in screen_text(app)

    drive(app, scenario)


def test_bug_check_shows_the_crash_screen_and_reboot_brings_the_machine_back(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await type_command(app, pilot, ".crash")
        await pilot.press("f5")
        await app.settle()
        await pilot.pause()
        assert app.link.position().state == BUGCHECKED
        assert isinstance(app.screen, CrashScreen)
        text = screen_text(app)
        assert "MULTIPLE_IRP_COMPLETE_REQUESTS" in text and "Bugcheck Analysis" in text
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
        assert app.engine.executed[-1] == ".reboot"
        booted = position.events_run
        await pilot.press("f11")  # the new machine steps
        await app.settle()
        assert app.link.position().events_run == booted + 1

    drive(app, scenario)


def test_clicking_an_irp_address_selects_it_and_runs_irp(app: WskdbgApp) -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        address = await step_until_irp_outstanding(app, pilot)
        app.action_inspect_address(address)
        await app.settle()
        assert app.engine.executed[-1] == f"!irp {address:x}"
        assert app.irp_view.selected == ("winsrv", address)
        assert app.mdl_view.mdl is not None

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


def test_timer_refresh_shows_new_events_while_running() -> None:
    app = make_app(poll_hz=50)

    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        await pilot.press("f5")
        for _ in range(200):
            await pilot.pause(0.02)  # lets the app's own timer fire (no assertion on time)
            status = app.status_bar.position
            if status is not None and status.state == RUNNING and status.events_run > 0:
                break
        assert app.status_bar.position.state == RUNNING
        await pilot.press("ctrl+c")
        await app.settle()
        assert app.status_bar.position.state == BROKEN

    drive(app, scenario)
