"""The TUI's pure parts: layers, completion, history, the ladder, MDL boxes, tour scripts."""

from __future__ import annotations

import asyncio

import pytest
from conftest import SIZE
from screen_text import screen_text

from stack.kernel.events import IrpDispatched, RoutineEntered, WppMessage
from wskdbg.engine import Engine
from wskdbg.tui.app import event_record
from wskdbg.tui.irp_view import location_text
from wskdbg.tui.command_pane import CommandHistory, complete
from wskdbg.tui.link import EventTap, SegmentNote, layer_of_event
from wskdbg.tui.mdl_view import chain_of, mdl_boxes, render_chain
from wskdbg.tui.network_view import ladder_steps, render_ladder
from wskdbg.tui.presentation import PresentationApp, TourScriptError, load_tour, parse_tour, run_tour
from wskdbg.tui.stack_view import LayerRow, StackPicture, render_picture
from wskdbg.tui.textlinks import linkify
from wskdbg.tui.tour import tour_markdown


def test_events_map_to_their_stack_layer_by_module_then_by_kind() -> None:
    assert layer_of_event(RoutineEntered(host="winsrv", symbol="tcpip!TcpReceive")) == "tcpip"
    assert layer_of_event(RoutineEntered(host="winsrv", symbol="buggy!BuggyTimerDpc")) == "drivers"  # any driver
    assert layer_of_event(RoutineEntered(host="winsrv", symbol="netvmini!MPSendNetBufferLists")) == "miniport"
    assert layer_of_event(IrpDispatched(host="winsrv", irp=1, major=0xF, minor=0, device=2, driver="afd")) == "wsk"
    assert layer_of_event(RoutineEntered(host="winsrv", symbol="nt!KiIdleLoop")) is None


def test_tap_counts_hand_offs_per_host_layer_and_remembers_where_it_came_from() -> None:
    tap = EventTap()
    for seq, symbol in enumerate(("echosrv!Send", "afd!WskProAPISend", "tcpip!TcpSend"), start=1):
        tap.on_event(RoutineEntered(host="winsrv", seq=seq, symbol=symbol))
    assert tap.counts[("winsrv", "tcpip")] == 1
    assert tap.last_layer == ("winsrv", "tcpip")
    assert tap.previous_layer == ("winsrv", "wsk")
    assert tap.last_by_layer[("winsrv", "wsk")] == "→ WskProAPISend"
    assert len(tap.drain()) == 3 and not tap.queue


def test_stack_picture_marks_the_current_layer_with_the_direction_it_moved() -> None:
    rows = tuple(LayerRow(layer, "", 1, "") for layer in ("drivers", "wsk", "tcpip"))
    down = StackPicture((("winsrv", rows),), ("winsrv", "tcpip"), ("winsrv", "wsk"), "x")
    up = StackPicture((("winsrv", rows),), ("winsrv", "wsk"), ("winsrv", "tcpip"), "x")
    assert "▼ tcpip" in render_picture(down, 40).plain
    assert "▲ WSK" in render_picture(up, 40).plain
    assert down.height == len(render_picture(down, 40).plain.split("\n"))  # the height never depends on contents


def test_wpp_messages_become_trace_lines_with_provider_flag_and_level() -> None:
    record = event_record(WppMessage(host="winsrv", seq=5, provider="echosrv", flag="TRCINFO", level=4,
                                     function="WskSampleReceiveEvent", text="7 bytes"))
    assert (record.provider, record.flag, record.level) == ("echosrv", "TRCINFO", 4)
    assert record.text == "WskSampleReceiveEvent: 7 bytes"
    call = event_record(RoutineEntered(host="client", seq=6, symbol="tcpip!TcpSend"))
    assert call.provider == "event:call" and call.flag is None and call.level == 5


def test_completion_extends_to_the_common_prefix_and_lists_candidates() -> None:
    names = ["!irp", "!irpfind", ".reboot", ".reload"]
    assert complete(".reb", names) == (".reboot ", [".reboot"])
    assert complete(".re", names) == (".re", [".reboot", ".reload"])
    assert complete("!ir", names)[0] == "!irp"
    assert complete("db ff", names) == ("db ff", [])


def test_history_walks_back_and_forward_and_restores_the_draft() -> None:
    history = CommandHistory()
    for command in ("g", "k", "k"):
        history.add(command)
    assert history.entries == ["g", "k"]
    assert history.previous("dra") == "k"
    assert history.previous("") == "g"
    assert history.previous("") == "g"
    assert history.next() == "k"
    assert history.next() == "dra"


def test_ladder_draws_each_direction_of_the_selected_conversation_only() -> None:
    segments = [
        SegmentNote(1, 1_000_000, "client", 1, "10.0.0.2.49152 > 10.0.0.1.7: Flags [S], seq 0, win 65535, length 0", 0),
        SegmentNote(2, 1_100_000, "winsrv", 2, "10.0.0.1.7 > 10.0.0.2.49152: Flags [S.], seq 0, ack 1, length 0", 0),
        SegmentNote(3, 1_200_000, "client", 3, "10.0.0.2.49153 > 10.0.0.1.80: Flags [S], seq 0, length 0", 0),
    ]
    steps = ladder_steps(segments, "client", (49152, 7))
    assert [s.left_to_right for s in steps] == [True, False]
    text = render_ladder(steps, "client 10.0.0.2:49152", "10.0.0.1:7", 80).plain
    assert "Flags [S]" in text and "▶" in text and "◀" in text
    assert "49153" not in text


def test_mdl_chain_boxes_follow_next_and_stop_on_a_cycle() -> None:
    engine = Engine(seed=1)
    try:
        for command in ("bp /h winsrv afd!WskProAPISend", '!echo "hello"', "g",
                        "bp /h winsrv netvmini!MPSendNetBufferLists", "g"):
            engine.execute(command)  # the echo at the miniport: tcpip's header MDL, then echosrv's buffer
        mdl = engine.kernels["winsrv"].addr_objects[engine.execute("? poi(poi(@rdx+8)+20)").data["value"]]
        chain = chain_of(mdl)
        assert len(chain) == 2 and chain[1] is mdl.next and mdl.next.next is None
        tail = mdl.next
        tail.next = mdl  # a corrupt (cyclic) chain must not hang the view
        assert len(chain_of(mdl)) == 2
        tail.next = None
        text = render_chain(mdl_boxes(chain), 100).plain
        assert "StartVa" in text and f"{mdl.start_va:016x}" in text and "Next = NULL" in text
    finally:
        engine.close()


def test_the_irp_tables_stack_location_reads_plainly() -> None:
    assert location_text(2, 3) == "2 of 3"
    assert location_text(2, 1) == "none of 1"  # CurrentLocation = StackCount + 1: not sent down yet


def test_kernel_addresses_are_clickable_and_small_numbers_are_not() -> None:
    text = linkify("Irp ffffc1cb000031c0 status 00000103 at fffff801`4ae80000")
    clicks = [span.style.meta.get("@click") for span in text.spans if hasattr(span.style, "meta")]
    assert clicks == [f"app.inspect_address({0xffffc1cb000031c0})", f"app.inspect_address({0xfffff8014ae80000})"]


SCRIPT = """\
$$ a comment
.echo Step one: look at the stack.
.echo It has layers.
t
t
.echo Step two: one more.
t
"""


LAB_SCRIPT = """\
.echo Step one: look at the stack.
!echo "hello"
t
t
.echo Step two: one more.
t
"""


def test_a_session_script_is_cut_into_narrated_steps_at_echo_lines() -> None:
    steps = parse_tour(SCRIPT)
    assert [s.narration for s in steps] == [["Step one: look at the stack.", "It has layers."], ["Step two: one more."]]
    assert [[c for _, c in s.commands] for s in steps] == [["t", "t"], ["t"]]
    assert steps[0].commands[0][0] == 4  # line numbers are kept for messages


def test_tour_reports_a_missing_or_empty_script_clearly(tmp_path, capsys) -> None:
    with pytest.raises(TourScriptError, match="cannot read"):
        load_tour(tmp_path / "nope.wds")
    empty = tmp_path / "empty.wds"
    empty.write_text("$$ nothing\n")
    with pytest.raises(TourScriptError, match="no commands"):
        load_tour(empty)
    assert run_tour(tmp_path / "nope.wds", engine_factory=lambda: pytest.fail("no engine for a missing script")) == 2
    assert "wskdbg tour: cannot read" in capsys.readouterr().err


def test_presentation_mode_waits_for_a_key_then_runs_the_step_and_narrates_the_next() -> None:
    engine = Engine(seed=1)
    app = PresentationApp(parse_tour(LAB_SCRIPT), engine, poll_hz=0)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert "Step one" in screen_text(app) and "0: kd> t" not in screen_text(app)
            await pilot.press("space")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert screen_text(app).count("0: kd> t") == 2
            assert "Step two" in screen_text(app)
            assert app.query_one("StackView").picture.caption.startswith("#")  # the hand-off it stopped at
            await pilot.press("space")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert "The end" in screen_text(app)

    try:
        asyncio.run(main())
    finally:
        engine.close()


def test_tour_markdown_lists_every_step_with_its_command() -> None:
    text = tour_markdown()
    assert text.startswith("1. **Welcome to wskdbg.**")
    assert "`bp /h winsrv echosrv!WskSampleReceiveIrpCompletionRoutine`" in text
    assert '`!echo "hello"`' in text and "`!irp @rdx`" in text


def test_the_tours_commands_work_on_the_standard_lab_and_stop_in_echosrv() -> None:
    from wskdbg.engine import Engine
    from wskdbg.tui.tour import TOUR_STEPS

    engine = Engine(seed=1)
    try:
        out = {}
        for step in TOUR_STEPS:
            if step.command:
                result = engine.execute(step.command)
                assert not result.error, (step.command, result.text)
                out[step.command] = result.text
        assert out["g"].startswith("Breakpoint 0 hit") and "echosrv!WskSampleReceiveIrpCompletionRoutine" in out["g"]
        assert "nt!IofCompleteRequest" in out["k"] and "afd!WskProAPIReceive" in out["k"]
        assert out["!irp @rdx"].startswith("Irp is active")
        assert "ret: echosrv!WskSampleReceiveIrpCompletionRoutine" in out["p"]
        assert "WskSampleCtlGuid" in out[TOUR_STEPS[7].command]  # step 8 starts echosrv's WPP session
        engine.execute("bc *")
        assert "1 exchange, all echoed intact" in engine.execute("g").text
    finally:
        engine.close()


def test_presentation_mode_lays_out_for_a_projector() -> None:
    # 160x50: the output runs the whole width under the narration; the stack view's host and
    # driver names are not cut.
    engine = Engine(seed=1)
    app = PresentationApp(parse_tour(SCRIPT), engine, poll_hz=0)

    async def main() -> None:
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause()
            narration = app.query_one("#narration").region
            output = app.query_one("#tour-output").region
            assert output.width == 160 and output.y > narration.y
            assert app.query_one("#output").region.width >= 156  # inside its border
            text = screen_text(app)
            for name in ("winsrv", "client", "dns", "httpbin", "kfs echosrv khttpd", "netvmini", "afd"):
                assert name in text, name

    try:
        asyncio.run(main())
    finally:
        engine.close()


def test_stack_view_titles_a_host_with_processors_with_its_load():
    from stack.world import default_world
    from wskdbg.tui.stack_view import cpu_load
    world = default_world(1, services=False, cpu_profile="2003")
    world.scheduler.run_for(1_000_000)
    winsrv = world.host("winsrv").kernel
    winsrv.cpu_model.processors[0].dpc_ns = winsrv.now_ns * 0.42  # 42 % of the time since boot in DPCs
    assert round(cpu_load(winsrv), 2) == 0.42
    rows = tuple(LayerRow(layer, "", 1, "") for layer in ("drivers", "wsk", "tcpip"))
    picture = StackPicture((("winsrv", rows), ("client", rows)), None, None, "x", (("winsrv", " cpu 42%"),))
    text = render_picture(picture, 80).plain
    assert "winsrv cpu 42%" in text and "client cpu" not in text


def test_source_picture_built_on_the_machine_thread_marks_the_line_lsa_reports_at_that_stop() -> None:
    """While the machine runs, the source pane's picture is built at a hand-off on the machine's
    thread from that thread's own Python frames: it marks the line `lsa .` reports when the
    debugger stops at the same hand-off."""
    from wskdbg.tui.source_view import running_picture

    engine = Engine(seed=1)
    seen: dict[str, object] = {}

    def at_hand_off(ev) -> None:  # type: ignore[no-untyped-def]
        if ev.kind == "wsk.call" and "picture" not in seen:
            seen["picture"] = running_picture(engine.kernels, ev)

    try:
        engine.execute('!echo -n 1 "hi"')
        engine.world.bus.subscribe(at_hand_off, first=True)  # as the TUI: before the debugger stops there
        engine.execute("bp /h winsrv afd!WskProAPIReceive")
        engine.execute("g")
        engine.execute("bc *")
        engine.execute("t")  # afd's WskReceive publishes its wsk.call hand-off
        picture = seen["picture"]
        marked = [row for row in engine.execute("lsa .").text.splitlines() if row.startswith(">")]
        assert picture.title.startswith("00 afd!WskProAPIReceive [stack/afd/connection.py @ ")
        assert picture.current == int(marked[0][1:].split(":")[0])
        assert [row for row in picture.text().splitlines() if row.startswith(">")] == marked
    finally:
        engine.close()
