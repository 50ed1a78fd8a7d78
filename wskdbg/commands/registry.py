"""The command registry: every debugger command declares its names, syntax and help here.

A command module registers handlers with the :func:`command` decorator::

    @command("!irp", area="io", syntax="!irp Address [Detail]",
             summary="Display an I/O request packet",
             help="...long help...")
    def irp(dbg: Engine, inv: Invocation) -> CommandResult: ...

Handlers return a :class:`CommandResult` (or a plain string); they raise
:class:`CommandError` for bad input, with a position into the arguments so the
front end can draw a caret under the fault.  Handlers never print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from wskdbg.engine import Engine

PROMPT = "0: kd> "

# Areas in the order `help` lists them: id -> title.
AREAS: dict[str, str] = {
    "execution": "Execution and breakpoints",
    "inspection": "Registers, stacks, modules and threads",
    "memory": "Memory and types",
    "io": "IRPs, MDLs, drivers and devices",
    "network": "Network (NDIS, TCP/IP, WSK)",
    "tracing": "Tracing and debug output",
    "crash": "Bug checks",
    "services": "Drivers and services",
    "session": "Session, scripts and help",
}


@dataclass(slots=True)
class CommandResult:
    """What a command produced: WinDbg-shaped text, structured data, and whether it failed."""

    text: str = ""
    data: Any = None
    error: bool = False


class CommandError(Exception):
    """Bad input to a command.  `position` indexes the command text (for the caret line)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(slots=True)
class Invocation:
    """One command as typed: `name` is what matched (e.g. `kbn`, `bp3`), `args` the rest."""

    line: str
    name: str
    args: str
    args_offset: int
    spec: "CommandSpec"

    def error(self, message: str, at: int | None = None) -> CommandError:
        """A CommandError pointing `at` characters into the arguments (None: no caret position)."""
        return CommandError(message, None if at is None else self.args_offset + at)

    def syntax_error(self, at: int = 0) -> CommandError:
        at = max(0, min(at, len(self.args)))
        return CommandError(f"Syntax error at '{self.args[at:]}'", self.args_offset + at)


Handler = Callable[["Engine", Invocation], "CommandResult | str | None"]


@dataclass(slots=True)
class CommandSpec:
    names: tuple[str, ...]
    handler: Handler
    area: str
    syntax: str
    summary: str
    help: str = ""
    pattern: re.Pattern[str] | None = None  # extra spellings, e.g. kbn or bp7
    mutates: bool = False  # may change the machine (runs it, loads drivers, reboots)
    case_sensitive: bool = False  # dw and dW differ

    @property
    def name(self) -> str:
        return self.names[0]


_WORD = re.compile(r"[A-Za-z~][A-Za-z0-9_]*")
_SCRIPT_PREFIXES = ("$$>a<", "$>a<", "$$><", "$><", "$$<", "$<")


@dataclass(slots=True)
class Registry:
    specs: list[CommandSpec] = field(default_factory=list)
    _by_name: dict[str, CommandSpec] = field(default_factory=dict)

    def add(self, spec: CommandSpec) -> CommandSpec:
        if spec.area not in AREAS:
            raise ValueError(f"unknown command area {spec.area!r} for {spec.name}")
        for name in spec.names:
            key = name if spec.case_sensitive else name.lower()
            if key in self._by_name and self._by_name[key] is not spec:
                raise ValueError(f"command {name!r} is registered twice")
            self._by_name[key] = spec
        self.specs.append(spec)
        return spec

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(self.specs)

    def names(self) -> list[str]:
        return sorted({n for s in self.specs for n in s.names})

    def find(self, name: str) -> CommandSpec | None:
        """The spec for a command name or spelling (`kb`, `.help`, `!irp`, `bp3`)."""
        spec = self._by_name.get(name) or self._by_name.get(name.lower())
        if spec is not None and spec.case_sensitive and name not in spec.names and name.lower() not in spec.names:
            spec = None
        if spec is not None:
            return spec
        for s in self.specs:
            if s.pattern is not None and s.pattern.fullmatch(name):
                return s
        return None

    def parse(self, line: str) -> Invocation | None:
        """Split one command (no `;`) into its spec and arguments.  None for a comment or blank.

        Raises CommandError for an unknown command.
        """
        stripped = line.lstrip()
        lead = len(line) - len(stripped)
        text = stripped.rstrip()
        if not text or text.startswith("*"):
            return None
        for prefix in _SCRIPT_PREFIXES:
            if text.startswith(prefix):
                spec = self._by_name.get(prefix)
                if spec is not None:
                    return self._inv(line, prefix, text, len(prefix), lead, spec)
        if text.startswith("$$"):
            return None
        if text.startswith("?"):
            spec = self._by_name.get("?")
            if spec is not None:
                return self._inv(line, "?", text, 1, lead, spec)
        if text[0] in "!.":
            end = 1
            stops = ";\"({" if text[0] == "." else ";\""  # `.for(`, `.if(`, `.block{` as WinDbg takes them
            while end < len(text) and not text[end].isspace() and text[end] not in stops:
                end += 1
            word = text[:end]
            spec = self.find(word)
            if spec is None:
                if text[0] == "!":
                    raise CommandError(f"No export {word[1:]} found (try 'help')", lead)
                raise CommandError(f"Syntax error at '{text}': unknown command '{word}' (try 'help')", lead)
            return self._inv(line, word, text, end, lead, spec)
        m = _WORD.match(text)
        if m is None:
            raise CommandError(f"Syntax error at '{text}'", lead)
        word = m.group(0)
        spec = self.find(word)
        if spec is None:
            raise CommandError(f"Syntax error at '{text}': unknown command '{word}' (try 'help')", lead)
        return self._inv(line, word, text, m.end(), lead, spec)

    @staticmethod
    def _inv(line: str, name: str, text: str, end: int, lead: int, spec: CommandSpec) -> Invocation:
        rest = text[end:]
        skipped = len(rest) - len(rest.lstrip())
        return Invocation(line=text, name=name, args=rest.strip(), args_offset=lead + end + skipped, spec=spec)


REGISTRY = Registry()


def command(*names: str, area: str, syntax: str, summary: str, help: str = "", pattern: str | None = None,
            mutates: bool = False, case_sensitive: bool = False) -> Callable[[Handler], Handler]:
    """Register a command handler in the default registry (see module docstring)."""

    def decorate(fn: Handler) -> Handler:
        REGISTRY.add(CommandSpec(tuple(names), fn, area, syntax, summary, help.strip("\n"),
                                 re.compile(pattern) if pattern else None, mutates, case_sensitive))
        return fn

    return decorate


# --- splitting a line into commands ---------------------------------------------------

def split_commands(line: str) -> list[tuple[str, int]]:
    """Split on `;` outside quotes, braces and parentheses; returns (command, offset) pairs.

    `$$` comments run to the next `;` (as in WinDbg); a `*` comment runs to the end.
    """
    out: list[tuple[str, int]] = []
    start = 0
    depth = 0
    quote = False
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        if quote:
            if ch == "\\" and i + 1 < n:
                i += 2
                continue
            if ch == '"':
                quote = False
        elif ch == '"':
            quote = True
        elif ch in "{(":
            depth += 1
        elif ch in "})":
            depth = max(0, depth - 1)
        elif ch == "*" and depth == 0 and not line[start:i].strip():
            break  # a comment line: the rest is comment
        elif ch == ";" and depth == 0:
            out.append((line[start:i], start))
            start = i + 1
        i += 1
    out.append((line[start:], start))
    return [(text, offset) for text, offset in out if text.strip()]


def caret_line(position: int, message: str) -> str:
    """`       ^ Syntax error at 'zz'` with the caret under the command as typed after the prompt."""
    return " " * (len(PROMPT) + max(0, position)) + "^ " + message


def tokenize(args: str) -> list[tuple[str, int]]:
    """Whitespace-separated words with their offsets; double quotes group (quotes removed)."""
    out: list[tuple[str, int]] = []
    i = 0
    n = len(args)
    while i < n:
        while i < n and args[i].isspace():
            i += 1
        if i >= n:
            break
        start = i
        if args[i] == '"':
            j = i + 1
            buf = []
            while j < n and args[j] != '"':
                if args[j] == "\\" and j + 1 < n and args[j + 1] == '"':
                    buf.append('"')
                    j += 2
                    continue
                buf.append(args[j])
                j += 1
            if j >= n:
                raise CommandError("Missing closing quote", start)
            out.append(("".join(buf), start))
            i = j + 1
        else:
            while i < n and not args[i].isspace():
                i += 1
            out.append((args[start:i], start))
    return out
