"""Putting a NIC into a host: `install_nic` loads ndis + netvmini and starts the adapter."""

from __future__ import annotations

from stack.kernel.io import IoLoadDriver
from stack.kernel.kernel import Kernel
from stack.nic.nic import EmulatedNic, NicOffloads

from .constants import MINIPORT_STATE_FAILED, MINIPORT_STATE_RUNNING
from .miniport import Adapter, start_adapter
from .netvmini import NETVMINI_IMAGE
from .state import NdisState, ndis_state

__all__ = ["install_nic", "ndis_state", "NdisState"]


def install_nic(kernel: Kernel, mac: bytes, *, name: str | None = None, mtu: int = 1500,
                link_speed_bps: int = 1_000_000_000, offloads: NicOffloads | None = None,
                tx_ring_size: int = 256, rx_ring_size: int = 256, interrupt_moderation_ns: int = 0,
                run: bool = True) -> tuple[EmulatedNic, Adapter]:
    """Plug a NIC into `kernel` and bring its netvmini adapter up.

    Loads netvmini (IoLoadDriver: DriverEntry registers the miniport) the
    first time; NDIS then starts the adapter (MiniportInitializeEx,
    MiniportRestart) and binds registered protocols, each as scheduler
    events.  With `run` the scheduler runs until the adapter is Running
    (or failed); otherwise the caller runs it.
    """
    state = ndis_state(kernel)
    index = state.next_adapter_index
    state.next_adapter_index += 1
    nic = EmulatedNic(kernel, mac, name=name or f"nic{index - 1}", mtu=mtu, link_speed_bps=link_speed_bps,
                      tx_ring_size=tx_ring_size, rx_ring_size=rx_ring_size, offloads=offloads,
                      interrupt_moderation_ns=interrupt_moderation_ns)
    adapter = Adapter(state, nic, NETVMINI_IMAGE.name, index)
    state.adapters.append(adapter)
    if state.miniport_driver(NETVMINI_IMAGE.name) is not None:
        start_adapter(adapter)
    elif NETVMINI_IMAGE.name not in kernel.drivers:
        IoLoadDriver(kernel, NETVMINI_IMAGE)  # DriverEntry's registration starts the waiting adapters
    if run:
        kernel.scheduler.run_while(lambda: adapter.state_name not in (MINIPORT_STATE_RUNNING, MINIPORT_STATE_FAILED)
                                   and kernel.scheduler.halted is None)
    return nic, adapter
