"""Passed-through segments run back to back: the receive side of pass-through, one event for many.

Part of EmulatedNic (split out of nic.py, and working on the NIC's own state).
A passed-through large send reaches its NIC as segments whose arrival times
the link computed in closed form (passthrough.py).  Each segment is an event
of its own - at its own time, with the insertion number `deliver_large`
reserved for it - but while nothing can tell events apart (no bus subscriber,
no processor model, no wire hold, a run loop that would take the next segment
next anyway: `EmulatedNic._may_chain`, `Scheduler.claim_next`) one event runs
them here, each claimed and counted as an event run, in the order the
scheduler would have run them, at its own time; the run loop's condition is
asked before each, as before any event.

In a bulk echo both directions stream at once, so the segment due next is as
often the *other* NIC's as this one's.  The pump therefore keeps every
passed-through delivery whose next segment is the earliest thing due (a
`SegmentRun` each: the one this event belongs to, and any the heap's top turns
out to be, taken off the heap) and runs whichever is due first, until
something else is due.  Then each run's next segment goes back on the heap as
the event it always was (same time, same insertion number).

Most segments only join their connection's open RSC unit while the NIC's
interrupt is already due (moderation) or masked: a payload DMA, counters, the
unit's fields, and nothing queued.  `_batch` runs every such segment due
before anything else at once: which ones, and in what order, is worked out
from the arrival times, the posted buffers and the unit's room in closed form;
each is still claimed as an event, and its DMA, counters, receive ring and
the unit's own fields change segment by segment, so a run loop's condition,
asked before each claimed segment, sees what it would see between events.

Another host's NIC's segment is run here only on that join path, with its
interrupt already due, masked or moderated (never fired from inside this
event): that path touches nothing but that NIC, so running it in this host's
event is the same as running it in its own.  Anything else - a unit's first
segment, a segment that ends a unit, an interrupt that would fire at once -
waits for its own event.  This host's own segments take `segment_arrived` for
everything but the join, as before.

The join is rsc.joins_next and rsc.add_next, inlined; the pass-through
equivalence tests hold it to them (tests/stack/test_world_segment_chaining.py,
tests/stack/test_world_segment_batching.py).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import islice, repeat
from typing import TYPE_CHECKING

import traceback

from stack.kernel.bugcheck import KernelBugCheck
from stack.kernel.irql import PASSIVE_LEVEL
from stack.kernel.symbols import _current as _current_kernels
from stack.kernel.memory import PAGE_SHIFT

from .passthrough import TCP_FIN, TCP_PSH
from .rsc import MAX_IP_DATAGRAM

if TYPE_CHECKING:
    from .nic import EmulatedNic
    from .passthrough import LargeSend

ETH_HEADER_LEN = 14
FILTER_DIRECTED = 0x01  # nic.FILTER_DIRECTED (NDIS_PACKET_TYPE_DIRECTED)
INT_RX = 0x1  # nic.INT_RX


class SegmentRun:
    """One passed-through delivery in the pump: what stays the same from one of its segments to the
    next (read once per large send: it is kept on the LargeSend until its last segment, which drops
    it, so that the snapshot is freed with the unit), and where it is (`i`: its next segment; `t`:
    that segment's time; `local`: the NIC of the kernel whose event runs the pump)."""

    __slots__ = ("nic", "unit", "times", "seq0", "i", "t", "count", "local", "fast", "first", "looked", "mss",
                 "headers_end", "last_payload", "last_psh", "last_fin", "seq", "max_frame", "data", "view",
                 "base", "doing")

    def __init__(self, nic: "EmulatedNic", unit: "LargeSend", times: list[int], seq0: int) -> None:
        self.nic = nic
        self.unit = unit
        self.times = times
        self.seq0 = seq0
        self.i = 0
        self.t = 0
        count = self.count = len(times)
        self.local = False
        self.first = None  # what RSC reads from segment 0 (LargeSend.rsc_first), once segment 0 went its way
        self.mss = unit.mss
        self.headers_end = unit.headers_end
        self.last_payload = unit.payload_length - (count - 1) * unit.mss
        self.last_psh = bool(unit.flags & TCP_PSH)
        self.last_fin = bool(unit.flags & TCP_FIN)  # a FIN segment never joins a unit (rsc.classify)
        self.seq = unit.seq
        self.data = memoryview(unit.data)
        self.view = nic._phys_view
        self.base = nic._phys_base
        self.looked = False
        self.doing = False  # its segment i is running (pump's bug check: that segment's event ran)
        self.refresh()

    def refresh(self) -> None:
        """Read the NIC's settings again (an event between two pumps may have changed them)."""
        nic = self.nic
        offloads = nic.offloads
        self.fast = bool(offloads.rx_checksum and offloads.rsc and nic.receive_filter & FILTER_DIRECTED
                         and self.unit.dst == nic.mac)
        if not self.fast:
            self.first = None
            self.looked = True
        self.max_frame = nic.mtu + ETH_HEADER_LEN


def _run_at(nic: "EmulatedNic", unit: "LargeSend", times: list[int], i: int, seq0: int, t: int,
            local: bool) -> SegmentRun:
    """The unit's run, at segment i (due at t)."""
    r = unit.rx_run
    if r is None or r.nic is not nic or r.times is not times or r.seq0 != seq0:
        r = unit.rx_run = SegmentRun(nic, unit, times, seq0)
    elif (r.fast != bool(nic.offloads.rx_checksum and nic.offloads.rsc and nic.receive_filter & FILTER_DIRECTED
                         and unit.dst == nic.mac) or r.max_frame != nic.mtu + ETH_HEADER_LEN):
        r.refresh()  # the NIC's settings changed since its last pump
    r.i = i
    r.t = t
    r.local = local
    return r


NEVER = 1 << 62  # a time past any other: nothing else is due
BATCH_MIN = 4  # segments of one run due before anything else for _batch to be worth its setup


def pump(nic: "EmulatedNic", unit: "LargeSend", times: list[int], i: int, seq0: int) -> None:
    """Run segment `i` (this event's), then every passed-through segment due next (module docstring)."""
    k = nic.kernel
    sched = k.scheduler
    if not nic._may_chain(k):
        # chaining is observable: this segment, and every later one as its own event
        unit.rx_run = None  # no run outlives the pump: the large send is freed with its last event
        arrived = nic.segment_arrived
        arrived(unit, i)
        call_at_seq = sched.call_at_seq
        for j in range(i + 1, len(times)):
            call_at_seq(times[j], seq0 + j, k, arrived, unit, j, label="nic rx")
        return
    if sched._loop is None or sched.before_advance is not None or sched.halted is not None:
        # stepping with run_one (the debugger, the real-time bridge) or stopped: claim_next never
        # says yes, so planning a batch or adopting other runs would only put them back.  This
        # segment runs alone and queues the next one, as a chain of single events.
        nxt = i + 1
        if nxt < len(times):
            t = times[nxt]
            sched.call_at_seq(t if t > sched.now_ns else sched.now_ns, seq0 + nxt, k, nic._segments_arrived, unit,
                              times, nxt, seq0, label="nic rx")
        else:
            unit.rx_run = None  # done: no cycle left between the large send and its run
        nic.segment_arrived(unit, i)
        return
    r = _run_at(nic, unit, times, i, seq0, sched.now_ns, True)
    runs = [r]
    kernels = _current_kernels
    swap = kernels[-1] is k if kernels else False  # (run_one pushed this kernel: each segment runs as its host's)
    # An exception in a segment's work bug-checks that segment's host (the kernel it runs as:
    # kernels[-1]), as its own event would have; that segment counts as run and every other run's
    # next segment goes back on the heap first (their insertion numbers), so nothing taken is lost.
    try:
        _pump_loop(runs, r, k, sched, kernels, swap)
    except Exception as exc:
        _fail(runs, sched)
        blame = kernels[-1] if swap else k
        raise KernelBugCheck(blame.bugcheck_from_exception(exc, traceback.format_exc())) from None
    except BaseException:
        _fail(runs, sched)
        raise
    finally:
        if swap:
            kernels[-1] = k


def _fail(runs: list[SegmentRun], sched) -> None:
    """A segment's work raised: that segment's event ran (and crashed); the rest go back on the heap."""
    for r in list(runs):
        if r.doing:
            r.doing = False
            j = r.i + 1
            if j >= r.count:
                runs.remove(r)
                r.unit.rx_run = None
            else:
                r.i = j
                t = r.times[j]
                r.t = t if t > sched.now_ns else sched.now_ns
    for r in runs:
        r.unit.rx_run = None  # (its next pump makes a new one)
    _requeue(runs)


def _pump_loop(runs: list[SegmentRun], r: SegmentRun, k, sched, kernels: list, swap: bool) -> None:
    """pump's loop: each segment due next, until something else is due (module docstring)."""
    segments_arrived = type(r.nic)._segments_arrived
    bus = k.bus  # one per world: every kernel's
    due = True  # r's segment is this event's own: already counted as an event run
    while True:
        if not due:  # the next event: the earliest run's segment, unless something else is due first
            if not runs:
                return
            ev = None
            for r in runs:  # a batch, if a run's segments would only join with the line already due
                if r.first is not None and (r.nic._fire_scheduled or not r.nic.interrupts_enabled):
                    ev = sched.next_event()
                    ran = (_batch(runs, sched, ev.time_ns, ev.seq, kernels if swap else None) if ev is not None
                           else _batch(runs, sched, NEVER, 0, kernels if swap else None))
                    if ran < 0:
                        _requeue(runs)  # the run loop stops inside the batch
                        return
                    break
            else:
                ran = 0
            if ran:
                continue
            r = runs[0]
            if len(runs) > 1:  # two or three runs at most
                for other in runs:
                    if other.t < r.t or (other.t == r.t and other.seq0 + other.i < r.seq0 + r.i):
                        r = other
            seq = r.seq0 + r.i
            if ev is not None and (ev.time_ns < r.t or (ev.time_ns == r.t and ev.seq < seq)):
                if _adopt(runs, ev, segments_arrived, sched, k):  # something else is due first
                    continue
                _requeue(runs)
                return
        j = r.i
        rnic = r.nic
        last = j == r.count - 1
        payload = r.last_payload if last else r.mss
        # -- does segment j join its connection's open RSC unit?  (rsc.joins_next, inlined)
        open_unit = None
        if j and r.fast and not (last and r.last_fin):
            first = r.first
            if first is None and not r.looked:
                r.looked = True
                first = r.first = r.unit.rsc_first()
            if first is not None:
                open_unit = rnic._rsc_open.get(first.flow)
                if open_unit is not None:
                    n = r.headers_end + payload
                    posted = rnic._rx_posted
                    if (n > r.max_frame or not posted or n > posted[0][1]
                            or (r.seq + j * r.mss) & 0xFFFFFFFF != open_unit.next_seq
                            or first.shape != open_unit.shape or (first.ack - open_unit.ack) & 0x80000000
                            or (first.tsval is not None and (first.tsval - open_unit.tsval_last) & 0x80000000)
                            or open_unit.ip_length + payload > MAX_IP_DATAGRAM):
                        open_unit = None
        if not due:
            if not r.local and (open_unit is None or not (rnic._fire_scheduled or not rnic.interrupts_enabled
                                                          or rnic.interrupt_moderation_ns > 0)):
                _requeue(runs)  # another kernel's segment that must run in its own event
                return
            if not sched.claim_next(r.t, seq, rnic.kernel, rnic._segments_arrived, (r.unit, r.times, j, r.seq0),
                                    "nic rx"):
                ev = sched.next_event()
                if ev is not None and (ev.time_ns < r.t or (ev.time_ns == r.t and ev.seq < seq)):
                    if _adopt(runs, ev, segments_arrived, sched, k):  # something else is due first
                        continue
                _requeue(runs)  # something else runs first, or the run loop stops here (limits, condition)
                return
        due = False
        # -- segment j is due and counted as an event run: run it (as its host's)
        r.doing = True
        if swap:
            kernels[-1] = rnic.kernel
        if open_unit is not None:
            # its payload is DMA'd into the next posted buffer straight from the sender's snapshot
            # (what _coalesce does with a frame), and the unit takes it (rsc.add_next, inlined)
            sg, _capacity, cookie = rnic._rx_posted.popleft()
            start = r.headers_end + j * r.mss
            pfn, offset, length = sg[0]
            if length >= payload:  # the payload fits the buffer's first run: _scatter, inlined
                at = ((pfn - r.base) << PAGE_SHIFT) + offset
                r.view[at:at + payload] = r.data[start:start + payload]
                rnic.dma_rx_bytes += payload
            else:
                rnic._scatter(sg, r.data[start:start + payload])
            open_unit.next_seq = (open_unit.next_seq + payload) & 0xFFFFFFFF
            open_unit.ack = first.ack
            open_unit.window = first.window
            if last and r.last_psh:
                open_unit.psh = True
            open_unit.segments += 1
            open_unit.ip_length += payload
            if first.ttl < open_unit.ttl:
                open_unit.ttl = first.ttl
            if first.tsval is not None:
                open_unit.tsval_last = first.tsval
            open_unit.extra.append((cookie, payload))
            open_unit.extra_bytes += payload
            rnic._rsc_held += 1
            c = rnic.counters
            n = r.headers_end + payload
            c.frames_in += 1
            c.bytes_in += n
            c.rx_descriptors += 1
            c.rsc_coalesced_segments += 1
            if rnic._fire_scheduled or not rnic.interrupts_enabled:
                rnic._cause |= INT_RX  # _raise(INT_RX) with the moderated interrupt already due, or masked
                touched = False
            else:
                rnic._raise(INT_RX)  # (it fires at once only in a run of this kernel's: checked above)
                touched = True
        else:
            rnic.segment_arrived(r.unit, j)  # only this kernel's runs get here
            touched = True
        r.doing = False
        j += 1
        if j == r.count:
            runs.remove(r)
            r.unit.rx_run = None  # done: no cycle left between the large send and its run
        else:
            r.i = j
            t = r.times[j]
            r.t = t if t > sched.now_ns else sched.now_ns  # what call_at_seq would queue it at now
        if touched and (k.irql != PASSIVE_LEVEL or k.frames or k.current_thread is not None or k.held_locks
                        or bus.subscribers):
            # the context is no longer a fresh event's, or someone listens now (an interrupt service
            # ran): one event per segment from here
            _unchain(runs, k)
            return


def _adopt(runs: list[SegmentRun], ev, segments_arrived, sched, k) -> bool:
    """`ev`, due before every run's next segment, is another delivery's segment: take it off the
    heap into the pump (it runs here, or goes back by _requeue).  False: it is something else, or
    its NIC's line is idle (its segment would queue an interrupt, and the pump would stop there)."""
    if ev.label != "nic rx":
        return False
    fn = ev.fn
    if getattr(fn, "__func__", None) is not segments_arrived:
        return False
    nic = fn.__self__
    if nic.interrupts_enabled and not nic._fire_scheduled:
        return False  # its segment would raise an interrupt, due before the one after it: no gain
    if not nic._may_chain(nic.kernel):
        return False
    sched.pop_next()
    unit, times, i, seq0 = ev.args
    runs.append(_run_at(nic, unit, times, i, seq0, ev.time_ns, nic.kernel is k))
    return True


def _batch(runs: list[SegmentRun], sched, limit_t: int, limit_seq: int, kernels: list | None) -> int:
    """Run at once every segment due before anything else that only joins its open RSC unit (no
    interrupt to raise: the line is already due, or masked), in the order the scheduler would run
    them, each claimed as an event (claim_next) and taken by its unit at once (rsc.add_next).
    The number of segments run; 0: none could be (the per-segment path takes the next one);
    -1: the run loop stopped inside the batch (limits, its condition)."""
    if len(runs) > 1 and (runs[0].nic is runs[1].nic if len(runs) == 2
                          else len({id(r.nic) for r in runs}) < len(runs)):
        return 0  # two runs into one NIC share its posted buffers: one segment at a time
    for r in runs:  # a batch pays off from a few segments on: one run must have BATCH_MIN due before the limit
        i = r.i + BATCH_MIN - 1
        if i < r.count and r.times[i] < limit_t:
            break
    else:
        return 0  # too few to be worth a batch: the per-segment path is cheaper
    limit = (limit_t, limit_seq)
    now = sched.now_ns
    plan = []
    for r in runs:
        # (a segment due in the past - queued at `now` - takes the per-segment path)
        nic = r.nic
        c = (_joinable_prefix(r, limit)
             if r.first is not None and (nic._fire_scheduled or not nic.interrupts_enabled)
             and r.t == r.times[r.i] and r.t >= now else 0)
        plan.append(c)
        if r.i + c < r.count:  # its first segment that is not a plain join runs on its own, in its turn
            key = (r.times[r.i + c], r.seq0 + r.i + c) if c else (r.t, r.seq0 + r.i)
            if key < limit:
                limit = key
    limit_t, limit_seq = limit
    keys = []
    units = [None] * len(runs)  # per run: the open RSC unit its segments join
    for ri, r in enumerate(runs):
        times = r.times
        seq0 = r.seq0
        end = r.i + plan[ri]
        # (segments are in time order: those due at or after the limit are at the end)
        while end > r.i and (times[end - 1] > limit_t
                             or (times[end - 1] == limit_t and seq0 + end - 1 >= limit_seq)):
            end -= 1
        if end > r.i:
            keys += zip(times[r.i:end], range(seq0 + r.i, seq0 + end), repeat(ri), range(r.i, end))  # (in C)
            units[ri] = r.nic._rsc_open[r.first.flow]
    if len(keys) < 2:
        return 0
    keys.sort()  # the order the scheduler would run them in
    # The hot handful each segment of a run needs, read once per batch (the loop below runs per
    # segment); the rest it reads through the run.
    specs = [(r, r.nic.kernel, r.nic._segments_arrived, r.nic._rx_posted.popleft, r.nic.counters, r.view,
              r.base, r.unit, units[ri]) for ri, r in enumerate(runs)]
    claim = sched.claim_next
    taken = [0] * len(runs)  # per run: how many of its segments ran
    stopped = False
    crash = None
    doing = None
    try:
        for t, seq, ri, j in keys:
            r, kernel, arrived, popleft, c, view, base, unit, u = specs[ri]
            if not claim(t, seq, kernel, arrived, (unit, r.times, j, r.seq0), "nic rx"):
                stopped = True
                break
            if kernels is not None:
                kernels[-1] = kernel  # (it runs as its host's)
            doing = r
            nic = r.nic
            mss = r.mss
            is_last = j == r.count - 1
            payload = r.last_payload if is_last else mss
            sg, _capacity, cookie = popleft()
            start = r.headers_end + j * mss
            pfn, offset, length = sg[0]
            if length >= payload:  # the payload fits the buffer's first run: _scatter, inlined
                at = ((pfn - base) << PAGE_SHIFT) + offset
                view[at:at + payload] = r.data[start:start + payload]
                nic.dma_rx_bytes += payload
            else:
                nic._scatter(sg, r.data[start:start + payload])
            nic._rsc_held += 1
            c.frames_in += 1
            c.bytes_in += r.headers_end + payload
            c.rx_descriptors += 1
            c.rsc_coalesced_segments += 1
            # rsc.add_next: the unit takes the segment (a run loop's condition sees it as after its event)
            if not taken[ri]:  # (every field but the sequence, lengths and PSH is the first segment's)
                first = r.first
                u.ack = first.ack
                u.window = first.window
                if first.ttl < u.ttl:
                    u.ttl = first.ttl
                if first.tsval is not None:
                    u.tsval_last = first.tsval
            u.next_seq = (u.next_seq + payload) & 0xFFFFFFFF
            if is_last and r.last_psh:
                u.psh = True
            u.segments += 1
            u.ip_length += payload
            u.extra.append((cookie, payload))
            u.extra_bytes += payload
            nic._cause |= INT_RX  # _raise(INT_RX) with the moderated interrupt already due, or masked
            taken[ri] += 1
            doing = None
    except BaseException as exc:  # the units still take the segments run before it; then pump bug-checks
        crash = exc
    ran = 0
    for ri, d in enumerate(taken):
        if not d:
            continue
        r = runs[ri]
        ran += d
        j = r.i = r.i + d  # the run's next segment
        if j < r.count:
            t = r.times[j]
            r.t = t if t > sched.now_ns else sched.now_ns
        else:
            r.unit.rx_run = None  # done: no cycle left between the large send and its run
    runs[:] = [r for r in runs if r.i < r.count]
    if crash is not None:
        if doing is not None:
            doing.doing = True  # its segment's event ran, and crashed
        raise crash
    return -1 if stopped else ran


def _joinable_prefix(r: SegmentRun, limit: tuple[int, int]) -> int:
    """How many of r's segments from r.i on, due before `limit` (time, insertion number), would only
    join the open RSC unit (rsc.joins_next holds for each in turn, a posted buffer takes each) with
    the interrupt line already due or masked."""
    j0 = r.i
    first = r.first
    if not j0 or first is None:
        return 0
    nic = r.nic
    if nic.interrupts_enabled and not nic._fire_scheduled:
        return 0
    open_unit = nic._rsc_open.get(first.flow)
    if (open_unit is None or (r.seq + j0 * r.mss) & 0xFFFFFFFF != open_unit.next_seq
            or first.shape != open_unit.shape or (first.ack - open_unit.ack) & 0x80000000
            or (first.tsval is not None and (first.tsval - open_unit.tsval_last) & 0x80000000)):
        return 0
    count = r.count
    end = count - 1 if r.last_fin else count  # a FIN segment ends the unit: never a plain join
    mss = r.mss
    headers_end = r.headers_end
    if headers_end + mss > r.max_frame:
        return 0
    # the segments due before `limit` (times are in order; a tie goes by insertion number)
    limit_t, limit_seq = limit
    stop = bisect_left(r.times, limit_t, j0, end)
    if stop < end and r.times[stop] == limit_t and r.seq0 + stop < limit_seq:
        stop = bisect_right(r.times, limit_t, stop, end)
        stop = min(stop, limit_seq - r.seq0)
    # ...that the unit has room for (full segments, then the last one, smaller) ...
    room = MAX_IP_DATAGRAM - open_unit.ip_length
    fit = j0 + room // mss
    if fit >= count - 1 and room - (count - 1 - j0) * mss >= r.last_payload:
        fit = count
    elif fit > count - 1:
        fit = count - 1
    if fit < stop:
        stop = fit
    # ...and that a posted buffer each takes, in order
    c = 0
    n = stop - j0
    if n > 0:
        full = headers_end + mss
        for entry in islice(nic._rx_posted, n):
            if entry[1] < full and (c != count - 1 - j0 or entry[1] < headers_end + r.last_payload):
                break
            c += 1
    return c


def _requeue(runs: list[SegmentRun]) -> None:
    """Something else is due first: every run's next segment goes back on the heap as its own event."""
    for r in runs:
        nic = r.nic
        nic.kernel.scheduler.call_at_seq(r.t, r.seq0 + r.i, nic.kernel, nic._segments_arrived, r.unit, r.times,
                                         r.i, r.seq0, label="nic rx")


def _unchain(runs: list[SegmentRun], k) -> None:
    """Chaining became observable: this kernel's runs queue each remaining segment as its own event
    (as deliver_large does without chaining); the others go back as they were."""
    for r in runs:
        nic = r.nic
        sched = nic.kernel.scheduler
        r.unit.rx_run = None  # (its pump, if any, makes a new one)
        if nic.kernel is k:
            arrived = nic.segment_arrived
            for j in range(r.i, r.count):
                sched.call_at_seq(r.times[j], r.seq0 + j, k, arrived, r.unit, j, label="nic rx")
        else:
            sched.call_at_seq(r.t, r.seq0 + r.i, nic.kernel, nic._segments_arrived, r.unit, r.times, r.i, r.seq0,
                              label="nic rx")
