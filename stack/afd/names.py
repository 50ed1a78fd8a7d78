"""afd's WskGetAddressInfo / WskFreeAddressInfo / WskGetNameInfo (afd!WskProAPIGetAddressInfo ...).

Names resolve through the host's transport: a literal address, then the hosts table
(lab names), then the plugged-in DNS client (UDP to the lab's DNS server).  Results are
ADDRINFOEXW nodes allocated in nonpaged pool (tag 'WskA') until WskFreeAddressInfo.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

from stack.kernel import (STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_PENDING, STATUS_SUCCESS,
                          ExAllocatePoolWithTag, ExFreePoolWithTag, current_kernel, kroutine)
from stack.kernel.pool import NonPagedPoolNx
from stack.tcpip.addr import SockAddr, any_address
from stack.wsk.constants import (AF_INET, AF_INET6, AF_UNSPEC, AI_CANONNAME, AI_PASSIVE, IPPROTO_TCP, IPPROTO_UDP,
                                 SOCK_DGRAM, SOCK_STREAM)
from stack.wsk.structs import (ADDRINFOEXW, SOCKADDR_IN_SIZE, SOCKADDR_IN6_SIZE, Ref, WskAddressError, from_sockaddr,
                               to_sockaddr)

from .irp import IrpCompletion, afd_take_irp
from .state import get_provider

ADDRINFO_TAG = "WskA"
ADDRINFOEXW_SIZE = 0x48
SERVICES = {"http": 80, "https": 443, "echo": 7, "domain": 53, "ftp": 21, "ssh": 22, "telnet": 23}


def _text(value: Any) -> str | None:
    """A UNICODE_STRING-ish argument: str, or an object with .Buffer."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    buffer = getattr(value, "Buffer", None)
    return buffer if isinstance(buffer, str) else None


def _service_port(service: str | None) -> int | None:
    if service is None or service == "":
        return 0
    if service.isdigit():
        port = int(service)
        return port if port <= 0xFFFF else None
    return SERVICES.get(service.lower())


def _allocate_chain(addresses: list[Any], port: int, hints: ADDRINFOEXW | None,
                    canonical: str | None) -> ADDRINFOEXW | None:
    """The result list in pool; None (nothing left allocated) when pool is short."""
    head: ADDRINFOEXW | None = None
    tail: ADDRINFOEXW | None = None
    socktype = hints.ai_socktype if hints is not None else 0
    protocol = hints.ai_protocol if hints is not None else 0
    if socktype and not protocol:
        protocol = IPPROTO_TCP if socktype == SOCK_STREAM else IPPROTO_UDP if socktype == SOCK_DGRAM else 0
    for ip in addresses:
        sa = from_sockaddr(SockAddr(ip, port))
        node = ADDRINFOEXW(ai_flags=hints.ai_flags if hints is not None else 0,
                           ai_family=AF_INET if ip.version == 4 else AF_INET6, ai_socktype=socktype,
                           ai_protocol=protocol, ai_addrlen=SOCKADDR_IN_SIZE if ip.version == 4 else SOCKADDR_IN6_SIZE,
                           ai_addr=sa)
        node.address = ExAllocatePoolWithTag(NonPagedPoolNx, ADDRINFOEXW_SIZE + node.ai_addrlen, ADDRINFO_TAG)
        if not node.address:
            WskFreeAddressInfo(None, head)
            return None
        if head is None:
            head = node
            node.ai_canonname = canonical
        else:
            tail.ai_next = node  # type: ignore[union-attr]
        tail = node
    assert head is not None
    return head


@kroutine("afd")
def WskProAPIGetAddressInfo(Client: Any, NodeName: Any, ServiceName: Any, NameSpace: int, Provider: Any,
                      Hints: ADDRINFOEXW | None, Result: Ref, OwningProcess: Any, OwningThread: Any,
                      Irp: Any) -> int:
    k = current_kernel()
    k.charge("wsk_dispatch")
    provider = get_provider(k)
    if provider is None:
        return STATUS_INVALID_PARAMETER
    node = _text(NodeName)
    port = _service_port(_text(ServiceName))
    family = Hints.ai_family if Hints is not None else AF_UNSPEC
    flags = Hints.ai_flags if Hints is not None else 0

    def start(irp: Any) -> int:
        completion = IrpCompletion(irp)
        if not isinstance(Result, Ref) or port is None or family not in (AF_UNSPEC, AF_INET, AF_INET6) \
                or (node is None and _text(ServiceName) is None):
            return completion.started(STATUS_INVALID_PARAMETER)
        if node is None:  # a service only: the wildcard (AI_PASSIVE) or loopback address
            fams = (AF_INET, AF_INET6) if family == AF_UNSPEC else (family,)
            if flags & AI_PASSIVE:
                ips = [any_address(f).ip for f in fams]
            else:
                ips = [ip_address("127.0.0.1" if f == AF_INET else "::1") for f in fams]
            Result.value = _allocate_chain(ips, port, Hints, None)
            return completion.started(STATUS_SUCCESS)

        def resolved(status: int, addresses: list[Any]) -> None:
            if status != STATUS_SUCCESS or not addresses:
                completion.done(STATUS_NOT_FOUND if status == STATUS_SUCCESS else status, 0)
                return
            wanted = [a for a in addresses if family == AF_UNSPEC or
                      (a.version == 4) == (family == AF_INET)]
            if not wanted:
                completion.done(STATUS_NOT_FOUND, 0)
                return
            chain = _allocate_chain(wanted, port, Hints, node if flags & AI_CANONNAME else None)
            if chain is None:
                completion.done(STATUS_INSUFFICIENT_RESOURCES, 0)
                return
            Result.value = chain
            completion.done(STATUS_SUCCESS, 0)

        return completion.started(provider.transport.resolve(node, resolved, family))

    return afd_take_irp(provider.device, Irp, "WskGetAddressInfo", 0, 0, flags, start)


@kroutine("afd")
def WskProAPIFreeAddressInfo(Client: Any, AddrInfo: ADDRINFOEXW | None) -> None:
    current_kernel().charge("wsk_dispatch")
    node = AddrInfo
    while node is not None:
        nxt = node.ai_next
        if node.address:
            ExFreePoolWithTag(node.address, ADDRINFO_TAG)
            node.address = 0
        node = nxt


@kroutine("afd")
def WskProAPIGetNameInfo(Client: Any, SockAddr_: Any, SockAddrLength: int, NodeName: Any, ServiceName: Any, Flags: int,
                   OwningProcess: Any, OwningThread: Any, Irp: Any) -> int:
    """Address to name: the hosts table, else the numeric form.  Names go into Ref outputs."""
    k = current_kernel()
    k.charge("wsk_dispatch")
    provider = get_provider(k)
    if provider is None:
        return STATUS_INVALID_PARAMETER

    def start(irp: Any) -> int:
        completion = IrpCompletion(irp)
        try:
            sa = to_sockaddr(SockAddr_)
        except WskAddressError:
            return completion.started(STATUS_INVALID_PARAMETER)
        name = str(sa.ip)
        for host, ips in provider.transport.hosts.items():
            if sa.ip in ips:
                name = host
                break
        if isinstance(NodeName, Ref):
            NodeName.value = name
        if isinstance(ServiceName, Ref):
            ServiceName.value = str(sa.port)
        return completion.started(STATUS_SUCCESS)

    return afd_take_irp(provider.device, Irp, "WskGetNameInfo", 0, SockAddrLength, Flags, start)


_ = STATUS_PENDING
