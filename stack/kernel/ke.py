"""Kernel core services: threads as coroutines, dispatcher objects, waits,
DPCs, timers, spin locks, IRQL and work items.

An emulated system thread is a generator.  Where the C code would block it
yields the result of a wait call:

    status = yield KeWaitForSingleObject(event, Executive, KernelMode, False, None)

The kernel parks the thread on the object; `KeSetEvent` (or a timeout) puts a
*resume* event on the scheduler, so switching threads is itself a step the
debugger can stop at.  Nested routines that wait are called with `yield from`.
"""

from __future__ import annotations

import inspect
from collections import deque
from dataclasses import dataclass, field
from types import GeneratorType
from typing import Any, Callable, Generator, Iterable

from . import bugcheck as bc
from .events import DpcQueued, DpcRun, ThreadCreated, ThreadExited, ThreadSwitched, TimerFired, WorkItemRun
from .irql import DISPATCH_LEVEL, HIGH_LEVEL, PASSIVE_LEVEL
from .cpu import DPC_LEVEL as DPC_LEVEL_EVENT, set_level
from .kernel import SYSTEM_PID, Kernel
from .layouts import LAYOUTS
from .ntstatus import STATUS_SUCCESS, STATUS_TIMEOUT, STATUS_WAIT_0
from .pool import NonPagedPoolNx
from .kstack import FRAME_SIZE, INITIAL_FRAME, allocate_stack, free_stack, stack_local
from .symbols import _current, _new_frame, Frame, current_kernel, has_current_kernel, symbol_of

# KWAIT_REASON / KPROCESSOR_MODE values the samples pass
Executive = 0
UserRequest = 6
WrQueue = 15  # a system worker thread waiting for the next work item (KeRemovePriQueue)
KernelMode = 0
UserMode = 1
NotificationEvent = 0
SynchronizationEvent = 1
WaitAll = 0
WaitAny = 1

THREAD_TAG = "Thre"
KERNEL_STACK_PAGES = 6

THREAD_STATES = ("Initialized", "Ready", "Running", "Standby", "Terminated", "Waiting")


# --- dispatcher objects -----------------------------------------------------------

# DISPATCHER_HEADER.Type (KOBJECTS) and Size (in 4-byte units) of what a thread can wait on
EventNotificationObject = 0
EventSynchronizationObject = 1
SemaphoreObject = 5
ThreadObject = 6
TimerNotificationObject = 8
TimerSynchronizationObject = 9
DpcObject = 0x13
KWAIT_BLOCK_OFFSET = 0x140  # KTHREAD.WaitBlock[4] (each 0x30, WaitListEntry first) on Windows 10 x64
KWAIT_BLOCK_SIZE = 0x30


class DispatcherObject:
    """Anything a thread can wait on.

    Placed at an address (`place`: in its owner's pool block, an image's globals or a
    stack), its DISPATCHER_HEADER is in emulated memory: written when somebody reads the
    page (AddressSpace.register_struct), so signalling and waiting stay list operations
    and `dt nt!_KEVENT addr` still reads Type, SignalState and the WaitListHead links
    (empty: both point at the head; else the waiting threads' KWAIT_BLOCKs)."""

    struct_size = 0x18
    layout = "_KEVENT"

    def __init__(self) -> None:
        self.signaled = False
        self.waiters: deque[WaitBlock] = deque()
        self.stale_waiters = 0  # wait blocks in `waiters` already satisfied elsewhere (timeout, other object)
        self.address = 0
        self.placed_in: Kernel | None = None
        self.stack_frame: tuple[list, int, Any] | None = None  # (frames, index, frame) of a stack local

    def place(self, k: Kernel, address: int) -> None:
        """The object now lives at `address` (what KeInitialize* does to a C structure)."""
        self.unplace()
        self.stack_frame = None
        self.address = address
        self.placed_in = k
        k.mem.register_struct(self)

    def unplace(self) -> None:
        """Its memory is going away (ExFreePool of the block that holds it)."""
        if self.placed_in is not None:
            self.placed_in.mem.unregister_struct(self)
            self.placed_in = None

    def header_type(self) -> int:
        return EventNotificationObject

    def signal_state(self) -> int:
        return int(self.signaled)

    def body(self) -> bytes:
        """The bytes after the header (KSEMAPHORE.Limit, KTIMER's due time ...)."""
        return b""

    def flush(self) -> None:
        k = self.placed_in
        if k is None:
            return
        frame = self.stack_frame
        if frame is not None:  # a local: only while the routine that declared it is still on the stack
            frames, index, entry = frame
            if len(frames) <= index or frames[index] is not entry:
                return
        k.mem.write(self.address, self._image())

    def place_on_stack(self, k: Kernel) -> None:
        """`KEVENT event;` in a routine: the object is a local in the running routine's frame.

        Written when its stack page is read, while that frame is live; one registration per
        stack slot, so a routine that initialises a local event on every call costs nothing more."""
        self.address = stack_local()
        self.placed_in = k
        self.stack_frame = (k.frames, len(k.frames) - 1, k.frames[-1]) if k.frames else None
        slots = k.extensions.setdefault("stack_objects", {})
        old = slots.get(self.address)
        if old is not None and old is not self:
            k.mem.unregister_struct(old)
        slots[self.address] = self
        k.mem.register_struct(self)

    def _image(self) -> bytes:
        head = self.address + 8
        links = [wb.thread.address + KWAIT_BLOCK_OFFSET + KWAIT_BLOCK_SIZE * wb.objects.index(self)
                 for wb in self.waiters if not wb.done and self in wb.objects]
        flink, blink = (links[0], links[-1]) if links else (head, head)
        header = (bytes((self.header_type(), 0, self.struct_size // 4, 0))
                  + (self.signal_state() & 0xFFFFFFFF).to_bytes(4, "little")
                  + flink.to_bytes(8, "little") + blink.to_bytes(8, "little"))
        return header + self.body()

    def _satisfy(self) -> None:
        """Called when a wait on this object is satisfied (auto-reset objects reset)."""

    def _signal(self, k: Kernel) -> None:
        """Wake waiters according to the object's kind."""
        while self.waiters and self.signaled:
            wb = self.waiters.popleft()
            if wb.done:
                if self.stale_waiters:
                    self.stale_waiters -= 1
                continue
            wb.complete(k, STATUS_WAIT_0 + wb.objects.index(self), self)
            self._satisfy()


class KEVENT(DispatcherObject):
    def __init__(self, event_type: int = NotificationEvent, state: bool = False) -> None:
        super().__init__()
        self.event_type = event_type
        self.signaled = state

    def _satisfy(self) -> None:
        if self.event_type == SynchronizationEvent:
            self.signaled = False

    def header_type(self) -> int:
        return EventSynchronizationObject if self.event_type == SynchronizationEvent else EventNotificationObject


class KTIMER(DispatcherObject):
    struct_size = 0x40
    layout = "_KTIMER"

    def header_type(self) -> int:
        return TimerSynchronizationObject if self.timer_type == SynchronizationEvent else TimerNotificationObject

    def body(self) -> bytes:
        due = self.due_ns // 100 if self.due_ns is not None and self._scheduled is not None else 0
        return (due.to_bytes(8, "little") + bytes(0x10) + (self.dpc.address if self.dpc else 0).to_bytes(8, "little")
                + bytes(4) + (self.period_ns // 1_000_000).to_bytes(4, "little"))

    def __init__(self) -> None:
        super().__init__()
        self.due_ns: int | None = None
        self.period_ns = 0
        self.dpc: KDPC | None = None
        self._scheduled = None
        self.timer_type = NotificationEvent


class KSEMAPHORE(DispatcherObject):
    struct_size = 0x20
    layout = "_KSEMAPHORE"

    def header_type(self) -> int:
        return SemaphoreObject

    def signal_state(self) -> int:
        return self.count

    def body(self) -> bytes:
        return (self.limit & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4)

    def __init__(self, count: int, limit: int) -> None:
        super().__init__()
        self.count = count
        self.limit = limit
        self.signaled = count > 0

    def _satisfy(self) -> None:
        self.count -= 1
        self.signaled = self.count > 0


@dataclass(slots=True)
class WaitBlock:
    thread: "KThread"
    objects: list[DispatcherObject]
    timeout_event: Any = None
    done: bool = False

    def complete(self, k: Kernel, status: int, satisfied_by: "DispatcherObject | None" = None) -> None:
        self.done = True
        if self.timeout_event is not None:
            self.timeout_event.cancel()
        # O(1): a satisfied block stays in its other objects' queues, marked done, and is
        # skipped when reached; a queue is compacted once most of it is such blocks.
        for obj in self.objects:
            if obj is satisfied_by:  # it already took this block off its queue
                continue
            waiters = obj.waiters
            if waiters and waiters[0] is self:
                waiters.popleft()
                continue
            obj.stale_waiters += 1
            if obj.stale_waiters > 32 and obj.stale_waiters * 2 > len(waiters):
                obj.waiters = deque(wb for wb in waiters if not wb.done)
                obj.stale_waiters = 0
        t = self.thread
        t.wait = None
        t.state = "Ready"
        k.scheduler.call_soon(k, _resume_thread, k, t, status, label=f"resume {t.name}")


@dataclass(slots=True)
class WaitRequest:
    """What a thread yields to block: the objects, and a timeout in ns (None = forever)."""

    objects: list[DispatcherObject]
    timeout_ns: int | None
    reason: int = Executive


# --- threads ------------------------------------------------------------------------

# A system thread's first frames, outermost first; a system worker thread running an
# IoQueueWorkItem routine adds the executive worker loop and the I/O manager's call into the driver
# (published worker-thread stacks read ... driver!Routine <- nt!IopProcessWorkItem <-
# nt!ExpWorkerThread <- nt!PspSystemThreadStartup <- nt!KiStartSystemThread).
SYSTEM_THREAD_FRAMES = ("nt!KiStartSystemThread", "nt!PspSystemThreadStartup")
WORK_ITEM_FRAMES = SYSTEM_THREAD_FRAMES + ("nt!ExpWorkerThread", "nt!IopProcessWorkItem")


class KThread(DispatcherObject):
    """An ETHREAD at a kernel address whose body is a generator."""

    struct_size = 0x500

    def __init__(self, k: Kernel, name: str, start_symbol: str, body: Generator | None, address: int = 0,
                 stack: tuple[int, int, list[int]] | None = None) -> None:
        super().__init__()
        self.kernel = k
        self.name = name
        self.start_symbol = start_symbol
        self.body = body
        # flush() writes all of it; PsCreateSystemThread passes a block it has already checked
        self.address = address or k.pool.allocate(NonPagedPoolNx, self.struct_size, THREAD_TAG)
        k._next_tid += 4
        self.tid = k._next_tid
        self.pid = SYSTEM_PID
        self.state = "Initialized"
        self.wait: WaitBlock | None = None
        self.wait_reason = Executive
        self.frames: list[Frame] = []
        self.irql = PASSIVE_LEVEL
        self.exit_status: int | None = None
        self.priority = 8
        self.irps: list[Any] = []  # IRPs queued to this thread (for !thread)
        self.context_switches = 0
        self.program: Any = None  # the lab user-mode program this thread runs (stack.usermode.socket)
        stack = stack if stack is not None else allocate_stack(k, "KernelStack")
        if stack is None:
            raise MemoryError("no physical memory for a kernel stack")  # boot-time threads only
        self.stack_base, self.stack_limit, self.stack_pfns = stack
        self.created_ns = k.now_ns
        self.wait_started_ns = 0
        self.start_is_kroutine = False
        self.start_frames = SYSTEM_THREAD_FRAMES  # what the thread's first frames are, outermost first
        # What !thread calls the Win32 Start Address: the routine the thread was created to run (for
        # a system worker thread that is nt!ExpWorkerThread, not the work item it is running).
        self.win32_start_symbol = start_symbol
        k.threads.append(self)
        k.register_object(self)
        self.deleted = False
        self.work: tuple | None = None  # a system worker thread: (body, symbol, is a kroutine) handed next
        self.work_event: KEVENT | None = None  # ... and the event it waits on for it (WrQueue)

    def flush(self) -> None:
        k = self.kernel
        values = {
            "InitialStack": self.stack_base, "StackLimit": self.stack_limit, "StackBase": self.stack_base,
            "KernelStack": self.kernel_stack, "Running": int(self.state == "Running"),
            "State": THREAD_STATES.index(self.state) if self.state in THREAD_STATES else 0,
            "WaitReason": self.wait_reason, "Priority": self.priority,
            "StartAddress": k.symbol_address(self.start_symbol),
            "Cid": SYSTEM_PID.to_bytes(8, "little") + self.tid.to_bytes(8, "little"),
            "Header": bytes((6, 0, 0x1A, 0)) + (1 if self.state == "Terminated" else 0).to_bytes(4, "little"),
        }
        k.mem.write(self.address, LAYOUTS["_ETHREAD"].pack(values))

    @property
    def kernel_stack(self) -> int:
        """KTHREAD.KernelStack: the rsp saved when the thread last switched out (its innermost
        Child-SP; a waiting thread's is under nt!KiSwapContext, as `!thread` shows)."""
        if self.state == "Terminated":
            return 0
        depth = len(self.frames) + (3 if self.state == "Waiting" else 0)
        return self.stack_base - INITIAL_FRAME - FRAME_SIZE * depth

    @property
    def terminated(self) -> bool:
        return self.state == "Terminated"


def create_idle_thread(k: Kernel) -> KThread:
    t = KThread(k, "Idle", "nt!KiIdleLoop", None)
    t.state = "Running"
    t.tid = 0
    t.pid = 0
    return t


def PsCreateSystemThread(start_routine: Callable[..., Any], context: Any = None,
                         name: str | None = None) -> KThread | None:
    """Create a system thread whose body is `start_routine(context)` (a generator function, usually)."""
    k = current_kernel()
    symbol = symbol_of(start_routine)
    # The ETHREAD comes from nonpaged pool: without it the call fails with
    # STATUS_INSUFFICIENT_RESOURCES and no thread (None here), and the start routine never runs.
    address = k.allocate_pool("thread", NonPagedPoolNx, KThread.struct_size, THREAD_TAG, owner=k.caller_symbol())
    if not address:
        return None
    stack = allocate_stack(k, "KernelStack")  # and a kernel stack: no memory for it fails the same way
    if stack is None:
        k.pool.free(address, THREAD_TAG)
        return None
    if inspect.isgeneratorfunction(start_routine):
        body = start_routine(context)
    else:  # a plain routine still runs on the new thread, not in its creator
        body = _call_on_thread(start_routine, context)
    t = KThread(k, name or symbol, symbol, body, address, stack)
    t.start_is_kroutine = _is_kroutine(start_routine)
    t.state = "Ready"
    if k.bus.subscribers:
        k.publish(ThreadCreated, thread=t.address, name=t.name)
    k.scheduler.call_soon(k, _resume_thread, k, t, STATUS_SUCCESS, label=f"start {t.name}")
    return t


def _is_kroutine(fn: Any) -> bool:
    """A @kroutine wrapper pushes its own frame when it runs."""
    return hasattr(fn, "__wrapped__") and hasattr(fn, "symbol")


_BARE_FRAMES: dict[tuple[str, ...], tuple[Frame, ...]] = {}


def _bare_frames(symbols: tuple[str, ...]) -> tuple[Frame, ...]:
    """Frames without arguments for a thread's start routines: immutable, so made once per list of
    symbols and shared by every thread that starts that way."""
    if symbols.__class__ is not tuple:
        symbols = tuple(symbols)
    frames = _BARE_FRAMES.get(symbols)
    if frames is None:
        frames = _BARE_FRAMES[symbols] = tuple(Frame(symbol) for symbol in symbols)
    return frames


def _call_on_thread(start_routine: Callable[..., Any], context: Any) -> Generator:
    result = start_routine(context)
    if inspect.isgenerator(result):
        result = yield from result
    return result


def _resume_thread(k: Kernel, t: KThread, status: int) -> None:
    """Run thread `t` until it blocks or exits (one scheduler event)."""
    if t.terminated or t.body is None:
        return
    k.current_thread = t
    k.frames = t.frames
    k.irql = t.irql
    t.state = "Running"
    t.context_switches += 1
    if k.bus.subscribers:
        k.publish(ThreadSwitched, thread=t.address, name=t.name, wait_status=status)
    # A generator that has not started yet only accepts None (inspect.getgeneratorstate's
    # GEN_CREATED, read from the generator's own flags).
    body = t.body
    first = not body.gi_suspended and not body.gi_running and body.gi_frame is not None
    value: Any = None if first else status
    if first and not t.frames:
        t.frames.extend(_bare_frames(t.start_frames))
        if not t.start_is_kroutine:  # a @kroutine start routine pushes its own frame
            t.frames.append(Frame(t.start_symbol))
    while True:
        try:
            request = t.body.send(value)
        except StopIteration as stop:
            _thread_exit(k, t, stop.value if isinstance(stop.value, int) else STATUS_SUCCESS)
            return
        if not isinstance(request, WaitRequest):
            raise TypeError(f"thread {t.name} yielded {request!r}; yield a KeWaitFor... call")
        t.irql = k.irql
        immediate = _try_satisfy(request)
        if immediate is not None:
            value = immediate
            continue
        if request.timeout_ns == 0:
            value = STATUS_TIMEOUT
            continue
        _park(k, t, request)
        return


def _thread_exit(k: Kernel, t: KThread, status: int) -> None:
    t.state = "Terminated"
    t.exit_status = status
    t.frames.clear()
    if t.stack_pfns:  # the stack goes back when the thread is gone (the ETHREAD stays for !thread)
        free_stack(k, t.stack_limit, t.stack_pfns)
        t.stack_pfns = []
    t.signaled = True
    if k.bus.subscribers:
        k.publish(ThreadExited, thread=t.address, name=t.name, status=status)
    t._signal(k)
    PspThreadDelete(k, t)


def PspThreadDelete(k: Kernel, t: KThread) -> None:
    """Free everything a thread owns once it has exited: its ETHREAD pool block, its kernel
    stack and its place in the thread list.  The one place thread teardown happens, so
    whatever a thread grows (a real stack, a TEB) is freed here too.

    The Python object stays signalled for anyone still waiting on it (Windows keeps the
    ETHREAD while references remain; nothing here reads its memory after exit)."""
    if t.deleted:
        return
    t.deleted = True
    t.body = None
    t.irps.clear()
    k.threads.remove(t)
    k.unregister_object(t)
    k.stack_region.release(t.stack_limit, KERNEL_STACK_PAGES)
    k.pool.free(t.address, THREAD_TAG)


def _try_satisfy(request: WaitRequest) -> int | None:
    for i, obj in enumerate(request.objects):
        if obj.signaled:
            obj._satisfy()
            return STATUS_WAIT_0 + i
    return None


def _park(k: Kernel, t: KThread, request: WaitRequest) -> None:
    wb = WaitBlock(t, list(request.objects))
    t.wait = wb
    t.state = "Waiting"
    t.wait_reason = request.reason
    t.wait_started_ns = k.scheduler.now_ns  # (not the Kernel.now_ns property: every wait parks here)
    for obj in request.objects:
        obj.waiters.append(wb)
    if request.timeout_ns is not None:
        wb.timeout_event = k.scheduler.call_later(request.timeout_ns, k, _wait_timeout, k, wb,
                                                  label=f"timeout {t.name}")


def _wait_timeout(k: Kernel, wb: WaitBlock) -> None:
    if not wb.done:
        wb.timeout_event = None
        wb.complete(k, STATUS_TIMEOUT)
        # complete() queued the resume; run it now as part of this event
        # would merge two steps, so leave it queued.


def _timeout_ns(timeout: int | None) -> int | None:
    """Windows timeouts are 100-ns units, negative = relative.  Absolute ones are relative to boot here."""
    if timeout is None:
        return None
    if timeout <= 0:
        return -timeout * 100
    k = current_kernel()
    return max(0, timeout * 100 - k.now_ns)


def _check_wait_allowed(obj: Any, timeout: int | None) -> None:
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    if timeout == 0:
        if k.irql > DISPATCH_LEVEL:
            k.bugcheck(bc.IRQL_NOT_LESS_OR_EQUAL, getattr(obj, "address", 0), k.irql, 0,
                       k.symbol_address(k.caller_symbol()))
        return
    if k.irql >= DISPATCH_LEVEL or k.current_thread is None:
        k.bugcheck(bc.IRQL_NOT_LESS_OR_EQUAL, getattr(obj, "address", 0), k.irql, 0,
                   k.symbol_address(k.caller_symbol()))


def KeWaitForSingleObject(obj: DispatcherObject, WaitReason: int = Executive, WaitMode: int = KernelMode,
                          Alertable: bool = False, Timeout: int | None = None) -> WaitRequest:
    """Build the wait a thread yields; bug-checks at once if waiting is not allowed here."""
    k = _current[-1]
    if Timeout == 0 or k.irql >= DISPATCH_LEVEL or k.current_thread is None:
        _check_wait_allowed(obj, Timeout)  # (the checks that can fail, and the bug checks)
    return WaitRequest([obj], None if Timeout is None else _timeout_ns(Timeout), WaitReason)


def KeWaitForMultipleObjects(objects: Iterable[DispatcherObject], WaitType: int = WaitAny,
                             WaitReason: int = Executive, WaitMode: int = KernelMode,
                             Alertable: bool = False, Timeout: int | None = None) -> WaitRequest:
    objs = list(objects)
    if WaitType != WaitAny:
        raise NotImplementedError("only WaitAny is emulated")
    _check_wait_allowed(objs[0] if objs else None, Timeout)
    return WaitRequest(objs, _timeout_ns(Timeout), WaitReason)


def KeDelayExecutionThread(WaitMode: int = KernelMode, Alertable: bool = False, Interval: int = 0) -> WaitRequest:
    _check_wait_allowed(None, Interval if Interval else None)
    return WaitRequest([], _timeout_ns(Interval))


def relative_ms(ms: float) -> int:
    """A relative Windows timeout (negative 100-ns units) of `ms` milliseconds."""
    return -int(ms * 10_000)


def KeInitializeEvent(event: KEVENT, event_type: int, state: bool) -> None:
    """Initialise an event; one that is not placed in a structure is the caller's local, on its stack."""
    if event.placed_in is None and not event.address and has_current_kernel():
        k = current_kernel()
        if k.frames and k.current_thread is not None:
            event.place_on_stack(k)
    event.event_type = event_type
    event.signaled = bool(state)
    event.waiters.clear()
    event.stale_waiters = 0


def KeSetEvent(event: KEVENT, increment: int = 0, wait: bool = False) -> int:
    """Signal the event; returns the previous state (as Windows does)."""
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    previous = int(event.signaled)
    event.signaled = True
    if event.waiters:  # nobody waiting (the usual completion before the wait): nothing to wake
        event._signal(k)
    return previous


def KeResetEvent(event: KEVENT) -> int:
    previous = int(event.signaled)
    event.signaled = False
    return previous


def KeClearEvent(event: KEVENT) -> None:
    event.signaled = False


def KeReadStateEvent(event: KEVENT) -> int:
    return int(event.signaled)


def KeInitializeSemaphore(sem: KSEMAPHORE, count: int, limit: int) -> None:
    sem.count, sem.limit, sem.signaled = count, limit, count > 0


def KeReleaseSemaphore(sem: KSEMAPHORE, increment: int = 0, adjustment: int = 1, wait: bool = False) -> int:
    k = current_kernel()
    previous = sem.count
    sem.count = min(sem.limit, sem.count + adjustment)
    sem.signaled = sem.count > 0
    sem._signal(k)
    return previous


def KeBugCheckEx(BugCheckCode: int, P1: int = 0, P2: int = 0, P3: int = 0, P4: int = 0) -> None:
    """Stop the machine with this code and parameters (the scheduler halts; nothing returns)."""
    current_kernel().bugcheck(BugCheckCode, P1, P2, P3, P4)


# --- IRQL and spin locks ---------------------------------------------------------------

def KeGetCurrentIrql() -> int:
    return current_kernel().irql


def KeRaiseIrql(new_irql: int) -> int:
    k = current_kernel()
    old = k.irql
    if new_irql < old or new_irql > HIGH_LEVEL:
        k.bugcheck(bc.IRQL_NOT_GREATER_OR_EQUAL, old, new_irql, 0, 0)
    k.irql = new_irql
    return old


def KeRaiseIrqlToDpcLevel() -> int:
    return KeRaiseIrql(DISPATCH_LEVEL)


def KeLowerIrql(new_irql: int) -> None:
    k = current_kernel()
    if new_irql > k.irql:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.C4_LOWER_IRQL_INVALID, k.irql, new_irql, 0)
    k.irql = new_irql


class KSPIN_LOCK:
    """A ULONG_PTR: 1 while held (x64 keeps the owner bit in bit 0), written when read."""

    struct_size = 8

    def __init__(self) -> None:
        self.owned = False
        self.address = 0
        self.placed_in: Kernel | None = None

    place = DispatcherObject.place
    unplace = DispatcherObject.unplace

    def flush(self) -> None:
        if self.placed_in is not None:
            self.placed_in.mem.write(self.address, int(self.owned).to_bytes(8, "little"))


def KeInitializeSpinLock(lock: KSPIN_LOCK) -> None:
    lock.owned = False


def KeAcquireSpinLock(lock: KSPIN_LOCK) -> int:
    """Raise to DISPATCH_LEVEL and take the lock; returns the old IRQL."""
    k = current_kernel()
    old = k.irql
    if old > DISPATCH_LEVEL:
        k.bugcheck(bc.IRQL_NOT_LESS_OR_EQUAL, lock.address, old, 0, k.symbol_address(k.caller_symbol()))
    k.irql = DISPATCH_LEVEL
    _take(k, lock)
    return old


def KeAcquireSpinLockAtDpcLevel(lock: KSPIN_LOCK) -> None:
    k = current_kernel()
    if k.irql < DISPATCH_LEVEL:
        k.bugcheck(bc.IRQL_NOT_GREATER_OR_EQUAL, k.irql, DISPATCH_LEVEL, 0, 0)
    _take(k, lock)


def _take(k: Kernel, lock: KSPIN_LOCK) -> None:
    if lock.owned:  # one processor: spinning on our own lock would hang forever
        k.bugcheck(bc.SPIN_LOCK_ALREADY_OWNED, lock.address, 0, 0, 0)
    lock.owned = True
    k.held_locks.append(lock)


def KeReleaseSpinLock(lock: KSPIN_LOCK, old_irql: int) -> None:
    k = current_kernel()
    _drop(k, lock)
    KeLowerIrql(old_irql)


def KeReleaseSpinLockFromDpcLevel(lock: KSPIN_LOCK) -> None:
    _drop(current_kernel(), lock)


def _drop(k: Kernel, lock: KSPIN_LOCK) -> None:
    lock.owned = False
    if lock in k.held_locks:
        k.held_locks.remove(lock)


# --- DPCs -----------------------------------------------------------------------------

class KDPC:
    struct_size = 0x40

    def __init__(self, routine: Callable[..., Any] | None = None, context: Any = None) -> None:
        self.target = 0  # the processor it is queued on
        self.routine = routine
        self.context = context
        self.queued = False
        self.address = 0
        self.placed_in: Kernel | None = None
        self.args: tuple[Any, Any] = (None, None)
        self._named: Any = None  # the routine `_symbol` and `_label` were worked out for
        self._symbol = ""
        self._label = ""

    place = DispatcherObject.place
    unplace = DispatcherObject.unplace

    def flush(self) -> None:
        """_KDPC: Type DpcObject, Importance Medium, the routine and its context and arguments."""
        k = self.placed_in
        if k is None:
            return
        routine = k.symbol_address(self.routine_symbol()) if self.routine is not None else 0
        words = [routine, _qword(self.context), _qword(self.args[0]), _qword(self.args[1]), 0]
        k.mem.write(self.address, bytes((DpcObject, 1, 0, 0)) + bytes(0x14)
                    + b"".join(w.to_bytes(8, "little") for w in words))

    def routine_symbol(self) -> str:
        """`module!Routine` of the DPC routine (remembered: a DPC is queued once per interrupt)."""
        routine = self.routine
        if routine is not self._named:
            self._symbol = symbol_of(routine)
            self._label = f"DPC {self._symbol}"
            self._named = routine
        return self._symbol


def _qword(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFFFFFFFFFFFFFFFF
    return (getattr(value, "address", 0) or 0) & 0xFFFFFFFFFFFFFFFF


def KeInitializeDpc(dpc: KDPC, routine: Callable[..., Any], context: Any) -> None:
    dpc.routine = routine
    dpc.context = context
    dpc.queued = False


def KeInsertQueueDpc(dpc: KDPC, arg1: Any = None, arg2: Any = None) -> bool:
    """Queue the DPC to run at DISPATCH_LEVEL as its own scheduler event."""
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    if dpc.queued:
        return False
    dpc.queued = True
    dpc.args = (arg1, arg2)
    dpc.target = k.cpu  # a DPC runs on the processor that queued it
    if dpc.routine is not dpc._named:  # dpc.routine_symbol() works the label out once per routine
        dpc.routine_symbol()
    if k.bus.subscribers:
        k.publish(DpcQueued, dpc=dpc.address, routine=dpc._symbol)
    k.scheduler.call_soon(k, _run_dpc, k, dpc, label=dpc._label)
    return True


def KeRemoveQueueDpc(dpc: KDPC) -> bool:
    was = dpc.queued
    dpc.queued = False
    return was


_DPC_BASE_FRAMES = (Frame("nt!KiIdleLoop"), Frame("nt!KiRetireDpcList"))


def _run_dpc(k: Kernel, dpc: KDPC) -> None:
    if not dpc.queued:
        return  # removed from the queue before it ran
    dpc.queued = False
    k.irql = DISPATCH_LEVEL
    k.frames.extend(_DPC_BASE_FRAMES)
    if k.cpu_model is not None:
        k.charge("dpc")
    if k.bus.subscribers:
        k.publish(DpcRun, dpc=dpc.address, routine=dpc.routine_symbol())
    dpc.routine(dpc, dpc.context, *dpc.args)
    if k.irql != DISPATCH_LEVEL:
        k.bugcheck(bc.IRQL_UNEXPECTED_VALUE, (k.irql << 16) | DISPATCH_LEVEL, k.symbol_address(dpc.routine_symbol()), 0, 0)
    if k.held_locks:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, 0x32, k.irql, k.held_locks[0].address, 0)


# --- timers ---------------------------------------------------------------------------

def KeInitializeTimer(timer: KTIMER) -> None:
    KeCancelTimer(timer)
    timer.signaled = False


def KeSetTimer(timer: KTIMER, due_time: int, dpc: KDPC | None = None) -> bool:
    return KeSetTimerEx(timer, due_time, 0, dpc)


def KeSetTimerEx(timer: KTIMER, due_time: int, period_ms: int = 0, dpc: KDPC | None = None) -> bool:
    """Arm the timer (`due_time` in Windows 100-ns units, negative = relative)."""
    k = current_kernel()
    was_set = KeCancelTimer(timer)
    delay = _timeout_ns(due_time) or 0
    timer.signaled = False
    timer.dpc = dpc
    timer.period_ns = period_ms * 1_000_000
    timer.due_ns = k.now_ns + delay
    timer._scheduled = k.scheduler.call_at(timer.due_ns, k, _timer_expired, k, timer, label="timer")
    return was_set


def KeCancelTimer(timer: KTIMER) -> bool:
    ev = timer._scheduled
    timer._scheduled = None
    if ev is not None and not ev.cancelled:
        ev.cancel()
        return True
    return False


def _timer_expired(k: Kernel, timer: KTIMER) -> None:
    timer._scheduled = None
    k.irql = DISPATCH_LEVEL
    if k.bus.subscribers:
        k.publish(TimerFired, timer=timer.address)
    timer.signaled = True
    timer._signal(k)
    if timer.period_ns:
        timer.due_ns = k.now_ns + timer.period_ns
        timer._scheduled = k.scheduler.call_at(timer.due_ns, k, _timer_expired, k, timer, label="timer")
    if timer.dpc is not None:
        KeInsertQueueDpc(timer.dpc)


# --- work items -----------------------------------------------------------------------

@dataclass(slots=True)
class IO_WORKITEM:
    device: Any
    address: int = 0
    queued: bool = False
    routine: Any = None
    context: Any = None


DelayedWorkQueue = 1
CriticalWorkQueue = 0


def IoAllocateWorkItem(device: Any) -> IO_WORKITEM | None:
    """An IO_WORKITEM from nonpaged pool; None (NULL) when there is none to be had."""
    k = current_kernel()
    address = k.allocate_pool("workitem", NonPagedPoolNx, 0x58, "IoWk", owner=k.caller_symbol())
    if not address:
        return None
    item = IO_WORKITEM(device)
    item.address = address
    return item


def IoFreeWorkItem(item: IO_WORKITEM) -> None:
    k = current_kernel()
    k.pool.free(item.address, "IoWk")


def IoQueueWorkItem(item: IO_WORKITEM, routine: Callable[..., Any], queue_type: int, context: Any) -> None:
    """Run `routine(DeviceObject, Context)` at PASSIVE_LEVEL on a system worker thread."""
    k = current_kernel()
    item.queued = True
    item.routine = routine
    item.context = context
    k.scheduler.call_soon(k, _run_work_item, k, item, label=f"work {symbol_of(routine)}")


def _run_work_item(k: Kernel, item: IO_WORKITEM) -> None:
    """A system worker thread takes the item off its queue: ExpWorkerThread hands it to
    IopProcessWorkItem, which calls the driver's routine, so `k` there reads as on Windows."""
    item.queued = False
    frames = k.frames
    frames.extend(_WORK_ITEM_BASE_FRAMES)
    frames.append(_new_frame(Frame, ("nt!IopProcessWorkItem", (item.address,))))  # IopProcessWorkItem(IoWorkItem)
    if k.bus.subscribers:
        k.publish(WorkItemRun, routine=symbol_of(item.routine))
    result = item.routine(item.device, item.context)
    if result.__class__ is GeneratorType:  # a work routine that waits gets a thread of its own
        _start_worker(k, symbol_of(item.routine), _is_kroutine(item.routine), result, item.address)
    elif k.irql != PASSIVE_LEVEL:
        _worker_returned_at_bad_irql(k, symbol_of(item.routine), item.address)


def _worker_returned_at_bad_irql(k: Kernel, symbol: str, item_address: int) -> None:
    """ExpWorkerThread's check after every work item: back at PASSIVE_LEVEL, or bug check 0xE1.
    The executive work routine of an IO_WORKITEM is nt!IopProcessWorkItem, its parameter and its
    WORK_QUEUE_ITEM (the first field) both the IO_WORKITEM."""
    k.bugcheck(bc.WORKER_THREAD_RETURNED_AT_BAD_IRQL, k.symbol_address("nt!IopProcessWorkItem"), k.irql,
               item_address, item_address, detail=f"work routine {symbol} returned at IRQL {k.irql}")


_WORK_ITEM_BASE_FRAMES = _bare_frames(WORK_ITEM_FRAMES[:-1])  # ExpWorkerThread's, below IopProcessWorkItem

WORKER_RETRY_NS = 1_000_000
# Idle system worker threads kept for the next work item that waits; a worker that finishes with
# this many already idle exits, as Windows' dynamic worker threads do once there is no more work.
EXP_IDLE_WORKERS_MAX = 16
IDLE_WORKER_NAME = "worker nt!ExpWorkerThread"


class ExpWorkerPool:
    """The system worker threads of one kernel that are waiting for work (most recently idle last:
    a KQUEUE releases its waiting threads last in, first out)."""

    __slots__ = ("idle", "created", "reused")

    def __init__(self) -> None:
        self.idle: list[KThread] = []
        self.created = 0
        self.reused = 0

    @staticmethod
    def of(k: Kernel) -> "ExpWorkerPool":
        pool = k.extensions.get("exp_workers")
        if pool is None:
            pool = k.extensions["exp_workers"] = ExpWorkerPool()
        return pool


def _start_worker(k: Kernel, symbol: str, kroutine_start: bool, body: Generator, item_address: int = 0) -> None:
    """Hand a work routine that waits to a system worker thread: an idle one if there is one (it
    waits in ExpWorkerThread on its queue event, WrQueue), else a new one.  Windows never fails to
    run a queued work item: it waits for a worker.  So when there is no pool for a new thread
    block, the work item waits (retried a millisecond later) instead of failing.  The same goes
    for the memory of its kernel stack."""
    workers = ExpWorkerPool.of(k)
    if workers.idle:
        t = workers.idle.pop()
        workers.reused += 1
        t.name = f"worker {symbol}"
        t.work = (body, symbol, kroutine_start, item_address)
        KeSetEvent(t.work_event)  # KeInsertQueue: the worker leaves its wait and runs the item
        return
    try:
        address = k.pool.allocate(NonPagedPoolNx, KThread.struct_size, THREAD_TAG, owner="nt!ExpWorkerThread")
    except MemoryError:
        address = 0
    stack = allocate_stack(k, "KernelStack") if address else None
    if stack is None:
        if address:
            k.pool.free(address, THREAD_TAG)
        k.verifier.failed(k, "thread", THREAD_TAG)
        k.scheduler.call_later(WORKER_RETRY_NS, k, _start_worker, k, symbol, kroutine_start, body, item_address,
                               label=f"work {symbol} waits for a worker")
        return
    t = KThread(k, f"worker {symbol}", "nt!ExpWorkerThread", None, address, stack)
    t.work = (body, symbol, kroutine_start, item_address)
    t.work_event = KEVENT(SynchronizationEvent, False)
    t.body = _exp_worker_thread(k, t, workers)
    t.win32_start_symbol = "nt!ExpWorkerThread"
    t.state = "Ready"
    workers.created += 1
    k.scheduler.call_soon(k, _resume_thread, k, t, STATUS_SUCCESS, label=f"start {t.name}")


_WORKER_ITEM_FRAME = _bare_frames(("nt!IopProcessWorkItem",))[0]


def _exp_worker_thread(k: Kernel, t: KThread, workers: ExpWorkerPool) -> Generator:
    """nt!ExpWorkerThread: run the work item handed over (under nt!IopProcessWorkItem, as `k`
    shows on Windows), then wait on the queue for the next one - or exit when enough are idle."""
    while True:
        (body, symbol, kroutine_start, item_address), t.work = t.work, None
        depth = len(t.frames)
        t.frames.append(_WORKER_ITEM_FRAME)
        if not kroutine_start:  # a @kroutine work routine pushes its own frame
            t.frames.append(Frame(symbol))
        yield from body
        del t.frames[depth:]
        if k.irql != PASSIVE_LEVEL:  # the next item would inherit it: ExpWorkerThread bug-checks 0xE1
            _worker_returned_at_bad_irql(k, symbol, item_address)
        if len(workers.idle) >= EXP_IDLE_WORKERS_MAX:
            return STATUS_SUCCESS
        t.name = IDLE_WORKER_NAME  # not the last item's: !thread / !runaway show a waiting worker
        workers.idle.append(t)
        yield KeWaitForSingleObject(t.work_event, WrQueue, KernelMode, False, None)


# --- processor levels of the events above (stack.kernel.cpu) ------------------------------

set_level(_resume_thread, lambda args: (args[1].priority, 0, args[1]))
set_level(_run_dpc, lambda args: (DPC_LEVEL_EVENT, args[1].target, None))
set_level(_timer_expired, DPC_LEVEL_EVENT)
set_level(_wait_timeout, DPC_LEVEL_EVENT)
set_level(_run_work_item, 12)  # a system worker thread (DelayedWorkQueue priority 12)
