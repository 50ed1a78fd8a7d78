"""Driver and device objects, the object namespace, and loading drivers.

`IoLoadDriver` maps a module (so `lm` lists it and its routines have
addresses), builds `\\Driver\\<name>`, and runs DriverEntry on a system thread
(DriverEntry may wait, as KSOCKET's does).  `IoUnloadDriver` runs
DriverUnload the same way, then the verifier checks for leaked pool.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from . import bugcheck as bc
from .events import DriverLoaded, DriverUnloaded
from .irp import IRP_MJ_MAXIMUM_FUNCTION
from .kernel import Kernel
from .layouts import LAYOUTS
from .ntstatus import (NT_SUCCESS, STATUS_INVALID_DEVICE_REQUEST, STATUS_OBJECT_NAME_COLLISION, STATUS_SUCCESS,
                       STATUS_INSUFFICIENT_RESOURCES, STATUS_UNSUCCESSFUL)
from .pool import NonPagedPoolNx, tag_from_str
from .symbols import _current, current_kernel, kroutine, symbol_of

IO_TYPE_DRIVER = 4
IO_TYPE_DEVICE = 3
FILE_DEVICE_NETWORK = 0x12
FILE_DEVICE_TRANSPORT = 0x21
FILE_DEVICE_DISK_FILE_SYSTEM = 0x08
FILE_DEVICE_UNKNOWN = 0x22
DO_DIRECT_IO = 0x10
DO_BUFFERED_IO = 0x04
DO_DEVICE_INITIALIZING = 0x80


@kroutine("nt")
def IopInvalidDeviceRequest(DeviceObject: Any, Irp: Any) -> int:
    from .irp import IoCompleteRequest
    Irp.IoStatus.Status = STATUS_INVALID_DEVICE_REQUEST
    IoCompleteRequest(Irp)
    return STATUS_INVALID_DEVICE_REQUEST


FAST_IO_DISPATCH_SIZE = 0xE0  # SizeOfFastIoDispatch on x64: a ULONG (padded) and 27 routine pointers
FAST_IO_QUERY_BASIC_INFO_OFFSET = 0x20  # after SizeOfFastIoDispatch, CheckIfPossible, Read, Write
FAST_IO_QUERY_STANDARD_INFO_OFFSET = 0x28
# wdm.h's order: ... FastIoQueryNetworkOpenInfo (0x70), AcquireForModWrite (0x78), MdlRead, MdlReadComplete
FAST_IO_MDL_READ_OFFSET = 0x80
FAST_IO_MDL_READ_COMPLETE_OFFSET = 0x88


@dataclass(slots=True)
class FAST_IO_DISPATCH:
    """A file system's fast I/O entry points: the I/O manager and FsRtl call them directly, with no
    IRP, when the answer is at hand (cached data, a file's sizes); a routine returning FALSE sends
    the caller back to the IRP path.  Only the entry points the lab's file systems provide."""

    address: int = 0  # where the table is (a global of the file system's image)
    FastIoQueryStandardInfo: Callable[..., bool] | None = None
    FastIoQueryBasicInfo: Callable[..., bool] | None = None
    MdlRead: Callable[..., bool] | None = None  # PFAST_IO_MDL_READ: cached pages as an MDL chain
    MdlReadComplete: Callable[..., bool] | None = None  # PFAST_IO_MDL_READ_COMPLETE: give them back

    def write(self, k: Kernel) -> None:
        """The table in the image: SizeOfFastIoDispatch, then the routines' addresses."""
        table = bytearray(FAST_IO_DISPATCH_SIZE)
        table[0:4] = FAST_IO_DISPATCH_SIZE.to_bytes(4, "little")
        for at, routine in ((FAST_IO_QUERY_BASIC_INFO_OFFSET, self.FastIoQueryBasicInfo),
                            (FAST_IO_QUERY_STANDARD_INFO_OFFSET, self.FastIoQueryStandardInfo),
                            (FAST_IO_MDL_READ_OFFSET, self.MdlRead),
                            (FAST_IO_MDL_READ_COMPLETE_OFFSET, self.MdlReadComplete)):
            if routine is not None:
                table[at:at + 8] = k.symbol_address(symbol_of(routine)).to_bytes(8, "little")
        k.mem.write(self.address, bytes(table))


class DriverObject:
    struct_size = 0x150

    def __init__(self, k: Kernel, name: str, module: str) -> None:
        self.kernel = k
        self.name = f"\\Driver\\{name}"
        self.short_name = name
        self.module = module
        # DriverName.Buffer: the UTF-16 name right after the object, in the same block
        self._name_bytes = self.name.encode("utf-16-le")
        self.address = k.pool.allocate(NonPagedPoolNx, self.struct_size + len(self._name_bytes), "Driv")
        k.mem.write(self.address + self.struct_size, self._name_bytes)
        self.major_function: list[Callable[..., int]] = [IopInvalidDeviceRequest] * (IRP_MJ_MAXIMUM_FUNCTION + 1)
        self.driver_unload: Callable[..., Any] | None = None
        self.driver_init: Callable[..., Any] | None = None
        self.fast_io_dispatch: FAST_IO_DISPATCH | None = None  # DriverObject->FastIoDispatch
        self.devices: list[DeviceObject] = []
        self.flags = 0x12  # DRVO_LEGACY_DRIVER | DRVO_INITIALIZED
        self.extension: dict[str, Any] = {}  # per-driver globals (what C keeps in static variables)
        self.pool_tags: set[int] = set()
        self.loaded = False
        k.register_object(self)

    @property
    def MajorFunction(self) -> list[Callable[..., int]]:
        return self.major_function

    def flush(self) -> None:
        k = self.kernel
        mod = k.module(self.module)
        values = {
            "Type": IO_TYPE_DRIVER, "Size": self.struct_size,
            "DeviceObject": self.devices[0].address if self.devices else 0, "Flags": self.flags,
            "DriverStart": mod.base if mod else 0, "DriverSize": mod.size if mod else 0,
            "FastIoDispatch": self.fast_io_dispatch.address if self.fast_io_dispatch is not None else 0,
            "DriverInit": k.symbol_address(symbol_of(self.driver_init)) if self.driver_init else 0,
            "DriverUnload": k.symbol_address(symbol_of(self.driver_unload)) if self.driver_unload else 0,
            "MajorFunction": [k.symbol_address(symbol_of(fn)) for fn in self.major_function],
            "DriverName": LAYOUTS["_UNICODE_STRING"].pack({
                "Length": len(self._name_bytes), "MaximumLength": len(self._name_bytes),
                "Buffer": self.address + self.struct_size}),
        }
        k.mem.write(self.address, LAYOUTS["_DRIVER_OBJECT"].pack(values))


IO_TYPE_DEVICE_OBJECT_EXTENSION = 13
DEVOBJ_EXTENSION_SIZE = 0x70
DeviceQueueObject = 0x14


def _dispatcher_bytes(address: int, kind: int, size: int, signal_state: int | None) -> bytes:
    """A DISPATCHER_HEADER-shaped head with an empty list at +8 (a KEVENT, or a KDEVICE_QUEUE's
    Type/Size with its DeviceListHead)."""
    if signal_state is None:  # KDEVICE_QUEUE: Type and Size are CSHORTs
        head = kind.to_bytes(2, "little") + size.to_bytes(2, "little") + bytes(4)
    else:
        head = bytes((kind, 0, size // 4, 0)) + signal_state.to_bytes(4, "little")
    return head + (address + 8).to_bytes(8, "little") * 2


class DeviceObject:
    struct_size = 0x150

    def __init__(self, k: Kernel, driver: DriverObject, name: str | None, device_type: int,
                 extension_size: int, characteristics: int) -> None:
        self.kernel = k
        self.driver_object = driver
        self.name = name
        self.device_type = device_type
        self.characteristics = characteristics
        self.flags = DO_DEVICE_INITIALIZING
        self.stack_size = 1
        self.reference_count = 0
        self.attached_device: DeviceObject | None = None
        self.lower_device: DeviceObject | None = None
        self.current_irp = None
        # One block, as IoCreateDevice lays it out: DEVICE_OBJECT, the driver's extension, DEVOBJ_EXTENSION
        ext_span = (extension_size + 0xF) & ~0xF
        self.address = k.pool.allocate(NonPagedPoolNx, self.struct_size + ext_span + DEVOBJ_EXTENSION_SIZE, "Devi")
        self.extension_address = self.address + self.struct_size if extension_size else 0
        self.devobj_extension = self.address + self.struct_size + ext_span
        k.mem.write(self.devobj_extension, LAYOUTS["_DEVOBJ_EXTENSION"].pack({
            "Type": IO_TYPE_DEVICE_OBJECT_EXTENSION, "Size": DEVOBJ_EXTENSION_SIZE, "DeviceObject": self.address}))
        self.extension: Any = None  # the driver's DEVICE_EXTENSION as a Python object
        k.register_object(self)

    @property
    def DriverObject(self) -> DriverObject:
        return self.driver_object

    def flush(self) -> None:
        drv = self.driver_object
        nxt = 0
        if self in drv.devices:
            i = drv.devices.index(self)
            nxt = drv.devices[i + 1].address if i + 1 < len(drv.devices) else 0
        values = {
            "Type": IO_TYPE_DEVICE, "Size": self.struct_size, "ReferenceCount": self.reference_count,
            "DriverObject": drv.address, "NextDevice": nxt,
            "AttachedDevice": self.attached_device.address if self.attached_device else 0,
            "CurrentIrp": self.current_irp, "Flags": self.flags, "Characteristics": self.characteristics,
            "DeviceExtension": self.extension_address, "DeviceType": self.device_type, "StackSize": self.stack_size,
            "DeviceObjectExtension": self.devobj_extension,
            # KeInitializeDeviceQueue(&DeviceQueue) and KeInitializeEvent(&DeviceLock, SynchronizationEvent, TRUE)
            "DeviceQueue": _dispatcher_bytes(self.address + 0xA0, DeviceQueueObject, 0x28, None),
            "DeviceLock": _dispatcher_bytes(self.address + 0x118, 1, 0x18, 1),
        }
        self.kernel.mem.write(self.address, LAYOUTS["_DEVICE_OBJECT"].pack(values))


def IoCreateDevice(DriverObject: DriverObject, DeviceExtensionSize: int, DeviceName: str | None,
                   DeviceType: int, DeviceCharacteristics: int = 0,
                   Exclusive: bool = False) -> tuple[int, DeviceObject | None]:
    k = current_kernel()
    if DeviceName:
        path = DeviceName if DeviceName.startswith("\\") else f"\\Device\\{DeviceName}"
        if path in k.objects:
            return STATUS_OBJECT_NAME_COLLISION, None
    else:
        path = None
    dev = DeviceObject(k, DriverObject, path, DeviceType, DeviceExtensionSize, DeviceCharacteristics)
    DriverObject.devices.append(dev)
    if path:
        k.objects[path] = dev
    return STATUS_SUCCESS, dev


def IoDeleteDevice(DeviceObject: DeviceObject) -> None:
    k = current_kernel()
    drv = DeviceObject.driver_object
    if DeviceObject in drv.devices:
        drv.devices.remove(DeviceObject)
    if DeviceObject.name and k.objects.get(DeviceObject.name) is DeviceObject:
        del k.objects[DeviceObject.name]
    k.unregister_object(DeviceObject)
    k.pool.free(DeviceObject.address, "Devi")


def IoAttachDeviceToDeviceStack(Source: DeviceObject, Target: DeviceObject) -> DeviceObject:
    top = Target
    while top.attached_device is not None:
        top = top.attached_device
    top.attached_device = Source
    Source.lower_device = top
    Source.stack_size = top.stack_size + 1
    return top


def IoGetDeviceObjectPointer(name: str) -> DeviceObject | None:
    k = _current[-1]  # current_kernel(), inlined: on the per-request path
    objects = k.objects
    key = name if name[:1] == "\\" else f"\\Device\\{name}"  # (a slice, not startswith: no call)
    obj = objects[key] if key in objects else None
    return obj if obj.__class__ is DeviceObject or isinstance(obj, DeviceObject) else None


@dataclass(slots=True)
class DriverImage:
    """What `sc create` knows about a driver: its name, module, and DriverEntry."""

    name: str
    module: str
    driver_entry: Callable[..., Any]
    image: str = ""
    size: int = 0x20000
    pool_tags: tuple[str, ...] = ()
    description: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


def IoLoadDriver(k: Kernel, image: DriverImage, on_done: Callable[[int], None] | None = None) -> DriverObject:
    """Start loading a driver: map the module, create the object, run DriverEntry on a thread."""
    from .ke import PsCreateSystemThread
    k.load_module(image.module, image.image or f"{image.module}.sys", image.size)
    drv = DriverObject(k, image.name, image.module)
    drv.driver_init = image.driver_entry
    drv.pool_tags = {tag_from_str(t) for t in image.pool_tags}
    k.objects[drv.name] = drv
    k.drivers[image.name.lower()] = drv

    def loader(_: Any):
        result = image.driver_entry(drv, f"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\{image.name}")
        status = (yield from result) if inspect.isgenerator(result) else result
        status = STATUS_SUCCESS if status is None else status
        kk = current_kernel()
        if NT_SUCCESS(status):
            drv.loaded = True
        else:
            _remove_driver(kk, drv)
        kk.publish(DriverLoaded, driver=drv.name, status=status)
        if on_done is not None:
            on_done(status)
        return status

    loader.symbol = "nt!IopLoadDriver"  # type: ignore[attr-defined]
    from .symbols import push_kernel, pop_kernel
    push_kernel(k)
    try:
        thread = PsCreateSystemThread(loader, None, name=f"IopLoadDriver {image.name}")
        if thread is None:  # no thread to run DriverEntry on: the load fails at once
            _remove_driver(k, drv)
            k.publish(DriverLoaded, driver=drv.name, status=STATUS_INSUFFICIENT_RESOURCES)
            if on_done is not None:
                on_done(STATUS_INSUFFICIENT_RESOURCES)
    finally:
        pop_kernel()
    return drv


def IoUnloadDriver(k: Kernel, drv: DriverObject, on_done: Callable[[int], None] | None = None) -> None:
    """`sc stop`: run DriverUnload on a thread (it may wait), then check for leaks."""
    from .ke import PsCreateSystemThread

    def unloader(_: Any):
        kk = current_kernel()
        if drv.driver_unload is not None:
            result = drv.driver_unload(drv)
            if inspect.isgenerator(result):
                yield from result
        _check_lookaside_lists_deleted(kk, drv)
        leaks = [b for b in kk.pool.allocated_blocks() if b.tag in drv.pool_tags]
        _remove_driver(kk, drv)
        kk.publish(DriverUnloaded, driver=drv.name)
        if leaks:
            b = leaks[0]
            kk.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.C4_POOL_LEAK_ON_UNLOAD, drv.address,
                        len(leaks), b.address,
                        detail=f"{len(leaks)} pool allocations with the driver's tags were not freed "
                               f"(first: {b.tag_str} at {b.address:x}, {b.requested} bytes)")
        if on_done is not None:
            on_done(STATUS_SUCCESS)
        return STATUS_SUCCESS

    unloader.symbol = "nt!IopUnloadDriver"  # type: ignore[attr-defined]
    from .symbols import push_kernel, pop_kernel
    push_kernel(k)
    try:
        if PsCreateSystemThread(unloader, None, name=f"IopUnloadDriver {drv.short_name}") is None:
            if on_done is not None:  # the driver stays loaded; `sc stop` can be tried again
                on_done(STATUS_INSUFFICIENT_RESOURCES)
    finally:
        pop_kernel()


def _check_lookaside_lists_deleted(k: Kernel, drv: DriverObject) -> None:
    """A lookaside list the driver set up and never deleted stays on the kernel's list, where the
    balance set manager's ExAdjustLookasideDepth reads it after the driver's memory is gone: bug
    check 0xCE.  The lab has no balance set manager, so the check runs at unload, as the pool-leak
    check does."""
    from .lookaside import lookaside_lists
    module = drv.module.lower()
    for lookaside in lookaside_lists(k).values():
        if lookaside.owner.partition("!")[0].lower() == module:
            k.bugcheck(bc.DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS, lookaside.address, 0,
                       k.symbol_address("nt!ExAdjustLookasideDepth"), 0,
                       detail=f"{drv.name} unloaded without ExDeleteLookasideListEx of its lookaside list "
                              f"at {lookaside.address:x} (tag {lookaside.tag_text})")


def _remove_driver(k: Kernel, drv: DriverObject) -> None:
    for dev in list(drv.devices):
        IoDeleteDevice(dev)
    k.objects.pop(drv.name, None)
    k.drivers.pop(drv.short_name.lower(), None)
    k.unregister_object(drv)
    k.pool.free(drv.address, "Driv")
    drv.loaded = False
    k.unload_module(drv.module)


__all__ = ["FAST_IO_DISPATCH", "DriverObject", "DeviceObject", "DriverImage", "IoCreateDevice", "IoDeleteDevice", "IoLoadDriver",
           "IoUnloadDriver", "IoAttachDeviceToDeviceStack", "IoGetDeviceObjectPointer", "STATUS_UNSUCCESSFUL"]
