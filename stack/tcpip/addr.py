"""Socket addresses (SOCKADDR_IN / SOCKADDR_IN6 as one record) and address helpers."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

AF_INET = 2
AF_INET6 = 23  # the Windows value
AF_UNSPEC = 0

IpAddress = IPv4Address | IPv6Address

IPV4_ANY = IPv4Address(0)
IPV6_ANY = IPv6Address(0)


class AddressError(ValueError):
    """A socket address that cannot be used (bad text, port out of range, wrong family)."""


@dataclass(frozen=True, slots=True)
class SockAddr:
    """An IP address and a port.  `SockAddr.parse("10.0.0.1:7")`, `SockAddr.parse("[fd00::1]:7")`."""

    ip: IpAddress
    port: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.ip, (IPv4Address, IPv6Address)):
            try:
                object.__setattr__(self, "ip", ip_address(self.ip))
            except ValueError as exc:
                raise AddressError(str(exc)) from None
        if not isinstance(self.port, int) or not 0 <= self.port <= 0xFFFF:
            raise AddressError(f"port {self.port!r} is not 0..65535")

    @property
    def family(self) -> int:
        return AF_INET if self.ip.version == 4 else AF_INET6

    @property
    def packed(self) -> bytes:
        return self.ip.packed

    @property
    def is_unspecified(self) -> bool:
        return self.ip.is_unspecified

    def with_port(self, port: int) -> "SockAddr":
        return SockAddr(self.ip, port)

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"

    @classmethod
    def parse(cls, text: str, default_port: int = 0) -> "SockAddr":
        text = text.strip()
        try:
            if text.startswith("["):
                host, _, rest = text[1:].partition("]")
                port = int(rest[1:]) if rest.startswith(":") else default_port
                return cls(IPv6Address(host), port)
            if text.count(":") == 1:
                host, _, port_text = text.partition(":")
                return cls(IPv4Address(host), int(port_text))
            return cls(ip_address(text), default_port)
        except ValueError as exc:
            raise AddressError(f"not a socket address: {text!r} ({exc})") from None


def any_address(family: int, port: int = 0) -> SockAddr:
    return SockAddr(IPV4_ANY if family == AF_INET else IPV6_ANY, port)


def v4_mapped(address: IPv4Address) -> IPv6Address:
    """::ffff:a.b.c.d, how a dual-stack socket sees an IPv4 peer."""
    return IPv6Address(b"\x00" * 10 + b"\xff\xff" + address.packed)


def unmap(address: IpAddress) -> IpAddress:
    """The IPv4 address inside ::ffff:a.b.c.d, else the address itself."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
