"""The one place where real time and the host's I/O enter the emulated world.

`BridgeHub` hooks the scheduler (`Scheduler.before_advance`, called after the
next event was taken off the heap and before the clock jumps to its time):

* live: it waits on the host's file descriptors (listening and accepted
  sockets, the TAP) until the wall clock reaches the event's virtual time, and
  injects what arrived as scheduler events *at that time*;
* replay: it injects the recorded inputs at the same points, with no host I/O.

Why inject at the hook: the point "the scheduler has run N events and is about
to run event N+1 at time T" is the same in the live run and in its replay, so
an input scheduled there (time T, the next insertion number) lands in the
same place of the heap both times.  A recording therefore stores, for every
input, N (``at_event``) and T (``time_ns``), and a replay reproduces the run
event for event.

A periodic tick keeps the heap from running dry while a bridge is attached
(the world waits for the outside world instead of going idle) and bounds how
long an input waits for the next hook.  The virtual clock never runs ahead of
the wall clock; when the machine falls behind (slow emulation, or the debugger
was stopped) the mapping is re-based instead of firing every timer at once.
"""

from __future__ import annotations

import selectors
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from stack.kernel.events import Event, EventBus
from stack.kernel.scheduler import Scheduler

from .events import BridgeInputApplied
from .record import BridgeInput, Recording, RecordingWriter

if TYPE_CHECKING:
    from stack.kernel.kernel import Kernel

DEFAULT_TICK_NS = 1_000_000  # an idle attached world looks outside at least every 1 ms
LAG_REBASE_NS = 50_000_000  # more than this behind the wall clock: re-base instead of catching up
POLL_INTERVAL_NS = 200_000  # while behind, look at the host's descriptors at most this often


class BridgeError(RuntimeError):
    """A bridge cannot be set up or used (names what and why)."""


class WorldEndpoint(Protocol):
    """The world side of a bridge: applies inputs inside a scheduler event."""

    kinds: frozenset[str]

    def input_kernel(self, inp: BridgeInput) -> "Kernel | None": ...

    def apply(self, inp: BridgeInput) -> str: ...


class HostSide(Protocol):
    """The host side of a bridge (live runs only): file descriptors and output buffers."""

    def start(self, hub: "BridgeHub") -> None: ...

    def service(self, time_ns: int) -> None: ...

    def stop(self) -> None: ...


@dataclass(slots=True)
class HubStats:
    inputs: int = 0
    input_bytes: int = 0
    polls: int = 0
    rebases: int = 0
    ticks: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class BridgeHub:
    """Connects endpoints to the scheduler, in live or replay mode."""

    def __init__(self, scheduler: Scheduler, bus: EventBus, *, tick_ns: int = DEFAULT_TICK_NS,
                 recorder: RecordingWriter | None = None, replay: Recording | None = None,
                 clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if tick_ns <= 0:
            raise BridgeError("tick_ns must be positive")
        if recorder is not None and replay is not None:
            raise BridgeError("a hub either records a live run or replays one, not both")
        self.scheduler = scheduler
        self.bus = bus
        self.tick_ns = tick_ns
        self.recorder = recorder
        self.replaying = replay is not None
        self._replay_inputs = list(replay.inputs) if replay is not None else []
        self._replay_pos = 0
        self.replay_end_event = replay.end_event if replay is not None else None
        self.divergence: str | None = None
        self.clock = clock
        self.sleep = sleep  # used only when no descriptor is registered (tests pass a fake)
        self.selector: selectors.BaseSelector | None = None
        self.endpoints: dict[str, WorldEndpoint] = {}
        self.host_sides: list[HostSide] = []
        self.stats = HubStats()
        self.attached = False
        self.stop_requested = False  # set from a signal handler to end `serve`
        self._pending: list[tuple[str, int, int, bytes]] = []
        self._tick_event: Any = None
        self._prev_hook: Callable[[int], None] | None = None
        self._base_mono = 0
        self._base_vt = 0
        self._last_poll = 0

    # -- wiring -------------------------------------------------------------------
    def add_endpoint(self, endpoint: WorldEndpoint) -> None:
        for kind in endpoint.kinds:
            if kind in self.endpoints:
                raise BridgeError(f"two bridge endpoints claim input kind {kind!r}")
            self.endpoints[kind] = endpoint

    def add_host_side(self, host: HostSide) -> None:
        if self.replaying:
            return  # a replay touches nothing outside the process
        self.host_sides.append(host)
        if self.attached:
            host.start(self)

    @property
    def live(self) -> bool:
        return not self.replaying

    def attach(self) -> None:
        if self.attached:
            return
        sched = self.scheduler
        if sched.before_advance is not None:
            raise BridgeError("another bridge is already attached to this scheduler")
        self.attached = True
        self._prev_hook = sched.before_advance
        sched.before_advance = self._before_advance
        self._base_mono = self.clock()
        self._base_vt = sched.now_ns
        self._tick_event = sched.call_later(self.tick_ns, None, self._tick, label="bridge!Tick")
        if not self.replaying:
            self.selector = selectors.DefaultSelector()
            for host in self.host_sides:
                host.start(self)

    def detach(self) -> None:
        """Stop looking outside; close host descriptors; finish the recording."""
        if not self.attached:
            return
        self.attached = False
        sched = self.scheduler
        sched.before_advance = self._prev_hook
        if self._tick_event is not None:
            self._tick_event.cancel()
            self._tick_event = None
        for host in self.host_sides:
            try:
                host.stop()
            except OSError:
                pass
        if self.selector is not None:
            self.selector.close()
            self.selector = None
        if self.recorder is not None:
            self.recorder.close(sched.events_run, sched.now_ns)

    def _tick(self) -> None:
        self.stats.ticks += 1
        end = self.replay_end_event
        if self.replaying and end is not None and self.scheduler.events_run >= end:
            self._tick_event = None  # the recorded run ended here: let the replayed lab go idle
            return
        if self.attached:
            self._tick_event = self.scheduler.call_later(self.tick_ns, None, self._tick, label="bridge!Tick")

    # -- inputs ---------------------------------------------------------------------
    def submit(self, kind: str, conn: int = 0, arg: int = 0, data: bytes = b"") -> None:
        """Host side: something arrived from outside; it is injected at the next hook."""
        if kind not in self.endpoints:
            raise BridgeError(f"no bridge endpoint takes input kind {kind!r}")
        self._pending.append((kind, conn, arg, data))

    def _inject(self, inp: BridgeInput) -> None:
        endpoint = self.endpoints.get(inp.kind)
        if endpoint is None:
            self.divergence = self.divergence or f"input kind {inp.kind!r} has no endpoint"
            return
        stats = self.stats
        stats.inputs += 1
        stats.input_bytes += len(inp.data)
        stats.by_kind[inp.kind] = stats.by_kind.get(inp.kind, 0) + 1
        self.scheduler.call_at(inp.time_ns, endpoint.input_kernel(inp), self._apply, endpoint, inp,
                               label=f"bridge!{inp.kind}")

    def _apply(self, endpoint: WorldEndpoint, inp: BridgeInput) -> None:
        summary = endpoint.apply(inp)
        bus = self.bus
        if bus.subscribers:
            bus.publish(BridgeInputApplied(host="bridge", input_kind=inp.kind, conn=inp.conn,
                                           length=len(inp.data), summary=summary))

    def _flush_pending(self, time_ns: int) -> None:
        at_event = self.scheduler.events_run
        pending, self._pending = self._pending, []
        for kind, conn, arg, data in pending:
            inp = BridgeInput(at_event, time_ns, kind, conn, arg, data)
            if self.recorder is not None:
                self.recorder.append(inp)
            self._inject(inp)

    # -- the hook ---------------------------------------------------------------------
    def _before_advance(self, next_ns: int) -> None:
        if self._prev_hook is not None:
            self._prev_hook(next_ns)
        if self.replaying:
            self._replay_at(next_ns)
            return
        for host in self.host_sides:  # hand out what the lab produced up to this moment
            host.service(next_ns)
        self._wait_for(next_ns)
        if self._pending:
            self._flush_pending(next_ns)

    def _replay_at(self, next_ns: int) -> None:
        inputs = self._replay_inputs
        events_run = self.scheduler.events_run
        while self._replay_pos < len(inputs) and inputs[self._replay_pos].at_event <= events_run:
            inp = inputs[self._replay_pos]
            self._replay_pos += 1
            if inp.at_event != events_run or inp.time_ns != next_ns:
                self.divergence = self.divergence or (
                    f"input {self._replay_pos} recorded at event {inp.at_event} time {inp.time_ns} "
                    f"replayed at event {events_run} time {next_ns}")
                inp = BridgeInput(events_run, max(next_ns, inp.time_ns), inp.kind, inp.conn, inp.arg, inp.data)
            self._inject(inp)

    @property
    def replay_done(self) -> bool:
        return self._replay_pos >= len(self._replay_inputs)

    def _wall_target(self, vt: int) -> int:
        return self._base_mono + (vt - self._base_vt)

    def _wait_for(self, next_ns: int) -> None:
        """Poll the host until the wall clock reaches `next_ns` or something arrives."""
        now = self.clock()
        target = self._wall_target(next_ns)
        if now - target > LAG_REBASE_NS:
            self._base_mono, self._base_vt = now, next_ns
            self.stats.rebases += 1
            target = now
        while not self.stop_requested:
            remaining = target - now
            if remaining <= 0 and now - self._last_poll < POLL_INTERVAL_NS:
                return  # behind the wall clock: run on, look again shortly
            self._poll(max(0, remaining))
            if self._pending:
                return
            now = self.clock()
            if now >= target:
                return

    def _poll(self, timeout_ns: int) -> None:
        sel = self.selector
        self._last_poll = self.clock()
        self.stats.polls += 1
        if sel is None or not sel.get_map():
            if timeout_ns > 0:
                self.sleep(timeout_ns / 1e9)
            return
        for key, mask in sel.select(timeout_ns / 1e9):
            callback = key.data
            callback(key.fileobj, mask)

    # -- running without a debugger ------------------------------------------------
    def serve(self, *, max_wall_s: float | None = None, until: Callable[[], bool] | None = None,
              max_events: int | None = None) -> str:
        """Run the world in real time until stopped; returns why it stopped.

        Bounded by wall time and event count when asked (tests always ask).
        """
        if not self.attached:
            raise BridgeError("attach the bridge before serving")
        sched = self.scheduler
        deadline = None if max_wall_s is None else time.monotonic() + max_wall_s
        ran = 0
        check_every = 64
        while True:
            if self.stop_requested:
                return "stopped"
            if sched.halted is not None:
                return "bugcheck"
            if self.replaying and self.replay_end_event is not None and sched.events_run >= self.replay_end_event:
                return "replay-end"
            if not sched.run_one():
                return "idle"
            ran += 1
            if max_events is not None and ran >= max_events:
                return "max-events"
            if ran % check_every == 0:
                if until is not None and until():
                    return "done"
                if deadline is not None and time.monotonic() > deadline:
                    return "timeout"


def bus_recorder(bus: EventBus) -> tuple[list[tuple[int, str, str]], Callable[[], None]]:
    """Collect (seq, kind, describe()) for every bus event; returns the list and an unsubscribe."""
    seen: list[tuple[int, str, str]] = []

    def on_event(ev: Event) -> None:
        seen.append((ev.seq, ev.kind, ev.describe()))

    return seen, bus.subscribe(on_event)
