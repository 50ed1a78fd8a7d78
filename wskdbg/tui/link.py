"""The TUI's one window onto the debugger engine and the machine it drives.

The views never talk to the engine directly: they read a `Position` (cheap,
taken on every UI tick) and the objects the `EngineLink` hands out (kernels,
IRPs, connections), and they send commands through `execute`.  The link is
duck-typed over the engine so that the TUI works with `wskdbg.engine.Engine`
and with a small stand-in built on `stack.kernel.machine.Machine`:

* ``engine.execute(cmd)`` returns an object with ``.text`` (and ``.data``) or a str;
* ``engine.break_in()`` asks a running machine to stop;
* ``engine.world`` (``.hosts[name].kernel``, ``.scheduler``, ``.bus``) or
  ``engine.machine`` (``.kernels``, ``.scheduler``, ``.bus``) is the machine.

`EventTap` subscribes to the machine's event bus.  It runs on the machine's
thread, so it only appends the (immutable) event to a bounded deque and bumps
a few counters; the UI thread drains the deque on its timer.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from stack.kernel.events import Event
from stack.kernel.irql import PASSIVE_LEVEL

RUNNING = "running"
BROKEN = "broken in"
BUGCHECKED = "bug-checked"

# Module name (the part before "!") -> the stack layer it belongs to.
LAYER_OF_MODULE: dict[str, str] = {
    "nic": "nic", "wire": "nic", "hw": "nic",
    "netvmini": "miniport", "e1000": "miniport", "miniport": "miniport", "nicminiport": "miniport",
    "ndis": "ndis",
    "tcpip": "tcpip", "netio": "tcpip", "tcp": "tcpip", "ip": "tcpip",
    "wsk": "wsk", "afd": "wsk", "netiowsk": "wsk",
    "echosrv": "drivers", "khttpd": "drivers", "ksocket": "drivers", "testdrv": "drivers", "cache": "drivers",
    "fs": "drivers", "cachemgr": "drivers",
    "user": "user", "usermode": "user", "ws2_32": "user", "echocli": "user", "httpcli": "user",
    "loadgen": "user", "umhttpd": "user",
}

# Event kinds (the part before ".") that belong to a layer whatever their symbol.
LAYER_OF_KIND: dict[str, str] = {
    "tcp": "tcpip", "ip": "tcpip", "tcpip": "tcpip", "udp": "tcpip", "icmp": "tcpip", "arp": "tcpip",
    "nbl": "ndis", "ndis": "ndis", "oid": "ndis",
    "nic": "nic", "frame": "nic", "wire": "nic", "dma": "nic", "interrupt": "nic",
    "wsk": "wsk", "user": "user", "socket": "user",
}

# Top to bottom, as the stack view draws a host.
LAYER_ORDER: tuple[str, ...] = ("user", "drivers", "wsk", "tcpip", "ndis", "miniport", "nic")
LAYER_TITLES: dict[str, str] = {
    "user": "user mode", "drivers": "drivers", "wsk": "WSK", "tcpip": "tcpip",
    "ndis": "NDIS", "miniport": "miniport", "nic": "NIC",
}


def layer_of_module(module: str) -> str | None:
    return LAYER_OF_MODULE.get(module.lower())


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
    """Bus subscriber: a bounded queue of events plus live counters by (host, layer)."""

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

    def attach(self, bus: Any) -> None:
        """Subscribe first in line: the engine's own subscriber may block the machine
        at this very event, and the views must already show it."""
        self.detach()
        self.bus = bus
        subscribers = getattr(bus, "subscribers", None)
        if isinstance(subscribers, list):
            subscribers.insert(0, self.on_event)
            self._unsubscribe = lambda: subscribers.remove(self.on_event) if self.on_event in subscribers else None
        else:
            self._unsubscribe = bus.subscribe(self.on_event)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = None
        self.bus = None

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.last_by_layer.clear()
            self.last_event = None
            self.last_layer = None
            self.previous_layer = None
            self.segments.clear()
            self.irps.clear()

    # Runs on the machine's thread for every event: keep it short.
    def on_event(self, event: Event) -> None:
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

    def _note_irp(self, event: Event) -> None:
        address = getattr(event, "irp", 0)
        with self._lock:
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
        queue = self.queue
        n = min(limit, len(queue))
        return [queue.popleft() for _ in range(n)]

    def irp_notes(self) -> list[IrpNote]:
        with self._lock:
            return sorted(self.irps.values(), key=lambda n: n.first_seq)


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
    """Reads machine state for the views and runs commands through the engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.tap = EventTap()
        self.generation = 0
        self._world: Any = None
        self._running = threading.Event()  # a run command is executing on a worker thread
        self.sync_world()

    # -- the machine ------------------------------------------------------------------
    def world(self) -> Any:
        engine = self.engine
        for name in ("world", "machine"):
            value = getattr(engine, name, None)
            if value is not None and not callable(value):
                return value
        return None

    def sync_world(self) -> bool:
        """Re-attach after `.reboot` replaced the world; True when it changed."""
        world = self.world()
        if world is self._world:
            return False
        self._world = world
        self.tap.reset()
        bus = getattr(world, "bus", None)
        if bus is not None:
            self.tap.attach(bus)
        else:
            self.tap.detach()
        self.generation += 1
        return True

    @property
    def scheduler(self) -> Any:
        return getattr(self._world, "scheduler", None)

    def kernels(self) -> dict[str, Any]:
        world = self._world
        if world is None:
            return {}
        hosts = getattr(world, "hosts", None)
        if isinstance(hosts, dict):
            out = {}
            for name, host in hosts.items():
                kernel = getattr(host, "kernel", None)
                if kernel is not None:
                    out[name] = kernel
            if out:
                return out
        kernels = getattr(world, "kernels", None)
        return dict(kernels) if isinstance(kernels, dict) else {}

    def host_names(self) -> list[str]:
        return list(self.kernels())

    def bugcheck(self) -> Any:
        scheduler = self.scheduler
        return getattr(scheduler, "halted", None) if scheduler is not None else None

    @property
    def running(self) -> bool:
        return self._running.is_set()

    def set_running(self, running: bool) -> None:
        if running:
            self._running.set()
        else:
            self._running.clear()

    def current_host(self) -> str:
        """The host the debugger is looking at: the engine's choice, else the last event's."""
        for name in ("current_host", "host"):
            value = getattr(self.engine, name, None)
            if isinstance(value, str) and value:
                return value
            name_attr = getattr(value, "name", None)
            if isinstance(name_attr, str) and name_attr:
                return name_attr
        crash = self.bugcheck()
        if crash is not None:
            return crash.host
        last = self.tap.last_event
        if last is not None:
            return last.host
        names = self.host_names()
        return names[0] if names else "-"

    def position(self) -> Position:
        scheduler = self.scheduler
        now = getattr(scheduler, "now_ns", 0) if scheduler is not None else 0
        events_run = getattr(scheduler, "events_run", 0) if scheduler is not None else 0
        bus = getattr(self._world, "bus", None)
        seq = getattr(bus, "seq", 0) if bus is not None else 0
        crash = self.bugcheck()
        if crash is not None:
            state = BUGCHECKED
        elif self.running:
            state = RUNNING
        else:
            state = BROKEN
        host = self.current_host()
        kernel = self.kernels().get(host)
        irql, thread = PASSIVE_LEVEL, "-"
        if crash is not None:
            irql, thread = crash.irql, f"{crash.thread:x} ({crash.thread_name})"
        elif kernel is not None:
            irql = kernel.irql
            current = kernel.current_thread
            if current is None:
                idle = getattr(kernel, "idle_thread", None)
                thread = f"{idle.address:x} (Idle)" if idle is not None else "Idle"
            else:
                thread = f"{current.address:x} ({current.name})"
        return Position(now, events_run, seq, state, host, irql, thread, self.generation)

    # -- commands --------------------------------------------------------------------------
    def prompt(self) -> str:
        value = getattr(self.engine, "prompt", None)
        if callable(value):
            try:
                value = value()
            except Exception:  # a prompt must never take the UI down
                value = None
        if isinstance(value, str) and value:
            return value if value.endswith(" ") else value + " "
        return "0: kd> "

    def execute(self, command: str) -> CommandOutput:
        """Run one command (blocking: call it from a worker thread for run commands)."""
        try:
            result = self.engine.execute(command)
        except Exception as exc:  # the engine should not raise, but the UI must survive it
            return CommandOutput(command, f"{type(exc).__name__}: {exc}", error=True)
        if isinstance(result, str):
            return CommandOutput(command, result)
        text = getattr(result, "text", "")
        return CommandOutput(command, text if isinstance(text, str) else str(text), getattr(result, "data", None),
                             bool(getattr(result, "error", False)))

    def break_in(self) -> None:
        fn = getattr(self.engine, "break_in", None)
        if fn is not None:
            fn()

    def command_names(self) -> list[str]:
        """Names for completion: the engine's registry when it has one."""
        names: set[str] = set()
        for attr in ("command_names", "commands", "registry"):
            value = getattr(self.engine, attr, None)
            try:
                if callable(value) and attr == "command_names":
                    value = value()
                names.update(_names_of(value))
            except Exception:  # registries differ; completion is a convenience
                continue
        if not names:
            names.update(DEFAULT_COMMANDS)
        return sorted(names)

    # -- objects ---------------------------------------------------------------------------
    def object_at(self, address: int) -> tuple[str, Any] | None:
        """(host, object) for a live emulated object at `address`."""
        for host, kernel in self.kernels().items():
            obj = kernel.addr_objects.get(address)
            if obj is not None:
                return host, obj
        return None

    def live_irps(self) -> list[tuple[str, Any]]:
        from stack.kernel.irp import live_irps
        out: list[tuple[str, Any]] = []
        for host, kernel in self.kernels().items():
            out.extend((host, irp) for irp in live_irps(kernel))
        return out

    def connections(self) -> list[tuple[str, Any]]:
        """(host, ConnectionEndpoint) for every TCP connection of every host."""
        out: list[tuple[str, Any]] = []
        for host, kernel in self.kernels().items():
            stack = kernel.extensions.get("tcpip")
            transport = getattr(stack, "transport", None)
            if transport is None:
                continue
            try:
                out.extend((host, conn) for conn in transport.connections())
            except Exception:  # a half-built stack: show what there is
                continue
        return out


def _names_of(value: Any) -> Iterable[str]:
    if value is None:
        return ()
    if isinstance(value, dict):
        return [str(k) for k in value]
    for attr in ("names", "all_names"):
        fn = getattr(value, attr, None)
        if callable(fn):
            return [str(n) for n in fn()]
    for attr in ("commands", "by_name", "_commands"):
        inner = getattr(value, attr, None)
        if isinstance(inner, dict):
            return [str(k) for k in inner]
    if isinstance(value, (list, tuple, set)):
        return [str(getattr(v, "name", v)) for v in value]
    return ()


DEFAULT_COMMANDS: tuple[str, ...] = (
    "g", "t", "p", "gu", "bp", "bl", "bc", "bd", "be", "k", "kb", "r", "lm", "db", "dd", "dq", "dt", "da",
    "du", "?", "!irp", "!analyze", "!thread", "!pool", "!ndiskd.netadapter", "!ndiskd.nbl", "!tcb",
    ".reboot", ".echo", ".help", ".cls", "!wpp", "!wmitrace.logdump", "~",
)
