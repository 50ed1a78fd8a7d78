"""Breakpoints: bp/bu/bm, pass counts, conditions, commands, event breakpoints, bl/bc/bd/be."""

from __future__ import annotations

import pytest
from dbg_harness import BUS_IMAGE, factory

from wskdbg.commands.services import register_driver, unregister_driver
from wskdbg.engine import Engine
from wskdbg.render.fmt import addr64


@pytest.fixture
def dbg():
    engine = Engine(factory=factory("client"), seed=1)
    yield engine
    engine.close()


def addr(dbg, symbol: str) -> int:
    return dbg.kernel.symbol_address(symbol)


def hits(result) -> list[str]:
    return [s["frames"][0] for s in result.data["stops"] if s["reason"] == "breakpoint"]


def test_bl_lists_rows_in_the_windbg_shape(dbg):
    dbg.execute("bp testdrv!TestDrvCompletion")
    dbg.execute("bp nt!IofCompleteRequest 3")
    dbg.execute('bu echosrv!DriverEntry "kb; g"')
    rows = dbg.execute("bl").text.splitlines()
    assert rows[0] == f" 0 e {addr64(addr(dbg, 'testdrv!TestDrvCompletion'))}     0001 (0001) testdrv!TestDrvCompletion"
    assert rows[1] == f" 1 e {addr64(addr(dbg, 'nt!IofCompleteRequest'))}     0003 (0003) nt!IofCompleteRequest"
    assert rows[2] == ' 2 eu             0001 (0001) (echosrv!DriverEntry) "kb; g"'


def test_bp_on_a_module_not_loaded_is_deferred_with_the_windbg_message(dbg):
    r = dbg.execute("bp nosuchdrv!Entry")
    assert r.text == "Bp expression 'nosuchdrv!Entry' could not be resolved, adding deferred bp"
    assert "eu" in dbg.execute("bl").text


def test_bp_on_an_unknown_routine_of_a_loaded_module_is_an_error(dbg):
    r = dbg.execute("bp testdrv!NoSuchRoutine")
    assert r.error and "Couldn't resolve error at 'testdrv!NoSuchRoutine'" in r.text
    assert dbg.execute("bl").text == ""


def test_pass_count_skips_the_first_hits_then_breaks_every_time(dbg):
    dbg.execute("bp nt!IofCallDriver 2")
    r = dbg.execute("g")
    assert hits(r) == ["nt!IofCallDriver"]
    # the first IofCallDriver (client -> testdrv) was passed; this is the second (testdrv -> testbus)
    assert dbg.execute("kc").text.splitlines()[2] == "01 testdrv!TestDrvDispatchInternal"
    assert dbg.execute("bl").text.split()[3:5] == ["0001", "(0002)"]


def test_a_false_condition_never_stops_and_a_true_one_does(dbg):
    irp_stop = Engine(factory=factory("client"), seed=1)
    try:
        irp_stop.execute("bp testbus!TestBusDispatchInternal")
        irp_stop.execute("g")
        device = irp_stop.execute("r rcx").data["rcx"]
    finally:
        irp_stop.close()
    dbg.execute('bp /w "@rcx == 1234" nt!IofCallDriver')
    assert hits(dbg.execute("g")) == []
    dbg.reboot()
    dbg.execute("bc *")
    dbg.execute(f'bp /w "@rcx == {device:x}" nt!IofCallDriver')
    r = dbg.execute("g")
    assert hits(r) == ["nt!IofCallDriver"]
    assert dbg.execute("r rcx").data["rcx"] == device


def test_a_malformed_condition_is_refused_when_the_breakpoint_is_set(dbg):
    r = dbg.execute('bp /w "@rcx ==" nt!IofCallDriver')
    assert r.error and "Syntax error" in r.text
    assert dbg.execute("bl").text == ""


def test_breakpoint_commands_run_on_each_hit_and_g_in_them_continues(dbg):
    dbg.execute('bp nt!IofCallDriver ".echo hit IofCallDriver; g"')
    r = dbg.execute("g")
    assert r.text.count("hit IofCallDriver") == 2
    assert hits(r) == ["nt!IofCallDriver", "nt!IofCallDriver"]
    assert r.data["stops"][-1]["reason"] == "idle"


def test_breakpoint_commands_do_not_run_when_stepping(dbg):
    dbg.execute("bp testdrv!TestDrvDispatchInternal")
    dbg.execute("g")
    dbg.execute('bp nt!IofCallDriver ".echo should not print"')
    r = dbg.execute("t 3")
    assert "should not print" not in r.text


def test_one_shot_breakpoints_delete_themselves(dbg):
    dbg.execute("bp /1 nt!IofCallDriver")
    assert hits(dbg.execute("g")) == ["nt!IofCallDriver"]
    assert dbg.execute("bl").text == ""


def test_bd_disables_be_enables_and_bc_clears_by_list_range_and_star(dbg):
    for sym in ("nt!IofCallDriver", "nt!IofCompleteRequest", "testdrv!TestDrvCompletion", "testbus!TestBusCompleteDpc"):
        dbg.execute(f"bp {sym}")
    dbg.execute("bd 0-2")
    states = [row.split()[1] for row in dbg.execute("bl").text.splitlines()]
    assert states == ["d", "d", "d", "e"]
    assert hits(dbg.execute("g")) == ["testbus!TestBusCompleteDpc"]
    dbg.execute("be 1,2")
    assert [row.split()[1] for row in dbg.execute("bl").text.splitlines()] == ["d", "e", "e", "e"]
    dbg.execute("bc 0 3")
    assert [row.split()[0] for row in dbg.execute("bl").text.splitlines()] == ["1", "2"]
    dbg.execute("bc *")
    assert dbg.execute("bl").text == ""
    assert dbg.execute("bc 1-").error


def test_bp_with_an_explicit_id_and_redefinition(dbg):
    dbg.execute("bp7 nt!IofCallDriver")
    assert dbg.execute("bl").text.split()[0] == "7"
    assert dbg.execute("bp nt!IofCallDriver").text == "breakpoint 7 redefined"
    assert len(dbg.execute("bl").text.splitlines()) == 1


def test_bm_sets_a_breakpoint_per_matching_routine_and_prints_them(dbg):
    r = dbg.execute("bm testbus!TestBus*")
    rows = r.text.splitlines()
    expected = sorted((addr(dbg, f"testbus!{n}"), n) for n in
                      ("TestBusCompleteDpc", "TestBusDispatchInternal", "TestBusDriverEntry"))
    assert rows == [f"{i:>3}: {addr64(a)} @!\"testbus!{n}\"" for i, (a, n) in enumerate(expected)]
    assert dbg.execute("bm nothing!Here*").error


def test_at_most_32_breakpoints(dbg):
    for i in range(32):
        assert not dbg.execute(f"bp{i} /e dpc.run{i}").error
    r = dbg.execute("bp nt!IofCallDriver")
    assert r.error and "at most 32" in r.text


def test_event_breakpoint_on_an_irp_major_stops_at_the_dispatch(dbg):
    dbg.execute("bp /e irp IRP_MJ_INTERNAL_DEVICE_CONTROL")
    r = dbg.execute("g")
    lines = r.text.splitlines()
    assert lines[0] == "Breakpoint 0 hit"
    assert "irp.dispatch: IoCallDriver" in lines[2] and lines[2].endswith("-> \\Driver\\testdrv")
    assert dbg.execute("bl").text == " 0 e event                 0001 (0001) irp IRP_MJ_INTERNAL_DEVICE_CONTROL"


def test_event_breakpoint_with_a_field_predicate_and_passes(dbg):
    dbg.execute("bp /n 2 /e irp.dispatch driver=\\Driver\\testbus")
    r = dbg.execute("g")
    assert r.data["stops"][0]["reason"] == "idle"  # only one dispatch to testbus: the 2nd pass never comes
    dbg.reboot()
    dbg.execute("bc *")
    dbg.execute("bp /e irp.dispatch driver=\\Driver\\testbus")
    r = dbg.execute("g")
    assert r.text.splitlines()[2].endswith("-> \\Driver\\testbus")


def test_event_breakpoint_on_bugcheck_stops_before_the_machine_halts():
    engine = Engine(factory=factory("double"), seed=1)
    try:
        engine.execute("bp /e bugcheck")
        r = engine.execute("g")
        assert r.data["stops"][0]["reason"] == "breakpoint"
        assert engine.scheduler.halted is None
        assert engine.execute("kc").text.splitlines()[1:4] == ["00 nt!IopfCompleteRequest", "01 nt!IofCompleteRequest",
                                                               "02 testdrv!TestCompleteTwice"]
        r = engine.execute("g")
        assert r.text.startswith("*** Fatal System Error: 0x00000044")
    finally:
        engine.close()


def test_bu_survives_unload_and_hits_when_the_driver_is_started_again(dbg):
    dbg.execute("g")
    register_driver("testbus2", BUS_IMAGE)
    try:
        dbg.execute("bp testdrv!TestDrvCompletion")
        dbg.execute("bu testbus!TestBusDriverEntry")
        assert dbg.execute("sc stop testbus").text.splitlines()[2].endswith("3  STOP_PENDING")
        dbg.execute("g")
        rows = dbg.execute("bl").text.splitlines()
        assert rows[1] == " 1 eu             0001 (0001) (testbus!TestBusDriverEntry)"
        assert dbg.execute("sc query testbus").text.splitlines()[2].endswith("1  STOPPED")
        dbg.execute("sc start testbus2")
        r = dbg.execute("g")
        assert r.text.splitlines()[:2] == ["Breakpoint 1 hit", "testbus!TestBusDriverEntry:"]
    finally:
        unregister_driver("testbus2")


def test_g_with_a_break_address_stops_there_once(dbg):
    r = dbg.execute("g testbus!TestBusCompleteDpc")
    assert r.data["stops"][0]["reason"] == "target"
    assert r.text.splitlines()[0] == "testbus!TestBusCompleteDpc:"
    assert dbg.execute("bl").text == ""
