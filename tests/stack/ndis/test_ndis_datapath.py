"""Two hosts exchanging NBLs through NDIS, netvmini, the NICs and a link."""

from __future__ import annotations

from ndis_harness import MAC_A, MAC_B, ethernet, two_hosts
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from stack.kernel.irql import DISPATCH_LEVEL
from stack.ndis import (NDIS_RECEIVE_FLAGS_RESOURCES, NdisAllocateNetBufferList, NdisMIndicateReceiveNetBufferLists, NDIS_STATUS_INVALID_LENGTH, NDIS_STATUS_PAUSED,
                        NDIS_STATUS_SUCCESS, NDIS_CSUM_RX_IP_SUCCEEDED, NDIS_CSUM_RX_TCP_FAILED,
                        NDIS_CSUM_RX_TCP_SUCCEEDED, TcpIpChecksumNetBufferListInfo, TcpLargeSendNetBufferListInfo,
                        csum_tx_info, lso_v2_info, ndis_pause_adapter, ndis_restart_adapter, ndis_state)
from stack.nic import NicOffloads


def test_frame_sent_by_one_protocol_is_received_by_the_other():
    h = two_hosts()
    frame = ethernet(MAC_B, MAC_A, bytes(range(100)))
    h.send_a(frame)
    h.run()
    assert h.proto_b.received == [frame]
    assert h.proto_a.completed == [NDIS_STATUS_SUCCESS]
    assert h.adapter_a.counters.frames_out == 1 and h.adapter_b.counters.frames_in == 1


def test_nbl_ownership_log_shows_full_life_cycle_and_nothing_left_pending():
    h = two_hosts()
    nbl = h.send_a(ethernet(MAC_B, MAC_A, b"x" * 60))
    h.run()
    sent = [e.event for e in ndis_state(h.proto_a.kernel).nbl_history(nbl.address)]
    assert sent[-6:] == ["Allocated", "ProtocolSent", "SentToMiniport", "MiniportSendCompleted", "SendCompleted",
                         "Freed"]
    state_b = ndis_state(h.proto_b.kernel)
    indicated = [e for e in state_b.nbl_log if e.event == "Indicated"]
    assert len(indicated) == 1
    rx_events = [e.event for e in state_b.nbl_history(indicated[0].nbl)]
    assert rx_events[-3:] == ["Indicated", "ProtocolReturned", "ReturnedToMiniport"]
    assert rx_events[-1] == "ReturnedToMiniport" and state_b.nbl_history(indicated[0].nbl)[-1].owner == "netvmini"
    assert ndis_state(h.proto_a.kernel).pending_nbls() == []
    assert state_b.pending_nbls() == []
    assert h.adapter_a.nbls_pending == 0 and h.adapter_b.nbls_pending == 0


def test_nbl_held_by_protocol_is_pending_until_returned():
    h = two_hosts()
    h.proto_b.hold = True
    h.send_a(ethernet(MAC_B, MAC_A, b"y" * 60))
    h.run()
    state_b = ndis_state(h.proto_b.kernel)
    pending = state_b.pending_nbls()
    assert len(pending) == 1 and pending[0][1] == "TESTPROTO"
    from stack.ndis import NdisReturnNetBufferLists
    h.machine.run_in(h.proto_b.kernel, NdisReturnNetBufferLists, h.proto_b.open, h.proto_b.held.pop(), 0)
    assert state_b.pending_nbls() == []


def test_receive_indication_runs_in_the_miniport_dpc_at_dispatch_level():
    h = two_hosts()
    seen: list[tuple[int, list[str]]] = []
    original = h.proto_b.receive

    def spy(*args):
        k = h.proto_b.kernel
        seen.append((k.irql, [f.symbol for f in k.frames]))
        original(*args)

    h.adapter_b.opens[0].protocol.characteristics.ReceiveNetBufferListsHandler = spy
    h.send_a(ethernet(MAC_B, MAC_A, b"z" * 60))
    h.run()
    assert seen == [(DISPATCH_LEVEL, ["nt!KiIdleLoop", "nt!KiRetireDpcList", "ndis!ndisMiniportDpc",
                                      "netvmini!MPInterruptDPC", "ndis!NdisMIndicateReceiveNetBufferLists"])]


def test_interrupt_moderation_drains_a_burst_in_one_dpc():
    h = two_hosts(latency_ns=0, interrupt_moderation_ns=50_000)
    for i in range(8):
        h.send_a(ethernet(MAC_B, MAC_A, bytes([i]) * 60))
    h.run()
    assert len(h.proto_b.received) == 8
    assert h.adapter_b.counters.dpcs == 1
    assert h.nic_b.counters.interrupts == h.adapter_b.counters.interrupts


def test_low_receive_buffers_indicate_with_resources_flag_and_buffers_come_straight_back():
    h = two_hosts(rx_ring_size=8)
    h.proto_b.hold = True  # buffers run out unless the flag makes NDIS give them back
    for i in range(12):
        h.send_a(ethernet(MAC_B, MAC_A, bytes([i]) * 60))
        h.run()
    flagged = [f for f in h.proto_b.receive_flags if f & NDIS_RECEIVE_FLAGS_RESOURCES]
    assert flagged
    assert len(h.proto_b.received) == 12
    assert h.adapter_b.counters.low_resource_indications == len(flagged)


def test_send_while_paused_completes_with_ndis_status_paused_and_restart_resumes():
    h = two_hosts()
    ndis_pause_adapter(h.adapter_a)
    h.run()
    assert h.adapter_a.state_name == "Paused"
    assert h.proto_a.pnp_events == [0x0F]
    h.send_a(ethernet(MAC_B, MAC_A, b"p" * 60))
    h.run()
    assert h.proto_a.completed == [NDIS_STATUS_PAUSED]
    assert h.proto_b.received == []
    ndis_restart_adapter(h.adapter_a)
    h.run()
    assert h.adapter_a.state_name == "Running"
    h.send_a(ethernet(MAC_B, MAC_A, b"q" * 60))
    h.run()
    assert h.proto_a.completed[-1] == NDIS_STATUS_SUCCESS and len(h.proto_b.received) == 1


def test_pause_pends_until_held_receive_nbls_are_returned():
    h = two_hosts()
    h.proto_b.hold = True
    h.send_a(ethernet(MAC_B, MAC_A, b"r" * 60))
    h.run()
    ndis_pause_adapter(h.adapter_b)
    h.run()
    assert h.adapter_b.state_name == "Pausing"
    from stack.ndis import NdisReturnNetBufferLists
    h.machine.run_in(h.proto_b.kernel, NdisReturnNetBufferLists, h.proto_b.open, h.proto_b.held.pop(), 0)
    assert h.adapter_b.state_name == "Paused"


def test_frames_arriving_while_paused_are_dropped_and_counted():
    h = two_hosts()
    ndis_pause_adapter(h.adapter_b)
    h.run()
    h.send_a(ethernet(MAC_B, MAC_A, b"s" * 60))
    h.run()
    assert h.proto_b.received == []
    assert h.adapter_b.counters.drops["paused"] == 1


def _tcp_frame(payload: bytes, *, good_checksums: bool = True, zero_checksums: bool = False) -> bytes:
    pkt = Ether(dst=MAC_B, src=MAC_A) / IP(src="10.0.0.1", dst="10.0.0.2", id=7) / \
        TCP(sport=1000, dport=80, seq=1000, flags="PA") / payload
    raw = bytearray(bytes(pkt))
    if zero_checksums:
        raw[24:26] = b"\0\0"
        raw[50:52] = b"\0\0"
    elif not good_checksums:
        raw[50] ^= 0xFF
    return bytes(raw)


def test_tx_checksum_offload_fills_checksums_the_transport_left_zero():
    h = two_hosts()
    frame = _tcp_frame(b"hello", zero_checksums=True)
    h.send_a(frame, {TcpIpChecksumNetBufferListInfo: csum_tx_info(ipv4=True, tcp=True, ip_header=True,
                                                                 tcp_header_offset=34)})
    h.run()
    got = h.proto_b.received[0]
    assert got == _tcp_frame(b"hello")
    assert h.proto_b.checksum_info[0] & NDIS_CSUM_RX_TCP_SUCCEEDED
    assert h.proto_b.checksum_info[0] & NDIS_CSUM_RX_IP_SUCCEEDED


def test_rx_checksum_validation_flags_a_bad_tcp_checksum():
    h = two_hosts()
    h.send_a(_tcp_frame(b"bad", good_checksums=False))
    h.run()
    assert h.proto_b.checksum_info[0] & NDIS_CSUM_RX_TCP_FAILED


def test_rx_checksum_info_is_zero_when_validation_is_off():
    h = two_hosts(offloads_b=NicOffloads(rx_checksum=False))
    h.send_a(_tcp_frame(b"ok"))
    h.run()
    assert h.proto_b.checksum_info == [0]


def test_large_send_through_ndis_arrives_as_mss_frames_and_completes_once():
    h = two_hosts()
    payload = bytes(i % 251 for i in range(20000))
    pkt = Ether(dst=MAC_B, src=MAC_A) / IP(src="10.0.0.1", dst="10.0.0.2", id=100) / \
        TCP(sport=1000, dport=80, seq=5000, flags="PA") / payload
    nbl = h.send_a(bytes(pkt), {TcpLargeSendNetBufferListInfo: lso_v2_info(1460, 34)})
    h.run()
    assert len(h.proto_b.received) == -(-len(payload) // 1460)
    data = b"".join(bytes(Ether(f)[TCP].payload) for f in h.proto_b.received)
    assert data == payload
    assert h.proto_a.completed == [NDIS_STATUS_SUCCESS]
    assert h.adapter_a.counters.frames_out == len(h.proto_b.received)
    assert nbl.freed


def test_oversize_send_without_lso_completes_with_invalid_length():
    h = two_hosts()
    h.send_a(ethernet(MAC_B, MAC_A, bytes(3000)))
    h.run()
    assert h.proto_a.completed == [NDIS_STATUS_INVALID_LENGTH]
    assert h.proto_b.received == []


def test_nic_dma_reads_are_not_counted_as_cpu_copies():
    h = two_hosts()
    h.send_a(ethernet(MAC_B, MAC_A, bytes(200)))
    h.run()
    assert h.nic_a.dma_tx_bytes == 214 and h.nic_b.dma_rx_bytes == 214
    assert h.proto_a.kernel.copies.total_bytes == 0 and h.proto_b.kernel.copies.total_bytes == 0


def test_steady_state_sends_reuse_pooled_nbls_without_the_pool_allocator():
    h = two_hosts()
    for i in range(3):
        h.send_a(ethernet(MAC_B, MAC_A, bytes(60)))
        h.run()
    pool = h.proto_a.pool
    blocks_before = h.proto_a.kernel.pool.usage
    before = {k: (v.allocs, v.frees) for k, v in blocks_before.items()}
    allocations_before = pool.pool_allocations
    for i in range(20):
        h.send_a(ethernet(MAC_B, MAC_A, bytes(60)))
        h.run()
    assert pool.pool_allocations == allocations_before
    after = {k: (v.allocs, v.frees) for k, v in h.proto_a.kernel.pool.usage.items()}
    assert after == before
    assert len(h.proto_b.received) == 23


def test_unloading_netvmini_halts_the_adapter_and_frees_every_allocation():
    from stack.kernel.io import IoUnloadDriver
    h = two_hosts()
    h.send_a(ethernet(MAC_B, MAC_A, bytes(60)))
    h.run()
    k = h.proto_a.kernel
    IoUnloadDriver(k, k.drivers["netvmini"])
    h.run()  # the verifier bug-checks on unload if a netvmini pool tag leaked
    assert h.adapter_a.state_name == "Halted" and h.adapter_a.opens == []
    assert ndis_state(k).miniport_drivers == []


def test_hand_offs_publish_frame_and_nbl_events():
    from stack.ndis import NblIndicated, NblSent
    from stack.nic import FrameReceived, FrameTransmitted, Interrupt
    h = two_hosts()
    events = []
    h.machine.bus.subscribe(events.append)
    h.send_a(ethernet(MAC_B, MAC_A, bytes(60)))
    h.run()
    kinds = [type(e) for e in events]
    for wanted in (NblSent, FrameTransmitted, FrameReceived, Interrupt, NblIndicated):
        assert wanted in kinds
    assert kinds.index(NblSent) < kinds.index(FrameTransmitted) < kinds.index(FrameReceived) < \
        kinds.index(NblIndicated)


def test_netvmini_sets_source_handle_to_its_adapter_handle_on_every_received_nbl():
    h = two_hosts()
    for i in range(3):
        h.send_a(ethernet(MAC_B, MAC_A, bytes([i]) * 60))
    h.run()
    assert len(h.proto_b.source_handles) == 3
    assert all(handle is h.adapter_b for handle in h.proto_b.source_handles)


def test_ndis_bugchecks_a_receive_indication_whose_source_handle_is_not_the_adapter():
    from stack.ndis.miniport import EMU_NDIS_BUGCHECK_BAD_RECEIVE_SOURCE_HANDLE
    h = two_hosts()
    kb = h.proto_b.kernel

    def indicate_without_source_handle():
        nbl = NdisAllocateNetBufferList(h.proto_b.pool)
        nbl.SourceHandle = None  # a miniport that forgot to set it; NDIS must not patch it up
        NdisMIndicateReceiveNetBufferLists(h.adapter_b, nbl, 0, 1, NDIS_RECEIVE_FLAGS_RESOURCES)
        return nbl

    h.machine.run_in(kb, indicate_without_source_handle)
    info = h.scheduler.halted
    assert info is not None and info.code == 0x7C
    assert info.params[0] == EMU_NDIS_BUGCHECK_BAD_RECEIVE_SOURCE_HANDLE
    assert info.params[1] == h.adapter_b.address and info.params[3] == 0
    assert "emulator-defined" in info.detail
    assert h.proto_b.received == []
