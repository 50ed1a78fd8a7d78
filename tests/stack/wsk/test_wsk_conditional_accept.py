"""WSK conditional accept: SO_CONDITIONAL_ACCEPT, WskInspectEvent (accept / reject / pend),
WskInspectComplete for a pended connection, WskAbortEvent when the peer gives up while pended."""

from __future__ import annotations

from typing import Any

from stack import wsk
from stack.kernel import STATUS_SUCCESS, kroutine
from stack.wsk.constants import SO_CONDITIONAL_ACCEPT, WskInspectAccept, WskInspectPend, WskInspectReject

from test_wsk_provider import user_client
from wsk_harness import TEST_LISTEN_DISPATCH, Call, EventLog, WskLab

DECISIONS: list[int] = []


@kroutine("wsktest")
def TestInspectEvent(SocketContext: EventLog, LocalAddress: Any, RemoteAddress: Any, InspectID: Any) -> int:
    SocketContext.calls.append(("inspect", InspectID))
    return DECISIONS.pop(0)


@kroutine("wsktest")
def TestAbortEvent(SocketContext: EventLog, InspectID: Any) -> int:
    SocketContext.calls.append(("abort", InspectID))
    return STATUS_SUCCESS


DISPATCH = wsk.WSK_CLIENT_LISTEN_DISPATCH(TEST_LISTEN_DISPATCH.WskAcceptEvent, TestInspectEvent, TestAbortEvent)


def _conditional_listener(lab: WskLab, port: int, log: EventLog) -> Any:
    sock = lab.socket(wsk.AF_INET6, wsk.WSK_FLAG_LISTEN_SOCKET, log, DISPATCH)
    assert lab.control(sock, wsk.IPPROTO_IPV6, wsk.IPV6_V6ONLY, 0) == STATUS_SUCCESS
    assert lab.control(sock, wsk.SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1) == STATUS_SUCCESS
    assert lab.bind(sock, wsk.SOCKADDR_IN6(wsk.AF_INET6, port, 0, wsk.IN6ADDR_ANY, 0)) == STATUS_SUCCESS
    assert lab.enable_events(sock, wsk.WSK_EVENT_ACCEPT) == STATUS_SUCCESS
    return sock


def test_a_pended_connection_reaches_the_accept_event_only_after_wsk_inspect_complete():
    lab = WskLab()
    log = EventLog()
    listener = _conditional_listener(lab, 5100, log)
    DECISIONS[:] = [WskInspectPend]
    program = user_client(lab, "10.0.0.1:5100", [("send", b"hello")])
    lab.run(50_000_000)
    assert log.names() == ["inspect"]
    inspect_id = log.calls[0][1]

    def complete() -> Any:
        c = Call()
        listener.Dispatch.WskInspectComplete(listener, inspect_id, WskInspectAccept, c.irp)
        return c.status

    assert lab.call(complete) == STATUS_SUCCESS
    lab.run()
    assert log.names() == ["inspect", "accept"]
    assert program.error is None


def test_an_inspect_reject_resets_the_peer_and_no_socket_is_left():
    lab = WskLab()
    log = EventLog()
    _conditional_listener(lab, 5101, log)
    DECISIONS[:] = [WskInspectReject]
    program = user_client(lab, "10.0.0.1:5101", [("recv", 10)])
    lab.run()
    assert log.names() == ["inspect"] and program.error is not None
    assert [s.category for s in wsk.wsk_sockets(lab.k)] == ["listen"]


def test_a_peer_that_aborts_while_pended_gets_wsk_abort_event():
    lab = WskLab()
    log = EventLog()
    _conditional_listener(lab, 5102, log)
    DECISIONS[:] = [WskInspectPend]
    user_client(lab, "10.0.0.1:5102", [("shutdown", True)])
    lab.run()
    assert log.names() == ["inspect", "abort"]
    assert log.calls[0][1] == log.calls[1][1]
    assert [s.category for s in wsk.wsk_sockets(lab.k)] == ["listen"]


def test_conditional_accept_is_refused_on_a_bound_socket():
    lab = WskLab()
    log = EventLog()
    sock = _conditional_listener(lab, 5103, log)
    assert lab.control(sock, wsk.SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 0) != STATUS_SUCCESS
