"""The one-line status bar: virtual time, events, machine state, IRQL, thread."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from stack.kernel.irql import irql_name

from .link import BROKEN, BUGCHECKED, RUNNING, Position


def format_virtual_time(time_ns: int) -> str:
    """``12.345678901 s`` of virtual time since boot."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return f"{seconds}.{nanos:09d} s"


STATE_CLASSES = {RUNNING: "-running", BROKEN: "-broken", BUGCHECKED: "-bugchecked"}


class StatusBar(Static):
    """Fixed height (1 line): updating it never moves another pane."""

    DEFAULT_CSS = """
    StatusBar { height: 1; width: 1fr; background: $panel; color: $text; padding: 0 1; }
    StatusBar.-running { background: $success-darken-2; }
    StatusBar.-bugchecked { background: $error-darken-1; color: $text; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.position: Position | None = None
        self.progress = ""  # "Replaying 37% ..." while a trip in time takes more than half a second

    def show(self, position: Position) -> None:
        if position == self.position:
            return
        self.position = position
        for state, cls in STATE_CLASSES.items():
            self.set_class(position.state == state, cls)
        self._paint()

    def show_progress(self, text: str) -> None:
        if text == self.progress:
            return
        self.progress = text
        self._paint()

    def _paint(self) -> None:
        if self.position is None:
            return
        text = status_text(self.position)
        if self.progress:
            text = Text(no_wrap=True, overflow="ellipsis").append(f" ⏳ {self.progress} ", style="bold reverse")
            text.append_text(status_text(self.position))
        self.update(text, layout=False)


def status_text(position: Position) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" ● " if position.state == RUNNING else " ■ ", style="bold")
    text.append(position.state.upper(), style="bold")
    text.append("   time ")
    text.append(format_virtual_time(position.time_ns), style="bold")
    text.append("   events ")
    text.append(f"{position.events_run:,}", style="bold")
    text.append(f" (#{position.event_seq:,})")
    text.append("   host ")
    text.append(position.host, style="bold")
    text.append("   IRQL ")
    text.append(irql_name(position.irql), style="bold")
    text.append("   thread ")
    text.append(position.thread, style="bold")
    return text
