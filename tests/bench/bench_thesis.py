"""The kernel-mode web server thesis, replayed on the emulated 2003-era machine (a script, not a test).

    PYTHONPATH=. python3 tests/bench/bench_thesis.py [--full] [--profile 2003]

winsrv gets one 1.1 GHz processor (stack/kernel/costs.py, profile "2003"; every cost calibrated on its
own from a published figure, none fitted to this benchmark).  For each link speed (10/100/1000 Mb/s),
file size (1 KiB .. 1 MiB) and server - khttpd zero-copy, khttpd copy, khttpd's hand-over to the
user-mode web server, and the user-mode static server (ReadFile + send through AFD: two copies and
system calls per request, as IIS/Apache of that era) - an httperf-style load runs in virtual time:

    serialized   one client, one connection per request, one request at a time
    concurrent   several closed-loop clients at once (8, or 6 and 3 in quick mode): the server's
                 processor becomes the bottleneck

Printed: req/s and Mbit/s per server, the kernel / user ratios (khttpd zero-copy over the user-mode
static server) next to the thesis's published ranges, and a terminal plot of req/s against file
size (concurrent load, 1000 Mb/s), one line per server.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.thesis_lab import SERVERS, measure, server_world  # noqa: E402

SIZES = [1024, 4096, 16384, 65536, 262144, 1048576]
LINKS = [10_000_000, 100_000_000, 1_000_000_000]
SMALL = 32 * 1024  # the thesis puts the line between small and big files at 32-64 KiB
THESIS = {"rps small": "+200..300 %", "rps big": "+0..25 %", "mbps small": "+100..200 %", "mbps big": "+0..25 %"}
MARKS = {"khttpd zero-copy": "K", "khttpd copy": "C", "hand-over": "H", "user-mode static": "U"}


def counts(size: int, full: bool) -> tuple[int, int, int]:
    """(serialized requests, concurrent clients, requests per concurrent client)."""
    if full:
        return (20, 8, 10) if size < 262144 else (6, 8, 3)
    return (3, 6, 2) if size < 262144 else (1, 3, 1)


def run(profile: str, full: bool) -> dict:
    results: dict = {}
    for link in LINKS:
        for server in SERVERS:
            world = server_world(server, profile, link)
            for size in SIZES:
                serial, clients, per_client = counts(size, full)
                results[(link, server, size, "serialized")] = measure(world, server, size, serial, 1)
                results[(link, server, size, "concurrent")] = measure(world, server, size, per_client, clients)
    return results


def ratio_text(kernel: float, user: float) -> str:
    return f"{(kernel / user - 1) * 100:+6.0f} %" if user else "      -"


def print_tables(results: dict) -> None:
    for load in ("serialized", "concurrent"):
        for link in LINKS:
            print(f"\n{load} load, {link // 1_000_000} Mb/s: req/s (Mbit/s)")
            print(f"{'size':>8} | " + " | ".join(f"{s:>20}" for s in SERVERS) + " | kernel/user req/s  Mbit/s  thesis")
            for size in SIZES:
                cells = []
                for server in SERVERS:
                    r = results[(link, server, size, load)]
                    cells.append(f"{r['rps']:9.0f} ({r['mbps']:7.1f})")
                k = results[(link, "khttpd zero-copy", size, load)]
                u = results[(link, "user-mode static", size, load)]
                kind = "small" if size < SMALL else "big"
                print(f"{size:>8} | " + " | ".join(f"{c:>20}" for c in cells) +
                      f" | {ratio_text(k['rps'], u['rps'])} {ratio_text(k['mbps'], u['mbps'])}  "
                      f"{THESIS['rps ' + kind]} / {THESIS['mbps ' + kind]}")
    print("\nwinsrv CPU per request (us) and payload bytes copied per request, concurrent load, 1000 Mb/s:")
    for server in SERVERS:
        row = [results[(1_000_000_000, server, size, "concurrent")] for size in SIZES]
        print(f"  {server:18} " + " ".join(f"{r['cpu_ns_per_request'] / 1000:8.0f}" for r in row) + "   copied: " +
              " ".join(f"{r['copied_per_request']:8.0f}" for r in row))


def plot(results: dict, link: int = 1_000_000_000, load: str = "concurrent", width: int = 60, height: int = 16) -> None:
    """req/s (log) against file size (log), one mark per server, as the thesis drew it."""
    points = {s: [(size, results[(link, s, size, load)]["rps"]) for size in SIZES] for s in SERVERS}
    ys = [math.log10(max(r, 1e-9)) for pts in points.values() for _, r in pts]
    lo, hi = math.floor(min(ys)), math.ceil(max(ys))
    grid = [[" "] * width for _ in range(height)]
    xs = [math.log2(s) for s in SIZES]
    for server, pts in points.items():
        for size, rps in pts:
            x = round((math.log2(size) - xs[0]) / (xs[-1] - xs[0]) * (width - 1))
            y = round((math.log10(rps) - lo) / (hi - lo or 1) * (height - 1))
            cell = grid[height - 1 - y][x]
            grid[height - 1 - y][x] = MARKS[server] if cell == " " else "*"
    print(f"\nreq/s vs file size ({load}, {link // 1_000_000} Mb/s; " +
          ", ".join(f"{m} = {s}" for s, m in MARKS.items()) + ", * = several)")
    for i, row in enumerate(grid):
        label = 10 ** (hi - (hi - lo) * i / (height - 1))
        print(f"{label:9.0f} |" + "".join(row))
    print(" " * 10 + "+" + "-" * width)
    axis = [" "] * width
    for size in SIZES:
        x = round((math.log2(size) - xs[0]) / (xs[-1] - xs[0]) * (width - 1))
        text = f"{size // 1024}K" if size < 1048576 else f"{size // 1048576}M"
        x = min(x, width - len(text))
        for j, ch in enumerate(text):
            if x + j < width:
                axis[x + j] = ch
    print(" " * 11 + "".join(axis))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="more requests per point (several minutes)")
    parser.add_argument("--profile", default="2003", help="winsrv's cost profile (default 2003)")
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    results = run(args.profile, args.full)
    print(f"profile {args.profile}, winsrv one processor; {time.perf_counter() - wall:.1f} s wall")
    print_tables(results)
    plot(results)


if __name__ == "__main__":
    main()
