"""Trace store (columnar, progressive filters) and the TUI trace pane."""

from __future__ import annotations

import asyncio
import threading
from typing import Awaitable, Callable

import pytest
from conftest import type_text
from hypothesis import given, settings
from hypothesis import strategies as st
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from wskdbg.trace.store import (
    TraceFilter,
    TraceFilterError,
    TraceRecord,
    TraceStore,
    TraceStoreError,
    format_trace_line,
)
from wskdbg.tui.trace_view import TraceFilterBar, TracePane, TraceSearchBar, TraceView

PROVIDERS = ("echosrv", "tcpip", "event:irp", "ndis")
FLAGS = ("TRCINFO", "TRCERROR", None)


def make_record(seq: int, text: str | None = None) -> TraceRecord:
    """Deterministic mix: providers and levels cycle, every 97th line is a needle."""
    if text is None:
        text = f"WskSampleEvent {seq}" + (" NEEDLE" if seq % 97 == 0 else "")
    return TraceRecord(
        seq=seq,
        time_ns=1_234_567_890 + seq * 1000,
        host="hostA" if seq % 2 else "hostB",
        provider=PROVIDERS[seq % 4],
        flag=FLAGS[seq % 3],
        level=1 + seq % 5,
        text=text,
        cpu=seq % 2,
        pid=4,
        tid=0x78,
    )


def records(start: int, count: int) -> list[TraceRecord]:
    return [make_record(seq) for seq in range(start, start + count)]


# --------------------------------------------------------------------------
# Store and filter


def test_display_line_has_wpp_default_prefix_shape() -> None:
    record = TraceRecord(1, 1_234_567_890, "hostA", "echosrv", "TRCINFO", 4,
                         "WskSampleAcceptEvent: accepted", cpu=0, pid=4, tid=0x78)
    assert format_trace_line(record) == (
        "[0]0004.0078::  00:00:01.234567890 [echosrv]WskSampleAcceptEvent: accepted"
    )


def test_store_gives_back_the_record_it_was_given() -> None:
    store = TraceStore()
    store.extend(records(0, 10))
    assert store.record(7) == make_record(7)
    assert store.line(7) == format_trace_line(make_record(7))
    assert store.provider(6) == "event:irp" and store.level(6) == 2


def test_control_characters_become_spaces_so_each_record_is_one_line() -> None:
    store = TraceStore()
    store.append(make_record(0, text="two\nlines\tand a tab"))
    assert store.line(0).endswith("]two lines and a tab")


def test_bad_records_raise_typed_errors_and_leave_the_store_unchanged() -> None:
    store = TraceStore()
    store.extend(records(0, 3))
    bad_level = make_record(3)
    bad_level.level = 9
    with pytest.raises(TraceStoreError, match="level 9"):
        store.extend([make_record(4), bad_level])
    bad_pid = make_record(5)
    bad_pid.pid = -1
    with pytest.raises(TraceStoreError, match="numeric"):
        store.append(bad_pid)
    with pytest.raises(TraceStoreError):
        store.extend(["not a record"])  # type: ignore[list-item]
    assert len(store) == 3 and store.select(TraceFilter.parse("level<=5")).search("event", 0) == 0


def test_more_than_255_providers_is_a_clear_error() -> None:
    store = TraceStore()
    store.extend(TraceRecord(i, i, "h", f"p{i}", None, 4, "x") for i in range(255))
    with pytest.raises(TraceStoreError, match="distinct provider"):
        store.append(TraceRecord(255, 255, "h", "one-too-many", None, 4, "x"))


def test_filter_syntax_parses_every_key() -> None:
    parsed = TraceFilter.parse('provider:echosrv,tcpip p:ndis level<=warning flag:TRCINFO host:hostA Accept "two  words"')
    assert parsed == TraceFilter(
        providers=frozenset({"echosrv", "tcpip", "ndis"}),
        flags=frozenset({"TRCINFO"}),
        max_level=3,
        text="Accept two  words",
        hosts=frozenset({"hostA"}),
    )
    assert TraceFilter.parse(parsed.describe()) == parsed
    assert TraceFilter.parse("level<4").max_level == 3
    assert TraceFilter.parse("level:2 level<=4").max_level == 2
    assert TraceFilter.parse('text:"a:b" c').text == "a:b c"
    assert TraceFilter.parse("0xffffa000:1").text == "0xffffa000:1"
    assert TraceFilter.parse("   ").is_empty


@pytest.mark.parametrize(
    ("source", "reason", "column"),
    [
        ("tcp state:ESTABLISHED", "unknown filter key 'state'", 5),
        ("level<=7", "bad level '7'", 8),
        ("level<=", "bad level ''", 8),
        ("provider:", "provider: needs a name", 1),
        ('x "open quote', "unterminated", 3),
        ("provider<=tcpip", "provider takes ':'", 1),
        ("level<1", "keeps nothing", 1),
    ],
)
def test_bad_filter_syntax_names_the_problem_and_column(source: str, reason: str, column: int) -> None:
    with pytest.raises(TraceFilterError) as raised:
        TraceFilter.parse(source)
    assert reason in raised.value.reason
    assert raised.value.column == column


def test_provider_filter_ignores_case_and_matches_names_interned_later() -> None:
    store = TraceStore()
    store.extend(records(0, 8))
    selection = store.select(TraceFilter.parse("provider:EchoSrv,khttpd"))
    selection.evaluate_all()
    assert list(selection) == [0, 4]
    store.append(TraceRecord(8, 0, "hostA", "khttpd", None, 4, "GET /"))
    selection.evaluate_all()
    assert list(selection) == [0, 4, 8]


def test_only_new_records_are_tested_when_a_filter_is_active() -> None:
    store = TraceStore(block_size=64)
    store.extend(records(0, 1000))
    selection = store.select(TraceFilter.parse("level<=2 needle"))
    selection.evaluate_all()
    tested = selection.records_tested
    assert tested == 1000
    store.extend(records(1000, 37))
    selection.evaluate_all()
    assert selection.records_tested == tested + 37


def test_priming_at_the_end_evaluates_one_screenful_not_the_whole_store() -> None:
    store = TraceStore(block_size=100)
    store.extend(records(0, 10_000))
    selection = store.select(TraceFilter.parse("provider:tcpip"))
    selection.prime(None, rows=40, budget_s=10.0)
    assert not selection.complete and selection.records_tested == 200
    assert list(selection) == list(range(9801, 10_000, 4))[-len(selection):]
    selection.evaluate_all()
    assert len(selection) == 2500 and selection.progress == 1.0


def test_bounded_store_keeps_the_newest_records_and_drops_evicted_rows() -> None:
    store = TraceStore(capacity=100, block_size=16)
    selection = store.select(TraceFilter.parse("provider:echosrv"))
    for start in range(0, 1000, 70):
        store.extend(records(start, 70))
        selection.evaluate_all()
    assert (store.first_position, store.end_position, len(store)) == (950, 1050, 100)
    assert list(selection) == [p for p in range(950, 1050) if p % 4 == 0]
    with pytest.raises(IndexError):
        store.line(949)


def test_search_finds_next_and_previous_match_within_the_filtered_view() -> None:
    store = TraceStore(block_size=50)
    store.extend(records(0, 1000))
    selection = store.select(TraceFilter.parse("provider:echosrv"))  # positions 0, 4, 8...
    selection.evaluate_all()
    needle_rows = [row for row, pos in enumerate(selection) if pos % 97 == 0]
    assert selection.search("needle", 0) == needle_rows[0]
    assert selection.search("NEEDLE", needle_rows[0] + 1) == needle_rows[1]
    assert selection.search("needle", needle_rows[1] - 1, backwards=True) == needle_rows[0]
    assert selection.search("needle", needle_rows[-1] + 1) is None
    assert selection.search("absent", 0) is None


# Random records, filters and append batches against a plain Python filter.

_names = st.sampled_from(["echosrv", "tcpip", "event:irp", "Ndis"])
_record_fields = st.tuples(
    _names,
    st.sampled_from(["TRCINFO", "TCP", None]),
    st.integers(1, 5),
    st.sampled_from(["hostA", "hostB"]),
    st.text(alphabet="abAB \n:", max_size=6),
)
_filters = st.builds(
    TraceFilter,
    providers=st.none() | st.frozensets(st.sampled_from(["echosrv", "TCPIP", "ndis", "other"]), min_size=1),
    flags=st.none() | st.frozensets(st.sampled_from(["trcinfo", "TCP", "X"]), min_size=1),
    max_level=st.none() | st.integers(1, 5),
    text=st.none() | st.text(alphabet="abAB :]", min_size=1, max_size=3),
    hosts=st.none() | st.frozensets(st.sampled_from(["hostA", "HOSTB"]), min_size=1),
)


def _naive(rows: list[TraceRecord], first: int, trace_filter: TraceFilter) -> list[int]:
    def lowered(names: frozenset[str] | None) -> set[str] | None:
        return None if names is None else {name.lower() for name in names}

    providers, flags, hosts = (lowered(trace_filter.providers), lowered(trace_filter.flags),
                               lowered(trace_filter.hosts))
    kept = []
    for position, record in enumerate(rows):
        if position < first:
            continue
        if providers is not None and record.provider.lower() not in providers:
            continue
        if flags is not None and (record.flag is None or record.flag.lower() not in flags):
            continue
        if hosts is not None and record.host.lower() not in hosts:
            continue
        if trace_filter.max_level is not None and record.level > trace_filter.max_level:
            continue
        line = format_trace_line(record).lower()
        if trace_filter.text and trace_filter.text.lower() not in line:
            continue
        kept.append(position)
    return kept


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.lists(_record_fields, max_size=40), min_size=1, max_size=4),
    trace_filter=_filters,
    block_size=st.integers(1, 9),
    capacity=st.none() | st.integers(1, 60),
    anchor_fraction=st.none() | st.floats(0, 1),
)
def test_filtered_index_equals_a_naive_filter_across_appends(
    batches, trace_filter, block_size, capacity, anchor_fraction
) -> None:
    store = TraceStore(capacity=capacity, block_size=block_size)
    appended: list[TraceRecord] = []
    selection = store.select(trace_filter)
    for batch in batches:
        new = [TraceRecord(len(appended) + i, 1000 * i, host, provider, flag, level, text)
               for i, (provider, flag, level, host, text) in enumerate(batch)]
        appended.extend(new)
        store.extend(new)
        expected = _naive(appended, store.first_position, trace_filter)
        if anchor_fraction is not None:  # a fresh selection primed mid-store
            anchor = store.first_position + int(anchor_fraction * len(store))
            primed = store.select(trace_filter)
            primed.prime(anchor, rows=3)
            known = list(primed)
            # What is known so far is an exact slice of the final answer.
            if not primed.identity:
                assert known == [p for p in expected if primed._lo <= p < primed._hi]
            for row, position in enumerate(known):
                assert primed.row_of(position) == row
            primed.evaluate_all()
            assert list(primed) == expected
        selection.evaluate_all()
        assert list(selection) == expected
        assert len(selection) == len(expected)


@settings(max_examples=100, deadline=None)
@given(
    fields=st.lists(_record_fields, min_size=1, max_size=50),
    trace_filter=_filters,
    needle=st.text(alphabet="abAB:", min_size=1, max_size=2),
    start_fraction=st.floats(0, 1),
    backwards=st.booleans(),
)
def test_search_equals_a_naive_scan(fields, trace_filter, needle, start_fraction, backwards) -> None:
    store = TraceStore(block_size=4)
    store.extend(TraceRecord(i, i, host, provider, flag, level, text)
                 for i, (provider, flag, level, host, text) in enumerate(fields))
    selection = store.select(trace_filter)
    selection.evaluate_all()
    if not len(selection):
        assert selection.search(needle, 0) is None
        return
    start = int(start_fraction * (len(selection) - 1))
    rows = range(start, -1, -1) if backwards else range(start, len(selection))
    expected = next((row for row in rows if needle.lower() in store.line(selection[row]).lower()), None)
    assert selection.search(needle, start, backwards) == expected


# --------------------------------------------------------------------------
# The pane in a running app


class PaneApp(App[None]):
    def __init__(self, store: TraceStore) -> None:
        super().__init__()
        self.store = store

    def compose(self) -> ComposeResult:
        # A long poll interval: the tests move records in with flush().
        yield TracePane(self.store, poll_interval=3600)


def run_pane(test: Callable[[Pilot, TracePane], Awaitable[None]], count: int = 2000) -> None:
    async def main() -> None:
        store = TraceStore(block_size=256)
        store.extend(records(0, count))
        app = PaneApp(store)
        async with app.run_test(size=(100, 30)) as pilot:
            pane = app.query_one(TracePane)
            pane.flush(complete=True)
            await pilot.pause()
            await test(pilot, pane)

    asyncio.run(main())


def visible_positions(view: TraceView) -> list[int]:
    top = round(view.scroll_y)
    stop = min(len(view.selection), top + view.page_height)
    return [view.selection[row] for row in range(top, stop)]


async def type_filter(pilot: Pilot, pane: TracePane, text: str) -> None:
    await pilot.click(TraceFilterBar)
    await type_text(pilot, text)
    pane.flush(complete=True)
    await pilot.pause()


def test_typing_a_filter_narrows_lines_and_status_count() -> None:
    async def check(pilot: Pilot, pane: TracePane) -> None:
        assert pane.status_text().startswith("2,000 / 2,000 lines")
        await type_filter(pilot, pane, "provider:tcpip")
        assert pane.status_text().startswith("500 / 2,000 lines  filter: provider:tcpip")
        assert {pane.store.provider(p) for p in pane.view.selection} == {"tcpip"}
        await type_text(pilot, " needle")
        pane.flush(complete=True)
        assert [p for p in pane.view.selection] == [p for p in range(2000) if p % 4 == 1 and p % 97 == 0]
        assert str(pane.query_one("#trace-status").render()).startswith(f"{len(pane.view.selection)} / 2,000")

    run_pane(check)


def test_level_filter_keeps_only_severe_lines() -> None:
    async def check(pilot: Pilot, pane: TracePane) -> None:
        await type_filter(pilot, pane, "level<=error")
        levels = {pane.store.level(p) for p in pane.view.selection}
        assert levels == {1, 2} and len(pane.view.selection) == 800
        shown = visible_positions(pane.view)
        assert shown and all(pane.store.level(p) <= 2 for p in shown)

    run_pane(check)


def test_follow_keeps_the_last_line_visible_while_appending() -> None:
    async def check(pilot: Pilot, pane: TracePane) -> None:
        view = pane.view
        view.focus()
        assert view.follow and visible_positions(view)[-1] == 1999
        pane.append(records(2000, 150))
        pane.flush()
        await pilot.pause()
        assert visible_positions(view)[-1] == 2149
        assert view.render_line(view.page_height - 1).text.startswith(
            format_trace_line(make_record(2149))
        )

    run_pane(check)


def test_scrolling_up_stops_follow_and_f_resumes_it() -> None:
    async def check(pilot: Pilot, pane: TracePane) -> None:
        view = pane.view
        view.focus()
        await pilot.press("pageup")
        assert not view.follow and "follow: off" in pane.status_text()
        top_before = visible_positions(view)[0]
        pane.append(records(2000, 50))
        pane.flush()
        await pilot.pause()
        assert visible_positions(view)[0] == top_before  # the reader's place is kept
        await pilot.press("f")
        assert view.follow and visible_positions(view)[-1] == 2049

    run_pane(check)


def test_filter_change_while_scrolled_up_keeps_the_reading_position() -> None:
    async def check(pilot: Pilot, pane: TracePane) -> None:
        view = pane.view
        view.focus()
        await pilot.press("home")
        await pilot.press(*["pagedown"] * 3)
        top_before = visible_positions(view)[0]
        await type_filter(pilot, pane, "provider:echosrv")
        assert not view.follow
        assert visible_positions(view)[0] == next(p for p in range(top_before, 2000) if p % 4 == 0)

    run_pane(check)


def test_search_jumps_to_the_match_and_highlights_it() -> None:
    async def check(pilot: Pilot, pane: TracePane) -> None:
        view = pane.view
        view.focus()
        await pilot.press("home", "slash")
        assert pane.query_one(TraceSearchBar).has_class("-open")
        await type_text(pilot, "needle")
        await pilot.press("enter")
        assert view.current_match_row == 0  # position 0 carries the needle
        await pilot.press("n")
        assert view.selection[view.current_match_row] == 97
        await pilot.press("n", "n")
        assert view.selection[view.current_match_row] == 291
        await pilot.press("N")
        assert view.selection[view.current_match_row] == 194
        assert 194 in visible_positions(view) and not view.follow
        await pilot.pause()
        row_on_screen = view.current_match_row - round(view.scroll_y)
        strip = view.render_line(row_on_screen)
        current_style = view.get_component_rich_style("trace-view--current", partial=True)
        assert all(seg.style and seg.style.bgcolor == current_style.bgcolor for seg in strip if seg.text.strip())
        assert 'search: "needle"' in pane.status_text()

    run_pane(check)


def test_search_wraps_around_at_the_end() -> None:
    async def check(pilot: Pilot, pane: TracePane) -> None:
        view = pane.view
        last = max(p for p in range(2000) if p % 97 == 0)
        assert last < visible_positions(view)[0]  # no match below the top row
        view.search("needle")
        assert view.current_match_row == 0 and view.search_note == "wrapped"
        view.search("needle", backwards=True)
        assert view.selection[view.current_match_row] == last and view.search_note == "wrapped"
        view.search("needle", backwards=True)
        assert view.selection[view.current_match_row] == last - 97 and view.search_note == ""

    run_pane(check)


def test_bad_filter_syntax_shows_an_error_and_keeps_the_old_filter() -> None:
    async def check(pilot: Pilot, pane: TracePane) -> None:
        await type_filter(pilot, pane, "provider:ndis")
        assert len(pane.view.selection) == 500
        bar = pane.query_one(TraceFilterBar)
        bar.value = "provider:ndis level<=9"  # pasted
        bar.cursor_position = len(bar.value)
        await pilot.pause()
        pane.flush(complete=True)
        assert pane.view.selection.filter == TraceFilter.parse("provider:ndis")
        assert len(pane.view.selection) == 500
        assert "filter error: bad level '9'" in pane.status_text()
        assert pane.query_one("#trace-status").has_class("-error")
        assert pane.query_one(TraceFilterBar).has_class("-invalid")
        await pilot.press("backspace", "2")  # fixed: the error goes away
        pane.flush(complete=True)
        assert pane.filter_error is None and len(pane.view.selection) == 200

    run_pane(check)


def test_records_appended_from_another_thread_show_after_a_tick() -> None:
    async def check(pilot: Pilot, pane: TracePane) -> None:
        worker = threading.Thread(target=pane.append, args=(records(2000, 500),))
        worker.start()
        worker.join()
        assert len(pane.store) == 2000  # queued, not yet in the store
        pane.flush()
        await pilot.pause()
        assert len(pane.store) == 2500 and visible_positions(pane.view)[-1] == 2499

    run_pane(check)


def test_lines_are_coloured_by_level() -> None:
    async def check(pilot: Pilot, pane: TracePane) -> None:
        view = pane.view
        error_style = view.get_component_rich_style("trace-view--error", partial=True)
        strip = view._build_strip(1, pane.store.line(1), None, False)  # level 2 = ERROR
        assert [seg.style.color for seg in strip][-1] == error_style.color
        info = view._build_strip(3, pane.store.line(3), None, False)  # level 4 = INFO
        assert [seg.style.color for seg in info][-1] == view.rich_style.color

    run_pane(check, count=10)
