"""The views' data, built where the machine lives.

`MachineSide` sits next to the engine: in the machine server's process when the TUI runs the
machine there (wskdbg.machine_server, so `t-` can use checkpoints), or in the TUI's own process
when it keeps an in-process engine (WSKDBG_CHECKPOINTS=0, no fork()).  It owns the event tap
(a bus subscriber), and turns the machine into plain data the views draw: `MachineView`s
(wskdbg.tui.snapshot), trace records, MDL pictures, "what is at this address".  Nothing it
hands out refers to a live object, so it can be pickled across the server's pipe; the TUI's
process never reads the machine.

While a command runs, a view is built on the machine's thread at the next hand-off after the
front end asked for one (`want_view`): in-process it is left in the tap for the UI thread to
take; in a server it is sent down the reply pipe with the trace records queued since the last
one (`push`).

Trace records and trips in time.  The tap is part of the machine's process, so a checkpoint's
copy holds the tap as it was then, and the replay of a trip back brings its counters, IRP notes
and segment notes to exactly what they were at the target.  Its queue of trace records is
different: the front end already shows everything up to `shipped` (the highest hand-off it was
sent), so a runner queues only what lies past it (`adopt`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from stack.kernel.events import Event
from stack.kernel.irp import Irp
from stack.kernel.mdl import Mdl
from wskdbg.trace.record import TraceRecord

from .link import BROKEN, RUNNING, EventTap
from .mdl_view import MdlPicture, mdl_picture


RecordFields = tuple  # TraceRecord's fields in order: what crosses the server's pipe (a tuple pickles ~30x faster)


def record_fields(event: Event) -> RecordFields:
    """A bus event as a trace line's fields: WPP messages keep their provider, flag and level."""
    if event.kind == "wpp":
        return (event.seq, event.time_ns, event.host, getattr(event, "provider", "wpp"),
                getattr(event, "flag", None), int(getattr(event, "level", 4) or 4),
                f"{getattr(event, 'function', '')}: {getattr(event, 'text', '')}")
    kind = event.kind
    if kind == "bugcheck":
        level = 1
    elif kind in ("irp.cancel",) or kind.endswith(".drop"):
        level = 3
    elif kind in ("call", "ret"):
        level = 5
    else:
        level = 4
    try:
        text = event.describe()
    except Exception as exc:  # a broken describe() must not kill the trace
        text = f"{kind} (describe failed: {type(exc).__name__})"
    return (event.seq, event.time_ns, event.host, "event:" + kind.partition(".")[0], None, level, text)


def event_record(event: Event) -> TraceRecord:
    """A bus event as a trace line."""
    return TraceRecord(*record_fields(event))


# What the MDL view follows: ("irp", host, address) - that IRP's MdlAddress chain - or ("mdl", address).
MdlChoice = tuple


class MachineSide:
    """The views' side of the machine (see the module docstring)."""

    def __init__(self, engine: Any, push: Callable[[int, Any, list[TraceRecord]], None] | None = None) -> None:
        self.engine = engine
        self.tap = EventTap()
        self.tap.view_builder = self._build_running
        self.push = push
        self.push_pid = os.getpid()  # only the live machine pushes (never a p-/g- scanner forked from a checkpoint)
        self.generation = 0
        self.shipped = -1  # the highest hand-off whose trace record left for the front end
        self.selected_irp: tuple[str, int] | None = None  # (host, address) whose `!irp` the view carries
        self.selected_mdl: MdlChoice | None = None
        self._world: Any = None
        self.sync()

    # -- the world ----------------------------------------------------------------------------
    def sync(self) -> bool:
        """Re-attach after the engine replaced its world (.reboot, a re-executed trip); True when
        it did.  Call it between commands."""
        world = self.engine.world
        if world is self._world:
            return False
        self._world = world
        self.tap.reset()
        self.tap.queue_after = -1
        self.shipped = -1
        self.tap.attach(world.bus)
        self.generation += 1
        self.selected_irp = None
        self.selected_mdl = None
        return True

    def handover_state(self) -> dict[str, Any]:
        """What a checkpoint's runner takes over with the session (machine_server)."""
        return {"shipped": self.shipped, "irp": self.selected_irp, "mdl": self.selected_mdl}

    def adopt(self, state: dict[str, Any] | None) -> None:
        """In a checkpoint's runner, before it replays: queue only what the front end has not seen."""
        self.push_pid = os.getpid()
        if state is None or self.engine.world is not self._world:
            return
        self.shipped = state["shipped"]
        self.selected_irp, self.selected_mdl = state["irp"], state["mdl"]
        self.tap.queue_after = self.shipped
        self.tap.drop_queued_through(self.shipped)

    # -- views ----------------------------------------------------------------------------------
    def view(self, state: str = BROKEN) -> Any:
        from . import snapshot  # (snapshot imports the views, which import link)
        return snapshot.build_view(self, state)

    def _build_running(self) -> Any:
        """On the machine's thread, at the hand-off after the front end asked (EventTap.want_view)."""
        view = self.view(RUNNING)
        if self.push is None:
            return view
        if os.getpid() == self.push_pid:
            self.push(self.generation, view, self.drain_fields())
        return None

    def drain(self, limit: int | None = None) -> list[TraceRecord]:
        """Trace records for the events queued since the last drain (oldest first)."""
        return [TraceRecord(*fields) for fields in self.drain_fields(limit)]

    def drain_fields(self, limit: int | None = None) -> list[RecordFields]:
        """The same as field tuples (for the pipe)."""
        events = self.tap.drain(limit if limit is not None else EventTap.MAX_QUEUED)
        if events:
            self.shipped = max(self.shipped, events[-1].seq)
        return [record_fields(e) for e in events]

    def want_view(self) -> None:
        self.tap.want_view = True

    # -- objects --------------------------------------------------------------------------------
    def object_at(self, address: int) -> tuple[str, Any] | None:
        for host, kernel in self.engine.kernels.items():
            obj = kernel.addr_objects.get(address)
            if obj is not None:
                return host, obj
        return None

    def object_kind(self, address: int) -> tuple[str, str] | None:
        """(host, "irp" | "mdl" | "object") for an emulated object at `address`."""
        found = self.object_at(address)
        if found is None:
            return None
        host, obj = found
        return host, "irp" if isinstance(obj, Irp) else "mdl" if isinstance(obj, Mdl) else "object"

    def mdl(self) -> MdlPicture | None:
        """The MDL chain the MDL view follows, as plain data."""
        choice = self.selected_mdl
        if not choice:
            return None
        if choice[0] == "irp":
            _, host, address = choice
            kernel = self.engine.kernels.get(host)
            irp = kernel.addr_objects.get(address) if kernel is not None else None
            mdl = getattr(irp, "mdl_address", None) if isinstance(irp, Irp) else None
            return mdl_picture(mdl, f"IRP {address:x}") if isinstance(mdl, Mdl) else None
        found = self.object_at(choice[1])
        return mdl_picture(found[1], f"MDL {choice[1]:x}") if found and isinstance(found[1], Mdl) else None

    # -- a machine server's requests ----------------------------------------------------------------
    def handle(self, request: tuple) -> Any:
        """("view", irp, mdl) -> (generation, MachineView, trace record fields); ("kind", address) -> object_kind."""
        kind = request[0]
        if kind == "view":
            self.sync()
            self.selected_irp, self.selected_mdl = request[1], request[2]
            return self.generation, self.view(BROKEN), self.drain_fields()
        if kind == "kind":
            return self.object_kind(request[1])
        raise ValueError(f"unknown view request {kind!r}")
