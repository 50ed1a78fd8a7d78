"""A full-duplex cable with bandwidth, latency, a bounded queue and fault injection.

Each direction (`LinkEnd`) serializes frames one after another: a frame
starts when the previous one has finished, takes ``len * 8 / bandwidth``
seconds to serialize, then arrives ``latency`` later.  Frames waiting to
start beyond the queue bound are dropped (drop-tail).  Faults are drawn
from the seeded `random.Random` the world passes in, in a fixed order per
frame (loss, duplication, reordering, corruption; only kinds with a
non-zero probability draw), so a run replays exactly.
"""

from __future__ import annotations

import random
from collections import deque
from bisect import bisect_right
from itertools import accumulate, islice
from operator import add, sub
from dataclasses import dataclass
from typing import Callable, Protocol

from stack.kernel.scheduler import NS_PER_S, Scheduler

from .events import FrameDropped
from .passthrough import BLOCK_CAPTURE, BLOCK_FAULT, BLOCK_QUEUE, BLOCK_SINK


class FrameSink(Protocol):
    """Where frames go: ``deliver`` is told a frame reaches it at ``time_ns`` (>= now)."""

    def deliver(self, frame: bytes, time_ns: int) -> None: ...


class FramePort(FrameSink, Protocol):
    """A device that both receives frames (deliver) and transmits into a sink (attach)."""

    def attach(self, sink: FrameSink | None) -> None: ...


Tap = Callable[[bytes, int], None]


@dataclass(slots=True)
class FaultConfig:
    """Per-direction fault probabilities (0..1)."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    reorder_delay_ns: int = 1_000_000  # extra delay of a reordered frame
    corrupt_bytes: int = 1  # bytes flipped in a corrupted frame

    def validate(self) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault probability {name}={p} outside 0..1")
        if self.reorder_delay_ns < 0 or self.corrupt_bytes < 1:
            raise ValueError("reorder_delay_ns must be >= 0 and corrupt_bytes >= 1")

    @property
    def any(self) -> bool:
        return bool(self.loss or self.duplicate or self.reorder or self.corrupt)


@dataclass(slots=True)
class LinkCounters:
    frames_in: int = 0  # handed to this end by the transmitter
    bytes_in: int = 0
    delivered: int = 0  # frames handed to the far sink (duplicates included)
    bytes_delivered: int = 0
    queue_drops: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    no_sink: int = 0


class LinkEnd:
    """One direction of a link: frames given to ``deliver`` come out at ``sink``."""

    def __init__(self, link: "Link", index: int) -> None:
        self.link = link
        self.index = index
        self.sink: FrameSink | None = None
        self.faults = FaultConfig()
        self.counters = LinkCounters()
        self.taps: list[Tap] = []
        self._busy_until = 0
        self._finish_times: deque[int] = deque()  # serialization end of frames not yet finished

    @property
    def name(self) -> str:
        return f"{self.link.name}[{self.index}]"

    def queue_depth(self, now_ns: int) -> int:
        q = self._finish_times
        while q and q[0] <= now_ns:
            q.popleft()
        return len(q)

    def room_at(self, frames: int, now_ns: int) -> int:
        """When `frames` more frames fit in this end's queue (now_ns if they fit now).  A NIC
        waits for it: its MAC sends at line rate and never overruns its own wire (issue 12)."""
        bound = self.link.queue_frames
        if len(self._finish_times) + frames <= bound:
            return now_ns  # they fit even if nothing has finished (finished ones are dropped lazily)
        over = self.queue_depth(now_ns) + frames - bound
        if over <= 0:
            return now_ns
        q = self._finish_times
        if not q:  # a unit larger than the whole queue goes once the wire is idle (and overflows it)
            return now_ns
        return q[min(over, len(q)) - 1]

    def deliver(self, frame: bytes, time_ns: int) -> None:
        """The transmitter puts `frame` on this end at `time_ns` (normally now)."""
        link = self.link
        c = self.counters
        c.frames_in += 1
        n = len(frame)
        c.bytes_in += n
        if self.taps:
            for tap in self.taps:
                tap(frame, time_ns)
        q = self._finish_times
        while q and q[0] <= time_ns:  # queue_depth(), inlined: this runs for every frame
            q.popleft()
        if len(q) >= link.queue_frames:
            c.queue_drops += 1
            link.dropped(self, "queue_full", n)
            return
        start = self._busy_until if self._busy_until > time_ns else time_ns
        finish = start + (n * 8 * NS_PER_S) // link.bandwidth_bps
        self._busy_until = finish
        q.append(finish)
        arrival = finish + link.latency_ns
        faults = self.faults
        if faults.loss or faults.duplicate or faults.reorder or faults.corrupt:
            rng = link.rng
            if faults.loss and rng.random() < faults.loss:
                c.lost += 1
                link.dropped(self, "loss", n)
                return
            copies = 1
            if faults.duplicate and rng.random() < faults.duplicate:
                c.duplicated += 1
                copies = 2
            if faults.reorder and rng.random() < faults.reorder:
                c.reordered += 1
                arrival += faults.reorder_delay_ns
            if faults.corrupt and rng.random() < faults.corrupt and n:
                c.corrupted += 1
                frame = _corrupt(frame, faults.corrupt_bytes, rng)
            for _ in range(copies):
                self._hand_over(frame, arrival)
            return
        sink = self.sink
        if sink is None:
            c.no_sink += 1
            return
        c.delivered += 1
        c.bytes_delivered += n
        sink.deliver(frame, arrival)

    # -- paravirtual pass-through (passthrough.py) ------------------------------------
    def passthrough_blocker(self, unit) -> str | None:
        """None when a large send may cross this end uncut; else why its frames must be real."""
        if self.taps:
            return BLOCK_CAPTURE
        if self.faults.any:
            return BLOCK_FAULT
        check = getattr(self.sink, "passthrough_blocker", None)
        if check is None:
            return BLOCK_SINK
        now = self.link.scheduler.now_ns
        if not self.fits(unit.frame_lengths(), [now] * unit.count):
            return BLOCK_QUEUE
        return check(unit)

    def fits(self, lengths: list[int], times: list[int]) -> bool:
        """Would frames of `lengths` put on this end at `times` all find room in the queue?"""
        bound = self.link.queue_frames
        q = self._finish_times
        if len(q) + len(lengths) <= bound:
            return True  # even if nothing finishes meanwhile
        bw = self.link.bandwidth_bps
        pending = list(q)
        busy = self._busy_until
        head = 0
        for n, t in zip(lengths, times):
            while head < len(pending) and pending[head] <= t:
                head += 1
            if len(pending) - head >= bound:
                return False
            start = busy if busy > t else t
            busy = start + (n * 8 * NS_PER_S) // bw
            pending.append(busy)
        return True

    def deliver_large(self, unit, lengths: list[int], times: list[int]) -> None:
        """The segments of a large send, put on this end at `times`: serialized exactly as their frames
        would be (same finish times, same queue bound); handed on as one unit."""
        if self.taps or self.faults.any or not hasattr(self.sink, "deliver_large"):
            self._deliver_frames(unit, times)  # something appeared on the path since the sender looked
            return
        link = self.link
        bound = link.queue_frames
        bw = link.bandwidth_bps
        latency = link.latency_ns
        q = self._finish_times
        busy = busy0 = self._busy_until
        t = times[0]
        if t == times[-1]:  # the sender's hop: every segment is put on the wire at once (the usual case)
            _forget_finished(q, t)  # queue_depth(), once: nothing else finishes before they are all queued
            if len(q) + len(lengths) > bound:  # a frame would be dropped here: real frames meet the queue
                self._deliver_frames(unit, times)
                return
            durations = [(n * 8 * NS_PER_S) // bw for n in lengths]  # serialization, back to back
            start = busy if busy > t else t
            finishes = list(accumulate(durations, initial=start))
            del finishes[0]
            q.extend(finishes)
            self._busy_until = finishes[-1]
            arrivals = [f + latency for f in finishes] if latency else finishes
            self._count_large(lengths)
            self.sink.deliver_large(unit, lengths, arrivals)
            return
        _forget_finished(q, t)  # queue_depth() at the first segment's time
        if len(q) + len(lengths) <= bound:  # no frame can be dropped: serialize them all in one pass
            finishes = _serialize(busy, times, [(n * 8 * NS_PER_S) // bw for n in lengths])
            last = times[-1]
            # what the per-frame loop leaves: every finish time still ahead of the last arrival
            # (the queue is sorted: frames finish in the order they were queued)
            q.extend(finishes)
            _forget_finished(q, last)
            self._busy_until = finishes[-1]
            arrivals = [f + latency for f in finishes] if latency else finishes
            self._count_large(lengths)
            self.sink.deliver_large(unit, lengths, arrivals)
            return
        arrivals = []
        for n, t in zip(lengths, times):
            while q and q[0] <= t:  # queue_depth(), as deliver() does for each frame
                q.popleft()
            if len(q) >= bound:  # a frame would be dropped here: undo, and let real frames meet the queue
                for _ in arrivals:
                    q.pop()
                self._busy_until = busy0
                self._deliver_frames(unit, times)
                return
            start = busy if busy > t else t
            busy = start + (n * 8 * NS_PER_S) // bw
            q.append(busy)
            arrivals.append(busy + latency)
        self._busy_until = busy
        self._count_large(lengths)
        self.sink.deliver_large(unit, lengths, arrivals)

    def _count_large(self, lengths: list[int]) -> None:
        c = self.counters
        total = sum(lengths)
        c.frames_in += len(lengths)
        c.bytes_in += total
        c.delivered += len(lengths)
        c.bytes_delivered += total

    def _deliver_frames(self, unit, times: list[int]) -> None:
        """Fallback: cut the unit into real frames (real checksums) and send each as usual."""
        for i, t in enumerate(times):
            self.deliver(unit.frame(i, True), t)

    def _hand_over(self, frame: bytes, arrival: int) -> None:
        sink = self.sink
        if sink is None:
            self.counters.no_sink += 1
            return
        self.counters.delivered += 1
        self.counters.bytes_delivered += len(frame)
        sink.deliver(frame, arrival)


def _forget_finished(q: deque[int], now_ns: int) -> None:
    """Drop the finish times at or before `now_ns` from the front of a (sorted) queue: what
    `while q and q[0] <= now_ns: q.popleft()` does, without a call per frame."""
    gone = bisect_right(q, now_ns)
    if gone == len(q):
        q.clear()
    elif gone == len(q) - 1:
        last = q[-1]
        q.clear()
        q.append(last)
    elif gone:
        rest = list(islice(q, gone, None))
        q.clear()
        q.extend(rest)


def _serialize(busy: int, times: list[int], durations: list[int]) -> list[int]:
    """When each frame finishes serializing: frame i starts at max(its arrival times[i], the end of
    the one before) and takes durations[i]; the wire is busy until `busy` before the first.

    The recurrence f[i] = max(f[i-1], t[i]) + d[i] unrolled (max-plus): with D[i] the sum of
    d[0..i], f[i] = D[i] + max(busy, max over j <= i of (t[j] - D[j-1])) - computed with
    C-level map/accumulate instead of a Python step per frame."""
    total = list(accumulate(durations))
    slack = accumulate(map(sub, times, [0, *total[:-1]]), max, initial=busy)
    next(slack)  # the initial value itself
    return list(map(add, total, slack))


def _corrupt(frame: bytes, count: int, rng: random.Random) -> bytes:
    """Flip random bits in `count` random bytes (a byte may be hit twice)."""
    data = bytearray(frame)
    for _ in range(count):
        pos = rng.randrange(len(data))
        data[pos] ^= rng.randrange(1, 256)
    return bytes(data)


class Link:
    """A cable between two ports.  ``ends[0]`` carries a->b, ``ends[1]`` b->a."""

    def __init__(self, scheduler: Scheduler, *, name: str = "link0", bandwidth_bps: int = 1_000_000_000,
                 latency_ns: int = 50_000, queue_frames: int = 256, rng: random.Random | None = None,
                 faults: FaultConfig | None = None, bus=None) -> None:
        if bandwidth_bps <= 0:
            raise ValueError("bandwidth_bps must be positive")
        if latency_ns < 0 or queue_frames < 1:
            raise ValueError("latency_ns must be >= 0 and queue_frames >= 1")
        self.scheduler = scheduler
        self.name = name
        self.bandwidth_bps = bandwidth_bps
        self.latency_ns = latency_ns
        self.queue_frames = queue_frames
        self.rng = rng if rng is not None else random.Random(0)
        self.bus = bus
        self.ends = (LinkEnd(self, 0), LinkEnd(self, 1))
        if faults is not None:
            self.set_faults(faults)

    def set_faults(self, faults: FaultConfig, direction: int | None = None) -> None:
        """Set faults on one direction (0: a->b, 1: b->a) or, with None, on both (copied)."""
        faults.validate()
        if direction is None:
            for end in self.ends:
                end.faults = FaultConfig(faults.loss, faults.duplicate, faults.reorder, faults.corrupt,
                                         faults.reorder_delay_ns, faults.corrupt_bytes)
        else:
            self.ends[direction].faults = faults

    def connect(self, a: FramePort, b: FramePort) -> None:
        """Plug `a` into side 0 and `b` into side 1."""
        a.attach(self.ends[0])
        self.ends[0].sink = b
        b.attach(self.ends[1])
        self.ends[1].sink = a

    def dropped(self, end: LinkEnd, reason: str, length: int) -> None:
        bus = self.bus
        if bus is not None and bus.subscribers:
            bus.publish(FrameDropped(host=self.name, layer="link", reason=reason, where=end.name, length=length))

    def add_tap(self, tap: Tap) -> None:
        for end in self.ends:
            end.taps.append(tap)

    def remove_tap(self, tap: Tap) -> None:
        for end in self.ends:
            if tap in end.taps:
                end.taps.remove(tap)

    def __repr__(self) -> str:
        return f"<Link {self.name} {self.bandwidth_bps}bps {self.latency_ns}ns>"

