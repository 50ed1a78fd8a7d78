"""What a trip back in time costs as the session grows (a script, not a test).

    PYTHONPATH=. python3 tests/bench/bench_timetravel.py [--sizes 10000,100000,1000000] [--full]
                                                         [--every 10000] [--cap 12]

For each size H, a fresh lab runs HTTP traffic (`!httperf --num-conns K` from client to khttpd on
winsrv, K chosen for about H hand-offs) with `g`, then times, wall clock, one command each:

  t-    back one hand-off from the end of the run
  p-    back over, in the same context (scans for the place, then goes there)
  g-    back to the last hit of `bp khttpd!KhttpdSendComplete` (hit once per request)
  !tt   to a position noted 2,000 hand-offs before the end (`!tt E:S`)
  !tt50 to the middle of the trace (`!tt 50`: how far back grows with the run, so this one does)

"with" is the machine server with checkpoints (what the REPL, `wskdbg run`, `-c` and the TUI use);
"without" is the in-process engine, which re-executes from the start of the trace.

`--tui` also times `t-` through the TUI (Textual's headless pilot: from the key to the views
repainted, trace included): "tui" with the machine server (views built there), "tui-local" with
an in-process engine (what the TUI did before it used the server; quick mode only up to 100,000).  The last lines print
the ratios (largest size ÷ smallest).  Quick mode (the default) runs "without" only up to 100,000
hand-offs (about 3 minutes in all); --full runs it at every size.  The notes give the memory of
the machine server and its checkpoints (Linux /proc).  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import Any

from wskdbg.engine import Engine
from wskdbg.machine_server import MachineProxy

HANDOFFS_PER_CONNECTION = 688  # one httperf connection on the default lab (120 connections: 82,558 hand-offs)
OPS = ("t-", "p-", "g-", "!tt", "!tt50")


def ok(engine: Any, line: str) -> str:
    result = engine.execute(line)
    if result.error:
        raise SystemExit(f"bench: `{line}` failed: {result.text}")
    return result.text


def position_of(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("Time Travel Position: "):
            return line.split(": ", 1)[1].split()[0]
    raise SystemExit(f"bench: no position in {text!r}")


def timed(engine: Any, line: str) -> tuple[float, str]:
    start = time.perf_counter()
    text = ok(engine, line)
    return time.perf_counter() - start, text


def measure(engine: Any, size: int) -> tuple[int, dict[str, float]]:
    """Build a run of about `size` hand-offs on `engine`, then time each trip."""
    connections = max(1, size // HANDOFFS_PER_CONNECTION)
    ok(engine, f"!httperf --server winsrv --uri /index.html --num-conns 0n{connections}")
    ok(engine, "g")
    took: dict[str, float] = {}
    took["t-"], text = timed(engine, "t-")
    end = position_of(text)
    back = position_of(ok(engine, "t- 0n2000"))
    ok(engine, f"!tt {end}")  # forward again (a run, not a trip back)
    took["!tt"], _ = timed(engine, f"!tt {back}")
    ok(engine, f"!tt {end}")
    took["p-"], _ = timed(engine, "p-")
    ok(engine, f"!tt {end}")
    ok(engine, "bp khttpd!KhttpdSendComplete")
    took["g-"], _ = timed(engine, "g-")
    ok(engine, "bc *")
    ok(engine, f"!tt {end}")
    took["!tt50"], _ = timed(engine, "!tt 50")
    seq = int(end.split(":")[1], 16)
    return seq, took


def pss_mib(pid: int) -> int:
    """Proportional set size: pages shared copy-on-write by n processes count 1/n in each."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("Pss:")) // 1024
    except (OSError, StopIteration):
        return 0


def rss_mib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) // 1024
    except (OSError, StopIteration):
        return 0


def run(kind: str, size: int, every: int, cap: int) -> tuple[int, dict[str, float], str]:
    if kind == "with":
        engine: Any = MachineProxy(lambda: Engine(seed=1), every=every, cap=cap)
    else:
        engine = Engine(seed=1)
    try:
        handoffs, took = measure(engine, size)
        extra = ""
        if kind == "with":
            pids = [engine.live_pid] + engine.checkpoint_pids
            extra = (f"{len(engine.checkpoint_pids)} checkpoints; memory (PSS) of the server and all "
                     f"checkpoints {sum(map(pss_mib, pids))} MiB, the server's RSS {rss_mib(engine.live_pid)} MiB")
        return handoffs, took, extra
    finally:
        engine.close()


def run_tui(kind: str, size: int, every: int, cap: int) -> tuple[int, float]:
    """`t-` through the TUI after a run of about `size` hand-offs: (hand-offs, seconds)."""
    import asyncio

    from wskdbg.tui.app import WskdbgApp
    engine: Any = (MachineProxy(lambda: Engine(seed=1), every=every, cap=cap, views=True) if kind == "tui"
                   else Engine(seed=1))
    app = WskdbgApp(engine, poll_hz=0, cursor_blink=False)
    connections = max(1, size // HANDOFFS_PER_CONNECTION)
    out: dict[str, Any] = {}

    async def command(line: str) -> str:
        pane = app.command_pane
        before = len(pane.transcript)
        app.run_command(line)
        await app.settle()
        return "\n".join(pane.transcript[before + 1:])

    async def main() -> None:
        async with app.run_test(size=(120, 40)):
            await app.ready.wait()
            await command(f"!httperf --server winsrv --uri /index.html --num-conns 0n{connections}")
            await command("g")
            start = time.perf_counter()
            text = await command("t-")
            out["took"] = time.perf_counter() - start
            out["seq"] = int(position_of(text).split(":")[1], 16)

    try:
        asyncio.run(main())
    finally:
        engine.close()
    return out["seq"], out["took"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="hand-off counts (comma-separated)")
    parser.add_argument("--full", action="store_true", help="also time re-execution at every size")
    parser.add_argument("--every", type=int, default=10_000, help="hand-offs between checkpoints")
    parser.add_argument("--cap", type=int, default=12, help="checkpoint processes kept")
    parser.add_argument("--tui", action="store_true", help="also time t- through the TUI")
    parser.add_argument("--tui-only", action="store_true", help="only the TUI figures")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    results: dict[str, dict[int, dict[str, float]]] = {"with": {}, "without": {}}
    print(f"time travel: seconds per command (checkpoints every {args.every:,} hand-offs, at most {args.cap})")
    print(f"{'engine':<9}{'hand-offs':>11}  " + "".join(f"{op:>8}" for op in OPS) + "   notes")
    for size in sizes if not args.tui_only else ():
        for kind in ("with", "without"):
            if kind == "without" and not args.full and size > 100_000:
                continue
            handoffs, took, extra = run(kind, size, args.every, args.cap)
            results[kind][size] = took
            print(f"{kind:<9}{handoffs:>11,}  " + "".join(f"{took[op]:>8.3f}" for op in OPS) + f"   {extra}",
                  flush=True)
    small, large = sizes[0], sizes[-1]
    for kind in ("with", "without"):
        if small in results[kind] and large in results[kind] and large != small:
            a, b = results[kind][small], results[kind][large]
            print(f"ratio {kind:<8} ({large:,} / {small:,}): "
                  + "  ".join(f"{op} {b[op] / a[op]:.2f}" for op in OPS))
    if args.tui or args.tui_only:
        tui: dict[str, dict[int, float]] = {"tui": {}, "tui-local": {}}
        print("t- through the TUI: seconds from the command to the views repainted")
        for size in sizes:
            for kind in ("tui", "tui-local"):
                if kind == "tui-local" and not args.full and size > 100_000:
                    continue
                handoffs, took = run_tui(kind, size, args.every, args.cap)
                tui[kind][size] = took
                print(f"{kind:<10}{handoffs:>11,}  t- {took:8.3f}", flush=True)
        for kind, figures in tui.items():
            if small in figures and large in figures and large != small:
                print(f"ratio {kind} t- ({large:,} / {small:,}): {figures[large] / figures[small]:.2f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"front end peak RSS {rss} MiB (machine servers are separate processes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
