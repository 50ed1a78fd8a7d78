"""Control-flow tokens (.if/.elsif/.else, .for, .while, .do, .block, .break, .continue),
.lastevent and .cls.

The tokens take WinDbg's syntax, so recipes published for real WinDbg run unchanged::

    .for (r $t0 = poi(head); @$t0 != head; r $t0 = poi(@$t0)) { dps poi(@$t0+4*@$ptrsize) L1 }

Conditions are MASM expressions (wskdbg.expr: parsed, never eval'd).  Bodies are command lines
run through the engine like any other; `.break` and `.continue` unwind to the innermost loop.
A loop that runs past MAX_ITERATIONS stops with an error instead of hanging the session.
`.else`/`.elsif` may follow their `.if` on the same line or as the next command (a script joined
with `$$><` puts a `;` between them).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from stack.kernel.kernel import BOOT_EPOCH_S

from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command, split_commands
from wskdbg.commands.session import _balanced
from wskdbg.render.stop import event_text

if TYPE_CHECKING:
    from wskdbg.engine import Engine

MAX_ITERATIONS = 0x10000


class _LoopSignal(BaseException):
    """`.break` / `.continue`: unwinds the body's command line to its loop (not an error)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.output: list[str] = []  # what the unwound command lines printed before it


def _exec(dbg: "Engine", line: str) -> CommandResult:
    """Run a command line like the engine does, keeping its output if a loop signal unwinds it."""
    texts: list[str] = []
    error = False
    try:
        for text, offset in split_commands(line):
            r = dbg.execute_one(text, offset)
            if r.text:
                texts.append(r.text)
            if r.error:
                error = True
                break
            if dbg.in_bp_command and dbg.pending_resume is not None:
                break
    except _LoopSignal as sig:
        sig.output[:0] = texts
        raise
    return CommandResult("\n".join(texts), None, error)


def _group(inv: Invocation, text: str, pos: int, open_ch: str) -> tuple[str, int]:
    """The text inside the bracket group starting at or after `pos`, and where the rest starts."""
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text) or text[pos] != open_ch:
        what = "( Condition )" if open_ch == "(" else "{ Commands }"
        raise inv.error(f"expected {what}", pos)
    close_ch = ")" if open_ch == "(" else "}"
    try:
        end = _balanced(text, pos, open_ch, close_ch)
    except CommandError as exc:
        raise inv.error(exc.message, pos) from None
    return text[pos + 1:end - 1], end


def _split_top(text: str) -> list[tuple[str, int]]:
    """Split on `;` outside parentheses, braces and quotes (the three parts of .for)."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quote = not quote
        elif quote:
            continue
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        elif ch == ";" and depth == 0:
            parts.append((text[start:i], start))
            start = i + 1
    parts.append((text[start:], start))
    return parts


def _condition(dbg: "Engine", text: str, base: int) -> bool:
    if not text.strip():
        raise CommandError("an empty condition", base)
    return dbg.evaluate(text, base) != 0


def _run_body(dbg: "Engine", body: str, out: list[str]) -> tuple[bool, str | None]:
    """Run a body; returns (failed, loop signal)."""
    depth = dbg.state.get("loop_depth", 0)
    try:
        r = _exec(dbg, body)
    except _LoopSignal as sig:
        if depth == 0:
            raise
        out.extend(sig.output)
        return False, sig.kind
    if r.text:
        out.append(r.text)
    return r.error, None


def _loop(dbg: "Engine", inv: Invocation, condition, body: str, step=None, check_first: bool = True) -> CommandResult:
    out: list[str] = []
    dbg.state["loop_depth"] = dbg.state.get("loop_depth", 0) + 1
    try:
        for _ in range(MAX_ITERATIONS):
            if check_first and not condition():
                return CommandResult("\n".join(out))
            failed, signal = _run_body(dbg, body, out)
            if failed:
                return CommandResult("\n".join(out), None, True)
            if signal == "break":
                return CommandResult("\n".join(out))
            if step is not None:
                r = _exec(dbg, step)
                if r.text:
                    out.append(r.text)
                if r.error:
                    return CommandResult("\n".join(out), None, True)
            if not check_first and not condition():
                return CommandResult("\n".join(out))
        out.append(f"{inv.name}: stopped after {MAX_ITERATIONS:#x} iterations (is the condition ever false?)")
        return CommandResult("\n".join(out), None, True)
    finally:
        dbg.state["loop_depth"] -= 1


@command(".for", area="session", syntax=".for (InitialCommand ; Condition ; IncrementCommands) { OutCommands }",
         summary="Loop: run a command, then OutCommands and IncrementCommands while Condition holds",
         help="""
As in WinDbg: the three parts are separated by ; inside the parentheses; Condition is a MASM
expression.  Walk a LIST_ENTRY ring:
  .for (r $t0 = poi(head); @$t0 != head; r $t0 = poi(@$t0)) { dps @$t0 L2 }
.break leaves the loop, .continue goes to IncrementCommands.""")
def cmd_for(dbg: "Engine", inv: Invocation) -> CommandResult:
    header, end = _group(inv, inv.args, 0, "(")
    parts = _split_top(header)
    if len(parts) != 3:
        raise inv.error(".for needs (InitialCommand ; Condition ; IncrementCommands)", 0)
    body, rest = _group(inv, inv.args, end, "{")
    if inv.args[rest:].strip():
        raise inv.syntax_error(rest)
    (init, _), (cond, cond_at), (step, _) = parts
    first = _exec(dbg, init) if init.strip() else CommandResult("")
    if first.error:
        return first
    base = inv.args_offset + 1 + cond_at
    result = _loop(dbg, inv, lambda: _condition(dbg, cond, base), body, step if step.strip() else None)
    if first.text:
        result.text = first.text + ("\n" + result.text if result.text else "")
    return result


@command(".while", area="session", syntax=".while (Condition) { Commands }",
         summary="Loop while a condition holds",
         help="Condition is a MASM expression, evaluated before each pass.  .break and .continue work inside.")
def cmd_while(dbg: "Engine", inv: Invocation) -> CommandResult:
    cond, end = _group(inv, inv.args, 0, "(")
    body, rest = _group(inv, inv.args, end, "{")
    if inv.args[rest:].strip():
        raise inv.syntax_error(rest)
    base = inv.args_offset + 1
    return _loop(dbg, inv, lambda: _condition(dbg, cond, base), body)


@command(".do", area="session", syntax=".do { Commands } (Condition)",
         summary="Loop: run Commands, then again while Condition holds",
         help="The body runs at least once; Condition is tested after each pass.")
def cmd_do(dbg: "Engine", inv: Invocation) -> CommandResult:
    body, end = _group(inv, inv.args, 0, "{")
    cond, rest = _group(inv, inv.args, end, "(")
    if inv.args[rest:].strip():
        raise inv.syntax_error(rest)
    base = inv.args_offset + end + 1
    return _loop(dbg, inv, lambda: _condition(dbg, cond, base), body, check_first=False)


def _if_chain(dbg: "Engine", inv: Invocation, pos: int, taken: bool) -> CommandResult:
    """Run the branches from `pos` (`(cond) {..} .elsif (cond) {..} .else {..}`)."""
    args = inv.args
    out = CommandResult("")
    while True:
        cond, end = _group(inv, args, pos, "(")
        body, pos = _group(inv, args, end, "{")
        if not taken and _condition(dbg, cond, inv.args_offset + end - len(cond) - 1):
            taken = True
            out = _exec(dbg, body)
        rest = args[pos:].lstrip()
        skipped = len(args[pos:]) - len(rest)
        if rest.lower().startswith(".elsif"):
            pos += skipped + len(".elsif")
            continue
        if rest.lower().startswith(".else"):
            body, end = _group(inv, args, pos + skipped + len(".else"), "{")
            if args[end:].strip():
                raise inv.syntax_error(end)
            if not taken:
                out = _exec(dbg, body)
            dbg.state["if"] = None
            return out
        if rest:
            raise inv.syntax_error(pos + skipped)
        dbg.state["if"] = taken
        return out


@command(".if", area="session", syntax=".if (Condition) { Commands } [.elsif (Condition) { Commands }] [.else { Commands }]",
         summary="Run commands when a condition holds",
         help="""
Condition is a MASM expression: `.if (@$t0 == 0) { .echo empty } .else { dps @$t0 L1 }`.
.elsif and .else may follow on the same line or as the next command.""")
def cmd_if(dbg: "Engine", inv: Invocation) -> CommandResult:
    dbg.state["if"] = None
    return _if_chain(dbg, inv, 0, False)


@command(".elsif", area="session", syntax=".elsif (Condition) { Commands }",
         summary="The next branch of the .if before it")
def cmd_elsif(dbg: "Engine", inv: Invocation) -> CommandResult:
    taken = dbg.state.get("if")
    if taken is None:
        raise inv.error(".elsif without a .if before it", 0)
    return _if_chain(dbg, inv, 0, taken)


@command(".else", area="session", syntax=".else { Commands }",
         summary="The last branch of the .if before it")
def cmd_else(dbg: "Engine", inv: Invocation) -> CommandResult:
    taken = dbg.state.get("if")
    if taken is None:
        raise inv.error(".else without a .if before it", 0)
    body, end = _group(inv, inv.args, 0, "{")
    if inv.args[end:].strip():
        raise inv.syntax_error(end)
    dbg.state["if"] = None
    return CommandResult("") if taken else _exec(dbg, body)


@command(".block", area="session", syntax=".block { Commands }",
         summary="Run a block of commands as one",
         help="Groups commands (WinDbg expands aliases afresh inside a .block).")
def cmd_block(dbg: "Engine", inv: Invocation) -> CommandResult:
    body, end = _group(inv, inv.args, 0, "{")
    if inv.args[end:].strip():
        raise inv.syntax_error(end)
    return _exec(dbg, body)


def _signal(dbg: "Engine", inv: Invocation, kind: str) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    if not dbg.state.get("loop_depth"):
        raise inv.error(f".{kind} outside a .for, .while or .do loop", 0)
    raise _LoopSignal(kind)


@command(".break", area="session", syntax=".break", summary="Leave the innermost .for/.while/.do loop")
def cmd_break(dbg: "Engine", inv: Invocation) -> CommandResult:
    return _signal(dbg, inv, "break")


@command(".continue", area="session", syntax=".continue",
         summary="Go on with the next pass of the innermost loop")
def cmd_continue(dbg: "Engine", inv: Invocation) -> CommandResult:
    return _signal(dbg, inv, "continue")


# --- .lastevent, .cls ---------------------------------------------------------------------------

_REASONS = {
    "breakpoint": "Hit breakpoint {bp}",
    "break": "Break instruction exception - code 80000003 (first chance)",
    "step": "Single step exception - code 80000004 (first chance)",
    "target": "Single step exception - code 80000004 (first chance)",
    "context": "Single step exception - code 80000004 (first chance)",
    "bugcheck": "Kernel bug check {code:#x} ({name})",
    "halted": "Kernel bug check {code:#x} ({name})",
    "idle": "The machine went idle (no events pending)",
    "timecap": "Stopped by the run cap",
    "eventcap": "Stopped by the event cap",
    "seek": "Time travel position reached",
    "input": "Time travel position reached",
}


def _virtual_time(ns: int) -> str:
    t = time.gmtime(BOOT_EPOCH_S + ns // 1_000_000_000)
    ms = ns // 1_000_000 % 1000
    return f"{time.strftime('%a %b', t)} {t.tm_mday:>2} {time.strftime('%H:%M:%S', t)}.{ms:03d} {t.tm_year} (UTC + 0:00)"


@command(".lastevent", area="execution", syntax=".lastevent",
         summary="Show why the machine last stopped",
         help="""
`Last event: Hit breakpoint 1` (or a break-in, a step, a bug check), then the time it happened
on the machine's virtual clock (WinDbg prints the debugger's wall-clock time; the lab stays
deterministic) and the hand-off it stopped at.""")
def cmd_lastevent(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    stop = dbg.last_stop
    if stop is None or stop.reason == "start":
        return CommandResult("Last event: <none> (the machine has not stopped since it started)",
                             {"reason": "start"})
    crash = dbg.scheduler.halted
    text = _REASONS.get(stop.reason, stop.reason).format(
        bp=stop.breakpoint.id if stop.breakpoint else "?",
        code=crash.code if crash else 0, name=crash.name if crash else "")
    lines = [f"Last event: {text}", f"  debugger time: {_virtual_time(stop.time_ns)}"]
    where = f"  event {stop.events_run}, hand-off {stop.seq}"
    if stop.event is not None:
        where += f" [{stop.event.host}] {event_text(stop.event)}"
    lines.append(where)
    return CommandResult("\n".join(lines), {"reason": stop.reason, "events_run": stop.events_run,
                                             "hand_off": stop.seq, "time_ns": stop.time_ns})


@command(".cls", area="session", syntax=".cls", summary="Clear the screen",
         help="The REPL clears its terminal and the TUI its output pane; a transcript records nothing.")
def cmd_cls(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    return CommandResult("", {"cls": True})


# --- .printf ------------------------------------------------------------------------------------

_PRINTF_SPEC = re.compile(r"%(%|[-+ #0]*\d*(?:I64|I32|l|ll|h)?[pxXduicsyN]|m[au]|ma|mu)")


def _split_args(text: str) -> list[tuple[str, int]]:
    """Comma-separated expressions (commas inside parentheses stay), with their offsets."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append((text[start:i], start))
            start = i + 1
    if text[start:].strip():
        out.append((text[start:], start))
    return out


def _unescape(text: str) -> str:
    return (text.replace("\\\\", "\x00").replace("\\n", "\n").replace("\\t", "\t").replace('\\"', '"')
            .replace("\x00", "\\"))


def _read_string(dbg: "Engine", address: int, wide: bool) -> str:
    unit = 2 if wide else 1
    cells = dbg.kernel.mem.read_partial(address, 256 * unit)
    chars = []
    for i in range(0, len(cells) - unit + 1, unit):
        chunk = cells[i:i + unit]
        if any(c is None for c in chunk):
            break
        code = int.from_bytes(bytes(chunk), "little")  # type: ignore[arg-type]
        if code == 0:
            break
        chars.append(chr(code))
    return "".join(chars)


@command(".printf", area="session", syntax='.printf "Format" [, Argument ...]',
         summary="Print formatted text (the scripting companion of .for and .foreach)",
         help="""
Format specifiers as in WinDbg: %p (pointer), %x %X %d %u %i %c, with I64 / l / h sizes,
%y (the symbol at an address, e.g. echosrv!WskSampleAcceptEvent+0x10), %ma / %mu (an ASCII /
Unicode string read from emulated memory), %N (a pointer as 16 digits), %% for %.  \\n, \\t, \\"
and \\\\ are escapes.  Arguments are MASM expressions:  .printf "%p -> %y\\n", @$t0, poi(@$t0)
Each .printf ends its own line of output (a session records command results line by line).""")
def cmd_printf(dbg: "Engine", inv: Invocation) -> CommandResult:
    args = inv.args
    if not args.startswith('"'):
        raise inv.error('.printf needs a quoted format string', 0)
    end = 1
    while end < len(args) and not (args[end] == '"' and args[end - 1] != "\\"):
        end += 1
    if end >= len(args):
        raise inv.error("Missing closing quote", 0)
    fmt = _unescape(args[1:end])
    rest = args[end + 1:]
    lead = len(rest) - len(rest.lstrip())
    rest = rest.lstrip()
    if rest and not rest.startswith(","):
        raise inv.syntax_error(end + 1 + lead)
    exprs = _split_args(rest[1:]) if rest else []
    base = end + 1 + lead + 1
    values = [(dbg.evaluate(text.strip(), inv.args_offset + base + at + len(text) - len(text.lstrip())), at)
              for text, at in exprs]
    out = []
    pos = 0
    index = 0
    for m in _PRINTF_SPEC.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        spec = m.group(1)
        if spec == "%":
            out.append("%")
            continue
        if index >= len(values):
            raise inv.error(f".printf: the format has more specifiers than arguments ({len(values)})", 0)
        value = values[index][0]
        index += 1
        conv = spec[-1] if spec not in ("ma", "mu") else spec
        flags = re.sub(r"(I64|I32|ll|l|h)?[pxXduicsyN]$", "", spec)
        size64 = "I64" in spec or "ll" in spec
        if conv == "p":
            out.append(f"{value:016x}")
        elif conv == "N":
            out.append(f"{value:016X}")
        elif conv in ("x", "X"):
            v = value if size64 else value & 0xFFFFFFFF
            out.append(format(v, f"{flags}{conv}"))
        elif conv in ("d", "i"):
            v = value if size64 else value & 0xFFFFFFFF
            bits = 64 if size64 else 32
            if v >> (bits - 1):
                v -= 1 << bits
            out.append(format(v, f"{flags}d"))
        elif conv == "u":
            out.append(format(value if size64 else value & 0xFFFFFFFF, f"{flags}d"))
        elif conv == "c":
            out.append(chr(value & 0xFF))
        elif conv == "y":
            out.append(dbg.kernel.symbol_for_address(value) or f"{value:016x}")
        elif conv in ("ma", "mu", "s"):
            out.append(_read_string(dbg, value, conv == "mu"))
    out.append(fmt[pos:])
    if index < len(values):
        raise inv.error(f".printf: {len(values) - index} argument(s) left over", base + values[index][1])
    text = "".join(out)
    return CommandResult(text[:-1] if text.endswith("\n") else text, {"text": text})
