"""Source mode: emulated routines shown the way WinDbg shows a driver with private symbols.

Every `@kroutine` is a Python function that reads like its C original; the kernel keeps the
undecorated function in `stack.kernel.symbols.FUNCTIONS`.  Its file and lines come from
`inspect`/`linecache`; its *current* line comes from its live Python frame:

- The machine thread is blocked inside a hand-off while the debugger inspects it, so every
  routine of the running context (plain calls and generator routines resumed with `yield from`)
  has a frame on that thread's Python stack.  Walking it outward and matching each logical
  frame's function code gives the line each routine is executing, innermost first.
- At a `call X` hand-off X has not started yet (its line is the `def`, WinDbg's opening brace);
  at `ret X` it has finished (its last line, WinDbg's closing brace).
- A waiting thread's routines are suspended generators: `gi_frame.f_lineno` down the
  `gi_yieldfrom` chain.

A *source line* of an emulated routine is one line of its Python text.  Stepping by line (`l+t`)
keeps stepping from hand-off to hand-off while the routine being stepped stays on the same line
(see `line_key`), since hand-offs are the only places the machine can stop.
"""

from __future__ import annotations

import inspect
import linecache
import os
import sys
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable

from stack.kernel.events import RoutineEntered, RoutineReturned
from stack.kernel.symbols import FUNCTIONS

if TYPE_CHECKING:
    from wskdbg.engine import Engine, StackFrame

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository (parent of wskdbg/)
ARG_REGISTERS = ("rcx", "rdx", "r8", "r9")


@dataclass(slots=True)
class RoutineSource:
    """Where a routine's text lives."""

    symbol: str
    function: Callable[..., Any]
    path: str  # absolute
    first: int  # first line of the routine (its first decorator)
    def_line: int  # the `def` line (WinDbg's opening brace)
    last: int

    @property
    def file(self) -> str:
        """The file as `k` and `lsa` name it: relative to the repository."""
        rel = os.path.relpath(self.path, _ROOT)
        return rel if not rel.startswith("..") else self.path

    @property
    def params(self) -> list[str]:
        try:
            return list(inspect.signature(self.function).parameters)
        except (TypeError, ValueError):
            return []


@dataclass(slots=True)
class FrameSource:
    """One logical frame's source position and variables."""

    routine: RoutineSource
    line: int
    where: str  # "running", "entry" (call hand-off), "returned" (ret hand-off), "suspended", "unknown"
    params: dict[str, Any] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)


_SOURCES: dict[str, RoutineSource | None] = {}


def routine_source(symbol: str) -> RoutineSource | None:
    """The source of `module!Name` (None for routines that are not Python kroutines)."""
    if symbol in _SOURCES:
        return _SOURCES[symbol]
    fn = FUNCTIONS.get(symbol)
    if fn is None:
        lowered = symbol.lower()
        fn = next((f for s, f in FUNCTIONS.items() if s.lower() == lowered), None)
    found = None
    if fn is not None:
        try:
            path = inspect.getsourcefile(fn) or ""
            lines, first = inspect.getsourcelines(fn)
        except (OSError, TypeError):
            path, lines, first = "", [], 0
        if path and lines:
            def_line = first + next((i for i, t in enumerate(lines) if t.lstrip().startswith("def ")), 0)
            found = RoutineSource(symbol, fn, path, first, def_line, first + len(lines) - 1)
    _SOURCES[symbol] = found
    return found


def source_line(path: str, line: int) -> str:
    return linecache.getline(path, line).rstrip("\n")


def listing(path: str, start: int, end: int, current: int | None) -> list[str]:
    """`lsa` rows: `>   98: text` for the current line, `    97: text` for the others."""
    rows = []
    for n in range(max(1, start), end + 1):
        text = linecache.getline(path, n)
        if not text and n > 1:
            break
        rows.append(f"{'>' if n == current else ' '}{n:5}: {text.rstrip()}")
    return rows


def _bind(routine: RoutineSource, args: tuple) -> dict[str, Any]:
    params = routine.params
    out: dict[str, Any] = {}
    for name, value in zip(params, args):
        out[name] = value
    return out


def _python_stack(dbg: "Engine", host: str) -> list[FrameType]:
    """The machine thread's Python frames, innermost first, when it is frozen at a hand-off of `host`
    (or, after a bug check on `host`, the frames of the code that crashed, kept with the crash)."""
    crash = dbg.scheduler.halted
    if crash is not None and crash.host == host:
        return list(crash.extra.get("python_frames", []))
    live = dbg.live_event()
    ident = dbg.machine_thread_ident()
    if live is None or live.host != host or ident is None or dbg.running:
        return []
    frame = sys._current_frames().get(ident)
    out = []
    while frame is not None:
        out.append(frame)
        frame = frame.f_back
    # A thread stopped as it is switched in (or out) has its routines in suspended generators.
    seen = {id(f) for f in out}
    out += [f for f in _generator_frames(dbg.current_thread(host)) if id(f) not in seen]
    return out


def _generator_frames(thread: Any) -> list[FrameType]:
    """A thread's generator frames down the `yield from` chain, innermost first."""
    gen = getattr(thread, "body", None)
    chain = []
    while gen is not None and getattr(gen, "gi_frame", None) is not None:
        chain.append(gen.gi_frame)
        gen = getattr(gen, "gi_yieldfrom", None)
    return chain[::-1]


def frame_sources(dbg: "Engine", host: str | None = None,
                  frames: "list[StackFrame] | None" = None) -> list[FrameSource | None]:
    """The source position of each frame of `k` (innermost first); None where there is no source."""
    host = host or dbg.current_host
    frames = dbg.stack(host) if frames is None else frames
    pystack = _python_stack(dbg, host)
    live = dbg.live_event()
    out: list[FrameSource | None] = []
    cursor = 0
    for i, f in enumerate(frames):
        routine = routine_source(f.symbol)
        if routine is None:
            out.append(None)
            continue
        code = getattr(routine.function, "__code__", None)
        found = None
        for j in range(cursor, len(pystack)):
            if pystack[j].f_code is code:
                found, cursor = pystack[j], j + 1
                break
        params = _bind(routine, f.args)
        if found is not None:
            values = dict(found.f_locals)
            names = routine.params
            out.append(FrameSource(routine, found.f_lineno, "running",
                                   {n: values.get(n, params.get(n)) for n in names},
                                   {n: v for n, v in values.items() if n not in names}))
        elif i == 0 and isinstance(live, RoutineEntered) and live.symbol == f.symbol:
            out.append(FrameSource(routine, routine.def_line, "entry", params))
        elif i == 0 and isinstance(live, RoutineReturned) and live.symbol == f.symbol:
            out.append(FrameSource(routine, routine.last, "returned", params))
        else:
            out.append(FrameSource(routine, routine.def_line, "unknown", params))
    return out


def thread_frame_sources(thread: Any) -> list[FrameSource]:
    """A waiting thread's routines from its suspended generators, innermost first."""
    by_code = {getattr(fn, "__code__", None): sym for sym, fn in FUNCTIONS.items()}
    out = []
    for fr in _generator_frames(thread):
        sym = by_code.get(fr.f_code)
        routine = routine_source(sym) if sym else None
        if routine is not None:
            values = dict(fr.f_locals)
            names = routine.params
            out.append(FrameSource(routine, fr.f_lineno, "suspended", {n: values.get(n) for n in names},
                                   {n: v for n, v in values.items() if n not in names}))
    return out


def line_key(dbg: "Engine", host: str | None = None) -> tuple:
    """(symbol, line, returning) of every frame, outermost first: a source-line step ends when the
    part it watches changes.  A routine's `ret` hand-off counts as a line of its own (the closing
    brace), so stepping over the last line stops as the routine returns, as in WinDbg."""
    frames = dbg.stack(host)
    sources = frame_sources(dbg, host, frames)
    return tuple((f.symbol, s.line if s is not None else None, s is not None and s.where == "returned")
                 for f, s in zip(reversed(frames), reversed(sources)))


# --- the debugger's source options (.lines, l+t, l+s), kept in engine.state -------------------

def options(dbg: "Engine") -> dict[str, bool]:
    return dbg.state.setdefault("source", {"lines": False, "t": False, "s": False})


LINE_STEP_LIMIT = 10_000  # hand-offs one source-line step may pass before it stops anyway


def line_stepping(dbg: "Engine") -> bool:
    return options(dbg)["t"]


def step_start(dbg: "Engine", mode: str) -> tuple[str, int, tuple] | None:
    """Where a source-line step begins: (mode, the stepped routine's level, the line key); None when
    the machine is between events (a step there is a hand-off step)."""
    if mode not in ("t", "p") or not line_stepping(dbg):
        return None
    ev = dbg.live_event()
    if ev is None:
        return None
    from wskdbg.engine import level_of
    return mode, level_of(ev), line_key(dbg, ev.host)


def same_line(start: tuple[str, int, tuple], dbg: "Engine") -> bool:
    """Whether a source-line step must go on: nothing it watches has left its line.

    `t` watches every routine, so any change (a call entered, a return, a new line) ends it;
    `p` watches the routine it began in (the hand-off's level) and its callers, so the calls that
    routine makes on the same line, and everything they do, are stepped over."""
    mode, level, key = start
    ev = dbg.live_event()
    if ev is None:
        return False
    now = line_key(dbg, ev.host)
    if mode == "t":
        return now == key
    return len(now) >= level and now[:level] == key[:level]


def prompt_source(dbg: "Engine") -> list[str]:
    """`l+s`: the current source line under a stop (of the innermost routine that has source)."""
    if not options(dbg)["s"]:
        return []
    ev = dbg.live_event()
    if ev is None:
        return []
    for src in frame_sources(dbg, ev.host):  # the innermost frame with source (a call's caller)
        if src is not None:
            return listing(src.routine.path, src.line, src.line, src.line)
    return []
