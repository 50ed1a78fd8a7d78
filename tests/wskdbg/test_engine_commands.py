"""Command output shapes, checked line by line against the objects the machine holds."""

from __future__ import annotations

import re

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


# `!irpfind` on x64 (a published capture, Windows 7 x64):
#   Searching NonPaged pool (fffffa8018c04000 : fffffa8075c00000) for Tag 'Irp?'
#
#     Irp            [ Thread ]         irpStack: (Mj,Mn)   DevObj          [Driver]         MDL Process
#   fffffa8019c22950 [fffffa801b27bb50] irpStack: ( e,20)  fffffa80198ae9a0 [ \Driver\AFD] 0xfffffa801aa034a0
#   fffffa8018df9ee0 [0000000000000000] Irp is complete (CurrentLocation 2 > StackCount 1)
def test_irpfind_names_the_pended_irp_and_the_driver_holding_it(pended):
    irp = the_irp(pended)
    r = pended.execute("!irpfind")
    region = pended.kernel.nonpaged_region
    device = irp.stack[0].device_object.address
    assert r.text.splitlines() == [
        f"Searching NonPaged pool ({region.base:016x} : {region.base + region.size:016x}) for Tag 'Irp?'",
        "",
        "  Irp            [ Thread ]         irpStack: (Mj,Mn)   DevObj          [Driver]         MDL Process",
        f"{irp.address:016x} [0000000000000000] irpStack: ( f, 0)  {device:016x} [ \\Driver\\testbus] "
        "0x0000000000000000",
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


def test_mdl_of_a_null_address_says_why_it_shows_nothing(pended):
    r = pended.execute("!mdl 0")
    assert r.text == "MDL address 0 is NULL: there is no MDL to display" and not r.error


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


# Current WinDbg numbers frames by default (a kernel `k` from a published capture):
#  # Child-SP          RetAddr               Call Site
# 00 fffff508`1b4a6dc0 fffff805`72502487     CI!CiValidateImagePages+0x360
# 01 fffff508`1b4a6f90 fffff805`6f2f1bbd     CI!CiValidateImageData+0x27
def test_k_shows_the_dpc_context(pended):
    lines = pended.execute("k").text.splitlines()
    assert lines[0] == " # Child-SP          RetAddr               Call Site"
    assert re.fullmatch(r"00 [0-9a-f]{8}`[0-9a-f]{8} [0-9a-f]{8}`[0-9a-f]{8}     testbus!TestBusCompleteDpc", lines[1])
    assert lines[2].split()[-1].startswith("nt!KiRetireDpcList+")
    assert pended.execute("kn").text == pended.execute("k").text


# `kv` from a published capture:
#  # Child-SP          RetAddr               : Args to Child                                                           : Call Site
# 00 00000020`ddefd050 00007ff9`def4388a     : 00000000`00000010 0000021a`00d1f820 0000021a`00cf6070 0000021a`00cf6070 : EXR!ReadEXR+0x40ef1
def test_kb_and_kc_keep_the_frame_number_column(pended):
    lines = pended.execute("kb").text.splitlines()
    assert lines[0] == (" # Child-SP          RetAddr               : Args to Child"
                        "                                                           : Call Site")
    assert re.fullmatch(r"00 [0-9a-f`]{17} [0-9a-f`]{17}     : ([0-9a-f`]{17} ){4}: testbus!TestBusCompleteDpc",
                        lines[1])
    lines = pended.execute("kc").text.splitlines()
    assert lines[:2] == [" # Call Site", "00 testbus!TestBusCompleteDpc"]


# The x64 kernel `r` block (a published capture, stopped at nt!KdpTimeSlipDpcRoutine):
# rax=fffff800411cbf70 rbx=fffff8003f637240 rcx=fffff8004150b2e0
# rdx=0000000000000000 rsi=fffff800436a8e80 rdi=fffff8003f634180
# rip=fffff800411cbf70 rsp=fffff800436a8ba8 rbp=fffff800436a8cb0
#  r8=0000000000000000  r9=0000000000000000 r10=fffff800411cbf70
# r11=0000000000000000 r12=00000de72daeb7b4 r13=0000000000000000
# r14=fffff8004150b2e0 r15=fffff80041509b50
# iopl=0         nv up ei pl zr na po nc
# cs=0010  ss=0018  ds=002b  es=002b  fs=0053  gs=002b             efl=00000246
# nt!KdpTimeSlipDpcRoutine:
# fffff800`411cbf70 4883ec28        sub     rsp,28h
def test_r_has_the_x64_layout_with_rip_at_the_routine(pended):
    lines = pended.execute("r").text.splitlines()
    rip = pended.kernel.symbol_address("testbus!TestBusCompleteDpc")
    assert len(lines) == 10
    assert re.fullmatch(r"rax=[0-9a-f]{16} rbx=[0-9a-f]{16} rcx=[0-9a-f]{16}", lines[0])
    assert lines[2].startswith(f"rip={rip:016x} rsp=")
    assert re.fullmatch(r" r8=[0-9a-f]{16}  r9=[0-9a-f]{16} r10=[0-9a-f]{16}", lines[3])
    assert re.fullmatch(r"r14=[0-9a-f]{16} r15=[0-9a-f]{16}", lines[5])
    assert lines[6] == "iopl=0         nv up ei pl nz na pe nc"
    assert lines[7] == "cs=0010  ss=0018  ds=002b  es=002b  fs=0053  gs=002b             efl=00000202"
    assert lines[8] == "testbus!TestBusCompleteDpc:"
    assert not any("irql=" in line or "host=" in line for line in lines)
    assert pended.execute("r @$irql").text == "$irql=2"
    assert pended.execute("? @$ip == testbus!TestBusCompleteDpc").text == "Evaluate expression: 1 = 00000000`00000001"


def test_repl_status_line_carries_host_irql_and_thread(pended):
    from wskdbg.repl import status_text
    text = status_text(pended)
    assert "irql=2 (DISPATCH_LEVEL)" in text and pended.current_host in text and "hand-off" in text


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


# `lm` on a Windows 10 target (a published capture):
# start             end                 module name
# fffff801`0da00000 fffff801`0ea46000   nt         (pdb symbols)          C:\ProgramData\Dbg\sym\ntkrnlmp.pdb\992A...\ntkrnlmp.pdb
# fffff801`0d390000 fffff801`0d3a1000   WppRecorder   (deferred)
def test_lm_shows_the_kernel_as_nt_with_ntkrnlmp_public_symbols(pended):
    nt = pended.kernel.module("nt")
    assert pended.execute("lm m nt").text.splitlines()[1] == (
        f"{addr64(nt.base)} {addr64(nt.base + nt.size)}   nt         (pdb symbols)          ntkrnlmp.pdb")
    lines = pended.execute("lmv m nt").text.splitlines()
    assert "    Loaded symbol image file: ntkrnlmp.exe" in lines and "    Image name: ntkrnlmp.exe" in lines
    from wskdbg.commands.inspection import lm_row
    assert lm_row("WppRecorder", 0x10, 0x20, "WppRecorder.sys").split("   ")[1] == "WppRecorder"


def test_drvobj_and_devobj(pended):
    irp = the_irp(pended)
    lower = irp.stack[0].device_object
    drv = lower.driver_object
    # `!drvobj \Driver\Nidhogg` (a published capture): the list of device objects, each followed by
    # two spaces.
    assert pended.execute("!drvobj testbus").text.splitlines() == [
        f"Driver object ({drv.address:016x}) is for:", " \\Driver\\testbus", "", "Driver Extension List: (id , addr)",
        "", "Device Object list:", f"{lower.address:016x}  "]
    lines = pended.execute("!devobj TestBus0").text.splitlines()
    assert lines[0] == f"Device object ({lower.address:016x}) is for:"
    assert lines[1] == f" TestBus0 \\Driver\\testbus DriverObject {drv.address:016x}"
    assert f"AttachedDevice (Upper) {irp.stack[1].device_object.address:016x} \\Driver\\testdrv" in lines


# `!drvobj \Driver\Nidhogg 2` (a published capture, Windows 10 x64):
# Driver object (ffffe089821e4b90) is for:
#  \Driver\Nidhogg
#
# DriverEntry:   fffff8012fac5000	Nidhogg!GsDriverEntry
# DriverStartIo: 00000000	
# DriverUnload:  fffff8012fac1590	Nidhogg!NidhoggUnload
# AddDevice:     00000000	
#
# Dispatch routines:
# [00] IRP_MJ_CREATE                      fffff8012fac1300	Nidhogg!NidhoggCreateClose
# [01] IRP_MJ_CREATE_NAMED_PIPE           fffff8012ab0be00	nt!IopInvalidDeviceRequest
def test_drvobj_2_shows_gsdriverentry_and_the_dispatch_table(pended):
    k = pended.kernel
    drv = the_irp(pended).stack[0].device_object.driver_object
    lines = pended.execute("!drvobj testbus 2").text.splitlines()
    assert lines[:3] == [f"Driver object ({drv.address:016x}) is for:", " \\Driver\\testbus", ""]
    assert lines[3] == f"DriverEntry:   {k.symbol_address('testbus!GsDriverEntry'):016x}\ttestbus!GsDriverEntry"
    assert lines[4] == "DriverStartIo: 00000000\t" and lines[6] == "AddDevice:     00000000\t"
    assert lines[7:9] == ["", "Dispatch routines:"]
    invalid = k.symbol_address("nt!IopInvalidDeviceRequest")
    assert lines[10] == f"[01] IRP_MJ_CREATE_NAMED_PIPE           {invalid:016x}\tnt!IopInvalidDeviceRequest"
    assert "Device Object list:" not in lines
    both = pended.execute("!drvobj testbus 7").text.splitlines()
    assert "Device Object list:" in both and "Dispatch routines:" in both and any(
        line.startswith("Device object (") for line in both)
    assert "unsupported flag bits 0x98" in pended.execute("!drvobj testbus 99").text


def test_pool_marks_the_block_and_poolused_counts_by_tag(pended):
    irp = the_irp(pended)
    lines = pended.execute(f"!pool {irp.address:x}").text.splitlines()
    assert lines[0] == f"Pool page {irp.address:016x} region is Nonpaged pool"
    assert any(line.startswith(f"*{irp.address - 0x10:016x} size:  170") and line.endswith("*Irp ") for line in lines)
    assert lines[-1] == "\t\tPooltag Irp  : Io, IRP packets"


# MS Learn, "!pool": `kd> !pool e1001050` lists the page's blocks with the one holding the address
# starred (`*e1001050 size:   10 previous size:   10  (Allocated) *ObDi`); flag 1 adds each block's
# contents, flag 2 keeps only the starred block, 0x80000000 drops the tag description.
def test_pool_honours_its_flags(pended):
    irp = the_irp(pended)
    only = pended.execute(f"!pool {irp.address:x} 2").text.splitlines()
    assert len(only) == 3 and only[1].startswith(f"*{irp.address - 0x10:016x} size:  170")
    assert pended.execute(f"!pool {irp.address:x} 80000002").text.splitlines() == only[:2]
    dumped = pended.execute(f"!pool {irp.address:x} 3").text.splitlines()
    first = dumped[2]
    assert first.startswith(f"    {irp.address:016x}  ") and first.split()[1] == f"{0x01600006:08x}"  # Type 6, Size 0x160
    assert "unsupported flag bits 0x4" in pended.execute(f"!pool {irp.address:x} 4").text

# MS Learn, "!poolused" (Remarks):
#   0: kd> !poolused
#      Sorting by  Tag
#
#     Pool Used:
#               NonPaged            Paged
#    Tag    Allocs     Used    Allocs     Used
#    1394        1      520         0        0UNKNOWN pooltag '1394', please update pooltag.txt
#    AGP         1      344         2      384UNKNOWN pooltag 'AGP ', please update pooltag.txt
def test_poolused_prints_the_documented_table(pended):
    lines = pended.execute("!poolused").text.splitlines()
    assert lines[:5] == ["   Sorting by  Tag", "", "  Pool Used:", "            NonPaged            Paged",
                         " Tag    Allocs     Used    Allocs     Used"]
    rows = {line[1:5]: line for line in lines[5:]}
    assert rows["Irp "] == " Irp         1      368         0        0Io, IRP packets"
    assert all(line[:5] < nxt[:5] for line, nxt in zip(lines[5:], lines[6:]))  # sorted by tag
    unknown = [line for line in lines[5:] if "UNKNOWN" in line]
    assert unknown and all(line.endswith(f"UNKNOWN pooltag '{line[1:5]}', please update pooltag.txt")
                           for line in unknown)


def test_poolused_flags_sort_verbose_and_case_sensitive_tags(pended):
    lines = pended.execute("!poolused 2").text.splitlines()
    assert lines[0] == "   Sorting by  NonPaged Pool Consumed"
    used = [int(line[15:23]) for line in lines[5:]]
    assert used == sorted(used, reverse=True)
    assert pended.execute("!poolused 4").text.splitlines()[0] == "   Sorting by  Paged Pool Consumed"
    verbose = pended.execute("!poolused 1 Irp?").text.splitlines()
    assert verbose[3:5] == ["            NonPaged                    Paged",
                            " Tag    Allocs    Frees     Diff     Used   Allocs    Frees     Diff     Used"]
    (row,) = verbose[5:]
    allocs, frees, diff, used = (int(x) for x in row[5:41].split())
    assert row.startswith(" Irp ") and allocs - frees == diff == 1 and used == 368
    assert pended.execute("!poolused 0 irp?").text.splitlines()[5:] == []  # tags are case-sensitive
    assert "cannot be used together" in pended.execute("!poolused 6").text
    assert "session pool" in pended.execute("!poolused 8").text
    assert "four characters" in pended.execute("!poolused 0 Ir").text


# `!pte` on Windows 10 x64 with a randomised self-map (a published capture):
#                                            VA fffff78000000000
# PXE at FFFFA8D46A351F78    PPE at FFFFA8D46A3EF000    PDE at FFFFA8D47DE00000    PTE at FFFFA8FBC0000000
# contains 000000000F202063  contains 000000000F203063  contains 000000000F204063  contains 800000000F22C963
# pfn f202      ---DA--KWEV  pfn f203      ---DA--KWEV  pfn f204      ---DA--KWEV  pfn f22c      -G-DA--KW-V
def test_pte_prints_the_four_level_walk_and_dq_reads_the_same_entries(pended):
    irp = the_irp(pended)
    mem = pended.kernel.mem
    r = pended.execute(f"!pte {irp.address:x}")
    lines = r.text.splitlines()
    assert lines[0] == " " * 43 + f"VA {irp.address:016x}"
    assert re.fullmatch(r"PXE at ([0-9A-F]{16})    PPE at ([0-9A-F]{16})    PDE at ([0-9A-F]{16})    "
                        r"PTE at ([0-9A-F]{16})", lines[1])
    assert re.fullmatch(r"(contains [0-9A-F]{16}  ){3}contains [0-9A-F]{16}", lines[2])
    assert re.fullmatch(r"(pfn [0-9a-f ]{10}---DA--KWEV  ){3}pfn [0-9a-f ]{10}-G-DA--KW-V", lines[3])
    # the self-map base comes from the PML4 index chosen at boot, not the pre-1607 FFFFF680`00000000
    assert r.data["addresses"][3] == mem.pte_base + ((irp.address & 0xFFFFFFFFFFFF) >> 12) * 8
    assert mem.pte_base >> 39 & 0x1FF == mem.self_map_index and mem.pte_base != 0xFFFFF68000000000
    for address, entry in zip(r.data["addresses"], r.data["entries"]):
        assert pended.execute(f"dq {address:x} L1").text == f"{addr64(address)}  {addr64(entry)}"
    # a PTE address is taken as a PTE: the walk of the page it maps
    by_pte = pended.execute(f"!pte {r.data['addresses'][3]:x}").text.splitlines()
    assert by_pte[0] == " " * 43 + f"VA {irp.address & ~0xFFF:016x}" and by_pte[1:] == lines[1:]


def test_self_map_index_is_randomised_per_boot_from_the_seed():
    from stack.kernel.kernel import _self_map_index
    indexes = {_self_map_index(seed, "winsrv") for seed in range(1, 40)}
    assert len(indexes) > 10 and all(0x100 <= i < 0x1F0 for i in indexes)
    assert _self_map_index(7, "winsrv") == _self_map_index(7, "winsrv")


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
    # MS Learn (Bug Check 0x1E): `2: kd> !error 00000000c0000005` prints
    # `Error code: (NTSTATUS) 0xc0000005 (3221225477) - The instruction at 0x%p referenced memory at 0x%p.
    # The memory could not be %s.`  A {Caption} stays in front of the text, one space after it:
    # `Error code: (NTSTATUS) 0xc0000142 (3221225794) - {DLL Initialization Failed} Initialization of ...`
    assert pended.execute("!error c0000120").text == (
        "Error code: (NTSTATUS) 0xc0000120 (3221225760) - The I/O request was canceled.")
    assert pended.execute("!error c000021b").text == (
        "Error code: (NTSTATUS) 0xc000021b (3221226011) - {Data Not Accepted} The TDI client could not handle "
        "the data received during an indication.")
    assert pended.execute("!error 00000000c0000005").text == (
        "Error code: (NTSTATUS) 0xc0000005 (3221225477) - The instruction at 0x%p referenced memory at 0x%p. "
        "The memory could not be %s.")
    assert pended.execute("!error 5").text == "Error code: (Win32) 0x5 (5) - Access is denied."


def test_error_knows_the_text_of_every_status_the_lab_returns():
    import stack.kernel.ntstatus as nts
    from wskdbg.render.ntstatus_text import STATUS_MESSAGES
    missing = [name for name, value in vars(nts).items()
               if name.startswith("STATUS_") and isinstance(value, int) and value not in STATUS_MESSAGES]
    assert missing == []


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
        # The default prefix [%9!d!]%8!04X!.%3!04X!::%4!s! [%1!s!], where %1 is the message GUID's
        # friendly name (the component's build directory), as in the WPP docs' example
        # `[0]0C40.0C3C::09/20/2004-14:41:31.625 [tracedrv]Hello, 1 Hi` - not the control GUID's name.
        assert lines[2].startswith("[0]0000.0000::01/01/2026-00:00:00.001 [testdrv]request ")
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
        # A live KD stop on a bug check (published capture, Bug Check 0x18):
        # *** Fatal System Error: 0x00000018
        #                        (0x0000000000000000,0xFFFFC48CF6E80090,0x0000000000000021,0xFFFFFFFFFFFFFFFF)
        #
        # Break instruction exception - code 80000003 (first chance)
        #
        # A fatal system error has occurred.
        # Debugger entered on first try; Bugcheck callbacks have not been invoked.
        #
        # A fatal system error has occurred.
        #
        # For analysis of this file, run !analyze -v
        # nt!DbgBreakPointWithStatus:
        # fffff806`d2efa090 cc              int     3
        # 1: kd> k
        #  # Child-SP          RetAddr               Call Site
        # 00 ffffa482`358df1e8 fffff806`d2faf3f2     nt!DbgBreakPointWithStatus
        # 01 ffffa482`358df1f0 fffff806`d2fae91c     nt!KiBugCheckDebugBreak+0x12
        # 02 ffffa482`358df250 fffff806`d2ef9387     nt!KeBugCheck2+0xb2c
        # 03 ffffa482`358df9e0 fffff806`d32b2937     nt!KeBugCheckEx+0x107
        stop = r.text.splitlines()
        assert stop[0] == "*** Fatal System Error: 0x00000044"
        assert stop[1] == "                       (0x%016X,0x0000000000000000,0x0000000000000000,0x0000000000000000)" % (
            info.params[0])
        assert stop[2:12] == ["", "Break instruction exception - code 80000003 (first chance)", "",
                              "A fatal system error has occurred.",
                              "Debugger entered on first try; Bugcheck callbacks have not been invoked.", "",
                              "A fatal system error has occurred.", "", "For analysis of this file, run !analyze -v",
                              "nt!DbgBreakPointWithStatus:"]
        assert re.fullmatch(r"[0-9a-f]{8}`[0-9a-f]{8} cc              int     3", stop[12])
        sites = [line.split()[-1] for line in engine.execute("k").text.splitlines()[1:6]]
        assert sites[0] == "nt!DbgBreakPointWithStatus"
        assert [s.split("+")[0] for s in sites[1:4]] == ["nt!KiBugCheckDebugBreak", "nt!KeBugCheck2", "nt!KeBugCheckEx"]
        assert sites[4].startswith("nt!IopfCompleteRequest+")  # under the export IofCompleteRequest, as in 0x44 dumps
        assert engine.execute(".bugcheck").text.splitlines() == [
            "Bugcheck code 00000044",
            f"Arguments {addr64(info.params[0])} 00000000`00000000 00000000`00000000 00000000`00000000"]
        lines = engine.execute("!analyze -v").text.splitlines()
        assert lines[2] == "*                        Bugcheck Analysis                                    *"
        assert lines[6] == "MULTIPLE_IRP_COMPLETE_REQUESTS (44)"
        assert f"Arg1: {info.params[0]:016x}, Address of the IRP" in lines
        for key in ("BUGCHECK_CODE:  44", f"BUGCHECK_P1: {info.params[0]:x}", "BUGCHECK_P2: 0",
                    "PROCESS_NAME:  System", "STACK_TEXT:  ", "MODULE_NAME: testdrv", "IMAGE_NAME:  testdrv.sys",
                    "STACK_COMMAND:  .cxr; .ecxr ; kb", "FAILURE_BUCKET_ID:  0x44_testdrv!TestCompleteTwice",
                    "Followup:     MachineOwner"):
            assert key in lines, key
        stack = lines[lines.index("STACK_TEXT:  ") + 1:lines.index("STACK_TEXT:  ") + 3]
        assert stack[0].split(" : ")[-1].startswith("nt!KeBugCheckEx") and " : 00000000`00000044 " in stack[0]
        assert stack[1].split()[-1].startswith("nt!IopfCompleteRequest+")
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
        absolute = tmp_path / "abs.log"  # an absolute path is a file name, not an unknown option
        assert engine.execute(f".logopen {absolute}").text == f"Opened log file '{absolute}'"
        engine.execute(".logclose")
        assert absolute.exists()
        assert engine.execute(".logopen /x").error  # one letter after a slash is an option
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
        for name in ("afd", "kfs", "echosrv", "khttpd"):
            assert engine.execute(f"sc query {name}").text.splitlines()[2] == "        STATE              : 4  RUNNING"
        assert engine.execute("sc query buggy").text.splitlines()[2] == "        STATE              : 1  STOPPED"
        before = (engine.scheduler.events_run, engine.bus.seq)
        result = engine.execute("sc start echosrv")
        assert not result.error
        assert result.text == ("[SC] StartService FAILED 1056:\n\n"
                               "An instance of the service is already running.")
        assert (engine.scheduler.events_run, engine.bus.seq) == before
        assert engine.execute("sc start afd").data["win32_error"] == 1056
    finally:
        engine.close()


# An unused stack location as !irp prints it on Windows (MS Learn, Bug Check 0x9F example):
#  [N/A(0), N/A(0)]
#             0  0 00000000 00000000 00000000-00000000
#
#             Args: 00000000 00000000 00000000 00000000
def test_unused_stack_locations_print_one_way_in_irp_and_the_tui(pended):
    from wskdbg.render.irp import IrpLocation, IrpView, irp_lines
    from wskdbg.tui.irp_view import irp_text
    view = IrpView(address=0xFFFFC10A00001000, type=6, size=0x160, stack_count=2, current_location=2, mdl=0,
                   flags=0, system_buffer=0, status=0, information=0, requestor_mode=0, pending_returned=0,
                   cancel=0, cancel_irql=0, user_iosb=0, user_event=0, cancel_routine=0, user_buffer=0, thread=0,
                   current_stack_location=0, original_file_object=0)
    view.locations = [IrpLocation(1, 0xFFFFC10A000010D0, 0, 0, 0, 0, (0, 0, 0, 0), 0, 0, 0, 0),
                      IrpLocation(2, 0xFFFFC10A00001118, 0xF, 0, 0, 0xE0, (0, 0, 0, 0), 0xFFFFC10A00002000, 0,
                                  0, 0, driver="\\Driver\\AFD", current=True)]
    lines = irp_lines(view)
    assert lines[3:7] == [" [N/A(0), N/A(0)]", "            0  0 00000000 00000000 00000000-00000000", "",
                          "            Args: 00000000 00000000 00000000 00000000"]
    # the TUI's IRP view prints the stack locations with the same renderer as !irp
    irp = the_irp(pended)
    tui = irp_text(pended, pended.current_host, irp.address).splitlines()
    shown = pended.execute(f"!irp {irp.address:x}").text.splitlines()
    assert tui[:len(shown)] == shown


# `!irpfind` (a published x64 capture) for an IRP whose CurrentLocation is past its last location:
# fffffa8018df9ee0 [0000000000000000] Irp is complete (CurrentLocation 2 > StackCount 1)
def test_irpfind_row_of_a_completed_irp():
    from wskdbg.render.irp import IrpView, irpfind_row
    view = IrpView(address=0xFFFFFA8018DF9EE0, type=6, size=0x118, stack_count=1, current_location=2, mdl=0,
                   flags=0, system_buffer=0, status=0, information=0, requestor_mode=0, pending_returned=0,
                   cancel=0, cancel_irql=0, user_iosb=0, user_event=0, cancel_routine=0, user_buffer=0, thread=0,
                   current_stack_location=0, original_file_object=0)
    assert irpfind_row(view, None) == ("fffffa8018df9ee0 [0000000000000000] Irp is complete "
                                       "(CurrentLocation 2 > StackCount 1)")
    assert irpfind_row(view, 0).endswith("StackCount 1) 0x0000000000000000")
