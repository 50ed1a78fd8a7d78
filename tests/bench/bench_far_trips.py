"""Far trips in time: hand-offs replayed by `!tt 50`, `!tt 25`, `!tt 80` after a long run (a script,
not a test).

    PYTHONPATH=. python3 tests/bench/bench_far_trips.py [HANDOFFS]   (default 1000000)

The figure that decides is "replayed": hand-offs re-run from the checkpoint the trip started from
(deterministic; wall seconds are noisy on a shared machine).  Trips are made in that order, each
followed by a return to the end; later trips see the checkpoints earlier ones left.
"""
import time, sys
from wskdbg.engine import Engine
from wskdbg.machine_server import MachineProxy
n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
p = MachineProxy(lambda: Engine(seed=1))
try:
    p.execute(f"!httperf --server winsrv --uri /index.html --num-conns 0n{n//688}"); p.execute("g")
    end = p.position()
    out = []
    for pct in (50, 25, 80):
        before = p.replayed_handoffs
        t0 = time.perf_counter(); p.execute(f"!tt {pct}"); took = time.perf_counter() - t0
        out.append(f"!tt {pct}: replayed {p.replayed_handoffs - before:,} hand-offs, {took:.2f} s")
        p.execute(f"!tt {end.events_run:X}:{end.seq:X}")
    print(f"run {end.seq:,} hand-offs; checkpoints at", [s for _, s in p.checkpoint_positions])
    print("\n".join(out))
finally:
    p.close()
