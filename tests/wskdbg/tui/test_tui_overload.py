"""F6's per-host TCP statistics carry issue 12's overload counters: connections refused because
the listen backlog was full, connections in TIME_WAIT, free dynamic ports, connects that found none."""

from __future__ import annotations

import asyncio

from conftest import SIZE, make_app
from screen_text import screen_text


def test_network_view_shows_backlog_refusals_time_wait_and_port_exhaustion() -> None:
    app = make_app()  # the standard lab in a machine server, forked from the worker's template (lab_template.py)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await app.settle()
            for line in ("!cpu winsrv 2003 1", "!connload /rate 2000 30", "g", ".host client",
                         "!netsh int ipv4 set dynamicport tcp start=50000 num=255", "!connload /serial 260", "g"):
                app.run_command(line)
                await app.settle()
            await pilot.press("f6")
            await app.settle()
            stats = {row.host: row for row in app.link.view().tcp_stats}
            winsrv, client = stats["winsrv"], stats["client"]
            assert winsrv.value("tcp_backlog_refusals") > 0
            assert client.value("tcp_time_wait_connections") >= 255
            assert client.value("tcp_dynamic_ports_free") == 0
            assert client.value("tcp_port_exhaustion_failures") > 0
            text = screen_text(app)
            assert "refused(backlog)" in text and "no port" in text  # the whole row fits beside the stack view
            await pilot.pause()

    try:
        asyncio.run(main())
    finally:
        app.engine.close()
