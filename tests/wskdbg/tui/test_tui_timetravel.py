"""Time travel in the TUI: through the machine server's checkpoints, onto exactly the state full
re-execution gives, with every view built in the server and nothing left behind at exit.

The reference for "exactly" is an in-process Engine (no checkpoints): its `t-` re-executes the
whole trace from the seed.  The reference for the views is a MachineSide (the views' builder) on
an engine that ran forward to the same hand-off and never went back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest
from conftest import SIZE, make_app
from lab_template import standard_engine
from screen_text import screen_text
from textual.pilot import Pilot

from wskdbg.checkpoints import process_alive
from wskdbg.engine import Engine
from wskdbg.engine_api import DebuggerEngine, RemoteViews
from wskdbg.machine_server import MachineProxy
from wskdbg.timetravel import ReplayProgress
from wskdbg.tui.app import WskdbgApp
from wskdbg.tui.link import BROKEN
from wskdbg.tui.machine_side import MachineSide

EVERY = 1_000  # hand-offs between checkpoints: the run below (~14,000) keeps a dozen

# An echo of 60 exchanges runs out (~13,000 hand-offs), then a second echo stops in echosrv.
RUN = ['!echo -n 60 "hello"', "g", '!echo -n 3 "again"', "bp /h winsrv echosrv!WskSampleOpReceive", "g", "bc *"]
INSPECT = ["k", "r", "!irpfind"]


def server_app(every: int = EVERY) -> WskdbgApp:
    proxy = MachineProxy(standard_engine(1), every=every, views=True)
    return WskdbgApp(proxy, poll_hz=0, cursor_blink=False)


async def run(app: WskdbgApp, command: str) -> str:
    """What the command printed (its lines of the transcript after its echo)."""
    transcript = app.command_pane.transcript
    before = len(transcript)
    assert app.run_command(command), command
    await app.settle()
    return "\n".join(transcript[before + 1:])


def drive(app: WskdbgApp, scenario) -> list[int]:  # type: ignore[no-untyped-def]
    """Run the scenario, close the app's engine; returns every process the machine server used."""
    pids: set[int] = set()

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            await scenario(app, pilot)
            if isinstance(app.engine, MachineProxy):
                pids.update(app.engine.known_pids)

    try:
        asyncio.run(main())
    finally:
        app.engine.close()
    return sorted(pids)


def comparable(view):  # type: ignore[no-untyped-def]
    """A MachineView without who built it and the world's generation."""
    position = dataclasses.replace(view.position, generation=0)
    return dataclasses.replace(view, position=position, built_by=(0, ""))


def test_t_minus_in_the_tui_lands_on_the_state_full_re_execution_gives_from_a_checkpoint() -> None:
    reference = Engine(seed=1)  # in process: its t- re-executes from the seed
    forward = Engine(seed=1)  # runs to the same hand-off and never goes back
    forward_views = MachineSide(forward)  # attached at the start, as the server's
    try:
        expected = [reference.execute(c).text.rstrip("\n") for c in [*RUN, "t", "t", "t-", *INSPECT]]
        for command in [*RUN, "t"]:
            forward.execute(command)
        expected_view = comparable(forward_views.view(BROKEN))

        async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
            proxy = app.engine
            first_server = proxy.live_pid
            for command in [*RUN, "t", "t"]:
                await run(app, command)
            assert len(proxy.checkpoint_pids) > 3
            seq = proxy.position().seq
            got = [await run(app, c) for c in ["t-", *INSPECT]]
            assert got == expected[-4:]  # t- prints, and k, r, !irpfind read, what re-execution gives
            assert proxy.live_pid != first_server  # a runner forked from a checkpoint serves now
            assert 0 < proxy.replayed_handoffs <= EVERY + 100 < seq  # it replayed from there, not from the seed
            view = app.link.view()
            assert comparable(view) == expected_view  # every view: stack, IRPs, network, source, segments
            assert view.built_by[0] == proxy.live_pid != os.getpid()
            # ... and the widgets show that view.
            assert app.status_bar.position == view.position and view.position.state == BROKEN
            assert f"{view.position.events_run:,}" in screen_text(app)
            assert app.stack_view.picture == view.picture
            assert app.source_view.picture == view.source
            assert app.irp_view.rows == list(view.irps)
            assert app.network_view.rows == list(view.connections)
            assert view.source.title.split()[1] == proxy.execute("k").data["frames"][0]["symbol"]

        pids = drive(server_app(), scenario)
        assert pids and not [pid for pid in pids if process_alive(pid)]  # no process left after the app
    finally:
        reference.close()
        forward.close()


def test_trips_back_and_forth_keep_the_trace_view_in_order_without_repeats() -> None:
    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        for command in [*RUN, "t", "t", "t", "t-", "t-", "t", "t", "t", "t"]:
            await run(app, command)
        store = app.trace_pane.store
        seqs = [store.record(p).seq for p in range(store.first_position, store.end_position)]
        assert seqs == sorted(set(seqs))  # each hand-off once, in order
        assert seqs[-1] == app.link.position().event_seq

    drive(server_app(), scenario)


def test_p_minus_g_minus_and_tt_in_the_tui_print_what_re_execution_prints() -> None:
    reference = Engine(seed=1)
    trips = ["bp /h winsrv echosrv!WskSampleOpReceive", "p", "p", "p-", "g-", "bc *", "!tt 40", "k", "!tt 95", "r"]
    try:
        expected = [reference.execute(c).text.rstrip("\n") for c in [*RUN, "g", *trips]]

        async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
            got = [await run(app, c) for c in [*RUN, "g", *trips]]
            assert got == expected
            assert app.engine.replayed_handoffs < app.engine.position().seq

        drive(server_app(), scenario)
    finally:
        reference.close()


def test_a_long_trip_shows_its_progress_in_the_status_bar_not_in_the_transcript(monkeypatch) -> None:
    monkeypatch.setattr(ReplayProgress, "FIRST_S", 0.0)  # (before the server forks: it inherits them)
    monkeypatch.setattr(ReplayProgress, "EVERY_S", 0.0)

    async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
        for command in RUN:
            await run(app, command)
        await run(app, "!tt 90")  # from the start of the trace: thousands of hand-offs replayed
        assert app.progress_seen and all(line.startswith("Replaying ") for line in app.progress_seen)
        assert not any("Replaying" in chunk for chunk in app.command_pane.transcript)
        assert app.status_bar.progress == ""  # cleared when the trip is done

    drive(server_app(every=1 << 30), scenario)  # one checkpoint: the start


def test_with_checkpoints_off_the_tui_keeps_the_engine_in_process_and_t_minus_re_executes(monkeypatch) -> None:
    monkeypatch.setenv("WSKDBG_CHECKPOINTS", "0")
    reference = Engine(seed=1)
    try:
        expected = [reference.execute(c).text.rstrip("\n") for c in ["t", "t", "t-", "k"]]
        app = WskdbgApp(seed=1, poll_hz=0, cursor_blink=False)
        assert isinstance(app.engine, Engine)

        async def scenario(app: WskdbgApp, pilot: Pilot) -> None:
            assert [await run(app, c) for c in ["t", "t", "t-", "k"]] == expected
            assert app.link.view().built_by == (os.getpid(), "MainThread")

        drive(app, scenario)
    finally:
        reference.close()


def test_an_app_that_made_its_own_machine_server_stops_it_on_exit() -> None:
    app = WskdbgApp(seed=1, poll_hz=0, cursor_blink=False)
    proxy = app.engine
    assert isinstance(proxy, MachineProxy)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            await run(app, "t")
            await pilot.press("ctrl+q")

    asyncio.run(main())
    assert proxy.closed and not [pid for pid in proxy.known_pids if process_alive(pid)]


@pytest.mark.parametrize("server", [True, False], ids=["machine server", "in-process"])
def test_the_default_app_fixture_runs_where_it_says(server: bool) -> None:
    app = make_app(server=server)
    try:
        assert isinstance(app.engine, MachineProxy) is server
        assert isinstance(app.engine, RemoteViews) is server  # the typed interface the link uses
        assert isinstance(app.engine, DebuggerEngine) is not server
    finally:
        app.engine.close()
