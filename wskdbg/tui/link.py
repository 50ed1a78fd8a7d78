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

from wskdbg.engine_api import DebuggerEngine

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
    """Hands the views `MachineView`s and runs commands through the engine."""

    def __init__(self, engine: DebuggerEngine) -> None:
        self.engine = engine
        self.tap = EventTap()
        self.tap.view_builder = self._build_running_view
        self.generation = 0
        self._world: Any = None
        self._running = threading.Event()  # a command is executing on a worker thread
        self._view: Any = None  # the last MachineView handed out
        self.selected_irp: tuple[str, int] | None = None  # (host, address) whose !irp the view carries
        self.sync_world()

    # -- the machine ------------------------------------------------------------------
    def sync_world(self) -> bool:
        """Re-attach after `.reboot` replaced the world; True when it changed.  (Reads only the
        engine's reference to its world, which changes only between commands.)"""
        world = self.engine.world
        if world is self._world:
            return False
        self._world = world
        self.tap.reset()
        self.tap.attach(world.bus)
        self.generation += 1
        self._view = None
        self.selected_irp = None
        return True

    @property
    def running(self) -> bool:
        return self._running.is_set()

    def set_running(self, running: bool) -> None:
        if running:
            self._running.set()
        else:
            self._running.clear()

    def view(self) -> Any:
        """The machine as the views show it now (UI thread).

        Stopped: built here and now.  A command in flight: the view the machine's thread built
        at its latest hand-off (and a new one is asked for); the previous one until it comes.
        """
        if not self.running:
            self._view = self._build_view(BROKEN)
            return self._view
        self.tap.want_view = True
        fresh = self.tap.view
        if fresh is not None:
            self.tap.view = None
            self._view = fresh
        if self._view is None:  # nothing built yet for this world: what the stopped machine was
            self._view = self._build_view(RUNNING)
        return self._view

    def _build_running_view(self) -> Any:
        return self._build_view(RUNNING)

    def _build_view(self, state: str) -> Any:
        from .snapshot import build_view  # the views' row builders import this module
        return build_view(self, state)

    def position(self) -> Position:
        return self.view().position

    def bugcheck(self) -> Any:
        """The bug check that halted the machine (a reference read; acted on only when stopped)."""
        return self._world.scheduler.halted if self._world is not None else None

    def kernels(self) -> dict[str, Any]:
        """Host -> kernel.  Read the objects only while the machine is stopped (or on its thread)."""
        return self.engine.kernels

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
    def object_at(self, address: int) -> tuple[str, Any] | None:
        """(host, object) for a live emulated object at `address`; None while a command runs."""
        if self.running:
            return None
        for host, kernel in self.kernels().items():
            obj = kernel.addr_objects.get(address)
            if obj is not None:
                return host, obj
        return None
