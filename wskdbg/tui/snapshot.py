"""`MachineView`: everything the views show, taken at one moment.

Built on the machine's thread at a hand-off while a command runs (the event tap
calls `build_view` when the UI has asked for one), or on the UI thread while
the machine is stopped.  Immutable once built, so the UI thread reads it
without a lock while the machine runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .irp_view import IrpRow, irp_rows, irp_text
from .link import BUGCHECKED, RUNNING, Position
from .network_view import ConnRow, TcpStatsRow, conn_rows, tcp_stats_rows
from .source_view import SourcePicture, running_picture, stopped_picture
from .stack_view import StackPicture, build_picture

if TYPE_CHECKING:
    from .link import EngineLink


@dataclass(frozen=True, slots=True)
class MachineView:
    position: Position
    picture: StackPicture
    irps: tuple[IrpRow, ...]
    connections: tuple[ConnRow, ...]
    tcp_stats: tuple[TcpStatsRow, ...]  # per host, the TCP statistics `!netstat -s` prints
    irp_detail: str  # `!irp` of the selected IRP ("" when none is selected)
    source: SourcePicture  # the current frame's routine, its line marked


def build_view(link: "EngineLink", state: str) -> MachineView:
    engine = link.engine
    running = state == RUNNING
    world = engine.world
    scheduler = world.scheduler
    kernels = engine.kernels
    crash = scheduler.halted
    host = engine.current_host
    if crash is not None:
        state = BUGCHECKED
        irql, thread = crash.irql, f"{crash.thread:x} ({crash.thread_name})"
    else:
        current = engine.current_thread(host)
        irql = engine.current_irql(host)
        thread = f"{current.address:x} ({current.name})"
    position = Position(scheduler.now_ns, scheduler.events_run, world.bus.seq, state, host, irql, thread,
                        link.generation)
    selected = link.selected_irp
    return MachineView(
        position=position,
        picture=build_picture(link.tap, kernels, scheduler.events_run),
        irps=tuple(irp_rows(kernels, link.tap.irp_notes())),
        connections=tuple(conn_rows(kernels)),
        tcp_stats=tuple(tcp_stats_rows(kernels)),
        irp_detail=irp_text(engine, *selected) if selected is not None else "",
        source=running_picture(kernels, link.tap.last_event) if running else _stopped_source(engine),
    )


def _stopped_source(engine: Any) -> SourcePicture:
    try:
        return stopped_picture(engine)
    except Exception as exc:  # a view must never take the debugger down
        return SourcePicture("", (), None, f"No source: {type(exc).__name__}: {exc}")
