"""Snapshot tests (pytest-textual-snapshot): the main screen, the MDL view, the crash screen.

Stable from run to run: the stand-in engine is seeded, the app has no timers
(poll_hz=0) and no blinking cursor, and the terminal size is fixed.
Update with `pytest tests/wskdbg/tui/test_tui_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from conftest import SIZE, make_app
from textual.pilot import Pilot
from textual.widgets import DataTable

from wskdbg.tui.app import WskdbgApp


async def _steps(app: WskdbgApp, pilot: Pilot, count: int) -> None:
    await app.settle()  # startup (the welcome line) first
    for _ in range(count):
        app.run_command("t")
        await app.settle()
    await _quiet(pilot)


async def _quiet(pilot: Pilot) -> None:
    """Let deferred log writes and scrolls land before the picture is taken."""
    for _ in range(3):
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()


def test_main_screen_after_two_steps(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await _steps(pilot.app, pilot, 2)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_mdl_view_of_an_outstanding_irp(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        app: WskdbgApp = pilot.app  # type: ignore[assignment]
        await _steps(app, pilot, 1)  # EchoSend: the IRP is pended by the miniport
        (host, irp), = app.link.live_irps()
        app.irp_view.select(host, irp.address)
        app.action_show_tab("mdl")
        await _quiet(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_crash_screen_after_a_double_completion(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        app: WskdbgApp = pilot.app  # type: ignore[assignment]
        await app.settle()
        app.run_command(".crash")
        await app.settle()
        app.run_command("g")
        await app.settle()
        await _quiet(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)
