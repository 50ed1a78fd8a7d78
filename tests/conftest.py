"""Suite-wide pytest hooks: the whole suite runs in parallel by default.

`python3 -m pytest` with no paths (the whole suite: the README's and CI's command) runs on one
pytest-xdist worker per core, as `-n auto` would; a run of chosen paths stays in one process, so
`print`, `-s` and `--pdb` behave as usual there.  `-n N` chooses the workers (`-n 0` none),
`-p no:xdist` turns xdist off, and without pytest-xdist installed nothing changes.

Parallel runs use `--dist worksteal` unless another `--dist` is given: each worker starts on one
contiguous half of the tests (so a module's lab fixture is built once, not on every worker) and a
worker that runs dry takes half of what the other still has queued, so the two end together
however long the slowest tests are on this machine.

Parallel runs start the heaviest modules first (`RUN_FIRST`, in `pytest_collection_modifyitems`):
in path order the pilot tests of the TUI came last, and the run ended with one worker alone on
a long test.  Heaviest first, what is left at the end is short tests either worker can take.
A module's tests stay together and in their order.

Each process that runs tests builds one lab first (`pytest_sessionstart`): the engine imports
most of `stack` and `wskdbg.commands` lazily (~0.6 s of CPU), and every test that runs the
machine in a machine server (`wskdbg`'s own way: the TUI tests, the sessions, time travel)
forks a fresh process that builds its lab there.  Imported once in the parent, the modules are
inherited by every fork instead of being imported again in each (the labs are still built
afresh in each; only the modules are shared).
"""

from __future__ import annotations

import os

import pytest

# The modules that cost the most CPU (2,293 tests, 2026-12-07: per-module CPU of a parallel run),
# heaviest first.  A module missing here only runs later, in path order; a name that no longer
# exists is ignored.
RUN_FIRST = (
    "tests/test_sessions.py",
    "tests/wskdbg/tui/test_tui_app.py",
    "tests/stack/test_world_transfer.py",
    "tests/wskdbg/test_checkpoints.py",
    "tests/stack/drivers/test_low_resources.py",
    "tests/wskdbg/tui/test_tui_timetravel.py",
    "tests/stack/drivers/test_resource_leaks.py",
    "tests/bridge/test_bridge_tap.py",
    "tests/wskdbg/tui/test_tui_overload.py",
    "tests/stack/test_world_connect_burst.py",
    "tests/bridge/test_bridge_forward.py",
    "tests/bridge/test_bridge_tap_window.py",
    "tests/wskdbg/test_repl_and_scripts.py",
    "tests/wskdbg/tui/test_trace_view.py",
    "tests/stack/test_world_passthrough.py",
    "tests/stack/test_world_fragment.py",
    "tests/wskdbg/test_cmd_lab.py",
    "tests/bridge/test_bridge_replay.py",
    "tests/wskdbg/tui/test_tui_snapshots.py",
    "tests/bridge/test_bridge_forward_load.py",
    "tests/wskdbg/tui/test_tui_real_engine.py",
)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist turns -n into workers (also tryfirst, registered earlier)
def pytest_cmdline_main(config: pytest.Config) -> None:
    option = config.option
    if not hasattr(option, "numprocesses") or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # no xdist (absent or -p no:xdist), or this process is already one of its workers
    if option.numprocesses is None and config.args_source is pytest.Config.ArgsSource.TESTPATHS \
            and not option.collectonly and not option.usepdb:
        option.numprocesses = "auto"
    if option.numprocesses and option.dist == "no":
        option.dist = "worksteal"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process: the tests run in path order, as asked
    rank = {path: n for n, path in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(RUN_FIRST)))  # stable


def pytest_sessionstart(session: pytest.Session) -> None:
    option = session.config.option
    if getattr(option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the xdist controller runs no tests
    from wskdbg.engine import Engine  # imported here: a bare `pytest --help` needs none of it

    Engine(seed=1).close()  # imports every module a lab needs, once per process
