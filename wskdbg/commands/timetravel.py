"""Time travel: t-, p-, g- and !tt (the position, a position E:S, or a percentage of the trace).

The work is done by wskdbg.timetravel (replay of the recorded inputs from the start of
the trace or, in a machine server, from the nearest checkpoint: wskdbg.checkpoints); this
module plans each trip, lands it (`land`/`perform`), and prints the stop as a forward step
would, with the WinDbg TTD line `Time Travel Position: E:S` in front.  `.checkpoints` lists
the checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wskdbg.commands.execution import render_stop, stop_data
from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.render.stop import seconds
from wskdbg.timetravel import HandOver, Plan, TimeTravelError, format_position, parse_position

if TYPE_CHECKING:
    from wskdbg.breakpoints import Breakpoint
    from wskdbg.engine import Engine

TT_LIMITS = """
Going back re-executes the world from its seed: the engine rebuilds it with the factory, runs it
with breakpoints suppressed, re-applies each recorded input (sc start/stop, !echo, !http, !ping,
!httperf, !fault, !capture start/stop, tracelog, !wmitrace.*) at the moment it took effect, and
stops at the target.  Addresses, IRPs and call stacks (k) are the same as the first time.
Landing where an input was issued lands just before it; the next t, p or g applies it and runs on,
so going forward replays the recorded future.  A new input issued in the past discards the inputs
recorded after it (a note says so); issuing exactly the next recorded input just follows history.
Cost: the REPL, `wskdbg run`, `wskdbg -c` and the TUI keep checkpoints (.checkpoints lists them), so
a trip back replays only from the latest checkpoint before its target: a few thousand hand-offs for
t-, p- and g- however long the session has run.  Without them (WSKDBG_CHECKPOINTS=0, not POSIX, a
bridge) and for a trip inside a script ($$<), .foreach or a breakpoint command, a trip re-executes
from the start of the trace (the last .reboot).  A trip that takes more than half a second shows
`Replaying N% ...` on stderr (in the TUI: its status bar), never in the transcript.
Limits: breakpoint hit and pass counts do not go back; output printed during the replay (DbgPrint,
traffic reports) is not printed again; not available with a bridge attached."""


def _count(dbg: "Engine", inv: Invocation) -> int:
    if not inv.args:
        return 1
    value = dbg.evaluate(inv.args, inv.args_offset)
    if value == 0 or value > 100_000:
        raise inv.error(f"step count must be 1..0n100000, not {value:#x}", 0)
    return value


def _position_line(dbg: "Engine") -> str:
    return f"Time Travel Position: {dbg.time_travel.position()}"


def report(dbg: "Engine", breakpoint: "Breakpoint | None" = None, notes: tuple[str, ...] = ()) -> CommandResult:
    """What a trip in time prints: notes, the position, then the stop as a forward step shows it."""
    tt = dbg.time_travel
    pos = tt.position()
    stop = dbg.last_stop
    assert stop is not None
    lines = list(notes)
    if pos.handoff is not None:
        stop.reason = "breakpoint" if breakpoint is not None else "step"
        stop.breakpoint = breakpoint
        body = render_stop(dbg, stop)
        split = 1 if breakpoint is not None else 0  # `Breakpoint N hit` comes first, as in WinDbg
        lines += body[:split] + [_position_line(dbg)] + body[split:]
    else:
        stop.reason = "timetravel"
        lines.append(_position_line(dbg))
        if dbg.scheduler.halted is not None:
            stop.reason = "halted"
            lines += render_stop(dbg, stop)
        elif (pos.events_run, pos.seq) == (tt.origin.events_run, tt.origin.seq):
            lines.append(f"At the start of the trace (event {pos.events_run}, hand-off {pos.seq}, virtual time "
                         f"{seconds(dbg.scheduler.now_ns)}).")
        else:
            lines.append(f"Between events: event {pos.events_run} has finished (hand-off {pos.seq}, virtual time "
                         f"{seconds(dbg.scheduler.now_ns)}).")
    lines += [f"Warning: the replay diverged: {d}" for d in tt.divergence]
    tt.divergence.clear()
    data: dict[str, Any] = {"position": str(pos), "events_run": pos.events_run, "hand_off": pos.seq,
                            "stops": [stop_data(dbg, stop)]}
    return CommandResult("\n".join(lines), data)


def land(dbg: "Engine", plan: Plan) -> CommandResult:
    """Go where `plan` says and report.  With checkpoints (a machine server), a trip back is
    finished by a process forked from the nearest checkpoint before the target: HandOver unwinds
    this process's command line and the checkpoint's runner calls `perform` (wskdbg.checkpoints)."""
    cps = dbg.checkpoints
    if cps is not None:
        checkpoint = cps.for_trip(dbg, plan.targets[0])
        if checkpoint is not None:
            raise HandOver(plan, checkpoint)
    return perform(dbg, plan)


def perform(dbg: "Engine", plan: Plan) -> CommandResult:
    """The trip itself, in this process: travel (re-executing from the start of the trace, or from
    the checkpoint this process was forked from), then print the stop."""
    tt = dbg.time_travel
    tt.travel(plan.targets[0])
    notes = plan.notes
    if plan.want is not None:
        events_run, seq = plan.want
        if tt.position().events_run < events_run and len(plan.targets) > 1:
            tt.travel(plan.targets[1], rebuild=False)
        pos = tt.position()
        if (pos.events_run, pos.seq) != (events_run, seq):
            notes = (f"Position {format_position(events_run, seq)} is not a moment of this trace "
                     f"(hand-off {seq:#x} happens in event {pos.events_run:#x}); stopped at {pos}.",)
    bp = dbg.breakpoints.get(plan.breakpoint_id) if plan.breakpoint_id is not None else None
    return report(dbg, breakpoint=bp, notes=notes)


def _at_start(dbg: "Engine") -> CommandResult:
    return CommandResult(f"{_position_line(dbg)}\nAlready at the start of the trace.",
                         {"position": str(dbg.time_travel.position()), "moved": False})


def _guard(dbg: "Engine", inv: Invocation) -> None:
    if dbg.in_bp_command:
        raise inv.error(f"{inv.spec.name} cannot run from a breakpoint command", 0)
    reason = dbg.time_travel.available()
    if reason is not None:
        raise TimeTravelError(reason)


@command("t-", area="execution", syntax="t- [Count]", mutates=True,
         summary="Trace back: go to the previous hand-off (time travel)",
         help="""
Goes back to the previous hand-off of any kind on any host — the stop a `t` from there would
make — and prints it as `t` printed it, after `Time Travel Position: E:S`.  Count (hex) goes back
that many hand-offs (to the start of the trace if there are fewer).""" + TT_LIMITS)
def cmd_t_back(dbg: "Engine", inv: Invocation) -> CommandResult:
    count = _count(dbg, inv)
    _guard(dbg, inv)
    tt = dbg.time_travel
    here = tt.position()
    seq = tt.previous_handoff(count)
    if seq is None:
        if (here.events_run, here.seq, here.handoff) == (tt.origin.events_run, tt.origin.seq, None):
            return _at_start(dbg)
        return land(dbg, Plan([tt.origin_target()]))
    return land(dbg, Plan([tt.handoff_target(seq, here.events_run)]))


@command("p-", area="execution", syntax="p- [Count]", mutates=True,
         summary="Step back over: the previous hand-off at this call level or above, in this context",
         help="""
Goes back to the previous hand-off in the same execution context (the same thread, or the same
DPC/timer event) at the current call level or shallower, skipping the calls made from this
routine: at a `ret X` stop, p- goes back to `call X`.  When the context has no earlier hand-off,
p- goes back to just before its event began.  Between events p- acts like t-.  Count (hex)
repeats.  p- replays the trace twice (once to find the stop, once to go there).""" + TT_LIMITS)
def cmd_p_back(dbg: "Engine", inv: Invocation) -> CommandResult:
    count = _count(dbg, inv)
    _guard(dbg, inv)
    tt = dbg.time_travel
    if tt.position().handoff is None:
        return cmd_t_back(dbg, inv)
    seq = tt.scan_context(count)
    here = tt.position()
    if seq is not None:
        return land(dbg, Plan([tt.handoff_target(seq, here.events_run)]))
    before = here.events_run - 1  # the context began in this event: go to just before the event
    return land(dbg, Plan([tt.origin_target() if before <= tt.origin.events_run else tt.between_target(before)]))


@command("g-", area="execution", syntax="g-", mutates=True,
         summary="Go back: run backwards to the previous breakpoint hit",
         help="""
Goes back to the last hand-off before this moment at which an enabled breakpoint would have hit
(its host, depth and /w condition are checked; pass counts are not), and prints `Breakpoint N hit`
as g does.  With no earlier hit, g- goes to the start of the trace.  g- replays the trace twice
(once to find the hits, once to go there); breakpoint commands do not run.""" + TT_LIMITS)
def cmd_g_back(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    _guard(dbg, inv)
    tt = dbg.time_travel
    here = tt.position()
    hit = tt.scan_breakpoints()
    if hit is None:
        return land(dbg, Plan([tt.origin_target()],
                              notes=("No breakpoint hit before this position; going to the start of the trace.",)))
    seq, bp_id = hit
    return land(dbg, Plan([tt.handoff_target(seq, here.events_run)], breakpoint_id=bp_id))


@command("!tt", area="execution", syntax="!tt [Position | Percent]", mutates=True,
         summary="Time travel to a position (E:S) or a percentage of the trace; alone, show the trace",
         help="""
  !tt            the current position, where the trace starts and ends, and the recorded inputs
  !tt 2C:1A3     go to position 2C:1A3 (hex: events run : hand-off number, as .position and every
                 time-travel stop print it); a hand-off position stops at that hand-off
  !tt 0          go to the start of the trace;  !tt 100  go to its end;  !tt 50  halfway
                 (Percent is decimal and goes to the first hand-off at or after that point)
The end of the trace is the furthest moment reached since the trace started.""" + TT_LIMITS)
def cmd_tt(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        return _status(dbg)
    if len(words) > 1:
        raise inv.syntax_error(words[1][1])
    text, at = words[0]
    _guard(dbg, inv)
    tt = dbg.time_travel
    position = parse_position(text)
    if position is not None:
        events_run, seq = position
        try:
            targets = tt.position_target(events_run, seq)
        except TimeTravelError as exc:
            raise inv.error(exc.message, at) from None
        return land(dbg, Plan(targets, want=(events_run, seq)))
    try:
        percent = float(text[:-1] if text.endswith("%") else text)
    except ValueError:
        raise inv.error(f"'{text}' is neither a position (E:S, hex) nor a percentage (0-100)", at) from None
    if not 0 <= percent <= 100:
        raise inv.error(f"a percentage goes from 0 to 100, not {text}", at)
    return land(dbg, Plan([tt.percent_target(percent)]))


def _status(dbg: "Engine") -> CommandResult:
    tt = dbg.time_travel
    pos = tt.position()
    lines = [f"{_position_line(dbg)} (event {pos.events_run}, hand-off {pos.seq})",
             f"Trace: start {tt.origin} .. end {tt.end} (event {tt.end.events_run}, hand-off {tt.end.seq})"]
    reason = tt.available()
    if reason is not None:
        lines.append(f"Time travel is unavailable: {reason}.")
    if tt.inputs:
        lines.append(f"Recorded inputs: {len(tt.inputs)} ({tt.applied} applied in this world; the others are "
                     "replayed when the machine runs past them)")
        for i, rec in enumerate(tt.inputs):
            mark = " " if i < tt.applied else ">"
            where = "between events" if rec.anchor.handoff is None else f"at hand-off {rec.anchor.handoff:#x}"
            lines.append(f" {mark}{i:>3}  {rec.position:<12} [{rec.host}] {rec.text}   ({where})")
    else:
        lines.append("Recorded inputs: none")
    data = {"position": str(pos), "start": str(tt.origin), "end": str(tt.end), "applied": tt.applied,
            "inputs": [{"position": rec.position, "host": rec.host, "command": rec.text,
                        "handoff": rec.anchor.handoff, "events_run": rec.anchor.events_run} for rec in tt.inputs]}
    return CommandResult("\n".join(lines), data)


@command(".checkpoints", area="execution", syntax=".checkpoints",
         summary="List the time-travel checkpoints (forked copies of the machine a trip back starts from)",
         help="""
Lists the checkpoints of this trace: copies of the whole machine taken between events (fork(),
sharing memory copy-on-write), one at the start of the trace and one every N hand-offs of running,
thinned out as they age so that at most a fixed number live.  A trip back (t-, p-, g-, !tt) starts
from the latest checkpoint before its target and replays only from there, so its cost depends on
how far back it goes, not on how long the session has run.  `>` marks the one a t- from here uses.
The REPL, `wskdbg run` and `wskdbg -c` have checkpoints (POSIX; WSKDBG_CHECKPOINTS=0 turns them
off); the TUI and a bridged session re-execute from the start of the trace instead.""")
def cmd_checkpoints(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    cps = dbg.checkpoints
    if cps is None:
        return CommandResult("No checkpoints: this debugger runs the machine in its own process, so a trip back "
                             "re-executes from the start of the trace.", {"checkpoints": []})
    tt = dbg.time_travel
    here = tt.position()
    nearest = cps.usable_for(tt.handoff_target(here.handoff, here.events_run) if here.handoff is not None
                             else tt.between_target(here.events_run))
    lines = [f"Checkpoints: {len(cps.records)} (at most {cps.cap}; one every {cps.every:,} hand-offs of running, "
             "thinned out as they age)",
             "    #  Position        Event   Hand-off  Virtual time    Hand-offs before now"]
    for r in cps.records:
        mark = ">" if r is nearest else " "
        what = "  (start of the trace)" if r.start else ""
        behind = f"{here.seq - r.seq:>10,}" if r.seq <= here.seq else f"{'ahead':>10}"
        lines.append(f" {mark}{r.number:>3}  {r.position:<14}{r.events_run:>7} {r.seq:>10}  {seconds(r.time_ns):<15} "
                     f"{behind}{what}")
    if nearest is not None:
        lines.append(f"A t- from here ({here}) replays {here.seq - nearest.seq:,} hand-offs from checkpoint {nearest.number}.")
    data = {"checkpoints": [{"number": r.number, "position": r.position, "events_run": r.events_run, "hand_off": r.seq,
                             "start": r.start} for r in cps.records],
            "every": cps.every, "cap": cps.cap}
    return CommandResult("\n".join(lines), data)
