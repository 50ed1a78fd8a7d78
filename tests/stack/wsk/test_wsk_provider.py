"""The WSK provider through its dispatch tables: IRP life cycles, events, registration."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any, Generator

import pytest
from wsk_harness import (TEST_CONNECTION_DISPATCH, TEST_DATAGRAM_DISPATCH, TEST_LISTEN_DISPATCH, Call, EventLog,
                         WskLab, buffer, CLIENT_DISPATCH)

from stack import wsk
from stack.kernel import (IRP_MJ_INTERNAL_DEVICE_CONTROL, STATUS_CONNECTION_REFUSED, STATUS_DATA_NOT_ACCEPTED,
                          STATUS_DEVICE_NOT_READY, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE,
                          STATUS_INVALID_PARAMETER, STATUS_PENDING, STATUS_SUCCESS, IoFreeIrp, IoLoadDriver)
from stack.kernel.events import IrpDispatched
from stack.kernel.layouts import LAYOUTS
from stack.kernel.mdl import mdl_chain_bytes
from stack.tcpip.addr import AF_INET, AF_INET6, SockAddr
from stack.usermode.programs import echo_server, udp_echo_server
from stack.usermode.socket import SOCK_STREAM, Socket, run_program

ANY4 = wsk.SOCKADDR_IN(wsk.AF_INET, 0, wsk.INADDR_ANY)


def sockaddr(text: str) -> Any:
    return wsk.from_sockaddr(SockAddr.parse(text))


def start_echo_server(lab: WskLab, address: str, connections: int = 1) -> Any:
    program = run_program(lab.world.host("client").kernel, echo_server, SockAddr.parse(address), connections)
    lab.run()
    return program


def connect(lab: WskLab, remote: str, dispatch: Any = None, context: Any = None) -> Any:
    sock = lab.socket(wsk.AF_INET, wsk.WSK_FLAG_CONNECTION_SOCKET, context, dispatch)
    assert lab.bind(sock, ANY4) == STATUS_SUCCESS
    call = lab.call(Call)
    assert lab.call(sock.Dispatch.WskConnect, sock, sockaddr(remote), 0, call.irp) == STATUS_PENDING
    lab.run()
    assert call.status == STATUS_SUCCESS
    return sock


def finish(lab: WskLab, sock: Any) -> None:
    """Close our end so the user-mode peer's program runs to its end too."""
    assert lab.close(sock) == STATUS_SUCCESS
    lab.run()


def user_client(lab: WskLab, server: str, script: list[tuple[str, Any]]) -> Any:
    """A user-mode client on `client` running ("send", bytes) / ("recv", n) / ("shutdown", abortive) steps."""
    def body() -> Generator[Any, Any, list[Any]]:
        address = SockAddr.parse(server)
        sock = yield from Socket.create(AF_INET if address.ip.version == 4 else AF_INET6, SOCK_STREAM)
        yield from sock.connect(address)
        out: list[Any] = []
        for step, arg in script:
            if step == "send":
                yield from sock.send(arg)
            elif step == "recv":
                out.append((yield from sock.recv(arg)))
            elif step == "shutdown":
                yield from sock.shutdown(abortive=arg)
        yield from sock.close()
        return out
    return run_program(lab.world.host("client").kernel, body)


def listen(lab: WskLab, port: int, log: EventLog | None = None, events: int = 0, v6only: bool | None = False) -> Any:
    sock = lab.socket(wsk.AF_INET6, wsk.WSK_FLAG_LISTEN_SOCKET, log, TEST_LISTEN_DISPATCH if log else None)
    if v6only is not None:
        assert lab.control(sock, wsk.IPPROTO_IPV6, wsk.IPV6_V6ONLY, int(v6only)) == STATUS_SUCCESS
    assert lab.bind(sock, wsk.SOCKADDR_IN6(wsk.AF_INET6, port, 0, wsk.IN6ADDR_ANY, 0)) == STATUS_SUCCESS
    if events:
        assert lab.enable_events(sock, events) == STATUS_SUCCESS
    return sock


# --- sockets and IRPs -------------------------------------------------------------------------------------

def test_wsk_socket_is_a_direct_call_that_completes_the_irp_with_the_socket_in_information():
    lab = WskLab()
    dispatched: list[IrpDispatched] = []
    lab.world.bus.subscribe(lambda e: dispatched.append(e) if isinstance(e, IrpDispatched) else None)

    def go() -> tuple[int, Call]:
        c = Call()
        status = lab.dispatch.WskSocket(lab.npi.Client, wsk.AF_INET6, wsk.SOCK_STREAM, wsk.IPPROTO_TCP,
                                        wsk.WSK_FLAG_LISTEN_SOCKET, None, None, None, None, None, c.irp)
        return status, c
    status, call = lab.call(go)
    sock = call.information
    assert status == STATUS_SUCCESS and call.status == STATUS_SUCCESS
    assert isinstance(sock, wsk.WskSocketObject) and isinstance(sock.Dispatch, wsk.WSK_PROVIDER_LISTEN_DISPATCH)
    assert dispatched == []  # afd took the IRP's stack location itself: nothing called IoCallDriver
    # the socket lives at a kernel address with the _WSK_SOCKET_CONTEXT layout
    raw = lab.k.mem.read(sock.address, LAYOUTS["_WSK_SOCKET_CONTEXT"].size)
    layout = LAYOUTS["_WSK_SOCKET_CONTEXT"]
    assert layout.unpack_field(layout.by_name["Dispatch"], raw) == sock.Dispatch.address != 0
    assert layout.unpack_field(layout.by_name["Category"], raw) == wsk.WSK_FLAG_LISTEN_SOCKET
    assert [(s.address, s.category, s.owner) for s in wsk.wsk_sockets(lab.k)] == [(sock.address, "listen",
                                                                                    "wsktest")]
    assert lab.k.pool.block_containing(sock.address).tag_str == "WskS"


def test_wsk_socket_rejects_a_protocol_that_does_not_fit_the_category():
    lab = WskLab()

    def go() -> tuple[int, Call]:
        c = Call()
        return lab.dispatch.WskSocket(lab.npi.Client, wsk.AF_INET, wsk.SOCK_STREAM, 0, wsk.WSK_FLAG_LISTEN_SOCKET,
                                      None, None, None, None, None, c.irp), c
    status, call = lab.call(go)
    assert status == call.status == 0xC000023E  # STATUS_PROTOCOL_UNREACHABLE (what KSOCKET works around)


def test_connect_pends_then_completes_and_reports_local_and_remote_addresses():
    lab = WskLab()
    start_echo_server(lab, "10.0.0.2:7")
    sock = lab.socket(wsk.AF_INET, wsk.WSK_FLAG_CONNECTION_SOCKET)
    assert lab.bind(sock, ANY4) == STATUS_SUCCESS
    call = lab.call(Call)
    assert lab.call(sock.Dispatch.WskConnect, sock, sockaddr("10.0.0.2:7"), 0, call.irp) == STATUS_PENDING
    assert call.done == []
    loc = call.irp.current_stack_location  # what !irp shows while it is pending in afd
    assert loc.major == IRP_MJ_INTERNAL_DEVICE_CONTROL and loc.device_object.driver_object.name == "\\Driver\\AFD"
    assert loc.arguments() == (0, 0, 0x15, sock.address)  # length, flags, WskConnect, socket
    lab.run()
    assert call.done == [(STATUS_SUCCESS, 0)] and call.pending_returned
    local, remote = wsk.SOCKADDR_IN(), wsk.SOCKADDR_STORAGE()
    assert lab.call(lambda: sock.Dispatch.WskGetLocalAddress(sock, local, call.reuse().irp)) == STATUS_SUCCESS
    assert lab.call(lambda: sock.Dispatch.WskGetRemoteAddress(sock, remote, call.reuse().irp)) == STATUS_SUCCESS
    assert local.sin_addr == IPv4Address("10.0.0.1").packed and local.sin_port >= 49152
    assert remote.ss_family == wsk.AF_INET and remote.sin_port == 7
    assert remote.sin_addr == IPv4Address("10.0.0.2").packed
    finish(lab, sock)


def test_send_completes_when_acknowledged_and_receive_gets_the_echo():
    lab = WskLab()
    start_echo_server(lab, "10.0.0.2:7")
    sock = connect(lab, "10.0.0.2:7")
    _, out_mdl = lab.call(buffer, 64, b"hello through wsk")
    _, in_mdl = lab.call(buffer, 64)
    send, recv = lab.call(Call), lab.call(Call)
    assert lab.call(sock.Dispatch.WskSend, sock, wsk.WSK_BUF(out_mdl, 0, 17), 0, send.irp) == STATUS_PENDING
    assert lab.call(sock.Dispatch.WskReceive, sock, wsk.WSK_BUF(in_mdl, 0, 64), 0, recv.irp) == STATUS_PENDING
    lab.run()
    assert send.done == [(STATUS_SUCCESS, 17)]
    assert recv.done == [(STATUS_SUCCESS, 17)]
    assert mdl_chain_bytes(in_mdl, 0, 17) == b"hello through wsk"
    assert sock.bytes_sent == 17 and sock.bytes_received == 17
    finish(lab, sock)


def test_connect_to_a_port_nobody_listens_on_completes_with_connection_refused():
    lab = WskLab()
    sock = lab.socket(wsk.AF_INET, wsk.WSK_FLAG_CONNECTION_SOCKET)
    assert lab.bind(sock, ANY4) == STATUS_SUCCESS
    call = lab.call(Call)
    assert lab.call(sock.Dispatch.WskConnect, sock, sockaddr("10.0.0.2:4444"), 0, call.irp) == STATUS_PENDING
    lab.run()
    assert call.done == [(STATUS_CONNECTION_REFUSED, 0)]
    assert sock.state == "Bound"


def test_connect_before_bind_fails_at_once_with_invalid_device_state():
    lab = WskLab()
    sock = lab.socket(wsk.AF_INET, wsk.WSK_FLAG_CONNECTION_SOCKET)
    call = lab.call(Call)
    status = lab.call(sock.Dispatch.WskConnect, sock, sockaddr("10.0.0.2:7"), 0, call.irp)
    assert status == STATUS_INVALID_DEVICE_STATE and call.done == [(STATUS_INVALID_DEVICE_STATE, 0)]


def test_socket_connect_creates_binds_and_connects_in_one_irp():
    lab = WskLab()
    start_echo_server(lab, "[fd00::2]:7")
    call = lab.call(Call)
    status = lab.call(lab.dispatch.WskSocketConnect, lab.npi.Client, wsk.SOCK_STREAM, wsk.IPPROTO_TCP,
                      sockaddr("[::]:0"), sockaddr("[fd00::2]:7"), 0, None, None, None, None, None, call.irp)
    assert status == STATUS_PENDING
    lab.run()
    assert call.status == STATUS_SUCCESS and call.information.state == "Connected"
    assert str(call.information.remote) == "[fd00::2]:7"
    finish(lab, call.information)


# --- listening ---------------------------------------------------------------------------------------------

def test_dual_stack_listener_accepts_ipv4_and_ipv6_peers_through_wsk_accept():
    lab = WskLab()
    listener = listen(lab, 5000)
    accepts = [lab.call(Call) for _ in range(2)]
    remotes = [wsk.SOCKADDR_IN6(), wsk.SOCKADDR_IN6()]
    for call, remote in zip(accepts, remotes):
        status = lab.call(listener.Dispatch.WskAccept, listener, 0, None, None, None, remote, call.irp)
        assert status == STATUS_PENDING
    user_client(lab, "10.0.0.1:5000", [])
    lab.run()
    user_client(lab, "[fd00::1]:5000", [])
    lab.run()
    assert [c.status for c in accepts] == [STATUS_SUCCESS, STATUS_SUCCESS]
    assert IPv6Address(remotes[0].sin6_addr).ipv4_mapped == IPv4Address("10.0.0.2")
    assert IPv6Address(remotes[1].sin6_addr) == IPv6Address("fd00::2")
    assert all(isinstance(c.information.Dispatch, wsk.WSK_PROVIDER_CONNECTION_DISPATCH) for c in accepts)


def test_ipv6_listener_keeps_the_windows_default_v6only_and_refuses_ipv4():
    lab = WskLab()
    listen(lab, 5001, v6only=None)
    program = user_client(lab, "10.0.0.1:5001", [])
    lab.run()
    assert program.error is not None and program.error.status == STATUS_CONNECTION_REFUSED


def test_accept_event_rejection_closes_the_new_socket():
    lab = WskLab()
    log = EventLog()
    listener = listen(lab, 5002, log, wsk.WSK_EVENT_ACCEPT)
    from wsk_harness import TestAcceptEvent  # noqa: F401  (the callback the dispatch names)
    refusing = wsk.WSK_CLIENT_LISTEN_DISPATCH(_refuse_accept, None, None)
    listener.ClientDispatch = refusing
    program = user_client(lab, "10.0.0.1:5002", [("recv", 10)])
    lab.run()
    assert program.error is not None  # reset by the provider
    assert [s.category for s in wsk.wsk_sockets(lab.k)] == ["listen"]


from stack.kernel import kroutine, STATUS_REQUEST_NOT_ACCEPTED  # noqa: E402


@kroutine("wsktest")
def _refuse_accept(*args: Any) -> int:
    return STATUS_REQUEST_NOT_ACCEPTED


# --- receive events --------------------------------------------------------------------------------------

def _event_connection(lab: WskLab, log: EventLog, port: int, script: list[tuple[str, Any]]) -> Any:
    listen(lab, port, log, wsk.WSK_EVENT_ACCEPT | wsk.WSK_EVENT_RECEIVE | wsk.WSK_EVENT_DISCONNECT)
    return user_client(lab, f"10.0.0.1:{port}", script)


def test_receive_event_indicates_mdls_over_the_received_bytes_and_success_takes_them():
    lab = WskLab()
    log = EventLog()
    program = _event_connection(lab, log, 5010, [("send", b"first"), ("send", b"second")])
    lab.run()
    program.raise_error()
    assert log.names()[0] == "accept"
    receives = [c for c in log.calls if c[0] == "receive"]
    assert b"".join(c[3] for c in receives) == b"firstsecond" == bytes(log.received)
    assert all(c[1] & wsk.WSK_FLAG_AT_DISPATCH_LEVEL for c in receives)
    assert log.calls[-1] == ("disconnect", 0)  # graceful
    provider = wsk.get_provider(lab.k)
    assert provider.zero_copy_indications >= 1  # MDLs built over the NIC's receive pages
    assert [b for b in lab.k.pool.allocated_blocks() if b.tag_str == "WskI"] == []


def test_receive_event_pending_keeps_the_data_until_wsk_release():
    lab = WskLab()
    log = EventLog(receive_status=STATUS_PENDING)
    program = _event_connection(lab, log, 5011, [("send", b"keep me"), ("recv", 4)])
    lab.run(2_000_000)
    assert len(log.kept) == 1
    kept = log.kept[0]
    # after the upcall the client still reads the indicated bytes (the provider copied them to its pool)
    assert mdl_chain_bytes(kept.Buffer.Mdl, kept.Buffer.Offset, kept.Buffer.Length) == b"keep me"
    sock = next(lab.k.object_at(s.address) for s in wsk.wsk_sockets(lab.k) if s.category == "connection")
    assert [b.tag_str for b in lab.k.pool.allocated_blocks() if b.tag_str == "WskI"] == ["WskI"]
    assert lab.call(sock.Dispatch.WskRelease, sock, kept) == STATUS_SUCCESS
    assert lab.call(sock.Dispatch.WskRelease, sock, kept) == STATUS_INVALID_PARAMETER
    assert [b for b in lab.k.pool.allocated_blocks() if b.tag_str == "WskI"] == []
    assert program.done is False  # still waiting for 4 bytes


def test_data_not_accepted_pauses_indications_until_a_wsk_receive_takes_the_data():
    lab = WskLab()
    log = EventLog(receive_status=STATUS_DATA_NOT_ACCEPTED)
    program = _event_connection(lab, log, 5012, [("send", b"one"), ("send", b"two"), ("recv", 1)])
    lab.run(1_000_000_000)  # both sends acknowledged (delayed ACKs included)
    assert [c[3] for c in log.calls if c[0] == "receive"] == [b"one"]  # "two" was not indicated
    sock = next(lab.k.object_at(s.address) for s in wsk.wsk_sockets(lab.k) if s.category == "connection")
    assert sock.receive_paused
    _, mdl = lab.call(buffer, 64)
    call = lab.call(Call)
    lab.call(sock.Dispatch.WskReceive, sock, wsk.WSK_BUF(mdl, 0, 64), 0, call.irp)
    lab.run(5_000_000)
    assert call.status == STATUS_SUCCESS and mdl_chain_bytes(mdl, 0, call.information) == b"onetwo"
    assert not sock.receive_paused  # indications resume after the receive
    log.receive_status = STATUS_SUCCESS
    _, reply = lab.call(buffer, 8, b"!")
    lab.call(sock.Dispatch.WskSend, sock, wsk.WSK_BUF(reply, 0, 1), 0, call.reuse().irp)
    lab.run()
    program.raise_error()
    assert program.result == [b"!"]


def test_partial_acceptance_pauses_and_the_rest_goes_to_the_next_receive():
    lab = WskLab()
    log = EventLog(accept_bytes=2)
    _event_connection(lab, log, 5013, [("send", b"abcdef"), ("recv", 1)])
    lab.run(5_000_000)
    assert bytes(log.received) == b"ab"
    sock = next(lab.k.object_at(s.address) for s in wsk.wsk_sockets(lab.k) if s.category == "connection")
    _, mdl = lab.call(buffer, 16)
    call = lab.call(Call)
    lab.call(sock.Dispatch.WskReceive, sock, wsk.WSK_BUF(mdl, 0, 16), 0, call.irp)
    lab.run(5_000_000)
    assert mdl_chain_bytes(mdl, 0, call.information) == b"cdef"


def test_a_posted_receive_takes_priority_over_the_receive_event():
    lab = WskLab()
    start_echo_server(lab, "10.0.0.2:7")
    log = EventLog()
    sock = connect(lab, "10.0.0.2:7", TEST_CONNECTION_DISPATCH, log)
    assert lab.enable_events(sock, wsk.WSK_EVENT_RECEIVE) == STATUS_SUCCESS
    _, out_mdl = lab.call(buffer, 16, b"ping")
    _, in_mdl = lab.call(buffer, 16)
    recv, send = lab.call(Call), lab.call(Call)
    lab.call(sock.Dispatch.WskReceive, sock, wsk.WSK_BUF(in_mdl, 0, 16), 0, recv.irp)
    lab.call(sock.Dispatch.WskSend, sock, wsk.WSK_BUF(out_mdl, 0, 4), 0, send.irp)
    lab.run()
    assert recv.done == [(STATUS_SUCCESS, 4)] and log.calls == []
    finish(lab, sock)


def test_abortive_disconnect_is_indicated_with_wsk_flag_abortive():
    lab = WskLab()
    log = EventLog()
    _event_connection(lab, log, 5014, [("send", b"x"), ("shutdown", True)])
    lab.run()
    assert log.calls[-1] == ("disconnect", wsk.WSK_FLAG_ABORTIVE)


def test_event_callbacks_can_be_disabled_one_at_a_time():
    lab = WskLab()
    start_echo_server(lab, "10.0.0.2:7")
    log = EventLog()
    sock = connect(lab, "10.0.0.2:7", TEST_CONNECTION_DISPATCH, log)
    assert lab.enable_events(sock, wsk.WSK_EVENT_RECEIVE | wsk.WSK_EVENT_SEND_BACKLOG) == STATUS_SUCCESS
    assert log.calls == [("backlog", 0x10000)]
    assert lab.enable_events(sock, wsk.WSK_EVENT_DISABLE | wsk.WSK_EVENT_RECEIVE) == STATUS_SUCCESS
    assert sock.effective_event_mask == wsk.WSK_EVENT_SEND_BACKLOG
    assert lab.enable_events(sock, wsk.WSK_EVENT_ACCEPT) == STATUS_INVALID_PARAMETER  # not a connection event
    finish(lab, sock)


# --- static callbacks, capture, deregistration --------------------------------------------------------------

def _second_client(lab: WskLab) -> tuple[wsk.WSK_REGISTRATION, wsk.WSK_PROVIDER_NPI]:
    reg, npi = wsk.WSK_REGISTRATION(), wsk.WSK_PROVIDER_NPI()

    def go() -> None:
        assert wsk.WskRegister(wsk.WSK_CLIENT_NPI(None, CLIENT_DISPATCH), reg) == STATUS_SUCCESS
        assert wsk.WskCaptureProviderNPI(reg, wsk.WSK_NO_WAIT, npi) == STATUS_SUCCESS
    lab.call(go)
    return reg, npi


def test_static_event_callbacks_need_a_null_irp_and_must_come_before_any_socket():
    lab = WskLab()
    reg, npi = _second_client(lab)
    control = wsk.WSK_EVENT_CALLBACK_CONTROL(wsk.NPI_WSK_INTERFACE_ID, wsk.WSK_EVENT_ACCEPT | wsk.WSK_EVENT_RECEIVE)
    irp_call = lab.call(Call)
    assert lab.call(npi.Dispatch.WskControlClient, npi.Client, wsk.WSK_SET_STATIC_EVENT_CALLBACKS, 16, control, 0,
                    None, None, irp_call.irp) == STATUS_INVALID_PARAMETER
    assert lab.call(npi.Dispatch.WskControlClient, npi.Client, wsk.WSK_SET_STATIC_EVENT_CALLBACKS, 16, control, 0,
                    None, None, None) == STATUS_SUCCESS
    log = EventLog()

    def make_listener() -> Any:
        c = Call()
        npi.Dispatch.WskSocket(npi.Client, wsk.AF_INET, wsk.SOCK_STREAM, wsk.IPPROTO_TCP, wsk.WSK_FLAG_LISTEN_SOCKET,
                               log, TEST_LISTEN_DISPATCH, None, None, None, c.irp)
        return c.information
    listener = lab.call(make_listener)
    assert listener.effective_event_mask & wsk.WSK_EVENT_ACCEPT  # enabled without SO_WSK_EVENT_CALLBACK
    assert lab.enable_events(listener, wsk.WSK_EVENT_DISABLE | wsk.WSK_EVENT_ACCEPT) == STATUS_INVALID_DEVICE_REQUEST
    assert lab.call(npi.Dispatch.WskControlClient, npi.Client, wsk.WSK_SET_STATIC_EVENT_CALLBACKS, 16, control, 0,
                    None, None, None) == STATUS_INVALID_DEVICE_STATE  # a socket exists now
    assert lab.bind(listener, wsk.SOCKADDR_IN(wsk.AF_INET, 5020, wsk.INADDR_ANY)) == STATUS_SUCCESS
    user_client(lab, "10.0.0.1:5020", [("send", b"static")])
    lab.run()
    assert log.names()[:2] == ["accept", "receive"] and bytes(log.received) == b"static"


def test_capture_waits_for_the_provider_and_no_wait_says_device_not_ready():
    lab = WskLab(load_provider=False)
    reg, npi = wsk.WSK_REGISTRATION(), wsk.WSK_PROVIDER_NPI()
    lab.call(wsk.WskRegister, wsk.WSK_CLIENT_NPI(None, CLIENT_DISPATCH), reg)
    assert lab.call(wsk.WskCaptureProviderNPI, reg, wsk.WSK_NO_WAIT, npi) == STATUS_DEVICE_NOT_READY

    def waiter() -> Generator[Any, Any, int]:
        return (yield from wsk.WskCaptureProviderNPI(reg, wsk.WSK_INFINITE_WAIT, npi))
    box = lab.thread(waiter)
    lab.run()
    assert box == []  # still waiting
    lab.load(wsk.DRIVER_IMAGE)
    assert box == [STATUS_SUCCESS] and npi.Dispatch is not None


def test_capture_with_a_timeout_gives_device_not_ready_when_no_provider_comes():
    lab = WskLab(load_provider=False)
    reg, npi = wsk.WSK_REGISTRATION(), wsk.WSK_PROVIDER_NPI()
    lab.call(wsk.WskRegister, wsk.WSK_CLIENT_NPI(None, CLIENT_DISPATCH), reg)
    box = lab.thread(lambda: wsk.WskCaptureProviderNPI(reg, 50, npi).__iter__())
    lab.run()
    assert box == [STATUS_DEVICE_NOT_READY]


def test_capture_rejects_an_unsupported_wsk_version_with_nointerface():
    lab = WskLab()
    reg, npi = wsk.WSK_REGISTRATION(), wsk.WSK_PROVIDER_NPI()
    lab.call(wsk.WskRegister, wsk.WSK_CLIENT_NPI(None, wsk.WSK_CLIENT_DISPATCH(wsk.MAKE_WSK_VERSION(2, 0))), reg)
    assert lab.call(wsk.WskCaptureProviderNPI, reg, wsk.WSK_NO_WAIT, npi) == 0xC00002B9


def test_deregister_waits_until_the_clients_sockets_are_closed_and_captures_released():
    lab = WskLab()
    sock = lab.socket(wsk.AF_INET, wsk.WSK_FLAG_CONNECTION_SOCKET)

    def deregister() -> Generator[Any, Any, str]:
        yield from wsk.WskDeregister(lab.registration)
        return "deregistered"
    box = lab.thread(deregister)
    lab.run()
    assert box == []
    assert lab.call(wsk.WskCaptureProviderNPI, lab.registration, wsk.WSK_NO_WAIT,
                    wsk.WSK_PROVIDER_NPI()) == STATUS_DEVICE_NOT_READY  # no new captures while deregistering
    assert lab.close(sock) == STATUS_SUCCESS
    lab.run()
    assert box == []  # the capture taken at registration is still held
    lab.call(wsk.WskReleaseProviderNPI, lab.registration)
    lab.run()
    assert box == ["deregistered"]


# --- datagrams ------------------------------------------------------------------------------------------

def test_datagram_send_to_and_receive_from_round_trip_with_the_remote_address():
    lab = WskLab()
    run_program(lab.world.host("client").kernel, udp_echo_server, SockAddr.parse("10.0.0.2:7"), 1)
    lab.run()
    sock = lab.socket(wsk.AF_INET, wsk.WSK_FLAG_DATAGRAM_SOCKET)
    assert lab.bind(sock, ANY4) == STATUS_SUCCESS
    _, out_mdl = lab.call(buffer, 32, b"datagram!")
    _, in_mdl = lab.call(buffer, 32)
    send, recv = lab.call(Call), lab.call(Call)
    remote = wsk.SOCKADDR_IN()
    assert lab.call(sock.Dispatch.WskReceiveFrom, sock, wsk.WSK_BUF(in_mdl, 0, 32), 0, remote, None, None, None,
                    recv.irp) == STATUS_PENDING
    lab.call(sock.Dispatch.WskSendTo, sock, wsk.WSK_BUF(out_mdl, 0, 9), 0, sockaddr("10.0.0.2:7"), 0, None,
             send.irp)
    lab.run()
    assert send.done == [(STATUS_SUCCESS, 9)] and recv.done == [(STATUS_SUCCESS, 9)]
    assert mdl_chain_bytes(in_mdl, 0, 9) == b"datagram!"
    assert (remote.sin_addr, remote.sin_port) == (IPv4Address("10.0.0.2").packed, 7)


def test_receive_from_event_gets_the_datagram_and_its_sender():
    lab = WskLab()
    log = EventLog()
    sock = lab.socket(wsk.AF_INET, wsk.WSK_FLAG_DATAGRAM_SOCKET, log, TEST_DATAGRAM_DISPATCH)
    assert lab.bind(sock, wsk.SOCKADDR_IN(wsk.AF_INET, 6000, wsk.INADDR_ANY)) == STATUS_SUCCESS
    assert lab.enable_events(sock, wsk.WSK_EVENT_RECEIVE_FROM) == STATUS_SUCCESS

    def sender() -> Generator[Any, Any, None]:
        s = yield from Socket.create(AF_INET, 2)
        yield from s.sendto(b"to the event", SockAddr.parse("10.0.0.1:6000"))
        yield from s.close()
    run_program(lab.world.host("client").kernel, sender)
    lab.run()
    (name, remote, data), = log.calls
    assert name == "receive_from" and data == b"to the event"
    assert remote.sin_addr == IPv4Address("10.0.0.2").packed


# --- bad input -------------------------------------------------------------------------------------------

def test_a_wsk_buf_outside_its_mdl_fails_with_invalid_parameter_and_completes_the_irp():
    lab = WskLab()
    start_echo_server(lab, "10.0.0.2:7")
    sock = connect(lab, "10.0.0.2:7")
    _, mdl = lab.call(buffer, 16)
    call = lab.call(Call)
    status = lab.call(sock.Dispatch.WskSend, sock, wsk.WSK_BUF(mdl, 8, 16), 0, call.irp)
    assert status == STATUS_INVALID_PARAMETER and call.done == [(STATUS_INVALID_PARAMETER, 0)]
    finish(lab, sock)


@pytest.mark.parametrize("bad", [None, "10.0.0.2:7", wsk.SOCKADDR_IN(99, 7, b"\x00" * 4)])
def test_bind_with_an_unusable_address_is_invalid_parameter(bad):
    lab = WskLab()
    sock = lab.socket(wsk.AF_INET, wsk.WSK_FLAG_CONNECTION_SOCKET)
    assert lab.bind(sock, bad) == STATUS_INVALID_PARAMETER


def test_closing_a_socket_cancels_its_outstanding_receive():
    lab = WskLab()
    start_echo_server(lab, "10.0.0.2:7")
    sock = connect(lab, "10.0.0.2:7")
    _, mdl = lab.call(buffer, 16)
    recv = lab.call(Call)
    assert lab.call(sock.Dispatch.WskReceive, sock, wsk.WSK_BUF(mdl, 0, 16), 0, recv.irp) == STATUS_PENDING
    assert lab.close(sock) == STATUS_SUCCESS
    assert recv.status == 0xC0000120  # STATUS_CANCELLED
    assert wsk.wsk_sockets(lab.k) == []


_ = (IoFreeIrp, IoLoadDriver)
