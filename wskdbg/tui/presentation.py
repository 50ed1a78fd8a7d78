"""Presentation mode for a classroom: `wskdbg tour sessions/NAME.wds`.

A session script is cut into steps at its `.echo` lines: a step is a run of
`.echo` lines (the narration, shown large) followed by the commands up to the
next `.echo`.  The screen shows the narration, then waits; Space (or Enter,
or →) runs the step's commands - the stack view moves, the output appears -
and shows the next narration.  Laid out for a projector: the narration on top,
then the command output across the whole width (`sc query`, `!tcpconn` and `db`
lines do not wrap), then the stack view, also full width, so host and driver
names are not cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import RichLog, Static

from .crash_screen import crash_headline
from .key_footer import KeyFooter
from .link import BUGCHECKED, EngineLink
from .stack_view import StackView
from .status_bar import StatusBar
from .textlinks import linkify


class TourScriptError(ValueError):
    """A session script that cannot be presented (missing, unreadable, empty)."""


@dataclass(slots=True)
class TourStepScript:
    narration: list[str] = field(default_factory=list)
    commands: list[tuple[int, str]] = field(default_factory=list)  # (line number, command)


def _is_comment(line: str) -> bool:
    return line.startswith("$$") or line.startswith("*") or line.startswith("#")


def parse_tour(text: str) -> list[TourStepScript]:
    """Cut a .wds script into narrated steps (see the module docstring)."""
    steps: list[TourStepScript] = []
    current = TourStepScript()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or _is_comment(line):
            continue
        if line == ".echo" or line.startswith(".echo ") or line.startswith(".echo\t"):
            if current.commands:  # narration after commands starts a new step
                steps.append(current)
                current = TourStepScript()
            current.narration.append(line[5:].strip().strip('"'))
        else:
            current.commands.append((number, line))
    if current.narration or current.commands:
        steps.append(current)
    return steps


def load_tour(path: str | Path) -> list[TourStepScript]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TourScriptError(f"cannot read session script {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TourScriptError(f"session script {path} is not UTF-8 text: {exc}") from None
    steps = parse_tour(text)
    if not steps:
        raise TourScriptError(f"session script {path} has no commands or .echo lines")
    return steps


class PresentationApp(App[None]):
    """Large narration, the stack view, the output; Space steps."""

    TITLE = "wskdbg tour"
    BINDINGS = [
        Binding("space,enter,right", "advance", "Next step"),
        Binding("ctrl+break,ctrl+c", "break_in", "Break", priority=True, key_display="^Break"),
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("q,ctrl+q", "quit", "Quit"),
    ]
    DEFAULT_CSS = """
    PresentationApp #narration { height: 7; padding: 1 4; background: $panel; color: $text;
                                 text-style: bold; border: tall $accent; }
    PresentationApp #tour-output { height: 1fr; width: 1fr; border: round $primary 60%; }
    PresentationApp #stack-view { height: 18; width: 1fr; border: round $primary 60%; }
    PresentationApp #progress { height: 1; padding: 0 2; color: $text-muted; }
    """

    def __init__(self, steps: list[TourStepScript], engine: Any, *, poll_hz: float = 10.0,
                 title: str = "") -> None:
        super().__init__()
        self.steps = steps
        self.link = EngineLink(engine)
        self.index = 0  # the step whose narration is on screen
        self.busy = False
        self.poll_interval = 1.0 / poll_hz if poll_hz > 0 else 0.0
        self.sub_title = title

    def compose(self) -> ComposeResult:
        yield Static("", id="narration")
        with Vertical(id="tour-output"):
            yield RichLog(id="output", wrap=True, markup=False, max_lines=2_000)
        yield StackView(id="stack-view")
        yield Static("", id="progress")
        yield StatusBar(id="status-bar")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._show_step()
        self.refresh_views()
        if self.poll_interval:
            self.set_interval(self.poll_interval, self.refresh_views)

    def refresh_views(self) -> None:
        """The same MachineView as the main app (built on the machine's thread while it runs)."""
        view = self.link.view()
        self.link.sync_world()
        if view is None:  # the machine server has not sent a view of this run yet
            return
        self.query_one(StatusBar).show(view.position)
        self.link.drain_records()  # the tour has no trace pane: keep the queue short
        self.query_one(StackView).show(view.picture)

    def _show_step(self) -> None:
        narration = self.query_one("#narration", Static)
        progress = self.query_one("#progress", Static)
        if self.index >= len(self.steps):
            narration.update("The end.  Press q to leave, or keep exploring with `wskdbg`.")
            progress.update(f"{len(self.steps)}/{len(self.steps)} steps done")
            return
        step = self.steps[self.index]
        narration.update("\n".join(step.narration) or "(no narration)")
        what = "; ".join(cmd for _, cmd in step.commands[:4]) + (" …" if len(step.commands) > 4 else "")
        progress.update(f"step {self.index + 1}/{len(self.steps)}    Space: run  {what or '(nothing to run)'}")

    def action_advance(self) -> None:
        if self.busy or self.index >= len(self.steps):
            if self.index >= len(self.steps) and not self.busy:
                self.exit()
            return
        step = self.steps[self.index]
        self.busy = True
        self.link.set_running(True)
        self.run_worker(partial(self._run_step, step), thread=True, group="engine", exit_on_error=False)

    def _run_step(self, step: TourStepScript) -> None:
        for number, command in step.commands:
            self.call_from_thread(self._write, Text(f"{self.link.prompt()}{command}", style="bold"))
            output = self.link.execute(command)
            self.call_from_thread(self._write, linkify(output.text.rstrip("\n"), style="red" if output.error else ""))
            if self.link.bugcheck() is not None:
                break
        self.call_from_thread(self._step_done)

    def _write(self, text: Text) -> None:
        if text.plain:
            self.query_one("#output", RichLog).write(text)

    def _step_done(self) -> None:
        self.busy = False
        self.link.set_running(False)
        self.index += 1
        self.refresh_views()
        info = self.link.bugcheck()
        if self.link.position().state == BUGCHECKED and info is not None:
            self._write(Text(crash_headline(info), style="bold red"))
        self._show_step()

    def action_break_in(self) -> None:
        if self.link.running:
            self.link.break_in()

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"


def run_tour(path: str | Path, engine: Any = None, *, engine_factory: Callable[[], Any] | None = None,
             seed: int = 1, poll_hz: float = 10.0) -> int:
    """`wskdbg tour FILE.wds`: present a session script step by step.  Returns an exit code
    (0 done, 2 the script could not be read); `TourScriptError` is reported, not raised."""
    import sys

    try:
        steps = load_tour(path)
    except TourScriptError as exc:
        print(f"wskdbg tour: {exc}", file=sys.stderr)
        return 2
    owned = engine is None
    if engine is None:
        if engine_factory is not None:
            engine = engine_factory()
        else:
            from .app import default_engine
            engine = default_engine(seed)
    try:
        PresentationApp(steps, engine, poll_hz=poll_hz, title=Path(path).name).run()
    finally:
        if owned:
            engine.close()
    return 0
