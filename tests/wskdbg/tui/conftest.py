"""Fixtures for the TUI tests: the real engine, an app with no timers or blinking.

Every app here drives `wskdbg.engine.Engine`: on the standard lab (echosrv and khttpd on
winsrv), or on the debugger tests' small kernel lab (`dbg_harness`) where a machine that
never goes idle is needed (the ticker: break-in tests).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # dbg_harness

from dbg_harness import factory  # noqa: E402

from wskdbg.engine import Engine  # noqa: E402
from wskdbg.tui.app import WskdbgApp  # noqa: E402

SIZE = (120, 40)


def make_app(seed: int = 1, **options) -> WskdbgApp:
    """The real engine on the standard lab, seeded.  poll_hz=0: the tests call
    refresh_views()/settle() themselves, so nothing depends on when a timer fires."""
    options.setdefault("poll_hz", 0)
    options.setdefault("cursor_blink", False)
    return WskdbgApp(Engine(seed=seed), **options)


make_lab_app = make_app


def make_ticker_app(**options) -> WskdbgApp:
    """The real engine on a kernel lab whose timer re-arms forever: `g` runs until a break-in
    (the event cap, far away, ends a lost one instead of hanging the test)."""
    options.setdefault("poll_hz", 0)
    options.setdefault("cursor_blink", False)
    engine = Engine(factory=factory("ticker"), seed=1, run_cap_ns=1 << 62, event_cap=3_000_000)
    return WskdbgApp(engine, **options)


@pytest.fixture
def app() -> WskdbgApp:
    return make_app()
