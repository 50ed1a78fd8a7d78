"""WPP tracing and debug output: !wmitrace.*, tracelog, tracefmt, !dbgprint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stack.kernel.wpp import LEVEL_NAMES, TRACE_LEVEL_VERBOSE, WppError, WppPrefixError, check_prefix

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.render.fmt import addr64_nobt

if TYPE_CHECKING:
    from wskdbg.engine import Engine

LOGGER_ID_BASE = 0x20  # logger ids below are taken by the system loggers


def logger_id(lid: int) -> str:
    """A logger id as every tracing command prints it (tracelog and !wmitrace alike): 0x20."""
    return f"0x{lid:02x}"
BUFFER_RECORDS = 4096


def _sessions(dbg: "Engine") -> list[tuple[int, Any]]:
    return [(LOGGER_ID_BASE + i, s) for i, s in enumerate(dbg.kernel.wpp.sessions.values())]


def _find_session(dbg: "Engine", inv: Invocation, text: str, at: int) -> tuple[int, Any]:
    sessions = _sessions(dbg)
    for lid, s in sessions:
        if s.name.lower() == text.lower():
            return lid, s
    try:
        wanted = int(text, 16)
    except ValueError:
        wanted = None
    for lid, s in sessions:
        if lid == wanted:
            return lid, s
    names = ", ".join(s.name for _, s in sessions) or "none running"
    raise inv.error(f"no trace session '{text}' (sessions: {names})", at)


def _int(dbg: "Engine", inv: Invocation, text: str, at: int) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return dbg.evaluate(text, inv.args_offset + at)


def _options(inv: Invocation, words: list[tuple[str, int]], valued: set[str], flags: set[str]) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    i = 0
    while i < len(words):
        word, at = words[i]
        key = word.lower()
        if key in valued:
            if i + 1 >= len(words):
                raise inv.error(f"{word} needs a value", at)
            out[key] = words[i + 1]
            i += 2
        elif key in flags:
            out[key] = ("", at)
            i += 1
        else:
            raise inv.error(f"unknown option '{word}'", at)
    return out


def _provider_line(dbg: "Engine", guid: str) -> str:
    p = dbg.kernel.wpp.providers.get(guid)
    return f"{p.name} ({guid})" if p else guid


def _session_lines(dbg: "Engine", lid: int, s: Any) -> list[str]:
    lines = [f"Logger Name:            {s.name}", f"Logger Id:              {logger_id(lid)}",
             f"Buffer Size:            {BUFFER_RECORDS} records",
             f"Events Logged:          {s.total}", f"Events Lost:            {s.events_lost}",
             f"Buffered:               {len(s.buffer)}",
             f"Real Time mode:         {'enabled' if s.realtime else 'disabled'}"]
    for guid, (flags, level) in s.providers.items():
        lines.append(f"Enabled tracing:        {_provider_line(dbg, guid)} "
                     f"Flags {flags:#x} Level {level} ({LEVEL_NAMES.get(level, level)})")
    return lines


TRACELOG_HELP = """
  tracelog -start Name -guid #GUID|Provider -flag F -level L   start a session (flag hex, level 0-5)
  tracelog -enable Name -guid G -flag F -level L               change a running session
  tracelog -disable Name -guid G                               stop tracing a provider
  tracelog -stop Name                                          stop the session
  tracelog -l                                                  list sessions
Messages are buffered in the session (a ring of 4096) and read with tracefmt or !wmitrace.logdump."""


@command("tracelog", area="tracing", syntax="tracelog -start|-enable|-disable|-stop|-l ...", mutates=True,
         summary="Start, change, stop and list WPP trace sessions", help=TRACELOG_HELP)
def cmd_tracelog(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        raise inv.error("tracelog needs -start, -enable, -disable, -stop or -l", 0)
    verb, vat = words[0]
    verb = verb.lower()
    wpp = dbg.kernel.wpp
    if verb == "-l":
        if len(words) > 1:
            raise inv.syntax_error(words[1][1])
        lines = []
        for lid, s in _sessions(dbg):
            lines += _session_lines(dbg, lid, s) + [""]
        return CommandResult("\n".join(lines).rstrip() or "No trace sessions are running.",
                             {"sessions": [s.name for _, s in _sessions(dbg)]})
    if verb not in ("-start", "-enable", "-disable", "-stop"):
        raise inv.error(f"unknown tracelog verb '{words[0][0]}'", vat)
    if len(words) < 2:
        raise inv.error(f"{words[0][0]} needs a session name", vat)
    name, nat = words[1]
    opts = _options(inv, words[2:], {"-guid", "-flag", "-flags", "-level", "-f", "-b", "-min", "-max"},
                    {"-rt", "-kd", "-cir", "-seq"})
    guid = opts["-guid"][0] if "-guid" in opts else None
    flag_opt = opts.get("-flag") or opts.get("-flags")
    flags = _int(dbg, inv, flag_opt[0], flag_opt[1]) if flag_opt else 0xFFFFFFFF
    level = _int(dbg, inv, opts["-level"][0], opts["-level"][1]) if "-level" in opts else TRACE_LEVEL_VERBOSE
    if not 0 <= level <= 255:
        raise inv.error("level must be 0..255", opts["-level"][1])
    try:
        if verb == "-start":
            if guid is None:
                raise WppError("a provider is required: -guid #GUID (or the provider's name)")
            session = wpp.start(name, guid, flags, level, buffer_records=BUFFER_RECORDS,
                                realtime="-rt" in opts)
            lid = next(lid for lid, s in _sessions(dbg) if s is session)
            lines = ["Logger Started...", f"Enabling trace to logger {logger_id(lid)}"]
            lines += _session_lines(dbg, lid, session)
        elif verb == "-enable":
            if guid is None:
                raise WppError("-enable needs -guid")
            session = wpp.enable(name, guid, flags, level)
            lid = next(lid for lid, s in _sessions(dbg) if s is session)
            lines = [f"Updating trace to logger {logger_id(lid)}"] + _session_lines(dbg, lid, session)
        elif verb == "-disable":
            if guid is None:
                raise WppError("-disable needs -guid")
            session = wpp.disable(name, guid)
            lines = [f"Disabled provider in {session.name}"]
        else:
            session = wpp.stop(name)
            lines = ["Logger Stopped...", f"Logger Name:            {session.name}",
                     f"Events Logged:          {session.total}", f"Events Lost:            {session.events_lost}"]
    except WppError as exc:
        raise inv.error(str(exc), nat) from None
    return CommandResult("\n".join(lines), {"session": name, "verb": verb})


def formatted_records(dbg: "Engine", session: Any, prefix: str | None) -> list[str]:
    wpp = dbg.kernel.wpp
    return [wpp.format_record(rec, prefix) for rec in session.buffer]


@command("tracefmt", area="tracing", syntax="tracefmt [-rt] Session [-noprefix] [-nosummary]",
         summary="Format the messages of a trace session",
         help="Default prefix `[CPU]PID.TID::time [provider]message` (times are the emulated system time).")
def cmd_tracefmt(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = [(w, a) for w, a in tokenize(inv.args) if w.lower() not in ("-rt", "-display")]
    name = None
    noprefix = nosummary = False
    for word, at in words:
        lw = word.lower()
        if lw == "-noprefix":
            noprefix = True
        elif lw == "-nosummary":
            nosummary = True
        elif lw.startswith("-"):
            raise inv.error(f"unknown option '{word}'", at)
        elif name is None:
            name = (word, at)
        else:
            raise inv.syntax_error(at)
    if name is None:
        raise inv.error("a session name is required (tracefmt -rt Name)", 0)
    lid, session = _find_session(dbg, inv, *name)
    lines = [f"Setting RealTime mode for  {session.name}", ""]
    lines += formatted_records(dbg, session, "" if noprefix else None)
    if not nosummary:
        lines += ["", f"Total Buffers Processed {1 if session.buffer else 0}",
                  f"Total Events  Processed {len(session.buffer)}", f"Total Events  Lost      {session.events_lost}"]
    return CommandResult("\n".join(lines), {"session": session.name, "messages": len(session.buffer)})


@command("!wmitrace.strdump", area="tracing", syntax="!wmitrace.strdump", summary="List the trace sessions",
         help="The logger contexts: id, address and name of each running session.")
def cmd_strdump(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    sessions = _sessions(dbg)
    base = dbg.kernel.nonpaged_region.base - 0x4000
    lines = ["(WmiTrace)StrDump Generic", f"  LoggerContext Array @ 0x{addr64_nobt(base)} [64 Elements]"]
    for lid, s in sessions:
        lines.append(f"    Logger Id {logger_id(lid)} @ 0x{addr64_nobt(base + 0x100 + lid * 0x40)} Named '{s.name}'")
    return CommandResult("\n".join(lines), {"sessions": [{"id": lid, "name": s.name} for lid, s in sessions]})


@command("!wmitrace.logdump", area="tracing", syntax="!wmitrace.logdump [LoggerId|LoggerName]",
         summary="Dump a trace session's buffered messages (formatted)",
         help="Without an argument, the first running session.")
def cmd_logdump(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    sessions = _sessions(dbg)
    if words:
        lid, session = _find_session(dbg, inv, *words[0])
    elif sessions:
        lid, session = sessions[0]
    else:
        raise inv.error("no trace sessions are running (start one with tracelog -start or !wmitrace.start)")
    records = formatted_records(dbg, session, dbg.state.get("wpp_prefix"))
    lines = [f"(WmiTrace)LogDump for Logger Id {logger_id(lid)}",
             f"Found Buffers: {1 if records else 0} Messages: {len(records)}, sorting entries"]
    lines += records
    lines.append(f"Total of {len(records)} Messages from {1 if records else 0} Buffers")
    return CommandResult("\n".join(lines), {"session": session.name, "messages": records})


@command("!wmitrace.start", area="tracing", syntax="!wmitrace.start LoggerName [-guid G] [-flag F] [-level L]",
         summary="Start a trace session from the debugger", mutates=True,
         help="Like tracelog -start; without -guid the session starts empty (add providers with "
              "!wmitrace.enable).")
def cmd_wmistart(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        raise inv.error("a logger name is required", 0)
    opts = _options(inv, words[1:], {"-guid", "-flag", "-level", "-cir", "-seq", "-f", "-b", "-max", "-min", "-ft"},
                    {"-kd", "-rt"})
    name = words[0][0]
    wpp = dbg.kernel.wpp
    if "-guid" not in opts:
        if name in wpp.sessions:
            raise inv.error(f"session {name} is already running", 0)
        from collections import deque

        from stack.kernel.wpp import WppSession
        wpp.sessions[name] = WppSession(name, {}, deque(maxlen=BUFFER_RECORDS), started_ns=dbg.scheduler.now_ns)
        lid = next(lid for lid, s in _sessions(dbg) if s.name == name)
        return CommandResult(f"Logger Started... Logger Id {logger_id(lid)} '{name}'", {"session": name})
    flags = _int(dbg, inv, *opts["-flag"]) if "-flag" in opts else 0xFFFFFFFF
    level = _int(dbg, inv, *opts["-level"]) if "-level" in opts else TRACE_LEVEL_VERBOSE
    try:
        session = wpp.start(name, opts["-guid"][0], flags, level, buffer_records=BUFFER_RECORDS)
    except WppError as exc:
        raise inv.error(str(exc), opts["-guid"][1]) from None
    lid = next(lid for lid, s in _sessions(dbg) if s is session)
    return CommandResult(f"Logger Started... Logger Id {logger_id(lid)} '{name}'", {"session": name})


@command("!wmitrace.enable", area="tracing", syntax="!wmitrace.enable LoggerName GUID [-level L] [-flag F]",
         summary="Enable a provider in a running session", mutates=True,
         help="GUID may be the provider's name; flag is hex, level 0-5.")
def cmd_wmienable(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if len(words) < 2:
        raise inv.error("a logger name and a provider GUID are required", len(inv.args))
    opts = _options(inv, words[2:], {"-flag", "-level"}, set())
    flags = _int(dbg, inv, *opts["-flag"]) if "-flag" in opts else 0xFFFFFFFF
    level = _int(dbg, inv, *opts["-level"]) if "-level" in opts else TRACE_LEVEL_VERBOSE
    try:
        dbg.kernel.wpp.enable(words[0][0], words[1][0], flags, level)
    except WppError as exc:
        raise inv.error(str(exc), words[1][1]) from None
    return CommandResult(f"Enabled {words[1][0]} in {words[0][0]}: flags {flags:#x} level {level}",
                         {"session": words[0][0]})


@command("!wmitrace.stop", area="tracing", syntax="!wmitrace.stop LoggerName", summary="Stop a trace session",
         mutates=True, help="The buffered messages go with the session; dump them first.")
def cmd_wmistop(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if len(words) != 1:
        raise inv.error("one logger name is required", 0)
    lid, session = _find_session(dbg, inv, *words[0])
    dbg.kernel.wpp.stop(session.name)
    return CommandResult(f"Logger Stopped... Logger Id {logger_id(lid)} '{session.name}'", {"session": session.name})


@command("!wmitrace.setprefix", area="tracing", syntax="!wmitrace.setprefix [Prefix]",
         summary="Set (or reset) the message prefix used by !wmitrace.logdump",
         help="For example `%2!s!: %!FUNC!: %8!04x!.%3!04x!: %4!s!:`; without an argument, the default "
              "`[%9!d!]%8!04X!.%3!04X!::%4!s! [%1!s!]`.")
def cmd_setprefix(dbg: "Engine", inv: Invocation) -> CommandResult:
    try:
        check_prefix(inv.args)
    except WppPrefixError as exc:
        raise inv.error(str(exc), exc.position) from None
    dbg.state["wpp_prefix"] = inv.args or None
    return CommandResult(f"Prefix is now: {inv.args or '(default)'}", {"prefix": inv.args or None})


@command("!dbgprint", area="tracing", syntax="!dbgprint", summary="Show the DbgPrint buffer of the current host",
         help="Everything the host's drivers printed with DbgPrint/DbgPrintEx (it also reaches the console as it "
              "happens).")
def cmd_dbgprint(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    text = "".join(dbg.kernel.debug_output)
    return CommandResult(text.rstrip("\n"), {"lines": text.splitlines()})

