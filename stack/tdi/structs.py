"""TDI structures (tdi.h, tdikrnl.h): transport addresses, connection information,
the extended attribute ZwCreateFile takes, and the Parameters of each TDI request.

Addresses travel as packed bytes, as in C (a TRANSPORT_ADDRESS is a counted list of
TA_ADDRESS entries, ports in network order).  The request parameter blocks are what
TdiBuild* puts in the next stack location; `arguments()` gives `!irp` its Args.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Callable

from stack.tcpip.addr import SockAddr

from .constants import TDI_ADDRESS_LENGTH_IP, TDI_ADDRESS_LENGTH_IP6, TDI_ADDRESS_TYPE_IP, TDI_ADDRESS_TYPE_IP6


class TdiAddressError(ValueError):
    """A TRANSPORT_ADDRESS that does not parse (tdx answers STATUS_INVALID_ADDRESS_COMPONENT)."""


def TRANSPORT_ADDRESS(address: SockAddr | str) -> bytes:
    """A TRANSPORT_ADDRESS with one TA_ADDRESS (TA_IP_ADDRESS or TA_IP6_ADDRESS) for `address`."""
    sa = SockAddr.parse(address) if isinstance(address, str) else address
    if sa.ip.version == 4:
        body = struct.pack(">H", sa.port) + sa.ip.packed + bytes(8)  # sin_port, in_addr, sin_zero
        return struct.pack("<iHH", 1, TDI_ADDRESS_LENGTH_IP, TDI_ADDRESS_TYPE_IP) + body
    body = struct.pack(">H", sa.port) + bytes(4) + sa.ip.packed + bytes(4)  # port, flowinfo, addr, scope
    return struct.pack("<iHH", 1, TDI_ADDRESS_LENGTH_IP6, TDI_ADDRESS_TYPE_IP6) + body


def parse_transport_address(data: bytes | bytearray | memoryview) -> SockAddr:
    """The first IP or IPv6 TA_ADDRESS of a TRANSPORT_ADDRESS."""
    raw = bytes(data)
    if len(raw) < 8:
        raise TdiAddressError("TRANSPORT_ADDRESS shorter than its header")
    count, = struct.unpack_from("<i", raw, 0)
    offset = 4
    for _ in range(max(count, 0)):
        if offset + 4 > len(raw):
            break
        length, kind = struct.unpack_from("<HH", raw, offset)
        body = raw[offset + 4:offset + 4 + length]
        if len(body) < length:
            break
        if kind == TDI_ADDRESS_TYPE_IP and length >= TDI_ADDRESS_LENGTH_IP:
            return SockAddr(IPv4Address(body[2:6]), struct.unpack(">H", body[:2])[0])
        if kind == TDI_ADDRESS_TYPE_IP6 and length >= TDI_ADDRESS_LENGTH_IP6:
            return SockAddr(IPv6Address(body[6:22]), struct.unpack(">H", body[:2])[0])
        offset += 4 + length
    raise TdiAddressError("no TDI_ADDRESS_TYPE_IP or TDI_ADDRESS_TYPE_IP6 entry")


@dataclass(slots=True)
class FILE_FULL_EA_INFORMATION:
    """One extended attribute: EaName TdiTransportAddress (value: TRANSPORT_ADDRESS bytes) or
    TdiConnectionContext (value: the client's CONNECTION_CONTEXT, any object)."""

    EaName: str
    EaValue: Any
    NextEntryOffset: int = 0
    Flags: int = 0

    @property
    def EaNameLength(self) -> int:
        return len(self.EaName)


@dataclass(slots=True)
class TDI_CONNECTION_INFORMATION:
    """Request/return connection information: RemoteAddress is TRANSPORT_ADDRESS bytes."""

    UserDataLength: int = 0
    UserData: Any = None
    OptionsLength: int = 0
    Options: Any = None
    RemoteAddressLength: int = 0
    RemoteAddress: bytes | None = None
    address: int = 0  # where a C client would have it (0: a Python-side block)

    @classmethod
    def for_address(cls, address: SockAddr | str) -> "TDI_CONNECTION_INFORMATION":
        raw = TRANSPORT_ADDRESS(address)
        return cls(RemoteAddressLength=len(raw), RemoteAddress=raw)

    def remote(self) -> SockAddr:
        if self.RemoteAddress is None:
            raise TdiAddressError("no RemoteAddress")
        return parse_transport_address(self.RemoteAddress)


@dataclass(slots=True)
class TDI_PROVIDER_INFO:
    Version: int = 0x0200
    MaxSendSize: int = 0
    MaxConnectionUserData: int = 0
    MaxDatagramSize: int = 0
    ServiceFlags: int = 0
    MinimumLookaheadData: int = 1
    MaximumLookaheadData: int = 0xFFFF
    NumberOfResources: int = 0
    StartTime: int = 0


@dataclass(slots=True)
class TDI_ADDRESS_INFO:
    ActivityCount: int
    Address: bytes  # TRANSPORT_ADDRESS


@dataclass(slots=True)
class TDI_CONNECTION_INFO:
    State: int = 0
    Event: int = 0
    TransmittedTsdus: int = 0
    ReceivedTsdus: int = 0
    TransmissionErrors: int = 0
    ReceiveErrors: int = 0
    Throughput: int = 0
    Delay: int = 0
    SendBufferSize: int = 0
    ReceiveBufferSize: int = 0
    Unreliable: bool = False


# --- the Parameters of each request (the TDI_REQUEST_KERNEL_* unions) ------------------------------

def _addr(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return getattr(value, "address", 0) or 0


@dataclass(slots=True)
class TDI_REQUEST_KERNEL_ASSOCIATE:
    AddressHandle: int
    AddressObject: Any = None  # tdx fills it from the handle (ObReferenceObjectByHandle)

    def arguments(self) -> tuple[int, ...]:
        return (self.AddressHandle, _addr(self.AddressObject))


@dataclass(slots=True)
class TDI_REQUEST_KERNEL:
    """TDI_CONNECT, TDI_LISTEN, TDI_ACCEPT, TDI_DISCONNECT (and TDI_DISASSOCIATE_ADDRESS, empty)."""

    RequestFlags: int = 0
    RequestConnectionInformation: TDI_CONNECTION_INFORMATION | None = None
    ReturnConnectionInformation: TDI_CONNECTION_INFORMATION | None = None
    RequestSpecific: Any = None  # TDI_CONNECT / TDI_DISCONNECT: the timeout (100 ns units) or None

    def arguments(self) -> tuple[int, ...]:
        return (self.RequestFlags, _addr(self.RequestConnectionInformation),
                _addr(self.ReturnConnectionInformation), 0)


@dataclass(slots=True)
class TDI_REQUEST_KERNEL_SEND:
    SendLength: int
    SendFlags: int = 0

    def arguments(self) -> tuple[int, ...]:
        return (self.SendLength, self.SendFlags)


@dataclass(slots=True)
class TDI_REQUEST_KERNEL_RECEIVE:
    ReceiveLength: int
    ReceiveFlags: int = 0

    def arguments(self) -> tuple[int, ...]:
        return (self.ReceiveLength, self.ReceiveFlags)


@dataclass(slots=True)
class TDI_REQUEST_KERNEL_SENDDG:
    SendLength: int
    SendDatagramInformation: TDI_CONNECTION_INFORMATION | None

    def arguments(self) -> tuple[int, ...]:
        return (self.SendLength, _addr(self.SendDatagramInformation))


@dataclass(slots=True)
class TDI_REQUEST_KERNEL_RECEIVEDG:
    ReceiveLength: int
    ReceiveDatagramInformation: TDI_CONNECTION_INFORMATION | None
    ReturnDatagramInformation: TDI_CONNECTION_INFORMATION | None
    ReceiveFlags: int = 0

    def arguments(self) -> tuple[int, ...]:
        return (self.ReceiveLength, _addr(self.ReceiveDatagramInformation),
                _addr(self.ReturnDatagramInformation), self.ReceiveFlags)


@dataclass(slots=True)
class TDI_REQUEST_KERNEL_SET_EVENT:
    EventType: int
    EventHandler: Callable[..., int] | None
    EventContext: Any

    def arguments(self) -> tuple[int, ...]:
        from stack.kernel import current_kernel, symbol_of
        handler = 0
        if self.EventHandler is not None:
            try:
                handler = current_kernel().symbol_address(symbol_of(self.EventHandler))
            except Exception:  # a handler without a kernel symbol: no address to print
                handler = 0
        return (self.EventType, handler, _addr(self.EventContext))


@dataclass(slots=True)
class TDI_REQUEST_KERNEL_QUERY_INFORMATION:
    QueryType: int
    RequestConnectionInformation: TDI_CONNECTION_INFORMATION | None = None

    def arguments(self) -> tuple[int, ...]:
        return (self.QueryType, _addr(self.RequestConnectionInformation))


def sockaddr_of(address: str) -> SockAddr:
    """'10.0.0.1:80' or '[fd00::1]:80' -> SockAddr (a convenience for callers and tests)."""
    return SockAddr.parse(address)


_ = ip_address
