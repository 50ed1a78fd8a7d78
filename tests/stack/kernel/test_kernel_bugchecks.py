"""Part 7: every verifier rule bug-checks with the right code and parameters, and nothing escapes."""

from __future__ import annotations

import pytest
from kernel_harness import assert_running, create_device, crash, load_test_driver, new_machine, record_events, run

from stack.kernel import (DISPATCH_LEVEL, HIGH_LEVEL, IRP_MJ_DEVICE_CONTROL, PAGE_SIZE, STATUS_PENDING,
                          STATUS_SUCCESS, BugCheckInfo, ExAllocatePoolWithTag, ExFreePoolWithTag, IoAllocateIrp,
                          IoAllocateMdl, IoBuildPartialMdl, IoCallDriver, IoCompleteRequest, IoFreeMdl,
                          IoGetNextIrpStackLocation, IoMarkIrpPending, IoSetCancelRoutine, KeAcquireSpinLock,
                          KeInsertQueueDpc, KeRaiseIrql, KeRaiseIrqlToDpcLevel, KeWaitForSingleObject,
                          MmBuildMdlForNonPagedPool, MmGetSystemAddressForMdlSafe, MmProbeAndLockPages,
                          MmUnlockPages, NonPagedPoolNx, PagedPool, PsCreateSystemThread, bugcheck_name, kroutine)
from stack.kernel import bugcheck as bc
from stack.kernel.events import BugChecked
from stack.kernel.ke import KDPC, KEVENT
from stack.kernel.mdl import (MDL_MAPPED_TO_SYSTEM_VA, MDL_PARTIAL, MDL_SOURCE_IS_NONPAGED_POOL,
                              MmMapLockedPagesSpecifyCache)
from stack.kernel.pool import tag_from_str


def _irp_to(m, dispatch, stack_size=1):
    drv = load_test_driver(m)
    dev = create_device(m, drv, "Dev", dispatch)

    def body():
        irp = IoAllocateIrp(stack_size)
        IoGetNextIrpStackLocation(irp).major = IRP_MJ_DEVICE_CONTROL
        return irp, IoCallDriver(dev, irp)

    return dev, body


def _complete(status):
    def dispatch(d, irp):
        irp.IoStatus.Status = status
        IoCompleteRequest(irp)
        return status
    return dispatch


def test_completing_an_irp_twice_bugchecks_multiple_irp_complete_requests_with_the_irp():
    m = new_machine()
    _, send = _irp_to(m, _complete(STATUS_SUCCESS))
    irp, _ = run(m, send)
    assert_running(m)
    run(m, IoCompleteRequest, irp)
    info = crash(m)
    assert info.code == 0x44 and info.params == (irp.address, 0, 0, 0)
    assert info.name == "MULTIPLE_IRP_COMPLETE_REQUESTS"
    assert info.frames[:2] == ["nt!IopfCompleteRequest", "nt!IofCompleteRequest"]


def test_calling_a_driver_with_no_stack_location_left_bugchecks_0x35():
    m = new_machine()
    drv = load_test_driver(m)
    lower = create_device(m, drv, "Lower", _complete(STATUS_SUCCESS))

    @kroutine("testdrv")
    def ForwardDispatch(d, irp):
        return IoCallDriver(lower, irp)  # forgot that the IRP has one location only

    upper = create_device(m, drv, "Upper", ForwardDispatch)

    def body():
        irp = IoAllocateIrp(1)
        IoGetNextIrpStackLocation(irp).major = IRP_MJ_DEVICE_CONTROL
        IoCallDriver(upper, irp)
        return irp

    run(m, body)
    info = crash(m)
    assert info.code == 0x35 and info.params[0] != 0
    assert info.frames[:3] == ["nt!IofCallDriver", "testdrv!ForwardDispatch", "testdrv!TestDispatch"]
    assert info.faulting_symbol == "testdrv!ForwardDispatch"


def test_asking_for_the_next_stack_location_below_the_bottom_bugchecks_0x35():
    m = new_machine()
    irp_box: list = []

    def body():
        irp = IoAllocateIrp(1)
        irp_box.append(irp)
        irp.current_location = 1
        IoGetNextIrpStackLocation(irp)

    run(m, body)
    info = crash(m)
    assert info.code == 0x35 and info.params[0] == irp_box[0].address


@pytest.mark.parametrize("access", ["read", "write", "check_access"])
def test_touching_paged_pool_at_dispatch_level_bugchecks_0xd1(access):
    m = new_machine()
    k = m.kernel
    va = run(m, ExAllocatePoolWithTag, PagedPool, 64, "Page")
    run(m, lambda: k.read(va, 8))  # fine at PASSIVE_LEVEL
    assert_running(m)

    @kroutine("testdrv")
    def TouchPaged(dpc, ctx, a1, a2):
        if access == "read":
            k.read(va + 8, 4)
        elif access == "write":
            k.write(va + 8, b"boom")
        else:
            k.check_access(va + 8, 4, True)

    run(m, KeInsertQueueDpc, KDPC(TouchPaged))
    m.scheduler.run_until_idle()
    info = crash(m)
    write = 0 if access == "read" else 1
    assert info.code == 0xD1
    assert info.params == (va + 8, DISPATCH_LEVEL, write, k.symbol_address("testdrv!TouchPaged"))
    assert info.irql == DISPATCH_LEVEL
    assert info.frames[0] == "testdrv!TouchPaged"


def test_nonpaged_pool_is_fine_at_dispatch_level():
    m = new_machine()
    k = m.kernel
    va = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 64, "NonP")
    run(m, lambda: (KeRaiseIrqlToDpcLevel(), k.write(va, b"ok"), k.read(va, 2)))
    assert_running(m)


def test_waiting_at_dispatch_level_bugchecks_irql_not_less_or_equal():
    m = new_machine()
    ev = KEVENT()
    ev.address = 0xFFFFC10000004440

    @kroutine("testdrv")
    def WaitsHoldingLock(_):
        from stack.kernel.ke import KSPIN_LOCK
        KeAcquireSpinLock(KSPIN_LOCK())
        yield KeWaitForSingleObject(ev)

    t = run(m, PsCreateSystemThread, WaitsHoldingLock, None)
    m.scheduler.run_until_idle()
    info = crash(m)
    assert info.code == 0x0A and info.params[:2] == (ev.address, DISPATCH_LEVEL)
    assert info.thread == t.address and info.thread_name == t.name
    assert info.frames[0] == "testdrv!WaitsHoldingLock"


def test_waiting_in_a_dpc_bugchecks_irql_not_less_or_equal():
    m = new_machine()

    @kroutine("testdrv")
    def WaitingDpc(dpc, ctx, a1, a2):
        KeWaitForSingleObject(KEVENT())

    run(m, KeInsertQueueDpc, KDPC(WaitingDpc))
    m.scheduler.run_until_idle()
    info = crash(m)
    assert info.code == 0x0A and info.params[1] == DISPATCH_LEVEL
    assert info.thread_name == "Idle"


def test_freeing_pool_twice_bugchecks_bad_pool_caller_7():
    m = new_machine()
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 64, "Twic")
    run(m, lambda: (ExFreePoolWithTag(a, "Twic"), ExFreePoolWithTag(a, "Twic")))
    info = crash(m)
    assert info.code == 0xC2 and info.params[0] == 0x07 and info.params[3] == a


def test_freeing_big_pool_twice_bugchecks_bad_pool_caller_7():
    m = new_machine()
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 3 * PAGE_SIZE, "Big ")
    run(m, lambda: (ExFreePoolWithTag(a, "Big "), ExFreePoolWithTag(a, "Big ")))
    info = crash(m)
    assert info.code == 0xC2 and info.params[0] == 0x07 and info.params[3] == a


def test_freeing_pool_with_the_wrong_tag_bugchecks_bad_pool_caller_0xa():
    m = new_machine()
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 64, "Good")
    run(m, ExFreePoolWithTag, a, "Evil")
    info = crash(m)
    assert info.code == 0xC2
    assert info.params == (0x0A, a, tag_from_str("Good"), tag_from_str("Evil"))


def test_completing_an_irp_with_status_pending_bugchecks_0xc9_6():
    m = new_machine()
    _, send = _irp_to(m, _complete(STATUS_PENDING))
    run(m, send)
    info = crash(m)
    assert info.code == 0xC9 and info.params[0] == 0x06 and info.params[1] == STATUS_PENDING


def test_completing_an_irp_whose_cancel_routine_is_still_set_bugchecks_0xc9_7():
    m = new_machine()

    @kroutine("testdrv")
    def StillCancelable(d, irp):
        pass

    def dispatch(d, irp):
        IoSetCancelRoutine(irp, StillCancelable)
        return _complete(STATUS_SUCCESS)(d, irp)

    _, send = _irp_to(m, dispatch)
    run(m, send)
    info = crash(m)
    assert info.code == 0xC9 and info.params[0] == 0x07


def test_dispatch_routine_that_returns_at_another_irql_bugchecks_0xc9_5():
    m = new_machine()

    def dispatch(d, irp):
        KeRaiseIrqlToDpcLevel()
        IoMarkIrpPending(irp)
        return STATUS_PENDING

    dev, send = _irp_to(m, dispatch)
    run(m, send)
    info = crash(m)
    assert info.code == 0xC9 and info.params[:4] == (0x05, dev.address, 0, DISPATCH_LEVEL)


def test_calling_a_driver_above_dispatch_level_bugchecks_0xc9_0x10():
    m = new_machine()
    dev, send = _irp_to(m, _complete(STATUS_SUCCESS))
    run(m, lambda: (KeRaiseIrql(HIGH_LEVEL), send()))
    info = crash(m)
    assert info.code == 0xC9 and info.params[:2] == (0x10, HIGH_LEVEL)


def _locked_mdl():
    buf = ExAllocatePoolWithTag(PagedPool, 2 * PAGE_SIZE, "Lock")
    mdl = IoAllocateMdl(buf, 2 * PAGE_SIZE)
    MmProbeAndLockPages(mdl)
    return mdl


def test_freeing_an_mdl_whose_pages_are_still_locked_bugchecks_0xc4_with_the_emulator_subcode():
    m = new_machine()
    box: list = []
    run(m, lambda: (box.append(_locked_mdl()), IoFreeMdl(box[0])))
    info = crash(m)
    assert info.code == 0xC4
    assert info.params[:3] == (bc.EMU_C4_MDL_FREED_LOCKED, box[0].address, 2)
    assert bc.subcode_help(0xC4, info.params[0]).emulator_defined


def test_freeing_an_mdl_that_is_still_mapped_bugchecks_0xc4_0xb8_with_mdl_and_flags():
    m = new_machine()
    box: list = []

    def body():
        src = _locked_mdl()
        part = IoAllocateMdl(src.virtual_address, PAGE_SIZE)
        IoBuildPartialMdl(src, part, src.virtual_address + 0x10, 0x20)
        sysva = MmGetSystemAddressForMdlSafe(part)  # the partial gets its own mapping
        box.extend([part, sysva])
        IoFreeMdl(part)

    run(m, body)
    info = crash(m)
    part, sysva = box
    assert info.code == 0xC4
    assert info.params[0] == bc.C4_MDL_FREED_MAPPED == 0xB8
    assert info.params[1:3] == (part.address, part.flags)
    assert part.flags & MDL_MAPPED_TO_SYSTEM_VA
    assert f"{sysva:x}" in info.detail


def test_freeing_a_mapped_nonpaged_pool_mdl_bugchecks_0xc4_0xb8():
    m = new_machine()
    box: list = []

    def body():
        mdl = IoAllocateMdl(ExAllocatePoolWithTag(NonPagedPoolNx, 64, "Buf "), 64)
        MmBuildMdlForNonPagedPool(mdl)
        box.append(MmMapLockedPagesSpecifyCache(mdl))
        IoFreeMdl(mdl)

    run(m, body)
    info = crash(m)
    assert info.code == 0xC4 and info.params[0] == 0xB8
    assert f"{box[0]:x}" in info.detail


def test_probing_a_nonpaged_pool_mdl_bugchecks_0xc4_0xb0():
    m = new_machine()

    def body():
        mdl = IoAllocateMdl(ExAllocatePoolWithTag(NonPagedPoolNx, 64, "Buf "), 64)
        MmBuildMdlForNonPagedPool(mdl)
        MmProbeAndLockPages(mdl)

    run(m, body)
    info = crash(m)
    assert info.code == 0xC4 and info.params[0] == 0xB0
    assert info.params[2] & MDL_SOURCE_IS_NONPAGED_POOL
    assert info.params[3] == MDL_SOURCE_IS_NONPAGED_POOL


def test_unlocking_an_mdl_that_was_never_locked_bugchecks_0xc4_0x7c():
    m = new_machine()
    box: list = []

    def body():
        mdl = IoAllocateMdl(ExAllocatePoolWithTag(PagedPool, 64, "Buf "), 64)
        box.append(mdl)
        MmUnlockPages(mdl)

    run(m, body)
    info = crash(m)
    # Documented layout: P2 = MDL address, P3 = MDL flags, P4 = 0.
    assert info.code == 0xC4 and info.params == (0x7C, box[0].address, box[0].flags, 0)


def test_building_a_nonpaged_pool_mdl_over_paged_pool_bugchecks_0xc4_0x7f():
    m = new_machine()
    box: list = []

    def body():
        mdl = IoAllocateMdl(ExAllocatePoolWithTag(PagedPool, 64, "Buf "), 64)
        box.append(mdl)
        MmBuildMdlForNonPagedPool(mdl)

    run(m, body)
    info = crash(m)
    # Documented layout: P2 = current IRQL, P3 = MDL address, P4 = MDL flags.
    assert info.code == 0xC4 and info.params == (0x7F, 0, box[0].address, box[0].flags)


def test_unlocking_a_nonpaged_pool_mdl_bugchecks_0xc4_0x7d():
    m = new_machine()
    box: list = []

    def body():
        mdl = IoAllocateMdl(ExAllocatePoolWithTag(NonPagedPoolNx, 64, "Buf "), 64)
        MmBuildMdlForNonPagedPool(mdl)
        box.append(mdl)
        MmUnlockPages(mdl)

    run(m, body)
    info = crash(m)
    assert info.code == 0xC4 and info.params == (0x7D, box[0].address, box[0].flags, 0)


def test_unlocking_a_partial_mdl_bugchecks_0xc4_0xb4():
    m = new_machine()
    box: list = []

    def body():
        src = _locked_mdl()
        part = IoAllocateMdl(src.virtual_address, PAGE_SIZE)
        IoBuildPartialMdl(src, part, src.virtual_address, 0x20)
        box.append(part)
        MmUnlockPages(part)

    run(m, body)
    info = crash(m)
    assert info.code == 0xC4 and info.params == (0xB4, box[0].address, box[0].flags, MDL_PARTIAL)


def test_partial_mdl_outside_its_source_bugchecks_with_an_emulator_defined_subcode():
    m = new_machine()

    def body():
        src = _locked_mdl()
        part = IoAllocateMdl(src.virtual_address, PAGE_SIZE)
        IoBuildPartialMdl(src, part, src.virtual_address + 2 * PAGE_SIZE, 0x20)

    run(m, body)
    info = crash(m)
    assert info.code == 0xC4 and info.params[0] == bc.EMU_C4_PARTIAL_MDL_OUT_OF_RANGE
    assert bc.argument_meanings(info.code, info.params)[0].startswith("emulator-defined subcode: ")


def test_documented_subcodes_are_not_marked_emulator_defined():
    for subcode in (0x30, 0x31, 0x62, 0x7C, 0x7D, 0x7F, 0xB0, 0xB4, 0xB8):
        found = bc.subcode_help(0xC4, subcode)
        assert found is not None and not found.emulator_defined
        assert not found.arg1.startswith("emulator-defined")
    emulated = [n for n in dir(bc) if n.startswith("EMU_C4_")]
    assert emulated and all(bc.subcode_help(0xC4, getattr(bc, n)).emulator_defined for n in emulated)


# --- Python exceptions in driver code, and what a crash leaves behind ---------------------------


@kroutine("testdrv")
def BuggyHelper(x):
    return 1 // x


@kroutine("testdrv")
def BuggyDispatch(DeviceObject, Irp):
    return BuggyHelper(0)


def test_python_exception_in_a_driver_becomes_kmode_exception_not_handled_with_its_frames():
    m = new_machine()
    k = m.kernel
    drv = load_test_driver(m)
    dev = create_device(m, drv, "Dev", BuggyDispatch)

    @kroutine("testdrv")
    def SendFromDpc(dpc, ctx, a1, a2):
        irp = IoAllocateIrp(1)
        IoGetNextIrpStackLocation(irp).major = IRP_MJ_DEVICE_CONTROL
        IoCallDriver(dev, irp)

    run(m, KeInsertQueueDpc, KDPC(SendFromDpc))
    assert m.scheduler.run_until_idle() >= 1  # no exception escaped
    info = crash(m)
    assert info.code == 0x1E
    assert info.params[0] == 0xC0000005
    assert info.params[1] == k.symbol_address("testdrv!BuggyHelper")
    assert info.frames == ["testdrv!BuggyHelper", "testdrv!BuggyDispatch", "testdrv!TestDispatch",
                           "nt!IofCallDriver", "testdrv!SendFromDpc", "nt!KiRetireDpcList", "nt!KiIdleLoop"]
    assert info.faulting_symbol == "testdrv!BuggyHelper"
    assert info.irql == DISPATCH_LEVEL
    assert "ZeroDivisionError" in info.detail


def test_python_exception_in_a_thread_records_the_thread_and_its_stack():
    m = new_machine()
    ev = KEVENT()
    ev.signaled = True

    @kroutine("testdrv")
    def CrashingThread(_):
        yield KeWaitForSingleObject(ev)
        BuggyHelper(0)

    t = run(m, PsCreateSystemThread, CrashingThread, None)
    m.scheduler.run_until_idle()
    info = crash(m)
    assert info.code == 0x1E and info.thread == t.address
    assert info.frames == ["testdrv!BuggyHelper", "testdrv!CrashingThread", "nt!PspSystemThreadStartup",
                           "nt!KiStartSystemThread"]


def test_a_bug_check_halts_the_machine_but_leaves_it_inspectable():
    m = new_machine()
    k = m.kernel
    halts: list[BugCheckInfo] = []
    m.scheduler.on_bugcheck.append(halts.append)
    events = record_events(m)
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 64, "Keep")
    k.mem.write(a, b"still here")
    later: list[int] = []
    m.scheduler.call_later(10, k, later.append, 1)
    run(m, ExFreePoolWithTag, a, "Bad!")
    info = crash(m)
    assert halts == [info]
    assert [e.code for e in events if isinstance(e, BugChecked)] == [0xC2]
    assert m.scheduler.run_one() is False
    assert m.scheduler.run_until_idle() == 0 and later == []
    assert k.mem.read(a, 10) == b"still here"  # memory stays readable for the debugger
    assert bugcheck_name(info.code) == "BAD_POOL_CALLER"
    assert bugcheck_name(0x12345) == "BUGCHECK_12345"


def test_bug_check_text_names_every_code_the_emulator_raises():
    for code in (0x0A, 0x1E, 0x35, 0x44, 0xC2, 0xC4, 0xC9, 0xD1):
        assert code in bc.BUGCHECK_HELP
        assert not bugcheck_name(code).startswith("BUGCHECK_")


def test_ke_bug_check_ex_halts_with_the_given_code_and_parameters():
    from stack.kernel import KeBugCheckEx
    m = new_machine()
    run(m, KeBugCheckEx, 0xE2, 1, 2, 3, 4)
    info = crash(m)
    assert (info.code, info.params, info.name) == (0xE2, (1, 2, 3, 4), "MANUALLY_INITIATED_CRASH")
