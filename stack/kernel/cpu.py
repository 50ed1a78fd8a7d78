"""Processors: code that runs spends virtual time on one of its host's processors.

Theory of operation.  The world runs one event at a time from one heap of
``(time, seq, event)`` (stack.kernel.scheduler); an event's Python runs to the
end without interruption - a *burst* of work.  A host with a `CpuModel` gives
each of its events a *level* and a *processor* before it runs:

    ISR_LEVEL (interrupt service, the NIC's line)  >  DPC_LEVEL (DPCs, timer
    expiry at DISPATCH_LEVEL)  >  thread levels 0..31 (the thread's priority)

A burst that runs spends time: every ``k.charge(op, n)`` (costs from
stack.kernel.costs) advances the clock *during the event*, so whatever the
event schedules (a frame on the wire, a DPC, a thread's wake-up) happens at
start + cost so far.  When the event ends the clock returns to the event's
start (other hosts' events in between still run at their own times) and the
processor is busy until start + cost.  An event that finds its processor busy,
or finds more urgent work already waiting, does not run: it joins the
processor's ready queue, ordered by level then arrival, and the processor's
dispatcher releases the most urgent entry each time the processor frees.  So
ISRs go before DPCs, DPCs before threads, threads by priority and, within a
priority, first come first served (round robin); a thread's wait ends its
burst, so a wait frees the processor.  Everything one processor does is
serialized in virtual time: no burst runs "in the past" of another burst's
effects, which keeps cause before effect in every layer.

What this simplifies compared to Windows: a burst is never cut in the middle.
Windows would preempt a running thread the moment an interrupt arrives; here
the interrupt waits for the burst in progress to end (for at most one burst,
typically microseconds) and then goes first.  Quantum end is likewise taken at
the end of the burst that used the quantum up (counted on the thread; the
waiting equal-priority thread goes next).  ISRs are not nested by DIRQL (one
interrupt level); DPCs run on the processor that queued them (no importance,
targeting or threaded DPCs); threads have no affinity, priority boosts or
decay - a ready thread takes the first free processor; the idle loop, the clock
interrupt and the dispatcher's own cost are not modelled.  The DPC watchdog
measures virtual time per processor as KeQueryDpcWatchdogInformation
describes: one DPC (or ISR) past the single-DPC limit, or work at
DISPATCH_LEVEL and above back to back past the cumulative limit, bug-checks
with 0x133 DPC_WATCHDOG_VIOLATION.

Turning the model off (`kernel.cpu_model = None`, the default) or the zero
profile gives exactly the timing of a machine without processors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any, Callable

from . import bugcheck as bc
from .costs import PROFILES, USER_OPS, CostProfile
from .events import ContextSwitch, DpcTime, IsrTime

if TYPE_CHECKING:
    from .kernel import Kernel
    from .ke import KThread
    from .scheduler import ScheduledEvent

ISR_LEVEL = 33
DPC_LEVEL = 32
HARDWARE = -1  # device work (DMA, the wire): no processor
DEFAULT_THREAD_LEVEL = 8  # an event with no thread (a test's run_in): a normal-priority system thread
QUANTUM_NS = 187_500_000  # a server's quantum: 12 clock intervals of 15.625 ms (Windows Internals, 7th ed., ch. 4)

# Windows' DPC watchdog limits, in 15.625 ms clock ticks (published 0x133 dumps: Arg3 0x500, Arg2 0x1e00)
CLOCK_TICK_NS = 15_625_000
DPC_TIMEOUT_TICKS = 0x500  # a single DPC or ISR: 20 s
DPC_WATCHDOG_PERIOD_TICKS = 0x1E00  # cumulative at DISPATCH_LEVEL and above: 120 s

# event routine -> how to find its level: a constant, or a function of the event's args
_LEVELS: dict[Any, Any] = {}


def set_level(fn: Callable[..., Any], level: int | Callable[[tuple], tuple[int, int, Any]]) -> None:
    """Declare the level a scheduler event running `fn` runs at (a one-line hook for each layer)."""
    _LEVELS[getattr(fn, "__func__", fn)] = level


@dataclass
class ThreadTimes:
    """What !thread and !runaway show for a thread."""

    kernel_ns: float = 0.0
    user_ns: float = 0.0
    quantum_ends: int = 0


@dataclass
class Processor:
    """One logical processor (a KPRCB's worth of state)."""

    number: int
    busy_until: int = 0  # the end of the last burst
    ready: list = field(default_factory=list)  # heap of (-level, seq, event)
    wake: Any = None  # the dispatcher's pending ScheduledEvent
    dispatching: Any = None  # the event the dispatcher just released (skips the ready-queue check)
    dispatch_level: int = -1
    current: Any = None  # the event running now (inside a run)
    current_level: int = -1
    current_thread: "KThread | None" = None
    last_thread: "KThread | None" = None
    last_thread_burst_ns: int = 0
    last_label: str = ""
    last_level: int = -1
    # accounting
    isr_ns: float = 0.0
    dpc_ns: float = 0.0
    thread_ns: float = 0.0
    interrupts: int = 0
    dpcs: int = 0
    context_switches: int = 0
    high_since: int | None = None  # start of back-to-back work at DISPATCH_LEVEL or above
    high_until: int = 0
    event_start: int = 0
    quantum_ends: int = 0


class CpuModel:
    """A host's processors and cost profile (see the module docstring)."""

    def __init__(self, kernel: "Kernel", profile: CostProfile, processors: int = 1) -> None:
        if processors < 1:
            raise ValueError("a host needs at least one processor")
        self.kernel = kernel
        self.profile = profile
        self.costs = profile.ns_table()
        self.processors = [Processor(i) for i in range(processors)]
        self.current: Processor | None = None
        self.thread_times: dict[int, ThreadTimes] = {}  # thread address -> times
        self._frac = 0.0
        self.single_limit_ns = DPC_TIMEOUT_TICKS * CLOCK_TICK_NS
        self.cumulative_limit_ns = DPC_WATCHDOG_PERIOD_TICKS * CLOCK_TICK_NS
        self.quantum_ns = QUANTUM_NS

    # -- charging --------------------------------------------------------------------
    def charge(self, op: str, n: int = 1) -> None:
        """Spend n x cost(op) now: the clock moves on inside the running event."""
        p = self.current
        if p is None:
            return  # hardware or an event of no host: nobody's processor
        cost = self.costs[op] * n + self._frac
        whole = int(cost)
        self._frac = cost - whole
        if not whole and not cost:
            return
        k = self.kernel
        k.scheduler.now_ns += whole
        level = p.current_level
        if level >= DPC_LEVEL:
            if level == ISR_LEVEL:
                p.isr_ns += cost
                if op == "interrupt":
                    p.interrupts += 1
            else:
                p.dpc_ns += cost
            self._watchdog(p, k.scheduler.now_ns)
            return
        p.thread_ns += cost
        t = p.current_thread
        if t is not None:
            times = self.thread_times.get(t.address)
            if times is None:
                times = self.thread_times[t.address] = ThreadTimes()
            if op in USER_OPS:
                times.user_ns += cost
            else:
                times.kernel_ns += cost

    def charge_copy(self, nbytes: int) -> None:
        self.charge("copy_byte", nbytes)

    def _watchdog(self, p: Processor, now: int) -> None:
        single = now - p.event_start
        if single > self.single_limit_ns:
            k = self.kernel
            k.bugcheck(bc.DPC_WATCHDOG_VIOLATION, 0, single // CLOCK_TICK_NS, self.single_limit_ns // CLOCK_TICK_NS,
                       0, detail="A single DPC or ISR exceeded its time allotment.")
        if p.high_since is not None and now - p.high_since > self.cumulative_limit_ns:
            k = self.kernel
            k.bugcheck(bc.DPC_WATCHDOG_VIOLATION, 1, self.cumulative_limit_ns // CLOCK_TICK_NS,
                       k.symbol_address("nt!KiDpcWatchdogGlobalTriageBlock"), 0,
                       detail="The system cumulatively spent an extended period of time at DISPATCH_LEVEL or above.")

    # -- placing and running events -----------------------------------------------------
    def _place(self, ev: "ScheduledEvent") -> tuple[int, Processor | None, "KThread | None"]:
        fn = ev.fn
        how = _LEVELS.get(getattr(fn, "__func__", fn), DEFAULT_THREAD_LEVEL)
        thread = None
        if callable(how):
            how, number, thread = how(ev.args)
        else:
            number = 0
        if how == HARDWARE:
            return how, None, None
        procs = self.processors
        if how >= DPC_LEVEL or len(procs) == 1:
            return how, procs[number if number < len(procs) else 0], thread
        now = self.kernel.scheduler.now_ns
        best = procs[0]
        for p in procs:  # a ready thread takes the first free processor, else the one free first
            if p.busy_until <= now and not p.ready:
                return how, p, thread
            if p.busy_until < best.busy_until:
                best = p
        return how, best, thread

    def run(self, ev: "ScheduledEvent") -> None:
        k = self.kernel
        level, p, thread = self._place(ev)
        if p is None:
            k.run_event_now(ev)
            return
        sched = k.scheduler
        now = sched.now_ns
        released = p.dispatching is ev
        if released:
            p.dispatching = None
            if p.busy_until > now:  # something took the processor since the dispatcher released it
                self._defer(p, ev, level, now)
                return
        elif (p.busy_until > now or (p.ready and -p.ready[0][0] >= level)
              or (p.dispatching is not None and p.dispatch_level >= level)):
            self._defer(p, ev, level, now)
            return
        previous = self.current
        self.current = p
        k.cpu = p.number
        try:
            self._start(p, ev, level, thread, now, released)
            k.run_event_now(ev)
        finally:
            cost = sched.now_ns - now
            sched.now_ns = now
            self.current = previous
            self._finish(p, level, now, cost, ev)

    def _start(self, p: Processor, ev: "ScheduledEvent", level: int, thread: "KThread | None", now: int,
               released: bool) -> None:
        p.current = ev
        p.current_level = level
        p.current_thread = thread
        p.event_start = now
        if level >= DPC_LEVEL:
            if p.high_since is None or now > p.high_until:
                p.high_since = now  # the processor was below DISPATCH_LEVEL in between
            if level == DPC_LEVEL:
                p.dpcs += 1
            return
        p.high_since = None  # a thread runs: the processor is below DISPATCH_LEVEL
        if thread is None or thread is p.last_thread:
            return
        old = p.last_thread
        # the previous thread used its quantum up and this one was waiting for the processor: it
        # leaves at quantum end (taken at the end of its burst, see the module docstring)
        quantum_end = old is not None and p.last_thread_burst_ns >= self.quantum_ns and now <= p.busy_until
        if quantum_end:
            self.thread_times.setdefault(old.address, ThreadTimes()).quantum_ends += 1
            p.quantum_ends += 1
        p.context_switches += 1
        p.last_thread = thread
        self.charge("context_switch")
        k = self.kernel
        if k.bus.subscribers:
            k.publish(ContextSwitch, processor=p.number, old_thread=old.address if old else 0,
                      old_name=old.name if old else "Idle", new_thread=thread.address, new_name=thread.name,
                      reason="QuantumEnd" if quantum_end else "Wait")

    def _finish(self, p: Processor, level: int, now: int, cost: int, ev: "ScheduledEvent") -> None:
        end = now + cost
        if end > p.busy_until:
            p.busy_until = end
        if level < DPC_LEVEL and p.current_thread is not None:
            p.last_thread_burst_ns = cost
        p.current = None
        p.current_level = -1
        p.current_thread = None
        p.last_label = ev.label
        p.last_level = level
        if level >= DPC_LEVEL:
            p.high_until = max(p.high_until, end)
            k = self.kernel
            if k.bus.subscribers and cost:
                kind = IsrTime if level == ISR_LEVEL else DpcTime
                k.publish(kind, processor=p.number, routine=ev.label, start_ns=now, duration_ns=cost)

    def _defer(self, p: Processor, ev: "ScheduledEvent", level: int, now: int) -> None:
        heappush(p.ready, (-level, ev.seq, ev))
        self._arm(p, p.busy_until, now)

    def _arm(self, p: Processor, when: int, now: int) -> None:
        wake = p.wake
        if wake is not None and not wake.cancelled:
            if wake.time_ns <= when:
                return
            wake.cancel()
        k = self.kernel
        p.wake = k.scheduler.call_at(max(when, now), k, self._dispatch, p, label=f"KiDispatch {p.number}")

    def _dispatch(self, p: Processor) -> None:
        """The processor may be free: release the most urgent ready event (one at a time)."""
        p.wake = None
        sched = self.kernel.scheduler
        now = sched.now_ns
        heap = sched._heap
        top = heap[0][2] if heap and heap[0][0] <= now else None
        if top is not None and not top.cancelled and getattr(top.fn, "__func__", None) is not CpuModel._dispatch:
            # other work due now may still ready something more urgent: decide after it
            self._arm(p, now, now)
            return
        ready = p.ready
        while ready and ready[0][2].cancelled:
            heappop(ready)
        if not ready:
            return
        if p.busy_until > now:
            self._arm(p, p.busy_until, now)
            return
        neg_level, _, ev = heappop(ready)
        p.dispatching = ev
        p.dispatch_level = -neg_level
        self.kernel.scheduler.requeue(ev, now)
        if ready:
            self._arm(p, now, now)  # after the released event ran (it is queued first)

    # -- inspection ---------------------------------------------------------------------
    def times(self, thread: Any) -> ThreadTimes:
        return self.thread_times.get(thread.address, ThreadTimes())

    def ready_events(self, p: Processor) -> list[tuple[int, "ScheduledEvent"]]:
        return [(-lvl, ev) for lvl, _, ev in sorted(p.ready) if not ev.cancelled]


set_level(CpuModel._dispatch, HARDWARE)


def install(kernel: "Kernel", profile: str | CostProfile = "x64", processors: int = 1) -> CpuModel | None:
    """Give `kernel` processors that spend time; profile "zero" (or None) turns the model off."""
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"unknown cost profile {profile!r} (known: {', '.join(PROFILES)})")
        profile = PROFILES[profile]
    if profile.zero:
        kernel.cpu_model = None
        kernel.copies.on_copy = None
        kernel.__dict__.pop("run_event", None)  # back to Kernel.run_event: no per-event cost at all
        return None
    model = CpuModel(kernel, profile, processors)
    kernel.cpu_model = model
    kernel.copies.on_copy = model.charge_copy
    kernel.run_event = model.run  # type: ignore[method-assign]  # the scheduler calls k.run_event(ev)
    return model


__all__ = ["CpuModel", "Processor", "ThreadTimes", "install", "set_level", "ISR_LEVEL", "DPC_LEVEL", "HARDWARE"]
