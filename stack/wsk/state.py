"""Per-kernel WSK state: the NMR's client registrations and the provider's socket registry.

`k.extensions["wsk.nmr"]` exists as soon as a client registers (registration does not need
the provider); `k.extensions["wsk"]` is the `WskProvider`, present while wskprov is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stack.kernel import KEVENT, NotificationEvent, KeSetEvent
from stack.kernel.kernel import Kernel

if TYPE_CHECKING:
    from .socket import WskSocketObject
    from .structs import WSK_CLIENT_NPI, WSK_REGISTRATION


@dataclass(slots=True, eq=False)
class WskClient:
    """One WskRegister: what WSK_PROVIDER_NPI.Client points at (PWSK_CLIENT)."""

    npi: "WSK_CLIENT_NPI"
    registration: "WSK_REGISTRATION"
    owner: str  # the registering driver's module
    captures: int = 0
    static_event_mask: int = 0
    sockets: set[int] = field(default_factory=set)  # socket addresses owned by this client
    sockets_ever: int = 0
    deregistering: bool = False
    deregistered: KEVENT = field(default_factory=lambda: KEVENT(NotificationEvent, False))

    @property
    def quiescent(self) -> bool:
        return self.captures == 0 and not self.sockets

    def maybe_finish_deregistration(self) -> None:
        if self.deregistering and self.quiescent and not self.deregistered.signaled:
            KeSetEvent(self.deregistered, 0, False)


@dataclass(slots=True, eq=False)
class WskNmr:
    """The Network Module Registrar's view for WSK on one kernel."""

    clients: list[WskClient] = field(default_factory=list)
    provider: "WskProvider | None" = None
    provider_ready: KEVENT = field(default_factory=lambda: KEVENT(NotificationEvent, False))


def nmr(k: Kernel) -> WskNmr:
    state = k.extensions.get("wsk.nmr")
    if state is None:
        state = k.extensions["wsk.nmr"] = WskNmr()
    return state


class WskProvider:
    """The loaded wskprov driver's state on one kernel."""

    def __init__(self, k: Kernel, driver: Any, device: Any, dispatch: Any) -> None:
        self.kernel = k
        self.driver = driver
        self.device = device
        self.dispatch = dispatch  # WSK_PROVIDER_DISPATCH
        self.socket_dispatch: dict[int, Any] = {}  # socket category -> WSK_PROVIDER_*_DISPATCH
        self.sockets: dict[int, "WskSocketObject"] = {}
        self.sockets_created = 0
        self.indications = 0
        self.indication_bytes = 0
        self.zero_copy_indications = 0

    @property
    def transport(self) -> Any:
        from stack.tcpip.transport import get_transport
        return get_transport(self.kernel)


def get_provider(k: Kernel) -> WskProvider | None:
    return k.extensions.get("wsk")


@dataclass(frozen=True, slots=True)
class WskSocketInfo:
    """One row of the socket registry (what a `!wsk` command lists)."""

    address: int
    category: str
    state: str
    family: int
    local: str
    remote: str
    owner: str
    client_context: int
    event_mask: int
    bytes_sent: int
    bytes_received: int


def wsk_sockets(k: Kernel) -> list[WskSocketInfo]:
    """Every open WSK socket on this kernel, oldest first."""
    provider = get_provider(k)
    if provider is None:
        return []
    return [s.info() for s in provider.sockets.values()]
