"""The event bus: every hand-off in the machine is a typed, immutable event.

Publishing is guarded by the caller (`if bus.subscribers:`) so that an event
nobody watches is never even constructed.  Subscribers run synchronously on
the machine's thread; the debugger's subscriber may block there to stop the
machine between two hand-offs with the whole logical call stack intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all events.  `seq` and `time_ns` are filled in by the bus."""

    kind: ClassVar[str] = "event"
    host: str
    seq: int = 0
    time_ns: int = 0
    depth: int = 0  # logical call depth at the hand-off (for `p` and `gu`)

    def describe(self) -> str:
        return self.kind


# --- kernel executive ------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class RoutineEntered(Event):
    kind: ClassVar[str] = "call"
    symbol: str
    address: int = 0

    def describe(self) -> str:
        return f"call {self.symbol}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutineReturned(Event):
    kind: ClassVar[str] = "ret"
    symbol: str
    result: object = None

    def describe(self) -> str:
        return f"ret  {self.symbol}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IrpAllocated(Event):
    kind: ClassVar[str] = "irp.alloc"
    irp: int
    stack_count: int

    def describe(self) -> str:
        return f"IoAllocateIrp {self.irp:x} ({self.stack_count} stacks)"


@dataclass(frozen=True, slots=True, kw_only=True)
class IrpDispatched(Event):
    kind: ClassVar[str] = "irp.dispatch"
    irp: int
    major: int
    minor: int
    device: int
    driver: str

    def describe(self) -> str:
        from .irp import major_name
        return f"IoCallDriver {self.irp:x} {major_name(self.major)} -> {self.driver}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IrpPended(Event):
    kind: ClassVar[str] = "irp.pend"
    irp: int
    driver: str

    def describe(self) -> str:
        return f"STATUS_PENDING {self.irp:x} by {self.driver}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IrpCompleted(Event):
    kind: ClassVar[str] = "irp.complete"
    irp: int
    status: int
    information: int

    def describe(self) -> str:
        from .ntstatus import status_name
        return f"IoCompleteRequest {self.irp:x} {status_name(self.status)} info={self.information:#x}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IrpCompletionRoutine(Event):
    kind: ClassVar[str] = "irp.completion"
    irp: int
    routine: str
    result: int

    def describe(self) -> str:
        from .ntstatus import status_name
        return f"completion {self.routine} for {self.irp:x} -> {status_name(self.result)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IrpCancelled(Event):
    kind: ClassVar[str] = "irp.cancel"
    irp: int

    def describe(self) -> str:
        return f"IoCancelIrp {self.irp:x}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IrpFreed(Event):
    kind: ClassVar[str] = "irp.free"
    irp: int

    def describe(self) -> str:
        return f"IoFreeIrp {self.irp:x}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MdlBuilt(Event):
    kind: ClassVar[str] = "mdl.build"
    mdl: int
    va: int
    length: int
    how: str

    def describe(self) -> str:
        return f"{self.how} mdl {self.mdl:x} va {self.va:x} len {self.length:#x}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MdlFreed(Event):
    kind: ClassVar[str] = "mdl.free"
    mdl: int

    def describe(self) -> str:
        return f"IoFreeMdl {self.mdl:x}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolAllocated(Event):
    kind: ClassVar[str] = "pool.alloc"
    address: int
    size: int
    tag: str
    pool_type: str

    def describe(self) -> str:
        return f"ExAllocatePoolWithTag {self.pool_type} {self.size:#x} '{self.tag}' -> {self.address:x}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolFreed(Event):
    kind: ClassVar[str] = "pool.free"
    address: int
    tag: str

    def describe(self) -> str:
        return f"ExFreePoolWithTag {self.address:x} '{self.tag}'"


@dataclass(frozen=True, slots=True, kw_only=True)
class DpcQueued(Event):
    kind: ClassVar[str] = "dpc.queue"
    dpc: int
    routine: str

    def describe(self) -> str:
        return f"KeInsertQueueDpc {self.routine}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DpcRun(Event):
    kind: ClassVar[str] = "dpc.run"
    dpc: int
    routine: str

    def describe(self) -> str:
        return f"DPC {self.routine}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextSwitch(Event):
    """A processor switched threads (ETW's CSwitch): only with a CPU model (stack.kernel.cpu)."""

    kind: ClassVar[str] = "cpu.cswitch"
    processor: int
    old_thread: int
    old_name: str
    new_thread: int
    new_name: str
    reason: str  # why the old thread left: Wait or QuantumEnd

    def describe(self) -> str:
        return f"CSwitch cpu {self.processor}: {self.old_name} -> {self.new_name} ({self.reason})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DpcTime(Event):
    """A DPC (or timer expiry) ran for duration_ns on a processor (ETW's DPC event)."""

    kind: ClassVar[str] = "cpu.dpc"
    processor: int
    routine: str
    start_ns: int
    duration_ns: int

    def describe(self) -> str:
        return f"DPC time cpu {self.processor}: {self.routine} {self.duration_ns / 1000:.3f} us"


@dataclass(frozen=True, slots=True, kw_only=True)
class IsrTime(Event):
    """An interrupt service routine ran for duration_ns (ETW's ISR event)."""

    kind: ClassVar[str] = "cpu.isr"
    processor: int
    routine: str
    start_ns: int
    duration_ns: int

    def describe(self) -> str:
        return f"ISR time cpu {self.processor}: {self.routine} {self.duration_ns / 1000:.3f} us"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadSwitched(Event):
    kind: ClassVar[str] = "thread.switch"
    thread: int
    name: str
    wait_status: int = 0

    def describe(self) -> str:
        return f"switch to thread {self.thread:x} ({self.name})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadCreated(Event):
    kind: ClassVar[str] = "thread.create"
    thread: int
    name: str

    def describe(self) -> str:
        return f"PsCreateSystemThread {self.thread:x} ({self.name})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadExited(Event):
    kind: ClassVar[str] = "thread.exit"
    thread: int
    name: str
    status: int

    def describe(self) -> str:
        return f"thread {self.thread:x} ({self.name}) exited"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Event):
    kind: ClassVar[str] = "timer"
    timer: int

    def describe(self) -> str:
        return f"timer {self.timer:x} expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkItemRun(Event):
    kind: ClassVar[str] = "workitem"
    routine: str

    def describe(self) -> str:
        return f"work item {self.routine}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WppMessage(Event):
    kind: ClassVar[str] = "wpp"
    provider: str
    flag: str
    level: int
    function: str
    text: str

    def describe(self) -> str:
        return f"[{self.provider}]{self.function}: {self.text}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DebugPrint(Event):
    kind: ClassVar[str] = "dbgprint"
    text: str

    def describe(self) -> str:
        return f"DbgPrint {self.text.rstrip()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class BugChecked(Event):
    kind: ClassVar[str] = "bugcheck"
    code: int
    params: tuple[int, int, int, int]

    def describe(self) -> str:
        p = " ".join(f"{x:016x}" for x in self.params)
        return f"*** BUGCHECK {self.code:08x} ({p})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverLoaded(Event):
    kind: ClassVar[str] = "driver.load"
    driver: str
    status: int

    def describe(self) -> str:
        return f"driver {self.driver} loaded"


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverUnloaded(Event):
    kind: ClassVar[str] = "driver.unload"
    driver: str

    def describe(self) -> str:
        return f"driver {self.driver} unloaded"


Subscriber = Callable[[Event], None]


@dataclass(slots=True)
class EventBus:
    """One bus per world.  `subscribers` is a plain list so the emptiness test is cheap."""

    clock: Callable[[], int]
    subscribers: list[Subscriber] = field(default_factory=list)
    seq: int = 0

    def subscribe(self, fn: Subscriber, *, first: bool = False) -> Callable[[], None]:
        """Call `fn` with every event published from now on; returns the unsubscribe function.

        `first=True` puts `fn` ahead of the subscribers already there: a view that must show an
        event before another subscriber (the debugger's) blocks the machine at that very event."""
        if first:
            self.subscribers.insert(0, fn)
        else:
            self.subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self.subscribers:
                self.subscribers.remove(fn)

        return unsubscribe

    def publish(self, event: Event) -> Event:
        """Stamp the event with its sequence number and time, then hand it to each subscriber."""
        self.seq += 1
        object.__setattr__(event, "seq", self.seq)
        object.__setattr__(event, "time_ns", self.clock())
        for fn in tuple(self.subscribers):
            fn(event)
        return event
