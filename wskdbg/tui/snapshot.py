"""`MachineView`: everything the views show, taken at one moment.

Built where the machine lives (wskdbg.tui.machine_side: the machine server's process, or the
TUI's own with an in-process engine): on the machine's thread at a hand-off while a command runs
(the event tap calls `build_view` when the UI has asked for one), or between commands while the
machine is stopped.  Plain, immutable data: it crosses the server's pipe pickled, and the UI
thread reads it without a lock while the machine runs on.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .irp_view import IrpRow, irp_rows, irp_text
from .link import BUGCHECKED, RUNNING, Position, SegmentNote
from .mdl_view import MdlPicture
from .network_view import ConnRow, TcpStatsRow, conn_rows, tcp_stats_rows
from .source_view import SourcePicture, running_picture, stopped_picture
from .stack_view import StackPicture, build_picture

if TYPE_CHECKING:
    from stack.kernel.bugcheck import BugCheckInfo

    from .machine_side import MachineSide


@dataclass(frozen=True, slots=True)
class MachineView:
    position: Position
    picture: StackPicture
    irps: tuple[IrpRow, ...]
    connections: tuple[ConnRow, ...]
    tcp_stats: tuple[TcpStatsRow, ...]  # per host, the TCP statistics `!netstat -s` prints
    irp_detail: str  # `!irp` of the selected IRP ("" when none is selected)
    source: SourcePicture  # the current frame's routine, its line marked
    segments: tuple[SegmentNote, ...] = ()  # TCP segments sent, for the network view's ladder
    mdl: MdlPicture | None = None  # the chain the MDL view follows
    crash: "BugCheckInfo | None" = None  # the bug check that halted the machine
    built_by: tuple[int, str] = (0, "")  # (pid, thread) that built it: the machine's side, never the UI's


def plain_bugcheck(info: "BugCheckInfo | None") -> "BugCheckInfo | None":
    """The bug check without `extra` (live frames the analysis reads where the machine is): what
    the status bar, the crash screen's headline and a pickle need."""
    return dataclasses.replace(info, extra={}) if info is not None else None


def build_view(side: "MachineSide", state: str) -> MachineView:
    engine = side.engine
    tap = side.tap
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
                        side.generation)
    selected = side.selected_irp
    return MachineView(
        position=position,
        picture=build_picture(tap, kernels, scheduler.events_run),
        irps=tuple(irp_rows(kernels, tap.irp_notes())),
        connections=tuple(conn_rows(kernels)),
        tcp_stats=tuple(tcp_stats_rows(kernels)),
        irp_detail=irp_text(engine, *selected) if selected is not None else "",
        source=running_picture(kernels, tap.last_event) if running else _stopped_source(engine),
        segments=tuple(tap.segment_notes()),
        mdl=side.mdl(),
        crash=plain_bugcheck(crash),
        built_by=(os.getpid(), threading.current_thread().name),
    )


def _stopped_source(engine: Any) -> SourcePicture:
    try:
        return stopped_picture(engine)
    except Exception as exc:  # a view must never take the debugger down
        return SourcePicture("", (), None, f"No source: {type(exc).__name__}: {exc}")
