"""Write wskdbg/tui/screenshot.svg (the README's picture): `python tests/wskdbg/tui/make_screenshot.py`.

The real engine on the standard lab runs the tour's commands (a breakpoint in echosrv,
`!echo "hello"`, g, k, !irp, p, the WPP session), then shows the echo client's pending receive IRP.
"""

from __future__ import annotations

import asyncio
import os
import sys

HERE = os.path.dirname(__file__)
sys.path[:0] = [os.path.abspath(os.path.join(HERE, "..", "..", "..")), HERE]

from wskdbg.tui.app import WskdbgApp  # noqa: E402
from wskdbg.tui.tour import TOUR_STEPS  # noqa: E402

OUT = os.path.abspath(os.path.join(HERE, "..", "..", "..", "wskdbg", "tui", "screenshot.svg"))


async def main() -> None:
    app = WskdbgApp(None, poll_hz=0, cursor_blink=False)  # the real engine on the standard lab
    async with app.run_test(size=(140, 42)) as pilot:
        await app.settle()
        for command in [s.command for s in TOUR_STEPS if s.command]:
            app.run_command(command)
            await app.settle()
        # the echo client's receive, pending in AFD until its line comes back
        irps = sorted(app.irp_view.rows, key=lambda row: (row.state != "pending", row.host != "client"))
        if irps:
            app.irp_view.select(irps[0].host, irps[0].address)
            app.run_command(f"!irp {irps[0].address:x}")
            await app.settle()
        for _ in range(3):
            await pilot.pause()
        with open(OUT, "w", encoding="utf-8") as f:
            f.write(app.export_screenshot(title="wskdbg"))
    print("wrote", OUT)


if __name__ == "__main__":
    asyncio.run(main())
