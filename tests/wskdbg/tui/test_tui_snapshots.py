"""Snapshot tests (pytest-textual-snapshot) on the real engine and the standard lab: the main
screen stopped in echosrv, the MDL view of an echo on its way out, the crash screen.

Stable from run to run: the lab is seeded (same addresses, same virtual times), the app has
no timers (poll_hz=0) and no blinking cursor, and the terminal size is fixed.
Update with `pytest tests/wskdbg/tui/test_tui_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from conftest import SIZE, make_lab_app
from textual.pilot import Pilot

from wskdbg.tui.app import WskdbgApp


async def _run(app: WskdbgApp, pilot: Pilot, *commands: str) -> None:
    await app.settle()  # startup (the welcome line) first
    for command in commands:
        app.run_command(command)
        await app.settle()
    await _quiet(pilot)


async def _quiet(pilot: Pilot) -> None:
    """Let deferred log writes and scrolls land before the picture is taken."""
    for _ in range(3):
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()


def test_main_screen_stopped_in_echosrv_after_two_steps(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await _run(pilot.app, pilot, "bp /h winsrv echosrv!WskSampleReceiveIrpCompletionRoutine",  # type: ignore[arg-type]
                   '!echo "hello"', "g", "t", "t")

    assert snap_compare(make_lab_app(), terminal_size=SIZE, run_before=run_before)


def test_mdl_view_of_the_echo_leaving_winsrv(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        app: WskdbgApp = pilot.app  # type: ignore[assignment]
        # Stopped where the echo reaches the miniport: the NB's MDL chain is tcpip's header,
        # then echosrv's own buffer (zero copy).
        await _run(app, pilot, "bp /h winsrv afd!WskProAPISend", '!echo "hello"', "g",
                   "bp /h winsrv netvmini!MPSendNetBufferLists", "g")
        first_mdl = app.engine.execute("? poi(poi(@rdx+8)+20)").data["value"]
        app.action_inspect_address(first_mdl)
        await app.settle()
        await _quiet(pilot)

    assert snap_compare(make_lab_app(), terminal_size=SIZE, run_before=run_before)


def test_crash_screen_after_buggy_completes_an_irp_twice(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await _run(pilot.app, pilot, "sc start buggy", "g")  # type: ignore[arg-type]

    assert snap_compare(make_lab_app(), terminal_size=SIZE, run_before=run_before)


def test_source_pane_follows_the_step_into_echosrvs_receive(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        app: WskdbgApp = pilot.app  # type: ignore[assignment]
        await _run(app, pilot, "bp /h winsrv echosrv!WskSampleOpReceive", '!echo -n 1 "hello"', "g", "t")
        app.action_show_tab("source")
        await _quiet(pilot)

    assert snap_compare(make_lab_app(), terminal_size=SIZE, run_before=run_before)
