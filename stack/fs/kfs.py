"""kfs: a read-only file system driver over the document root manifest.

\\Driver\\kfs owns one volume, \\Device\\HarddiskVolume1.  Every IRP it gets is
completed synchronously (the data is in the cache manager's pages or is read
into them on the spot), so it can be called at DISPATCH_LEVEL, including from
a send completion routine:

* IRP_MJ_CREATE   FileObject.FileName ("\\files\\4KB.bin" or "files/4KB.bin")
                  must name a manifest file exactly; anything else (``..``,
                  ``.``, empty segments, streams, unknown names) is refused.
                  Sets FsContext (the FCB) and FsContext2 (a per-open CCB).
* IRP_MJ_QUERY_INFORMATION  FileStandardInformation into SystemBuffer.
* IRP_MJ_READ     IRP_MN_NORMAL: CcCopyRead into Irp.MdlAddress (or UserBuffer).
                  IRP_MN_MDL: Irp.MdlAddress = CcMdlRead chain (zero copy).
                  IRP_MN_COMPLETE_MDL: CcMdlReadComplete(Irp.MdlAddress).
* IRP_MJ_CLEANUP / IRP_MJ_CLOSE  free the CCB.

Fast I/O (DriverObject->FastIoDispatch, no IRP): FastIoQueryBasicInfo / FastIoQueryStandardInfo, MdlRead /
MdlReadComplete for a file whose pages are already cached (FsRtlMdlReadEx calls them first).
KfsReplaceFile puts a new version of a file on the volume (an administrator's copy: clients
cannot write), which is how a file changes under khttpd's open-file cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from stack.fs.cache import (CacheManager, CcCopyRead, CcMdlRead, CcMdlReadComplete, CcPurgeCacheSection,
                            SharedCacheMap)
from stack.fs.docroot_manifest import DOCROOT_SIZES, FileContent, docroot_files, file_bytes
from stack.kernel import (IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_QUERY_INFORMATION, IRP_MJ_READ,
                          IRP_MN_COMPLETE_MDL, IRP_MN_MDL, IRP_MN_NORMAL, STATUS_BUFFER_TOO_SMALL,
                          STATUS_END_OF_FILE, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_REQUEST,
                          STATUS_INVALID_PARAMETER, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS, ExFreePoolWithTag,
                          IoCompleteRequest, IoCreateDevice, IoDeleteDevice, IoGetCurrentIrpStackLocation, Mdl,
                          NonPagedPoolNx, ExAllocatePoolWithTag, current_kernel, kroutine)
from stack.kernel.io import (DO_DIRECT_IO, FAST_IO_DISPATCH, FAST_IO_DISPATCH_SIZE, FILE_DEVICE_DISK_FILE_SYSTEM,
                             DeviceObject, DriverImage, DriverObject)
from stack.kernel.layouts import F, LAYOUTS, StructLayout, register_layout
from stack.kernel.kernel import BOOT_EPOCH_S

STATUS_OBJECT_NAME_INVALID = 0xC0000033
VOLUME_DEVICE_NAME = "\\Device\\HarddiskVolume1"
FCB_TAG = "KfsF"
CCB_TAG = "KfsC"
FILE_OBJECT_TAG = "File"  # the I/O manager's tag for file objects
FCB_POOL_SIZE = 0x180  # sizeof(FCB) of a small FAT-like driver
CCB_POOL_SIZE = 0x40

IO_TYPE_FILE = 5
FILE_OBJECT_SIZE = 0xD8
FileBasicInformation = 4
FileStandardInformation = 5
FILE_STANDARD_INFORMATION_SIZE = 24
FILE_BASIC_INFORMATION_SIZE = 40
FILE_ATTRIBUTE_READONLY = 0x01
STATUS_SHARING_VIOLATION = 0xC0000043
# The volume's files carry one time until something replaces them: 2024-01-01 00:00 UTC as a
# FILETIME (100 ns since 1601).  A replaced file's LastWriteTime is the system time of the replace
# (KeQuerySystemTime: the machine's boot time plus the virtual clock).
KFS_VOLUME_TIME = (1_704_067_200 + 11_644_473_600) * 10_000_000
BOOT_FILETIME = (BOOT_EPOCH_S + 11_644_473_600) * 10_000_000


@dataclass(slots=True)
class FILE_STANDARD_INFORMATION:
    """What FileStandardInformation returns (the caller's buffer on the fast I/O path)."""

    AllocationSize: int = 0
    EndOfFile: int = 0
    NumberOfLinks: int = 0
    DeletePending: bool = False
    Directory: bool = False

    def pack(self) -> bytes:
        return (self.AllocationSize.to_bytes(8, "little") + self.EndOfFile.to_bytes(8, "little")
                + self.NumberOfLinks.to_bytes(4, "little") + bytes((int(self.DeletePending), int(self.Directory)))
                + bytes(2))

@dataclass(slots=True)
class FILE_BASIC_INFORMATION:
    """What FileBasicInformation returns (FastIoQueryBasicInfo fills the caller's buffer)."""

    CreationTime: int = 0
    LastAccessTime: int = 0
    LastWriteTime: int = 0
    ChangeTime: int = 0
    FileAttributes: int = 0


register_layout(StructLayout("_UNICODE_STRING", 0x10, [
    F("Length", 0x00, "u16"), F("MaximumLength", 0x02, "u16"), F("Buffer", 0x08, "ptr", "Wchar"),
]))
register_layout(StructLayout("_FILE_OBJECT", FILE_OBJECT_SIZE, [
    F("Type", 0x00, "i16"), F("Size", 0x02, "i16"),
    F("DeviceObject", 0x08, "ptr", "_DEVICE_OBJECT"), F("Vpb", 0x10, "ptr", "_VPB"),
    F("FsContext", 0x18, "ptr", "Void"), F("FsContext2", 0x20, "ptr", "Void"),
    F("SectionObjectPointer", 0x28, "ptr", "_SECTION_OBJECT_POINTERS"),
    F("PrivateCacheMap", 0x30, "ptr", "Void"), F("FinalStatus", 0x38, "i32"),
    F("RelatedFileObject", 0x40, "ptr", "_FILE_OBJECT"), F("LockOperation", 0x48, "u8"),
    F("DeletePending", 0x49, "u8"), F("ReadAccess", 0x4A, "u8"), F("WriteAccess", 0x4B, "u8"),
    F("DeleteAccess", 0x4C, "u8"), F("SharedRead", 0x4D, "u8"), F("SharedWrite", 0x4E, "u8"),
    F("SharedDelete", 0x4F, "u8"), F("Flags", 0x50, "u32"),
    F("FileName", 0x58, "struct", "_UNICODE_STRING", size=0x10),
    F("CurrentByteOffset", 0x68, "i64"), F("Waiters", 0x70, "u32"), F("Busy", 0x74, "u32"),
    F("LastLock", 0x78, "ptr", "Void"),
]))


class FsError(Exception):
    """A file system call that cannot be made as asked (a caller bug, not an I/O status)."""


# --- stack location parameters (Parameters.Create / .Read / .QueryFile) ----------------------

@dataclass(slots=True)
class CreateParameters:
    DesiredAccess: int = 0x80000000  # GENERIC_READ
    Options: int = 0x01 << 24  # FILE_OPEN
    FileAttributes: int = 0
    ShareAccess: int = 1  # FILE_SHARE_READ

    def arguments(self) -> tuple[int, int, int, int]:
        return (0, self.Options, self.FileAttributes | (self.ShareAccess << 16), 0)


@dataclass(slots=True)
class ReadParameters:
    Length: int
    Key: int = 0
    ByteOffset: int = 0

    def arguments(self) -> tuple[int, int, int, int]:
        return (self.Length, self.Key, self.ByteOffset, 0)


@dataclass(slots=True)
class QueryFileParameters:
    Length: int
    FileInformationClass: int = FileStandardInformation

    def arguments(self) -> tuple[int, int, int, int]:
        return (self.Length, self.FileInformationClass, 0, 0)


# --- the objects -------------------------------------------------------------------------------

class FileObject:
    """A FILE_OBJECT in nonpaged pool, its FileName buffer right after it."""

    def __init__(self, k: Any, address: int, device: DeviceObject, name: str) -> None:
        self.kernel = k
        self.address = address
        self.DeviceObject = device
        self.FileName = name
        self.FsContext: Fcb | None = None
        self.FsContext2: Ccb | None = None
        self.SectionObjectPointer: SharedCacheMap | None = None
        self.CurrentByteOffset = 0
        self.FinalStatus = 0
        self.struct_size = FILE_OBJECT_SIZE + 2 * len(name)
        self.closed = False

    def flush(self) -> None:
        name = self.FileName.encode("utf-16-le")
        header = LAYOUTS["_FILE_OBJECT"].pack({
            "Type": IO_TYPE_FILE, "Size": FILE_OBJECT_SIZE, "DeviceObject": self.DeviceObject,
            "FsContext": self.FsContext, "FsContext2": self.FsContext2, "ReadAccess": 1, "SharedRead": 1,
            "FinalStatus": self.FinalStatus, "CurrentByteOffset": self.CurrentByteOffset,
            "SectionObjectPointer": self.FsContext.address + 0x100 if self.FsContext else 0,
            "FileName": LAYOUTS["_UNICODE_STRING"].pack({
                "Length": len(name), "MaximumLength": len(name),
                "Buffer": self.address + FILE_OBJECT_SIZE if name else 0}),
        })
        self.kernel.mem.write(self.address, header + name)

    def __repr__(self) -> str:
        return f"<FileObject {self.address:x} {self.FileName!r}>"


@dataclass(slots=True, eq=False)
class Fcb:
    """File control block: one per file ever opened on the volume (kept while mounted)."""

    address: int
    name: str
    FileSize: int
    cache: SharedCacheMap
    open_count: int = 0
    LastWriteTime: int = KFS_VOLUME_TIME


@dataclass(slots=True, eq=False)
class Ccb:
    """Context control block: one per open."""

    address: int
    fcb: Fcb


@dataclass(slots=True)
class Volume:
    """The device extension of \\Device\\HarddiskVolume1."""

    files: dict[str, FileContent]
    sizes: dict[str, int]
    fcbs: dict[str, Fcb]
    creates: int = 0
    refused: int = 0


_CONTROL_CHARACTER = re.compile("[\x00-\x1f]")  # no control character in a file name


def canonical_file_name(file_name: str) -> str | None:
    """"\\files\\4KB.bin" -> "files/4KB.bin"; None for anything that is not a plain relative path."""
    if not isinstance(file_name, str) or not file_name:
        return None
    name = file_name.replace("\\", "/")
    if name.startswith("/"):
        name = name[1:]
    if _CONTROL_CHARACTER.search(name):
        return None
    segments = name.split("/")
    for segment in segments:
        if segment in ("", ".", "..") or ":" in segment:
            return None
    return "/".join(segments)


def volume_of(device: DeviceObject) -> Volume:
    volume = device.extension
    if not isinstance(volume, Volume):
        raise FsError(f"{device.name} is not a kfs volume")
    return volume


def _complete(Irp: Any, status: int, information: Any = 0) -> int:
    Irp.IoStatus.Status = status
    Irp.IoStatus.Information = information
    IoCompleteRequest(Irp)
    return status


# --- dispatch routines ---------------------------------------------------------------------------

@kroutine("kfs")
def KfsCommonCreate(DeviceObject: DeviceObject, Irp: Any) -> int:
    k = current_kernel()
    volume = volume_of(DeviceObject)
    stack = IoGetCurrentIrpStackLocation(Irp)
    file_object: FileObject | None = stack.file_object
    if file_object is None:
        return _complete(Irp, STATUS_INVALID_PARAMETER)
    name = canonical_file_name(file_object.FileName)
    if name is None:
        volume.refused += 1
        return _complete(Irp, STATUS_OBJECT_NAME_INVALID)
    if name not in volume.sizes:
        volume.refused += 1
        return _complete(Irp, STATUS_OBJECT_NAME_NOT_FOUND)
    fcb = volume.fcbs.get(name)
    if fcb is None:
        address = ExAllocatePoolWithTag(NonPagedPoolNx, FCB_POOL_SIZE, FCB_TAG)
        if not address:
            return _complete(Irp, STATUS_INSUFFICIENT_RESOURCES)
        cache = CacheManager.of(k).initialize_cache_map(f"{DeviceObject.name}\\{name}", volume.sizes[name])
        fcb = volume.fcbs[name] = Fcb(address, name, volume.sizes[name], cache)
        k.addr_objects[address] = fcb
    ccb_address = ExAllocatePoolWithTag(NonPagedPoolNx, CCB_POOL_SIZE, CCB_TAG)
    if not ccb_address:
        return _complete(Irp, STATUS_INSUFFICIENT_RESOURCES)
    fcb.open_count += 1
    file_object.FsContext = fcb
    file_object.FsContext2 = Ccb(ccb_address, fcb)
    file_object.SectionObjectPointer = fcb.cache
    volume.creates += 1
    return _complete(Irp, STATUS_SUCCESS, 1)  # FILE_OPENED


@kroutine("kfs")
def KfsCommonClose(DeviceObject: DeviceObject, Irp: Any) -> int:
    stack = IoGetCurrentIrpStackLocation(Irp)
    file_object: FileObject | None = stack.file_object
    if stack.major == IRP_MJ_CLOSE and file_object is not None and file_object.FsContext2 is not None:
        ccb = file_object.FsContext2
        ExFreePoolWithTag(ccb.address, CCB_TAG)
        ccb.fcb.open_count -= 1
        file_object.FsContext2 = None
    return _complete(Irp, STATUS_SUCCESS)


@kroutine("kfs")
def KfsCommonQueryInformation(DeviceObject: DeviceObject, Irp: Any) -> int:
    k = current_kernel()
    stack = IoGetCurrentIrpStackLocation(Irp)
    fcb = _fcb_of(stack.file_object)
    params: QueryFileParameters = stack.parameters
    if fcb is None or not isinstance(params, QueryFileParameters):
        return _complete(Irp, STATUS_INVALID_PARAMETER)
    if params.FileInformationClass != FileStandardInformation:
        return _complete(Irp, STATUS_INVALID_PARAMETER)
    if params.Length < FILE_STANDARD_INFORMATION_SIZE or not Irp.system_buffer:
        return _complete(Irp, STATUS_BUFFER_TOO_SMALL)
    info = FILE_STANDARD_INFORMATION()
    _standard_information(fcb, info)
    k.write(Irp.system_buffer, info.pack())
    return _complete(Irp, STATUS_SUCCESS, FILE_STANDARD_INFORMATION_SIZE)


def _standard_information(fcb: Fcb, info: FILE_STANDARD_INFORMATION) -> None:
    """A file's FILE_STANDARD_INFORMATION: the same for the IRP and the fast I/O path."""
    info.AllocationSize = (fcb.FileSize + 0xFFF) & ~0xFFF
    info.EndOfFile = fcb.FileSize
    info.NumberOfLinks = 1
    info.DeletePending = info.Directory = False


@kroutine("kfs")
def KfsFastIoQueryStandardInfo(FileObject: FileObject, Wait: bool, Buffer: FILE_STANDARD_INFORMATION,
                               IoStatus: Any, DeviceObject: DeviceObject) -> bool:
    """FAST_IO_DISPATCH.FastIoQueryStandardInfo: the sizes are in the FCB, so no IRP is needed
    (FALSE for a file object kfs does not know: the caller then sends the IRP, which fails it)."""
    fcb = _fcb_of(FileObject)
    if fcb is None:
        return False
    _standard_information(fcb, Buffer)
    IoStatus.Status = STATUS_SUCCESS
    IoStatus.Information = FILE_STANDARD_INFORMATION_SIZE
    return True


@kroutine("kfs")
def KfsFastIoQueryBasicInfo(FileObject: FileObject, Wait: bool, Buffer: FILE_BASIC_INFORMATION,
                            IoStatus: Any, DeviceObject: DeviceObject) -> bool:
    """FAST_IO_DISPATCH.FastIoQueryBasicInfo: the times are in the FCB (FALSE for an unknown file object)."""
    fcb = _fcb_of(FileObject)
    if fcb is None:
        return False
    Buffer.CreationTime = Buffer.LastAccessTime = KFS_VOLUME_TIME
    Buffer.LastWriteTime = Buffer.ChangeTime = fcb.LastWriteTime
    Buffer.FileAttributes = FILE_ATTRIBUTE_READONLY
    IoStatus.Status = STATUS_SUCCESS
    IoStatus.Information = FILE_BASIC_INFORMATION_SIZE
    return True


@kroutine("kfs")
def KfsReplaceFile(DeviceObject: DeviceObject, FileName: str, Content: bytes) -> int:
    """A new version of an existing file on the volume, as an administrator's copy would leave it
    (kfs has no IRP_MJ_WRITE: the volume is read-only to its clients).  Open file objects keep
    the same FCB and see the new size and LastWriteTime; the old pages leave the cache
    (CcPurgeCacheSection), which refuses while any of them is locked or lent out in an MDL read:
    STATUS_SHARING_VIOLATION then, and nothing changes."""
    k = current_kernel()
    volume = volume_of(DeviceObject)
    name = canonical_file_name(FileName)
    if name is None or name not in volume.sizes:
        return STATUS_OBJECT_NAME_NOT_FOUND
    fcb = volume.fcbs.get(name)
    if fcb is not None:
        if not CcPurgeCacheSection(fcb.cache):
            return STATUS_SHARING_VIOLATION
        fcb.FileSize = fcb.cache.file_size = len(Content)
        # The clock's 100 ns tick, but always later than the last write: two replaces within one
        # tick still leave different times (the open-file cache and the validators rely on it).
        fcb.LastWriteTime = max(fcb.LastWriteTime + 1, BOOT_FILETIME + k.now_ns // 100)
    volume.files = {**volume.files, name: bytes(Content)}  # the manifest's dict may be shared: never edit it
    volume.sizes[name] = len(Content)
    return STATUS_SUCCESS


@kroutine("kfs")
def KfsFastIoMdlRead(FileObject: FileObject, FileOffset: int, Length: int, LockKey: int, MdlChain: Any,
                     IoStatus: Any, DeviceObject: DeviceObject) -> bool:
    """FAST_IO_DISPATCH.MdlRead (what FsRtlMdlReadDev is for NTFS and FAT): when the file's pages are
    already in the cache, CcMdlRead them into MdlChain.value with no IRP.  FALSE sends the caller to
    IRP_MJ_READ / IRP_MN_MDL: a file not cached yet (the IRP path reads it in), a file object kfs
    does not know, or no pool for the MDLs (the IRP path then fails the read the ordinary way)."""
    fcb = _fcb_of(FileObject)
    if fcb is None or not fcb.cache.loaded or FileOffset < 0 or Length < 0:
        return False
    IoStatus.Information = 0
    if Length == 0:
        IoStatus.Status = STATUS_SUCCESS
        return True
    if FileOffset >= fcb.FileSize:
        IoStatus.Status = STATUS_END_OF_FILE
        return True
    length = min(Length, fcb.FileSize - FileOffset)
    k = current_kernel()
    if k.cpu_model is not None:
        k.charge("fs_read_page", (length + 4095) // 4096)
    chain = CcMdlRead(FileObject, FileOffset, length, IoStatus)
    if chain is None:
        return False
    MdlChain.value = chain
    FileObject.CurrentByteOffset = FileOffset + length
    return True


@kroutine("kfs")
def KfsFastIoMdlReadComplete(FileObject: FileObject, MdlChain: Mdl, DeviceObject: DeviceObject) -> bool:
    """FAST_IO_DISPATCH.MdlReadComplete (FsRtlMdlReadCompleteDev): CcMdlReadComplete, no IRP.
    FALSE for a file object kfs does not know (the caller then sends IRP_MN_COMPLETE_MDL)."""
    if _fcb_of(FileObject) is None:
        return False
    CcMdlReadComplete(FileObject, MdlChain)
    return True


@kroutine("kfs")
def KfsCommonRead(DeviceObject: DeviceObject, Irp: Any) -> int:
    k = current_kernel()
    volume = volume_of(DeviceObject)
    stack = IoGetCurrentIrpStackLocation(Irp)
    file_object: FileObject | None = stack.file_object
    fcb = _fcb_of(file_object)
    if fcb is None or file_object is None:
        return _complete(Irp, STATUS_INVALID_PARAMETER)
    if stack.minor == IRP_MN_COMPLETE_MDL:
        if not isinstance(Irp.mdl_address, Mdl):
            return _complete(Irp, STATUS_INVALID_PARAMETER)
        CcMdlReadComplete(file_object, Irp.mdl_address)
        Irp.mdl_address = None
        return _complete(Irp, STATUS_SUCCESS)
    params: ReadParameters = stack.parameters
    if not isinstance(params, ReadParameters) or params.ByteOffset < 0 or params.Length < 0:
        return _complete(Irp, STATUS_INVALID_PARAMETER)
    if params.ByteOffset >= fcb.FileSize:
        return _complete(Irp, STATUS_END_OF_FILE)
    length = min(params.Length, fcb.FileSize - params.ByteOffset)
    if length == 0:
        return _complete(Irp, STATUS_SUCCESS, 0)
    if not fcb.cache.loaded:  # first touch: read the file from "disk" into the cache
        if not CacheManager.of(k).fill(fcb.cache, file_bytes(volume.files[fcb.name])):
            return _complete(Irp, STATUS_INSUFFICIENT_RESOURCES)
    if k.cpu_model is not None:
        k.charge("fs_read_page", (length + 4095) // 4096)
    if stack.minor == IRP_MN_MDL:
        if Irp.mdl_address is not None:
            return _complete(Irp, STATUS_INVALID_PARAMETER)
        Irp.mdl_address = CcMdlRead(file_object, params.ByteOffset, length, Irp.IoStatus)
        if Irp.mdl_address is None:
            return _complete(Irp, STATUS_INSUFFICIENT_RESOURCES)
    elif stack.minor == IRP_MN_NORMAL:
        buffer = Irp.mdl_address if Irp.mdl_address is not None else Irp.user_buffer
        if not buffer:
            return _complete(Irp, STATUS_INVALID_PARAMETER)
        if isinstance(buffer, Mdl) and sum(m.byte_count for m in buffer.chain()) < length:
            return _complete(Irp, STATUS_BUFFER_TOO_SMALL)
        CcCopyRead(file_object, params.ByteOffset, length, True, buffer, Irp.IoStatus)
    else:
        return _complete(Irp, STATUS_INVALID_DEVICE_REQUEST)
    file_object.CurrentByteOffset = params.ByteOffset + length
    return _complete(Irp, STATUS_SUCCESS, length)


def _fcb_of(file_object: FileObject | None) -> Fcb | None:
    if file_object is None or file_object.FsContext2 is None:
        return None  # never opened, or already closed
    return file_object.FsContext


# --- load and unload -----------------------------------------------------------------------------

@kroutine("kfs")
def KfsUnload(DriverObject: DriverObject) -> None:
    k = current_kernel()
    for device in list(DriverObject.devices):
        volume = device.extension
        if isinstance(volume, Volume):
            for fcb in volume.fcbs.values():
                CacheManager.of(k).purge(fcb.cache)
                k.addr_objects.pop(fcb.address, None)
                ExFreePoolWithTag(fcb.address, FCB_TAG)
            volume.fcbs.clear()
        IoDeleteDevice(device)


@kroutine("kfs")
def KfsDriverEntry(DriverObject: DriverObject, RegistryPath: str) -> int:
    files: dict[str, FileContent] = DriverObject.extension.get("files") or docroot_files()
    sizes = {path: (len(content) if isinstance(content, bytes) else DOCROOT_SIZES.get(path, len(file_bytes(content))))
             for path, content in files.items()}
    status, device = IoCreateDevice(DriverObject, 0, VOLUME_DEVICE_NAME, FILE_DEVICE_DISK_FILE_SYSTEM)
    if device is None:
        return status
    device.extension = Volume(files, sizes, {})
    device.flags = (device.flags | DO_DIRECT_IO) & ~0x80  # DO_DEVICE_INITIALIZING cleared
    DriverObject.MajorFunction[IRP_MJ_CREATE] = KfsCommonCreate
    DriverObject.MajorFunction[IRP_MJ_CLEANUP] = KfsCommonClose
    DriverObject.MajorFunction[IRP_MJ_CLOSE] = KfsCommonClose
    DriverObject.MajorFunction[IRP_MJ_QUERY_INFORMATION] = KfsCommonQueryInformation
    DriverObject.MajorFunction[IRP_MJ_READ] = KfsCommonRead
    fast_io = FAST_IO_DISPATCH(current_kernel().image_global("kfs", "KfsFastIoDispatch", FAST_IO_DISPATCH_SIZE),
                               FastIoQueryStandardInfo=KfsFastIoQueryStandardInfo,
                               FastIoQueryBasicInfo=KfsFastIoQueryBasicInfo,
                               MdlRead=KfsFastIoMdlRead, MdlReadComplete=KfsFastIoMdlReadComplete)
    fast_io.write(current_kernel())
    DriverObject.fast_io_dispatch = fast_io
    DriverObject.driver_unload = KfsUnload
    return STATUS_SUCCESS


DRIVER_IMAGE = DriverImage("kfs", "kfs", KfsDriverEntry, image="kfs.sys", pool_tags=(FCB_TAG, CCB_TAG),
                           description="read-only document root file system")


def kfs_image(files: dict[str, FileContent] | None = None) -> DriverImage:
    """The kfs image serving `files` instead of the shipped document root (for tests)."""
    if files is None:
        return DRIVER_IMAGE

    def entry(DriverObject: DriverObject, RegistryPath: str) -> int:
        DriverObject.extension["files"] = files
        return KfsDriverEntry(DriverObject, RegistryPath)

    entry.symbol = KfsDriverEntry.symbol  # type: ignore[attr-defined]
    return DriverImage("kfs", "kfs", entry, image="kfs.sys", pool_tags=(FCB_TAG, CCB_TAG))

