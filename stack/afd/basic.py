"""afd's basic socket dispatch (WSK_PROVIDER_BASIC_DISPATCH): WskControlSocket and WskCloseSocket.

Every category's table starts with these two.  A close cancels what is outstanding, closes the
transport endpoint and completes through afd!WskProTLCloseEndpointComplete.
"""

from __future__ import annotations

from typing import Any

from stack.kernel import (STATUS_CANCELLED, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE,
                          STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_PENDING, STATUS_SUCCESS,
                          kroutine)
from stack.wsk.constants import (AF_INET6, CONNECTION_EVENTS, DATAGRAM_EVENTS, IPPROTO_IPV6, IPPROTO_TCP, IPV6_V6ONLY,
                                 LISTEN_EVENTS, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, SO_EXCLUSIVEADDRUSE, SO_KEEPALIVE, SO_RCVBUF, SO_REUSEADDR,
                                 SO_SNDBUF, SO_WSK_EVENT_CALLBACK, TCP_NODELAY, WSK_EVENT_DISABLE,
                                 WSK_EVENT_SEND_BACKLOG, WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DATAGRAM_SOCKET,
                                 WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_STREAM_SOCKET, WskGetOption, WskIoctl, WskSetOption)
from stack.tcpip.sharing import Share
from stack.wsk.structs import NPI_WSK_INTERFACE_ID, WSK_EVENT_CALLBACK_CONTROL

from .connection import indicate_send_backlog, update_handlers
from .irp import IrpCompletion, afd_take_irp, complete_irp
from .socket import WskSocketObject, complete_now, destroy_socket, dispatch_has, int_option, publish_call, store_output


def _close_endpoint(sock: WskSocketObject) -> None:
    ep = sock.endpoint
    if sock.category in (WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_STREAM_SOCKET):
        while sock.accept_irps:
            *_, completion = sock.accept_irps.popleft()
            completion.done(STATUS_CANCELLED, 0)
        while sock.accept_backlog:
            child = sock.accept_backlog.popleft()
            if child.endpoint is not None:
                child.endpoint.close()
            destroy_socket(child)
    if sock.category == WSK_FLAG_DATAGRAM_SOCKET:
        while sock.receive_from_irps:
            *_, completion = sock.receive_from_irps.popleft()
            completion.done(STATUS_CANCELLED, 0)
        sock.datagram_queue.clear()
    if ep is not None:
        ep.context = None
        ep.close()


@kroutine("afd")
def WskProAPICloseSocket(Socket: WskSocketObject, Irp: Any) -> int:
    publish_call(Socket, "WskCloseSocket", Irp)
    if Socket.closing:
        return complete_now(Socket, Irp, "WskCloseSocket", STATUS_INVALID_DEVICE_STATE)
    Socket.closing = True
    Socket.set_state("Closing")

    def start(irp: Any) -> int:
        _close_endpoint(Socket)  # outstanding requests complete with STATUS_CANCELLED first
        if Socket.sends_pending:  # sends the transport still holds: the close completes after them
            Socket.close_completion = completion = IrpCompletion(irp)
            return completion.started(STATUS_PENDING)
        WskProTLCloseEndpointComplete(Socket, irp)
        return STATUS_SUCCESS

    if Irp is None:
        return STATUS_INVALID_PARAMETER
    return afd_take_irp(Socket.provider.device, Irp, "WskCloseSocket", Socket.address, 0, 0, start)


@kroutine("afd")
def WskProTLCloseEndpointComplete(sock: WskSocketObject, Irp: Any) -> None:
    """The transport endpoint is closed: free the socket and complete the WskCloseSocket IRP."""
    destroy_socket(sock)
    complete_irp(Irp, STATUS_SUCCESS, 0)


@kroutine("afd")
def WskProAPIControlSocket(Socket: WskSocketObject, RequestType: int, ControlCode: int, Level: int, InputSize: int,
                     InputBuffer: Any, OutputSize: int, OutputBuffer: Any, OutputSizeReturned: Any,
                     Irp: Any) -> int:
    publish_call(Socket, "WskControlSocket", Irp)
    if RequestType == WskSetOption and Level == SOL_SOCKET and ControlCode == SO_WSK_EVENT_CALLBACK:
        return _event_callback_option(Socket, InputBuffer, Irp)
    status, value = _socket_option(Socket, RequestType, ControlCode, Level, InputBuffer)
    if RequestType == WskGetOption and status == STATUS_SUCCESS:
        store_output(OutputBuffer, value)
        store_output(OutputSizeReturned, 4)
    return complete_now(Socket, Irp, "WskControlSocket", status, 4 if RequestType == WskGetOption else 0,
                         InputSize, ControlCode)


def _socket_option(sock: WskSocketObject, request: int, code: int, level: int, input_buffer: Any) -> tuple[int, Any]:
    if request == WskIoctl:
        return STATUS_NOT_SUPPORTED, None
    if request not in (WskSetOption, WskGetOption):
        return STATUS_INVALID_PARAMETER, None
    setting = request == WskSetOption
    value = int_option(input_buffer) if setting else None
    if setting and value is None:
        return STATUS_INVALID_PARAMETER, None
    if level == IPPROTO_IPV6 and code == IPV6_V6ONLY:
        if sock.family != AF_INET6:
            return STATUS_INVALID_PARAMETER, None
        if not setting:
            return STATUS_SUCCESS, int(sock.v6only)
        if sock.endpoint is not None:
            return STATUS_INVALID_DEVICE_STATE, None  # only before the bind
        sock.v6only = bool(value)
        return STATUS_SUCCESS, None
    if level == IPPROTO_TCP and code == TCP_NODELAY:
        if not setting:
            return STATUS_SUCCESS, int(sock.nodelay)
        sock.nodelay = bool(value)
        if sock.endpoint is not None and hasattr(sock.endpoint, "nodelay"):
            sock.endpoint.nodelay = sock.nodelay
        return STATUS_SUCCESS, None
    if level == SOL_SOCKET and code == SO_CONDITIONAL_ACCEPT:
        if not setting:
            return STATUS_SUCCESS, int(sock.conditional_accept)
        if sock.category != WSK_FLAG_LISTEN_SOCKET or sock.endpoint is not None:
            return STATUS_INVALID_DEVICE_STATE, None  # listening sockets, before the bind
        sock.conditional_accept = bool(value)
        return STATUS_SUCCESS, None
    if level == SOL_SOCKET and code in _SHARE_OPTIONS:
        return _share_option(sock, _SHARE_OPTIONS[code], setting, value)
    if level == SOL_SOCKET and code in (SO_KEEPALIVE, SO_RCVBUF, SO_SNDBUF):
        return STATUS_SUCCESS, 0  # accepted; the emulated transport has no such knobs yet
    return STATUS_NOT_SUPPORTED, None


_SHARE_OPTIONS = {SO_REUSEADDR: Share.REUSEADDR, SO_EXCLUSIVEADDRUSE: Share.EXCLUSIVE}


def _share_option(sock: WskSocketObject, option: Share, setting: bool, value: Any) -> tuple[int, Any]:
    """SO_REUSEADDR / SO_EXCLUSIVEADDRUSE (MS Learn "Sharing Transport Addresses"): a ULONG 0 or 1,
    set before the bind; the two exclude each other, as in Winsock."""
    if not setting:
        return STATUS_SUCCESS, int(sock.share is option)
    if sock.endpoint is not None or sock.local is not None:
        return STATUS_INVALID_DEVICE_STATE, None
    if value:
        if sock.share not in (Share.DEFAULT, option):
            return STATUS_INVALID_PARAMETER, None
        sock.share = option
    elif sock.share is option:
        sock.share = Share.DEFAULT
    return STATUS_SUCCESS, None


def _event_callback_option(sock: WskSocketObject, control: Any, irp: Any) -> int:
    if not isinstance(control, WSK_EVENT_CALLBACK_CONTROL) or control.NpiId != NPI_WSK_INTERFACE_ID:
        return complete_now(sock, irp, "WskControlSocket", STATUS_INVALID_PARAMETER)
    mask = control.EventMask
    if mask & WSK_EVENT_DISABLE:
        bits = mask & ~WSK_EVENT_DISABLE
        if bits & sock._static_mask():
            return complete_now(sock, irp, "WskControlSocket", STATUS_INVALID_DEVICE_REQUEST)
        sock.event_mask &= ~bits
        update_handlers(sock)
        return complete_now(sock, irp, "WskControlSocket", STATUS_SUCCESS)
    if irp is not None:
        return complete_now(sock, irp, "WskControlSocket", STATUS_INVALID_PARAMETER)  # enabling takes no IRP
    if sock.category == WSK_FLAG_LISTEN_SOCKET:
        allowed = LISTEN_EVENTS | CONNECTION_EVENTS  # connection events are inherited by accepted sockets
        ready = sock.endpoint is not None
    elif sock.category == WSK_FLAG_CONNECTION_SOCKET:
        allowed, ready = CONNECTION_EVENTS, sock.remote is not None
    elif sock.category == WSK_FLAG_DATAGRAM_SOCKET:
        allowed, ready = DATAGRAM_EVENTS, sock.endpoint is not None
    elif sock.category == WSK_FLAG_STREAM_SOCKET:
        allowed, ready = LISTEN_EVENTS | CONNECTION_EVENTS, True
    else:
        return STATUS_INVALID_DEVICE_REQUEST
    if mask & ~allowed or not mask:
        return STATUS_INVALID_PARAMETER
    if not ready:
        return STATUS_INVALID_DEVICE_STATE
    if not dispatch_has(sock.ClientDispatch, mask & (LISTEN_EVENTS if sock.category == WSK_FLAG_LISTEN_SOCKET
                                                     else allowed)):
        return STATUS_INVALID_PARAMETER
    newly = mask & ~sock.event_mask
    sock.event_mask |= mask
    update_handlers(sock)
    if newly & WSK_EVENT_SEND_BACKLOG and sock.category == WSK_FLAG_CONNECTION_SOCKET:
        indicate_send_backlog(sock)
    return STATUS_SUCCESS
