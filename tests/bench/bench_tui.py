"""Benchmark of the whole TUI (not a timed test): run `python tests/bench/bench_tui.py`.

1. Trace filter in the full app: the Trace tab of `WskdbgApp` holds 1,000 or
   1,000,000 records (the synthetic WPP/event mix of bench_trace_view.py);
   the figure is the time from the filter's last keypress to the first
   repainted frame that shows the new filter (composited and rendered to
   terminal segments), measured the same way as bench_trace_view.py.
2. Break-in: while `g` runs the real engine on a machine that never idles
   (the debugger tests' ticker lab) on its worker thread, the time from the
   Ctrl+C key reaching the app to the machine being stopped and the views
   repainted.  (It used to hang: the stand-in engine dropped a break-in that
   came before its run started, so `g` ran on forever.)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests", "bench"), os.path.join(ROOT, "tests", "wskdbg")]

from bench_trace_view import build_store  # noqa: E402
import threading  # noqa: E402

from dbg_harness import factory  # noqa: E402
from textual._compositor import CompositorUpdate  # noqa: E402

from wskdbg.engine import Engine  # noqa: E402
from wskdbg.tui.app import WskdbgApp  # noqa: E402
from wskdbg.tui.link import BROKEN  # noqa: E402
from wskdbg.tui.trace_view import TraceFilterBar, TracePane  # noqa: E402

SIZE = (160, 50)
FILTERS = ["provider:echosrv", "level<=warning", "retransmit", "flag:SEND host:winsrv"]
ROUNDS = 3


async def measure_filter(count: int) -> list[float]:
    app = WskdbgApp(Engine(seed=1), poll_hz=10, cursor_blink=False)
    frames_ms: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        await app.settle()
        pane: TracePane = app.trace_pane
        store = build_store(count)
        pane.store.extend(store.record(p) for p in range(store.first_position, store.end_position))
        app.action_show_tab("trace")
        await pilot.pause()
        pane.flush(complete=True)
        screen = app.screen
        frames: list[tuple[float, object]] = []
        refresh, display = screen._compositor_refresh, app._display

        def timed_display(target_screen, renderable) -> None:  # type: ignore[no-untyped-def]
            display(target_screen, renderable)
            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(app.console)

        def timed_refresh() -> None:
            shown = pane.view.selection.filter
            refresh()
            frames.append((time.perf_counter(), shown))

        screen._compositor_refresh = timed_refresh  # type: ignore[method-assign]
        app._display = timed_display  # type: ignore[method-assign]
        bar = pane.query_one(TraceFilterBar)
        for _ in range(ROUNDS):
            for text in FILTERS:
                bar.focus()
                bar.value = text[:-1]
                bar.cursor_position = len(bar.value)
                await pilot.pause()
                pane.flush(complete=True)
                await pilot.pause()
                frames.clear()
                start = time.perf_counter()
                await pilot.press(text[-1])
                expected = pane.view.selection.filter
                await pilot.pause()
                end = next(t for t, shown in frames if shown == expected and t > start)
                frames_ms.append((end - start) * 1e3)
    return frames_ms


async def measure_break_in() -> tuple[list[float], list[float]]:
    latencies: list[float] = []
    stopped: list[float] = []
    engine = Engine(factory=factory("ticker"), seed=1, run_cap_ns=1 << 62, event_cap=1 << 40)
    app = WskdbgApp(engine, poll_hz=10, cursor_blink=False)
    seen = [0]
    running = threading.Event()

    def count(ev) -> None:  # type: ignore[no-untyped-def]
        seen[0] += 1
        if seen[0] >= 200:
            running.set()

    engine.bus.subscribe(count)
    async with app.run_test(size=SIZE) as pilot:
        await app.settle()
        for _ in range(ROUNDS):
            seen[0] = 0
            running.clear()
            app.run_command("g")
            await asyncio.to_thread(running.wait)  # it has run 200 hand-offs
            start = time.perf_counter()
            app.action_break_in()  # what Ctrl+C / Ctrl+Break call
            while engine.running:  # the machine thread has not stopped yet
                await asyncio.sleep(0)
            stopped.append((time.perf_counter() - start) * 1e3)
            while app.link.running:  # the worker hands the result back to the UI thread
                await asyncio.sleep(0)
            app.refresh_views(force=True)
            latencies.append((time.perf_counter() - start) * 1e3)
            assert app.link.position().state == BROKEN
            await app.settle()
            await pilot.pause()
    engine.close()
    return stopped, latencies


def main() -> None:
    print(f"terminal {SIZE[0]}x{SIZE[1]}, {ROUNDS} rounds x {len(FILTERS)} filters; milliseconds")
    for count in (1_000, 1_000_000) if "--break-only" not in sys.argv else ():
        start = time.perf_counter()
        ms = asyncio.run(measure_filter(count))
        print(f"filter keypress -> repainted trace view, {count:>9,} lines: median {statistics.median(ms):7.2f}"
              f"  max {max(ms):7.2f}   (run {time.perf_counter() - start:5.1f} s)")
    stopped, ms = asyncio.run(measure_break_in())
    print(f"break-in while running -> machine stopped: median {statistics.median(stopped):7.2f}"
          f"  max {max(stopped):7.2f}")
    print(f"break-in while running -> result shown and views repainted: median {statistics.median(ms):7.2f}"
          f"  max {max(ms):7.2f}")


if __name__ == "__main__":
    main()
