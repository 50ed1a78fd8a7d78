"""khttpd's event-driven WSK connections (ResponseCache > 0 or HandOver=Accept): no worker thread.

The listening socket has WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT enabled with
SO_WSK_EVENT_CALLBACK (after its bind), so every socket it accepts inherits them and
reports to KHTTPD_CONNECTION_DISPATCH, the WSK_CLIENT_CONNECTION_DISPATCH that
KhttpdAcceptEvent hands back:

KhttpdWskReceiveEvent (PFN_WSK_RECEIVE_EVENT, DISPATCH_LEVEL, from the NIC's DPC)
    DataIndication is a WSK_DATA_INDICATION chain whose MDLs describe the received bytes.
    HandOver=Accept: a dynamic request is looked at in place and left there
    (STATUS_DATA_NOT_ACCEPTED), for afd to move with the connection (handover.py).
    Otherwise the bytes go into the HTTP parser (all of them accepted) and
    cached.KhttpdProcessRequests answers a cache hit right here with WskSend of the
    header MDL -> the entry's locked MDL; anything else goes to a work item.
KhttpdWskDisconnectEvent (PFN_WSK_DISCONNECT_EVENT)
    the peer closed or reset: close once no response is in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stack.kernel import (STATUS_DATA_NOT_ACCEPTED, STATUS_SUCCESS, IoAllocateIrp, current_kernel, kroutine)
from stack.kernel.mdl import mdl_chain_views
from stack.wsk import (NPI_WSK_INTERFACE_ID, WSK_EVENT_CALLBACK_CONTROL, WSK_EVENT_CALLBACK_CONTROL_SIZE,
                       WskSetOption)
from stack.wsk.constants import SO_WSK_EVENT_CALLBACK, SOL_SOCKET, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE
from stack.wsk.structs import WSK_CLIENT_CONNECTION_DISPATCH

from . import cached

if TYPE_CHECKING:
    from .state import KhttpdConnection, KhttpdGlobals


def KhttpdEnableConnectionEvents(g: "KhttpdGlobals") -> int:
    """SO_WSK_EVENT_CALLBACK on the bound listening socket: accepted sockets inherit the events.
    (Enabling takes no IRP: WskControlSocket returns the status.)"""
    socket = g.listen_socket
    control = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT)
    basic = getattr(socket.Dispatch, "Basic", socket.Dispatch)
    return basic.WskControlSocket(socket, WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET,
                                  WSK_EVENT_CALLBACK_CONTROL_SIZE, control, 0, None, None, None)


@kroutine("khttpd")
def KhttpdWskAcceptEventDriven(connection: "KhttpdConnection") -> None:
    """DISPATCH_LEVEL, inside KhttpdAcceptEvent: the connection's buffers and its send IRP, no worker."""
    from .driver import set_up_connection_at_dispatch
    connection.event_driven = True
    ok = set_up_connection_at_dispatch(connection)
    connection.send_irp = IoAllocateIrp(1) if ok else None
    if connection.send_irp is None:
        cached._queue_close(connection)
    elif connection.over_limit:
        connection.busy = True
        cached._queue(connection, cached.KhttpdOverLimitWorkItem)


def _indicated_bytes(DataIndication: Any) -> bytes:
    """The bytes a WSK_DATA_INDICATION chain describes (one counted copy, into the parser's buffer)."""
    parts: list[memoryview] = []
    node = DataIndication
    while node is not None:
        buf = node.Buffer
        parts += mdl_chain_views(buf.Mdl, buf.Offset, buf.Length)
        node = node.Next
    return b"".join(parts)


@kroutine("khttpd")
def KhttpdWskReceiveEvent(SocketContext: Any, Flags: int, DataIndication: Any, BytesIndicated: int,
                          BytesAccepted: Any) -> int:
    """PFN_WSK_RECEIVE_EVENT at DISPATCH_LEVEL: take the bytes, answer what can be answered now."""
    connection: KhttpdConnection | None = SocketContext
    if connection is None or connection.closing:
        return STATUS_DATA_NOT_ACCEPTED
    if DataIndication is None:  # the socket can no longer receive (aborted): close it
        connection.peer_closed = True
        if not connection.busy:
            cached._queue_close(connection)
        return STATUS_SUCCESS
    if connection.handing_over:
        return STATUS_DATA_NOT_ACCEPTED
    data = _indicated_bytes(DataIndication)
    current_kernel().copies.count(BytesIndicated, "KhttpdWskReceiveEvent")  # for the HTTP parser (or a look)
    if connection.globals.config.HandOver == "Accept" and not connection.hand_over_failed:
        from .handover import KhttpdConsiderAcceptHandOver
        if KhttpdConsiderAcceptHandOver(connection, data):
            return STATUS_DATA_NOT_ACCEPTED  # tcpip keeps the request for the user-mode server
    connection.http.receive(data)
    cached.KhttpdProcessRequests(connection)
    return STATUS_SUCCESS  # *BytesAccepted is ignored with STATUS_SUCCESS: all of it


@kroutine("khttpd")
def KhttpdWskDisconnectEvent(SocketContext: Any, Flags: int) -> int:
    connection: KhttpdConnection | None = SocketContext
    if connection is not None and not connection.closing and not connection.handing_over:
        connection.peer_closed = True
        if not connection.busy:
            cached._queue_close(connection)
    return STATUS_SUCCESS


KHTTPD_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH(KhttpdWskReceiveEvent, KhttpdWskDisconnectEvent, None)
