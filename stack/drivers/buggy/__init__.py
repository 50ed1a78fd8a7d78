"""buggy: a small sample driver with a classic bug — it completes an IRP twice.

`sc start buggy` loads it.  DriverEntry creates \\Device\\Buggy0 and starts a
system thread that sends the device one IOCTL (IoBuildDeviceIoControlRequest)
and waits for it.  The dispatch routine means to pend the request and finish
it 1 ms later from a timer DPC, but its IOCTL case falls through into the
"complete now" path: the IRP is completed at once, the I/O manager finishes
and frees it, and when the DPC completes it again the machine bug-checks with
MULTIPLE_IRP_COMPLETE_REQUESTS (0x44), P1 = the IRP.  Written against
stack.kernel only, like a WDK sample.
"""

from __future__ import annotations

from typing import Any

from stack.kernel import (IRP_MJ_DEVICE_CONTROL, STATUS_INSUFFICIENT_RESOURCES, STATUS_PENDING, STATUS_SUCCESS, DbgPrint, IoCallDriver,
                          IoCompleteRequest, IoCreateDevice, IoDeleteDevice, IoGetCurrentIrpStackLocation, IoMarkIrpPending,
                          KeInitializeDpc, KeInitializeEvent, KeSetTimer, KeWaitForSingleObject, PsCreateSystemThread,
                          current_kernel, kroutine)
from stack.kernel.io import FILE_DEVICE_UNKNOWN, DriverImage
from stack.kernel.irp import IoBuildDeviceIoControlRequest, IoStatusBlock
from stack.kernel.ke import KDPC, KEVENT, KTIMER, NotificationEvent, relative_ms

MODULE = "buggy"
DEVICE_NAME = "Buggy0"
IOCTL_BUGGY_DELAYED_ECHO = 0x00222007  # CTL_CODE(FILE_DEVICE_UNKNOWN, 0x801, METHOD_NEITHER, FILE_ANY_ACCESS)
DELAY_MS = 1


class BuggyExtension:
    """The device extension: one request waiting for the timer.  As C lays it out:
    PIRP PendingIrp 0x0, KTIMER Timer 0x8, KDPC Dpc 0x48 (sizeof 0x88)."""

    SIZE = 0x88
    TIMER_OFFSET = 0x8
    DPC_OFFSET = 0x48

    def __init__(self) -> None:
        self.address = 0  # DeviceObject->DeviceExtension
        self.pending_irp: Any = None
        self.timer = KTIMER()
        self.dpc = KDPC()


@kroutine(MODULE)
def BuggyTimerDpc(Dpc: Any, DeferredContext: Any, SystemArgument1: Any, SystemArgument2: Any) -> None:
    ext: BuggyExtension = DeferredContext
    irp = ext.pending_irp
    ext.pending_irp = None
    if irp is not None:
        irp.IoStatus.Status = STATUS_SUCCESS
        irp.IoStatus.Information = 0
        IoCompleteRequest(irp)  # the second completion: the IRP is already gone


@kroutine(MODULE)
def BuggyDispatchDeviceControl(DeviceObject: Any, Irp: Any) -> int:
    ext: BuggyExtension = DeviceObject.extension
    stack = IoGetCurrentIrpStackLocation(Irp)
    code = stack.parameters[2] if stack is not None and stack.parameters else 0
    if code == IOCTL_BUGGY_DELAYED_ECHO:
        # Pend it and finish it from the timer DPC ...
        IoMarkIrpPending(Irp)
        ext.pending_irp = Irp
        KeSetTimer(ext.timer, relative_ms(DELAY_MS), ext.dpc)
        # BUG: a missing `return STATUS_PENDING` here - the case falls through to the fast path.
    Irp.IoStatus.Status = STATUS_SUCCESS
    Irp.IoStatus.Information = 0
    IoCompleteRequest(Irp)
    return STATUS_PENDING if code == IOCTL_BUGGY_DELAYED_ECHO else STATUS_SUCCESS


@kroutine(MODULE)
def BuggyRequestThread(Context: Any):
    device = Context
    done = KEVENT()
    KeInitializeEvent(done, NotificationEvent, False)
    iosb = IoStatusBlock()
    irp = IoBuildDeviceIoControlRequest(IOCTL_BUGGY_DELAYED_ECHO, device, None, 0, None, 0, False, done, iosb)
    status = IoCallDriver(device, irp)
    if status == STATUS_PENDING:
        yield KeWaitForSingleObject(done)
        status = iosb.Status
    DbgPrint("buggy: delayed echo request finished, status %08x\n", status)
    return STATUS_SUCCESS


@kroutine(MODULE)
def DriverEntry(DriverObject: Any, RegistryPath: str) -> int:
    status, device = IoCreateDevice(DriverObject, BuggyExtension.SIZE, DEVICE_NAME, FILE_DEVICE_UNKNOWN)
    if device is None:
        return status
    ext = BuggyExtension()
    ext.address = device.extension_address
    k = current_kernel()
    ext.timer.place(k, ext.address + BuggyExtension.TIMER_OFFSET)  # KeInitializeTimer(&ext->Timer)
    ext.dpc.place(k, ext.address + BuggyExtension.DPC_OFFSET)
    KeInitializeDpc(ext.dpc, BuggyTimerDpc, ext)
    device.extension = ext
    device.flags = 0
    DriverObject.MajorFunction[IRP_MJ_DEVICE_CONTROL] = BuggyDispatchDeviceControl
    if PsCreateSystemThread(BuggyRequestThread, device, name="buggy request") is None:
        IoDeleteDevice(device)
        return STATUS_INSUFFICIENT_RESOURCES
    DbgPrint("buggy: DriverEntry done, device %p\n", device)
    return STATUS_SUCCESS


DRIVER_IMAGE = DriverImage("buggy", MODULE, DriverEntry, image="buggy.sys",
                           description="sample driver that completes an IRP twice (bug check 0x44)")
