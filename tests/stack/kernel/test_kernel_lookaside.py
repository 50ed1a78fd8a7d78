"""Lookaside lists (stack/kernel/lookaside.py): hits and misses, the depth, pool accounting,
the structure in memory, a second free, and what khttpd keeps on its lists."""

from __future__ import annotations

from typing import Any

from stack.kernel import (LOOKASIDE_LIST_EX, MINIMUM_LOOKASIDE_DEPTH, ExAllocateFromLookasideListEx,
                          ExAllocatePoolWithTag, ExDeleteLookasideListEx, ExFreePoolWithTag, ExFreeToLookasideListEx,
                          ExInitializeLookasideListEx, NonPagedPoolNx, PagedPool, STATUS_SUCCESS, kroutine)
from stack.kernel.lookaside import EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL, lookaside_lists
from stack.kernel.pool import tag_from_str
from tests.stack.kernel.kernel_harness import assert_running, crash, load_test_driver, new_machine, run


def _in_use(m: Any, tag: str) -> tuple[int, int]:
    """(allocations outstanding, bytes) for `tag`, as `!poolused` counts them."""
    usage = m.kernel.pool.usage.get((tag_from_str(tag), False))
    return (usage.allocs - usage.frees, usage.bytes_in_use) if usage is not None else (0, 0)


def _new_list(m: Any, size: int = 0x100, tag: str = "Look") -> LOOKASIDE_LIST_EX:
    home = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x60, "Home")  # the caller's memory for the structure
    lookaside = LOOKASIDE_LIST_EX(home)
    assert run(m, ExInitializeLookasideListEx, lookaside, None, None, NonPagedPoolNx, 0, size, tag, 0) == STATUS_SUCCESS
    return lookaside


def test_the_first_allocation_misses_and_comes_from_the_pool_with_the_lists_tag():
    m = new_machine()
    lookaside = _new_list(m)
    entry = run(m, ExAllocateFromLookasideListEx, lookaside)
    assert entry and m.kernel.pool.block_containing(entry).tag_str == "Look"
    assert (lookaside.total_allocates, lookaside.allocate_misses) == (1, 1)
    assert _in_use(m, "Look")[0] == 1


def test_a_freed_entry_is_reused_last_in_first_out_without_a_trip_to_the_pool():
    m = new_machine()
    lookaside = _new_list(m)
    a = run(m, ExAllocateFromLookasideListEx, lookaside)
    b = run(m, ExAllocateFromLookasideListEx, lookaside)
    run(m, ExFreeToLookasideListEx, lookaside, a)
    run(m, ExFreeToLookasideListEx, lookaside, b)
    pool_allocs = m.kernel.pool.usage[(tag_from_str("Look"), False)].allocs
    assert run(m, ExAllocateFromLookasideListEx, lookaside) == b
    assert run(m, ExAllocateFromLookasideListEx, lookaside) == a
    assert m.kernel.pool.usage[(tag_from_str("Look"), False)].allocs == pool_allocs  # two hits
    assert (lookaside.total_allocates, lookaside.allocate_misses) == (4, 2)
    assert (lookaside.total_frees, lookaside.free_misses) == (2, 0)


def test_entries_on_the_list_stay_allocated_pool_as_poolused_shows_them_on_windows():
    m = new_machine()
    lookaside = _new_list(m, size=0x100)
    entries = [run(m, ExAllocateFromLookasideListEx, lookaside) for _ in range(3)]
    for entry in entries:
        run(m, ExFreeToLookasideListEx, lookaside, entry)
    assert lookaside.current_depth == 3
    assert _in_use(m, "Look") == (3, 3 * 0x110)  # 0x100 + the POOL_HEADER, each
    assert all(m.kernel.pool.block_containing(e).allocated for e in entries)


def test_a_free_past_the_depth_is_a_free_miss_that_goes_back_to_the_pool():
    m = new_machine()
    lookaside = _new_list(m)
    entries = [run(m, ExAllocateFromLookasideListEx, lookaside) for _ in range(MINIMUM_LOOKASIDE_DEPTH + 2)]
    for entry in entries:
        run(m, ExFreeToLookasideListEx, lookaside, entry)
    assert lookaside.current_depth == MINIMUM_LOOKASIDE_DEPTH == 4
    assert lookaside.free_misses == 2
    assert _in_use(m, "Look")[0] == MINIMUM_LOOKASIDE_DEPTH
    assert not m.kernel.pool.block_containing(entries[-1]).allocated


def test_deleting_the_list_frees_every_entry_it_holds_and_unlists_it():
    m = new_machine()
    lookaside = _new_list(m)
    entries = [run(m, ExAllocateFromLookasideListEx, lookaside) for _ in range(3)]
    for entry in entries:
        run(m, ExFreeToLookasideListEx, lookaside, entry)
    run(m, ExDeleteLookasideListEx, lookaside)
    assert _in_use(m, "Look") == (0, 0)
    assert lookaside.address not in lookaside_lists(m.kernel)
    assert m.kernel.object_at(lookaside.address) is None
    assert_running(m)


def test_freeing_an_entry_twice_to_the_list_bugchecks_bad_pool_caller_7():
    m = new_machine()
    lookaside = _new_list(m)
    a = run(m, ExAllocateFromLookasideListEx, lookaside)
    run(m, lambda: (ExFreeToLookasideListEx(lookaside, a), ExFreeToLookasideListEx(lookaside, a)))
    info = crash(m)
    assert info.code == 0xC2 and info.params[0] == 0x07 and info.params[3] == a


def test_a_stale_entry_freed_to_the_pool_after_the_list_took_it_bugchecks_as_a_double_free():
    """The entry is still the list's: freeing it to the pool and then taking it again is caught
    by the pool when the list frees it at deletion (the second free of one block)."""
    m = new_machine()
    lookaside = _new_list(m)
    a = run(m, ExAllocateFromLookasideListEx, lookaside)
    run(m, ExFreeToLookasideListEx, lookaside, a)
    run(m, ExFreePoolWithTag, a, "Look")  # a driver bug: the entry belongs to the list now
    run(m, ExDeleteLookasideListEx, lookaside)
    info = crash(m)
    assert info.code == 0xC2 and info.params[0] == 0x07 and info.params[3] == a


def test_the_structure_in_memory_reads_as_a_general_lookaside_pool():
    m = new_machine()
    lookaside = _new_list(m, size=0x200, tag="Look")
    a = run(m, ExAllocateFromLookasideListEx, lookaside)
    b = run(m, ExAllocateFromLookasideListEx, lookaside)
    run(m, ExFreeToLookasideListEx, lookaside, a)
    run(m, ExFreeToLookasideListEx, lookaside, b)
    mem = m.kernel.mem
    base = lookaside.address
    # x64 _GENERAL_LOOKASIDE_POOL: ListHead (SLIST_HEADER: Depth in the low 16 bits, then the top entry),
    # Depth @0x10, MaximumDepth @0x12, TotalAllocates @0x14, AllocateMisses @0x18, TotalFrees @0x1C,
    # FreeMisses @0x20, Type @0x24, Tag @0x28, Size @0x2C
    m.kernel.mem._flush_structs(base, 0x60)
    assert mem.read_u64(base) & 0xFFFF == 2
    assert mem.read_u64(base + 8) == b  # the top of the SLIST: the last entry freed
    assert mem.read_u64(b) == a  # its SLIST_ENTRY.Next: the one freed before it
    assert int.from_bytes(mem.read(base + 0x10, 2), "little") == MINIMUM_LOOKASIDE_DEPTH
    assert int.from_bytes(mem.read(base + 0x12, 2), "little") == 256
    assert [mem.read_u32(base + off) for off in (0x14, 0x18, 0x1C, 0x20)] == [2, 2, 2, 0]
    assert mem.read_u32(base + 0x24) == NonPagedPoolNx
    assert mem.read(base + 0x28, 4) == b"Look"
    assert mem.read_u32(base + 0x2C) == 0x200


def test_raise_on_fail_shows_in_the_type_as_raise_if_allocation_failure():
    m = new_machine()
    home = run(m, ExAllocatePoolWithTag, NonPagedPoolNx, 0x60, "Home")
    lookaside = LOOKASIDE_LIST_EX(home)
    run(m, ExInitializeLookasideListEx, lookaside, None, None, PagedPool, EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL,
        0x40, "Pgd ", 0)
    assert lookaside.pool_type == 0x11 and lookaside.type_text == "PagedPool RaiseIfAllocationFailure"


def test_with_the_low_resources_simulation_on_every_allocation_reaches_the_pool_and_can_fail():
    m = new_machine()
    lookaside = _new_list(m)
    a = run(m, ExAllocateFromLookasideListEx, lookaside)
    run(m, ExFreeToLookasideListEx, lookaside, a)
    m.kernel.verifier.configure(10_000, tags=["Look"], classes=["pool"])
    assert run(m, ExAllocateFromLookasideListEx, lookaside) == 0  # not the entry on the list: the pool, failed
    assert lookaside.current_depth == 1
    assert_running(m)


def test_khttpd_serves_new_connections_from_its_lookaside_lists_after_the_first():
    from stack.usermode.socket import SockAddr, run_program
    from stack.usermode.webserver import http_fetch
    from tests.stack.drivers.khttpd_lab import boot_lab

    world = boot_lab(seed=3)
    k = world.host("winsrv").kernel
    g = k.drivers["khttpd"].extension["khttpd"]

    def fetch(n: int) -> Any:
        for _ in range(n):
            response = yield from http_fetch(SockAddr.parse("10.0.0.1:80"), "GET", "/files/1KB.bin")
            assert response.status == 200

    for n in (1, 5):
        program = run_program(world.host("client").kernel, lambda: fetch(n), name="fetch")
        world.run_while(lambda: not program.done)
        program.raise_error()
        world.run_while(lambda: bool(g.connections))  # khttpd closes its side after the reply
    lists = {lk.tag_text: lk for lk in lookaside_lists(k).values()}
    assert set(lists) >= {"Khtc", "Khtb", "Khth", "Khts"}
    assert g.connection_lookaside.total_allocates == 6
    assert g.connection_lookaside.allocate_misses == 1  # one connection at a time: one block, reused
    assert g.receive_lookaside.allocate_misses == 1 and g.receive_lookaside.current_depth == 1
    assert _in_use_of(k, "Khtc") == 1  # the block on the list is still allocated pool
    world.check()


def _in_use_of(k: Any, tag: str) -> int:
    usage = k.pool.usage[(tag_from_str(tag), False)]
    return usage.allocs - usage.frees


@kroutine("testdrv")
def LookasideDriverEntry(DriverObject: Any, RegistryPath: str) -> int:
    """Sets up a lookaside list in its extension block and (a bug) never deletes it."""
    home = ExAllocatePoolWithTag(NonPagedPoolNx, 0x60, "LkDr")
    lookaside = LOOKASIDE_LIST_EX(home)
    ExInitializeLookasideListEx(lookaside, None, None, NonPagedPoolNx, 0, 0x40, "LkEn", 0)
    DriverObject.extension["lookaside"] = lookaside
    return STATUS_SUCCESS


def test_a_driver_unloading_with_its_lookaside_list_still_set_up_bugchecks_0xce():
    from stack.kernel import IoUnloadDriver
    m = new_machine()
    drv = load_test_driver(m, "lkdrv", LookasideDriverEntry)
    lookaside = drv.extension["lookaside"]
    IoUnloadDriver(m.kernel, drv)
    m.scheduler.run_until_idle()
    info = crash(m)
    assert info.code == 0xCE and info.params[0] == lookaside.address and info.params[1] == 0
    assert info.params[2] == m.kernel.symbol_address("nt!ExAdjustLookasideDepth")


def test_khttpds_blocks_come_from_the_same_addresses_with_and_without_a_listener_on_the_bus():
    """Unlike the emulator's IRP object reuse, a lookaside list does not change with a debugger
    attached: it is the driver's own, so `!pool`, `!poolused` and addresses read the same."""
    from stack.usermode.socket import SockAddr, run_program
    from stack.usermode.webserver import http_fetch
    from tests.stack.drivers.khttpd_lab import boot_lab

    seen = []
    for listen in (False, True):
        world = boot_lab(seed=5)
        if listen:
            world.bus.subscribe(lambda event: None)
        k = world.host("winsrv").kernel
        g = k.drivers["khttpd"].extension["khttpd"]

        def fetch() -> Any:
            for _ in range(4):
                response = yield from http_fetch(SockAddr.parse("10.0.0.1:80"), "GET", "/index.html")
                assert response.status == 200

        program = run_program(world.host("client").kernel, fetch, name="fetch")
        world.run_while(lambda: not program.done)
        program.raise_error()
        world.run_while(lambda: bool(g.connections))
        lists = [(lk.address, list(lk.entries), lk.total_allocates, lk.allocate_misses, lk.free_misses)
                 for lk in lookaside_lists(k).values()]
        seen.append((lists, [_in_use_of(k, tag) for tag in ("Khtc", "Khtb", "Khth", "Khts")]))
    assert seen[0] == seen[1]
    assert all(len(entries) == 1 and allocates >= 4 for _, entries, allocates, _, _ in seen[0][0])


# --- the review's findings: each one a driver bug the machine now stops at, faithfully -------------

def _free_miss_then_free_again(m: Any, size: int) -> tuple[LOOKASIDE_LIST_EX, int]:
    """Fill the list, free one more (a free miss: the pool takes it back), take one entry off the
    list so there is room, and free the missed entry to the list again (the driver bug)."""
    lookaside = _new_list(m, size=size)
    entries = [run(m, ExAllocateFromLookasideListEx, lookaside) for _ in range(MINIMUM_LOOKASIDE_DEPTH + 1)]
    for entry in entries:
        run(m, ExFreeToLookasideListEx, lookaside, entry)
    assert lookaside.free_misses == 1 and not m.kernel.pool.block_containing(entries[-1]).allocated
    run(m, ExAllocateFromLookasideListEx, lookaside)  # a hit: room for one more on the list
    run(m, ExFreeToLookasideListEx, lookaside, entries[-1])
    return lookaside, entries[-1]


def test_freeing_to_the_list_an_entry_the_pool_already_took_back_bugchecks_bad_pool_caller_7():
    """Pushed silently, the block would be the pool's and the list's at once: the next
    ExAllocatePoolWithTag and ExAllocateFromLookasideListEx would hand out the same memory."""
    m = new_machine()
    lookaside, missed = _free_miss_then_free_again(m, 0x100)
    info = crash(m)
    assert info.code == 0xC2 and info.params[0] == 0x07 and info.params[3] == missed
    assert missed not in lookaside.entries


def test_a_big_pool_entry_freed_again_after_a_free_miss_is_bad_pool_caller_not_an_emulator_error():
    m = new_machine()
    _, missed = _free_miss_then_free_again(m, 0x2000)  # a big-pool block: its pages are unmapped once freed
    info = crash(m)
    assert info.code == 0xC2 and info.params[0] == 0x07 and info.params[2] == 0 and info.params[3] == missed
    assert "MemoryAccessError" not in info.detail


def test_freeing_the_pool_block_that_holds_an_active_list_bugchecks_0xc4_0xcc():
    # MS Learn, bug check 0xC4: 0xCC, list, start of the pool allocation, its size
    m = new_machine()
    lookaside = _new_list(m)
    run(m, ExFreePoolWithTag, lookaside.address, "Home")
    info = crash(m)
    assert info.code == 0xC4 and info.params == (0xCC, lookaside.address, lookaside.address, 0x60)
    assert m.kernel.pool.is_allocated(lookaside.address)  # stopped before the free


def test_a_list_whose_memory_went_back_to_the_pool_never_writes_the_new_owners_bytes_when_read():
    """Reading memory (`db`, `dt`) must not change the machine: a list whose block is no longer
    allocated is not written out (here the 0xCC rule is bypassed to reach that state)."""
    m = new_machine()
    lookaside = _new_list(m)
    run(m, ExAllocateFromLookasideListEx, lookaside)
    getattr(m.kernel.pool, "guards", {}).clear()
    run(m, ExFreePoolWithTag, lookaside.address, "Home")
    mem = m.kernel.mem
    mem.write(lookaside.address, b"\x11" * 0x60)  # whoever has the memory now
    assert mem.read(lookaside.address, 0x60) == b"\x11" * 0x60  # a read (db) flushes registered structures
    assert_running(m)


def test_deleting_the_list_lets_its_memory_be_freed_and_reused():
    m = new_machine()
    lookaside = _new_list(m)
    run(m, ExDeleteLookasideListEx, lookaside)
    run(m, ExFreePoolWithTag, lookaside.address, "Home")
    assert not m.kernel.pool.guards
    assert_running(m)


def test_a_stale_write_into_a_free_entrys_slist_link_bugchecks_at_the_pop():
    """The link is the entry's first eight bytes; a pop that follows a corrupt link meets an access
    violation on Windows (0x1E, c0000005, Parameter 4 the address read)."""
    m = new_machine()
    lookaside = _new_list(m)
    a = run(m, ExAllocateFromLookasideListEx, lookaside)
    b = run(m, ExAllocateFromLookasideListEx, lookaside)
    run(m, ExFreeToLookasideListEx, lookaside, a)
    run(m, ExFreeToLookasideListEx, lookaside, b)
    m.kernel.mem.write(b, b"AAAAAAAA")  # a use after free: the driver still writes b
    run(m, ExAllocateFromLookasideListEx, lookaside)
    info = crash(m)
    assert info.code == 0x1E and info.params[0] == 0xC0000005 and info.params[3] == 0x4141414141414141
    assert f"{b:x}" in info.detail


def test_reinitialising_an_active_list_bugchecks_0xc4_0xca():
    m = new_machine()
    lookaside = _new_list(m)
    run(m, ExInitializeLookasideListEx, lookaside, None, None, NonPagedPoolNx, 0, 0x100, "Look", 0)
    info = crash(m)
    assert info.code == 0xC4 and info.params[:2] == (0xCA, lookaside.address)


def test_initialising_again_after_delete_starts_empty_with_zero_counters():
    m = new_machine()
    lookaside = _new_list(m)
    run(m, ExFreeToLookasideListEx, lookaside, run(m, ExAllocateFromLookasideListEx, lookaside))
    run(m, ExDeleteLookasideListEx, lookaside)
    run(m, ExInitializeLookasideListEx, lookaside, None, None, NonPagedPoolNx, 0, 0x100, "Look", 0)
    assert (lookaside.current_depth, lookaside.total_allocates, lookaside.allocate_misses,
            lookaside.total_frees, lookaside.free_misses) == (0, 0, 0, 0, 0)
    assert_running(m)


def test_deleting_a_list_twice_bugchecks_0xc4_0xcb():
    m = new_machine()
    lookaside = _new_list(m)
    run(m, ExDeleteLookasideListEx, lookaside)
    run(m, ExDeleteLookasideListEx, lookaside)
    info = crash(m)
    assert info.code == 0xC4 and info.params[:2] == (0xCB, lookaside.address)


def test_freeing_to_a_deleted_list_is_a_clear_verifier_bug_check_not_a_python_error():
    m = new_machine()
    lookaside = _new_list(m)
    a = run(m, ExAllocateFromLookasideListEx, lookaside)
    run(m, ExDeleteLookasideListEx, lookaside)
    run(m, ExFreeToLookasideListEx, lookaside, a)
    info = crash(m)
    assert info.code == 0xC4 and info.params[:3] == (0x1050, lookaside.address, a)
    assert "Error" not in info.detail and "not initialised" in info.detail


def test_allocating_from_a_deleted_list_bugchecks_instead_of_succeeding():
    m = new_machine()
    lookaside = _new_list(m)
    run(m, ExDeleteLookasideListEx, lookaside)
    run(m, ExAllocateFromLookasideListEx, lookaside)
    info = crash(m)
    assert info.code == 0xC4 and info.params[:3] == (0x1050, lookaside.address, 0)


def test_the_last_counters_read_0_and_null_routines_read_as_the_pool_routines():
    """LastTotalAllocates / LastAllocateMisses belong to the balance set manager's scan (not
    modelled); AllocateEx / FreeEx hold ExAllocatePoolWithTag / ExFreePoolWithTag when NULL was passed."""
    from stack.kernel.layouts import find_layout
    m = new_machine()
    lookaside = _new_list(m)
    run(m, ExFreeToLookasideListEx, lookaside, run(m, ExAllocateFromLookasideListEx, lookaside))
    k, base = m.kernel, lookaside.address
    k.mem._flush_structs(base, 0x60)
    assert [k.mem.read_u32(base + off) for off in (0x50, 0x54)] == [0, 0]
    assert k.mem.read_u64(base + 0x30) == k.symbol_address("nt!ExAllocatePoolWithTag") != 0
    assert k.mem.read_u64(base + 0x38) == k.symbol_address("nt!ExFreePoolWithTag") != 0
    future = {f.name: f for f in find_layout("_GENERAL_LOOKASIDE_POOL").fields}["Future"]
    assert (future.offset, future.byte_size) == (0x58, 8)  # ULONG Future[2]: the structure ends at 0x60


def test_under_driver_verifier_every_list_shows_depth_0():
    """ExDisableAllLookasideLists: Windows sets each list's Depth to 0 under Driver Verifier."""
    m = new_machine()
    lookaside = _new_list(m)
    k = m.kernel
    k.mem._flush_structs(lookaside.address, 0x60)
    assert int.from_bytes(k.mem.read(lookaside.address + 0x10, 2), "little") == 4
    k.verifier.configure(600, tags=["Look"])
    k.mem._flush_structs(lookaside.address, 0x60)
    assert int.from_bytes(k.mem.read(lookaside.address + 0x10, 2), "little") == 0
    assert lookaside.shown_depth == 0
