"""dx over emulated memory, !devstack, !object and !stacks on the test lab and the standard lab."""

from __future__ import annotations

import pytest
from dbg_harness import factory

from stack.kernel.irp import live_irps
from wskdbg.dx import NAME_WIDTH
from wskdbg.engine import Engine
from wskdbg.render.fmt import addr64_nobt


@pytest.fixture(scope="module")
def pended():
    engine = Engine(factory=factory("client"), seed=1)
    engine.execute("bp testbus!TestBusCompleteDpc")
    engine.execute("g")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def lab():
    engine = Engine(seed=1)
    yield engine
    engine.close()


# --- dx -----------------------------------------------------------------------------------------
# The data model display, as MS Learn's dtx page prints it (dtx and dx share it):
#   (*((nt!_EPROCESS *)0xffffb607560b56c0))                 [Type: _EPROCESS]
#       [+0x000] Pcb              [Type: _KPROCESS]
#       [+0x2e8] UniqueProcessId  : 0x4 [Type: void *]
#       [+0x2f0] ActiveProcessLinks [Type: _LIST_ENTRY]
#           [+0x000] Version          : 0xd24c2890 [Type: ...]      (-r2: 4 more spaces a level)
#       [+0x018] m_lRefCount      : -766760880 [Type: long]

def test_dx_follows_the_irp_to_its_current_stack_location(pended):
    (irp,) = live_irps(pended.kernel)
    loc = irp.address + 0xD0  # the lower driver's location (1 is current of 2)
    lower = irp.stack[0].device_object
    expr = f"((nt!_IRP*)0x{irp.address:x})->Tail.Overlay.CurrentStackLocation"
    rows = pended.execute(f"dx {expr}").text.splitlines()
    assert rows[0] == f"{expr}{' ' * NAME_WIDTH} : {loc:#x} [Type: _IO_STACK_LOCATION *]"
    assert rows[1] == "    [+0x000] MajorFunction    : 0xf [Type: unsigned char]"
    assert rows[4] == "    [+0x003] Control          : 0xe1 [Type: unsigned char]"
    assert rows[5] == "    [+0x008] Parameters       [Type: _IO_STACK_PARAMETERS_OTHERS]"
    assert rows[6] == f"    [+0x028] DeviceObject     : {lower.address:#x} [Type: _DEVICE_OBJECT *]"
    assert rows[8].startswith("    [+0x038] CompletionRoutine : 0x") and \
        rows[8].endswith(" : testdrv!TestDrvCompletion+0x0 [Type: void *]")


def test_dx_prints_signed_fields_in_decimal_and_unsigned_in_hex(pended):
    (irp,) = live_irps(pended.kernel)
    rows = pended.execute(f"dx *(nt!_IRP*)0x{irp.address:x}").text.splitlines()
    assert rows[0] == f"*(nt!_IRP*)0x{irp.address:x}{' ' * NAME_WIDTH} [Type: _IRP]"
    assert "    [+0x000] Type             : 6 [Type: short]" in rows
    assert "    [+0x042] StackCount       : 2 [Type: char]" in rows
    assert "    [+0x020] ThreadListEntry  [Type: _LIST_ENTRY]" in rows
    assert f"    [+0x008] MdlAddress       : {irp.mdl_address.address:#x} [Type: _MDL *]" in rows


def test_dx_r2_expands_two_levels_and_arrays_index(pended):
    (irp,) = live_irps(pended.kernel)
    rows = pended.execute(f"dx -r2 *(nt!_IRP*)0x{irp.address:x}").text.splitlines()
    i = rows.index("    [+0x030] IoStatus         [Type: _IO_STATUS_BLOCK]")
    assert rows[i + 1].startswith("        [+0x000] Status           : ")
    drv = pended.kernel.objects["\\Driver\\testbus"]
    drv.flush()
    handler = pended.kernel.symbol_address("testbus!TestBusDispatchInternal")
    r = pended.execute(f"dx ((nt!_DRIVER_OBJECT*)0x{drv.address:x})->MajorFunction[15]")
    assert r.text.endswith(f" : {handler:#x} : testbus!TestBusDispatchInternal+0x0 [Type: void *]")
    rows = pended.execute(f"dx ((nt!_DRIVER_OBJECT*)0x{drv.address:x})->MajorFunction").text.splitlines()
    assert rows[0].endswith(" [Type: void * [28]]") and len(rows) == 29
    assert rows[16] == f"    [15]             : {handler:#x} : testbus!TestBusDispatchInternal+0x0 [Type: void *]"


def test_dx_takes_registers_and_pointer_arithmetic(pended):
    (irp,) = live_irps(pended.kernel)
    pended.execute(f"r $t0 = {irp.address:x}")
    a = pended.execute("dx ((nt!_IRP*)@$t0)->StackCount").text
    assert a == f"((nt!_IRP*)@$t0)->StackCount{' ' * NAME_WIDTH} : 2 [Type: char]"
    r = pended.execute("dx ((nt!_IRP*)@$t0 + 1)")
    assert r.text.splitlines()[0].endswith(f" : {irp.address + 0xD0:#x} [Type: _IRP *]")


def test_dx_reports_bad_input_with_a_position(pended):
    (irp,) = live_irps(pended.kernel)
    pended.execute(f"r $t0 = {irp.address:x}")  # its own: parallel runs do not keep this module's order
    r = pended.execute("dx ((nt!_IRP*)@$t0)->NoSuchField")
    assert r.error and "_IRP has no field 'NoSuchField'" in r.text
    r = pended.execute("dx ((nt!_IRP*)0)->Type")
    assert r.error and "Unable to read memory at Address 0x0" in r.text
    r = pended.execute("dx")
    assert r.error and "an expression is required" in r.text
    r = pended.execute("dx ((nt!_IRP*)@$t0)->Type +")
    assert r.error and "Syntax error" in r.text
    r = pended.execute("dx __import__('os')")
    assert r.error


# --- !devstack ----------------------------------------------------------------------------------

def test_devstack_lists_the_stack_top_first_and_marks_the_device(pended):
    # MS Learn "!devstack":
    #   kd> !devstack e000000085007b50
    #    !DevObj   !DrvObj            !DevExt   ObjectName
    #     e0000165fff32040  \Driver\kmixer     e0000165fff32190
    #   > e000000085007b50  \Driver\swenum     e000000085007ca0  KSENUM#00000005
    k = pended.kernel
    bus = k.objects["\\Device\\TestBus0"]
    flt = k.objects["\\Device\\TestFilter0"]
    rows = pended.execute("!devstack TestBus0").text.splitlines()
    assert rows == [" !DevObj           !DrvObj            !DevExt           ObjectName",
                    f"  {addr64_nobt(flt.address)}  \\Driver\\testdrv    {addr64_nobt(0)}  TestFilter0",
                    f"> {addr64_nobt(bus.address)}  \\Driver\\testbus    {addr64_nobt(bus.extension_address)}  TestBus0"]
    assert pended.execute(f"!devstack {flt.address:x}").text.splitlines()[1].startswith(">")
    r = pended.execute("!devstack \\Driver\\testbus")
    assert r.error and "is not a device object" in r.text


# --- !object ------------------------------------------------------------------------------------

def test_object_lists_the_device_directory_with_hash_address_type_name(lab):
    # kd> !object \Device
    #   Object: ffffc20c7b0386c0  Type: (ffffe001a6e7d6a0) Directory
    #       ObjectHeader: ffffc20c7b038690 (new version)
    #       HandleCount: 0  PointerCount: 212
    #       Directory Object: ffffc20c7b01e300  Name: Device
    #
    #       Hash Address          Type                      Name
    #       ---- -------          ----                      ----
    #        00  ffffe001a8fa38f0 Device                    NDMP2
    rows = lab.execute("!object \\Device").text.splitlines()
    assert rows[0].startswith("Object: ") and rows[0].endswith(") Directory")
    assert rows[1].endswith(" (new version)") and rows[3].endswith("Name: Device")
    assert rows[5:7] == ["    Hash Address          Type                      Name",
                         "    ---- -------          ----                      ----"]
    tcp = lab.kernel.objects["\\Device\\Tcp"]
    row = next(r for r in rows if r.endswith(" Tcp"))
    assert row[9:] == f"{addr64_nobt(tcp.address)} Device                    Tcp"
    assert {r.split()[-1] for r in rows[7:]} >= {"Tcp", "Udp", "Afd", "Tcp6"}


def test_object_root_driver_directory_and_a_named_object(lab):
    root = lab.execute("!object \\").text
    assert "Directory                 Device" in root and "Directory                 Driver" in root
    drivers = lab.execute("!object \\Driver").text
    assert "Driver                    echosrv" in drivers
    tcp = lab.kernel.objects["\\Device\\Tcp"]
    rows = lab.execute("!object \\Device\\Tcp").text.splitlines()
    assert rows[0].startswith(f"Object: {addr64_nobt(tcp.address)}  Type: (") and rows[0].endswith(") Device")
    assert rows[3].endswith("Name: Tcp")
    assert lab.execute(f"!object {tcp.address:x}").text == "\n".join(rows)
    assert lab.execute("!object \\NoSuch").error


# --- !stacks ------------------------------------------------------------------------------------

def test_stacks_summarizes_threads_and_what_they_wait_in(pended):
    # kd> !stacks
    #   Proc.Thread  .Thread  Ticks   ThreadState Blocker
    #                               [fffffa8000c7b890 System]
    #      4.000008  fffffa8000c7e040 0000c6a Blocked    nt!KiSwapContext+0x7a
    client = next(t for t in pended.kernel.threads if t.name == "test client")
    rows = pended.execute("!stacks").text.splitlines()
    assert rows[0] == "Proc.Thread  .Thread  Ticks   ThreadState Blocker"
    row = next(r for r in rows if addr64_nobt(client.address) in r)
    assert row.startswith(f"   4.{client.tid:06x}  {addr64_nobt(client.address)} ")
    assert row.split()[3] == "Blocked" and row.split()[4].startswith("testdrv!TestClientThread+0x")
    assert any(r.split()[-2:] == ["RUNNING", "testbus!TestBusCompleteDpc"] for r in rows)
    assert rows[-1].startswith("Threads Processed: ")
    detail = pended.execute("!stacks 2 testdrv").text.splitlines()
    assert " " * 40 + "nt!KeWaitForSingleObject+0x3b2" in detail or \
        any(r.strip().startswith("nt!KeWaitForSingleObject") for r in detail)
    assert detail[-1] == "Threads Processed: 1"
