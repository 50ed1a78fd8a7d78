"""The host's DNS client: queries over UDP through the transport's datagram endpoints.

`configure_dns(kernel, ["10.0.0.53"])` plugs a `DnsResolver` into the host's transport,
so `Transport.resolve` (and with it WskGetAddressInfo and user-mode getaddrinfo) asks
the lab's DNS server for names that are neither literals nor in the hosts table.
Each lookup opens one UDP endpoint on an ephemeral port, sends an A and/or AAAA
query, retries on a KTIMER, and completes once every query is answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Callable

from stack.kernel import (KDPC, KTIMER, STATUS_IO_TIMEOUT, STATUS_NOT_FOUND, STATUS_PENDING, STATUS_SUCCESS,
                          KeCancelTimer, KeInitializeDpc, KeInitializeTimer, KeSetTimer, kroutine)
from stack.kernel.kernel import Kernel
from stack.tcpip.addr import AF_INET, AF_INET6, AF_UNSPEC, IpAddress, SockAddr, any_address

from stack.wire.dns import (RCODE_NOERROR, TYPE_A, TYPE_AAAA, DnsError, build_query, normalize_name, parse_message)

DNS_PORT = 53
QUERY_TIMEOUT_MS = 1000
QUERY_ATTEMPTS = 3


@dataclass(slots=True, eq=False)
class DnsLookup:
    resolver: "DnsResolver"
    name: str
    family: int
    completion: Callable[[int, list[IpAddress]], None]
    pending: dict[int, int] = field(default_factory=dict)  # query id -> qtype still unanswered
    addresses: list[IpAddress] = field(default_factory=list)
    endpoint: Any = None
    server: SockAddr | None = None
    attempts: int = 0
    done: bool = False
    timer: KTIMER = field(default_factory=KTIMER)
    dpc: KDPC = field(default_factory=KDPC)
    queries: dict[int, bytes] = field(default_factory=dict)


class DnsResolver:
    """A NameResolver for `Transport.set_resolver` (one per host)."""

    def __init__(self, kernel: Kernel, servers: list[str | IpAddress]) -> None:
        self.kernel = kernel
        self.servers = [ip_address(s) if isinstance(s, str) else s for s in servers]
        self._next_id = kernel.rng.randrange(0x10000)
        self.lookups = 0
        self.timeouts = 0

    def _new_id(self) -> int:
        self._next_id = (self._next_id + 1) & 0xFFFF
        return self._next_id

    def __call__(self, name: str, family: int, completion: Callable[[int, list[IpAddress]], None]) -> int:
        return self.resolve(name, family, completion)

    def resolve(self, name: str, family: int, completion: Callable[[int, list[IpAddress]], None]) -> int:
        """STATUS_PENDING then completion(status, addresses); STATUS_NOT_FOUND when no server."""
        from stack.tcpip.transport import get_transport
        if not self.servers:
            completion(STATUS_NOT_FOUND, [])
            return STATUS_NOT_FOUND
        server_ip = self.servers[0]
        lookup = DnsLookup(self, name, family, completion)
        lookup.server = SockAddr(server_ip, DNS_PORT)
        transport = get_transport(self.kernel)
        status, ep = transport.udp_open(any_address(AF_INET if server_ip.version == 4 else AF_INET6),
                                        receive=WskProDnsResponse)
        if ep is None:
            completion(status, [])
            return status
        ep.context = lookup
        lookup.endpoint = ep
        qtypes = {AF_INET: (TYPE_A,), AF_INET6: (TYPE_AAAA,)}.get(family, (TYPE_A, TYPE_AAAA))
        for qtype in qtypes:
            ident = self._new_id()
            lookup.pending[ident] = qtype
            lookup.queries[ident] = build_query(ident, name, qtype)
        self.lookups += 1
        KeInitializeTimer(lookup.timer)
        KeInitializeDpc(lookup.dpc, WskProDnsTimeout, lookup)
        _transmit(lookup)
        return STATUS_PENDING


def _transmit(lookup: DnsLookup) -> None:
    lookup.attempts += 1
    for ident in list(lookup.pending):
        lookup.endpoint.send_bytes_to(lookup.server, lookup.queries[ident])
    KeSetTimer(lookup.timer, -QUERY_TIMEOUT_MS * 10_000, lookup.dpc)


def _finish(lookup: DnsLookup, status: int) -> None:
    if lookup.done:
        return
    lookup.done = True
    KeCancelTimer(lookup.timer)
    lookup.endpoint.context = None
    lookup.endpoint.close()
    if status == STATUS_SUCCESS and not lookup.addresses:
        status = STATUS_NOT_FOUND
    # IPv4 first, as the lab's getaddrinfo orders them
    ordered = sorted(lookup.addresses, key=lambda a: a.version)
    lookup.completion(status, ordered if status == STATUS_SUCCESS else [])


@kroutine("afd")  # the resolver behind afd!WskProAPIGetAddressInfo
def WskProDnsResponse(endpoint: Any, remote: SockAddr, runs: list[tuple[int, memoryview]], nbytes: int) -> None:
    lookup: DnsLookup | None = endpoint.context
    if lookup is None or lookup.done or remote != lookup.server:
        return
    try:
        msg = parse_message(b"".join([view for _, view in runs]))
    except DnsError:
        return  # garbage is dropped; the retry timer still runs
    qtype = lookup.pending.get(msg.id)
    if qtype is None or not msg.is_response:
        return
    del lookup.pending[msg.id]
    if msg.rcode == RCODE_NOERROR:
        wanted = normalize_name(lookup.name)
        names = {wanted}
        for record in msg.answers:  # follow CNAMEs inside the answer section
            if normalize_name(record.name) in names and record.rtype == 5:
                names.add(normalize_name(record.data.decode("ascii")))
        for record in msg.answers:
            if normalize_name(record.name) not in names or record.rtype != qtype:
                continue
            addr = IPv4Address(record.data) if qtype == TYPE_A else IPv6Address(record.data)
            if addr not in lookup.addresses:
                lookup.addresses.append(addr)
    if not lookup.pending:
        _finish(lookup, STATUS_SUCCESS)


@kroutine("afd")  # the resolver behind afd!WskProAPIGetAddressInfo
def WskProDnsTimeout(Dpc: Any, DeferredContext: DnsLookup, Arg1: Any, Arg2: Any) -> None:
    lookup = DeferredContext
    if lookup.done:
        return
    if lookup.attempts >= QUERY_ATTEMPTS:
        lookup.resolver.timeouts += 1
        _finish(lookup, STATUS_SUCCESS if lookup.addresses else STATUS_IO_TIMEOUT)
        return
    _transmit(lookup)


def configure_dns(kernel: Kernel, servers: list[str | IpAddress]) -> DnsResolver:
    """Point this host's name resolution at `servers` (plugs into its transport)."""
    from stack.tcpip.transport import get_transport
    resolver = DnsResolver(kernel, servers)
    kernel.extensions["dns.resolver"] = resolver
    get_transport(kernel).set_resolver(resolver)
    return resolver


_ = AF_UNSPEC
