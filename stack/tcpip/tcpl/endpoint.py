"""TCP glue, endpoints and TCBs: sockets, connect, close, the TCB's life (attach, kick, timers, core events).

Part of the TcpLayer that stack/tcpip/tcp_glue.py assembles."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import replace
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Any, Callable
from stack.kernel import (DISPATCH_LEVEL, STATUS_ADDRESS_ALREADY_EXISTS, STATUS_CANCELLED,
                          STATUS_CONNECTION_ABORTED, STATUS_CONNECTION_RESET, STATUS_INSUFFICIENT_RESOURCES,
                          STATUS_INVALID_ADDRESS, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
                          STATUS_NETWORK_UNREACHABLE, STATUS_PENDING, STATUS_SUCCESS, kroutine)
from stack.kernel.ex import ExAllocatePoolWithTag, ExFreePoolWithTag
from stack.kernel.pool import NonPagedPoolNx
from stack.kernel.symbols import Frame
from ..addr import SockAddr, any_address, v4_mapped
from ..sharing import BindTable, Share
from ..events import ClientUpcall, SegmentRetransmitted, TcpStateChanged
from ..tcp import (Closed, DataAcked, DataReceived, Established, LossProbe, OutOfOrderDropped,
                   PeerClosed, Reset, Retransmitted, StateChanged,
                   TcpConfig, TcpConnection, TcpState)
from ..tcp.seq import SEQ_MASK
from ..transport import ConnectComplete, ConnectionEndpoint, ListenEndpoint
from .common import (DYNAMIC_PORT_MIN_COUNT, DYNAMIC_PORT_MIN_START, EPHEMERAL_FIRST, EPHEMERAL_LAST, RESET_STATUS,
                     SendRequest, TCB_SIZE, TCB_TAG, Tcb, _binding, _count_transition, _ignore_status, _seq_le)

if TYPE_CHECKING:
    from ..tcp_glue import TcpLayer
    from ..ip import Path
    from ..stack import TcpipStack


class TcbLayer:
    """Sockets, connect, close, the TCB's life (attach, kick, timers, core events)."""

    def __init__(self, stack: "TcpipStack", config: TcpConfig | None = None) -> None:
        self.stack = stack
        self.kernel = stack.kernel
        self.config = config or TcpConfig()
        self.connections: dict[tuple, Tcb] = {}
        self.tcbs: dict[int, Tcb] = {}  # id(tcb) -> every TCB with a live endpoint or connection (O(1) removal)
        self.listeners: dict[tuple[int, int], list[ListenEndpoint]] = {}  # (ip version, port) -> listeners
        self.bound_ports: dict[tuple[int, int], int] = {}  # (ip version, port) -> unconnected binds
        self.binds = BindTable()  # every explicitly bound TCP address (sharing.py decides conflicts)
        self.dynamic_start = EPHEMERAL_FIRST
        self.dynamic_count = EPHEMERAL_LAST - EPHEMERAL_FIRST + 1
        self._next_ephemeral = EPHEMERAL_FIRST
        self.counters = stack.counters
        self._configs: dict[int, TcpConfig] = {}
        self._tcb_of_core: dict[int, Tcb] = {}  # id(core connection) -> TCB (listener hand-offs)
        # The transport's own random stream (from the world's seed, apart from kernel.rng so that
        # drawing from it moves no ISN): SYN cookie secret and SYN retransmission jitter.
        self._rng = random.Random(f"{getattr(self.kernel, 'seed', 0)}:{self.kernel.name}:tcp")
        self._cookie_secret = self._rng.getrandbits(128).to_bytes(16, "big")
        self._init_time_wait()  # type: ignore[attr-defined]

    def listener_offer(self, listener: ListenEndpoint, endpoint: ConnectionEndpoint) -> int:
        tcb: Tcb = endpoint._tcb
        if listener.closed or listener.accept_handler is not None or endpoint.closed or tcb.core is None \
                or tcb.reset_delivered:
            return STATUS_INVALID_DEVICE_STATE
        listener._offered.append(endpoint)
        self._serve_accepts(listener)
        return STATUS_SUCCESS

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
                self.counters.tcp_port_exhaustion_failures += 1
                return STATUS_INSUFFICIENT_RESOURCES  # ephemeral ports exhausted (WSAENOBUFS on Windows)
        key = (path.src, port, remote_ip.packed, remote.port)
        if key in self.connections or key in self.time_wait:
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

    def connection_list(self) -> list[Any]:
        """The endpoints with a TCB, then the time-wait TCBs (which answer .local/.remote/.state)."""
        return [tcb.endpoint for tcb in self.tcbs.values()] + list(self.time_wait.values())

    def set_config(self, config: TcpConfig) -> None:
        """A new configuration (`netsh int tcp set ...`): connections made from now on use it;
        the per-MSS copies made from the old one are forgotten."""
        self.config = config
        self._configs.clear()

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

    def set_dynamic_ports(self, start: int, count: int) -> int:
        """`netsh int ipv4 set dynamicport tcp start=<start> num=<count>`: the range connect() and
        a bind to port 0 take their ports from.  Ports already in use keep their connections."""
        if start < DYNAMIC_PORT_MIN_START or count < DYNAMIC_PORT_MIN_COUNT or start + count - 1 > 0xFFFF:
            return STATUS_INVALID_PARAMETER
        self.dynamic_start = start
        self.dynamic_count = count
        self._next_ephemeral = start
        return STATUS_SUCCESS

    def port_usage(self) -> dict[str, int]:
        """Gauges for `!netstat -s` and the TUI: connections in TIME_WAIT, and the dynamic ports
        taken (by a connection, a listener or a bind) and free.  Walks the tables: not per packet."""
        first, last = self.dynamic_start, self.dynamic_start + self.dynamic_count - 1
        used = {key[1] for key in self.connections if first <= key[1] <= last}
        used.update(key[1] for key in self.time_wait if first <= key[1] <= last)
        used.update(port for (_, port) in self.listeners if first <= port <= last)
        used.update(port for (_, port), n in self.bound_ports.items() if n and first <= port <= last)
        time_wait = len(self.time_wait) + sum(1 for tcb in self.connections.values()
                                              if tcb.core is not None and tcb.core.state is TcpState.TIME_WAIT)
        return {"tcp_time_wait_connections": time_wait, "tcp_dynamic_ports_in_use": len(used),
                "tcp_dynamic_ports_free": self.dynamic_count - len(used)}

    def _ephemeral_port(self, version: int, src: bytes | None = None, dst: bytes | None = None,
                        dport: int = 0) -> int | None:
        first = self.dynamic_start
        last = first + self.dynamic_count - 1
        for _ in range(self.dynamic_count):
            port = self._next_ephemeral
            if not first <= port <= last:
                port = first
            self._next_ephemeral = port + 1 if port < last else first
            if (version, port) in self.listeners or self.bound_ports.get((version, port)) or self.binds.in_use(port):
                continue
            if src is not None and ((src, port, dst, dport) in self.connections
                                    or (src, port, dst, dport) in self.time_wait):
                continue
            if src is None and (any(k[1] == port for k in self.connections)
                                or any(k[1] == port for k in self.time_wait)):
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
                if core.has_events:
                    for event in core.drain_events():
                        self._on_event(tcb, event)
                self._deliver(tcb)
                segments = core.poll_output(k.scheduler.now_ns)  # k.now_ns without the property
                if segments:
                    self._transmit(tcb, segments)
                if not tcb.dirty and not core.has_events:
                    break
        finally:
            tcb.busy = False
        if core.state is TcpState.TIME_WAIT and tcb.endpoint.closed and tcb.core is core \
                and self._enter_time_wait_tcb(tcb):  # type: ignore[attr-defined]
            return  # the full TCB is freed; a time-wait TCB holds the 4-tuple for 2*MSL
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
        """Hand one event of the TCP core to its handler (_EVENT_HANDLERS, by the event's type)."""
        handler = _EVENT_HANDLERS.get(event.__class__)
        if handler is not None:
            handler(self, tcb, event)

    def _on_data_acked(self, tcb: Tcb, event: DataAcked) -> None:
        request: SendRequest = event.token  # type: ignore[assignment]
        request.acked = True
        self._maybe_complete_send(tcb, request)

    def _on_data_received(self, tcb: Tcb, event: DataReceived) -> None:
        if event.push:
            tcb.last_push = True

    def _on_peer_closed(self, tcb: Tcb, event: PeerClosed) -> None:
        pass  # the FIN is delivered with the data (_deliver); nothing to do at the event

    def _on_retransmitted(self, tcb: Tcb, event: Retransmitted) -> None:
        counters = self.counters
        counters.tcp_segments_retransmitted += 1
        reason = event.reason
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(SegmentRetransmitted(host=k.name, depth=len(k.frames), conn=tcb.endpoint.address,
                                               tcp_seq=event.seq, length=event.length, reason=reason))
        if reason == "rto":
            counters.tcp_timeout_retransmissions += 1
        elif reason == "rack":
            counters.tcp_rack_retransmissions += 1

    def _on_loss_probe(self, tcb: Tcb, event: LossProbe) -> None:
        if event.recovered:
            self.counters.tcp_tlp_recoveries += 1
        else:
            self.counters.tcp_tlp_probes += 1

    def _on_ooo_dropped(self, tcb: Tcb, event: OutOfOrderDropped) -> None:
        # counted under !netstat -s's drops (tcp/ooo_queue_full) and told to the bus as ip.drop
        self.stack.drop("tcp", "ooo_queue_full", f"seq {event.seq} len {event.length}")

    def _on_state_changed(self, tcb: Tcb, event: StateChanged) -> None:
        endpoint = tcb.endpoint
        k = self.kernel
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

    def _on_established(self, tcb: Tcb, event: Established) -> None:
        if tcb.connect_completion is not None:
            done, tcb.connect_completion = tcb.connect_completion, None
            self._upcall(tcb.endpoint, "connect-complete", STATUS_SUCCESS)
            done(tcb.endpoint, STATUS_SUCCESS)
        elif tcb.listener is not None:
            self._established_passive(tcb)

    def _on_reset(self, tcb: Tcb, event: Reset) -> None:
        endpoint = tcb.endpoint
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

    def _on_closed_event(self, tcb: Tcb, event: Closed) -> None:
        self._on_closed(tcb)

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

    def _upcall(self, endpoint: Any, what: str, status: int = 0, nbytes: int = 0) -> None:
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(ClientUpcall(host=k.name, depth=len(k.frames), endpoint=endpoint.address, what=what,
                                       status=status, nbytes=nbytes))


# The TCP core's events and what the TCB layer does with each (a table, not a ladder of isinstance).
_EVENT_HANDLERS: dict[type, Callable[[TcbLayer, Tcb, Any], None]] = {
    DataAcked: TcbLayer._on_data_acked,
    DataReceived: TcbLayer._on_data_received,
    PeerClosed: TcbLayer._on_peer_closed,
    Retransmitted: TcbLayer._on_retransmitted,
    LossProbe: TcbLayer._on_loss_probe,
    OutOfOrderDropped: TcbLayer._on_ooo_dropped,
    StateChanged: TcbLayer._on_state_changed,
    Established: TcbLayer._on_established,
    Reset: TcbLayer._on_reset,
    Closed: TcbLayer._on_closed_event,
}


@kroutine("tcpip")
def TcpTcbTimerFire(layer: TcpLayer, tcb: Tcb) -> None:
    core = tcb.core
    if core is None or core.state is TcpState.CLOSED:
        return
    core.on_timer(layer.kernel.now_ns)
    layer._kick(tcb)
