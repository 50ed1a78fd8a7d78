"""The command pane: scrolling output and the `0: kd>` input line.

Output is exactly what the REPL prints (the engine's CommandResult text),
with kernel addresses made clickable.  The input keeps a history (Up/Down)
and completes command names from the engine's registry (Tab, or accept the
grey suggestion with Right).
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, RichLog

from .textlinks import linkify

MAX_OUTPUT_LINES = 5_000
MAX_HISTORY = 500


class CommandHistory:
    """Up/Down through earlier commands; typing after a recall starts fresh."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.index: int | None = None  # None: editing a new line
        self.draft = ""

    def add(self, command: str) -> None:
        if command and (not self.entries or self.entries[-1] != command):
            self.entries.append(command)
            del self.entries[:-MAX_HISTORY]
        self.index = None

    def previous(self, current: str) -> str | None:
        if not self.entries:
            return None
        if self.index is None:
            self.draft = current
            self.index = len(self.entries) - 1
        elif self.index > 0:
            self.index -= 1
        return self.entries[self.index]

    def next(self) -> str | None:
        if self.index is None:
            return None
        if self.index < len(self.entries) - 1:
            self.index += 1
            return self.entries[self.index]
        self.index = None
        return self.draft


def complete(prefix: str, names: list[str]) -> tuple[str, list[str]]:
    """The longest common completion of the first word, and the candidates."""
    word = prefix.lstrip()
    if " " in word:
        return prefix, []
    matches = [n for n in names if n.startswith(word)]
    if not matches:
        return prefix, []
    common = matches[0]
    for name in matches[1:]:
        while not name.startswith(common):
            common = common[:-1]
    if len(matches) == 1:
        common += " "
    return common, matches


class CommandInput(Input):
    """The kd> line."""

    BINDINGS = [
        Binding("up", "history_previous", "History", show=False),
        Binding("down", "history_next", show=False),
        Binding("tab", "complete", "Complete", show=False, priority=True),
    ]

    def __init__(self, names: list[str], *, id: str | None = None) -> None:
        super().__init__(placeholder="type a command (g, t, p, k, !irp, .help) and press Enter", id=id,
                         suggester=SuggestFromList(names, case_sensitive=True))
        self.history = CommandHistory()
        self.names = names

    def action_history_previous(self) -> None:
        value = self.history.previous(self.value)
        if value is not None:
            self.value = value
            self.cursor_position = len(value)

    def action_history_next(self) -> None:
        value = self.history.next()
        if value is not None:
            self.value = value
            self.cursor_position = len(value)

    def action_complete(self) -> None:
        """Tab completes the command name being typed; with nothing to complete (an empty line,
        a finished word, arguments) it moves the focus on, as Tab does everywhere else."""
        completed, matches = complete(self.value, self.names) if self.value.strip() else (self.value, [])
        if completed != self.value:
            self.value = completed
            self.cursor_position = len(completed)
        elif len(matches) > 1:
            self.post_message(CommandPane.Candidates(matches))
        else:
            self.screen.focus_next()


class CommandPane(Vertical):
    """Output log + prompt + input.  Fixed proportions: output scrolls, nothing grows."""

    DEFAULT_CSS = """
    CommandPane { height: 1fr; }
    CommandPane > RichLog { height: 1fr; background: $surface; scrollbar-size-vertical: 1; }
    CommandPane > #prompt-row { height: 1; }
    CommandPane #prompt { width: auto; padding: 0 1 0 0; color: $secondary; text-style: bold; }
    CommandPane #prompt.-busy { color: $warning; }
    CommandPane #command-input { border: none; height: 1; padding: 0; background: $surface; }
    CommandPane #command-input:focus { background-tint: $foreground 5%; }
    """

    class Submitted(Message):
        def __init__(self, command: str) -> None:
            super().__init__()
            self.command = command

    class Candidates(Message):
        def __init__(self, names: list[str]) -> None:
            super().__init__()
            self.names = names

    def __init__(self, names: list[str], prompt: str = "0: kd> ", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._names = names
        self._prompt = prompt
        self.transcript: list[str] = []  # plain text of everything written (tests, copy)

    def compose(self) -> ComposeResult:
        yield RichLog(id="command-output", max_lines=MAX_OUTPUT_LINES, wrap=True, markup=False, highlight=False)
        with Horizontal(id="prompt-row"):
            yield Label(self._prompt.rstrip(), id="prompt")
            yield CommandInput(self._names, id="command-input")

    @property
    def input(self) -> CommandInput:
        return self.query_one(CommandInput)

    @property
    def log_widget(self) -> RichLog:
        return self.query_one(RichLog)

    def set_prompt(self, prompt: str, busy: bool = False) -> None:
        label = self.query_one("#prompt", Label)
        text = "*BUSY*" if busy else prompt.rstrip()
        if self._prompt != text:
            self._prompt = text
            label.update(text)
        label.set_class(busy, "-busy")

    def write_command(self, prompt: str, command: str) -> None:
        line = f"{prompt}{command}"
        self.transcript.append(line)
        self.log_widget.write(Text(line, style="bold"))

    def write_output(self, text: str, error: bool = False) -> None:
        if not text:
            return
        text = text.rstrip("\n")
        self.transcript.append(text)
        self.log_widget.write(linkify(text, style="red" if error else ""))

    def clear(self) -> None:
        """`.cls`: forget everything written so far."""
        self.transcript.clear()
        self.log_widget.clear()

    def write_note(self, text: str) -> None:
        self.transcript.append(text)
        self.log_widget.write(Text(text, style="italic dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not isinstance(event.input, CommandInput):
            return
        event.stop()
        command = event.value.strip()
        event.input.history.add(command)
        event.input.value = ""
        self.post_message(self.Submitted(command))

    def on_command_pane_candidates(self, event: Candidates) -> None:
        event.stop()
        self.write_note("  ".join(event.names[:40]))

    def on_key(self, event: events.Key) -> None:
        # A printable key typed while the output has focus goes to the prompt.
        if event.is_printable and self.app.focused is self.log_widget:
            self.input.focus()
