"""wsk.h structures as Python classes with their C field names.

Pointers a C caller would pass for the callee to fill (`PVOID *AcceptSocketContext`,
`PADDRINFOEXW *Result`) are `Ref` objects.  Ports in SOCKADDR_IN/SOCKADDR_IN6 are
host-order ints in this emulation (C code writes `htons(40007)`; here it is `40007`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Callable, Generic, TypeVar

from stack.kernel.kstack import stack_local
from stack.tcpip.addr import SockAddr, unmap, v4_mapped

from .constants import AF_INET, AF_INET6, AF_UNSPEC

T = TypeVar("T")


class WskAddressError(ValueError):
    """A SOCKADDR the provider cannot use (unknown family, wrong size of buffer)."""


@dataclass(slots=True)
class Ref(Generic[T]):
    """A C out-pointer: the callee stores into `.value`."""

    value: Any = None


# --- NPIs and registration ----------------------------------------------------------------

@dataclass(slots=True)
class WSK_CLIENT_DISPATCH:
    Version: int
    Reserved: int = 0
    WskClientEvent: Callable[..., int] | None = None
    # Not in wsk.h: the `module!Name` of the C global holding this table, so afd's client list
    # (afd!AfdWskClientListHead) points into the client's image as on Windows.
    symbol: str = ""


@dataclass(slots=True)
class WSK_CLIENT_NPI:
    ClientContext: Any = None
    Dispatch: WSK_CLIENT_DISPATCH | None = None


@dataclass(slots=True)
class WSK_REGISTRATION:
    """Opaque to the client; the provider keeps its registration record here."""

    ReservedRegistrationState: int = 0
    ReservedRegistrationContext: Any = None
    ReservedRegistrationLock: Any = None


@dataclass(slots=True)
class WSK_PROVIDER_NPI:
    Client: Any = None  # PWSK_CLIENT: the provider's handle for this client
    Dispatch: "WSK_PROVIDER_DISPATCH | None" = None


@dataclass(slots=True)
class NPIID:
    """An NPI identifier (a GUID)."""

    guid: str


NPI_WSK_INTERFACE_ID = NPIID("2227e803-8d8b-11d4-abad-009027716201")


@dataclass(slots=True)
class WSK_EVENT_CALLBACK_CONTROL:
    NpiId: NPIID | None = None
    EventMask: int = 0


WSK_EVENT_CALLBACK_CONTROL_SIZE = 0x10  # sizeof(WSK_EVENT_CALLBACK_CONTROL) on x64


# --- dispatch tables ---------------------------------------------------------------------------

@dataclass(slots=True)
class WSK_PROVIDER_DISPATCH:
    Version: int
    Reserved: int
    WskSocket: Callable[..., int]
    WskSocketConnect: Callable[..., int]
    WskControlClient: Callable[..., int]
    WskGetAddressInfo: Callable[..., int]
    WskFreeAddressInfo: Callable[..., None]
    WskGetNameInfo: Callable[..., int]
    address: int = 0


@dataclass(slots=True)
class WSK_PROVIDER_BASIC_DISPATCH:
    WskControlSocket: Callable[..., int]
    WskCloseSocket: Callable[..., int]
    address: int = 0


class _BasicForwarding:
    """`((PWSK_PROVIDER_BASIC_DISPATCH)Socket->Dispatch)->WskCloseSocket`: every table starts
    with Basic, so the basic entries are reachable from any table (as the C cast does)."""

    __slots__ = ()

    @property
    def WskControlSocket(self) -> Callable[..., int]:
        return self.Basic.WskControlSocket  # type: ignore[attr-defined]

    @property
    def WskCloseSocket(self) -> Callable[..., int]:
        return self.Basic.WskCloseSocket  # type: ignore[attr-defined]


@dataclass(slots=True)
class WSK_PROVIDER_LISTEN_DISPATCH(_BasicForwarding):
    Basic: WSK_PROVIDER_BASIC_DISPATCH
    WskBind: Callable[..., int]
    WskAccept: Callable[..., int]
    WskInspectComplete: Callable[..., int]
    WskGetLocalAddress: Callable[..., int]
    address: int = 0


@dataclass(slots=True)
class WSK_PROVIDER_CONNECTION_DISPATCH(_BasicForwarding):
    Basic: WSK_PROVIDER_BASIC_DISPATCH
    WskBind: Callable[..., int]
    WskConnect: Callable[..., int]
    WskGetLocalAddress: Callable[..., int]
    WskGetRemoteAddress: Callable[..., int]
    WskSend: Callable[..., int]
    WskReceive: Callable[..., int]
    WskDisconnect: Callable[..., int]
    WskRelease: Callable[..., int]
    WskConnectEx: Callable[..., int] | None = None
    WskSendEx: Callable[..., int] | None = None
    WskReceiveEx: Callable[..., int] | None = None
    address: int = 0


@dataclass(slots=True)
class WSK_PROVIDER_DATAGRAM_DISPATCH(_BasicForwarding):
    Basic: WSK_PROVIDER_BASIC_DISPATCH
    WskBind: Callable[..., int]
    WskSendTo: Callable[..., int]
    WskReceiveFrom: Callable[..., int]
    WskRelease: Callable[..., int]
    WskGetLocalAddress: Callable[..., int]
    WskSendMessages: Callable[..., int] | None = None
    address: int = 0


@dataclass(slots=True)
class WSK_PROVIDER_STREAM_DISPATCH(_BasicForwarding):
    Basic: WSK_PROVIDER_BASIC_DISPATCH
    WskBind: Callable[..., int]
    WskAccept: Callable[..., int]
    WskConnect: Callable[..., int]
    WskListen: Callable[..., int]
    WskSend: Callable[..., int]
    WskReceive: Callable[..., int]
    WskDisconnect: Callable[..., int]
    WskRelease: Callable[..., int]
    WskGetLocalAddress: Callable[..., int]
    WskGetRemoteAddress: Callable[..., int]
    WskInspectComplete: Callable[..., int] | None = None
    WskConnectEx: Callable[..., int] | None = None
    WskSendEx: Callable[..., int] | None = None
    WskReceiveEx: Callable[..., int] | None = None
    address: int = 0


@dataclass(slots=True)
class WSK_CLIENT_LISTEN_DISPATCH:
    WskAcceptEvent: Callable[..., int] | None = None
    WskInspectEvent: Callable[..., int] | None = None
    WskAbortEvent: Callable[..., int] | None = None


@dataclass(slots=True)
class WSK_CLIENT_CONNECTION_DISPATCH:
    WskReceiveEvent: Callable[..., int] | None = None
    WskDisconnectEvent: Callable[..., int] | None = None
    WskSendBacklogEvent: Callable[..., int] | None = None


@dataclass(slots=True)
class WSK_CLIENT_DATAGRAM_DISPATCH:
    WskReceiveFromEvent: Callable[..., int] | None = None


@dataclass(slots=True)
class WSK_CLIENT_STREAM_DISPATCH:
    WskAcceptEvent: Callable[..., int] | None = None
    WskInspectEvent: Callable[..., int] | None = None
    WskAbortEvent: Callable[..., int] | None = None
    WskReceiveEvent: Callable[..., int] | None = None
    WskDisconnectEvent: Callable[..., int] | None = None
    WskSendBacklogEvent: Callable[..., int] | None = None


# --- the socket object and buffers -----------------------------------------------------------

class WSK_SOCKET:
    """`typedef struct _WSK_SOCKET { const VOID *Dispatch; } WSK_SOCKET`: the provider's
    socket objects derive from this (the rest of the object is the provider's)."""

    Dispatch: Any = None


@dataclass(slots=True)
class WSK_BUF:
    """A local of the caller's frame, as in C (`WSK_BUF wskbuf;` in WskSampleOpReceive): its
    address is on the kernel stack, where `dt _WSK_BUF @rdx` reads it (stack.kernel.kstack)."""

    Mdl: Any = None  # PMDL (a chain; locked or nonpaged)
    Offset: int = 0  # into the first MDL
    Length: int = 0  # from Offset, across the chain
    address: int = field(default_factory=stack_local, compare=False, repr=False)

    def local_bytes(self) -> bytes:
        """The C structure's 0x18 bytes: Mdl, Offset (ULONG, padded), Length (SIZE_T)."""
        mdl = getattr(self.Mdl, "address", 0) or 0
        return (mdl.to_bytes(8, "little") + (self.Offset & 0xFFFFFFFF).to_bytes(8, "little")
                + (self.Length & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))


@dataclass(slots=True)
class WSK_DATA_INDICATION:
    Next: "WSK_DATA_INDICATION | None" = None
    Buffer: WSK_BUF = field(default_factory=WSK_BUF)


@dataclass(slots=True)
class WSK_DATAGRAM_INDICATION:
    Next: "WSK_DATAGRAM_INDICATION | None" = None
    Buffer: WSK_BUF = field(default_factory=WSK_BUF)
    ControlInfo: Any = None
    ControlInfoLength: int = 0
    RemoteAddress: Any = None  # SOCKADDR_IN / SOCKADDR_IN6


@dataclass(slots=True)
class WSK_TRANSPORT:
    Version: int = 0
    SocketType: int = 0
    Protocol: int = 0
    AddressFamily: int = 0
    ProviderId: str = ""


# --- addresses ----------------------------------------------------------------------------------

@dataclass(slots=True)
class SOCKADDR_IN:
    sin_family: int = AF_INET
    sin_port: int = 0  # host order here
    sin_addr: bytes = b"\x00\x00\x00\x00"
    sin_zero: bytes = bytes(8)


@dataclass(slots=True)
class SOCKADDR_IN6:
    sin6_family: int = AF_INET6
    sin6_port: int = 0  # host order here
    sin6_flowinfo: int = 0
    sin6_addr: bytes = bytes(16)
    sin6_scope_id: int = 0


class SOCKADDR_STORAGE:
    """Big enough for either address; after the provider fills it, `ss_family` says which
    and the fields of that SOCKADDR_IN/SOCKADDR_IN6 are readable on it directly."""

    def __init__(self, ss_family: int = AF_UNSPEC) -> None:
        self.ss_family = ss_family
        self.specific: SOCKADDR_IN | SOCKADDR_IN6 | None = None

    def __getattr__(self, name: str) -> Any:
        specific = self.__dict__.get("specific")
        if specific is not None and hasattr(specific, name):
            return getattr(specific, name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"SOCKADDR_STORAGE({self.specific!r})"


SockaddrLike = SOCKADDR_IN | SOCKADDR_IN6 | SOCKADDR_STORAGE


def to_sockaddr(addr: Any) -> SockAddr:
    """A client's SOCKADDR_* (or a SockAddr) as the transport's SockAddr."""
    if isinstance(addr, SockAddr):
        return addr
    if isinstance(addr, SOCKADDR_STORAGE):
        if addr.specific is None:
            raise WskAddressError("SOCKADDR_STORAGE holds no address")
        return to_sockaddr(addr.specific)
    try:
        if isinstance(addr, SOCKADDR_IN) and addr.sin_family == AF_INET:
            return SockAddr(IPv4Address(bytes(addr.sin_addr)), addr.sin_port)
        if isinstance(addr, SOCKADDR_IN6) and addr.sin6_family == AF_INET6:
            return SockAddr(IPv6Address(bytes(addr.sin6_addr)), addr.sin6_port)
    except ValueError as exc:
        raise WskAddressError(str(exc)) from None
    raise WskAddressError(f"not a SOCKADDR_IN/SOCKADDR_IN6: {addr!r}")


def from_sockaddr(sa: SockAddr, family: int = AF_UNSPEC) -> SOCKADDR_IN | SOCKADDR_IN6:
    """The SOCKADDR a client of address family `family` sees (v4-mapped on AF_INET6 sockets)."""
    ip = sa.ip
    if family == AF_INET6 and ip.version == 4:
        ip = v4_mapped(ip)  # type: ignore[arg-type]
    elif family == AF_INET and ip.version == 6:
        ip = unmap(ip)
        if ip.version == 6:
            raise WskAddressError(f"{sa} does not fit a SOCKADDR_IN")
    if ip.version == 4:
        return SOCKADDR_IN(AF_INET, sa.port, ip.packed)
    return SOCKADDR_IN6(AF_INET6, sa.port, 0, ip.packed, 0)


def fill_sockaddr(target: Any, sa: SockAddr, family: int = AF_UNSPEC) -> None:
    """Write `sa` into the caller's buffer (C: the PSOCKADDR out parameter)."""
    if isinstance(target, SOCKADDR_STORAGE):
        target.specific = from_sockaddr(sa, family)
        target.ss_family = target.specific.sin_family if isinstance(target.specific, SOCKADDR_IN) \
            else target.specific.sin6_family
        return
    if isinstance(target, SOCKADDR_IN6):
        src = from_sockaddr(sa, AF_INET6)
        assert isinstance(src, SOCKADDR_IN6)
        target.sin6_family, target.sin6_port, target.sin6_addr = AF_INET6, src.sin6_port, src.sin6_addr
        target.sin6_flowinfo = target.sin6_scope_id = 0
        return
    if isinstance(target, SOCKADDR_IN):
        src4 = from_sockaddr(sa, AF_INET)
        assert isinstance(src4, SOCKADDR_IN)
        target.sin_family, target.sin_port, target.sin_addr = AF_INET, src4.sin_port, src4.sin_addr
        return
    if isinstance(target, Ref):
        target.value = from_sockaddr(sa, family)
        return
    raise WskAddressError(f"cannot store an address into {type(target).__name__}")


# --- name resolution ------------------------------------------------------------------------------

@dataclass(slots=True)
class ADDRINFOEXW:
    ai_flags: int = 0
    ai_family: int = AF_UNSPEC
    ai_socktype: int = 0
    ai_protocol: int = 0
    ai_addrlen: int = 0
    ai_canonname: str | None = None
    ai_addr: SOCKADDR_IN | SOCKADDR_IN6 | None = None
    ai_blob: Any = None
    ai_bloblen: int = 0
    ai_provider: Any = None
    ai_next: "ADDRINFOEXW | None" = None
    address: int = 0  # where the provider allocated it (freed by WskFreeAddressInfo)

    def __iter__(self):
        node: ADDRINFOEXW | None = self
        while node is not None:
            yield node
            node = node.ai_next


SOCKADDR_IN_SIZE = 16
SOCKADDR_IN6_SIZE = 28


@dataclass(slots=True, frozen=True)
class WSK_INSPECT_ID:
    """wsk.h: names one connection a WskInspectEvent was asked about (conditional accept)."""

    Key: int
    SerialNumber: int
