"""The crash screen: a bug check stops the machine and shows `!analyze -v`.

The body is exactly what `!analyze -v` prints and the headline the first lines
of the stop banner the debugger prints (`wskdbg.render.stop`): one renderer for
both.  `R` runs `.reboot` (the machine comes back from its seed); Escape
returns to the main screen to inspect the frozen machine (`k`, `!irp`, `db`
...), and F9 brings this screen back from there.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from stack.kernel.bugcheck import BugCheckInfo
from wskdbg.render.stop import fatal_error_lines

from .key_footer import KeyFooter
from .textlinks import linkify


def crash_headline(info: BugCheckInfo) -> str:
    """The stop banner's first two lines (as `g` printed them), then the name and host."""
    banner = fatal_error_lines(info.code, tuple(info.params), 0)  # type: ignore[arg-type]  # lines 1-2 only
    return "\n".join(banner[:2] + [f"{info.name} on {info.host}"])


class CrashScreen(Screen):
    """Full screen, red header, the analysis below; keys in the footer."""

    BINDINGS = [
        Binding("r", "reboot", "Reboot (.reboot)"),
        Binding("escape", "inspect", "Inspect the frozen machine"),
    ]
    DEFAULT_CSS = """
    CrashScreen { background: $background; }
    CrashScreen > #crash-headline { height: 4; padding: 0 2; background: $error; color: $text;
                                    text-style: bold; content-align: left middle; }
    CrashScreen > #crash-hint { height: 1; padding: 0 2; color: $warning; }
    CrashScreen > VerticalScroll { height: 1fr; padding: 0 2; }
    """

    def __init__(self, info: BugCheckInfo, analysis: str) -> None:
        super().__init__()
        self.info = info
        self.analysis = analysis

    def compose(self) -> ComposeResult:
        yield Static(crash_headline(self.info), id="crash-headline")
        yield Static("The machine bug-checked.  R: .reboot    Esc: inspect it (k, !irp, db ...)    "
                     "F9 on the main screen: back here", id="crash-hint")
        with VerticalScroll():
            yield Static(linkify(self.analysis), id="crash-analysis")
        yield KeyFooter()

    def action_reboot(self) -> None:
        self.app.run_command(".reboot")  # type: ignore[attr-defined]

    def action_inspect(self) -> None:
        self.app.pop_screen()
