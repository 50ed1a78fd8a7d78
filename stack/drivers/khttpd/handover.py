"""khttpd's accept hand-over (HandOver=Accept, over WSK): the thesis's hand-over through the accept queue.

khttpd reads a request without consuming it, and afd moves the connection - with that request
still unread in tcpip - into the accept queue of the user-mode server's listening socket
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
too, and looked at again once that response is done (KhttpdResumeDeferred).  Requests it cannot
hand over are relayed as with HandOver=Relay and counted in hand_over_fallbacks: a head that
does not arrive within one indication (khttpd would have to take the first part to see the
rest), a request pipelined behind bytes already taken, or no user-mode listener on BackendPort.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator

from stack.kernel import (NT_SUCCESS, TRACE_LEVEL_ERROR, TRACE_LEVEL_INFORMATION, IoFreeWorkItem, TraceEvents,
                          kroutine)

from .http import NEED_DATA, HttpServerConnection, Request

if TYPE_CHECKING:
    from .driver import KhttpdConnection


def _at_request_boundary(connection: "KhttpdConnection") -> bool:
    http = connection.http
    return not connection.busy and http.buffered_bytes == 0 and http.current_request is None \
        and http.states["client"] == "IDLE"


@kroutine("khttpd")
def KhttpdConsiderAcceptHandOver(connection: "KhttpdConnection", data: bytes) -> bool:
    """Look at the indicated bytes without taking them: True when they are left for the user-mode server."""
    from .cached import _queue
    from .driver import _docroot_lookup
    if connection.http.buffered_bytes:
        return False  # bytes of this request were taken already: it can only be relayed
    scratch = HttpServerConnection(_docroot_lookup)  # parses a copy: the connection's parser sees nothing
    scratch.receive(data)
    item = scratch.next_request()
    if isinstance(item, Request) and item.error is None and item.dynamic:
        if not _at_request_boundary(connection):
            # The previous response is still going out: leave the request where it is; KhttpdRequestDone
            # re-arms the receive event (KhttpdResumeDeferred) and it is looked at again.
            connection.hand_over_deferred = True
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
    from .driver import WPP_PROVIDER, KhttpdCloseConnection
    connection, item, (request,) = Context
    IoFreeWorkItem(item)
    g = connection.globals
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
    yield from KhttpdResumeReceives(connection)
    if connection.peer_closed:
        _queue_close(connection)
    else:
        KhttpdProcessRequests(connection)


@kroutine("khttpd")
def KhttpdResumeReceives(connection: "KhttpdConnection") -> Generator[Any, Any, None]:
    """A zero-length WskReceive: afd offers the bytes the receive event left again."""
    from stack.wsk import WSK_BUF
    from .driver import _call_and_wait
    socket = connection.Socket
    yield from _call_and_wait(connection.send, socket.Dispatch.WskReceive, socket, WSK_BUF(None, 0, 0), 0)


@kroutine("khttpd")
def KhttpdResumeDeferred(connection: "KhttpdConnection") -> None:
    """Any IRQL <= DISPATCH_LEVEL: a zero-length WskReceive on a fresh IRP re-arms the receive event,
    which offers the request it left again (now at a request boundary)."""
    from stack.kernel import IoAllocateIrp, IoSetCompletionRoutine
    from stack.wsk import WSK_BUF
    from .driver import KhttpdFreeIrpComplete
    connection.hand_over_deferred = False
    irp = IoAllocateIrp(1)
    if irp is None:
        connection.hand_over_failed = True  # no IRP to re-arm with: the request stays unread until close
        return
    IoSetCompletionRoutine(irp, KhttpdFreeIrpComplete, None, True, True, True)
    socket = connection.Socket
    socket.Dispatch.WskReceive(socket, WSK_BUF(None, 0, 0), 0, irp)
