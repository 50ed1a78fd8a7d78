"""Frames, variables and source: .frame, dv, .lines, l+t/l-t/l+s/l-s, lsa, ls, lsc, u.

Emulated routines are Python that reads like the C original, so the debugger shows them as
WinDbg shows a driver built with private symbols: the frame's source file and line, its
parameters and locals by their own names, listings with `>` on the current line.  The model
(which line each frame is on, and why) is wskdbg.source.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.render.fmt import addr64
from wskdbg.render.stack import format_k
from wskdbg.source import (ARG_REGISTERS, FrameSource, RoutineSource, frame_sources, listing, options,
                           routine_source)

if TYPE_CHECKING:
    from wskdbg.engine import Engine, StackFrame

LIST_BEFORE = 4  # lsa shows this many lines before the location ...
LIST_AFTER = 5  # ... and this many after it (ten in all, as WinDbg's default)
U_CONTEXT = 8  # `u` shows this many lines around the current one on each side


def selected(dbg: "Engine") -> tuple[int, "StackFrame", FrameSource | None]:
    frames = dbg.stack()
    index = min(dbg.selected_frame(), len(frames) - 1)
    sources = frame_sources(dbg, None, frames)
    return index, frames[index], sources[index]


def frame_row(index: int, frame: "StackFrame", src: FrameSource | None, with_lines: bool) -> str:
    """`02 ffffd001`51978110 fffff801`0942f55b nt!IopLoadDriver+0x4c4 [file @ line]`."""
    row = format_k([frame], "n")[1]
    row = f"{index:02x}" + row[2:]
    if with_lines and src is not None:
        row += f" [{src.routine.file} @ {src.line}]"
    return row


@command(".frame", area="inspection", syntax=".frame [/r] [FrameNumber]",
         summary="Show or select the local context (stack frame) that dv, lsa and u use",
         help="""
`.frame 2` selects frame 2 of `k` (hex, as kn numbers them) and prints its row; `.frame` prints
the selected one.  dv then lists that routine's parameters and locals, lsa . and u show its
source.  /r adds the frame's rip, rsp and first four arguments (rcx rdx r8 r9).  Every stop
selects frame 0 again.""")
def cmd_frame(dbg: "Engine", inv: Invocation) -> CommandResult:
    frames = dbg.stack()
    words = tokenize(inv.args)
    show_regs = False
    if words and words[0][0].lower() == "/r":
        show_regs = True
        words = words[1:]
    if len(words) > 1:
        raise inv.syntax_error(words[1][1])
    if words:
        if words[0][0].startswith("/"):
            raise inv.error(f"option {words[0][0]} is not supported (.frame takes /r and a frame number)",
                            words[0][1])
        n = dbg.evaluate(words[0][0], inv.args_offset + words[0][1])
        if n >= len(frames):
            raise inv.error(f"Frame {n:x} not found (the stack has {len(frames)} frames, 0..{len(frames) - 1:x})", 0)
        dbg.select_frame(n)
    index, frame, src = selected(dbg)
    text = frame_row(index, frame, src, options(dbg)["lines"])
    if show_regs:  # the frame's own rip and rsp, and its first four arguments (x64: rcx rdx r8 r9)
        from wskdbg.render.stack import four_args
        a = four_args(frame.args)
        text += (f"\nrip={frame.location:016x} rsp={frame.child_sp:016x} rcx={a[0]:016x}"
                 f"\nrdx={a[1]:016x}  r8={a[2]:016x}  r9={a[3]:016x}")
    return CommandResult(text,
                         {"frame": index, "symbol": frame.symbol,
                          "file": src.routine.file if src else None, "line": src.line if src else None})


# --- dv ------------------------------------------------------------------------------------------

def _int_text(value: int) -> str:
    if value < 0 or value >= 1 << 32:
        return f"0x{addr64(value)}"
    if value >= 0x80000000:
        return f"0n{value - (1 << 32)}"  # a LONG such as an NTSTATUS
    return f"0n{value}"


def value_text(dbg: "Engine", value: Any) -> str:
    """A variable's value as dv prints it: pointers in full, integers in decimal with 0n."""
    if value is None:
        return "0x00000000`00000000"
    if isinstance(value, bool):
        return "0x01" if value else "0x00"
    if isinstance(value, int):
        return _int_text(value)
    symbol = getattr(value, "symbol", None)
    if callable(value) and isinstance(symbol, str):
        return f"0x{addr64(dbg.kernel.symbol_address(symbol))} {symbol}"
    address = getattr(value, "address", None)
    if isinstance(address, int) and not isinstance(address, bool):
        return f"0x{addr64(address)}"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return '"' + text.replace('"', '\\"') + '"'
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value[:16])
        return f"[{len(value)}] \"" + "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data) + "\""
    if isinstance(value, (list, tuple, dict, set)):
        return f"[{len(value)} elements]"
    return f"struct {type(value).__name__}"


def type_text(routine: RoutineSource, name: str, value: Any) -> str:
    """The declared type (the parameter's annotation) or one read off the value."""
    try:
        annotation = inspect.signature(routine.function).parameters[name].annotation
    except (KeyError, TypeError, ValueError):
        annotation = inspect.Parameter.empty
    if isinstance(annotation, str) and annotation not in ("Any", "object"):
        return annotation
    if isinstance(annotation, type) and annotation not in (object, inspect.Parameter.empty):
        return annotation.__name__
    if value is None:
        return "void *"
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "char *"
    if isinstance(getattr(value, "address", None), int):
        return f"{type(value).__name__} *"
    return type(value).__name__


@command("dv", area="inspection", syntax="dv [/t] [/v] [/i] [Pattern]",
         summary="Display the selected frame's parameters and locals",
         help="""
The routine's own names, from its Python source: parameters (the frame's arguments, as k shows
them) and, while the routine is executing, its locals with their current values.  At a `call`
hand-off the routine has not started, so only its parameters exist.  Pointers print in full,
integers as 0n<decimal>.  /t adds each type (the annotation, else the value's type), /v the
location (@rcx @rdx @r8 @r9 for the first four parameters, then the stack), /i prv param /
prv local.  Pattern filters names (wildcards).  .frame N picks another frame.""")
def cmd_dv(dbg: "Engine", inv: Invocation) -> CommandResult:
    show_type = show_where = show_kind = False
    pattern = None
    for word, at in tokenize(inv.args):
        lw = word.lower()
        if lw.startswith("/") and pattern is None:
            for flag in lw[1:]:
                if flag == "t":
                    show_type = True
                elif flag == "v":
                    show_where = True
                elif flag == "i":
                    show_kind = True
                else:
                    raise inv.error(f"unknown option '/{flag}' (dv takes /t /v /i)", at)
        elif pattern is None:
            pattern = word
        else:
            raise inv.syntax_error(at)
    index, frame, src = selected(dbg)
    if src is None:
        return CommandResult(f"Unable to enumerate locals: {frame.symbol} has no source "
                             "(a routine of the emulated kernel, not a Python kroutine)", {"frame": index}, True)
    import fnmatch
    rows: list[tuple[str, str, Any, str]] = []  # kind, name, value, location
    for i, (name, value) in enumerate(src.params.items()):
        where = f"@{ARG_REGISTERS[i]}" if i < 4 else f"@rsp+0x{0x28 + 8 * i:04x}"
        rows.append(("param", name, value, where))
    for j, (name, value) in enumerate(src.locals.items()):
        rows.append(("local", name, value, f"@rsp+0x{0x20 + 8 * j:04x}"))
    if pattern is not None:
        rows = [r for r in rows if fnmatch.fnmatchcase(r[1].lower(), pattern.lower())]
    texts = []
    for kind, name, value, where in rows:
        left = f"{type_text(src.routine, name, value)} {name}" if show_type else name
        texts.append((kind, where, left, value_text(dbg, value)))
    width = max([15] + [len(t[2]) for t in texts])
    lines = []
    for kind, where, left, value in texts:
        prefix = (f"prv {kind:<6}" if show_kind else "") + (f"{where:<18}" if show_where else "")
        lines.append(f"{prefix}{left:>{width}} = {value}")
    if not lines:
        lines.append("(no parameters or locals)" if pattern is None else f"(no variable matches {pattern})")
    return CommandResult("\n".join(lines), {"frame": index, "symbol": frame.symbol, "where": src.where,
                                             "variables": [{"kind": k, "name": n, "value": value_text(dbg, v)}
                                                           for k, n, v, _ in rows]})


# --- .lines, l+/l- -------------------------------------------------------------------------------

@command(".lines", area="inspection", syntax=".lines [-e|-d|-t]",
         summary="Turn source line information on or off (k, ln and .frame show [file @ line])",
         help="`.lines` toggles; -e enables, -d disables.  Off by default, as in kd.")
def cmd_lines(dbg: "Engine", inv: Invocation) -> CommandResult:
    opts = options(dbg)
    arg = inv.args.strip().lower()
    if arg in ("", "-t"):
        opts["lines"] = not opts["lines"]
    elif arg == "-e":
        opts["lines"] = True
    elif arg == "-d":
        opts["lines"] = False
    else:
        raise inv.syntax_error(0)
    state = "will be loaded" if opts["lines"] else "will not be loaded"
    return CommandResult(f"Line number information {state}", {"lines": opts["lines"]})


_SOURCE_BITS = (("t", 1, "Step/trace by source line"), ("l", 2, "List source line for LN and prompt"),
                ("s", 4, "List source code at prompt"), ("o", 8, "Only show source code at prompt"))


@command("l", area="execution", syntax="l{+|-}{t|s|l|o|*}",
         summary="Source options: l+t steps by source line, l+s lists the source line at each stop",
         pattern=r"l[+-][tslo*]",
         help="""
l+t: t and p step by source line instead of by hand-off.  A source line of an emulated routine
is a line of its Python text, and the machine can only stop at hand-offs, so a line step keeps
stepping while the routine stays on its line: p steps over every call the routine makes on that
line (and everything they do); t stops as soon as any routine is on a new line (a call entered
is one).  A routine's return (its ret hand-off) is a line of its own, its closing brace, so
stepping over the last line stops as the routine returns.  Between events, and going back in
time (t-, p-), a step is a hand-off step.  l+s prints the current source line under
each stop.  l-t / l-s turn them off; l+* / l-* all.  l+l and l+o are accepted and stored.""")
def cmd_l(dbg: "Engine", inv: Invocation) -> CommandResult:
    text = (inv.name[1:] + inv.args).replace(" ", "")
    m = re.fullmatch(r"([+-])([tslo*])", text)
    if m is None:
        raise inv.error("write l+t, l-t, l+s, l-s, l+l, l+o or l+*", 0)
    opts = options(dbg)
    on = m.group(1) == "+"
    for letter, _, _ in _SOURCE_BITS:
        if m.group(2) in (letter, "*"):
            opts[letter] = on
    bits = sum(bit for letter, bit, _ in _SOURCE_BITS if opts.get(letter))
    lines = [f"Source options are {bits:x}:"]
    for letter, bit, text in _SOURCE_BITS:
        if opts.get(letter):
            lines.append(f"    {bit:2}/{letter} - {text}")
    return CommandResult("\n".join(lines), {"options": bits})


# --- lsa, ls, lsc, u -----------------------------------------------------------------------------

def _routine_at(dbg: "Engine", inv: Invocation, text: str, at: int) -> tuple[RoutineSource, int | None]:
    """A location: `.` (the selected frame's line), a routine, or an address inside one."""
    if text == ".":
        _, frame, src = selected(dbg)
        if src is None:
            raise inv.error(f"No source for {frame.symbol} (not a Python kroutine)", at)
        return src.routine, src.line
    routine = None
    if "!" in text and "+" not in text:
        found = dbg.resolve_routine(text)
        routine = routine_source(found[0]) if found else None
    if routine is None:
        address = dbg.evaluate(text, inv.args_offset + at)
        name = dbg.kernel.symbol_for_address(address) or ""
        routine = routine_source(name.partition("+")[0])
        if routine is None:
            raise inv.error(f"No source found for '{text}'" + (f" ({name})" if name else ""), at)
    current = None
    for src in frame_sources(dbg):
        if src is not None and src.routine is routine:
            current = src.line
            break
    return routine, current


def _remember(dbg: "Engine", routine: RoutineSource, last: int, current: int | None) -> None:
    dbg.state["ls"] = (routine.path, last, current)


@command("lsa", area="inspection", syntax="lsa Location [, Lines]",
         summary="List source around a location (a routine, an address, or . for the current line)",
         help="""
`lsa .` lists the selected frame's routine around its current line (marked >); `lsa
echosrv!WskSampleAcceptEvent` lists the routine from its def line.  Lines (hex) sets how many
lines to show (default 0xa).  ls continues.""")
def cmd_lsa(dbg: "Engine", inv: Invocation) -> CommandResult:
    loc, _, count_text = inv.args.partition(",")
    loc = loc.strip()
    if not loc:
        raise inv.error("a location is required (lsa . or lsa module!Routine)", 0)
    count = LIST_BEFORE + LIST_AFTER + 1
    if count_text.strip():
        count = dbg.evaluate(count_text.strip(), inv.args_offset + len(loc) + 1)
        if not 1 <= count <= 0x400:
            raise inv.error("Lines must be 1..0x400", len(loc) + 1)
    routine, current = _routine_at(dbg, inv, loc, 0)
    center = current if (loc == "." or current is not None) and current else routine.def_line
    start = max(1, center - LIST_BEFORE) if count == LIST_BEFORE + LIST_AFTER + 1 else center
    rows = listing(routine.path, start, start + count - 1, current)
    _remember(dbg, routine, start + len(rows) - 1, current)
    return CommandResult("\n".join(rows), {"file": routine.file, "first": start, "current": current})


@command("ls", area="inspection", syntax="ls [First] [, Count]",
         summary="List the current source file (continues where the last listing ended)",
         help="`ls` lists the next 0xa lines; `ls 120` from line 0x120 (hex, as in WinDbg: 0n288 for decimal).")
def cmd_ls(dbg: "Engine", inv: Invocation) -> CommandResult:
    last = dbg.state.get("ls")
    if last is None:
        _, frame, src = selected(dbg)
        if src is None:
            raise inv.error("no current source file (lsa module!Routine picks one)", 0)
        last = (src.routine.path, src.line - LIST_BEFORE - 1, src.line)
    path, end, current = last
    first_text, _, count_text = inv.args.partition(",")
    first = dbg.evaluate(first_text.strip(), inv.args_offset) if first_text.strip() else end + 1
    count = dbg.evaluate(count_text.strip(), inv.args_offset + len(first_text) + 1) if count_text.strip() else 10
    rows = listing(path, first, first + count - 1, current)
    if not rows:
        return CommandResult("(past the end of the file)", {"first": first})
    dbg.state["ls"] = (path, first + len(rows) - 1, current)
    return CommandResult("\n".join(rows), {"first": first})


@command("lsc", area="inspection", syntax="lsc", summary="Show the current source file and line")
def cmd_lsc(dbg: "Engine", inv: Invocation) -> CommandResult:
    _, frame, src = selected(dbg)
    if src is None:
        return CommandResult(f"No source for {frame.symbol}", None, True)
    return CommandResult(f"Current: {src.routine.file}({src.line})", {"file": src.routine.file, "line": src.line})


@command("u", area="inspection", syntax="u [Address|Routine]",
         summary="Unassemble: emulated routines have no machine code, so u shows their source",
         help="""
`u` shows the selected frame's routine around its current line (marked >); `u
echosrv!WskSampleAcceptEvent` or `u <address>` shows that routine.  The header says that
these are source lines, not instructions: an emulated routine is Python.""")
def cmd_u(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        routine, current = _routine_at(dbg, inv, inv.args.strip(), 0)
        symbol = routine.symbol
    else:
        _, frame, src = selected(dbg)
        if src is None:
            return CommandResult(f"{frame.call_site}:\nNo machine code and no source: {frame.symbol} is a routine "
                                 "of the emulated kernel without a Python body of its own.", {"symbol": frame.symbol},
                                 True)
        routine, current, symbol = src.routine, src.line, frame.symbol
    center = current or routine.def_line
    first = max(routine.first, center - U_CONTEXT)
    last = min(routine.last, center + U_CONTEXT)
    lines = [f"{symbol} [{routine.file} @ {center}]:",
             f"No machine code: {symbol} is emulated in Python; source lines {first}-{last} instead:"]
    lines += listing(routine.path, first, last, current)
    return CommandResult("\n".join(lines), {"symbol": symbol, "file": routine.file, "current": current,
                                             "first": first, "last": last})


def k_source_suffixes(dbg: "Engine", frames: list["StackFrame"]) -> list[str]:
    """` [file @ line]` for each frame of `k` when .lines is on ('' where there is no source)."""
    if not options(dbg)["lines"]:
        return [""] * len(frames)
    return ["" if s is None else f" [{s.routine.file} @ {s.line}]" for s in frame_sources(dbg, None, frames)]
