"""Per-kernel NDIS state: adapters, protocols, opens, pools and the NBL ownership log.

Lives in ``kernel.extensions["ndis"]``; `ndis_state(kernel)` creates it (and
maps the ndis.sys image) on first use.  This is what the `!ndiskd`
commands enumerate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stack.kernel.kernel import Kernel

from .ownership import NblOwnershipLog

if TYPE_CHECKING:
    from .miniport import Adapter, MiniportDriver
    from .nbl import NbPool, NblPool
    from .protocol import NdisOpen, NdisProtocol

NDIS_IMAGE_SIZE = 0x150000


class NdisState:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.adapters: list["Adapter"] = []
        self.miniport_drivers: list["MiniportDriver"] = []
        self.protocols: list["NdisProtocol"] = []
        self.opens: list["NdisOpen"] = []
        self.nbl_pools: list["NblPool"] = []
        self.nb_pools: list["NbPool"] = []
        self.ownership = NblOwnershipLog(kernel)
        self.owner_name = "ndis"
        self.ndis_state = self
        self.next_adapter_index = 1  # NDIS interface index of the next adapter

    @property
    def nbl_log(self):
        return self.ownership.entries

    def pending_nbls(self) -> list[tuple[Any, str]]:
        """(NBL, holder) for each NBL a miniport or a protocol holds now (!ndiskd.pendingnbls)."""
        return self.ownership.pending()

    def nbl_history(self, nbl_address: int):
        return self.ownership.history(nbl_address)

    def adapter_by_name(self, name: str) -> "Adapter | None":
        lname = name.lower()
        for a in self.adapters:
            if lname in (a.name.lower(), a.ifname.lower(), a.description.lower(), a.nic.name.lower()):
                return a
        return None

    def miniport_driver(self, name: str) -> "MiniportDriver | None":
        for d in self.miniport_drivers:
            if d.name.lower() == name.lower():
                return d
        return None


def ndis_state(kernel: Kernel) -> NdisState:
    """The NDIS state of a kernel (created, with the ndis module mapped, on first use)."""
    state = kernel.extensions.get("ndis")
    if state is None:
        kernel.load_module("ndis", "ndis.sys", size=NDIS_IMAGE_SIZE)
        state = NdisState(kernel)
        kernel.extensions["ndis"] = state
    return state


def ndis_state_of_handle(handle: Any) -> NdisState:
    """The NDIS state behind any NDIS handle (protocol, open, adapter, driver, pool) or a Kernel."""
    state = getattr(handle, "ndis_state", None)
    if isinstance(state, NdisState):
        return state
    if isinstance(handle, Kernel):
        return ndis_state(handle)
    from stack.kernel.symbols import current_kernel
    return ndis_state(current_kernel())
