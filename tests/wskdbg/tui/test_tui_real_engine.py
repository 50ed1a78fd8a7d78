"""The TUI on the real engine and the default lab: it starts, runs commands, steps."""

from __future__ import annotations

import asyncio

from conftest import SIZE
from screen_text import screen_text

from wskdbg.tui.app import WskdbgApp
from wskdbg.tui.link import BROKEN


def test_default_lab_opens_with_both_hosts_and_runs_registry_commands() -> None:
    app = WskdbgApp(seed=1, poll_hz=0, cursor_blink=False)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await app.settle()
            text = screen_text(app)
            assert "winsrv" in text and "client" in text and "tcpip" in text and "netvmini" in text
            names = app.command_pane.input.names
            assert "!irp" in names and "g" in names  # completion comes from the engine's registry
            app.run_command("help")
            await app.settle()
            assert any("!irp" in chunk for chunk in app.command_pane.transcript)
            before = app.link.position()
            app.run_command("t")
            await app.settle()
            after = app.link.position()
            assert after.state == BROKEN
            assert after.events_run >= before.events_run
            await pilot.pause()

    try:
        asyncio.run(main())
    finally:
        app.engine.close()
