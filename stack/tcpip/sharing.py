"""Sharing transport addresses: what a second bind to a local address already in use gets.

MS Learn, "Sharing Transport Addresses" (Winsock Kernel): a socket may set SO_REUSEADDR or
SO_EXCLUSIVEADDRUSE before it binds (neither is set by default).  A second bind to a
transport address another socket holds succeeds or fails by the table below, keyed by each
socket's option and by whether it bound the wildcard address or a specific one:

    SUCCESS  the bind succeeds (STATUS_SUCCESS)
    INUSE    STATUS_ADDRESS_ALREADY_EXISTS
    DENIED   STATUS_ACCESS_DENIED
    CHECK    an access check of the second socket's security context against the first
             socket's security descriptor.  The default descriptor (no SecurityDescriptor
             given to WskSocket / no SO_WSK_SECURITY) does not let anybody else share the
             address: the same owner passes, another owner gets STATUS_ACCESS_DENIED.

Two different specific addresses never share anything, so such binds always succeed.  The
same rules hold for user-mode Winsock sockets (the AFD half), and for TCP and UDP alike
(each protocol has its own ports).  Sans-IO: bindings in, an NTSTATUS out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Hashable, Iterable

from stack.kernel.ntstatus import STATUS_ACCESS_DENIED, STATUS_ADDRESS_ALREADY_EXISTS, STATUS_SUCCESS


class Share(Enum):
    DEFAULT = "no socket options"
    REUSEADDR = "SO_REUSEADDR"
    EXCLUSIVE = "SO_EXCLUSIVEADDRUSE"


class Outcome(Enum):
    SUCCESS = "SUCCESS"
    INUSE = "INUSE"
    DENIED = "DENIED"
    CHECK = "CHECK"


S, I, D, C = Outcome.SUCCESS, Outcome.INUSE, Outcome.DENIED, Outcome.CHECK
_COLUMNS = ((Share.DEFAULT, True), (Share.DEFAULT, False), (Share.REUSEADDR, True), (Share.REUSEADDR, False),
            (Share.EXCLUSIVE, True), (Share.EXCLUSIVE, False))  # (first bind's option, wildcard?)

# (second bind's option, second is wildcard) -> outcome per first bind, in _COLUMNS order.
# Row for row the table of "Sharing Transport Addresses".
_ROWS: dict[tuple[Share, bool], tuple[Outcome, ...]] = {
    (Share.DEFAULT, True): (I, S, I, S, I, S),
    (Share.DEFAULT, False): (C, I, C, D, D, I),
    (Share.REUSEADDR, True): (D, S, S, S, D, S),
    (Share.REUSEADDR, False): (C, D, S, S, D, D),
    (Share.EXCLUSIVE, True): (I, I, I, I, I, I),
    (Share.EXCLUSIVE, False): (C, I, C, I, D, I),
}

SHARING_TABLE: dict[tuple[Share, bool, Share, bool], Outcome] = {
    (second, second_wild, first, first_wild): outcome
    for (second, second_wild), row in _ROWS.items()
    for (first, first_wild), outcome in zip(_COLUMNS, row)
}

STATUS_OF = {Outcome.SUCCESS: STATUS_SUCCESS, Outcome.INUSE: STATUS_ADDRESS_ALREADY_EXISTS,
             Outcome.DENIED: STATUS_ACCESS_DENIED}


@dataclass(eq=False, slots=True)
class Binding:
    """One bound socket's claim on a local transport address."""

    version: int  # 4 or 6
    ip: bytes | None  # None: the wildcard (unspecified) address
    port: int
    share: Share = Share.DEFAULT
    owner: Hashable = "System"  # the security context (OwningProcess, or the creating process)
    dual_stack: bool = False  # an IPv6 wildcard that also takes IPv4 (IPV6_V6ONLY off)
    what: object = field(default=None, repr=False)  # the endpoint, for whoever lists the table

    @property
    def wildcard(self) -> bool:
        return self.ip is None

    def overlaps(self, other: "Binding") -> bool:
        """Both claim some common address on the port."""
        if self.port != other.port:
            return False
        if self.version == other.version:
            return self.ip is None or other.ip is None or self.ip == other.ip
        v4, v6 = (self, other) if self.version == 4 else (other, self)
        return v6.dual_stack  # an IPv6 wildcard taking IPv4 covers every IPv4 address


def outcome(second: Binding, first: Binding) -> Outcome:
    """The table cell for `second` binding after `first`, the access check resolved."""
    cell = SHARING_TABLE[(second.share, second.wildcard, first.share, first.wildcard)]
    if cell is Outcome.CHECK:
        # The default security descriptor grants its owner only.
        return Outcome.SUCCESS if second.owner == first.owner else Outcome.DENIED
    return cell


def bind_status(second: Binding, existing: Iterable[Binding]) -> int:
    """STATUS_SUCCESS, or the first refusal the overlapping bindings give (in bind order)."""
    for first in existing:
        if first is second or not second.overlaps(first):
            continue
        result = outcome(second, first)
        if result is not Outcome.SUCCESS:
            return STATUS_OF[result]
    return STATUS_SUCCESS


class BindTable:
    """The bound addresses of one protocol (TCP or UDP), by port."""

    def __init__(self) -> None:
        self._by_port: dict[int, list[Binding]] = {}

    def bind(self, binding: Binding) -> int:
        """Add `binding` if the table allows it; returns the NTSTATUS of the bind."""
        group = self._by_port.get(binding.port, ())
        status = bind_status(binding, group)
        if status == STATUS_SUCCESS:
            self._by_port.setdefault(binding.port, []).append(binding)
        return status

    def release(self, binding: Binding | None) -> None:
        if binding is None:
            return
        group = self._by_port.get(binding.port)
        if group and binding in group:
            group.remove(binding)  # per port: a handful of bindings at most
            if not group:
                del self._by_port[binding.port]

    def in_use(self, port: int) -> bool:
        return port in self._by_port

    def bindings(self, port: int) -> list[Binding]:
        return list(self._by_port.get(port, ()))
