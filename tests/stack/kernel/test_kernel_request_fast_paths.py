"""The per-request fast paths of the I/O manager, the pool and the structure registry (issue 14).

With nobody on the event bus, IoCallDriver, IoCompleteRequest, IoAllocateIrp, ExAllocatePoolWithTag
and friends skip building events, but they must leave the machine exactly as the observed path
does: the same frames on the logical stack, the same completion order, the same pool blocks,
headers and tag counts, the same verifier failures.  These tests hold the two paths together."""

from __future__ import annotations

import random
import struct

from kernel_harness import assert_running, create_device, load_test_driver, new_machine, record_events, run

from stack.kernel import (IRP_MJ_DEVICE_CONTROL, STATUS_MORE_PROCESSING_REQUIRED, STATUS_SUCCESS, ExAllocatePoolWithTag,
                          ExFreePoolWithTag, IoAllocateIrp, IoCallDriver, IoCompleteRequest,
                          IoCopyCurrentIrpStackLocationToNext, IoFreeIrp, IoGetNextIrpStackLocation,
                          IoSetCompletionRoutine, NonPagedPoolNx, PagedPool, kroutine)
from stack.kernel.events import IrpCompleted, IrpDispatched, RoutineEntered, RoutineReturned
from stack.kernel.layouts import LAYOUTS, _as_int, _FORMATS
from stack.kernel.pool import POOL_HEADER_SIZE, tag_from_str
from stack.kernel.symbols import current_kernel

SEEN: list = []


@kroutine("testdrv")
def FastPathFilter(DeviceObject, Irp):
    IoCopyCurrentIrpStackLocationToNext(Irp)
    IoSetCompletionRoutine(Irp, FastPathCompletion, DeviceObject.extension["name"], True, True, True)
    return IoCallDriver(DeviceObject.extension["lower"], Irp)


def _frames() -> tuple[str, ...]:
    return tuple(f.symbol for f in current_kernel().frames)


@kroutine("testdrv")
def FastPathLower(DeviceObject, Irp):
    SEEN.append(("frames", _frames()))
    Irp.IoStatus.Status = STATUS_SUCCESS
    IoCompleteRequest(Irp)
    SEEN.append(("after-complete", _frames()))
    return STATUS_SUCCESS


@kroutine("testdrv")
def FastPathCompletion(DeviceObject, Irp, Context):
    SEEN.append(("completion", Context, _frames()))
    return STATUS_SUCCESS


@kroutine("testdrv")
def FastPathOriginator(DeviceObject, Irp, Context):
    SEEN.append(("originator", Irp.pending_returned, Irp.IoStatus.Status))
    return STATUS_MORE_PROCESSING_REQUIRED


def _two_level_request(observed: bool) -> tuple[list, list, list[str]]:
    """One IRP through upper -> lower, with or without a subscriber on the bus."""
    SEEN.clear()
    m = new_machine()
    drv = load_test_driver(m)
    lower = create_device(m, drv, "Lower", FastPathLower)
    upper = create_device(m, drv, "Upper", FastPathFilter, stack_size=2)
    upper.extension.update(name="upper", lower=lower)
    events = record_events(m) if observed else []

    def body():
        irp = IoAllocateIrp(3)
        IoGetNextIrpStackLocation(irp).major = IRP_MJ_DEVICE_CONTROL
        IoSetCompletionRoutine(irp, FastPathOriginator, None, True, True, True)
        status = IoCallDriver(upper, irp)
        frames_after = tuple(f.symbol for f in m.kernel.frames)
        history = [text for _, text in irp.history]
        IoFreeIrp(irp)
        return status, frames_after, history

    status, frames_after, history = run(m, body)
    assert_running(m)
    assert status == STATUS_SUCCESS
    return list(SEEN) + [("after-call", frames_after)], events, history


def test_io_call_driver_and_io_complete_request_keep_the_same_frames_with_and_without_a_listener():
    quiet, _, quiet_history = _two_level_request(observed=False)
    loud, events, loud_history = _two_level_request(observed=True)
    assert quiet == loud
    assert quiet_history == loud_history
    # Inside the lower driver the logical stack shows both IofCallDriver hand-offs.
    frames = dict((entry[0], entry[1]) for entry in quiet if entry[0] in ("frames", "after-complete"))
    assert frames["frames"].count("nt!IofCallDriver") == 2
    assert frames["frames"][-1] == "testdrv!FastPathLower"
    # The completion routine runs under IofCompleteRequest -> IopfCompleteRequest, as on Windows.
    completion = next(entry for entry in quiet if entry[0] == "completion")
    assert completion[2][-3:] == ("nt!IofCompleteRequest", "nt!IopfCompleteRequest", "testdrv!FastPathCompletion")
    # After completing, and after the whole call, nothing is left on the stack.
    assert "nt!IofCompleteRequest" not in frames["after-complete"]
    assert quiet[-1] == ("after-call", frames["frames"][:frames["frames"].index("nt!IofCallDriver")])


def test_every_irp_hand_off_is_still_an_event_when_somebody_listens():
    _, events, _ = _two_level_request(observed=True)
    entered = [e.symbol for e in events if isinstance(e, RoutineEntered)]
    returned = [e.symbol for e in events if isinstance(e, RoutineReturned)]
    assert entered.count("nt!IofCallDriver") == 2 and returned.count("nt!IofCallDriver") == 2
    assert entered.count("nt!IofCompleteRequest") == 1 and entered.count("nt!IopfCompleteRequest") == 1
    assert [e.driver for e in events if isinstance(e, IrpDispatched)] == ["\\Driver\\testdrv"] * 2
    assert sum(isinstance(e, IrpCompleted) for e in events) == 1


def test_irp_history_is_formatted_only_when_read_and_says_what_happened():
    _, _, history = _two_level_request(observed=False)
    assert history == ["allocated by nt!KiIdleLoop",
                       "dispatched IRP_MJ_DEVICE_CONTROL to \\Driver\\testdrv",
                       "dispatched IRP_MJ_DEVICE_CONTROL to \\Driver\\testdrv",
                       "completed 0x00000000"]


def test_pool_fast_path_writes_headers_counts_tags_and_reuses_blocks_lifo():
    m = new_machine()
    k = m.kernel
    tag = tag_from_str("Fast")
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 40, "Fast")
    b = run(m, ExAllocatePoolWithTag, PagedPool, 40, "Fast")
    header = k.mem.read(a - POOL_HEADER_SIZE, POOL_HEADER_SIZE)
    assert header[2] == (40 + POOL_HEADER_SIZE + 15) // 16  # BlockSize in 16-byte units
    assert header[3] == (NonPagedPoolNx & 0xFF) + 1  # PoolType + 1 while allocated
    assert int.from_bytes(header[4:8], "little") == tag
    assert k.mem.read(a, 40) == bytes(40)  # handed out zeroed
    assert k.pool.usage[(tag, False)].allocs == 1 and k.pool.usage[(tag, True)].allocs == 1
    k.mem.write(a, b"x" * 40)
    run(m, ExFreePoolWithTag, a, "Fast")
    freed = k.mem.read(a - POOL_HEADER_SIZE, POOL_HEADER_SIZE)
    assert freed[3] == 0 and int.from_bytes(freed[4:8], "little") == tag  # free: PoolType 0, tag kept
    usage = k.pool.usage[(tag, False)]
    assert (usage.allocs, usage.frees, usage.bytes_in_use) == (1, 1, 0)
    again = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 40, "Fast")
    assert again == a and k.mem.read(again, 40) == bytes(40)  # the same block, zeroed again
    run(m, ExFreePoolWithTag, again, "Fast")
    run(m, ExFreePoolWithTag, b, "Fast")
    assert_running(m)


def test_verifier_faults_still_fail_irp_and_pool_allocations_on_the_fast_path_and_name_the_caller():
    m = new_machine()
    k = m.kernel
    k.verifier.configure(10_000, classes=["irp", "pool"])

    @kroutine("testdrv")
    def AllocateBoth():
        return ExAllocatePoolWithTag(NonPagedPoolNx, 32, "Flt "), IoAllocateIrp(2)

    assert k.bus.subscribers == []  # the quiet path
    assert run(m, AllocateBoth) == (0, None)
    assert dict(k.verifier.injected) == {"pool": 1, "irp": 1}
    assert [(r.cls, r.caller) for r in k.verifier.log] == [("pool", "testdrv!AllocateBoth"),
                                                          ("irp", "testdrv!AllocateBoth")]
    assert (tag_from_str("Flt "), False) not in k.pool.usage  # nothing was allocated
    assert_running(m)


class _Struct:
    """A structure registered for flushing: counts its flushes and writes a marker."""

    def __init__(self, k, address: int, size: int, marker: int) -> None:
        self.kernel, self.address, self.struct_size, self.marker, self.flushes = k, address, size, marker, 0

    def flush(self) -> None:
        self.flushes += 1
        self.kernel.mem.write(self.address, bytes([self.marker]) * self.struct_size)


def test_a_read_flushes_only_the_live_structures_it_covers_and_each_once():
    m = new_machine()
    k = m.kernel
    page = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 3 * 4096, "Strc")  # big pool: page aligned
    first, second = _Struct(k, page + 0x100, 0x40, 0xA1), _Struct(k, page + 0x200, 0x40, 0xB2)
    across = _Struct(k, page + 0x1FF0, 0x20, 0xC3)  # spans two pages
    for s in (first, second, across):
        k.mem.register_struct(s)
    assert k.mem.read(page + 0x100, 8) == b"\xA1" * 8
    assert (first.flushes, second.flushes, across.flushes) == (1, 0, 0)
    assert k.mem.read(page + 0x180, 0x100) == bytes(0x80) + b"\xB2" * 0x40 + bytes(0x40)
    assert (first.flushes, second.flushes) == (1, 1)
    assert k.mem.read(page + 0x1FF8, 0x10) == b"\xC3" * 0x10  # one read over both of its pages
    assert across.flushes == 1
    k.mem.unregister_struct(second)
    k.mem.read(page + 0x200, 8)
    assert second.flushes == 1  # unregistered: never flushed again
    for s in (first, across):
        k.mem.unregister_struct(s)
    run(m, ExFreePoolWithTag, page, "Strc")


class _Pointer:
    def __init__(self, address) -> None:
        self.address = address


def _reference_pack(layout, values: dict) -> bytes:
    """StructLayout.pack as it was before the plain-int plan: every field through _as_int."""
    buf = bytearray(layout.size)
    for f in layout.fields:
        v = values.get(f.name)
        if v is None or f.kind not in _FORMATS or f.count != 1:
            continue
        struct.pack_into(_FORMATS[f.kind], buf, f.offset, _as_int(v, f.kind))
    return bytes(buf)


def test_layout_pack_gives_the_same_bytes_for_ints_bools_pointers_and_objects():
    rng = random.Random(14)
    for layout in LAYOUTS.values():
        for _ in range(20):
            values = {f.name: rng.choice([rng.getrandbits(70), -rng.getrandbits(12), True, False, 0,
                                          _Pointer(rng.getrandbits(64)), _Pointer(None), object()])
                      for f in layout.fields if f.kind in _FORMATS and f.count == 1}
            assert layout.pack(values) == _reference_pack(layout, values), layout.name


def test_a_reused_block_is_counted_under_the_tag_of_its_latest_allocation():
    m = new_machine()
    k = m.kernel
    one, two = tag_from_str("One "), tag_from_str("Two ")
    for _ in range(2):  # the second round runs on the lookaside fast path
        a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 24, "One ")
        run(m, ExFreePoolWithTag, a, "One ")
        b = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 24, "Two ")
        assert b == a  # the same 24-byte block, now tagged Two
        assert int.from_bytes(k.mem.read(b - POOL_HEADER_SIZE + 4, 4), "little") == two
        run(m, ExFreePoolWithTag, b, "Two ")
    assert (k.pool.usage[(one, False)].allocs, k.pool.usage[(one, False)].frees) == (2, 2)
    assert (k.pool.usage[(two, False)].allocs, k.pool.usage[(two, False)].frees) == (2, 2)
    assert k.pool.usage[(one, False)].bytes_in_use == k.pool.usage[(two, False)].bytes_in_use == 0
    assert_running(m)


def test_freeing_with_the_wrong_tag_still_bugchecks_after_the_fast_path_warmed_up():
    m = new_machine()
    run(m, ExFreePoolWithTag, run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 24, "Good"), "Good")
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 24, "Good")
    run(m, ExFreePoolWithTag, a, "Evil")
    info = m.scheduler.halted
    assert info is not None and info.code == 0xC2 and info.params[0] == 0x0A  # BAD_POOL_CALLER, wrong tag


def test_freeing_twice_still_bugchecks_after_the_fast_path_warmed_up():
    m = new_machine()
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 24, "Twce")
    run(m, ExFreePoolWithTag, a, "Twce")
    a = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 24, "Twce")
    run(m, ExFreePoolWithTag, a, "Twce")
    run(m, ExFreePoolWithTag, a, "Twce")
    info = m.scheduler.halted
    assert info is not None and info.code == 0xC2 and info.params[0] == 0x07  # BAD_POOL_CALLER, already freed
