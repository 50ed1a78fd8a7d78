"""Fixtures for the TUI tests: a deterministic engine and an app with no timers or blinking."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from standin import StandinEngine  # noqa: E402

from wskdbg.tui.app import WskdbgApp  # noqa: E402

SIZE = (120, 40)


def make_app(seed: int = 1, **options) -> WskdbgApp:
    """poll_hz=0: the tests call refresh_views()/settle() themselves, so nothing
    depends on when a timer happens to fire."""
    options.setdefault("poll_hz", 0)
    options.setdefault("cursor_blink", False)
    return WskdbgApp(StandinEngine(seed), **options)


@pytest.fixture
def app() -> WskdbgApp:
    return make_app()
