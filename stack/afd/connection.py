"""afd's connection-socket dispatch (WSK_PROVIDER_CONNECTION_DISPATCH): WskConnect, WskSend,
WskReceive, WskDisconnect, WskRelease, WskGetRemoteAddress.

Each takes one stack location of the client's IRP (irp.py) and hands the request to tcpip;
tcpip completes it through afd!WskProTLReceiveComplete / WskProTLSendComplete, which complete
the IRP with IoCompleteRequest.  Received data is also offered through afd!WskProTLEventReceive
to the client's WskReceiveEvent; an abort indicates WskReceiveEvent with DataIndication == NULL
(the socket can no longer receive), then WskDisconnectEvent with WSK_FLAG_ABORTIVE.
"""

from __future__ import annotations

from typing import Any

from stack.kernel import (NT_SUCCESS, STATUS_BUFFER_TOO_SMALL, STATUS_DATA_NOT_ACCEPTED, STATUS_INVALID_DEVICE_STATE,
                          STATUS_INVALID_PARAMETER, STATUS_PENDING, STATUS_SUCCESS, KeInsertQueueDpc, kroutine)
from stack.tcpip.addr import SockAddr
from stack.wsk.constants import (WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_SEND_BACKLOG, WSK_FLAG_ABORTIVE,
                                 WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_ENTIRE_MESSAGE, WSK_FLAG_NODELAY,
                                 WSK_FLAG_STREAM_SOCKET, WSK_FLAG_WAITALL)
from stack.wsk.structs import WSK_BUF, Ref, WskAddressError, fill_sockaddr, to_sockaddr

from .indication import build_pieces, free_pieces, retain_pieces
from .irp import IrpCompletion, afd_take_irp, complete_irp
from .socket import (IDEAL_SEND_BACKLOG, WskSocketObject, complete_now, event_callback, event_flags, is_connected,
                     finish_pending_close, publish_call, publish_event, validate_buf)


def update_handlers(sock: WskSocketObject) -> None:
    """Install the transport upcalls a connection socket needs right now."""
    if sock.category not in (WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_STREAM_SOCKET) or sock.remote is None:
        return
    conn = sock.endpoint
    if conn is None or sock.closing:
        return
    wants_receive = event_callback(sock, WSK_EVENT_RECEIVE) is not None and not sock.receive_paused
    conn.set_handlers(receive=WskProTLEventReceive if wants_receive else None,
                      disconnect=WskProTLEventDisconnect)


@kroutine("afd")
def WskProAPIConnect(Socket: WskSocketObject, RemoteAddress: Any, Flags: int, Irp: Any) -> int:
    publish_call(Socket, "WskConnect", Irp)
    try:
        remote = to_sockaddr(RemoteAddress)
    except WskAddressError:
        return complete_now(Socket, Irp, "WskConnect", STATUS_INVALID_PARAMETER)
    if Socket.category == WSK_FLAG_STREAM_SOCKET and Socket.endpoint is None and Socket.local is not None:
        status, ep = Socket.provider.transport.tcp_socket(Socket.local, Socket.family)
        if ep is None:
            return complete_now(Socket, Irp, "WskConnect", status)
        ep.context = Socket
        Socket.endpoint = ep
    conn = Socket.endpoint
    if conn is None or Socket.remote is not None or Socket.state != "Bound":
        return complete_now(Socket, Irp, "WskConnect", STATUS_INVALID_DEVICE_STATE)  # bind first
    return afd_take_irp(Socket.provider.device, Irp, "WskConnect", Socket.address, 0, Flags,
                        lambda irp: _start_connect(Socket, conn, remote, irp))


def _start_connect(sock: WskSocketObject, conn: Any, remote: SockAddr, irp: Any) -> int:
    completion = IrpCompletion(irp)
    sock.set_state("Connecting")

    def connected(endpoint: Any, status: int) -> None:
        WskProTLConnectComplete(sock, completion, endpoint, status)

    result = conn.connect(remote, connected)
    if result != STATUS_PENDING and completion.early is None:
        sock.set_state("Bound")
    return completion.started(result)


@kroutine("afd")
def WskProTLConnectComplete(sock: WskSocketObject, completion: IrpCompletion, endpoint: Any, status: int) -> None:
    """tcpip finished the handshake (or gave up): complete the WskConnect IRP.
    (The emulator's name, in the style of afd's WskProTLReceiveComplete.)"""
    if status == STATUS_SUCCESS:
        sock.remote = endpoint.remote
        sock.local = endpoint.local
        sock.set_state("Connected")
        update_handlers(sock)
    else:
        sock.set_state("Bound" if not sock.closing else sock.state)
    completion.done(status, 0)


@kroutine("afd")
def WskProAPIGetRemoteAddress(Socket: WskSocketObject, RemoteAddress: Any, Irp: Any) -> int:
    publish_call(Socket, "WskGetRemoteAddress", Irp)
    if Socket.remote is None:
        return complete_now(Socket, Irp, "WskGetRemoteAddress", STATUS_INVALID_DEVICE_STATE)
    try:
        fill_sockaddr(RemoteAddress, Socket.remote, Socket.family)
    except WskAddressError:
        return complete_now(Socket, Irp, "WskGetRemoteAddress", STATUS_BUFFER_TOO_SMALL)
    return complete_now(Socket, Irp, "WskGetRemoteAddress", STATUS_SUCCESS)


@kroutine("afd")
def WskProAPISend(Socket: WskSocketObject, Buffer: WSK_BUF, Flags: int, Irp: Any) -> int:
    length = Buffer.Length if Buffer is not None else 0
    publish_call(Socket, "WskSend", Irp, length)
    bad = validate_buf(Buffer, allow_empty=True)
    if bad is not None:
        return complete_now(Socket, Irp, "WskSend", bad)
    if not is_connected(Socket):
        return complete_now(Socket, Irp, "WskSend", STATUS_INVALID_DEVICE_STATE)
    return afd_take_irp(Socket.provider.device, Irp, "WskSend", Socket.address, length, Flags,
                        lambda irp: _start_send(Socket, Buffer, Flags, irp))


def _start_send(sock: WskSocketObject, buf: WSK_BUF, flags: int, irp: Any) -> int:
    if buf.Length == 0:
        complete_irp(irp, STATUS_SUCCESS, 0)
        return STATUS_SUCCESS
    conn = sock.endpoint
    sock.sends_pending += 1

    def sent(status: int, nbytes: int) -> None:
        WskProTLSendComplete(sock, completion, status, nbytes)

    completion = IrpCompletion(irp)
    push_now = bool(flags & WSK_FLAG_NODELAY) and not sock.nodelay
    if push_now:
        conn.nodelay = True  # this send goes out without waiting for Nagle
    result = conn.send(buf.Mdl, buf.Offset, buf.Length, sent)
    if push_now:
        conn.nodelay = False
    if result != STATUS_PENDING and completion.early is None:
        sock.sends_pending -= 1  # refused at once (no callback will come)
    return completion.started(result)


@kroutine("afd")
def WskProTLSendComplete(sock: WskSocketObject, completion: IrpCompletion, status: int, nbytes: int) -> None:
    """tcpip is done with the send (acknowledged, or failed): complete the client's IRP.
    (The emulator's name, in the style of afd's WskProTLReceiveComplete.)"""
    sock.sends_pending -= 1
    sock.bytes_sent += nbytes
    completion.done(status, nbytes)
    finish_pending_close(sock)


@kroutine("afd")
def WskProAPIReceive(Socket: WskSocketObject, Buffer: WSK_BUF, Flags: int, Irp: Any) -> int:
    length = Buffer.Length if Buffer is not None else 0
    publish_call(Socket, "WskReceive", Irp, length)
    bad = validate_buf(Buffer, allow_empty=True)
    if bad is not None:
        return complete_now(Socket, Irp, "WskReceive", bad)
    if not is_connected(Socket):
        return complete_now(Socket, Irp, "WskReceive", STATUS_INVALID_DEVICE_STATE)
    return afd_take_irp(Socket.provider.device, Irp, "WskReceive", Socket.address, length, Flags,
                        lambda irp: _start_receive(Socket, Buffer, Flags, irp))


def _start_receive(sock: WskSocketObject, buf: WSK_BUF | None, flags: int, irp: Any) -> int:
    from stack.tcpip.transport import RECEIVE_WAITALL
    if buf is None or buf.Length == 0:
        # A zero-length receive only re-arms indications paused by DATA_NOT_ACCEPTED.
        _schedule_resume(sock)
        complete_irp(irp, STATUS_SUCCESS, 0)
        return STATUS_SUCCESS
    sock.receives_pending += 1

    def received(status: int, nbytes: int) -> None:
        WskProTLReceiveComplete(sock, completion, status, nbytes)

    completion = IrpCompletion(irp)
    result = sock.endpoint.receive(buf.Mdl, buf.Offset, buf.Length, received,
                                   RECEIVE_WAITALL if flags & WSK_FLAG_WAITALL else 0)
    if result != STATUS_PENDING and completion.early is None:
        sock.receives_pending -= 1
    return completion.started(result)


@kroutine("afd")
def WskProTLReceiveComplete(sock: WskSocketObject, completion: IrpCompletion, status: int, nbytes: int) -> None:
    """tcpip completed the receive request (tcpip!TcpCompleteClientReceiveRequest): complete the
    client's IRP with IoCompleteRequest, so its completion routine runs right above this frame."""
    sock.receives_pending -= 1
    sock.bytes_received += nbytes
    completion.done(status, nbytes)
    _schedule_resume(sock)


def _schedule_resume(sock: WskSocketObject) -> None:
    """Indications paused by a partial/refused receive event resume once a WskReceive is done.

    Deferred to a DPC so the transport is not re-entered from inside its own delivery loop."""
    if sock.receive_paused and not sock.closing:
        KeInsertQueueDpc(sock.resume_dpc, None, None)


@kroutine("afd")
def WskProResumeIndicationsDpc(Dpc: Any, DeferredContext: WskSocketObject, Arg1: Any, Arg2: Any) -> None:
    sock = DeferredContext
    if sock.closing or not sock.receive_paused:
        return
    sock.receive_paused = False
    update_handlers(sock)  # re-enabling the upcall offers what the transport kept


@kroutine("afd")
def WskProAPIDisconnect(Socket: WskSocketObject, Buffer: WSK_BUF | None, Flags: int, Irp: Any) -> int:
    publish_call(Socket, "WskDisconnect", Irp, Buffer.Length if Buffer is not None else 0)
    bad = validate_buf(Buffer, allow_empty=True)
    if bad is not None:
        return complete_now(Socket, Irp, "WskDisconnect", bad)
    if not is_connected(Socket):
        return complete_now(Socket, Irp, "WskDisconnect", STATUS_INVALID_DEVICE_STATE)
    return afd_take_irp(Socket.provider.device, Irp, "WskDisconnect", Socket.address,
                        Buffer.Length if Buffer is not None else 0, Flags,
                        lambda irp: _start_disconnect(Socket, Buffer, Flags, irp))


def _start_disconnect(sock: WskSocketObject, buf: WSK_BUF | None, flags: int, irp: Any) -> int:
    conn = sock.endpoint
    completion = IrpCompletion(irp)
    if flags & WSK_FLAG_ABORTIVE:
        sock.set_state("Aborted")
        return completion.started(conn.disconnect(True, None))
    sock.set_state("Disconnecting")

    def finished(status: int) -> None:
        WskProTLDisconnectComplete(sock, completion, status)

    if buf is not None and buf.Length:
        # Send and disconnect: the final data and the FIN in one transport request, so the
        # FIN rides on the last data segment.
        sock.sends_pending += 1

        def final_sent(status: int, nbytes: int) -> None:
            sock.sends_pending -= 1
            sock.bytes_sent += nbytes
            finish_pending_close(sock)

        result = conn.send(buf.Mdl, buf.Offset, buf.Length, final_sent, disconnect=finished)
        if result != STATUS_PENDING:
            sock.sends_pending -= 1
            return completion.started(result)
        return completion.started(STATUS_PENDING)
    return completion.started(conn.disconnect(False, finished))


@kroutine("afd")
def WskProTLDisconnectComplete(sock: WskSocketObject, completion: IrpCompletion, status: int) -> None:
    """Our FIN is acknowledged: complete the WskDisconnect IRP.  (The emulator's name, as above.)"""
    if not sock.closing:
        sock.set_state("Disconnected")
    completion.done(status, 0)


@kroutine("afd")
def WskProAPIRelease(Socket: WskSocketObject, DataIndication: Any) -> int:
    """Give back an indication chain the client kept by returning STATUS_PENDING."""
    publish_call(Socket, "WskRelease", None)
    pieces = Socket.held.pop(id(DataIndication), None)
    if pieces is None:
        return STATUS_INVALID_PARAMETER
    free_pieces(pieces)
    return STATUS_SUCCESS


@kroutine("afd")
def WskProTLEventReceive(conn: Any, runs: list[tuple[int, memoryview]], nbytes: int, flags: int) -> int:
    """Transport upcall with received data, as runs (physical address, view): indicate it to the
    client's WskReceiveEvent."""
    from stack.tcpip.transport import RECEIVE_PUSH
    sock: WskSocketObject | None = conn.context
    if sock is None or sock.closing or sock.receive_paused:
        return 0
    callback = event_callback(sock, WSK_EVENT_RECEIVE)
    if callback is None:
        return 0
    k = sock.kernel
    built, pieces = build_pieces(k, runs)
    if not NT_SUCCESS(built):
        # No pool for a copy: leave the bytes with the transport until a WskReceive asks.
        _pause(sock)
        return 0
    provider = sock.provider
    provider.indications += 1
    provider.indication_bytes += nbytes
    provider.zero_copy_indications += all(p.pool_buffer == 0 for p in pieces)
    head = pieces[0].node if pieces else None
    accepted = Ref(nbytes)
    indication_flags = event_flags() | (WSK_FLAG_ENTIRE_MESSAGE if flags & RECEIVE_PUSH else 0)
    status = callback(sock.ClientContext, indication_flags, head, nbytes, accepted)
    publish_event(sock, "WskReceiveEvent", callback, status, nbytes)
    if status == STATUS_PENDING:
        if NT_SUCCESS(retain_pieces(k, pieces)):
            sock.held[id(head)] = pieces
            sock.bytes_received += nbytes
            return nbytes
        # The bytes could not be kept past the upcall: the transport keeps them instead
        # (WskRelease of this chain then fails with STATUS_INVALID_PARAMETER).
        free_pieces(pieces)
        _pause(sock)
        return 0
    free_pieces(pieces)
    if status == STATUS_SUCCESS:
        taken = accepted.value if isinstance(accepted.value, int) else nbytes
        taken = max(0, min(taken, nbytes))
        sock.bytes_received += taken
        if taken < nbytes:
            _pause(sock)
        return taken
    if status == STATUS_DATA_NOT_ACCEPTED:
        _pause(sock)
        return 0
    _pause(sock)  # any other status: treat as not accepted
    return 0


def _pause(sock: WskSocketObject) -> None:
    sock.receive_paused = True
    update_handlers(sock)


@kroutine("afd")
def WskProTLEventDisconnect(conn: Any, abortive: bool, status: int) -> None:
    """Transport upcall: the peer closed (FIN) or the connection was reset/aborted."""
    sock: WskSocketObject | None = conn.context
    if sock is None or sock.closing:
        return
    sock.set_state("Aborted" if abortive else "PeerDisconnected")
    if abortive:
        # The socket can no longer receive: WskReceiveEvent with DataIndication == NULL tells the
        # client it is no longer functional and must be closed (wsk.h, PFN_WSK_RECEIVE_EVENT).
        receive = event_callback(sock, WSK_EVENT_RECEIVE)
        if receive is not None:
            result = receive(sock.ClientContext, event_flags(), None, 0, Ref(0))
            publish_event(sock, "WskReceiveEvent", receive, result, 0)
    callback = event_callback(sock, WSK_EVENT_DISCONNECT)
    if callback is not None:
        result = callback(sock.ClientContext, WSK_FLAG_ABORTIVE if abortive else 0)
        publish_event(sock, "WskDisconnectEvent", callback, result)


def indicate_send_backlog(sock: WskSocketObject) -> None:
    callback = event_callback(sock, WSK_EVENT_SEND_BACKLOG)
    if callback is not None:
        result = callback(sock.ClientContext, IDEAL_SEND_BACKLOG)
        publish_event(sock, "WskSendBacklogEvent", callback, result, IDEAL_SEND_BACKLOG)
