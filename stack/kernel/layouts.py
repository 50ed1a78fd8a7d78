"""x64 structure layouts, shared by the emulator (which writes structures into
emulated memory) and the debugger (whose `dt` reads them back).

A layout is data: a list of fields with offsets and kinds, as `dt -v` would
list them.  Offsets follow the public x64 layouts in the reference notes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable

# Field kinds: how the bytes decode and how `dt` prints them.
#   "i8" "i16" "i32" "i64"  signed, printed 0n<decimal>
#   "u8" "u16" "u32" "u64"  unsigned, printed 0x<hex>
#   "char"                  UChar, printed `1 ''`
#   "ptr"                   pointer (target type in `target`), printed 0xffff....`....
#   "bytes"                 opaque run of `size` bytes (unions/arrays shown as [n])
#   "struct"                embedded structure (`target`), expanded by dt -r
#   "union"                 embedded unnamed union or struct (`target` names its layout here);
#                           dt prints `<unnamed-tag>` and expands it like a structure
_FORMATS = {"i8": "<b", "u8": "<B", "char": "<B", "i16": "<h", "u16": "<H", "i32": "<i", "u32": "<I",
            "i64": "<q", "u64": "<Q", "ptr": "<Q"}
_SIZES = {"i8": 1, "u8": 1, "char": 1, "i16": 2, "u16": 2, "i32": 4, "u32": 4, "i64": 8, "u64": 8, "ptr": 8}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    offset: int
    kind: str
    target: str = ""  # pointee type for ptr, type name for struct
    size: int = 0  # for bytes / struct / arrays
    count: int = 1  # array element count (for ptr/u64 arrays)

    @property
    def byte_size(self) -> int:
        if self.kind in _SIZES:
            return _SIZES[self.kind] * self.count
        return self.size


@dataclass(slots=True)
class StructLayout:
    name: str
    size: int
    fields: list[Field]
    by_name: dict[str, Field] = field(default_factory=dict)

    # Scalar fields as (name, packer, offset, mask): what `pack` needs for a plain int, worked out once.
    _scalars: dict[str, tuple[Callable[..., None], int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {f.name: f for f in self.fields}
        self._scalars = {f.name: (struct.Struct(_FORMATS[f.kind]).pack_into, f.offset, (1 << (8 * _SIZES[f.kind])) - 1)
                         for f in self.fields
                         if f.kind in _FORMATS and f.count == 1 and not f.kind.startswith("i")}

    def pack(self, values: dict[str, object]) -> bytes:
        """Serialize `values` (missing fields are zero) into `size` bytes."""
        buf = bytearray(self.size)
        scalars = self._scalars
        for f in self.fields:
            v = values.get(f.name)
            if v is None:
                continue
            plan = scalars.get(f.name)
            if plan is not None:  # the usual field: an unsigned int, or a pointer to an object
                if v.__class__ is not int:
                    v = int(v) if v.__class__ is bool else (getattr(v, "address", 0) or 0)  # _as_int
                pack_into, offset, mask = plan
                pack_into(buf, offset, v & mask)
                continue
            if f.kind in _FORMATS:
                fmt = _FORMATS[f.kind]
                if f.count > 1:
                    for i, item in enumerate(v):  # type: ignore[arg-type]
                        struct.pack_into(fmt, buf, f.offset + i * _SIZES[f.kind], _as_int(item, f.kind))
                else:
                    struct.pack_into(fmt, buf, f.offset, _as_int(v, f.kind))
            elif isinstance(v, (bytes, bytearray)):
                buf[f.offset:f.offset + min(len(v), f.byte_size)] = v[:f.byte_size]
            elif f.kind == "union":  # a union given its pointer-sized member (AssociatedIrp.SystemBuffer)
                n = min(8, f.byte_size)
                buf[f.offset:f.offset + n] = (_as_int(v, "u64")).to_bytes(8, "little")[:n]
        return bytes(buf)

    def unpack_field(self, f: Field, data: bytes) -> int | bytes | list[int]:
        if f.kind in _FORMATS:
            fmt = _FORMATS[f.kind]
            if f.count > 1:
                step = _SIZES[f.kind]
                return [struct.unpack_from(fmt, data, f.offset + i * step)[0] for i in range(f.count)]
            return struct.unpack_from(fmt, data, f.offset)[0]
        return data[f.offset:f.offset + f.byte_size]


def _as_int(value: object, kind: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        v = value
    else:
        v = getattr(value, "address", 0) or 0
    bits = _SIZES[kind] * 8
    if kind.startswith("i"):
        v &= (1 << bits) - 1
        if v >= 1 << (bits - 1):
            v -= 1 << bits
        return v
    return v & ((1 << bits) - 1)


LAYOUTS: dict[str, StructLayout] = {}


def register_layout(layout: StructLayout) -> StructLayout:
    LAYOUTS[layout.name] = layout
    return layout


def find_layout(name: str) -> StructLayout | None:
    """Accept `_MDL`, `nt!_MDL`, `MDL` (case-insensitive)."""
    key = name.split("!", 1)[-1]
    for candidate in (key, "_" + key.lstrip("_")):
        for lname, layout in LAYOUTS.items():
            if lname.lower() == candidate.lower():
                return layout
    return None


F = Field

register_layout(StructLayout("_MDL", 0x30, [
    F("Next", 0x00, "ptr", "_MDL"),
    F("Size", 0x08, "i16"),
    F("MdlFlags", 0x0A, "i16"),
    F("AllocationProcessorNumber", 0x0C, "u16"),
    F("Reserved", 0x0E, "u16"),
    F("Process", 0x10, "ptr", "_EPROCESS"),
    F("MappedSystemVa", 0x18, "ptr", "Void"),
    F("StartVa", 0x20, "ptr", "Void"),
    F("ByteCount", 0x28, "u32"),
    F("ByteOffset", 0x2C, "u32"),
]))

register_layout(StructLayout("_IO_STATUS_BLOCK", 0x10, [
    F("Status", 0x00, "i32"),
    F("Pointer", 0x00, "ptr", "Void"),
    F("Information", 0x08, "u64"),
]))

# `dt nt!_IRP -r2` on Windows 10 x64 (public capture):
#    +0x078 Tail             : <unnamed-tag>
#       +0x000 Overlay          : <unnamed-tag>
#          +0x000 DeviceQueueEntry : _KDEVICE_QUEUE_ENTRY
#          +0x000 DriverContext    : [4] Ptr64 Void
#          +0x020 Thread           : Ptr64 _ETHREAD
#          ...
#          +0x040 CurrentStackLocation : Ptr64 _IO_STACK_LOCATION
#          +0x040 PacketType       : Uint4B
#          +0x048 OriginalFileObject : Ptr64 _FILE_OBJECT
#          +0x050 IrpExtension     : Ptr64 Void
#       +0x000 Apc              : _KAPC
#       +0x000 CompletionKey    : Ptr64 Void
register_layout(StructLayout("_IRP", 0xD0, [
    F("Type", 0x00, "i16"),
    F("Size", 0x02, "u16"),
    F("AllocationProcessorNumber", 0x04, "u16"),
    F("Reserved", 0x06, "u16"),
    F("MdlAddress", 0x08, "ptr", "_MDL"),
    F("Flags", 0x10, "u32"),
    F("AssociatedIrp", 0x18, "union", "_IRP::AssociatedIrp", size=0x8),
    F("ThreadListEntry", 0x20, "struct", "_LIST_ENTRY", size=0x10),
    F("IoStatus", 0x30, "struct", "_IO_STATUS_BLOCK", size=0x10),
    F("RequestorMode", 0x40, "char"),
    F("PendingReturned", 0x41, "u8"),
    F("StackCount", 0x42, "char"),
    F("CurrentLocation", 0x43, "char"),
    F("Cancel", 0x44, "u8"),
    F("CancelIrql", 0x45, "u8"),
    F("ApcEnvironment", 0x46, "char"),
    F("AllocationFlags", 0x47, "u8"),
    F("UserIosb", 0x48, "ptr", "_IO_STATUS_BLOCK"),
    F("UserEvent", 0x50, "ptr", "_KEVENT"),
    F("Overlay", 0x58, "union", "_IRP::Overlay", size=0x10),
    F("CancelRoutine", 0x68, "ptr", "Void"),
    F("UserBuffer", 0x70, "ptr", "Void"),
    F("Tail", 0x78, "union", "_IRP::Tail", size=0x58),
]))

register_layout(StructLayout("_IRP::AssociatedIrp", 0x8, [
    F("MasterIrp", 0x00, "ptr", "_IRP"),
    F("IrpCount", 0x00, "i32"),
    F("SystemBuffer", 0x00, "ptr", "Void"),
]))

register_layout(StructLayout("_IRP::Overlay", 0x10, [
    F("AsynchronousParameters", 0x00, "union", "_IRP::Overlay::AsynchronousParameters", size=0x10),
    F("AllocationSize", 0x00, "struct", "_LARGE_INTEGER", size=0x8),
]))

register_layout(StructLayout("_IRP::Overlay::AsynchronousParameters", 0x10, [
    F("UserApcRoutine", 0x00, "ptr", "Void"),
    F("IssuingProcess", 0x00, "ptr", "Void"),
    F("UserApcContext", 0x08, "ptr", "Void"),
]))

register_layout(StructLayout("_IRP::Tail", 0x58, [
    F("Overlay", 0x00, "union", "_IRP_TAIL", size=0x58),
    F("Apc", 0x00, "bytes", size=0x58),
    F("CompletionKey", 0x00, "ptr", "Void"),
]))

# Tail.Overlay: the member of the IRP tail the I/O manager uses while the IRP is in flight.
register_layout(StructLayout("_IRP_TAIL", 0x58, [
    F("DeviceQueueEntry", 0x00, "bytes", size=0x18),
    F("DriverContext", 0x00, "ptr", "Void", count=4),
    F("Thread", 0x20, "ptr", "_ETHREAD"),
    F("AuxiliaryBuffer", 0x28, "ptr", "Char"),
    F("ListEntry", 0x30, "struct", "_LIST_ENTRY", size=0x10),
    F("CurrentStackLocation", 0x40, "ptr", "_IO_STACK_LOCATION"),
    F("PacketType", 0x40, "u32"),
    F("OriginalFileObject", 0x48, "ptr", "_FILE_OBJECT"),
    F("IrpExtension", 0x50, "ptr", "Void"),
]))

register_layout(StructLayout("_IO_STACK_LOCATION", 0x48, [
    F("MajorFunction", 0x00, "u8"),
    F("MinorFunction", 0x01, "u8"),
    F("Flags", 0x02, "u8"),
    F("Control", 0x03, "u8"),
    F("Parameters", 0x08, "struct", "_IO_STACK_PARAMETERS_OTHERS", size=0x20),
    F("DeviceObject", 0x28, "ptr", "_DEVICE_OBJECT"),
    F("FileObject", 0x30, "ptr", "_FILE_OBJECT"),
    F("CompletionRoutine", 0x38, "ptr", "Void"),
    F("Context", 0x40, "ptr", "Void"),
]))

register_layout(StructLayout("_IO_STACK_PARAMETERS_OTHERS", 0x20, [
    F("Argument1", 0x00, "ptr", "Void"),
    F("Argument2", 0x08, "ptr", "Void"),
    F("Argument3", 0x10, "ptr", "Void"),
    F("Argument4", 0x18, "ptr", "Void"),
]))

register_layout(StructLayout("_DRIVER_OBJECT", 0x150, [
    F("Type", 0x00, "i16"),
    F("Size", 0x02, "i16"),
    F("DeviceObject", 0x08, "ptr", "_DEVICE_OBJECT"),
    F("Flags", 0x10, "u32"),
    F("DriverStart", 0x18, "ptr", "Void"),
    F("DriverSize", 0x20, "u32"),
    F("DriverSection", 0x28, "ptr", "Void"),
    F("DriverExtension", 0x30, "ptr", "_DRIVER_EXTENSION"),
    F("DriverName", 0x38, "struct", "_UNICODE_STRING", size=0x10),
    F("HardwareDatabase", 0x48, "ptr", "_UNICODE_STRING"),
    F("FastIoDispatch", 0x50, "ptr", "_FAST_IO_DISPATCH"),
    F("DriverInit", 0x58, "ptr", "Void"),
    F("DriverStartIo", 0x60, "ptr", "Void"),
    F("DriverUnload", 0x68, "ptr", "Void"),
    F("MajorFunction", 0x70, "ptr", "Void", count=28),
]))

register_layout(StructLayout("_DEVICE_OBJECT", 0x150, [
    F("Type", 0x00, "i16"),
    F("Size", 0x02, "u16"),
    F("ReferenceCount", 0x04, "i32"),
    F("DriverObject", 0x08, "ptr", "_DRIVER_OBJECT"),
    F("NextDevice", 0x10, "ptr", "_DEVICE_OBJECT"),
    F("AttachedDevice", 0x18, "ptr", "_DEVICE_OBJECT"),
    F("CurrentIrp", 0x20, "ptr", "_IRP"),
    F("Timer", 0x28, "ptr", "_IO_TIMER"),
    F("Flags", 0x30, "u32"),
    F("Characteristics", 0x34, "u32"),
    F("Vpb", 0x38, "ptr", "_VPB"),
    F("DeviceExtension", 0x40, "ptr", "Void"),
    F("DeviceType", 0x48, "u32"),
    F("StackSize", 0x4C, "char"),
    F("Queue", 0x50, "union", "_DEVICE_OBJECT::Queue", size=0x48),
    F("AlignmentRequirement", 0x98, "u32"),
    F("DeviceQueue", 0xA0, "struct", "_KDEVICE_QUEUE", size=0x28),
    F("Dpc", 0xC8, "struct", "_KDPC", size=0x40),
    F("ActiveThreadCount", 0x108, "u32"),
    F("SecurityDescriptor", 0x110, "ptr", "Void"),
    F("DeviceLock", 0x118, "struct", "_KEVENT", size=0x18),
    F("SectorSize", 0x130, "u16"),
    F("Spare1", 0x132, "u16"),
    F("DeviceObjectExtension", 0x138, "ptr", "_DEVOBJ_EXTENSION"),
    F("Reserved", 0x140, "ptr", "Void"),
]))

register_layout(StructLayout("_DEVOBJ_EXTENSION", 0x70, [
    F("Type", 0x00, "i16"),
    F("Size", 0x02, "u16"),
    F("DeviceObject", 0x08, "ptr", "_DEVICE_OBJECT"),
]))

register_layout(StructLayout("_DEVICE_OBJECT::Queue", 0x48, [
    F("ListEntry", 0x00, "struct", "_LIST_ENTRY", size=0x10),
    F("Wcb", 0x00, "bytes", size=0x48),
]))

register_layout(StructLayout("_KDEVICE_QUEUE", 0x28, [
    F("Type", 0x00, "i16"),
    F("Size", 0x02, "i16"),
    F("DeviceListHead", 0x08, "struct", "_LIST_ENTRY", size=0x10),
    F("Lock", 0x18, "u64"),
    F("Busy", 0x20, "u8"),
]))

register_layout(StructLayout("_LIST_ENTRY", 0x10, [
    F("Flink", 0x00, "ptr", "_LIST_ENTRY"),
    F("Blink", 0x08, "ptr", "_LIST_ENTRY"),
]))

register_layout(StructLayout("_SINGLE_LIST_ENTRY", 0x8, [
    F("Next", 0x00, "ptr", "_SINGLE_LIST_ENTRY"),
]))

# SLIST_ENTRY is 16 bytes and 16-byte aligned on x64 (DECLSPEC_ALIGN(16)), padding what embeds it.
register_layout(StructLayout("_SLIST_ENTRY", 0x10, [
    F("Next", 0x00, "ptr", "_SLIST_ENTRY"),
]))

register_layout(StructLayout("_UNICODE_STRING", 0x10, [
    F("Length", 0x00, "u16"),
    F("MaximumLength", 0x02, "u16"),
    F("Buffer", 0x08, "ptr", "Wchar"),
]))

register_layout(StructLayout("_LARGE_INTEGER", 0x8, [
    F("LowPart", 0x00, "u32"),
    F("HighPart", 0x04, "i32"),
    F("QuadPart", 0x00, "i64"),
]))

# Windows 10 x64 (the fields the lab uses; Lock/Type/Signalling/Size overlay one another).
register_layout(StructLayout("_DISPATCHER_HEADER", 0x18, [
    F("Lock", 0x00, "i32"),
    F("Type", 0x00, "u8"),
    F("Signalling", 0x01, "u8"),
    F("Size", 0x02, "u8"),
    F("Reserved1", 0x03, "u8"),
    F("SignalState", 0x04, "i32"),
    F("WaitListHead", 0x08, "struct", "_LIST_ENTRY", size=0x10),
]))

register_layout(StructLayout("_KEVENT", 0x18, [
    F("Header", 0x00, "struct", "_DISPATCHER_HEADER", size=0x18),
]))

register_layout(StructLayout("_KSEMAPHORE", 0x20, [
    F("Header", 0x00, "struct", "_DISPATCHER_HEADER", size=0x18),
    F("Limit", 0x18, "i32"),
]))

register_layout(StructLayout("_KTIMER", 0x40, [
    F("Header", 0x00, "struct", "_DISPATCHER_HEADER", size=0x18),
    F("DueTime", 0x18, "u64"),
    F("TimerListEntry", 0x20, "struct", "_LIST_ENTRY", size=0x10),
    F("Dpc", 0x30, "ptr", "_KDPC"),
    F("Processor", 0x38, "u32"),
    F("Period", 0x3C, "u32"),
]))

register_layout(StructLayout("_KDPC", 0x40, [
    F("TargetInfoAsUlong", 0x00, "u32"),
    F("Type", 0x00, "u8"),
    F("Importance", 0x01, "u8"),
    F("Number", 0x02, "u16"),
    F("DpcListEntry", 0x08, "struct", "_SINGLE_LIST_ENTRY", size=0x8),
    F("ProcessorHistory", 0x10, "u64"),
    F("DeferredRoutine", 0x18, "ptr", "Void"),
    F("DeferredContext", 0x20, "ptr", "Void"),
    F("SystemArgument1", 0x28, "ptr", "Void"),
    F("SystemArgument2", 0x30, "ptr", "Void"),
    F("DpcData", 0x38, "ptr", "Void"),
]))

# The head of every pool block (x64): sizes in 16-byte units, the tag as four characters.
register_layout(StructLayout("_POOL_HEADER", 0x10, [
    F("PreviousSize", 0x00, "u8"),
    F("PoolIndex", 0x01, "u8"),
    F("BlockSize", 0x02, "u8"),
    F("PoolType", 0x03, "u8"),
    F("Ulong1", 0x00, "u32"),
    F("PoolTag", 0x04, "u32"),
    F("ProcessBilled", 0x08, "ptr", "_EPROCESS"),
    F("AllocatorBackTraceIndex", 0x08, "u16"),
    F("PoolTagHash", 0x0A, "u16"),
]))

# `dt nt!_KTHREAD` on Windows 10 x64: the fields the lab keeps (the rest of the 0x5f0 bytes read 0).
register_layout(StructLayout("_KTHREAD", 0x5F0, [
    F("Header", 0x00, "struct", "_DISPATCHER_HEADER", size=0x18),
    F("SListFaultAddress", 0x18, "ptr", "Void"),
    F("QuantumTarget", 0x20, "u64"),
    F("InitialStack", 0x28, "ptr", "Void"),
    F("StackLimit", 0x30, "ptr", "Void"),
    F("StackBase", 0x38, "ptr", "Void"),
    F("ThreadLock", 0x40, "u64"),
    F("CycleTime", 0x48, "u64"),
    F("CurrentRunTime", 0x50, "u32"),
    F("ExpectedRunTime", 0x54, "u32"),
    F("KernelStack", 0x58, "ptr", "Void"),
    F("Running", 0x71, "u8"),
    F("Priority", 0xC3, "char"),
    F("State", 0x184, "u8"),
    F("WaitIrql", 0x186, "u8"),
    F("WaitMode", 0x187, "char"),
    F("WaitReason", 0x283, "u8"),
]))

register_layout(StructLayout("_ETHREAD", 0x500, [
    F("Header", 0x00, "bytes", size=0x18),
    F("InitialStack", 0x28, "ptr", "Void"),
    F("StackLimit", 0x30, "ptr", "Void"),
    F("StackBase", 0x38, "ptr", "Void"),
    F("KernelStack", 0x58, "ptr", "Void"),
    F("Running", 0x71, "u8"),
    F("State", 0x184, "u8"),
    F("WaitIrql", 0x186, "u8"),
    F("WaitReason", 0x283, "u8"),
    F("Priority", 0xC3, "char"),
    F("StartAddress", 0x450, "ptr", "Void"),
    F("Cid", 0x478, "bytes", size=0x10),
    F("IrpList", 0x4A0, "bytes", size=0x10),
]))

register_layout(StructLayout("_WSK_BUF", 0x18, [
    F("Mdl", 0x00, "ptr", "_MDL"),
    F("Offset", 0x08, "u32"),
    F("Length", 0x10, "u64"),
]))
