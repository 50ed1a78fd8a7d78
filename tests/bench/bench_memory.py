"""Resident memory of the debugger: at the prompt, and its growth over many HTTP requests (a script, not a test).

    PYTHONPATH=. python3 tests/bench/bench_memory.py [--requests 10000] [--warmup 1000] [--samples 3] [--trace 30]
    PYTHONPATH=. python3 tests/bench/bench_memory.py --large-sends 200 [--send-size 262144]

1. RSS at the prompt: a fresh `Debugger()` on the default lab (winsrv, client, dns, httpbin;
   64 MB of emulated RAM each) with its services running, measured `--samples` times in fresh
   child processes (the median is shown, with the import-only baseline of the same run and the
   wall and CPU time the construction took).  Aim: <= 150 MB.
2. Growth over requests: in one debugger, `!httperf /w` fetches /files/1KB.bin from khttpd on
   winsrv --warmup times (one new connection per request), RSS is read, then --requests more,
   RSS again.  Growth = (after - before) / before.  Aim: <= 10 %.

3. With --large-sends N (instead of 1 and 2): what user-mode sends of --send-size bytes (256 KiB:
   afd copies each into a big-pool block that stays resident when freed, stack.kernel.pool) cost:
   `!discard /w -n N -s SIZE` twice in one debugger, RSS before, after the first N and after the
   second N.  The first batch brings the resident runs in; the second should add little.

With --trace N the growth run also prints what grew: the top N tracemalloc differences grouped by
traceback (snapshots after the warm-up and after the requests) and the gc object counts by type
that changed (slow: tracemalloc makes the requests several times slower, use fewer --requests;
the RSS figures of a traced run include tracemalloc's own memory).

Emulated RAM is an anonymous mapping the host fills on first touch (stack.kernel.memory), so
an idle host costs what it uses; the debugger's recording structures are bounded rings.  What a
request leaves behind is bounded the way Windows bounds it: khttpd closes first, so winsrv keeps
a time-wait TCB per request for 2*MSL (240 s; 10,000 requests take about 2 s of virtual time, so
none expires during the run) - at most MaxFreeTcbs (2000) of them, the oldest released early
past that (`!tcpparams`, `!netstat -s`); freed page frames are reused before fresh ones; the
scheduler drops cancelled timers once they are half its heap.  With the default --warmup 1000
the time-wait table still grows from 1000 to its bound of 2000 during the measured requests.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

AIM_PROMPT_MB = 150
AIM_GROWTH = 0.10
URI = "/files/1KB.bin"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _prompt_child() -> None:
    """In a fresh process: RSS after the imports, then after Debugger() (printed as JSON)."""
    import wskdbg.api  # noqa: F401  (the imports alone: the baseline)
    gc.collect()
    baseline = rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    from wskdbg.api import Debugger
    dbg = Debugger()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gc.collect()
    print(json.dumps({"baseline": baseline, "prompt": rss_mb(), "wall": wall, "cpu": cpu}))
    dbg.close()


def prompt_rss(samples: int) -> list[dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = []
    for _ in range(samples):
        run = subprocess.run([sys.executable, __file__, "--prompt-child"], env=env, capture_output=True, text=True,
                             check=True)
        out.append(json.loads(run.stdout.strip().splitlines()[-1]))
    return out


def _httperf(dbg, count: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = dbg.execute(f"!httperf /w --server winsrv --uri {URI} --num-conns {count}")
    if result.error or "Reply status: 1xx=0 2xx=" + str(count) not in result.text:
        raise RuntimeError(f"httperf failed:\n{result.text[-2000:]}")
    return time.perf_counter() - wall, time.process_time() - cpu


def _type_counts() -> collections.Counter:
    return collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def _print_trace(first, second, types_before: collections.Counter, top: int) -> None:
    import tracemalloc
    skip = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = second.filter_traces(skip).compare_to(first.filter_traces(skip), "traceback")
    print(f"tracemalloc: {sum(s.size_diff for s in stats) / 2**20:+.2f} MB traced; top {top} by traceback:")
    for st in stats[:top]:
        print(f"  {st.size_diff / 1024:+9.1f} KiB {st.count_diff:+7d} blocks (now {st.count})")
        for line in st.traceback.format()[-8:]:
            print(f"      {line}")
    types_after = _type_counts()
    rows = sorted(((n - types_before.get(t, 0), n, t) for t, n in types_after.items()), reverse=True)
    print("gc.get_objects() counts by type that changed (delta, now, type):")
    for delta, now, name in rows[:top]:
        if delta:
            print(f"  {delta:+8d} {now:8d} {name}")


def growth(requests: int, warmup: int, trace: int = 0) -> dict[str, float]:
    from wskdbg.api import Debugger
    dbg = Debugger()
    _httperf(dbg, warmup)
    gc.collect()
    before = rss_mb()
    if trace:
        import tracemalloc
        types_before = _type_counts()
        tracemalloc.start(8)
        first = tracemalloc.take_snapshot()
    wall, cpu = _httperf(dbg, requests)
    gc.collect()
    after = rss_mb()
    if trace:
        second = tracemalloc.take_snapshot()
        tracemalloc.stop()
        _print_trace(first, second, types_before, trace)
    dbg.close()
    return {"before": before, "after": after, "wall": wall, "cpu": cpu}


def large_sends(count: int, size: int) -> dict[str, float]:
    """RSS before, after `count` sends of `size` bytes (`!discard /w`), and after `count` more."""
    from wskdbg.api import Debugger
    dbg = Debugger()
    out = {}
    for name in ("before", "first", "second"):
        if name != "before":
            cpu = time.process_time()
            result = dbg.execute(f"!discard /w -n {count} -s {size}")
            if result.error:
                raise RuntimeError(f"!discard failed:\n{result.text[-2000:]}")
            out[name + "_cpu"] = time.process_time() - cpu
        gc.collect()
        out[name] = rss_mb()
    dbg.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=3, help="fresh processes measured for the prompt figure")
    parser.add_argument("--trace", type=int, default=0, metavar="N",
                        help="print the top N tracemalloc and gc type-count differences of the growth run")
    parser.add_argument("--large-sends", type=int, default=0, metavar="N",
                        help="only measure RSS over 2 x N user-mode sends of --send-size bytes (!discard /w)")
    parser.add_argument("--send-size", type=int, default=256 * 1024)
    parser.add_argument("--prompt-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prompt_child:
        _prompt_child()
        return
    if args.large_sends:
        s = large_sends(args.large_sends, args.send_size)
        print(f"RSS over {args.large_sends} sends of {args.send_size} bytes (!discard /w), twice: "
              f"{s['before']:.1f} -> {s['first']:.1f} MB ({s['first'] - s['before']:+.1f}) -> {s['second']:.1f} MB "
              f"({s['second'] - s['first']:+.1f}); {s['first_cpu']:.2f} s and {s['second_cpu']:.2f} s CPU")
        return
    rows = prompt_rss(args.samples)
    prompt = statistics.median(r["prompt"] for r in rows)
    baseline = statistics.median(r["baseline"] for r in rows)
    print(f"RSS at the prompt (fresh Debugger(), default lab; median of {args.samples} processes): {prompt:.1f} MB "
          f"(imports alone {baseline:.1f} MB; construction {statistics.median(r['wall'] for r in rows):.2f} s wall, "
          f"{statistics.median(r['cpu'] for r in rows):.2f} s CPU) -> {prompt / AIM_PROMPT_MB:.2f} of the "
          f"{AIM_PROMPT_MB} MB aim")
    g = growth(args.requests, args.warmup, args.trace)
    ratio = (g["after"] - g["before"]) / g["before"]
    print(f"RSS over {args.requests} requests after {args.warmup} warm-up ({URI}, new connection each, !httperf /w): "
          f"{g['before']:.1f} -> {g['after']:.1f} MB, growth {ratio * 100:.1f} % (aim <= {AIM_GROWTH * 100:.0f} %); "
          f"{args.requests / g['wall']:.0f} req/s wall, {args.requests / g['cpu']:.0f} req/s CPU")


if __name__ == "__main__":
    main()
