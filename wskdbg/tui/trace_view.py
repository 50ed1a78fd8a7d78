"""The TUI trace pane: WPP messages and the stack's event stream.

``TraceView`` is a line-API ``ScrollView`` (like Textual's ``Log`` and
Toolong's ``LogLines``): it renders only the rows on screen, from a
``TraceSelection`` over a ``TraceStore``, with an LRU cache of strips.
``TracePane`` adds the filter bar, a search box and a one-line status, and
takes new records in batches: ``append`` only queues them (safe from any
thread), a timer moves the queue into the store and repaints once per tick.
"""

from __future__ import annotations

import threading
import zlib
from collections import deque
from typing import Iterable

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static

from wskdbg.trace.store import (
    TraceFilter,
    TraceFilterError,
    TraceRecord,
    TraceSelection,
    TraceStore,
)

__all__ = ["TraceFilterBar", "TracePane", "TraceSearchBar", "TraceView"]

# Provider tags get a stable colour each (crc32, not hash(): str hashes are
# salted per process and the colours must not change between runs).
_PROVIDER_COLOURS = ("cyan", "green", "magenta", "blue", "bright_cyan", "bright_green", "bright_magenta", "bright_blue")
_LEVEL_COMPONENTS = {
    1: "trace-view--critical",
    2: "trace-view--error",
    3: "trace-view--warning",
    5: "trace-view--verbose",
}


class TraceView(ScrollView, can_focus=True):
    """Virtualized view of a ``TraceSelection``; follows the end by default."""

    COMPONENT_CLASSES = {
        "trace-view--critical",
        "trace-view--error",
        "trace-view--warning",
        "trace-view--verbose",
        "trace-view--match",
        "trace-view--current",
    }
    DEFAULT_CSS = """
    TraceView {
        background: $surface;
        color: $text;
        overflow: scroll;
        height: 1fr;
        &:focus { background-tint: $foreground 5%; }
        & > .trace-view--critical { color: $error; text-style: bold; }
        & > .trace-view--error { color: $error; }
        & > .trace-view--warning { color: $warning; }
        & > .trace-view--verbose { text-style: dim; }
        & > .trace-view--match { background: $warning 40%; }
        & > .trace-view--current { background: $accent 40%; }
    }
    """
    BINDINGS = [
        Binding("f", "toggle_follow", "Follow"),
        Binding("slash", "start_search", "Search"),
        Binding("n", "search_next", "Next match", show=False),
        Binding("N", "search_previous", "Previous match", show=False),
        Binding("end,G", "follow_end", "End", show=False),
        Binding("home,g", "go_home", "Top", show=False),
    ]

    follow: reactive[bool] = reactive(True, init=False)
    """Keep the last line in view as records arrive."""

    class Changed(Message):
        """Follow mode, search state or contents changed (for status lines)."""

    class SearchRequested(Message):
        """The user pressed ``/``; the pane opens its search box."""

    def __init__(
        self,
        store: TraceStore,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.store = store
        self._selection: TraceSelection = store.select()
        # Keyed by absolute store position (plus highlight state), not by
        # row: a position always renders the same, so the cache survives
        # filter changes and appends; strips are uncropped, so it also
        # survives resizes and horizontal scrolling.
        self._strips: LRUCache[tuple[int, str | None, bool], Strip] = LRUCache(2048)
        self._styles: dict[object, Style] = {}
        self._scrolling = False  # our own scroll_to calls, not the user's
        self._shown_window: tuple[int, ...] = ()
        self._last_top: int | None = None
        self._frame: tuple[int, int, int, str | None] | None = None
        self.search_text: str | None = None
        self.search_note = ""
        self._match_position: int | None = None

    # -- state ------------------------------------------------------------------

    @property
    def selection(self) -> TraceSelection:
        return self._selection

    @property
    def current_match_row(self) -> int | None:
        if self._match_position is None:
            return None
        row = self._selection.row_of(self._match_position)
        if row < len(self._selection) and self._selection.position(row) == self._match_position:
            return row
        return None

    @property
    def page_height(self) -> int:
        return max(1, self.scrollable_content_region.height)

    def _top_position(self) -> int | None:
        """Store position of the top row on screen (the scroll anchor).  With
        nothing on screen (a filter that matches nothing, mid-typing), the
        last one seen, so the reader's place survives the empty moment."""
        row = round(self.scroll_y)
        if row < len(self._selection):
            self._last_top = self._selection.position(row)
        return self._last_top

    def set_filter(self, trace_filter: TraceFilter) -> None:
        """Show ``trace_filter``'s records.  Evaluates about one screenful
        around the anchor now (the end when following, else the top row);
        ``update_from_store`` finishes the rest in the background."""
        anchor = None if self.follow else self._top_position()
        selection = self.store.select(trace_filter)
        selection.prime(anchor, rows=self.page_height + 1)
        self._selection = selection
        self._place(anchor)

    def update_from_store(self, budget_s: float = 0.008) -> None:
        """Take in appended/evicted records and continue evaluating the
        filter for up to ``budget_s``; repaint once."""
        anchor = None if self.follow else self._top_position()
        self._selection.advance(budget_s)
        self._place(anchor)

    def finish_filter(self) -> None:
        """Evaluate the whole filter now (tests, search, benchmarks)."""
        anchor = None if self.follow else self._top_position()
        self._selection.evaluate_all()
        self._place(anchor)

    def _place(self, anchor: int | None) -> None:
        """Resize the virtual canvas and scroll to the end (following) or so
        that ``anchor`` stays the top row."""
        rows = len(self._selection)
        self.virtual_size = Size(self.store.max_line_length, rows)
        if self.follow:
            target = max(0, rows - self.page_height)
        elif anchor is not None:
            target = self._selection.row_of(anchor)
        else:
            target = round(self.scroll_y)
        self._scroll_rows(target)
        # Background filter steps mostly add rows off screen: repaint the
        # lines only when what is on screen changed (scrolling repaints itself).
        window = self._window()
        if window != self._shown_window:
            self._shown_window = window
            self.refresh()

    def _window(self) -> tuple[int, ...]:
        selection, top = self._selection, round(self.scroll_y)
        stop = min(len(selection), top + self.page_height)
        return (top, *(selection.position(row) for row in range(top, stop)))

    def _scroll_rows(self, row: int) -> None:
        self._scrolling = True
        try:
            self.scroll_to(y=row, animate=False, immediate=True)
        finally:
            self._scrolling = False

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # A scroll up that we did not do ourselves ends follow mode.
        if (
            self.follow
            and not self._scrolling
            and new_value < old_value
            and round(new_value) < self.max_scroll_y
        ):
            self.follow = False

    def on_resize(self, event: events.Resize) -> None:
        if self.follow:
            self._place(None)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self._place(None)
        self.post_message(self.Changed())

    # -- actions ------------------------------------------------------------------

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def action_follow_end(self) -> None:
        if self.follow:
            self._place(None)
        self.follow = True

    def action_go_home(self) -> None:
        self.follow = False
        self._scroll_rows(0)

    def action_start_search(self) -> None:
        self.post_message(self.SearchRequested())

    def action_search_next(self) -> None:
        if self.search_text:
            self.search(self.search_text)

    def action_search_previous(self) -> None:
        if self.search_text:
            self.search(self.search_text, backwards=True)

    def search(self, text: str, backwards: bool = False) -> int | None:
        """Jump to the next (or previous) row containing ``text`` after the
        current match (or the top row), wrapping once; returns the row."""
        selection = self._selection
        self.search_text = text or None
        self.search_note = ""
        if not text:
            self._match_position = None
            self.refresh()
            self.post_message(self.Changed())
            return None
        selection.evaluate_all()  # rows must be final before we count them
        current = self.current_match_row
        if current is None:
            top = round(self.scroll_y)
            start = min(top + self.page_height - 1 if backwards else top, len(selection) - 1)
        else:
            start = current - 1 if backwards else current + 1
        row = None
        if 0 <= start < len(selection):
            row = selection.search(text, start, backwards)
        if row is None:
            row = selection.search(text, len(selection) - 1 if backwards else 0, backwards)
            self.search_note = "wrapped" if row is not None else "not found"
        if row is None:
            self._match_position = None
            self._place(self._top_position())
            self.post_message(self.Changed())
            return None
        self._match_position = selection.position(row)
        self.follow = False
        self.virtual_size = Size(self.store.max_line_length, len(selection))
        top = round(self.scroll_y)
        if not top <= row < top + self.page_height:
            self._scroll_rows(max(0, row - self.page_height // 2))
        self.refresh()
        self.post_message(self.Changed())
        return row

    # -- rendering --------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._strips.clear()

    def _style(self, key: object) -> Style:
        """Rich styles per level/provider/role, built once per style update."""
        style = self._styles.get(key)
        if style is None:
            base = self.rich_style
            if isinstance(key, int):  # a level
                component = _LEVEL_COMPONENTS.get(key)
                style = base + self.get_component_rich_style(component, partial=True) if component else base
            elif key in ("match", "current"):
                style = self.get_component_rich_style(f"trace-view--{key}", partial=True)
            elif key == "base":
                style = base
            else:  # ("provider", name)
                provider = str(key[1])  # type: ignore[index]
                colour = _PROVIDER_COLOURS[zlib.crc32(provider.encode()) % len(_PROVIDER_COLOURS)]
                style = Style(color=colour, italic=provider.startswith("event:"))
            self._styles[key] = style
        return style

    def render_lines(self, crop: Region) -> list[Strip]:
        # Widget geometry lookups cost tens of microseconds each: take them
        # once per repaint instead of once per line.
        self._frame = self._frame_state()
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def _frame_state(self) -> tuple[int, int, int, str | None]:
        scroll_x, scroll_y = self.scroll_offset
        needle = self.search_text.lower() if self.search_text else None
        return scroll_x, scroll_y, self.scrollable_content_region.width, needle

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y, width, needle = self._frame or self._frame_state()
        row = scroll_y + y
        if row >= len(self._selection):
            return Strip.blank(width, self._style("base"))
        position = self._selection.position(row)
        line = self.store.line(position)
        if needle is not None and needle not in line.lower():
            needle = None
        key = (position, needle, position == self._match_position)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._build_strip(position, line, needle, key[2])
            self._strips[key] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, self._style("base"))

    def _build_strip(self, position: int, line: str, needle: str | None, current: bool) -> Strip:
        store = self.store
        level_style = self._style(store.level(position))
        provider = store.provider(position)
        text_start = store.text_start(position)
        tag_start = text_start - len(provider) - 2
        tag_style = level_style + self._style(("provider", provider))
        if needle is None and not current:
            segments = [
                Segment(line[:tag_start], level_style),
                Segment(line[tag_start:text_start], tag_style),
                Segment(line[text_start:], level_style),
            ]
            length = len(line) if line.isascii() else cell_len(line)
            return Strip(segments, length)
        text = Text(line, style=level_style, no_wrap=True, end="")
        text.stylize(tag_style, tag_start, text_start)
        if current:
            text.stylize(self._style("current"))
        if needle:
            lowered, at = line.lower(), 0
            while (at := lowered.find(needle, at)) >= 0:
                text.stylize(self._style("match"), at, at + len(needle))
                at += len(needle)
        return Strip(text.render(self.app.console), text.cell_len)


class TraceFilterBar(Input):
    """One-line filter: ``provider:echosrv level<=4 flag:TRCINFO words``."""

    DEFAULT_CSS = """
    TraceFilterBar { height: 3; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            placeholder="filter: provider:echosrv,tcpip level<=warning flag:TRCINFO host:A text",
            id=id,
        )


class TraceSearchBar(Input):
    """The ``/`` search box; Enter searches, Escape closes."""

    DEFAULT_CSS = """
    TraceSearchBar { height: 3; display: none; }
    TraceSearchBar.-open { display: block; }
    """
    BINDINGS = [Binding("escape", "close", "Close", show=False)]

    def action_close(self) -> None:
        self.remove_class("-open")
        self.screen.set_focus(None)
        self.post_message(self.Closed())

    class Closed(Message):
        pass


class TracePane(Vertical):
    """Filter bar + trace view + search box + status line."""

    DEFAULT_CSS = """
    TracePane { height: 1fr; }
    TracePane > #trace-status { height: 1; padding: 0 1; background: $panel; }
    TracePane > #trace-status.-error { color: $error; }
    """

    def __init__(
        self,
        store: TraceStore | None = None,
        *,
        poll_interval: float = 1 / 20,
        budget_s: float = 0.008,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._store = store if store is not None else TraceStore()
        self._pending: deque[list[TraceRecord]] = deque()
        self._pending_lock = threading.Lock()
        self._poll_interval = poll_interval
        self._budget_s = budget_s
        self.trace_filter = TraceFilter()
        self.filter_error: str | None = None
        self._continuing = False

    # -- public API ---------------------------------------------------------------

    @property
    def store(self) -> TraceStore:
        return self._store

    @property
    def view(self) -> TraceView:
        return self.query_one(TraceView)

    def append(self, records: Iterable[TraceRecord]) -> None:
        """Queue records; the next timer tick shows them.  Cheap and safe to
        call from any thread (no widget is touched here)."""
        batch = list(records)
        if batch:
            with self._pending_lock:
                self._pending.append(batch)

    def flush(self, complete: bool = False) -> None:
        """Move queued records into the store and repaint now (what the timer
        does); with ``complete`` the filter is evaluated to the end."""
        with self._pending_lock:
            batches, self._pending = list(self._pending), deque()
        for batch in batches:
            self._store.extend(batch)
        view = self.view
        if complete:
            view.finish_filter()
        elif batches or not view.selection.complete:
            view.update_from_store(self._budget_s)
        self._update_status()
        self._continue_later()

    def _continue_later(self) -> None:
        """While a filter is still being evaluated, keep going one slice per
        frame (input and repaints run in between) instead of per timer tick."""
        if not self._continuing and not self.view.selection.complete:
            self._continuing = True
            self.call_after_refresh(self._continue_filter)

    def _continue_filter(self) -> None:
        self._continuing = False
        if self.is_attached:
            self.flush()

    def set_filter(self, text: str) -> bool:
        """Parse and apply ``text``; on bad syntax keep the old filter, show
        the error and return False."""
        try:
            trace_filter = TraceFilter.parse(text)
        except TraceFilterError as error:
            self.filter_error = str(error)
            self._set_invalid(True)
            self._update_status()
            return False
        self.filter_error = None
        self._set_invalid(False)
        self.trace_filter = trace_filter
        if self.view.selection.filter != trace_filter:
            self.view.set_filter(trace_filter)
        self._update_status()
        self._continue_later()
        return True

    def status_text(self) -> str:
        view = self.view
        selection = view.selection
        parts = [f"{len(selection):,} / {len(self._store):,} lines"]
        if not selection.complete:
            parts.append(f"filtering {selection.progress:.0%}")
        if self.filter_error:
            parts.append(f"filter error: {self.filter_error}")
        else:
            parts.append(f"filter: {self.trace_filter.describe() or '(none)'}")
        parts.append(f"follow: {'on' if view.follow else 'off'}")
        if view.search_text:
            note = f" ({view.search_note})" if view.search_note else ""
            parts.append(f'search: "{view.search_text}"{note}')
        return "  ".join(parts)

    # -- composition and events ------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield TraceFilterBar(id="trace-filter")
        yield TraceView(self._store, id="trace-view")
        yield TraceSearchBar(placeholder="search (Enter: find, n/N: next/previous)", id="trace-search")
        yield Static("", id="trace-status")

    def on_mount(self) -> None:
        self.view.update_from_store(self._budget_s)
        self._update_status()
        if self._poll_interval > 0:
            self.set_interval(self._poll_interval, self._tick)

    def _tick(self) -> None:
        with self._pending_lock:
            idle = not self._pending
        if idle and self.view.selection.complete:
            return
        self.flush()

    def _set_invalid(self, invalid: bool) -> None:
        self.query_one(TraceFilterBar).set_class(invalid, "-invalid")

    def _update_status(self) -> None:
        status = self.query_one("#trace-status", Static)
        status.set_class(self.filter_error is not None, "-error")
        status.update(self.status_text(), layout=False)  # fixed height: repaint only

    def on_input_changed(self, event: Input.Changed) -> None:
        if isinstance(event.input, TraceFilterBar):
            event.stop()
            self.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if isinstance(event.input, TraceSearchBar):
            event.input.remove_class("-open")
            self.view.focus()
            self.view.search(event.value)
            self._update_status()
        elif isinstance(event.input, TraceFilterBar):
            self.view.focus()

    def on_trace_view_search_requested(self, event: TraceView.SearchRequested) -> None:
        event.stop()
        search = self.query_one(TraceSearchBar)
        search.add_class("-open")
        search.value = self.view.search_text or ""
        search.focus()

    def on_trace_search_bar_closed(self, event: TraceSearchBar.Closed) -> None:
        event.stop()
        self.view.focus()

    def on_trace_view_changed(self, event: TraceView.Changed) -> None:
        event.stop()
        self._update_status()

    def on_key(self, event: events.Key) -> None:
        # Escape in the filter bar hands the keys back to the view.
        if event.key == "escape" and isinstance(self.app.focused, TraceFilterBar):
            event.stop()
            self.view.focus()
