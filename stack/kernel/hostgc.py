"""The host Python's garbage collector, set for a long-lived lab (the debugger's prompt, benches).

A booted lab is a few hundred thousand Python objects that live as long as the lab; ten
thousand open connections add millions more.  CPython's full collection walks every one
of them each time the objects that survived younger collections reach a quarter of the
old ones, and a lab that holds many connections pays that walk again and again: at 10,000
connections about a third of the CPU time went to the collector.  Two standard moves:

- `gc.freeze()` once the lab has booted: what exists then moves to the permanent generation
  and no collection walks it again (as long-running servers do after start-up);
- a larger first generation (GEN0_THRESHOLD allocations instead of 700), so short-lived
  objects of the packet path die without a collection per few hundred events.

Measured with tests/bench/bench_scale.py (cost per exchange, 10,000 connections held / 10):
1.73x with Python's defaults, 1.25x with the wider generations alone, 1.05x frozen as well.
The `wskdbg` command line widens the generations (settle(freeze=False)); freezing is for a
process that keeps one lab (a bench), because time travel rebuilds labs in one process.

The emulated machine never depends on when Python collects (its state is reached through
the lab's own tables), so this changes wall time only, never a transcript.  It is for one
lab per process: frozen objects are never freed, so a process that builds many labs (the
test suite) leaves the collector alone, or calls `release` before dropping a lab.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 20_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 10

_saved: list[tuple[int, int, int]] = []


def settle(freeze: bool = True) -> None:
    """Collect once, freeze what is left (the booted lab) and widen the first generation.

    freeze=False only widens the generations: safe for a process that builds many labs."""
    gc.collect()
    if freeze:
        gc.freeze()
    if not _saved:
        _saved.append(gc.get_threshold())
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)


def release() -> None:
    """Undo `settle`: frozen objects become collectable again and the thresholds return."""
    gc.unfreeze()
    if _saved:
        gc.set_threshold(*_saved.pop())
