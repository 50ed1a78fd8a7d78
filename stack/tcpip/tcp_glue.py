"""TCP glue: demultiplexing, listeners, timers and zero-copy I/O around the sans-IO core.

The core (`stack.tcpip.tcp`) decides *what* to send and when; this module turns
its segments into wire headers in a header slot, describes the payload with
partial MDLs over the client's own pages (IoBuildPartialMdl, from a pool), and
hands the packet to the IP layer.  On receive it parses the TCP header, finds
the connection by 4-tuple (or the listener), feeds the core, and delivers the
data to the client: zero copy through the receive handler, or one counted copy
into a posted receive MDL.  The NBL under received data is held while the core
still references it, and copied out only when the adapter is short of buffers.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, Callable

from stack.kernel import (DISPATCH_LEVEL, STATUS_ADDRESS_ALREADY_EXISTS, STATUS_CANCELLED,
                          STATUS_CONNECTION_ABORTED, STATUS_CONNECTION_REFUSED, STATUS_CONNECTION_RESET,
                          STATUS_HOST_UNREACHABLE, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_ADDRESS, STATUS_INVALID_DEVICE_STATE,
                          STATUS_INVALID_PARAMETER, STATUS_IO_TIMEOUT, STATUS_NETWORK_UNREACHABLE, STATUS_PENDING,
                          STATUS_SUCCESS, kroutine)
from stack.kernel.ex import ExAllocatePoolWithTag, ExFreePoolWithTag
from stack.kernel.mdl import IoBuildPartialMdl, Mdl, copy_to_mdl, mdl_chain_length
from stack.kernel.pool import NonPagedPoolNx
from stack.kernel.symbols import Frame

from .addr import AF_INET, AF_INET6, SockAddr, any_address, v4_mapped
from .sharing import Binding, BindTable, Share
from .syn_hold import drop_all, inspect_segment
from .events import ClientUpcall, PacketDropped, SegmentReceived, SegmentSent, TcpStateChanged
from .tcp import (Closed, DataAcked, DataReceived, Established, PeerClosed, Reset, Retransmitted, StateChanged,
                  TcpConfig,
                  TcpConnection, TcpListener, TcpSegment, TcpState, rst_for_unexpected)
from .tcp.seq import SEQ_MASK
from .transport import (ACCEPT, RECEIVE_PUSH, RECEIVE_WAITALL, AcceptHandler, ConnectComplete,
                        ConnectionEndpoint, ListenEndpoint, RequestComplete)
from .wire import WireError, tcp_header_length
from .wire.tcp import emit_tcp_header, fill_tcp_checksum, parse_tcp_segment
from .wire.ipv4 import IPPROTO_TCP

if TYPE_CHECKING:
    from .ip import Path, RxFrame, TxPacket
    from .stack import TcpipStack

TCB_TAG = "TcpE"
LISTENER_TAG = "TcpL"
TCB_SIZE = 0x2C0
LISTENER_SIZE = 0x100
EPHEMERAL_FIRST = 49152
EPHEMERAL_LAST = 65535
PUSH_TIMER_NS = 500_000_000  # a receive without PSH completes after this long (Windows' push timer)
_HALF = 1 << 31
MAX_PAYLOAD_MDLS = 64  # partial MDLs one segment (up to 64 KiB of LSO) may take from the MDL pool

RESET_STATUS = {
    "peer_reset": STATUS_CONNECTION_RESET,
    "refused": STATUS_CONNECTION_REFUSED,
    "timeout": STATUS_IO_TIMEOUT,
    "keepalive_timeout": STATUS_IO_TIMEOUT,
    "aborted": STATUS_CONNECTION_ABORTED,
}


def _seq_le(a: int, b: int) -> bool:
    return ((b - a) & SEQ_MASK) < _HALF


@dataclass(slots=True)
class SendRequest:
    """One client send: bytes [start, start+length) of the connection's stream."""

    start: int
    length: int
    pieces: list[tuple[Mdl, int, int]]  # (source MDL, offset in it, bytes) covering the request
    completion: RequestComplete | None
    acked: bool = False
    inflight: int = 0  # NBLs on their way to the wire that reference these pages
    done: bool = False
    failed: int = 0  # the status it fails with once its NBLs are back (reset/abort while in flight)


@dataclass(slots=True)
class ReceiveRequest:
    mdl: Mdl
    offset: int
    length: int
    completion: RequestComplete
    flags: int
    filled: int = 0


@dataclass(slots=True)
class Tcb:
    """The transport's record of one connection (its endpoint is what the client holds)."""

    endpoint: ConnectionEndpoint
    core: TcpConnection | None = None
    key: tuple | None = None  # (local ip bytes, local port, remote ip bytes, remote port)
    path: "Path | None" = None
    listener: ListenEndpoint | None = None
    timer: Any = None
    timer_at: int | None = None
    snd_base: int = 0  # 32-bit sequence number of stream offset 0 (ISS + 1)
    sends: list[SendRequest] = field(default_factory=list)
    send_starts: list[int] = field(default_factory=list)
    send_head: int = 0
    stream_end: int = 0
    receives: deque = field(default_factory=deque)
    held: list[tuple[int, Any]] = field(default_factory=list)  # (end seq32, RxFrame) NBLs the core references
    connect_completion: ConnectComplete | None = None
    disconnect_completion: Callable[[int], None] | None = None
    fail_status: int | None = None  # overrides the status of the next Reset (host unreachable, close)
    busy: bool = False
    dirty: bool = False
    eof_delivered: bool = False
    reset_delivered: bool = False
    accepted: bool = False
    last_push: bool = False
    push_end: int | None = None  # end of the latest PSH segment not yet in order (32-bit seq)
    push_pending: bool = False  # in-order data up to a PSH is waiting for a posted receive
    push_timer: Any = None
    nodelay: bool = False
    freed: bool = False
    binding: Binding | None = None  # the local address the client bound explicitly
    rx_indicating: Any = None  # the RxFrame being processed (retain_indication can keep it)


class TcpLayer:
    def __init__(self, stack: "TcpipStack", config: TcpConfig | None = None) -> None:
        self.stack = stack
        self.kernel = stack.kernel
        self.config = config or TcpConfig()
        self.connections: dict[tuple, Tcb] = {}
        self.tcbs: dict[int, Tcb] = {}  # id(tcb) -> every TCB with a live endpoint or connection (O(1) removal)
        self.listeners: dict[tuple[int, int], list[ListenEndpoint]] = {}  # (ip version, port) -> listeners
        self.bound_ports: dict[tuple[int, int], int] = {}  # (ip version, port) -> unconnected binds
        self.binds = BindTable()  # every explicitly bound TCP address (sharing.py decides conflicts)
        self._next_ephemeral = EPHEMERAL_FIRST
        self.counters = stack.counters
        self._configs: dict[int, TcpConfig] = {}
        self._tcb_of_core: dict[int, Tcb] = {}  # id(core connection) -> TCB (listener hand-offs)
        # The transport's own random stream (from the world's seed, apart from kernel.rng so that
        # drawing from it moves no ISN): SYN cookie secret and SYN retransmission jitter.
        self._rng = random.Random(f"{getattr(self.kernel, 'seed', 0)}:{self.kernel.name}:tcp")
        self._cookie_secret = self._rng.getrandbits(128).to_bytes(16, "big")

    # ==================================================================================
    # client calls (through transport.py)
    # ==================================================================================
    def listen(self, local: SockAddr, accept: AcceptHandler | None, backlog: int,
               v6only: bool, share: Share = Share.DEFAULT,
               owner: object = "System") -> tuple[int, ListenEndpoint | None]:
        if backlog < 1:
            return STATUS_INVALID_PARAMETER, None
        if not local.is_unspecified and not self.stack.is_local_address(local.ip):
            return STATUS_INVALID_ADDRESS, None
        version = local.ip.version
        port = local.port or self._ephemeral_port(version)
        if port is None:
            return STATUS_INSUFFICIENT_RESOURCES, None  # ephemeral ports exhausted (WSAENOBUFS on Windows)
        local = local.with_port(port)
        binding = _binding(local, share, owner, v6only)
        status = self.binds.bind(binding)
        if status != STATUS_SUCCESS:
            return status, None
        address = ExAllocatePoolWithTag(NonPagedPoolNx, LISTENER_SIZE, LISTENER_TAG)
        if not address:
            self.binds.release(binding)
            return STATUS_INSUFFICIENT_RESOURCES, None
        listener = ListenEndpoint(self.stack, local, backlog, v6only, accept)
        listener.binding = binding
        listener.address = address
        listener._core = TcpListener(self._config_for(version, self._smallest_mtu()), port, backlog,
                                     max(backlog, 16), self._iss, syn_cookie_secret=self._cookie_secret,
                                     syn_jitter=self._syn_jitter)
        self.listeners.setdefault((version, port), []).append(listener)
        self.kernel.addr_objects[listener.address] = listener
        return STATUS_SUCCESS, listener

    def listener_accept(self, listener: ListenEndpoint,
                        completion: Callable[[ConnectionEndpoint | None, int], None]) -> int:
        if listener.closed:
            return STATUS_INVALID_DEVICE_STATE
        listener._pending_accepts.append(completion)
        self._serve_accepts(listener)
        return STATUS_PENDING

    def listener_offer(self, listener: ListenEndpoint, endpoint: ConnectionEndpoint) -> int:
        tcb: Tcb = endpoint._tcb
        if listener.closed or listener.accept_handler is not None or endpoint.closed or tcb.core is None \
                or tcb.reset_delivered:
            return STATUS_INVALID_DEVICE_STATE
        listener._offered.append(endpoint)
        self._serve_accepts(listener)
        return STATUS_SUCCESS

    def _serve_accepts(self, listener: ListenEndpoint) -> None:
        while listener._pending_accepts and listener._offered:  # hand-overs first (ListenEndpoint.offer)
            endpoint = listener._offered.pop(0)
            completion = listener._pending_accepts.pop(0)
            self._upcall(endpoint, "accept", STATUS_SUCCESS)
            completion(endpoint, STATUS_SUCCESS)
            if endpoint._tcb.core is not None:
                self._kick(endpoint._tcb)
        while listener._pending_accepts:
            core_conn = listener._core.accept()
            if core_conn is None:
                return
            tcb = self._tcb_of_core.get(id(core_conn))
            if tcb is None:
                continue
            tcb.accepted = True
            completion = listener._pending_accepts.pop(0)
            self._upcall(tcb.endpoint, "accept", STATUS_SUCCESS)
            completion(tcb.endpoint, STATUS_SUCCESS)
            self._kick(tcb)  # data that arrived before the accept is offered now

    def listener_close(self, listener: ListenEndpoint) -> None:
        if listener.closed:
            return
        listener.closed = True
        version = listener.local.ip.version
        group = self.listeners.get((version, listener.local.port), [])
        if listener in group:
            group.remove(listener)
        if not group:
            self.listeners.pop((version, listener.local.port), None)
        pending, listener._pending_accepts = listener._pending_accepts, []
        for completion in pending:
            completion(None, STATUS_CANCELLED)
        drop_all(listener)
        offered, listener._offered = listener._offered, []
        for endpoint in offered:  # handed over, never accepted: reset like the rest
            endpoint.close()
        for tcb in list(self.tcbs.values()):  # embryonic and never-accepted connections die with it
            if tcb.listener is listener and not tcb.accepted and tcb.core is not None:
                tcb.fail_status = STATUS_CANCELLED
                tcb.endpoint.closed = True
                tcb.core.abort(self.kernel.now_ns)
                self._kick(tcb)
        self.binds.release(getattr(listener, "binding", None))
        self.kernel.addr_objects.pop(listener.address, None)
        ExFreePoolWithTag(listener.address, LISTENER_TAG)

    def listener_snapshot(self, listener: ListenEndpoint) -> dict[str, object]:
        core = listener._core
        return {"local": str(listener.local), "backlog": listener.backlog, "v6only": listener.v6only,
                "address": listener.address, "pending_handshakes": core.pending_handshakes,
                "ready_to_accept": core.ready_to_accept, "syns_received": core.syns_received,
                "syns_dropped_syn_queue_full": core.syns_dropped_syn_queue_full,
                "syns_dropped_backlog_full": core.syns_dropped_backlog_full, "resets_sent": core.resets_sent,
                "syn_protection": core.protection_active(self.kernel.now_ns),
                "syn_protection_activations": core.protection_activations,
                "syn_cookies_sent": core.syn_cookies_sent, "syn_cookies_accepted": core.syn_cookies_accepted}

    def socket(self, local: SockAddr | None, family: int, share: Share = Share.DEFAULT,
               owner: object = "System", v6only: bool = True) -> tuple[int, ConnectionEndpoint | None]:
        if local is None:
            local = any_address(family)
        if not local.is_unspecified and not self.stack.is_local_address(local.ip):
            return STATUS_INVALID_ADDRESS, None
        binding = None
        if local.port:
            key = (local.ip.version, local.port)
            binding = _binding(local, share, owner, v6only)
            status = self.binds.bind(binding)
            if status != STATUS_SUCCESS:
                return status, None
        address = ExAllocatePoolWithTag(NonPagedPoolNx, TCB_SIZE, TCB_TAG)
        if not address:
            self.binds.release(binding)
            return STATUS_INSUFFICIENT_RESOURCES, None
        if local.port:
            self.bound_ports[key] = self.bound_ports.get(key, 0) + 1
        endpoint = ConnectionEndpoint(self.stack, local)
        tcb = Tcb(endpoint, binding=binding)
        endpoint._tcb = tcb
        endpoint.address = address
        self.kernel.addr_objects[endpoint.address] = endpoint
        self.tcbs[id(tcb)] = tcb
        return STATUS_SUCCESS, endpoint

    def connect(self, endpoint: ConnectionEndpoint, remote: SockAddr, completion: ConnectComplete) -> int:
        tcb: Tcb = endpoint._tcb
        if tcb.core is not None or endpoint.closed:
            return STATUS_INVALID_DEVICE_STATE
        remote_ip = remote.ip
        local = endpoint.local
        if isinstance(remote_ip, IPv6Address) and remote_ip.ipv4_mapped is not None:
            remote_ip = remote_ip.ipv4_mapped
        if remote.port == 0 or remote_ip.is_unspecified:
            return STATUS_INVALID_ADDRESS
        if local.ip.version != remote_ip.version and not (local.ip.version == 6 and local.is_unspecified):
            return STATUS_INVALID_PARAMETER
        path = self.stack.ip.route(remote_ip, None if local.is_unspecified else local.ip)
        if path is None:
            return STATUS_NETWORK_UNREACHABLE
        port = local.port
        if port:
            self.bound_ports[(local.ip.version, port)] -= 1
        else:
            port = self._ephemeral_port(remote_ip.version, path.src, remote_ip.packed, remote.port)
            if port is None:
                return STATUS_INSUFFICIENT_RESOURCES  # ephemeral ports exhausted (WSAENOBUFS on Windows)
        key = (path.src, port, remote_ip.packed, remote.port)
        if key in self.connections:
            return STATUS_ADDRESS_ALREADY_EXISTS
        local_ip = path.src_address
        if local.ip.version == 6 and remote_ip.version == 4:
            endpoint.local = SockAddr(v4_mapped(local_ip), port)  # type: ignore[arg-type]
            endpoint.remote = SockAddr(v4_mapped(remote_ip), remote.port)  # type: ignore[arg-type]
        else:
            endpoint.local = SockAddr(local_ip, port)
            endpoint.remote = SockAddr(remote_ip, remote.port)
        core = TcpConnection(self._config_for(remote_ip.version, path.interface.mtu), port, remote.port,
                             self._iss(), self._syn_jitter)
        self._attach(tcb, core, key, path)
        tcb.connect_completion = completion
        self.counters.tcp_active_opens += 1
        core.connect(self.kernel.now_ns)
        self._kick(tcb)
        return STATUS_PENDING

    def retain_indication(self, endpoint: ConnectionEndpoint) -> list[Any] | None:
        """Inside a receive upcall: hold the NBLs behind the indicated bytes (TDI's chained receive
        returning STATUS_PENDING); None when one of them cannot be held (a copy, low resources)."""
        tcb: Tcb = endpoint._tcb
        core = tcb.core
        if core is None:
            return None
        read_ptr = self._read_pointer(core)
        frames = [rx for end, rx in tcb.held if not _seq_le(end, read_ptr)]
        rx = tcb.rx_indicating
        if rx is not None and rx.nbl is not None and rx not in frames:
            if not rx.can_hold(self):
                return None
            frames.append(rx)
        if not frames:
            return None
        for frame in frames:
            frame.hold()
        return frames

    def handlers_changed(self, endpoint: ConnectionEndpoint) -> None:
        tcb: Tcb = endpoint._tcb
        if tcb.core is not None:
            self._kick(tcb)

    def send(self, endpoint: ConnectionEndpoint, mdl: Mdl, offset: int, length: int,
             completion: RequestComplete | None, disconnect: Callable[[int], None] | None = None) -> int:
        tcb: Tcb = endpoint._tcb
        core = tcb.core
        if endpoint.closed or core is None or tcb.reset_delivered or core.state not in _CAN_SEND \
                or tcb.disconnect_completion is not None:
            return STATUS_INVALID_DEVICE_STATE
        if length < 0 or offset < 0:
            return STATUS_INVALID_PARAMETER
        if length == 0:
            return STATUS_SUCCESS
        try:
            pieces = _mdl_pieces(mdl, offset, length)
        except ValueError:
            return STATUS_INVALID_PARAMETER
        request = SendRequest(tcb.stream_end, length, pieces, completion)
        tcb.sends.append(request)
        tcb.send_starts.append(request.start)
        tcb.stream_end += length
        last = len(pieces) - 1
        for i, (src, off, n) in enumerate(pieces):
            views = src.views(off, n)
            for j, view in enumerate(views):
                core.send(view, request if (i == last and j == len(views) - 1) else None)
        if disconnect is not None:  # send and disconnect: the FIN is queued before anything leaves
            tcb.disconnect_completion = disconnect
            core.close(self.kernel.now_ns)
        self._kick(tcb)
        return STATUS_PENDING

    def receive(self, endpoint: ConnectionEndpoint, mdl: Mdl, offset: int, length: int,
                completion: RequestComplete, flags: int) -> int:
        tcb: Tcb = endpoint._tcb
        if endpoint.closed or tcb.core is None:
            return STATUS_INVALID_DEVICE_STATE
        if length <= 0 or offset < 0 or offset + length > mdl_chain_length(mdl):
            return STATUS_INVALID_PARAMETER
        if tcb.reset_delivered:
            return tcb.fail_status or STATUS_CONNECTION_RESET
        if tcb.eof_delivered and not tcb.core.recv_available():
            return STATUS_SUCCESS  # graceful end of stream: zero bytes
        tcb.receives.append(ReceiveRequest(mdl, offset, length, completion, flags))
        self._kick(tcb)
        return STATUS_PENDING

    def disconnect(self, endpoint: ConnectionEndpoint, abortive: bool,
                   completion: Callable[[int], None] | None) -> int:
        tcb: Tcb = endpoint._tcb
        core = tcb.core
        if core is None or tcb.reset_delivered:
            return STATUS_INVALID_DEVICE_STATE
        now = self.kernel.now_ns
        if abortive:
            core.abort(now)
            self._kick(tcb)
            return STATUS_SUCCESS
        if tcb.disconnect_completion is not None:
            return STATUS_INVALID_DEVICE_STATE
        if core.state in (TcpState.FIN_WAIT_2, TcpState.TIME_WAIT, TcpState.CLOSED):
            return STATUS_SUCCESS
        tcb.disconnect_completion = completion or _ignore_status
        core.close(now)
        self._kick(tcb)
        return STATUS_PENDING

    def close(self, endpoint: ConnectionEndpoint) -> None:
        if endpoint.closed:
            return
        tcb: Tcb = endpoint._tcb
        endpoint.closed = True
        endpoint.receive_handler = None
        endpoint.disconnect_handler = None
        receives, tcb.receives = tcb.receives, deque()
        for req in receives:
            req.completion(STATUS_CANCELLED, req.filled)
        core = tcb.core
        if core is None:
            if endpoint.local.port:
                key = (endpoint.local.ip.version, endpoint.local.port)
                self.bound_ports[key] = max(0, self.bound_ports.get(key, 0) - 1)
            self._free(tcb)
            return
        if core.state is TcpState.CLOSED:
            self._free(tcb)
            return
        if tcb.disconnect_completion is None and core.state not in (TcpState.TIME_WAIT, TcpState.LAST_ACK,
                                                                    TcpState.CLOSING, TcpState.FIN_WAIT_2):
            tcb.fail_status = STATUS_CANCELLED
            core.abort(self.kernel.now_ns)
        self._kick(tcb)

    def get_nodelay(self, endpoint: ConnectionEndpoint) -> bool:
        tcb: Tcb = endpoint._tcb
        return tcb.core.nodelay if tcb.core is not None else tcb.nodelay

    def set_nodelay(self, endpoint: ConnectionEndpoint, value: bool) -> None:
        tcb: Tcb = endpoint._tcb
        tcb.nodelay = bool(value)  # kept for a connection not opened yet
        if tcb.core is not None:
            tcb.core.nodelay = tcb.nodelay
            self._kick(tcb)

    def state_name(self, endpoint: ConnectionEndpoint) -> str:
        tcb: Tcb = endpoint._tcb
        return tcb.core.state.value if tcb.core is not None else "CLOSED"

    def recv_available(self, endpoint: ConnectionEndpoint) -> int:
        tcb: Tcb = endpoint._tcb
        return tcb.core.recv_available() if tcb.core is not None else 0

    def snapshot(self, endpoint: ConnectionEndpoint) -> dict[str, object]:
        tcb: Tcb = endpoint._tcb
        snap: dict[str, object] = dict(tcb.core.snapshot()) if tcb.core is not None else {"state": "CLOSED"}
        snap.update({
            "address": endpoint.address, "local": str(endpoint.local),
            "remote": str(endpoint.remote) if endpoint.remote else "", "closed": endpoint.closed,
            "sends_outstanding": sum(1 for r in tcb.sends[tcb.send_head:] if not r.done),
            "receives_posted": len(tcb.receives), "nbls_held": len(tcb.held),
            "interface": tcb.path.interface.name if tcb.path is not None else "",
        })
        return snap

    def connection_list(self) -> list[ConnectionEndpoint]:
        return [tcb.endpoint for tcb in self.tcbs.values()]

    def listener_list(self) -> list[ListenEndpoint]:
        return [lst for group in self.listeners.values() for lst in group]

    # ==================================================================================
    # internals: setup, ports, ISS
    # ==================================================================================
    def _config_for(self, version: int, mtu: int) -> TcpConfig:
        """The TCP configuration with the MSS this family can carry on this MTU (cached)."""
        carried = mtu - (40 if version == 6 else 20) - 20
        mss = carried if self.config.mss is None else min(self.config.mss, carried)
        if mss == self.config.mss:
            return self.config
        cached = self._configs.get(mss)
        if cached is None:
            cached = self._configs[mss] = replace(self.config, mss=mss)
        return cached

    def _smallest_mtu(self) -> int:
        return min((iface.mtu for iface in self.stack.interfaces), default=1500)

    def _iss(self) -> int:
        return self.kernel.rng.getrandbits(32)

    def _syn_jitter(self, rto_ns: int) -> int:
        """Up to a quarter of the RTO on top of each SYN / SYN-ACK retransmission timer, so that
        handshakes lost together (a connect burst, a flood) do not come back in lock-step waves."""
        return int(self._rng.random() * (rto_ns >> 2))

    def _ephemeral_port(self, version: int, src: bytes | None = None, dst: bytes | None = None,
                        dport: int = 0) -> int | None:
        span = EPHEMERAL_LAST - EPHEMERAL_FIRST + 1
        for _ in range(span):
            port = self._next_ephemeral
            self._next_ephemeral = port + 1 if port < EPHEMERAL_LAST else EPHEMERAL_FIRST
            if (version, port) in self.listeners or self.bound_ports.get((version, port)) or self.binds.in_use(port):
                continue
            if src is not None and (src, port, dst, dport) in self.connections:
                continue
            if src is None and any(k[1] == port for k in self.connections):
                continue
            return port
        return None

    def _attach(self, tcb: Tcb, core: TcpConnection, key: tuple, path: "Path") -> None:
        tcb.core = core
        tcb.key = key
        tcb.path = path
        tcb.snd_base = (core.iss + 1) & SEQ_MASK
        if tcb.nodelay:
            core.nodelay = True
        self.connections[key] = tcb
        self._tcb_of_core[id(core)] = tcb

    def _free(self, tcb: Tcb) -> None:
        if tcb.freed:
            return
        tcb.freed = True
        self.binds.release(tcb.binding)
        tcb.binding = None
        self._release_all_held(tcb)
        self.tcbs.pop(id(tcb), None)
        endpoint = tcb.endpoint
        self.kernel.addr_objects.pop(endpoint.address, None)
        ExFreePoolWithTag(endpoint.address, TCB_TAG)

    # ==================================================================================
    # driving the core
    # ==================================================================================
    def _kick(self, tcb: Tcb) -> None:
        """Process the core's events, deliver data, send its segments, re-arm its timer.

        Re-entrant: an upcall that calls back in (send, close ...) only marks the TCB
        dirty, and the outer call loops until nothing is left to do."""
        if tcb.busy:
            tcb.dirty = True
            return
        core = tcb.core
        if core is None:
            return
        tcb.busy = True
        k = self.kernel
        try:
            while True:
                tcb.dirty = False
                if core._events:  # noqa: SLF001 - peeked (as below) to skip an empty drain
                    for event in core.drain_events():
                        self._on_event(tcb, event)
                self._deliver(tcb)
                segments = core.poll_output(k.now_ns)
                if segments:
                    self._transmit(tcb, segments)
                if not tcb.dirty and not core._events:
                    break
        finally:
            tcb.busy = False
        self._rearm(tcb)

    def _rearm(self, tcb: Tcb) -> None:
        core = tcb.core
        at = core.poll_at() if core is not None and core.state is not TcpState.CLOSED else None
        if at == tcb.timer_at:
            return
        if tcb.timer is not None:
            tcb.timer.cancel()
            tcb.timer = None
        tcb.timer_at = at
        if at is not None:
            tcb.timer = self.kernel.scheduler.call_at(at, self.kernel, self._timer_event, tcb, label="TCP timer")

    def _timer_event(self, tcb: Tcb) -> None:
        """A scheduler event standing in for the TCB timer's DPC."""
        k = self.kernel
        tcb.timer = None
        tcb.timer_at = None
        k.irql = DISPATCH_LEVEL
        k.frames.append(Frame("nt!KiIdleLoop"))
        k.frames.append(Frame("nt!KiRetireDpcList"))
        TcpTcbTimerFire(self, tcb)

    def _on_event(self, tcb: Tcb, event: object) -> None:
        endpoint = tcb.endpoint
        k = self.kernel
        if isinstance(event, DataAcked):
            request: SendRequest = event.token  # type: ignore[assignment]
            request.acked = True
            self._maybe_complete_send(tcb, request)
        elif isinstance(event, (DataReceived, PeerClosed)):
            if isinstance(event, DataReceived) and event.push:
                tcb.last_push = True
        elif isinstance(event, Retransmitted):
            self.counters.tcp_segments_retransmitted += 1
        elif isinstance(event, StateChanged):
            _count_transition(self.counters, event.old, event.new)
            if k.bus.subscribers:
                k.bus.publish(TcpStateChanged(host=k.name, depth=len(k.frames), conn=endpoint.address,
                                              local=str(endpoint.local), remote=str(endpoint.remote),
                                              old=event.old.value, new=event.new.value))
            new = event.new
            if tcb.disconnect_completion is not None and (
                    new is TcpState.FIN_WAIT_2 or new is TcpState.TIME_WAIT
                    or (new is TcpState.CLOSED and event.old is TcpState.LAST_ACK)):
                done, tcb.disconnect_completion = tcb.disconnect_completion, None
                self._upcall(endpoint, "disconnect-complete", STATUS_SUCCESS)
                done(STATUS_SUCCESS)
        elif isinstance(event, Established):
            if tcb.connect_completion is not None:
                done, tcb.connect_completion = tcb.connect_completion, None
                self._upcall(endpoint, "connect-complete", STATUS_SUCCESS)
                done(endpoint, STATUS_SUCCESS)
            elif tcb.listener is not None:
                self._established_passive(tcb)
        elif isinstance(event, Reset):
            status = tcb.fail_status or RESET_STATUS.get(event.reason, STATUS_CONNECTION_RESET)
            self._fail_requests(tcb, status)
            if tcb.connect_completion is not None:
                done, tcb.connect_completion = tcb.connect_completion, None
                self._upcall(endpoint, "connect-complete", status)
                done(endpoint, status)
            elif not endpoint.closed and (tcb.listener is None or tcb.accepted):
                tcb.reset_delivered = True
                handler = endpoint.disconnect_handler
                if handler is not None:
                    self._upcall(endpoint, "disconnect", status)
                    handler(endpoint, True, status)
            tcb.reset_delivered = True
        elif isinstance(event, Closed):
            self._on_closed(tcb)

    def _established_passive(self, tcb: Tcb) -> None:
        listener = tcb.listener
        assert listener is not None
        if listener.closed:
            return
        handler = listener.accept_handler
        if handler is None:
            self._serve_accepts(listener)
            return
        listener._core.accept()  # keep the core's accept queue in step: this one is taken now
        tcb.accepted = True
        self._upcall(tcb.endpoint, "accept", STATUS_SUCCESS)
        verdict = handler(listener, tcb.endpoint)
        if verdict != ACCEPT:
            tcb.fail_status = STATUS_CANCELLED
            tcb.endpoint.closed = True
            tcb.core.abort(self.kernel.now_ns)  # type: ignore[union-attr]

    def _on_closed(self, tcb: Tcb) -> None:
        if tcb.key is not None and self.connections.get(tcb.key) is tcb:
            del self.connections[tcb.key]
        if tcb.core is not None:
            self._tcb_of_core.pop(id(tcb.core), None)
        if tcb.timer is not None:
            tcb.timer.cancel()
            tcb.timer = None
            tcb.timer_at = None
        self._fail_requests(tcb, tcb.fail_status or STATUS_CONNECTION_ABORTED)
        if tcb.disconnect_completion is not None:
            done, tcb.disconnect_completion = tcb.disconnect_completion, None
            done(STATUS_SUCCESS if tcb.fail_status is None else tcb.fail_status)
        self._release_all_held(tcb)
        if tcb.listener is not None and not tcb.accepted:
            tcb.endpoint.closed = True  # died before anyone accepted it: nobody else will close it
        if tcb.endpoint.closed:
            self._free(tcb)

    def _fail_requests(self, tcb: Tcb, status: int) -> None:
        for request in tcb.sends[tcb.send_head:]:
            if not request.done and request.inflight == 0:
                request.done = True
                if request.completion is not None:
                    request.completion(status, 0)
            elif not request.done:
                request.acked = False  # completes with `status` when its NBLs come back
                request.failed = status
        tcb.send_head = len(tcb.sends)
        if tcb.push_timer is not None:
            tcb.push_timer.cancel()
            tcb.push_timer = None
        receives, tcb.receives = tcb.receives, deque()
        for req in receives:
            req.completion(status if not req.filled else STATUS_SUCCESS, req.filled)

    def _maybe_complete_send(self, tcb: Tcb, request: SendRequest) -> None:
        if request.done or request.inflight:
            return
        if request.acked:
            request.done = True
            self._upcall(tcb.endpoint, "send-complete", STATUS_SUCCESS, request.length)
            if request.completion is not None:
                request.completion(STATUS_SUCCESS, request.length)
        elif request.failed:  # failed while NBLs were still out
            request.done = True
            if request.completion is not None:
                request.completion(request.failed, 0)
        self._compact_sends(tcb)

    def _compact_sends(self, tcb: Tcb) -> None:
        sends = tcb.sends
        head = tcb.send_head
        while head < len(sends) and sends[head].done:
            head += 1
        tcb.send_head = head
        if head > 64 and head * 2 > len(sends):
            del sends[:head]
            del tcb.send_starts[:head]
            tcb.send_head = 0

    def _upcall(self, endpoint: Any, what: str, status: int = 0, nbytes: int = 0) -> None:
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(ClientUpcall(host=k.name, depth=len(k.frames), endpoint=endpoint.address, what=what,
                                       status=status, nbytes=nbytes))

    # ==================================================================================
    # receive: data to the client
    # ==================================================================================
    def _deliver(self, tcb: Tcb) -> None:
        core = tcb.core
        endpoint = tcb.endpoint
        if core is None:
            return
        took = False
        available = core.recv_available()
        if endpoint.closed:
            if available:
                core.read(available)  # nobody will read it: keep the window open
                took = True
        else:
            if tcb.push_end is not None and _seq_le(tcb.push_end, core.rcv_nxt):
                tcb.push_end = None
                tcb.push_pending = True
            if tcb.receives:
                # tcb.receives is read afresh each time: a completion may close (and swap it).
                while available and tcb.receives:
                    took = True
                    req = tcb.receives[0]
                    want = req.length - req.filled
                    views = core.read(want)
                    n = TcpDeliverDataToClient(self, tcb, req, views)
                    req.filled += n
                    available = core.recv_available()
                    # Windows completes a receive when it is full, or - unless the client asked
                    # for MSG_WAITALL - once the data up to a PSH is in, or after the push timer.
                    full = req.filled >= req.length
                    pushed = tcb.push_pending and not available
                    if full or (pushed and not req.flags & RECEIVE_WAITALL):
                        if pushed:
                            tcb.push_pending = False
                        self._complete_receive(tcb, req)
                        available = core.recv_available()  # the completion may have read (a new receive)
                if tcb.receives and tcb.receives[0].filled and tcb.push_timer is None:
                    tcb.push_timer = self.kernel.call_later(PUSH_TIMER_NS, self._push_timer_event, tcb,
                                                            label="TCP receive push timer")
            handler = endpoint.receive_handler
            if available and handler is not None and not tcb.receives and (tcb.listener is None or tcb.accepted):
                views = _peek(core, available)
                flags = RECEIVE_PUSH if tcb.last_push else 0
                tcb.last_push = False
                self._upcall(endpoint, "receive", STATUS_SUCCESS, available)
                taken = handler(endpoint, views, available, flags)
                if taken:
                    core.read(min(max(taken, 0), available))
                    took = True
        if took and tcb.held:
            self._release_held(tcb)
        if core.at_eof and not tcb.eof_delivered and not endpoint.closed and (tcb.listener is None or tcb.accepted):
            tcb.eof_delivered = True
            if tcb.push_timer is not None:
                tcb.push_timer.cancel()
                tcb.push_timer = None
            receives, tcb.receives = tcb.receives, deque()
            for req in receives:
                self._upcall(endpoint, "receive-complete", STATUS_SUCCESS, req.filled)
                req.completion(STATUS_SUCCESS, req.filled)
            handler = endpoint.disconnect_handler
            if handler is not None:
                self._upcall(endpoint, "disconnect", STATUS_SUCCESS)
                handler(endpoint, False, STATUS_SUCCESS)

    @kroutine("tcpip", "TcpCompleteClientReceiveRequest")
    def _complete_receive(self, tcb: Tcb, req: ReceiveRequest) -> None:
        tcb.receives.popleft()
        if tcb.push_timer is not None:
            tcb.push_timer.cancel()
            tcb.push_timer = None
        self._upcall(tcb.endpoint, "receive-complete", STATUS_SUCCESS, req.filled)
        req.completion(STATUS_SUCCESS, req.filled)

    def _push_timer_event(self, tcb: Tcb) -> None:
        """No PSH arrived for a while: hand the client what its receive holds so far."""
        k = self.kernel
        tcb.push_timer = None
        k.irql = DISPATCH_LEVEL
        if tcb.receives and tcb.receives[0].filled and not tcb.receives[0].flags & RECEIVE_WAITALL:
            self._complete_receive(tcb, tcb.receives[0])
            if tcb.core is not None:
                self._kick(tcb)

    def _read_pointer(self, core: TcpConnection) -> int:
        return (core.rcv_nxt - core.recv_available()) & SEQ_MASK

    def _release_held(self, tcb: Tcb) -> None:
        core = tcb.core
        read_ptr = self._read_pointer(core)
        keep = []
        for end, rx in tcb.held:
            if _seq_le(end, read_ptr):
                rx.release()
            else:
                keep.append((end, rx))
        tcb.held = keep

    def _release_all_held(self, tcb: Tcb) -> None:
        held, tcb.held = tcb.held, []
        for _, rx in held:
            rx.release()

    # ==================================================================================
    # receive: segments from IP
    # ==================================================================================
    @kroutine("tcpip", "TcpMatchReceive")
    def receive_segment(self, rx: "RxFrame", src: bytes, dst: bytes, data: memoryview,
                        tail: tuple[memoryview, ...] = (), segments: int = 1) -> None:
        """A TCP segment for one of our addresses (data = the IP payload).

        A segment the NIC coalesced (RSC) has more payload in ``tail`` - the
        other receive buffers of its NET_BUFFER - and stands for ``segments``
        wire segments; its checksum was verified per segment by the NIC."""
        self.counters.tcp_segments_received += 1
        self.kernel.charge("tcp_rx_segment")
        if not rx.l4_checksum_ok:
            self.kernel.charge("checksum_byte", len(data))
        try:
            (src_port, dst_port, seq, ack, flags, window, mss, wscale, sack_permitted, timestamps, sack_blocks,
             payload) = parse_tcp_segment(data, src, dst, verify_checksum=not rx.l4_checksum_ok)
        except WireError as err:
            self.stack.drop(err.layer, err.reason, err.detail)
            return
        if len(payload):
            chunks = (payload, *tail) if tail else (payload,)
        else:
            chunks = tail
        seg = TcpSegment(src_port, dst_port, seq, ack, flags, window, mss, wscale, sack_permitted, timestamps,
                         sack_blocks, chunks, segments)
        tcb = self.connections.get((dst, dst_port, src, src_port))
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(SegmentReceived(host=k.name, depth=len(k.frames), conn=tcb.endpoint.address if tcb else 0,
                                          summary=_summary(src, dst, seg), length=seg.payload_len))
        if tcb is not None:
            TcpTcbReceive(self, tcb, seg, rx)
            return
        listener = self._find_listener(src, dst, dst_port)
        if listener is not None:
            self._listener_segment(listener, seg, rx, src, dst)
            return
        self.stack.drop("tcp", "no_endpoint")
        reply = rst_for_unexpected(seg)
        if reply is not None:
            self._send_bare(src, dst, reply)

    def _find_listener(self, src: bytes, dst: bytes, port: int) -> ListenEndpoint | None:
        version = 4 if len(dst) == 4 else 6
        wildcard = None
        for lst in self.listeners.get((version, port), ()):
            if lst.local.ip.packed == dst:
                return lst
            if lst.local.is_unspecified:
                wildcard = lst
        if wildcard is not None:
            return wildcard
        if version == 4:
            for lst in self.listeners.get((6, port), ()):
                if lst.local.is_unspecified and not lst.v6only:
                    return lst
        return None

    def _listener_segment(self, listener: ListenEndpoint, seg: TcpSegment, rx: "RxFrame",
                          src: bytes, dst: bytes) -> None:
        if listener.syn_hold is not None and inspect_segment(self, listener, seg, src, dst):
            return  # held for the client's decision, refused, or a held SYN's retransmission (syn_hold.py)
        k = self.kernel
        core_listener = listener._core
        if seg.payload and seg.flags & 0x10:
            # An ACK with data may complete a SYN-cookie handshake; the new TCB cannot hold
            # this NBL, so its payload is copied (rare: clients send the ACK alone first).
            data = b"".join(seg.payload)
            k.copies.count(len(data), "tcp receive buffer (SYN cookie ACK)")
            seg.payload = (memoryview(data),)
        activations = core_listener.protection_activations
        drops = core_listener.syns_dropped_syn_queue_full + core_listener.syns_dropped_backlog_full
        # The peer's family decides the MSS: an IPv4 peer of a dual-stack listener gets 1460, not 1440.
        config = self._config_for(4 if len(src) == 4 else 6, self._smallest_mtu())
        core_conn = core_listener.on_segment(seg, k.now_ns, src + dst, config)
        counters = self.counters
        counters.tcp_syn_protection_activations += core_listener.protection_activations - activations
        counters.tcp_syn_queue_drops += (core_listener.syns_dropped_syn_queue_full
                                         + core_listener.syns_dropped_backlog_full - drops)
        for reply in core_listener.poll_output(k.now_ns):
            self._send_bare(src, dst, reply)
        if core_conn is None:
            return
        remote_ip = IPv4Address(src) if len(src) == 4 else IPv6Address(src)
        path = self.stack.ip.route(remote_ip, IPv4Address(dst) if len(dst) == 4 else IPv6Address(dst))
        address = ExAllocatePoolWithTag(NonPagedPoolNx, TCB_SIZE, TCB_TAG) if path is not None else 0
        if not address:
            # No route back, or no pool for the TCB: refuse the connection (RST) and keep nothing.
            core_conn.abort(k.now_ns)
            for reply in core_conn.poll_output(k.now_ns):
                self._send_bare(src, dst, reply)
            counters.tcp_failed_connection_attempts += 1
            self.stack.drop("tcp", "no_route" if path is None else "no_tcb_memory")
            return
        counters.tcp_passive_opens += 1
        endpoint = ConnectionEndpoint(self.stack, SockAddr(path.src_address, seg.dst_port))
        if listener.local.ip.version == 6 and len(src) == 4:
            endpoint.local = SockAddr(v4_mapped(path.src_address), seg.dst_port)  # type: ignore[arg-type]
            endpoint.remote = SockAddr(v4_mapped(remote_ip), seg.src_port)  # type: ignore[arg-type]
        else:
            endpoint.remote = SockAddr(remote_ip, seg.src_port)
        tcb = Tcb(endpoint, listener=listener)
        endpoint._tcb = tcb
        endpoint.address = address
        k.addr_objects[endpoint.address] = endpoint
        self.tcbs[id(tcb)] = tcb
        self._attach(tcb, core_conn, (dst, seg.dst_port, src, seg.src_port), path)
        if core_conn.state is not TcpState.SYN_RECEIVED:  # opened from a SYN cookie: already established
            counters.tcp_syn_cookie_connections += 1
        self._kick(tcb)

    def hold_or_copy(self, tcb: Tcb, seg: TcpSegment, rx: "RxFrame") -> None:
        """Before the core sees a payload: copy it out when the NBL cannot be kept."""
        payload = seg.payload
        if payload and not rx.can_hold(self):
            # the one copy of this payload (NBL must go back now); a coalesced one is joined
            data = bytes(payload[0]) if len(payload) == 1 else b"".join(payload)
            self.kernel.copies.count(len(data), "tcp receive buffer (NBL returned)")
            self.counters.nbl_copies += 1
            seg.payload = (memoryview(data),)

    def after_segment(self, tcb: Tcb, seg: TcpSegment, rx: "RxFrame") -> None:
        """After the core and the client had the segment: hold its NBL if still referenced."""
        payload = seg.payload
        if not payload or rx.is_copy(payload[0]):
            return
        core = tcb.core
        if core is None or core.state is TcpState.CLOSED:
            return
        end = (seg.seq + seg.payload_len) & SEQ_MASK
        if ((core.rcv_nxt - core.recv_available() - end) & SEQ_MASK) < _HALF:  # end <= the read pointer
            return  # taken by the client already, or a duplicate the core ignored
        rx.hold()
        tcb.held.append((end, rx))
        self.counters.nbls_held += 1

    # ==================================================================================
    # send: segments to IP
    # ==================================================================================
    def _transmit(self, tcb: Tcb, segments: list[TcpSegment]) -> None:
        count = len(segments)
        if count == 1:  # a lone segment: nothing to batch into one LSO send
            TcpTcbSend(self, tcb, segments, 0)
            return
        path = tcb.path
        iface = path.interface
        lso_max = iface.lso_max_payload(path) if iface.lso_enabled(path.version) else 0
        i = 0
        while i < count:
            seg = segments[i]
            j = i + 1
            if lso_max and seg.payload and seg.flags == _ACK:
                core = tcb.core
                mss = core.max_payload if core is not None else 0
                total = seg.payload_len
                if total == mss:
                    next_seq = (seg.seq + total) & SEQ_MASK  # where the previous segment of the batch ends
                    while j < count and total + mss <= lso_max:
                        nxt = segments[j]
                        plen = nxt.payload_len
                        if (not plen or plen > mss or nxt.seq != next_seq
                                or nxt.ack != seg.ack or nxt.window != seg.window
                                or nxt.timestamps != seg.timestamps or nxt.sack_blocks != seg.sack_blocks
                                or nxt.flags & ~(_ACK | 0x08 | 0x01) or not nxt.flags & _ACK):
                            break
                        total += plen
                        next_seq = (nxt.seq + plen) & SEQ_MASK
                        j += 1
                        if plen < mss or nxt.flags != _ACK:
                            break
                    if j - i > 1:
                        TcpTcbSend(self, tcb, segments[i:j], mss)
                        i = j
                        continue
            TcpTcbSend(self, tcb, segments[i:i + 1], 0)
            i += 1

    def build_and_send(self, tcb: Tcb, segs: list[TcpSegment], lso_mss: int) -> None:
        path = tcb.path
        ip = self.stack.ip
        first = segs[0]
        if len(segs) > 1:
            payload_len = sum(s.payload_len for s in segs)
            flags = segs[-1].flags
        else:
            payload_len = first.payload_len
            flags = first.flags
        # No header slot or MDLs: the segment is lost here and counted; the core retransmits it.
        packet = ip.new_packet(path, IPPROTO_TCP) if self.stack.mdl_pool.reserve(MAX_PAYLOAD_MDLS) else None
        if packet is None:
            self.stack.drop("tcp", "no_memory")
            return
        buf = packet.buf
        offset = packet.l4_offset
        # The first segment's options: the core sized the payload for them (SACK included).
        end = emit_tcp_header(buf, offset, first.src_port, first.dst_port, first.seq, first.ack, flags,
                              first.window, first.mss, first.wscale, first.sack_permitted, first.sack_blocks,
                              first.timestamps)
        self.kernel.charge("tcp_tx_segment")  # one packet to IP (an LSO packet is one, however many segments)
        if not path.interface.tcp_checksum_offload(path.version):
            offload = False
            self.kernel.charge("checksum_byte", end - offset + payload_len)
            fill_tcp_checksum(buf, offset, end, [view for s in segs for view in s.payload], path.src, path.dst)
        else:
            offload = True
        packet.l4_length = end - offset
        if payload_len:
            self._attach_payload(tcb, packet, first.seq, payload_len)
        packet.payload_length = payload_len
        packet.lso_mss = lso_mss
        packet.checksum_offload = offload
        self.counters.tcp_segments_sent += len(segs)
        k = self.kernel
        if k.bus.subscribers:
            for s in segs:
                k.bus.publish(SegmentSent(host=k.name, depth=len(k.frames), conn=tcb.endpoint.address,
                                          summary=_summary(path.src, path.dst, s), length=s.payload_len))
        packet.on_failed = lambda status, tcb=tcb: self._send_failed(tcb, status)
        ip.send_packet(packet)

    def _attach_payload(self, tcb: Tcb, packet: "TxPacket", seq32: int, length: int) -> None:
        """Partial MDLs over the client's pages for stream bytes starting at `seq32`."""
        sends = tcb.sends
        starts = tcb.send_starts
        head = tcb.send_head
        ref = sends[head] if head < len(sends) else sends[-1]
        stream_off = ref.start + ((seq32 - (tcb.snd_base + ref.start)) & SEQ_MASK)
        if stream_off >= tcb.stream_end:  # behind the reference: unwrap backwards
            stream_off -= 1 << 32
        i = bisect_right(starts, stream_off, 0) - 1
        pool = self.stack.mdl_pool
        mdls = packet.payload_mdls
        requests = packet.requests
        while length > 0:
            request = sends[i]
            within = stream_off - request.start
            take = min(request.length - within, length)
            request.inflight += 1
            requests.append(request)
            left = take
            pos = within
            for src, src_off, n in request.pieces:
                if pos >= n:
                    pos -= n
                    continue
                piece = min(n - pos, left)
                target = pool.get()
                IoBuildPartialMdl(src, target, src.virtual_address + src_off + pos, piece)
                mdls.append(target)
                left -= piece
                pos = 0
                if not left:
                    break
            stream_off += take
            length -= take
            i += 1
        packet.on_complete = self._payload_sent
        packet.owner = tcb

    def _payload_sent(self, packet: "TxPacket") -> None:
        """NDIS handed the NBL back: the client's pages are no longer referenced by it."""
        tcb: Tcb = packet.owner
        for request in packet.requests:
            request.inflight -= 1
            if not request.inflight:
                self._maybe_complete_send(tcb, request)

    def _send_failed(self, tcb: Tcb, status: int) -> None:
        core = tcb.core
        if core is not None and core.state is TcpState.SYN_SENT and status == STATUS_HOST_UNREACHABLE:
            tcb.fail_status = STATUS_HOST_UNREACHABLE
            core.abort(self.kernel.now_ns)
            self._kick(tcb)

    def _send_bare(self, remote: bytes, local: bytes, seg: TcpSegment) -> None:
        """A segment with no connection behind it (RST to nowhere, listener replies)."""
        ip = self.stack.ip
        remote_ip = IPv4Address(remote) if len(remote) == 4 else IPv6Address(remote)
        path = ip.route(remote_ip, IPv4Address(local) if len(local) == 4 else IPv6Address(local))
        if path is None:
            self.stack.drop("tcp", "no_route")
            return
        if seg.flags & 0x04:
            self.counters.tcp_resets_sent += 1
        packet = ip.new_packet(path, IPPROTO_TCP)
        if packet is None:  # dropped and counted by ip
            return
        buf = packet.buf
        offset = packet.l4_offset
        end = emit_tcp_header(buf, offset, seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window,
                              seg.mss, seg.wscale, seg.sack_permitted, seg.sack_blocks, seg.timestamps)
        fill_tcp_checksum(buf, offset, end, (), path.src, path.dst)
        packet.l4_length = end - offset
        self.counters.tcp_segments_sent += 1
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(SegmentSent(host=k.name, depth=len(k.frames), conn=0,
                                      summary=_summary(path.src, path.dst, seg), length=0))
        ip.send_packet(packet)


# --- hand-off routines (what `bp tcpip!...` and `k` see) ---------------------------------

@kroutine("tcpip")
def TcpTcbReceive(layer: TcpLayer, tcb: Tcb, seg: TcpSegment, rx: "RxFrame") -> None:
    core = tcb.core
    if core is None:
        return
    layer.hold_or_copy(tcb, seg, rx)
    if seg.flags & 0x08 and seg.payload:  # PSH: remember where the pushed data ends
        tcb.push_end = (seg.seq + seg.payload_len) & SEQ_MASK
    core.on_segment(seg, layer.kernel.now_ns)
    tcb.rx_indicating = rx
    layer._kick(tcb)
    tcb.rx_indicating = None
    layer.after_segment(tcb, seg, rx)


@kroutine("tcpip")
def TcpDeliverDataToClient(layer: TcpLayer, tcb: Tcb, request: ReceiveRequest, views: list[memoryview]) -> int:
    """Copy in-order bytes into the client's posted receive MDL (the one counted copy)."""
    n = sum(len(v) for v in views)
    if n:
        copy_to_mdl(request.mdl, request.offset + request.filled, views, "tcp receive into client MDL")
    return n


@kroutine("tcpip")
def TcpTcbSend(layer: TcpLayer, tcb: Tcb, segments: list[TcpSegment], lso_mss: int) -> None:
    layer.build_and_send(tcb, segments, lso_mss)


@kroutine("tcpip")
def TcpTcbTimerFire(layer: TcpLayer, tcb: Tcb) -> None:
    core = tcb.core
    if core is None or core.state is TcpState.CLOSED:
        return
    core.on_timer(layer.kernel.now_ns)
    layer._kick(tcb)


# --- helpers ----------------------------------------------------------------------------

_OPEN = frozenset({TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})  # what tcpCurrEstab counts
_OPENING = frozenset({TcpState.SYN_SENT, TcpState.SYN_RECEIVED})


def _count_transition(counters: Any, old: TcpState, new: TcpState) -> None:
    """The RFC 1213 TCP MIB counters that `netstat -s` prints, from one state change:
    tcpAttemptFails (SYN-SENT/SYN-RCVD -> CLOSED), tcpEstabResets (ESTABLISHED/CLOSE-WAIT ->
    CLOSED) and tcpCurrEstab (connections now in ESTABLISHED or CLOSE-WAIT)."""
    if new is TcpState.CLOSED:
        if old in _OPENING:
            counters.tcp_failed_connection_attempts += 1
        elif old in _OPEN:
            counters.tcp_reset_connections += 1
    was, now = old in _OPEN, new in _OPEN
    if was != now:
        counters.tcp_current_connections += 1 if now else -1


_ACK = 0x10
_CAN_SEND = frozenset({TcpState.SYN_SENT, TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})


def _ignore_status(status: int) -> None:
    pass


def _binding(local: SockAddr, share: Share, owner: object, v6only: bool) -> Binding:
    wildcard = local.is_unspecified
    return Binding(local.ip.version, None if wildcard else local.ip.packed, local.port, share, owner,
                   dual_stack=wildcard and local.ip.version == 6 and not v6only)


def _mdl_pieces(mdl: Mdl, offset: int, length: int) -> list[tuple[Mdl, int, int]]:
    """(MDL, offset, bytes) pieces of a chain covering [offset, offset+length)."""
    pieces: list[tuple[Mdl, int, int]] = []
    m: Mdl | None = mdl
    while m is not None and length > 0:
        count = m.byte_count
        if offset >= count:
            offset -= count
        else:
            take = min(count - offset, length)
            pieces.append((m, offset, take))
            length -= take
            offset = 0
        m = m.next
    if length > 0:
        raise ValueError("range runs past the end of the MDL chain")
    return pieces


def _peek(core: TcpConnection, nbytes: int) -> list[memoryview]:
    """The first `nbytes` in-order bytes without consuming them.

    The core has no peek() yet (requested); its receive buffer's ready queue is
    read here, in this one place, without modifying it."""
    out: list[memoryview] = []
    left = nbytes
    for view in core._rcvbuf._ready:  # noqa: SLF001 - see docstring
        if left <= 0:
            break
        if len(view) <= left:
            out.append(view)
            left -= len(view)
        else:
            out.append(view[:left])
            left = 0
    return out


def _summary(src: bytes, dst: bytes, seg: TcpSegment) -> str:
    from ipaddress import ip_address
    return f"{ip_address(src)}.{seg.src_port} > {ip_address(dst)}.{seg.dst_port}: {seg.describe()}"


_ = (tcp_header_length, PacketDropped, AF_INET, AF_INET6, STATUS_NETWORK_UNREACHABLE)
