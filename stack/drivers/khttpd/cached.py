"""khttpd's event-driven connections: requests answered from the receive event (ResponseCache > 0).

HTTP.sys's design, which the thesis names as future work.  Connections are event
driven: no thread waits on them.  Over TDI the events are tdx's (below); over WSK they are
WskReceiveEvent / WskDisconnectEvent (wsk_events.py), and the hit's send is a WskSend with
the same header MDL -> entry MDL chain.  KhttpdProcessRequests and the work items serve both.

KhttpdTdiAcceptCallback (DISPATCH_LEVEL, as the TDI_ACCEPT completes)
    the connection's block, buffers and send IRP (all nonpaged); no worker thread.
KhttpdTdiReceiveEvent (ClientEventReceive, DISPATCH_LEVEL, from the NIC's DPC)
    takes the bytes into the HTTP parser and calls KhttpdProcessRequests:
    hit   KhttpdSendCached right there: header into the connection's nonpaged header
          buffer, header MDL -> the cache entry's locked MDL, TDI_SEND with IoCallDriver.
    miss  a work item (KhttpdCacheMissWorkItem, PASSIVE_LEVEL) opens the file, fills the
          cache (IRP_MN_MDL + MmProbeAndLockPages) and then answers the same way.
    other requests (dynamic, ranges, conditionals, errors) go to a work item that runs
          the ordinary path (KhttpdServeRequest) at PASSIVE_LEVEL.
KhttpdCachedSendComplete (DISPATCH_LEVEL)
    frees the header MDL, drops the entry's reference, goes on with a pipelined request
    or queues the close (ZwClose is PASSIVE_LEVEL only).
Nothing on the hit path touches paged memory or waits; the kernel bug-checks if it does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator

from stack.fs import fsio
from stack.fs.kfs import VOLUME_DEVICE_NAME
from stack.kernel import (NT_SUCCESS, STATUS_DATA_NOT_ACCEPTED, STATUS_MORE_PROCESSING_REQUIRED, STATUS_SUCCESS,
                          STATUS_UNSUCCESSFUL, DelayedWorkQueue, IoAllocateIrp, IoAllocateWorkItem, IoCallDriver,
                          IoFreeIrp, IoFreeMdl, IoFreeWorkItem, IoGetDeviceObjectPointer, IoQueueWorkItem,
                          IoReuseIrp, IoSetCompletionRoutine, current_kernel, kroutine)
from stack.tdi import sockets as ks
from stack.tdi.build import TdiBuildSend
from stack.tdi.constants import TDI_EVENT_DISCONNECT, TDI_EVENT_RECEIVE, TDI_SEND_AND_DISCONNECT
from stack.wsk import WSK_BUF

from .cache import KhttpdCacheEntry, KhttpdCacheFill, KhttpdResponseCache
from .conditional import Validators
from .http import NEED_DATA, PAUSED, PEER_CLOSED, ProtocolFailure, Request, http_date
from .mime import content_type_for

if TYPE_CHECKING:
    from .state import KhttpdConnection, KhttpdGlobals


def _cacheable(request: Request) -> bool:
    """GET/HEAD of a static file, with nothing that needs the ordinary path."""
    if request.error is not None or request.dynamic or request.path is None:
        return False
    names = {name for name, _ in request.headers}
    return not names & {b"range", b"if-none-match", b"if-modified-since", b"if-range"}


@kroutine("khttpd")
def KhttpdStartCachedListening(g: "KhttpdGlobals", fd: int) -> Generator[Any, Any, int]:
    """Receive and disconnect event handlers on the address object (before listening starts)."""
    status = yield from ks.set_event_handler(fd, TDI_EVENT_RECEIVE, KhttpdTdiReceiveEvent, g)
    if NT_SUCCESS(status):
        status = yield from ks.set_event_handler(fd, TDI_EVENT_DISCONNECT, KhttpdTdiDisconnectEvent, g)
    return status


@kroutine("khttpd")
def KhttpdTdiAcceptCallback(ListenFd: int, Fd: int) -> None:
    """DISPATCH_LEVEL: a connection is accepted; it lives on events from now on."""
    from .driver import KhttpdNewConnection, set_up_connection_at_dispatch
    g: KhttpdGlobals = current_kernel().drivers["khttpd"].extension["khttpd"]
    peer = ks.getpeername(Fd)
    remote = str(getattr(peer.ip, "ipv4_mapped", None) or peer.ip) if peer is not None else "-"
    connection = KhttpdNewConnection(g, None, remote, "")
    if connection is None:
        ks.abort_nowait(Fd)
        return
    connection.tdi_fd = Fd
    connection.event_driven = True
    ok = set_up_connection_at_dispatch(connection)
    connection.send_irp = IoAllocateIrp(ks.connection_file(Fd).DeviceObject.stack_size + 1) if ok else None
    ks.connection_context(Fd).owner = connection
    if connection.send_irp is None or connection.over_limit:
        if connection.over_limit:
            _queue(connection, KhttpdOverLimitWorkItem)
        else:
            _queue_close(connection)


@kroutine("khttpd")
def KhttpdTdiReceiveEvent(TdiEventContext: Any, ConnectionContext: Any, ReceiveFlags: int, BytesIndicated: int,
                          BytesAvailable: int, BytesTaken: Any, Tsdu: Any, IoRequestPacket: Any) -> int:
    """ClientEventReceive at DISPATCH_LEVEL: take the bytes, answer what can be answered now."""
    connection: KhttpdConnection | None = getattr(ConnectionContext, "owner", None)
    if connection is None or connection.closing:
        BytesTaken.value = 0
        return STATUS_DATA_NOT_ACCEPTED
    if connection.handing_over:
        BytesTaken.value = 0
        return STATUS_DATA_NOT_ACCEPTED
    k = current_kernel()
    k.copies.count(BytesIndicated, "KhttpdTdiReceiveEvent")  # into the HTTP parser's buffer (or a look)
    data = bytes(Tsdu[:BytesIndicated])
    if connection.globals.config.HandOver == "Accept" and not connection.hand_over_failed:
        from .handover import KhttpdConsiderAcceptHandOver
        if KhttpdConsiderAcceptHandOver(connection, data):
            BytesTaken.value = 0
            return STATUS_DATA_NOT_ACCEPTED  # tdx holds the bytes (and stops indicating) for the user-mode server
    connection.http.receive(data)
    BytesTaken.value = BytesIndicated
    KhttpdProcessRequests(connection)
    return STATUS_SUCCESS


@kroutine("khttpd")
def KhttpdTdiDisconnectEvent(TdiEventContext: Any, ConnectionContext: Any, DisconnectDataLength: int,
                             DisconnectData: Any, DisconnectInformationLength: int, DisconnectInformation: Any,
                             DisconnectFlags: int) -> int:
    connection: KhttpdConnection | None = getattr(ConnectionContext, "owner", None)
    if connection is not None and not connection.closing:
        connection.peer_closed = True
        if not connection.busy:
            _queue_close(connection)
    return STATUS_SUCCESS


@kroutine("khttpd")
def KhttpdProcessRequests(connection: "KhttpdConnection") -> None:
    """Parse the next request and answer it: a hit at once, anything else from a work item."""
    if connection.busy or connection.closing:
        return
    http = connection.http
    item = http.next_request()
    if item is NEED_DATA or item is PAUSED:
        if connection.peer_closed:
            _queue_close(connection)
        return
    if item is PEER_CLOSED:
        _queue_close(connection)
        return
    g = connection.globals
    connection.busy = True
    if isinstance(item, Request) and g.cache is not None and _cacheable(item):
        cache: KhttpdResponseCache = g.cache
        entry = cache.lookup(item.path.fs_path)
        if entry is not None:
            cache.hits += 1
            entry.hits += 1
            KhttpdSendCached(connection, item, entry)
            return
        cache.misses += 1
        _queue(connection, KhttpdCacheMissWorkItem, item)
        return
    _queue(connection, KhttpdServeQueuedWorkItem, item)


@kroutine("khttpd")
def KhttpdSendCached(connection: "KhttpdConnection", request: Request, entry: KhttpdCacheEntry) -> None:
    """Any IRQL <= DISPATCH_LEVEL: header MDL -> entry MDL, one TDI_SEND sent with IoCallDriver (over WSK:
    one WskSend, or WskDisconnect with the data when it is the connection's last response)."""
    from .response import KhttpdLastResponse, _header_mdl
    from .state import _date_epoch, _log, _now_s
    g = connection.globals
    http = connection.http
    g.stats.requests += 1
    connection.requests += 1
    header = http.build_response_header(200, now_s=http_date(_now_s(), _date_epoch()), content_length=entry.size,
                                        content_type=entry.content_type,
                                        headers=[("Accept-Ranges", "bytes")] + entry.validators.headers(),
                                        keep_alive=request.keep_alive)
    body = 0 if request.head_only else entry.size
    if body:
        http.body_passthrough(body)
    http.end_response()
    header_mdl = _header_mdl(connection, header)
    if body:
        header_mdl.next = entry.mdl
        entry.refs += 1
    connection.cached_send = (header_mdl, entry if body else None, len(header) + body)
    g.stats.static_zero_copy += int(bool(body))
    g.stats.head_requests += int(request.head_only)
    _log(connection, request.method, request.target, request.http_version, 200, body)
    irp = connection.send_irp
    IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
    last = KhttpdLastResponse(connection)
    connection.disconnected = connection.disconnected or last
    if not connection.tdi_fd:  # WSK: WskSend (or WskDisconnect with the data: send and disconnect)
        socket = connection.Socket
        IoSetCompletionRoutine(irp, KhttpdCachedSendComplete, connection, True, True, True)
        call = socket.Dispatch.WskDisconnect if last else socket.Dispatch.WskSend
        call(socket, WSK_BUF(header_mdl, 0, len(header) + body), 0, irp)
        return
    file_object = ks.connection_file(connection.tdi_fd)
    flags = TDI_SEND_AND_DISCONNECT if last else 0  # the response and our FIN in one TDI_SEND
    TdiBuildSend(irp, file_object.DeviceObject, file_object, KhttpdCachedSendComplete, connection, header_mdl,
                 flags, len(header) + body)
    IoCallDriver(file_object.DeviceObject, irp)


@kroutine("khttpd")
def KhttpdCachedSendComplete(DeviceObject: Any, Irp: Any, Context: "KhttpdConnection") -> int:
    """DISPATCH_LEVEL: the peer acknowledged the response: release, then the next request or close."""
    connection = Context
    header_mdl, entry, length = connection.cached_send
    connection.cached_send = None
    header_mdl.next = None
    IoFreeMdl(header_mdl)
    if entry is not None:
        entry.refs -= 1
    ok = NT_SUCCESS(Irp.IoStatus.Status)
    if ok:  # (a WskDisconnect with the data completes with Information 0: count what it carried)
        connection.globals.stats.bytes_sent += int(Irp.IoStatus.Information or 0) or length
    KhttpdRequestDone(connection, ok)
    return STATUS_MORE_PROCESSING_REQUIRED


def KhttpdRequestDone(connection: "KhttpdConnection", ok: bool) -> None:
    connection.busy = False
    http = connection.http
    if not ok or http.should_close:
        _queue_close(connection)
        return
    http.start_next_cycle()
    if connection.hand_over_deferred is not None:  # HandOver=Accept left a request unread meanwhile
        from .handover import KhttpdHandOverDeferred
        KhttpdHandOverDeferred(connection)
        return
    KhttpdProcessRequests(connection)


# --- work items (PASSIVE_LEVEL) ---------------------------------------------------------------------

def _queue(connection: "KhttpdConnection", routine: Any, *args: Any) -> None:
    item = IoAllocateWorkItem(connection.globals.device)
    IoQueueWorkItem(item, routine, DelayedWorkQueue, (connection, item, args))


def _queue_close(connection: "KhttpdConnection") -> None:
    if connection.closing:
        return
    connection.closing = True
    _queue(connection, KhttpdCloseWorkItem)


@kroutine("khttpd")
def KhttpdCacheMissWorkItem(DeviceObject: Any, Context: tuple) -> Generator[Any, Any, None]:
    """Open the file, fill the cache, answer from it."""
    from .driver import KhttpdServeRequest
    from .state import _fs_name
    connection, item, (request,) = Context
    IoFreeWorkItem(item)
    g = connection.globals
    path = request.path
    volume = IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)
    status, file_object = fsio.fs_open(volume, _fs_name(path.fs_path)) if volume else (STATUS_UNSUCCESSFUL, None)
    entry = None
    if file_object is not None:
        status, size = fsio.fs_query_size(file_object)
        info = None
        if NT_SUCCESS(status):
            status, info = fsio.fs_query_basic(file_object)  # LastWriteTime: the validators
        if NT_SUCCESS(status) and info is not None:
            validators = Validators.for_file(path.fs_path, size, info.LastWriteTime)
            status, entry = KhttpdCacheFill(path.fs_path, file_object, size, content_type_for(path.fs_path),
                                            validators)
        fsio.fs_close(file_object)
    if entry is not None and g.cache.insert(entry):
        KhttpdSendCached(connection, request, entry)
        return
    if entry is not None:  # bigger than the budget: served by the ordinary path instead
        from .cache import KhttpdCacheReleaseEntry
        KhttpdCacheReleaseEntry(entry)
    ok = yield from KhttpdServeRequest(connection, request)
    KhttpdRequestDone(connection, ok)


@kroutine("khttpd")
def KhttpdServeQueuedWorkItem(DeviceObject: Any, Context: tuple) -> Generator[Any, Any, None]:
    """A request the cache cannot answer: the ordinary path, on a worker thread."""
    from .driver import KhttpdServeRequest
    from .response import KhttpdSendBytes
    from .state import _http_now, _log
    connection, item, (request,) = Context
    IoFreeWorkItem(item)
    if not connection.local and connection.tdi_fd:
        local = yield from ks.getsockname(connection.tdi_fd)
        connection.local = str(getattr(local.ip, "ipv4_mapped", None) or local.ip) if local else ""
    if isinstance(request, ProtocolFailure):
        connection.globals.stats.errors += 1
        yield from KhttpdSendBytes(connection, connection.http.build_error_response(request, now_s=_http_now()))
        _log(connection, "-", b"-", "1.1", request.status, 0)
        KhttpdRequestDone(connection, False)
        return
    ok = yield from KhttpdServeRequest(connection, request)
    KhttpdRequestDone(connection, ok)


@kroutine("khttpd")
def KhttpdOverLimitWorkItem(DeviceObject: Any, Context: tuple) -> Generator[Any, Any, None]:
    from .response import KhttpdSendBytes
    from .state import _http_now, _log
    connection, item, _ = Context
    IoFreeWorkItem(item)
    yield from KhttpdSendBytes(connection, connection.http.build_error_response(
        503, now_s=_http_now(), headers=[("Retry-After", "1")]))
    _log(connection, "-", b"-", "1.1", 503, 0)
    connection.busy = False
    _queue_close(connection)


@kroutine("khttpd")
def KhttpdCloseWorkItem(DeviceObject: Any, Context: tuple) -> Generator[Any, Any, None]:
    from .driver import KhttpdCloseConnection
    connection, item, _ = Context
    IoFreeWorkItem(item)
    _release_event_connection(connection)
    yield from KhttpdCloseConnection(connection)


def _release_event_connection(connection: "KhttpdConnection") -> None:
    """No more events for this connection: forget it in tdx's context, free its send IRP."""
    if connection.tdi_fd:
        ks.connection_context(connection.tdi_fd).owner = None
    if connection.send_irp is not None:
        IoFreeIrp(connection.send_irp)
        connection.send_irp = None
