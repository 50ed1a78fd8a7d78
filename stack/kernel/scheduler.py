"""The world's one deterministic event loop on a virtual clock (nanoseconds).

Every unit of work — a DPC, a thread resuming from a wait, a timer expiring, a
frame reaching a NIC, a work item — is one *event*: an entry in a heap ordered
by (time, insertion sequence), so ties break by insertion order.  Running one
event is the basis of stepping; running to idle or to a virtual time is the
basis of `g`.  No real threads, no wall clock.

An event may also run inside the event before it (`claim_next`) when
the run loop in progress would have taken it off the heap next anyway: it still
counts in `events_run`, at its own time and insertion number, so positions,
limits and replays are the same; `claimed` counts them.  A caller that steps
with run_one never gets one.

The heap holds plain ``(time_ns, seq, event)`` tuples: `seq` is unique, so the
comparison never reaches the event and stays in C (this loop runs a few
times per packet).
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .bugcheck import KMODE_EXCEPTION_NOT_HANDLED, BugCheckInfo, KernelBugCheck
from .symbols import _current as _current_kernels

if TYPE_CHECKING:
    from .kernel import Kernel

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

# The heap is compacted (cancelled entries dropped) when it reaches this size and then each time
# it doubles past its last live size: amortised O(1) per push, and the heap stays within about
# four times the most events ever pending at once (see Scheduler._compact).
HEAP_COMPACT_MIN = 1024


@dataclass(order=True, slots=True)
class ScheduledEvent:
    time_ns: int
    seq: int
    kernel: "Kernel | None" = field(compare=False)
    fn: Callable[..., Any] = field(compare=False)
    args: tuple = field(compare=False, default=())
    label: str = field(compare=False, default="")
    cancelled: bool = field(compare=False, default=False)

    def cancel(self) -> None:
        self.cancelled = True
        # It stays in the heap until its time comes (lazy removal): drop what it would have been
        # called with, so that a cancelled 240 s timer does not keep its TCB alive that long.
        self.args = ()


class _RunLoop:
    """What a run loop stops at, and how many events it ran (continuations included)."""

    __slots__ = ("until_ns", "max_events", "condition", "condition_false", "ran")

    def __init__(self, until_ns: int | None, max_events: int | None,
                 condition: Callable[[], bool] | None) -> None:
        self.until_ns = until_ns
        self.max_events = max_events
        self.condition = condition
        self.condition_false = False  # claim_next asked the condition: it no longer held
        self.ran = 0


class Scheduler:
    def __init__(self) -> None:
        self.now_ns = 0
        self.events_run = 0
        self._heap: list[tuple[int, int, ScheduledEvent]] = []
        self._seq = 0
        self._compact_at = HEAP_COMPACT_MIN  # heap length at which _compact next looks
        self.compactions = 0  # how often cancelled entries were dropped (tests read it)
        self.halted: BugCheckInfo | None = None
        self.current: ScheduledEvent | None = None
        self.on_bugcheck: list[Callable[[BugCheckInfo], None]] = []
        # Hook for a real-time bridge: called before the loop sleeps past `now`.
        self.before_advance: Callable[[int], None] | None = None
        # The run loop in progress (run_until / run_until_idle / run_while), None while a caller
        # steps with run_one: what `claim_next` must respect to run an event inside another.
        self._loop: _RunLoop | None = None
        self.claimed = 0  # events run inside the event before them (claim_next)
        # The event claim_next is about to claim while it asks the loop's condition: peek_time and
        # pending show it as queued, as they would before run_one took it.
        self._claiming: tuple | None = None

    # -- queueing ---------------------------------------------------------------
    def call_at(self, time_ns: int, kernel: "Kernel | None", fn: Callable[..., Any], *args: Any,
                label: str = "") -> ScheduledEvent:
        if time_ns < self.now_ns:
            time_ns = self.now_ns
        self._seq = seq = self._seq + 1
        ev = ScheduledEvent(time_ns, seq, kernel, fn, args, label)
        heap = self._heap
        heappush(heap, (time_ns, seq, ev))
        if len(heap) >= self._compact_at:
            self._compact()
        return ev

    def call_later(self, delay_ns: int, kernel: "Kernel | None", fn: Callable[..., Any], *args: Any,
                   label: str = "") -> ScheduledEvent:
        time_ns = self.now_ns + delay_ns if delay_ns > 0 else self.now_ns
        self._seq = seq = self._seq + 1
        ev = ScheduledEvent(time_ns, seq, kernel, fn, args, label)
        heap = self._heap
        heappush(heap, (time_ns, seq, ev))
        if len(heap) >= self._compact_at:
            self._compact()
        return ev

    def call_soon(self, kernel: "Kernel | None", fn: Callable[..., Any], *args: Any, label: str = "") -> ScheduledEvent:
        time_ns = self.now_ns
        self._seq = seq = self._seq + 1
        ev = ScheduledEvent(time_ns, seq, kernel, fn, args, label)
        heap = self._heap
        heappush(heap, (time_ns, seq, ev))
        if len(heap) >= self._compact_at:
            self._compact()
        return ev

    def requeue(self, ev: ScheduledEvent, time_ns: int) -> None:
        """Put an event that could not run yet (its processor was busy) back, due at `time_ns`."""
        ev.time_ns = time_ns = max(time_ns, self.now_ns)
        self._seq = seq = self._seq + 1
        ev.seq = seq
        heappush(self._heap, (time_ns, seq, ev))

    # -- events run inside the event before them ------------------------------------------------
    def reserve_seqs(self, n: int) -> int:
        """Take `n` insertion numbers now for events queued later (the first is returned): a
        caller that would have queued n events at once queues them one at a time, each with
        the number it would have had, so its ties with everything else break the same way."""
        first = self._seq + 1
        self._seq += n
        return first

    def call_at_seq(self, time_ns: int, seq: int, kernel: "Kernel | None", fn: Callable[..., Any], *args: Any,
                    label: str = "") -> ScheduledEvent:
        """call_at with an insertion number taken earlier by reserve_seqs."""
        if time_ns < self.now_ns:
            time_ns = self.now_ns
        ev = ScheduledEvent(time_ns, seq, kernel, fn, args, label)
        heap = self._heap
        heappush(heap, (time_ns, seq, ev))
        if len(heap) >= self._compact_at:
            self._compact()
        return ev

    def claim_next(self, time_ns: int, seq: int, kernel: "Kernel | None", fn: Callable[..., Any], args: tuple,
                   label: str = "") -> bool:
        """May the event `fn(*args)` due at (time_ns, seq) - an insertion number taken by
        reserve_seqs - run now, inside the running event, without ever being queued?

        True only when nobody could tell the difference: a run loop is in progress (run_until /
        run_until_idle / run_while) and would take the event next (nothing in the heap is due
        before it; inside the loop's time and event limits; the loop's condition, asked at the
        same point the loop asks it, still holds), no real-time hook waits between events, and
        the machine has not stopped.  Then the clock moves to its time and it counts as an event
        run, exactly as run_one would have done it; the caller runs it at once (`claimed` counts
        these).  No event object is made and the heap is not touched, but while the condition is
        asked, peek_time / idle / pending see the event as queued, as they would before run_one
        took it.  A caller that steps with run_one (the debugger, the bridge) never gets a claim.
        EmulatedNic's segment pump (stack/nic/segrun.py) asks this once per segment."""
        loop = self._loop
        if loop is None or self.halted is not None or self.before_advance is not None:
            return False
        now = self.now_ns
        if time_ns < now:
            time_ns = now
        heap = self._heap
        if heap:
            if heap[0][2].cancelled:
                while heap and heap[0][2].cancelled:
                    heappop(heap)
            # Due before it: the heap's (time, seq, event) against (time, seq), compared in C.  The
            # seq (from reserve_seqs) is that of this event, which is not queued: no heap entry has
            # it, so time or seq decides and the compare never reaches an event (which has no order).
            if heap and heap[0] < (time_ns, seq):
                return False
        if loop.max_events is not None and loop.ran >= loop.max_events:
            return False
        if loop.until_ns is not None and time_ns > loop.until_ns:
            return False
        condition = loop.condition
        if condition is not None:
            self._claiming = (time_ns, seq, kernel, fn, args, label)
            try:
                holds = condition()
            finally:
                self._claiming = None
            if not holds:
                loop.condition_false = True  # run_while has its answer: it stops without asking again
                return False
        if time_ns > self.now_ns:
            self.now_ns = time_ns
        self.events_run += 1
        self.claimed += 1
        loop.ran += 1
        return True

    def next_event(self) -> ScheduledEvent | None:
        """The event run_one would run next (cancelled entries dropped), left queued."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heappop(heap)
        return heap[0][2] if heap else None

    def pop_next(self) -> ScheduledEvent:
        """Take the event next_event() returned off the heap without running it: the caller runs it
        (claim_next) or queues it again with the same time and insertion number."""
        return heappop(self._heap)[2]

    def _compact(self) -> None:
        """Drop cancelled entries once they are half the heap or more.

        Cancelling is lazy (an entry stays until its time comes), so a timer that is set and
        cancelled for every connection - a 240 s time-wait or keep-alive timer, say - would
        otherwise pile up for as long as its deadline.  asyncio bounds its timer heap the same
        way (BaseEventLoop: cancelled handles rebuilt away when they exceed half the heap); the
        NT kernel has no such pile at all, since KeCancelTimer unlinks the timer from its list.
        Rebuilding in place keeps the order: (time, seq) is unique."""
        heap = self._heap
        live = [item for item in heap if not item[2].cancelled]
        if len(live) * 2 <= len(heap):
            heap[:] = live  # in place: the run loops hold a reference to this list
            heapify(heap)
            self.compactions += 1
        self._compact_at = max(HEAP_COMPACT_MIN, 2 * len(heap))

    def heap_size(self) -> int:
        """Entries in the heap, cancelled ones included (tests check that it stays bounded)."""
        return len(self._heap)

    # -- inspection -------------------------------------------------------------
    def peek_time(self) -> int | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heappop(heap)
        claiming = self._claiming
        if claiming is not None:  # asked by a run loop's condition before a claimed event: it is next
            return claiming[0]
        return heap[0][0] if heap else None

    def pending(self) -> list[ScheduledEvent]:
        entries = sorted(self._heap)
        claiming = self._claiming
        if claiming is not None:  # asked by a run loop's condition before a claimed event (claim_next)
            entries.append((claiming[0], claiming[1], ScheduledEvent(*claiming)))
            entries.sort()
        return [e for _, _, e in entries if not e.cancelled]

    @property
    def idle(self) -> bool:
        return self.peek_time() is None

    # -- running ----------------------------------------------------------------
    def run_one(self) -> bool:
        """Run exactly one event.  False when halted or there is nothing to run."""
        if self.halted is not None:
            return False
        heap = self._heap
        while heap:
            ev = heappop(heap)[2]
            if not ev.cancelled:
                break
        else:
            return False
        if ev.time_ns > self.now_ns:
            if self.before_advance is not None:
                self.before_advance(ev.time_ns)
            self.now_ns = ev.time_ns
        self.events_run += 1
        self.current = ev
        k = ev.kernel
        try:
            if k is None:
                ev.fn(*ev.args)
            else:
                kernels = _current_kernels
                kernels.append(k)
                try:
                    k.run_event(ev)
                finally:
                    kernels.pop()
        except KernelBugCheck as crash:
            self._halt(crash.info)
        except Exception as exc:  # a driver bug must never escape into the debugger
            if k is None:
                raise
            self._halt(k.bugcheck_from_exception(exc, traceback.format_exc()))
        finally:
            self.current = None
        return True

    def _halt(self, info: BugCheckInfo) -> None:
        self.halted = info
        for fn in list(self.on_bugcheck):
            fn(info)

    def run_until(self, time_ns: int, max_events: int | None = None) -> int:
        """Run every event due at or before `time_ns`, then set the clock to it."""
        heap = self._heap
        loop = _RunLoop(time_ns, max_events, None)
        outer, self._loop = self._loop, loop
        try:
            while self.halted is None:
                while heap and heap[0][2].cancelled:  # peek_time(), inlined
                    heappop(heap)
                if not heap or heap[0][0] > time_ns:
                    break
                if max_events is not None and loop.ran >= max_events:
                    return loop.ran
                loop.ran += 1
                self.run_one()
        finally:
            self._loop = outer
        if self.halted is None and time_ns > self.now_ns:
            self.now_ns = time_ns
        return loop.ran

    def run_for(self, delay_ns: int, max_events: int | None = None) -> int:
        return self.run_until(self.now_ns + delay_ns, max_events)

    def run_until_idle(self, max_events: int | None = None, max_time_ns: int | None = None) -> int:
        heap = self._heap
        loop = _RunLoop(max_time_ns, max_events, None)
        outer, self._loop = self._loop, loop
        try:
            while self.halted is None:
                if max_events is not None and loop.ran >= max_events:
                    break
                while heap and heap[0][2].cancelled:  # peek_time(), inlined
                    heappop(heap)
                if not heap or (max_time_ns is not None and heap[0][0] > max_time_ns):
                    break
                loop.ran += 1
                self.run_one()
        finally:
            self._loop = outer
        return loop.ran

    def run_while(self, condition: Callable[[], bool], max_events: int = 10_000_000,
                  max_time_ns: int | None = None) -> bool:
        """Run while `condition()` holds; True when it stopped holding."""
        heap = self._heap
        loop = _RunLoop(max_time_ns, max_events, condition)
        outer, self._loop = self._loop, loop
        try:
            while not loop.condition_false and condition():
                if self.halted is not None or loop.ran >= max_events:
                    return False
                while heap and heap[0][2].cancelled:  # peek_time(), inlined
                    heappop(heap)
                if not heap or (max_time_ns is not None and heap[0][0] > max_time_ns):
                    return False
                loop.ran += 1
                self.run_one()
            return True
        finally:
            self._loop = outer
