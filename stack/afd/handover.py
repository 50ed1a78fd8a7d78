"""afd's accept hand-over: a kernel WSK client gives one of its connections, with the bytes it has
not read, to the user-mode server listening on a port of the same host.

INVENTED FOR THE LAB.  Windows' afd.sys has no such interface: the thesis ("High performance kernel
mode web server for Windows") names this hand-over as what a replaced Winsock would allow, and the
lab owns afd, so it is built here.  The name follows afd's style (WskPro* for what WSK clients call);
nothing in wsk.h declares it.

    status = WskProLabHandOverConnection(Socket, Port)      (IRQL <= DISPATCH_LEVEL)
    status = AfdLabOfferConnection(Kernel, Connection, Port)  (the same for a bare transport connection,
                                                               e.g. one tdx gave up: TdxLabReleaseConnection)

Socket is an accepted WSK connection socket the client has stopped reading: its receive event
returned STATUS_DATA_NOT_ACCEPTED for the request it looked at (so tcpip still holds those bytes,
and the NBLs they arrived in), and no send of it is in flight.  afd takes the transport connection
away from the socket (whose state becomes Disconnected, with no endpoint: the client then closes it
with WskCloseSocket and nothing goes on the wire) and offers it to the \\Device\\Afd listening
endpoint bound to Port, where the server's next accept/AcceptEx takes it and its recv reads the
request from the first byte.  The TCP connection itself - sequence numbers, window, peer - never
changes: the client cannot tell.

Statuses: STATUS_SUCCESS; STATUS_INVALID_DEVICE_STATE (not a connected connection socket, or
a send, receive or held indication is outstanding); STATUS_CONNECTION_REFUSED (no user-mode
listener on Port for this connection's address family).
"""

from __future__ import annotations

from typing import Any

from stack.kernel import (STATUS_CONNECTION_REFUSED, STATUS_INVALID_DEVICE_STATE, STATUS_SUCCESS, kroutine)
from stack.wsk.constants import WSK_FLAG_CONNECTION_SOCKET

from .device import AfdEndpoint
from .socket import WskSocketObject, publish_call


def _user_mode_listener(transport: Any, conn: Any, port: int) -> Any:
    """The \\Device\\Afd listening endpoint on `port` that can take `conn` (same family, or a
    dual-stack IPv6 listener for a v4-mapped connection)."""
    version = conn.local.ip.version
    dual_stack = None
    for listener in transport.listeners():
        if listener.closed or listener.local.port != port or not isinstance(listener.context, AfdEndpoint):
            continue
        if listener.local.ip.version == version:
            return listener
        if version == 4 and listener.local.is_unspecified and not listener.v6only:
            dual_stack = listener  # an IPv4 connection (a TDI one) for a dual-stack [::] listener
    return dual_stack


def AfdLabCanOffer(Kernel: Any, Connection: Any, Port: int) -> bool:
    """Is there a user-mode listener on Port that AfdLabOfferConnection would give Connection to?"""
    from stack.tcpip.transport import get_transport
    return _user_mode_listener(get_transport(Kernel), Connection, Port) is not None


@kroutine("afd")
def AfdLabOfferConnection(Kernel: Any, Connection: Any, Port: int) -> int:
    """Offer an established transport connection nobody owns any more (handlers and context cleared)
    to the user-mode listener on Port, unread bytes and all.  Invented for the lab, as above."""
    from stack.tcpip.transport import get_transport
    listener = _user_mode_listener(get_transport(Kernel), Connection, Port)
    if listener is None:
        return STATUS_CONNECTION_REFUSED
    return listener.offer(Connection)


@kroutine("afd")
def WskProLabHandOverConnection(Socket: WskSocketObject, Port: int) -> int:
    """Move Socket's connection, unread bytes and all, into the user-mode accept queue on Port."""
    publish_call(Socket, "WskProLabHandOverConnection", None)
    conn = Socket.endpoint
    if Socket.category != WSK_FLAG_CONNECTION_SOCKET or Socket.closing or conn is None or conn.closed \
            or Socket.remote is None or Socket.sends_pending or Socket.receives_pending or Socket.held:
        return STATUS_INVALID_DEVICE_STATE
    provider = Socket.provider
    listener = _user_mode_listener(provider.transport, conn, Port)
    if listener is None:
        return STATUS_CONNECTION_REFUSED
    conn.set_handlers()  # no more WskReceiveEvent: the user-mode endpoint reads with posted receives
    conn.context = None
    status = listener.offer(conn)
    if status != STATUS_SUCCESS:
        conn.context = Socket
        from .connection import update_handlers
        update_handlers(Socket)
        return status
    unread = conn.recv_available
    Socket.endpoint = None
    Socket.set_state("Disconnected")
    provider.handovers += 1
    provider.handover_bytes += unread
    return STATUS_SUCCESS
