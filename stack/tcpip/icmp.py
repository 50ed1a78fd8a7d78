"""ICMP and ICMPv6: echo (both directions, with a ping API), unreachables, Neighbor Discovery messages."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING, Any, Callable

from stack.kernel import STATUS_PORT_UNREACHABLE, kroutine

from .addr import IpAddress
from .ip import ETH_HEADER, SLOT_SIZE, Interface, Path, RxFrame, TxPacket
from .transport import PingSession
from .wire import (ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PORT_UNREACHABLE,
                   ICMPV6_DEST_UNREACHABLE, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_NEIGHBOR_ADVERTISEMENT,
                   ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_PORT_UNREACHABLE, WireError, emit_icmp, emit_icmpv6,
                   multicast_mac_v6, parse_icmp, parse_icmp_quote, parse_icmpv6, parse_neighbor_message,
                   solicited_node_multicast)
from .wire.icmp import ICMP_PROTOCOL_UNREACHABLE, ICMP_TIME_EXCEEDED, icmp_quote_length
from .wire.icmpv6 import ICMPV6_TIME_EXCEEDED, NA_FLAG_OVERRIDE, NA_FLAG_SOLICITED, ND_HOP_LIMIT
from .wire.ipv4 import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_UDP, Ipv4Header
from .wire.ipv6 import Ipv6Header

if TYPE_CHECKING:
    from .stack import TcpipStack

MAX_ICMP_BODY = SLOT_SIZE - ETH_HEADER - 40 - 8  # echo data up to this fits in the header slot
MAX_ECHO_DATA = 65500  # ping.exe's limit; bigger echo data goes in a pool buffer and is fragmented
IPV6_MIN_MTU = 1280
ICMP_FRAGMENT_REASSEMBLY_TIME_EXCEEDED = 1  # code of Time Exceeded (ICMP type 11, ICMPv6 type 3)
_PING_ALPHABET = bytes(range(0x61, 0x61 + 23))  # "abcdefghijklmnopqrstuvw", ping.exe's data


def ping_data(size: int) -> bytes:
    """ping.exe's echo data: the alphabet a..w over and over."""
    return (_PING_ALPHABET * (size // 23 + 1))[:size]


class IcmpLayer:
    def __init__(self, stack: "TcpipStack") -> None:
        self.stack = stack
        self.kernel = stack.kernel
        self.counters = stack.counters
        self.sessions: dict[int, PingSession] = {}
        self._sent_at: dict[tuple[int, int], int] = {}
        self._next_identifier = 0x100 + self.kernel.rng.randrange(0x1000)

    # ==================================================================================
    # receive
    # ==================================================================================
    def receive_v4(self, rx: RxFrame, iface: Interface, header: Ipv4Header, data: memoryview,
                   datagram: memoryview) -> None:
        stack = self.stack
        try:
            icmp, body = parse_icmp(data)
        except WireError as err:
            stack.drop(err.layer, err.reason, err.detail)
            return
        self.counters.icmp_received += 1
        kind = icmp.icmp_type
        if kind == ICMP_ECHO_REQUEST:
            if header.dst != iface.v4 and not iface.is_loopback:
                return  # no replies to broadcast pings
            self._echo_reply(iface, IPv4Address(header.src), icmp.rest_of_header, body)
        elif kind == ICMP_ECHO_REPLY:
            self._echo_answered(icmp.identifier, icmp.sequence, body)
        elif kind == ICMP_TIME_EXCEEDED:
            pass  # counted above; a reassembly (or TTL) timeout of something we sent
        elif kind == ICMP_DEST_UNREACHABLE:
            try:
                quote = parse_icmp_quote(body)
            except WireError as err:
                stack.drop("icmp", err.reason, "quoted datagram")
                return
            if quote.ip.protocol == IPPROTO_UDP and quote.src_port is not None and icmp.code == ICMP_PORT_UNREACHABLE:
                stack.udp.icmp_error(quote.ip.src, quote.src_port, quote.ip.dst, quote.dst_port or 0,
                                     STATUS_PORT_UNREACHABLE)
            elif quote.ip.protocol == IPPROTO_ICMP and len(quote.transport) >= 8:
                ident, seq = struct.unpack_from("!HH", quote.transport, 4)
                self._echo_unreachable(ident, seq)
        else:
            stack.drop("icmp", "unsupported_type")

    def receive_v6(self, rx: RxFrame, iface: Interface, header: Ipv6Header, data: memoryview,
                   packet: memoryview) -> None:
        stack = self.stack
        try:
            icmp, body = parse_icmpv6(data, header.src, header.dst)
        except WireError as err:
            stack.drop(err.layer, err.reason, err.detail)
            return
        self.counters.icmp_received += 1
        kind = icmp.icmp_type
        if kind == ICMPV6_NEIGHBOR_SOLICITATION or kind == ICMPV6_NEIGHBOR_ADVERTISEMENT:
            if header.hop_limit != ND_HOP_LIMIT:
                stack.drop("icmpv6", "bad_hop_limit")
                return
            try:
                message = parse_neighbor_message(icmp, body)
            except WireError as err:
                stack.drop(err.layer, err.reason, err.detail)
                return
            self.counters.nd_received += 1
            stack.ip.neighbor_message(iface, kind, header.src, message)
        elif kind == ICMPV6_ECHO_REQUEST:
            if header.dst != iface.v6 and not iface.is_loopback:
                return
            self._echo_reply(iface, IPv6Address(header.src), icmp.rest_of_header, body)
        elif kind == ICMPV6_ECHO_REPLY:
            self._echo_answered(icmp.identifier, icmp.sequence, body)
        elif kind == ICMPV6_TIME_EXCEEDED:
            pass  # counted above
        elif kind == ICMPV6_DEST_UNREACHABLE:
            if len(body) < 48:
                stack.drop("icmpv6", "truncated", "quoted packet")
                return
            # The quoted packet: its fixed header (extension headers are not followed here).
            quoted_src, quoted_dst, proto = bytes(body[8:24]), bytes(body[24:40]), body[6]
            transport = body[40:]
            if proto == IPPROTO_UDP and icmp.code == ICMPV6_PORT_UNREACHABLE:
                sport, dport = struct.unpack_from("!HH", transport, 0)
                stack.udp.icmp_error(quoted_src, sport, quoted_dst, dport, STATUS_PORT_UNREACHABLE)
            elif proto == IPPROTO_ICMPV6 and len(transport) >= 8:
                ident, seq = struct.unpack_from("!HH", transport, 4)
                self._echo_unreachable(ident, seq)
        else:
            stack.drop("icmpv6", "unsupported_type")

    # ==================================================================================
    # send
    # ==================================================================================
    def _packet(self, path: Path) -> TxPacket | None:
        return self.stack.ip.new_packet(path, IPPROTO_ICMP if path.version == 4 else IPPROTO_ICMPV6)

    def _finish(self, packet: TxPacket, icmp_type: int, code: int, rest: int, body_len: int,
                pooled: list[memoryview] | None = None) -> None:
        """Write the ICMP header over a body in the slot (or, `pooled`, in a pool buffer)."""
        path = packet.path
        start = packet.l4_offset
        body: Any = pooled if pooled is not None else packet.buf[start + 8:start + 8 + body_len]
        if path.version == 4:
            emit_icmp(packet.buf, start, icmp_type=icmp_type, code=code, rest_of_header=rest, payload=body)
        else:
            emit_icmpv6(packet.buf, start, src=path.src, dst=path.dst, icmp_type=icmp_type, code=code,
                        rest_of_header=rest, payload=body)
        packet.l4_length = 8 if pooled is not None else 8 + body_len
        self.counters.icmp_sent += 1

    def _body(self, packet: TxPacket, data: bytes | memoryview) -> list[memoryview] | None:
        """Echo data into the packet: in the slot when it fits (returns None), else in a pool
        buffer (returns its views); the caller counts a copy.  Raises MemoryError without pool."""
        size = len(data)
        if size <= MAX_ICMP_BODY:
            start = packet.l4_offset + 8
            packet.buf[start:start + size] = data
            return None
        views = self.stack.ip.allocate_payload(packet, size)
        if views is None:
            raise MemoryError
        at = 0
        for view in views:
            view[:] = data[at:at + len(view)]
            at += len(view)
        return views

    def _echo_reply(self, iface: Interface, src: IpAddress, rest: int, body: memoryview) -> None:
        path = self.stack.ip.route(src, None)
        if path is None:  # (any size that arrived fits going back: the reply is as long as the request)
            self.stack.drop("icmp" if src.version == 4 else "icmpv6", "no_route")
            return
        packet = self._packet(path)
        if packet is None:  # no header slot: dropped and counted
            return
        try:
            pooled = self._body(packet, body)  # the echo data comes back: one counted copy
        except MemoryError:
            self.stack.release_packet(packet)
            self.stack.drop("icmp" if src.version == 4 else "icmpv6", "no_memory")
            return
        self.kernel.copies.count(len(body), "icmp echo reply")
        self._finish(packet, ICMP_ECHO_REPLY if src.version == 4 else ICMPV6_ECHO_REPLY, 0, rest, len(body), pooled)
        self.counters.echo_replies_sent += 1
        IcmpSendEcho(self.stack, packet)

    def send_reassembly_time_exceeded(self, version: int, first_fragment: memoryview) -> None:
        """A datagram whose first fragment arrived was not complete in time: tell its source,
        quoting that fragment (RFC 792: IP header + 8 bytes; RFC 8200: as much as fits 1280)."""
        if version == 4:
            src = bytes(first_fragment[12:16])
            path = self.stack.ip.route(IPv4Address(src), None)
            n = icmp_quote_length(first_fragment)
            kind = ICMP_TIME_EXCEEDED
        else:
            src = bytes(first_fragment[8:24])
            path = self.stack.ip.route(IPv6Address(src), None)
            n = min(len(first_fragment), IPV6_MIN_MTU - 40 - 8, MAX_ICMP_BODY)
            kind = ICMPV6_TIME_EXCEEDED
        if path is None:
            return
        packet = self._packet(path)
        if packet is None:  # no header slot: dropped and counted
            return
        start = packet.l4_offset + 8
        packet.buf[start:start + n] = first_fragment[:n]
        self._finish(packet, kind, ICMP_FRAGMENT_REASSEMBLY_TIME_EXCEEDED, 0, n)
        self.counters.time_exceeded_sent += 1
        self.stack.ip.send_packet(packet)

    def send_port_unreachable(self, iface: Interface, src: bytes, datagram: memoryview) -> None:
        """The datagram (whole IP packet, header first) went to a port nobody listens on."""
        if len(src) == 4:
            self._unreachable_v4(ICMP_PORT_UNREACHABLE, src, datagram)
        else:
            self._unreachable_v6(ICMPV6_PORT_UNREACHABLE, src, datagram)

    def send_protocol_unreachable(self, iface: Interface, header: Ipv4Header, datagram: memoryview) -> None:
        self._unreachable_v4(ICMP_PROTOCOL_UNREACHABLE, header.src, datagram)

    def _unreachable_v4(self, code: int, src: bytes, datagram: memoryview) -> None:
        path = self.stack.ip.route(IPv4Address(src), None)
        if path is None:
            return
        packet = self._packet(path)
        if packet is None:  # no header slot: dropped and counted
            return
        n = icmp_quote_length(datagram)
        start = packet.l4_offset + 8
        packet.buf[start:start + n] = datagram[:n]
        self._finish(packet, ICMP_DEST_UNREACHABLE, code, 0, n)
        self.counters.unreachables_sent += 1
        self.stack.ip.send_packet(packet)

    def _unreachable_v6(self, code: int, src: bytes, packet_bytes: memoryview) -> None:
        path = self.stack.ip.route(IPv6Address(src), None)
        if path is None:
            return
        packet = self._packet(path)
        if packet is None:  # no header slot: dropped and counted
            return
        n = min(len(packet_bytes), IPV6_MIN_MTU - 40 - 8, MAX_ICMP_BODY)
        start = packet.l4_offset + 8
        packet.buf[start:start + n] = packet_bytes[:n]
        self._finish(packet, ICMPV6_DEST_UNREACHABLE, code, 0, n)
        self.counters.unreachables_sent += 1
        self.stack.ip.send_packet(packet)

    # -- Neighbor Discovery ------------------------------------------------------------------
    def send_neighbor_solicitation(self, iface: Interface, target: bytes, unicast_mac: bytes | None) -> None:
        if iface.ipv6 is None:
            return
        dst = target if unicast_mac is not None else solicited_node_multicast(target)
        path = Path(iface, 6, iface.v6, dst, dst, iface.ipv6.ip, IPv6Address(dst))
        packet = self._packet(path)
        if packet is None:  # no header slot: dropped and counted
            return
        start = packet.l4_offset + 8
        packet.buf[start:start + 16] = target
        packet.buf[start + 16:start + 24] = b"\x01\x01" + iface.mac  # source link-layer address option
        self._finish(packet, ICMPV6_NEIGHBOR_SOLICITATION, 0, 0, 24)
        self.counters.nd_solicitations_sent += 1
        self._send_nd(packet, unicast_mac or multicast_mac_v6(dst))

    def send_neighbor_advertisement(self, iface: Interface, to: bytes, to_mac: bytes | None) -> None:
        if iface.ipv6 is None:
            return
        dst = to if to != bytes(16) else bytes.fromhex("ff020000000000000000000000000001")
        path = Path(iface, 6, iface.v6, dst, dst, iface.ipv6.ip, IPv6Address(dst))
        packet = self._packet(path)
        if packet is None:  # no header slot: dropped and counted
            return
        start = packet.l4_offset + 8
        packet.buf[start:start + 16] = iface.v6
        packet.buf[start + 16:start + 24] = b"\x02\x01" + iface.mac  # target link-layer address option
        flags = NA_FLAG_OVERRIDE | (NA_FLAG_SOLICITED if to != bytes(16) else 0)
        self._finish(packet, ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, flags, 24)
        self.counters.nd_advertisements_sent += 1
        if dst[0] == 0xFF:
            self._send_nd(packet, multicast_mac_v6(dst))
        elif to_mac is not None:
            self._send_nd(packet, to_mac)
        else:
            self.stack.ip.send_packet(packet)

    def _send_nd(self, packet: TxPacket, dst_mac: bytes) -> None:
        """ND messages carry hop limit 255 and never wait for resolution themselves."""
        ip = self.stack.ip
        from .wire import ETHERTYPE_IPV6, emit_ipv6
        path = packet.path
        emit_ipv6(packet.buf, ETH_HEADER, src=path.src, dst=path.dst, next_header=IPPROTO_ICMPV6,
                  payload_length=packet.l4_length, hop_limit=ND_HOP_LIMIT)
        self.counters.ipv6_sent += 1
        ip.frame_out(packet, dst_mac, ETHERTYPE_IPV6)

    # ==================================================================================
    # ping
    # ==================================================================================
    def ping(self, destination: IpAddress | str, count: int, payload_size: int, interval_ns: int,
             timeout_ns: int, completion: Callable[[PingSession], None] | None) -> PingSession:
        dest = ip_address(destination) if isinstance(destination, str) else destination
        identifier = self._next_identifier & 0xFFFF
        self._next_identifier += 1
        session = PingSession(dest, count, max(0, min(payload_size, MAX_ECHO_DATA)), identifier,
                              completion=completion)
        self.sessions[identifier] = session
        for seq in range(count):
            self.kernel.call_later(seq * interval_ns, self._ping_send, session, seq, timeout_ns, label="ping")
        if count == 0:
            self._ping_done(session)
        return session

    def _ping_send(self, session: PingSession, seq: int, timeout_ns: int) -> None:
        session.rtts_ns.append(None)
        session.sent += 1
        path = self.stack.ip.route(session.destination, None)
        if path is None:
            session.unreachable += 1
            self._ping_settle(session)
            return
        packet = self._packet(path)
        if packet is None:  # no header slot: dropped and counted
            return
        size = session.payload_size
        try:
            pooled = self._body(packet, ping_data(size))  # written in place, not a copy of anything
        except MemoryError:
            self.stack.release_packet(packet)
            session.unreachable += 1
            self._ping_settle(session)
            return
        self._finish(packet, ICMP_ECHO_REQUEST if path.version == 4 else ICMPV6_ECHO_REQUEST, 0,
                     (session.identifier << 16) | seq, size, pooled)
        self._sent_at[(session.identifier, seq)] = self.kernel.now_ns
        packet.on_failed = lambda status, s=session, q=seq: self._echo_unreachable(s.identifier, q)
        self.kernel.call_later(timeout_ns, self._ping_timeout, session, seq, label="ping timeout")
        IcmpSendEcho(self.stack, packet)

    def _echo_answered(self, identifier: int, seq: int, data: memoryview) -> None:
        session = self.sessions.get(identifier)
        if session is not None and (identifier, seq) in self._sent_at and data != ping_data(session.payload_size):
            self.stack.drop("icmp", "echo_data_mismatch")  # not our data back: not a reply (ping.exe agrees)
            return
        sent = self._sent_at.pop((identifier, seq), None)
        if sent is None or session is None or seq >= len(session.rtts_ns):
            return
        session.rtts_ns[seq] = self.kernel.now_ns - sent
        session.received += 1
        self._ping_settle(session)

    def _echo_unreachable(self, identifier: int, seq: int) -> None:
        if self._sent_at.pop((identifier, seq), None) is None:
            return
        session = self.sessions.get(identifier)
        if session is not None:
            session.unreachable += 1
            self._ping_settle(session)

    def _ping_timeout(self, session: PingSession, seq: int) -> None:
        if self._sent_at.pop((session.identifier, seq), None) is not None:
            self._ping_settle(session)

    def _ping_settle(self, session: PingSession) -> None:
        outstanding = any(key[0] == session.identifier for key in self._sent_at)
        if session.sent == session.count and not outstanding:
            self._ping_done(session)

    def _ping_done(self, session: PingSession) -> None:
        if session.done:
            return
        session.done = True
        self.sessions.pop(session.identifier, None)
        if session.completion is not None:
            session.completion(session)


@kroutine("tcpip")
def IcmpSendEcho(stack: "TcpipStack", packet: TxPacket) -> None:
    stack.ip.send_packet(packet)


_ = IPV6_MIN_MTU
