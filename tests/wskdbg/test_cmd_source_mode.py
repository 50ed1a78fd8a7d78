"""Source mode: .frame, dv, .lines with k, lsa/ls, u, l+t/l+s stepping by source line.

The emulated routines are the Python functions of the test lab (tests/wskdbg/dbg_harness.py),
so every expected line number is found in that file's own text."""

from __future__ import annotations

import inspect
import re

import dbg_harness
import pytest
from dbg_harness import factory

from stack.kernel.irp import live_irps
from wskdbg.engine import Engine
from wskdbg.render.fmt import addr64

HARNESS = "tests/wskdbg/dbg_harness.py"


def line_of(fn, text: str) -> int:
    """The line of `fn` (in dbg_harness.py) that contains `text`."""
    lines, first = inspect.getsourcelines(inspect.unwrap(fn))
    return first + next(i for i, line in enumerate(lines) if text in line)


@pytest.fixture()
def dispatched():
    """Stopped at `call testbus!TestBusDispatchInternal`: the client thread called testdrv, which
    calls the bus driver; the IRP is in flight."""
    engine = Engine(factory=factory("client"), seed=1)
    engine.execute("bp testbus!TestBusDispatchInternal")
    engine.execute("g")
    yield engine
    engine.close()


def test_k_shows_file_and_line_for_each_python_frame_once_lines_is_on(dispatched):
    # kd> kn with line information (MS Learn, "k, kb, kc, kd, kp, kP, kv"; private symbols):
    #   00 ffffd001`51978110 fffff801`0942f55b ECHO!EchoEvtDeviceAdd+0x66 [d:\echo\device.c @ 138]
    plain = dispatched.execute("kn").text.splitlines()
    assert dispatched.execute(".lines").text == "Line number information will be loaded"
    rows = dispatched.execute("kn").text.splitlines()
    entry = line_of(dbg_harness.TestBusDispatchInternal, "def TestBusDispatchInternal")
    call = line_of(dbg_harness.TestDrvDispatchInternal, "return IoCallDriver(")
    client = line_of(dbg_harness.TestClientThread, "status = IoCallDriver(device, irp)")
    assert rows[1] == plain[1] + f" [{HARNESS} @ {entry}]"
    assert rows[3] == plain[3] + f" [{HARNESS} @ {call}]"
    assert rows[5] == plain[5] + f" [{HARNESS} @ {client}]"
    assert rows[2] == plain[2] and "nt!IofCallDriver" in rows[2]  # no source: a frame the kernel pushes
    assert dispatched.execute(".lines").text == "Line number information will not be loaded"
    assert dispatched.execute("kn").text.splitlines() == plain


def test_frame_selects_a_frame_and_dv_shows_its_parameters_and_locals(dispatched):
    # kd> .frame 2     ->  02 ffffd001`51978110 fffff801`0942f55b nt!IopLoadDriver+0x4c4
    # kd> dv           ->  names right-aligned, then " = " and the value:
    #            argc = 0n1
    #            argv = 0x00000000`00e74d30
    (irp,) = live_irps(dispatched.kernel)
    frames = dispatched.stack()
    kn = dispatched.execute("kn").text.splitlines()
    assert dispatched.execute(".frame 4").text == kn[5]
    assert dispatched.execute(".frame").text == kn[5]
    rows = dispatched.execute("dv").text.splitlines()
    assert f"{'irp':>15} = 0x{addr64(irp.address)}" in rows
    assert f"{'status':>15} = 0x00000000`00000000" not in rows  # not assigned yet: not a local yet
    names = [row.split(" = ")[0].strip() for row in rows]
    assert names[:2] == ["Context", "k"] and "mdl" in names and "status" not in names
    assert all(len(row.split(" = ")[0]) == 15 for row in rows)  # right-aligned in one column
    dispatched.execute(".frame 0")
    rows = dispatched.execute("dv").text.splitlines()
    assert rows == [f"{'DeviceObject':>15} = 0x{addr64(frames[0].args[0].address)}",
                    f"{'Irp':>15} = 0x{addr64(irp.address)}"]  # at its call: parameters only
    rows = dispatched.execute("dv /t /v /i").text.splitlines()
    assert rows[0].startswith("prv param @rcx") and rows[1].startswith("prv param @rdx")
    assert rows[1].endswith(f"Irp = 0x{addr64(irp.address)}")
    r = dispatched.execute(".frame 1")
    assert "nt!IofCallDriver" in r.text
    r = dispatched.execute("dv")
    assert r.error and "no source" in r.text
    assert dispatched.execute(".frame 99").error


def test_a_new_stop_selects_frame_zero_again(dispatched):
    dispatched.execute(".frame 3")
    assert dispatched.selected_frame() == 3
    dispatched.execute("t")
    assert dispatched.selected_frame() == 0


def test_u_shows_the_routines_source_around_the_current_line_and_says_so(dispatched):
    dispatched.execute(".frame 2")
    r = dispatched.execute("u")
    call = line_of(dbg_harness.TestDrvDispatchInternal, "return IoCallDriver(")
    lines = r.text.splitlines()
    assert lines[0] == f"testdrv!TestDrvDispatchInternal [{HARNESS} @ {call}]:"
    assert lines[1].startswith("No machine code: testdrv!TestDrvDispatchInternal is emulated in Python")
    marked = [row for row in lines[2:] if row.startswith(">")]
    assert marked == [f">{call:5}:     return IoCallDriver(DeviceObject.extension[\"lower\"], Irp)"]
    assert all(re.match(r"[ >] {0,4}\d+: ", row) for row in lines[2:])


def test_lsa_marks_the_current_line_and_ls_continues(dispatched):
    # kd> lsa .   ->   "    97:     ..."  and  ">   98:     ..." on the current line
    dispatched.execute(".frame 4")
    client = line_of(dbg_harness.TestClientThread, "status = IoCallDriver(device, irp)")
    rows = dispatched.execute("lsa .").text.splitlines()
    assert len(rows) == 10
    assert rows[4] == f">{client:5}:     status = IoCallDriver(device, irp)"
    assert rows[0].startswith(f" {client - 4:5}: ")
    more = dispatched.execute("ls").text.splitlines()
    assert more[0].startswith(f" {client + 6:5}: ")
    rows = dispatched.execute("lsa testbus!TestBusCompleteDpc").text.splitlines()
    entry = line_of(dbg_harness.TestBusCompleteDpc, "def TestBusCompleteDpc")
    assert any(row.startswith(f" {entry:5}: def TestBusCompleteDpc") for row in rows)
    assert dispatched.execute("lsc").text == f"Current: {HARNESS}({client})"


def test_l_plus_t_makes_p_step_a_whole_source_line_and_l_plus_s_shows_it():
    # kd> l+t   ->  "Source options are 1:" / "     1/t - Step/trace by source line"
    engine = Engine(factory=factory("client"), seed=1)
    try:
        engine.execute("bp testdrv!TestClientThread")
        engine.execute("g")
        engine.execute("t; t; t")  # to IoAllocateMdl, MmBuildMdlForNonPagedPool ...
        assert engine.execute("l+t").text.splitlines() == ["Source options are 1:",
                                                           "     1/t - Step/trace by source line"]
        assert engine.execute("l+s").text.splitlines()[0] == "Source options are 5:"
        call = line_of(dbg_harness.TestClientThread, "status = IoCallDriver(device, irp)")
        wait = line_of(dbg_harness.TestClientThread, "yield KeWaitForSingleObject(done)")
        r = engine.execute("p; p")  # IoAllocateIrp's line, then the call line (stopped at its call)
        assert r.text.splitlines()[-1] == f">{call:5}:     status = IoCallDriver(device, irp)"
        # p by hand-off would stop at IoCallDriver's own hand-offs; by line it steps over the whole
        # call (testdrv, the bus driver pending the IRP) to the next line: the wait, as the thread resumes.
        r = engine.execute("p")
        assert r.text.splitlines()[-1] == f">{wait:5}:         yield KeWaitForSingleObject(done)"
        assert "thread.switch" in r.text
        assert engine.execute("l-t").text.splitlines() == ["Source options are 4:",
                                                           "     4/s - List source code at prompt"]
        assert engine.execute("l-*").text == "Source options are 0:"
    finally:
        engine.close()


def test_frame_r_adds_the_frames_registers(dispatched):
    frames = dispatched.stack()
    lines = dispatched.execute(".frame /r 2").text.splitlines()
    assert lines[0] == dispatched.execute("kn").text.splitlines()[3]
    assert lines[1] == (f"rip={frames[2].location:016x} rsp={frames[2].child_sp:016x} "
                        f"rcx={frames[2].args[0].address:016x}")
    assert lines[2].startswith(f"rdx={frames[2].args[1].address:016x}  r8=")


def test_after_a_bug_check_k_shows_the_line_that_crashed_and_dv_its_locals():
    engine = Engine(factory=factory("double"), seed=1)
    try:
        engine.execute("g")
        engine.execute(".lines")
        second = line_of(dbg_harness.TestCompleteTwice, "IoCompleteRequest(irp)") + 1  # the second call
        rows = engine.execute("kn").text.splitlines()
        row = next(r for r in rows if "testdrv!TestCompleteTwice" in r)
        assert row.endswith(f" [{HARNESS} @ {second}]")
        n = int(row[:2], 16)
        engine.execute(f".frame {n:x}")
        names = [line.split(" = ")[0].strip() for line in engine.execute("dv").text.splitlines()]
        assert names == ["Context", "irp", "loc"]
    finally:
        engine.close()
