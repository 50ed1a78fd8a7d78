"""WSK conditional accept: SO_CONDITIONAL_ACCEPT, WskInspectEvent (accept / reject / pend),
WskInspectComplete for a pended connection, WskAbortEvent when the peer gives up while pended.
tcpip asks before it answers the SYN: no SYN-ACK until the decision, a RST on reject (syn_hold.py)."""

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


def test_a_peer_that_gives_up_while_pended_gets_wsk_abort_event():
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


# --- on the wire: the SYN waits for the decision ---------------------------------------------------

def _segments_from(capture, port: int) -> list[int]:
    """Flags of every distinct segment the listener's port sent (the capture sees each on two links)."""
    from stack.tcpip.wire.frame import parse_frame
    from stack.tcpip.wire.tcp import TcpHeader
    seen: dict[tuple[int, int, int], None] = {}
    for record in capture.records:
        decoded = parse_frame(record.frame, verify_checksum=False)
        tcp = decoded.transport
        if isinstance(tcp, TcpHeader) and tcp.src_port == port:
            seen[(tcp.seq, tcp.ack, tcp.flags)] = None
    return [flags for _, _, flags in seen]


def test_no_syn_ack_leaves_before_wsk_inspect_complete_and_one_leaves_after_accept():
    from stack.tcpip.wire.tcp import ACK, RST, SYN
    lab = WskLab()
    log = EventLog()
    listener = _conditional_listener(lab, 5110, log)
    DECISIONS[:] = [WskInspectPend]
    capture = lab.world.capture()
    program = user_client(lab, "10.0.0.1:5110", [("send", b"hello")])
    lab.run(5_000_000_000)  # 5 s: the client retransmits its SYN, nothing answers it
    assert log.names() == ["inspect"]
    assert _segments_from(capture, 5110) == []  # no SYN-ACK, no RST: the SYN is held
    inspect_id = log.calls[0][1]

    def complete() -> Any:
        c = Call()
        listener.Dispatch.WskInspectComplete(listener, inspect_id, WskInspectAccept, c.irp)
        return c.status

    assert lab.call(complete) == STATUS_SUCCESS
    lab.run()
    capture.stop()
    flags = _segments_from(capture, 5110)
    assert flags[0] == SYN | ACK and not any(f & RST for f in flags)
    assert log.names() == ["inspect", "accept"] and program.error is None


def test_a_reject_answers_the_syn_with_a_reset_and_no_syn_ack():
    from stack.tcpip.wire.tcp import ACK, RST, SYN
    lab = WskLab()
    log = EventLog()
    _conditional_listener(lab, 5111, log)
    DECISIONS[:] = [WskInspectReject]
    capture = lab.world.capture()
    program = user_client(lab, "10.0.0.1:5111", [])
    lab.run()
    capture.stop()
    assert _segments_from(capture, 5111) == [RST | ACK]
    assert program.error is not None and "REFUSED" in str(program.error).upper()


def test_a_pended_then_rejected_syn_gets_a_reset_only_at_the_decision():
    from stack.tcpip.wire.tcp import ACK, RST
    lab = WskLab()
    log = EventLog()
    listener = _conditional_listener(lab, 5112, log)
    DECISIONS[:] = [WskInspectPend]
    capture = lab.world.capture()
    program = user_client(lab, "10.0.0.1:5112", [])
    lab.run(2_000_000_000)
    assert _segments_from(capture, 5112) == [] and not program.done
    inspect_id = log.calls[0][1]

    def reject() -> Any:
        c = Call()
        listener.Dispatch.WskInspectComplete(listener, inspect_id, WskInspectReject, c.irp)
        return c.status

    assert lab.call(reject) == STATUS_SUCCESS
    lab.run()
    capture.stop()
    assert _segments_from(capture, 5112) == [RST | ACK]
    assert program.error is not None
    assert [s.category for s in wsk.wsk_sockets(lab.k)] == ["listen"]
