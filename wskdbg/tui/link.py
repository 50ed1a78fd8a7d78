"""The TUI's one window onto the debugger engine and the machine it drives.

The views never talk to the engine directly: they ask the `EngineLink` for a
`MachineView` (position, IRPs, connections, the stack picture) and send
commands through `execute`.  The engine is reached through its typed interface
(`wskdbg.engine_api.DebuggerEngine`).

Threads meet at hand-offs.  The machine's objects belong to the machine's
thread.  While a command is in flight the UI thread never reads them: it asks
for a view (`EventTap.want_view`), and the tap — a bus subscriber, so it runs
on the machine's thread at the next hand-off — builds an immutable
`MachineView` there and hands it over.  While no command is in flight the
machine is stopped and the view is built directly.

`EventTap` also keeps a bounded queue of the (immutable) events for the trace
view and counters by (host, layer); both are guarded by one lock, the one
`reset()` takes.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from stack.kernel.events import Event

from wskdbg.engine_api import DebuggerEngine, RemoteViews

RUNNING = "running"
BROKEN = "broken in"
BUGCHECKED = "bug-checked"

# Module name (the part before "!") -> the stack layer it belongs to.  Any other loaded module
# except the executive (nt, hal) is a driver.
LAYER_OF_MODULE: dict[str, str] = {
    "netvmini": "miniport", "ndis": "ndis", "tcpip": "tcpip", "tdx": "tcpip",
    "afd": "wsk", "netio": "wsk",
}
EXECUTIVE_MODULES = frozenset({"nt", "hal"})

# Event kinds (the part before ".") that belong to a layer whatever their symbol.
LAYER_OF_KIND: dict[str, str] = {
    "tcp": "tcpip", "ip": "tcpip", "tcpip": "tcpip",
    "nbl": "ndis", "oid": "ndis",
    "frame": "nic", "interrupt": "nic",
    "wsk": "wsk",
}

# Top to bottom, as the stack view draws a host.
LAYER_ORDER: tuple[str, ...] = ("user", "drivers", "wsk", "tcpip", "ndis", "miniport", "nic")
LAYER_TITLES: dict[str, str] = {
    "user": "user mode", "drivers": "drivers", "wsk": "WSK", "tcpip": "tcpip",
    "ndis": "NDIS", "miniport": "miniport", "nic": "NIC",
}


def layer_of_module(module: str) -> str | None:
    name = module.lower()
    if name in EXECUTIVE_MODULES or not name:
        return None
    return LAYER_OF_MODULE.get(name, "drivers")


def layer_of_event(event: Event) -> str | None:
    """The stack layer an event happened in (None for the executive: nt, hal, pool...)."""
    for attr in ("symbol", "routine", "driver", "provider"):
        name = getattr(event, attr, None)
        if isinstance(name, str) and name:
            layer = layer_of_module(name.partition("!")[0])
            if layer is not None:
                return layer
    return LAYER_OF_KIND.get(event.kind.partition(".")[0])


def short_describe(event: Event) -> str:
    """What the stack view writes in a layer: the routine without its module for calls."""
    kind = event.kind
    if kind in ("call", "ret"):
        routine = getattr(event, "symbol", "").partition("!")[2]
        return ("→ " if kind == "call" else "← ") + routine
    return event.describe()


@dataclass(slots=True)
class SegmentNote:
    """One TCP segment a host sent, for the network view's ladder."""

    seq: int
    time_ns: int
    host: str
    conn: int
    summary: str
    length: int


@dataclass(slots=True)
class IrpNote:
    """What the tap saw of an IRP (kept after it is freed, for the 'recent' list)."""

    host: str
    address: int
    first_seq: int
    last_seq: int = 0
    last: str = ""
    freed: bool = False
    history: list[str] = field(default_factory=list)


class EventTap:
    """Bus subscriber: a bounded queue of events, counters by (host, layer), and the
    `MachineView` the UI asked for, built at a hand-off on the machine's thread."""

    MAX_QUEUED = 250_000
    MAX_SEGMENTS = 4_000
    MAX_IRPS = 64

    def __init__(self) -> None:
        self.queue: deque[Event] = deque(maxlen=self.MAX_QUEUED)
        self.dropped = 0
        self.counts: dict[tuple[str, str], int] = {}
        self.last_by_layer: dict[tuple[str, str], str] = {}
        self.last_event: Event | None = None
        self.last_layer: tuple[str, str] | None = None
        self.previous_layer: tuple[str, str] | None = None
        self.segments: deque[SegmentNote] = deque(maxlen=self.MAX_SEGMENTS)
        self.irps: dict[int, IrpNote] = {}
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self.bus: Any = None
        # The hand-over of views: the UI sets `want_view`; the machine's thread builds one with
        # `view_builder` at its next hand-off and leaves it in `view` (a reference swap).
        self.want_view = False
        self.view_builder: Callable[[], Any] | None = None
        self.view: Any = None
        self.view_error = ""
        self.queue_after = -1  # queue only hand-offs past this one (machine_side: after a trip back)

    def attach(self, bus: Any) -> None:
        """Subscribe first in line: the engine's own subscriber may block the machine
        at this very event, and the views must already show it."""
        self.detach()
        self.bus = bus
        self._unsubscribe = bus.subscribe(self.on_event, first=True)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = None
        self.bus = None

    def reset(self) -> None:
        with self._lock:
            self.queue.clear()
            self.counts.clear()
            self.last_by_layer.clear()
            self.last_event = None
            self.last_layer = None
            self.previous_layer = None
            self.segments.clear()
            self.irps.clear()
            self.view = None
            self.want_view = False

    # Runs on the machine's thread for every event: keep it short.
    def on_event(self, event: Event) -> None:
        with self._lock:
            if event.seq > self.queue_after:
                if len(self.queue) == self.MAX_QUEUED:
                    self.dropped += 1
                self.queue.append(event)
            layer = layer_of_event(event)
            if layer is not None:
                key = (event.host, layer)
                self.counts[key] = self.counts.get(key, 0) + 1
                if key != self.last_layer:
                    self.previous_layer = self.last_layer
                self.last_layer = key
                self.last_by_layer[key] = short_describe(event)
            self.last_event = event
            kind = event.kind
            if kind.startswith("irp."):
                self._note_irp(event)
            elif kind == "tcp.send":
                self.segments.append(SegmentNote(event.seq, event.time_ns, event.host, getattr(event, "conn", 0),
                                                 getattr(event, "summary", ""), getattr(event, "length", 0)))
        if self.want_view and self.view_builder is not None:
            self.want_view = False
            try:
                self.view = self.view_builder()
                self.view_error = ""
            except Exception as exc:  # a view must never take the machine down
                self.view_error = f"{type(exc).__name__}: {exc}"

    def _note_irp(self, event: Event) -> None:  # called with the lock held
        address = getattr(event, "irp", 0)
        note = self.irps.get(address)
        if note is None or (event.kind == "irp.alloc" and note.freed):
            note = IrpNote(event.host, address, event.seq)
            self.irps[address] = note
            if len(self.irps) > self.MAX_IRPS:  # forget the oldest freed ones first
                for old in [a for a, n in self.irps.items() if n.freed][: len(self.irps) - self.MAX_IRPS]:
                    del self.irps[old]
        note.last_seq = event.seq
        note.last = event.describe()
        note.history.append(f"{event.seq:>7} {note.last}")
        del note.history[:-12]
        if event.kind == "irp.free":
            note.freed = True

    def drain(self, limit: int = 100_000) -> list[Event]:
        """Take up to `limit` queued events (UI thread)."""
        with self._lock:
            queue = self.queue
            n = min(limit, len(queue))
            return [queue.popleft() for _ in range(n)]

    def drop_queued_through(self, seq: int) -> None:
        """Forget queued events up to hand-off `seq` (the front end has them already)."""
        with self._lock:
            self.queue = deque((e for e in self.queue if e.seq > seq), maxlen=self.MAX_QUEUED)

    def irp_notes(self) -> list[IrpNote]:
        """Copies, in the order the IRPs were first seen."""
        with self._lock:
            return [IrpNote(n.host, n.address, n.first_seq, n.last_seq, n.last, n.freed, list(n.history))
                    for n in sorted(self.irps.values(), key=lambda n: n.first_seq)]

    def layer_state(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], str], Event | None,
                                   tuple[str, str] | None, tuple[str, str] | None]:
        """Counters, last hand-off per layer, the last event and where it came from: one moment."""
        with self._lock:
            return (dict(self.counts), dict(self.last_by_layer), self.last_event, self.last_layer,
                    self.previous_layer)

    def segment_notes(self) -> list[SegmentNote]:
        with self._lock:
            return list(self.segments)


@dataclass(frozen=True, slots=True)
class Position:
    """Where the machine is, as the status bar shows it."""

    time_ns: int
    events_run: int
    event_seq: int
    state: str
    host: str
    irql: int
    thread: str
    generation: int  # bumps at every .reboot (a new world)

    def key(self) -> tuple:
        return (self.time_ns, self.events_run, self.event_seq, self.state, self.generation)


@dataclass(slots=True)
class CommandOutput:
    command: str
    text: str
    data: Any = None
    error: bool = False


class EngineLink:
    """Hands the views `MachineView`s and runs commands through the engine.

    Two ways to the machine, one kind of data: with a `MachineProxy` (the machine in a server
    process, time travel from checkpoints) every view, trace record and MDL picture is built in
    the server (wskdbg.tui.machine_side) and comes down its pipe; with an in-process engine the
    same `MachineSide` runs here.  Either way the views draw only plain data."""

    def __init__(self, engine: DebuggerEngine) -> None:
        from .machine_side import MachineSide
        self.engine = engine
        self.remote = isinstance(engine, RemoteViews)  # a MachineProxy with views
        self.side: Any = None if self.remote else MachineSide(engine)
        self.generation = 0
        self._seen_generation: int | None = None
        self._running = threading.Event()  # a command is executing on a worker thread
        self._view: Any = None  # the last MachineView handed out
        self._pushed: Any = None  # remote: the latest view the server pushed while running
        self._asked = False  # remote: a running view was asked for and has not come yet
        self._records: deque[Any] = deque()  # remote: trace records that came with views
        self.selected_irp: tuple[str, int] | None = None  # (host, address) whose !irp the view carries
        self.selected_mdl: tuple | None = None  # what the MDL view follows (machine_side.MdlChoice)
        self.progress_output: Callable[[str], None] | None = None  # "Replaying N% ..." (a trip in time)
        if self.remote:
            engine.view_output = self._on_pushed  # type: ignore[attr-defined]
            engine.progress_output = self._on_progress  # type: ignore[attr-defined]
        else:
            self.generation = self.side.generation
            engine.progress_output = self._on_progress  # type: ignore[attr-defined]

    # -- the machine ------------------------------------------------------------------
    def sync_world(self) -> bool:
        """True once after the machine was replaced (.reboot, a re-executed trip): views reset."""
        if not self.remote and not self.running:
            self.side.sync()
            self.generation = self.side.generation
        changed = self._seen_generation is not None and self.generation != self._seen_generation
        self._seen_generation = self.generation
        if changed:
            self._view = None
            self.selected_irp = None
            self.selected_mdl = None
        return changed

    @property
    def tap(self) -> EventTap:
        """The in-process event tap (tests of the in-process path)."""
        assert self.side is not None, "the machine runs in a server: its tap is there"
        return self.side.tap

    @property
    def running(self) -> bool:
        return self._running.is_set()

    def set_running(self, running: bool) -> None:
        if running:
            self._running.set()
        else:
            self._running.clear()
            self._asked = False
            self._pushed = None  # a view of the run that ended (never shown in the next one)
            if self.side is not None:
                self.side.tap.view = None

    def view(self) -> Any:
        """The machine as the views show it now (UI thread).

        Stopped: built now where the machine lives.  A command in flight: the view the machine's
        thread built at its latest hand-off (and a new one is asked for); the previous one until
        it comes."""
        if not self.running:
            self._view = self._stopped_view()
            return self._view
        if self.remote:
            if not self._asked:
                self._asked = True
                self.engine.want_view()  # type: ignore[attr-defined]
            fresh, self._pushed = self._pushed, None
        else:
            side = self.side
            side.selected_irp, side.selected_mdl = self.selected_irp, self.selected_mdl
            side.want_view()
            fresh, side.tap.view = side.tap.view, None
        if fresh is not None:
            self._view = fresh
        if self._view is None:  # nothing built yet: what the stopped machine was
            self._view = self._stopped_view() if not self.remote else None
        return self._view

    def _stopped_view(self) -> Any:
        if self.remote:
            generation, view, records = self.engine.view_request(  # type: ignore[attr-defined]
                ("view", self.selected_irp, self.selected_mdl))
            self.generation = generation
            self._records.extend(records)
            return view
        side = self.side
        side.sync()
        self.generation = side.generation
        side.selected_irp, side.selected_mdl = self.selected_irp, self.selected_mdl
        return side.view(BROKEN)

    def _on_pushed(self, generation: int, view: Any, records: list[Any]) -> None:
        """(Worker thread, remote) a view the server built at a hand-off while the command runs."""
        self.generation = generation
        self._records.extend(records)
        self._pushed = view
        self._asked = False

    def _on_progress(self, text: str) -> None:
        if self.progress_output is not None:
            self.progress_output(text)

    def drain_records(self, limit: int = 100_000) -> list[Any]:
        """Trace records of the events since the last drain (UI thread)."""
        if not self.remote:
            return self.side.drain(limit)
        from wskdbg.trace.record import TraceRecord
        records = self._records  # field tuples from the server
        return [TraceRecord(*records.popleft()) for _ in range(min(limit, len(records)))]

    def position(self) -> Position:
        return self.view().position

    def bugcheck(self) -> Any:
        """The bug check that halted the machine (from the latest status or view)."""
        if self.remote:
            return self.engine.halted_info  # type: ignore[attr-defined]
        return self.side.engine.world.scheduler.halted

    # -- commands --------------------------------------------------------------------------
    def prompt(self) -> str:
        value = self.engine.prompt()
        return value if value.endswith(" ") else value + " "

    def execute(self, command: str) -> CommandOutput:
        """Run one command (blocking: call it from a worker thread for run commands)."""
        try:
            result = self.engine.execute(command)
        except Exception as exc:  # the engine does not raise for bad input; the UI must survive a bug
            return CommandOutput(command, f"{type(exc).__name__}: {exc}", error=True)
        return CommandOutput(command, result.text, result.data, result.error)

    def break_in(self) -> None:
        self.engine.break_in()

    def command_names(self) -> list[str]:
        return sorted(self.engine.command_names())

    # -- objects (the machine is stopped) -----------------------------------------------------
    def object_kind(self, address: int) -> tuple[str, str] | None:
        """(host, "irp" | "mdl" | "object") for an emulated object at `address`; None while a
        command runs or when nothing is there."""
        if self.running:
            return None
        if self.remote:
            return self.engine.view_request(("kind", address))  # type: ignore[attr-defined]
        return self.side.object_kind(address)
