"""Suite-wide pytest hooks: the whole suite runs in parallel by default.

`python3 -m pytest` with no paths (the whole suite: the README's and CI's command) runs on one
pytest-xdist worker per core, as `-n auto` would; a run of chosen paths stays in one process, so
`print`, `-s` and `--pdb` behave as usual there.  `-n N` chooses the workers (`-n 0` none),
`-p no:xdist` turns xdist off, and without pytest-xdist installed nothing changes.

Parallel runs use `--dist worksteal` unless another `--dist` is given: each worker starts on one
contiguous half of the tests (so a module's lab fixture is built once, not on every worker) and a
worker that runs dry takes half of what the other still has queued, so the two end together
however long the slowest tests are on this machine.

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


def pytest_sessionstart(session: pytest.Session) -> None:
    option = session.config.option
    if getattr(option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the xdist controller runs no tests
    from wskdbg.engine import Engine  # imported here: a bare `pytest --help` needs none of it

    Engine(seed=1).close()  # imports every module a lab needs, once per process
