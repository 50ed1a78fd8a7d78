"""khttpd over WSK: registration, the dual-stack listening socket, the accept event, and the
KSOCKET-style "one reused IRP + an event" pattern every worker-side WSK call goes through.

KhttpdStartListening   WskRegister, WskCaptureProviderNPI, WSK_SET_STATIC_EVENT_CALLBACKS
                       (WSK_EVENT_ACCEPT), WskSocket(listen), IPV6_V6ONLY off, WskBind; with
                       event-driven connections also SO_WSK_EVENT_CALLBACK (wsk_events.py).
KhttpdAcceptEvent      (DISPATCH_LEVEL) takes the connection: a worker thread (driver.py) or,
                       event-driven, KHTTPD_CONNECTION_DISPATCH (wsk_events.py).
_call_and_wait         issue one WSK call on a context's reused IRP and wait for it.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Generator

from stack.drivers.khttpd import tdi_transport
from stack.kernel import (NT_SUCCESS, STATUS_INSUFFICIENT_RESOURCES, STATUS_TIMEOUT, STATUS_MORE_PROCESSING_REQUIRED,
                          STATUS_PENDING, STATUS_REQUEST_NOT_ACCEPTED, STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
                          IoAllocateIrp, IoFreeIrp, IoReuseIrp, IoSetCompletionRoutine, KeSetEvent,
                          KeWaitForSingleObject, kroutine)
from stack.kernel.ke import KEVENT, Executive, KernelMode, SynchronizationEvent, KeClearEvent
from stack.wsk import (AF_INET, AF_INET6, IPPROTO_IPV6, IPPROTO_TCP, IPV6_V6ONLY, SOCK_STREAM, WSK_CLIENT_DISPATCH,
                       WSK_CLIENT_LISTEN_DISPATCH, WSK_CLIENT_NPI, WSK_EVENT_ACCEPT, WSK_EVENT_CALLBACK_CONTROL,
                       WSK_FLAG_LISTEN_SOCKET, WSK_INFINITE_WAIT, WSK_PROVIDER_NPI, WSK_REGISTRATION,
                       WSK_SET_STATIC_EVENT_CALLBACKS, SOCKADDR_IN, SOCKADDR_IN6, MAKE_WSK_VERSION, Ref,
                       NPI_WSK_INTERFACE_ID, WSK_EVENT_CALLBACK_CONTROL_SIZE, WSK_FLAG_ABORTIVE, WskCaptureProviderNPI,
                       WskRegister, WskSetOption)
from stack.wsk.constants import SO_CONDITIONAL_ACCEPT, SOL_SOCKET

from .state import KhttpdConfig, KhttpdGlobals, KhttpdAsyncContext, KhttpdConnection


# Address bytes -> their text: a server sees the same few clients over and over.
_ADDRESS_TEXT: dict[bytes | str, str] = {}
_ADDRESS_TEXT_LIMIT = 4096


def _sockaddr_text(sockaddr: Any) -> str:
    """10.0.0.2 for SOCKADDR_IN and for a v4-mapped SOCKADDR_IN6; fd00::2 otherwise."""
    raw = getattr(sockaddr, "sin6_addr", None)
    if raw is None:
        raw = getattr(sockaddr, "sin_addr", b"")
    key = raw if isinstance(raw, str) else bytes(raw)
    text = _ADDRESS_TEXT.get(key)
    if text is None:
        text = _address_text(raw)
        if len(_ADDRESS_TEXT) < _ADDRESS_TEXT_LIMIT:
            _ADDRESS_TEXT[key] = text
    return text


def _address_text(raw: Any) -> str:
    try:
        address = ipaddress.ip_address(bytes(raw)) if not isinstance(raw, str) else ipaddress.ip_address(raw)
    except ValueError:
        return "-"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _backend_sockaddr(config: KhttpdConfig, local: str) -> Any:
    address = ipaddress.ip_address(config.BackendAddress or local)
    if isinstance(address, ipaddress.IPv4Address):
        return SOCKADDR_IN(sin_family=AF_INET, sin_port=config.BackendPort, sin_addr=address.packed)
    return SOCKADDR_IN6(sin6_family=AF_INET6, sin6_port=config.BackendPort, sin6_addr=address.packed)


def _basic_dispatch(socket: Any) -> Any:
    """((PWSK_PROVIDER_BASIC_DISPATCH)Socket->Dispatch): the Basic part of any socket's table."""
    dispatch = socket.Dispatch
    return getattr(dispatch, "Basic", dispatch)


def _new_async_context() -> KhttpdAsyncContext | None:
    irp = IoAllocateIrp(1)
    if irp is None:
        return None
    return KhttpdAsyncContext(irp, KEVENT(SynchronizationEvent, False))


def _free_async_context(ctx: KhttpdAsyncContext | None) -> None:
    if ctx is not None:
        IoFreeIrp(ctx.Irp)


@kroutine("khttpd")
def KhttpdSyncIrpComplete(DeviceObject: Any, Irp: Any, Context: KEVENT) -> int:
    """Completion of a call a worker waits for: wake it, keep the IRP for reuse."""
    KeSetEvent(Context)
    return STATUS_MORE_PROCESSING_REQUIRED


def _call_and_wait(ctx: KhttpdAsyncContext, call: Any, *args: Any, timeout_ns: int | None = None,
                   on_timeout: Any = None) -> Generator[Any, Any, int]:
    """Issue one WSK call on the context's reused IRP and wait for it (KsSend-style).

    With `timeout_ns`: when it passes first, `on_timeout()` must make the call fail back
    (an abortive disconnect does), and the wait goes on for that completion."""
    IoReuseIrp(ctx.Irp, STATUS_UNSUCCESSFUL)
    KeClearEvent(ctx.CompletionEvent)
    IoSetCompletionRoutine(ctx.Irp, KhttpdSyncIrpComplete, ctx.CompletionEvent, True, True, True)
    status = call(*args, ctx.Irp)
    if (status == STATUS_PENDING or not ctx.CompletionEvent.signaled) and timeout_ns is not None:
        # A synchronization event: a satisfied wait resets it, so only a timed-out wait waits again.
        waited = yield KeWaitForSingleObject(ctx.CompletionEvent, Executive, KernelMode, False,
                                             -max(1, timeout_ns // 100))
        if waited == STATUS_TIMEOUT:
            on_timeout()
            yield KeWaitForSingleObject(ctx.CompletionEvent, Executive, KernelMode, False, None)
    elif status == STATUS_PENDING or not ctx.CompletionEvent.signaled:
        yield KeWaitForSingleObject(ctx.CompletionEvent, Executive, KernelMode, False, None)
    else:
        KeClearEvent(ctx.CompletionEvent)
    return ctx.Irp.IoStatus.Status


@kroutine("khttpd")
def KhttpdStartListening(g: KhttpdGlobals) -> Generator[Any, Any, int]:
    """WskRegister, capture the provider, static accept callbacks, a dual-stack listener on Port."""
    client_dispatch = WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None, symbol="khttpd!KhttpdWskClientDispatch")
    g.registration = WSK_REGISTRATION()
    status = WskRegister(WSK_CLIENT_NPI(g, client_dispatch), g.registration)
    if not NT_SUCCESS(status):
        g.registration = None
        return status
    npi = WSK_PROVIDER_NPI()
    status = yield from WskCaptureProviderNPI(g.registration, WSK_INFINITE_WAIT, npi)
    if not NT_SUCCESS(status):
        return status
    g.provider_npi = npi
    control = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, WSK_EVENT_ACCEPT)
    status = npi.Dispatch.WskControlClient(npi.Client, WSK_SET_STATIC_EVENT_CALLBACKS,
                                           WSK_EVENT_CALLBACK_CONTROL_SIZE, control, 0, None, None, None)
    if not NT_SUCCESS(status):
        return status
    ctx = _new_async_context()
    if ctx is None:
        return STATUS_INSUFFICIENT_RESOURCES
    try:
        status = yield from _call_and_wait(ctx, npi.Dispatch.WskSocket, npi.Client, AF_INET6, SOCK_STREAM,
                                           IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET, g, KHTTPD_LISTEN_DISPATCH,
                                           None, None, None)
        if not NT_SUCCESS(status):
            return status
        g.listen_socket = ctx.Irp.IoStatus.Information
        listen = g.listen_socket.Dispatch
        # IPV6_V6ONLY off: IPv4 clients reach this listener as v4-mapped addresses.
        status = yield from _call_and_wait(ctx, _basic_dispatch(g.listen_socket).WskControlSocket,
                                           g.listen_socket, WskSetOption, IPV6_V6ONLY, IPPROTO_IPV6, 4,
                                           (0).to_bytes(4, "little"), 0, None, None)
        if NT_SUCCESS(status) and g.config.ConditionalAccept:  # before the bind: WskInspectEvent at each SYN
            status = yield from _call_and_wait(ctx, _basic_dispatch(g.listen_socket).WskControlSocket,
                                               g.listen_socket, WskSetOption, SO_CONDITIONAL_ACCEPT, SOL_SOCKET, 4,
                                               (1).to_bytes(4, "little"), 0, None, None)
        if not NT_SUCCESS(status):
            return status
        any6 = SOCKADDR_IN6(sin6_family=AF_INET6, sin6_port=g.config.Port, sin6_addr=bytes(16))
        status = yield from _call_and_wait(ctx, listen.WskBind, g.listen_socket, any6, 0)
        if NT_SUCCESS(status) and g.config.event_driven:
            from .wsk_events import KhttpdEnableConnectionEvents
            status = KhttpdEnableConnectionEvents(g)  # accepted sockets inherit receive/disconnect events
        if NT_SUCCESS(status) and int(g.config.ResponseCache):
            from .cache import KhttpdResponseCache
            g.cache = KhttpdResponseCache(int(g.config.ResponseCache))
        return status
    finally:
        _free_async_context(ctx)


def _abort_connection(connection: KhttpdConnection) -> None:
    """Unload while a client is connected: an abortive disconnect ends its pending receive."""
    if connection.tdi_fd:
        tdi_transport.abort_nowait(connection.tdi_fd)
        return
    irp = IoAllocateIrp(1)
    if irp is None:
        return
    IoSetCompletionRoutine(irp, KhttpdFreeIrpComplete, None, True, True, True)
    connection.Socket.Dispatch.WskDisconnect(connection.Socket, None, WSK_FLAG_ABORTIVE, irp)


@kroutine("khttpd")
def KhttpdFreeIrpComplete(DeviceObject: Any, Irp: Any, Context: Any) -> int:
    IoFreeIrp(Irp)
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine("khttpd")
def KhttpdAcceptEvent(SocketContext: KhttpdGlobals, Flags: int, LocalAddress: Any, RemoteAddress: Any,
                      AcceptSocket: Any, AcceptSocketContext: Ref, AcceptSocketDispatch: Ref) -> int:
    """A TCP connection is established: take it and hand it to a worker (no waiting here)."""
    from .driver import KhttpdNewConnection, KhttpdQueueConnection
    g = SocketContext
    if AcceptSocket is None:  # the listening socket is going away
        return STATUS_SUCCESS
    if g.stopping or g.device is None:
        return STATUS_REQUEST_NOT_ACCEPTED
    if g.config.ConditionalAccept:
        from .syn_inspect import KhttpdAdmitted
        KhttpdAdmitted(g)
    # The addresses are valid only during the callback (as in C): keep their text.
    connection = KhttpdNewConnection(g, AcceptSocket, _sockaddr_text(RemoteAddress), _sockaddr_text(LocalAddress))
    if connection is None:
        return STATUS_REQUEST_NOT_ACCEPTED
    AcceptSocketContext.value = connection
    if g.config.event_driven:  # receive/disconnect events (wsk_events.py): no worker thread
        from .wsk_events import KHTTPD_CONNECTION_DISPATCH, KhttpdWskAcceptEventDriven
        AcceptSocketDispatch.value = KHTTPD_CONNECTION_DISPATCH
        KhttpdWskAcceptEventDriven(connection)
        return STATUS_SUCCESS
    AcceptSocketDispatch.value = None  # no connection callbacks: receives are IRP-based
    KhttpdQueueConnection(connection)
    return STATUS_SUCCESS


from .syn_inspect import KhttpdAbortEvent, KhttpdInspectEvent  # noqa: E402

# WskInspectEvent / WskAbortEvent are called only when SO_CONDITIONAL_ACCEPT is on (ConditionalAccept=1).
KHTTPD_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH(KhttpdAcceptEvent, KhttpdInspectEvent, KhttpdAbortEvent)
