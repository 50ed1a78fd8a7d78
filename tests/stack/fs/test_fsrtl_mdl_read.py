"""FsRtlMdlReadEx / FsRtlMdlReadComplete over kfs: fast I/O MdlRead when the file is cached (no
IRP), IRP_MJ_READ / IRP_MN_MDL when it is not or the file system has no fast I/O, and the pages
given back either way."""

from __future__ import annotations

from typing import Any, Callable

from stack.fs import fsio
from stack.fs.cache import CacheManager
from stack.fs.docroot_manifest import docroot_files, file_bytes
from stack.fs.fsrtl import FsRtlMdlReadComplete, FsRtlMdlReadEx, Ref, fs_mdl_read_fast
from stack.fs.kfs import DRIVER_IMAGE, VOLUME_DEVICE_NAME
from stack.kernel import (IRP_MJ_READ, IRP_MN_COMPLETE_MDL, IRP_MN_MDL, STATUS_END_OF_FILE, STATUS_SUCCESS,
                          IoGetDeviceObjectPointer, IoLoadDriver)
from stack.kernel.events import IrpDispatched, RoutineEntered
from stack.kernel.irp import IoStatusBlock
from stack.kernel.machine import Machine
from stack.kernel.mdl import MDL_TAG, mdl_chain_bytes
from stack.kernel.pool import tag_from_str

CONTENT = {name: file_bytes(content) for name, content in docroot_files().items()}


def _machine() -> tuple[Machine, list[Any]]:
    m = Machine(seed=11, memory_mb=8)
    IoLoadDriver(m.kernel, DRIVER_IMAGE)
    m.scheduler.run_until_idle()
    seen: list[Any] = []
    m.bus.subscribe(seen.append)
    return m, seen


def run(m: Machine, fn: Callable[..., Any], *args: Any) -> Any:
    result = m.run_in(m.kernel, fn, *args)
    info = m.scheduler.halted
    assert info is None, f"bug check {info.code:#x} {info.frames}\n{info.detail}"
    return result


def _irps(seen: list[Any]) -> list[tuple[int, int]]:
    return [(e.major, e.minor) for e in seen if isinstance(e, IrpDispatched)]


def _entered(seen: list[Any]) -> list[str]:
    return [e.symbol for e in seen if isinstance(e, RoutineEntered) and e.symbol.startswith(("kfs!", "nt!FsRtl"))]


def _read_and_give_back(seen: list[Any], fo: Any, offset: int, length: int) -> tuple[bytes, list, list, list]:
    seen.clear()
    status, chain = fs_mdl_read_fast(fo, offset, length)
    assert status == STATUS_SUCCESS and chain is not None
    data = mdl_chain_bytes(chain)
    read_irps, read_calls = _irps(seen), _entered(seen)
    seen.clear()
    assert FsRtlMdlReadComplete(fo, chain)
    return data, read_irps, read_calls, _irps(seen)


def test_first_read_falls_back_to_the_irp_then_fast_io_serves_the_cached_file_with_no_irp():
    m, seen = _machine()
    name = "files/64KB.bin"

    def body() -> list[tuple[bytes, list, list, list]]:
        _, fo = fsio.fs_open(IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME), name)
        results = [_read_and_give_back(seen, fo, 0, len(CONTENT[name])),
                   _read_and_give_back(seen, fo, 100, 5000)]
        fsio.fs_close(fo)
        return results

    (first, first_irps, first_calls, _), (second, second_irps, second_calls, complete_irps) = run(m, body)
    assert first == CONTENT[name] and second == CONTENT[name][100:5100]
    # Not cached yet: kfs's MdlRead says FALSE and the IRP-based MDL read fills the cache.
    assert first_calls[:2] == ["nt!FsRtlMdlReadEx", "kfs!KfsFastIoMdlRead"]
    assert first_irps == [(IRP_MJ_READ, IRP_MN_MDL)]
    # Cached: the same call makes no IRP, and the pages go back through MdlReadComplete, no IRP either.
    assert second_calls == ["nt!FsRtlMdlReadEx", "kfs!KfsFastIoMdlRead"]
    assert second_irps == [] and complete_irps == []
    assert CacheManager.of(m.kernel).disk_reads == 1


def test_mdl_read_complete_returns_the_pages_and_frees_every_mdl():
    m, seen = _machine()
    k = m.kernel
    name = "files/1MB.bin"
    mdls_before = sum(1 for b in k.pool.allocated_blocks() if b.tag == tag_from_str(MDL_TAG))

    def hold() -> tuple[Any, Any, list[int]]:
        _, fo = fsio.fs_open(IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME), name)
        run_chain = fs_mdl_read_fast(fo, 0, 4096)[1]  # fill the cache through the IRP path
        FsRtlMdlReadComplete(fo, run_chain)
        seen.clear()
        status, chain = fs_mdl_read_fast(fo, 0x100, 0x80000)
        assert status == STATUS_SUCCESS and _irps(seen) == []
        return fo, chain, [p for mdl in chain.chain() for p in mdl.pfns]

    fo, chain, pfns = run(m, hold)
    assert len(list(chain.chain())) == 3  # one MDL per 256 KiB view, as on the IRP path
    assert all(k.phys.entry(p).lock_count == 1 for p in pfns)
    assert CacheManager.of(k).mdls_outstanding == 3

    def give_back() -> None:
        seen.clear()
        assert FsRtlMdlReadComplete(fo, chain)
        assert _irps(seen) == [] and "kfs!KfsFastIoMdlReadComplete" in _entered(seen)
        fsio.fs_close(fo)

    run(m, give_back)
    assert all(k.phys.entry(p).lock_count == 0 for p in pfns)
    assert CacheManager.of(k).mdls_outstanding == 0
    assert sum(1 for b in k.pool.allocated_blocks() if b.tag == tag_from_str(MDL_TAG)) == mdls_before


def test_a_file_system_without_fast_io_mdl_read_gets_the_irps_both_ways():
    m, seen = _machine()
    kfs = m.kernel.drivers["kfs"]
    table = kfs.fast_io_dispatch
    name = "index.html"

    def body() -> list[tuple[bytes, list, list, list]]:
        _, fo = fsio.fs_open(IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME), name)
        results = [_read_and_give_back(seen, fo, 0, len(CONTENT[name])) for _ in range(2)]
        fsio.fs_close(fo)
        return results

    kfs.fast_io_dispatch = None
    try:
        results = run(m, body)
    finally:
        kfs.fast_io_dispatch = table
    for data, read_irps, calls, complete_irps in results:
        assert data == CONTENT[name]
        assert read_irps == [(IRP_MJ_READ, IRP_MN_MDL)] and complete_irps == [(IRP_MJ_READ, IRP_MN_COMPLETE_MDL)]
        assert "kfs!KfsFastIoMdlRead" not in calls


def test_the_fast_io_table_holds_mdl_read_and_mdl_read_complete_at_their_wdm_offsets():
    m, _ = _machine()
    k = m.kernel
    table = k.drivers["kfs"].fast_io_dispatch
    assert k.mem.read_u64(table.address + 0x80) == k.symbol_address("kfs!KfsFastIoMdlRead")
    assert k.mem.read_u64(table.address + 0x88) == k.symbol_address("kfs!KfsFastIoMdlReadComplete")


def test_fast_io_read_past_the_end_of_a_cached_file_is_end_of_file_with_no_chain():
    m, seen = _machine()
    name = "index.html"

    def body() -> tuple[int, Any, list]:
        _, fo = fsio.fs_open(IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME), name)
        _read_and_give_back(seen, fo, 0, 10)  # cache it
        seen.clear()
        chain = Ref()
        status = FsRtlMdlReadEx(fo, len(CONTENT[name]), 10, 0, chain, IoStatusBlock())
        irps = _irps(seen)
        fsio.fs_close(fo)
        return status, chain.value, irps

    status, chain, irps = run(m, body)
    assert status == STATUS_END_OF_FILE and chain is None and irps == []


def test_a_replaced_file_leaves_the_cache_and_an_open_file_object_reads_the_new_version():
    from stack.fs.kfs import KFS_VOLUME_TIME, KfsReplaceFile
    m, seen = _machine()
    name = "style.css"
    new = b"p { margin: 0 }\n" * 300  # two pages

    def body() -> tuple:
        volume = IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)
        _, fo = fsio.fs_open(volume, name)
        _read_and_give_back(seen, fo, 0, len(CONTENT[name]))  # cached now
        _, before = fsio.fs_query_basic(fo)
        status = KfsReplaceFile(volume, name, new)
        _, after = fsio.fs_query_basic(fo)
        _, size = fsio.fs_query_size(fo)
        first = _read_and_give_back(seen, fo, 0, len(new))
        second = _read_and_give_back(seen, fo, 0, len(new))
        fsio.fs_close(fo)
        return status, before.LastWriteTime, after.LastWriteTime, size, first, second

    status, before, after, size, first, second = run(m, body)
    assert status == STATUS_SUCCESS and before == KFS_VOLUME_TIME and after > before and size == len(new)
    assert first[0] == second[0] == new
    assert first[1] == [(IRP_MJ_READ, IRP_MN_MDL)]  # purged: the next read fills the cache again
    assert second[1] == []
    assert CacheManager.of(m.kernel).disk_reads == 2


# MS Learn, FsRtlMdlReadEx / FsRtlMdlReadCompleteDev requirements: "IRQL | PASSIVE_LEVEL".
def _halted_at_dispatch(fn: Callable[[Any, Any], Any]) -> Any:
    from stack.kernel.ke import DISPATCH_LEVEL, KeLowerIrql, KeRaiseIrql
    m, _ = _machine()

    def body() -> None:
        _, fo = fsio.fs_open(IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME), "index.html")
        _, chain = fs_mdl_read_fast(fo, 0, 100)
        old = KeRaiseIrql(DISPATCH_LEVEL)
        fn(fo, chain)
        KeLowerIrql(old)

    m.run_in(m.kernel, body)
    return m.scheduler.halted


def test_fsrtl_mdl_read_ex_at_dispatch_level_bug_checks_irql_not_less_or_equal():
    from stack.kernel import bugcheck as bc
    info = _halted_at_dispatch(lambda fo, chain: fs_mdl_read_fast(fo, 0, 100))
    assert info is not None and (info.code, info.params[1]) == (bc.IRQL_NOT_LESS_OR_EQUAL, 2)
    assert "FsRtlMdlReadEx" in info.detail


def test_fsrtl_mdl_read_complete_at_dispatch_level_bug_checks_irql_not_less_or_equal():
    from stack.kernel import bugcheck as bc
    info = _halted_at_dispatch(lambda fo, chain: FsRtlMdlReadComplete(fo, chain))
    assert info is not None and (info.code, info.params[1]) == (bc.IRQL_NOT_LESS_OR_EQUAL, 2)
    assert "FsRtlMdlReadComplete" in info.detail


def test_two_replaces_within_one_100ns_tick_leave_different_last_write_times():
    from stack.fs.kfs import KfsReplaceFile
    m, _ = _machine()

    def body() -> list[int]:
        volume = IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)
        _, fo = fsio.fs_open(volume, "style.css")
        times = []
        for content in (b"A" * 100, b"B" * 50, b"C" * 50):  # no virtual time passes between them
            assert KfsReplaceFile(volume, "style.css", content) == STATUS_SUCCESS
            times.append(fsio.fs_query_basic(fo)[1].LastWriteTime)
        fsio.fs_close(fo)
        return times

    first, second, third = run(m, body)
    assert first < second < third


def test_fsrtl_mdl_read_ex_with_a_non_null_mdl_chain_is_a_verifier_bug_check_not_a_python_error():
    from stack.kernel import bugcheck as bc
    m, _ = _machine()
    box: list[Any] = []

    def body() -> None:
        _, fo = fsio.fs_open(IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME), "index.html")
        _, chain = fs_mdl_read_fast(fo, 0, 100)
        box[:] = [fo, chain]
        FsRtlMdlReadEx(fo, 0, 100, 0, Ref(chain), IoStatusBlock())  # *MdlChain still holds the last chain

    m.run_in(m.kernel, body)
    info = m.scheduler.halted
    fo, chain = box
    assert info is not None and info.code == bc.DRIVER_VERIFIER_DETECTED_VIOLATION
    assert info.params == (bc.EMU_C4_MDL_READ_CHAIN_NOT_NULL, fo.address, chain.address, 0)
    assert "emulator-defined" in bc.argument_meanings(info.code, info.params)[0]
