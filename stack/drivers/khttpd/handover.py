"""khttpd's hand-over of dynamic requests to the user-mode server: every method the thesis weighs.

HandOver=Relay     KhttpdCallBackend: connect to the user-mode server (WskSocketConnect or TDI),
                   forward the raw request, read its response, re-frame it for the client.
HandOver=Redirect  KhttpdRedirectDynamic: 307 to the user-mode server's port.
HandOver=Queue     KhttpdQueueHandOver: HTTP.sys's model, the kernel request queue of queue.py.
HandOver=Accept    the accept-queue hand-over, below (over WSK, and over TDI through tdx's lab-only
                   TdxLabReleaseConnection: KhttpdTdiHandOver).

The accept-queue hand-over: khttpd reads a request without consuming it, and afd moves the
connection - with that request still unread in tcpip - into the accept queue of the user-mode server's listening socket
(stack/afd/handover.py, a lab-only afd interface: the thesis says a replaced Winsock would allow
it, and the lab owns afd).  The user-mode server accepts it with its ordinary accept/AcceptEx
and reads the request from the first byte; its reply goes straight to the client on the same
TCP connection.  khttpd relays nothing and keeps no second connection.

KhttpdConsiderAcceptHandOver (in KhttpdWskReceiveEvent, DISPATCH_LEVEL)
    at a request boundary (nothing buffered, no response in flight) parse a scratch copy of
    the indicated bytes: a complete dynamic request head -> leave the bytes
    (STATUS_DATA_NOT_ACCEPTED) and queue KhttpdAcceptHandOverWorkItem.
KhttpdAcceptHandOverWorkItem (PASSIVE_LEVEL)
    WskProLabHandOverConnection(Socket, BackendPort), then WskCloseSocket of the now empty
    socket (no disconnect: the connection is the user-mode server's).

A dynamic request that arrives while the previous response is still going out is left unread
too, and handed over once that response is done (KhttpdHandOverDeferred).  Requests it cannot
hand over are relayed as with HandOver=Relay and counted in hand_over_fallbacks: a head that
does not arrive within one indication (khttpd would have to take the first part to see the
rest), a request pipelined behind bytes already taken, or no user-mode listener on BackendPort.
"""

from __future__ import annotations

from typing import Any, Generator

from stack.drivers.khttpd.http import NEED_DATA, HttpServerConnection, Request
from stack.drivers.khttpd import queue as request_queue
from stack.drivers.khttpd import tdi_transport
from stack.drivers.khttpd.relay import BackendError, BackendResponseReader
from stack.kernel import (NT_SUCCESS, TRACE_LEVEL_ERROR, TRACE_LEVEL_INFORMATION, ExFreePoolWithTag, IoFreeMdl,
                          TraceEvents, current_kernel, kroutine)
from stack.kernel.ke import IoFreeWorkItem
from stack.kernel.mdl import mdl_chain_views
from stack.wsk import AF_INET, AF_INET6, IPPROTO_TCP, SOCK_STREAM, WSK_BUF, SOCKADDR_IN, SOCKADDR_IN6

from .state import BODY_TAG, WPP_PROVIDER, KhttpdConnection, _http_now, _nonpaged_mdl, _docroot_lookup, _log
from .wsk_transport import _backend_sockaddr, _basic_dispatch, _call_and_wait
from .response import KhttpdSendBytes


def _at_request_boundary(connection: KhttpdConnection) -> bool:
    http = connection.http
    return not connection.busy and http.buffered_bytes == 0 and http.current_request is None \
        and http.states["client"] == "IDLE"


@kroutine("khttpd")
def KhttpdConsiderAcceptHandOver(connection: KhttpdConnection, data: bytes) -> bool:
    """Look at the indicated bytes without taking them: True when they are left for the user-mode server."""
    from .cached import _queue
    if connection.http.buffered_bytes:
        return False  # bytes of this request were taken already: it can only be relayed
    scratch = HttpServerConnection(_docroot_lookup)  # parses a copy: the connection's parser sees nothing
    scratch.receive(data)
    item = scratch.next_request()
    if isinstance(item, Request) and item.error is None and item.dynamic:
        if not _at_request_boundary(connection):
            # The previous response is still going out: leave the request where it is (the transport
            # indicates nothing more meanwhile); KhttpdRequestDone hands it over once that response is done.
            connection.hand_over_deferred = item
            return True
        connection.handing_over = True
        _queue(connection, KhttpdAcceptHandOverWorkItem, item)
        return True
    if item is NEED_DATA and data:
        connection.globals.stats.hand_over_fallbacks += int(_looks_dynamic(data))
    return False


def _looks_dynamic(data: bytes) -> bool:
    """A partial head whose target is dynamic (the fallback counter's only use)."""
    line = data.split(b"\r\n", 1)[0].split(b" ")
    return len(line) > 1 and line[1].startswith(b"/app/")


@kroutine("khttpd")
def KhttpdAcceptHandOverWorkItem(DeviceObject: Any, Context: tuple) -> Generator[Any, Any, None]:
    """PASSIVE_LEVEL: afd moves the connection; khttpd closes its now empty socket."""
    from stack.afd.handover import WskProLabHandOverConnection
    from .cached import KhttpdProcessRequests, _queue_close
    from .driver import KhttpdCloseConnection
    connection, item, (request,) = Context
    IoFreeWorkItem(item)
    g = connection.globals
    if connection.tdi_fd:
        status = KhttpdTdiHandOver(connection)
    else:
        status = WskProLabHandOverConnection(connection.Socket, g.config.BackendPort)
    if NT_SUCCESS(status):
        g.stats.requests += 1
        g.stats.dynamic_handed_over += 1
        connection.requests += 1
        connection.disconnected = True  # the connection is the user-mode server's: no WskDisconnect
        connection.closing = True
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_INFORMATION, "TRCREQUEST", "%s %s %s handed over to port %d",
                    connection.remote, request.method, request.target.decode("latin-1"), g.config.BackendPort)
        from .cached import _release_event_connection
        _release_event_connection(connection)
        yield from KhttpdCloseConnection(connection)
        return
    TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "hand-over of %s failed: %!STATUS!", connection.remote,
                status)
    g.stats.hand_over_fallbacks += 1
    connection.hand_over_failed = True
    connection.handing_over = False
    if connection.tdi_fd:  # tdx indicates again once a TDI_RECEIVE took the bytes it holds
        count = yield from tdi_transport.recv_mdl(connection.tdi_fd, connection.recv_mdl,
                                                  g.config.ReceiveBufferSize)
        if count < 0:
            _queue_close(connection)
            return
        connection.http.receive(b"".join(mdl_chain_views(connection.recv_mdl, 0, count)) if count else b"")
    else:
        yield from KhttpdResumeReceives(connection)
    if connection.peer_closed:
        _queue_close(connection)
    else:
        KhttpdProcessRequests(connection)


@kroutine("khttpd")
def KhttpdTdiHandOver(connection: KhttpdConnection) -> int:
    """Over TDI: tdx gives up the connection (TdxLabReleaseConnection, lab-only), afd offers it to the
    user-mode listener (AfdLabOfferConnection, lab-only).  Checked first, so a failure leaves it with tdx."""
    from stack.afd.handover import AfdLabCanOffer, AfdLabOfferConnection
    from stack.kernel import STATUS_CONNECTION_REFUSED, STATUS_INVALID_DEVICE_STATE
    from stack.tdi import sockets as ks
    from stack.tdi.tdx import TdxLabReleaseConnection
    k = current_kernel()
    port = connection.globals.config.BackendPort
    file_object = ks.connection_file(connection.tdi_fd)
    endpoint = getattr(getattr(file_object, "FsContext", None), "endpoint", None)
    if endpoint is None:
        return STATUS_INVALID_DEVICE_STATE
    if not AfdLabCanOffer(k, endpoint, port):
        return STATUS_CONNECTION_REFUSED
    conn = TdxLabReleaseConnection(file_object)
    if conn is None:
        return STATUS_INVALID_DEVICE_STATE
    status = AfdLabOfferConnection(k, conn, port)
    if not NT_SUCCESS(status):  # (cannot happen after the check above) nobody will own it: reset it
        conn.disconnect(True)
        conn.close()
    return status


@kroutine("khttpd")
def KhttpdResumeReceives(connection: KhttpdConnection) -> Generator[Any, Any, None]:
    """A zero-length WskReceive: afd offers the bytes the receive event left again."""
    socket = connection.Socket
    yield from _call_and_wait(connection.send, socket.Dispatch.WskReceive, socket, WSK_BUF(None, 0, 0), 0)


@kroutine("khttpd")
def KhttpdHandOverDeferred(connection: KhttpdConnection) -> None:
    """The response in flight is done: hand over the request the receive event left unread meanwhile
    (its bytes are still the first unread ones: nothing was taken since)."""
    from .cached import _queue
    request, connection.hand_over_deferred = connection.hand_over_deferred, None
    connection.handing_over = True
    _queue(connection, KhttpdAcceptHandOverWorkItem, request)


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
