"""afd's WSK provider dispatch table (WSK_PROVIDER_DISPATCH) and the tables of each socket category.

A client gets `WSK_PROVIDER_DISPATCH` from netio's WskCaptureProviderNPI and calls its
routines directly: `afd!WskProAPISocket`, `afd!WskProAPISocketConnect`,
`afd!WskProAPIControlClient`, `afd!WskProAPIGetAddressInfo` ... (names.py).  A socket's
`Dispatch` is the table of its category (socket.py).
"""

from __future__ import annotations

from typing import Any

from stack.kernel import (STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_PENDING,
                          STATUS_PROTOCOL_UNREACHABLE, STATUS_SUCCESS, current_kernel, kroutine)
from stack.wsk.constants import (AF_INET, AF_INET6, CONNECTION_EVENTS, DATAGRAM_EVENTS, IPPROTO_TCP, IPPROTO_UDP,
                                 LISTEN_EVENTS, MAKE_WSK_VERSION, SOCK_DGRAM, SOCK_STREAM, WSK_FLAG_BASIC_SOCKET,
                                 WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DATAGRAM_SOCKET, WSK_FLAG_LISTEN_SOCKET,
                                 WSK_FLAG_STREAM_SOCKET, WSK_SET_STATIC_EVENT_CALLBACKS)
from stack.wsk.events import WskCall
from stack.wsk.netio import WskClient
from stack.wsk.structs import (WSK_EVENT_CALLBACK_CONTROL, WSK_PROVIDER_BASIC_DISPATCH,
                               WSK_PROVIDER_CONNECTION_DISPATCH, WSK_PROVIDER_DATAGRAM_DISPATCH, WSK_PROVIDER_DISPATCH,
                               WSK_PROVIDER_LISTEN_DISPATCH, WSK_PROVIDER_STREAM_DISPATCH, NPI_WSK_INTERFACE_ID,
                               WskAddressError, to_sockaddr)

from .basic import WskProAPICloseSocket, WskProAPIControlSocket
from .connection import (WskProAPIConnect, WskProAPIDisconnect, WskProAPIGetRemoteAddress, WskProAPIReceive,
                         WskProAPIRelease, WskProAPISend, update_handlers)
from .datagram import WskProAPIReceiveFrom, WskProAPISendTo
from .irp import IrpCompletion, afd_take_irp, complete_irp
from .listen import (WskProAPIAccept, WskProAPIBind, WskProAPIGetLocalAddress, WskProAPIInspectComplete,
                     WskProAPIListen)
from .names import WskProAPIFreeAddressInfo, WskProAPIGetAddressInfo, WskProAPIGetNameInfo
from .socket import WskSocketObject, WskpAllocateSocket, destroy_socket
from .state import get_provider


# ==================================================================================================
# provider dispatch
# ==================================================================================================

_CATEGORIES = (WSK_FLAG_BASIC_SOCKET, WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DATAGRAM_SOCKET,
               WSK_FLAG_STREAM_SOCKET)


def _check_transport(family: int, socket_type: int, protocol: int, flags: int) -> int:
    if flags not in _CATEGORIES:
        return STATUS_INVALID_PARAMETER
    if family not in (AF_INET, AF_INET6):
        return STATUS_PROTOCOL_UNREACHABLE
    if flags == WSK_FLAG_BASIC_SOCKET:
        return STATUS_SUCCESS if (socket_type, protocol) in ((SOCK_STREAM, IPPROTO_TCP),
                                                             (SOCK_DGRAM, IPPROTO_UDP)) else STATUS_PROTOCOL_UNREACHABLE
    if flags == WSK_FLAG_DATAGRAM_SOCKET:
        ok = socket_type == SOCK_DGRAM and protocol == IPPROTO_UDP
    else:
        ok = socket_type == SOCK_STREAM and protocol == IPPROTO_TCP
    return STATUS_SUCCESS if ok else STATUS_PROTOCOL_UNREACHABLE


def _live_client(Client: Any) -> WskClient | None:
    return Client if isinstance(Client, WskClient) and not Client.deregistering else None


def _publish(call: str, irp: Any) -> None:
    """The client-level WskProAPI* routines start here: charged and announced like publish_call."""
    k = current_kernel()
    k.charge("wsk_dispatch")
    if k.bus.subscribers:
        k.publish(WskCall, call=call, socket=0, irp=getattr(irp, "address", 0) if irp is not None else 0)


@kroutine("afd")
def WskProAPISocket(Client: Any, AddressFamily: int, SocketType: int, Protocol: int, Flags: int,
                    SocketContext: Any, Dispatch: Any, OwningProcess: Any, OwningThread: Any, SecurityDescriptor: Any,
                    Irp: Any) -> int:
    _publish("WskSocket", Irp)
    k = current_kernel()
    provider = get_provider(k)
    client = _live_client(Client)

    def start(irp: Any) -> int:
        status = _check_transport(AddressFamily, SocketType, Protocol, Flags)
        if client is None or provider is None:
            status = STATUS_INVALID_DEVICE_STATE
        if status != STATUS_SUCCESS:
            complete_irp(irp, status, None)
            return status
        sock = WskpAllocateSocket(provider, client, Flags, AddressFamily, SocketType, Protocol, SocketContext,
                                  Dispatch)
        if sock is None:
            complete_irp(irp, STATUS_INSUFFICIENT_RESOURCES, None)
            return STATUS_INSUFFICIENT_RESOURCES
        if OwningProcess is not None:
            sock.owner = OwningProcess  # the security context the sharing access check uses
        complete_irp(irp, STATUS_SUCCESS, sock)
        return STATUS_SUCCESS

    if provider is None:
        return STATUS_INVALID_DEVICE_STATE
    return afd_take_irp(provider.device, Irp, "WskSocket", 0, 0, Flags, start)


@kroutine("afd")
def WskProAPISocketConnect(Client: Any, SocketType: int, Protocol: int, LocalAddress: Any, RemoteAddress: Any,
                           Flags: int, SocketContext: Any, Dispatch: Any, OwningProcess: Any, OwningThread: Any,
                           SecurityDescriptor: Any, Irp: Any) -> int:
    """Create, bind and connect a connection socket in one call."""
    _publish("WskSocketConnect", Irp)
    k = current_kernel()
    provider = get_provider(k)
    client = _live_client(Client)
    if provider is None:
        return STATUS_INVALID_DEVICE_STATE

    def start(irp: Any) -> int:
        completion = IrpCompletion(irp)
        try:
            local = to_sockaddr(LocalAddress)
            remote = to_sockaddr(RemoteAddress)
        except WskAddressError:
            return completion.started(STATUS_INVALID_PARAMETER)
        status = _check_transport(local.family, SocketType, Protocol, WSK_FLAG_CONNECTION_SOCKET)
        if client is None:
            status = STATUS_INVALID_DEVICE_STATE
        elif Flags != 0 or local.family != remote.family:
            status = STATUS_INVALID_PARAMETER
        if status != STATUS_SUCCESS:
            return completion.started(status)
        status, conn = provider.transport.tcp_socket(local, local.family)
        if conn is None:
            return completion.started(status)
        sock = WskpAllocateSocket(provider, client, WSK_FLAG_CONNECTION_SOCKET, local.family, SocketType, Protocol,
                                  SocketContext, Dispatch)
        if sock is None:
            conn.close()
            return completion.started(STATUS_INSUFFICIENT_RESOURCES)
        conn.context = sock
        sock.endpoint = conn
        sock.local = conn.local
        sock.set_state("Connecting")

        def connected(endpoint: Any, result: int) -> None:
            if result == STATUS_SUCCESS:
                sock.local, sock.remote = endpoint.local, endpoint.remote
                sock.set_state("Connected")
                sock.event_mask = 0
                update_handlers(sock)
                completion.done(STATUS_SUCCESS, sock)
            else:
                conn.context = None
                conn.close()
                destroy_socket(sock)
                completion.done(result, None)

        result = conn.connect(remote, connected)
        if result != STATUS_PENDING and completion.early is None:
            conn.context = None
            conn.close()
            destroy_socket(sock)
        return completion.started(result)

    return afd_take_irp(provider.device, Irp, "WskSocketConnect", 0, 0, Flags, start)


@kroutine("afd")
def WskProAPIControlClient(Client: Any, ControlCode: int, InputSize: int, InputBuffer: Any, OutputSize: int,
                           OutputBuffer: Any, OutputSizeReturned: Any, Irp: Any) -> int:
    _publish("WskControlClient", Irp)
    client = _live_client(Client)
    if client is None:
        return STATUS_INVALID_PARAMETER
    if ControlCode == WSK_SET_STATIC_EVENT_CALLBACKS:
        # Irp must be NULL; input is one WSK_EVENT_CALLBACK_CONTROL; only before any socket exists.
        if Irp is not None or not isinstance(InputBuffer, WSK_EVENT_CALLBACK_CONTROL):
            return STATUS_INVALID_PARAMETER
        if InputBuffer.NpiId != NPI_WSK_INTERFACE_ID:
            return STATUS_INVALID_PARAMETER
        mask = InputBuffer.EventMask
        if not mask or mask & ~(LISTEN_EVENTS | CONNECTION_EVENTS | DATAGRAM_EVENTS):
            return STATUS_INVALID_PARAMETER
        if client.sockets_ever:
            return STATUS_INVALID_DEVICE_STATE
        client.static_event_mask |= mask  # never disabled afterwards
        return STATUS_SUCCESS
    status = STATUS_NOT_SUPPORTED
    if Irp is None:
        return status
    provider = get_provider(current_kernel())
    return afd_take_irp(provider.device, Irp, "WskControlClient", 0, InputSize, ControlCode,
                        lambda irp: (complete_irp(irp, status, 0), status)[1])


def _make_dispatch(k: Any) -> tuple[WSK_PROVIDER_DISPATCH, dict[int, Any]]:
    """Per-kernel dispatch tables: their `address` is a data symbol in the afd image."""
    def at(name: str) -> int:
        return k.symbol_address(f"afd!{name}")

    basic = WSK_PROVIDER_BASIC_DISPATCH(WskProAPIControlSocket, WskProAPICloseSocket, at("WskProBasicDispatch"))
    listen = WSK_PROVIDER_LISTEN_DISPATCH(basic, WskProAPIBind, WskProAPIAccept, WskProAPIInspectComplete,
                                          WskProAPIGetLocalAddress, at("WskProListenDispatch"))
    connection = WSK_PROVIDER_CONNECTION_DISPATCH(basic, WskProAPIBind, WskProAPIConnect, WskProAPIGetLocalAddress,
                                                  WskProAPIGetRemoteAddress, WskProAPISend, WskProAPIReceive,
                                                  WskProAPIDisconnect, WskProAPIRelease,
                                                  address=at("WskProConnectionDispatch"))
    datagram = WSK_PROVIDER_DATAGRAM_DISPATCH(basic, WskProAPIBind, WskProAPISendTo, WskProAPIReceiveFrom,
                                              WskProAPIRelease, WskProAPIGetLocalAddress,
                                              address=at("WskProDatagramDispatch"))
    stream = WSK_PROVIDER_STREAM_DISPATCH(basic, WskProAPIBind, WskProAPIAccept, WskProAPIConnect, WskProAPIListen,
                                          WskProAPISend, WskProAPIReceive, WskProAPIDisconnect, WskProAPIRelease,
                                          WskProAPIGetLocalAddress, WskProAPIGetRemoteAddress,
                                          WskProAPIInspectComplete, address=at("WskProStreamDispatch"))
    provider_dispatch = WSK_PROVIDER_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, WskProAPISocket, WskProAPISocketConnect,
                                              WskProAPIControlClient, WskProAPIGetAddressInfo,
                                              WskProAPIFreeAddressInfo, WskProAPIGetNameInfo,
                                              at("WskProviderDispatch"))
    tables = {WSK_FLAG_BASIC_SOCKET: basic, WSK_FLAG_LISTEN_SOCKET: listen, WSK_FLAG_CONNECTION_SOCKET: connection,
              WSK_FLAG_DATAGRAM_SOCKET: datagram, WSK_FLAG_STREAM_SOCKET: stream}
    return provider_dispatch, tables
