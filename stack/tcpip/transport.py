"""The transport's client interface: what the Winsock Kernel provider (and AFD) call.

One `Transport` per host, created when the tcpip driver loads:

    transport = get_transport(kernel)            # or Transport.of(kernel)

Three kinds of endpoint, mirroring WSK's socket categories:

* `ListenEndpoint`      — `transport.tcp_listen(local, accept=..., backlog=..., v6only=...)`
* `ConnectionEndpoint`  — `transport.tcp_socket(local)` then `conn.connect(remote, done)`,
                           or handed to the listener's accept handler / `listener.accept(done)`
* `DatagramEndpoint`    — `transport.udp_open(local, receive=...)`

Conventions (the same for every call here):

* A call that starts asynchronous work returns ``STATUS_PENDING`` and later calls its
  completion callback exactly once.  Any other return value is the final result and
  the callback is never called.  As with an IRP's completion routine, the callback
  may run before the call that started it returns (e.g. a receive posted while
  data is already queued).  Callbacks may call back into the transport (send
  again, post another receive, close) — the transport is re-entrant.
* Callbacks and event handlers run in the transport's context: at DISPATCH_LEVEL
  from the receive path (the NIC's DPC) and from protocol timers, or at the
  caller's IRQL when the call itself finishes the work.  They must not wait.
* Buffers are WSK_BUF-like triples ``(mdl, offset, length)`` over an MDL chain
  whose pages stay locked until the completion runs.  There is **no socket-level
  send buffering**: the transport keeps a reference to the caller's pages (zero
  copy — the NIC DMAs from them) and completes the send once the peer has
  acknowledged every byte of it.
* Received data is offered zero-copy: the receive handler gets runs
  ``(physical address, view)`` - where each run's bytes lie in the NIC's receive
  pages (PFN = address >> PAGE_SHIFT, the byte offset below it; the run is
  physically contiguous for len(view) bytes), so a client describes them with an
  MDL over those page frames, and a memoryview of the same bytes to read them
  through.  A negative address means the bytes are a copy that lives in no page
  (NO_PHYSICAL_ADDRESS).  Both are valid only during the upcall; the handler
  returns how many bytes it took.  A posted receive (``conn.receive(mdl, ...)``) is filled with one
  counted copy.  Data nobody takes yet is kept (the NBL is held, or copied into
  a receive buffer once the adapter needs its buffers back).

Statuses a client sees: STATUS_SUCCESS, STATUS_PENDING, STATUS_CONNECTION_REFUSED
(RST answering our SYN), STATUS_IO_TIMEOUT (SYN or data retransmissions exhausted),
STATUS_CONNECTION_RESET (peer RST), STATUS_CONNECTION_ABORTED (we aborted),
STATUS_HOST_UNREACHABLE (neighbour resolution failed), STATUS_NETWORK_UNREACHABLE
(no route), STATUS_ADDRESS_ALREADY_EXISTS (port in use), STATUS_INVALID_PARAMETER,
STATUS_INVALID_DEVICE_STATE (call not allowed in this state), STATUS_CANCELLED
(endpoint closed with the request outstanding), STATUS_PORT_UNREACHABLE (ICMP on UDP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from stack.kernel.mdl import Mdl
from stack.kernel.ntstatus import (STATUS_INVALID_PARAMETER, STATUS_PENDING, STATUS_REQUEST_NOT_ACCEPTED,
                                   STATUS_SUCCESS)

from .addr import AF_INET, AF_INET6, AF_UNSPEC, IpAddress, SockAddr
from .sharing import Share

if TYPE_CHECKING:
    from stack.kernel.kernel import Kernel

    from .stack import TcpipStack

__all__ = [
    "AF_INET", "AF_INET6", "AF_UNSPEC", "SockAddr", "Transport", "get_transport", "ListenEndpoint",
    "ConnectionEndpoint", "DatagramEndpoint", "PingSession", "AcceptHandler", "ConnectComplete",
    "RequestComplete", "ReceivedRun", "ReceiveHandler", "DisconnectHandler", "DatagramHandler", "DatagramErrorHandler",
    "ResolveComplete", "NameResolver", "RECEIVE_PUSH", "RECEIVE_WAITALL", "ACCEPT", "REFUSE",
]

# --- callback shapes -------------------------------------------------------------------

AcceptHandler = Callable[["ListenEndpoint", "ConnectionEndpoint"], int]
"""(listener, new connection) -> ACCEPT (STATUS_SUCCESS) or REFUSE (the peer gets a RST).

Called once the three-way handshake completed; `conn.local`/`conn.remote` are set.
Set the connection's handlers (`conn.set_handlers`) inside the call to receive
data that arrives right behind the handshake."""

ConnectComplete = Callable[["ConnectionEndpoint", int], None]
"""(connection, status): STATUS_SUCCESS when ESTABLISHED, else why it failed."""

RequestComplete = Callable[[int, int], None]
"""(status, bytes): a send (bytes acknowledged) or a posted receive (bytes copied in)."""

ReceivedRun = tuple[int, memoryview]
"""(physical address, bytes): a physically contiguous run of received bytes in emulated
memory, and a view of the same bytes; the address is negative when they are a copy."""

ReceiveHandler = Callable[["ConnectionEndpoint", list[ReceivedRun], int, int], int]
"""(connection, runs, nbytes, flags) -> bytes taken (0..nbytes), zero copy.

The runs are valid only during the call.  Bytes not taken stay queued and are
offered again (with the new ones) when more data arrives, or fill the next
posted receive."""

DisconnectHandler = Callable[["ConnectionEndpoint", bool, int], None]
"""(connection, abortive, status): graceful (peer FIN after all its data was
delivered; status STATUS_SUCCESS) or abortive (STATUS_CONNECTION_RESET,
STATUS_IO_TIMEOUT, STATUS_CONNECTION_ABORTED)."""

DatagramHandler = Callable[["DatagramEndpoint", SockAddr, list[ReceivedRun], int], None]
"""(endpoint, remote, runs, nbytes): one datagram, zero copy, runs valid during the call."""

DatagramErrorHandler = Callable[["DatagramEndpoint", SockAddr, int], None]
"""(endpoint, remote, status): an ICMP error about a datagram we sent (STATUS_PORT_UNREACHABLE ...)."""

ResolveComplete = Callable[[int, list[IpAddress]], None]
"""(status, addresses): STATUS_SUCCESS with one or more addresses, or STATUS_NOT_FOUND."""

NameResolver = Callable[[str, int, ResolveComplete], int]
"""(name, family, completion) -> STATUS_PENDING (then completion) or a final status."""

ACCEPT = STATUS_SUCCESS
REFUSE = STATUS_REQUEST_NOT_ACCEPTED

RECEIVE_PUSH = 0x1  # flag to the receive handler: the last segment carried PSH
RECEIVE_WAITALL = 0x2  # flag to conn.receive: complete only when full (or at disconnect)


# --- the endpoints ---------------------------------------------------------------------

class ListenEndpoint:
    """A TCP listening socket bound to `local` (ip may be the unspecified address)."""

    # Created by Transport.tcp_listen; fields are filled by the TCP layer.
    def __init__(self, stack: "TcpipStack", local: SockAddr, backlog: int, v6only: bool,
                 accept: AcceptHandler | None) -> None:
        self._stack = stack
        self.local = local
        self.backlog = backlog
        self.v6only = v6only
        self.accept_handler = accept
        self.closed = False
        self.address = 0  # kernel address of the listener block (pool tag 'TcpL')
        self.context: Any = None  # free for the client (WSK keeps its socket object here)
        self._core: Any = None  # stack.tcpip.tcp.TcpListener
        self._pending_accepts: list[Callable[["ConnectionEndpoint | None", int], None]] = []
        self._offered: list["ConnectionEndpoint"] = []  # handed over by offer(), served before the core's queue
        self.syn_hold: Any = None  # syn_hold.SynHold once set_inspect() was called

    def accept(self, completion: Callable[["ConnectionEndpoint | None", int], None]) -> int:
        """Take the oldest established connection (WskAccept / AFD accept).

        Returns STATUS_PENDING and calls `completion(conn, STATUS_SUCCESS)` when one is
        ready (at once if one is queued), or `completion(None, STATUS_CANCELLED)` if the
        listener closes first.  Only meaningful without an accept handler."""
        return self._stack.tcp.listener_accept(self, completion)

    def set_inspect(self, inspect: Callable[["ListenEndpoint", SockAddr, SockAddr, int], int],
                    abort: Callable[["ListenEndpoint", int], None] | None = None) -> None:
        """Ask `inspect(listener, local, remote, token)` about each new SYN before any SYN-ACK is sent
        (SO_CONDITIONAL_ACCEPT / TDI_QUERY_ACCEPT): ACCEPT, REFUSE (RST) or STATUS_PENDING (the SYN is
        held until inspect_complete).  `abort(listener, token)`: a held SYN's peer gave up.  See syn_hold.py."""
        from .syn_hold import SynHold
        self.syn_hold = SynHold(inspect, abort)

    def inspect_complete(self, token: int, accept: bool) -> int:
        """The decision on a held SYN: SYN-ACK now, or RST.  STATUS_INVALID_PARAMETER for an unknown token."""
        from .syn_hold import complete
        return complete(self._stack.tcp, self, token, accept)

    def offer(self, conn: "ConnectionEndpoint") -> int:
        """Lab-only (afd's accept hand-over, stack/afd/handover.py): an established connection
        another client owned joins this listener's accept queue with the bytes nobody read, and
        the next accept() takes it.  The caller must have cleared its handlers and context.
        STATUS_SUCCESS, or STATUS_INVALID_DEVICE_STATE (either side closed, or an accept handler
        listener, which has no queue)."""
        return self._stack.tcp.listener_offer(self, conn)

    def close(self) -> None:
        """Stop listening; queued, never-accepted connections are reset."""
        self._stack.tcp.listener_close(self)

    def snapshot(self) -> dict[str, object]:
        return self._stack.tcp.listener_snapshot(self)

    def __repr__(self) -> str:
        return f"<ListenEndpoint {self.local} backlog={self.backlog}>"


class ConnectionEndpoint:
    """One TCP connection (a TCB at a kernel address, pool tag 'TcpE')."""

    def __init__(self, stack: "TcpipStack", local: SockAddr) -> None:
        self._stack = stack
        self.local = local  # port 0 until connect() picks an ephemeral port
        self.remote: SockAddr | None = None
        self.address = 0  # the TCB block's kernel address (what !tcb takes)
        self.context: Any = None  # free for the client
        self.receive_handler: ReceiveHandler | None = None
        self.disconnect_handler: DisconnectHandler | None = None
        self.closed = False  # close() was called: no more upcalls
        self._tcb: Any = None  # the TCP layer's record (core connection, timers, queues)

    # -- setup --------------------------------------------------------------------------
    def set_handlers(self, receive: ReceiveHandler | None = None,
                     disconnect: DisconnectHandler | None = None) -> None:
        """Enable (or with None disable) the receive and disconnect upcalls.

        Enabling the receive handler offers any data already queued at once."""
        self.receive_handler = receive
        self.disconnect_handler = disconnect
        self._stack.tcp.handlers_changed(self)

    def connect(self, remote: SockAddr, completion: ConnectComplete) -> int:
        """Active open to `remote` (WskConnect).  STATUS_PENDING, then completion(conn, status):
        STATUS_SUCCESS, STATUS_CONNECTION_REFUSED, STATUS_IO_TIMEOUT, STATUS_HOST_UNREACHABLE.
        Immediate failures: STATUS_NETWORK_UNREACHABLE, STATUS_INVALID_DEVICE_STATE,
        STATUS_ADDRESS_ALREADY_EXISTS, STATUS_INVALID_PARAMETER (family mismatch)."""
        return self._stack.tcp.connect(self, remote, completion)

    # -- data ---------------------------------------------------------------------------
    def send(self, mdl: Mdl, offset: int, length: int, completion: RequestComplete | None = None,
             disconnect: Callable[[int], None] | None = None) -> int:
        """Send `length` bytes of the MDL chain from `offset` (WskSend).

        Zero copy: the segments' payloads are partial MDLs over these pages.  Returns
        STATUS_PENDING and calls completion(STATUS_SUCCESS, length) when the peer has
        acknowledged all of it; on reset/abort completion(status, 0).  A zero-length
        send returns STATUS_SUCCESS at once.

        With `disconnect` (send and disconnect: WskDisconnect with data, TDI_SEND_AND_DISCONNECT)
        the graceful close is queued with the data before anything is transmitted, so the
        FIN rides on the last data segment; disconnect(status) is called as by disconnect()."""
        return self._stack.tcp.send(self, mdl, offset, length, completion, disconnect)

    def receive(self, mdl: Mdl, offset: int, length: int, completion: RequestComplete,
                flags: int = 0) -> int:
        """Post a receive buffer (WskReceive).  STATUS_PENDING, then completion(status, n).

        As in Windows, a receive completes when its buffer is full, when the data up to
        a segment with PSH is in, or when the 500 ms push timer fires with some data in
        it; with RECEIVE_WAITALL only when full.  (STATUS_SUCCESS, 0) after the peer's
        FIN; an error status after a reset.  Posted receives are filled in order (one
        counted copy) before the receive handler is offered anything."""
        return self._stack.tcp.receive(self, mdl, offset, length, completion, flags)

    def retain_indication(self) -> Any:
        """Only inside the receive handler: keep the NBLs that carry the bytes being indicated past the
        upcall (the handler then takes the bytes, reading them later from the NIC's pages).  Returns a
        handle for Transport.release_indication, or None when they cannot be kept (copied, low
        resources): the caller must then not take the bytes.  Each held NBL counts in nbls_held."""
        return self._stack.tcp.retain_indication(self)

    # -- teardown -----------------------------------------------------------------------
    def disconnect(self, abortive: bool = False, completion: Callable[[int], None] | None = None) -> int:
        """Graceful (FIN after all queued sends; STATUS_PENDING, completion(STATUS_SUCCESS)
        once our FIN is acknowledged) or abortive (RST now; returns STATUS_SUCCESS)."""
        return self._stack.tcp.disconnect(self, abortive, completion)

    def close(self) -> None:
        """Release the endpoint (WskCloseSocket).  Outstanding requests complete with
        STATUS_CANCELLED.  A connection that was never disconnected is aborted (RST);
        one closing gracefully finishes its FIN exchange and TIME_WAIT on its own."""
        self._stack.tcp.close(self)

    # -- options and inspection -------------------------------------------------------------
    @property
    def nodelay(self) -> bool:
        """TCP_NODELAY: send sub-MSS segments without waiting (Nagle off)."""
        return self._stack.tcp.get_nodelay(self)

    @nodelay.setter
    def nodelay(self, value: bool) -> None:
        self._stack.tcp.set_nodelay(self, value)

    @property
    def state(self) -> str:
        """The TCP state name ("ESTABLISHED", ...), "CLOSED" before connect."""
        return self._stack.tcp.state_name(self)

    @property
    def recv_available(self) -> int:
        """Bytes received in order and not yet taken by the client."""
        return self._stack.tcp.recv_available(self)

    def snapshot(self) -> dict[str, object]:
        """Everything `!tcb` prints: the core's counters plus addresses, state, TCB address."""
        return self._stack.tcp.snapshot(self)

    def __repr__(self) -> str:
        return f"<ConnectionEndpoint {self.local} -> {self.remote} {self.state} @{self.address:x}>"


class DatagramEndpoint:
    """A UDP socket bound to `local`."""

    def __init__(self, stack: "TcpipStack", local: SockAddr, receive: DatagramHandler | None,
                 error: DatagramErrorHandler | None, v6only: bool) -> None:
        self._stack = stack
        self.local = local
        self.receive_handler = receive
        self.error_handler = error
        self.v6only = v6only
        self.closed = False
        self.address = 0  # pool tag 'UdpA'
        self.context: Any = None
        self._posted: list[Any] = []  # receive_from requests waiting for a datagram
        self._queue: list[tuple[SockAddr, bytes]] = []  # datagrams nobody took yet (copied)
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.datagrams_dropped = 0

    def send_to(self, remote: SockAddr, mdl: Mdl, offset: int, length: int,
                completion: RequestComplete | None = None) -> int:
        """Send one datagram (WskSendTo), zero copy.  STATUS_PENDING, then completion
        (STATUS_SUCCESS, length) once the NIC is done with the pages, or
        (STATUS_HOST_UNREACHABLE, 0); immediate STATUS_NETWORK_UNREACHABLE /
        STATUS_INVALID_PARAMETER (too long, family mismatch)."""
        return self._stack.udp.send_to(self, remote, (mdl, offset, length), completion)

    def send_bytes_to(self, remote: SockAddr, data: bytes | bytearray | memoryview,
                      completion: RequestComplete | None = None) -> int:
        """Like send_to for a Python buffer (copied once into the packet, counted there)."""
        # Hand the caller's buffer through: the UDP layer's copy into the packet is the one copy.
        payload = data if isinstance(data, bytes) else memoryview(data).cast("B")
        return self._stack.udp.send_to(self, remote, payload, completion)

    def receive_from(self, mdl: Mdl, offset: int, length: int,
                     completion: Callable[[int, int, SockAddr | None], None]) -> int:
        """Post a receive for the next datagram (WskReceiveFrom): STATUS_PENDING, then
        completion(status, bytes copied, remote).  A datagram longer than the buffer is
        cut and completes with STATUS_BUFFER_OVERFLOW."""
        return self._stack.udp.receive_from(self, mdl, offset, length, completion)

    def close(self) -> None:
        """Unbind; posted receives complete with STATUS_CANCELLED."""
        self._stack.udp.close(self)

    def __repr__(self) -> str:
        return f"<DatagramEndpoint {self.local}>"


@dataclass(slots=True)
class PingSession:
    """Echo requests to one destination and their round-trip times (virtual ns)."""

    destination: IpAddress
    count: int
    payload_size: int
    identifier: int
    rtts_ns: list[int | None] = field(default_factory=list)  # by sequence; None = lost
    sent: int = 0
    received: int = 0
    unreachable: int = 0
    done: bool = False
    completion: Callable[["PingSession"], None] | None = None

    @property
    def lost(self) -> int:
        return self.sent - self.received


# --- the transport ---------------------------------------------------------------------

class Transport:
    """The per-host face of the tcpip driver."""

    def __init__(self, stack: "TcpipStack") -> None:
        self._stack = stack
        self.hosts: dict[str, list[IpAddress]] = {}  # static name table (like the hosts file)
        self.resolver: NameResolver | None = None  # WSK's DNS client plugs in here

    @staticmethod
    def of(kernel: "Kernel") -> "Transport":
        return get_transport(kernel)

    @property
    def kernel(self) -> "Kernel":
        return self._stack.kernel

    # -- TCP -------------------------------------------------------------------------
    def tcp_listen(self, local: SockAddr, accept: AcceptHandler | None = None, backlog: int = 16,
                   v6only: bool = False, share: Share = Share.DEFAULT,
                   owner: object = "System") -> tuple[int, ListenEndpoint | None]:
        """Bind and listen.  An IPv6 unspecified address with v6only=False is dual-stack
        (IPv4 peers appear as ::ffff:a.b.c.d).  `share` (SO_REUSEADDR / SO_EXCLUSIVEADDRUSE) and
        `owner` (the security context) decide a bind to an address in use (sharing.py).
        Returns (STATUS_SUCCESS, listener) or (STATUS_ADDRESS_ALREADY_EXISTS / STATUS_ACCESS_DENIED /
        STATUS_INVALID_ADDRESS / STATUS_INVALID_PARAMETER, None)."""
        return self._stack.tcp.listen(local, accept, backlog, v6only, share, owner)

    @staticmethod
    def release_indication(handle: Any) -> None:
        """Give back NBLs kept with ConnectionEndpoint.retain_indication (the miniport gets them once
        nobody else holds them)."""
        for frame in handle or ():
            frame.release()

    def tcp_socket(self, local: SockAddr | None = None, family: int = AF_INET, share: Share = Share.DEFAULT,
                   owner: object = "System", v6only: bool = True) -> tuple[int, ConnectionEndpoint | None]:
        """A connection endpoint bound to `local` (port 0 = ephemeral, chosen at connect).
        Returns (STATUS_SUCCESS, conn) or (STATUS_ADDRESS_ALREADY_EXISTS / STATUS_ACCESS_DENIED /
        STATUS_INVALID_ADDRESS, None)."""
        return self._stack.tcp.socket(local, family, share, owner, v6only)

    def tcp_connect(self, remote: SockAddr, completion: ConnectComplete,
                    local: SockAddr | None = None) -> tuple[int, ConnectionEndpoint | None]:
        """tcp_socket + connect in one call (WskSocketConnect).  Returns (STATUS_PENDING, conn)."""
        status, conn = self.tcp_socket(local, remote.family)
        if conn is None:
            return status, None
        status = conn.connect(remote, completion)
        if status != STATUS_PENDING:
            conn.close()
            return status, None
        return status, conn

    # -- UDP -------------------------------------------------------------------------
    def udp_open(self, local: SockAddr, receive: DatagramHandler | None = None,
                 error: DatagramErrorHandler | None = None,
                 v6only: bool = False, share: Share = Share.DEFAULT,
                 owner: object = "System") -> tuple[int, DatagramEndpoint | None]:
        """Bind a datagram endpoint (port 0 = ephemeral); `share` and `owner` as for tcp_listen."""
        return self._stack.udp.open(local, receive, error, v6only, share, owner)

    # -- ICMP ------------------------------------------------------------------------
    def ping(self, destination: IpAddress | str, count: int = 4, payload_size: int = 32,
             interval_ns: int = 1_000_000_000, timeout_ns: int = 1_000_000_000,
             completion: Callable[[PingSession], None] | None = None) -> PingSession:
        """Send `count` echo requests (ICMP or ICMPv6), one per interval; the session
        records each RTT in virtual ns and calls completion once all replied or timed out."""
        return self._stack.icmp.ping(destination, count, payload_size, interval_ns, timeout_ns, completion)

    # -- names -----------------------------------------------------------------------
    def resolve(self, name: str, completion: ResolveComplete, family: int = AF_UNSPEC) -> int:
        """Name to addresses: a literal address, then the static `hosts` table, then
        the plugged-in resolver (DNS).  STATUS_SUCCESS (completion already called),
        STATUS_PENDING, or STATUS_NOT_FOUND (completion called with it)."""
        return self._stack.resolve(name, completion, family)

    def set_resolver(self, resolver: NameResolver | None) -> None:
        self.resolver = resolver

    # -- inspection ------------------------------------------------------------------------
    def addresses(self) -> list[IpAddress]:
        """This host's unicast addresses."""
        return self._stack.local_addresses()

    def connections(self) -> list[ConnectionEndpoint]:
        return self._stack.tcp.connection_list()

    def listeners(self) -> list[ListenEndpoint]:
        return self._stack.tcp.listener_list()

    def datagram_endpoints(self) -> list[DatagramEndpoint]:
        return self._stack.udp.endpoint_list()

    def counters(self) -> dict[str, object]:
        """IP/ICMP/UDP/TCP counters plus drops keyed by (layer, reason), and the TCP port gauges
        (connections in TIME_WAIT, dynamic ports in use and free)."""
        snap = self._stack.counters.snapshot()
        snap.update(self._stack.tcp.port_usage())
        return snap


def get_transport(kernel: "Kernel") -> Transport:
    """The transport of a host whose tcpip driver is loaded (LookupError otherwise)."""
    stack = kernel.extensions.get("tcpip")
    if stack is None:
        raise LookupError(f"tcpip is not loaded on {kernel.name}")
    return stack.transport


_ = STATUS_INVALID_PARAMETER
