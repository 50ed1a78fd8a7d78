"""Fixtures for the TUI tests: the real engine, an app with no timers or blinking.

Every app here drives `wskdbg.engine.Engine`: on the standard lab (echosrv and khttpd on
winsrv), or on the debugger tests' small kernel lab (`dbg_harness`) where a machine that
never goes idle is needed (the ticker: break-in tests).  As `wskdbg` runs it, the engine lives
in a machine server (wskdbg.machine_server, checkpoints for time travel) and every view is built
there; `server=False` keeps it in the test's process (the WSKDBG_CHECKPOINTS=0 fallback).
"""

from __future__ import annotations

import os
import sys

import pytest
import textual.constants
from textual import events
from textual.keys import _character_to_key
from textual.pilot import Pilot

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # dbg_harness

from dbg_harness import factory  # noqa: E402
from lab_template import standard_engine  # noqa: E402

from wskdbg.engine import Engine  # noqa: E402
from wskdbg.machine_server import MachineProxy  # noqa: E402
from wskdbg.tui.app import WskdbgApp  # noqa: E402

SIZE = (120, 40)


def engine_for(make_engine, server: bool = True, **proxy_options):
    """The engine an app drives: in a machine server with views (as `wskdbg` runs it), or here."""
    if server:
        return MachineProxy(make_engine, views=True, **proxy_options)
    return make_engine()


def make_app(seed: int = 1, server: bool = True, **options) -> WskdbgApp:
    """The real engine on the standard lab, seeded.  poll_hz=0: the tests call
    refresh_views()/settle() themselves, so nothing depends on when a timer fires."""
    options.setdefault("poll_hz", 0)
    options.setdefault("cursor_blink", False)
    make_engine = standard_engine(seed) if server else (lambda: Engine(seed=seed))
    return WskdbgApp(engine_for(make_engine, server), **options)


make_lab_app = make_app


def ticker_engine(**overrides) -> Engine:
    options = {"run_cap_ns": 1 << 62, "event_cap": 3_000_000, **overrides}
    return Engine(factory=factory("ticker"), seed=1, **options)


def make_ticker_app(server: bool = True, make_engine=ticker_engine, **options) -> WskdbgApp:
    """The real engine on a kernel lab whose timer re-arms forever: `g` runs until a break-in
    (the event cap, far away, ends a lost one instead of hanging the test)."""
    options.setdefault("poll_hz", 0)
    options.setdefault("cursor_blink", False)
    return WskdbgApp(engine_for(make_engine, server), **options)


async def type_text(pilot: Pilot, text: str) -> None:
    """Type `text` into the focused widget: one key event per character, made and sent through
    the driver exactly as `Pilot.press` sends them, in order, then wait until the app has
    handled them all.  `Pilot.press` also waits for the process to go idle twice after every
    key (at least 40 ms of idle wall time per character); nothing between the characters of a
    command line needs that."""
    app = pilot.app
    for char in text:
        key = events.Key(char if char.isalnum() else _character_to_key(char), char)
        key.set_sender(app)
        app._driver.send_message(key)
    await pilot.pause()


async def press_while_running(pilot: Pilot, key: str) -> None:
    """Press a function key (F5...) as `Pilot.press` sends it, without its two waits for the
    process to go idle: a machine running flat out in this process (a thread), or whose views
    this process takes at every tick, keeps it from going idle, so each wait ran to its 1 s
    bound while the machine burned CPU (about 2 s of wall time and up to 1 s of CPU a press)."""
    assert key.startswith("f") and key[1:].isdigit(), key
    app = pilot.app
    event = events.Key(key, None)
    event.set_sender(app)
    app._driver.send_message(event)
    await pilot.pause(0)  # the key is handled (a fixed pause, not a wait for idle)


@pytest.fixture(autouse=True)
def no_animations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps built here do not animate (as with TEXTUAL_ANIMATIONS=none): an animation changes
    nothing the tests read once it ends, but `Pilot.press` waits each one out and `Pilot.pause`
    waits until the process is idle, so the tab underline's slide cost ~0.3 s of idle wall time
    per key (about half the wall time of the pilot tests, a core left idle under xdist)."""
    monkeypatch.setattr(textual.constants, "TEXTUAL_ANIMATIONS", "none")


@pytest.fixture
def app() -> WskdbgApp:
    return make_app()
