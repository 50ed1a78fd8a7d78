"""Processors: code that runs spends virtual time on one of its host's processors.

Theory of operation.  The world runs one event at a time from one heap of
``(time, seq, event)`` (stack.kernel.scheduler); an event's Python runs to the
end without interruption.  A host with a `CpuModel` gives each of its events a
*level* and a *processor* before it runs:

    ISR_LEVEL (interrupt service, the NIC's line)  >  DPC_LEVEL (DPCs, timer
    expiry at DISPATCH_LEVEL)  >  thread levels 0..31 (the thread's priority)

and each processor keeps, per level, the virtual time it is busy until.  An
event that finds its processor busy at its own level or above (or finds more
urgent work already waiting in the processor's ready queue) does not run: it
joins the processor's ready queue, ordered by level then arrival, and the
processor's dispatcher takes it out when the processor frees.  An event that
runs spends time: every ``k.charge(op, n)`` (costs from stack.kernel.costs)
advances the clock *during the event*, so whatever the event schedules (a
frame on the wire, a DPC, a thread's wake-up) happens at start + cost so far.
When the event ends the clock returns to the event's start (other hosts'
events between start and end still run at their own times) and the processor
is busy at that level until start + cost.  Work arriving at a higher level
while lower-level work is in progress runs at once (it preempts) and pushes the
lower level's busy time later by its own cost: preemption steals time.  A
thread of the same priority gets the processor at the running thread's
quantum end the same way (round robin).  A thread's wait ends its burst, so a
wait frees the processor.

What this simplifies compared to Windows: a burst of work is atomic in
Python, so preemption and quantum end delay only the *next* work of the
preempted level, never the effects the preempted burst already scheduled;
ISRs are not nested by DIRQL (one interrupt level); DPCs run on the processor
that queued them (no DPC importance or targeting, no threaded DPCs); threads
have no affinity, priority boosts or decay — a ready thread takes the first
processor free at its priority; the idle loop, clock interrupt and the cost of
the dispatcher itself are not modelled.  The DPC watchdog measures virtual
time, per processor, as KeQueryDpcWatchdogInformation describes: one DPC (or
ISR) past the single-DPC limit, or DISPATCH_LEVEL-and-above work back to back
past the cumulative limit, bug-checks with 0x133 DPC_WATCHDOG_VIOLATION.

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
QUANTUM_NS = 30_000_000  # a server's quantum: 2 clock intervals x 15.625 ms x 6 / 6 ~ 30 ms (Windows Internals, 7th ed., ch. 4)

# Windows' DPC watchdog limits, in 15.625 ms clock ticks (published 0x133 dumps: Arg3 0x500, Arg2 0x1e00)
CLOCK_TICK_NS = 15_625_000
DPC_TIMEOUT_TICKS = 0x500  # a single DPC or ISR: 20 s
DPC_WATCHDOG_PERIOD_TICKS = 0x1E00  # cumulative at DISPATCH_LEVEL and above: 120 s

# event routine -> how to find its level: a constant, or a function of the event's args
_LEVELS: dict[Any, Any] = {}


def set_level(fn: Callable[..., Any], level: int | Callable[[tuple], tuple[int, int]]) -> None:
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
    busy: dict[int, int] = field(default_factory=dict)  # level -> busy until (only levels still busy)
    quantum_end: dict[int, int] = field(default_factory=dict)  # thread level -> the running thread's quantum end
    ready: list = field(default_factory=list)  # heap of (-level, seq, event)
    wake: Any = None  # the dispatcher's pending ScheduledEvent
    dispatching: Any = None  # the event the dispatcher just released (skips the ready-queue check)
    current: Any = None  # the event running now (inside a run)
    current_level: int = -1
    current_thread: "KThread | None" = None
    last_thread: "KThread | None" = None
    last_label: str = ""
    last_end_ns: int = 0
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

    def busy_until(self, level: int, now: int) -> int:
        """When work at `level` could start (now when nothing at or above it is busy).

        DPCs and ISRs wait for their own level to finish; a thread waits for an
        equal-priority thread only until that thread's quantum ends."""
        until = now
        for lvl, t in self.busy.items():
            if t <= now or lvl < level:
                continue
            if lvl == level and level < DPC_LEVEL:
                t = min(t, self.quantum_end.get(lvl, t))
                if t <= now:
                    continue
            if t > until:
                until = t
        return until

    def load(self, now: int) -> float:
        """Fraction of time since boot spent running code (for the stack view)."""
        return (self.isr_ns + self.dpc_ns + self.thread_ns) / now if now else 0.0


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
        best_until = None
        for p in procs:  # a ready thread takes the first processor free at its priority
            until = p.busy_until(how, now)
            if until <= now and not (p.ready and -p.ready[0][0] >= how):
                return how, p, thread
            if best_until is None or until < best_until:
                best, best_until = p, until
        return how, best, thread

    def run(self, ev: "ScheduledEvent") -> None:
        k = self.kernel
        level, p, thread = self._place(ev)
        if p is None:
            k.run_event_now(ev)
            return
        sched = k.scheduler
        now = sched.now_ns
        if p.dispatching is ev:
            p.dispatching = None
        elif p.ready and -p.ready[0][0] >= level:
            self._defer(p, ev, level, now)
            return
        if p.busy_until(level, now) > now:
            self._defer(p, ev, level, now)
            return
        previous = self.current
        self.current = p
        k.cpu = p.number
        try:
            self._start(p, ev, level, thread, now)
            k.run_event_now(ev)
        finally:
            cost = sched.now_ns - now
            sched.now_ns = now
            self.current = previous
            self._finish(p, level, now, cost, ev)

    def _start(self, p: Processor, ev: "ScheduledEvent", level: int, thread: "KThread | None", now: int) -> None:
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
        # a thread level: a context switch when another thread ran last
        if thread is not None and thread is not p.last_thread:
            old = p.last_thread
            preempted = p.busy.get(level, 0) > now  # an equal-priority thread past its quantum
            if preempted and old is not None:
                times = self.thread_times.setdefault(old.address, ThreadTimes())
                times.quantum_ends += 1
            p.context_switches += 1
            p.last_thread = thread
            self.charge("context_switch")
            k = self.kernel
            if k.bus.subscribers:
                k.publish(ContextSwitch, processor=p.number, old_thread=old.address if old else 0,
                          old_name=old.name if old else "Idle", new_thread=thread.address, new_name=thread.name,
                          reason="QuantumEnd" if preempted else "Wait")
        if thread is not None:
            p.quantum_end[level] = now + self.quantum_ns  # a fresh quantum for the thread now running

    def _finish(self, p: Processor, level: int, now: int, cost: int, ev: "ScheduledEvent") -> None:
        busy = p.busy
        end = now + cost
        for lvl in list(busy):
            until = busy[lvl]
            if until <= now:
                del busy[lvl]
                p.quantum_end.pop(lvl, None)
            elif lvl < level or (lvl == level and level < DPC_LEVEL):
                busy[lvl] = until + cost  # preempted (or past its quantum): it finishes that much later
        if cost:
            if level not in busy or busy[level] < end:
                busy[level] = end
        p.current = None
        p.current_level = -1
        p.current_thread = None
        p.last_label = ev.label
        p.last_end_ns = end
        if level >= DPC_LEVEL:
            p.high_until = max(p.high_until, end)
            k = self.kernel
            if k.bus.subscribers and cost:
                kind = IsrTime if level == ISR_LEVEL else DpcTime
                k.publish(kind, processor=p.number, routine=ev.label, start_ns=now, duration_ns=cost)

    def _defer(self, p: Processor, ev: "ScheduledEvent", level: int, now: int) -> None:
        heappush(p.ready, (-level, ev.seq, ev))
        self._arm(p, p.busy_until(level, now), now)

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
        ready = p.ready
        while ready and ready[0][2].cancelled:
            heappop(ready)
        if not ready:
            return
        level = -ready[0][0]
        until = p.busy_until(level, now)
        if until > now:
            self._arm(p, until, now)
            return
        ev = heappop(ready)[2]
        p.dispatching = ev
        sched.requeue(ev, now)
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
        return None
    model = CpuModel(kernel, profile, processors)
    kernel.cpu_model = model
    kernel.copies.on_copy = model.charge_copy
    return model


__all__ = ["CpuModel", "Processor", "ThreadTimes", "install", "set_level", "ISR_LEVEL", "DPC_LEVEL", "HARDWARE"]
