"""The standard lab built once per test process, for machine servers to take by fork.

A machine server (wskdbg.machine_server) is a fork of the test's process that builds its
engine there, as `wskdbg` does.  The TUI tests and the sessions start about a hundred of them,
each building the same `Engine(seed=1)` afresh.  A fork is a perfect copy of every heap object
(the premise of checkpoints, wskdbg.checkpoints), so an engine built here once and never run
here is, in each fork, the engine that fork would have built; the forks share its pages
instead of each paying for the build.

The factory hands out the template only in a process other than the one that built it: where
the engine is made in this very process (the in-process fallback of `open_engine`, server=False
apps) it builds a fresh one, so the template is never run or changed.
"""

from __future__ import annotations

import os
from typing import Callable

from wskdbg.engine import Engine

_templates: dict[int, tuple[int, Engine]] = {}  # seed -> (pid that built it, the engine)


def standard_engine(seed: int = 1) -> Callable[[], Engine]:
    """`make_engine` for a machine server: the standard lab on `seed`, built here once."""
    if seed not in _templates:
        _templates[seed] = (os.getpid(), Engine(seed=seed))
    built_by, template = _templates[seed]

    def make_engine() -> Engine:
        return template if os.getpid() != built_by else Engine(seed=seed)

    return make_engine
