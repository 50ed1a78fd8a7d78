"""Kernel objects as WinDbg reads them: IRP stack locations after completion, dispatcher
objects' DISPATCHER_HEADER, and the x64 layouts `dt` uses (Windows 10 x64 offsets)."""

from __future__ import annotations

import struct

from kernel_harness import create_device, load_test_driver, new_machine, run

from stack.kernel import (IRP_MJ_DEVICE_CONTROL, STATUS_MORE_PROCESSING_REQUIRED, STATUS_SUCCESS,
                          ExAllocatePoolWithTag, IoAllocateIrp, IoCallDriver, IoCompleteRequest, IoFreeIrp,
                          IoGetNextIrpStackLocation, IoSetCompletionRoutine, KeSetEvent, KeWaitForSingleObject,
                          NonPagedPoolNx, PsCreateSystemThread, kroutine)
from stack.kernel.ke import KEVENT, KSEMAPHORE, SynchronizationEvent, KeInitializeEvent
from stack.kernel.layouts import LAYOUTS

SEEN: list[dict] = []


def _location(k, irp, index: int) -> dict:
    layout = LAYOUTS["_IO_STACK_LOCATION"]
    raw = k.mem.read(irp.address + 0xD0 + (index - 1) * 0x48, 0x48)
    values = {f.name: layout.unpack_field(f, raw) for f in layout.fields}
    values["Parameters"] = struct.unpack_from("<4Q", raw, 8)
    return values


@kroutine("testdrv")
def CompletionThatReadsItsLocation(DeviceObject, Irp, Context):
    from stack.kernel import current_kernel  # noqa: PLC0415
    SEEN.append(_location(current_kernel(), Irp, 1))
    return STATUS_MORE_PROCESSING_REQUIRED


def complete_at_once(DeviceObject, Irp):
    Irp.IoStatus.Status = STATUS_SUCCESS
    IoCompleteRequest(Irp)
    return STATUS_SUCCESS


def test_completion_keeps_major_device_routine_and_context_and_clears_the_rest():
    """ZeroIrpStackLocation (WRK): MinorFunction, Flags, Control, Parameters and FileObject are
    cleared; MajorFunction, DeviceObject, CompletionRoutine and Context remain."""
    SEEN.clear()
    m = new_machine()
    k = m.kernel
    drv = load_test_driver(m)
    device = create_device(m, drv, "Lower", complete_at_once)

    def body():
        irp = IoAllocateIrp(1)
        loc = IoGetNextIrpStackLocation(irp)
        loc.major, loc.minor, loc.flags = IRP_MJ_DEVICE_CONTROL, 0x7, 0x5
        loc.parameters = (0x10, 0x20, 0x222003, 0x40)
        loc.file_object = 0xFFFFC1CB00001230
        IoSetCompletionRoutine(irp, CompletionThatReadsItsLocation, 0x1234, True, True, True)
        IoCallDriver(device, irp)
        return irp

    irp = run(m, body)
    (seen,) = SEEN
    assert seen["MajorFunction"] == IRP_MJ_DEVICE_CONTROL
    assert seen["DeviceObject"] == device.address
    assert seen["CompletionRoutine"] == k.symbol_address("testdrv!CompletionThatReadsItsLocation") != 0
    assert seen["Context"] == 0x1234
    assert (seen["MinorFunction"], seen["Flags"], seen["Control"]) == (0, 0, 0)
    assert seen["Parameters"] == (0, 0, 0, 0) and seen["FileObject"] == 0
    run(m, IoFreeIrp, irp)


def test_kevent_signal_state_changes_across_a_wait_in_pool_memory():
    m = new_machine()
    k = m.kernel
    event = KEVENT()

    def setup():
        KeInitializeEvent(event, SynchronizationEvent, False)
        event.place(k, ExAllocatePoolWithTag(NonPagedPoolNx, 0x18, "Evnt"))

    run(m, setup)

    def header():
        raw = k.mem.read(event.address, 0x18)
        return raw[0], raw[2], struct.unpack_from("<i", raw, 4)[0], struct.unpack_from("<2Q", raw, 8)

    empty = (event.address + 8, event.address + 8)  # an empty list points at its own head
    assert header() == (1, 6, 0, empty)  # EventSynchronizationObject, 6 dwords
    run(m, KeSetEvent, event, 0, False)
    assert header() == (1, 6, 1, empty)  # signalled, nobody waiting

    def waiter(_ctx):
        yield KeWaitForSingleObject(event)
        yield KeWaitForSingleObject(event)

    thread = run(m, PsCreateSystemThread, waiter, None, "waiter")
    m.scheduler.run_until_idle()
    # the first wait consumed the signal; the second waits: the list names its KWAIT_BLOCK
    block = thread.address + 0x140
    assert header() == (1, 6, 0, (block, block))
    run(m, KeSetEvent, event, 0, False)
    m.scheduler.run_until_idle()
    assert header() == (1, 6, 0, empty)


def test_semaphore_header_carries_its_count_and_limit():
    m = new_machine()
    k = m.kernel
    sem = KSEMAPHORE(2, 5)
    sem.place(k, run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x20, "Sema"))
    raw = k.mem.read(sem.address, 0x20)
    assert raw[0] == 5 and struct.unpack_from("<i", raw, 4)[0] == 2 and struct.unpack_from("<i", raw, 0x18)[0] == 5


def offsets(name: str) -> dict[str, int]:
    return {f.name: f.offset for f in LAYOUTS[name].fields}


def test_device_object_has_the_windows_10_x64_offsets():
    o = offsets("_DEVICE_OBJECT")
    assert (o["Queue"], o["DeviceQueue"], o["Dpc"], o["ActiveThreadCount"], o["SecurityDescriptor"],
            o["DeviceLock"], o["SectorSize"], o["Spare1"], o["DeviceObjectExtension"], o["Reserved"]) == (
        0x50, 0xA0, 0xC8, 0x108, 0x110, 0x118, 0x130, 0x132, 0x138, 0x140)
    assert LAYOUTS["_DEVICE_OBJECT"].size == 0x150


def test_kernel_structures_dt_knows_have_their_x64_sizes_and_offsets():
    sizes = {name: LAYOUTS[name].size for name in ("_KEVENT", "_DISPATCHER_HEADER", "_KDPC", "_UNICODE_STRING",
                                                    "_LIST_ENTRY", "_SLIST_ENTRY", "_POOL_HEADER", "_KTIMER",
                                                    "_KSEMAPHORE")}
    assert sizes == {"_KEVENT": 0x18, "_DISPATCHER_HEADER": 0x18, "_KDPC": 0x40, "_UNICODE_STRING": 0x10,
                     "_LIST_ENTRY": 0x10, "_SLIST_ENTRY": 0x10, "_POOL_HEADER": 0x10, "_KTIMER": 0x40,
                     "_KSEMAPHORE": 0x20}
    kt = offsets("_KTHREAD")
    assert (kt["InitialStack"], kt["StackLimit"], kt["StackBase"], kt["KernelStack"]) == (0x28, 0x30, 0x38, 0x58)
    dh = offsets("_DISPATCHER_HEADER")
    assert (dh["Type"], dh["SignalState"], dh["WaitListHead"]) == (0, 4, 8)
    assert offsets("_DRIVER_OBJECT")["DriverName"] == 0x38
    assert LAYOUTS["_DRIVER_OBJECT"].by_name["DriverName"].target == "_UNICODE_STRING"


def test_irp_tail_associated_irp_and_overlay_are_unions():
    irp = LAYOUTS["_IRP"].by_name
    assert [irp[n].kind for n in ("AssociatedIrp", "Overlay", "Tail")] == ["union"] * 3
    tail = LAYOUTS[irp["Tail"].target].by_name
    assert tail["Overlay"].kind == "union"
    assert LAYOUTS[tail["Overlay"].target].by_name["CurrentStackLocation"].offset == 0x40


def test_driver_object_name_is_a_unicode_string_in_memory():
    m = new_machine()
    k = m.kernel
    drv = load_test_driver(m)
    raw = k.mem.read(drv.address + 0x38, 0x10)
    length, maximum, buffer = struct.unpack_from("<HH4xQ", raw)
    assert k.mem.read(buffer, length).decode("utf-16-le") == drv.name == "\\Driver\\testdrv"
    assert maximum == length


def test_net_buffer_list_info_has_the_element_count_of_windows_symbols():
    """`dt ndis!_NET_BUFFER_LIST` on Windows 10 x64 (public capture):
       +0x090 NetBufferListInfo : [29] Ptr64 Void"""
    import stack.ndis.nbl  # noqa: F401,PLC0415  (registers the NDIS layouts)
    field = LAYOUTS["_NET_BUFFER_LIST"].by_name["NetBufferListInfo"]
    assert (field.offset, field.count) == (0x90, 29)
    assert LAYOUTS["_NET_BUFFER_LIST"].size == 0x90 + 29 * 8


def test_sample_driver_contexts_have_their_c_sizes():
    from stack.drivers.echosrv.wsksmple import WSKSAMPLE_SOCKET_CONTEXT, WSKSAMPLE_SOCKET_OP_CONTEXT  # noqa: PLC0415
    from stack.drivers.ksocket.ksocket import KSOCKET  # noqa: PLC0415
    assert WSKSAMPLE_SOCKET_OP_CONTEXT.SIZE == 0x50  # SLIST_ENTRY first: 16 bytes, 16-aligned
    assert WSKSAMPLE_SOCKET_CONTEXT.POOL_SIZE == 0xC0
    assert KSOCKET.POOL_SIZE == 0x30 and KSOCKET.EMBEDDED == {"AsyncContext.CompletionEvent": 0x10}


def test_kdpc_ktimer_and_spin_lock_are_written_where_they_live():
    """`dt nt!_KDPC` (Windows 10 x64): Type 0x13 (DpcObject), DeferredRoutine 0x18, DeferredContext 0x20;
    `dt nt!_KTIMER`: DueTime 0x18, Dpc 0x30, Period 0x3c; a KSPIN_LOCK is one ULONG_PTR, 1 while held."""
    from stack.kernel import KeAcquireSpinLock, KeInitializeDpc, KeReleaseSpinLock, KeSetTimerEx  # noqa: PLC0415
    from stack.kernel.ke import KDPC, KSPIN_LOCK, KTIMER  # noqa: PLC0415
    m = new_machine()
    k = m.kernel
    load_test_driver(m)
    block = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x100, "Objs")
    dpc, timer, lock = KDPC(), KTIMER(), KSPIN_LOCK()
    dpc.place(k, block)
    timer.place(k, block + 0x40)
    lock.place(k, block + 0x80)

    def arm():
        KeInitializeDpc(dpc, CompletionThatReadsItsLocation, 0x5678)
        KeSetTimerEx(timer, -10_000 * 5, 20, dpc)  # 5 ms, then every 20 ms
        old = KeAcquireSpinLock(lock)
        held = k.mem.read(lock.address, 8)
        KeReleaseSpinLock(lock, old)
        return held

    held = run(m, arm)
    assert held == (1).to_bytes(8, "little") and k.mem.read(lock.address, 8) == bytes(8)
    raw = k.mem.read(dpc.address, 0x40)
    routine = k.symbol_address("testdrv!CompletionThatReadsItsLocation")
    assert routine != 0 and raw[0] == 0x13 and struct.unpack_from("<2Q", raw, 0x18) == (routine, 0x5678)
    raw = k.mem.read(timer.address, 0x40)
    assert raw[0] == 8  # TimerNotificationObject
    assert struct.unpack_from("<Q", raw, 0x18)[0] == timer.due_ns // 100
    assert struct.unpack_from("<Q", raw, 0x30)[0] == dpc.address and struct.unpack_from("<I", raw, 0x3C)[0] == 20


def test_device_object_block_holds_its_extension_devobj_extension_and_initialised_lock():
    m = new_machine()
    k = m.kernel
    drv = load_test_driver(m)
    device = create_device(m, drv, "Objs", complete_at_once)
    raw = k.mem.read(device.address, 0x150)
    values = {f.name: LAYOUTS["_DEVICE_OBJECT"].unpack_field(f, raw) for f in LAYOUTS["_DEVICE_OBJECT"].fields}
    devobj_ext = values["DeviceObjectExtension"]
    assert devobj_ext >= device.address + 0x150
    assert struct.unpack_from("<hH4xQ", k.mem.read(devobj_ext, 0x10)) == (13, 0x70, device.address)
    lock = bytes(values["DeviceLock"])  # a SynchronizationEvent, signalled, nobody waiting
    assert (lock[0], lock[2], struct.unpack_from("<i", lock, 4)[0]) == (1, 6, 1)
    assert struct.unpack_from("<2Q", lock, 8) == (device.address + 0x120,) * 2


def test_pool_header_in_front_of_a_small_block_reads_as_dt_pool_header_shows_it():
    m = new_machine()
    k = m.kernel
    block = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x18, "Evnt")
    layout = LAYOUTS["_POOL_HEADER"]
    raw = k.mem.read(block - 0x10, 0x10)
    values = {f.name: layout.unpack_field(f, raw) for f in layout.fields}
    assert values["PoolTag"].to_bytes(4, "little") == b"Evnt"
    assert values["BlockSize"] == 0x30 // 0x10  # 0x18 bytes + the header, in 16-byte units


def test_ksocket_completion_event_lives_at_its_c_offset_in_the_ksocket_block():
    from stack.drivers.ksocket.ksocket import KSOCKET, MEMORY_TAG  # noqa: PLC0415
    from stack.kernel.ex import ExAllocatePoolObject, ExFreePoolObject  # noqa: PLC0415
    from stack.kernel.pool import PagedPool  # noqa: PLC0415
    m = new_machine()
    k = m.kernel
    ks = run(m, ExAllocatePoolObject, PagedPool, KSOCKET, MEMORY_TAG)
    event = ks.AsyncContext.CompletionEvent
    assert event.address == ks.address + 0x10
    run(m, KeSetEvent, event, 0, False)
    raw = k.mem.read(ks.address + 0x10, 0x18)
    assert raw[0] == 0 and struct.unpack_from("<i", raw, 4)[0] == 1  # a signalled NotificationEvent
    run(m, ExFreePoolObject, ks, MEMORY_TAG)
    assert event.placed_in is None  # freed with its block: nothing writes there any more


def test_a_local_kevent_lives_in_its_routines_frame_while_the_routine_runs():
    """`KEVENT done; KeInitializeEvent(&done, ...)` in a thread routine: the event's address is in
    that routine's frame on the thread's kernel stack, and reads show its header while it waits."""
    m = new_machine()
    k = m.kernel
    events: list = []

    @kroutine("testdrv")
    def WaitsOnALocalEvent(_ctx):
        done = KEVENT()
        KeInitializeEvent(done, SynchronizationEvent, False)
        events.append(done)
        yield KeWaitForSingleObject(done)

    thread = run(m, PsCreateSystemThread, WaitsOnALocalEvent, None, "local waiter")
    m.scheduler.run_until_idle()
    (done,) = events
    assert thread.stack_limit <= done.address < thread.stack_base
    raw = k.mem.read(done.address, 0x18)
    assert (raw[0], raw[2], struct.unpack_from("<i", raw, 4)[0]) == (1, 6, 0)
    assert struct.unpack_from("<2Q", raw, 8) == (thread.address + 0x140,) * 2  # the waiting thread
    run(m, KeSetEvent, done, 0, False)
    m.scheduler.run_until_idle()
    assert thread.state == "Terminated"
