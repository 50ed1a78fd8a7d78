"""x, ln, dps/dqs/dds, pseudo-registers, control flow (.for/.while/.if/.block/.break/.continue),
.lastevent and .cls, on the standard lab and the kernel-only test lab."""

from __future__ import annotations

import re

import pytest
from dbg_harness import factory

from wskdbg.engine import Engine
from wskdbg.render.fmt import addr64


@pytest.fixture(scope="module")
def lab():
    engine = Engine(seed=1)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def pended():
    """The test lab stopped in testbus's DPC: frames, IRPs and a two-device stack exist."""
    engine = Engine(factory=factory("client"), seed=1)
    engine.execute("bp testbus!TestBusCompleteDpc")
    engine.execute("g")
    yield engine
    engine.close()


# --- x ------------------------------------------------------------------------------------------

def test_x_lists_matching_routines_as_address_then_name_then_parameters(lab):
    # Real WinDbg, private symbols (MS Learn "x (Examine Symbols)"; rows as printed by kd):
    #   fffff801`0bf9b1c0 ECHO!EchoEvtDeviceAdd (struct WDFDRIVER__ *, struct WDFDEVICE_INIT *)
    # One space between the columns; the emulated routine's parameter names stand in for C types.
    k = lab.kernel
    r = lab.execute("x echosrv!WskSample*")
    rows = r.text.splitlines()
    accept = k.symbol_address("echosrv!WskSampleAcceptEvent")
    assert (f"{addr64(accept)} echosrv!WskSampleAcceptEvent (SocketContext, Flags, LocalAddress, RemoteAddress, "
            "AcceptSocket, AcceptSocketContext, AcceptSocketDispatch)") in rows
    assert all(re.fullmatch(r"[0-9a-f]{8}`[0-9a-f]{8} echosrv!WskSample\w+ \(.*\)", row) for row in rows)
    addresses = [int(row[:17].replace("`", ""), 16) for row in rows]
    assert addresses == sorted(addresses) and len(rows) > 10


def test_x_takes_wildcards_on_both_sides_and_sorting_options(lab):
    rows = lab.execute("x afd!*Receive*").text.splitlines()
    assert rows and all("!" in r and "receive" in r.split("!")[1].split(" ")[0].lower() for r in rows)
    names = lab.execute("x /1 /n *!*Receive*").text.splitlines()
    assert names == sorted(names, key=str.lower) and "afd!AfdReceive" in names
    assert lab.execute("x /0 echosrv!DriverEntry").text == addr64(lab.kernel.symbol_address("echosrv!DriverEntry"))


def test_x_rejects_a_pattern_without_a_module_and_an_unloaded_module(lab):
    r = lab.execute("x WskSample*")
    assert r.error and "Module!Symbol" in r.text
    r = lab.execute("x nosuch!Foo")
    assert r.error and "Couldn't resolve" in r.text


# --- ln -----------------------------------------------------------------------------------------

def test_ln_shows_the_symbol_below_and_the_next_one_and_exact_matches(lab):
    # MS Learn "ln (List Nearest Symbols)"; kd prints:
    #   (7c80b529)   kernel32!GetModuleHandleA   |  (7c80b6a1)   kernel32!GetModuleHandleW
    #   Exact matches:
    #       kernel32!GetModuleHandleA (<no parameter info>)
    k = lab.kernel
    accept = k.symbol_address("echosrv!WskSampleAcceptEvent")
    # The routine laid out right after it in echosrv's image (the layout hashes names).
    nxt, nxt_name = min((a, n) for n, a in k.module("echosrv").symbols.items() if a > accept)
    r = lab.execute("ln echosrv!WskSampleAcceptEvent")
    assert r.text.splitlines() == [
        f"({addr64(accept)})   echosrv!WskSampleAcceptEvent   |  ({addr64(nxt)})   echosrv!{nxt_name}",
        "Exact matches:",
        "    echosrv!WskSampleAcceptEvent (SocketContext, Flags, LocalAddress, RemoteAddress, AcceptSocket, "
        "AcceptSocketContext, AcceptSocketDispatch)",
    ]
    r = lab.execute("ln echosrv!WskSampleAcceptEvent+0x10")
    assert r.text == (f"({addr64(accept)})   echosrv!WskSampleAcceptEvent+0x10   |  ({addr64(nxt)})   "
                      f"echosrv!{nxt_name}")


def test_ln_outside_every_image_says_so(lab):
    r = lab.execute("ln 1000")
    assert not r.error and r.text.startswith("No symbols found near 00000000`00001000")


# --- dps / dqs / dds ----------------------------------------------------------------------------

def test_dps_resolves_a_driver_objects_dispatch_table(pended):
    # kd> dps nt!KiServiceTable L2  (x64 rows: address, two spaces, value, one space, symbol)
    #   fffff800`02a8e300  fffff800`02e7f1a0 nt!NtMapUserPhysicalPagesScatter
    k = pended.kernel
    drv = k.objects["\\Driver\\testbus"]
    drv.flush()
    base = drv.address + 0x70 + 0xF * 8  # MajorFunction[IRP_MJ_INTERNAL_DEVICE_CONTROL]
    handler = k.symbol_address("testbus!TestBusDispatchInternal")
    invalid = k.symbol_address("nt!IopInvalidDeviceRequest")
    r = pended.execute(f"dps {base:x} L2")
    assert r.text.splitlines() == [
        f"{addr64(base)}  {addr64(handler)} testbus!TestBusDispatchInternal",
        f"{addr64(base + 8)}  {addr64(invalid)} nt!IopInvalidDeviceRequest",
    ]
    assert pended.execute(f"dqs {base:x} L1").text.splitlines()[0] == r.text.splitlines()[0]
    r = pended.execute("dps")  # continues where the last one ended
    assert r.text.splitlines()[0].startswith(addr64(base + 8))


def test_dds_shows_dwords_and_unreadable_memory_as_question_marks(pended):
    r = pended.execute("dds 0 L2")
    assert r.text.splitlines() == ["00000000`00000000  ????????", "00000000`00000004  ????????"]
    assert pended.execute("dps 0 L1").text == "00000000`00000000  ????????`????????"


# --- pseudo-registers and r -----------------------------------------------------------------------

def test_pseudo_registers_ptrsize_curthread_ip_and_ra(pended):
    thread = pended.current_thread()
    frames = pended.stack()
    assert pended.execute("? @$ptrsize").data["value"] == 8
    assert pended.execute("? @$curthread").data["value"] == thread.address
    assert pended.execute("? @$ip").data["value"] == frames[0].location
    assert pended.execute("? @$ra").data["value"] == frames[0].ret_addr
    for i in (0, 19):
        pended.execute(f"r $t{i} = 0n{i + 5}")
        assert pended.execute(f"? @$t{i}").data["value"] == i + 5


def test_r_refuses_to_change_a_real_register_and_says_why(pended):
    r = pended.execute("r rax=5")
    assert r.error and "cannot set rax" in r.text and "$t0..$t19" in r.text
    assert pended.execute("r $t20 = 1").error


# --- control flow -------------------------------------------------------------------------------

def test_for_walks_a_drivers_device_list_in_memory(lab):
    # DRIVER_OBJECT.DeviceObject (+0x8) and DEVICE_OBJECT.NextDevice (+0x10) chain the devices.
    drv = lab.kernel.objects["\\Driver\\tdx"]  # \\Device\\Tcp, Tcp6, Udp, Udp6
    r = lab.execute(f".for (r $t0 = poi({drv.address:x}+8); @$t0 != 0; r $t0 = poi(@$t0+10)) "
                    "{ ? @$t0 }")
    values = [int(line.split("= ")[1].replace("`", ""), 16) for line in r.text.splitlines()]
    assert values == [d.address for d in drv.devices] and len(values) == 4


def test_the_published_list_walk_recipe_runs_unchanged_on_a_list_entry_ring(lab):
    # The WSK client list recipe, with the list head in @$t1 instead of afd!AfdWskClientListHead:
    #   .for (r $t0 = poi(head); @$t0 != head; r $t0 = poi(@$t0)) { dps poi(@$t0+4*@$ptrsize) L1 }
    from stack.kernel.pool import NonPagedPoolNx
    k = lab.kernel
    head = k.pool.allocate(NonPagedPoolNx, 0x10, "Test")
    entries = [k.pool.allocate(NonPagedPoolNx, 0x28, "Test") for _ in range(3)]
    ring = [head] + entries
    targets = ["echosrv!DriverEntry", "echosrv!WskSampleAcceptEvent", "afd!AfdReceive"]
    for i, node in enumerate(ring):
        k.mem.write(node, ring[(i + 1) % 4].to_bytes(8, "little") + ring[i - 1].to_bytes(8, "little"))
    # Each entry: links at +0, at +0x20 (4 pointers in) a pointer to +0x18, which holds a routine address.
    for node, target in zip(entries, targets):
        k.mem.write(node + 0x18, k.symbol_address(target).to_bytes(8, "little"))
        k.mem.write(node + 0x20, (node + 0x18).to_bytes(8, "little"))
    lab.execute(f"r $t1 = {head:x}")
    r = lab.execute(".for (r $t0 = poi(@$t1); @$t0 != @$t1; r $t0 = poi(@$t0)) { dps poi(@$t0+4*@$ptrsize) L1 }")
    assert not r.error
    assert r.text.splitlines() == [f"{addr64(n + 0x18)}  {addr64(k.symbol_address(t))} {t}"
                                   for n, t in zip(entries, targets)]
    r = lab.execute('dx -r2 Debugger.Utility.Collections.FromListEntry(*(nt!_LIST_ENTRY*)@$t1, '
                    '"nt!_LIST_ENTRY", "Flink")')
    assert [line.split()[0] for line in r.text.splitlines()[1:] if line.startswith("    [")] == ["[0x0]", "[0x1]",
                                                                                           "[0x2]"]


def test_break_and_continue_leave_or_skip_a_pass_and_keep_earlier_output():
    engine = Engine(factory=factory("client"), seed=1)
    try:
        r = engine.execute(".for (r $t0 = 0; @$t0 < 9; r $t0 = @$t0 + 1) { .if (@$t0 == 1) { .continue }; "
                           ".echo pass; .if (@$t0 == 3) { .break }; ? @$t0 }")
        assert r.text.splitlines() == ["pass", "Evaluate expression: 0 = 00000000`00000000",  # 1 is skipped
                                       "pass", "Evaluate expression: 2 = 00000000`00000002", "pass"]
        assert engine.execute("? @$t0").data["value"] == 3
        r = engine.execute("r $t1 = 3; .while (@$t1) { r $t1 = @$t1 - 1; .echo tick }")
        assert r.text.splitlines() == ["tick"] * 3
        assert engine.execute(".do { .echo once } (0)").text == "once"
        assert engine.execute(".block { .echo a; .echo b }").text == "a\nb"
        assert engine.execute(".if (1 == 2) { .echo a } .elsif (2 == 2) { .echo b } .else { .echo c }").text == "b"
        assert engine.execute(".if (0) { .echo a }; .else { .echo c }").text == "c"
        r = engine.execute(".break")
        assert r.error and "outside a .for" in r.text
        r = engine.execute(".for (r $t0 = 0; 1; r $t0 = 0) { }")
        assert r.error and "stopped after 0x10000 iterations" in r.text
        r = engine.execute(".else { .echo x }")
        assert r.error and ".else without a .if" in r.text
        r = engine.execute(".while (@$t0 ==) { .echo x }")
        assert r.error and "Syntax error" in r.text
    finally:
        engine.close()


# --- .lastevent, .cls, help ----------------------------------------------------------------------

def test_lastevent_names_the_breakpoint_and_the_hand_off(pended):
    # kd> .lastevent
    #   Last event: Hit breakpoint 0
    #     debugger time: Mon Dec  7 10:12:13.456 2026 (UTC + 0:00)
    stop = pended.last_stop
    r = pended.execute(".lastevent")
    lines = r.text.splitlines()
    assert lines[0] == f"Last event: Hit breakpoint {stop.breakpoint.id}"
    assert re.fullmatch(r"  debugger time: \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d\.\d{3} 2026 \(UTC \+ 0:00\)", lines[1])
    assert lines[2] == (f"  event {stop.events_run}, hand-off {stop.seq} [winsrv] call: testbus!TestBusCompleteDpc")


def test_cls_prints_nothing_and_asks_the_front_end_to_clear(lab):
    r = lab.execute(".cls")
    assert r.text == "" and r.data == {"cls": True} and not r.error


def test_help_lists_every_new_command(lab):
    text = lab.execute("help").text
    for name in ("x", "ln", "dps", "dx", ".frame", "dv", "!devstack", "!object", "!stacks", ".lastevent", ".cls",
                 ".for", ".while", ".if", ".block", ".break", ".continue", "lsa", "ls", ".lines", "l", "u"):
        assert re.search(rf"^  {re.escape(name)}[ ,]", text, re.M), name


def test_the_wsk_client_list_recipe_runs_verbatim_when_afd_publishes_its_list_head(lab):
    # The published recipe, verbatim (CodeMachine, "Finding Windows Socket Kernel (WSK) Clients"):
    #   0: kd> r $t0 = afd!AfdWskClientListHead ; .for( r $t1 = poi(@$t0) ;  (@$t1 != @$t0) ; r $t1 = poi(@$t1) ) { dps @$t1+5*@$ptrsize L1}
    #   fffffa80`048e1188  fffff880`06cfd300 HTTP!UxWskClientDispatch
    r = lab.execute("r $t0 = afd!AfdWskClientListHead ; .for( r $t1 = poi(@$t0) ;  (@$t1 != @$t0) ; "
                    "r $t1 = poi(@$t1) ) { dps @$t1+5*@$ptrsize L1}")
    assert not r.error, r.text
    rows = r.text.splitlines()
    assert all(re.fullmatch(r"[0-9a-f]{8}`[0-9a-f]{8}  [0-9a-f]{8}`[0-9a-f]{8} \S+!\S+", row) for row in rows), rows
    assert any(row.endswith("echosrv!WskSampleClientDispatch") for row in rows), rows


def test_printf_formats_pointers_symbols_numbers_and_strings(lab):
    # MS Learn ".printf": %p pointer, %y symbol, %d %x %u with I64, %ma an ASCII string in memory.
    k = lab.kernel
    entry = k.symbol_address("echosrv!DriverEntry")
    r = lab.execute('.printf "at %p: %y\\n", echosrv!DriverEntry, echosrv!DriverEntry+4')
    assert r.text == f"at {entry:016x}: echosrv!DriverEntry+0x4"
    assert lab.execute('.printf "%d %x %u %I64x %%", -1, 0n255, 7, 123456789abc').text == "-1 ff 7 123456789abc %"
    from stack.kernel.pool import NonPagedPoolNx
    text = k.pool.allocate(NonPagedPoolNx, 0x20, "Test")
    k.mem.write(text, b"hello\x00")
    assert lab.execute(f'.printf "[%ma]", {text:x}').text == "[hello]"
    drv = k.objects["\\Driver\\tcpip"]
    r = lab.execute(f'.for (r $t0 = poi({drv.address:x}+8); @$t0; r $t0 = poi(@$t0+10)) '
                    '{ .printf "%p -> %p\\n", @$t0, poi(@$t0+8) }')
    assert r.text.splitlines() == [f"{d.address:016x} -> {drv.address:016x}" for d in drv.devices]
    assert "more specifiers than arguments" in lab.execute('.printf "%p"').text
    assert "left over" in lab.execute('.printf "x", 1').text


def test_ln_of_every_frame_location_in_k_names_that_frame(lab):
    # An outer frame's location is its return site (the caller + its call-site offset): `ln` must
    # name that routine, never a neighbour the image layout happens to put close behind it.
    lab.execute("bp /h winsrv echosrv!WskSampleReceiveIrpCompletionRoutine")
    lab.execute('!echo -n 1 "ln"')
    assert not lab.execute("g").error
    frames = lab.stack()
    assert len(frames) > 5
    for frame in frames:
        if not frame.address:  # a frame with no kernel image (a user-mode program)
            continue
        text = lab.execute(f"ln {frame.location:x}").text
        assert text.split("   ")[1].split("+")[0] == frame.symbol, (frame.call_site, text)
