"""The lab's DNS server: a user-mode program answering A/AAAA queries over UDP port 53.

    from stack.usermode import dns
    server = dns.install(world)              # host `dns` at 10.0.0.53 / fd00::53
    server.zone.add("httpbin.org", "10.0.0.80", "fd00::80")

`install` also points every host's resolver (stack.wsk.configure_dns) at it, so
WskGetAddressInfo resolves names that are not in the hosts table over UDP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Generator

from stack.tcpip.addr import AF_INET, SockAddr
from stack.wsk.dns_client import configure_dns
from stack.wire.dns import (CLASS_IN, RCODE_FORMERR, RCODE_NOERROR, RCODE_NOTIMP, RCODE_NXDOMAIN, TYPE_A,
                                TYPE_AAAA, TYPE_ANY, DnsError, DnsMessage, DnsRecord, build_response, normalize_name,
                                parse_message, HEADER, FLAG_QR)

from .socket import SOCK_DGRAM, Program, Socket, run_program

DNS_HOST = "dns"
DNS_IPV4 = "10.0.0.53"
DNS_IPV6 = "fd00::53"
DEFAULT_TTL = 300


@dataclass(slots=True)
class Zone:
    """Names to addresses (lower-case, no trailing dot)."""

    records: dict[str, list[IPv4Address | IPv6Address]] = field(default_factory=dict)

    def add(self, name: str, *addresses: str | IPv4Address | IPv6Address) -> None:
        entry = self.records.setdefault(normalize_name(name), [])
        for a in addresses:
            ip = ip_address(a) if isinstance(a, str) else a
            if ip not in entry:
                entry.append(ip)

    def lookup(self, name: str) -> list[IPv4Address | IPv6Address] | None:
        return self.records.get(normalize_name(name))


@dataclass(slots=True)
class DnsServerStats:
    queries: int = 0
    answered: int = 0
    nxdomain: int = 0
    malformed: int = 0


def answer(zone: Zone, raw: bytes) -> bytes | None:
    """The response to one query datagram (None when it cannot even be answered with FORMERR)."""
    try:
        query = parse_message(raw)
    except DnsError:
        if len(raw) < HEADER.size:
            return None
        ident = int.from_bytes(raw[:2], "big")
        return build_response(DnsMessage(ident, 0), [], RCODE_FORMERR)
    if query.is_response:
        return None
    if query.opcode != 0 or len(query.questions) != 1:
        return build_response(query, [], RCODE_NOTIMP if query.opcode else RCODE_FORMERR)
    question = query.questions[0]
    addresses = zone.lookup(question.name)
    if addresses is None:
        return build_response(query, [], RCODE_NXDOMAIN)
    records = []
    for ip in addresses:
        rtype = TYPE_A if ip.version == 4 else TYPE_AAAA
        if question.qtype in (rtype, TYPE_ANY) and question.qclass == CLASS_IN:
            records.append(DnsRecord(question.name, rtype, CLASS_IN, DEFAULT_TTL, ip.packed))
    return build_response(query, records, RCODE_NOERROR)  # no records of that type: NODATA


def dns_server(zone: Zone, stats: DnsServerStats, port: int = 53) -> Generator[Any, Any, None]:
    """Serve forever: one datagram in, one answer out."""
    sock = yield from Socket.create(AF_INET, SOCK_DGRAM)
    yield from sock.bind(SockAddr(IPv4Address(0), port))
    while True:
        data, peer = yield from sock.recvfrom(1500)
        stats.queries += 1
        reply = answer(zone, data)
        if reply is None:
            stats.malformed += 1
            continue
        flags = int.from_bytes(reply[2:4], "big")
        if flags & 0xF == RCODE_NXDOMAIN:
            stats.nxdomain += 1
        elif flags & 0xF == RCODE_FORMERR:
            stats.malformed += 1
        else:
            stats.answered += 1
        yield from sock.sendto(reply, peer)


@dataclass(slots=True)
class DnsServer:
    host: Any
    zone: Zone
    stats: DnsServerStats
    program: Program


def install(world: Any, name: str = DNS_HOST, ipv4: str = DNS_IPV4, ipv6: str = DNS_IPV6) -> DnsServer:
    """Add the DNS host, start its server, put every lab host in the zone and point all
    hosts' resolvers at it.  Returns the running server (add names to `.zone` any time)."""
    host = world.hosts.get(name) or world.add_host(name, ipv4, ipv6)
    zone = Zone()
    for h in world.hosts.values():
        zone.add(h.name, *[a for a in (h.address4, h.address6) if a is not None])
    stats = DnsServerStats()
    program = run_program(host.kernel, dns_server, zone, stats, name="dns-server")
    for h in world.hosts.values():
        configure_dns(h.kernel, [host.address4])
    server = DnsServer(host, zone, stats, program)
    world.dns = server
    return server


_ = FLAG_QR
