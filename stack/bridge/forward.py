"""Port forwarding: host TCP connections carried into the lab as connections from `gateway`.

    wskdbg --forward 127.0.0.1:8080=winsrv:80 --forward [::1]:4007=winsrv:40007

World side (`Forwarder`): a lab host ``gateway`` (10.0.0.254, fd00::fe).  For
every accepted host connection it starts a user-mode relay program there that
connects to the target through the gateway's socket API (so every byte is an
AFD IRP, an MDL and TCP segments a person can watch) and runs two pumps:

* host -> lab: bytes that arrived from the host (inputs of kind ``data``) are
  sent into the lab socket; ``eof`` sends a FIN, ``reset`` a RST;
* lab -> host: the lab socket is read only while the relay holds *credit*;
  what it reads is handed out (`ForwardOutput`) and the credit comes back
  only when the host socket has taken the bytes (inputs of kind ``drain``).

Host side (`ForwardHost`): listening sockets, accepted sockets, and bounded
buffers.  A host socket is read only while fewer than `window` of its bytes
are waiting to enter the lab, and the lab socket is read only while the host
socket keeps up; so a slow reader on either side stalls the other side's TCP
instead of growing memory.

Since the credit returns as a recorded input, the lab's behaviour depends
only on inputs, and a replay (no host side) runs it identically.
"""

from __future__ import annotations

import errno
import hashlib
import socket
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generator

from stack.kernel import KEVENT, KeSetEvent, KeWaitForMultipleObjects, KeWaitForSingleObject, current_kernel
from stack.kernel.ke import NotificationEvent, SynchronizationEvent
from stack.kernel.ntstatus import status_name
from stack.tcpip.addr import AF_INET, AF_INET6, SockAddr
from stack.tcpip.tcp import TcpConfig
from stack.afd.device import SOCK_STREAM
from stack.usermode.socket import Socket, SocketError, UserBuffer, spawn

from .events import ForwardConnectionState
from .realtime import BridgeError, BridgeHub
from .record import KIND_ACCEPT, KIND_DATA, KIND_DRAIN, KIND_EOF, KIND_RESET, BridgeInput
from .spec import ForwardSpec, ForwardSpecError

if TYPE_CHECKING:
    from stack.kernel.kernel import Kernel
    from stack.world import World

GATEWAY_NAME = "gateway"
GATEWAY_IPV4 = "10.0.0.254/24"
GATEWAY_IPV6 = "fd00::fe/64"
DEFAULT_WINDOW = 256 * 1024  # bytes in flight per direction per connection, outside the lab's TCP
RECV_CHUNK = 64 * 1024
HOST_READ_CHUNK = 64 * 1024
MAX_CONNECTIONS = 256
ACCEPTS_PER_WAKE = 16
SENDERS = 2  # outstanding sends per forwarded connection

OUT_DATA = "data"
OUT_EOF = "eof"
OUT_RESET = "reset"

ForwardOutput = Callable[[int, str, bytes], None]
"""(conn, OUT_DATA / OUT_EOF / OUT_RESET, bytes): what the lab sends back to a host connection."""


# ---------------------------------------------------------------------------------------------
# world side


@dataclass(slots=True)
class ForwardStats:
    accepted: int = 0
    connected: int = 0
    failed: int = 0
    closed: int = 0
    bytes_to_lab: int = 0
    bytes_from_lab: int = 0


class LabRelay:
    """One forwarded connection inside the lab: state shared by its two pump threads."""

    def __init__(self, forwarder: "Forwarder", conn: int, spec_index: int, target: SockAddr, peer: str) -> None:
        self.forwarder = forwarder
        self.conn = conn
        self.spec_index = spec_index
        self.target = target
        self.peer = peer
        self.inbound: deque[bytes] = deque()  # host bytes waiting to be sent into the lab
        self.inbound_bytes = 0
        self.consumed = 0  # host bytes the lab socket has taken (sent and acknowledged)
        self.credit = forwarder.window  # lab bytes we may still read before the host drains some
        self.host_eof = False
        self.host_reset = False
        self.lab_done = False  # lab -> host finished (EOF or error)
        self.state = "connecting"
        self.sock: Socket | None = None
        self.lab_done_sending = False  # a send failed: nothing more goes into the lab
        self.wake_tx = KEVENT(SynchronizationEvent, False)  # inbound data for one idle sender
        self.closing = KEVENT(NotificationEvent, False)  # host EOF or reset: every sender looks
        self.wake_rx = KEVENT(SynchronizationEvent, False)  # credit returned or reset

    def set_state(self, state: str, detail: str = "") -> None:
        self.state = state
        k = current_kernel()
        k.publish(ForwardConnectionState, conn=self.conn, state=state, detail=detail)
        watcher = self.forwarder.on_state
        if watcher is not None:
            watcher(self.conn, state, detail, k.now_ns)


class Forwarder:
    """The world side of port forwarding; a `WorldEndpoint` of the bridge hub."""

    kinds = frozenset({KIND_ACCEPT, KIND_DATA, KIND_EOF, KIND_RESET, KIND_DRAIN})

    def __init__(self, world: "World", specs: list[ForwardSpec], *, window: int = DEFAULT_WINDOW,
                 gateway: str = GATEWAY_NAME) -> None:
        if window < 4096:
            raise BridgeError("the forwarding window must be at least 4096 bytes")
        self.world = world
        self.specs = list(specs)
        self.window = window
        self.targets = [resolve_target(world, spec) for spec in self.specs]
        if gateway not in world.hosts:
            # TcpAckFrequency=1 on the gateway: it acknowledges every segment at once, so a lab
            # server's send (complete only when acknowledged) never waits for a delayed ACK.
            world.add_host(gateway, GATEWAY_IPV4, GATEWAY_IPV6, tcp_config=TcpConfig(delayed_ack_ns=0))
        self.gateway = world.hosts[gateway]
        self.relays: dict[int, LabRelay] = {}
        self.stats = ForwardStats()
        self.output: ForwardOutput | None = None  # the host side plugs in here (live only)
        # (conn, state, detail, virtual ns): a cheap log hook that needs no bus subscriber
        self.on_state: Callable[[int, str, str, int], None] | None = None
        self._digest = hashlib.sha256()

    @property
    def kernel(self) -> "Kernel":
        return self.gateway.kernel

    def output_digest(self) -> str:
        """SHA-256 over everything the lab sent back, in order: equal in a run and its replay."""
        return self._digest.hexdigest()

    def _emit(self, relay: LabRelay, what: str, data: bytes = b"") -> None:
        self._digest.update(struct.pack("<IBI", relay.conn, ord(what[0]), len(data)))
        self._digest.update(data)
        if what == OUT_DATA:
            self.stats.bytes_from_lab += len(data)
        if self.output is not None:
            self.output(relay.conn, what, data)

    # -- WorldEndpoint ------------------------------------------------------------------------
    def input_kernel(self, inp: BridgeInput) -> "Kernel":
        return self.gateway.kernel

    def apply(self, inp: BridgeInput) -> str:
        kind = inp.kind
        if kind == KIND_ACCEPT:
            return self._accept(inp)
        relay = self.relays.get(inp.conn)
        if relay is None:
            return "(connection already gone)"
        if kind == KIND_DATA:
            relay.inbound.append(inp.data)
            relay.inbound_bytes += len(inp.data)
            self.stats.bytes_to_lab += len(inp.data)
            KeSetEvent(relay.wake_tx)
            return f"-> {relay.target}"
        if kind == KIND_EOF:
            relay.host_eof = True
            KeSetEvent(relay.closing)
            return "host side sent FIN"
        if kind == KIND_RESET:
            relay.host_reset = True
            KeSetEvent(relay.closing)
            KeSetEvent(relay.wake_rx)
            if relay.sock is not None and relay.state == "connected":
                spawn(_abort_lab_socket, relay, name=f"fwd{relay.conn}-abort")
            return "host side reset"
        if kind == KIND_DRAIN:
            relay.credit += inp.arg
            KeSetEvent(relay.wake_rx)
            return f"host took {inp.arg} bytes"
        return ""

    def _accept(self, inp: BridgeInput) -> str:
        if not 0 <= inp.arg < len(self.targets):
            return f"(no forward #{inp.arg})"
        target = self.targets[inp.arg]
        peer = inp.data.decode("utf-8", "replace")
        relay = LabRelay(self, inp.conn, inp.arg, target, peer)
        self.relays[inp.conn] = relay
        self.stats.accepted += 1
        if spawn(_relay_main, relay, name=f"fwd{inp.conn}").thread is None:  # no thread: refuse it
            self.stats.failed += 1
            _give_up(relay, "failed", "STATUS_INSUFFICIENT_RESOURCES")
            self._finished(relay)
            return f"{peer} -> {target}: refused, no thread"
        return f"{peer} -> {target}"

    def _finished(self, relay: LabRelay) -> None:
        self.relays.pop(relay.conn, None)
        self.stats.closed += 1


def resolve_target(world: "World", spec: ForwardSpec) -> SockAddr:
    """The lab address a forward connects to (a name uses the listen address's family)."""
    literal = spec.target_literal()
    if literal is not None:
        return SockAddr(literal, spec.target_port)
    host = world.hosts.get(spec.target_host) or world.hosts.get(spec.target_host.lower())
    if host is None:
        raise ForwardSpecError(f"forward {spec}: no lab host named {spec.target_host!r} "
                               f"(hosts: {', '.join(world.hosts)})")
    address = host.address6 if spec.listen_family_v6 else host.address4
    if address is None:
        address = host.address4 or host.address6
    if address is None:
        raise ForwardSpecError(f"forward {spec}: host {spec.target_host!r} has no address")
    return SockAddr(address, spec.target_port)


# -- the relay program (runs as threads of the gateway host) -------------------------------------

def _relay_main(relay: LabRelay) -> Generator[Any, Any, None]:
    """Connect, run the pumps, close.  Whatever fails on the lab side - a refused connect, no
    memory for a socket, a buffer or a thread - ends in a reset of the host connection, so no
    host client is left waiting (and no host socket in CLOSE-WAIT)."""
    fwd = relay.forwarder
    sock: Socket | None = None
    try:
        family = AF_INET6 if relay.target.family == AF_INET6 else AF_INET
        sock = yield from Socket.create(family, SOCK_STREAM)
        yield from sock.setsockopt("TCP_NODELAY", True)  # a relay must not add Nagle's delay
        yield from sock.connect(relay.target)
    except SocketError as err:
        fwd.stats.failed += 1
        _give_up(relay, "failed", status_name(err.status))
        if sock is not None:
            yield from sock.close()
        fwd._finished(relay)
        return
    relay.sock = sock
    fwd.stats.connected += 1
    relay.set_state("connected", f"{relay.peer} -> {relay.target}")
    if relay.host_reset:  # the host gave up while we were connecting
        yield from _abort_lab_socket(relay)
    reader = spawn(_relay_lab_to_host, relay, name=f"fwd{relay.conn}-rx")
    # A send completes only once the peer acknowledged all of it, so two senders keep
    # data flowing while one waits for its last (perhaps delayed) ACK.
    senders = [spawn(_relay_host_to_lab, relay, i, name=f"fwd{relay.conn}-tx{i}") for i in range(SENDERS)]
    if reader.thread is None or all(p.thread is None for p in senders):  # no threads to relay with
        _give_up(relay, "failed", "STATUS_INSUFFICIENT_RESOURCES")
        yield from _abort_lab_socket(relay)
    for program in senders:
        while not program.done:
            yield KeWaitForSingleObject(program.thread)
    if relay.host_eof and not relay.host_reset and not relay.lab_done_sending:
        try:
            yield from sock.shutdown()
        except SocketError as err:
            relay.set_state("lab-error", status_name(err.status))
    while not reader.done:
        yield KeWaitForSingleObject(reader.thread)
    yield from sock.close()
    relay.set_state("closed")
    fwd._finished(relay)


def _give_up(relay: LabRelay, state: str, detail: str) -> None:
    """The lab side cannot carry this connection any further: reset the host side, stop the pumps."""
    if relay.lab_done and relay.host_reset:
        return
    relay.set_state(state, detail)
    if not relay.lab_done:
        relay.lab_done = True
        relay.forwarder._emit(relay, OUT_RESET)
    relay.host_reset = True
    relay.lab_done_sending = True
    KeSetEvent(relay.closing)
    KeSetEvent(relay.wake_rx)
    KeSetEvent(relay.wake_tx)


def _relay_host_to_lab(relay: LabRelay, index: int) -> Generator[Any, Any, None]:
    """Send what the host sent, through a buffer sized by the bytes waiting (at most the window),
    allocated for each send: an idle connection holds no buffer."""
    sock = relay.sock
    assert sock is not None
    try:
        while not relay.host_reset and not relay.lab_done_sending:
            if relay.inbound:
                size = min(relay.forwarder.window, max(relay.inbound_bytes, len(relay.inbound[0])))
                tx_buf = UserBuffer(size)
                try:
                    n = 0
                    while relay.inbound and n + len(relay.inbound[0]) <= tx_buf.size:
                        chunk = relay.inbound.popleft()
                        tx_buf.write(chunk, n)
                        n += len(chunk)
                    relay.inbound_bytes -= n
                    yield from sock.send(tx_buf, n, 0)
                finally:
                    tx_buf.free()
                relay.consumed += n
            elif relay.host_eof:
                return
            else:
                yield KeWaitForMultipleObjects([relay.wake_tx, relay.closing])
    except SocketError as err:
        # The host's bytes cannot all reach the lab (no buffer, no IRP, or the lab connection
        # broke): the stream is cut, so both sides are reset rather than left waiting.
        if not relay.lab_done:
            _give_up(relay, "lab-error", status_name(err.status))
        relay.lab_done_sending = True
        KeSetEvent(relay.closing)
        yield from _abort_lab_socket(relay)


def _relay_lab_to_host(relay: LabRelay) -> Generator[Any, Any, None]:
    """Read from the lab while the host has credit left, into a buffer no bigger than that credit."""
    fwd = relay.forwarder
    sock = relay.sock
    assert sock is not None
    rx_buf: UserBuffer | None = None
    try:
        while not relay.host_reset:
            if relay.credit <= 0:
                if rx_buf is not None:  # the host is slow: hold no buffer while waiting for it
                    rx_buf.free()
                    rx_buf = None
                yield KeWaitForSingleObject(relay.wake_rx)
                continue
            want = min(relay.credit, RECV_CHUNK)
            try:
                if rx_buf is None or rx_buf.size < want:
                    if rx_buf is not None:
                        rx_buf.free()
                        rx_buf = None
                    rx_buf = UserBuffer(want)
                n = yield from sock.recv_into(rx_buf, want)
            except SocketError as err:
                if not relay.host_reset:
                    _give_up(relay, "lab-reset", status_name(err.status))
                    if err.call == "allocate buffer":
                        yield from _abort_lab_socket(relay)
                relay.lab_done = True
                return
            if n == 0:
                relay.lab_done = True
                relay.set_state("lab-eof")
                fwd._emit(relay, OUT_EOF)
                return
            relay.credit -= n
            fwd._emit(relay, OUT_DATA, rx_buf.read(n))
    finally:
        if rx_buf is not None:
            rx_buf.free()


def _abort_lab_socket(relay: LabRelay) -> Generator[Any, Any, None]:
    sock = relay.sock
    if sock is None or sock.closed:
        return
    try:
        yield from sock.shutdown(abortive=True)
    except SocketError:
        pass


# ---------------------------------------------------------------------------------------------
# host side


@dataclass(slots=True)
class HostConn:
    conn: int
    sock: socket.socket
    spec_index: int
    peer: str
    submitted: int = 0  # bytes read from the host and handed to the hub
    outbuf: bytearray = field(default_factory=bytearray)  # lab bytes the host socket has not taken
    host_eof: bool = False  # the host peer shut down its sending side
    lab_eof: bool = False  # the lab finished sending (shut down our sending side once drained)
    wr_shut: bool = False
    closed: bool = False
    interest: int = 0


@dataclass(slots=True)
class HostForwardStats:
    accepted: int = 0
    closed: int = 0
    resets: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    max_outbuf: int = 0
    paused_reads: int = 0


EVENT_READ = 1
EVENT_WRITE = 2


class ForwardHost:
    """Listening and accepted host sockets for a `Forwarder` (live runs only)."""

    def __init__(self, forwarder: Forwarder, *, max_connections: int = MAX_CONNECTIONS) -> None:
        self.forwarder = forwarder
        self.max_connections = max_connections
        self.listeners: list[socket.socket] = []
        self.conns: dict[int, HostConn] = {}
        self.stats = HostForwardStats()
        self.hub: BridgeHub | None = None
        self._dirty: dict[int, HostConn] = {}  # conns the lab wrote to, or whose reads are paused
        self._next_conn = 1
        self._listening = False
        try:
            for spec in forwarder.specs:
                self.listeners.append(_listen(spec))
        except BaseException:
            self.stop()
            raise
        forwarder.output = self._lab_output

    def bound_addresses(self) -> list[tuple[str, int]]:
        """(address, port) each listener is bound to (the port chosen when 0 was asked)."""
        return [s.getsockname()[:2] for s in self.listeners]

    # -- HostSide ---------------------------------------------------------------------------
    def start(self, hub: BridgeHub) -> None:
        self.hub = hub
        self._set_listening(True)

    def _set_listening(self, on: bool) -> None:
        hub = self.hub
        if hub is None or hub.selector is None or on == self._listening:
            return
        self._listening = on
        for index, lsock in enumerate(self.listeners):
            if on:
                hub.selector.register(lsock, EVENT_READ, self._make_accept(index))
            else:
                hub.selector.unregister(lsock)

    def _make_accept(self, index: int) -> Callable[[Any, int], None]:
        def on_accept(_fileobj: Any, _mask: int) -> None:
            self._accept(index)
        return on_accept

    def _accept(self, index: int) -> None:
        lsock = self.listeners[index]
        hub = self.hub
        assert hub is not None
        for _ in range(ACCEPTS_PER_WAKE):
            if len(self.conns) >= self.max_connections:
                self._set_listening(False)
                return
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS):
                    return
                raise
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
            conn = HostConn(self._next_conn, sock, index, peer)
            self._next_conn += 1
            self.conns[conn.conn] = conn
            self.stats.accepted += 1
            hub.submit(KIND_ACCEPT, conn.conn, index, peer.encode())
            self._update_interest(conn)

    def _lab_pending(self, conn: HostConn) -> int:
        relay = self.forwarder.relays.get(conn.conn)
        consumed = relay.consumed if relay is not None else 0
        return conn.submitted - consumed

    def _update_interest(self, conn: HostConn) -> None:
        hub = self.hub
        if conn.closed or hub is None or hub.selector is None:
            return
        want = 0
        if not conn.host_eof:
            if self._lab_pending(conn) < self.forwarder.window:
                want |= EVENT_READ
            else:
                self.stats.paused_reads += 1
                self._dirty[conn.conn] = conn  # look again once the lab has taken some
        if conn.outbuf:
            want |= EVENT_WRITE
        if want == conn.interest:
            return
        if conn.interest == 0:
            hub.selector.register(conn.sock, want, self._make_ready(conn))
        elif want == 0:
            hub.selector.unregister(conn.sock)
        else:
            hub.selector.modify(conn.sock, want, self._make_ready(conn))
        conn.interest = want

    def _make_ready(self, conn: HostConn) -> Callable[[Any, int], None]:
        def on_ready(_fileobj: Any, mask: int) -> None:
            if mask & EVENT_WRITE:
                self._write(conn)
            if mask & EVENT_READ and not conn.closed:
                self._read(conn)
        return on_ready

    def _read(self, conn: HostConn) -> None:
        hub = self.hub
        assert hub is not None
        room = self.forwarder.window - self._lab_pending(conn)
        if room <= 0:
            self._update_interest(conn)
            return
        try:
            data = conn.sock.recv(min(room, HOST_READ_CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._reset(conn)
            return
        if not data:
            conn.host_eof = True
            hub.submit(KIND_EOF, conn.conn)
        else:
            conn.submitted += len(data)
            self.stats.bytes_in += len(data)
            hub.submit(KIND_DATA, conn.conn, 0, data)
        self._update_interest(conn)
        self._maybe_close(conn)

    def _write(self, conn: HostConn) -> None:
        hub = self.hub
        assert hub is not None
        if not conn.outbuf:
            return
        try:
            sent = conn.sock.send(conn.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._reset(conn)
            return
        if sent:
            del conn.outbuf[:sent]
            self.stats.bytes_out += sent
            hub.submit(KIND_DRAIN, conn.conn, sent)
        self._finish_writes(conn)
        self._update_interest(conn)
        self._maybe_close(conn)

    def _finish_writes(self, conn: HostConn) -> None:
        if conn.lab_eof and not conn.outbuf and not conn.wr_shut and not conn.closed:
            conn.wr_shut = True
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _lab_output(self, conn_id: int, what: str, data: bytes) -> None:
        conn = self.conns.get(conn_id)
        if conn is None or conn.closed:
            return
        self._dirty[conn_id] = conn
        if what == OUT_DATA:
            conn.outbuf += data
            if len(conn.outbuf) > self.stats.max_outbuf:
                self.stats.max_outbuf = len(conn.outbuf)
        elif what == OUT_EOF:
            conn.lab_eof = True
            self._finish_writes(conn)
        elif what == OUT_RESET:
            self._close(conn, abortive=True)

    def _reset(self, conn: HostConn) -> None:
        """The host connection failed: tell the lab, drop it."""
        hub = self.hub
        self.stats.resets += 1
        if hub is not None:
            hub.submit(KIND_RESET, conn.conn)
        self._close(conn, abortive=True)

    def _maybe_close(self, conn: HostConn) -> None:
        if conn.host_eof and conn.wr_shut and not conn.outbuf:
            self._close(conn, abortive=False)

    def _close(self, conn: HostConn, *, abortive: bool) -> None:
        if conn.closed:
            return
        conn.closed = True
        hub = self.hub
        if conn.interest and hub is not None and hub.selector is not None:
            try:
                hub.selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.interest = 0
        if abortive:
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        conn.sock.close()
        conn.outbuf = bytearray()
        self.conns.pop(conn.conn, None)
        self.stats.closed += 1
        if len(self.conns) < self.max_connections:
            self._set_listening(True)

    def service(self, time_ns: int) -> None:
        """Between polls: write what the lab produced, re-open reads the lab has caught up with."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        for conn in dirty.values():
            if conn.closed:
                continue
            if conn.outbuf:
                self._write(conn)
            elif conn.lab_eof:
                self._finish_writes(conn)
            if not conn.closed:
                self._update_interest(conn)
                self._maybe_close(conn)

    def stop(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn, abortive=True)
        self._set_listening(False)
        for lsock in self.listeners:
            lsock.close()
        self.listeners = []
        self.hub = None
        if self.forwarder.output == self._lab_output:
            self.forwarder.output = None


HOST_SOCKET_BUFFER = 128 * 1024


def _listen(spec: ForwardSpec) -> socket.socket:
    family = socket.AF_INET6 if spec.listen_family_v6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Bound what the host kernel may buffer for a connection (accepted sockets
        # inherit these), so backpressure reaches the real client instead of the
        # host's autotuned buffers absorbing megabytes.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, HOST_SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, HOST_SOCKET_BUFFER)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((spec.listen_host, spec.listen_port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BridgeError(f"cannot listen on {spec}: {exc.strerror or exc}") from None
    return sock


def attach_forwards(world: "World", hub: BridgeHub, specs: list[ForwardSpec], *, live: bool = True,
                    window: int = DEFAULT_WINDOW) -> tuple[Forwarder, ForwardHost | None]:
    """Add the gateway and its relay to the lab; with `live`, listen on the host too."""
    forwarder = Forwarder(world, specs, window=window)
    hub.add_endpoint(forwarder)
    if not live:
        return forwarder, None
    host = ForwardHost(forwarder)
    hub.add_host_side(host)
    return forwarder, host
