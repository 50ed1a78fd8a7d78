"""What the debugger shows of afd.sys, the WSK provider: modules, stacks, IRPs and the client list."""

from __future__ import annotations

import pytest

from wskdbg.engine import Engine


def run(engine: Engine, line: str) -> str:
    result = engine.execute(line)
    assert not result.error, (line, result.text)
    return result.text


@pytest.fixture(scope="module")
def lab():
    engine = Engine(seed=1)
    yield engine
    engine.close()


def test_lm_lists_afd_and_netio_and_no_wskprov(lab):
    modules = run(lab, "lm 1m").splitlines()
    assert "afd" in modules and "netio" in modules and "wskprov" not in modules
    assert modules.index("netio") < modules.index("tcpip") < modules.index("afd")
    assert run(lab, "sc query afd").splitlines()[2] == "        STATE              : 4  RUNNING"


def test_dq_afd_wsk_client_list_head_and_its_first_entry_read_real_memory(lab):
    head = lab.evaluate("afd!AfdWskClientListHead")
    first = lab.evaluate("poi(afd!AfdWskClientListHead)")
    row = run(lab, "dq afd!AfdWskClientListHead L2").splitlines()[0]
    assert "?" not in row and f"{first:016x}" in row.replace("`", "")
    assert lab.evaluate("poi(poi(afd!AfdWskClientListHead)+8)") == head  # the first entry's Blink
    dispatch = lab.evaluate("poi(poi(afd!AfdWskClientListHead)+5*8)")
    assert dispatch == lab.evaluate("echosrv!WskSampleClientDispatch") != 0


def test_bp_on_afd_routine_names_and_k_at_the_receive_completion_from_the_wire():
    # echo-ipv4.wds in short: the second receive pends, then completes from the NIC's DPC.
    engine = Engine(seed=1)
    try:
        run(engine, "bp /h winsrv afd!WskProAPIReceive")
        run(engine, "bp /h winsrv echosrv!WskSampleReceiveIrpCompletionRoutine")
        run(engine, '!echo -n 2 "hello from client"')
        assert "afd!WskProAPIReceive" in run(engine, "g")
        run(engine, "g")  # the first receive completes at once, on echosrv's thread
        assert "afd!WskProAPIReceive" in run(engine, "g")  # the second one: its IRP is r9
        run(engine, "r $t0 = @r9")
        run(engine, "gu")
        irp = run(engine, "!irp @$t0").splitlines()
        assert irp[0].startswith("Irp is active with 1 stacks 1 is current")
        location = irp.index(next(line for line in irp if line.startswith(">[")))
        assert irp[location].startswith(">[IRP_MJ_INTERNAL_DEVICE_CONTROL(f), N/A(0)]")
        assert irp[location + 2].split() == ["\\Driver\\AFD", "echosrv!WskSampleReceiveIrpCompletionRoutine"]
        run(engine, "bc 0")
        assert "echosrv!WskSampleReceiveIrpCompletionRoutine" in run(engine, "g")
        frames = [line.split()[-1].split("+")[0] for line in run(engine, "k").splitlines()[1:]]
        chain = ["echosrv!WskSampleReceiveIrpCompletionRoutine", "nt!IopfCompleteRequest", "nt!IofCompleteRequest",
                 "afd!WskProTLReceiveComplete", "tcpip!TcpCompleteClientReceiveRequest", "tcpip!TcpTcbReceive",
                 "tcpip!TcpMatchReceive"]
        assert frames[:len(chain)] == chain
        assert frames.index("tcpip!FlReceiveNetBufferListChain") < frames.index(
            "ndis!NdisMIndicateReceiveNetBufferLists") < frames.index("ndis!ndisMiniportDpc")
        assert "tcpip!IpFlcReceivePreValidatedPackets" in frames and "nt!IofCallDriver" not in frames
    finally:
        engine.close()


def test_bp_on_afd_wsk_pro_tl_receive_complete_stops_under_tcpip_from_the_wire():
    engine = Engine(seed=1)
    try:
        run(engine, "bp /h winsrv afd!WskProTLReceiveComplete")
        run(engine, '!echo -n 2 "hello"')
        stop = run(engine, "g")
        assert stop.startswith("Breakpoint 0 hit") and "afd!WskProTLReceiveComplete" in stop
        frames = [line.split()[-1].split("+")[0] for line in run(engine, "k").splitlines()[1:]]
        assert frames[:2] == ["afd!WskProTLReceiveComplete", "tcpip!TcpCompleteClientReceiveRequest"]
    finally:
        engine.close()
