"""kfs and the cache manager on a kernel-only machine: opens, MDL reads, copy reads, give-back."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.fs import fsio
from stack.fs.cache import SYSTEM_CACHE_BASE, VACB_MAPPING_GRANULARITY, CacheManager
from stack.fs.docroot_manifest import docroot_files, docroot_sizes, file_bytes
from stack.fs.kfs import (CCB_TAG, DRIVER_IMAGE, FCB_TAG, STATUS_OBJECT_NAME_INVALID, VOLUME_DEVICE_NAME,
                          canonical_file_name, kfs_image)
from stack.kernel import (IRP_MJ_READ, IRP_MN_MDL, NT_SUCCESS, PAGE_SIZE, STATUS_END_OF_FILE,
                          STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS, ExAllocatePoolWithTag, ExFreePoolWithTag,
                          IoAllocateMdl, IoFreeMdl, IoGetDeviceObjectPointer, IoLoadDriver, IoUnloadDriver,
                          MmBuildMdlForNonPagedPool, NonPagedPoolNx)
from stack.kernel.events import IrpDispatched
from stack.kernel.machine import Machine
from stack.kernel.mdl import MDL_MAPPED_TO_SYSTEM_VA, MDL_PAGES_LOCKED, MDL_TAG, mdl_chain_bytes
from stack.kernel.pool import tag_from_str

FILES = docroot_files()
SIZES = docroot_sizes()
CONTENT = {name: file_bytes(content) for name, content in FILES.items()}


def _machine() -> Machine:
    m = Machine(seed=11, memory_mb=8)
    IoLoadDriver(m.kernel, DRIVER_IMAGE)
    m.scheduler.run_until_idle()
    assert m.scheduler.halted is None
    return m


@pytest.fixture(scope="module")
def machine() -> Machine:
    return _machine()


def run(m: Machine, fn: Callable[..., Any], *args: Any) -> Any:
    result = m.run_in(m.kernel, fn, *args)
    info = m.scheduler.halted
    assert info is None, f"bug check {info.code:#x} {info.frames}\n{info.detail}"
    return result


def _volume():
    return IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)


def _mdl_read(name: str, offset: int, length: int) -> tuple[bytes, list[int], list[int]]:
    status, fo = fsio.fs_open(_volume(), name)
    assert status == STATUS_SUCCESS
    status, mdl = fsio.fs_mdl_read(fo, offset, length)
    assert status == STATUS_SUCCESS and mdl is not None
    data = mdl_chain_bytes(mdl)
    flags = [m.flags for m in mdl.chain()]
    vas = [m.virtual_address for m in mdl.chain()]
    assert fsio.fs_mdl_read_complete(fo, mdl) == STATUS_SUCCESS
    fsio.fs_close(fo)
    return data, flags, vas


def _live(k, tag: str) -> int:
    return sum(1 for b in k.pool.allocated_blocks() if b.tag == tag_from_str(tag))


def test_mdl_read_of_every_docroot_file_describes_exactly_its_bytes(machine):
    for name, expected in CONTENT.items():
        data, flags, vas = run(machine, _mdl_read, name, 0, len(expected))
        assert data == expected, name
        assert all(f & MDL_PAGES_LOCKED and f & MDL_MAPPED_TO_SYSTEM_VA for f in flags)
        assert all(va >= SYSTEM_CACHE_BASE for va in vas)


def test_mdl_read_of_a_megabyte_is_a_chain_of_one_mdl_per_256k_view(machine):
    data, flags, vas = run(machine, _mdl_read, "files/1MB.bin", 0x100, 0x80000)
    assert data == CONTENT["files/1MB.bin"][0x100:0x80100]
    assert len(flags) == 3  # 0x100..0x40000, 0x40000..0x80000, 0x80000..0x80100
    assert vas[1] - vas[0] == VACB_MAPPING_GRANULARITY - 0x100


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mdl_read_at_random_offsets_and_lengths_matches_the_file(machine, data):
    name = data.draw(st.sampled_from(sorted(CONTENT)))
    size = len(CONTENT[name])
    offset = data.draw(st.integers(0, size - 1))
    length = data.draw(st.integers(1, size - offset))
    got, _, _ = run(machine, _mdl_read, name, offset, length)
    assert got == CONTENT[name][offset:offset + length]


def test_mdl_reads_copy_nothing_and_the_cache_fill_counts_as_disk_io_once():
    m = _machine()
    k = m.kernel
    run(m, _mdl_read, "files/64KB.bin", 0, 65536)
    run(m, _mdl_read, "files/64KB.bin", 4096, 8192)
    assert k.copies.total_bytes == 0
    cc = CacheManager.of(k)
    assert cc.disk_reads == 1 and cc.disk_bytes == 65536


def test_complete_mdl_frees_every_mdl_and_drops_the_page_references():
    m = _machine()
    k = m.kernel
    mdls_before = _live(k, MDL_TAG)

    def hold() -> tuple[Any, Any, list[int]]:
        _, fo = fsio.fs_open(_volume(), "files/256KB.bin")
        _, mdl = fsio.fs_mdl_read(fo, 0, SIZES["files/256KB.bin"])
        return fo, mdl, list(mdl.pfns)

    fo, mdl, pfns = run(m, hold)
    assert _live(k, MDL_TAG) == mdls_before + 1
    assert all(k.phys.entry(p).lock_count == 1 for p in pfns)
    assert CacheManager.of(k).mdls_outstanding == 1

    def give_back() -> None:
        assert fsio.fs_mdl_read_complete(fo, mdl) == STATUS_SUCCESS
        fsio.fs_close(fo)

    run(m, give_back)
    assert _live(k, MDL_TAG) == mdls_before
    assert mdl.freed
    assert all(k.phys.entry(p).lock_count == 0 for p in pfns)
    assert CacheManager.of(k).mdls_outstanding == 0
    assert _live(k, CCB_TAG) == 0 and _live(k, "File") == 0


def test_normal_read_into_an_mdl_copies_and_counts_the_bytes():
    m = _machine()
    k = m.kernel

    def body() -> bytes:
        _, fo = fsio.fs_open(_volume(), "files/16KB.bin")
        buf = ExAllocatePoolWithTag(NonPagedPoolNx, 5000, "Test")
        mdl = IoAllocateMdl(buf, 5000)
        MmBuildMdlForNonPagedPool(mdl)
        status, n = fsio.fs_read(fo, 1000, 5000, mdl)
        assert (status, n) == (STATUS_SUCCESS, 5000)
        data = k.read(buf, 5000)
        IoFreeMdl(mdl)
        ExFreePoolWithTag(buf, "Test")
        fsio.fs_close(fo)
        return data

    assert run(m, body) == CONTENT["files/16KB.bin"][1000:6000]
    assert k.copies.snapshot() == {"CcCopyRead": (1, 5000)}


def test_normal_read_into_a_kernel_va_is_clamped_at_end_of_file_and_counted():
    m = _machine()
    k = m.kernel

    def body() -> tuple[int, bytes, int]:
        _, fo = fsio.fs_open(_volume(), "files/64B.bin")
        buf = ExAllocatePoolWithTag(NonPagedPoolNx, 128, "Test")
        status, n = fsio.fs_read(fo, 32, 128, buf)
        data = k.read(buf, n)
        eof, _ = fsio.fs_read(fo, 64, 1, buf)
        ExFreePoolWithTag(buf, "Test")
        fsio.fs_close(fo)
        return status, data, eof

    status, data, eof = run(m, body)
    assert status == STATUS_SUCCESS and data == CONTENT["files/64B.bin"][32:]
    assert eof == STATUS_END_OF_FILE
    assert k.copies.bytes["CcCopyRead"] == 32


def test_query_information_reports_the_manifest_size(machine):
    def body() -> dict[str, int]:
        sizes = {}
        for name in SIZES:
            _, fo = fsio.fs_open(_volume(), name)
            status, size = fsio.fs_query_size(fo)
            assert status == STATUS_SUCCESS
            sizes[name] = size
            fsio.fs_close(fo)
        return sizes

    assert run(machine, body) == SIZES


def test_the_size_comes_through_fast_io_with_no_irp_and_the_irp_path_gives_the_same_answer():
    """FsRtlGetFileSize's order: FastIoQueryStandardInfo first; without it, IRP_MJ_QUERY_INFORMATION."""
    m = _machine()
    k = m.kernel
    seen: list[Any] = []
    m.bus.subscribe(seen.append)
    kfs_driver = k.drivers["kfs"]

    def sizes() -> list[tuple[int, int, int]]:
        out = []
        for name in ("index.html", "files/1KB.bin", "files/1MB.bin"):
            _, fo = fsio.fs_open(_volume(), name)
            seen.clear()
            status, size = fsio.fs_query_size(fo)
            out.append((status, size, sum(isinstance(e, IrpDispatched) for e in seen)))
            fsio.fs_close(fo)
        return out

    expected = [(STATUS_SUCCESS, SIZES[n]) for n in ("index.html", "files/1KB.bin", "files/1MB.bin")]
    assert run(m, sizes) == [(status, size, 0) for status, size in expected]  # no IRP
    table = kfs_driver.fast_io_dispatch
    assert k.mem.read_u32(table.address) == 0xE0  # SizeOfFastIoDispatch
    assert k.mem.read_u64(table.address + 0x28) == k.symbol_address("kfs!KfsFastIoQueryStandardInfo")
    kfs_driver.fast_io_dispatch = None  # a file system without fast I/O: the IRP goes down
    try:
        assert run(m, sizes) == [(status, size, 1) for status, size in expected]
    finally:
        kfs_driver.fast_io_dispatch = table


def test_fast_io_query_is_a_routine_a_breakpoint_can_stop_on_and_sends_no_irp():
    from stack.kernel.events import RoutineEntered
    m = _machine()
    seen: list[Any] = []
    m.bus.subscribe(seen.append)

    def query() -> tuple[int, int]:
        _, fo = fsio.fs_open(_volume(), "index.html")
        seen.clear()
        result = fsio.fs_query_size(fo)
        entered = [e.symbol for e in seen if isinstance(e, RoutineEntered)]
        irps = [e for e in seen if isinstance(e, IrpDispatched)]
        fsio.fs_close(fo)
        return result, entered, irps

    (status, size), entered, irps = run(m, query)
    assert status == STATUS_SUCCESS and size == SIZES["index.html"]
    assert entered == ["kfs!KfsFastIoQueryStandardInfo"] and irps == []


@pytest.mark.parametrize("name, status", [
    ("..\\..\\Windows\\win.ini", STATUS_OBJECT_NAME_INVALID),
    ("files/../index.html", STATUS_OBJECT_NAME_INVALID),
    ("\\files\\.\\64B.bin", STATUS_OBJECT_NAME_INVALID),
    ("files//64B.bin", STATUS_OBJECT_NAME_INVALID),
    ("index.html:$DATA", STATUS_OBJECT_NAME_INVALID),
    ("", STATUS_OBJECT_NAME_INVALID),
    ("files", STATUS_OBJECT_NAME_NOT_FOUND),
    ("Index.HTML", STATUS_OBJECT_NAME_NOT_FOUND),
    ("docroot_manifest.py", STATUS_OBJECT_NAME_NOT_FOUND),
    ("/etc/passwd", STATUS_OBJECT_NAME_NOT_FOUND),
])
def test_create_never_opens_anything_outside_the_manifest(machine, name, status):
    def body() -> tuple[int, Any]:
        return fsio.fs_open(_volume(), name)

    got, fo = run(machine, body)
    assert (got, fo) == (status, None)
    assert _live(machine.kernel, "File") == 0


def test_canonical_file_name_accepts_both_separators_and_rejects_dot_segments():
    assert canonical_file_name("\\files\\4KB.bin") == "files/4KB.bin"
    assert canonical_file_name("/files/4KB.bin") == "files/4KB.bin"
    assert canonical_file_name("a/../b") is None
    assert canonical_file_name("a/\x00b") is None


def test_read_irps_are_dispatched_to_kfs_with_the_mdl_minor_function():
    m = _machine()
    seen: list[IrpDispatched] = []
    m.bus.subscribe(lambda e: seen.append(e) if isinstance(e, IrpDispatched) else None)
    run(m, _mdl_read, "style.css", 0, SIZES["style.css"])
    reads = [(e.major, e.minor) for e in seen if e.major == IRP_MJ_READ]
    assert reads == [(IRP_MJ_READ, IRP_MN_MDL), (IRP_MJ_READ, 6)]
    assert {e.driver for e in seen} == {"\\Driver\\kfs"}


def test_unload_purges_the_cache_and_leaks_no_pool():
    m = _machine()
    k = m.kernel
    run(m, _mdl_read, "files/1MB.bin", 0, SIZES["files/1MB.bin"])
    cached_pfns = list(next(iter(CacheManager.of(k).maps.values())).pfns)
    IoUnloadDriver(k, k.drivers["kfs"])
    m.scheduler.run_until_idle()
    assert m.scheduler.halted is None
    assert _live(k, FCB_TAG) == 0
    assert CacheManager.of(k).maps == {}
    assert all(k.phys.entry(p).state == "Free" for p in cached_pfns)
    assert not k.mem.is_mapped(SYSTEM_CACHE_BASE)


def test_a_custom_manifest_is_served_instead_of_the_docroot():
    m = Machine(seed=2, memory_mb=4)
    IoLoadDriver(m.kernel, kfs_image({"a.txt": b"hello", "big.bin": bytes(range(256)) * 40}))
    m.scheduler.run_until_idle()
    data, _, _ = run(m, _mdl_read, "big.bin", PAGE_SIZE - 3, 10)
    assert data == (bytes(range(256)) * 40)[PAGE_SIZE - 3:PAGE_SIZE + 7]
    status, _ = run(m, lambda: fsio.fs_open(_volume(), "index.html"))
    assert status == STATUS_OBJECT_NAME_NOT_FOUND
    assert NT_SUCCESS(run(m, lambda: fsio.fs_open(_volume(), "a.txt"))[0])
