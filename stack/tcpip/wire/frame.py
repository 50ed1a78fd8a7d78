"""Whole-frame decoding: ``parse_frame`` dispatches Ethernet to ARP/IPv4/IPv6 to
ICMP/ICMPv6/UDP/TCP; ``summarize_frame`` prints a tcpdump-like line and never raises."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from .arp import ARP_REPLY, ARP_REQUEST, ArpPacket, parse_arp
from stack.wire.checksum import BytesLike, pseudo_header_sum, transport_checksum_ok
from .errors import WireError
from .ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetHeader, format_mac, parse_ethernet
from .icmp import (
    ICMP_DEST_UNREACHABLE,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_FRAGMENTATION_NEEDED,
    ICMP_HOST_UNREACHABLE,
    ICMP_NET_UNREACHABLE,
    ICMP_PORT_UNREACHABLE,
    ICMP_PROTOCOL_UNREACHABLE,
    ICMP_TIME_EXCEEDED,
    IcmpHeader,
    parse_icmp,
    parse_icmp_quote,
)
from .icmpv6 import (
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_NEIGHBOR_ADVERTISEMENT,
    ICMPV6_NEIGHBOR_SOLICITATION,
    ICMPV6_PORT_UNREACHABLE,
    Icmpv6Header,
    NeighborAdvertisement,
    NeighborSolicitation,
    parse_icmpv6,
    parse_neighbor_message,
)
from .ipv4 import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Header, ipv4_header_checksum_ok, parse_ipv4
from .ipv6 import Ipv6Header, parse_ipv6
from .tcp import TcpHeader, TcpOptions, format_flags, parse_tcp
from .udp import UdpHeader, parse_udp

NetworkHeader = ArpPacket | Ipv4Header | Ipv6Header
TransportHeader = IcmpHeader | Icmpv6Header | UdpHeader | TcpHeader


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    ethernet: EthernetHeader
    network: NetworkHeader | None  # None for an ethertype we do not speak
    transport: TransportHeader | None  # None for ARP, fragments and unknown protocols
    payload: memoryview  # the bytes after the last header decoded
    neighbor: NeighborSolicitation | NeighborAdvertisement | None = None


def parse_frame(frame: BytesLike, *, verify_checksum: bool = True) -> DecodedFrame:
    """Decode every layer we know, raising ``WireError`` at the first malformed one."""
    ethernet, payload = parse_ethernet(frame)
    if ethernet.ethertype == ETHERTYPE_ARP:
        return DecodedFrame(ethernet, parse_arp(payload), None, payload[28:])
    if ethernet.ethertype == ETHERTYPE_IPV4:
        ip4, body = parse_ipv4(payload, verify_checksum=verify_checksum)
        if ip4.is_fragment:
            return DecodedFrame(ethernet, ip4, None, body)
        return _parse_transport(ethernet, ip4, ip4.protocol, body, verify_checksum)
    if ethernet.ethertype == ETHERTYPE_IPV6:
        ip6, body = parse_ipv6(payload)
        if ip6.is_fragment:
            return DecodedFrame(ethernet, ip6, None, body)
        return _parse_transport(ethernet, ip6, ip6.protocol, body, verify_checksum)
    return DecodedFrame(ethernet, None, None, payload)


def _parse_transport(
    ethernet: EthernetHeader, ip: Ipv4Header | Ipv6Header, protocol: int, body: memoryview, verify: bool
) -> DecodedFrame:
    if protocol == IPPROTO_TCP:
        tcp, data = parse_tcp(body, ip.src, ip.dst, verify_checksum=verify)
        return DecodedFrame(ethernet, ip, tcp, data)
    if protocol == IPPROTO_UDP:
        udp, data = parse_udp(body, ip.src, ip.dst, verify_checksum=verify)
        return DecodedFrame(ethernet, ip, udp, data)
    if protocol == IPPROTO_ICMP and isinstance(ip, Ipv4Header):
        icmp, data = parse_icmp(body, verify_checksum=verify)
        return DecodedFrame(ethernet, ip, icmp, data)
    if protocol == IPPROTO_ICMPV6 and isinstance(ip, Ipv6Header):
        icmp6, data = parse_icmpv6(body, ip.src, ip.dst, verify_checksum=verify)
        neighbor = None
        if icmp6.icmp_type in (ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_NEIGHBOR_ADVERTISEMENT):
            neighbor = parse_neighbor_message(icmp6, data)
        return DecodedFrame(ethernet, ip, icmp6, data, neighbor)
    return DecodedFrame(ethernet, ip, None, body)


# --- summaries -----------------------------------------------------------------------------------

_ETHERTYPE_NAMES = {ETHERTYPE_IPV4: "IPv4", ETHERTYPE_ARP: "ARP", ETHERTYPE_IPV6: "IPv6"}
_PROTO_NAMES = {IPPROTO_ICMP: "icmp", IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMPV6: "icmp6"}


def summarize_frame(frame: BytesLike, *, link_level: bool = False) -> str:
    """One tcpdump-like line for a frame; malformed input gives "malformed (layer: reason)".

    ``link_level`` prefixes the MAC addresses and ethertype, like ``tcpdump -e``.
    """
    try:
        try:
            ethernet, payload = parse_ethernet(frame)
        except WireError as exc:
            return _malformed(exc)
        prefix = ""
        if link_level:
            name = _ETHERTYPE_NAMES.get(ethernet.ethertype, "unknown")
            prefix = (f"{format_mac(ethernet.src, ':')} > {format_mac(ethernet.dst, ':')}, "
                      f"ethertype {name} (0x{ethernet.ethertype:04x}), length {len(frame)}: ")
        return prefix + _summarize_network(ethernet, payload)
    except Exception as exc:  # a display helper must never take the debugger down
        return f"unprintable frame ({type(exc).__name__})"


def _malformed(exc: WireError) -> str:
    return f"malformed ({exc.layer}: {exc.reason})"


def _summarize_network(ethernet: EthernetHeader, payload: memoryview) -> str:
    if ethernet.ethertype == ETHERTYPE_ARP:
        try:
            return _summarize_arp(parse_arp(payload), len(payload))
        except WireError as exc:
            return _malformed(exc)
    if ethernet.ethertype == ETHERTYPE_IPV4:
        try:
            ip4, body = parse_ipv4(payload, verify_checksum=False)
        except WireError as exc:
            return _malformed(exc)
        note = "" if ipv4_header_checksum_ok(payload) else " [bad ip cksum]"
        return _summarize_ip(IPv4Address(ip4.src), IPv4Address(ip4.dst), ip4, ip4.protocol, body) + note
    if ethernet.ethertype == ETHERTYPE_IPV6:
        try:
            ip6, body = parse_ipv6(payload)
        except WireError as exc:
            return _malformed(exc)
        return _summarize_ip(IPv6Address(ip6.src), IPv6Address(ip6.dst), ip6, ip6.protocol, body)
    return f"ethertype 0x{ethernet.ethertype:04x}, length {len(payload)}"


def _summarize_arp(arp: ArpPacket, length: int) -> str:
    if arp.operation == ARP_REQUEST:
        return f"ARP, Request who-has {IPv4Address(arp.target_ip)} tell {IPv4Address(arp.sender_ip)}, length {length}"
    if arp.operation == ARP_REPLY:
        return (f"ARP, Reply {IPv4Address(arp.sender_ip)} is-at {format_mac(arp.sender_mac, ':')}, "
                f"length {length}")
    return f"ARP, op {arp.operation}, length {length}"


def _summarize_ip(
    src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, ip: Ipv4Header | Ipv6Header,
    protocol: int, body: memoryview,
) -> str:
    proto_name = _PROTO_NAMES.get(protocol, f"ip-proto-{protocol}")
    if ip.is_fragment:
        ident = ip.identification if isinstance(ip, Ipv4Header) else ip.fragment_id
        more = "+" if ip.more_fragments else ""
        return (f"{src} > {dst}: {proto_name} fragment id {ident}, offset {ip.fragment_offset}, "
                f"flags [{more}], length {len(body)}")
    try:
        if protocol == IPPROTO_TCP:
            tcp, data = parse_tcp(body, verify_checksum=False)
            bad = _checksum_note("tcp", ip, IPPROTO_TCP, body)
            return f"{src}.{tcp.src_port} > {dst}.{tcp.dst_port}: {_summarize_tcp(tcp, len(data))}{bad}"
        if protocol == IPPROTO_UDP:
            udp, data = parse_udp(body, verify_checksum=False)
            bad = "" if (udp.checksum == 0 and isinstance(ip, Ipv4Header)) else _checksum_note(
                "udp", ip, IPPROTO_UDP, body[: udp.length])
            return f"{src}.{udp.src_port} > {dst}.{udp.dst_port}: UDP, length {len(data)}{bad}"
        if protocol == IPPROTO_ICMP and isinstance(ip, Ipv4Header):
            icmp, data = parse_icmp(body, verify_checksum=False)
            bad = "" if transport_checksum_ok(0, (body,)) else " [bad icmp cksum]"
            return f"{src} > {dst}: {_summarize_icmp(icmp, data, len(body))}{bad}"
        if protocol == IPPROTO_ICMPV6 and isinstance(ip, Ipv6Header):
            icmp6, data = parse_icmpv6(body, verify_checksum=False)
            bad = _checksum_note("icmp6", ip, IPPROTO_ICMPV6, body)
            return f"{src} > {dst}: {_summarize_icmpv6(icmp6, data, len(body))}{bad}"
    except WireError as exc:
        return f"{src} > {dst}: {_malformed(exc)}"
    return f"{src} > {dst}: {proto_name}, length {len(body)}"


def _checksum_note(name: str, ip: Ipv4Header | Ipv6Header, protocol: int, segment: memoryview) -> str:
    pseudo = pseudo_header_sum(ip.src, ip.dst, protocol, len(segment))
    return "" if transport_checksum_ok(pseudo, (segment,)) else f" [bad {name} cksum]"


def format_tcp_options(options: TcpOptions) -> str:
    """The inside of tcpdump's ``options [...]``: "mss 1460,wscale 8,sackOK,TS val 1 ecr 0"."""
    parts: list[str] = []
    if options.mss is not None:
        parts.append(f"mss {options.mss}")
    if options.wscale is not None:
        parts.append(f"wscale {options.wscale}")
    if options.sack_permitted:
        parts.append("sackOK")
    if options.timestamps is not None:
        parts.append(f"TS val {options.timestamps[0]} ecr {options.timestamps[1]}")
    if options.sack_blocks:
        blocks = " ".join(f"{{{left}:{right}}}" for left, right in options.sack_blocks)
        parts.append(f"sack {len(options.sack_blocks)} {blocks}")
    parts.extend(f"unknown-{kind}" for kind in options.unknown_kinds)
    return ",".join(parts)


def _summarize_tcp(tcp: TcpHeader, data_length: int) -> str:
    seq = f"{tcp.seq}:{(tcp.seq + data_length) & 0xFFFFFFFF}" if data_length else f"{tcp.seq}"
    text = f"Flags [{format_flags(tcp.flags)}], seq {seq}"
    if tcp.flags & 0x10:
        text += f", ack {tcp.ack}"
    text += f", win {tcp.window}"
    if tcp.flags & 0x20:
        text += f", urg {tcp.urgent}"
    if tcp.options:
        text += f", options [{format_tcp_options(tcp.options)}]"
    return text + f", length {data_length}"


_ICMP_UNREACH_WORDS = {
    ICMP_NET_UNREACHABLE: "net",
    ICMP_HOST_UNREACHABLE: "host",
    ICMP_PROTOCOL_UNREACHABLE: "protocol",
}


def _summarize_icmp(icmp: IcmpHeader, data: memoryview, length: int) -> str:
    if icmp.icmp_type in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
        kind = "request" if icmp.icmp_type == ICMP_ECHO_REQUEST else "reply"
        return f"ICMP echo {kind}, id {icmp.identifier}, seq {icmp.sequence}, length {length}"
    if icmp.icmp_type == ICMP_DEST_UNREACHABLE:
        return f"ICMP {_describe_unreachable(icmp, data)}, length {length}"
    if icmp.icmp_type == ICMP_TIME_EXCEEDED:
        return f"ICMP time exceeded in-transit, length {length}"
    return f"ICMP type {icmp.icmp_type} code {icmp.code}, length {length}"


def _describe_unreachable(icmp: IcmpHeader, data: memoryview) -> str:
    try:
        quote = parse_icmp_quote(data)
    except WireError:
        return f"dest unreachable code {icmp.code} (bad quote)"
    target = IPv4Address(quote.ip.dst)
    if icmp.code == ICMP_PORT_UNREACHABLE and quote.dst_port is not None:
        return f"{target} {_PROTO_NAMES.get(quote.ip.protocol, '?')} port {quote.dst_port} unreachable"
    if icmp.code == ICMP_PROTOCOL_UNREACHABLE:
        return f"{target} protocol {quote.ip.protocol} unreachable"
    if icmp.code == ICMP_FRAGMENTATION_NEEDED:
        return f"{target} unreachable - need to frag (mtu {icmp.next_hop_mtu})"
    word = _ICMP_UNREACH_WORDS.get(icmp.code)
    if word is not None:
        return f"{word} {target} unreachable"
    return f"{target} unreachable code {icmp.code}"


def _summarize_icmpv6(icmp: Icmpv6Header, data: memoryview, length: int) -> str:
    if icmp.icmp_type in (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY):
        kind = "request" if icmp.icmp_type == ICMPV6_ECHO_REQUEST else "reply"
        return f"ICMP6, echo {kind}, id {icmp.identifier}, seq {icmp.sequence}, length {length}"
    if icmp.icmp_type == ICMPV6_NEIGHBOR_SOLICITATION:
        message = parse_neighbor_message(icmp, data)
        return f"ICMP6, neighbor solicitation, who has {IPv6Address(message.target)}, length {length}"
    if icmp.icmp_type == ICMPV6_NEIGHBOR_ADVERTISEMENT:
        message = parse_neighbor_message(icmp, data)
        return f"ICMP6, neighbor advertisement, tgt is {IPv6Address(message.target)}, length {length}"
    if icmp.icmp_type == ICMPV6_DEST_UNREACHABLE:
        what = "unreachable port" if icmp.code == ICMPV6_PORT_UNREACHABLE else f"code {icmp.code}"
        return f"ICMP6, destination unreachable, {what}{_describe_v6_quote(data)}, length {length}"
    return f"ICMP6, type {icmp.icmp_type} code {icmp.code}, length {length}"


def _describe_v6_quote(data: memoryview) -> str:
    # The quoted packet is usually whole, but may be cut; read only what is there.
    if len(data) < 40 or data[0] >> 4 != 6:
        return ""
    target = IPv6Address(bytes(data[24:40]))
    protocol = data[6]
    if protocol in (IPPROTO_TCP, IPPROTO_UDP) and len(data) >= 44:
        dst_port = struct.unpack_from("!H", data, 42)[0]
        return f", {target} {_PROTO_NAMES[protocol]} port {dst_port}"
    return f", {target}"
