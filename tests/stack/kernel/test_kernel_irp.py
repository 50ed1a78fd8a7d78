"""Part 5: driver and device objects, loading/unloading, and the IRP rules of the I/O manager."""

from __future__ import annotations

import struct

import pytest
from kernel_harness import (TestDispatch, assert_running, create_device, crash, load_test_driver, new_machine,
                            record_events, run)

from stack.kernel import (IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, NS_PER_MS, SL_INVOKE_ON_CANCEL, SL_INVOKE_ON_ERROR,
                          SL_INVOKE_ON_SUCCESS, SL_PENDING_RETURNED, STATUS_CANCELLED, STATUS_INVALID_DEVICE_REQUEST,
                          STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING, STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
                          IoAllocateIrp, IoCallDriver, IoCancelIrp, IoCompleteRequest,
                          IoCopyCurrentIrpStackLocationToNext, IoCreateDevice, IoDeleteDevice, IoFreeIrp,
                          IoGetCurrentIrpStackLocation, IoGetDeviceObjectPointer, IoGetNextIrpStackLocation,
                          IoMarkIrpPending, IoReleaseCancelSpinLock, IoReuseIrp, IoSetCancelRoutine,
                          IoSetCompletionRoutine, IoSkipCurrentIrpStackLocation, KeDelayExecutionThread,
                          KeInsertQueueDpc, KeWaitForSingleObject, ExAllocatePoolWithTag,
                          ExFreePoolWithTag, NonPagedPoolNx, kroutine, live_irps)
from stack.kernel.events import (DriverLoaded, DriverUnloaded, IrpAllocated, IrpCancelled, IrpCompleted,
                                 IrpCompletionRoutine, IrpDispatched, IrpFreed, IrpPended)
from stack.kernel.io import FILE_DEVICE_UNKNOWN, DriverImage, IoLoadDriver, IoUnloadDriver
from stack.kernel.irp import IoBuildDeviceIoControlRequest, IoStatusBlock
from stack.kernel.ke import KDPC, KEVENT, relative_ms
from stack.kernel.layouts import LAYOUTS

# --- a three-driver stack: upper -> middle -> lower ------------------------------------------

LOG: list = []


@kroutine("testdrv")
def PassDownDispatch(DeviceObject, Irp):
    """A filter: copy the location down, hook completion, call the next driver."""
    ext = DeviceObject.extension
    IoCopyCurrentIrpStackLocationToNext(Irp)
    IoSetCompletionRoutine(Irp, ext["completion"], ext["name"], *ext.get("invoke", (True, True, True)))
    return IoCallDriver(ext["lower"], Irp)


@kroutine("testdrv")
def FilterCompletion(DeviceObject, Irp, Context):
    LOG.append(("completion", Context, DeviceObject.extension["name"] if DeviceObject else None,
                Irp.pending_returned, Irp.IoStatus.Status))
    if Irp.pending_returned and DeviceObject.extension.get("propagate", True):
        IoMarkIrpPending(Irp)
    return DeviceObject.extension.get("completion_result", STATUS_SUCCESS)


@kroutine("testdrv")
def OriginatorCompletion(DeviceObject, Irp, Context):
    LOG.append(("completion", Context, DeviceObject, Irp.pending_returned, Irp.IoStatus.Status))
    return STATUS_MORE_PROCESSING_REQUIRED  # the IRP is ours: stop and keep it


def complete_now(status):
    def dispatch(DeviceObject, Irp):
        LOG.append(("dispatch", DeviceObject.extension["name"], IoGetCurrentIrpStackLocation(Irp).major))
        Irp.IoStatus.Status = status
        Irp.IoStatus.Information = 0x20
        IoCompleteRequest(Irp)
        return status
    return dispatch


@kroutine("testdrv")
def LowerCancel(DeviceObject, Irp):
    LOG.append(("cancel", DeviceObject.extension["name"]))
    IoReleaseCancelSpinLock(Irp.cancel_irql)
    Irp.IoStatus.Status = STATUS_CANCELLED
    IoCompleteRequest(Irp)


def pend(DeviceObject, Irp):
    LOG.append(("pend", DeviceObject.extension["name"]))
    IoMarkIrpPending(Irp)
    IoSetCancelRoutine(Irp, LowerCancel)
    DeviceObject.extension["pending"] = Irp
    return STATUS_PENDING


@kroutine("testdrv")
def LaterCompletionDpc(dpc, Irp, a1, a2):
    IoSetCancelRoutine(Irp, None)
    Irp.IoStatus.Status = STATUS_SUCCESS
    IoCompleteRequest(Irp)


@pytest.fixture
def stack3():
    LOG.clear()
    m = new_machine()
    drv = load_test_driver(m)
    lower = create_device(m, drv, "Lower", lambda d, i: d.extension["behave"](d, i))
    lower.extension.update(name="lower", behave=complete_now(STATUS_SUCCESS))
    middle = create_device(m, drv, "Middle", PassDownDispatch, stack_size=2)
    middle.extension.update(name="middle", lower=lower, completion=FilterCompletion)
    upper = create_device(m, drv, "Upper", PassDownDispatch, stack_size=3)
    upper.extension.update(name="upper", lower=middle, completion=FilterCompletion)
    return m, upper, middle, lower


def send(m, device, stack_size: int = 4, invoke=(True, True, True)):
    def body():
        irp = IoAllocateIrp(stack_size)
        IoGetNextIrpStackLocation(irp).major = IRP_MJ_DEVICE_CONTROL
        IoSetCompletionRoutine(irp, OriginatorCompletion, "originator", *invoke)
        return irp, IoCallDriver(device, irp)
    return run(m, body)


def completions() -> list:
    return [entry for entry in LOG if entry[0] == "completion"]


def test_completion_routines_run_bottom_up_and_stop_at_more_processing_required(stack3):
    m, upper, middle, lower = stack3
    irp, status = send(m, upper)
    assert_running(m)
    assert status == STATUS_SUCCESS
    assert LOG[0] == ("dispatch", "lower", IRP_MJ_DEVICE_CONTROL)
    # each routine gets the device of the driver that set it; the originator's gets none
    assert [(c[1], c[2]) for c in completions()] == [("middle", "middle"), ("upper", "upper"),
                                                     ("originator", None)]
    assert not irp.completed  # MORE_PROCESSING_REQUIRED gave it back to its owner
    assert irp.current_location == irp.stack_count + 1
    run(m, IoFreeIrp, irp)
    assert_running(m)


def test_more_processing_required_in_the_middle_stops_and_a_second_completion_resumes(stack3):
    m, upper, middle, lower = stack3
    middle.extension["completion_result"] = STATUS_MORE_PROCESSING_REQUIRED
    irp, _ = send(m, upper)
    assert [c[1] for c in completions()] == ["middle"]
    run(m, IoCompleteRequest, irp)  # the middle driver finishes its work and completes again
    assert_running(m)
    assert [c[1] for c in completions()] == ["middle", "upper", "originator"]


def test_pending_returned_propagates_through_completion_routines(stack3):
    m, upper, middle, lower = stack3
    lower.extension["behave"] = pend
    irp, status = send(m, upper)
    assert status == STATUS_PENDING
    assert irp.stack[1].control & SL_PENDING_RETURNED  # location 2 of 4 is the lower driver's
    run(m, KeInsertQueueDpc, KDPC(LaterCompletionDpc, irp))
    m.scheduler.run_until_idle()
    assert_running(m)
    assert [(c[1], c[3]) for c in completions()] == [("middle", True), ("upper", True), ("originator", True)]


def test_pending_returned_stops_where_a_completion_routine_does_not_mark_the_irp_pending(stack3):
    m, upper, middle, lower = stack3
    lower.extension["behave"] = pend
    middle.extension["propagate"] = False
    irp, _ = send(m, upper)
    run(m, KeInsertQueueDpc, KDPC(LaterCompletionDpc, irp))
    m.scheduler.run_until_idle()
    assert [(c[1], c[3]) for c in completions()] == [("middle", True), ("upper", False), ("originator", False)]


def test_a_location_without_completion_routine_passes_pending_returned_up(stack3):
    m, upper, middle, lower = stack3
    lower.extension["behave"] = pend

    @kroutine("testdrv")
    def SkipDispatch(DeviceObject, Irp):
        IoSkipCurrentIrpStackLocation(Irp)
        return IoCallDriver(DeviceObject.extension["lower"], Irp)

    skipper = create_device(m, upper.driver_object, "Skip", SkipDispatch, stack_size=2)
    skipper.extension.update(name="skip", lower=lower)
    upper.extension["lower"] = skipper
    irp, _ = send(m, upper, stack_size=3)
    run(m, KeInsertQueueDpc, KDPC(LaterCompletionDpc, irp))
    m.scheduler.run_until_idle()
    assert_running(m)
    assert [(c[1], c[3]) for c in completions()] == [("upper", True), ("originator", True)]


@pytest.mark.parametrize(("invoke", "status", "cancel", "called"), [
    ((True, False, False), STATUS_SUCCESS, False, True),
    ((True, False, False), STATUS_UNSUCCESSFUL, False, False),
    ((False, True, False), STATUS_UNSUCCESSFUL, False, True),
    ((False, True, False), STATUS_SUCCESS, False, False),
    ((False, False, True), STATUS_SUCCESS, False, False),
    ((False, False, True), STATUS_CANCELLED, True, True),
])
def test_completion_routine_runs_on_success_error_or_cancel_as_asked(stack3, invoke, status, cancel, called):
    m, upper, middle, lower = stack3
    lower.extension["behave"] = pend if cancel else complete_now(status)
    irp, _ = send(m, lower, stack_size=1, invoke=invoke)
    if cancel:
        assert run(m, IoCancelIrp, irp) is True
    assert_running(m)
    assert bool(completions()) is called
    if not called:
        assert irp.completed  # nobody stopped it: the I/O manager finished it


def test_io_cancel_irp_calls_the_cancel_routine_which_completes_the_irp_cancelled(stack3):
    m, upper, middle, lower = stack3
    lower.extension["behave"] = pend
    events = record_events(m)
    irp, status = send(m, upper)
    assert status == STATUS_PENDING and irp.cancel_routine is LowerCancel
    assert run(m, IoCancelIrp, irp) is True
    assert_running(m)
    assert ("cancel", "lower") in LOG
    assert irp.cancel and irp.cancel_routine is None
    assert [c[4] for c in completions()] == [STATUS_CANCELLED] * 3
    assert any(isinstance(e, IrpCancelled) for e in events)
    assert run(m, lambda: m.kernel.irql) == 0


def test_io_cancel_irp_without_a_cancel_routine_only_sets_cancel(stack3):
    m, upper, middle, lower = stack3
    lower.extension["behave"] = lambda d, i: (IoMarkIrpPending(i), STATUS_PENDING)[1]
    irp, _ = send(m, lower, stack_size=1)
    assert run(m, IoCancelIrp, irp) is False
    assert irp.cancel and not irp.completed


def test_io_reuse_irp_resets_the_irp_for_another_request(stack3):
    m, upper, middle, lower = stack3
    irp, _ = send(m, upper)
    run(m, IoReuseIrp, irp, STATUS_UNSUCCESSFUL)
    assert irp.current_location == irp.stack_count + 1
    assert irp.IoStatus.Status == STATUS_UNSUCCESSFUL
    assert all(loc.completion_routine is None and loc.control == 0 for loc in irp.stack)
    assert not (irp.cancel or irp.pending_returned or irp.completed)

    LOG.clear()

    def again():
        IoGetNextIrpStackLocation(irp).major = IRP_MJ_DEVICE_CONTROL
        IoSetCompletionRoutine(irp, OriginatorCompletion, "second", True, True, True)
        return IoCallDriver(upper, irp)

    assert run(m, again) == STATUS_SUCCESS
    assert [c[1] for c in completions()] == ["middle", "upper", "second"]
    run(m, IoFreeIrp, irp)
    assert_running(m)


def test_irp_life_cycle_publishes_allocated_dispatched_pended_completed_and_freed(stack3):
    m, upper, middle, lower = stack3
    lower.extension["behave"] = pend
    events = record_events(m)
    irp, _ = send(m, upper)
    run(m, KeInsertQueueDpc, KDPC(LaterCompletionDpc, irp))
    m.scheduler.run_until_idle()
    run(m, IoFreeIrp, irp)
    mine = [e for e in events if getattr(e, "irp", None) == irp.address]
    kinds = [type(e).__name__ for e in mine]
    assert kinds[0] == "IrpAllocated" and kinds[-1] == "IrpFreed"
    assert [e.driver for e in mine if isinstance(e, IrpDispatched)] == ["\\Driver\\testdrv"] * 3
    assert sum(isinstance(e, IrpPended) for e in mine) == 3  # pending returned at every level
    assert sum(isinstance(e, IrpCompleted) for e in mine) == 1
    assert [e.routine for e in mine if isinstance(e, IrpCompletionRoutine)] == \
        ["testdrv!FilterCompletion", "testdrv!FilterCompletion", "testdrv!OriginatorCompletion"]
    assert irp not in live_irps(m.kernel)
    assert isinstance(mine[0], IrpAllocated) and isinstance(mine[-1], IrpFreed)


def test_irp_and_stack_locations_in_memory_show_what_dt_irp_shows(stack3):
    m, upper, middle, lower = stack3
    k = m.kernel
    lower.extension["behave"] = pend

    def body():
        irp = IoAllocateIrp(4)
        buf = ExAllocatePoolWithTag(NonPagedPoolNx, 64, "Buf ")
        from stack.kernel import IoAllocateMdl
        mdl = IoAllocateMdl(buf, 64, False, False, irp)
        loc = IoGetNextIrpStackLocation(irp)
        loc.major = IRP_MJ_DEVICE_CONTROL
        loc.parameters = (0x10, 0x20, 0x12345, 0)
        IoSetCompletionRoutine(irp, OriginatorCompletion, None, True, True, True)
        IoCallDriver(upper, irp)
        return irp, mdl

    irp, mdl = run(m, body)
    raw = k.mem.read(irp.address, 0xD0 + 4 * 0x48)
    layout = LAYOUTS["_IRP"]
    f = {fld.name: layout.unpack_field(fld, raw) for fld in layout.fields}
    assert f["Type"] == 6 and f["Size"] == 0xD0 + 4 * 0x48
    assert f["MdlAddress"] == mdl.address
    assert f["StackCount"] == 4 and f["CurrentLocation"] == 2  # upper=4, middle=3, lower=2
    assert f["PendingReturned"] == 0
    status, info = struct.unpack_from("<IQ", raw, 0x30)[0], struct.unpack_from("<Q", raw, 0x38)[0]
    assert (status, info) == (STATUS_SUCCESS, 0)
    assert f["CancelRoutine"] == k.symbol_address("testdrv!LowerCancel") != 0
    tail = LAYOUTS["_IRP_TAIL"]
    cur = struct.unpack_from("<Q", raw, 0x78 + tail.by_name["CurrentStackLocation"].offset)[0]
    assert cur == irp.address + 0xD0 + (2 - 1) * 0x48

    sl = LAYOUTS["_IO_STACK_LOCATION"]

    def location(index: int) -> dict:
        off = 0xD0 + (index - 1) * 0x48
        return {fld.name: sl.unpack_field(fld, raw[off:off + 0x48]) for fld in sl.fields}

    lowest = location(2)  # the lower driver's (current) location
    assert lowest["MajorFunction"] == IRP_MJ_DEVICE_CONTROL
    assert lowest["Control"] & SL_PENDING_RETURNED
    assert lowest["DeviceObject"] == lower.address
    params = struct.unpack_from("<4Q", raw, 0xD0 + 0x48 + 8)
    assert params == (0x10, 0x20, 0x12345, 0)  # copied down by each filter
    originator = location(4)
    assert originator["CompletionRoutine"] == k.symbol_address("testdrv!OriginatorCompletion")
    assert originator["Control"] & (SL_INVOKE_ON_SUCCESS | SL_INVOKE_ON_ERROR | SL_INVOKE_ON_CANCEL) == 0xE0
    assert originator["DeviceObject"] == upper.address
    assert location(3)["CompletionRoutine"] == k.symbol_address("testdrv!FilterCompletion")

    run(m, KeInsertQueueDpc, KDPC(LaterCompletionDpc, irp))
    m.scheduler.run_until_idle()
    raw = k.mem.read(irp.address, 0xD0)
    assert raw[0x41] == 1  # PendingReturned as the originator saw it
    assert struct.unpack_from("<I", raw, 0x30)[0] == STATUS_SUCCESS
    assert raw[0x43] == 5  # CurrentLocation = StackCount + 1


def test_an_irp_allocated_where_one_was_freed_starts_as_clean_as_a_new_one(stack3):
    """IoAllocateIrp rebuilds the IRP object freed last from the same pool block (the I/O
    manager's IRP lookaside, emulator side): nothing of the old request may show."""
    m, upper, middle, lower = stack3
    k = m.kernel
    lower.extension["behave"] = pend
    first, _ = send(m, upper)
    run(m, KeInsertQueueDpc, KDPC(LaterCompletionDpc, first))
    m.scheduler.run_until_idle()
    address = first.address
    run(m, IoFreeIrp, first)
    assert address not in k.irps and k.object_at(address) is None

    second = run(m, IoAllocateIrp, 4)
    assert second.address == address  # the same block, LIFO
    assert second is first and not second.freed  # ... and the same object, rebuilt
    assert second.current_location == 5 and second.IoStatus.Status == STATUS_SUCCESS
    assert second.IoStatus.Information == 0 and second.mdl_address is None
    assert not (second.pending_returned or second.completed or second.cancel or second.cancel_routine)
    assert all(loc.major == 0 and loc.completion_routine is None and loc.context is None
               and loc.device_object is None and loc.control == 0 for loc in second.stack)
    assert [what for _, what in second.history] == ["allocated by nt!KiIdleLoop"]
    assert k.irps[address] is second and k.object_at(address) is second

    raw = k.mem.read(address, 0xD0 + 4 * 0x48)  # what `dt _IRP` reads: the new IRP, nothing older
    layout = LAYOUTS["_IRP"]
    f = {fld.name: layout.unpack_field(fld, raw) for fld in layout.fields}
    assert (f["StackCount"], f["CurrentLocation"], f["PendingReturned"], f["CancelRoutine"]) == (4, 5, 0, 0)
    assert raw[0xD0:] == bytes(4 * 0x48)  # every stack location clear

    LOG.clear()
    lower.extension["behave"] = complete_now(STATUS_SUCCESS)

    def again():
        IoGetNextIrpStackLocation(second).major = IRP_MJ_DEVICE_CONTROL
        IoSetCompletionRoutine(second, OriginatorCompletion, "second", True, True, True)
        return IoCallDriver(upper, second)

    assert run(m, again) == STATUS_SUCCESS
    assert [c[1] for c in completions()] == ["middle", "upper", "second"]
    run(m, IoFreeIrp, second)
    assert_running(m)


def test_a_freed_irp_kept_for_reuse_never_writes_over_its_pool_block(stack3):
    m, upper, middle, lower = stack3
    k = m.kernel
    irp = run(m, IoAllocateIrp, 4)
    address = irp.address
    run(m, IoFreeIrp, irp)
    # The block goes to an ordinary allocation of the same size: its bytes are that owner's.
    size = 0xD0 + 4 * 0x48
    block = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, size, "Buf ")
    assert block == address
    k.mem.write(block, b"\xAB" * size)
    assert k.mem.read(block, size) == b"\xAB" * size  # no IRP flushed over it
    run(m, ExFreePoolWithTag, block, "Buf ")
    # An IRP back in the block: the object kept for it, rebuilt, and written out again on a read.
    other = run(m, IoAllocateIrp, 4)
    assert other.address == address and other is irp
    assert k.mem.read(address, 2) == bytes((6, 0))  # Type IO_TYPE_IRP again, not the 0xAB bytes
    run(m, IoFreeIrp, other)
    assert_running(m)


def test_a_freed_irp_kept_for_reuse_keeps_no_request_object_alive(stack3):
    import gc
    import weakref

    class Context:  # what a driver hangs on a request: a context, a file object
        pass

    m, upper, middle, lower = stack3
    context, file_object = Context(), Context()
    refs = [weakref.ref(context), weakref.ref(file_object)]

    def body():
        irp = IoAllocateIrp(4)
        loc = IoGetNextIrpStackLocation(irp)
        loc.major = IRP_MJ_DEVICE_CONTROL
        loc.file_object = file_object
        IoSetCompletionRoutine(irp, OriginatorCompletion, context, True, True, True)
        IoCallDriver(upper, irp)
        IoFreeIrp(irp)
        return irp

    irp = run(m, body)
    LOG.clear()  # the test routines' log holds the context too
    del context, file_object
    gc.collect()
    assert [ref() for ref in refs] == [None, None]
    assert irp.freed and irp.IoStatus.Status == STATUS_SUCCESS  # what a late reader sees stays
    assert_running(m)


# --- driver and device objects, namespace, load/unload ------------------------------------------


@kroutine("testdrv")
def UnloadRoutine(DriverObject):
    LOG.append(("unload", DriverObject.name))


@kroutine("testdrv")
def FullDriverEntry(DriverObject, RegistryPath):
    LOG.append(("entry", RegistryPath))
    DriverObject.MajorFunction[IRP_MJ_DEVICE_CONTROL] = TestDispatch
    DriverObject.driver_unload = UnloadRoutine
    status, dev = IoCreateDevice(DriverObject, 0x40, "\\Device\\Full", FILE_DEVICE_UNKNOWN)
    dev.extension = {"dispatch": complete_now(STATUS_SUCCESS), "name": "full"}
    return status


def test_loading_a_driver_runs_driver_entry_on_a_thread_and_names_its_objects():
    LOG.clear()
    m = new_machine()
    k = m.kernel
    events = record_events(m)
    done: list[int] = []
    drv = IoLoadDriver(k, DriverImage("full", "testdrv", FullDriverEntry), on_done=done.append)
    assert LOG == []  # DriverEntry runs as a scheduled thread, not inside IoLoadDriver
    m.scheduler.run_until_idle()
    assert_running(m)
    assert done == [STATUS_SUCCESS] and drv.loaded
    assert LOG == [("entry", "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\full")]
    assert k.objects["\\Driver\\full"] is drv
    dev = run(m, IoGetDeviceObjectPointer, "\\Device\\Full")
    assert dev is drv.devices[0] and dev.driver_object is drv
    assert run(m, IoGetDeviceObjectPointer, "Full") is dev
    assert k.module("testdrv") is not None
    assert any(isinstance(e, DriverLoaded) and e.driver == "\\Driver\\full" for e in events)


def test_driver_and_device_objects_in_memory_point_at_each_other_and_the_routines():
    LOG.clear()
    m = new_machine()
    k = m.kernel
    drv = load_test_driver(m, "full", FullDriverEntry)
    dev = drv.devices[0]
    dl = LAYOUTS["_DRIVER_OBJECT"]
    raw = k.mem.read(drv.address, dl.size)
    f = {fld.name: dl.unpack_field(fld, raw) for fld in dl.fields}
    assert f["Type"] == 4 and f["DeviceObject"] == dev.address
    assert f["DriverUnload"] == k.symbol_address("testdrv!UnloadRoutine") != 0
    assert f["DriverInit"] == k.symbol_address("testdrv!FullDriverEntry")
    assert f["MajorFunction"][IRP_MJ_DEVICE_CONTROL] == k.symbol_address("testdrv!TestDispatch")
    assert f["MajorFunction"][IRP_MJ_CREATE] == k.symbol_address("nt!IopInvalidDeviceRequest")
    assert f["DriverStart"] == k.module("testdrv").base
    assert k.symbol_for_address(f["MajorFunction"][IRP_MJ_DEVICE_CONTROL]) == "testdrv!TestDispatch"
    ol = LAYOUTS["_DEVICE_OBJECT"]
    raw = k.mem.read(dev.address, ol.size)
    g = {fld.name: ol.unpack_field(fld, raw) for fld in ol.fields}
    assert g["Type"] == 3 and g["DriverObject"] == drv.address
    assert g["DeviceExtension"] == dev.address + 0x150
    assert g["StackSize"] == 1 and g["DeviceType"] == FILE_DEVICE_UNKNOWN


def test_unsupported_major_function_completes_with_invalid_device_request():
    LOG.clear()
    m = new_machine()
    drv = load_test_driver(m, "full", FullDriverEntry)

    def body():
        irp = IoAllocateIrp(1)
        IoGetNextIrpStackLocation(irp).major = IRP_MJ_CREATE
        return irp, IoCallDriver(drv.devices[0], irp)

    irp, status = run(m, body)
    assert status == STATUS_INVALID_DEVICE_REQUEST == irp.IoStatus.Status
    assert irp.completed


def test_driver_entry_that_waits_finishes_loading_later():
    m = new_machine()
    done: list[tuple[int, int]] = []

    @kroutine("testdrv")
    def SlowEntry(DriverObject, RegistryPath):
        yield KeDelayExecutionThread(Interval=relative_ms(15))
        return STATUS_SUCCESS

    drv = IoLoadDriver(m.kernel, DriverImage("slow", "testdrv", SlowEntry),
                       on_done=lambda s: done.append((s, m.scheduler.now_ns)))
    m.scheduler.run_until_idle()
    assert done == [(STATUS_SUCCESS, 15 * NS_PER_MS)] and drv.loaded


def test_failed_driver_entry_removes_the_driver_and_its_objects():
    m = new_machine()
    k = m.kernel

    @kroutine("testdrv")
    def FailingEntry(DriverObject, RegistryPath):
        IoCreateDevice(DriverObject, 0, "Doomed", FILE_DEVICE_UNKNOWN)
        return STATUS_UNSUCCESSFUL

    done: list[int] = []
    drv = IoLoadDriver(k, DriverImage("failing", "testdrv", FailingEntry), on_done=done.append)
    m.scheduler.run_until_idle()
    assert_running(m)
    assert done == [STATUS_UNSUCCESSFUL] and not drv.loaded
    assert "\\Driver\\failing" not in k.objects and "\\Device\\Doomed" not in k.objects
    assert k.module("testdrv") is None
    assert k.object_at(drv.address) is None


def test_unloading_a_driver_runs_driver_unload_and_deletes_its_devices():
    LOG.clear()
    m = new_machine()
    k = m.kernel
    drv = load_test_driver(m, "full", FullDriverEntry)
    events = record_events(m)
    IoUnloadDriver(k, drv)
    m.scheduler.run_until_idle()
    assert_running(m)
    assert ("unload", "\\Driver\\full") in LOG
    assert "\\Driver\\full" not in k.objects and "\\Device\\Full" not in k.objects
    assert not drv.loaded and k.module("testdrv") is None
    assert any(isinstance(e, DriverUnloaded) for e in events)


def test_unloading_a_driver_that_leaks_its_tagged_pool_bugchecks_c4_0x62():
    m = new_machine()

    @kroutine("testdrv")
    def LeakyEntry(DriverObject, RegistryPath):
        DriverObject.extension["buf"] = ExAllocatePoolWithTag(NonPagedPoolNx, 32, "Leak")
        return STATUS_SUCCESS

    drv = IoLoadDriver(m.kernel, DriverImage("leaky", "testdrv", LeakyEntry, pool_tags=("Leak",)))
    m.scheduler.run_until_idle()
    IoUnloadDriver(m.kernel, drv)
    m.scheduler.run_until_idle()
    info = crash(m)
    assert info.code == 0xC4 and info.params[0] == 0x62 and info.params[2] == 1
    assert info.params[3] == drv.extension["buf"]


def test_unloading_a_driver_that_freed_its_pool_is_clean():
    m = new_machine()

    @kroutine("testdrv")
    def TidyEntry(DriverObject, RegistryPath):
        DriverObject.extension["buf"] = ExAllocatePoolWithTag(NonPagedPoolNx, 32, "Tidy")
        DriverObject.driver_unload = TidyUnload
        return STATUS_SUCCESS

    @kroutine("testdrv")
    def TidyUnload(DriverObject):
        yield KeDelayExecutionThread(Interval=relative_ms(1))  # an unload that waits
        ExFreePoolWithTag(DriverObject.extension["buf"], "Tidy")

    drv = IoLoadDriver(m.kernel, DriverImage("tidy", "testdrv", TidyEntry, pool_tags=("Tidy",)))
    m.scheduler.run_until_idle()
    IoUnloadDriver(m.kernel, drv)
    m.scheduler.run_until_idle()
    assert_running(m)


def test_device_names_collide_and_deleted_devices_leave_the_namespace():
    m = new_machine()
    drv = load_test_driver(m)

    def body():
        s1, d1 = IoCreateDevice(drv, 0, "Dup", FILE_DEVICE_UNKNOWN)
        s2, d2 = IoCreateDevice(drv, 0, "Dup", FILE_DEVICE_UNKNOWN)
        IoDeleteDevice(d1)
        s3, d3 = IoCreateDevice(drv, 0, "Dup", FILE_DEVICE_UNKNOWN)
        return s1, s2, d2, s3, d3

    s1, s2, d2, s3, d3 = run(m, body)
    from stack.kernel import STATUS_OBJECT_NAME_COLLISION
    assert (s1, s2, d2, s3) == (STATUS_SUCCESS, STATUS_OBJECT_NAME_COLLISION, None, STATUS_SUCCESS)
    assert m.kernel.objects["\\Device\\Dup"] is d3


def test_device_io_control_request_signals_its_event_and_is_freed_by_the_io_manager(stack3):
    m, upper, middle, lower = stack3
    lower.extension["behave"] = pend
    result: list = []

    @kroutine("testdrv")
    def Requester(_):
        event = KEVENT()
        iosb = IoStatusBlock()
        irp = IoBuildDeviceIoControlRequest(0x222004, upper, None, 0, None, 0, False, event, iosb)
        status = IoCallDriver(upper, irp)
        if status == STATUS_PENDING:
            yield KeWaitForSingleObject(event)
        result.append((iosb.Status, iosb.Information, irp.freed))

    from stack.kernel import PsCreateSystemThread
    run(m, PsCreateSystemThread, Requester, None)
    m.scheduler.run_until_idle()
    assert result == []
    run(m, KeInsertQueueDpc, KDPC(LaterCompletionDpc, lower.extension["pending"]))
    m.scheduler.run_until_idle()
    assert_running(m)
    assert result == [(STATUS_SUCCESS, 0, True)]


def test_irp_with_too_many_stack_locations_is_refused():
    m = new_machine()
    assert run(m, IoAllocateIrp, 0) is None
    assert run(m, IoAllocateIrp, 0x80) is None
    assert_running(m)
    assert run(m, lambda: IoAllocateIrp(2).stack_count) == 2


def test_cancel_routine_releasing_the_cancel_lock_completes_at_the_callers_irql(stack3):
    m, upper, middle, lower = stack3
    lower.extension["behave"] = pend
    seen: list[int] = []

    @kroutine("testdrv")
    def IrqlCompletion(DeviceObject, Irp, Context):
        seen.append(m.kernel.irql)
        return STATUS_MORE_PROCESSING_REQUIRED

    def body():
        irp = IoAllocateIrp(1)
        IoGetNextIrpStackLocation(irp).major = IRP_MJ_DEVICE_CONTROL
        IoSetCompletionRoutine(irp, IrqlCompletion, None, True, True, True)
        IoCallDriver(lower, irp)
        IoCancelIrp(irp)
        return irp

    run(m, body)
    assert_running(m)
    assert seen == [0]  # PASSIVE_LEVEL: IoReleaseCancelSpinLock(Irp->CancelIrql) lowered it


def test_io_acquire_cancel_spin_lock_raises_to_dispatch_and_release_restores():
    from stack.kernel import IoAcquireCancelSpinLock
    m = new_machine()

    def body():
        old = IoAcquireCancelSpinLock()
        inside = m.kernel.irql
        IoReleaseCancelSpinLock(old)
        return old, inside, m.kernel.irql

    assert run(m, body) == (0, 2, 0)


def test_with_a_debugger_listening_a_stale_irp_pointer_bug_checks_after_its_block_is_reused(stack3):
    # Reuse of the freed IRP object is a fast path for nobody watching: with the debugger on the
    # bus each IRP is its own object, so freeing the old pointer again is still caught.
    m, upper, middle, lower = stack3
    m.kernel.bus.subscribe(lambda event: None)
    stale = run(m, IoAllocateIrp, 4)
    run(m, IoFreeIrp, stale)
    fresh = run(m, IoAllocateIrp, 4)
    assert fresh.address == stale.address and fresh is not stale and not fresh.freed
    run(m, IoFreeIrp, stale)
    info = crash(m)
    assert info.name == "BAD_POOL_CALLER" and (info.code, info.params[0]) == (0xC2, 0x07)  # freed twice
