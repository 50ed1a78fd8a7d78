"""khttpd's conditional accept (ConditionalAccept=1, over WSK): decide on a connection before its SYN is
answered, with SO_CONDITIONAL_ACCEPT and WskInspectEvent.

tcpip holds each SYN on khttpd's port unanswered (stack/tcpip/syn_hold.py) and afd asks
KhttpdInspectEvent (DISPATCH_LEVEL, from the NIC's DPC):

    a client already at MaxConnectionsPerClient   WskInspectReject: a RST answers its SYN - no
                                                  connection block, no 503 to send, no TIME_WAIT
    every slot taken (MaxConnections)             WskInspectPend: the SYN stays unanswered (the
                                                  peer retransmits it) until a connection closes;
                                                  then KhttpdInspectNext calls WskInspectComplete
                                                  (WskInspectAccept) and the SYN-ACK goes out
    otherwise                                     WskInspectAccept: SYN-ACK now

KhttpdAbortEvent forgets a pended SYN whose peer gave up.  `admitting` counts connections
accepted at SYN time whose handshake has not reached KhttpdAcceptEvent yet, so a burst of SYNs
cannot all take the last slot (a handshake that never completes keeps its count: a lab shortcut).
"""

from __future__ import annotations

from typing import Any

from stack.kernel import STATUS_SUCCESS, IoAllocateIrp, IoSetCompletionRoutine, kroutine
from stack.wsk.constants import WskInspectAccept, WskInspectPend, WskInspectReject

from .state import KhttpdGlobals


def _remote_text(sockaddr: Any) -> str:
    from .wsk_transport import _sockaddr_text
    return _sockaddr_text(sockaddr)


@kroutine("khttpd")
def KhttpdInspectEvent(SocketContext: KhttpdGlobals, LocalAddress: Any, RemoteAddress: Any, InspectID: Any) -> int:
    """PFN_WSK_INSPECT_EVENT: a SYN nobody has answered yet.  Accept, reject or pend it."""
    g = SocketContext
    if g.stopping:
        return WskInspectReject
    remote = _remote_text(RemoteAddress)
    same_client = g.connections.from_client(remote)
    if same_client >= g.config.MaxConnectionsPerClient:
        g.stats.inspect_rejected += 1
        return WskInspectReject
    if g.stats.connections_active + g.inspect_admitting >= g.config.MaxConnections:
        g.inspect_waiting.append((InspectID.Key, InspectID.SerialNumber))
        g.stats.inspect_pended += 1
        return WskInspectPend
    g.inspect_admitting += 1
    return WskInspectAccept


@kroutine("khttpd")
def KhttpdAbortEvent(SocketContext: KhttpdGlobals, InspectID: Any) -> int:
    """PFN_WSK_ABORT_EVENT: the peer of a pended SYN gave up."""
    key = (InspectID.Key, InspectID.SerialNumber)
    if key in SocketContext.inspect_waiting:
        SocketContext.inspect_waiting.remove(key)
    return STATUS_SUCCESS


@kroutine("khttpd")
def KhttpdInspectNext(g: KhttpdGlobals) -> None:
    """A slot freed: WskInspectComplete(WskInspectAccept) for the oldest pended SYN (its SYN-ACK goes out)."""
    from stack.wsk import WSK_INSPECT_ID
    from .wsk_transport import KhttpdFreeIrpComplete
    socket = g.listen_socket
    if socket is None or not g.inspect_waiting or g.stopping:
        return
    if g.stats.connections_active + g.inspect_admitting >= g.config.MaxConnections:
        return
    irp = IoAllocateIrp(1)
    if irp is None:
        return  # tried again when the next connection closes
    key, serial = g.inspect_waiting.popleft()
    g.inspect_admitting += 1
    IoSetCompletionRoutine(irp, KhttpdFreeIrpComplete, None, True, True, True)
    socket.Dispatch.WskInspectComplete(socket, WSK_INSPECT_ID(key, serial), WskInspectAccept, irp)


def KhttpdAdmitted(g: KhttpdGlobals) -> None:
    """KhttpdAcceptEvent: a connection accepted at SYN time reached the accept event."""
    if g.inspect_admitting:
        g.inspect_admitting -= 1


_ = WskInspectPend
