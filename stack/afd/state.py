"""afd.sys's WSK provider state on one kernel: the attached clients and the socket registry.

`k.extensions["wsk"]` is the `WskProvider` while afd is loaded.  Each client the NMR
attaches (stack.wsk.netio) gets an entry in nonpaged pool, linked on the list whose head is
the global `afd!AfdWskClientListHead` in afd's data section, so the debugger walks it as on
Windows:

    r $t0 = afd!AfdWskClientListHead ; .for( r $t1 = poi(@$t0) ; (@$t1 != @$t0) ;
          r $t1 = poi(@$t1) ) { dps @$t1+5*@$ptrsize L1}

(CodeMachine, "Finding Windows Socket Kernel (WSK) Clients", verbatim.)

Entry layout (afd's own structure is private; the emulator keeps what the published recipes
read): +0x00 Flink, +0x08 Blink, +0x10 the client's WSK_REGISTRATION, +0x18 its
ClientContext, +0x20 reserved (zero), +0x28 its WSK_CLIENT_DISPATCH pointer (`@$t1+5*@$ptrsize`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stack.kernel.kernel import Kernel
from stack.kernel.memory import PAGE_SIZE
from stack.kernel.pool import NonPagedPoolNx
from stack.wsk.netio import WskClient

if TYPE_CHECKING:
    from .socket import WskSocketObject

AFD_WSK_CLIENT_TAG = "AfdW"
AFD_WSK_CLIENT_SIZE = 0x40
CLIENT_DISPATCH_SLOT = 5  # pointer-sized slot of the entry holding the client's dispatch pointer


def client_dispatch_address(k: Kernel, client: WskClient) -> int:
    """Where the client's WSK_CLIENT_DISPATCH lives: a global of the client's image."""
    dispatch = client.npi.Dispatch
    symbol = getattr(dispatch, "symbol", "") or f"{client.owner}!WskClientDispatch"
    return k.symbol_address(symbol)


class AfdDataSection:
    """afd's globals at real addresses: one page mapped inside the afd image (its .data)."""

    def __init__(self, k: Kernel, module: str) -> None:
        mod = k.module(module)
        assert mod is not None, "afd's image is mapped before its DriverEntry runs"
        self.kernel = k
        self.base = mod.base + mod.size // 2 - PAGE_SIZE  # past the routines, below hashed names
        self.pfn = k.phys.allocate_zeroed(1, "afd .data")[0]
        k.mem.map_page(self.base, self.pfn)
        self.list_head = self.base  # afd!AfdWskClientListHead (a LIST_ENTRY)
        mod.symbols["AfdWskClientListHead"] = self.list_head
        k.mem.write_u64(self.list_head, self.list_head)  # InitializeListHead
        k.mem.write_u64(self.list_head + 8, self.list_head)

    def release(self) -> None:
        self.kernel.mem.unmap_page(self.base)
        self.kernel.phys.free(self.pfn)

    # -- LIST_ENTRY operations on emulated memory (InsertTailList / RemoveEntryList) --------
    def insert_tail(self, entry: int) -> None:
        mem = self.kernel.mem
        head = self.list_head
        blink = mem.read_u64(head + 8)
        mem.write_u64(entry, head)
        mem.write_u64(entry + 8, blink)
        mem.write_u64(blink, entry)
        mem.write_u64(head + 8, entry)

    def remove(self, entry: int) -> None:
        mem = self.kernel.mem
        flink, blink = mem.read_u64(entry), mem.read_u64(entry + 8)
        mem.write_u64(blink, flink)
        mem.write_u64(flink + 8, blink)


class WskProvider:
    """afd.sys as the WSK provider on one kernel."""

    def __init__(self, k: Kernel, driver: Any, device: Any, dispatch: Any, data: AfdDataSection) -> None:
        self.kernel = k
        self.driver = driver
        self.device = device  # \Device\Afd: the device object of every stack location afd takes
        self.dispatch = dispatch  # WSK_PROVIDER_DISPATCH
        self.data = data
        self.clients: list[WskClient] = []  # attached, in afd!AfdWskClientListHead order
        self.socket_dispatch: dict[int, Any] = {}  # socket category -> WSK_PROVIDER_*_DISPATCH
        self.sockets: dict[int, "WskSocketObject"] = {}
        self.sockets_created = 0
        self.indications = 0
        self.indication_bytes = 0
        self.zero_copy_indications = 0
        self.handovers = 0  # connections given to a user-mode listener (handover.py, lab-only)
        self.handover_bytes = 0  # unread bytes that went with them

    # -- the NMR attaches and detaches clients (stack.wsk.netio) -----------------------------
    def attach_client(self, client: WskClient) -> None:
        k = self.kernel
        entry = k.pool.allocate(NonPagedPoolNx, AFD_WSK_CLIENT_SIZE, AFD_WSK_CLIENT_TAG, owner="afd!WskProAttachClient")
        mem = k.mem
        mem.write_u64(entry + 0x10, getattr(client.registration, "address", 0) or 0)
        context = client.npi.ClientContext
        mem.write_u64(entry + 0x18, context if isinstance(context, int) else getattr(context, "address", 0) or 0)
        mem.write_u64(entry + 8 * CLIENT_DISPATCH_SLOT, client_dispatch_address(k, client))
        self.data.insert_tail(entry)
        client.entry = entry
        self.clients.append(client)

    def detach_client(self, client: WskClient) -> None:
        if client.entry == 0:
            return
        self.data.remove(client.entry)
        self.kernel.pool.free(client.entry, AFD_WSK_CLIENT_TAG)
        client.entry = 0
        if client in self.clients:
            self.clients.remove(client)

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
