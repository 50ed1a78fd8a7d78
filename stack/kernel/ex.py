"""Executive support routines drivers call: pool allocation, memory copies, DbgPrint."""

from __future__ import annotations

from typing import Any

from . import bugcheck as bc
from .events import PoolAllocated, PoolFreed
from .irql import APC_LEVEL, DISPATCH_LEVEL
from .pool import POOL_TYPE_NAMES, is_paged, tag_from_str, tag_to_str
from .symbols import _current, current_kernel

DPFLTR_IHVDRIVER_ID = 77
DPFLTR_ERROR_LEVEL = 0
DPFLTR_WARNING_LEVEL = 1
DPFLTR_TRACE_LEVEL = 2
DPFLTR_INFO_LEVEL = 3


def ExAllocatePoolWithTag(PoolType: int, NumberOfBytes: int, Tag: str | int) -> int:
    """Allocate pool; returns the address (0 means failure, as NULL does)."""
    k = _current[-1]  # current_kernel(), inlined: every driver allocation comes through here
    if NumberOfBytes == 0 or k.irql > APC_LEVEL:
        _check_allocate(k, PoolType, NumberOfBytes)
    if k.cpu_model is not None:
        k.charge("pool_alloc")
    frames = k.frames
    owner = frames[-1][0] if frames else "nt!KiIdleLoop"  # k.caller_symbol()
    verifier = k.verifier
    if verifier.active:
        address = k.allocate_pool("pool", PoolType, NumberOfBytes, Tag, owner=owner)
    else:  # k.allocate_pool with no low resources simulation, inlined
        try:
            address = k.pool.allocate(PoolType, NumberOfBytes, Tag, owner)
        except MemoryError:
            verifier.failed(k, "pool", Tag)
            address = 0
    if not address:
        return 0  # NULL: out of pool, or the verifier's low resources simulation said so
    if k.bus.subscribers:  # the event's fields are worked out only for somebody listening
        k.publish(PoolAllocated, address=address, size=NumberOfBytes, tag=tag_to_str(tag_from_str(Tag)),
                  pool_type=POOL_TYPE_NAMES.get(PoolType, str(PoolType)))
    return address


def _check_allocate(k: Any, PoolType: int, NumberOfBytes: int) -> None:
    """The verifier's checks on an allocation's size and IRQL (bug checks 0xC4 0x00..0x02)."""
    if NumberOfBytes == 0:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, 0x00, k.irql, PoolType, 0)
    if is_paged(PoolType) and k.irql > APC_LEVEL:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, 0x01, k.irql, PoolType, NumberOfBytes)
    if k.irql > DISPATCH_LEVEL:
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, 0x02, k.irql, PoolType, NumberOfBytes)


def ExAllocatePoolZero(PoolType: int, NumberOfBytes: int, Tag: str | int) -> int:
    # The pool already hands out zeroed blocks (for deterministic transcripts).
    return ExAllocatePoolWithTag(PoolType, NumberOfBytes, Tag)


def ExAllocatePool2(Flags: int, NumberOfBytes: int, Tag: str | int) -> int:
    POOL_FLAG_PAGED = 0x100
    return ExAllocatePoolWithTag(1 if Flags & POOL_FLAG_PAGED else 512, NumberOfBytes, Tag)


def ExFreePoolWithTag(P: int | Any, Tag: str | int) -> None:
    k = _current[-1]  # current_kernel(), inlined
    address = P if P.__class__ is int or isinstance(P, int) else P.address
    if k.irql > APC_LEVEL:
        ptype = k.pool.pool_type_of(address)
        if ptype is not None and is_paged(ptype):
            k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, 0x11, k.irql, ptype, address)
    if k.cpu_model is not None:
        k.charge("pool_free")
    k.pool.free(address, Tag)
    if k.bus.subscribers:
        k.publish(PoolFreed, address=address, tag=tag_to_str(tag_from_str(Tag)))


def ExFreePool(P: int | Any) -> None:
    k = current_kernel()
    address = P if isinstance(P, int) else P.address
    k.pool.free(address, None)
    k.publish(PoolFreed, address=address, tag="")


class PoolObject:
    """Base for driver structures that live in pool: the object *is* at `address`.

    Subclasses set `POOL_SIZE` (sizeof the C struct).  Allocate with
    `ExAllocatePoolObject(NonPagedPoolNx, Cls, 'Tag', ...)`, free with
    `ExFreePoolWithTag(obj, 'Tag')`.
    """

    POOL_SIZE = 0x40
    address: int = 0
    # Kernel objects embedded in the C struct, by attribute path and C offset
    # ({"AsyncContext.CompletionEvent": 0x10}): placed in this block when it is allocated.
    EMBEDDED: dict[str, int] = {}

    def embedded_objects(self) -> list[tuple[Any, int]]:
        out = []
        for path, offset in self.EMBEDDED.items():
            obj: Any = self
            for part in path.split("."):
                obj = getattr(obj, part)
            out.append((obj, offset))
        return out


def ExAllocatePoolObject(PoolType: int, cls: type, Tag: str | int, *args: Any, **kwargs: Any) -> Any:
    k = current_kernel()
    address = ExAllocatePoolWithTag(PoolType, getattr(cls, "POOL_SIZE", 0x40), Tag)
    if not address:
        return None
    obj = cls(*args, **kwargs)
    obj.address = address
    k.addr_objects[address] = obj
    for embedded, offset in obj.embedded_objects() if isinstance(obj, PoolObject) else ():
        embedded.place(k, address + offset)
    return obj


def ExFreePoolObject(obj: Any, Tag: str | int) -> None:
    k = current_kernel()
    k.addr_objects.pop(obj.address, None)
    for embedded, _ in obj.embedded_objects() if isinstance(obj, PoolObject) else ():
        embedded.unplace()
    ExFreePoolWithTag(obj.address, Tag)


def RtlCopyMemory(Destination: int, Source: int, Length: int) -> None:
    """Copy between two kernel addresses: a real copy, checked and counted."""
    k = current_kernel()
    data = k.read(Source, Length)
    k.write(Destination, data)
    k.copies.count(Length, "RtlCopyMemory")


def RtlZeroMemory(Destination: int, Length: int) -> None:
    current_kernel().write(Destination, bytes(Length))


def DbgPrint(fmt: str, *args: Any) -> int:
    from .wpp import format_message
    current_kernel().dbg_print(format_message(fmt, args))
    return 0


def DbgPrintEx(ComponentId: int, Level: int, fmt: str, *args: Any) -> int:
    return DbgPrint(fmt, *args)
