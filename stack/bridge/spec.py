"""`--forward` specifications: ``[LISTEN_ADDR:]PORT=TARGET_HOST:PORT``.

    127.0.0.1:8080=winsrv:80      listen on IPv4 loopback
    [::1]:8080=winsrv:80          listen on IPv6 loopback (the target's IPv6 address is used)
    8080=winsrv:40007             no address: loopback (127.0.0.1), never all interfaces
    127.0.0.1:0=winsrv:80         listen port 0: any free port (see ForwardHost.bound_addresses)
    0.0.0.0:8080=10.0.0.1:80      any other listen address only when written out
    127.0.0.1:8086=[fd00::1]:80   a literal target address picks the family itself

A target given by name connects over the family of the listen address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DEFAULT_LISTEN = "127.0.0.1"


class ForwardSpecError(ValueError):
    """A --forward argument that cannot be understood (says which part and why)."""


def _split_host_port(text: str, what: str, *, allow_zero: bool = False) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ForwardSpecError(f"{what} {text!r}: write an IPv6 address as [ADDR]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ForwardSpecError(f"{what} {text!r}: expected HOST:PORT")
        if ":" in host:
            raise ForwardSpecError(f"{what} {text!r}: write an IPv6 address as [ADDR]:PORT")
    if not host:
        raise ForwardSpecError(f"{what} {text!r}: the host is missing")
    return host, _port(port_text, what, text, allow_zero=allow_zero)


def _port(port_text: str, what: str, text: str, *, allow_zero: bool = False) -> int:
    if not port_text.isdigit():
        raise ForwardSpecError(f"{what} {text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ForwardSpecError(f"{what} {text!r}: port {port} is not {0 if allow_zero else 1}..65535")
    return port


@dataclass(frozen=True, slots=True)
class ForwardSpec:
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int

    @classmethod
    def parse(cls, text: str) -> "ForwardSpec":
        if not isinstance(text, str) or "=" not in text:
            raise ForwardSpecError(f"forward {text!r}: expected [LISTEN_ADDR:]PORT=HOST:PORT")
        left, _, right = text.partition("=")
        left = left.strip()
        if left.isdigit():
            listen_host, listen_port = DEFAULT_LISTEN, _port(left, "listen address", left, allow_zero=True)
        else:
            listen_host, listen_port = _split_host_port(left, "listen address", allow_zero=True)
            try:
                ipaddress.ip_address(listen_host)
            except ValueError:
                if listen_host != "localhost":
                    raise ForwardSpecError(f"listen address {left!r}: {listen_host!r} is not an IP address") from None
                listen_host = DEFAULT_LISTEN
        target_host, target_port = _split_host_port(right, "target")
        return cls(listen_host, listen_port, target_host, target_port)

    @property
    def listen_family_v6(self) -> bool:
        return ":" in self.listen_host

    def target_literal(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.target_host)
        except ValueError:
            return None

    def __str__(self) -> str:
        listen = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        target = f"[{self.target_host}]" if ":" in self.target_host else self.target_host
        return f"{listen}:{self.listen_port}={target}:{self.target_port}"
