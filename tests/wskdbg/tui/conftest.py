"""Fixtures for the TUI tests: a deterministic engine and an app with no timers or blinking."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# Routine addresses follow the order routines were defined in per module name; the stand-in
# defines a few under real module names (tcpip, netvmini, echosrv ...).  Import the real stack
# first, so the lab's addresses (and the snapshots that show them) are the ones `wskdbg` shows,
# whichever tests this process happens to collect.
import stack.drivers.buggy  # noqa: E402,F401
import stack.drivers.echosrv  # noqa: E402,F401
import stack.drivers.khttpd.driver  # noqa: E402,F401
import stack.drivers.ksocket  # noqa: E402,F401
import stack.fs.kfs  # noqa: E402,F401
import stack.world  # noqa: E402,F401
import stack.afd  # noqa: E402,F401

from standin import StandinEngine  # noqa: E402

from wskdbg.tui.app import WskdbgApp  # noqa: E402

SIZE = (120, 40)


def make_app(seed: int = 1, **options) -> WskdbgApp:
    """poll_hz=0: the tests call refresh_views()/settle() themselves, so nothing
    depends on when a timer happens to fire."""
    options.setdefault("poll_hz", 0)
    options.setdefault("cursor_blink", False)
    return WskdbgApp(StandinEngine(seed), **options)


def make_lab_app(seed: int = 1, **options) -> WskdbgApp:
    """The real engine on the standard lab (echosrv and khttpd running), seeded, no timers."""
    from wskdbg.engine import Engine

    options.setdefault("poll_hz", 0)
    options.setdefault("cursor_blink", False)
    return WskdbgApp(Engine(seed=seed), **options)


@pytest.fixture
def app() -> WskdbgApp:
    return make_app()
