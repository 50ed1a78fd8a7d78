"""berkeley.c: BSD sockets over ksocket.c (file descriptors index a 128-entry table).

Every function that talks to WSK is a generator (`yield from connect(fd, ...)`).  Buffers
are kernel virtual addresses, as `char *` are in C.  Returns follow the original: -1 on
failure, else 0 or a byte count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator

from stack.kernel import NT_SUCCESS, STATUS_SUCCESS, kroutine
from stack.wsk import (ADDRINFOEXW, AF_INET, AF_INET6, IPPROTO_TCP, SOCKADDR_IN, SOCKADDR_IN6, Ref)

from .ksocket import (MODULE, KsAccept, KsBind, KsCloseSocket, KsConnect, KsCreateConnectionSocket,
                      KsCreateDatagramSocket, KsCreateListenSocket, KsFreeAddrInfo, KsGetAddrInfo, KsRecv,
                      KsRecvFrom, KsSend, KsSendTo, ks_globals)

MEMORY_TAG = "Ksb "  # ' bsK'
KS_ARRAY_SIZE = 128


@dataclass(slots=True)
class addrinfo:
    ai_flags: int = 0
    ai_family: int = 0
    ai_socktype: int = 0
    ai_protocol: int = 0
    ai_addrlen: int = 0
    ai_canonname: str | None = None
    ai_addr: SOCKADDR_IN | SOCKADDR_IN6 | None = None
    ai_next: "addrinfo | None" = None


def htons(hostshort: int) -> int:
    """RtlUshortByteSwap.  (This emulation's SOCKADDR ports are host order: don't use it on them.)"""
    return ((hostshort & 0xFF) << 8) | ((hostshort >> 8) & 0xFF)


ntohs = htons


def htonl(hostlong: int) -> int:
    return int.from_bytes((hostlong & 0xFFFFFFFF).to_bytes(4, "little"), "big")


ntohl = htonl


# --- the descriptor table ("a hack", says the original) ----------------------------------------------

def KsGetSocket(sockfd: int) -> Any:
    if not 1 <= sockfd <= KS_ARRAY_SIZE:
        return None
    return ks_globals().KsArray[sockfd - 1]


def KsAllocateFd(Socket: Any) -> int:
    g = ks_globals()
    fd = (g.KsIndex % KS_ARRAY_SIZE) + 1
    g.KsIndex += 1
    g.KsArray[fd - 1] = Socket
    return fd


def KsFreeFd(sockfd: int) -> None:
    ks_globals().KsArray[sockfd - 1] = None


# --- getaddrinfo --------------------------------------------------------------------------------------

def _to_addrinfoexw(hints: addrinfo | None) -> ADDRINFOEXW | None:
    if hints is None:
        return None
    return ADDRINFOEXW(ai_flags=hints.ai_flags, ai_family=hints.ai_family, ai_socktype=hints.ai_socktype,
                       ai_protocol=hints.ai_protocol)


def _from_addrinfoexw(info: ADDRINFOEXW | None) -> addrinfo | None:
    if info is None:
        return None
    return addrinfo(info.ai_flags, info.ai_family, info.ai_socktype, info.ai_protocol, info.ai_addrlen,
                    info.ai_canonname, info.ai_addr, _from_addrinfoexw(info.ai_next))


@kroutine(MODULE)
def getaddrinfo(node: str | None, service: str | None, hints: addrinfo | None,
                res: Ref) -> Generator[Any, Any, int]:
    """Returns 0 and stores the list in `res.value`, or the failing NTSTATUS (as the original)."""
    Result = Ref()
    Status = yield from KsGetAddrInfo(node, service, _to_addrinfoexw(hints), Result)
    if not NT_SUCCESS(Status):
        return Status
    res.value = _from_addrinfoexw(Result.value)  # the original copies the list, then frees WSK's
    KsFreeAddrInfo(Result.value)
    return STATUS_SUCCESS


def freeaddrinfo(res: addrinfo | None) -> None:
    """The Python list is garbage collected; nothing to free in pool."""


# --- sockets ---------------------------------------------------------------------------------------------

def _create(factory: Any, domain: int, type_: int, protocol: int) -> Generator[Any, Any, int]:
    Socket = Ref()
    Status = yield from factory(Socket, domain, type_, protocol)
    if not NT_SUCCESS(Status):
        return -1
    return KsAllocateFd(Socket.value)


@kroutine(MODULE)
def socket_connection(domain: int, type_: int, protocol: int) -> Generator[Any, Any, int]:
    return (yield from _create(KsCreateConnectionSocket, domain, type_, protocol))


@kroutine(MODULE)
def socket_listen(domain: int, type_: int, protocol: int) -> Generator[Any, Any, int]:
    # WskSocket answers STATUS_PROTOCOL_UNREACHABLE to protocol 0 for a listening socket.
    return (yield from _create(KsCreateListenSocket, domain, type_, protocol or IPPROTO_TCP))


@kroutine(MODULE)
def socket_datagram(domain: int, type_: int, protocol: int) -> Generator[Any, Any, int]:
    return (yield from _create(KsCreateDatagramSocket, domain, type_, protocol))


socket = socket_connection  # `socket()` is a connection socket, as the original's macro


@kroutine(MODULE)
def connect(sockfd: int, addr: Any, addrlen: int) -> Generator[Any, Any, int]:
    Socket = KsGetSocket(sockfd)
    if Socket is None:
        return -1
    Status = yield from KsConnect(Socket, addr)
    return 0 if NT_SUCCESS(Status) else -1


@kroutine(MODULE)
def listen(sockfd: int, backlog: int) -> int:
    # A WSK listening socket listens as soon as it is bound.
    return 0


@kroutine(MODULE)
def bind(sockfd: int, addr: Any, addrlen: int) -> Generator[Any, Any, int]:
    Socket = KsGetSocket(sockfd)
    if Socket is None:
        return -1
    Status = yield from KsBind(Socket, addr)
    return 0 if NT_SUCCESS(Status) else -1


@kroutine(MODULE)
def accept(sockfd: int, addr: Any, addrlen: Ref | None) -> Generator[Any, Any, int]:
    Socket = KsGetSocket(sockfd)
    if Socket is None:
        return -1
    NewSocket = Ref()
    Status = yield from KsAccept(Socket, NewSocket, None, addr)
    if not NT_SUCCESS(Status):
        return -1
    if addrlen is not None:
        addrlen.value = 16  # sizeof(SOCKADDR)
    return KsAllocateFd(NewSocket.value)


@kroutine(MODULE)
def send(sockfd: int, buf: int, len_: int, flags: int) -> Generator[Any, Any, int]:
    Socket = KsGetSocket(sockfd)
    if Socket is None:
        return -1
    Length = Ref(len_)
    Status = yield from KsSend(Socket, buf, Length, flags)
    return Length.value if NT_SUCCESS(Status) else -1


@kroutine(MODULE)
def sendto(sockfd: int, buf: int, len_: int, flags: int, dest_addr: Any, addrlen: int) -> Generator[Any, Any, int]:
    Socket = KsGetSocket(sockfd)
    if Socket is None:
        return -1
    Length = Ref(len_)
    Status = yield from KsSendTo(Socket, buf, Length, flags, dest_addr)
    return Length.value if NT_SUCCESS(Status) else -1


@kroutine(MODULE)
def recv(sockfd: int, buf: int, len_: int, flags: int) -> Generator[Any, Any, int]:
    Socket = KsGetSocket(sockfd)
    if Socket is None:
        return -1
    Length = Ref(len_)
    Status = yield from KsRecv(Socket, buf, Length, flags)
    return Length.value if NT_SUCCESS(Status) else -1


@kroutine(MODULE)
def recvfrom(sockfd: int, buf: int, len_: int, flags: int, src_addr: Any, addrlen: Ref | None) -> Generator[Any, Any, int]:
    Socket = KsGetSocket(sockfd)
    if Socket is None:
        return -1
    Length = Ref(len_)
    # The original calls KsSendTo here (a copy-paste bug that sends the buffer instead
    # of receiving into it); this port receives, as recvfrom must.
    Status = yield from KsRecvFrom(Socket, buf, Length, flags, src_addr)
    if addrlen is not None and src_addr is not None:
        addrlen.value = 16 if getattr(src_addr, "ss_family", AF_INET) == AF_INET else 28
    return Length.value if NT_SUCCESS(Status) else -1


@kroutine(MODULE)
def closesocket(sockfd: int) -> Generator[Any, Any, int]:
    Socket = KsGetSocket(sockfd)
    if Socket is None:
        return -1
    Status = yield from KsCloseSocket(Socket)
    KsFreeFd(sockfd)
    return 0 if NT_SUCCESS(Status) else -1


_ = AF_INET6
