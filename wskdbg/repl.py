"""The `0: kd> ` prompt: prompt_toolkit with history, completion and highlighting.

The machine runs on its own thread; while a command runs, the prompt thread
waits for it and turns Ctrl+C into a break-in.  Ctrl+D (or `q`) quits.
DbgPrint output is printed as it happens.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path
from typing import Any, Iterable, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.lexers import Lexer
from prompt_toolkit.styles import Style

from wskdbg.commands.registry import PROMPT, CommandResult

QUIT_WORDS = ("q", "qq", "quit", "exit")
_SIGNAL_POLL_S = 0.05  # how long the main thread sleeps between checks while a command runs

STYLE = Style.from_dict({
    "command": "bold ansicyan",
    "symbol": "ansigreen",
    "address": "ansiyellow",
    "string": "ansimagenta",
    "comment": "italic ansibrightblack",
    "option": "ansiblue",
})


def default_history_path() -> Path:
    """$WSKDBG_HISTORY, else the user's data dir ($XDG_DATA_HOME or ~/.local/share)/wskdbg/history."""
    env = os.environ.get("WSKDBG_HISTORY")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "wskdbg" / "history"


_TOKEN = re.compile(r'(?P<comment>\$\$[^;]*)|(?P<string>"[^"]*"?)|(?P<symbol>[A-Za-z_][\w]*![\w*]+(?:\+\w+)?)'
                    r'|(?P<address>\b(?:0x)?[0-9a-fA-F]{4,8}`?[0-9a-fA-F]{4,8}\b)|(?P<option>(?<!\S)[/-][A-Za-z]\w*)')


class CommandLexer(Lexer):
    """Colours the command word, module!Routine symbols, addresses, strings, options and comments."""

    def lex_document(self, document: Document):
        lines = document.lines

        def get_line(number: int) -> list[tuple[str, str]]:
            return lex_line(lines[number]) if number < len(lines) else []

        return get_line


def lex_line(line: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    for piece in re.split(r"(;)", line):
        if piece == ";":
            out.append(("", ";"))
            pos += 1
            continue
        m = re.match(r"(\s*)([.!]?[A-Za-z?~$][\w.<>$]*|\?)?", piece)
        start = 0
        if m and m.group(2) and not piece.lstrip().startswith("$$ "):
            out.append(("", m.group(1)))
            out.append(("class:command", m.group(2)))
            start = m.end()
        rest = piece[start:]
        last = 0
        for tok in _TOKEN.finditer(rest):
            if tok.start() > last:
                out.append(("", rest[last:tok.start()]))
            out.append((f"class:{tok.lastgroup}", tok.group(0)))
            last = tok.end()
        if last < len(rest):
            out.append(("", rest[last:]))
        pos += len(piece)
    return out


class CommandCompleter(Completer):
    """Command names first; then module!Routine names of the current host and addresses printed so far."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def routine_names(self) -> list[str]:
        from stack.kernel.symbols import CATALOG
        try:
            k = self.engine.kernel
        except Exception:  # no world attached
            return []
        names: set[str] = set()
        for mod in k.modules:
            names.update(f"{mod.name}!{r}" for r in mod.symbols)
            names.update(f"{mod.name}!{r}" for r in CATALOG.get(mod.name, ()))
        return sorted(names)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        segment = text.rsplit(";", 1)[-1]
        stripped = segment.lstrip()
        word = document.get_word_before_cursor(pattern=re.compile(r"[^\s;\"(){}]+"))
        if not stripped or stripped == word:  # completing the command name
            for name in self.engine.command_names():
                if name.startswith(word) or name.lower().startswith(word.lower()):
                    yield Completion(name, start_position=-len(word))
            return
        lowered = word.lower()
        for name in self.routine_names():
            if name.lower().startswith(lowered) or (lowered and "!" not in lowered
                                                    and name.lower().split("!", 1)[1].startswith(lowered)):
                yield Completion(name, start_position=-len(word))
        # Printed addresses are hex without a prefix; a typed 0x is skipped, and the completion
        # keeps (or, once `n 10` or `n 8` reads bare numbers otherwise, adds) the 0x.
        typed = lowered[2:] if lowered.startswith("0x") else lowered
        prefix = "0x" if typed != lowered or getattr(self.engine, "radix", 16) != 16 else ""
        for address in reversed(self.engine.printed_addresses):
            if typed and address.lower().startswith(typed):
                yield Completion(prefix + address, start_position=-len(word))


def status_text(engine: Any) -> str:
    """`winsrv  irql=2 (DISPATCH_LEVEL)  thread=ffffc10a00000010 (Idle)  event 5, hand-off 9`."""
    from stack.kernel.irql import irql_name
    try:
        irql = engine.current_irql()
        thread = engine.current_thread()
        pos = engine.position()
    except Exception:  # the status line must never break the prompt
        return ""
    return (f" {engine.current_host}  irql={irql:x} ({irql_name(irql)})  thread={thread.address:016x} "
            f"({thread.name})  event {pos.events_run}, hand-off {pos.seq}")


class Repl:
    def __init__(self, engine: Any, *, history: History | None = None, history_path: str | Path | None = None,
                 input: Any = None, output: Any = None, stdout: TextIO | None = None,
                 color: bool | None = None) -> None:
        import sys
        self.engine = engine
        self.stdout = stdout or sys.stdout
        if color is None:
            color = bool(getattr(self.stdout, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")
        self.color = color
        if history is None:
            path = Path(history_path) if history_path is not None else default_history_path()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                history = FileHistory(str(path))
            except OSError:
                history = InMemoryHistory()
        self.session: PromptSession = PromptSession(
            message=PROMPT, history=history, completer=CommandCompleter(engine), lexer=CommandLexer(),
            style=STYLE, input=input, output=output, complete_while_typing=False, include_default_pygments_style=False,
            bottom_toolbar=self.status_line)
        self._console = None
        if color:
            from rich.console import Console
            self._console = Console(file=self.stdout, highlight=False, markup=False, soft_wrap=True)
        self._print_lock = threading.Lock()
        engine.live_output = self._live

    def status_line(self) -> str:
        """Host, IRQL, thread and position under the prompt (what `r` does not print, as in KD)."""
        return status_text(self.engine)

    # -- output -------------------------------------------------------------------------------
    def _write(self, text: str, error: bool = False) -> None:
        with self._print_lock:
            if self._console is not None:
                self._console.print(text, style="red" if error else None)
            else:
                self.stdout.write(text + "\n")
                self.stdout.flush()

    def _live(self, text: str) -> None:
        self._write(text)

    def show(self, result: CommandResult) -> None:
        parts = result.data if isinstance(result.data, list) else [result.data]  # `a; .cls; b` too
        if any(isinstance(part, dict) and part.get("cls") for part in parts):  # .cls: clear a terminal
            if self._console is not None:
                self._console.clear()
            elif getattr(self.stdout, "isatty", lambda: False)():
                self.stdout.write("\x1b[2J\x1b[H")
        if result.text:
            self._write(result.text, result.error)

    # -- running --------------------------------------------------------------------------------
    def execute(self, line: str) -> CommandResult:
        """Run a command on a worker thread; Ctrl+C while it runs breaks in.

        While the command runs, SIGINT is turned into a break-in by a handler of our own, so a
        Ctrl+C can never escape as KeyboardInterrupt between starting the worker and waiting for
        it.  The wait is sliced: the OS may hand the signal to another thread, and Python runs
        handlers only on the main thread when it next executes, so the main thread must wake."""
        box: dict[str, CommandResult] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["result"] = self.engine.execute(line)
            finally:
                done.set()

        def on_sigint(signum: int, frame: Any) -> None:
            self.engine.break_in()  # kept by the engine until a run consumes it

        installed = threading.current_thread() is threading.main_thread()
        previous: Any = signal.signal(signal.SIGINT, on_sigint) if installed else None
        try:
            worker = threading.Thread(target=work, name="wskdbg-command", daemon=True)
            worker.start()
            while not done.is_set():
                try:
                    done.wait(_SIGNAL_POLL_S)
                except KeyboardInterrupt:  # not on the main thread: no handler of ours
                    self.engine.break_in()
        finally:
            if installed:  # a handler set outside Python reads as None: put Python's default back
                signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        return box.get("result", CommandResult("", None, True))

    def run(self) -> int:
        while True:
            try:
                line = self.session.prompt()
            except KeyboardInterrupt:
                continue  # Ctrl+C at the prompt: a fresh line, as WinDbg
            except EOFError:
                break
            if line.strip().lower() in QUIT_WORDS:
                break
            if not line.strip():
                continue
            self.show(self.execute(line))
        return 0
