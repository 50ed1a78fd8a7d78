"""The machine server: the engine in a process of its own, so time travel can use checkpoints.

A checkpoint (wskdbg.checkpoints) is a fork of the process that runs the world; when a trip back
lands, the process that took over from the checkpoint becomes the machine.  So the front end —
the REPL, `wskdbg run`, `wskdbg -c`, a bench — cannot live in that process: it talks to it
through `MachineProxy`, which sends command lines down a pipe and reads back results (text plus
JSON-shaped data), DbgPrint output as it happens, progress lines and the pid of the process that
serves it now (break-ins are SIGUSR1 to that pid, numbered in a page every machine process shares
and acknowledged by number on a pipe of their own once the engine holds the request: see
`MachineProxy.break_in`).

    front end (MachineProxy)      live machine server            checkpoints (dormant forks)
    ───────────────────────       ───────────────────            ───────────────────────────
    execute("t-") ── request ──►  Engine.execute: t- plans the
                                  trip, raises HandOver ──────►  the nearest one forks a runner:
                                  and exits                      it replays to the target, runs
    ◄──────────── result ─────────────────────────────────────── the rest of the line, answers,
                                                                 and serves from now on

Every process holds the read end of the front end's *lifeline* pipe: when the front end closes
or dies, they all read EOF and exit.  `MachineProxy.close()` also kills them and waits until
none is left.

The TUI (`views=True`).  Its views are fed from here too: the server keeps a
`wskdbg.tui.machine_side.MachineSide` (an event tap and the builders of `MachineView`s, trace
records and MDL pictures) next to the engine, so checkpoints copy it with the world and a
runner's replay brings it to the target.  Stopped, the TUI asks (`view_request`); while a
command runs it sends SIGUSR2 (`want_view`) and the machine's thread pushes a view, with the
trace records since the last one, at its next hand-off.  Nothing the TUI draws is a live object.
"""

from __future__ import annotations

import mmap
import os
import shutil
import signal
import struct
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from wskdbg.checkpoints import (DEFAULT_CAP, DEFAULT_EVERY, SUPPORTED, BecomeLive, Checkpointer,
                                adopt_debugger_state, export_debugger_state, process_alive, read_message,
                                send_message)
from wskdbg.commands.registry import PROMPT, CommandResult
from wskdbg.engine import Position
from wskdbg.timetravel import HandOver

_WAIT_SLICE_S = 1.0  # how often a front end waiting for a result checks that its server still lives
_BREAK_ACK_SLICE_S = 0.05  # how often a break-in waiting for its acknowledgement checks the server lives
_BREAK_ACK_MAX_S = 5.0  # a server that never acknowledges (busy in one long call): the caller goes on

# A signal carries no data, so a break-in's number travels in a page every machine process shares
# (anonymous MAP_SHARED, made before the first fork, so checkpoints and runners see it too): the
# front end writes `requested`, the live server writes `taken` when its engine holds that request.
_BREAK_BOX = struct.Struct("<QQ")  # requested, taken
_TAKEN_AT = 8
# What a server writes on the acknowledgement pipe: one record per write (under PIPE_BUF, so a
# write is atomic and records from two processes never interleave).
_ACK = struct.Struct("<QQI")  # break-in number, pid, kind
ACK_HELD = 1  # this pid's engine holds break-in `number` (and every one before it)
ACK_LEAVING = 2  # this pid is handing the machine over: the runner takes what is requested


def _jsonable_line(line: Any) -> Any:
    from wskdbg.script import jsonable
    line.datas = [jsonable(d) for d in line.datas]
    return line


def _plain_bugcheck(info: Any) -> Any:
    """A bug check as the front end gets it: without `extra` (live frames, read here by !analyze)."""
    import dataclasses
    return dataclasses.replace(info, extra={}) if info is not None else None


class MachineServer:
    """The server's side: one Engine, serving requests from the front end's pipe."""

    def __init__(self, make_engine: Callable[[], Any], requests: int, replies: int, lifeline: int, directory: str,
                 every: int, cap: int, views: bool = False, acks: int = -1, breaks: Any = None) -> None:
        self.requests = requests
        self.replies = replies
        self.acks = acks  # break-in acknowledgements to the front end (MachineProxy.break_in)
        self.breaks = breaks if breaks is not None else mmap.mmap(-1, _BREAK_BOX.size)  # the shared numbers
        self.leaving = False  # handing the machine over: break-ins are the runner's to take
        self.held_in_line = False  # took a break-in during the current command line (handed over with it)
        self._send_lock = threading.Lock()  # the machine's thread pushes views while the debugger's answers
        self.engine = make_engine()
        self.views: Any = None
        if views:  # before the first checkpoint: every copy of the machine has its tap
            from wskdbg.tui.machine_side import MachineSide
            self.views = MachineSide(self.engine, push=self._push_view)
        self.checkpoints = Checkpointer(directory, lifeline, self.send, every=every, cap=cap)
        self.checkpoints.install(self.engine)
        self._wire(self.engine)

    def send(self, message: Any) -> None:
        with self._send_lock:
            send_message(self.replies, message)

    def _push_view(self, generation: int, view: Any, records: list[Any]) -> None:
        self.send(("view", generation, view, records))

    def break_in(self) -> None:
        """SIGUSR1 from the front end: take the break-in it numbered and say so, with its number.
        The signal's Python handler runs on this process's main thread whenever that thread next
        gets the GIL; until it has run, a machine thread that goes on (a test letting it through
        after Ctrl+C) could end its run without seeing the request, and the break-in would be lost.
        A process handing the machine over takes nothing: its runner takes the request."""
        if not self.leaving:
            self.take_break_request()

    def take_break_request(self) -> None:
        """Take the newest break-in the front end numbered, if no machine process took it yet."""
        requested, taken = _BREAK_BOX.unpack_from(self.breaks)
        if requested <= taken:  # a repeated signal, or a runner's look at taking over
            return
        self.engine.break_in()
        self.held_in_line = True
        struct.pack_into("<Q", self.breaks, _TAKEN_AT, requested)  # only the front end writes `requested`
        self._ack(requested, ACK_HELD)

    def _ack(self, number: int, kind: int) -> None:
        try:
            os.write(self.acks, _ACK.pack(number, os.getpid(), kind))
        except OSError:  # no front end reading (or a full pipe it will drain): the request stands
            pass

    def want_view(self) -> None:
        """SIGUSR2 from the TUI: build a view at the next hand-off."""
        if self.views is not None:
            self.views.want_view()

    def _wire(self, engine: Any, live: bool = False) -> None:
        """Output while the machine runs goes to the front end as it happens when the front end has a
        live output (the REPL); otherwise it is part of the command's result, as in-process."""
        engine.live_output = (lambda text: self.send(("emit", text))) if live else None
        engine.progress_output = lambda text: self.send(("progress", text))

    def status(self) -> dict[str, Any]:
        eng = self.engine
        pos = eng.position()
        status: dict[str, Any] = {"pid": os.getpid(), "host": eng.current_host, "position": (pos.events_run, pos.seq, pos.time_ns),
                                  "printed_addresses": list(eng.printed_addresses[-200:]), "radix": eng.radix,
                                  "checkpoints": [(r.number, r.pid, r.events_run, r.seq, r.time_ns) for r in self.checkpoints.records],
                                  "replayed_handoffs": eng.replayed_handoffs, "prompt": eng.prompt(),
                                  "evicted": self.checkpoints.evicted, "bugcheck": _plain_bugcheck(eng.scheduler.halted)}
        self.checkpoints.evicted = []
        try:
            thread = eng.current_thread()
            status.update(irql=eng.current_irql(), thread=(thread.address, getattr(thread, "name", "")))
        except Exception:  # the status must never break an answer
            status.update(irql=0, thread=(0, ""))
        return status

    def answer(self, result: CommandResult) -> None:
        from wskdbg.script import jsonable
        self.send(("result", (result.text, jsonable(result.data), result.error), self.status()))

    def serve(self) -> None:
        """Serve until the front end closes.  A trip back hands the session to a checkpoint's runner;
        this loop is also where a runner arrives (BecomeLive unwinds to it)."""
        trip: dict[str, Any] | None = None
        handover: HandOver | None = None
        first = True
        while True:
            try:
                if first:
                    first = False
                    self.checkpoints.restart(self.engine)  # the checkpoint at the start of the trace
                if trip is not None:
                    payload, trip = trip, None
                    self._finish_trip(payload)
                if handover is not None:
                    leaving, handover = handover, None
                    self._hand_over(leaving)
                self._serve_requests()
                return
            except BecomeLive as become:
                trip = become.payload
            except HandOver as raised:
                handover = raised

    def _serve_requests(self) -> None:
        while True:
            message = read_message(self.requests)
            if message is None or message[0] == "close":
                self.checkpoints.kill_all()
                return
            kind = message[0]
            if kind == "execute":
                _, line, script_dirs, live = message
                self._wire(self.engine, live)
                self.engine.script_dirs = list(script_dirs)
                self.answer(self._line_done(self.engine.execute(line)))
            elif kind == "symbols":
                self.send(("symbols", self._symbols()))
            elif kind == "status":
                self.send(("status", self.status()))
            elif kind == "names":
                self.send(("names", self.engine.command_names()))
            elif kind == "tui" and self.views is not None:
                try:
                    answer: Any = ("ok", self.views.handle(message[1]))
                except Exception as exc:  # a view must never take the machine down
                    answer = ("error", f"{type(exc).__name__}: {exc}")
                self.send(("tui", answer))

    def _line_done(self, result: CommandResult) -> CommandResult:
        """The command line ended here (a run consumed its break-in, or the line dropped it)."""
        self.held_in_line = False
        return result

    def _symbols(self) -> list[tuple[str, list[str]]]:
        try:
            return [(m.name, list(m.symbols)) for m in self.engine.kernel.modules]
        except Exception:
            return []

    def _hand_over(self, handover: HandOver) -> None:
        """Send the trip and the rest of the command line to the checkpoint, then leave; if the
        checkpoint is gone, finish the trip here by re-execution."""
        eng = self.engine
        # From here a break-in is the runner's: it takes what the front end requested when it
        # takes over.  One this process took during the line goes with the line (the engine
        # dropped it when HandOver unwound the line).
        self.leaving = True
        self._ack(0, ACK_LEAVING)
        payload = {"state": export_debugger_state(eng), "plan": handover.plan, "line": _jsonable_line(handover.line),
                   "checkpoints": list(self.checkpoints.records), "next_number": self.checkpoints.next_number,
                   "live": eng.live_output is not None, "break_pending": self.held_in_line,
                   "views": self.views.handover_state() if self.views is not None else None}
        if eng.log_file is not None:
            eng.log_file.flush()
        self.send(("handover", handover.checkpoint.pid))
        if self.checkpoints.hand_over(handover.checkpoint, payload):
            os._exit(0)
        self.leaving = False  # the checkpoint is gone: this process finishes the trip
        if payload["break_pending"]:
            eng.break_in()
        self.send(("live", os.getpid()))
        self.take_break_request()
        self.answer(self._line_done(eng.continue_line(handover.line, first=lambda: _trip(eng, handover.plan, handover.line))))

    def _finish_trip(self, payload: dict[str, Any]) -> None:
        """In a runner: take over, replay to the target, run the rest of the line, answer."""
        eng = self.engine
        self._wire(eng, payload["live"])
        self.checkpoints.adopt(payload["checkpoints"], payload["next_number"])
        adopt_debugger_state(eng, payload["state"])
        if self.views is not None:
            self.views.adopt(payload.get("views"))
        self.leaving = False
        self.held_in_line = bool(payload.get("break_pending"))
        if self.held_in_line:  # taken by the process that handed over, during this line
            eng.break_in()
        signal.signal(signal.SIGUSR1, lambda signum, frame: self.break_in())
        signal.signal(signal.SIGUSR2, lambda signum, frame: self.want_view())
        self.take_break_request()  # one requested during the hand-over (its signal went to the old process, or was ignored here)
        line = payload["line"]
        self.answer(self._line_done(eng.continue_line(line, first=lambda: _trip(eng, payload["plan"], line))))


def _trip(engine: Any, plan: Any, line: Any) -> CommandResult:
    """The trip a hand-over brought here, answered as the command answers in-process when it cannot
    finish (a break-in during its replay: "time travel was interrupted"), never by dying."""
    from wskdbg.commands.registry import CommandError
    from wskdbg.commands.timetravel import perform
    try:
        return perform(engine, plan)
    except CommandError as exc:
        return engine._error_result(exc, line.pieces[line.index][1])


def _server_main(make_engine: Callable[[], Any], requests: int, replies: int, lifeline: int, directory: str,
                 every: int, cap: int, views: bool = False, acks: int = -1, breaks: Any = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl+C is the front end's to turn into a break-in
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # checkpoints and runners are reaped by the kernel
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # (its default would end the process before the server is up)
    server = MachineServer(make_engine, requests, replies, lifeline, directory, every, cap, views, acks, breaks)
    signal.signal(signal.SIGUSR1, lambda signum, frame: server.break_in())
    signal.signal(signal.SIGUSR2, lambda signum, frame: server.want_view())
    server.serve()


# --- the front end's side ---------------------------------------------------------------------------

@dataclass(slots=True)
class ThreadView:
    """What the REPL's status line needs of the current thread."""

    address: int
    name: str


@dataclass(slots=True)
class _ModuleView:
    name: str
    symbols: list[str]


@dataclass(slots=True)
class _KernelView:
    modules: list[_ModuleView] = field(default_factory=list)


class MachineServerError(RuntimeError):
    """The machine server could not be started or went away."""


class MachineProxy:
    """An engine in another process (see the module docstring).  `execute`, `break_in`, `close`,
    `prompt`, `command_names`, `script_dirs`, `live_output`, `progress_output` and the status the
    REPL shows (`current_host`, `position()`, `current_thread()`, `current_irql()`) work as on
    `wskdbg.engine.Engine`; world objects stay in the server."""

    def __init__(self, make_engine: Callable[[], Any], *, every: int = DEFAULT_EVERY, cap: int = DEFAULT_CAP,
                 live_output: Callable[[str], None] | None = None,
                 progress_output: Callable[[str], None] | None = None, views: bool = False) -> None:
        if not SUPPORTED:
            raise MachineServerError("checkpoints need fork() (POSIX)")
        self.live_output = live_output
        self.progress_output = progress_output
        self.views = views
        # The TUI's: called with (generation, MachineView, trace records) for each view the server
        # pushes while a command runs (on the thread that reads the reply: the one in execute).
        self.view_output: Callable[[int, Any, list[Any]], None] | None = None
        self.script_dirs: list[str] = []
        self.directory = tempfile.mkdtemp(prefix="wskdbg-cp-")
        req_r, self._requests = os.pipe()
        self._replies, rep_w = os.pipe()
        life_r, self._lifeline = os.pipe()
        self._acks, acks_w = os.pipe()
        os.set_blocking(self._acks, False)
        os.set_blocking(acks_w, False)
        self._breaks = mmap.mmap(-1, _BREAK_BOX.size)  # shared with every machine process (see _BREAK_BOX)
        self._break_number = 0  # the last break-in this front end numbered
        self._ack_tail = b""  # a partial acknowledgement record (never expected: each is one write)
        self._left: set[int] = set()  # pids that said they are handing the machine over
        self._held: tuple[int, int] | None = None  # (number, pid): the highest break-in acknowledged
        self._acks_eof = False  # the ack pipe said EOF: no machine process is left to answer
        self.last_break_ack: tuple[int, int] | None = None  # (number, pid) of the last break-in held
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                os.close(self._requests)
                os.close(self._replies)
                os.close(self._lifeline)
                os.close(self._acks)
                _server_main(make_engine, req_r, rep_w, life_r, self.directory, every, cap, views, acks_w,
                             self._breaks)
            except SystemExit as exc:  # the lab refused to start (e.g. --cpu-hosts names no host)
                send_message(rep_w, ("fatal", str(exc.code)))
                status = 2
            except BaseException:  # noqa: BLE001 - a server must never run the front end's code
                import traceback
                traceback.print_exc()
                status = 1
            os._exit(status)
        os.close(req_r)
        os.close(rep_w)
        os.close(life_r)
        os.close(acks_w)
        self.server_pid = pid
        self.live_pid = pid
        self._waiting_on: int | None = None  # during a hand-over: the checkpoint forking the runner
        self.known_pids: set[int] = {pid}
        self.evicted_pids: set[int] = set()
        self._status: dict[str, Any] = {}
        self._names: list[str] | None = None
        self._kernel: _KernelView | None = None
        self.closed = False
        self._status = self._ask("status")  # waits until the server is up

    # -- talking to the server ------------------------------------------------------------------
    def _read(self) -> Any:
        import select
        while True:
            ready, _, _ = select.select([self._replies], [], [], _WAIT_SLICE_S)
            if ready:
                message = read_message(self._replies)
                if message is None:
                    raise MachineServerError("the machine server closed its pipe")
            else:
                watched = self._waiting_on if self._waiting_on is not None else self.live_pid
                if not process_alive(watched):
                    raise MachineServerError(f"the machine server (pid {watched}) is gone")
                continue
            kind = message[0]
            if kind == "emit":
                if self.live_output is not None:
                    self.live_output(message[1])
            elif kind == "progress":
                if self.progress_output is not None:
                    self.progress_output(message[1])
            elif kind == "view":
                if self.view_output is not None:
                    self.view_output(*message[1:])
            elif kind == "handover":
                self._waiting_on = message[1]
                self.known_pids.add(message[1])
            elif kind == "fatal":  # the server could not start: the front end exits with its reason
                self.close()
                raise SystemExit(message[1])
            elif kind == "live":
                self.live_pid = message[1]
                self._waiting_on = None
                self.known_pids.add(message[1])
            else:
                return message

    def execute(self, line: str) -> CommandResult:
        if self.closed:
            return CommandResult("the debugger is closed", {"error": "closed"}, True)
        try:
            send_message(self._requests, ("execute", line, list(self.script_dirs), self.live_output is not None))
            message = self._read()
        except (OSError, MachineServerError) as exc:
            return CommandResult(f"The machine server failed: {exc}", {"error": str(exc)}, True)
        _, (text, data, error), status = message
        self._status = status
        self.live_pid = status["pid"]
        self.known_pids.add(status["pid"])
        self.known_pids.update(pid for _, pid, *_ in status["checkpoints"])
        self.known_pids.update(status["evicted"])
        self.evicted_pids.update(status["evicted"])
        self._kernel = None
        return CommandResult(text, data, error)

    def _ask(self, kind: str) -> Any:
        send_message(self._requests, (kind,))
        return self._read()[1]

    def _ask_with(self, kind: str, argument: Any) -> Any:
        send_message(self._requests, (kind, argument))
        return self._read()[1]

    def break_in(self) -> tuple[int, int] | None:
        """Ask the machine to stop; returns once the server's engine holds the request (as
        `Engine.break_in` does in-process), so whatever the caller does next — let a stopped
        machine thread go on — cannot outrun it.  Returns (number, pid) of the acknowledgement,
        or None when none came (no server, or one busy past _BREAK_ACK_MAX_S: the request stands).

        Each break-in is numbered, and only an acknowledgement of this number (or a later one)
        counts: a late one of an earlier break-in that timed out is not this one's.  During a
        hand-over the old process takes nothing (it says it is leaving); the runner takes the
        request when it takes over, or when it is signalled as the new live process."""
        if self.closed:
            return None
        try:
            return self._break_in()
        except (OSError, ValueError):  # close() on another thread closed the pipe or the page under us
            if self.closed:
                return None
            raise

    def _break_in(self) -> tuple[int, int] | None:
        import select
        import time
        self._read_acks()  # what came late for earlier break-ins (and who left meanwhile)
        self._break_number += 1
        number = self._break_number
        struct.pack_into("<Q", self._breaks, 0, number)  # before the signal: the handler reads it
        pid = self.live_pid
        if not self._send_break(pid):
            self._read_acks()
            if pid not in self._left:
                return None  # gone, and not by handing the machine over: no one will acknowledge
        # Time counts whatever wakes the wait (a record for an older break-in, the pipe's EOF).
        deadline = time.monotonic() + _BREAK_ACK_MAX_S
        while True:
            # `_held` is read each time round: a nested break-in (a second Ctrl+C whose handler
            # ran inside this wait) may have read the acknowledgement that covers this one too.
            if self._held is not None and self._held[0] >= number:
                self.last_break_ack = self._held
                return self._held
            if self.closed or self._acks_eof:
                return None  # every machine process is gone (their ends of the ack pipe closed)
            if time.monotonic() >= deadline:
                return None
            ready, _, _ = select.select([self._acks], [], [], _BREAK_ACK_SLICE_S)
            if ready:
                self._read_acks()
                continue
            if self.live_pid != pid and process_alive(self.live_pid):  # the runner is live now
                pid = self.live_pid
                self._send_break(pid)
            elif not process_alive(pid) and pid not in self._left:
                return None  # it died: there is no one to acknowledge

    def _send_break(self, pid: int) -> bool:
        try:
            os.kill(pid, signal.SIGUSR1)
        except OSError:
            return False
        return True

    def _read_acks(self) -> list[tuple[int, int, int]]:
        """The acknowledgement records that have come, oldest first; notes who left, the highest
        break-in held so far (`_held`, which every waiting break_in checks) and the pipe's EOF."""
        data = self._ack_tail
        try:
            while chunk := os.read(self._acks, _ACK.size * 64):
                data += chunk
            self._acks_eof = True  # read returned b"": every machine process has exited
        except (BlockingIOError, OSError):
            pass
        whole = len(data) - len(data) % _ACK.size
        self._ack_tail = data[whole:]
        records = [_ACK.unpack_from(data, at) for at in range(0, whole, _ACK.size)]
        for held, pid, kind in records:
            if kind == ACK_LEAVING:
                self._left.add(pid)
            elif kind == ACK_HELD and (self._held is None or held >= self._held[0]):
                self._held = (held, pid)
        return records

    # -- the TUI's views (views=True) ---------------------------------------------------------------
    def view_request(self, request: tuple) -> Any:
        """Ask the machine side (wskdbg.tui.machine_side.MachineSide.handle) while the machine is
        stopped: ("view", irp, mdl) -> (generation, MachineView, trace records), ("kind", address)."""
        if not self.views:
            raise MachineServerError("this machine server keeps no views (views=False)")
        status, answer = self._ask_with("tui", request)
        if status != "ok":
            raise MachineServerError(f"the machine server could not build the view: {answer}")
        return answer

    def want_view(self) -> None:
        """While a command runs: the machine's thread pushes a view at its next hand-off (view_output)."""
        try:
            os.kill(self.live_pid, signal.SIGUSR2)
        except OSError:
            pass

    @property
    def halted_info(self) -> Any:
        """The bug check that halted the machine (BugCheckInfo), as of the last answer."""
        return self._status.get("bugcheck")

    # -- what front ends read -------------------------------------------------------------------
    def prompt(self) -> str:
        return self._status.get("prompt", PROMPT)

    def command_names(self) -> list[str]:
        if self._names is None:
            self._names = self._ask("names")
        return self._names

    @property
    def kernel(self) -> _KernelView:
        """The current host's modules and their routine names (for completion)."""
        if self._kernel is None:
            self._kernel = _KernelView([_ModuleView(n, s) for n, s in self._ask("symbols")])
        return self._kernel

    @property
    def current_host(self) -> str:
        return self._status.get("host", "")

    @property
    def printed_addresses(self) -> list[str]:
        return self._status.get("printed_addresses", [])

    @property
    def radix(self) -> int:
        """The `n` base the last command left (REPL completion adds 0x to addresses when not 16)."""
        return self._status.get("radix", 16)

    @property
    def replayed_handoffs(self) -> int:
        """Hand-offs the machine replayed for trips in time so far (a test's measure of the work)."""
        return self._status.get("replayed_handoffs", 0)

    @property
    def checkpoint_pids(self) -> list[int]:
        return [pid for _, pid, *_ in self._status.get("checkpoints", [])]

    @property
    def checkpoint_positions(self) -> list[tuple[int, int]]:
        return [(events_run, seq) for _, _, events_run, seq, _ in self._status.get("checkpoints", [])]

    def position(self) -> Position:
        return Position(*self._status.get("position", (0, 0, 0)))

    def current_thread(self, host: str | None = None) -> ThreadView:
        return ThreadView(*self._status.get("thread", (0, "")))

    def current_irql(self, host: str | None = None) -> int:
        return self._status.get("irql", 0)

    # -- the end ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the server and every checkpoint; returns when none of them is left."""
        if self.closed:
            return
        self.closed = True
        try:
            send_message(self._requests, ("close",))
        except OSError:
            pass
        for fd in (self._requests, self._lifeline, self._acks):
            try:
                os.close(fd)
            except OSError:
                pass
        self._breaks.close()
        self._reap(self.server_pid)
        import time
        deadline = time.monotonic() + 10.0
        survivors = [pid for pid in self.known_pids if process_alive(pid)]
        while survivors and time.monotonic() < deadline:
            time.sleep(0.01)  # they exit on the lifeline's EOF; give them the moment that takes
            survivors = [pid for pid in survivors if process_alive(pid)]
        for pid in survivors:  # a process that did not hear the lifeline
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.close(self._replies)
        except OSError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)

    def _reap(self, pid: int) -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def __enter__(self) -> "MachineProxy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_engine(make_engine: Callable[[], Any], *, checkpoints: bool | None = None, **kwargs: Any) -> Any:
    """A MachineProxy (checkpoints) where fork() exists and WSKDBG_CHECKPOINTS is not 0; the
    in-process engine otherwise (time travel then re-executes from the start of the trace)."""
    if checkpoints is None:
        checkpoints = os.environ.get("WSKDBG_CHECKPOINTS", "1") != "0"
    if checkpoints and SUPPORTED:
        every = int(os.environ.get("WSKDBG_CHECKPOINT_EVERY", DEFAULT_EVERY))
        cap = int(os.environ.get("WSKDBG_CHECKPOINT_CAP", DEFAULT_CAP))
        return MachineProxy(make_engine, every=kwargs.pop("every", every), cap=kwargs.pop("cap", cap), **kwargs)
    return make_engine()
