"""khttpd: the kernel-mode web server ("High performance kernel mode web server for Windows").

Written only against the emulated kernel (stack.kernel), the Winsock Kernel
(stack.wsk) and the file system's IRP interface (stack.fs.fsio builds the
IRPs; \\Driver\\kfs answers them).  Reads like a C driver:

DriverEntry
    WPP_INIT_TRACING, make sure the volume is there (ZwLoadDriver kfs),
    WskRegister, WskCaptureProviderNPI, WskControlClient(SET_STATIC_EVENT_CALLBACKS,
    WSK_EVENT_ACCEPT), one dual-stack listening socket on port 80 (IPv6 with
    IPV6_V6ONLY off, so IPv4 clients arrive as v4-mapped addresses).
KhttpdAcceptEvent (at DISPATCH_LEVEL)
    takes the connection and queues a work item; the connection's worker
    (KhttpdConnectionWorker, a system worker thread) owns the socket from then on.
KhttpdConnectionWorker
    WskReceive with one reused IRP and one MDL over a nonpaged receive
    buffer; the HTTP core (http.py) parses; per request:
    static GET   KhttpdServeStatic: IRP_MJ_CREATE, IRP_MJ_QUERY_INFORMATION,
                 IRP_MJ_READ/IRP_MN_MDL (the cache's pages), header into a
                 nonpaged header buffer + header MDL, header MDL -> cache MDL
                 chain, ONE WskSend; KhttpdSendComplete gives the cache MDLs
                 back (IRP_MN_COMPLETE_MDL) and frees the header MDL.
                 copy_mode: IRP_MN_NORMAL into a nonpaged body buffer instead.
    HEAD         the header alone.
    dynamic      KhttpdRelayDynamic: WskSocketConnect to the user-mode server
                 (winsrv:8080), forward the raw request, read its response,
                 re-frame it for the client.
    errors       400/404/405/414/431/505 from the HTTP core; 503 over the
                 connection limit; 502 when the user-mode server fails.

Configuration: registry-style values under
``\\Registry\\Machine\\System\\CurrentControlSet\\Services\\khttpd\\Parameters``
(``kernel.extensions["registry"][path]``, a dict) or ``khttpd_image(**values)``:
Port, CopyMode, MaxConnections, BackendPort, BackendAddress, ReceiveBufferSize,
Transport (``WSK``, the default, or ``TDI``: the same driver over tdx through the TDI
sockets library, stack.tdi.sockets - listening with the connect-event design, receiving
and sending with TDI_RECEIVE / TDI_SEND IRPs; see tdi_transport.py),
ResponseCache (bytes; over TDI: hits answered in the receive event at DISPATCH_LEVEL, see
cached.py and cache.py), HeaderTimeoutMs and MaxConnectionsPerClient (slow clients),
SendAndDisconnect (the last response carries the FIN: WskDisconnect with data /
TDI_SEND_AND_DISCONNECT), HandOver (``Relay``, ``Redirect`` - 307 to the user-mode
server - or ``Queue``, the kernel request queue of queue.py that the user-mode server
reads with IOCTLs).  Static files also answer Range (206/416) and conditional GETs (304):
conditional.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Generator

from stack.drivers.khttpd.accesslog import AccessLog, AccessLogEntry
from stack.drivers.khttpd.http import (NEED_DATA, PAUSED, PEER_CLOSED, HttpServerConnection, HttpStateError,
                                       ProtocolFailure, Request)
from stack.drivers.khttpd.accesslog import LAB_EPOCH_UNIX
from stack.drivers.khttpd.conditional import (MULTIPART_BOUNDARY, RANGE_UNSATISFIABLE, Validators, content_range,
                                              multipart_pieces, not_modified, parse_range)
from stack.drivers.khttpd.http import http_date
from stack.drivers.khttpd.mime import content_type_for
from stack.drivers.khttpd import queue as request_queue
from stack.drivers.khttpd import tdi_transport
from stack.drivers.khttpd.relay import BackendError, BackendResponseReader
from stack.fs import fsio
from stack.fs.kfs import DRIVER_IMAGE as KFS_IMAGE
from stack.fs.kfs import VOLUME_DEVICE_NAME
from stack.kernel import (NT_SUCCESS, STATUS_INSUFFICIENT_RESOURCES, STATUS_TIMEOUT, STATUS_MORE_PROCESSING_REQUIRED,
                          STATUS_PENDING, STATUS_REQUEST_NOT_ACCEPTED, STATUS_SUCCESS, STATUS_UNSUCCESSFUL, TRACE_LEVEL_ERROR,
                          TRACE_LEVEL_INFORMATION, TRACE_LEVEL_VERBOSE, WPP_CLEANUP, WPP_DEFINE_CONTROL_GUID,
                          WPP_INIT_TRACING, ExAllocatePoolWithTag, ExFreePoolWithTag, IoAllocateIrp, IoAllocateMdl,
                          IoCreateDevice, IoDeleteDevice, IoFreeIrp, IoFreeMdl, IoGetDeviceObjectPointer,
                          IoLoadDriver, IoReuseIrp, IoSetCompletionRoutine, KeSetEvent, KeWaitForSingleObject,
                          Mdl, MmBuildMdlForNonPagedPool, NonPagedPoolNx, TraceEvents, current_kernel, kroutine)
from stack.kernel.io import FILE_DEVICE_NETWORK, DeviceObject, DriverImage, DriverObject
from stack.kernel.ke import (KEVENT, DelayedWorkQueue, Executive, KeDelayExecutionThread, KernelMode,
                             NotificationEvent,
                             SynchronizationEvent, IoAllocateWorkItem, IoFreeWorkItem, IoQueueWorkItem,
                             KeClearEvent)
from stack.kernel.mdl import mdl_chain_views
from stack.wsk import (AF_INET, AF_INET6, IPPROTO_IPV6, IPPROTO_TCP, IPV6_V6ONLY, SOCK_STREAM,
                       WSK_BUF, WSK_CLIENT_DISPATCH, WSK_CLIENT_LISTEN_DISPATCH, WSK_CLIENT_NPI,
                       WSK_EVENT_ACCEPT, WSK_EVENT_CALLBACK_CONTROL,
                       WSK_FLAG_LISTEN_SOCKET, WSK_INFINITE_WAIT, WSK_PROVIDER_NPI, WSK_REGISTRATION,
                       WSK_SET_STATIC_EVENT_CALLBACKS, SOCKADDR_IN, SOCKADDR_IN6, MAKE_WSK_VERSION, Ref,
                       NPI_WSK_INTERFACE_ID, WSK_EVENT_CALLBACK_CONTROL_SIZE, WSK_FLAG_ABORTIVE,
                       WskCaptureProviderNPI, WskDeregister, WskRegister, WskReleaseProviderNPI, WskSetOption)

# --- pool tags (the thesis driver's 'Khtp' family) -------------------------------------------------
KHTTPD_TAG = "Khtp"  # globals, listen context
CONNECTION_TAG = "Khtc"
BUFFER_TAG = "Khtb"  # receive buffers
HEADER_TAG = "Khth"  # response header buffers
BODY_TAG = "Khtd"  # copy-mode body buffers and relayed responses
SEND_TAG = "Khts"  # per-send contexts
POOL_TAGS = (KHTTPD_TAG, CONNECTION_TAG, BUFFER_TAG, HEADER_TAG, BODY_TAG, SEND_TAG)

HEADER_BUFFER_SIZE = 1024
SERVICE_KEY = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\khttpd"

# WPP_DEFINE_CONTROL_GUID(khttpd, (6a4e38d4,5b0d,4a6e,9c83,4b2f3f4d7a10), TRCERROR TRCINFO TRCREQUEST TRCCONN TRCFS)
WPP_PROVIDER = WPP_DEFINE_CONTROL_GUID("khttpd", "(6a4e38d4,5b0d,4a6e,9c83,4b2f3f4d7a10)",
                                       ("TRCERROR", "TRCINFO", "TRCREQUEST", "TRCCONN", "TRCFS"))


# Relay (socket to socket), Redirect (307), Queue (kernel request queue), Accept (afd moves the
# connection, its request unread, into the user-mode server's accept queue: handover.py)
HAND_OVER_METHODS = ("Relay", "Redirect", "Queue", "Accept")


@dataclass(slots=True)
class KhttpdConfig:
    Port: int = 80
    CopyMode: bool = False
    MaxConnections: int = 64
    BackendPort: int = 8080
    BackendAddress: str | None = None  # None: the address the client connected to (winsrv itself)
    ReceiveBufferSize: int = 4096
    Transport: str = "WSK"  # or "TDI"
    HeaderTimeoutMs: int = 10_000  # a request head must be complete this long after we start waiting (0: none)
    MaxConnectionsPerClient: int = 16  # per remote address; more are answered 503
    ResponseCache: int = 0  # bytes of locked file pages to keep for hits served at DISPATCH_LEVEL (receive events)
    SendAndDisconnect: bool = True  # the last response: WskDisconnect with data / TDI_SEND_AND_DISCONNECT
    HandOver: str = "Relay"  # dynamic requests: one of HAND_OVER_METHODS

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "KhttpdConfig":
        config = cls()
        aliases = {"copy_mode": "CopyMode", "port": "Port", "max_connections": "MaxConnections",
                   "backend_port": "BackendPort", "backend_address": "BackendAddress",
                   "receive_buffer_size": "ReceiveBufferSize", "transport": "Transport",
                   "header_timeout_ms": "HeaderTimeoutMs", "max_connections_per_client": "MaxConnectionsPerClient",
                   "response_cache": "ResponseCache", "send_and_disconnect": "SendAndDisconnect",
                   "hand_over": "HandOver"}
        for name, value in values.items():
            attr = aliases.get(name, name)
            if not hasattr(config, attr):
                raise ValueError(f"khttpd has no parameter {name!r}")
            setattr(config, attr, value)
        config.CopyMode = bool(config.CopyMode)
        config.Transport = str(config.Transport).upper()
        if config.Transport not in ("WSK", "TDI"):
            raise ValueError(f"Transport must be WSK or TDI, not {config.Transport!r}")
        config.HandOver = str(config.HandOver).capitalize()
        if config.HandOver not in HAND_OVER_METHODS:
            raise ValueError(f"HandOver must be one of {', '.join(HAND_OVER_METHODS)}, not {config.HandOver!r}")
        if config.HandOver == "Accept" and config.Transport != "WSK":
            raise ValueError("HandOver=Accept needs Transport=WSK (afd moves a WSK connection; tdx cannot give "
                             "its connection endpoints away)")
        return config

    @property
    def event_driven(self) -> bool:
        """Connections live on receive events, with no worker thread: the response cache answers hits
        inside them, and the accept hand-over reads requests there without taking them."""
        return int(self.ResponseCache) > 0 or self.HandOver == "Accept"


@dataclass(slots=True)
class KhttpdStats:
    connections_accepted: int = 0
    connections_active: int = 0
    connections_refused: int = 0  # answered 503
    requests: int = 0
    static_zero_copy: int = 0
    static_copied: int = 0
    head_requests: int = 0
    dynamic_relayed: int = 0
    dynamic_redirected: int = 0
    dynamic_handed_over: int = 0  # HandOver=Accept: connections given to the user-mode server's accept queue
    hand_over_fallbacks: int = 0  # HandOver=Accept: dynamic requests relayed instead (see handover.py)
    errors: int = 0
    bytes_sent: int = 0
    header_timeouts: int = 0  # connections reset because a request head did not arrive in time
    refused_per_client: int = 0  # of connections_refused: over MaxConnectionsPerClient


@dataclass(slots=True, eq=False)
class KhttpdGlobals:
    """What the C driver keeps in static variables (reachable for the debugger)."""

    address: int
    driver: DriverObject
    config: KhttpdConfig
    device: DeviceObject | None = None
    registration: Any = None
    provider_npi: Any = None
    listen_socket: Any = None
    access_log: AccessLog = field(default_factory=AccessLog)
    stats: KhttpdStats = field(default_factory=KhttpdStats)
    connections: list["KhttpdConnection"] = field(default_factory=list)
    tdi_listen: list[int] = field(default_factory=list)  # Transport=TDI: the listening socket handles
    cache: Any = None  # KhttpdResponseCache when ResponseCache > 0
    request_queue: Any = None  # HandOver=Queue: the kernel request queue (queue.py)
    stopping: bool = False
    drained: KEVENT = field(default_factory=lambda: KEVENT(NotificationEvent, True))


@dataclass(slots=True)
class KhttpdAsyncContext:
    """KSOCKET's pattern: one IRP reused for every call, and an event its completion sets."""

    Irp: Any
    CompletionEvent: KEVENT


@dataclass(slots=True, eq=False)
class KhttpdConnection:
    address: int
    globals: KhttpdGlobals
    Socket: Any
    remote: str
    local: str  # the address the client connected to (winsrv's own): where the user-mode server is
    http: HttpServerConnection
    over_limit: bool
    recv: KhttpdAsyncContext | None = None
    send: KhttpdAsyncContext | None = None
    recv_buffer: int = 0
    recv_mdl: Mdl | None = None
    header_buffer: int = 0
    work_item: Any = None
    requests: int = 0
    tdi_fd: int = 0  # Transport=TDI: the connection's socket handle in the TDI sockets library
    header_deadline_ns: int = 0  # when the request head being read must be complete (0: not waiting)
    # ResponseCache (cached.py): an event-driven connection, no worker thread
    event_driven: bool = False
    busy: bool = False  # a response is being produced
    closing: bool = False
    peer_closed: bool = False
    send_irp: Any = None
    cached_send: Any = None  # (header MDL, cache entry) of the TDI_SEND in flight
    disconnected: bool = False  # the last response went out with send-and-disconnect (FIN already queued)
    handing_over: bool = False  # HandOver=Accept: a request was left unread for the user-mode server
    hand_over_failed: bool = False  # ... and afd could not move it: relay from now on
    hand_over_deferred: bool = False  # a dynamic request left unread until the response in flight is done


@dataclass(slots=True, eq=False)
class KhttpdSendContext:
    """Everything one response's WskSend must give back when it completes."""

    address: int
    connection: KhttpdConnection
    event: KEVENT
    header_mdl: Mdl | None = None
    cache_mdl: Mdl | None = None  # IRP_MN_MDL chain, returned with IRP_MN_COMPLETE_MDL
    body_mdl: Mdl | None = None  # copy mode / relay: our own nonpaged body buffer
    body_buffer: int = 0
    file_object: Any = None


def khttpd_globals(kernel: Any) -> KhttpdGlobals | None:
    """The loaded driver's state on `kernel` (access log, stats, connections), for the debugger."""
    drv = kernel.drivers.get("khttpd")
    return drv.extension.get("khttpd") if drv is not None else None


# --- small helpers ------------------------------------------------------------------------------

def _now_s() -> float:
    return current_kernel().now_ns / 1e9


REALTIME_EPOCH_KEY = "realtime.epoch_unix"  # set by the bridge when the lab runs in real time


def _date_epoch() -> int:
    """Date: the real date when the lab is bridged to real time (the bridge records the epoch, so a
    replay prints the same), virtual time from the lab's fixed epoch otherwise."""
    return int(current_kernel().extensions.get(REALTIME_EPOCH_KEY, LAB_EPOCH_UNIX))


def _http_now() -> str:
    """The Date header's value now."""
    return http_date(_now_s(), _date_epoch())


def _sockaddr_text(sockaddr: Any) -> str:
    """10.0.0.2 for SOCKADDR_IN and for a v4-mapped SOCKADDR_IN6; fd00::2 otherwise."""
    raw = getattr(sockaddr, "sin6_addr", None)
    if raw is None:
        raw = getattr(sockaddr, "sin_addr", b"")
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


def _nonpaged_mdl(size: int, tag: str) -> tuple[int, Mdl | None]:
    buffer = ExAllocatePoolWithTag(NonPagedPoolNx, size, tag)
    if not buffer:
        return 0, None
    mdl = IoAllocateMdl(buffer, size)
    if mdl is None:
        ExFreePoolWithTag(buffer, tag)
        return 0, None
    MmBuildMdlForNonPagedPool(mdl)
    return buffer, mdl


def _fs_name(fs_path: str) -> str:
    return "\\" + fs_path.replace("/", "\\")


# --- DriverEntry and unload --------------------------------------------------------------------

@kroutine("khttpd")
def DriverEntry(DriverObject: DriverObject, RegistryPath: str) -> Generator[Any, Any, int]:
    k = current_kernel()
    WPP_INIT_TRACING(WPP_PROVIDER, DriverObject, RegistryPath)
    values = dict(k.extensions.get("registry", {}).get(RegistryPath + "\\Parameters", {}))
    values.update(DriverObject.extension.pop("parameters", {}))
    try:
        config = KhttpdConfig.from_values(values)
    except (ValueError, TypeError) as exc:
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "DriverEntry: bad parameter: %s", str(exc))
        WPP_CLEANUP(WPP_PROVIDER, DriverObject)
        return STATUS_UNSUCCESSFUL
    address = ExAllocatePoolWithTag(NonPagedPoolNx, 0x200, KHTTPD_TAG)
    if not address:
        WPP_CLEANUP(WPP_PROVIDER, DriverObject)
        return STATUS_INSUFFICIENT_RESOURCES
    g = KhttpdGlobals(address, DriverObject, config)
    k.addr_objects[address] = g
    DriverObject.extension["khttpd"] = g
    DriverObject.driver_unload = KhttpdUnload

    status = yield from KhttpdEnsureVolume()
    if NT_SUCCESS(status):
        status, g.device = IoCreateDevice(DriverObject, 0, "\\Device\\khttpd", FILE_DEVICE_NETWORK)
    if NT_SUCCESS(status) and config.HandOver == "Queue":
        g.request_queue = request_queue.install(DriverObject)
    if NT_SUCCESS(status):
        if config.Transport == "TDI":
            status = yield from tdi_transport.KhttpdStartListeningTdi(g)
        else:
            status = yield from KhttpdStartListening(g)
    if not NT_SUCCESS(status):
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "DriverEntry failed: %!STATUS!", status)
        yield from KhttpdCleanup(g)
        return status
    TraceEvents(WPP_PROVIDER, TRACE_LEVEL_INFORMATION, "TRCINFO", "khttpd listening on port %d (copy mode %d, %s)",
                config.Port, int(config.CopyMode), config.Transport)
    return STATUS_SUCCESS


@kroutine("khttpd")
def KhttpdEnsureVolume() -> Generator[Any, Any, int]:
    """ZwLoadDriver(\\Driver\\kfs) when the document root volume is not mounted yet."""
    if IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME) is not None:
        return STATUS_SUCCESS
    k = current_kernel()
    done = KEVENT(NotificationEvent, False)
    result: list[int] = []

    def loaded(status: int) -> None:
        result.append(status)
        KeSetEvent(done)

    IoLoadDriver(k, KFS_IMAGE, on_done=loaded)
    yield KeWaitForSingleObject(done, Executive, KernelMode, False, None)
    return result[0] if result else STATUS_UNSUCCESSFUL


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


@kroutine("khttpd")
def KhttpdUnload(DriverObject: DriverObject) -> Generator[Any, Any, None]:
    g: KhttpdGlobals | None = DriverObject.extension.get("khttpd")
    if g is not None:
        yield from KhttpdCleanup(g)
    TraceEvents(WPP_PROVIDER, TRACE_LEVEL_INFORMATION, "TRCINFO", "khttpd unloaded")


@kroutine("khttpd")
def KhttpdCleanup(g: KhttpdGlobals) -> Generator[Any, Any, None]:
    """Close the listener, wait for the connections to finish, leave WSK, free the globals."""
    k = current_kernel()
    g.stopping = True
    if g.listen_socket is not None:
        ctx = _new_async_context()
        if ctx is not None:
            yield from _call_and_wait(ctx, _basic_dispatch(g.listen_socket).WskCloseSocket, g.listen_socket)
            _free_async_context(ctx)
        g.listen_socket = None
    yield from tdi_transport.KhttpdStopListeningTdi(g)
    for connection in list(g.connections):
        _abort_connection(connection)
    if g.request_queue is not None:
        request_queue.cancel_all(g.request_queue)
    yield KeWaitForSingleObject(g.drained, Executive, KernelMode, False, None)
    if g.cache is not None:
        g.cache.flush()  # unlock every cached page before the driver goes
    if g.provider_npi is not None:
        WskReleaseProviderNPI(g.registration)
        g.provider_npi = None
    if g.registration is not None:
        yield from WskDeregister(g.registration)  # waits until every socket of ours is closed
        g.registration = None
    if g.device is not None:
        IoDeleteDevice(g.device)
        g.device = None
    g.driver.extension.pop("khttpd", None)
    k.addr_objects.pop(g.address, None)
    ExFreePoolWithTag(g.address, KHTTPD_TAG)
    WPP_CLEANUP(WPP_PROVIDER, g.driver)


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


# --- accepting ---------------------------------------------------------------------------------------

@kroutine("khttpd")
def KhttpdAcceptEvent(SocketContext: KhttpdGlobals, Flags: int, LocalAddress: Any, RemoteAddress: Any,
                      AcceptSocket: Any, AcceptSocketContext: Ref, AcceptSocketDispatch: Ref) -> int:
    """A TCP connection is established: take it and hand it to a worker (no waiting here)."""
    g = SocketContext
    if AcceptSocket is None:  # the listening socket is going away
        return STATUS_SUCCESS
    if g.stopping or g.device is None:
        return STATUS_REQUEST_NOT_ACCEPTED
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


def KhttpdNewConnection(g: KhttpdGlobals, Socket: Any, remote: str, local: str) -> KhttpdConnection | None:
    """The connection's block (counted against MaxConnections); None without pool."""
    address = ExAllocatePoolWithTag(NonPagedPoolNx, 0x100, CONNECTION_TAG)
    work_item = IoAllocateWorkItem(g.device) if address else None
    if work_item is None:  # no pool for the connection or its work item: refuse it (the transport resets it)
        if address:
            ExFreePoolWithTag(address, CONNECTION_TAG)
        g.stats.connections_refused += 1
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCCONN", "refused %s: %!STATUS!", remote,
                    STATUS_INSUFFICIENT_RESOURCES)
        return None
    same_client = sum(1 for c in g.connections if c.remote == remote and not c.over_limit)
    per_client = same_client >= g.config.MaxConnectionsPerClient
    over_limit = per_client or g.stats.connections_active >= g.config.MaxConnections
    g.stats.refused_per_client += int(per_client)
    connection = KhttpdConnection(address, g, Socket, remote, local, HttpServerConnection(_docroot_lookup),
                                  over_limit)
    connection.work_item = work_item
    current_kernel().addr_objects[address] = connection
    g.connections.append(connection)
    g.stats.connections_accepted += 1
    if over_limit:
        g.stats.connections_refused += 1
    else:
        g.stats.connections_active += 1
    KeClearEvent(g.drained)
    return connection


def KhttpdQueueConnection(connection: KhttpdConnection) -> None:
    """Hand the connection to a worker (no waiting in the accept path); its work item came with it."""
    IoQueueWorkItem(connection.work_item, KhttpdConnectionWorker, DelayedWorkQueue, connection)
    TraceEvents(WPP_PROVIDER, TRACE_LEVEL_INFORMATION, "TRCCONN", "accepted %s (socket %p)%s",
                connection.remote, connection.Socket or connection.tdi_fd,
                " over the connection limit" if connection.over_limit else "")


KHTTPD_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH(KhttpdAcceptEvent, None, None)


def _docroot_lookup(fs_path: str) -> bool:
    """Does the volume have this file?  Asked by the HTTP core (404 before any IRP)."""
    device = IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)
    if device is None:
        return False
    sizes = getattr(device.extension, "sizes", {})
    return fs_path in sizes


# --- one connection -----------------------------------------------------------------------------------

@kroutine("khttpd")
def KhttpdConnectionWorker(DeviceObject: DeviceObject, Context: KhttpdConnection) -> Generator[Any, Any, None]:
    connection = Context
    if (yield from KhttpdSetUpConnection(connection)):
        if connection.over_limit:
            yield from KhttpdSendBytes(connection, connection.http.build_error_response(
                503, now_s=_http_now(), headers=[("Retry-After", "1")]))
            _log(connection, "-", b"-", "1.1", 503, 0)
        else:
            yield from KhttpdServeConnection(connection)
    yield from KhttpdCloseConnection(connection)


@kroutine("khttpd")
def KhttpdSetUpConnection(connection: KhttpdConnection) -> Generator[Any, Any, bool]:
    connection.recv = _new_async_context()
    connection.send = _new_async_context()
    connection.recv_buffer, connection.recv_mdl = _nonpaged_mdl(connection.globals.config.ReceiveBufferSize,
                                                                BUFFER_TAG)
    connection.header_buffer = ExAllocatePoolWithTag(NonPagedPoolNx, HEADER_BUFFER_SIZE, HEADER_TAG)
    ok = bool(connection.recv and connection.send and connection.recv_mdl and connection.header_buffer)
    if not ok:
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "no resources for connection %s",
                    connection.remote)
    return ok
    yield  # a generator routine: the worker waits inside its callees


@kroutine("khttpd")
def KhttpdServeConnection(connection: KhttpdConnection) -> Generator[Any, Any, None]:
    """Receive, parse, answer — until the client closes or the connection must close."""
    http = connection.http
    while True:
        item = http.next_request()
        if item is NEED_DATA:
            timeout_ms = connection.globals.config.HeaderTimeoutMs
            if timeout_ms and not connection.header_deadline_ns:
                # One deadline per request head, not per receive: a client dribbling a byte a
                # second cannot hold the connection (slowloris).
                connection.header_deadline_ns = current_kernel().now_ns + timeout_ms * 1_000_000
            received = yield from KhttpdReceive(connection)
            if received is None:
                return  # reset, error or header timeout: nothing more to say
            http.receive(received)
            continue
        connection.header_deadline_ns = 0
        if item is PEER_CLOSED or item is PAUSED:
            return
        if isinstance(item, ProtocolFailure):
            connection.globals.stats.errors += 1
            TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "%s: %d %s", connection.remote,
                        item.status, item.reason)
            yield from KhttpdSendBytes(connection, http.build_error_response(item, now_s=_http_now()))
            _log(connection, "-", b"-", "1.1", item.status, 0)
            return
        assert isinstance(item, Request)
        if not (yield from KhttpdServeRequest(connection, item)):
            return
        if http.should_close:
            return
        http.start_next_cycle()


@kroutine("khttpd")
def KhttpdReceive(connection: KhttpdConnection) -> Generator[Any, Any, bytes | None]:
    """WskReceive into the reused buffer (reused IRP + MDL); b"" at the peer's FIN, None on error."""
    socket = connection.Socket
    size = connection.globals.config.ReceiveBufferSize
    timeout_ns = None
    if connection.header_deadline_ns:
        timeout_ns = max(1, connection.header_deadline_ns - current_kernel().now_ns)
    if connection.tdi_fd:
        count = yield from tdi_transport.recv_mdl(connection.tdi_fd, connection.recv_mdl, size, timeout_ns)
        if count == -2:
            KhttpdHeaderTimeout(connection)
        if count < 0:
            return None
        KhttpdReceiveComplete(connection, count)
        return b"".join(mdl_chain_views(connection.recv_mdl, 0, count)) if count else b""
    status = yield from _call_and_wait(connection.recv, socket.Dispatch.WskReceive, socket,
                                       WSK_BUF(connection.recv_mdl, 0, size), 0, timeout_ns=timeout_ns,
                                       on_timeout=lambda: (KhttpdHeaderTimeout(connection),
                                                           _abort_connection(connection)))
    if not NT_SUCCESS(status):
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_VERBOSE, "TRCCONN", "receive from %s ended: %!STATUS!",
                    connection.remote, status)
        return None
    count = int(connection.recv.Irp.IoStatus.Information or 0)
    KhttpdReceiveComplete(connection, count)
    if count == 0:
        return b""
    return b"".join(mdl_chain_views(connection.recv_mdl, 0, count))


@kroutine("khttpd")
def KhttpdHeaderTimeout(connection: KhttpdConnection) -> None:
    """The request head did not arrive in time: the connection is reset (logged as 408)."""
    connection.globals.stats.header_timeouts += 1
    TraceEvents(WPP_PROVIDER, TRACE_LEVEL_INFORMATION, "TRCCONN", "%s: request head timed out", connection.remote)
    _log(connection, "-", b"-", "1.1", 408, 0)


@kroutine("khttpd")
def KhttpdReceiveComplete(connection: KhttpdConnection, BytesReceived: int) -> int:
    """Where the C driver's receive completion lands (a named hand-off for `bp`)."""
    TraceEvents(WPP_PROVIDER, TRACE_LEVEL_VERBOSE, "TRCCONN", "%s: received %d bytes", connection.remote,
                BytesReceived)
    return STATUS_SUCCESS


@kroutine("khttpd")
def KhttpdServeRequest(connection: KhttpdConnection, request: Request) -> Generator[Any, Any, bool]:
    """Answer one request; False when the connection cannot go on."""
    g = connection.globals
    g.stats.requests += 1
    connection.requests += 1
    TraceEvents(WPP_PROVIDER, TRACE_LEVEL_INFORMATION, "TRCREQUEST", "%s %s %s", connection.remote,
                request.method, request.target.decode("latin-1"))
    if request.error is not None:
        g.stats.errors += 1
        wire = connection.http.build_error_response(request.error, now_s=_http_now())
        sent = yield from KhttpdSendBytes(connection, wire)
        _log(connection, request.method, request.target, request.http_version, request.error.status, 0)
        return sent
    if request.dynamic:
        if g.config.HandOver == "Redirect":
            return (yield from KhttpdRedirectDynamic(connection, request))
        return (yield from KhttpdRelayDynamic(connection, request))
    return (yield from KhttpdServeStatic(connection, request))


# --- static files -----------------------------------------------------------------------------------

@kroutine("khttpd")
def KhttpdServeStatic(connection: KhttpdConnection, request: Request) -> Generator[Any, Any, bool]:
    """Header MDL -> cache MDL chain, ONE WskSend (or a copied body in copy mode)."""
    g = connection.globals
    http = connection.http
    path = request.path
    assert path is not None
    volume = IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)
    status, file_object = fsio.fs_open(volume, _fs_name(path.fs_path)) if volume else (STATUS_UNSUCCESSFUL, None)
    size = 0
    if file_object is not None:
        status, size = fsio.fs_query_size(file_object)
    if file_object is None or not NT_SUCCESS(status):
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCFS", "open %s failed: %!STATUS!", path.fs_path, status)
        if file_object is not None:
            fsio.fs_close(file_object)
        # Out of memory is the server's trouble, not a missing file: 503, as HTTP.sys answers then.
        code = 503 if status == STATUS_INSUFFICIENT_RESOURCES else 404
        sent = yield from KhttpdSendBytes(connection, http.build_error_response(code, now_s=_http_now()))
        _log(connection, request.method, request.target, request.http_version, code, 0)
        return sent
    content_type = content_type_for(path.fs_path)
    validators = Validators.for_file(path.fs_path, size, LAB_EPOCH_UNIX, http_date(0))
    if not_modified(request.header(b"if-none-match"), request.header(b"if-modified-since"), validators):
        fsio.fs_close(file_object)
        header = http.build_response_header(304, now_s=_http_now(), content_length=size,
                                            headers=validators.headers(), keep_alive=request.keep_alive)
        sent = yield from KhttpdSendBytes(connection, header + http.end_response())
        _log(connection, request.method, request.target, request.http_version, 304, 0)
        return sent
    ranges = parse_range(request.header(b"range"), size, request.header(b"if-range"), validators)
    if ranges == RANGE_UNSATISFIABLE:
        fsio.fs_close(file_object)
        sent = yield from KhttpdSendBytes(connection, http.build_error_response(
            416, now_s=_http_now(), keep_alive=request.keep_alive, headers=[("Content-Range", f"bytes */{size}")]))
        _log(connection, request.method, request.target, request.http_version, 416, 0)
        return sent
    if isinstance(ranges, list) and len(ranges) > 1:
        return (yield from KhttpdServeMultipleRanges(connection, request, file_object, size, content_type,
                                                     validators, ranges))
    status_code, offset, extra = 200, 0, [("Accept-Ranges", "bytes")] + validators.headers()
    if isinstance(ranges, list):
        first, last = ranges[0]
        whole = size
        status_code, offset, size = 206, first, last - first + 1
        extra.append(("Content-Range", content_range(first, last, whole)))
    header = http.build_response_header(status_code, now_s=_http_now(), content_length=size,
                                        content_type=content_type, headers=extra, keep_alive=request.keep_alive)
    send = _new_send_context(connection)
    if send is None:
        fsio.fs_close(file_object)
        return False
    send.file_object = file_object
    send.header_mdl = _header_mdl(connection, header)
    if send.header_mdl is None:  # no MDL for the header: the response cannot start, close
        fsio.fs_close(file_object)
        ExFreePoolWithTag(send.address, SEND_TAG)
        return False
    body_length = 0 if request.head_only else size
    if body_length:
        if g.config.CopyMode:
            send.body_buffer, send.body_mdl = _nonpaged_mdl(body_length, BODY_TAG)
            status, _ = fsio.fs_read(file_object, offset, body_length, send.body_mdl) if send.body_mdl else (
                STATUS_INSUFFICIENT_RESOURCES, 0)
            send.header_mdl.next = send.body_mdl
            g.stats.static_copied += 1
        else:
            status, send.cache_mdl = fsio.fs_mdl_read(file_object, offset, body_length)
            send.header_mdl.next = send.cache_mdl
            g.stats.static_zero_copy += 1
        if not NT_SUCCESS(status):
            TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCFS", "read %s failed: %!STATUS!", path.fs_path,
                        status)
            KhttpdReleaseSend(send)
            fsio.fs_close(file_object)
            ExFreePoolWithTag(send.address, SEND_TAG)
            return False  # the header is framed but cannot be honoured: close the connection
        http.body_passthrough(body_length)
    else:
        g.stats.head_requests += int(request.head_only)
    http.end_response()
    sent = yield from KhttpdSendChain(connection, send, len(header) + body_length)
    _log(connection, request.method, request.target, request.http_version, status_code, body_length if sent else 0)
    return sent


@kroutine("khttpd")
def KhttpdServeMultipleRanges(connection: KhttpdConnection, request: Request, file_object: Any, size: int,
                              content_type: str, validators: Validators,
                              ranges: list[tuple[int, int]]) -> Generator[Any, Any, bool]:
    """206 multipart/byteranges, assembled in one nonpaged buffer (each range read from the cache once)."""
    http = connection.http
    body = bytearray()
    k = current_kernel()
    for piece in multipart_pieces(ranges, size, content_type):
        if isinstance(piece, bytes):
            body += piece
            continue
        first, last = piece
        status, mdl = fsio.fs_mdl_read(file_object, first, last - first + 1)
        if not NT_SUCCESS(status) or mdl is None:
            fsio.fs_close(file_object)
            return False
        body += b"".join(mdl_chain_views(mdl, 0, last - first + 1))
        k.copies.count(last - first + 1, "KhttpdServeMultipleRanges")
        fsio.fs_mdl_read_complete(file_object, mdl)
    fsio.fs_close(file_object)
    header = http.build_response_header(
        206, now_s=_http_now(), content_length=len(body),
        content_type=f"multipart/byteranges; boundary={MULTIPART_BOUNDARY}",
        headers=[("Accept-Ranges", "bytes")] + validators.headers(), keep_alive=request.keep_alive)
    wire = header + (b"" if request.head_only else http.body_bytes(bytes(body))) + http.end_response()
    sent = yield from KhttpdSendBytes(connection, wire)
    _log(connection, request.method, request.target, request.http_version, 206, len(body) if sent else 0)
    return sent


def _new_send_context(connection: KhttpdConnection) -> KhttpdSendContext | None:
    address = ExAllocatePoolWithTag(NonPagedPoolNx, 0x80, SEND_TAG)
    if not address:
        return None
    return KhttpdSendContext(address, connection, KEVENT(SynchronizationEvent, False))


def _header_mdl(connection: KhttpdConnection, header: bytes) -> Mdl | None:
    """The response header in the connection's nonpaged header buffer, described by a fresh MDL
    (None when IoAllocateMdl fails)."""
    if len(header) > HEADER_BUFFER_SIZE:
        raise HttpStateError(f"response header of {len(header)} bytes does not fit the header buffer")
    current_kernel().write(connection.header_buffer, header)
    mdl = IoAllocateMdl(connection.header_buffer, len(header))
    if mdl is None:
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "no MDL for the response to %s: %!STATUS!",
                    connection.remote, STATUS_INSUFFICIENT_RESOURCES)
        return None
    MmBuildMdlForNonPagedPool(mdl)
    return mdl


@kroutine("khttpd")
def KhttpdSendChain(connection: KhttpdConnection, send: KhttpdSendContext,
                    length: int) -> Generator[Any, Any, bool]:
    """WskSend(WSK_BUF over header MDL -> body chain); KhttpdSendComplete releases everything."""
    if connection.tdi_fd:
        return (yield from tdi_transport.KhttpdSendChainTdi(connection, send, length))
    socket = connection.Socket
    irp = connection.send.Irp
    IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
    KeClearEvent(send.event)
    IoSetCompletionRoutine(irp, KhttpdSendComplete, send, True, True, True)
    if KhttpdLastResponse(connection):
        # Send and disconnect: the response and our FIN in one request (the FIN rides the last segment).
        connection.disconnected = True
        socket.Dispatch.WskDisconnect(socket, WSK_BUF(send.header_mdl, 0, length), 0, irp)
    else:
        socket.Dispatch.WskSend(socket, WSK_BUF(send.header_mdl, 0, length), 0, irp)
    if not send.event.signaled:
        yield KeWaitForSingleObject(send.event, Executive, KernelMode, False, None)
    status = irp.IoStatus.Status
    ok = NT_SUCCESS(status)
    if ok:
        connection.globals.stats.bytes_sent += length if connection.disconnected else int(
            irp.IoStatus.Information or 0)
    else:
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "send to %s failed: %!STATUS!",
                    connection.remote, status)
    if send.file_object is not None:
        fsio.fs_close(send.file_object)
        send.file_object = None
    ExFreePoolWithTag(send.address, SEND_TAG)
    return ok


def KhttpdLastResponse(connection: KhttpdConnection) -> bool:
    """Is this response the connection's last (the HTTP core says close), to be sent with the FIN?"""
    return bool(connection.globals.config.SendAndDisconnect) and connection.http.should_close \
        and not connection.disconnected


@kroutine("khttpd")
def KhttpdSendComplete(DeviceObject: Any, Irp: Any, Context: KhttpdSendContext) -> int:
    """The transport is done with the bytes: give the cache pages back, free the header MDL."""
    KhttpdReleaseSend(Context)
    KeSetEvent(Context.event)
    return STATUS_MORE_PROCESSING_REQUIRED


def KhttpdReleaseSend(send: KhttpdSendContext) -> None:
    if send.header_mdl is not None:
        send.header_mdl.next = None
        IoFreeMdl(send.header_mdl)
        send.header_mdl = None
    if send.cache_mdl is not None:
        fsio.fs_mdl_read_complete(send.file_object, send.cache_mdl)  # IRP_MJ_READ / IRP_MN_COMPLETE_MDL
        send.cache_mdl = None
    if send.body_mdl is not None:
        IoFreeMdl(send.body_mdl)
        send.body_mdl = None
    if send.body_buffer:
        ExFreePoolWithTag(send.body_buffer, BODY_TAG)
        send.body_buffer = 0


@kroutine("khttpd")
def KhttpdSendBytes(connection: KhttpdConnection, data: bytes) -> Generator[Any, Any, bool]:
    """Small responses built in memory (errors, relayed replies): one nonpaged buffer, one send."""
    if not data:
        return True
    send = _new_send_context(connection)
    if send is None:
        return False
    if len(data) <= HEADER_BUFFER_SIZE:
        send.header_mdl = _header_mdl(connection, data)
        if send.header_mdl is None:
            ExFreePoolWithTag(send.address, SEND_TAG)
            return False
    else:
        send.body_buffer, send.body_mdl = _nonpaged_mdl(len(data), BODY_TAG)
        if send.body_mdl is None:
            ExFreePoolWithTag(send.address, SEND_TAG)
            return False
        k = current_kernel()
        k.write(send.body_buffer, data)
        k.copies.count(len(data), "KhttpdSendBytes")
        send.header_mdl, send.body_mdl = send.body_mdl, None  # one MDL; body_buffer is freed with it
    return (yield from KhttpdSendChain(connection, send, len(data)))


# --- dynamic requests: the hand-over to the user-mode server -----------------------------------------

@kroutine("khttpd")
def KhttpdRelayDynamic(connection: KhttpdConnection, request: Request) -> Generator[Any, Any, bool]:
    g = connection.globals
    http = connection.http
    response = None
    try:
        if g.request_queue is not None:
            response = yield from KhttpdQueueHandOver(connection, request)
        else:
            response = yield from KhttpdCallBackend(connection, request)
    except BackendError as exc:
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "backend: %s", str(exc))
    if response is None:
        g.stats.errors += 1
        sent = yield from KhttpdSendBytes(connection, http.build_error_response(502, now_s=_http_now()))
        _log(connection, request.method, request.target, request.http_version, 502, 0)
        return sent
    g.stats.dynamic_relayed += 1
    header = http.build_response_header(response.status, now_s=_http_now(), content_length=len(response.body),
                                        content_type=response.content_type, headers=response.headers,
                                        keep_alive=request.keep_alive)
    body = b"" if request.head_only else http.body_bytes(response.body)
    wire = header + body + http.end_response()
    sent = yield from KhttpdSendBytes(connection, wire)
    _log(connection, request.method, request.target, request.http_version, response.status, len(body))
    return sent


@kroutine("khttpd")
def KhttpdQueueHandOver(connection: KhttpdConnection, request: Request) -> Generator[Any, Any, Any]:
    """HTTP.sys's model: queue the request for the user-mode server, frame its structured reply."""
    from stack.drivers.khttpd.relay import BackendResponse
    reply = yield from request_queue.KhttpdQueueRequest(connection.globals.request_queue, request)
    if reply is None:
        return None
    return BackendResponse(reply.StatusCode, reply.ContentType, (("X-Served-By", "usermode-webserver (queue)"),),
                           reply.Body)


@kroutine("khttpd")
def KhttpdRedirectDynamic(connection: KhttpdConnection, request: Request) -> Generator[Any, Any, bool]:
    """The simplest hand-over: 307 to the user-mode server's port; the client asks it directly."""
    g = connection.globals
    host = g.config.BackendAddress or connection.local
    if ":" in host:
        host = f"[{host}]"
    location = f"http://{host}:{g.config.BackendPort}{request.target.decode('latin-1')}"
    http = connection.http
    header = http.build_response_header(307, now_s=_http_now(), content_length=0, headers=[("Location", location)],
                                        keep_alive=request.keep_alive)
    g.stats.dynamic_redirected += 1
    sent = yield from KhttpdSendBytes(connection, header + http.end_response())
    _log(connection, request.method, request.target, request.http_version, 307, 0)
    return sent


@kroutine("khttpd")
def KhttpdCallBackend(connection: KhttpdConnection, request: Request) -> Generator[Any, Any, Any]:
    """WskSocketConnect to the user-mode server, send the raw request, read one response, close."""
    g = connection.globals
    if connection.tdi_fd:
        return (yield from tdi_transport.KhttpdCallBackendTdi(connection, request))
    npi = g.provider_npi
    ctx = connection.send
    remote = _backend_sockaddr(g.config, connection.local)
    family = AF_INET6 if isinstance(remote, SOCKADDR_IN6) else AF_INET
    local = (SOCKADDR_IN6(sin6_family=AF_INET6, sin6_port=0, sin6_addr=bytes(16)) if family == AF_INET6
             else SOCKADDR_IN(sin_family=AF_INET, sin_port=0, sin_addr=bytes(4)))
    status = yield from _call_and_wait(ctx, npi.Dispatch.WskSocketConnect, npi.Client, SOCK_STREAM, IPPROTO_TCP,
                                       local, remote, 0, None, None, None, None, None)
    if not NT_SUCCESS(status):
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "connect to the user-mode server: %!STATUS!",
                    status)
        return None
    backend = ctx.Irp.IoStatus.Information
    buffer, mdl = _nonpaged_mdl(max(len(request.raw), 1), BODY_TAG)
    try:
        if mdl is None:
            return None
        k = current_kernel()
        k.write(buffer, request.raw)
        k.copies.count(len(request.raw), "KhttpdRelayRequest")
        status = yield from _call_and_wait(ctx, backend.Dispatch.WskSend, backend,
                                           WSK_BUF(mdl, 0, len(request.raw)), 0)
        if not NT_SUCCESS(status):
            return None
        reader = BackendResponseReader(request.method)
        size = g.config.ReceiveBufferSize
        while True:
            status = yield from _call_and_wait(ctx, backend.Dispatch.WskReceive, backend,
                                               WSK_BUF(connection.recv_mdl, 0, size), 0)
            if not NT_SUCCESS(status):
                return None
            count = int(ctx.Irp.IoStatus.Information or 0)
            data = b"".join(mdl_chain_views(connection.recv_mdl, 0, count)) if count else b""
            result = reader.feed(data)
            if result is not None:
                return result
    finally:
        if mdl is not None:
            IoFreeMdl(mdl)
            ExFreePoolWithTag(buffer, BODY_TAG)
        yield from _call_and_wait(ctx, backend.Dispatch.WskDisconnect, backend, None, 0)
        yield from _call_and_wait(ctx, _basic_dispatch(backend).WskCloseSocket, backend)


# --- closing ----------------------------------------------------------------------------------------

CLOSE_RETRY_INTERVAL = -10 * 10_000  # 10 ms (relative, 100-ns units) between tries for a closing IRP

@kroutine("khttpd")
def KhttpdCloseConnection(connection: KhttpdConnection) -> Generator[Any, Any, None]:
    """Graceful disconnect, close the socket, free the connection's buffers, IRPs and MDLs."""
    k = current_kernel()
    g = connection.globals
    socket = connection.Socket
    ctx = connection.send or connection.recv
    if connection.tdi_fd:
        yield from tdi_transport.close_connection(connection.tdi_fd, connection.disconnected)
    else:
        while ctx is None:  # set-up failed for lack of IRPs: the socket must still be closed, so wait for one
            connection.send = ctx = _new_async_context()
            if ctx is None:
                yield KeDelayExecutionThread(KernelMode, False, CLOSE_RETRY_INTERVAL)
        if not connection.disconnected:
            yield from _call_and_wait(ctx, socket.Dispatch.WskDisconnect, socket, None, 0)
        yield from _call_and_wait(ctx, _basic_dispatch(socket).WskCloseSocket, socket)
    if connection.recv_mdl is not None:
        IoFreeMdl(connection.recv_mdl)
        ExFreePoolWithTag(connection.recv_buffer, BUFFER_TAG)
        connection.recv_mdl = None
    if connection.header_buffer:
        ExFreePoolWithTag(connection.header_buffer, HEADER_TAG)
        connection.header_buffer = 0
    _free_async_context(connection.recv)
    _free_async_context(connection.send)
    connection.recv = connection.send = None
    if connection.work_item is not None:
        IoFreeWorkItem(connection.work_item)
        connection.work_item = None
    if connection in g.connections:
        g.connections.remove(connection)
    if not connection.over_limit:
        g.stats.connections_active -= 1
    k.addr_objects.pop(connection.address, None)
    ExFreePoolWithTag(connection.address, CONNECTION_TAG)
    TraceEvents(WPP_PROVIDER, TRACE_LEVEL_INFORMATION, "TRCCONN", "closed %s after %d requests",
                connection.remote, connection.requests)
    if not g.connections:
        KeSetEvent(g.drained)


def _log(connection: KhttpdConnection, method: str, target: bytes, version: str, status: int,
         body_bytes: int) -> None:
    connection.globals.access_log.log(AccessLogEntry(connection.remote, _now_s(), method, target, version, status,
                                                     body_bytes))


# --- the image ---------------------------------------------------------------------------------------

def khttpd_image(**parameters: Any) -> DriverImage:
    """The khttpd image with parameters (CopyMode=True, MaxConnections=2 ...) baked in (for tests)."""
    if not parameters:
        return DRIVER_IMAGE
    KhttpdConfig.from_values(parameters)  # fail early on a misspelt parameter

    def entry(DriverObject: DriverObject, RegistryPath: str) -> Any:
        DriverObject.extension["parameters"] = dict(parameters)
        return DriverEntry(DriverObject, RegistryPath)

    entry.symbol = DriverEntry.symbol  # type: ignore[attr-defined]
    return DriverImage("khttpd", "khttpd", entry, image="khttpd.sys", pool_tags=POOL_TAGS,
                       description="kernel-mode web server")


DRIVER_IMAGE = DriverImage("khttpd", "khttpd", DriverEntry, image="khttpd.sys", pool_tags=POOL_TAGS,
                           description="kernel-mode web server")
