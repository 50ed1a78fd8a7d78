"""afd's listening-socket dispatch (WSK_PROVIDER_LISTEN_DISPATCH): WskBind, WskAccept,
WskInspectComplete, WskGetLocalAddress - and WskListen of stream sockets.

tcpip offers each completed handshake to afd!WskProTLEventAccept, which calls the client's
WskAcceptEvent or completes a pended WskAccept IRP.  On a conditional-accept socket tcpip first
offers each SYN to afd!WskProTLEventInspect, before it answers (stack/tcpip/syn_hold.py).
"""

from __future__ import annotations

from typing import Any

from stack.kernel import (STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE,
                          STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_PENDING, STATUS_SUCCESS, kroutine)
from stack.wsk.constants import (CONNECTION_EVENTS, WSK_EVENT_ACCEPT, WSK_EVENT_SEND_BACKLOG,
                                 WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DATAGRAM_SOCKET, WSK_FLAG_LISTEN_SOCKET,
                                 WSK_FLAG_STREAM_SOCKET, WskInspectAccept, WskInspectPend, WskInspectReject)
from stack.wsk.structs import WSK_INSPECT_ID, Ref, WskAddressError, fill_sockaddr, from_sockaddr, to_sockaddr

from .connection import indicate_send_backlog, update_handlers
from .datagram import WskProTLEventReceiveMessages
from .irp import IrpCompletion, afd_take_irp
from .socket import (LISTEN_BACKLOG, WskSocketObject, complete_now, destroy_socket, dispatch_has, event_callback,
                     event_flags, publish_call, publish_event, WskpAllocateSocket)


@kroutine("afd")
def WskProAPIBind(Socket: WskSocketObject, LocalAddress: Any, Flags: int, Irp: Any) -> int:
    publish_call(Socket, "WskBind", Irp)
    try:
        local = to_sockaddr(LocalAddress)
    except WskAddressError:
        return complete_now(Socket, Irp, "WskBind", STATUS_INVALID_PARAMETER)
    if Socket.endpoint is not None or Socket.local is not None or Socket.closing:
        return complete_now(Socket, Irp, "WskBind", STATUS_INVALID_DEVICE_STATE)
    if local.family != Socket.family:
        return complete_now(Socket, Irp, "WskBind", STATUS_INVALID_PARAMETER)
    transport = Socket.provider.transport
    if Socket.category == WSK_FLAG_LISTEN_SOCKET:
        status, ep = transport.tcp_listen(local, accept=WskProTLEventAccept, backlog=LISTEN_BACKLOG,
                                          v6only=Socket.v6only, share=Socket.share, owner=Socket.owner)
        if ep is not None:
            ep.context = Socket
            Socket.endpoint = ep
            Socket.local = ep.local
            Socket.set_state("Listening")  # a WSK listening socket listens once bound
            if Socket.conditional_accept and getattr(Socket.ClientDispatch, "WskInspectEvent", None) is not None:
                # Conditional accept: tcpip asks before it answers a SYN (no SYN-ACK until the decision).
                ep.set_inspect(WskProTLEventInspect, WskProTLEventInspectAbort)
    elif Socket.category == WSK_FLAG_CONNECTION_SOCKET:
        status, ep = transport.tcp_socket(local, Socket.family, Socket.share, Socket.owner, Socket.v6only)
        if ep is not None:
            ep.context = Socket
            ep.nodelay = Socket.nodelay
            Socket.endpoint = ep
            Socket.local = ep.local
            Socket.set_state("Bound")
    elif Socket.category == WSK_FLAG_DATAGRAM_SOCKET:
        status, ep = transport.udp_open(local, receive=WskProTLEventReceiveMessages, v6only=Socket.v6only,
                                        share=Socket.share, owner=Socket.owner)
        if ep is not None:
            ep.context = Socket
            Socket.endpoint = ep
            Socket.local = ep.local
            Socket.set_state("Bound")
    elif Socket.category == WSK_FLAG_STREAM_SOCKET:
        Socket.local = local  # becomes a listener or a connection later
        status = STATUS_SUCCESS
        Socket.set_state("Bound")
    else:
        status = STATUS_INVALID_DEVICE_REQUEST
    return complete_now(Socket, Irp, "WskBind", status)


@kroutine("afd")
def WskProAPIListen(Socket: WskSocketObject, Irp: Any) -> int:
    """Stream sockets only: become a listening socket on the bound address."""
    publish_call(Socket, "WskListen", Irp)
    if Socket.category != WSK_FLAG_STREAM_SOCKET or Socket.local is None or Socket.endpoint is not None:
        return complete_now(Socket, Irp, "WskListen", STATUS_INVALID_DEVICE_STATE)
    status, ep = Socket.provider.transport.tcp_listen(Socket.local, accept=WskProTLEventAccept,
                                                      backlog=LISTEN_BACKLOG, v6only=Socket.v6only,
                                                      share=Socket.share, owner=Socket.owner)
    if ep is not None:
        ep.context = Socket
        Socket.endpoint = ep
        Socket.local = ep.local
        Socket.set_state("Listening")
    return complete_now(Socket, Irp, "WskListen", status)


def _new_accepted_socket(listener: WskSocketObject, conn: Any) -> WskSocketObject | None:
    child = WskpAllocateSocket(listener.provider, listener.client, WSK_FLAG_CONNECTION_SOCKET, listener.family,
                               listener.socket_type, listener.protocol, None, None)
    if child is None:
        return None
    child.endpoint = conn
    child.local = conn.local
    child.remote = conn.remote
    child.listen_socket = listener
    child.nodelay = listener.nodelay
    conn.context = child
    if listener.nodelay:
        conn.nodelay = True
    child.set_state("Connected")
    return child


def _adopt(child: WskSocketObject, context: Any, dispatch: Any) -> None:
    """The client took the accepted socket: inherit the listener's connection events."""
    child.ClientContext = context
    child.ClientDispatch = dispatch
    listener = child.listen_socket
    if listener is not None and dispatch is not None:
        inherited = listener.event_mask & CONNECTION_EVENTS
        child.event_mask = inherited if dispatch_has(dispatch, inherited) else 0
    update_handlers(child)
    if event_callback(child, WSK_EVENT_SEND_BACKLOG) is not None:
        indicate_send_backlog(child)


@kroutine("afd")
def WskProTLEventAccept(listener_endpoint: Any, conn: Any) -> int:
    """Transport upcall: a handshake completed on a listening socket's port."""
    from stack.tcpip.transport import ACCEPT, REFUSE
    listener: WskSocketObject | None = listener_endpoint.context
    if listener is None or listener.closing:
        return REFUSE
    child = _new_accepted_socket(listener, conn)
    if child is None:  # no pool for the socket: the connection is refused (reset)
        return REFUSE
    # Under conditional accept the decision was taken before the SYN-ACK (WskProTLEventInspect).
    return _offer_accepted(listener, child, conn)


@kroutine("afd")
def WskProTLEventInspect(listener_endpoint: Any, local: Any, remote: Any, token: int) -> int:
    """Transport upcall: a SYN arrived on a conditional-accept socket's port and nothing has answered
    it yet.  WskInspectEvent decides: accept (tcpip sends the SYN-ACK), reject (RST) or pend (the
    SYN stays unanswered until WskInspectComplete).  (The emulator's name, in afd's WskProTLEvent style.)"""
    from stack.tcpip.syn_hold import PEND
    from stack.tcpip.transport import ACCEPT, REFUSE
    listener: WskSocketObject | None = listener_endpoint.context
    inspect = getattr(listener.ClientDispatch, "WskInspectEvent", None) if listener is not None else None
    if listener is None or listener.closing or inspect is None:
        return REFUSE
    inspect_id = WSK_INSPECT_ID(listener.address, token)
    action = inspect(listener.ClientContext, from_sockaddr(local, listener.family),
                     from_sockaddr(remote, listener.family), inspect_id)
    publish_event(listener, "WskInspectEvent", inspect, action)
    if action == WskInspectPend:
        listener.inspect_pending[(inspect_id.Key, inspect_id.SerialNumber)] = token
        return PEND
    return ACCEPT if action == WskInspectAccept else REFUSE


def _offer_accepted(listener: WskSocketObject, child: WskSocketObject, conn: Any) -> int:
    """An established (and, under conditional accept, accepted) connection: accept event or WskAccept."""
    from stack.tcpip.transport import ACCEPT, REFUSE
    accept_event = event_callback(listener, WSK_EVENT_ACCEPT)
    if accept_event is not None:
        context, dispatch = Ref(), Ref()
        local = from_sockaddr(conn.local, listener.family)
        remote = from_sockaddr(conn.remote, listener.family)
        status = accept_event(listener.ClientContext, event_flags(), local, remote, child, context, dispatch)
        publish_event(listener, "WskAcceptEvent", accept_event, status)
        if status != STATUS_SUCCESS:  # STATUS_REQUEST_NOT_ACCEPTED: the provider closes the socket
            conn.context = None
            destroy_socket(child)
            return REFUSE
        _adopt(child, context.value, dispatch.value)
        return ACCEPT
    if listener.accept_irps:
        _complete_accept(listener, child, *listener.accept_irps.popleft())
        return ACCEPT
    listener.accept_backlog.append(child)
    return ACCEPT


def _complete_accept(listener: WskSocketObject, child: WskSocketObject, context: Any, dispatch: Any,
                     local_out: Any, remote_out: Any, completion: IrpCompletion) -> None:
    _adopt(child, context, dispatch)
    if local_out is not None:
        fill_sockaddr(local_out, child.local, listener.family)
    if remote_out is not None:
        fill_sockaddr(remote_out, child.remote, listener.family)
    completion.done(STATUS_SUCCESS, child)


@kroutine("afd")
def WskProAPIAccept(ListenSocket: WskSocketObject, Flags: int, AcceptSocketContext: Any, AcceptSocketDispatch: Any,
              LocalAddress: Any, RemoteAddress: Any, Irp: Any) -> int:
    publish_call(ListenSocket, "WskAccept", Irp)
    if ListenSocket.state != "Listening" or ListenSocket.closing:
        return complete_now(ListenSocket, Irp, "WskAccept", STATUS_INVALID_DEVICE_STATE)

    def start(irp: Any) -> int:
        completion = IrpCompletion(irp)
        if ListenSocket.accept_backlog:
            child = ListenSocket.accept_backlog.popleft()
            _complete_accept(ListenSocket, child, AcceptSocketContext, AcceptSocketDispatch, LocalAddress,
                             RemoteAddress, completion)
        else:
            ListenSocket.accept_irps.append((AcceptSocketContext, AcceptSocketDispatch, LocalAddress,
                                             RemoteAddress, completion))
        return completion.started(STATUS_PENDING)

    return afd_take_irp(ListenSocket.provider.device, Irp, "WskAccept", ListenSocket.address, 0, Flags, start)


@kroutine("afd")
def WskProAPIInspectComplete(ListenSocket: WskSocketObject, InspectId: Any, Action: int, Irp: Any) -> int:
    """The client's decision on a connection its WskInspectEvent pended (WskInspectAccept / Reject)."""
    publish_call(ListenSocket, "WskInspectComplete", Irp)
    key = (getattr(InspectId, "Key", None), getattr(InspectId, "SerialNumber", None))
    token = ListenSocket.inspect_pending.get(key)
    if token is None or Action not in (WskInspectAccept, WskInspectReject) or ListenSocket.endpoint is None:
        return complete_now(ListenSocket, Irp, "WskInspectComplete", STATUS_INVALID_PARAMETER)
    del ListenSocket.inspect_pending[key]
    # Accept: tcpip answers the held SYN with its SYN-ACK now (the accept event follows the handshake);
    # reject: a RST answers it.
    accept = Action == WskInspectAccept and not ListenSocket.closing
    status = ListenSocket.endpoint.inspect_complete(token, accept)
    return complete_now(ListenSocket, Irp, "WskInspectComplete", status)


@kroutine("afd")
def WskProTLEventInspectAbort(listener_endpoint: Any, token: int) -> None:
    """The peer gave up on a SYN still waiting for WskInspectComplete: WskAbortEvent.
    (The emulator's name, in the style of afd's WskProTLEvent routines.)"""
    listener: WskSocketObject | None = listener_endpoint.context
    if listener is None:
        return
    key = (listener.address, token)
    if listener.inspect_pending.pop(key, None) is None:
        return
    abort_event = getattr(listener.ClientDispatch, "WskAbortEvent", None)
    if abort_event is not None:
        result = abort_event(listener.ClientContext, WSK_INSPECT_ID(*key))
        publish_event(listener, "WskAbortEvent", abort_event, result)


@kroutine("afd")
def WskProAPIGetLocalAddress(Socket: WskSocketObject, LocalAddress: Any, Irp: Any) -> int:
    publish_call(Socket, "WskGetLocalAddress", Irp)
    if Socket.local is None:
        return complete_now(Socket, Irp, "WskGetLocalAddress", STATUS_INVALID_DEVICE_STATE)
    try:
        fill_sockaddr(LocalAddress, Socket.local, Socket.family)
    except WskAddressError:
        return complete_now(Socket, Irp, "WskGetLocalAddress", STATUS_BUFFER_TOO_SMALL)
    return complete_now(Socket, Irp, "WskGetLocalAddress", STATUS_SUCCESS)
