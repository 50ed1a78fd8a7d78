"""The wskprov driver: registration (WskRegister ...), the provider NPI and its dispatch.

Load it like any driver: `IoLoadDriver(kernel, stack.wsk.DRIVER_IMAGE)` (the world does this
once tcpip is up).  Its DriverEntry creates `\\Device\\wskprov`, whose
IRP_MJ_INTERNAL_DEVICE_CONTROL routine runs every WSK operation a client's IRP carries.
"""

from __future__ import annotations

from typing import Any, Generator

from stack.kernel import (IRP_MJ_INTERNAL_DEVICE_CONTROL, STATUS_DEVICE_NOT_READY, STATUS_INSUFFICIENT_RESOURCES,
                          STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_NOINTERFACE,
                          STATUS_NOT_SUPPORTED, STATUS_PENDING, STATUS_PROTOCOL_UNREACHABLE, STATUS_SUCCESS,
                          STATUS_TIMEOUT, DriverImage, IoCreateDevice, IoGetCurrentIrpStackLocation,
                          KeWaitForSingleObject, KeResetEvent, KeSetEvent, Executive, KernelMode, current_kernel,
                          kroutine)
from stack.kernel.io import DO_DEVICE_INITIALIZING, FILE_DEVICE_NETWORK
from stack.tcpip.addr import SockAddr

from .constants import (AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_DGRAM, SOCK_STREAM,
                        WSK_FLAG_BASIC_SOCKET, WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DATAGRAM_SOCKET,
                        WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_STREAM_SOCKET, WSK_INFINITE_WAIT, WSK_MAJOR_VERSION,
                        WSK_NO_WAIT, WSK_SET_STATIC_EVENT_CALLBACKS, MAKE_WSK_VERSION, CONNECTION_EVENTS,
                        DATAGRAM_EVENTS, LISTEN_EVENTS)
from .events import WskCall
from .irpops import IrpCompletion, WskStatus, call_wskprov, complete_irp
from .names import WskFreeAddressInfo, WskGetAddressInfo, WskGetNameInfo
from .socket import (WskAccept, WskBind, WskCloseSocket, WskConnect, WskControlSocket, WskDisconnect,
                     WskGetLocalAddress, WskGetRemoteAddress, WskInspectComplete, WskListen, WskReceive,
                     WskReceiveFrom, WskRelease, WskSend, WskSendTo, WskSocketObject, WskpAllocateSocket,
                     _update_handlers)
from .state import WskClient, WskProvider, get_provider, nmr
from .structs import (WSK_CLIENT_NPI, WSK_EVENT_CALLBACK_CONTROL, WSK_PROVIDER_BASIC_DISPATCH,
                      WSK_PROVIDER_CONNECTION_DISPATCH, WSK_PROVIDER_DATAGRAM_DISPATCH, WSK_PROVIDER_DISPATCH,
                      WSK_PROVIDER_LISTEN_DISPATCH, WSK_PROVIDER_NPI, WSK_PROVIDER_STREAM_DISPATCH,
                      WSK_REGISTRATION, NPI_WSK_INTERFACE_ID, WskAddressError, to_sockaddr)

WSKPROV_DEVICE_NAME = "\\Device\\wskprov"
SUPPORTED_MAJOR_VERSION = 1


# ==================================================================================================
# registration (netio's WskRegister family)
# ==================================================================================================

def _client_of(registration: WSK_REGISTRATION) -> WskClient | None:
    client = registration.ReservedRegistrationContext
    return client if isinstance(client, WskClient) else None


@kroutine("wskprov")
def WskRegister(WskClientNpi: WSK_CLIENT_NPI, WskRegistration: WSK_REGISTRATION) -> int:
    k = current_kernel()
    if not isinstance(WskClientNpi, WSK_CLIENT_NPI) or WskClientNpi.Dispatch is None:
        return STATUS_INVALID_PARAMETER
    if not isinstance(WskRegistration, WSK_REGISTRATION) or _client_of(WskRegistration) is not None:
        return STATUS_INVALID_PARAMETER
    frames = [f.symbol for f in k.frames if not f.symbol.startswith(("nt!", "wskprov!"))]
    owner = frames[-1].split("!", 1)[0] if frames else "unknown"
    client = WskClient(WskClientNpi, WskRegistration, owner)
    WskRegistration.ReservedRegistrationContext = client
    WskRegistration.ReservedRegistrationState = 1
    nmr(k).clients.append(client)
    return STATUS_SUCCESS


@kroutine("wskprov")
def WskCaptureProviderNPI(WskRegistration: WSK_REGISTRATION, WaitTimeout: int,
                          WskProviderNpi: WSK_PROVIDER_NPI) -> WskStatus:
    """Plain call: the answer without waiting.  `yield from` it on a thread to wait as C does."""
    k = current_kernel()
    client = _client_of(WskRegistration)
    if client is None or client.deregistering:
        return WskStatus(STATUS_DEVICE_NOT_READY)
    if WSK_MAJOR_VERSION(client.npi.Dispatch.Version) != SUPPORTED_MAJOR_VERSION:
        return WskStatus(STATUS_NOINTERFACE)
    state = nmr(k)
    if state.provider is not None:
        _capture(client, state.provider, WskProviderNpi)
        return WskStatus(STATUS_SUCCESS)
    if WaitTimeout == WSK_NO_WAIT:
        return WskStatus(STATUS_DEVICE_NOT_READY)

    def wait() -> Generator[Any, Any, int]:
        timeout = None if WaitTimeout == WSK_INFINITE_WAIT else -int(WaitTimeout) * 10_000
        status = yield KeWaitForSingleObject(state.provider_ready, Executive, KernelMode, False, timeout)
        if status == STATUS_TIMEOUT or state.provider is None or client.deregistering:
            return STATUS_DEVICE_NOT_READY
        _capture(client, state.provider, WskProviderNpi)
        return STATUS_SUCCESS

    return WskStatus(STATUS_DEVICE_NOT_READY, wait)


def _capture(client: WskClient, provider: WskProvider, npi: WSK_PROVIDER_NPI) -> None:
    client.captures += 1
    npi.Client = client
    npi.Dispatch = provider.dispatch


@kroutine("wskprov")
def WskReleaseProviderNPI(WskRegistration: WSK_REGISTRATION) -> None:
    client = _client_of(WskRegistration)
    if client is None or client.captures <= 0:
        return
    client.captures -= 1
    client.maybe_finish_deregistration()


@kroutine("wskprov")
def WskDeregister(WskRegistration: WSK_REGISTRATION) -> WskStatus:
    """Start deregistering; `yield from WskDeregister(&reg)` waits (as the C call does) until
    every captured NPI is released and every socket of this client is closed."""
    k = current_kernel()
    client = _client_of(WskRegistration)
    if client is None:
        return WskStatus(STATUS_INVALID_PARAMETER)
    client.deregistering = True
    client.maybe_finish_deregistration()

    def wait() -> Generator[Any, Any, int]:
        yield KeWaitForSingleObject(client.deregistered, Executive, KernelMode, False, None)
        _forget(k, client)
        return STATUS_SUCCESS

    if client.quiescent:
        _forget(k, client)
        return WskStatus(STATUS_SUCCESS)
    return WskStatus(STATUS_PENDING, wait)


def _forget(k: Any, client: WskClient) -> None:
    state = nmr(k)
    if client in state.clients:
        state.clients.remove(client)
    client.registration.ReservedRegistrationContext = None
    client.registration.ReservedRegistrationState = 0


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
    k = current_kernel()
    if k.bus.subscribers:
        k.publish(WskCall, call=call, socket=0, irp=getattr(irp, "address", 0) if irp is not None else 0)


@kroutine("wskprov")
def WskSocket(Client: Any, AddressFamily: int, SocketType: int, Protocol: int, Flags: int, SocketContext: Any,
              Dispatch: Any, OwningProcess: Any, OwningThread: Any, SecurityDescriptor: Any, Irp: Any) -> int:
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
        complete_irp(irp, STATUS_SUCCESS, sock)
        return STATUS_SUCCESS

    if provider is None:
        return STATUS_INVALID_DEVICE_STATE
    return call_wskprov(provider.device, Irp, "WskSocket", 0, 0, Flags, start)


@kroutine("wskprov")
def WskSocketConnect(Client: Any, SocketType: int, Protocol: int, LocalAddress: Any, RemoteAddress: Any, Flags: int,
                     SocketContext: Any, Dispatch: Any, OwningProcess: Any, OwningThread: Any,
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
                _update_handlers(sock)
                completion.done(STATUS_SUCCESS, sock)
            else:
                from .socket import destroy_socket
                conn.context = None
                conn.close()
                destroy_socket(sock)
                completion.done(result, None)

        result = conn.connect(remote, connected)
        if result != STATUS_PENDING and completion.early is None:
            from .socket import destroy_socket
            conn.context = None
            conn.close()
            destroy_socket(sock)
        return completion.started(result)

    return call_wskprov(provider.device, Irp, "WskSocketConnect", 0, 0, Flags, start)


@kroutine("wskprov")
def WskControlClient(Client: Any, ControlCode: int, InputSize: int, InputBuffer: Any, OutputSize: int,
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
    return call_wskprov(provider.device, Irp, "WskControlClient", 0, InputSize, ControlCode,
                        lambda irp: (complete_irp(irp, status, 0), status)[1])


# ==================================================================================================
# the driver
# ==================================================================================================

@kroutine("wskprov")
def WskProvDispatchInternalDeviceControl(DeviceObject: Any, Irp: Any) -> int:
    """Run the WSK operation the client's IRP carries (its parameters name it)."""
    params = IoGetCurrentIrpStackLocation(Irp).parameters
    return params.start(Irp)


def _make_dispatch(k: Any) -> tuple[WSK_PROVIDER_DISPATCH, dict[int, Any]]:
    """Per-kernel dispatch tables: their `address` is a data symbol in the wskprov image."""
    def at(name: str) -> int:
        return k.symbol_address(f"wskprov!{name}")

    basic = WSK_PROVIDER_BASIC_DISPATCH(WskControlSocket, WskCloseSocket, at("WskProBasicDispatch"))
    listen = WSK_PROVIDER_LISTEN_DISPATCH(basic, WskBind, WskAccept, WskInspectComplete, WskGetLocalAddress,
                                          at("WskProListenDispatch"))
    connection = WSK_PROVIDER_CONNECTION_DISPATCH(basic, WskBind, WskConnect, WskGetLocalAddress,
                                                  WskGetRemoteAddress, WskSend, WskReceive, WskDisconnect,
                                                  WskRelease, address=at("WskProConnectionDispatch"))
    datagram = WSK_PROVIDER_DATAGRAM_DISPATCH(basic, WskBind, WskSendTo, WskReceiveFrom, WskRelease,
                                              WskGetLocalAddress, address=at("WskProDatagramDispatch"))
    stream = WSK_PROVIDER_STREAM_DISPATCH(basic, WskBind, WskAccept, WskConnect, WskListen, WskSend, WskReceive,
                                          WskDisconnect, WskRelease, WskGetLocalAddress, WskGetRemoteAddress,
                                          WskInspectComplete, address=at("WskProStreamDispatch"))
    provider_dispatch = WSK_PROVIDER_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, WskSocket, WskSocketConnect,
                                              WskControlClient, WskGetAddressInfo, WskFreeAddressInfo,
                                              WskGetNameInfo, at("WskProviderDispatch"))
    tables = {WSK_FLAG_BASIC_SOCKET: basic, WSK_FLAG_LISTEN_SOCKET: listen, WSK_FLAG_CONNECTION_SOCKET: connection,
              WSK_FLAG_DATAGRAM_SOCKET: datagram, WSK_FLAG_STREAM_SOCKET: stream}
    return provider_dispatch, tables


@kroutine("wskprov")
def WskProvDriverEntry(DriverObject: Any, RegistryPath: str) -> int:
    k = current_kernel()
    status, device = IoCreateDevice(DriverObject, 0, WSKPROV_DEVICE_NAME, FILE_DEVICE_NETWORK)
    if device is None:
        return status
    device.flags &= ~DO_DEVICE_INITIALIZING
    DriverObject.MajorFunction[IRP_MJ_INTERNAL_DEVICE_CONTROL] = WskProvDispatchInternalDeviceControl
    DriverObject.driver_unload = WskProvUnload
    dispatch, tables = _make_dispatch(k)
    provider = WskProvider(k, DriverObject, device, dispatch)
    provider.socket_dispatch = tables
    k.extensions["wsk"] = provider
    state = nmr(k)
    state.provider = provider
    KeSetEvent(state.provider_ready, 0, False)  # captures waiting for the provider go on
    return STATUS_SUCCESS


@kroutine("wskprov")
def WskProvUnload(DriverObject: Any) -> None:
    """Detach the provider NPI.  Sockets still open are the verifier's to report (pool tag 'WskS')."""
    k = current_kernel()
    state = nmr(k)
    state.provider = None
    KeResetEvent(state.provider_ready)
    k.extensions.pop("wsk", None)


DRIVER_IMAGE = DriverImage("wskprov", "wskprov", WskProvDriverEntry, image="wskprov.sys",
                           pool_tags=("WskS", "WskI", "WskA", "WskD"),
                           description="Winsock Kernel provider (emulated)")

_ = SockAddr
