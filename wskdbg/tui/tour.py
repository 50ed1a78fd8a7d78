"""The guided tour: a few steps that show an echo packet travelling through the stack.

Opened with F1 (shown in the footer), and on first start when the CLI asks
for it.  Each step says what to look at and what to press; a step with a
command can run it for you (`d`).  The README quotes `tour_markdown()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


@dataclass(frozen=True, slots=True)
class TourStep:
    title: str
    text: str
    command: str | None = None  # what `d` runs for you


TOUR_STEPS: tuple[TourStep, ...] = (
    TourStep("Welcome to wskdbg",
             "Two emulated Windows machines, winsrv and client, share a virtual wire.\n"
             "Left: the stack view - each host's layers, from drivers down to the NIC.\n"
             "Right: IRPs, MDLs, the trace and the network, one tab each (F2 F3 F4 F6).\n"
             "Bottom: the kd> command line; every REPL command works here.\n"
             "The machine is stopped now: the status bar says BROKEN IN."),
    TourStep("Stop where the echo server receives",
             "Set a breakpoint on the echo server's receive callback.\n"
             "Press d to type it for you, or write it in the command line.",
             "bp echosrv!WskSampleReceiveEvent"),
    TourStep("Send an echo packet",
             "Ask the client to send a line to the echo server (port 7).\n"
             "Press d, then F5 (go): the machine runs until the breakpoint.",
             "!echo hello"),
    TourStep("Go",
             "F5 runs the machine.  Watch the status bar turn RUNNING and the stack\n"
             "view light up as frames cross NIC, NDIS, tcpip and WSK on winsrv.",
             "g"),
    TourStep("Step through the hand-offs",
             "F11 steps into the next hand-off, F10 steps over a call, Shift+F11 steps out.\n"
             "The highlighted layer moves; the arrow says down (▼), up (▲) or across the wire (⇄).\n"
             "`k` shows the whole logical call stack at this moment."),
    TourStep("Look at the IRP and its data",
             "F2 opens the IRP list: select the receive IRP with Enter to see its stack\n"
             "locations and completion routines, as !irp shows them.  F3 then draws its\n"
             "MDL chain and dumps the bytes: your 'hello' is there.  Click any address\n"
             "to inspect it."),
    TourStep("Read the trace, break in, crash",
             "F4 is the trace: type provider:echosrv in the filter, / to search, f to follow.\n"
             "While the machine runs, Ctrl+Break (or Ctrl+C) breaks in at once.\n"
             "A driver bug shows the crash screen with !analyze -v; R reboots.\n"
             "Ctrl+P opens the command palette; Ctrl+T switches light/dark."),
)


def tour_markdown() -> str:
    """The tour as Markdown, for the README."""
    lines = []
    for i, step in enumerate(TOUR_STEPS, start=1):
        lines.append(f"{i}. **{step.title}.** " + " ".join(step.text.split("\n")))
        if step.command:
            lines.append(f"   `{step.command}`")
    return "\n".join(lines)


def tour_seen_marker() -> Path:
    """Where the CLI records that the tour was shown once (XDG state directory)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "wskdbg" / "tour-seen"


def should_show_tour_on_start() -> bool:
    return not tour_seen_marker().exists()


def mark_tour_seen() -> None:
    marker = tour_seen_marker()
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:  # a read-only home must not stop the debugger
        pass


class TourScreen(ModalScreen[None]):
    """One step at a time; Right/Enter next, Left back, d do it, Esc close."""

    BINDINGS = [
        Binding("right,enter,n,space", "next", "Next"),
        Binding("left,b", "back", "Back"),
        Binding("d", "do_it", "Do it"),
        Binding("escape,q", "close", "Close tour"),
    ]
    DEFAULT_CSS = """
    TourScreen { align: center middle; }
    TourScreen > Vertical { width: 90; height: 16; border: thick $accent; background: $panel; padding: 1 2; }
    TourScreen #tour-title { height: 1; text-style: bold; color: $accent; }
    TourScreen #tour-text { height: 1fr; margin-top: 1; }
    TourScreen #tour-keys { height: 1; color: $text-muted; }
    """

    def __init__(self, start: int = 0) -> None:
        super().__init__()
        self.index = max(0, min(start, len(TOUR_STEPS) - 1))

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="tour-title")
            yield Static("", id="tour-text")
            yield Static("", id="tour-keys")

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        step = TOUR_STEPS[self.index]
        self.query_one("#tour-title", Static).update(f"Tour {self.index + 1}/{len(TOUR_STEPS)}: {step.title}")
        text = step.text + (f"\n\n    {step.command}" if step.command else "")
        self.query_one("#tour-text", Static).update(text)
        keys = "→/Enter next   ← back   " + ("d do it   " if step.command else "") + "Esc close"
        self.query_one("#tour-keys", Static).update(keys)

    def action_next(self) -> None:
        if self.index + 1 < len(TOUR_STEPS):
            self.index += 1
            self._show()
        else:
            self.dismiss(None)

    def action_back(self) -> None:
        if self.index:
            self.index -= 1
            self._show()

    def action_do_it(self) -> None:
        step = TOUR_STEPS[self.index]
        if step.command:
            self.app.run_command(step.command)  # type: ignore[attr-defined]
            self.action_next()

    def action_close(self) -> None:
        self.dismiss(None)
