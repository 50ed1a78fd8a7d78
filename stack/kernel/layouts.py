"""x64 structure layouts, shared by the emulator (which writes structures into
emulated memory) and the debugger (whose `dt` reads them back).

A layout is data: a list of fields with offsets and kinds, as `dt -v` would
list them.  Offsets follow the public x64 layouts in the reference notes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# Field kinds: how the bytes decode and how `dt` prints them.
#   "i8" "i16" "i32" "i64"  signed, printed 0n<decimal>
#   "u8" "u16" "u32" "u64"  unsigned, printed 0x<hex>
#   "char"                  UChar, printed `1 ''`
#   "ptr"                   pointer (target type in `target`), printed 0xffff....`....
#   "bytes"                 opaque run of `size` bytes (unions/arrays shown as [n])
#   "struct"                embedded structure (`target`), expanded by dt -r
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

    def __post_init__(self) -> None:
        self.by_name = {f.name: f for f in self.fields}

    def pack(self, values: dict[str, object]) -> bytes:
        """Serialize `values` (missing fields are zero) into `size` bytes."""
        buf = bytearray(self.size)
        for f in self.fields:
            v = values.get(f.name)
            if v is None:
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

register_layout(StructLayout("_IRP", 0xD0, [
    F("Type", 0x00, "i16"),
    F("Size", 0x02, "u16"),
    F("AllocationProcessorNumber", 0x04, "u16"),
    F("Reserved", 0x06, "u16"),
    F("MdlAddress", 0x08, "ptr", "_MDL"),
    F("Flags", 0x10, "u32"),
    F("AssociatedIrp", 0x18, "ptr", "Void"),
    F("ThreadListEntry", 0x20, "bytes", size=0x10),
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
    F("Overlay", 0x58, "bytes", size=0x10),
    F("CancelRoutine", 0x68, "ptr", "Void"),
    F("UserBuffer", 0x70, "ptr", "Void"),
    F("Tail", 0x78, "struct", "_IRP_TAIL", size=0x58),
]))

# The Tail.Overlay view of the IRP tail (the union member the I/O manager uses).
register_layout(StructLayout("_IRP_TAIL", 0x58, [
    F("DriverContext", 0x00, "ptr", "Void", count=4),
    F("Thread", 0x20, "ptr", "_ETHREAD"),
    F("AuxiliaryBuffer", 0x28, "ptr", "Char"),
    F("ListEntry", 0x30, "bytes", size=0x10),
    F("CurrentStackLocation", 0x40, "ptr", "_IO_STACK_LOCATION"),
    F("OriginalFileObject", 0x48, "ptr", "_FILE_OBJECT"),
    F("CompletionKey", 0x50, "ptr", "Void"),
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
    F("DriverName", 0x38, "bytes", size=0x10),
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
    F("AlignmentRequirement", 0x98, "u32"),
    F("ActiveThreadCount", 0xC0, "u32"),
    F("SecurityDescriptor", 0xC8, "ptr", "Void"),
    F("SectorSize", 0xF0, "u16"),
    F("Spare1", 0xF2, "u16"),
    F("DeviceObjectExtension", 0xF8, "ptr", "_DEVOBJ_EXTENSION"),
    F("Reserved", 0x100, "ptr", "Void"),
]))

register_layout(StructLayout("_KEVENT", 0x18, [
    F("Type", 0x00, "u8"),
    F("Signalling", 0x01, "u8"),
    F("Size", 0x02, "u8"),
    F("SignalState", 0x04, "i32"),
    F("WaitListHead", 0x08, "bytes", size=0x10),
]))

register_layout(StructLayout("_KDPC", 0x40, [
    F("Type", 0x00, "u8"),
    F("Importance", 0x01, "u8"),
    F("Number", 0x02, "u16"),
    F("DpcListEntry", 0x08, "bytes", size=0x8),
    F("ProcessorHistory", 0x10, "u64"),
    F("DeferredRoutine", 0x18, "ptr", "Void"),
    F("DeferredContext", 0x20, "ptr", "Void"),
    F("SystemArgument1", 0x28, "ptr", "Void"),
    F("SystemArgument2", 0x30, "ptr", "Void"),
    F("DpcData", 0x38, "ptr", "Void"),
]))

register_layout(StructLayout("_ETHREAD", 0x500, [
    F("Header", 0x00, "bytes", size=0x18),
    F("InitialStack", 0x28, "ptr", "Void"),
    F("StackLimit", 0x30, "ptr", "Void"),
    F("StackBase", 0x38, "ptr", "Void"),
    F("State", 0x184, "u8"),
    F("WaitIrql", 0x186, "u8"),
    F("WaitReason", 0x283, "u8"),
    F("Priority", 0xC3, "char"),
    F("StartAddress", 0x450, "ptr", "Void"),
    F("Cid", 0x478, "bytes", size=0x10),
    F("IrpList", 0x4A0, "bytes", size=0x10),
]))
