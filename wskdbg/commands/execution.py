"""Execution control and breakpoints: g, t, p, gu, bp, bu, bm, bl, bc, bd, be, .host, .reboot."""

from __future__ import annotations

import fnmatch
import re
import time
from typing import TYPE_CHECKING, Any

from stack.kernel.kernel import BOOT_EPOCH_S

from wskdbg import source
from wskdbg.breakpoints import Breakpoint, BreakpointError
from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command, tokenize
from wskdbg.render.fmt import addr64
from wskdbg.render.stop import BREAK_LINE, fatal_error_lines, handoff_lines, seconds

if TYPE_CHECKING:
    from wskdbg.engine import Engine, StopInfo


# --- presenting a stop ------------------------------------------------------------------------

def render_stop(dbg: "Engine", stop: "StopInfo") -> list[str]:
    """The lines printed when the machine stops (see wskdbg.render.stop)."""
    reason = stop.reason
    position = f"event {stop.events_run}, hand-off {stop.seq}"
    if reason == "bugcheck":
        info = dbg.scheduler.halted
        top = dbg.stack(info.host)[0]
        dbg.note_address(addr64(top.location))
        return fatal_error_lines(info.code, info.params, top.location)
    if reason == "halted":
        info = dbg.scheduler.halted
        return [f"The machine bug-checked ({info.name} ({info.code:x}) on {info.host}) and is halted.",
                "Inspect it (!analyze -v, k, !irp ...) or restart it with .reboot."]
    if reason == "idle":
        return [f"The machine is idle: no events are pending ({position}, virtual time {seconds(stop.time_ns)})."]
    if reason == "timecap":
        nxt = int(stop.note) if stop.note.isdigit() else 0
        return [f"Stopped by the run cap ({seconds(dbg.run_cap_ns)} of virtual time per g) at {position}, "
                f"virtual time {seconds(stop.time_ns)}; the next event is due at {seconds(nxt)} (g continues)."]
    if reason == "eventcap":
        return [f"Stopped after {dbg.event_cap} events without reaching a breakpoint ({position}, "
                f"virtual time {seconds(stop.time_ns)}); g continues."]
    if reason == "context":
        k = dbg.kernel_of(stop.host or dbg.current_host)
        addr = k.symbol_address("nt!KiIdleLoop")
        return ["nt!KiIdleLoop:", f"{addr64(addr)} [{stop.host}] end: {stop.note}; the stepped context "
                                  "returned to the scheduler"]
    if reason == "break" and stop.event is None:
        k = dbg.kernel
        addr = k.symbol_address("nt!DbgBreakPointWithStatus")
        lines = [BREAK_LINE, "nt!DbgBreakPointWithStatus:", f"{addr64(addr)} cc              int     3"]
        if stop.note:
            lines.append(stop.note)
        return lines
    ev = stop.event
    host = stop.host or dbg.current_host
    lines = []
    if reason == "breakpoint" and stop.breakpoint is not None:
        if stop.condition_error:
            lines.append(f"Breakpoint {stop.breakpoint.id}'s condition failed to evaluate; breaking:")
            lines.extend(stop.condition_error.splitlines())
        lines.append(f"Breakpoint {stop.breakpoint.id} hit")
    elif reason == "break":
        lines.append(BREAK_LINE)
    top = dbg.stack(host)[0]
    dbg.note_address(addr64(top.location))
    return lines + handoff_lines(top.call_site, top.location, host, ev)


def stop_data(dbg: "Engine", stop: "StopInfo") -> dict[str, Any]:
    ev = stop.event
    return {
        "reason": stop.reason, "events_run": stop.events_run, "hand_off": stop.seq, "time_ns": stop.time_ns,
        "host": stop.host, "event": None if ev is None else {"kind": ev.kind, "seq": ev.seq,
                                                             "depth": ev.depth, "description": ev.describe()},
        "breakpoint": stop.breakpoint.id if stop.breakpoint else None,
        "frames": [f.call_site for f in dbg.stack(stop.host)] if stop.host in dbg.kernels else [],
    }


# --- running ----------------------------------------------------------------------------------

def run(dbg: "Engine", mode: str, count: int = 1, target: str | None = None,
        target_host: str | None = None) -> CommandResult:
    """Run the machine (g/t/p/gu), `count` steps; breakpoint commands may continue a `g`."""
    if dbg.in_bp_command:
        dbg.pending_resume = mode  # run after the breakpoint's commands, by the outer loop
        return CommandResult("")
    lines: list[str] = []
    stops: list[dict[str, Any]] = []
    deadline: int | None = None
    remaining = count
    while remaining > 0:
        req = dbg.make_request(mode, target=target, target_host=target_host, deadline_ns=deadline)
        if mode == "g" and deadline is None:
            deadline = req.time_limit_ns
        line_step = source.step_start(dbg, mode)
        stop = dbg.resume(req)
        for _ in range(source.LINE_STEP_LIMIT if line_step else 0):  # l+t: a step is a source line
            if stop.reason != "step" or not source.same_line(line_step, dbg):
                break
            stop = dbg.resume(dbg.make_request(mode))
        lines.extend(dbg.take_run_output())
        lines.extend(render_stop(dbg, stop))
        lines.extend(source.prompt_source(dbg))
        stops.append(stop_data(dbg, stop))
        remaining -= 1
        if stop.reason == "breakpoint" and stop.breakpoint is not None:
            bp = stop.breakpoint
            if bp.one_shot:
                dbg.breakpoints.remove([bp.id])
            if bp.command and mode == "g":
                out, resume = _run_breakpoint_command(dbg, bp.command)
                lines.extend(out)
                if resume is not None:
                    mode, remaining, target = resume, 1, None
                    if resume != "g":
                        deadline = None
                    continue
            break
        if stop.reason != "step":
            break
    return CommandResult("\n".join(lines), {"stops": stops})


def _run_breakpoint_command(dbg: "Engine", text: str) -> tuple[list[str], str | None]:
    if dbg.nesting >= 16:
        return ["Breakpoint command nesting too deep; not run."], None
    saved = (dbg.in_bp_command, dbg.pending_resume)
    dbg.in_bp_command, dbg.pending_resume = True, None
    dbg.nesting += 1
    try:
        result = dbg._execute_line(text)
        resume = dbg.pending_resume
    finally:
        dbg.nesting -= 1
        dbg.in_bp_command, dbg.pending_resume = saved
    return ([result.text] if result.text else []), resume


def _count(dbg: "Engine", inv: Invocation) -> int:
    if not inv.args:
        return 1
    value = dbg.evaluate(inv.args, inv.args_offset)
    if value == 0 or value > 100_000:
        raise inv.error(f"step count must be 1..0n100000, not {value:#x}", 0)
    return value


@command("g", area="execution", syntax="g [BreakAddress]", mutates=True,
         summary="Go: run until a breakpoint, a bug check, idle, or the run cap",
         help="""
Runs the machine until a breakpoint hits, the machine bug-checks, nothing is left to run, or the
run cap is reached (60 s of virtual time or 2,000,000 events per g by default; see .runcap), so a
world with long timers still returns.  With BreakAddress (a routine, e.g. g echosrv!DriverEntry)
the machine also stops when that routine is entered (a one-time breakpoint).
Breakpoint command strings run only when the hit happens during g; a `g` inside them continues.
DbgPrint output appears as it happens.  Ctrl+C (or engine.break_in()) breaks in.""")
def cmd_g(dbg: "Engine", inv: Invocation) -> CommandResult:
    target = None
    host = None
    if inv.args:
        words = tokenize(inv.args)
        if len(words) != 1:
            raise inv.syntax_error(words[1][1] if len(words) > 1 else 0)
        symbol, _address = _resolve_code_target(dbg, inv, words[0][0], words[0][1], None)
        target, host = symbol.lower(), dbg.current_host
    return run(dbg, "g", target=target, target_host=host)


@command("t", area="execution", syntax="t [Count]", mutates=True,
         summary="Trace: stop at the next hand-off (steps into calls)",
         help="""
Stops at the next hand-off of any kind on any host: a routine entry or return, IoCallDriver,
IoCompleteRequest, a completion routine, a DPC, a thread switch, a frame on the wire ...
Each stop prints the symbol line and `address [host] kind: description`.  Count (hex) repeats.""")
def cmd_t(dbg: "Engine", inv: Invocation) -> CommandResult:
    return run(dbg, "t", _count(dbg, inv))


@command("p", area="execution", syntax="p [Count]", mutates=True,
         summary="Step over: the next hand-off at this call level or above, in this context",
         help="""
Stops at the next hand-off in the same execution context (the same thread, or the same DPC/timer
event) at the current call level or shallower: a call is a hand-off of its caller, so `p` at a
`call X` stop runs all of X and stops as X returns, shown as WinDbg shows it: in the caller at the
return address (the RetAddr `k` showed for X).  When the context ends (its event returns to the
scheduler) p stops there.  Between events p acts like t.  Count (hex) repeats.""")
def cmd_p(dbg: "Engine", inv: Invocation) -> CommandResult:
    return run(dbg, "p", _count(dbg, inv))


@command("gu", area="execution", syntax="gu", mutates=True,
         summary="Go up: run until the current routine returns",
         help="""
Runs until the routine the machine is stopped in returns (its `ret` hand-off), judged by call
depth in the same execution context, as WinDbg judges it by stack depth, and stops where WinDbg
does: in the caller, at the return address (frame 0's RetAddr in `k` before gu).""")
def cmd_gu(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    if not dbg.paused_mid_event:
        raise inv.error("gu: no routine is executing (the machine is between events); use t or g")
    return run(dbg, "gu")


@command(".runcap", area="execution", syntax=".runcap [Seconds|off] [/e Events]",
         summary="Show or set how much virtual time (and how many events) one g may run",
         help="""
`.runcap 10` lets each g run at most 10 s of virtual time; `.runcap off` removes the time cap
(the event cap stays, so a zero-time loop still returns); `/e N` sets the event cap.""")
def cmd_runcap(dbg: "Engine", inv: Invocation) -> str:
    words = tokenize(inv.args)
    i = 0
    while i < len(words):
        word, at = words[i]
        if word.lower() == "/e":
            if i + 1 >= len(words):
                raise inv.error("/e needs an event count", at)
            n = dbg.evaluate(words[i + 1][0], inv.args_offset + words[i + 1][1])
            if n <= 0:
                raise inv.error("the event cap must be positive", words[i + 1][1])
            dbg.event_cap = n
            i += 2
            continue
        if word.lower() == "off":
            dbg.run_cap_ns = 1 << 62
        else:
            try:
                secs = float(word)
            except ValueError:
                raise inv.syntax_error(at) from None
            if not 0 < secs < 1e9:
                raise inv.error("seconds must be positive", at)
            dbg.run_cap_ns = int(secs * 1_000_000_000)
        i += 1
    cap = "off" if dbg.run_cap_ns >= 1 << 62 else seconds(dbg.run_cap_ns)
    return f"Run cap: {cap} of virtual time, {dbg.event_cap} events per g"


# --- breakpoints ------------------------------------------------------------------------------

_BP_ID = re.compile(r"b[pu](\d+)", re.IGNORECASE)


def _resolve_code_target(dbg: "Engine", inv: Invocation, text: str, at: int,
                         host: str | None) -> tuple[str, int]:
    """A routine for a code breakpoint: (canonical symbol, address or 0 when deferred)."""
    host = host or dbg.current_host
    if "!" in text and not text.startswith("!"):
        if "+" in text or "-" in text.partition("!")[2]:
            raise inv.error("breakpoints go on routine entries (hand-offs), not inside a routine", at)
        found = dbg.resolve_routine(text, host)
        if found is not None:
            return found
        module = text.partition("!")[0]
        if dbg.kernel_of(host).module(module) is not None:
            raise inv.error(f"Couldn't resolve error at '{text}'", at)
        return text, 0
    address = dbg.evaluate(text, inv.args_offset + at, host)
    name = dbg.kernel_of(host).symbol_for_address(address)
    if name is None or "+" in name:
        raise inv.error(f"no routine starts at {addr64(address)} (breakpoints go on routine entries)", at)
    return name, address


def _parse_bp(dbg: "Engine", inv: Invocation, symbolic: bool) -> CommandResult:
    args = inv.args
    words = tokenize(args)
    quoted = [args[at] == '"' for _, at in words]
    bp = Breakpoint(id=-1, kind="code", expression="", symbolic=symbolic)
    m = _BP_ID.fullmatch(inv.name)
    explicit_id = int(m.group(1), 10) if m else None
    if explicit_id is not None and explicit_id > 999:
        raise inv.error("breakpoint IDs go up to 0n999", 0)
    event_words: list[tuple[str, int]] = []
    positional: list[tuple[str, int, bool]] = []
    i = 0
    is_event = False

    def value_after(i: int) -> tuple[str, int]:
        if i + 1 >= len(words):
            raise inv.error(f"{words[i][0]} needs a value", words[i][1])
        return words[i + 1]

    while i < len(words):
        word, at = words[i]
        if not quoted[i] and word.startswith("/"):
            opt = word[1:]
            if opt == "1":
                bp.one_shot = True
            elif opt in ("c", "C", "n"):
                val, vat = value_after(i)
                n = dbg.evaluate(val, inv.args_offset + vat)
                if opt == "c":
                    bp.max_depth = n
                elif opt == "C":
                    bp.min_depth = n
                else:
                    if not 1 <= n <= 0xFFFF:
                        raise inv.error("passes must be 1..0xffff", vat)
                    bp.passes = bp.passes_left = n
                i += 1
            elif opt == "w":
                val, vat = value_after(i)
                if not quoted[i + 1]:
                    raise inv.error('/w needs a quoted condition: /w "expression"', vat)
                from wskdbg.expr import ExprError, parse
                try:
                    parse(val, dbg.radix)
                except ExprError as exc:
                    raise CommandError(exc.message, inv.args_offset + vat + 1 + exc.position) from None
                bp.condition = val
                i += 1
            elif opt == "h":
                val, vat = value_after(i)
                host = next((h for h in dbg.kernels if h.lower() == val.lower()), None)
                if host is None:
                    raise inv.error(f"no host named '{val}'", vat)
                bp.host = host
                i += 1
            elif opt == "e":
                is_event = True
            else:
                raise inv.error(f"unknown option '{word}'", at)
            i += 1
            continue
        if is_event and not quoted[i]:
            event_words.append((word, at))
        else:
            positional.append((word, at, quoted[i]))
        i += 1

    command_text = None
    if positional and positional[-1][2]:
        command_text = positional.pop()[0]
    if is_event:
        if positional:
            raise inv.syntax_error(positional[0][1])
        if not event_words:
            raise inv.error("bp /e needs an event kind, e.g. bp /e irp.complete or bp /e tcp.state ESTABLISHED",
                            len(args))
        kind = event_words[0][0].lower()
        if not re.fullmatch(r"[a-z0-9_*][a-z0-9_.*]*", kind):
            raise inv.error(f"bad event kind '{event_words[0][0]}'", event_words[0][1])
        bp.kind = "event"
        bp.event_kind = kind
        for word, at in event_words[1:]:
            name, eq, value = word.partition("=")
            if eq and (not name or not value):
                raise inv.syntax_error(at)
            bp.predicates.append((name, value) if eq else ("", word))
        bp.expression = " ".join(w for w, _ in event_words)
    else:
        if not positional:
            raise inv.error("an address or module!Routine is required", len(args))
        if len(positional) > 2:
            raise inv.syntax_error(positional[2][1])
        text, at, _ = positional[0]
        symbol, address = _resolve_code_target(dbg, inv, text, at, bp.host)
        bp.symbol = bp.expression = symbol
        bp.address = address
        if len(positional) == 2:
            n = dbg.evaluate(positional[1][0], inv.args_offset + positional[1][1])
            if not 1 <= n <= 0xFFFF:
                raise inv.error("passes must be 1..0xffff", positional[1][1])
            bp.passes = bp.passes_left = n
    bp.command = command_text
    notes: list[str] = []
    existing = dbg.breakpoints.find_code(bp.symbol, bp.host) if bp.kind == "code" and explicit_id is None else None
    if existing is not None:
        bp.id = existing.id
        notes.append(f"breakpoint {bp.id} redefined")
    else:
        bp.id = explicit_id if explicit_id is not None else dbg.breakpoints.next_id()
    if bp.kind == "code" and bp.address == 0 and not symbolic:
        notes.append(f"Bp expression '{bp.symbol}' could not be resolved, adding deferred bp")
    try:
        dbg.breakpoints.add(bp)
    except BreakpointError as exc:
        raise inv.error(str(exc)) from None
    return CommandResult("\n".join(notes), {"breakpoint": bp_data(bp)})


BP_HELP = """
Sets a breakpoint on a routine entry (every @kroutine and the kernel's own frames such as
nt!IofCallDriver and nt!IofCompleteRequest) or on an event of the machine.

  bp echosrv!WskSampleAcceptEvent          break when the routine is entered
  bp3 tcpip!TcpTcbSend 5                   ID 3; break on the 5th pass (then every time)
  bp /1 nt!IofCompleteRequest              one-shot: deleted after the first hit
  bp /c 6 nt!IofCallDriver                 only while the call depth is below 6 (/C: above)
  bp /w "@rcx == ffffc10a`3b2e1a30" X      only when the MASM condition is nonzero
  bp /h client tcpip!TcpTcbSend            only on host client (default: any host)
  bp X "kb; g"                             run commands on each hit during g (g continues)

Event breakpoints (bp /e Kind [Field=Value | Value]...) stop on any hand-off of that kind:
  bp /e bugcheck                           the moment KeBugCheckEx is called
  bp /e irp IRP_MJ_INTERNAL_DEVICE_CONTROL any irp.* event whose fields or text name the value
  bp /e irp.complete status=STATUS_CANCELLED
  bp /e tcp.state ESTABLISHED              a TCP connection reaching ESTABLISHED
  bp /e tcp.retransmit fast                a fast retransmit (reason fast, sack or rto)
  bp /e frame port=40007                   a frame (frame.tx / frame.rx) with any *port field = 40007
  bp /n 3 /e dpc.run                       /n Passes for event breakpoints
A Kind matches itself and every kind under it (irp matches irp.dispatch, irp.complete ...).
Field=Value compares the named field (or any field ending in the name, so port matches src_port);
a bare Value matches any field, IRP major name, NTSTATUS name or word of the description.
`bp` on a module that is not loaded adds a deferred breakpoint; a bp goes away when its module
unloads, a bu stays (symbolic).  At most 32 breakpoints.  Passes count only during g."""


@command("bp", area="execution", syntax='bp[ID] [/1] [/c MaxDepth] [/C MinDepth] [/w "Cond"] [/h Host] '
         '[/n Passes] [/e Kind [Field=Value]...] [Address|module!Routine [Passes]] ["Commands"]',
         summary="Set a breakpoint on a routine or an event", help=BP_HELP, pattern=r"bp\d+")
def cmd_bp(dbg: "Engine", inv: Invocation) -> CommandResult:
    return _parse_bp(dbg, inv, symbolic=False)


@command("bu", area="execution", syntax='bu[ID] [options as bp] module!Routine [Passes] ["Commands"]',
         summary="Set a symbolic (unresolved) breakpoint that survives module unload and reload",
         help="Like bp, but the breakpoint stays tied to the name: it is deferred while the module is not "
              "loaded and survives\nunload and reload (and .reboot).  See help bp for the options.",
         pattern=r"bu\d+")
def cmd_bu(dbg: "Engine", inv: Invocation) -> CommandResult:
    return _parse_bp(dbg, inv, symbolic=True)


@command("bm", area="execution", syntax='bm [/1] [/c N] [/w "Cond"] [/h Host] Pattern ["Commands"]',
         summary="Set breakpoints on every routine matching a wildcard pattern",
         help="""
`bm echosrv!WskSample*` sets a breakpoint on each matching routine of the loaded modules (of the
current host) and lists them as `  1: fffff801`0bf9b1c0 @!"echosrv!WskSampleAcceptEvent"`.""")
def cmd_bm(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    quoted = [inv.args[at] == '"' for _, at in words]
    pattern = None
    options: list[str] = []
    command_text = None
    i = 0
    while i < len(words):
        word, at = words[i]
        if quoted[i]:
            if pattern is None:
                raise inv.syntax_error(at)
            command_text = word
        elif word.startswith("/"):
            options.append(inv.args[at:at + len(word)])
            if word in ("/c", "/C", "/w", "/h", "/n"):
                if i + 1 >= len(words):
                    raise inv.error(f"{word} needs a value", at)
                nxt = words[i + 1]
                options.append(inv.args[nxt[1]:nxt[1] + len(nxt[0]) + (2 if quoted[i + 1] else 0)])
                i += 1
            elif word != "/1":
                raise inv.error(f"unknown option '{word}'", at)
        elif pattern is None:
            pattern = (word, at)
        else:
            raise inv.syntax_error(at)
        i += 1
    if pattern is None:
        raise inv.error("a pattern such as echosrv!WskSample* is required", len(inv.args))
    pat, pat_at = pattern
    module_pat, bang, routine_pat = pat.partition("!")
    if not bang:
        module_pat, routine_pat = "*", pat
    k = dbg.kernel
    matches: list[tuple[int, str]] = []
    from stack.kernel.symbols import CATALOG
    for mod in k.modules:
        if not fnmatch.fnmatchcase(mod.name.lower(), module_pat.lower()):
            continue
        names = dict.fromkeys(list(CATALOG.get(mod.name, ())) + list(mod.symbols))
        for routine in names:
            if fnmatch.fnmatchcase(routine.lower(), routine_pat.lower()):
                symbol = f"{mod.name}!{routine}"
                matches.append((k.symbol_address(symbol), symbol))
    if not matches:
        raise inv.error(f"No matching code symbols found for '{pat}', no breakpoints set", pat_at)
    if len(dbg.breakpoints) + len(matches) > 32:
        raise inv.error(f"{len(matches)} routines match: that would pass the limit of 32 breakpoints", pat_at)
    lines = []
    made = []
    for address, symbol in sorted(matches):
        sub = f"{' '.join(options)} {symbol}" + (f' "{command_text}"' if command_text is not None else "")
        sub_inv = Invocation(sub, "bp", sub.strip(), 0, inv.spec)
        _parse_bp(dbg, sub_inv, symbolic=False)
        bp = dbg.breakpoints.find_code(symbol, _host_option(dbg, options))
        if bp is not None:
            bp.from_bm = True
            made.append(bp_data(bp))
            lines.append(f"{bp.id:>3}: {addr64(address)} @!\"{symbol}\"")
    return CommandResult("\n".join(lines), {"breakpoints": made})


def _host_option(dbg: "Engine", options: list[str]) -> str | None:
    for i, opt in enumerate(options):
        if opt == "/h" and i + 1 < len(options):
            return next((h for h in dbg.kernels if h.lower() == options[i + 1].lower()), None)
    return None


def bl_row(bp: Breakpoint) -> str:
    state = "e" if bp.enabled else "d"
    counts = f"{bp.passes_left:04x} ({bp.passes:04x})"
    if bp.kind == "event":
        row = f"{bp.id:>2} {state} {'event':<17}     {counts} {bp.expression}"
    elif bp.address:
        row = f"{bp.id:>2} {state} {addr64(bp.address)}     {counts} {bp.symbol}"
    else:
        row = f"{bp.id:>2} {state}u{'':13}{counts} ({bp.symbol})"
    extras = []
    if bp.one_shot:
        extras.append("/1")
    if bp.max_depth is not None:
        extras.append(f"/c {bp.max_depth:#x}")
    if bp.min_depth is not None:
        extras.append(f"/C {bp.min_depth:#x}")
    if bp.host:
        extras.append(f"/h {bp.host}")
    if bp.condition:
        extras.append(f'/w "{bp.condition}"')
    if extras:
        row += " " + " ".join(extras)
    if bp.command is not None:
        row += f' "{bp.command}"'
    return row


def bp_data(bp: Breakpoint) -> dict[str, Any]:
    return {"id": bp.id, "kind": bp.kind, "enabled": bp.enabled, "symbol": bp.symbol, "address": bp.address,
            "expression": bp.expression, "passes": bp.passes, "passes_left": bp.passes_left,
            "condition": bp.condition, "command": bp.command, "hits": bp.hits, "host": bp.host,
            "symbolic": bp.symbolic, "one_shot": bp.one_shot}


@command("bl", area="execution", syntax="bl", summary="List breakpoints",
         help="Rows: `id e|d[u] address  passes-left (passes) module!Routine [options] [\"commands\"]`; "
              "u marks a deferred breakpoint\nwhose module is not loaded; event breakpoints show `event` "
              "and their kind and predicates.")
def cmd_bl(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    bps = list(dbg.breakpoints)
    return CommandResult("\n".join(bl_row(bp) for bp in bps), {"breakpoints": [bp_data(bp) for bp in bps]})


def _ids(dbg: "Engine", inv: Invocation) -> list[int]:
    try:
        return dbg.breakpoints.ids_from_spec(inv.args)
    except BreakpointError as exc:
        raise inv.error(str(exc), 0) from None


@command("bc", area="execution", syntax="bc ID|List|Range|*", summary="Clear (delete) breakpoints",
         help="IDs are decimal: `bc 1`, `bc 1 3`, `bc 1,3`, `bc 1-3`, `bc *`.")
def cmd_bc(dbg: "Engine", inv: Invocation) -> CommandResult:
    return CommandResult("", {"cleared": dbg.breakpoints.remove(_ids(dbg, inv))})


@command("bd", area="execution", syntax="bd ID|List|Range|*", summary="Disable breakpoints",
         help="A disabled breakpoint stays listed (state d) but never hits.  IDs as for bc.")
def cmd_bd(dbg: "Engine", inv: Invocation) -> CommandResult:
    return CommandResult("", {"disabled": dbg.breakpoints.set_enabled(_ids(dbg, inv), False)})


@command("be", area="execution", syntax="be ID|List|Range|*", summary="Enable breakpoints",
         help="IDs as for bc.")
def cmd_be(dbg: "Engine", inv: Invocation) -> CommandResult:
    return CommandResult("", {"enabled": dbg.breakpoints.set_enabled(_ids(dbg, inv), True)})


# --- position, time, hosts, reboot ---------------------------------------------------------------

def _state_line(dbg: "Engine") -> str:
    crash = dbg.scheduler.halted
    if crash is not None:
        return f"bug-checked on {crash.host}: {crash.name} ({crash.code:x})"
    ev = dbg.live_event()
    if ev is not None:
        return f"stopped inside event {dbg.scheduler.events_run} on {ev.host} at hand-off {ev.seq} ({ev.kind})"
    return "stopped between events"


@command(".position", area="execution", syntax=".position",
         summary="Show the position: event N, hand-off M, virtual time",
         help="The position names one moment of a deterministic run exactly: events run by the scheduler "
              "and\nhand-offs published on the event bus (same seed + same commands = same position).")
def cmd_position(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    pos = dbg.position()
    text = "\n".join([f"Position: event {pos.events_run}, hand-off {pos.seq}",
                      f"Virtual time: {seconds(pos.time_ns)}", f"State: {_state_line(dbg)}",
                      f"Current host: {dbg.current_host}"])
    return CommandResult(text, {"events_run": pos.events_run, "hand_off": pos.seq, "time_ns": pos.time_ns,
                                "host": dbg.current_host})


@command(".time", area="execution", syntax=".time", summary="Show the emulated system time and uptime",
         help="The machines boot at 2026-01-01 00:00:00 UTC of emulated time; only virtual time passes.")
def cmd_time(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    now = dbg.scheduler.now_ns
    secs, ns = divmod(now, 1_000_000_000)
    t = time.gmtime(BOOT_EPOCH_S + secs)
    stamp = f"{time.strftime('%a %b', t)} {t.tm_mday:>2} {time.strftime('%H:%M:%S', t)}"
    ms = ns // 1_000_000
    days, rem = divmod(secs, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, s = divmod(rem, 60)
    pos = dbg.position()
    lines = [f"Debug session time: {stamp}.{ms:03d} {t.tm_year} (UTC + 0:00)",
             f"System Uptime: {days} days {hours}:{minutes:02d}:{s:02d}.{ms:03d}",
             f"Position: event {pos.events_run}, hand-off {pos.seq}"]
    return CommandResult("\n".join(lines), {"time_ns": now})


@command(".host", area="execution", syntax=".host [Name]", summary="List hosts or switch the current host",
         help="""
Commands act on the current host (winsrv when present).  `.host client` switches to it; a stop
switches to the host it stopped on.  The prompt stays `0: kd> ` (one processor per host).""")
def cmd_host(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if len(words) > 1:
        raise inv.syntax_error(words[1][1])
    if words:
        dbg.set_host(words[0][0])
        return CommandResult(f"Current host is now {dbg.current_host}", {"host": dbg.current_host})
    lines = []
    hosts = getattr(dbg.world, "hosts", None)
    for name, k in dbg.kernels.items():
        mark = "*" if name == dbg.current_host else " "
        extra = ""
        if isinstance(hosts, dict) and name in hosts:
            h = hosts[name]
            addrs = [str(a) for a in (getattr(h, "ipv4", None), getattr(h, "ipv6", None)) if a is not None]
            extra = "  " + "  ".join(addrs) if addrs else ""
        lines.append(f" {mark} {name:<10} modules {len(k.modules):>2}  threads {len(k.threads):>2}{extra}")
    return CommandResult("\n".join(lines), {"hosts": list(dbg.kernels), "current": dbg.current_host})


@command(".reboot", area="execution", syntax=".reboot", mutates=True,
         summary="Restart the world from the same factory and seed (breakpoints are kept)",
         help="A fresh machine from the seed: same addresses, same events.  Breakpoints stay set (bp ones are "
              "resolved again).")
def cmd_reboot(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    dbg.reboot()
    pos = dbg.position()
    lines = [f"Shutdown occurred; rebooting the lab from seed {dbg.seed}.",
             f"Connected to {', '.join(dbg.kernels)} at event {pos.events_run}, hand-off {pos.seq}.",
             "Kernel Debugger connection established."]
    return CommandResult("\n".join(lines), {"seed": dbg.seed, "hosts": list(dbg.kernels)})

