"""Kernel stacks in emulated memory: what `k`, `kb`, `r` and `dq @rsp` show agree with each other.

The x64 `kb` shape (Debugging Tools docs; reference notes §1): `Child-SP RetAddr : Args to Child : Call Site`,
where "Args to Child" are the four home-space qwords after the frame's return address.

At a routine's first instruction rsp points at its return address; the caller's home space
(where "Args to Child" are read) follows it; rcx, rdx, r8, r9 hold the first four arguments.
"""

from __future__ import annotations

import pytest
from net_lab import lab_engine, run

from stack.kernel.layouts import LAYOUTS


@pytest.fixture(scope="module")
def at_wsk_receive():
    engine = lab_engine()
    run(engine, "bp /h winsrv afd!WskProAPIReceive")
    run(engine, '!echo -n 1 "hello from client"')
    run(engine, "g")
    yield engine
    engine.close()


def qwords(engine, address: int, count: int) -> list[int]:
    data = engine.kernel_of("winsrv").mem.read(address, 8 * count)
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]


def test_rsp_at_routine_entry_points_at_the_return_address_k_prints(at_wsk_receive):
    engine = at_wsk_receive
    frames = engine.stack("winsrv")
    assert frames[0].symbol == "afd!WskProAPIReceive" and frames[1].symbol == "echosrv!WskSampleOpReceive"
    rsp = engine.evaluate("@rsp", host="winsrv")
    assert rsp == frames[0].child_sp == frames[1].child_sp - 8
    assert qwords(engine, rsp, 1) == [frames[0].ret_addr]
    assert frames[0].ret_addr == frames[1].location != 0


def test_every_return_address_sits_just_below_the_callers_child_sp(at_wsk_receive):
    frames = at_wsk_receive.stack("winsrv")
    for callee, caller in zip(frames, frames[1:]):
        assert qwords(at_wsk_receive, caller.child_sp - 8, 1) == [callee.ret_addr]
        assert callee.ret_addr == caller.address + caller.offset


def test_kb_args_to_child_are_the_home_space_after_the_return_address(at_wsk_receive):
    engine = at_wsk_receive
    text = run(engine, "kb")
    top = text.splitlines()[1]
    rsp = engine.evaluate("@rsp", host="winsrv")
    home = qwords(engine, rsp + 8, 4)
    assert top.split(" : ")[1].split() == [f"{v >> 32:08x}`{v & 0xFFFFFFFF:08x}" for v in home]


def test_rcx_rdx_r8_r9_are_wsk_receives_arguments_and_rdx_points_at_the_wsk_buf(at_wsk_receive):
    engine = at_wsk_receive
    socket, buf, flags, irp = engine.stack("winsrv")[0].args[:4]
    ev = lambda reg: engine.evaluate(reg, host="winsrv")  # noqa: E731
    assert ev("@rcx") == socket.address and ev("@r8") == flags and ev("@r9") == irp.address
    assert ev("@rdx") == buf.address != 0
    # the WSK_BUF is a local in echosrv's frame, as in wsksmple.c
    frames = engine.stack("winsrv")
    assert frames[1].child_sp < buf.address < frames[2].child_sp
    text = run(engine, "dt _WSK_BUF @rdx")
    assert f"Mdl              : 0x{buf.Mdl.address >> 32:08x}`{buf.Mdl.address & 0xFFFFFFFF:08x} _MDL" in text
    mdl = run(engine, "dt nt!_MDL poi(@rdx)")
    assert "ByteCount        : 0x800" in mdl


def test_kthread_records_its_stack_bounds_in_memory(at_wsk_receive):
    engine = at_wsk_receive
    thread = engine.current_thread("winsrv")
    k = engine.kernel_of("winsrv")
    raw = k.mem.read(thread.address, 0x100)
    kt = LAYOUTS["_KTHREAD"]  # Windows 10 x64 offsets: InitialStack 0x28, StackLimit 0x30, StackBase 0x38
    values = {f.name: kt.unpack_field(f, raw) for f in kt.fields if f.offset + f.byte_size <= 0x100}
    assert values["StackBase"] == values["InitialStack"] == thread.stack_base
    assert values["StackLimit"] == thread.stack_base - 0x6000
    assert thread.stack_limit <= engine.evaluate("@rsp", host="winsrv") < thread.stack_base


def test_echosrv_work_queue_event_is_a_kevent_in_memory_whose_wait_list_names_the_waiting_worker():
    """`dt nt!_KEVENT addr -r` has this shape on Windows 10 x64 (values illustrative):
       +0x000 Header           : _DISPATCHER_HEADER
          ...
          +0x004 SignalState      : 0n0
          +0x008 WaitListHead     : _LIST_ENTRY [ 0x... - 0x... ]"""
    engine = lab_engine()
    try:
        k = engine.kernel_of("winsrv")
        event_at = engine.evaluate("echosrv!WskSampleWorkQueue+0x10", host="winsrv")
        layout = LAYOUTS["_DISPATCHER_HEADER"]
        raw = k.mem.read(event_at, 0x18)
        head = {f.name: layout.unpack_field(f, raw) for f in layout.fields if f.kind != "struct"}
        assert (head["Type"], head["Size"], head["SignalState"]) == (1, 6, 0)  # EventSynchronizationObject
        worker = next(t for t in k.threads if t.name == "echosrv worker")
        assert worker.state == "Waiting"
        flink, blink = int.from_bytes(raw[8:16], "little"), int.from_bytes(raw[16:24], "little")
        assert flink == blink and worker.address + 0x140 <= flink < worker.address + 0x140 + 4 * 0x30
        text = run(engine, "dt nt!_KEVENT echosrv!WskSampleWorkQueue+0x10 -r")
        assert "+0x004 SignalState      : 0n0" in text and "WaitListHead" in text
    finally:
        engine.close()



def test_dt_irp_dotted_path_walks_the_tail_unions(at_wsk_receive):
    """Real WinDbg (public capture, `dt nt!_IRP addr -b`):
       +0x078 Tail             : <unnamed-tag>
          +0x000 Overlay          : <unnamed-tag>
             ...
             +0x040 CurrentStackLocation : 0xfffffa80`31e11e20"""
    engine = at_wsk_receive
    irp = engine.stack("winsrv")[0].args[3]
    cur = irp.address + 0xD0 + (irp.current_location - 1) * 0x48
    text = run(engine, "dt nt!_IRP @r9 Tail.Overlay.CurrentStackLocation")
    assert text.splitlines() == [
        "   +0x078 Tail             : <unnamed-tag>",
        "      +0x000 Overlay          : <unnamed-tag>",
        f"         +0x040 CurrentStackLocation : 0x{cur >> 32:08x}`{cur & 0xFFFFFFFF:08x} _IO_STACK_LOCATION",
    ]
    layout = run(engine, "dt nt!_IRP -r1 AssociatedIrp")
    assert layout.splitlines() == [
        "   +0x018 AssociatedIrp    : <unnamed-tag>",
        "      +0x000 MasterIrp        : Ptr64 _IRP",
        "      +0x000 IrpCount         : Int4B",
        "      +0x000 SystemBuffer     : Ptr64 Void",
    ]


def test_k_after_time_travel_has_no_zero_return_address_mid_stack():
    engine = lab_engine()
    try:
        run(engine, "bp /h winsrv echosrv!WskSampleReceiveIrpCompletionRoutine")
        run(engine, '!echo -n 2 "hello from client"')
        run(engine, "g")
        run(engine, "g")
        stacks = []
        for percent in (52, 88):
            run(engine, f"!tt {percent}")
            stacks.append(run(engine, "k").splitlines()[1:])
        # the client's user-mode program calls down through IofCallDriver: its frame has an address too
        assert any("user!echo" in row for rows in stacks for row in rows)
        for rows in stacks:
            ret_addrs = [row.split()[1] for row in rows]
            assert "00000000`00000000" not in ret_addrs[:-1], rows
    finally:
        engine.close()


def test_k_in_a_work_item_routine_shows_exp_worker_thread_and_iop_process_work_item():
    # A system worker thread's stack for an IoQueueWorkItem routine, as WinDbg shows one:
    #   00 ... khttpd!KhttpdConnectionWorker
    #   01 ... nt!IopProcessWorkItem+0x..
    #   02 ... nt!ExpWorkerThread+0x..
    #   03 ... nt!PspSystemThreadStartup+0x..
    #   04 ... nt!KiStartSystemThread+0x..
    engine = lab_engine()
    try:
        run(engine, "bp /h winsrv khttpd!KhttpdConnectionWorker")
        run(engine, "!http /index.html")
        assert "khttpd!KhttpdConnectionWorker" in run(engine, "g")
        rows = run(engine, "k").splitlines()[1:]
        assert [row.split()[-1].split("+")[0] for row in rows] == [
            "khttpd!KhttpdConnectionWorker", "nt!IopProcessWorkItem", "nt!ExpWorkerThread",
            "nt!PspSystemThreadStartup", "nt!KiStartSystemThread"]
        assert run(engine, "ln nt!IopProcessWorkItem").strip()  # a routine of nt like the others
        # !thread on a system worker thread names the routine the thread runs, not the work item:
        #   Win32 Start Address nt!ExpWorkerThread (0xfffff801...)
        assert "Win32 Start Address nt!ExpWorkerThread (0x" in run(engine, "!thread")
    finally:
        engine.close()
