"""The crash screen: a bug check stops the machine and shows `!analyze -v`.

`R` runs `.reboot` (the machine comes back from its seed); Escape returns to
the main screen to inspect the frozen machine (`k`, `!irp`, `db` ...), and F9
brings this screen back from there.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from stack.kernel.bugcheck import BUGCHECK_HELP, BugCheckInfo, argument_meanings
from stack.kernel.irql import irql_name

from .textlinks import linkify


def crash_headline(info: BugCheckInfo) -> str:
    params = ", ".join(f"{p:#018x}" for p in info.params)
    return f"*** STOP: {info.code:#010x} ({params})\n{info.name} on {info.host}"


def local_analysis(info: BugCheckInfo) -> str:
    """What `!analyze -v` says, built from the BugCheckInfo alone (used when the
    engine cannot run the command)."""
    help_text = BUGCHECK_HELP.get(info.code, ("", ()))[0]
    param_help = argument_meanings(info.code, info.params)
    lines = ["*" * 79, "*" + "Bugcheck Analysis".center(77) + "*", "*" * 79, "",
             f"{info.name} ({info.code:x})"]
    if help_text:
        lines.append(help_text)
    lines.append("Arguments:")
    for i, (value, meaning) in enumerate(zip(info.params, param_help), start=1):
        lines.append(f"Arg{i}: {value:016x}" + (f", {meaning}" if meaning else ""))
    lines += ["", f"PROCESS_NAME:  {info.process}", f"CURRENT_IRQL:  {info.irql:x} ({irql_name(info.irql)})",
              f"THREAD:  {info.thread:x} ({info.thread_name})", "", "STACK_TEXT:"]
    lines += [f"  {i:02x} {frame}" for i, frame in enumerate(info.frames)]
    lines += ["", f"FAULTING_SYMBOL:  {info.faulting_symbol}",
              f"MODULE_NAME: {info.faulting_symbol.partition('!')[0]}",
              f"FAILURE_BUCKET_ID:  {info.code:#x}_{info.faulting_symbol.replace('!', '_')}"]
    if info.detail:
        lines += ["", "DETAIL:", info.detail.rstrip()]
    return "\n".join(lines)


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
        yield Footer()

    def action_reboot(self) -> None:
        self.app.run_command(".reboot")  # type: ignore[attr-defined]

    def action_inspect(self) -> None:
        self.app.pop_screen()
