"""ZwCreateFile / ZwClose / ObReferenceObjectByHandle for TDI file objects (kernel handles).

TDI opens its objects as files: the object manager parses the name to a device
(\\Device\\Tcp), builds a FILE_OBJECT and sends IRP_MJ_CREATE with the caller's
extended attributes in Parameters.Create.EaBuffer.  A kernel handle table maps
handles to file objects; ZwClose sends IRP_MJ_CLEANUP and, with the last reference
gone, IRP_MJ_CLOSE.  Every routine here runs only at PASSIVE_LEVEL (the object
manager touches paged pool): called at DISPATCH_LEVEL it bug-checks 0xA, which is
why a TDI client's connect event handler cannot open the endpoint it accepts on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stack.kernel import (IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, NT_SUCCESS, PASSIVE_LEVEL,
                          STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_HANDLE, STATUS_MORE_PROCESSING_REQUIRED,
                          STATUS_OBJECT_NAME_NOT_FOUND, STATUS_PENDING, STATUS_SUCCESS, ExAllocatePoolWithTag,
                          ExFreePoolWithTag, IoAllocateIrp, IoCallDriver, IoFreeIrp, IoGetNextIrpStackLocation,
                          IoSetCompletionRoutine, NonPagedPoolNx, current_kernel, kroutine)
from stack.kernel import bugcheck as bc
from stack.kernel.io import DeviceObject

FILE_OBJECT_TAG = "File"
FILE_OBJECT_SIZE = 0xD8
HANDLE_TABLE_KEY = "ob.kernel_handles"
KERNEL_HANDLE_BASE = 0xFFFFFFFF80000000  # OBJ_KERNEL_HANDLE: the high bit set

GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
FILE_OPEN_IF = 3
FILE_SHARE_READ = 1
FILE_SHARE_WRITE = 2
OBJ_CASE_INSENSITIVE = 0x40
OBJ_KERNEL_HANDLE = 0x200


@dataclass(slots=True)
class Ref:
    """An out parameter (PHANDLE, PFILE_OBJECT *, PIRP *)."""

    value: Any = None


@dataclass(slots=True)
class OBJECT_ATTRIBUTES:
    ObjectName: str
    Attributes: int = OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE


def InitializeObjectAttributes(ObjectName: str, Attributes: int = OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
                               RootDirectory: Any = None, SecurityDescriptor: Any = None) -> OBJECT_ATTRIBUTES:
    return OBJECT_ATTRIBUTES(ObjectName, Attributes)


@dataclass(slots=True)
class IO_STATUS_BLOCK:
    Status: int = 0
    Information: Any = 0


@dataclass(slots=True)
class CreateParameters:
    """Parameters.Create: what !irp prints as Args (EaLength)."""

    DesiredAccess: int
    EaBuffer: Any
    EaLength: int

    def arguments(self) -> tuple[int, ...]:
        return (0, self.DesiredAccess, 0, self.EaLength)


class FILE_OBJECT:
    """A file object in nonpaged pool; FsContext/FsContext2 belong to the driver that opened it."""

    def __init__(self, address: int, device: DeviceObject, name: str) -> None:
        self.address = address
        self.DeviceObject = device
        self.FileName = name
        self.FsContext: Any = None
        self.FsContext2: Any = None
        self.references = 1  # the handle's
        self.handles = 0
        self.cleaned_up = False
        self.closed = False

    def __repr__(self) -> str:
        return f"<FILE_OBJECT {self.address:x} {self.FileName}>"


def _handles() -> dict[int, FILE_OBJECT]:
    k = current_kernel()
    table = k.extensions.get(HANDLE_TABLE_KEY)
    if table is None:
        table = k.extensions[HANDLE_TABLE_KEY] = {"next": 0x100, "objects": {}}
    return table


def _require_passive(routine: str) -> None:
    k = current_kernel()
    if k.irql > PASSIVE_LEVEL:
        k.bugcheck(bc.IRQL_NOT_LESS_OR_EQUAL, 0, k.irql, 0, 0,
                   detail=f"{routine} called at IRQL {k.irql} (it touches paged memory; PASSIVE_LEVEL only)")


@kroutine("nt")
def IopSynchronousCreateCompletion(DeviceObject: Any, Irp: Any, Context: Any) -> int:
    return STATUS_MORE_PROCESSING_REQUIRED


def _send_file_irp(device: DeviceObject, file_object: FILE_OBJECT, major: int, parameters: Any = None) -> int:
    irp = IoAllocateIrp(device.stack_size)
    if irp is None:
        return STATUS_INSUFFICIENT_RESOURCES
    irp.original_file_object = file_object
    loc = IoGetNextIrpStackLocation(irp)
    loc.major = major
    loc.file_object = file_object
    loc.parameters = parameters
    IoSetCompletionRoutine(irp, IopSynchronousCreateCompletion, None, True, True, True)
    status = IoCallDriver(device, irp)
    if status != STATUS_PENDING:
        status = irp.IoStatus.Status
    IoFreeIrp(irp)
    return status


@kroutine("nt")
def ZwCreateFile(FileHandle: Ref, DesiredAccess: int, ObjectAttributes: OBJECT_ATTRIBUTES | str,
                 IoStatusBlock: IO_STATUS_BLOCK | None, AllocationSize: Any = None, FileAttributes: int = 0,
                 ShareAccess: int = 0, CreateDisposition: int = FILE_OPEN_IF, CreateOptions: int = 0,
                 EaBuffer: Any = None, EaLength: int = 0) -> int:
    """Open `\\Device\\Tcp` (etc.): IRP_MJ_CREATE with the EA buffer; a kernel handle on success."""
    _require_passive("ZwCreateFile")
    k = current_kernel()
    name = ObjectAttributes if isinstance(ObjectAttributes, str) else ObjectAttributes.ObjectName
    device = k.objects.get(name)
    if not isinstance(device, DeviceObject):
        if IoStatusBlock is not None:
            IoStatusBlock.Status = STATUS_OBJECT_NAME_NOT_FOUND
        return STATUS_OBJECT_NAME_NOT_FOUND
    address = ExAllocatePoolWithTag(NonPagedPoolNx, FILE_OBJECT_SIZE, FILE_OBJECT_TAG)
    if not address:
        return STATUS_INSUFFICIENT_RESOURCES
    file_object = FILE_OBJECT(address, device, name)
    k.register_object(file_object)
    status = _send_file_irp(device, file_object, IRP_MJ_CREATE, CreateParameters(DesiredAccess, EaBuffer, EaLength))
    if IoStatusBlock is not None:
        IoStatusBlock.Status = status
    if not NT_SUCCESS(status):
        k.unregister_object(file_object)
        ExFreePoolWithTag(address, FILE_OBJECT_TAG)
        return status
    table = _handles()
    handle = KERNEL_HANDLE_BASE | table["next"]
    table["next"] += 4
    table["objects"][handle] = file_object
    file_object.handles = 1
    FileHandle.value = handle
    return STATUS_SUCCESS


@kroutine("nt")
def ObReferenceObjectByHandle(Handle: int, DesiredAccess: int, ObjectType: Any, AccessMode: int, Object: Ref,
                              HandleInformation: Any = None) -> int:
    _require_passive("ObReferenceObjectByHandle")
    file_object = _handles()["objects"].get(Handle)
    if file_object is None:
        return STATUS_INVALID_HANDLE
    file_object.references += 1
    Object.value = file_object
    return STATUS_SUCCESS


def lookup_handle(Handle: int) -> FILE_OBJECT | None:
    """The object behind a kernel handle without taking a reference (tdx validating a request)."""
    return _handles()["objects"].get(Handle)


@kroutine("nt")
def ObDereferenceObject(Object: FILE_OBJECT) -> None:
    Object.references -= 1
    if Object.references == 0:
        _close_file(Object)


def _close_file(file_object: FILE_OBJECT) -> None:
    k = current_kernel()
    if file_object.closed:
        return
    file_object.closed = True
    _send_file_irp(file_object.DeviceObject, file_object, IRP_MJ_CLOSE)
    k.unregister_object(file_object)
    ExFreePoolWithTag(file_object.address, FILE_OBJECT_TAG)


@kroutine("nt")
def ZwClose(Handle: int) -> int:
    """IRP_MJ_CLEANUP now; IRP_MJ_CLOSE once the last reference is dropped."""
    _require_passive("ZwClose")
    file_object = _handles()["objects"].pop(Handle, None)
    if file_object is None:
        return STATUS_INVALID_HANDLE
    file_object.handles = 0
    file_object.cleaned_up = True
    _send_file_irp(file_object.DeviceObject, file_object, IRP_MJ_CLEANUP)
    ObDereferenceObject(file_object)
    return STATUS_SUCCESS


def IoGetRelatedDeviceObject(FileObject: FILE_OBJECT) -> DeviceObject:
    return FileObject.DeviceObject
