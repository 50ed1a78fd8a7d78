"""Two hosts on one scheduler, each with a netvmini adapter and a tiny test protocol bound to it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from stack.kernel.kernel import Kernel
from stack.kernel.machine import Machine
from stack.ndis import (NDIS_OPEN_PARAMETERS, NDIS_PROTOCOL_DRIVER_CHARACTERISTICS, NDIS_STATUS_SUCCESS,
                        NET_BUFFER_LIST_POOL_PARAMETERS, Adapter, NdisAllocateNetBufferList,
                        NdisAllocateNetBufferListPool, NdisFreeNetBufferList, NdisOpenAdapterEx,
                        NdisRegisterProtocolDriver, NdisRetreatNetBufferDataStart, NdisReturnNetBufferLists,
                        NdisSendNetBufferLists, install_nic)
from stack.nic import EmulatedNic, Link, NicOffloads

MAC_A = bytes.fromhex("02000000000a")
MAC_B = bytes.fromhex("02000000000b")


@dataclass
class TestProtocol:
    """Binds to its host's adapter; records what it receives and what completes."""

    kernel: Kernel
    copy_always: bool = False
    hold: bool = False  # keep indicated NBLs instead of returning them
    handle: Any = None
    open: Any = None
    pool: Any = None
    received: list[bytes] = field(default_factory=list)
    receive_flags: list[int] = field(default_factory=list)
    checksum_info: list[int] = field(default_factory=list)
    held: list[Any] = field(default_factory=list)
    source_handles: list[Any] = field(default_factory=list)  # SourceHandle of each NBL as indicated
    completed: list[int] = field(default_factory=list)
    pnp_events: list[int] = field(default_factory=list)
    status_indications: list[int] = field(default_factory=list)

    def bind(self, driver_context: Any, bind_context: Any, params: Any) -> int:
        status, self.open = NdisOpenAdapterEx(self.handle, self, NDIS_OPEN_PARAMETERS(), bind_context)
        return status

    def receive(self, ctx: Any, nbls: Any, port: int, count: int, flags: int) -> None:
        self.receive_flags.append(flags)
        for nbl in nbls.chain():
            self.received.append(nbl.FirstNetBuffer.data())
            self.source_handles.append(nbl.SourceHandle)
            self.checksum_info.append(nbl.NetBufferListInfo[0])
        if self.hold and not flags & 0x2:
            self.held.append(nbls)
        elif not flags & 0x2:
            NdisReturnNetBufferLists(self.open, nbls, 0)

    def send_complete(self, ctx: Any, nbls: Any, flags: int) -> None:
        for nbl in list(nbls.chain()):
            self.completed.append(nbl.Status)
            NdisFreeNetBufferList(nbl)

    def pnp(self, ctx: Any, notification: Any) -> int:
        self.pnp_events.append(notification.NetEvent)
        return NDIS_STATUS_SUCCESS

    def status(self, ctx: Any, indication: Any) -> None:
        self.status_indications.append(indication.StatusCode)

    def register(self) -> None:
        chars = NDIS_PROTOCOL_DRIVER_CHARACTERISTICS(
            Name="TESTPROTO", BindAdapterHandlerEx=self.bind, ReceiveNetBufferListsHandler=self.receive,
            SendNetBufferListsCompleteHandler=self.send_complete, NetPnPEventHandler=self.pnp,
            StatusHandlerEx=self.status)
        status, self.handle = NdisRegisterProtocolDriver(self, chars)
        assert status == NDIS_STATUS_SUCCESS
        self.pool = NdisAllocateNetBufferListPool(self.handle, NET_BUFFER_LIST_POOL_PARAMETERS(
            fAllocateNetBuffer=True, DataSize=0x11000, PoolTag="TstP"))

    def send(self, frame: bytes, info: dict[int, int] | None = None) -> Any:
        """Build one NBL over the pool's data buffer holding `frame` and send it (inside an event)."""
        nbl = NdisAllocateNetBufferList(self.pool)
        nb = nbl.FirstNetBuffer
        assert NdisRetreatNetBufferDataStart(nb, len(frame), 0) == NDIS_STATUS_SUCCESS
        pos = 0
        for view in nb.views():
            view[:] = frame[pos:pos + len(view)]
            pos += len(view)
        for index, value in (info or {}).items():
            nbl.NetBufferListInfo[index] = value
        NdisSendNetBufferLists(self.open, nbl, 0, 0)
        return nbl


@dataclass
class TwoHosts:
    machine: Machine
    nic_a: EmulatedNic
    nic_b: EmulatedNic
    adapter_a: Adapter
    adapter_b: Adapter
    link: Link
    proto_a: TestProtocol
    proto_b: TestProtocol

    @property
    def scheduler(self):
        return self.machine.scheduler

    def run(self) -> None:
        self.machine.scheduler.run_until_idle(max_events=200_000)
        assert self.machine.scheduler.halted is None, self.machine.scheduler.halted

    def send_a(self, frame: bytes, info: dict[int, int] | None = None) -> Any:
        return self.machine.run_in(self.proto_a.kernel, self.proto_a.send, frame, info)


def two_hosts(*, offloads_a: NicOffloads | None = None, offloads_b: NicOffloads | None = None,
              rx_ring_size: int = 64, latency_ns: int = 10_000, mtu: int = 1500,
              interrupt_moderation_ns: int = 0) -> TwoHosts:
    machine = Machine(seed=3, hosts=("hosta", "hostb"), memory_mb=16)
    ka, kb = machine.kernels["hosta"], machine.kernels["hostb"]
    nic_a, ad_a = install_nic(ka, MAC_A, rx_ring_size=rx_ring_size, offloads=offloads_a, mtu=mtu,
                             interrupt_moderation_ns=interrupt_moderation_ns)
    nic_b, ad_b = install_nic(kb, MAC_B, rx_ring_size=rx_ring_size, offloads=offloads_b, mtu=mtu,
                             interrupt_moderation_ns=interrupt_moderation_ns)
    link = Link(machine.scheduler, latency_ns=latency_ns, rng=random.Random(5))
    link.connect(nic_a, nic_b)
    pa, pb = TestProtocol(ka), TestProtocol(kb)
    machine.run_in(ka, pa.register)
    machine.run_in(kb, pb.register)
    hosts = TwoHosts(machine, nic_a, nic_b, ad_a, ad_b, link, pa, pb)
    hosts.run()
    assert pa.open is not None and pb.open is not None
    return hosts


def ethernet(dst: bytes, src: bytes, payload: bytes, ethertype: int = 0x88B5) -> bytes:
    return dst + src + ethertype.to_bytes(2, "big") + payload
