"""UDP endpoints: bind, zero-copy send_to, receive by upcall or posted buffer, ICMP errors."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Callable

from stack.kernel import (STATUS_ADDRESS_ALREADY_EXISTS, STATUS_BUFFER_OVERFLOW, STATUS_CANCELLED,
                          STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_ADDRESS, STATUS_INVALID_DEVICE_STATE,
                          STATUS_INVALID_PARAMETER,
                          STATUS_NETWORK_UNREACHABLE, STATUS_PENDING, STATUS_SUCCESS, kroutine)
from stack.kernel.ex import ExAllocatePoolWithTag, ExFreePoolWithTag
from stack.kernel.mdl import IoBuildPartialMdl, Mdl, copy_to_mdl
from stack.kernel.memory import NO_PHYSICAL_ADDRESS
from stack.kernel.pool import NonPagedPoolNx

from .addr import SockAddr, unmap, v4_mapped
from .ip import SLOT_SIZE, Interface, RxFrame, TxPacket
from .sharing import Binding, BindTable, Share
from .transport import DatagramEndpoint, DatagramErrorHandler, DatagramHandler, RequestComplete
from .wire import UDP_HEADER_LEN, WireError, emit_udp, parse_udp
from .wire.ipv4 import IPPROTO_UDP

if TYPE_CHECKING:
    from .stack import TcpipStack

UDP_TAG = "UdpA"
EPHEMERAL_FIRST = 49152
EPHEMERAL_LAST = 65535
QUEUE_LIMIT = 64  # datagrams kept for an endpoint that has neither a handler nor a posted receive
MAX_UDP_PAYLOAD_V4 = 65535 - 20 - UDP_HEADER_LEN  # 65507
MAX_UDP_PAYLOAD_V6 = 65535 - UDP_HEADER_LEN  # 65527 (the payload length field counts no fixed header)


@dataclass(slots=True)
class PostedReceive:
    mdl: Mdl
    offset: int
    length: int
    completion: Callable[[int, int, SockAddr | None], None]


class UdpLayer:
    def __init__(self, stack: "TcpipStack") -> None:
        self.stack = stack
        self.kernel = stack.kernel
        self.counters = stack.counters
        self.endpoints: dict[tuple[int, int], list[DatagramEndpoint]] = {}
        self.binds = BindTable()  # sharing.py decides what a second bind to a port gets
        self._next_port = EPHEMERAL_FIRST

    # -- client calls ------------------------------------------------------------------------
    def open(self, local: SockAddr, receive: DatagramHandler | None, error: DatagramErrorHandler | None,
             v6only: bool, share: Share = Share.DEFAULT,
             owner: object = "System") -> tuple[int, DatagramEndpoint | None]:
        if not local.is_unspecified and not self.stack.is_local_address(local.ip):
            return STATUS_INVALID_ADDRESS, None
        version = local.ip.version
        port = local.port or self._ephemeral(version)
        if port is None:
            return STATUS_INSUFFICIENT_RESOURCES, None  # ephemeral ports exhausted (WSAENOBUFS on Windows)
        wildcard = local.is_unspecified
        binding = Binding(version, None if wildcard else local.ip.packed, port, share, owner,
                          dual_stack=wildcard and version == 6 and not v6only)
        status = self.binds.bind(binding)
        if status != STATUS_SUCCESS:
            return status, None
        endpoint = DatagramEndpoint(self.stack, local.with_port(port), receive, error, v6only)
        endpoint.binding = binding
        endpoint.address = ExAllocatePoolWithTag(NonPagedPoolNx, 0x100, UDP_TAG)
        self.kernel.addr_objects[endpoint.address] = endpoint
        self.endpoints.setdefault((version, port), []).append(endpoint)
        return STATUS_SUCCESS, endpoint

    def _ephemeral(self, version: int) -> int | None:
        for _ in range(EPHEMERAL_LAST - EPHEMERAL_FIRST + 1):
            port = self._next_port
            self._next_port = port + 1 if port < EPHEMERAL_LAST else EPHEMERAL_FIRST
            if (version, port) not in self.endpoints and not self.binds.in_use(port):
                return port
        return None

    def close(self, endpoint: DatagramEndpoint) -> None:
        if endpoint.closed:
            return
        endpoint.closed = True
        self.binds.release(getattr(endpoint, "binding", None))
        key = (endpoint.local.ip.version, endpoint.local.port)
        group = self.endpoints.get(key, [])
        if endpoint in group:
            group.remove(endpoint)
        if not group:
            self.endpoints.pop(key, None)
        posted, endpoint._posted = endpoint._posted, []
        for req in posted:
            req.completion(STATUS_CANCELLED, 0, None)
        endpoint._queue.clear()
        self.kernel.addr_objects.pop(endpoint.address, None)
        ExFreePoolWithTag(endpoint.address, UDP_TAG)

    def endpoint_list(self) -> list[DatagramEndpoint]:
        return [ep for group in self.endpoints.values() for ep in group]

    def send_to(self, endpoint: DatagramEndpoint, remote: SockAddr,
                data: tuple[Mdl, int, int] | bytes | memoryview, completion: RequestComplete | None) -> int:
        if endpoint.closed:
            return STATUS_INVALID_DEVICE_STATE
        remote_ip = unmap(remote.ip)
        local = endpoint.local
        if remote.port == 0:
            return STATUS_INVALID_ADDRESS
        if local.ip.version != remote_ip.version and not (local.ip.version == 6 and not endpoint.v6only):
            return STATUS_INVALID_PARAMETER
        source = None if local.is_unspecified or local.ip.version != remote_ip.version else local.ip
        path = self.stack.ip.route(remote_ip, source)
        if path is None:
            return STATUS_NETWORK_UNREACHABLE
        length = data[2] if isinstance(data, tuple) else len(data)
        # What one IP datagram can carry (IP fragments anything bigger than the link's MTU).
        if length > (MAX_UDP_PAYLOAD_V4 if path.version == 4 else MAX_UDP_PAYLOAD_V6) or length < 0:
            return STATUS_INVALID_PARAMETER  # WSAEMSGSIZE
        self.kernel.charge("tcp_tx_segment")
        packet = self.stack.ip.new_packet(path, IPPROTO_UDP)
        if packet is None:
            return STATUS_INSUFFICIENT_RESOURCES
        start = packet.l4_offset
        payload_start = start + UDP_HEADER_LEN
        if not isinstance(data, tuple):  # a Python buffer: the one counted copy into the packet
            if payload_start + length <= SLOT_SIZE:
                packet.buf[payload_start:payload_start + length] = data
                views = [packet.buf[payload_start:payload_start + length]]
                packet.l4_length = UDP_HEADER_LEN + length
            else:  # too big for the header slot: into a pool buffer chained behind it
                pooled = self.stack.ip.allocate_payload(packet, length)
                if pooled is None:
                    self.stack.release_packet(packet)
                    return STATUS_INSUFFICIENT_RESOURCES
                source = memoryview(data).cast("B")
                at = 0
                for view in pooled:
                    view[:] = source[at:at + len(view)]
                    at += len(view)
                views = pooled
                packet.l4_length = UDP_HEADER_LEN
            self.kernel.copies.count(length, "udp send from buffer")
            emit_udp(packet.buf, start, src_port=local.port, dst_port=remote.port, payload=views,
                     src=path.src, dst=path.dst)
        else:
            mdl, offset, _ = data
            views = _chain_views(mdl, offset, length)
            emit_udp(packet.buf, start, src_port=local.port, dst_port=remote.port, payload=views,
                     src=path.src, dst=path.dst)
            packet.l4_length = UDP_HEADER_LEN
            packet.payload_length = length
            _partial_mdls(self.stack, packet, mdl, offset, length)
        endpoint.datagrams_sent += 1
        self.counters.udp_sent += 1
        if completion is not None:
            packet.on_complete = lambda p, n=length: completion(STATUS_SUCCESS, n)
            packet.on_failed = lambda status: completion(status, 0)
        UdpSendMessages(self.stack, packet)
        return STATUS_PENDING if completion is not None else STATUS_SUCCESS

    def receive_from(self, endpoint: DatagramEndpoint, mdl: Mdl, offset: int, length: int,
                     completion: Callable[[int, int, SockAddr | None], None]) -> int:
        if endpoint.closed:
            return STATUS_INVALID_DEVICE_STATE
        if length <= 0:
            return STATUS_INVALID_PARAMETER
        if endpoint._queue:
            remote, data = endpoint._queue.pop(0)
            n = min(len(data), length)
            copy_to_mdl(mdl, offset, memoryview(data)[:n], "udp receive into client MDL")
            completion(STATUS_SUCCESS if n == len(data) else STATUS_BUFFER_OVERFLOW, n, remote)
            return STATUS_PENDING
        endpoint._posted.append(PostedReceive(mdl, offset, length, completion))
        return STATUS_PENDING

    # -- receive -----------------------------------------------------------------------------
    def receive(self, rx: RxFrame, iface: Interface, src: bytes, dst: bytes, data: memoryview,
                datagram: memoryview) -> None:
        stack = self.stack
        self.kernel.charge("tcp_rx_segment")  # IP + transport receive work, as for a TCP segment
        try:
            header, payload = parse_udp(data, src, dst, verify_checksum=not rx.l4_checksum_ok)
        except WireError as err:
            stack.drop(err.layer, err.reason, err.detail)
            return
        self.counters.udp_received += 1
        endpoint = self._find(src, dst, header.dst_port)
        if endpoint is None:
            stack.drop("udp", "no_endpoint")
            multicast = dst[0] == 0xFF if len(dst) == 16 else dst == b"\xff\xff\xff\xff"
            if not multicast:
                stack.icmp.send_port_unreachable(iface, src, datagram)
            return
        UdpDeliverDatagram(self, endpoint, src, header.src_port, payload, rx.l4_pa + UDP_HEADER_LEN)

    def deliver(self, endpoint: DatagramEndpoint, src: bytes, port: int, payload: memoryview,
                pa: int = NO_PHYSICAL_ADDRESS) -> None:
        """One datagram for `endpoint`; `pa` is the physical address of its payload (negative: a copy)."""
        remote_ip = IPv4Address(src) if len(src) == 4 else IPv6Address(src)
        if endpoint.local.ip.version == 6 and remote_ip.version == 4:
            remote_ip = v4_mapped(remote_ip)  # type: ignore[assignment]
        remote = SockAddr(remote_ip, port)
        n = len(payload)
        endpoint.datagrams_received += 1
        if endpoint._posted:
            req = endpoint._posted.pop(0)
            take = min(n, req.length)
            copy_to_mdl(req.mdl, req.offset, payload[:take], "udp receive into client MDL")
            req.completion(STATUS_SUCCESS if take == n else STATUS_BUFFER_OVERFLOW, take, remote)
        elif endpoint.receive_handler is not None:
            endpoint.receive_handler(endpoint, remote, [(pa, payload)], n)
        elif len(endpoint._queue) < QUEUE_LIMIT:
            endpoint._queue.append((remote, bytes(payload)))
            self.kernel.copies.count(n, "udp receive queue")
        else:
            endpoint.datagrams_dropped += 1
            self.stack.drop("udp", "queue_full")

    def _find(self, src: bytes, dst: bytes, port: int) -> DatagramEndpoint | None:
        version = 4 if len(dst) == 4 else 6
        wildcard = None
        for ep in self.endpoints.get((version, port), ()):
            if ep.local.ip.packed == dst:
                return ep
            if ep.local.is_unspecified:
                wildcard = ep
        if wildcard is None and version == 4:
            for ep in self.endpoints.get((6, port), ()):
                if ep.local.is_unspecified and not ep.v6only:
                    return ep
        return wildcard

    def icmp_error(self, local_ip: bytes, local_port: int, remote_ip: bytes, remote_port: int, status: int) -> None:
        """An ICMP error quoted a datagram we sent from local_ip:local_port."""
        endpoint = self._find(remote_ip, local_ip, local_port)
        if endpoint is None or endpoint.error_handler is None:
            return
        address = IPv4Address(remote_ip) if len(remote_ip) == 4 else IPv6Address(remote_ip)
        endpoint.error_handler(endpoint, SockAddr(address, remote_port), status)


def _chain_views(mdl: Mdl, offset: int, length: int) -> list[memoryview]:
    from stack.kernel.mdl import mdl_chain_views
    return mdl_chain_views(mdl, offset, length)


def _partial_mdls(stack: "TcpipStack", packet: TxPacket, mdl: Mdl, offset: int, length: int) -> None:
    m: Mdl | None = mdl
    pool = stack.mdl_pool
    while m is not None and length > 0:
        if offset >= m.byte_count:
            offset -= m.byte_count
        else:
            take = min(m.byte_count - offset, length)
            target = pool.get()
            IoBuildPartialMdl(m, target, m.virtual_address + offset, take)
            packet.payload_mdls.append(target)
            length -= take
            offset = 0
        m = m.next


@kroutine("tcpip")
def UdpSendMessages(stack: "TcpipStack", packet: TxPacket) -> None:
    stack.ip.send_packet(packet)


@kroutine("tcpip")
def UdpDeliverDatagram(layer: UdpLayer, endpoint: DatagramEndpoint, src: bytes, port: int,
                       payload: memoryview, pa: int = NO_PHYSICAL_ADDRESS) -> None:
    layer.deliver(endpoint, src, port, payload, pa)


_ = deque
