"""Session, scripts and help: help, .help, .echo, .log*, $$<, $$><, $$>a<, .foreach."""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING

from stack.kernel.kernel import BOOT_EPOCH_S

from wskdbg.commands.registry import AREAS, PROMPT, CommandError, CommandResult, Invocation, command, tokenize

if TYPE_CHECKING:
    from wskdbg.engine import Engine

MAX_FOREACH = 4096


@command("help", area="session", syntax="help [Command]", summary="List commands by area, or explain one",
         help="`help` lists every command by area; `help bp` (or `.help bp`) prints its syntax and details.")
def cmd_help(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        return _explain(dbg, inv)
    lines = []
    by_area: dict[str, list] = {a: [] for a in AREAS}
    for spec in dbg.registry:
        by_area.setdefault(spec.area, []).append(spec)
    for area, specs in by_area.items():
        if not specs:
            continue
        lines.append(f"{AREAS.get(area, area)}:")
        for spec in sorted(specs, key=lambda s: s.name.lstrip(".!$").lower()):
            names = ", ".join(spec.names[:4]) + (", ..." if len(spec.names) > 4 else "")
            lines.append(f"  {names:<24} {spec.summary}")
        lines.append("")
    lines.append("help CMD or .help CMD explains a command.  Separate commands with ;.")
    return CommandResult("\n".join(lines), {"areas": {a: [s.name for s in specs] for a, specs in by_area.items()
                                                      if specs}})


@command(".help", area="session", syntax=".help [Command]", summary="Explain a command (syntax and details)",
         help="`.help dt` prints the syntax of dt and what it does.")
def cmd_dothelp(dbg: "Engine", inv: Invocation) -> CommandResult:
    if not inv.args:
        return cmd_help(dbg, inv)
    return _explain(dbg, inv)


def _explain(dbg: "Engine", inv: Invocation) -> CommandResult:
    name = inv.args.split()[0]
    spec = dbg.registry.find(name)
    if spec is None:
        raise inv.error(f"no command named '{name}' (help lists them)", 0)
    lines = [f"{spec.syntax}", "", f"  {spec.summary}."]
    if spec.help:
        lines += [""] + spec.help.splitlines()
    if len(spec.names) > 1:
        lines += ["", "Also: " + ", ".join(spec.names[1:])]
    return CommandResult("\n".join(lines), {"name": spec.name, "syntax": spec.syntax, "area": spec.area})


@command(".echo", area="session", syntax=".echo [String]", summary="Print a string",
         help="The text runs to the end of the command (an unquoted ; ends it).  Quotes are removed.")
def cmd_echo(dbg: "Engine", inv: Invocation) -> CommandResult:
    text = inv.args
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    return CommandResult(text, {"text": text})


# --- logs ----------------------------------------------------------------------------------------

def _log_name(dbg: "Engine", name: str, stamp: bool) -> str:
    if not stamp:
        return name
    t = time.gmtime(BOOT_EPOCH_S + dbg.scheduler.now_ns // 1_000_000_000)
    ms = dbg.scheduler.now_ns // 1_000_000 % 1000
    root, ext = os.path.splitext(name)
    # WinDbg adds _PID_date_time; the emulated System process and clock keep it reproducible.
    return f"{root}_0004_{time.strftime('%Y-%m-%d_%H-%M-%S', t)}-{ms:03d}{ext}"


def _open_log(dbg: "Engine", inv: Invocation, mode: str) -> CommandResult:
    words = tokenize(inv.args)
    stamp = False
    name = None
    for word, at in words:
        if word.lower() == "/t" and mode == "w":
            stamp = True
        elif word.lower() in ("/u", "/d"):
            raise inv.error(f"{word} is not supported here", at)
        elif word.startswith("/") and len(word) == 2 and name is None:  # options are one letter
            raise inv.error(f"unknown option '{word}'", at)
        elif name is None:
            name = word  # an absolute path (/tmp/x.log) is a file name, not an option
        else:
            raise inv.syntax_error(at)
    if name is None:
        raise inv.error("a log file name is required", len(inv.args))
    name = _log_name(dbg, name, stamp)
    notes = []
    if dbg.log_file is not None:
        notes.append(f"Closing open log file {dbg.log_name}")
        dbg.log_file.close()
        dbg.log_file = None
    try:
        dbg.log_file = open(name, mode, encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise inv.error(f"Unable to open log file '{name}': {getattr(exc, 'strerror', None) or exc}") from None
    dbg.log_name = name
    notes.append(f"Opened log file '{name}'")
    return CommandResult("\n".join(notes), {"log": name})


@command(".logopen", area="session", syntax=".logopen [/t] File", summary="Log the session to a file (overwrite)",
         help="Every later command and its output go to File.  /t adds _PID_date_time (emulated time) to the name.",
         mutates=False)
def cmd_logopen(dbg: "Engine", inv: Invocation) -> CommandResult:
    return _open_log(dbg, inv, "w")


@command(".logappend", area="session", syntax=".logappend File", summary="Log the session to a file (append)",
         help="Like .logopen, but keeps what the file already holds.")
def cmd_logappend(dbg: "Engine", inv: Invocation) -> CommandResult:
    return _open_log(dbg, inv, "a")


@command(".logclose", area="session", syntax=".logclose", summary="Close the log file")
def cmd_logclose(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    if dbg.log_file is None:
        return CommandResult("No log file open", {"log": None})
    dbg.log_file.close()
    name, dbg.log_file, dbg.log_name = dbg.log_name, None, ""
    return CommandResult(f"Closing open log file {name}", {"log": name})


# --- scripts -------------------------------------------------------------------------------------

def _script_path(dbg: "Engine", name: str) -> str:
    if os.path.isabs(name) or not dbg.script_dirs:
        return name
    candidate = os.path.join(dbg.script_dirs[-1], name)
    return candidate if os.path.exists(candidate) else name


def _read_script(dbg: "Engine", inv: Invocation, name: str) -> tuple[str, list[str]]:
    if not name:
        raise inv.error("a script file name is required", 0)
    path = _script_path(dbg, name)
    try:
        with open(path, encoding="utf-8") as fh:
            return path, fh.read().splitlines()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise inv.error(f"Couldn't open script file '{name}': {getattr(exc, 'strerror', None) or exc}") from None


def run_script_lines(dbg: "Engine", path: str, lines: list[str], joined: bool) -> CommandResult:
    """Run a script's lines (echoing `0: kd> cmd` before each), or all joined with `;`."""
    if dbg.nesting >= 16:
        raise CommandError("Script nesting too deep (16 levels)")
    dbg.nesting += 1
    dbg.script_dirs.append(os.path.dirname(os.path.abspath(path)))
    out: list[str] = []
    error = False
    try:
        if joined:
            body = ";".join(line.strip() for line in lines
                            if line.strip() and not line.strip().startswith(("$$ ", "*")) and line.strip() != "$$")
            r = dbg._execute_line(body)
            out.append(f"{PROMPT}{body}")
            if r.text:
                out.append(r.text)
            error = r.error
        else:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                r = dbg._execute_line(line)
                out.append(f"{PROMPT}{line.rstrip()}")
                if r.text:
                    out.append(r.text)
                if r.error:
                    error = True
                    out.append(f"{os.path.basename(path)}({number}): error in script")
                if dbg.in_bp_command and dbg.pending_resume is not None:
                    break
    finally:
        dbg.script_dirs.pop()
        dbg.nesting -= 1
    return CommandResult("\n".join(out), {"script": os.path.basename(path)}, error)


@command("$$<", "$<", area="session", syntax="$$<File", summary="Run a script file, line by line",
         help="Each line is one command line (;-separated commands allowed); each is echoed as it runs.  "
              "A relative\nname is looked up next to the running script first.")
def cmd_script(dbg: "Engine", inv: Invocation) -> CommandResult:
    path, lines = _read_script(dbg, inv, inv.args.strip())
    return run_script_lines(dbg, path, lines, joined=False)


@command("$$><", "$><", area="session", syntax="$$><File", summary="Run a script file as one command block",
         help="The lines are joined with ; into one block (what control flow such as .foreach needs); comment "
              "lines are dropped.")
def cmd_script_joined(dbg: "Engine", inv: Invocation) -> CommandResult:
    path, lines = _read_script(dbg, inv, inv.args.strip())
    return run_script_lines(dbg, path, lines, joined=True)


_ARG_RE = re.compile(r"\$\{\$(arg\d+|argc)\}")


@command("$$>a<", "$>a<", area="session", syntax="$$>a<File [Arg1 Arg2 ...]",
         summary="Run a script file with arguments (${$arg1} ...)",
         help="${$arg1} .. ${$argN} become the arguments, ${$arg0} the file name and ${$argc} the count; the "
              "lines are\njoined with ; as for $$><.")
def cmd_script_args(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        raise inv.error("a script file name is required", 0)
    path, lines = _read_script(dbg, inv, words[0][0])
    values = {"arg0": words[0][0], "argc": str(len(words) - 1)}
    for i, (word, _) in enumerate(words[1:], start=1):
        values[f"arg{i}"] = word

    def sub(m: re.Match) -> str:
        return values.get(m.group(1), m.group(0))

    return run_script_lines(dbg, path, [_ARG_RE.sub(sub, line) for line in lines], joined=True)


# --- .foreach ------------------------------------------------------------------------------------

def _balanced(text: str, start: int, open_ch: str, close_ch: str) -> int:
    """Index just past the bracket matching text[start] (quotes respected)."""
    depth = 0
    quote = False
    for i in range(start, len(text)):
        ch = text[i]
        if ch == '"':
            quote = not quote
        elif not quote and ch == open_ch:
            depth += 1
        elif not quote and ch == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
    raise CommandError(f"Missing '{close_ch}'", start)


@command(".foreach", area="session", syntax=".foreach [/pS n] [/ps n] (Variable { InCommands }) { OutCommands }",
         summary="Run commands for each token of another command's output",
         help="""
Runs InCommands, splits their output on whitespace, and runs OutCommands once per token with
Variable replaced by the token (as a whole word).  /pS n skips n tokens first; /ps n skips n
tokens after each one used.  Example: .foreach (m { lm 1m }) { .echo m }""")
def cmd_foreach(dbg: "Engine", inv: Invocation) -> CommandResult:
    args = inv.args
    pos = 0
    initial_skip = 0
    step_skip = 0
    while True:
        m = re.match(r"\s*/(pS|ps)\s+(\S+)", args[pos:])
        if not m:
            break
        value = dbg.evaluate(m.group(2), inv.args_offset + pos + m.start(2))
        if m.group(1) == "pS":
            initial_skip = value
        else:
            step_skip = value
        pos += m.end()
    rest = args[pos:]
    lead = len(rest) - len(rest.lstrip())
    pos += lead
    if not args[pos:].startswith("("):
        raise inv.error("expected ( Variable { InCommands } )", pos)
    close = _balanced_at(inv, args, pos, "(", ")")
    inner = args[pos + 1:close - 1]
    m = re.match(r"\s*(\S+)\s*\{", inner)
    if not m:
        raise inv.error("expected a variable and { InCommands }", pos + 1)
    variable = m.group(1)
    brace = pos + 1 + m.end() - 1
    in_end = _balanced_at(inv, args, brace, "{", "}")
    in_commands = args[brace + 1:in_end - 1]
    if args[in_end:close - 1].strip():
        raise inv.syntax_error(in_end)
    out_start = close + len(args[close:]) - len(args[close:].lstrip())
    if not args[out_start:].startswith("{"):
        raise inv.error("expected { OutCommands }", out_start)
    out_end = _balanced_at(inv, args, out_start, "{", "}")
    if args[out_end:].strip():
        raise inv.syntax_error(out_end)
    out_commands = args[out_start + 1:out_end - 1]
    produced = dbg._execute_line(in_commands)
    if produced.error:
        return CommandResult(produced.text, produced.data, True)
    tokens = produced.text.split()[initial_skip:]
    if step_skip:
        tokens = tokens[::step_skip + 1]
    if len(tokens) > MAX_FOREACH:
        raise inv.error(f".foreach: {len(tokens)} tokens is more than {MAX_FOREACH}")
    pattern = re.compile(r"(?<![\w$@!])" + re.escape(variable) + r"(?![\w])")
    out = []
    for token in tokens:
        r = dbg._execute_line(pattern.sub(lambda _m: token, out_commands))
        if r.text:
            out.append(r.text)
        if r.error:
            return CommandResult("\n".join(out), {"tokens": tokens}, True)
    return CommandResult("\n".join(out), {"tokens": tokens})


def _balanced_at(inv: Invocation, text: str, start: int, open_ch: str, close_ch: str) -> int:
    try:
        return _balanced(text, start, open_ch, close_ch)
    except CommandError as exc:
        raise inv.error(exc.message, start) from None
