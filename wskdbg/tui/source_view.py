"""The source pane: the current frame's routine with its current line marked, as WinDbg's source
window follows the frame the debugger is in.

Emulated routines are Python that reads like the C original (wskdbg.source), so the pane lists
the routine `lsa .` would list, with `>` on the line `lsa`/`k` report, and follows every stop,
step and `.frame N`.  The picture (`SourcePicture`) is a pure value built with the rest of the
`MachineView` (snapshot.py): while the machine is stopped from the selected frame of `k`; while
it runs, on the machine's thread at a hand-off, from the running context's innermost routine.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from stack.kernel.events import Event, RoutineEntered, RoutineReturned
from wskdbg.source import FrameSource, frame_sources, routine_source, source_line


@dataclass(frozen=True, slots=True)
class SourcePicture:
    title: str  # "00 echosrv!WskSampleOpReceive [stack/drivers/echosrv/wsksmple.py @ 245]"
    rows: tuple[tuple[int, str], ...]  # (line number, text) of the whole routine
    current: int | None  # the marked line (None: no source)
    note: str = ""  # why there is no source

    def text(self) -> str:
        """The pane as plain text (`>` on the current line, as lsa marks it)."""
        lines = [self.title] if self.title else []
        lines += [f"{'>' if n == self.current else ' '}{n:5}: {t}" for n, t in self.rows]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


NOTHING = SourcePicture("", (), None, "No frame yet.")


def _picture(index: int, call_site: str, symbol: str, src: FrameSource | None) -> SourcePicture:
    if src is None:
        return SourcePicture(f"{index:02x} {call_site}", (), None,
                             f"No source for {symbol}: not an emulated routine (the emulator's own code).")
    routine = src.routine
    rows = tuple((n, source_line(routine.path, n)) for n in range(routine.first, routine.last + 1))
    return SourcePicture(f"{index:02x} {call_site} [{routine.file} @ {src.line}]", rows, src.line)


def stopped_picture(engine: Any) -> SourcePicture:
    """The selected frame of `k` (`.frame N`; 0 after every stop), as `lsa .` shows it.  Only
    while the machine is stopped: it reads the stack."""
    frames = engine.stack()
    if not frames:
        return NOTHING
    index = min(engine.selected_frame(), len(frames) - 1)
    frame = frames[index]
    return _picture(index, frame.call_site, frame.symbol, frame_sources(engine, None, frames)[index])


def running_picture(kernels: dict[str, Any], event: Event | None) -> SourcePicture:
    """The innermost routine of the context that published `event`, on the machine's thread at
    that hand-off (its Python frames are this thread's, so the line is exact)."""
    k = kernels.get(event.host) if event is not None else None
    frames = list(k.frames) if k is not None else []
    for depth in range(len(frames) - 1, -1, -1):
        symbol = frames[depth].symbol
        routine = routine_source(symbol)
        if routine is None:
            continue
        code = getattr(routine.function, "__code__", None)
        line = None
        if depth == len(frames) - 1 and isinstance(event, RoutineEntered) and event.symbol == symbol:
            line = routine.def_line  # called, not started
        elif depth == len(frames) - 1 and isinstance(event, RoutineReturned) and event.symbol == symbol:
            line = routine.last  # finished
        else:
            frame = sys._getframe()
            while frame is not None and frame.f_code is not code:
                frame = frame.f_back
            line = frame.f_lineno if frame is not None else routine.def_line
        index = len(frames) - 1 - depth
        src = FrameSource(routine, line, "running")
        return _picture(index, symbol, symbol, src)
    return SourcePicture("", (), None, "Running: no emulated routine at the latest hand-off.")


class SourceView(VerticalScroll, can_focus=True):
    """The routine's lines, the current one highlighted and scrolled into view."""

    DEFAULT_CSS = """
    SourceView { height: 1fr; }
    SourceView > #source-title { height: 1; color: $secondary; text-style: bold; }
    SourceView > #source-body { height: auto; width: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.picture: SourcePicture = NOTHING

    def compose(self) -> ComposeResult:
        yield Static("", id="source-title", markup=False)
        yield Static("", id="source-body", markup=False)

    def show(self, picture: SourcePicture) -> None:
        if picture == self.picture:
            return
        self.picture = picture
        self.query_one("#source-title", Static).update(Text(picture.title or "Source"))
        body = Text(no_wrap=True)
        marked = 0
        for i, (n, line) in enumerate(picture.rows):
            current = n == picture.current
            if current:
                marked = i
            body.append(f"{'>' if current else ' '}{n:5}: {line}\n", style="reverse bold" if current else "")
        if picture.note:
            body.append(picture.note, style="italic dim")
        self.query_one("#source-body", Static).update(body)
        # keep the current line in view, a few lines below the top (+1: the title row)
        self.call_after_refresh(self.scroll_to, y=max(0, marked + 1 - 4), animate=False)
