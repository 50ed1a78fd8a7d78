"""The debugger engine: attaches to a world, owns its execution, runs commands.

Threads.  The emulated machine runs on one host thread of its own (the
*machine thread*); the debugger's caller (REPL, script, TUI worker) is the
*debugger thread*.  Exactly one of the two runs at any time: the debugger
hands the machine a run request and waits on a condition; the machine runs
scheduler events, and at a hand-off where it must stop (a breakpoint, a
step's target, a break-in) its bus subscriber blocks on the same condition.
Stopping inside an event therefore keeps the whole logical call stack of
the emulated code intact, and determinism holds because nothing runs
concurrently.  Nothing here sleeps on wall time.

Position.  "event N, hand-off M" is (scheduler.events_run, bus.seq).

Checkpoints.  A machine server (wskdbg.machine_server) gives the engine a
`checkpoints` object: between events, while the machine thread is parked, the
run loop returns a "checkpoint" stop and the debugger thread forks a copy of
the process (wskdbg.checkpoints); `after_fork_in_child` makes the copy's
threading state whole.  A command line cut by a trip back to a checkpoint
goes on in that copy (`LineState`, `continue_line`).

Frames, registers and the expression context (what commands read once the
machine has stopped) are in wskdbg.frames, a mixin of Engine.

World adapter.  Anything with `.scheduler`, `.bus` and either `.hosts`
(name -> host with `.kernel`) or `.kernels` (name -> Kernel) can be debugged:
`stack.world.World` and `stack.kernel.machine.Machine` both fit.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from stack.kernel.events import DebugPrint, DriverUnloaded, Event, RoutineEntered, RoutineReturned
from stack.kernel.kernel import Kernel
from stack.kernel.scheduler import NS_PER_S

from wskdbg.breakpoints import Breakpoint, BreakpointTable
from wskdbg.commands.registry import (PROMPT, REGISTRY, CommandError, CommandResult, Registry, caret_line,
                                      split_commands)
from wskdbg.expr import ExprError, UserRegisters, evaluate
from wskdbg.frames import FrameContext
# Frames, registers and the expression context live in wskdbg.frames; these names still import from here.
from wskdbg.frames import (BUGCHECK_BREAK_FRAMES, GP_REGISTERS, KERNEL_FRAMES,  # noqa: F401
                           DebuggerExprContext, StackFrame, handoff_offset,  # noqa: F401
                           register_values, system_process_address)  # noqa: F401
from wskdbg.render.dump import DumpCursor
from wskdbg.timetravel import HandOver, TimeTravel, reverse_step_invocation, seek_decide

DEFAULT_RUN_CAP_NS = 60 * NS_PER_S  # `g` stops after this much virtual time
DEFAULT_EVENT_CAP = 2_000_000  # and after this many scheduler events (a zero-time loop)
MAX_NESTING = 16  # scripts, .foreach and breakpoint commands inside each other


# --- the world adapter -------------------------------------------------------------------

def kernels_of(world: Any) -> dict[str, Kernel]:
    """Host name -> Kernel for a World (`.hosts[n].kernel`) or a Machine (`.kernels`)."""
    hosts = getattr(world, "hosts", None)
    if isinstance(hosts, dict) and hosts:
        out = {name: h.kernel for name, h in hosts.items() if getattr(h, "kernel", None) is not None}
        if out:
            return out
    kernels = getattr(world, "kernels", None)
    if isinstance(kernels, dict):
        return dict(kernels)
    raise TypeError(f"{type(world).__name__} has neither .hosts nor .kernels")


def default_world_factory(seed: int) -> Any:
    """The standard lab (stack.world.default_world): WSK on every host, kfs, echosrv and khttpd
    running on winsrv with the user-mode web server, and the dns and httpbin hosts."""
    from stack.world import default_world
    return default_world(seed)


def bare_world_factory(seed: int) -> Any:
    """winsrv and client with tcpip and AFD only: drivers are started by hand with `sc start`."""
    from stack.world import default_world
    return default_world(seed, services=False)


# --- records ----------------------------------------------------------------------------

@dataclass(slots=True)
class StopInfo:
    """Why and where the machine stopped."""

    reason: str  # breakpoint, step, break, idle, bugcheck, halted, timecap, eventcap, context, target, start
    events_run: int
    seq: int
    time_ns: int
    event: Event | None = None  # the hand-off it stopped at (mid-event stops)
    breakpoint: Breakpoint | None = None
    mid_event: bool = False
    host: str | None = None
    note: str = ""
    condition_error: str = ""
    # p or gu stopped as a routine returned: shown, as WinDbg does, in the caller at the return
    # address (frame 0's RetAddr before the step), the callee's frame gone.
    returned: bool = False


@dataclass(slots=True)
class RunRequest:
    mode: str  # g, t, p, gu
    host: str | None = None  # the stepping context
    thread: Any = None
    event_no: int | None = None
    level: int = 0  # p: stop at a hand-off at this level or shallower
    depth: int = 0  # gu: the returning routine's depth
    time_limit_ns: int | None = None
    event_limit: int | None = None
    # The run cap: when nothing is due before time_limit_ns and nothing has run yet under this
    # request, the limit slides to (next event + cap), so `g`/`t`/`p` still move (TIME_WAIT's 240 s).
    cap_ns: int | None = None
    start: tuple[int, int] = (-1, -1)  # (events_run, hand-off) when the request was made
    target: str | None = None  # g BreakAddress: a one-time stop at this routine (lower case)
    target_host: str | None = None
    # time travel (wskdbg.timetravel): a seek's target, and where the next recorded input applies
    seek_seq: int | None = None  # mode "seek": stop at this hand-off ...
    seek_events: int | None = None  # ... or between events after this many events
    anchor_seq: int | None = None  # pause ("input") at this hand-off ...
    anchor_events: int | None = None  # ... or between events after this many events
    observer: Callable[[Event], None] | None = None  # a seek shows it every hand-off


@dataclass(slots=True)
class Position:
    events_run: int
    seq: int
    time_ns: int

    def __str__(self) -> str:
        return f"event {self.events_run}, hand-off {self.seq}"


@dataclass(slots=True)
class LineState:
    """How far a command line has run: a trip back in time may hand the rest of it to a checkpoint
    process (wskdbg.checkpoints), which runs the remaining commands and answers for the whole line."""

    line: str
    pieces: list[tuple[str, int]]
    index: int = 0  # the command running now
    texts: list[str] = field(default_factory=list)
    datas: list[Any] = field(default_factory=list)
    error: bool = False


class _Abandon(BaseException):
    """Unwinds a machine thread whose world is being replaced (reboot, close)."""


_DETACH_POLL_S = 0.05  # how often a detaching debugger re-signals a machine thread that is still alive


def level_of(ev: Event) -> int:
    """The call level a hand-off happens at: a call or return is an instruction of the caller."""
    if isinstance(ev, (RoutineEntered, RoutineReturned)):
        return ev.depth - 1
    return ev.depth


class Engine(FrameContext):
    """The debugger.  See the module docstring for the threading model."""

    prompt_text = PROMPT

    def __init__(self, world: Any = None, *, factory: Callable[[int], Any] | None = None, seed: int = 1,
                 run_cap_ns: int = DEFAULT_RUN_CAP_NS, event_cap: int = DEFAULT_EVENT_CAP,
                 live_output: Callable[[str], None] | None = None, registry: Registry | None = None) -> None:
        from wskdbg.commands import load_all
        load_all()  # registers the command modules
        self.seed = seed
        self.factory = factory if factory is not None else (None if world is not None else default_world_factory)
        self.registry = registry if registry is not None else REGISTRY
        self.run_cap_ns = run_cap_ns
        self.event_cap = event_cap
        self.live_output = live_output
        self.breakpoints = BreakpointTable()
        self.user_registers = UserRegisters()
        self.dump_cursor = DumpCursor()
        self.printed_addresses: list[str] = []  # for REPL completion
        self.log_file: Any = None  # an open .logopen file
        self.log_name = ""
        self.script_dirs: list[str] = []  # directories of the scripts being run ($$< nesting)
        self.nesting = 0
        self.in_bp_command = False
        self.pending_resume: str | None = None
        self.state: dict[str, Any] = {}  # per-command-module state (e.g. the WPP prefix)
        self._cond = threading.Condition()
        self._exec_lock = threading.RLock()
        self._machine_turn = False
        self._paused = False
        self._abandon = False
        self._break_requested = False  # a break-in waiting for a run to consume it
        self._interrupted = False  # a break-in stopped a run: the rest of the command line is dropped
        self._exec_depth = 0
        self._thread: threading.Thread | None = None
        self._machine_ident: int | None = None
        self._request = RunRequest("g")
        self._stop: StopInfo | None = None
        self._run_output: list[str] = []
        self._condition_event: Event | None = None  # the hand-off a breakpoint condition is evaluated at
        self._unsubscribe: Callable[[], None] | None = None
        self.world: Any = None
        self.current_host = ""
        self.last_stop: StopInfo | None = None
        # Checkpoints (wskdbg.checkpoints): set by a machine server; None keeps time travel re-executing.
        self.checkpoints: Any = None
        self.checkpoint_due: Callable[[], bool] | None = None  # asked between events while the machine runs
        self.progress_output: Callable[[str], None] | None = None  # "Replaying 37% ..." (never in a transcript)
        self.progress: Any = None  # the trip in time under way (wskdbg.timetravel.ReplayProgress)
        self.replayed_handoffs = 0  # hand-offs run by time-travel seeks since the engine started
        self.time_travel = TimeTravel(self)
        self._attach(world if world is not None else self.factory(seed))  # type: ignore[misc]
        self.time_travel.reset()

    # -- the world --------------------------------------------------------------------------
    def _attach(self, world: Any) -> None:
        self.world = world
        self._unsubscribe = world.bus.subscribe(self._on_event)
        kernels = kernels_of(world)
        if self.current_host not in kernels:
            self.current_host = "winsrv" if "winsrv" in kernels else next(iter(kernels))
        self._abandon = False
        self._paused = False
        self._machine_turn = False
        self.last_stop = StopInfo("start", world.scheduler.events_run, world.bus.seq, world.scheduler.now_ns)
        self.resolve_breakpoints()

    @property
    def machine(self) -> Any:
        return self.world

    @property
    def scheduler(self) -> Any:
        return self.world.scheduler

    @property
    def bus(self) -> Any:
        return self.world.bus

    @property
    def kernels(self) -> dict[str, Kernel]:
        return kernels_of(self.world)

    @property
    def kernel(self) -> Kernel:
        return self.kernels[self.current_host]

    def kernel_of(self, host: str) -> Kernel:
        try:
            return self.kernels[host]
        except KeyError:
            raise CommandError(f"no host named '{host}' (hosts: {', '.join(self.kernels)})") from None

    def set_host(self, name: str) -> None:
        for host in self.kernels:
            if host.lower() == name.lower():
                self.current_host = host
                return
        raise CommandError(f"no host named '{name}' (hosts: {', '.join(self.kernels)})")

    def prompt(self) -> str:
        return self.prompt_text

    def command_names(self) -> list[str]:
        return self.registry.names()

    def position(self) -> Position:
        return Position(self.scheduler.events_run, self.bus.seq, self.scheduler.now_ns)

    @property
    def halted(self) -> Any:
        return self.scheduler.halted

    @property
    def running(self) -> bool:
        return self._machine_turn

    @property
    def paused_mid_event(self) -> bool:
        return self._paused

    def reboot(self) -> None:
        """Replace the world with a fresh one from the same factory and seed; keep breakpoints."""
        if self.factory is None:
            raise CommandError(".reboot needs a world factory (this engine was given a world instance only)")
        self.replace_world()
        self.time_travel.reset()  # a new trace starts here

    def replace_world(self) -> None:
        """A fresh world from the factory and seed (the trace is kept: time travel rebuilds this way)."""
        self._detach()
        self._attach(self.factory(self.seed))  # type: ignore[misc]
        self.dump_cursor = DumpCursor()

    def close(self) -> None:
        self._detach()

    def _detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        thread = self._thread
        pending = (self._break_requested, self._interrupted)  # the user's, not the detach's own
        # Repeated until the thread is gone: a machine thread in the middle of an event can
        # still pause itself (taking the turn back) after our first notice.
        while thread is not None and thread.is_alive():
            with self._cond:
                self._abandon = True
                self._break_requested = True  # a machine that is running stops at its next event
                self._machine_turn = True
                self._cond.notify_all()
            thread.join(_DETACH_POLL_S)
        self._break_requested, self._interrupted = pending
        self._thread = None
        self._machine_ident = None

    # -- executing commands -----------------------------------------------------------------
    def execute(self, line: str) -> CommandResult:
        """Run a command line (commands separated by `;`); returns when the machine has stopped."""
        return self.continue_line(LineState(line, split_commands(line)))

    def continue_line(self, state: LineState, first: Callable[[], CommandResult] | None = None) -> CommandResult:
        """Run the rest of a command line from `state.index`; `first`, when given, stands in for the
        command at that index (a checkpoint process finishing a trip in time the line began)."""
        with self._exec_lock:
            self._exec_depth += 1
            try:
                result = self._execute_line(state, first)
            finally:
                self._exec_depth -= 1
                if self._exec_depth == 0:  # a break-in no run of this command line consumed ends here
                    self._break_requested = False
                    self._interrupted = False
            if self.log_file is not None and self.nesting == 0:
                self._log(state.line, result.text)
            return result

    def at_top_level(self) -> bool:
        """Is the command running now a command line of its own (not in a script, .foreach, a
        breakpoint command)?  Only such a command may hand the session over to a checkpoint."""
        return self._exec_depth == 1 and self.nesting == 0 and not self.in_bp_command

    def _execute_line(self, state: "LineState | str", first: Callable[[], CommandResult] | None = None) -> CommandResult:
        if isinstance(state, str):  # a nested line (script, .foreach, breakpoint command)
            state = LineState(state, split_commands(state))
        if not state.pieces:
            return CommandResult("", None)
        for index in range(state.index, len(state.pieces)):
            text, offset = state.pieces[index]
            if self._interrupted:
                break  # Ctrl+C stopped a run: the commands after it do not run (a script stops too)
            state.index = index
            if first is not None:
                r, first = first(), None
            else:
                try:
                    r = self.execute_one(text, offset)
                except HandOver as handover:
                    handover.line = state  # the checkpoint process runs the rest of the line
                    raise
            if r.text:
                state.texts.append(r.text)
            state.datas.append(r.data)
            state.error = state.error or r.error
            if r.error:
                break
            if self.in_bp_command and self.pending_resume is not None:
                break  # the rest runs after the machine stops again (as WinDbg does)
        datas = state.datas
        data = datas[0] if len(datas) == 1 else datas
        return CommandResult("\n".join(state.texts), data, state.error)

    def execute_one(self, text: str, offset: int = 0) -> CommandResult:
        """Run one command (no `;` splitting).  Never raises for bad input."""
        try:
            inv = reverse_step_invocation(self.registry, text) or self.registry.parse(text)
        except CommandError as exc:
            return self._error_result(exc, offset)
        if inv is None:
            return CommandResult("", None)
        return self.time_travel.run_command(inv, lambda: self._invoke(inv, offset))  # records world inputs

    def _invoke(self, inv: Any, offset: int) -> CommandResult:
        try:
            out = inv.spec.handler(self, inv)
        except CommandError as exc:
            return self._error_result(exc, offset)
        except ExprError as exc:
            return self._error_result(CommandError(exc.message, inv.args_offset + exc.position), offset)
        except (_Abandon, HandOver):
            raise
        except Exception as exc:  # a debugger bug must not take the session down
            return CommandResult(f"Internal debugger error in '{inv.name}': {type(exc).__name__}: {exc}",
                                 {"error": str(exc)}, True)
        if out is None:
            return CommandResult("", None)
        if isinstance(out, str):
            return CommandResult(out, None)
        return out

    @staticmethod
    def _error_result(exc: CommandError, offset: int) -> CommandResult:
        if exc.position is None:
            text = exc.message
        else:
            text = caret_line(offset + exc.position, exc.message)
        return CommandResult(text, {"error": exc.message, "position": exc.position}, True)

    def _log(self, line: str, text: str) -> None:
        try:
            self.log_file.write(f"{PROMPT}{line}\n")
            if text:
                self.log_file.write(text + "\n")
            self.log_file.flush()
        except OSError:
            self.log_file = None

    def note_address(self, text: str) -> None:
        """Remember an address the session printed (for completion)."""
        if text not in self.printed_addresses:
            self.printed_addresses.append(text)
            if len(self.printed_addresses) > 2000:
                del self.printed_addresses[:1000]

    def machine_thread_ident(self) -> int | None:
        """The host thread the machine runs on (its Python stack is frozen while it is paused)."""
        return self._machine_ident

    def live_event(self) -> Event | None:
        """The hand-off the machine is frozen at (or evaluating a breakpoint condition at)."""
        if self._condition_event is not None:
            return self._condition_event
        stop = self.last_stop
        if self._paused and stop is not None:
            return stop.event
        return None

    # -- running ----------------------------------------------------------------------------
    def break_in(self) -> None:
        """Ask the machine to stop at its next hand-off (safe from any thread, any time).

        The request is kept until a run consumes it, so a Ctrl+C that comes before the machine
        takes its turn, or between two runs of one command line (`g; g`), still stops it; the
        rest of that command line is then dropped.  A request that no run of the current
        command line consumed ends with it (a Ctrl+C at an idle prompt does not stop a later `g`)."""
        self._break_requested = True

    def make_request(self, mode: str, *, target: str | None = None, target_host: str | None = None,
                     deadline_ns: int | None = None) -> RunRequest:
        sched = self.scheduler
        req = RunRequest(mode, target=target, target_host=target_host)
        req.time_limit_ns = deadline_ns if deadline_ns is not None else sched.now_ns + self.run_cap_ns
        if deadline_ns is None:
            req.cap_ns = self.run_cap_ns
        req.start = (sched.events_run, self.bus.seq)
        req.event_limit = sched.events_run + self.event_cap
        stop = self.last_stop
        if self._paused and stop is not None and stop.event is not None:
            ev = stop.event
            k = self.kernel_of(ev.host)
            req.host = ev.host
            req.thread = k.current_thread
            req.event_no = sched.events_run if k.current_thread is None else None
            req.level = level_of(ev)
            depth = len(k.frames)
            if isinstance(ev, RoutineReturned):
                depth -= 1  # the routine is already returning: gu finishes its caller
            req.depth = depth
        return req

    def resume(self, req: RunRequest) -> StopInfo:
        """Hand the machine a run request; returns when it has stopped again.  Recorded inputs
        met on the way (after going back in time) are re-applied where they took effect."""
        return self.time_travel.run(req, self._resume_once)

    def _resume_once(self, req: RunRequest) -> StopInfo:
        if self.scheduler.halted is not None:
            info = self.scheduler.halted
            return StopInfo("halted", self.scheduler.events_run, self.bus.seq, self.scheduler.now_ns,
                            host=info.host)
        while True:
            with self._cond:
                if self._abandon:  # closed under a command that runs the machine again: it runs no more
                    return self._stop_here("break", note="the debugger detached")
                self._request = req
                self._stop = None
                self._machine_turn = True
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._machine_main, name="wskdbg-machine", daemon=True)
                    self._thread.start()
                self._cond.notify_all()
                while self._machine_turn and not self._abandon:
                    self._cond.wait()
                if self._abandon:  # closed while it ran: the machine thread unwinds on its own
                    return self._stop_here("break", note="the debugger detached")
                stop = self._stop
            assert stop is not None
            if stop.reason != "checkpoint":
                break
            # Between events, the machine thread parked: the whole world is heap objects, so a
            # fork is a perfect copy of it (wskdbg.checkpoints).  Then the same request runs on.
            self.checkpoints.take(self)
        self.last_stop = stop
        if stop.host and stop.host in self.kernels:
            self.current_host = stop.host
        return stop

    def after_fork_in_child(self) -> None:
        """This process is a fork taken between events: the machine thread did not come along
        (a run starts a new one) and its lock may have been held at the fork."""
        self._cond = threading.Condition()
        self._thread = None
        self._machine_ident = None
        self._machine_turn = False
        self._paused = False
        self._break_requested = False
        self._interrupted = False

    def take_run_output(self) -> list[str]:
        out, self._run_output = self._run_output, []
        return out

    def emit(self, text: str) -> None:
        """Output produced while the machine runs (DbgPrint): live, or kept for the result."""
        if self.live_output is not None:
            self.live_output(text)
        else:
            self._run_output.append(text)

    # machine thread --------------------------------------------------------------------------
    def _machine_main(self) -> None:
        self._machine_ident = threading.get_ident()
        while True:
            with self._cond:
                while not self._machine_turn:
                    self._cond.wait()
                if self._abandon:
                    self._machine_turn = False
                    self._cond.notify_all()
                    return
            try:
                stop = self._run_loop()
            except _Abandon:
                with self._cond:
                    self._stop = self._stop_here("break", note="the debugger detached")
                    self._machine_turn = False
                    self._paused = False
                    self._cond.notify_all()
                return
            except BaseException as exc:  # never leave the debugger thread waiting forever
                stop = self._stop_here("break", note=f"the machine thread failed: {type(exc).__name__}: {exc}")
            with self._cond:
                self._stop = stop
                self._machine_turn = False
                self._cond.notify_all()

    def _stop_here(self, reason: str, **kw: Any) -> StopInfo:
        s = self.scheduler
        return StopInfo(reason, s.events_run, self.bus.seq, s.now_ns, **kw)

    stop_here = _stop_here  # public: time travel builds its stops the same way

    @contextmanager
    def evaluating_at(self, ev: Event) -> Iterator[None]:
        """Registers and `k` read hand-off `ev` while a breakpoint condition is evaluated there."""
        self._condition_event = ev
        try:
            yield
        finally:
            self._condition_event = None

    @contextmanager
    def replaying_input(self, host: str, script_dirs: tuple[str, ...], in_bp_command: bool,
                        radix: int = 16) -> Iterator[None]:
        """Run a recorded input again as it first ran (its host, script directories, whether a
        breakpoint command issued it, the `n` radix its numbers were read in); its output and any
        resume it asks for are dropped."""
        saved = (self.current_host, self.script_dirs, self.in_bp_command, self.pending_resume, self._run_output)
        saved_radix = self.state.get("radix")
        if host in self.kernels:
            self.current_host = host
        self.script_dirs = list(script_dirs)
        self.in_bp_command = in_bp_command
        self._run_output = []
        self.state["radix"] = radix
        try:
            yield
        finally:
            self.current_host, self.script_dirs, self.in_bp_command, self.pending_resume, self._run_output = saved
            if saved_radix is None:
                self.state.pop("radix", None)
            else:
                self.state["radix"] = saved_radix

    def _run_loop(self) -> StopInfo:
        sched = self.scheduler
        while True:
            req = self._request
            if req.seek_events == sched.events_run and req.mode == "seek":
                return self._stop_here("seek")
            if req.anchor_events == sched.events_run:
                return self._stop_here("input")
            if sched.halted is not None:
                return self._stop_here("bugcheck", host=sched.halted.host)
            if self._break_requested:
                if self._abandon:  # the debugger is detaching from a running machine
                    raise _Abandon()
                self._break_requested = False
                self._interrupted = True
                return self._stop_here("break", host=self.current_host)
            t = sched.peek_time()
            if t is None:
                return self._stop_here("idle")
            if req.time_limit_ns is not None and t > req.time_limit_ns:
                if req.cap_ns is None or req.start != (sched.events_run, self.bus.seq):
                    return self._stop_here("timecap", note=str(t))
                req.time_limit_ns = t + req.cap_ns  # idle until t: the cap counts from there
            if req.event_limit is not None and sched.events_run >= req.event_limit:
                return self._stop_here("eventcap")
            if self.checkpoint_due is not None and self.checkpoint_due():
                return self._stop_here("checkpoint")
            sched.run_one()
            req = self._request  # a stop inside the event may have installed a new request
            if sched.halted is not None:
                return self._stop_here("bugcheck", host=sched.halted.host)
            if req.mode in ("p", "gu") and req.event_no is not None and req.event_no == sched.events_run:
                return self._stop_here("context", host=req.host, note=f"event {sched.events_run} finished")

    def _on_event(self, ev: Event) -> None:
        if threading.get_ident() != self._machine_ident or not self._machine_turn:
            self.time_travel.note_foreign(ev)  # published by the debugger itself (sc start ...): not a hand-off
            return
        if self._request.mode == "seek":  # time travel: breakpoints and output are suppressed
            self.replayed_handoffs += 1
            if self.progress is not None and not self.replayed_handoffs & 0x3FF:
                self.progress.tick(ev.seq, self.scheduler.events_run)
            stop = seek_decide(self, ev, self._request)
            if stop is not None:
                self._pause(stop)
            return
        if isinstance(ev, DebugPrint):
            self.emit(ev.text.rstrip("\n"))
        elif isinstance(ev, DriverUnloaded):
            self._forget_unloaded(ev.host)
        stop = self._decide(ev)
        if stop is None and ev.seq == self._request.anchor_seq:
            stop = self._stop_here("input", event=ev, mid_event=True, host=ev.host)
        if stop is not None:
            self._pause(stop)

    def _decide(self, ev: Event) -> StopInfo | None:
        req = self._request
        if self._break_requested:
            self._break_requested = False
            self._interrupted = True
            return self._stop_here("break", event=ev, mid_event=True, host=ev.host)
        hit = self._breakpoint_hit(ev, req)
        if hit is not None:
            return hit
        mode = req.mode
        if req.target is not None and isinstance(ev, RoutineEntered) and ev.symbol.lower() == req.target \
                and (req.target_host is None or req.target_host == ev.host):
            return self._stop_here("target", event=ev, mid_event=True, host=ev.host)
        if mode == "t":
            return self._stop_here("step", event=ev, mid_event=True, host=ev.host)
        if mode == "p":
            if req.host is None:
                return self._stop_here("step", event=ev, mid_event=True, host=ev.host)
            if self._same_context(ev, req) and level_of(ev) <= req.level:
                return self._stop_here("step", event=ev, mid_event=True, host=ev.host,
                                       returned=isinstance(ev, RoutineReturned))
            if req.thread is not None and self._context_thread_gone(req):
                return self._stop_here("step", event=ev, mid_event=True, host=ev.host)
        elif mode == "gu" and self._same_context(ev, req):
            if (isinstance(ev, RoutineReturned) and ev.depth == req.depth) or ev.depth < req.depth:
                return self._stop_here("step", event=ev, mid_event=True, host=ev.host,
                                       returned=isinstance(ev, RoutineReturned))
        return None  # a BugChecked event halts the scheduler right after; the run loop reports it

    def _same_context(self, ev: Event, req: RunRequest) -> bool:
        if ev.host != req.host:
            return False
        k = self.kernels.get(ev.host)
        if k is None:
            return False
        if req.thread is not None:
            return k.current_thread is req.thread
        return k.current_thread is None and self.scheduler.events_run == req.event_no

    @staticmethod
    def _context_thread_gone(req: RunRequest) -> bool:
        return getattr(req.thread, "state", "") == "Terminated"

    def _breakpoint_hit(self, ev: Event, req: RunRequest) -> StopInfo | None:
        cands = self.breakpoints.candidates(ev)
        if not cands:
            return None
        counting = req.mode == "g"
        for bp in cands:
            if bp.host is not None and bp.host != ev.host:
                continue
            if bp.max_depth is not None and not ev.depth < bp.max_depth:
                continue
            if bp.min_depth is not None and not ev.depth > bp.min_depth:
                continue
            cond_error = ""
            if bp.condition:
                try:
                    self._condition_event = ev
                    if evaluate(bp.condition, self.expr_context(ev.host), self.radix) == 0:
                        continue
                except ExprError as exc:
                    cond_error = exc.caret(bp.condition)
                finally:
                    self._condition_event = None
            if bp.passes_left > 1:
                if counting:
                    bp.passes_left -= 1
                continue
            bp.hits += 1
            return self._stop_here("breakpoint", event=ev, breakpoint=bp, mid_event=True, host=ev.host,
                                   condition_error=cond_error)
        return None

    def _pause(self, stop: StopInfo) -> None:
        """Block the machine thread mid-event until the debugger resumes it."""
        with self._cond:
            if self._abandon:  # the debugger is detaching: never wait for a turn that will not come
                raise _Abandon()
            self._stop = stop
            self._paused = True
            self._machine_turn = False
            self._cond.notify_all()
            while not self._machine_turn:
                self._cond.wait()
            self._paused = False
            if self._abandon:
                raise _Abandon()

    # -- breakpoint bookkeeping ---------------------------------------------------------------
    def resolve_breakpoints(self) -> None:
        """Give code breakpoints the addresses of the modules loaded now (after a load, an unload, a trip in time)."""
        for bp in self.breakpoints:
            if bp.kind != "code":
                continue
            found = self.resolve_routine(bp.symbol, bp.host)
            bp.address = found[1] if found else 0

    def _forget_unloaded(self, host: str) -> None:
        """`bp` breakpoints go away with their module; `bu`/`bm` ones become deferred."""
        k = self.kernels.get(host)
        if k is None:
            return
        gone = []
        for bp in self.breakpoints:
            if bp.kind != "code" or (bp.host not in (None, host)) or k.module(bp.module) is not None:
                continue
            if bp.symbolic or bp.address == 0:
                bp.address = 0
            else:
                gone.append(bp.id)
        if gone:
            self.breakpoints.remove(gone)
