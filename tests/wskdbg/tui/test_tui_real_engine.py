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


def test_network_view_shows_each_hosts_tcp_statistics_after_a_syn_flood_and_a_page() -> None:
    """F6 shows, per host, the TCP statistics `!netstat -s` prints (Active/Passive Opens, Failed
    Connection Attempts, Reset Connections, Current Connections, Segments Retransmitted, SYN queue
    drops, SYN-protection activations), taken from the engine's MachineView snapshot."""
    from textual.widgets import DataTable

    from wskdbg.tui.network_view import TCP_STAT_COLUMNS

    app = WskdbgApp(seed=1, poll_hz=0, cursor_blink=False)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await app.settle()
            for line in ("!synflood /w winsrv 80 -n 400 -r 20000", "!http /w /index.html"):
                app.run_command(line)
                await app.settle()
            await pilot.press("f6")
            await app.settle()
            stats = {row.host: row for row in app.link.view().tcp_stats}
            assert {"winsrv", "client"} <= set(stats) and len(stats) == len(app.link.view().picture.hosts)
            winsrv, client = stats["winsrv"], stats["client"]
            assert winsrv.value("tcp_syn_protection_activations") >= 1  # the SYN queue (200) filled
            assert winsrv.value("tcp_passive_opens") >= 1 and client.value("tcp_active_opens") >= 1
            # The same numbers `!netstat -s` prints on winsrv (the view reads no live machine).
            counters = app.engine.execute("!netstat -s").data  # the current host: winsrv
            assert winsrv.values == tuple(counters[name] for _, name in TCP_STAT_COLUMNS)
            table = app.network_view.query_one("#tcp-stats", DataTable)
            assert table.row_count == len(stats)
            shown = [str(cell) for cell in table.get_row_at(list(stats).index("winsrv"))]
            assert shown[0] == "winsrv" and shown[1:] == [str(v) for v in winsrv.values]
            text = screen_text(app)
            assert "pasv" in text and "synprot" in text  # the whole row fits beside the stack view
            await pilot.pause()

    try:
        asyncio.run(main())
    finally:
        app.engine.close()
