"""Time travel: going back by deterministic re-execution (DESIGN.md, rule 1).

The world's state is never copied.  Instead the engine records every *input*
that changed the world — a command such as `sc start`, `!echo` or `!fault` —
with the exact moment it took effect: its *anchor*, either "paused at hand-off
A" (mid-event) or "between events, after E events".  Going back rebuilds the
world from the factory and seed, runs it forward with breakpoints suppressed,
re-applies each recorded input when the run reaches its anchor, and stops at
the target hand-off.  Because the machine is deterministic, the rebuilt world
is the same world, down to its addresses and its logical call stacks.

Moments and positions.  A position is `E:S` (hex), E = events run by the
scheduler, S = the bus's hand-off number.  Landing on an anchor lands *before*
the inputs recorded there (the moment the user originally saw); the next
forward command applies them first, then runs.  Forward runs from the past
(`t`, `p`, `g`, `/w` traffic) re-apply later inputs as they pass their anchors,
so the recorded future replays.  A new input issued in the past discards the
inputs after it (history is rewritten) and says so; re-issuing exactly the next
recorded input at its own anchor just follows history.

Which hand-offs exist.  Every event the machine publishes while it runs is a
stop candidate for `t`; events the debugger publishes while applying inputs
are not, so their numbers are kept in `foreign` and `t-` counts back over the
others without a scan.  `p-` and `g-` scan: one replay to the current moment
that notes candidate hand-offs, then a second replay to the chosen one.

Checkpoints.  Re-executing from the start of the trace (the last .reboot) costs
as much as the run did.  In a machine server (wskdbg.machine_server: the REPL,
`wskdbg run`, `wskdbg -c`) the engine also keeps checkpoints, fork()ed copies of
the machine between events (wskdbg.checkpoints); a trip back is then planned
here (`Plan`), raised as `HandOver`, and finished by a process forked from the
latest checkpoint before the target, which replays from there with this very
seek: `rebuild()` in such a process is "start from the checkpoint"
(`start_here_once`).  p- and g- scan in a fork of the nearest checkpoint, and
of earlier ones only when they find too little.  In-process engines (a bridged
session, WSKDBG_CHECKPOINTS=0) re-execute as before, and so does a trip from inside
a script, `.foreach` or a breakpoint command: a hand-over moves the session to
another process, and only a command line's continuation (`LineState`: the rest of
the line) is data that can go with it; an enclosing script, loop or breakpoint
command is a Python call stack in this process (wskdbg.script, the control-flow
tokens, the run that is paused mid-event under a breakpoint command).

Limits: breakpoint pass counts and hit counts are debugger state and do not go
back; a bridge to the real world makes time travel unavailable (its inputs are
not replayable here).
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from wskdbg.commands.registry import CommandError, CommandResult, Invocation, Registry
from wskdbg.expr import ExprError, evaluate

if TYPE_CHECKING:
    from stack.kernel.events import Event
    from wskdbg.breakpoints import Breakpoint
    from wskdbg.engine import Engine, RunRequest, StopInfo

# Commands that only run the machine (their effect is replayed by running) or travel in time.
RUN_ONLY = frozenset({"g", "t", "p", "gu", "t-", "p-", "g-", "!tt"})
# Commands with a verb argument: only these verbs change the world.
INPUT_VERBS = {"sc": frozenset({"start", "stop"}), "!capture": frozenset({"start", "stop"})}
QUERY_VERBS = {"tracelog": frozenset({"-l"})}
# World-changing commands whose spec does not say mutates=True.
EXTRA_INPUTS = frozenset({"!fault", "!capture"})
# engine.state keys that are debugger settings, not per-world state: kept when the world is rebuilt.
DEBUGGER_STATE_KEYS = frozenset({"wpp_prefix", "radix"})

_REVERSE_STEP = re.compile(r"(\s*)([tpgTPG])-(?=\s|$)")


class HandOver(BaseException):
    """A trip back that a checkpoint process finishes (wskdbg.checkpoints): raised by the command,
    it unwinds the live process's command line (the engine notes how far the line ran in `line`)
    up to the machine server, which sends both to the checkpoint and leaves."""

    def __init__(self, plan: "Plan", checkpoint: Any) -> None:
        super().__init__("hand-over to a checkpoint")
        self.plan = plan
        self.checkpoint = checkpoint
        self.line: Any = None  # wskdbg.engine.LineState


@dataclass(slots=True)
class Plan:
    """Where a trip in time goes and what it prints when it lands (wskdbg.commands.timetravel.land)."""

    targets: list["Target"]
    want: tuple[int, int] | None = None  # !tt E:S: the position asked for (for the note if it is not a moment)
    breakpoint_id: int | None = None  # g-: the breakpoint that would have hit there
    notes: tuple[str, ...] = ()


class ReplayProgress:
    """`Replaying 37% (E:S of E:S)` for a trip that takes more than half a second (wall time: it goes
    to engine.progress_output, never into a command's result, so transcripts stay deterministic)."""

    FIRST_S = 0.5
    EVERY_S = 0.25

    def __init__(self, output: Callable[[str], None], start: tuple[int, int], target: "Target") -> None:
        import time
        self._clock = time.monotonic
        self.output = output
        self.start = start
        self.target = target
        self.began = self._clock()
        self.last = self.began
        self.shown = False

    def tick(self, seq: int, events_run: int) -> None:
        now = self._clock()
        if now - self.began < self.FIRST_S or now - self.last < self.EVERY_S:
            return
        self.last = now
        t = self.target
        if t.handoff is not None:
            done, span = seq - self.start[1], t.handoff - self.start[1]
            goal = f"hand-off {t.handoff:X}"
        else:
            done, span = events_run - self.start[0], (t.events_run or 0) - self.start[0]
            goal = f"event {t.events_run or 0:X}"
        percent = min(99, max(0, 100 * done // span)) if span > 0 else 99
        self.output(f"Replaying {percent}% ({format_position(events_run, seq)}, going to {goal})")
        self.shown = True


class TimeTravelError(CommandError):
    """Time travel cannot do what was asked (no factory, a bridge, a position that does not exist)."""


# --- positions -----------------------------------------------------------------------------------

def format_position(events_run: int, seq: int) -> str:
    """`E:S` in hex, as WinDbg prints a TTD position."""
    return f"{events_run:X}:{seq:X}"


def parse_position(text: str) -> tuple[int, int] | None:
    """`E:S` (hex, an optional 0x on either part) -> (events_run, seq); None when not of that shape."""
    head, colon, tail = text.partition(":")
    if not colon:
        return None
    try:
        return int(head.strip().replace("`", ""), 16), int(tail.strip().replace("`", ""), 16)
    except ValueError:
        return None


@dataclass(slots=True, frozen=True)
class Anchor:
    """Where an input took effect: paused at hand-off `handoff`, or between events (handoff None)."""

    events_run: int
    handoff: int | None


@dataclass(slots=True, frozen=True)
class TTPosition:
    """A moment of the trace: (events run, hand-offs published, the hand-off paused at or None)."""

    events_run: int
    seq: int
    handoff: int | None

    @property
    def key(self) -> tuple[int, int, int]:
        """Orders moments in time (a stop at a hand-off comes before the end of its event)."""
        return self.seq, self.events_run, 0 if self.handoff is not None else 1

    def __str__(self) -> str:
        return format_position(self.events_run, self.seq)


@dataclass(slots=True, frozen=True)
class Target:
    """Where a seek goes: hand-off `handoff` (or between events after `events_run` when handoff is
    None), then the inputs recorded there before hand-off number `seq`.  At most `bound` events run."""

    handoff: int | None
    events_run: int | None
    seq: int
    bound: int


@dataclass(slots=True)
class RecordedInput:
    """One world-changing command, with the moment it took effect."""

    anchor: Anchor
    seq_before: int  # the bus's hand-off number when it started
    published: int  # events the command itself published (numbers seq_before+1 ...)
    text: str
    host: str  # the current host it acted on
    script_dirs: tuple[str, ...]
    in_bp_command: bool
    radix: int = 16  # the `n` base it was typed under: replay must read its numbers the same way

    @property
    def position(self) -> str:
        return format_position(self.anchor.events_run, self.seq_before)


# --- which commands are inputs -----------------------------------------------------------------------

def is_world_input(inv: Invocation) -> bool:
    """Does this command change the emulated world (so that going back must replay it)?"""
    name = inv.spec.name
    if name in RUN_ONLY or name == ".reboot":
        return False  # .reboot starts a new trace instead
    first = inv.args.split(None, 1)[0].lower() if inv.args.strip() else ""
    if name in INPUT_VERBS:
        return first in INPUT_VERBS[name]
    if first and first in QUERY_VERBS.get(name, ()):
        return False
    return inv.spec.mutates or name in EXTRA_INPUTS


def reverse_step_invocation(registry: Registry, text: str) -> Invocation | None:
    """`t-`, `p-`, `g-` (the registry's word rule stops at `-`, so they are recognised here)."""
    m = _REVERSE_STEP.match(text)
    if m is None:
        return None
    spec = registry.find(m.group(2).lower() + "-")
    if spec is None:
        return None
    rest = text[m.end():]
    skipped = len(rest) - len(rest.lstrip())
    return Invocation(line=text.strip(), name=m.group(2).lower() + "-", args=rest.strip(),
                      args_offset=m.end() + skipped, spec=spec)


def _level_of(ev: "Event") -> int:
    from wskdbg.engine import level_of
    return level_of(ev)


def breakpoint_matches(engine: "Engine", bp: "Breakpoint", ev: "Event") -> bool:
    """Would `bp` stop at `ev`?  As the engine decides, but pass counts are ignored and nothing
    is counted (a scan must not change the breakpoints)."""
    if bp.host is not None and bp.host != ev.host:
        return False
    if bp.max_depth is not None and not ev.depth < bp.max_depth:
        return False
    if bp.min_depth is not None and not ev.depth > bp.min_depth:
        return False
    if not bp.condition:
        return True
    with engine.evaluating_at(ev):
        try:
            return evaluate(bp.condition, engine.expr_context(ev.host), engine.radix) != 0
        except ExprError:
            return True  # the engine breaks when a condition fails to evaluate


def seek_decide(engine: "Engine", ev: "Event", req: "RunRequest") -> "StopInfo | None":
    """The machine thread's decision at a hand-off during a seek (breakpoints are suppressed)."""
    if req.observer is not None:
        req.observer(ev)
    if ev.seq == req.seek_seq:
        return engine.stop_here("seek", event=ev, mid_event=True, host=ev.host)
    if ev.seq == req.anchor_seq:
        return engine.stop_here("input", event=ev, mid_event=True, host=ev.host)
    return None


def _copy_state_value(value: Any) -> Any:
    if isinstance(value, (list, set, dict)):
        return type(value)(value)
    return value


# --- the timeline ------------------------------------------------------------------------------------

class TimeTravel:
    """The engine's trace: recorded inputs, where the trace starts and ends, and the trips in time."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.inputs: list[RecordedInput] = []
        self.applied = 0  # inputs[:applied] have taken effect in the current world
        self.foreign: set[int] = set()  # hand-off numbers published by the debugger, not the machine
        self.origin = TTPosition(0, 0, None)
        self.end = self.origin
        self.divergence: list[str] = []
        self._origin_state: dict[str, Any] = {}
        self._applying = False  # re-applying a recorded input: the machine must not run
        self._suspended = False  # a new input is running: the recorded future waits
        self._input_depth = 0
        self._fresh: set[int] | None = None  # foreign events of a new input that may rewrite history
        self._foreign_noted = 0  # counts note_foreign calls (what a command published)
        # A process forked from a checkpoint starts at it: its first rebuild is "go to the checkpoint".
        self.start_here_once = False

    # -- the trace's life ----------------------------------------------------------------
    def reset(self) -> None:
        """Start a new trace at the current moment (engine start, .reboot)."""
        self.inputs = []
        self.applied = 0
        self.foreign = set()
        self.origin = self.end = self.position()
        self.divergence = []
        self._origin_state = {k: _copy_state_value(v) for k, v in self.engine.state.items()}
        if self.engine.checkpoints is not None:
            self.engine.checkpoints.restart(self.engine)  # the old trace's checkpoints go; one at the start

    def position(self) -> TTPosition:
        eng = self.engine
        stop = eng.last_stop
        handoff = stop.event.seq if eng.paused_mid_event and stop is not None and stop.event is not None else None
        return TTPosition(eng.scheduler.events_run, eng.bus.seq, handoff)

    def current_anchor(self) -> Anchor:
        pos = self.position()
        return Anchor(pos.events_run, pos.handoff)

    @property
    def pending(self) -> list[RecordedInput]:
        return self.inputs[self.applied:]

    def note_foreign(self, ev: "Event") -> None:
        """An event published outside the running machine (by a command): not a stop candidate."""
        (self._fresh if self._fresh is not None else self.foreign).add(ev.seq)
        self._foreign_noted += 1

    def note_end(self) -> None:
        pos = self.position()
        if pos.key > self.end.key:
            self.end = pos

    def available(self) -> str | None:
        """Why time travel is unavailable, or None."""
        eng = self.engine
        if eng.factory is None:
            return "time travel needs a world factory (this engine was given a world instance only)"
        try:
            from stack.bridge.session import session_of
            bridged = session_of(eng.world) is not None
        except ImportError:
            bridged = False
        if bridged or eng.scheduler.before_advance is not None:
            return ("time travel is not available while a bridge to the real world is attached "
                    "(its inputs cannot be replayed here)")
        return None

    def require_available(self) -> None:
        reason = self.available()
        if reason is not None:
            raise TimeTravelError(reason)

    # -- recording (engine.execute_one calls this for every command) ---------------------
    def run_command(self, inv: Invocation, invoke: Callable[[], CommandResult]) -> CommandResult:
        if self._applying or self._input_depth or self.engine.factory is None or not is_world_input(inv):
            result = invoke()
            if not self._applying:
                self.note_end()
            return result
        eng = self.engine
        anchor = self.current_anchor()
        seq_before = eng.bus.seq
        fingerprint = self._fingerprint()
        noted = self._foreign_noted
        nxt = self.inputs[self.applied] if self.applied < len(self.inputs) else None
        follows = (nxt is not None and nxt.anchor == anchor and nxt.seq_before == seq_before
                   and nxt.text == inv.line and nxt.host == eng.current_host)
        behind = self.position().key < self.end.key  # the trace goes on past this moment
        if follows:
            self.applied += 1  # before running: a /w run must not apply it a second time
        else:
            self._suspended = nxt is not None  # the recorded future must not replay under a new input
            self._fresh = set()  # this command's own events, kept apart from the recorded future's
        self._input_depth += 1
        try:
            result = invoke()
        finally:
            self._input_depth -= 1
            self._suspended = False
            fresh, self._fresh = self._fresh, None
        published = self._foreign_noted - noted
        note = ""
        if follows:
            if published != nxt.published:
                self._diverge(f"input {self.applied - 1} ({nxt.text}) published different events this time")
        elif not result.error or self._fingerprint() != fingerprint:
            dropped = len(self.inputs) - self.applied
            if dropped or behind:  # a different future starts here: forget the recorded one
                del self.inputs[self.applied:]
                self.foreign = {s for s in self.foreign if s <= seq_before}
                self.end = self.position()
                self._forget_checkpoints_after(anchor.events_run, seq_before)
                note = (f"Time travel: a new input at {format_position(anchor.events_run, seq_before)} rewrites "
                        f"history; the trace now ends here ({dropped} later recorded input"
                        f"{'s' if dropped != 1 else ''} discarded).")
            self.foreign |= fresh or set()
            self.inputs.append(RecordedInput(anchor, seq_before, published, inv.line, eng.current_host,
                                             tuple(eng.script_dirs), eng.in_bp_command, eng.radix))
            self.applied = len(self.inputs)
        elif fresh:
            self.foreign |= fresh
        self.note_end()
        if note:
            result = CommandResult(f"{note}\n{result.text}" if result.text else note, result.data, result.error)
        return result

    def _fingerprint(self) -> tuple[int, int, int]:
        sched = self.engine.scheduler
        return self.engine.bus.seq, getattr(sched, "_seq", 0), sched.events_run

    # -- replaying inputs while the machine runs (engine.resume calls this) ----------------
    def run(self, req: "RunRequest", resume_once: Callable[["RunRequest"], "StopInfo"]) -> "StopInfo":
        """Run the machine for `req`, pausing at each recorded input's anchor to re-apply it."""
        eng = self.engine
        if self._applying:  # a recorded command that ran the machine: the seek replays that running
            return eng.stop_here("break", note="(replaying a recorded input: the machine does not run here)")
        self.apply_due_inputs()
        while True:
            nxt = None if self._suspended or self.applied >= len(self.inputs) else self.inputs[self.applied]
            req.anchor_seq = nxt.anchor.handoff if nxt is not None else None
            req.anchor_events = nxt.anchor.events_run if nxt is not None and nxt.anchor.handoff is None else None
            stop = resume_once(req)
            if stop.reason != "input":
                self._check_passed()
                return stop
            if self.apply_due_inputs() == 0:
                self._diverge(f"the run paused for input {self.applied} but not at its position")
                self._drop_future()

    def apply_due_inputs(self, before_seq: int | None = None) -> int:
        """Apply the recorded inputs anchored at the current moment (those before hand-off number
        `before_seq` only, when given).  Returns how many."""
        done = 0
        while not self._suspended and self.applied < len(self.inputs):
            rec = self.inputs[self.applied]
            if rec.anchor != self.current_anchor():
                break
            if before_seq is not None and rec.seq_before >= before_seq:
                break
            self._apply(rec)
            done += 1
        return done

    def _apply(self, rec: RecordedInput) -> None:
        eng = self.engine
        index = self.applied
        if eng.bus.seq != rec.seq_before:
            self._diverge(f"input {index} ({rec.text}) found the machine at hand-off {eng.bus.seq:#x}, "
                          f"not {rec.seq_before:#x}")
        noted = self._foreign_noted
        self._applying = True
        self.applied += 1
        try:
            with eng.replaying_input(rec.host, rec.script_dirs, rec.in_bp_command, rec.radix):
                inv = eng.registry.parse(rec.text)
                if inv is not None:
                    inv.spec.handler(eng, inv)
        except (CommandError, ExprError):
            pass  # it failed the first time too (recorded because it changed the world before failing)
        except Exception as exc:  # a command must not break the replay
            self._diverge(f"input {index} ({rec.text}) raised {type(exc).__name__}: {exc}")
        finally:
            self._applying = False
        if self._foreign_noted - noted != rec.published:
            self._diverge(f"input {index} ({rec.text}) published different events when replayed")

    def _check_passed(self) -> None:
        """A run that went past the next input's anchor without pausing there has diverged."""
        if self._suspended or self.applied >= len(self.inputs):
            return
        rec = self.inputs[self.applied]
        pos = self.position()
        if rec.anchor.handoff is not None:
            passed = pos.seq > rec.anchor.handoff and pos.handoff != rec.anchor.handoff
        else:
            passed = pos.events_run > rec.anchor.events_run
        if passed:
            self._diverge(f"the machine ran past input {self.applied} ({rec.text}) without reaching its position")
            self._drop_future()

    def _diverge(self, message: str) -> None:
        if message not in self.divergence:
            self.divergence.append(message)

    def _drop_future(self) -> None:
        del self.inputs[self.applied:]
        seq = self.engine.bus.seq
        self.foreign = {s for s in self.foreign if s <= seq}
        self._forget_checkpoints_after(self.engine.scheduler.events_run, seq)

    def _forget_checkpoints_after(self, events_run: int, seq: int) -> None:
        """History changed here: checkpoints of the old future are not moments of the trace any more."""
        if self.engine.checkpoints is not None:
            self.engine.checkpoints.discard_after(events_run, seq)

    def recording_quiet(self) -> bool:
        """No input is being recorded or re-applied (a checkpoint taken now has a clear place in the trace)."""
        return not (self._applying or self._input_depth or self._suspended)

    # -- travelling -------------------------------------------------------------------------
    def rebuild(self) -> None:
        """A fresh world from the factory and seed, at the start of the trace."""
        eng = self.engine
        if self.start_here_once:  # forked from a checkpoint at or before the target: start from it
            self.start_here_once = False
            return
        eng.replace_world()
        state = {k: _copy_state_value(v) for k, v in self._origin_state.items()}
        for key in DEBUGGER_STATE_KEYS:
            if key in eng.state:
                state[key] = eng.state[key]
        eng.state.clear()
        eng.state.update(state)
        self.applied = 0
        start = self.position()
        if (start.events_run, start.seq) != (self.origin.events_run, self.origin.seq):
            raise TimeTravelError(f"the world factory is not deterministic: the rebuilt world starts at {start}, "
                                  f"the trace at {self.origin}")

    def travel(self, target: Target, observer: Callable[["Event"], None] | None = None,
               rebuild: bool | None = None) -> None:
        """Go to `target`: rebuild and replay (or, when it lies ahead, run forward to it)."""
        self.require_available()
        eng = self.engine
        if rebuild is None:
            rebuild = observer is not None or not self._ahead(target)
        saved_live = eng.live_output
        eng.live_output = None  # replayed DbgPrint output was printed the first time
        try:
            if rebuild:
                self.rebuild()
            self.start_here_once = False  # only the first trip of a process forked from a checkpoint starts there
            if eng.progress_output is not None:
                eng.progress = ReplayProgress(eng.progress_output, (eng.scheduler.events_run, eng.bus.seq), target)
            self._seek(target, observer)
        finally:
            eng.progress = None
            eng.take_run_output()
            eng.live_output = saved_live
            eng.resolve_breakpoints()  # unloads during the seek did not touch the breakpoints
        self.note_end()

    def is_ahead(self, target: Target) -> bool:
        """Does `target` lie ahead of the current moment (reached by running forward, no rebuild)?"""
        return self._ahead(target)

    def _ahead(self, target: Target) -> bool:
        pos = self.position()
        if self.engine.scheduler.halted is not None or target.seq <= pos.seq:
            return False
        return target.handoff is not None or (target.events_run or 0) >= pos.events_run

    def _at_anchor(self, target: Target) -> bool:
        anchor = self.current_anchor()
        if target.handoff is not None:
            return anchor.handoff == target.handoff
        return anchor.handoff is None and anchor.events_run == target.events_run

    def _seek(self, target: Target, observer: Callable[["Event"], None] | None) -> None:
        from wskdbg.engine import RunRequest
        eng = self.engine
        if not self._at_anchor(target):
            req = RunRequest("seek")
            req.seek_seq = target.handoff
            req.seek_events = target.events_run if target.handoff is None else None
            req.time_limit_ns = None
            req.event_limit = target.bound
            req.observer = observer
            stop = eng.resume(req)
            if not self._at_anchor(target):
                where = (f"hand-off {target.handoff:#x}" if target.handoff is not None
                         else f"the end of event {target.events_run:#x}")
                if stop.reason == "break":
                    raise TimeTravelError(f"time travel was interrupted at {self.position()} on the way to {where}")
                raise TimeTravelError(f"the replay did not reach {where} (it stopped: {stop.reason}); "
                                      f"now at {self.position()}")
        self.apply_due_inputs(before_seq=target.seq)

    # -- targets ------------------------------------------------------------------------------
    def origin_target(self) -> Target:
        o = self.origin
        return Target(None, o.events_run, o.seq, o.events_run)

    def end_target(self) -> Target:
        e = self.end
        return Target(e.handoff, e.events_run if e.handoff is None else None, e.seq, e.events_run)

    def between_target(self, events_run: int) -> Target:
        """Between events after `events_run` events, before any input recorded there."""
        return Target(None, events_run, 0, events_run)

    def handoff_target(self, seq: int, bound: int) -> Target:
        return Target(seq, None, seq, bound)

    def is_handoff(self, seq: int) -> bool:
        """Was hand-off `seq` published by the running machine (a place `t` can stop)?"""
        return self.origin.seq < seq <= max(self.end.seq, self.engine.bus.seq) and seq not in self.foreign

    def previous_handoff(self, count: int = 1) -> int | None:
        """The `count`-th machine hand-off before the current moment; None when there are fewer."""
        pos = self.position()
        s = pos.handoff - 1 if pos.handoff is not None else pos.seq
        found = 0
        while s > self.origin.seq:
            if s not in self.foreign:
                found += 1
                if found == count:
                    return s
            s -= 1
        return None

    @staticmethod
    def target_at(here: TTPosition) -> Target:
        """The seek that comes back to moment `here`."""
        return Target(here.handoff, here.events_run if here.handoff is None else None, here.seq, here.events_run)

    def local_scan(self, kind: str, args: tuple, here: TTPosition | None = None) -> Any:
        """A p- ("context") or g- ("breakpoints") scan in this process, up to `here` (default: now)."""
        if kind == "context":
            return self.scan_context_from_here(*args, here=here)
        return self.scan_breakpoints_from_here(here=here)

    def scan_to_here(self, observer: Callable[["Event"], None], here: TTPosition | None = None) -> TTPosition:
        """Replay the trace up to the current moment (or `here`), showing `observer` every machine
        hand-off before it.  Leaves the machine where it was."""
        here = here or self.position()
        target = self.target_at(here)
        limit = here.handoff if here.handoff is not None else here.seq + 1

        def before_here(ev: "Event") -> None:
            if ev.seq < limit:
                observer(ev)

        self.travel(target, before_here, rebuild=True)
        return here

    def scan_context(self, count: int) -> int | None:
        """For `p-`: the `count`-th previous hand-off (or the earliest, when there are fewer) in the
        current context at the current level or shallower; None when there is none."""
        stop = self.engine.last_stop
        assert stop is not None and stop.event is not None
        host, level = stop.event.host, _level_of(stop.event)
        cps = self.engine.checkpoints
        if cps is not None and cps.can_scan(self.engine):
            return cps.scan(self.engine, "context", (count, host, level), enough=count)
        return self.scan_context_from_here(count, host, level)[0]

    def scan_context_from_here(self, count: int, host: str, level: int,
                               here: TTPosition | None = None) -> tuple[int | None, int]:
        """scan_context's replay (from the start of the trace, or from the checkpoint this process was
        forked from): (the hand-off, how many of `count` were found)."""
        eng = self.engine
        seen: dict[Any, deque[int]] = {}
        dpc_event = [-1]
        kernel_of_world: dict[int, Any] = {}  # the scan's world -> its kernel of `host`

        def observe(ev: "Event") -> None:
            if ev.host != host or _level_of(ev) > level:
                return
            k = kernel_of_world.get(id(eng.world))
            if k is None:
                k = kernel_of_world[id(eng.world)] = eng.kernels[host]
            thread = k.current_thread
            if thread is None:  # a DPC or timer context lasts one event: only the current one matters
                n = eng.scheduler.events_run
                if n != dpc_event[0]:
                    seen.pop(("dpc", dpc_event[0]), None)
                    dpc_event[0] = n
                key: Any = ("dpc", n)
            else:
                key = thread
            seen.setdefault(key, deque(maxlen=count)).append(ev.seq)

        self.scan_to_here(observe, here)
        thread = eng.kernels[host].current_thread
        found = seen.get(("dpc", eng.scheduler.events_run) if thread is None else thread)
        if thread is None:  # a DPC's context is this event: a scan from a checkpoint before it sees all of it
            return (found[0] if found else None), count
        return (found[0], len(found)) if found else (None, 0)

    def scan_breakpoints(self) -> tuple[int, int] | None:
        """For `g-`: (hand-off, breakpoint id) of the last breakpoint hit before the current moment."""
        cps = self.engine.checkpoints
        if cps is not None and cps.can_scan(self.engine):
            return cps.scan(self.engine, "breakpoints", (), enough=1)
        return self.scan_breakpoints_from_here()

    def scan_breakpoints_from_here(self, here: TTPosition | None = None) -> tuple[int, int] | None:
        eng = self.engine
        last: list[tuple[int, int]] = []

        def observe(ev: "Event") -> None:
            for bp in eng.breakpoints.candidates(ev):
                if breakpoint_matches(eng, bp, ev):
                    last[:] = [(ev.seq, bp.id)]
                    return

        self.scan_to_here(observe, here)
        return last[0] if last else None

    def percent_target(self, percent: float) -> Target:
        if percent <= 0:
            return self.origin_target()
        if percent >= 100:
            return self.end_target()
        span = self.end.seq - self.origin.seq
        seq = self.origin.seq + max(1, math.ceil(span * percent / 100))
        while seq <= self.end.seq and not self.is_handoff(seq):
            seq += 1
        if seq > self.end.seq or (self.end.handoff is not None and seq > self.end.handoff):
            return self.end_target()
        return self.handoff_target(seq, self.end.events_run)

    def position_target(self, events_run: int, seq: int) -> list[Target]:
        """The seeks that reach position E:S (its first moment), in order; raises for no such moment."""
        origin, end = self.origin, self.end
        if (events_run, seq) == (origin.events_run, origin.seq):
            return [self.origin_target()]
        if seq <= origin.seq or events_run < origin.events_run:
            raise TimeTravelError(f"position {format_position(events_run, seq)} is before the start of the trace "
                                  f"({origin})")
        if seq > end.seq or events_run > end.events_run:
            raise TimeTravelError(f"position {format_position(events_run, seq)} is past the end of the trace "
                                  f"({end}); run forward with g, t or p")
        if self.is_handoff(seq):
            return [self.handoff_target(seq, events_run), Target(None, events_run, seq, events_run)]
        for rec in self.inputs:  # a number published by a command: just after that input
            if rec.seq_before < seq <= rec.seq_before + rec.published:
                a = rec.anchor
                return [Target(a.handoff, a.events_run if a.handoff is None else None, seq, a.events_run)]
        return [Target(None, events_run, seq, events_run)]
