"""The wskdbg Textual app: every view is a live picture of the engine's one machine.

Threading: every command runs on a worker thread (`engine.execute` blocks
while the machine runs), so the interface never waits for the machine.  A
timer (10 Hz by default) takes a `Position` from the link and repaints the
views only when it changed; while the machine runs, the expensive views
(IRPs, connections) repaint at a lower rate.  Break-in (Ctrl+Break, Ctrl+C)
calls `engine.break_in()` straight from the UI thread, so it answers at once;
the engine keeps the request until a run consumes it.  While a command runs the
views show `MachineView`s the machine's thread built at a hand-off (link.py);
the machine's objects are read here only while it is stopped.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from functools import partial
from typing import Any, Callable, Iterable

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, TabbedContent, TabPane

from .command_pane import CommandPane
from .crash_screen import CrashScreen
from .irp_view import IrpView
from .key_footer import KeyFooter
from .link import BUGCHECKED, RUNNING, EngineLink, Position
from .machine_side import event_record  # noqa: F401  (the trace's record of an event; tests import it here)
from .mdl_view import MdlView
from .network_view import NetworkView
from .source_view import SourceView
from .stack_view import StackView
from .status_bar import StatusBar
from .tour import TourScreen
from .trace_view import TracePane

TAB_IDS = {"irps": "tab-irps", "mdl": "tab-mdl", "trace": "tab-trace", "network": "tab-network",
           "source": "tab-source"}
VIEW_FOCUS = {"irps": "#irp-table", "mdl": "#mdl-view", "trace": "#trace-view", "network": "#conn-table",
              "source": "#source-view"}
SLOW_REFRESH_S = 0.5  # heavy views while the machine runs
DRAIN_PER_TICK = 20_000  # trace records converted per tick (the rest waits for the next)
SWITCH_INTERVAL_S = 0.001  # GIL hand-over while the machine thread runs: keeps keys snappy
WELCOME = ("wskdbg - a kernel debugger for an emulated Windows network stack.  "
           "F1 tour · F5 go · F10 step over · F11 step into · Ctrl+Break break in · "
           "F2 F3 F4 F6 F12 views · F7 stack · F8 command line · .help")


def _clears(data: Any) -> bool:
    """Whether a command line ran `.cls` (alone: its data; in `a; .cls; b`: one of the list's)."""
    parts = data if isinstance(data, list) else [data]
    return any(isinstance(part, dict) and part.get("cls") for part in parts)


def default_engine(seed: int = 1) -> Any:
    """The engine over the standard lab (winsrv running echosrv and khttpd, client, dns, httpbin):
    in a machine server with checkpoints (wskdbg.machine_server) where fork() exists and
    WSKDBG_CHECKPOINTS is not 0, in this process otherwise."""
    from wskdbg.engine import Engine  # imported late: the TUI module must import without it
    from wskdbg.machine_server import open_engine

    return open_engine(lambda: Engine(seed=seed), views=True)


class MainScreen(Screen):
    """Stack view | tabbed views, over the command pane, status bar and footer."""

    DEFAULT_CSS = """
    MainScreen #top { height: 3fr; }
    MainScreen #stack-pane { width: 1fr; min-width: 40; border: round $primary 60%; border-title-color: $secondary; }
    MainScreen #views { width: 1fr; }
    MainScreen #command-pane { height: 2fr; border: round $primary 60%; border-title-color: $secondary; }
    MainScreen TabbedContent ContentSwitcher { height: 1fr; }
    MainScreen TabPane { padding: 0; }
    """

    def __init__(self, link: EngineLink) -> None:
        super().__init__()
        self.link = link

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            with Vertical(id="stack-pane") as pane:
                pane.border_title = "Stack"
                yield StackView(id="stack-view")
            with TabbedContent(id="views", initial=TAB_IDS["irps"]):
                with TabPane(r"IRPs \[F2]", id=TAB_IDS["irps"]):
                    yield IrpView(self.link, id="irp-view")
                with TabPane(r"MDL \[F3]", id=TAB_IDS["mdl"]):
                    yield MdlView(id="mdl-view")
                with TabPane(r"Trace \[F4]", id=TAB_IDS["trace"]):
                    yield TracePane(id="trace-pane")
                with TabPane(r"Network \[F6]", id=TAB_IDS["network"]):
                    yield NetworkView(self.link, id="network-view")
                with TabPane(r"Source \[F12]", id=TAB_IDS["source"]):
                    yield SourceView(id="source-view")
        pane = CommandPane(self.link.command_names(), self.link.prompt(), id="command-pane")
        pane.border_title = "Command"
        yield pane
        yield StatusBar(id="status-bar")
        yield KeyFooter()

    def watch_focused(self, focused: Widget | None) -> None:
        """Mark the tabbed views while they have the keys (app.tcss says why not :focus-within)."""
        try:
            views = self.query_one("#views")
        except NoMatches:  # not composed yet
            return
        has_keys = focused is not None and views in focused.ancestors_with_self
        if views.has_class("-has-keys") != has_keys:
            # Only #views itself is restyled: no rule reads -has-keys below it (app.tcss), and
            # set_class would restyle every node of all five tab panes on each move in or out.
            views.set_class(has_keys, "-has-keys", update=False)
            self.app.stylesheet.update_nodes([views], animate=True)


class WskdbgApp(App[None]):
    """`WskdbgApp(engine)`, or `WskdbgApp(engine_factory=...)`; with neither, the default lab."""

    TITLE = "wskdbg"
    CSS_PATH = "app.tcss"
    # Priority: the keys work whichever pane has focus (a table, the trace filter, the command
    # line); `check_action` keeps the main screen's keys to the main screen.
    BINDINGS = [
        Binding("f5", "go", "Go", priority=True),
        Binding("f10", "step_over", "Step over", priority=True),
        Binding("f11", "step_into", "Step into", priority=True),
        Binding("shift+f11", "step_out", "Step out", priority=True),
        Binding("ctrl+break,ctrl+c", "break_in", "Break", priority=True, key_display="^Break"),
        Binding("f1", "tour", "Tour", priority=True),
        Binding("f2", "show_tab('irps')", "IRPs", show=False, priority=True),
        Binding("f3", "show_tab('mdl')", "MDL", show=False, priority=True),
        Binding("f4", "show_tab('trace')", "Trace", show=False, priority=True),
        Binding("f6", "show_tab('network')", "Net", show=False, priority=True),
        Binding("f12", "show_tab('source')", "Source", show=False, priority=True),
        Binding("f7", "focus_stack", "Stack", show=False, priority=True),
        Binding("f8", "focus_command", "Command", show=False, priority=True),
        Binding("f9", "show_crash", "Crash screen", show=False, priority=True),
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("ctrl+q", "quit", "Quit", priority=True, show=False),
    ]
    MAIN_SCREEN_ACTIONS = frozenset({"go", "step_over", "step_into", "step_out", "tour", "show_tab", "focus_stack",
                                     "focus_command", "show_crash"})

    def __init__(self, engine: Any = None, *, engine_factory: Callable[[], Any] | None = None, seed: int = 1,
                 poll_hz: float = 10.0, tour_on_start: bool = False, cursor_blink: bool = True,
                 theme: str | None = None) -> None:
        super().__init__()
        self._owns_engine = engine is None  # closed when the app ends (its server and checkpoints with it)
        if engine is None:
            engine = engine_factory() if engine_factory is not None else default_engine(seed)
        self.engine = engine
        self.link = EngineLink(engine)
        self.link.progress_output = self._progress_from_any_thread
        self.poll_interval = 1.0 / poll_hz if poll_hz > 0 else 0.0
        self.tour_on_start = tour_on_start
        self.cursor_blink = cursor_blink
        if theme:
            self.theme = theme
        self._last_key: tuple | None = None
        self._last_slow = 0.0
        self._crash_shown: tuple | None = None  # (generation, seq) of the bug check we showed
        self._last_command = ""
        self.main: MainScreen | None = None
        self.commands_run = 0
        self._saved_switch_interval = sys.getswitchinterval()
        self.progress_seen: list[str] = []  # every progress line shown (tests)
        self.ready = asyncio.Event()  # set once the first paint has wired everything up

    # -- startup -----------------------------------------------------------------------
    def on_mount(self) -> None:
        # The machine thread is CPU-bound; a shorter GIL switch interval lets the
        # UI thread answer keys (break-in) within a millisecond or so.
        self._saved_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._saved_switch_interval, SWITCH_INTERVAL_S))
        self.main = MainScreen(self.link)
        self.push_screen(self.main)
        self.call_after_refresh(self._after_first_paint)

    def on_unmount(self) -> None:
        sys.setswitchinterval(self._saved_switch_interval)
        if self._owns_engine:
            self.engine.close()

    def _progress_from_any_thread(self, text: str) -> None:
        """`Replaying N% ...` of a trip in time: the status bar shows it, never the transcript."""
        self.progress_seen.append(text)
        if threading.get_ident() == self._thread_id:
            self._show_progress(text)
        elif self._loop is not None:  # never wait for the UI: it may be waiting for the machine
            self._loop.call_soon_threadsafe(self._show_progress, text)

    def _show_progress(self, text: str) -> None:
        try:
            self.status_bar.show_progress(text)
        except NoMatches:
            pass

    def _after_first_paint(self) -> None:
        if not self.cursor_blink:
            for widget in self.main.query(Input):  # type: ignore[union-attr]
                widget.cursor_blink = False
        self.command_pane.write_note(WELCOME)
        self.command_pane.input.focus()
        self.refresh_views(force=True)
        if self.poll_interval:
            self.set_interval(self.poll_interval, self._tick)
        if self.tour_on_start:
            self.action_tour()
        self.ready.set()

    # -- widgets -------------------------------------------------------------------------
    @property
    def command_pane(self) -> CommandPane:
        return self.main.query_one(CommandPane)  # type: ignore[union-attr]

    @property
    def stack_view(self) -> StackView:
        return self.main.query_one(StackView)  # type: ignore[union-attr]

    @property
    def irp_view(self) -> IrpView:
        return self.main.query_one(IrpView)  # type: ignore[union-attr]

    @property
    def mdl_view(self) -> MdlView:
        return self.main.query_one(MdlView)  # type: ignore[union-attr]

    @property
    def trace_pane(self) -> TracePane:
        return self.main.query_one(TracePane)  # type: ignore[union-attr]

    @property
    def network_view(self) -> NetworkView:
        return self.main.query_one(NetworkView)  # type: ignore[union-attr]

    @property
    def source_view(self) -> SourceView:
        return self.main.query_one(SourceView)  # type: ignore[union-attr]

    @property
    def status_bar(self) -> StatusBar:
        return self.main.query_one(StatusBar)  # type: ignore[union-attr]

    # -- commands --------------------------------------------------------------------------
    def run_command(self, command: str) -> bool:
        """Echo and run `command` on a worker thread; False when the machine is busy."""
        command = command.strip()
        if not command:
            return False
        pane = self.command_pane
        if self.link.running:
            pane.write_note("*BUSY* the machine is running: Ctrl+Break (or Ctrl+C) breaks in.")
            return False
        self._last_command = command
        pane.write_command(self.link.prompt(), command)
        self.link.set_running(True)
        pane.set_prompt(self.link.prompt(), busy=True)
        self.refresh_views()
        self.run_worker(partial(self._execute_on_worker, command), thread=True, group="engine",
                        exit_on_error=False, name=f"execute {command}")
        return True

    def _execute_on_worker(self, command: str) -> None:
        output = self.link.execute(command)
        self.call_from_thread(self._command_done, output)

    def _command_done(self, output: Any) -> None:
        self.link.set_running(False)
        self.commands_run += 1
        pane = self.command_pane
        if _clears(output.data):  # .cls clears the output, as in WinDbg
            pane.clear()
        pane.write_output(output.text, error=output.error)
        pane.set_prompt(self.link.prompt(), busy=False)
        self.status_bar.show_progress("")
        self.refresh_views(force=True)

    @on(CommandPane.Submitted)
    def _on_command_submitted(self, event: CommandPane.Submitted) -> None:
        # Enter on an empty command line repeats the last command, as in WinDbg (only there:
        # the other panes' Enter selects a row).
        self.run_command(event.command or self._last_command)

    # -- the steady refresh --------------------------------------------------------------------
    def _tick(self) -> None:
        try:
            self.refresh_views()
        except NoMatches:  # the screen is being torn down (exit) or not composed yet
            pass

    def refresh_views(self, force: bool = False) -> Position | None:
        """Take a MachineView and repaint what changed (UI thread only).  While a command runs the
        view was built on the machine's thread at a hand-off; the machine's objects are read here
        only while it is stopped (the MDL view)."""
        if self.main is None or not self.main.is_attached:
            return None
        link = self.link
        view = link.view()
        if link.sync_world():
            self._on_new_world()
            force = True
            view = link.view()
        if view is None:  # the machine server has not sent a view of this run yet
            return None
        position = view.position
        self.status_bar.show(position)
        self._feed_trace()
        key = position.key()
        if force or key != self._last_key:
            self._last_key = key
            running = link.running
            self.stack_view.show(view.picture)
            self.source_view.show(view.source)
            now = time.monotonic()
            if not running or force or now - self._last_slow >= SLOW_REFRESH_S:
                self._last_slow = now
                self.irp_view.show(view.irps, view.irp_detail)
                self.network_view.show(view.connections, view.tcp_stats, view.segments)
                self.mdl_view.show_picture(view.mdl)
        self._check_crash(position)
        return position

    def _feed_trace(self, limit: int | None = DRAIN_PER_TICK) -> None:
        while True:
            records = self.link.drain_records(limit or 100_000)
            if records:
                self.trace_pane.append(records)
            if limit is not None or not records:
                return

    def _on_new_world(self) -> None:
        if self.link.generation > 1:
            self.command_pane.write_note("--- a new machine (reboot): views reset ---")
        self.mdl_view.show_picture(None)
        self.irp_view.selected = None
        self.link.selected_irp = None
        self.link.selected_mdl = None
        self.network_view.selected = None

    def _check_crash(self, position: Position) -> None:
        info = self.link.bugcheck()
        if position.state == BUGCHECKED and info is not None:
            mark = (position.generation, info.seq, info.code)
            if mark != self._crash_shown and not self.link.running:
                self._crash_shown = mark
                self.show_crash(info)
        elif isinstance(self.screen, CrashScreen):
            self.pop_screen()

    def show_crash(self, info: Any) -> None:
        """The crash screen shows exactly what `!analyze -v` prints (the machine is stopped: the
        command runs on this thread)."""
        output = self.link.execute("!analyze -v")
        self.push_screen(CrashScreen(info, output.text))

    # -- actions ------------------------------------------------------------------------------
    def action_go(self) -> None:
        self.run_command("g")

    def action_step_over(self) -> None:
        self.run_command("p")

    def action_step_into(self) -> None:
        self.run_command("t")

    def action_step_out(self) -> None:
        self.run_command("gu")

    def action_break_in(self) -> None:
        if self.link.running:
            self.link.break_in()
            self.command_pane.write_note("Break-in sent.")
        elif isinstance(self.focused, Input) and self.focused.selected_text:
            self.copy_to_clipboard(self.focused.selected_text)

    def action_tour(self) -> None:
        if not isinstance(self.screen, TourScreen):
            self.push_screen(TourScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MAIN_SCREEN_ACTIONS and self.main is not None and self.screen is not self.main:
            return False  # the tour and the crash screen have keys of their own
        return True

    def action_show_tab(self, name: str) -> None:
        """Show a view and give it the keys (F2 IRPs, F3 MDL, F4 trace, F6 network, F12 source)."""
        if self.main is None:
            return
        self.main.query_one(TabbedContent).active = TAB_IDS[name]
        self._focus_view(name)
        self.call_after_refresh(self._focus_view, name)  # once the pane is laid out, if it could not yet

    def _focus_view(self, name: str) -> None:
        if self.main is None or self.main.query_one(TabbedContent).active != TAB_IDS[name]:
            return  # another view was asked for since
        widget = self.main.query_one(VIEW_FOCUS[name])
        if self.focused is not widget and not (self.focused is not None and widget in self.focused.ancestors):
            widget.focus()

    def _focus(self, selector: str) -> None:
        if self.main is not None:
            self.main.query_one(selector).focus()

    def action_focus_stack(self) -> None:
        self._focus("#stack-view")

    def action_focus_command(self) -> None:
        self.command_pane.input.focus()

    def action_show_crash(self) -> None:
        info = self.link.bugcheck()
        if info is not None and not isinstance(self.screen, CrashScreen):
            self.show_crash(info)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def action_inspect_address(self, address: int) -> None:
        """Clicking an address anywhere: IRPs and MDLs open in their views, others are dumped."""
        found = self.link.object_kind(address)
        kind = found[1] if found else None
        if kind == "irp":
            self.irp_view.select(found[0], address)  # type: ignore[index]
            self.action_show_tab("irps")
            self.run_command(f"!irp 0x{address:x}")
        elif kind == "mdl":
            self.link.selected_mdl = ("mdl", address)
            self.mdl_view.show_picture(self.link.view().mdl)
            self.action_show_tab("mdl")
            self.run_command(f"dt _MDL 0x{address:x}")
        else:
            self.run_command(f"db 0x{address:x}")

    @on(IrpView.Selected)
    def _on_irp_selected(self, event: IrpView.Selected) -> None:
        self.link.selected_mdl = ("irp", event.host, event.address)
        if not self.link.running:
            self.mdl_view.show_picture(self.link.view().mdl)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Go (F5)", "Run until a breakpoint or break-in", self.action_go)
        yield SystemCommand("Step into (F11)", "Stop at the next hand-off", self.action_step_into)
        yield SystemCommand("Step over (F10)", "Step over the current call", self.action_step_over)
        yield SystemCommand("Step out (Shift+F11)", "Run to the caller", self.action_step_out)
        yield SystemCommand("Break in (Ctrl+Break)", "Stop the running machine", self.action_break_in)
        yield SystemCommand("Guided tour (F1)", "See an echo packet travel through the stack", self.action_tour)
        yield SystemCommand("Reboot (.reboot)", "Restart the machine from its seed",
                            partial(self.run_command, ".reboot"))
        yield SystemCommand("Analyze (!analyze -v)", "Explain the last bug check",
                            partial(self.run_command, "!analyze -v"))
        for name in ("irps", "mdl", "trace", "network", "source"):
            yield SystemCommand(f"Show {name} view", f"Switch the right-hand pane to {name}",
                                partial(self.action_show_tab, name))

    # -- test and tool helpers ------------------------------------------------------------------
    async def settle(self) -> None:
        """Wait for startup and running commands, then refresh every view and the trace now."""
        await self.ready.wait()
        await self.workers.wait_for_complete()
        self.refresh_views(force=True)
        self._feed_trace(limit=None)
        self.trace_pane.flush(complete=True)


def run_app(engine: Any = None, **options: Any) -> None:
    """What `wskdbg` with no arguments calls."""
    WskdbgApp(engine, **options).run()
