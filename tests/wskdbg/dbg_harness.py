"""A small kernel-only lab for the debugger tests.

Two drivers form a device stack: `testbus` (lower; pends every request and completes it
from a timer DPC 1 ms later) and `testdrv` (upper; passes requests down with a completion
routine).  A client system thread in testdrv fills a pool buffer, describes it with an
MDL, sends an IRP_MJ_INTERNAL_DEVICE_CONTROL down the stack, waits for completion, logs
WPP and DbgPrint, and frees everything.  Other scenarios: a driver that completes an IRP
twice (bug check 0x44) and a timer that re-arms itself forever.
"""

from __future__ import annotations

from typing import Any

from stack.kernel import (IRP_MJ_INTERNAL_DEVICE_CONTROL, STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING,
                          STATUS_SUCCESS, WPP_DEFINE_CONTROL_GUID, WPP_INIT_TRACING, DbgPrint, DoTraceMessage,
                          ExAllocatePoolWithTag, ExFreePoolWithTag, IoAllocateIrp, IoAllocateMdl,
                          IoAttachDeviceToDeviceStack, IoCallDriver, IoCompleteRequest,
                          IoCopyCurrentIrpStackLocationToNext, IoCreateDevice, IoFreeIrp, IoFreeMdl,
                          IoGetDeviceObjectPointer, IoGetNextIrpStackLocation,
                          IoLoadDriver, IoMarkIrpPending, IoSetCompletionRoutine, KeInitializeDpc,
                          KeInitializeEvent, KeSetEvent, KeSetTimer, KeWaitForSingleObject,
                          MmBuildMdlForNonPagedPool, NonPagedPoolNx, PsCreateSystemThread, current_kernel, kroutine)
from stack.kernel.io import FILE_DEVICE_UNKNOWN, DriverImage
from stack.kernel.ke import KDPC, KEVENT, KTIMER, NotificationEvent, relative_ms
from stack.kernel.machine import Machine

TEST_IOCTL = 0x00222003
PAYLOAD = b"wskdbg test payload: hello from testdrv!"
TRACE_GUID = "5aa9f1c2-2a11-4c3d-9e1f-0123456789ab"
TRACE = WPP_DEFINE_CONTROL_GUID("TestDrvTrace", TRACE_GUID, ["TRCERROR", "TRCINFO"])


class BusExtension:
    def __init__(self) -> None:
        self.pending: list[Any] = []
        self.timer = KTIMER()
        self.dpc = KDPC()


# --- the lower driver: testbus ----------------------------------------------------------

@kroutine("testbus")
def TestBusCompleteDpc(Dpc: Any, Context: Any, Arg1: Any, Arg2: Any) -> None:
    ext: BusExtension = Context
    while ext.pending:
        irp = ext.pending.pop(0)
        irp.IoStatus.Status = STATUS_SUCCESS
        irp.IoStatus.Information = len(PAYLOAD)
        IoCompleteRequest(irp)


@kroutine("testbus")
def TestBusDispatchInternal(DeviceObject: Any, Irp: Any) -> int:
    ext: BusExtension = DeviceObject.extension
    IoMarkIrpPending(Irp)
    ext.pending.append(Irp)
    KeSetTimer(ext.timer, relative_ms(1), ext.dpc)
    return STATUS_PENDING


@kroutine("testbus")
def TestBusDriverEntry(DriverObject: Any, RegistryPath: str) -> int:
    status, dev = IoCreateDevice(DriverObject, 0x40, "TestBus0", FILE_DEVICE_UNKNOWN)
    ext = BusExtension()
    KeInitializeDpc(ext.dpc, TestBusCompleteDpc, ext)
    dev.extension = ext
    dev.flags = 0
    DriverObject.MajorFunction[IRP_MJ_INTERNAL_DEVICE_CONTROL] = TestBusDispatchInternal
    return status


# --- the upper driver and client: testdrv ---------------------------------------------------

@kroutine("testdrv")
def TestDrvCompletion(DeviceObject: Any, Irp: Any, Context: Any) -> int:
    if Irp.pending_returned:
        IoMarkIrpPending(Irp)
    DoTraceMessage(TRACE, "TRCINFO", "request %p completed by the bus, %!STATUS!", Irp, Irp.IoStatus.Status)
    return STATUS_SUCCESS


@kroutine("testdrv")
def TestDrvDispatchInternal(DeviceObject: Any, Irp: Any) -> int:
    IoCopyCurrentIrpStackLocationToNext(Irp)
    IoSetCompletionRoutine(Irp, TestDrvCompletion, DeviceObject, True, True, True)
    return IoCallDriver(DeviceObject.extension["lower"], Irp)


@kroutine("testdrv")
def TestDrvDriverEntry(DriverObject: Any, RegistryPath: str) -> int:
    WPP_INIT_TRACING(TRACE, DriverObject, RegistryPath)
    status, dev = IoCreateDevice(DriverObject, 0, "TestFilter0", FILE_DEVICE_UNKNOWN)
    lower = IoGetDeviceObjectPointer("TestBus0")
    dev.extension = {"lower": IoAttachDeviceToDeviceStack(dev, lower)}
    dev.flags = 0
    DriverObject.MajorFunction[IRP_MJ_INTERNAL_DEVICE_CONTROL] = TestDrvDispatchInternal
    DoTraceMessage(TRACE, "TRCINFO", "DriverEntry done, device %p", dev)
    return STATUS_SUCCESS


@kroutine("testdrv")
def TestClientCompletion(DeviceObject: Any, Irp: Any, Context: Any) -> int:
    KeSetEvent(Context)
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine("testdrv")
def TestClientThread(Context: Any):
    k = current_kernel()
    device = IoGetDeviceObjectPointer("TestFilter0")
    buffer = ExAllocatePoolWithTag(NonPagedPoolNx, 0x800, "TstB")
    k.write(buffer, PAYLOAD)
    mdl = IoAllocateMdl(buffer, len(PAYLOAD))
    MmBuildMdlForNonPagedPool(mdl)
    irp = IoAllocateIrp(device.stack_size)
    irp.mdl_address = mdl
    loc = IoGetNextIrpStackLocation(irp)
    loc.major = IRP_MJ_INTERNAL_DEVICE_CONTROL
    loc.parameters = (len(PAYLOAD), 0, TEST_IOCTL, 0)
    done = KEVENT()
    KeInitializeEvent(done, NotificationEvent, False)
    IoSetCompletionRoutine(irp, TestClientCompletion, done, True, True, True)
    status = IoCallDriver(device, irp)
    if status == STATUS_PENDING:
        yield KeWaitForSingleObject(done)
    DbgPrint("testdrv: request done, status %08x, %d bytes\n", irp.IoStatus.Status, irp.IoStatus.Information)
    IoFreeIrp(irp)
    IoFreeMdl(mdl)
    ExFreePoolWithTag(buffer, "TstB")
    return STATUS_SUCCESS


@kroutine("testdrv")
def TestCompleteTwice(Context: Any):
    """A buggy request: completes the IRP, then completes it again (bug check 0x44)."""
    irp = IoAllocateIrp(1)
    loc = IoGetNextIrpStackLocation(irp)
    loc.major = IRP_MJ_INTERNAL_DEVICE_CONTROL
    irp.current_location -= 1  # as if dispatched to us
    irp.IoStatus.Status = STATUS_SUCCESS
    IoCompleteRequest(irp)
    IoCompleteRequest(irp)
    return STATUS_SUCCESS
    yield  # a thread body is a generator


@kroutine("testdrv")
def TestTickDpc(Dpc: Any, Context: Any, Arg1: Any, Arg2: Any) -> None:
    timer, dpc = Context
    KeSetTimer(timer, relative_ms(1), dpc)


@kroutine("testdrv")
def TestStartTicker(Context: Any):
    timer = KTIMER()
    dpc = KDPC()
    KeInitializeDpc(dpc, TestTickDpc, (timer, dpc))
    KeSetTimer(timer, relative_ms(1), dpc)
    return STATUS_SUCCESS
    yield


BUS_IMAGE = DriverImage("testbus", "testbus", TestBusDriverEntry, image="testbus.sys")
DRV_IMAGE = DriverImage("testdrv", "testdrv", TestDrvDriverEntry, image="testdrv.sys", pool_tags=("TstB",))
SCENARIOS = {"client": TestClientThread, "double": TestCompleteTwice, "ticker": TestStartTicker, "none": None}


def build_lab(seed: int = 1, scenario: str = "client") -> Machine:
    """Boot the machine with both drivers loaded and the scenario's thread queued (not run)."""
    m = Machine(seed=seed, memory_mb=4)
    k = m.kernel
    IoLoadDriver(k, BUS_IMAGE)
    m.scheduler.run_until_idle()
    IoLoadDriver(k, DRV_IMAGE)
    m.scheduler.run_until_idle()
    assert m.scheduler.halted is None, m.scheduler.halted
    start = SCENARIOS[scenario]
    if start is not None:
        m.run_in(k, lambda: PsCreateSystemThread(start, None, name=f"test {scenario}"))
    return m


def factory(scenario: str = "client"):
    return lambda seed: build_lab(seed, scenario)
