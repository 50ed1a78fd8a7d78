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
             "The standard lab: winsrv runs echosrv (the WDK WSK echo sample, port 40007) and\n"
             "khttpd (port 80); client runs your test programs; dns and httpbin help out.\n"
             "Left: the stack view - each host's layers, from drivers down to the NIC.\n"
             "Right: IRPs, MDLs, the trace and the network, one tab each (F2 F3 F4 F6).\n"
             "Bottom: the kd> command line.  The status bar says BROKEN IN: nothing runs yet."),
    TourStep("Stop where echosrv receives",
             "Break in echosrv's receive completion routine on winsrv: afd.sys (the WSK\n"
             "provider) completes the receive IRP, and the I/O manager calls echosrv's routine.\n"
             "Press d to run the command, or type it in the command line.",
             "bp /h winsrv echosrv!WskSampleReceiveIrpCompletionRoutine"),
    TourStep("Send a line to the echo server",
             "The client connects to winsrv:40007 and sends one line.  The program runs on\n"
             "client when the machine runs; press d to start it.",
             '!echo "hello"'),
    TourStep("Go",
             "F5 (g) runs the machine: the handshake, the line crossing NIC, NDIS and tcpip on\n"
             "winsrv, and echosrv's receive.  It stops at the breakpoint, BROKEN IN again.",
             "g"),
    TourStep("The call stack",
             "k shows the whole logical call stack: echosrv's worker thread called WskReceive\n"
             "(afd!WskProAPIReceive, a direct call), the line was already waiting in the TCB, so\n"
             "afd completed the IRP at once and IofCompleteRequest called the completion routine.",
             "k"),
    TourStep("The IRP",
             "rdx is the routine's second argument, the IRP.  IoCompleteRequest cleared the\n"
             "location afd took as Windows does: MajorFunction, DeviceObject (\\Device\\Afd) and\n"
             "the completion routine remain, so !irp still shows who ran it.  F2 lists the live\n"
             "IRPs (Enter shows one); F3 draws an IRP's MDL chain and dumps the bytes.  Click any address.",
             "!irp @rdx"),
    TourStep("Step through the hand-offs",
             "F10 (p) steps over to the routine's return, F11 (t) into the next hand-off,\n"
             "Shift+F11 (gu) out of the routine.  The highlighted layer moves; the arrow says\n"
             "down (▼), up (▲) or across the wire (⇄).  bc * and F5 let the echo finish.",
             "p"),
    TourStep("Trace echosrv with WPP",
             "echosrv logs through WPP (its provider is WskSampleCtlGuid), but the lab starts no\n"
             "session for it: d starts one with both flags, TRCERROR and TRCINFO.  Then bc * and\n"
             "F5 let the echo finish, and F4 shows the trace: type provider:WskSampleCtlGuid in\n"
             "the filter, / to search, f to follow.",
             "tracelog -start echosrvtrace -guid #998bdf51-0349-4fbc-870c-d6130a955a5f -flag 0x3 -level 5"),
    TourStep("Break in, crash",
             "While the machine runs, Ctrl+Break (or Ctrl+C) breaks in at once.\n"
             "sc start buggy loads a driver that completes an IRP twice: the crash screen\n"
             "shows !analyze -v, and R reboots the lab.  Ctrl+P opens the command palette.\n"
             "Keys: F2 F3 F4 F6 the views, F12 the source, F7 the stack, F8 the command line, Tab moves on."),
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
