"""afd.sys as the WSK provider: netio registers, afd keeps the client list, WSK calls are direct calls."""

from __future__ import annotations

from typing import Any

import pytest
from wsk_harness import Call, EventLog, WskLab

from stack import wsk
from stack.drivers import echosrv
from stack.kernel import IoLoadDriver, IoSetNextIrpStackLocation, IoUnloadDriver
from stack.kernel.events import RoutineEntered
from stack.kernel.kernel import Kernel
from stack.tcpip.addr import SockAddr
from stack.usermode.programs import echo_client
from stack.usermode.socket import run_program
from stack.world import WorldError, default_world

from test_wsk_provider import _event_connection

CLIENT_DISPATCH_OFFSET = 5 * 8  # `dps @$t1+5*@$ptrsize L1` in CodeMachine's recipe


def walk_afd_wsk_clients(k: Kernel) -> list[str]:
    """What `.for (r $t0 = poi(afd!AfdWskClientListHead); ...) { dps @$t1+5*@$ptrsize L1 }` prints:
    the symbol of each entry's dispatch pointer, read from kernel memory only."""
    head = k.symbol_address("afd!AfdWskClientListHead")
    assert head != 0 and k.mem.is_mapped(head)
    names: list[str] = []
    entry = k.mem.read_u64(head)
    previous = head
    while entry != head:
        assert k.mem.read_u64(entry + 8) == previous  # Blink: a well-formed LIST_ENTRY chain
        names.append(k.symbol_for_address(k.mem.read_u64(entry + CLIENT_DISPATCH_OFFSET)) or "?")
        previous, entry = entry, k.mem.read_u64(entry)
        assert len(names) < 100
    assert k.mem.read_u64(head + 8) == previous
    return names


def test_afd_wsk_client_list_head_walk_finds_echosrv_and_khttpd_in_kernel_memory():
    world = default_world(1)
    k = world.host("winsrv").kernel
    assert k.symbol_for_address(k.symbol_address("afd!AfdWskClientListHead")) == "afd!AfdWskClientListHead"
    assert walk_afd_wsk_clients(k) == ["echosrv!WskSampleClientDispatch", "khttpd!KhttpdWskClientDispatch"]
    assert walk_afd_wsk_clients(world.host("client").kernel) == []  # nobody registered there
    IoUnloadDriver(k, k.drivers["echosrv"])  # WskDeregister takes echosrv off afd's list
    world.run_until_idle()
    world.check()
    assert walk_afd_wsk_clients(k) == ["khttpd!KhttpdWskClientDispatch"]


def test_a_client_registered_before_afd_is_attached_when_afd_loads():
    lab = WskLab(load_provider=False)
    reg = wsk.WSK_REGISTRATION()
    lab.call(wsk.WskRegister, wsk.WSK_CLIENT_NPI(None, wsk.WSK_CLIENT_DISPATCH(wsk.MAKE_WSK_VERSION(1, 0))), reg)
    assert lab.k.module("afd") is None  # afd is stopped: nothing to walk yet
    lab.load(wsk.DRIVER_IMAGE)
    assert walk_afd_wsk_clients(lab.k) == ["wsktest!WskClientDispatch"]


def test_registration_is_netio_and_the_provider_dispatch_is_afd():
    lab = WskLab()
    assert wsk.WskRegister.symbol == "netio!WskRegister"
    assert wsk.WskCaptureProviderNPI.symbol == "netio!WskCaptureProviderNPI"
    assert lab.dispatch.WskSocket.symbol == "afd!WskProAPISocket"
    sock = lab.socket(wsk.AF_INET, wsk.WSK_FLAG_CONNECTION_SOCKET)
    assert sock.Dispatch.WskReceive.symbol == "afd!WskProAPIReceive"
    assert sock.Dispatch.WskSend.symbol == "afd!WskProAPISend"
    assert lab.k.symbol_for_address(sock.Dispatch.address) == "afd!WskProConnectionDispatch"
    assert lab.close(sock) == 0


def test_an_irp_with_no_stack_location_left_for_afd_bugchecks_0x35():
    lab = WskLab()

    def go() -> Any:
        c = Call()
        IoSetNextIrpStackLocation(c.irp)  # a driver above used the IRP's only location
        return lab.dispatch.WskSocket(lab.npi.Client, wsk.AF_INET, wsk.SOCK_STREAM, wsk.IPPROTO_TCP,
                                      wsk.WSK_FLAG_LISTEN_SOCKET, None, None, None, None, None, c.irp)
    with pytest.raises(WorldError, match="bug check 0x35"):
        lab.call(go)
    info = lab.world.scheduler.halted
    assert info.code == 0x35 and info.frames[:2] == ["afd!WskProAPISocket", "wsktest!WskTestCall"]


def test_wsk_calls_during_an_echo_are_direct_calls_with_no_iocalldriver_on_their_stack():
    world = default_world(1, services=False)
    k = world.host("winsrv").kernel
    IoLoadDriver(k, echosrv.DRIVER_IMAGE)
    world.run_until_idle()
    seen: dict[str, int] = {}
    stacks_with_iocalldriver: list[list[str]] = []

    def on_event(event: Any) -> None:
        if isinstance(event, RoutineEntered) and event.host == "winsrv" and event.symbol.startswith("afd!WskPro"):
            seen[event.symbol] = seen.get(event.symbol, 0) + 1
            frames = [f.symbol for f in k.frames]
            if "nt!IofCallDriver" in frames:
                stacks_with_iocalldriver.append(frames)

    world.bus.subscribe(on_event)
    program = run_program(world.host("client").kernel, echo_client, SockAddr.parse("10.0.0.1:40007"),
                          b"direct calls " * 200)
    world.run_until_idle()
    world.check()
    program.raise_error()
    assert program.done
    assert stacks_with_iocalldriver == []
    for routine in ("afd!WskProAPIReceive", "afd!WskProAPISend", "afd!WskProTLReceiveComplete",
                    "afd!WskProTLSendComplete", "afd!WskProTLEventAccept", "afd!WskProAPICloseSocket",
                    "afd!WskProTLCloseEndpointComplete"):
        assert seen.get(routine, 0) >= 1, (routine, seen)


def test_an_abort_indicates_receive_event_with_a_null_data_indication_before_the_disconnect():
    lab = WskLab()
    log = EventLog()
    _event_connection(lab, log, 5030, [("send", b"x"), ("shutdown", True)])
    lab.run()
    assert log.calls[-2:] == [("receive-null", wsk.WSK_FLAG_AT_DISPATCH_LEVEL, 0),
                              ("disconnect", wsk.WSK_FLAG_ABORTIVE)]


def test_a_graceful_close_indicates_no_null_receive():
    lab = WskLab()
    log = EventLog()
    _event_connection(lab, log, 5031, [("send", b"x")])
    lab.run()
    assert "receive-null" not in log.names() and log.calls[-1] == ("disconnect", 0)
