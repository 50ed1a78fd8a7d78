"""FsRtl's MDL read for callers outside the file system (what TransmitFile and HTTP.sys use).

* ``FsRtlMdlReadEx`` (ntifs.h, Windows 8+): the file system's fast I/O ``MdlRead`` first — the
  cached pages come back as an MDL chain with no IRP; when the file system has no such routine or
  it returns FALSE (the file is not cached yet), a synchronous IRP_MJ_READ / IRP_MN_MDL instead.
* ``FsRtlMdlReadComplete`` (ntoskrnl's export beside it): the fast I/O ``MdlReadComplete`` first,
  else IRP_MJ_READ / IRP_MN_COMPLETE_MDL, as MS Learn's FLT_PARAMETERS for IRP_MJ_MDL_READ_COMPLETE
  says an issuer reissues a refused fast I/O completion.

Both are PASSIVE_LEVEL routines (MS Learn's requirements table for FsRtlMdlReadEx and
FsRtlMdlReadCompleteDev): a caller above it bug-checks IRQL_NOT_LESS_OR_EQUAL here, as the
lab's other PASSIVE_LEVEL-only routines do (they touch pageable code and data).

Either way every hand-off is a routine a breakpoint can stop on (``bp kfs!KfsFastIoMdlRead``);
the IRPs simply do not exist when fast I/O answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stack.fs import fsio
from stack.fs.kfs import FileObject, ReadParameters
from stack.kernel import IRP_MJ_READ, IRP_MN_MDL, NT_SUCCESS, STATUS_SUCCESS, Mdl, current_kernel, kroutine
from stack.kernel import bugcheck as bc
from stack.kernel.irp import IoStatusBlock
from stack.kernel.ke import PASSIVE_LEVEL


def _require_passive(routine: str) -> None:
    k = current_kernel()
    if k.irql > PASSIVE_LEVEL:
        k.bugcheck(bc.IRQL_NOT_LESS_OR_EQUAL, 0, k.irql, 0, k.symbol_address(f"nt!{routine}"),
                   detail=f"{routine} called at IRQL {k.irql} (PASSIVE_LEVEL only)")


@dataclass(slots=True)
class Ref:
    """A C out-pointer (PMDL *MdlChain): the callee stores into `.value`."""

    value: Any = None


@kroutine("nt")
def FsRtlMdlReadEx(FileObject: FileObject, FileOffset: int, Length: int, LockKey: int, MdlChain: Ref,
                   IoStatus: IoStatusBlock) -> int:
    """An MDL chain over the cached pages of [FileOffset, +Length) in MdlChain.value: fast I/O
    when the file system offers it and the data is cached, else the IRP-based MDL read."""
    _require_passive("FsRtlMdlReadEx")
    if MdlChain.value is not None:  # a driver bug: the lab's verifier stops the machine, not the debugger
        k = current_kernel()
        k.bugcheck(bc.DRIVER_VERIFIER_DETECTED_VIOLATION, bc.EMU_C4_MDL_READ_CHAIN_NOT_NULL, FileObject.address,
                   getattr(MdlChain.value, "address", 0), 0, detail="FsRtlMdlReadEx: *MdlChain must be NULL on entry")
    device = FileObject.DeviceObject
    fast_io = device.driver_object.fast_io_dispatch
    if fast_io is not None and fast_io.MdlRead is not None:
        if fast_io.MdlRead(FileObject, FileOffset, Length, LockKey, MdlChain, IoStatus, device):
            return IoStatus.Status
    status, information, chain = fsio.fs_call(device, FileObject, IRP_MJ_READ, IRP_MN_MDL,
                                              ReadParameters(Length, LockKey, FileOffset))
    IoStatus.Status, IoStatus.Information = status, information
    if NT_SUCCESS(status):
        MdlChain.value = chain
    return status


@kroutine("nt")
def FsRtlMdlReadComplete(FileObject: FileObject, MdlChain: Mdl) -> bool:
    """Give a chain from FsRtlMdlReadEx back: fast I/O MdlReadComplete, else IRP_MN_COMPLETE_MDL."""
    _require_passive("FsRtlMdlReadComplete")
    device = FileObject.DeviceObject
    fast_io = device.driver_object.fast_io_dispatch
    if fast_io is not None and fast_io.MdlReadComplete is not None:
        if fast_io.MdlReadComplete(FileObject, MdlChain, device):
            return True
    return fsio.fs_mdl_read_complete(FileObject, MdlChain) == STATUS_SUCCESS


def fs_mdl_read_fast(file_object: FileObject, offset: int, length: int) -> tuple[int, Mdl | None]:
    """(status, chain) through FsRtlMdlReadEx: the caller's side of a zero-copy read."""
    chain = Ref()
    status = FsRtlMdlReadEx(file_object, offset, length, 0, chain, IoStatusBlock())
    return status, chain.value if NT_SUCCESS(status) else None


__all__ = ["FsRtlMdlReadEx", "FsRtlMdlReadComplete", "fs_mdl_read_fast", "Ref"]
