"""Driver Verifier's low resources simulation, and the count of every allocation that failed.

Windows' Driver Verifier (flag 0x4, `verifier /volatile /faults Probability PoolTags
Applications DelayMins`) fails random instances of a driver's allocations so that its
out-of-memory paths run: ExAllocatePoolWithXxx, IoAllocateIrp, IoAllocateMdl,
IoAllocateWorkItem, MmAllocatePagesForMdl and friends.  The probability is in units of
1/10,000 (600 = the default 6 %), the tags restrict it to allocations with those pool tags,
the delay lets the system start first.

Here each kernel has one `LowResourcesSimulation`.  An allocation routine asks
`fail(cls, tag)` before it allocates; the answer comes from a generator seeded from the
world seed and the host name, so a run with the same seed and commands fails the same
allocations.  Classes are the allocation sites the lab has: pool, nbl (NET_BUFFER_LIST and
NET_BUFFER), irp, mdl, thread, workitem and page.  Real exhaustion (the emulated memory is
used up) is counted through `failed(cls, ...)` as well, so `!verifier` shows every allocation
that returned NULL / STATUS_INSUFFICIENT_RESOURCES and why.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from contextlib import contextmanager
from typing import Iterator
from dataclasses import dataclass

from .pool import tag_from_str, tag_to_str

FAULT_CLASSES = ("pool", "nbl", "irp", "mdl", "thread", "workitem", "page")
DEFAULT_PROBABILITY = 600  # 6 %, the documented default of `verifier /faults`
FAULT_LOG_SIZE = 64  # the records `!verifier 4` can show


# The routine that returned NULL for each class (what `!verifier 4` shows at the top of a record).
CLASS_ROUTINES = {"pool": "nt!ExAllocatePoolWithTag", "nbl": "ndis!NdisAllocateNetBufferList",
                  "irp": "nt!IoAllocateIrp", "mdl": "nt!IoAllocateMdl", "thread": "nt!PsCreateSystemThread",
                  "workitem": "nt!IoAllocateWorkItem", "page": "nt!MmAllocatePagesForMdl"}


@dataclass(slots=True, frozen=True)
class FaultRecord:
    """One failed allocation: when, which kind, who asked (and on which thread), and whether the
    verifier failed it on purpose or memory had really run out."""

    time_ns: int
    cls: str
    caller: str
    tag: str
    injected: bool
    thread: int = 0
    index: int = 0  # position in the whole history (the log keeps the newest FAULT_LOG_SIZE)


class LowResourcesSimulation:
    """Fault injection settings and the failure counters of one kernel."""

    def __init__(self, seed: int | str, host: str) -> None:
        self._rng = random.Random(f"{seed}:{host}:verifier")  # apart from the kernel's own generator
        self.active = False  # checked first on every allocation: off costs one attribute read
        self.probability = 0
        self.tags: frozenset[int] = frozenset()
        self.images: frozenset[str] = frozenset()  # module names; empty = every caller
        self.classes: frozenset[str] = frozenset(FAULT_CLASSES)
        self.start_ns = 0
        self.attempts: Counter[str] = Counter()  # allocations seen while active, by class
        self.injected: Counter[str] = Counter()
        self.exhausted: Counter[str] = Counter()  # real failures: the emulated memory ran out
        self.injected_by_tag: Counter[str] = Counter()
        self.log: deque[FaultRecord] = deque(maxlen=FAULT_LOG_SIZE)
        self.records = 0

    def configure(self, probability: int, tags: list[str] | None = None, images: list[str] | None = None,
                  classes: list[str] | None = None, start_ns: int = 0) -> None:
        """`verifier /volatile /faults Probability PoolTags Applications DelayMins` (start_ns absolute)."""
        if not 0 <= probability <= 10_000:
            raise ValueError(f"probability {probability} is not between 0 and 10000")
        unknown = [c for c in classes or () if c not in FAULT_CLASSES]
        if unknown:
            raise ValueError(f"unknown allocation class {unknown[0]!r} (one of {', '.join(FAULT_CLASSES)})")
        self.probability = probability
        self.tags = frozenset(tag_from_str(t) for t in tags or ())
        self.images = frozenset(i.lower().removesuffix(".sys") for i in images or ())
        self.classes = frozenset(classes) if classes else frozenset(FAULT_CLASSES)
        self.start_ns = start_ns
        self.active = probability > 0

    def disable(self) -> None:
        self.active = False
        self.probability = 0

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """No injection inside: the I/O manager's must-succeed allocations (the IRP that closes
        a handle comes from a reserve, IopAllocateIrpMustSucceed) are never failed on purpose."""
        active, self.active = self.active, False
        try:
            yield
        finally:
            self.active = active

    def fail(self, k, cls: str, tag: str | int | None = None) -> bool:
        """Whether this allocation is to fail (and, if so, it is counted and logged)."""
        if not self.active or cls not in self.classes:
            return False
        if k.now_ns < self.start_ns:
            return False
        tag_val = tag_from_str(tag) if tag is not None else None
        if self.tags and tag_val not in self.tags:
            return False
        caller = k.caller_symbol()
        if self.images and caller.partition("!")[0].lower() not in self.images:
            return False
        self.attempts[cls] += 1
        if self._rng.randrange(10_000) >= self.probability:
            return False
        self.injected[cls] += 1
        tag_name = tag_to_str(tag_val) if tag_val is not None else ""
        if tag_name:
            self.injected_by_tag[tag_name] += 1
        self._record(k, cls, caller, tag_name, True)
        return True

    def _record(self, k, cls: str, caller: str, tag: str, injected: bool) -> None:
        thread = k.current_thread
        self.log.append(FaultRecord(k.now_ns, cls, caller, tag, injected, thread.address if thread else 0,
                                    self.records))
        self.records += 1

    def failed(self, k, cls: str, tag: str | int | None = None) -> None:
        """Record a real failure (memory exhausted) of an allocation of class `cls`."""
        self.exhausted[cls] += 1
        tag_name = tag_to_str(tag_from_str(tag)) if tag is not None else ""
        self._record(k, cls, k.caller_symbol(), tag_name, False)

    @property
    def total_failures(self) -> int:
        return sum(self.injected.values()) + sum(self.exhausted.values())
