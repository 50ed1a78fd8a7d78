"""Command output shapes, checked line by line against the objects the machine holds."""

from __future__ import annotations

import pytest
from dbg_harness import PAYLOAD, TEST_IOCTL, factory

from stack.kernel.irp import live_irps
from wskdbg.engine import Engine
from wskdbg.render.fmt import addr64


@pytest.fixture(scope="module")
def pended():
    """Stopped in the lower driver's DPC: the IRP is pended at testbus with both completion routines set."""
    engine = Engine(factory=factory("client"), seed=1)
    engine.execute("tracelog -start TestTrace -guid TestDrvTrace -flag 0x3 -level 5")
    engine.execute("bp testbus!TestBusCompleteDpc")
    engine.execute("g")
    yield engine
    engine.close()


def the_irp(dbg):
    (irp,) = live_irps(dbg.kernel)
    return irp


def test_irpfind_names_the_pended_irp_and_the_driver_holding_it(pended):
    irp = the_irp(pended)
    r = pended.execute("!irpfind")
    region = pended.kernel.nonpaged_region
    assert r.text.splitlines() == [
        f"Searching NonPaged pool ({region.base:016x} : {region.base + region.size:016x}) for Tag: Irp",
        "",
        f"{irp.address:016x} [Thread] 00000000 current stack belongs to  \\Driver\\testbus",
    ]


def test_irp_shows_the_exact_layout_with_the_current_location_marked(pended):
    irp = the_irp(pended)
    k = pended.kernel
    lower, upper = irp.stack[0].device_object, irp.stack[1].device_object
    drv_done = k.symbol_address("testdrv!TestDrvCompletion")
    client_done = k.symbol_address("testdrv!TestClientCompletion")
    client_event = irp.stack[1].context.address  # the client's local KEVENT, on its thread's stack
    assert irp.stack[1].context.placed_in is k and client_event != 0
    r = pended.execute(f"!irp {irp.address:x}")
    assert r.text.splitlines() == [
        f"Irp is active with 2 stacks 1 is current (= 0x{irp.address + 0xd0:016x})",
        f" Mdl={irp.mdl_address.address:016x}: No System Buffer: Thread 00000000:  Irp stack trace.",
        "     cmd  flg cl Device   File     Completion-Context",
        ">[IRP_MJ_INTERNAL_DEVICE_CONTROL(f), N/A(0)]",
        f"            0 e1 {lower.address:016x} 00000000 {drv_done:016x}-{upper.address:016x} "
        "Success Error Cancel pending",
        "           \\Driver\\testbus  testdrv!TestDrvCompletion",
        f"            Args: {len(PAYLOAD):08x} 00000000 {TEST_IOCTL:08x} 00000000",
        " [IRP_MJ_INTERNAL_DEVICE_CONTROL(f), N/A(0)]",
        f"            0 e0 {upper.address:016x} 00000000 {client_done:016x}-{client_event:016x} Success Error Cancel",
        "           \\Driver\\testdrv  testdrv!TestClientCompletion",
        f"            Args: {len(PAYLOAD):08x} 00000000 {TEST_IOCTL:08x} 00000000",
    ]
    assert r.data["current_location"] == 1 and r.data["stack_count"] == 2


def test_irp_detail_adds_the_header_fields(pended):
    irp = the_irp(pended)
    lines = pended.execute(f"!irp {irp.address:x} 1").text.splitlines()
    assert "IoStatus.Status = 00000000" in lines
    assert f"Tail.Overlay.CurrentStackLocation = {irp.address + 0xd0:016x}" in lines


def test_dt_mdl_reads_the_mdl_the_irp_names(pended):
    mdl = the_irp(pended).mdl_address
    r = pended.execute(f"dt nt!_MDL {mdl.address:x}")
    assert r.text.splitlines() == [
        "   +0x000 Next             : (null)",
        "   +0x008 Size             : 0n56",
        "   +0x00a MdlFlags         : 0n4",
        "   +0x00c AllocationProcessorNumber : 0",
        "   +0x00e Reserved         : 0",
        "   +0x010 Process          : (null)",
        f"   +0x018 MappedSystemVa   : 0x{addr64(mdl.mapped_system_va)} Void",
        f"   +0x020 StartVa          : 0x{addr64(mdl.start_va)} Void",
        f"   +0x028 ByteCount        : {len(PAYLOAD):#x}",
        f"   +0x02c ByteOffset       : {mdl.byte_offset:#x}",
    ]


def test_db_on_the_mdl_system_address_shows_the_bytes_the_driver_wrote(pended):
    mdl = the_irp(pended).mdl_address
    r = pended.execute(f"db poi({mdl.address:x}+18) L{len(PAYLOAD):x}")
    lines = r.text.splitlines()
    assert lines[0] == (f"{addr64(mdl.mapped_system_va)}  77 73 6b 64 62 67 20 74-65 73 74 20 70 61 79 6c  "
                        "wskdbg test payl")
    assert bytes(r.data["bytes"]) == PAYLOAD
    # a bare db continues where the last display ended
    assert pended.execute("db").data["address"] == mdl.mapped_system_va + len(PAYLOAD)


def test_mdl_shows_the_chain_its_flags_pfns_and_data(pended):
    mdl = the_irp(pended).mdl_address
    lines = pended.execute(f"!mdl {mdl.address:x}").text.splitlines()
    assert lines[0] == f"Mdl {mdl.address:016x}: Next 0000000000000000  Size 0n56  MdlFlags 0x0004 (SOURCE_IS_NONPAGED_POOL)"
    assert lines[3] == f"    Physical pages: {mdl.pfns[0]:x}"
    assert lines[4].endswith("wskdbg test payl")


def test_dt_without_an_address_lists_types_and_dt_r_expands_embedded_structures(pended):
    lines = pended.execute("dt _IO_STACK_LOCATION").text.splitlines()
    assert lines[0] == "   +0x000 MajorFunction    : UChar"
    assert "   +0x008 Parameters       : _IO_STACK_PARAMETERS_OTHERS" in lines
    irp = the_irp(pended)
    r = pended.execute(f"dt -r nt!_IRP {irp.address:x} IoStatus")
    assert r.text.splitlines() == ["   +0x030 IoStatus         : _IO_STATUS_BLOCK",
                                   "      +0x000 Status           : 0n0",
                                   "      +0x000 Pointer          : (null)",
                                   "      +0x008 Information      : 0x00000000`00000000"]
    assert pended.execute("dt _NO_SUCH_TYPE").text.endswith("Symbol _NO_SUCH_TYPE not found.")


def test_dt_device_and_driver_objects(pended):
    dev = the_irp(pended).stack[0].device_object
    lines = pended.execute(f"dt _DEVICE_OBJECT {dev.address:x}").text.splitlines()
    assert lines[0] == "   +0x000 Type             : 0n3"
    assert f"   +0x008 DriverObject     : 0x{addr64(dev.driver_object.address)} _DRIVER_OBJECT" in lines
    lines = pended.execute(f"dt _DRIVER_OBJECT {dev.driver_object.address:x}").text.splitlines()
    assert lines[0] == "   +0x000 Type             : 0n4"


def test_k_shows_the_dpc_context(pended):
    lines = pended.execute("kn").text.splitlines()
    assert lines[0] == " # Child-SP          RetAddr           Call Site"
    assert lines[1].startswith("00 ") and lines[1].endswith(" testbus!TestBusCompleteDpc")
    assert lines[2].split()[-1].startswith("nt!KiRetireDpcList+")


def test_r_has_the_x64_layout_with_rip_at_the_routine(pended):
    lines = pended.execute("r").text.splitlines()
    rip = pended.kernel.symbol_address("testbus!TestBusCompleteDpc")
    assert lines[0].startswith("rax=0000000000000000 rbx=0000000000000000 rcx=")
    assert lines[2].startswith(f"rip={rip:016x} rsp=")
    assert lines[6] == "iopl=0         nv up ei pl nz na pe nc"
    assert lines[7] == "cs=0010  ss=0018  ds=002b  es=002b  fs=0053  gs=002b             efl=00000202"
    assert lines[8].startswith("irql=2 (DISPATCH_LEVEL)  thread=")
    assert lines[9] == "testbus!TestBusCompleteDpc:"
    assert pended.execute("r @$irql").text == "$irql=2"
    assert pended.execute("? @$ip == testbus!TestBusCompleteDpc").text == "Evaluate expression: 1 = 00000000`00000001"


def test_user_pseudo_registers_are_set_and_used_in_expressions(pended):
    assert pended.execute("r $t3 = 10 + 0n10").text == ""
    assert pended.execute("r $t3").text == "$t3=000000000000001a"
    assert pended.execute("r rip = 5").error


def test_lm_lists_modules_and_lm_m_filters(pended):
    k = pended.kernel
    lines = pended.execute("lm m test*").text.splitlines()
    bus = k.module("testbus")
    assert lines[0] == "start             end                 module name"
    assert lines[1] == f"{addr64(bus.base)} {addr64(bus.base + bus.size)}   testbus    (private pdb symbols)  testbus.pdb"
    assert len(lines) == 3
    assert pended.execute("lm 1m").text.splitlines() == ["nt", "hal", "testbus", "testdrv"]


def test_drvobj_and_devobj(pended):
    irp = the_irp(pended)
    lower = irp.stack[0].device_object
    drv = lower.driver_object
    assert pended.execute("!drvobj testbus").text.splitlines() == [
        f"Driver object ({drv.address:016x}) is for:", " \\Driver\\testbus", "", "Driver Extension List: (id , addr)",
        "", "Device Object list:", f"{lower.address:016x}"]
    lines = pended.execute("!devobj TestBus0").text.splitlines()
    assert lines[0] == f"Device object ({lower.address:016x}) is for:"
    assert lines[1] == f" TestBus0 \\Driver\\testbus DriverObject {drv.address:016x}"
    assert f"AttachedDevice (Upper) {irp.stack[1].device_object.address:016x} \\Driver\\testdrv" in lines


def test_pool_marks_the_block_and_poolused_counts_by_tag(pended):
    irp = the_irp(pended)
    lines = pended.execute(f"!pool {irp.address:x}").text.splitlines()
    assert lines[0] == f"Pool page {irp.address:016x} region is Nonpaged pool"
    assert any(line.startswith(f"*{irp.address - 0x10:016x} size:  170") and line.endswith("*Irp ") for line in lines)
    assert lines[-1] == "\t\tPooltag Irp  : Io, IRP packets"
    rows = {line.split()[0]: line.split() for line in pended.execute("!poolused").text.splitlines()[5:]}
    assert rows["Irp"][1:3] == ["1", "368"]


def test_pte_and_pfn_describe_the_page(pended):
    irp = the_irp(pended)
    r = pended.execute(f"!pte {irp.address:x}")
    assert r.data["valid"] and r.text.splitlines()[3].endswith("-G-DA--KW-V")
    pfn = r.data["pfn"]
    lines = pended.execute(f"!pfn {pfn:x}").text.splitlines()
    assert lines[0] == f"    PFN {pfn:08X} at address {0xFFFFFA8000000000 + pfn * 0x30:016X}"
    assert "Active" in lines[3]


def test_thread_and_process(pended):
    lines = pended.execute("!thread").text.splitlines()
    assert lines[0].startswith("THREAD ") and lines[0].endswith("RUNNING on processor 0")
    client = next(t for t in pended.kernel.threads if t.name == "test client")
    lines = pended.execute(f"!thread {client.address:x}").text.splitlines()
    assert "WAIT: (Executive) KernelMode Non-Alertable" in lines[0]
    assert any(line.endswith(" : nt!KiSwapContext+0x1f0") for line in lines)
    assert pended.execute("!process 0 0").text.splitlines()[-1] == "    Image: System"


def test_irql_and_dpcs(pended):
    assert pended.execute("!irql").text == "Debugger saved IRQL for processor 0x0 -- 2 (DISPATCH_LEVEL)"
    assert pended.execute("!dpcs").text.splitlines()[0] == "CPU Type      KDPC       Function"


def test_evaluate_and_error(pended):
    assert pended.execute("? 10 + 0n10").text == "Evaluate expression: 26 = 00000000`0000001a"
    assert pended.execute("!error c0000120").text == (
        "Error code: (NTSTATUS) 0xc0000120 (3221225760) - The I/O request was canceled.  [STATUS_CANCELLED]")
    assert pended.execute("!error 5").text == "Error code: (Win32) 0x5 (5) - Access is denied."


def test_help_lists_by_area_and_dot_help_explains(pended):
    text = pended.execute("help").text
    assert "Execution and breakpoints:" in text and "IRPs, MDLs, drivers and devices:" in text
    assert "  !irp" in text
    lines = pended.execute(".help bp").text.splitlines()
    assert lines[0].startswith("bp[ID] [/1]")
    assert any("bp /e tcp.state ESTABLISHED" in line for line in lines)


def test_position_and_time(pended):
    pos = pended.position()
    lines = pended.execute(".position").text.splitlines()
    assert lines[0] == f"Position: event {pos.events_run}, hand-off {pos.seq}"
    assert lines[2].startswith(f"State: stopped inside event {pos.events_run} on winsrv")
    assert pended.execute(".time").text.splitlines()[0] == "Debug session time: Thu Jan  1 00:00:00.001 2026 (UTC + 0:00)"


def test_host_lists_and_switches_hosts(pended):
    assert pended.execute(".host").text.splitlines()[0].startswith(" * winsrv")
    assert pended.execute(".host nowhere").error


def test_tracing_commands_show_the_wpp_message_after_the_run():
    engine = Engine(factory=factory("client"), seed=1)
    try:
        lines = engine.execute("tracelog -start TestTrace -guid TestDrvTrace -flag 0x2 -level 4").text.splitlines()
        assert lines[:2] == ["Logger Started...", "Enabling trace to logger 0x20"]
        assert "Logger Id:              0x20" in lines  # the same spelling as !wmitrace prints
        engine.execute("g")
        irp = engine.bus.seq  # noqa: F841 (position only)
        lines = engine.execute("!wmitrace.logdump TestTrace").text.splitlines()
        assert lines[0] == "(WmiTrace)LogDump for Logger Id 0x20"
        assert lines[2].startswith("[0]0000.0000::01/01/2026-00:00:00.001 [TestDrvTrace]request ")
        assert lines[2].endswith(" completed by the bus, STATUS_SUCCESS")
        assert engine.execute("tracefmt -rt TestTrace -noprefix -nosummary").text.splitlines()[2].startswith("request ")
        assert engine.execute("!wmitrace.strdump").text.splitlines()[2].endswith("Named 'TestTrace'")
        assert not engine.execute("!wmitrace.setprefix %!FUNC!: %4!s!:").error
        bad = engine.execute("!wmitrace.setprefix [%10!d!]")
        assert bad.error and bad.text.endswith("^ %10 is not a prefix field: use %1 .. %9")
        assert bad.text.index("^") == len("0: kd> !wmitrace.setprefix [")
        bad = engine.execute("!wmitrace.setprefix %!NOPE!")
        assert bad.error and "unknown prefix name %!NOPE!" in bad.text
        # The rejected prefixes left the accepted one in place.
        dumped = engine.execute("!wmitrace.logdump TestTrace").text.splitlines()[2]
        assert dumped.startswith("TestDrvCompletion: 01/01/2026-00:00:00.001:request ")
        assert engine.execute("tracelog -stop TestTrace").text.splitlines()[0] == "Logger Stopped..."
        assert engine.execute("!dbgprint").text == "testdrv: request done, status 00000000, 40 bytes"
        assert engine.execute("tracelog -stop TestTrace").error
    finally:
        engine.close()


def test_bugcheck_0x44_shows_in_bugcheck_and_analyze_and_reboot_brings_the_machine_back():
    engine = Engine(factory=factory("double"), seed=1)
    try:
        r = engine.execute("g")
        info = engine.scheduler.halted
        assert info is not None and info.code == 0x44
        assert r.text.splitlines()[0] == "*** Fatal System Error: 0x00000044"
        assert engine.execute(".bugcheck").text.splitlines() == [
            "Bugcheck code 00000044",
            f"Arguments {addr64(info.params[0])} 00000000`00000000 00000000`00000000 00000000`00000000"]
        lines = engine.execute("!analyze -v").text.splitlines()
        assert lines[2] == "*" + "Bugcheck Analysis".center(77) + "*"
        assert lines[6] == "MULTIPLE_IRP_COMPLETE_REQUESTS (44)"
        assert f"Arg1: {info.params[0]:016x}, Address of the IRP" in lines
        for key in ("FAULTING_IP: ", "DEFAULT_BUCKET_ID:  DRIVER_FAULT", "BUGCHECK_STR:  0x44", "PROCESS_NAME:  System",
                    "STACK_TEXT:  ", "MODULE_NAME: testdrv", "IMAGE_NAME:  testdrv.sys",
                    "STACK_COMMAND:  .thread ; .cxr ; kb", "BUCKET_ID:  0x44_testdrv!TestCompleteTwice",
                    "Followup:     MachineOwner"):
            assert key in lines, key
        stack = lines[lines.index("STACK_TEXT:  ") + 1:lines.index("STACK_TEXT:  ") + 3]
        assert stack[0].endswith(": nt!KeBugCheckEx") and " : 00000000`00000044 " in stack[0]
        assert stack[1].split()[-1].startswith("nt!IofCompleteRequest+")
        assert engine.execute(f"!irp {info.params[0]:x}").text.startswith("Irp is active with 1 stacks")
        assert engine.execute("g").text.startswith("The machine bug-checked (MULTIPLE_IRP_COMPLETE_REQUESTS (44)")
        engine.execute(".reboot")
        assert engine.scheduler.halted is None
        assert engine.execute(".bugcheck").text.startswith("Bugcheck code 00000000")
        assert engine.execute("g").text.startswith("*** Fatal System Error: 0x00000044")  # same seed, same crash
    finally:
        engine.close()


def test_a_python_exception_in_a_driver_is_0x1e_with_the_exception_in_analyze():
    from stack.kernel import PsCreateSystemThread, kroutine
    from dbg_harness import build_lab

    @kroutine("testdrv")
    def TestBrokenThread(Context):
        raise ValueError("driver bug: bad length")
        yield

    def make(seed):
        m = build_lab(seed, "none")
        m.run_in(m.kernel, lambda: PsCreateSystemThread(TestBrokenThread, None))
        return m

    engine = Engine(factory=make, seed=1)
    try:
        engine.execute("g")
        lines = engine.execute("!analyze -v").text.splitlines()
        assert "KMODE_EXCEPTION_NOT_HANDLED (1e)" in lines
        assert "PYTHON_EXCEPTION:  ValueError: driver bug: bad length" in lines
        assert not any("/work/" in line for line in lines)
    finally:
        engine.close()


def test_scripts_echo_comments_foreach_and_logs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inner.wds").write_text("$$ a comment\n.echo inner ${$arg1}\n? 1+1\n")
    (tmp_path / "plain.wds").write_text(".echo one\n.echo two; .echo three\n")
    engine = Engine(factory=factory("none"), seed=1)
    try:
        assert engine.execute("$$<plain.wds").text.splitlines() == [
            "0: kd> .echo one", "one", "0: kd> .echo two; .echo three", "two", "three"]
        assert engine.execute("$$>a<inner.wds hello").text.splitlines() == [
            "0: kd> .echo inner hello;? 1+1", "inner hello", "Evaluate expression: 2 = 00000000`00000002"]
        assert engine.execute(".foreach (m { lm 1m }) { .echo module m }").text.splitlines() == [
            "module nt", "module hal", "module testbus", "module testdrv"]
        assert engine.execute(".foreach /pS 2 (m { lm 1m }) { .echo m }").text.splitlines() == ["testbus", "testdrv"]
        assert engine.execute("$$< missing.wds").error
        assert engine.execute(".logopen session.log").text == "Opened log file 'session.log'"
        engine.execute(".echo logged")
        assert engine.execute(".logclose").text == "Closing open log file session.log"
        assert (tmp_path / "session.log").read_text() == (
            "0: kd> .logopen session.log\nOpened log file 'session.log'\n0: kd> .echo logged\nlogged\n")
        assert engine.execute(".logopen /t stamped.log").text == \
            "Opened log file 'stamped_0004_2026-01-01_00-00-00-000.log'"
        engine.execute(".logclose")
        assert engine.execute("$$ just a comment").text == ""
        assert engine.execute(".echo a; $$ comment ; .echo b").text == "a\nb"
    finally:
        engine.close()


def test_sc_start_loads_a_registered_driver_when_the_machine_runs():
    from dbg_harness import BUS_IMAGE
    from wskdbg.commands.services import register_driver, unregister_driver
    from stack.kernel.io import DriverImage
    from stack.kernel.machine import Machine
    engine = Engine(factory=lambda seed: Machine(seed=seed, memory_mb=4), seed=1)
    register_driver("testbus3", DriverImage("testbus3", "testbus", BUS_IMAGE.driver_entry))
    try:
        lines = engine.execute("sc start testbus3").text.splitlines()
        assert lines == ["SERVICE_NAME: testbus3", "        TYPE               : 1  KERNEL_DRIVER",
                         "        STATE              : 2  START_PENDING", "        WIN32_EXIT_CODE    : 0  (0x0)",
                         "        SERVICE_EXIT_CODE  : 0  (0x0)", "        CHECKPOINT         : 0x0",
                         "        WAIT_HINT          : 0x0"]
        again = engine.execute("sc start testbus3")  # START_PENDING counts as running, as in Windows
        assert not again.error and again.data["win32_error"] == 1056
        assert engine.execute("g").text.startswith("The machine is idle")
        assert engine.execute("sc query testbus3").text.splitlines()[2] == "        STATE              : 4  RUNNING"
        assert engine.execute("sc start nosuch").error
    finally:
        unregister_driver("testbus3")
        engine.close()


def test_sc_on_the_standard_lab_shows_the_auto_started_services_running_and_refuses_a_second_start():
    engine = Engine(seed=1)
    try:
        for name in ("wskprov", "kfs", "echosrv", "khttpd"):
            assert engine.execute(f"sc query {name}").text.splitlines()[2] == "        STATE              : 4  RUNNING"
        assert engine.execute("sc query buggy").text.splitlines()[2] == "        STATE              : 1  STOPPED"
        before = (engine.scheduler.events_run, engine.bus.seq)
        result = engine.execute("sc start echosrv")
        assert not result.error
        assert result.text == ("[SC] StartService FAILED 1056:\n\n"
                               "An instance of the service is already running.")
        assert (engine.scheduler.events_run, engine.bus.seq) == before
        assert engine.execute("sc start wskprov").data["win32_error"] == 1056
    finally:
        engine.close()
