"""The thesis's kernel sockets library: a Berkeley API over TDI.

Socket handles are small integers indexing a per-host table.  Each call that talks to
tdx is a generator run on a system thread (``fd = yield from accept(s)``): it builds an
IRP with TdiBuild*, sends it with IoCallDriver and waits on an event its completion
routine sets (KsSyncCompletion returns STATUS_MORE_PROCESSING_REQUIRED, so the IRP comes
back to the library and is freed there).

``bind`` opens a transport address object (ZwCreateFile with TdiTransportAddress);
``connect`` and ``accept`` open connection endpoints (TdiConnectionContext), associate
them with it (TDI_ASSOCIATE_ADDRESS) and connect or listen.  ``listen`` comes in the two
designs the thesis compares:

KS_LISTEN_IRP    ``accept`` issues one TDI_LISTEN on a fresh endpoint and waits: a fixed
                 backlog of one (a peer arriving while no accept is waiting is refused).
KS_LISTEN_EVENT  a TDI_EVENT_CONNECT handler (KsConnectEventHandler, DISPATCH_LEVEL) takes
                 one of `backlog` endpoints opened in advance and returns its TDI_ACCEPT
                 IRP; it cannot open a replacement itself (ZwCreateFile is PASSIVE_LEVEL
                 only), so it queues a work item (KsReplenishWorkItem) that does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generator

from stack.kernel import (KEVENT, NT_SUCCESS, STATUS_CONNECTION_REFUSED, STATUS_INSUFFICIENT_RESOURCES,
                          STATUS_INVALID_PARAMETER, STATUS_IO_TIMEOUT, STATUS_MORE_PROCESSING_REQUIRED, STATUS_SUCCESS,
                          STATUS_TIMEOUT,
                          DelayedWorkQueue, ExAllocatePoolWithTag, ExFreePoolWithTag, Executive, IoAllocateIrp,
                          IoAllocateMdl, IoAllocateWorkItem, IoFreeIrp, IoFreeMdl, IoQueueWorkItem, KernelMode,
                          KeSetEvent, KeWaitForSingleObject, MmBuildMdlForNonPagedPool, NonPagedPoolNx,
                          NotificationEvent, SynchronizationEvent, current_kernel, kroutine)
from stack.kernel.mdl import Mdl, mdl_chain_bytes
from stack.tcpip.addr import SockAddr

from .build import (TdiBuildAccept, TdiBuildAssociateAddress, TdiBuildConnect, TdiBuildDisconnect, TdiBuildListen,
                    TdiBuildQueryInformation, TdiBuildReceive, TdiBuildSend, TdiBuildSetEventHandler)
from .constants import (TDI_DISCONNECT_ABORT, TDI_DISCONNECT_RELEASE, TDI_EVENT_CONNECT, TDI_QUERY_ADDRESS_INFO,
                        TdiConnectionContext,
                        TdiTransportAddress)
from .structs import FILE_FULL_EA_INFORMATION, TDI_CONNECTION_INFORMATION, TRANSPORT_ADDRESS, parse_transport_address
from .zw import (IO_STATUS_BLOCK, FILE_OBJECT, GENERIC_READ, GENERIC_WRITE, ObDereferenceObject,
                 ObReferenceObjectByHandle, Ref, ZwClose, ZwCreateFile)

MODULE = "ksock"
BUFFER_TAG = "KsTb"
KS_LISTEN_IRP = "TDI_LISTEN"  # accept posts a TDI_LISTEN: backlog of one
KS_LISTEN_EVENT = "TDI_EVENT_CONNECT"  # connect event handler + endpoints made by a work item
SD_RECEIVE, SD_SEND, SD_BOTH = 0, 1, 2
KEY = "tdi.ksock"


@dataclass(slots=True, eq=False)
class KsConnectionContext:
    """The CONNECTION_CONTEXT the library gives tdx for each endpoint: event handlers get it back,
    and `owner` is free for the library's client (khttpd keeps its connection there)."""

    owner: Any = None


@dataclass(slots=True)
class TdiEndpoint:
    """One opened TDI file (handle + referenced FILE_OBJECT) and what the library keeps with it."""

    handle: int
    file_object: FILE_OBJECT
    context: KsConnectionContext | None = None
    accept_irp: Any = None  # KS_LISTEN_EVENT: the preallocated TDI_ACCEPT IRP
    return_info: TDI_CONNECTION_INFORMATION = field(default_factory=TDI_CONNECTION_INFORMATION)
    remote: SockAddr | None = None


@dataclass(eq=False)
class KSOCKET:
    fd: int
    family: int  # 4 or 6
    address_object: TdiEndpoint | None = None  # the transport address object
    connection: TdiEndpoint | None = None  # the connection endpoint
    local: SockAddr | None = None
    design: str | None = None  # listening: KS_LISTEN_IRP or KS_LISTEN_EVENT
    backlog: int = 0
    free: deque = field(default_factory=deque)  # KS_LISTEN_EVENT: endpoints ready for the handler
    accepted: deque = field(default_factory=deque)  # KS_LISTEN_EVENT: connected, waiting for accept()
    accept_ready: KEVENT = field(default_factory=lambda: KEVENT(SynchronizationEvent, False))
    accept_callback: Any = None  # KS_LISTEN_EVENT: called at DISPATCH_LEVEL with each new socket's fd
    refused: int = 0  # KS_LISTEN_EVENT: peers refused for want of a free endpoint
    replenishing: int = 0
    closed: bool = False


@dataclass(eq=False)
class KsGlobals:
    device: Any  # the owning driver's device object (for work items)
    sockets: dict[int, KSOCKET] = field(default_factory=dict)
    next_fd: int = 3


def ks_startup(DeviceObject: Any) -> KsGlobals:
    """WSAStartup's counterpart: the library needs its driver's device for work items."""
    k = current_kernel()
    g = k.extensions.get(KEY)
    if g is None:
        g = k.extensions[KEY] = KsGlobals(DeviceObject)
    if k.module(MODULE) is None:
        k.load_module(MODULE, "ksock.sys", 0x10000)  # an export driver (kernel-mode DLL) its clients link to
    return g


def _g() -> KsGlobals:
    g = current_kernel().extensions.get(KEY)
    if g is None:
        raise RuntimeError("ks_startup was not called on this host")
    return g


def KsGetSocket(fd: int) -> KSOCKET | None:
    return _g().sockets.get(fd)


def _device_name(family: int) -> str:
    return "\\Device\\Tcp" if family == 4 else "\\Device\\Tcp6"


# --- synchronous IRPs ------------------------------------------------------------------------------

@kroutine(MODULE)
def KsSyncCompletion(DeviceObject: Any, Irp: Any, Context: KEVENT) -> int:
    KeSetEvent(Context)
    return STATUS_MORE_PROCESSING_REQUIRED


def _call(build: Any, endpoint: TdiEndpoint, *args: Any,
          timeout_ns: int | None = None) -> Generator[Any, Any, tuple[int, int]]:
    """Build one TDI request on a fresh IRP, IoCallDriver it, wait: (status, Information).

    With `timeout_ns`, a request still pending then is ended by aborting the connection
    (TDI_DISCONNECT_ABORT fails it back) and (STATUS_IO_TIMEOUT, 0) is returned."""
    from stack.kernel import IoCallDriver
    device = endpoint.file_object.DeviceObject
    irp = IoAllocateIrp(device.stack_size + 1)
    if irp is None:
        return STATUS_INSUFFICIENT_RESOURCES, 0
    done = KEVENT(NotificationEvent, False)
    build(irp, device, endpoint.file_object, KsSyncCompletion, done, *args)
    IoCallDriver(device, irp)
    timed_out = False
    if not done.signaled and timeout_ns is not None:
        waited = yield KeWaitForSingleObject(done, Executive, KernelMode, False, -max(1, timeout_ns // 100))
        if waited == STATUS_TIMEOUT and not done.signaled:
            timed_out = True
            _abort_endpoint(endpoint)
    if not done.signaled:
        yield KeWaitForSingleObject(done, Executive, KernelMode, False, None)
    status, information = irp.IoStatus.Status, irp.IoStatus.Information
    IoFreeIrp(irp)
    return (STATUS_IO_TIMEOUT, 0) if timed_out else (status, information)


def _open(family: int, ea: FILE_FULL_EA_INFORMATION, device: str | None = None) -> tuple[int, TdiEndpoint | None]:
    handle, iosb = Ref(), IO_STATUS_BLOCK()
    status = ZwCreateFile(handle, GENERIC_READ | GENERIC_WRITE, device or _device_name(family), iosb, EaBuffer=ea,
                          EaLength=len(ea.EaName) + 9)
    if not NT_SUCCESS(status):
        return status, None
    file_object = Ref()
    ObReferenceObjectByHandle(handle.value, 0, None, KernelMode, file_object)
    return STATUS_SUCCESS, TdiEndpoint(handle.value, file_object.value)


def _close(endpoint: TdiEndpoint | None) -> None:
    if endpoint is None:
        return
    if endpoint.accept_irp is not None:
        IoFreeIrp(endpoint.accept_irp)
        endpoint.accept_irp = None
    ObDereferenceObject(endpoint.file_object)
    ZwClose(endpoint.handle)


@kroutine(MODULE)
def KsOpenConnection(sock: KSOCKET, context: Any) -> Generator[Any, Any, tuple[int, TdiEndpoint | None]]:
    """A connection endpoint associated with the socket's address object."""
    context = context if context is not None else KsConnectionContext()
    status, endpoint = _open(sock.family, FILE_FULL_EA_INFORMATION(TdiConnectionContext, context))
    if endpoint is None:
        return status, None
    endpoint.context = context
    status, _ = yield from _call(TdiBuildAssociateAddress, endpoint, sock.address_object.handle)
    if not NT_SUCCESS(status):
        _close(endpoint)
        return status, None
    return STATUS_SUCCESS, endpoint


# --- the Berkeley calls ----------------------------------------------------------------------------

def socket(af: int, type_: int = 1, protocol: int = 6) -> int:
    """A TCP socket handle (af 2 = AF_INET, 23 = AF_INET6); nothing is opened until bind/connect."""
    g = _g()
    fd = g.next_fd
    g.next_fd += 1
    g.sockets[fd] = KSOCKET(fd, 6 if af == 23 else 4)
    return fd


@kroutine(MODULE)
def bind(fd: int, local: SockAddr) -> Generator[Any, Any, int]:
    """Open the transport address object (ZwCreateFile, EA TdiTransportAddress)."""
    sock = KsGetSocket(fd)
    if sock is None or sock.address_object is not None or local.ip.version != sock.family:
        return STATUS_INVALID_PARAMETER
    status, sock.address_object = _open(sock.family, FILE_FULL_EA_INFORMATION(TdiTransportAddress,
                                                                        TRANSPORT_ADDRESS(local)))
    if NT_SUCCESS(status):
        sock.local = local
    return status
    yield  # noqa: unreachable - a generator like every call that may talk to tdx


@kroutine(MODULE)
def listen(fd: int, backlog: int, design: str = KS_LISTEN_EVENT,
           accept_callback: Any = None) -> Generator[Any, Any, int]:
    """With KS_LISTEN_EVENT and an `accept_callback(listen_fd, new_fd)`, each connection is handed
    over at DISPATCH_LEVEL as its TDI_ACCEPT completes (before any data is indicated) instead of
    waiting for accept()."""
    sock = KsGetSocket(fd)
    if sock is None or sock.address_object is None or sock.design is not None:
        return STATUS_INVALID_PARAMETER
    sock.design = design
    sock.accept_callback = accept_callback
    sock.backlog = 1 if design == KS_LISTEN_IRP else max(1, backlog)
    if design == KS_LISTEN_IRP:
        return STATUS_SUCCESS
    for _ in range(sock.backlog):
        status = yield from KsAddFreeEndpoint(sock)
        if not NT_SUCCESS(status):
            return status
    status, _ = yield from _call(TdiBuildSetEventHandler, sock.address_object, TDI_EVENT_CONNECT, KsConnectEventHandler,
                                 sock)
    return status


@kroutine(MODULE)
def KsAddFreeEndpoint(sock: KSOCKET) -> Generator[Any, Any, int]:
    """PASSIVE_LEVEL: one more endpoint (and its TDI_ACCEPT IRP) for the connect handler to hand out."""
    status, endpoint = yield from KsOpenConnection(sock, None)
    if endpoint is None:
        return status
    endpoint.accept_irp = IoAllocateIrp(endpoint.file_object.DeviceObject.stack_size + 1)
    if endpoint.accept_irp is None:
        _close(endpoint)
        return STATUS_INSUFFICIENT_RESOURCES
    sock.free.append(endpoint)
    return STATUS_SUCCESS


@kroutine(MODULE)
def KsConnectEventHandler(TdiEventContext: KSOCKET, RemoteAddressLength: int, RemoteAddress: bytes,
                          UserDataLength: int, UserData: Any, OptionsLength: int, Options: Any,
                          ConnectionContext: Ref, AcceptIrp: Ref) -> int:
    """ClientEventConnect, at DISPATCH_LEVEL: hand out a ready endpoint's TDI_ACCEPT IRP."""
    sock = TdiEventContext
    if sock.closed or not sock.free:
        sock.refused += 1
        return STATUS_CONNECTION_REFUSED
    endpoint: TdiEndpoint = sock.free.popleft()
    endpoint.remote = parse_transport_address(RemoteAddress)
    irp = endpoint.accept_irp
    from stack.kernel import IoReuseIrp, STATUS_UNSUCCESSFUL
    IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
    TdiBuildAccept(irp, endpoint.file_object.DeviceObject, endpoint.file_object, KsAcceptComplete,
                   (sock, endpoint), None, endpoint.return_info)
    ConnectionContext.value = endpoint
    AcceptIrp.value = irp
    # ZwCreateFile cannot run here: a work item opens the replacement at PASSIVE_LEVEL.
    sock.replenishing += 1
    item = IoAllocateWorkItem(_g().device)
    IoQueueWorkItem(item, KsReplenishWorkItem, DelayedWorkQueue, (sock, item))
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine(MODULE)
def KsAcceptComplete(DeviceObject: Any, Irp: Any, Context: tuple[KSOCKET, TdiEndpoint]) -> int:
    sock, endpoint = Context
    if NT_SUCCESS(Irp.IoStatus.Status):
        if sock.accept_callback is not None:
            sock.accept_callback(sock.fd, _adopt(sock, endpoint))
            return STATUS_MORE_PROCESSING_REQUIRED
        sock.accepted.append(endpoint)
        KeSetEvent(sock.accept_ready)
    return STATUS_MORE_PROCESSING_REQUIRED  # the IRP stays with the endpoint (freed at close)


@kroutine(MODULE)
def KsReplenishWorkItem(DeviceObject: Any, Context: tuple[KSOCKET, Any]) -> Generator[Any, Any, None]:
    from stack.kernel import IoFreeWorkItem
    sock, item = Context
    IoFreeWorkItem(item)
    if not sock.closed:
        yield from KsAddFreeEndpoint(sock)
    sock.replenishing -= 1


@kroutine(MODULE)
def accept(fd: int) -> Generator[Any, Any, int]:
    """A connected socket's handle, or -1."""
    sock = KsGetSocket(fd)
    if sock is None or sock.design is None:
        return -1
    if sock.design == KS_LISTEN_EVENT:
        while not sock.accepted:
            if sock.closed:
                return -1
            yield KeWaitForSingleObject(sock.accept_ready, Executive, KernelMode, False, None)
        endpoint = sock.accepted.popleft()
    else:
        status, endpoint = yield from KsOpenConnection(sock, None)
        if endpoint is None:
            return -1
        status, _ = yield from _call(TdiBuildListen, endpoint, 0, None, endpoint.return_info)
        if not NT_SUCCESS(status):
            _close(endpoint)
            return -1
        endpoint.remote = parse_transport_address(endpoint.return_info.RemoteAddress)
    return _adopt(sock, endpoint)


def _adopt(listener: KSOCKET, endpoint: TdiEndpoint) -> int:
    """A socket handle for an accepted endpoint (any IRQL: only the library's table changes)."""
    child = KsGetSocket(socket(23 if listener.family == 6 else 2))
    child.connection = endpoint
    child.local = listener.local
    return child.fd


def connection_context(fd: int) -> KsConnectionContext | None:
    sock = KsGetSocket(fd)
    return sock.connection.context if sock is not None and sock.connection is not None else None


def connection_file(fd: int) -> FILE_OBJECT | None:
    """The connection endpoint's file object, for a client that builds its own TDI requests."""
    sock = KsGetSocket(fd)
    return sock.connection.file_object if sock is not None and sock.connection is not None else None


@kroutine(MODULE)
def set_event_handler(fd: int, event: int, handler: Any, context: Any) -> Generator[Any, Any, int]:
    """TDI_SET_EVENT_HANDLER on the socket's transport address object."""
    sock = KsGetSocket(fd)
    if sock is None or sock.address_object is None:
        return STATUS_INVALID_PARAMETER
    status, _ = yield from _call(TdiBuildSetEventHandler, sock.address_object, event, handler, context)
    return status


@kroutine(MODULE)
def connect(fd: int, remote: SockAddr) -> Generator[Any, Any, int]:
    sock = KsGetSocket(fd)
    if sock is None or sock.connection is not None or remote.ip.version != sock.family:
        return STATUS_INVALID_PARAMETER
    if sock.address_object is None:
        any_ip = "0.0.0.0" if sock.family == 4 else "::"
        status = yield from bind(fd, SockAddr(any_ip, 0))
        if not NT_SUCCESS(status):
            return status
    status, endpoint = yield from KsOpenConnection(sock, None)
    if endpoint is None:
        return status
    request = TDI_CONNECTION_INFORMATION.for_address(remote)
    status, _ = yield from _call(TdiBuildConnect, endpoint, None, request, endpoint.return_info)
    if not NT_SUCCESS(status):
        _close(endpoint)
        return status
    endpoint.remote = remote
    sock.connection = endpoint
    return STATUS_SUCCESS


@kroutine(MODULE)
def send_mdl(fd: int, mdl: Mdl, length: int, flags: int = 0) -> Generator[Any, Any, int]:
    """TDI_SEND of an MDL chain (zero copy); bytes sent or -1."""
    sock = KsGetSocket(fd)
    if sock is None or sock.connection is None:
        return -1
    status, information = yield from _call(TdiBuildSend, sock.connection, mdl, flags, length)
    return int(information or 0) if NT_SUCCESS(status) else -1


def _buffer(length: int) -> tuple[int, Mdl | None]:
    buffer = ExAllocatePoolWithTag(NonPagedPoolNx, max(length, 1), BUFFER_TAG)
    if not buffer:
        return 0, None
    mdl = IoAllocateMdl(buffer, max(length, 1))
    if mdl is None:
        ExFreePoolWithTag(buffer, BUFFER_TAG)
        return 0, None
    MmBuildMdlForNonPagedPool(mdl)
    return buffer, mdl


def _free_buffer(buffer: int, mdl: Mdl | None) -> None:
    if mdl is not None:
        IoFreeMdl(mdl)
    if buffer:
        ExFreePoolWithTag(buffer, BUFFER_TAG)


@kroutine(MODULE)
def send(fd: int, data: bytes, flags: int = 0) -> Generator[Any, Any, int]:
    """Copy `data` into a nonpaged buffer once and TDI_SEND it; bytes sent or -1."""
    if not data:
        return 0
    buffer, mdl = _buffer(len(data))
    if mdl is None:
        return -1
    k = current_kernel()
    k.write(buffer, data)
    k.copies.count(len(data), "ksock send")
    try:
        return (yield from send_mdl(fd, mdl, len(data), flags))
    finally:
        _free_buffer(buffer, mdl)


@kroutine(MODULE)
def recv(fd: int, length: int) -> Generator[Any, Any, bytes | None]:
    """TDI_RECEIVE up to `length` bytes: the bytes, b"" at the peer's FIN, None on error."""
    sock = KsGetSocket(fd)
    if sock is None or sock.connection is None or length <= 0:
        return None
    buffer, mdl = _buffer(length)
    if mdl is None:
        return None
    try:
        status, information = yield from _call(TdiBuildReceive, sock.connection, mdl, 0, length)
        if not NT_SUCCESS(status):
            return None
        return mdl_chain_bytes(mdl, 0, int(information or 0)) if information else b""
    finally:
        _free_buffer(buffer, mdl)


@kroutine(MODULE)
def recv_mdl(fd: int, mdl: Mdl, length: int, timeout_ns: int | None = None) -> Generator[Any, Any, int]:
    """TDI_RECEIVE into the caller's MDL: bytes received (0 at the peer's FIN), -1 on error, -2 when
    `timeout_ns` passed first (the connection was then aborted)."""
    sock = KsGetSocket(fd)
    if sock is None or sock.connection is None or length <= 0:
        return -1
    status, information = yield from _call(TdiBuildReceive, sock.connection, mdl, 0, length, timeout_ns=timeout_ns)
    if status == STATUS_IO_TIMEOUT:
        return -2
    return int(information or 0) if NT_SUCCESS(status) else -1


@kroutine(MODULE)
def getsockname(fd: int) -> Generator[Any, Any, SockAddr | None]:
    """TDI_QUERY_INFORMATION(TDI_QUERY_ADDRESS_INFO) on the connection (or the address object)."""
    sock = KsGetSocket(fd)
    endpoint = sock.connection or sock.address_object if sock is not None else None
    if endpoint is None:
        return None
    buffer, mdl = _buffer(64)
    if mdl is None:
        return None
    try:
        status, information = yield from _call(TdiBuildQueryInformation, endpoint, TDI_QUERY_ADDRESS_INFO, mdl)
        if not NT_SUCCESS(status):
            return None
        return parse_transport_address(mdl_chain_bytes(mdl, 4, int(information) - 4))  # after ActivityCount
    finally:
        _free_buffer(buffer, mdl)


@kroutine(MODULE)
def KsFreeIrpComplete(DeviceObject: Any, Irp: Any, Context: Any) -> int:
    IoFreeIrp(Irp)
    return STATUS_MORE_PROCESSING_REQUIRED


def abort_nowait(fd: int) -> None:
    """TDI_DISCONNECT(TDI_DISCONNECT_ABORT) without waiting (any IRQL <= DISPATCH_LEVEL): a RST now."""
    sock = KsGetSocket(fd)
    if sock is None or sock.connection is None:
        return
    _abort_endpoint(sock.connection)


def _abort_endpoint(endpoint: TdiEndpoint) -> None:
    from stack.kernel import IoCallDriver
    file_object = endpoint.file_object
    irp = IoAllocateIrp(file_object.DeviceObject.stack_size + 1)
    if irp is None:
        return
    TdiBuildDisconnect(irp, file_object.DeviceObject, file_object, KsFreeIrpComplete, None, None,
                       TDI_DISCONNECT_ABORT, None, None)
    IoCallDriver(file_object.DeviceObject, irp)


@kroutine(MODULE)
def shutdown(fd: int, how: int = SD_SEND) -> Generator[Any, Any, int]:
    """SD_SEND / SD_BOTH: TDI_DISCONNECT with TDI_DISCONNECT_RELEASE (our FIN)."""
    sock = KsGetSocket(fd)
    if sock is None or sock.connection is None:
        return STATUS_INVALID_PARAMETER
    if how == SD_RECEIVE:
        return STATUS_SUCCESS
    status, _ = yield from _call(TdiBuildDisconnect, sock.connection, None, TDI_DISCONNECT_RELEASE, None, None)
    return status


@kroutine(MODULE)
def send_and_disconnect(fd: int, data: bytes) -> Generator[Any, Any, int]:
    """The thesis's send-and-disconnect: TDI_SEND, then TDI_DISCONNECT (release) at once, without
    waiting for the send's acknowledgement; then wait for both.  Bytes sent, or -1."""
    from stack.kernel import IoCallDriver
    sock = KsGetSocket(fd)
    if sock is None or sock.connection is None or not data:
        return -1
    buffer, mdl = _buffer(len(data))
    if mdl is None:
        return -1
    k = current_kernel()
    k.write(buffer, data)
    k.copies.count(len(data), "ksock send")
    file_object = sock.connection.file_object
    device = file_object.DeviceObject
    irps, events = [], []
    for build, args in ((TdiBuildSend, (mdl, 0, len(data))),
                        (TdiBuildDisconnect, (None, TDI_DISCONNECT_RELEASE, None, None))):
        irp = IoAllocateIrp(device.stack_size + 1)
        if irp is None:
            break
        done = KEVENT(NotificationEvent, False)
        build(irp, device, file_object, KsSyncCompletion, done, *args)
        IoCallDriver(device, irp)  # the disconnect goes down while the send is still pending
        irps.append(irp)
        events.append(done)
    for done in events:
        if not done.signaled:
            yield KeWaitForSingleObject(done, Executive, KernelMode, False, None)
    sent = int(irps[0].IoStatus.Information or 0) if irps and NT_SUCCESS(irps[0].IoStatus.Status) else -1
    for irp in irps:
        IoFreeIrp(irp)
    _free_buffer(buffer, mdl)
    return sent


@kroutine(MODULE)
def abort(fd: int) -> Generator[Any, Any, int]:
    sock = KsGetSocket(fd)
    if sock is None or sock.connection is None:
        return STATUS_INVALID_PARAMETER
    status, _ = yield from _call(TdiBuildDisconnect, sock.connection, None, TDI_DISCONNECT_ABORT, None, None)
    return status


def getpeername(fd: int) -> SockAddr | None:
    sock = KsGetSocket(fd)
    if sock is None or sock.connection is None:
        return None
    return sock.connection.remote


@kroutine(MODULE)
def closesocket(fd: int) -> Generator[Any, Any, int]:
    """Close the handles (IRP_MJ_CLEANUP aborts a connection never disconnected)."""
    g = _g()
    sock = g.sockets.pop(fd, None)
    if sock is None:
        return STATUS_INVALID_PARAMETER
    sock.closed = True
    KeSetEvent(sock.accept_ready)
    while sock.replenishing:
        # a work item is opening an endpoint for us: let it finish before the address goes
        from stack.kernel import KeDelayExecutionThread
        yield KeDelayExecutionThread(KernelMode, False, -10_000)
    _close(sock.connection)
    for endpoint in list(sock.free) + list(sock.accepted):
        _close(endpoint)
    sock.free.clear()
    sock.accepted.clear()
    _close(sock.address_object)
    return STATUS_SUCCESS


# For drivers and tests that build their own requests: one TDI IRP, sent and waited for.
tdi_request = _call
open_tdi = _open
close_tdi = _close
