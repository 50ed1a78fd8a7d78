"""Suite-wide pytest hooks: the whole suite runs in parallel by default.

`python3 -m pytest` with no paths (the whole suite: the README's and CI's command) runs on one
pytest-xdist worker per core and one more: some tests wait in real time (the bridge's, the machine
servers' pipes and forks), and the extra worker runs while they wait (2 min 50 s instead of 3 min 14 s
on two idle cores, 2026-12-07); a run of chosen paths stays in one process, so
`print`, `-s` and `--pdb` behave as usual there.  `-n N` chooses the workers (`-n 0` none),
`-p no:xdist` turns xdist off, and without pytest-xdist installed nothing changes.

Parallel runs use `--dist worksteal` unless another `--dist` is given: each worker starts on one
contiguous half of the tests (so a module's lab fixture is built once, not on every worker) and a
worker that runs dry takes half of what the other still has queued, so the two end together
however long the slowest tests are on this machine.

Parallel runs share the heavy modules out first (`worksteal_order`): in path order the pilot tests
of the TUI came last, and a run ended with one worker alone on a long test.  Now each worker's
first share starts with heavy modules of about equal total cost and ends with short tests, so
what a worker steals at the end is short.  A heavy module's tests stay together and in order.

On a cold cache (a fresh clone: CI) the controller first rewrites the test modules' asserts and
compiles the library modules the workers import, once, in forks (`warm_caches_once`): each worker
did all of it for itself before, at the same moment as the others (8.2 -> 4.0 s of CPU per worker
to the end of collection, 2026-12-07).

Each process that runs tests builds one lab first (`pytest_sessionstart`): the engine imports
most of `stack` and `wskdbg.commands` lazily (~0.6 s of CPU), and every test that runs the
machine in a machine server (`wskdbg`'s own way: the TUI tests, the sessions, time travel)
forks a process for it.  Imported once in the parent, the modules are inherited by every fork
instead of being imported again in each; the standard lab itself is built once too, where a
test asks for it (tests/wskdbg/lab_template.py).  Then what the imports made is frozen out of
the collector's way and its first generation widened, as `wskdbg` does (stack.kernel.hostgc).
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import sys
from pathlib import Path

import pytest

try:  # CI replays the same property-test examples every run, so a CI result is reproducible;
    # a run at a desk keeps Hypothesis's random search, which finds what CI does not (it found
    # khttpd's quadratic consumed_bytes)
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
except ImportError:  # the test extras are not installed: those modules are skipped anyway
    pass

# The modules that cost the most, with their seconds: CPU (the test process's and the machine servers'
# it waited for) for most, wall for those that wait in real time (the bridge's, the CLI's subprocesses):
# they hold a worker longer than their CPU says.  Per-module CPU of a parallel run (2,852 tests,
# 2026-12-07, second round, CI=true), the wall figures of the round before where larger.  A module
# missing here counts as light; a name that no longer exists is ignored.
HEAVY_MODULES = {
    "tests/wskdbg/tui/test_tui_app.py": 36,
    "tests/test_sessions.py": 28,
    "tests/stack/test_world_transfer.py": 27,
    "tests/stack/drivers/test_low_resources.py": 15,
    "tests/stack/drivers/test_resource_leaks.py": 15,
    "tests/wskdbg/tui/test_tui_timetravel.py": 15,
    "tests/bridge/test_bridge_tap.py": 14,
    "tests/wskdbg/test_checkpoints.py": 13,
    "tests/bridge/test_bridge_forward.py": 10,
    "tests/bridge/test_bridge_tap_window.py": 8,
    "tests/stack/test_world_connect_burst.py": 8,
    "tests/stack/test_world_tso.py": 8,
    "tests/stack/drivers/test_khttpd_http1_conformance.py": 7,
    "tests/wskdbg/tui/test_tui_overload.py": 7,
    "tests/bridge/test_bridge_forward_load.py": 6,
    "tests/stack/test_world_segment_batching.py": 6,
    "tests/wskdbg/test_cli.py": 6,
    "tests/wskdbg/test_repl_and_scripts.py": 5,
    "tests/bridge/test_bridge_cli.py": 4,
    "tests/stack/test_world_passthrough.py": 4,
    "tests/wskdbg/test_cmd_lab.py": 4,
    "tests/wskdbg/tui/test_trace_view.py": 4,
    "tests/bridge/test_bridge_replay.py": 3,
    "tests/stack/drivers/test_khttpd_driver.py": 3,
    "tests/stack/drivers/test_khttpd_paths.py": 3,
    "tests/stack/tcpip/test_syn_flood.py": 3,
    "tests/stack/test_world_capture.py": 3,
    "tests/stack/test_world_rsc.py": 3,
    "tests/stack/usermode/test_afd_send_buffering.py": 3,
    "tests/stack/wsk/test_wsk_provider.py": 3,
    "tests/wskdbg/test_cmd_nic.py": 3,
    "tests/wskdbg/test_cmd_processors.py": 3,
    "tests/wskdbg/test_cmd_symbols_control.py": 3,
    "tests/wskdbg/test_engine_bad_input.py": 3,
    "tests/wskdbg/tui/test_tui_snapshots.py": 3,
}


def worksteal_order(items: list, workers: int, path_of=lambda item: item.nodeid.split("::", 1)[0]) -> list:
    """`items` reordered for `--dist worksteal` on `workers` workers.  Worksteal hands worker k the
    next len(pending) // (workers - k) items, then lets a worker that runs dry take the back half
    of another's queue.  So each worker's share starts with a group of heavy modules (shared out
    heaviest first, each to the lightest group so far) and is filled up with light tests in path
    order: every queue ends with short tests, and whatever is stolen last is short.  A heavy
    module's tests stay together and in their order."""
    modules: dict[str, list] = {}
    light = []
    for item in items:
        path = path_of(item)
        (modules.setdefault(path, []) if path in HEAVY_MODULES else light).append(item)
    groups: list[list] = [[] for _ in range(workers)]
    load = [0] * workers
    for path in sorted(modules, key=lambda path: -HEAVY_MODULES[path]):
        lightest = load.index(min(load))
        groups[lightest].extend(modules[path])
        load[lightest] += HEAVY_MODULES[path]
    ordered: list = []
    remaining, taken = len(items), 0
    for k, group in enumerate(groups):
        share = remaining // (workers - k)
        fill = max(0, share - len(group))
        chunk = group + light[taken:taken + fill]
        taken += fill
        ordered.extend(chunk)
        remaining -= len(chunk)
    ordered.extend(light[taken:])
    return ordered


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist turns -n into workers (also tryfirst, registered earlier)
def pytest_cmdline_main(config: pytest.Config) -> None:
    option = config.option
    if not hasattr(option, "numprocesses") or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # no xdist (absent or -p no:xdist), or this process is already one of its workers
    if option.numprocesses is None and config.args_source is pytest.Config.ArgsSource.TESTPATHS \
            and not option.collectonly and not option.usepdb:
        option.numprocesses = _cores() + 1
    if option.numprocesses and option.dist == "no":
        option.dist = "worksteal"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 2:
        return  # one process: the tests run in path order, as asked
    items[:] = worksteal_order(items, workers)  # every worker computes the same order


# What the workers import that the controller does not (a lab, the TUI, the REPL, scapy for the
# capture tests), shared out over the warming forks: see warm_caches_once.
WARM_IMPORTS = ("wskdbg.engine", "scapy.layers.inet", "wskdbg.tui.app", "scapy.layers.inet6",
                "wskdbg.repl", "scapy.layers.l2", "scapy.utils")


def warm_caches_once(config: pytest.Config, workers: int) -> int:
    """On a cold cache, do once here in the controller, before the workers start, what each worker
    would otherwise do for itself at the same moment; returns how many test modules it rewrote.

    pytest caches each test module with its asserts rewritten (`*-pytest-*.pyc`).  On a fresh clone
    (CI: a new PYTHONPYCACHEPREFIX, so the interpreter's own library has no bytecode there either)
    none exists, and the three workers, starting together, each rewrote all ~300 test modules and
    compiled the library modules a lab and the TUI import: about 6.5 s of CPU per worker, the same
    work three times (`compileall` in .ci/run writes the project's ordinary bytecode only).  Here
    it is done once, spread over `workers` forks, and the workers read the caches.  This uses
    pytest's own rewrite and cache functions (internal ones: if they change, it quietly does
    nothing and the workers rewrite as before).  Nothing is written where Python writes no bytecode."""
    if sys.dont_write_bytecode or getattr(config.option, "assertmode", "rewrite") != "rewrite":
        return 0
    try:
        from _pytest.assertion import rewrite

        state = config.stash[rewrite.assertstate_key]
        patterns = list(config.getini("python_files")) + ["conftest.py"]
        stale = []
        for arg in config.args:  # the paths this run collects (the testpaths when none are given)
            path = Path(config.invocation_params.dir, arg.split("::", 1)[0])
            for fn in sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.suffix == ".py" else []:
                cache_dir = rewrite.get_cache_dir(fn)
                pyc = cache_dir / (fn.name[:-3] + rewrite.PYC_TAIL)
                if any(fnmatch.fnmatch(fn.name, pattern) for pattern in patterns) \
                        and rewrite._read_pyc(fn, pyc) is None and rewrite.try_makedirs(cache_dir):
                    stale.append((fn, pyc))
    except (ImportError, AttributeError, KeyError, TypeError, ValueError, OSError):
        return 0
    if not stale:
        return 0  # a warm cache (the usual run at a desk): nothing to share out

    def warm(share: list, imports: tuple[str, ...]) -> None:
        for name in imports:  # compiles, and caches, the library modules the workers import
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        for fn, pyc in share:
            try:
                source_stat, code = rewrite._rewrite_test(fn, config)
            except (SyntaxError, OSError, AttributeError, TypeError):
                continue  # its worker reports a broken module when it imports it
            rewrite._write_pyc(state, code, source_stat, pyc)

    if not hasattr(os, "fork"):
        warm(stale, ())
        return len(stale)
    children = []
    for k in range(workers):  # pure CPU: one share per core, each in a fork (the controller stays as it was)
        pid = os.fork()
        if pid == 0:
            try:
                warm(stale[k::workers], WARM_IMPORTS[k::workers])
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return len(stale)


def pytest_sessionstart(session: pytest.Session) -> None:
    option = session.config.option
    if getattr(option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        # the xdist controller runs no tests; this runs before xdist starts the workers (trylast)
        warm_caches_once(session.config, min(_cores(), option.numprocesses))
        return
    from stack.kernel import hostgc
    from wskdbg.engine import Engine  # imported here: a bare `pytest --help` needs none of it

    Engine(seed=1).close()  # imports every module a lab needs, once per process
    # The collector as `wskdbg` sets it (stack.kernel.hostgc), and what exists now (modules,
    # classes, functions: it lives as long as the process anyway) out of its way.  With Python's
    # defaults a third of the suite's CPU time went to collections, most of them full ones
    # walking every imported object again.  Only wall time changes: nothing the machine does
    # depends on when Python collects, and the labs tests build stay collectable.
    hostgc.settle(freeze=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The collected tests (pytest's items, the test modules and what they import: Textual, scapy,
    Hypothesis) live as long as the process, like the modules frozen at session start: out of the
    collector's way too.  Left in, every full collection walked them again (~160,000 objects,
    ~0.1 s a walk; gen-2 time 2.9 -> 1.9 s over a third of the suite's tests, 2026-12-07).  What is
    garbage now is collected first, so nothing collectable is frozen."""
    option = session.config.option
    if getattr(option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the xdist controller runs no tests
    import gc

    gc.collect()
    gc.freeze()
