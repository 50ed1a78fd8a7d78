"""End to end with receive segment coalescing: fewer, larger segments reach tcpip, every byte intact."""

from __future__ import annotations

import pytest

from stack.ndis.constants import (NDIS_CSUM_RX_TCP_SUCCEEDED, NDIS_CSUM_RX_TCP_VALUE_INVALID,
                                  TcpIpChecksumNetBufferListInfo, TcpRecvSegCoalesceInfo, rsc_coalesced_segments)
from stack.nic import FaultConfig
from stack.tcpip.stack import TcpipStack
from stack.usermode.programs import echo_client, echo_server, pattern

from world_harness import any_address, lab, server_address, start, echo_exchange

MiB = 1024 * 1024


def _echo(world, version: int, data: bytes, *, max_events: int = 3_000_000):
    return echo_exchange(world, version, data, max_events=max_events)[0]


@pytest.mark.parametrize("version", [4, 6])
def test_echo_with_rsc_is_byte_exact_and_tcpip_sees_fewer_segments(version):
    world = lab(seed=3, rsc=True)
    data = pattern(version, 1 * MiB)
    result = _echo(world, version, data)
    assert result.received == len(data) and result.received_sha256 == result.sent_sha256
    for name in ("client", "winsrv"):
        host = world.host(name)
        nic = host.nic.counters
        assert nic.rsc_units > 0 and nic.rsc_coalesced_segments > nic.rsc_units
        tcp_in = host.stack.counters.tcp_segments_received
        # a joined segment never reaches tcpip on its own: its payload rides in its unit
        assert tcp_in <= nic.frames_in - nic.rsc_coalesced_segments
        assert nic.rsc_coalesced_segments > nic.frames_in // 3
        assert not host.stack.counters.drops


def test_a_coalesced_indication_is_one_net_buffer_over_a_chain_of_receive_buffers(monkeypatch):
    seen = []
    original = TcpipStack._receive_chain

    def spy(self, iface, nbls, flags):
        nbl = nbls
        while nbl is not None:
            info = nbl.NetBufferListInfo
            count = rsc_coalesced_segments(info[TcpRecvSegCoalesceInfo])
            if count:
                nb = nbl.FirstNetBuffer
                mdls = list(nb.MdlChain.chain())
                seen.append((count, len(mdls), nb.DataLength, sum(m.byte_count for m in mdls),
                             info[TcpIpChecksumNetBufferListInfo], nb.Next))
            nbl = nbl.Next
        return original(self, iface, nbls, flags)

    monkeypatch.setattr(TcpipStack, "_receive_chain", spy)
    world = lab(seed=4, rsc=True)
    result = _echo(world, 4, pattern(1, 512 * 1024))
    assert result.received_sha256 == result.sent_sha256
    assert seen
    for count, mdl_count, length, chain_bytes, checksum, next_nb in seen:
        assert count == mdl_count >= 2  # the head buffer plus one per joined segment
        assert length == chain_bytes and next_nb is None
        assert checksum & NDIS_CSUM_RX_TCP_SUCCEEDED and checksum & NDIS_CSUM_RX_TCP_VALUE_INVALID


def test_coalesced_receive_buffers_all_go_back_to_the_ring():
    world = lab(seed=5, rsc=True)
    result = _echo(world, 4, pattern(2, 512 * 1024))
    assert result.received_sha256 == result.sent_sha256
    world.run_for(50_000_000)
    for name in ("client", "winsrv"):
        nic = world.host(name).nic
        assert nic.rx_posted == nic.rx_ring_size  # every buffer of every unit was reposted


@pytest.mark.parametrize("seed", range(4))
def test_rsc_echo_survives_loss_duplication_reordering_and_corruption(seed):
    world = lab(seed=100 + seed, rsc=True, max_retransmits=12)
    world.set_faults("client", FaultConfig(loss=0.03, duplicate=0.03, reorder=0.03, corrupt=0.03,
                                           reorder_delay_ns=300_000))
    data = pattern(seed, 192 * 1024 + seed * 1231)
    result = _echo(world, 4 if seed % 2 else 6, data)
    assert result.received == len(data) and result.received_sha256 == result.sent_sha256


def test_jumbo_frames_carry_nine_kilobyte_segments_and_mss_follows_the_mtu():
    from stack.tcpip.tcp import MS, TcpConfig
    from stack.world import default_world

    world = default_world(2, services=False, mtu=9000, tcp_config=TcpConfig(time_wait_ns=1000 * MS))
    data = pattern(9, 300_000)
    result = _echo(world, 6, data)
    assert result.received_sha256 == result.sent_sha256
    nic = world.host("client").nic.counters
    assert nic.frames_out < len(data) // 1460 // 2  # far fewer than 1.5 KB frames would need
    assert nic.bytes_out / nic.frames_out > 4000


@pytest.mark.parametrize("version", [4, 6])
def test_lso_without_checksum_offload_still_sends_large_segments_through_the_nic(version):
    # LSO makes the NIC compute every segment's checksums, so tcpip must mark the NBL for LSO
    # even when it computes checksums itself for everything else.
    world = lab(seed=6, lso=True, checksum=False)
    data = pattern(version, 192 * 1024)
    result = _echo(world, version, data)
    assert result.received_sha256 == result.sent_sha256
    assert world.now_ns < 2_000_000_000  # no retransmission timeouts
    for name in ("client", "winsrv"):
        assert world.host(name).stack.counters.lso_sends > 0
        assert world.host(name).nic.counters.lso_segments > 0
        assert not world.host(name).stack.counters.drops


def test_a_send_the_miniport_refuses_is_counted_as_a_drop():
    world = lab(seed=8, lso=True)
    world.host("client").nic.offloads.lso = False  # behind tcpip's back: LSO NBLs now fail
    server = start(world, "winsrv", echo_server, any_address(4, 7))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, 4, 7), pattern(3, 64 * 1024))
    world.run_while(lambda: not client.done, max_events=200_000, max_time_ns=world.now_ns + 5_000_000_000)
    drops = world.host("client").stack.counters.drops
    assert drops[("ndis", "send_failed")] > 0


def test_same_seed_same_coalescing_and_same_end_time():
    def once():
        world = lab(seed=9, rsc=True)
        world.set_faults("client", FaultConfig(loss=0.02, reorder=0.02, reorder_delay_ns=200_000))
        result = _echo(world, 4, pattern(5, 256 * 1024))
        nic = world.host("winsrv").nic.counters
        return (result.received_sha256, world.now_ns, world.scheduler.events_run, nic.rsc_units,
                nic.rsc_coalesced_segments, dict(nic.rsc_aborts))
    assert once() == once()
