"""IRPs and the I/O manager's calls on them (IoCallDriver, IoCompleteRequest ...).

Each `Irp` lives at a nonpaged-pool address with its stack locations right
after it (IRP Size = 0xd0 + StackCount * 0x48), and is written through to
emulated memory for `dt _IRP`/`db`.  The rules are the real ones: completion
routines run from the lowest location upward and stop at
STATUS_MORE_PROCESSING_REQUIRED; PendingReturned propagates; the verifier
bug-checks double completion, running out of stack locations, completing with
STATUS_PENDING and calling down above DISPATCH_LEVEL.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from . import bugcheck as bc
from .events import (IrpAllocated, IrpCancelled, IrpCompleted, IrpCompletionRoutine, IrpDispatched, IrpFreed,
                     IrpPended)
from .irql import DISPATCH_LEVEL
from .ke import KeSetEvent
from .kernel import Kernel
from .layouts import LAYOUTS
from .ntstatus import NT_SUCCESS, STATUS_CANCELLED, STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING, STATUS_SUCCESS
from .pool import NonPagedPoolNx
from .symbols import Frame, _current, _new_frame, current_kernel, symbol_of

IO_TYPE_IRP = 6
IRP_HEADER_SIZE = 0xD0
IO_STACK_LOCATION_SIZE = 0x48
IRP_TAG = "Irp "

IRP_MJ_CREATE = 0x00
IRP_MJ_CREATE_NAMED_PIPE = 0x01
IRP_MJ_CLOSE = 0x02
IRP_MJ_READ = 0x03
IRP_MJ_WRITE = 0x04
IRP_MJ_QUERY_INFORMATION = 0x05
IRP_MJ_SET_INFORMATION = 0x06
IRP_MJ_FLUSH_BUFFERS = 0x09
IRP_MJ_FILE_SYSTEM_CONTROL = 0x0D
IRP_MJ_DEVICE_CONTROL = 0x0E
IRP_MJ_INTERNAL_DEVICE_CONTROL = 0x0F
IRP_MJ_SHUTDOWN = 0x10
IRP_MJ_CLEANUP = 0x12
IRP_MJ_POWER = 0x16
IRP_MJ_SYSTEM_CONTROL = 0x17
IRP_MJ_PNP = 0x1B
IRP_MJ_MAXIMUM_FUNCTION = 0x1B

IRP_MJ_NAMES = {
    0x00: "IRP_MJ_CREATE", 0x01: "IRP_MJ_CREATE_NAMED_PIPE", 0x02: "IRP_MJ_CLOSE", 0x03: "IRP_MJ_READ",
    0x04: "IRP_MJ_WRITE", 0x05: "IRP_MJ_QUERY_INFORMATION", 0x06: "IRP_MJ_SET_INFORMATION",
    0x07: "IRP_MJ_QUERY_EA", 0x08: "IRP_MJ_SET_EA", 0x09: "IRP_MJ_FLUSH_BUFFERS",
    0x0A: "IRP_MJ_QUERY_VOLUME_INFORMATION", 0x0B: "IRP_MJ_SET_VOLUME_INFORMATION",
    0x0C: "IRP_MJ_DIRECTORY_CONTROL", 0x0D: "IRP_MJ_FILE_SYSTEM_CONTROL", 0x0E: "IRP_MJ_DEVICE_CONTROL",
    0x0F: "IRP_MJ_INTERNAL_DEVICE_CONTROL", 0x10: "IRP_MJ_SHUTDOWN", 0x11: "IRP_MJ_LOCK_CONTROL",
    0x12: "IRP_MJ_CLEANUP", 0x13: "IRP_MJ_CREATE_MAILSLOT", 0x14: "IRP_MJ_QUERY_SECURITY",
    0x15: "IRP_MJ_SET_SECURITY", 0x16: "IRP_MJ_POWER", 0x17: "IRP_MJ_SYSTEM_CONTROL",
    0x18: "IRP_MJ_DEVICE_CHANGE", 0x19: "IRP_MJ_QUERY_QUOTA", 0x1A: "IRP_MJ_SET_QUOTA", 0x1B: "IRP_MJ_PNP",
}

# Minor functions for read/write
IRP_MN_NORMAL = 0x00
IRP_MN_DPC = 0x01
IRP_MN_MDL = 0x02
IRP_MN_MDL_DPC = 0x03
IRP_MN_COMPLETE = 0x04
IRP_MN_COMPLETE_MDL = 0x06
IRP_MN_COMPLETE_MDL_DPC = 0x07
IRP_MN_COMPRESSED = 0x08
IRP_MN_RW_NAMES = {0: "IRP_MN_NORMAL", 1: "IRP_MN_DPC", 2: "IRP_MN_MDL", 3: "IRP_MN_MDL_DPC",
                   4: "IRP_MN_COMPLETE", 6: "IRP_MN_COMPLETE_MDL", 7: "IRP_MN_COMPLETE_MDL_DPC",
                   8: "IRP_MN_COMPRESSED"}

# IRP flags
IRP_NOCACHE = 0x1
IRP_PAGING_IO = 0x2
IRP_SYNCHRONOUS_API = 0x4
IRP_ASSOCIATED_IRP = 0x8
IRP_BUFFERED_IO = 0x10
IRP_DEALLOCATE_BUFFER = 0x20
IRP_INPUT_OPERATION = 0x40

# Stack location Control byte
SL_PENDING_RETURNED = 0x01
SL_ERROR_RETURNED = 0x02
SL_INVOKE_ON_CANCEL = 0x20
SL_INVOKE_ON_SUCCESS = 0x40
SL_INVOKE_ON_ERROR = 0x80


def major_name(major: int) -> str:
    return IRP_MJ_NAMES.get(major, f"IRP_MJ_{major:02x}")


def minor_name(major: int, minor: int) -> str:
    if major in (IRP_MJ_READ, IRP_MJ_WRITE):
        return IRP_MN_RW_NAMES.get(minor, "N/A")
    return "N/A"


class IoStackLocation:
    __slots__ = ("irp", "index", "major", "minor", "flags", "control", "parameters", "device_object",
                 "file_object", "completion_routine", "context")

    def __init__(self, irp: "Irp", index: int) -> None:
        self.irp = irp
        self.index = index  # 1-based, as CurrentLocation counts
        # clear(), inlined: a new IRP builds one of these per stack location
        self.major = self.minor = self.flags = self.control = 0
        self.parameters = self.device_object = self.file_object = None
        self.completion_routine = self.context = None

    def clear(self) -> None:
        self.major = 0
        self.minor = 0
        self.flags = 0
        self.control = 0
        self.parameters: Any = None  # a layer-specific parameter object (or up to 4 ints)
        self.device_object: Any = None
        self.file_object: Any = None
        self.completion_routine: Callable[..., int] | None = None
        self.context: Any = None

    def zero(self) -> None:
        """ZeroIrpStackLocation (WRK io.h), what IoCompleteRequest does to each location it unwinds:
        MinorFunction, Flags, Control, Parameters.Others.Argument1..4 and FileObject are cleared;
        MajorFunction, DeviceObject, CompletionRoutine and Context stay, so `!irp` inside a
        completion routine still shows who ran the request and what was called."""
        self.minor = 0
        self.flags = 0
        self.control = 0
        self.parameters = None
        self.file_object = None

    @property
    def address(self) -> int:
        return self.irp.address + IRP_HEADER_SIZE + (self.index - 1) * IO_STACK_LOCATION_SIZE

    def arguments(self) -> tuple[int, int, int, int]:
        """Parameters.Others.Argument1..4 as `!irp` prints them."""
        p = self.parameters
        if p is None:
            return (0, 0, 0, 0)
        if hasattr(p, "arguments"):
            args = tuple(p.arguments())
        elif isinstance(p, (tuple, list)):
            args = tuple(p)
        else:
            args = ()
        vals = [_addr(a) for a in args[:4]]
        return tuple(vals + [0] * (4 - len(vals)))  # type: ignore[return-value]

    def pack(self, k: Kernel) -> bytes:
        a = self.arguments()
        params = b"".join(x.to_bytes(8, "little") for x in a)
        return LAYOUTS["_IO_STACK_LOCATION"].pack({
            "MajorFunction": self.major, "MinorFunction": self.minor, "Flags": self.flags,
            "Control": self.control, "Parameters": params, "DeviceObject": _addr(self.device_object),
            "FileObject": _addr(self.file_object),
            "CompletionRoutine": k.symbol_address(symbol_of(self.completion_routine)) if self.completion_routine else 0,
            "Context": _addr(self.context),
        })


def _addr(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value & 0xFFFFFFFFFFFFFFFF
    return getattr(value, "address", 0) or 0


class IoStatusBlock:
    __slots__ = ("Status", "Information")

    def __init__(self) -> None:
        self.Status = STATUS_SUCCESS
        self.Information: Any = 0


# What each IRP history note says, formatted only when somebody reads `Irp.history`.
_NOTE_TEXT: dict[str, Callable[[Any], str]] = {
    "allocated": lambda owner: f"allocated by {owner}",
    "reused": lambda _: "IoReuseIrp",
    "dispatched": lambda a: f"dispatched {major_name(a[0])} to {a[1]}",
    "pended": lambda driver: f"pended by {driver}",
    "completed": lambda status: f"completed {status:#010x}",
    "text": lambda text: text,
}
IRP_HISTORY_LENGTH = 64


class Irp:
    """An I/O request packet at a kernel address."""

    def __init__(self, k: Kernel, address: int, stack_count: int) -> None:
        self.kernel = k
        self.address = address
        self.stack_count = stack_count
        self.struct_size = IRP_HEADER_SIZE + stack_count * IO_STACK_LOCATION_SIZE
        self.stack = [IoStackLocation(self, i) for i in range(1, stack_count + 1)]
        self.allocation_flags = 0
        self._reset_fields()  # the new stack locations start clear
        self.freed = False
        self.owner = ""  # routine that allocated it
        # (event seq, what, argument) for the IRP view: the text is made only when read (`history`)
        self.notes: deque[tuple[int, str, Any]] = deque(maxlen=IRP_HISTORY_LENGTH)
        # IoCompleteRequest's two frames for this IRP (and IoCallDriver's, with the device it
        # was last sent to): made on first use, shared by every completion of this object
        self.complete_frames: tuple[Frame, Frame] | None = None
        self.call_frame: Frame | None = None

    def _rebuild(self) -> None:
        """Make a freed IRP object the new IRP IoAllocateIrp hands out at the same pool block, with
        the same stack count: what __init__ would build (the pool block is zeroed again anyway),
        without building the objects again.  As the I/O manager's IRP lookaside lists keep the
        memory of freed IRPs for the next allocation."""
        iosb = self.IoStatus  # kept: the status block object is reset, not rebuilt
        iosb.Status = STATUS_SUCCESS
        iosb.Information = 0
        self._reset(iosb)
        self.allocation_flags = 0
        self.freed = False
        self.notes.clear()

    def _reset(self, iosb: "IoStatusBlock | None" = None) -> None:
        """IoReuseIrp's part: the fields as IoAllocateIrp left them, every stack location clear
        (with `iosb`, a cleared status block to keep rather than a new one)."""
        self._reset_fields(iosb)
        for loc in self.stack:
            loc.clear()

    def _reset_fields(self, iosb: "IoStatusBlock | None" = None) -> None:
        self.mdl_address: Any = None
        self.flags = 0
        self.system_buffer: Any = None
        self.IoStatus = IoStatusBlock() if iosb is None else iosb
        self.requestor_mode = 0
        self.pending_returned = False
        self.current_location = self.stack_count + 1
        self.cancel = False
        self.cancel_irql = 0
        self.user_iosb: Any = None
        self.user_event: Any = None
        self.cancel_routine: Callable[..., Any] | None = None
        self.user_buffer = 0
        self.thread: Any = None
        self.original_file_object: Any = None
        self.completed = False
        self.completing = False

    # -- stack locations -------------------------------------------------------
    @property
    def current_stack_location(self) -> IoStackLocation | None:
        i = self.current_location
        return self.stack[i - 1] if 1 <= i <= self.stack_count else None

    @property
    def next_stack_location(self) -> IoStackLocation | None:
        i = self.current_location - 1
        return self.stack[i - 1] if 1 <= i <= self.stack_count else None

    @property
    def active(self) -> bool:
        return not self.freed and not self.completed

    def flush(self) -> None:
        if self.freed:  # kept for reuse (IoFreeIrp): the block's bytes are pool's, not an IRP's
            return
        k = self.kernel
        cur = self.current_stack_location
        cur_addr = (self.address + IRP_HEADER_SIZE + (self.current_location - 1) * IO_STACK_LOCATION_SIZE)
        tail = LAYOUTS["_IRP_TAIL"].pack({
            "Thread": _addr(self.thread), "CurrentStackLocation": cur_addr if cur or self.current_location else 0,
            "OriginalFileObject": _addr(self.original_file_object),
        })
        status = self.IoStatus.Status & 0xFFFFFFFF
        iosb = status.to_bytes(8, "little") + (_addr(self.IoStatus.Information)).to_bytes(8, "little")
        header = LAYOUTS["_IRP"].pack({
            "Type": IO_TYPE_IRP, "Size": self.struct_size, "MdlAddress": _addr(self.mdl_address),
            "Flags": self.flags, "AssociatedIrp": _addr(self.system_buffer), "IoStatus": iosb,
            "RequestorMode": self.requestor_mode, "PendingReturned": int(self.pending_returned),
            "StackCount": self.stack_count, "CurrentLocation": self.current_location & 0xFF,
            "Cancel": int(self.cancel), "CancelIrql": self.cancel_irql, "AllocationFlags": self.allocation_flags,
            "UserIosb": _addr(self.user_iosb), "UserEvent": _addr(self.user_event),
            "CancelRoutine": k.symbol_address(symbol_of(self.cancel_routine)) if self.cancel_routine else 0,
            "UserBuffer": self.user_buffer, "Tail": tail,
        })
        k.mem.write(self.address, header + b"".join(loc.pack(k) for loc in self.stack))

    def note(self, what: str, argument: Any = None) -> None:
        """Remember what happened to the IRP: `what` is a key of _NOTE_TEXT, or any text."""
        if what not in _NOTE_TEXT:
            what, argument = "text", what
        self.notes.append((self.kernel.bus.seq, what, argument))

    @property
    def history(self) -> list[tuple[int, str]]:
        """(event seq, what happened), oldest first, at most the last IRP_HISTORY_LENGTH."""
        return [(seq, _NOTE_TEXT[what](argument)) for seq, what, argument in self.notes]

    def __repr__(self) -> str:
        return f"<Irp {self.address:x} {self.current_location}/{self.stack_count}>"


# --- allocation ---------------------------------------------------------------

def IoAllocateIrp(StackSize: int, ChargeQuota: bool = False) -> Irp | None:
    k = _current[-1]  # current_kernel(), inlined: the per-request path allocates several IRPs
    if StackSize < 1 or StackSize > 0x7F:
        return None
    size = IRP_HEADER_SIZE + StackSize * IO_STACK_LOCATION_SIZE
    if k.cpu_model is not None:
        k.charge("irp_alloc")
    frames = k.frames
    owner = frames[-1][0] if frames else "nt!KiIdleLoop"  # k.caller_symbol()
    verifier = k.verifier
    if verifier.active:
        address = k.allocate_pool("irp", NonPagedPoolNx, size, IRP_TAG, owner=owner)
    else:  # k.allocate_pool with no low resources simulation, inlined: several IRPs per request
        try:
            address = k.pool.allocate(NonPagedPoolNx, size, IRP_TAG, owner)
        except MemoryError:
            verifier.failed(k, "irp", IRP_TAG)
            address = 0
    if not address:
        return None  # NULL, as IoAllocateIrp returns when nonpaged pool is short
    # The IRP object freed last from this pool block, if any: with the same stack count it is
    # rebuilt in place and is still registered with memory (its flush skips while freed).  Not
    # while somebody listens (the debugger): then every IRP is an object of its own, so a driver
    # that frees or completes a stale pointer after its block came back still frees a freed IRP
    # and bug-checks (0xC2 BAD_POOL_CALLER, 0x44), as Driver Verifier's I/O verification makes Windows do.
    irp = k.irp_lookaside.pop(address, None)
    if irp is not None and irp.stack_count == StackSize and not k.bus.subscribers:
        irp._rebuild()
    else:
        if irp is not None:
            k.mem.unregister_struct(irp)
        irp = Irp(k, address, StackSize)
        k.mem.register_struct(irp)
    irp.owner = owner
    irp.allocation_flags = 0x1  # IRP_ALLOCATED_FIXED_SIZE-ish: came from IoAllocateIrp
    k.addr_objects[address] = irp  # k.register_object(irp), inlined
    k.irps[address] = irp
    if k.bus.subscribers:  # tested here too, so nobody listening costs no keyword arguments
        k.publish(IrpAllocated, irp=address, stack_count=StackSize)
    irp.notes.append((k.bus.seq, "allocated", owner))
    return irp


def IopAllocateIrpMustSucceed(StackSize: int) -> Irp | None:
    """The I/O manager's IRP for requests that cannot be allowed to fail (closing a handle,
    giving back an MDL read): when IoAllocateIrp fails it falls back to its reserve, which the
    verifier's low resources simulation never touches.  None only when memory is truly gone."""
    irp = IoAllocateIrp(StackSize)
    if irp is None:
        k = current_kernel()
        with k.verifier.suspended():
            irp = IoAllocateIrp(StackSize)
    return irp


def IoReuseIrp(Irp: Irp, Status: int) -> None:
    """Reinitialise an IRP for another request, keeping its allocation."""
    Irp._reset()
    Irp.IoStatus.Status = Status
    Irp.note("reused")


def IoFreeIrp(Irp: Irp) -> None:
    k = _current[-1]  # current_kernel(), inlined
    if Irp.freed:
        k.bugcheck(bc.BAD_POOL_CALLER, 0x07, 0, 0, Irp.address)
    if Irp.thread is not None and not Irp.completed:
        k.bugcheck(bc.DRIVER_VERIFIER_IOMANAGER_VIOLATION, bc.C9_FREE_IRP_WITH_THREAD, Irp.address, 0, 0)
    Irp.freed = True
    address = Irp.address
    k.addr_objects.pop(address, None)  # k.unregister_object(Irp), inlined
    del k.irps[address]
    k.pool.free(address, IRP_TAG)
    # Kept for the next IRP in this block (IoAllocateIrp), still registered with memory: a
    # block taken by anything else leaves it there, flushing nothing, until an IRP comes back.
    # What it points at goes (buffers, file objects, contexts), so the object kept for reuse keeps
    # no request's objects alive; its status, flags and numbers stay for anyone reading it late.
    Irp.mdl_address = Irp.system_buffer = Irp.user_iosb = Irp.user_event = None
    Irp.cancel_routine = Irp.thread = Irp.original_file_object = None
    iosb = Irp.IoStatus
    if iosb.Information is not None and iosb.Information.__class__ is not int:
        iosb.Information = 0
    for loc in Irp.stack:
        loc.parameters = loc.device_object = loc.file_object = loc.completion_routine = loc.context = None
    k.irp_lookaside[address] = Irp
    if k.bus.subscribers:
        k.publish(IrpFreed, irp=address)


def live_irps(k: Kernel) -> list[Irp]:
    return list(k.irps.values())


# --- stack location helpers ------------------------------------------------------

def IoGetCurrentIrpStackLocation(Irp: Irp) -> IoStackLocation:
    i = Irp.current_location  # Irp.current_stack_location, inlined
    if 1 <= i <= Irp.stack_count:
        return Irp.stack[i - 1]
    current_kernel().bugcheck(bc.NO_MORE_IRP_STACK_LOCATIONS, Irp.address, 0, 0, 0)
    raise AssertionError("unreachable")


def IoGetNextIrpStackLocation(Irp: Irp) -> IoStackLocation:
    i = Irp.current_location - 1  # Irp.next_stack_location, inlined
    if 1 <= i <= Irp.stack_count:
        return Irp.stack[i - 1]
    current_kernel().bugcheck(bc.NO_MORE_IRP_STACK_LOCATIONS, Irp.address, 0, 0, 0)
    raise AssertionError("unreachable")


def IoSetNextIrpStackLocation(Irp: Irp) -> None:
    Irp.current_location -= 1
    if Irp.current_location <= 0:
        current_kernel().bugcheck(bc.NO_MORE_IRP_STACK_LOCATIONS, Irp.address, 0, 0, 0)


def IoSkipCurrentIrpStackLocation(Irp: Irp) -> None:
    Irp.current_location += 1


def IoCopyCurrentIrpStackLocationToNext(Irp: Irp) -> None:
    cur = IoGetCurrentIrpStackLocation(Irp)
    nxt = IoGetNextIrpStackLocation(Irp)
    nxt.major, nxt.minor, nxt.flags = cur.major, cur.minor, cur.flags
    nxt.parameters, nxt.device_object, nxt.file_object = cur.parameters, cur.device_object, cur.file_object
    nxt.control = 0
    nxt.completion_routine = None
    nxt.context = None


def IoSetCompletionRoutine(Irp: Irp, CompletionRoutine: Callable[..., int] | None, Context: Any,
                           InvokeOnSuccess: bool = True, InvokeOnError: bool = True,
                           InvokeOnCancel: bool = True) -> None:
    """Put the routine in the *next* stack location: it runs when the lower driver completes."""
    i = Irp.current_location - 1  # IoGetNextIrpStackLocation, inlined
    loc = Irp.stack[i - 1] if 1 <= i <= Irp.stack_count else IoGetNextIrpStackLocation(Irp)
    loc.completion_routine = CompletionRoutine
    loc.context = Context
    loc.control = ((SL_INVOKE_ON_SUCCESS if InvokeOnSuccess else 0) | (SL_INVOKE_ON_ERROR if InvokeOnError else 0)
                   | (SL_INVOKE_ON_CANCEL if InvokeOnCancel else 0))


def IoMarkIrpPending(Irp: Irp) -> None:
    IoGetCurrentIrpStackLocation(Irp).control |= SL_PENDING_RETURNED


def IoSetCancelRoutine(Irp: Irp, CancelRoutine: Callable[..., Any] | None) -> Callable[..., Any] | None:
    old = Irp.cancel_routine
    Irp.cancel_routine = CancelRoutine
    return old


# --- calling down and completing ---------------------------------------------------------

def IoCallDriver(DeviceObject: Any, Irp: Irp) -> int:
    """Advance to the next stack location and call the device's driver dispatch routine."""
    k = _current[-1]  # current_kernel(), inlined
    # k.enter / k.leave when somebody listens; with nobody on the bus only the frame is kept.
    observed = k.bus.subscribers
    if observed:
        k.enter("nt!IofCallDriver", (DeviceObject, Irp))
    else:
        frame = Irp.call_frame
        if frame is None or frame[1][0] is not DeviceObject:
            frame = Irp.call_frame = _new_frame(Frame, ("nt!IofCallDriver", (DeviceObject, Irp)))
        k.frames.append(frame)
    if k.cpu_model is not None:
        k.charge("irp_dispatch")
    irql_before = k.irql
    if irql_before > DISPATCH_LEVEL:
        k.bugcheck(bc.DRIVER_VERIFIER_IOMANAGER_VIOLATION, bc.C9_CALL_ABOVE_DISPATCH, k.irql, 0, 0)
    location = Irp.current_location = Irp.current_location - 1
    if location <= 0:
        k.bugcheck(bc.NO_MORE_IRP_STACK_LOCATIONS, Irp.address, 0, 0, 0)
    loc = Irp.stack[location - 1]
    loc.device_object = DeviceObject
    driver = DeviceObject.driver_object
    if observed:
        k.publish(IrpDispatched, irp=Irp.address, major=loc.major, minor=loc.minor, device=DeviceObject.address,
                  driver=driver.name)
    notes = Irp.notes
    notes.append((k.bus.seq, "dispatched", (loc.major, driver.name)))
    status = driver.major_function[loc.major](DeviceObject, Irp)
    if k.irql != irql_before:
        k.bugcheck(bc.DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x05, DeviceObject.address, irql_before, k.irql)
    if status == STATUS_PENDING:
        if observed:
            k.publish(IrpPended, irp=Irp.address, driver=driver.name)
        notes.append((k.bus.seq, "pended", driver.name))
    if observed:
        k.leave("nt!IofCallDriver", status)
    else:  # Kernel.leave with nobody listening: pop the routine's frame
        frames = k.frames
        if frames and frames[-1][0] == "nt!IofCallDriver":
            del frames[-1]
        else:
            k.leave_silently("nt!IofCallDriver")
    return status


def IoCompleteRequest(Irp: Irp, PriorityBoost: int = 0) -> None:
    """Complete the IRP: run completion routines bottom-up, stop at MORE_PROCESSING_REQUIRED."""
    k = _current[-1]  # current_kernel(), inlined
    # The export (IofCompleteRequest) hands the work to IopfCompleteRequest, as on Windows 10:
    # published 0x44 stacks show KeBugCheckEx <- IopfCompleteRequest <- IofCompleteRequest.
    bus = k.bus
    if bus.subscribers:
        k.enter("nt!IofCompleteRequest", (Irp, PriorityBoost))
        k.enter("nt!IopfCompleteRequest", (Irp, PriorityBoost))
    else:
        # The two frames are the same for every completion of this IRP object with this boost:
        # made once (a lookaside IRP object completes many requests), pushed with one extend.
        pair = Irp.complete_frames
        if pair is None or pair[0][1][1] != PriorityBoost:
            pair = Irp.complete_frames = (_new_frame(Frame, ("nt!IofCompleteRequest", (Irp, PriorityBoost))),
                                          _new_frame(Frame, ("nt!IopfCompleteRequest", (Irp, PriorityBoost))))
        k.frames.extend(pair)
    if k.cpu_model is not None:
        k.charge("irp_complete")
    if Irp.completed or Irp.completing or Irp.freed:
        k.bugcheck(bc.MULTIPLE_IRP_COMPLETE_REQUESTS, Irp.address, 0, 0, 0)
    status = Irp.IoStatus.Status
    if status == STATUS_PENDING or status == 0xFFFFFFFF:
        k.bugcheck(bc.DRIVER_VERIFIER_IOMANAGER_VIOLATION, bc.C9_COMPLETE_PENDING, status, Irp.address, 0)
    if Irp.cancel_routine is not None:
        k.bugcheck(bc.DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x07, k.symbol_address(symbol_of(Irp.cancel_routine)),
                   Irp.address, 0)
    Irp.completing = True
    if bus.subscribers:
        k.publish(IrpCompleted, irp=Irp.address, status=status, information=_addr(Irp.IoStatus.Information))
    Irp.notes.append((bus.seq, "completed", status))
    stack = Irp.stack
    stack_count = Irp.stack_count
    while Irp.current_location <= stack_count:
        loc = stack[Irp.current_location - 1]
        control = loc.control
        Irp.pending_returned = pending = bool(control & SL_PENDING_RETURNED)
        routine = loc.completion_routine
        context = loc.context
        location = Irp.current_location = Irp.current_location + 1
        upper = stack[location - 1] if location <= stack_count else None  # Irp.current_stack_location
        # _should_invoke(control, Irp), inlined: the usual case is a success to be reported
        if routine is not None and (control & SL_INVOKE_ON_CANCEL and Irp.cancel or control & (
                SL_INVOKE_ON_SUCCESS if (Irp.IoStatus.Status & 0xFFFFFFFF) < 0x80000000 else SL_INVOKE_ON_ERROR)):
            device = upper.device_object if upper is not None else None
            loc.minor = loc.flags = loc.control = 0  # loc.zero(), inlined
            loc.parameters = loc.file_object = None
            result = routine(device, Irp, context)
            if bus.subscribers:
                k.publish(IrpCompletionRoutine, irp=Irp.address, routine=symbol_of(routine), result=result)
            if result == STATUS_MORE_PROCESSING_REQUIRED:
                # The routine's owner took the IRP back (to free or reuse it).
                Irp.completing = False
                break
        else:
            loc.minor = loc.flags = loc.control = 0  # loc.zero(), inlined
            loc.parameters = loc.file_object = None
            if pending and upper is not None:
                upper.control |= SL_PENDING_RETURNED
    else:
        Irp.completing = False
        Irp.completed = True
        if Irp.user_iosb is not None or Irp.user_event is not None or Irp.thread is not None or (
                Irp.allocation_flags & 0x2):
            _finish_to_io_manager(k, Irp)
    frames = k.frames
    if not bus.subscribers and len(frames) > 1 and frames[-1][0] == "nt!IopfCompleteRequest" and (
            frames[-2][0] == "nt!IofCompleteRequest"):
        del frames[-2:]  # _leave_complete_request's quiet case, inlined
    else:
        _leave_complete_request(k)


def _leave_complete_request(k: Kernel) -> None:
    if k.bus.subscribers:
        k.leave("nt!IopfCompleteRequest", None)
        k.leave("nt!IofCompleteRequest", None)
        return
    frames = k.frames
    if len(frames) > 1 and frames[-1][0] == "nt!IopfCompleteRequest" and frames[-2][0] == "nt!IofCompleteRequest":
        del frames[-2:]
    else:
        k.leave_silently("nt!IopfCompleteRequest")
        k.leave_silently("nt!IofCompleteRequest")


def _should_invoke(control: int, irp: Irp) -> bool:
    if irp.cancel and control & SL_INVOKE_ON_CANCEL:
        return True
    if NT_SUCCESS(irp.IoStatus.Status):
        return bool(control & SL_INVOKE_ON_SUCCESS)
    return bool(control & SL_INVOKE_ON_ERROR)


def _finish_to_io_manager(k: Kernel, irp: Irp) -> None:
    """What the I/O manager does with a fully completed IRP: report status, signal, free."""
    if irp.user_iosb is not None:
        irp.user_iosb.Status = irp.IoStatus.Status
        irp.user_iosb.Information = irp.IoStatus.Information
    if irp.user_event is not None:
        KeSetEvent(irp.user_event)
    thread = irp.thread
    if thread is not None:
        irps = getattr(thread, "irps", None)
        if irps and irp in irps:
            irps.remove(irp)
    if irp.allocation_flags & 0x2:  # built by IoBuild*Request: the I/O manager owns it
        irp.thread = None
        IoFreeIrp(irp)


def IoCancelIrp(Irp: Irp) -> bool:
    """Set Cancel and call the cancel routine (with the cancel spin lock held, as Windows does)."""
    k = current_kernel()
    k.enter("nt!IoCancelIrp", (Irp,))
    Irp.cancel = True
    k.publish(IrpCancelled, irp=Irp.address)
    routine = Irp.cancel_routine
    if routine is None:
        k.leave("nt!IoCancelIrp", False)
        return False
    Irp.cancel_routine = None
    Irp.cancel_irql = k.irql
    old = k.irql
    if k.irql < DISPATCH_LEVEL:
        k.irql = DISPATCH_LEVEL
    loc = Irp.current_stack_location
    routine(loc.device_object if loc else None, Irp)
    # The cancel routine releases the cancel spin lock (IoReleaseCancelSpinLock) which restores IRQL.
    k.irql = old
    k.leave("nt!IoCancelIrp", True)
    return True


def IoAcquireCancelSpinLock() -> int:
    """Raise to DISPATCH_LEVEL; the lock itself is implicit on one emulated processor.  Returns the old IRQL."""
    k = current_kernel()
    old = k.irql
    if old < DISPATCH_LEVEL:
        k.irql = DISPATCH_LEVEL
    return old


def IoReleaseCancelSpinLock(Irql: int) -> None:
    """Drop back to `Irql` (a cancel routine passes Irp.cancel_irql), so it completes at the caller's IRQL."""
    k = current_kernel()
    if Irql < k.irql:
        k.irql = Irql


def IoBuildDeviceIoControlRequest(IoControlCode: int, DeviceObject: Any, InputBuffer: Any, InputBufferLength: int,
                                  OutputBuffer: Any, OutputBufferLength: int, InternalDeviceIoControl: bool,
                                  Event: Any, IoStatusBlock: Any) -> Irp | None:
    """A thread-associated IRP the I/O manager frees on completion (signalling Event)."""
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    irp = IoAllocateIrp(DeviceObject.stack_size)
    if irp is None:
        return None
    irp.allocation_flags |= 0x2
    irp.user_event = Event
    irp.user_iosb = IoStatusBlock
    irp.thread = k.current_thread
    if k.current_thread is not None:
        k.current_thread.irps.append(irp)
    loc = IoGetNextIrpStackLocation(irp)
    loc.major = IRP_MJ_INTERNAL_DEVICE_CONTROL if InternalDeviceIoControl else IRP_MJ_DEVICE_CONTROL
    loc.parameters = (OutputBufferLength, InputBufferLength, IoControlCode, 0)
    irp.system_buffer = InputBuffer
    return irp


__all__ = [name for name in globals() if name.startswith(("Io", "IRP_", "SL_", "Irp"))]
_ = (STATUS_CANCELLED, Frame)
