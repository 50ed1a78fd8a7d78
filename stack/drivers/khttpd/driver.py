"""khttpd: the kernel-mode web server ("High performance kernel mode web server for Windows").

Written only against the emulated kernel (stack.kernel), the Winsock Kernel (stack.wsk), TDI
(stack.tdi) and the file system's IRP interface (stack.fs.fsio builds the IRPs; \\Driver\\kfs
answers them).  Reads like a C driver, one file per part:

driver.py         DriverEntry (Parameters key, volume, device, listening), unload, and the
                  connection worker of the thread-per-connection design:
    KhttpdConnectionWorker  WskReceive (or TDI_RECEIVE) with one reused IRP and one MDL over a
                  nonpaged receive buffer; the HTTP core (http.py) parses; KhttpdServeRequest
                  answers each request; KhttpdCloseConnection ends it.
state.py          KhttpdConfig (the Parameters values), counters, globals, connection and send
                  blocks, pool tags, WPP, the Date clock and access log helpers.
wsk_transport.py  WskRegister .. the dual-stack listening socket, KhttpdAcceptEvent, and the
                  "one reused IRP + an event" call pattern.
tdi_transport.py  the same over tdx through the TDI sockets library (Transport=TDI).
response.py       static files: header MDL -> the cache manager's IRP_MN_MDL chain, ONE send
                  (copy mode: a nonpaged body buffer); Range/304 (conditional.py); the send path.
handover.py       dynamic requests to the user-mode server: Relay, Redirect, Queue (queue.py), Accept.
cached.py, cache.py, wsk_events.py
                  event-driven connections (ResponseCache > 0 or HandOver=Accept): requests parsed
                  in the receive event at DISPATCH_LEVEL, cache hits answered right there.

Configuration: registry-style values under
``\\Registry\\Machine\\System\\CurrentControlSet\\Services\\khttpd\\Parameters``
(``kernel.extensions["registry"][path]``, a dict) or ``khttpd_image(**values)``:
Port, CopyMode, MaxConnections, BackendPort, BackendAddress, ReceiveBufferSize,
Transport (``WSK``, the default, or ``TDI``), ResponseCache (bytes of locked pages; hits answered
in WskReceiveEvent or TDI's ClientEventReceive), HeaderTimeoutMs and MaxConnectionsPerClient (slow
clients), SendAndDisconnect (the last response carries the FIN: WskDisconnect with data /
TDI_SEND_AND_DISCONNECT), HandOver (``Relay``, ``Redirect``, ``Queue`` or ``Accept``),
ConditionalAccept (WSK: decide at the SYN, before it is answered - syn_inspect.py).
Errors: 400/404/405/414/431/505 from the HTTP core; 503 over the connection limit; 502 when the
user-mode server fails.
"""


from __future__ import annotations

from typing import Any, Generator

from stack.drivers.khttpd.http import NEED_DATA, PAUSED, PEER_CLOSED, HttpServerConnection, ProtocolFailure, Request
from stack.drivers.khttpd import queue as request_queue
from stack.drivers.khttpd import tdi_transport
from stack.fs.kfs import DRIVER_IMAGE as KFS_IMAGE
from stack.fs.kfs import VOLUME_DEVICE_NAME
from stack.kernel import (NT_SUCCESS, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
                          TRACE_LEVEL_ERROR, TRACE_LEVEL_INFORMATION, TRACE_LEVEL_VERBOSE, WPP_CLEANUP,
                          WPP_INIT_TRACING, ExAllocatePoolWithTag, ExFreePoolWithTag, IoCreateDevice, IoDeleteDevice,
                          IoFreeMdl, IoGetDeviceObjectPointer, IoLoadDriver, KeSetEvent, KeWaitForSingleObject,
                          NonPagedPoolNx, TraceEvents, current_kernel, kroutine)
from stack.kernel.io import FILE_DEVICE_NETWORK, DeviceObject, DriverImage, DriverObject
from stack.kernel.ke import (KEVENT, DelayedWorkQueue, Executive, KeDelayExecutionThread, KernelMode, NotificationEvent,
                             IoAllocateWorkItem, IoFreeWorkItem, IoQueueWorkItem, KeClearEvent)
from stack.kernel.mdl import mdl_chain_views
from stack.wsk import WSK_BUF, WskDeregister, WskReleaseProviderNPI

from .filecache import KhttpdOpenFileCache, KhttpdOpenFileCacheFlush
from .state import (KHTTPD_TAG, POOL_TAGS, GLOBALS_BLOCK_SIZE, WPP_PROVIDER, KhttpdConfig, KhttpdGlobals,
                    KhttpdConnection, KhttpdDeleteLookasideLists, KhttpdInitializeLookasideLists, _http_now,
                    _lookaside_mdl, _docroot_lookup, _log)
from stack.kernel.lookaside import ExAllocateFromLookasideListEx, ExFreeToLookasideListEx
from .wsk_transport import (_basic_dispatch, _new_async_context, _free_async_context, _call_and_wait,
                            KhttpdStartListening, _abort_connection)
from .response import KhttpdServeStatic, KhttpdSendBytes
from .handover import KhttpdRelayDynamic, KhttpdRedirectDynamic

# Every part loads with the driver, so its routines' symbols get their addresses in one fixed order
# (a transcript must not depend on which configuration ran first in a process).
from . import cache, cached, syn_inspect, wsk_events  # noqa: F401,E402

# What tests, the debugger and the other parts import from "the driver" (defined in state.py).
from .state import BODY_TAG, SEND_TAG, KhttpdStats, khttpd_globals  # noqa: F401,E402


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
    address = ExAllocatePoolWithTag(NonPagedPoolNx, GLOBALS_BLOCK_SIZE, KHTTPD_TAG)
    if not address:
        WPP_CLEANUP(WPP_PROVIDER, DriverObject)
        return STATUS_INSUFFICIENT_RESOURCES
    g = KhttpdGlobals(address, DriverObject, config)
    if int(config.OpenFileCache) > 0:
        g.open_files = KhttpdOpenFileCache(int(config.OpenFileCache), int(config.OpenFileCacheTtlMs) * 1_000_000)
    KhttpdInitializeLookasideLists(g)
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
    if g.open_files is not None:
        KhttpdOpenFileCacheFlush(g.open_files)  # close the files kept open (no send is left)
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
    KhttpdDeleteLookasideLists(g)
    k.addr_objects.pop(g.address, None)
    ExFreePoolWithTag(g.address, KHTTPD_TAG)
    WPP_CLEANUP(WPP_PROVIDER, g.driver)


def KhttpdNewConnection(g: KhttpdGlobals, Socket: Any, remote: str, local: str) -> KhttpdConnection | None:
    """The connection's block (counted against MaxConnections); None without pool."""
    address = ExAllocateFromLookasideListEx(g.connection_lookaside)
    work_item = IoAllocateWorkItem(g.device) if address else None
    if work_item is None:  # no pool for the connection or its work item: refuse it (the transport resets it)
        if address:
            ExFreeToLookasideListEx(g.connection_lookaside, address)
        g.stats.connections_refused += 1
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCCONN", "refused %s: %!STATUS!", remote,
                    STATUS_INSUFFICIENT_RESOURCES)
        return None
    same_client = g.connections.from_client(remote)
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
    g = connection.globals
    connection.recv_buffer, connection.recv_mdl = _lookaside_mdl(g.receive_lookaside)
    connection.header_buffer = ExAllocateFromLookasideListEx(g.header_lookaside)
    ok = bool(connection.recv and connection.send and connection.recv_mdl and connection.header_buffer)
    if not ok:
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "no resources for connection %s",
                    connection.remote)
    return ok
    yield  # a generator routine: the worker waits inside its callees


def set_up_connection_at_dispatch(connection: KhttpdConnection) -> bool:
    """KhttpdSetUpConnection run to its end from an event callback (DISPATCH_LEVEL): it only
    allocates nonpaged memory and never waits, so it finishes on its first step."""
    setup = KhttpdSetUpConnection(connection)
    try:
        next(setup)
    except StopIteration as done:
        return bool(done.value)
    return False


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
        ExFreeToLookasideListEx(g.receive_lookaside, connection.recv_buffer)
        connection.recv_mdl = None
    if connection.header_buffer:
        ExFreeToLookasideListEx(g.header_lookaside, connection.header_buffer)
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
        if g.inspect_waiting:  # ConditionalAccept: a slot is free for a SYN that waits unanswered
            from .syn_inspect import KhttpdInspectNext
            KhttpdInspectNext(g)
    k.addr_objects.pop(connection.address, None)
    ExFreeToLookasideListEx(g.connection_lookaside, connection.address)
    TraceEvents(WPP_PROVIDER, TRACE_LEVEL_INFORMATION, "TRCCONN", "closed %s after %d requests",
                connection.remote, connection.requests)
    if not g.connections:
        KeSetEvent(g.drained)


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
