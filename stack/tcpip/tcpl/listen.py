"""TCP glue, listeners: listen, the accept hand-over, SYNs that reach a listener.

Part of the TcpLayer that stack/tcpip/tcp_glue.py assembles."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Callable
from stack.kernel import (STATUS_CANCELLED, STATUS_CONNECTION_RESET, STATUS_INSUFFICIENT_RESOURCES,
                          STATUS_INVALID_ADDRESS, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
                          STATUS_PENDING, STATUS_SUCCESS)
from stack.kernel.ex import ExAllocatePoolWithTag, ExFreePoolWithTag
from stack.kernel.pool import NonPagedPoolNx
from ..addr import SockAddr, v4_mapped
from ..sharing import Share
from ..syn_hold import drop_all, inspect_segment
from ..tcp import TcpListener, TcpSegment, TcpState
from ..transport import ACCEPT, AcceptHandler, ConnectionEndpoint, ListenEndpoint
from .common import LISTENER_SIZE, LISTENER_TAG, TCB_SIZE, TCB_TAG, Tcb, _binding

if TYPE_CHECKING:
    from ..ip import RxFrame


class ListenLayer:
    """Listen, the accept hand-over, SYNs that reach a listener."""

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
                "syns_refused_backlog_full": core.syns_refused_backlog_full,
                "resets_backlog_full": core.resets_backlog_full, "resets_sent": core.resets_sent,
                "syn_protection": core.protection_active(self.kernel.now_ns),
                "syn_protection_activations": core.protection_activations,
                "syn_cookies_sent": core.syn_cookies_sent, "syn_cookies_accepted": core.syn_cookies_accepted}

    def listener_list(self) -> list[ListenEndpoint]:
        return [lst for group in self.listeners.values() for lst in group]

    def _established_passive(self, tcb: Tcb) -> None:
        listener = tcb.listener
        assert listener is not None
        if listener.closed:
            return
        handler = listener.accept_handler
        if handler is None:
            if not listener._pending_accepts and listener._core.backlog_full_without(tcb.core):
                # The handshake completed into a full accept backlog (its SYN found room, the
                # backlog filled meanwhile): afd finds the backlog exceeded and Windows resets it.
                listener._core.resets_backlog_full += 1
                self.counters.tcp_backlog_refusals += 1
                tcb.fail_status = STATUS_CONNECTION_RESET
                tcb.endpoint.closed = True
                tcb.core.abort(self.kernel.now_ns)  # type: ignore[union-attr]
                return
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
        drops = core_listener.syns_dropped_syn_queue_full
        refusals = core_listener.syns_refused_backlog_full + core_listener.resets_backlog_full
        # The peer's family decides the MSS: an IPv4 peer of a dual-stack listener gets 1460, not 1440.
        config = self._config_for(4 if len(src) == 4 else 6, self._smallest_mtu())
        core_conn = core_listener.on_segment(seg, k.now_ns, src + dst, config)
        counters = self.counters
        counters.tcp_syn_protection_activations += core_listener.protection_activations - activations
        counters.tcp_syn_queue_drops += core_listener.syns_dropped_syn_queue_full - drops
        counters.tcp_backlog_refusals += (core_listener.syns_refused_backlog_full
                                          + core_listener.resets_backlog_full - refusals)
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
