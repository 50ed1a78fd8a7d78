"""afd's WSK sockets: the socket object and what every dispatch table shares.

Each socket is a `WskSocketObject` (a WSK_SOCKET: `Dispatch` first) in nonpaged pool with
tag 'WskS' and the `_WSK_SOCKET_CONTEXT` layout, so `dt` and `db` work on its address.
The routines of each category's table live in basic.py, listen.py, connection.py and
datagram.py (a stream socket's table takes from listen and connection).
A client calls the routines of its socket's dispatch table directly (`afd!WskProAPISend`,
`afd!WskProAPIReceive` ...: afd's own names, as published stacks show them) and afd takes one
stack location of the client's IRP (see irp.py).  Transport completions come back through
`afd!WskProTL...Complete` routines (WskProTLReceiveComplete and WskProTLCloseEndpointComplete
are afd's real names; the other WskProTL* routines are named in the same style by the
emulator), and transport events through `afd!WskProTLEvent...` routines, which call the
client's event callbacks.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any, Callable

from stack.kernel import (DISPATCH_LEVEL, KDPC, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, ExAllocatePoolWithTag, ExFreePoolWithTag,
                          KeInitializeDpc, current_kernel)
from stack.kernel.layouts import Field as F, StructLayout, register_layout, LAYOUTS
from stack.kernel.mdl import mdl_chain_length
from stack.kernel.pool import NonPagedPoolNx
from stack.kernel.symbols import symbol_of
from stack.tcpip.sharing import Share
from stack.tcpip.addr import SockAddr
from stack.wsk.constants import (AF_INET, AF_INET6, CATEGORY_NAMES, CONNECTION_EVENTS, DATAGRAM_EVENTS, LISTEN_EVENTS,
                                 WSK_EVENT_ACCEPT, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_RECEIVE_FROM,
                                 WSK_EVENT_SEND_BACKLOG, WSK_FLAG_AT_DISPATCH_LEVEL, WSK_FLAG_CONNECTION_SOCKET,
                                 WSK_FLAG_DATAGRAM_SOCKET, WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_STREAM_SOCKET)
from stack.wsk.events import WskCall, WskEvent, WskSocketState
from stack.wsk.netio import WskClient
from stack.wsk.structs import WSK_BUF, WSK_SOCKET, Ref

from .indication import IndicationPiece, free_pieces
from .irp import IrpCompletion, afd_take_irp, complete_irp
from .state import WskProvider, WskSocketInfo

SOCKET_TAG = "WskS"
SOCKET_STATES = ("Open", "Bound", "Listening", "Connecting", "Connected", "Disconnecting", "PeerDisconnected",
                 "Disconnected", "Aborted", "Closing", "Closed")
IDEAL_SEND_BACKLOG = 0x10000  # what WskSendBacklogEvent reports (no SIO_IDEAL_SEND_BACKLOG tuning yet)
LISTEN_BACKLOG = 200  # WSK has no backlog parameter: the system's SOMAXCONN-sized queue

# flag bits of _WSK_SOCKET_CONTEXT.Flags
SKF_V6ONLY = 0x1
SKF_NODELAY = 0x2
SKF_RECEIVE_PAUSED = 0x4
SKF_CLOSING = 0x8
SKF_STATIC_EVENTS = 0x10

register_layout(StructLayout("_WSK_SOCKET_CONTEXT", 0xB0, [
    F("Dispatch", 0x00, "ptr", "Void"),
    F("Category", 0x08, "u32"),
    F("State", 0x0C, "u32"),
    F("AddressFamily", 0x10, "u16"),
    F("SocketType", 0x12, "u16"),
    F("Protocol", 0x14, "u32"),
    F("OwnerDriver", 0x18, "ptr", "_DRIVER_OBJECT"),
    F("ClientContext", 0x20, "ptr", "Void"),
    F("ClientDispatch", 0x28, "ptr", "Void"),
    F("EventMask", 0x30, "u32"),
    F("Flags", 0x34, "u32"),
    F("Endpoint", 0x38, "ptr", "Void"),
    F("LocalAddress", 0x40, "bytes", size=0x1C),
    F("RemoteAddress", 0x60, "bytes", size=0x1C),
    F("BytesSent", 0x80, "u64"),
    F("BytesReceived", 0x88, "u64"),
    F("SendsPending", 0x90, "u32"),
    F("ReceivesPending", 0x94, "u32"),
    F("IndicationsHeld", 0x98, "u32"),
    F("AcceptBacklog", 0x9C, "u32"),
    F("ListenSocket", 0xA0, "ptr", "_WSK_SOCKET_CONTEXT"),
    F("Sequence", 0xA8, "u32"),
]))


def pack_sockaddr(sa: SockAddr | None) -> bytes:
    """SOCKADDR_IN / SOCKADDR_IN6 bytes as Windows stores them (port in network order)."""
    if sa is None:
        return b""
    if sa.ip.version == 4:
        return struct.pack("<H", AF_INET) + struct.pack(">H", sa.port) + sa.ip.packed + bytes(8)
    return struct.pack("<H", AF_INET6) + struct.pack(">H", sa.port) + bytes(4) + sa.ip.packed + bytes(4)


class WskSocketObject(WSK_SOCKET):
    """One WSK socket: the WSK_SOCKET the client sees plus the provider's state."""

    struct_size = 0xB0

    def __init__(self, provider: WskProvider, client: WskClient, category: int, family: int, socket_type: int,
                 protocol: int, context: Any, client_dispatch: Any, address: int = 0) -> None:
        k = provider.kernel
        self.kernel = k
        self.provider = provider
        self.client = client
        self.category = category
        self.family = family
        self.socket_type = socket_type
        self.protocol = protocol
        self.ClientContext = context
        self.ClientDispatch = client_dispatch
        self.event_mask = 0
        self.state = "Open"
        self.v6only = family == AF_INET6  # the Windows default for AF_INET6 sockets
        self.nodelay = False
        self.share = Share.DEFAULT  # SO_REUSEADDR / SO_EXCLUSIVEADDRUSE, set before the bind
        self.owner: Any = "System"  # security context: WskSocket's OwningProcess, else the creator's
        self.receive_paused = False
        self.closing = False
        self.endpoint: Any = None
        self.local: SockAddr | None = None
        self.remote: SockAddr | None = None
        self.listen_socket: WskSocketObject | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.sends_pending = 0
        self.receives_pending = 0
        self.close_completion: IrpCompletion | None = None  # a WskCloseSocket waiting for pending sends
        self.conditional_accept = False  # SO_CONDITIONAL_ACCEPT: WskInspectEvent decides each connection
        self.inspect_pending: dict[tuple[int, int], WskSocketObject] = {}  # pended by WskInspectPend
        self.held: dict[int, list[IndicationPiece]] = {}  # id(first node) -> pieces kept by the client
        self.accept_backlog: deque[WskSocketObject] = deque()  # accepted, not yet claimed by WskAccept
        self.accept_irps: deque[tuple[Any, Any, Any, Any, Any, IrpCompletion]] = deque()
        self.datagram_queue: deque[tuple[SockAddr, bytes]] = deque()  # datagrams nobody took yet (copies)
        self.receive_from_irps: deque[tuple[Any, Any, IrpCompletion]] = deque()
        self.resume_dpc = KDPC()
        from .connection import WskProResumeIndicationsDpc  # the table that uses it imports this module
        KeInitializeDpc(self.resume_dpc, WskProResumeIndicationsDpc, self)
        provider.sockets_created += 1
        self.sequence = provider.sockets_created
        self.Dispatch = provider.socket_dispatch[category]
        self.address = address or ExAllocatePoolWithTag(NonPagedPoolNx, self.struct_size, SOCKET_TAG)
        self.resume_dpc.address = 0
        k.register_object(self)
        provider.sockets[self.address] = self
        client.sockets.add(self.address)
        client.sockets_ever += 1
        self._publish_state()

    # -- inspection ------------------------------------------------------------------------
    @property
    def category_name(self) -> str:
        return CATEGORY_NAMES.get(self.category, str(self.category))

    @property
    def flags(self) -> int:
        return ((SKF_V6ONLY if self.v6only else 0) | (SKF_NODELAY if self.nodelay else 0)
                | (SKF_RECEIVE_PAUSED if self.receive_paused else 0) | (SKF_CLOSING if self.closing else 0)
                | (SKF_STATIC_EVENTS if self.client.static_event_mask else 0))

    @property
    def effective_event_mask(self) -> int:
        return self.event_mask | self._static_mask()

    def _static_mask(self) -> int:
        mask = self.client.static_event_mask
        if self.category == WSK_FLAG_LISTEN_SOCKET:
            return mask & (LISTEN_EVENTS | CONNECTION_EVENTS)
        if self.category == WSK_FLAG_CONNECTION_SOCKET:
            return mask & CONNECTION_EVENTS
        if self.category == WSK_FLAG_DATAGRAM_SOCKET:
            return mask & DATAGRAM_EVENTS
        if self.category == WSK_FLAG_STREAM_SOCKET:
            return mask & (LISTEN_EVENTS | CONNECTION_EVENTS)
        return 0

    def flush(self) -> None:
        k = self.kernel
        drv = k.drivers.get(self.client.owner.lower())
        values = {
            "Dispatch": self.Dispatch.address, "Category": self.category,
            "State": SOCKET_STATES.index(self.state), "AddressFamily": self.family,
            "SocketType": self.socket_type, "Protocol": self.protocol,
            "OwnerDriver": drv.address if drv is not None else 0, "ClientContext": self.ClientContext,
            "ClientDispatch": getattr(self.ClientDispatch, "address", 0) if self.ClientDispatch else 0,
            "EventMask": self.effective_event_mask, "Flags": self.flags,
            "Endpoint": getattr(self.endpoint, "address", 0) if self.endpoint is not None else 0,
            "LocalAddress": pack_sockaddr(self.local), "RemoteAddress": pack_sockaddr(self.remote),
            "BytesSent": self.bytes_sent, "BytesReceived": self.bytes_received,
            "SendsPending": self.sends_pending, "ReceivesPending": self.receives_pending,
            "IndicationsHeld": len(self.held), "AcceptBacklog": len(self.accept_backlog),
            "ListenSocket": self.listen_socket.address if self.listen_socket else 0, "Sequence": self.sequence,
        }
        k.mem.write(self.address, LAYOUTS["_WSK_SOCKET_CONTEXT"].pack(values))

    def info(self) -> WskSocketInfo:
        return WskSocketInfo(self.address, self.category_name, self.state, self.family,
                             str(self.local) if self.local else "", str(self.remote) if self.remote else "",
                             self.client.owner, _address_of(self.ClientContext), self.effective_event_mask,
                             self.bytes_sent, self.bytes_received)

    def set_state(self, state: str) -> None:
        if self.state != state:
            self.state = state
            self._publish_state()

    def _publish_state(self) -> None:
        k = self.kernel
        if k.bus.subscribers:
            k.publish(WskSocketState, socket=self.address, category=self.category_name, state=self.state)

    def __repr__(self) -> str:
        return f"<WskSocket {self.address:x} {self.category_name} {self.state} {self.local} -> {self.remote}>"


def _address_of(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return getattr(value, "address", 0) or 0


# --- helpers ---------------------------------------------------------------------------------

def publish_call(sock: WskSocketObject, call: str, irp: Any, length: int = 0) -> None:
    """Every WskProAPI* routine of a socket starts here: the call through the provider's dispatch
    table is charged (costs.py "wsk_dispatch") and announced on the bus."""
    k = sock.kernel
    if k.cpu_model is not None:  # (no call to charge when no processor spends time)
        k.charge("wsk_dispatch")
    if k.bus.subscribers:
        k.publish(WskCall, call=call, socket=sock.address, irp=_address_of(irp), length=length)


def publish_event(sock: WskSocketObject, event: str, callback: Any, status: int, nbytes: int = 0) -> None:
    k = sock.kernel
    if k.bus.subscribers:
        k.publish(WskEvent, callback=symbol_of(callback), event=event, socket=sock.address, status=status,
                  nbytes=nbytes)


def event_flags() -> int:
    return WSK_FLAG_AT_DISPATCH_LEVEL if current_kernel().irql == DISPATCH_LEVEL else 0


def validate_buf(buf: WSK_BUF | None, allow_empty: bool) -> int | None:
    """STATUS_INVALID_PARAMETER for a WSK_BUF outside its MDL chain; None when fine."""
    if buf is None:
        return None if allow_empty else STATUS_INVALID_PARAMETER
    if buf.Length < 0 or buf.Offset < 0:
        return STATUS_INVALID_PARAMETER
    if buf.Length == 0:
        return None if allow_empty or buf.Mdl is not None else STATUS_INVALID_PARAMETER
    if buf.Mdl is None or buf.Offset >= buf.Mdl.byte_count:
        return STATUS_INVALID_PARAMETER  # Offset must fall inside the first MDL
    if buf.Offset + buf.Length > mdl_chain_length(buf.Mdl):
        return STATUS_INVALID_PARAMETER
    return None


def int_option(value: Any) -> int | None:
    if isinstance(value, Ref):
        value = value.value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) in (1, 2, 4, 8):
        return int.from_bytes(bytes(value), "little")
    return None


def store_output(out: Any, value: Any) -> None:
    if isinstance(out, Ref):
        out.value = value


def complete_now(sock: WskSocketObject, irp: Any, call: str, status: int, information: Any = 0,
                  length: int = 0, flags: int = 0) -> int:
    """An operation that finishes inside the call: complete the IRP (if any) through afd."""
    if irp is None:
        return status

    def start(Irp: Any) -> int:
        complete_irp(Irp, status, information)
        return status

    return afd_take_irp(sock.provider.device, irp, call, sock.address, length, flags, start)


def WskpAllocateSocket(provider: WskProvider, client: WskClient, category: int, family: int, socket_type: int,
                       protocol: int, context: Any, client_dispatch: Any) -> WskSocketObject | None:
    """A socket object, its pool block first: without one there is no socket and the caller
    fails the request with STATUS_INSUFFICIENT_RESOURCES (or refuses the connection)."""
    address = ExAllocatePoolWithTag(NonPagedPoolNx, WskSocketObject.struct_size, SOCKET_TAG)
    if not address:
        return None
    return WskSocketObject(provider, client, category, family, socket_type, protocol, context, client_dispatch,
                           address)


# --- destruction -----------------------------------------------------------------------------

def finish_pending_close(sock: WskSocketObject) -> None:
    """WskCloseSocket completes only when every request pending on the socket has completed."""
    completion = sock.close_completion
    if completion is not None and not sock.sends_pending:
        sock.close_completion = None
        destroy_socket(sock)
        completion.done(STATUS_SUCCESS, 0)


def destroy_socket(sock: WskSocketObject) -> None:
    """Free the socket object (after its endpoint is closed) and tell a deregistering client."""
    k = sock.kernel
    for pieces in sock.held.values():
        free_pieces(pieces)
    sock.held.clear()
    sock.set_state("Closed")
    sock.provider.sockets.pop(sock.address, None)
    k.unregister_object(sock)
    ExFreePoolWithTag(sock.address, SOCKET_TAG)
    sock.client.sockets.discard(sock.address)
    sock.client.maybe_finish_deregistration()


_EVENT_FIELDS = {WSK_EVENT_ACCEPT: "WskAcceptEvent", WSK_EVENT_RECEIVE: "WskReceiveEvent",
                 WSK_EVENT_DISCONNECT: "WskDisconnectEvent", WSK_EVENT_SEND_BACKLOG: "WskSendBacklogEvent",
                 WSK_EVENT_RECEIVE_FROM: "WskReceiveFromEvent"}


def dispatch_has(dispatch: Any, mask: int) -> bool:
    """Every event being enabled must have a callback in the client's dispatch table."""
    for bit, name in _EVENT_FIELDS.items():
        if mask & bit and getattr(dispatch, name, None) is None:
            return False
    return True


def event_callback(sock: WskSocketObject, bit: int) -> Callable[..., int] | None:
    if not sock.effective_event_mask & bit:
        return None
    return getattr(sock.ClientDispatch, _EVENT_FIELDS[bit], None)


# ==================================================================================================
# bind / listen / accept
# ==================================================================================================


# ==================================================================================================
# connect / addresses
# ==================================================================================================


# ==================================================================================================
# send / receive / disconnect / release
# ==================================================================================================

def is_connected(sock: WskSocketObject) -> bool:
    return sock.remote is not None and sock.endpoint is not None and not sock.closing


# ==================================================================================================
# connection upcalls from the transport
# ==================================================================================================


# ==================================================================================================
# datagram sockets
# ==================================================================================================
