"""Calling a file system with IRPs, as a kernel-mode client does it.

Each helper allocates an IRP with IoAllocateIrp, fills the next stack location
(major, minor, FileObject, Parameters), sets a completion routine that returns
STATUS_MORE_PROCESSING_REQUIRED (so the IRP comes back to its owner) and
calls IoCallDriver — every step shows up as IRP events and in `!irp`.
kfs completes every IRP synchronously, so these calls return the final
status and may run at DISPATCH_LEVEL (from a send completion routine, say).

The FILE_OBJECT is what the I/O manager would build in IopParseDevice before
IRP_MJ_CREATE: ``IoCreateFileObject`` allocates it in nonpaged pool.
"""

from __future__ import annotations

from typing import Any

from stack.fs.kfs import (FILE_BASIC_INFORMATION, FILE_OBJECT_SIZE, FILE_OBJECT_TAG, FILE_STANDARD_INFORMATION,
                          FILE_STANDARD_INFORMATION_SIZE, CreateParameters, FileObject, FileStandardInformation, FsError,
                          QueryFileParameters, ReadParameters)
from stack.kernel import (IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_QUERY_INFORMATION, IRP_MJ_READ,
                          IRP_MN_COMPLETE_MDL, IRP_MN_MDL, IRP_MN_NORMAL, NT_SUCCESS, STATUS_INSUFFICIENT_RESOURCES,
                          STATUS_INVALID_DEVICE_REQUEST,
                          STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING, ExAllocatePoolWithTag, ExFreePoolWithTag,
                          IoAllocateIrp, IoCallDriver, IoFreeIrp, IoGetNextIrpStackLocation, IoSetCompletionRoutine,
                          Mdl, NonPagedPoolNx, current_kernel, kroutine)
from stack.kernel.io import DeviceObject
from stack.kernel.irp import IopAllocateIrpMustSucceed, IoStatusBlock

FILE_INFO_TAG = "FsIn"


@kroutine("nt")
def IopSynchronousFsCompletion(DeviceObject: Any, Irp: Any, Context: Any) -> int:
    """The IRP goes back to whoever allocated it; the caller reads IoStatus."""
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine("nt")
def IoCreateFileObject(DeviceObject: DeviceObject, FileName: str) -> FileObject | None:
    """A FILE_OBJECT for `FileName` on the volume, as the object manager builds one (not yet opened)."""
    k = current_kernel()
    address = ExAllocatePoolWithTag(NonPagedPoolNx, FILE_OBJECT_SIZE + 2 * len(FileName), FILE_OBJECT_TAG)
    if not address:
        return None
    file_object = FileObject(k, address, DeviceObject, FileName)
    k.register_object(file_object)
    return file_object


@kroutine("nt")
def IoDeleteFileObject(FileObject: FileObject) -> None:
    k = current_kernel()
    k.unregister_object(FileObject)
    ExFreePoolWithTag(FileObject.address, FILE_OBJECT_TAG)
    FileObject.closed = True


def fs_call(device: DeviceObject, file_object: FileObject | None, major: int, minor: int = 0,
            parameters: Any = None, mdl: Mdl | None = None, system_buffer: int = 0,
            user_buffer: int = 0) -> tuple[int, Any, Mdl | None]:
    """One synchronous IRP to the file system: (status, Information, Irp.MdlAddress after completion).

    Cleanup, close and the return of an MDL read must not fail: their IRP comes from the reserve."""
    must_succeed = major in (IRP_MJ_CLEANUP, IRP_MJ_CLOSE) or (major, minor) == (IRP_MJ_READ, IRP_MN_COMPLETE_MDL)
    irp = IopAllocateIrpMustSucceed(device.stack_size) if must_succeed else IoAllocateIrp(device.stack_size)
    if irp is None:
        return STATUS_INSUFFICIENT_RESOURCES, 0, None
    irp.mdl_address = mdl
    irp.system_buffer = system_buffer or None
    irp.user_buffer = user_buffer
    irp.original_file_object = file_object
    irp.thread = None
    stack = IoGetNextIrpStackLocation(irp)
    stack.major = major
    stack.minor = minor
    stack.parameters = parameters
    stack.file_object = file_object
    IoSetCompletionRoutine(irp, IopSynchronousFsCompletion, None, True, True, True)
    status = IoCallDriver(device, irp)
    if status == STATUS_PENDING:
        raise FsError(f"{device.name} pended a request; fs_call only drives synchronous file systems")
    status, information, returned = irp.IoStatus.Status, irp.IoStatus.Information, irp.mdl_address
    irp.mdl_address = None  # the MDL (if any) now belongs to the caller
    IoFreeIrp(irp)
    return status, information, returned


def fs_open(device: DeviceObject, file_name: str) -> tuple[int, FileObject | None]:
    """IRP_MJ_CREATE for an existing file: (status, opened FILE_OBJECT or None)."""
    file_object = IoCreateFileObject(device, file_name)
    if file_object is None:
        return STATUS_INSUFFICIENT_RESOURCES, None
    status, _, _ = fs_call(device, file_object, IRP_MJ_CREATE, parameters=CreateParameters())
    if not NT_SUCCESS(status):
        IoDeleteFileObject(file_object)
        return status, None
    return status, file_object


def fs_query_size(file_object: FileObject) -> tuple[int, int]:
    """FileStandardInformation's EndOfFile: (status, size).  As FsRtlGetFileSize and
    NtQueryInformationFile do, the file system's FastIoQueryStandardInfo first (no IRP); when it
    has none or declines, IRP_MJ_QUERY_INFORMATION."""
    device = file_object.DeviceObject
    fast_io = device.driver_object.fast_io_dispatch
    if fast_io is not None and fast_io.FastIoQueryStandardInfo is not None:
        info = FILE_STANDARD_INFORMATION()  # the caller's buffer (a local in C)
        iosb = IoStatusBlock()
        if fast_io.FastIoQueryStandardInfo(file_object, True, info, iosb, device):
            return iosb.Status, info.EndOfFile if NT_SUCCESS(iosb.Status) else 0
    k = current_kernel()
    buffer = ExAllocatePoolWithTag(NonPagedPoolNx, FILE_STANDARD_INFORMATION_SIZE, FILE_INFO_TAG)
    if not buffer:
        return STATUS_INSUFFICIENT_RESOURCES, 0
    try:
        status, _, _ = fs_call(file_object.DeviceObject, file_object, IRP_MJ_QUERY_INFORMATION,
                               parameters=QueryFileParameters(FILE_STANDARD_INFORMATION_SIZE,
                                                              FileStandardInformation),
                               system_buffer=buffer)
        size = int.from_bytes(k.read(buffer + 8, 8), "little") if NT_SUCCESS(status) else 0
    finally:
        ExFreePoolWithTag(buffer, FILE_INFO_TAG)
    return status, size


def fs_query_basic(file_object: FileObject) -> tuple[int, FILE_BASIC_INFORMATION | None]:
    """FileBasicInformation (the times) through the file system's FastIoQueryBasicInfo: (status,
    info).  kfs answers every file it knows there; a file system without it gets
    STATUS_INVALID_DEVICE_REQUEST (the lab's IRP_MJ_QUERY_INFORMATION only knows the sizes)."""
    device = file_object.DeviceObject
    fast_io = device.driver_object.fast_io_dispatch
    if fast_io is not None and fast_io.FastIoQueryBasicInfo is not None:
        info = FILE_BASIC_INFORMATION()
        iosb = IoStatusBlock()
        if fast_io.FastIoQueryBasicInfo(file_object, True, info, iosb, device):
            return iosb.Status, info if NT_SUCCESS(iosb.Status) else None
    return STATUS_INVALID_DEVICE_REQUEST, None


def fs_mdl_read(file_object: FileObject, offset: int, length: int) -> tuple[int, Mdl | None]:
    """IRP_MJ_READ / IRP_MN_MDL: (status, MDL chain over the cached pages)."""
    status, _, mdl = fs_call(file_object.DeviceObject, file_object, IRP_MJ_READ, IRP_MN_MDL,
                             ReadParameters(length, 0, offset))
    return status, mdl if NT_SUCCESS(status) else None


def fs_mdl_read_complete(file_object: FileObject, mdl: Mdl) -> int:
    """IRP_MJ_READ / IRP_MN_COMPLETE_MDL: give an MDL chain from fs_mdl_read back to the cache."""
    status, _, leftover = fs_call(file_object.DeviceObject, file_object, IRP_MJ_READ, IRP_MN_COMPLETE_MDL,
                                  ReadParameters(0, 0, 0), mdl=mdl)
    if leftover is not None:
        raise FsError("the file system did not take the MDL chain back")
    return status


def fs_read(file_object: FileObject, offset: int, length: int, buffer: Mdl | int) -> tuple[int, int]:
    """IRP_MJ_READ / IRP_MN_NORMAL into an MDL (direct I/O) or a kernel VA: (status, bytes read)."""
    if isinstance(buffer, Mdl):
        status, information, _ = fs_call(file_object.DeviceObject, file_object, IRP_MJ_READ, IRP_MN_NORMAL,
                                         ReadParameters(length, 0, offset), mdl=buffer)
    else:
        status, information, _ = fs_call(file_object.DeviceObject, file_object, IRP_MJ_READ, IRP_MN_NORMAL,
                                         ReadParameters(length, 0, offset), user_buffer=buffer)
    return status, int(information or 0)


def fs_close(file_object: FileObject) -> int:
    """IRP_MJ_CLEANUP then IRP_MJ_CLOSE, then the FILE_OBJECT is deleted."""
    device = file_object.DeviceObject
    fs_call(device, file_object, IRP_MJ_CLEANUP)
    status, _, _ = fs_call(device, file_object, IRP_MJ_CLOSE)
    IoDeleteFileObject(file_object)
    return status


__all__ = ["IoCreateFileObject", "IoDeleteFileObject", "fs_call", "fs_open", "fs_query_size", "fs_query_basic", "fs_mdl_read",
           "fs_mdl_read_complete", "fs_read", "fs_close"]
