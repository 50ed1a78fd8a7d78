"""Slow start's growth per ACK under RSC, end to end.  With one ACK per large RSC unit (about 28
segments at the lab's default Adaptive interrupt moderation), RFC 5681's one SMSS per ACK
(slow_start_ack_limit=1) keeps a short transfer's cwnd - and every large send - under 64 KB; Windows'
HyStart++ limit (min(N, 8 SMSS) per ACK, RFC 9406; the lab's default, TcpConfig.slow_start_ack_limit,
stack/tcpip/tcp/congestion.py) takes it past."""

from __future__ import annotations

from stack.nic import NicOffloads
from stack.tcpip.tcp import MS, TcpConfig
from stack.tcpip.tcp.congestion import WINDOWS_SLOW_START_ACK_LIMIT
from stack.usermode.programs import bulk_receiver, bulk_sender
from stack.world import default_world

from world_harness import any_address, run_programs, server_address, start

KiB = 1024


def _largest_large_send(ack_limit: int) -> int:
    offloads = NicOffloads(lso=True, rsc=True, lso_max_size=256 * KiB)
    config = TcpConfig(time_wait_ns=1000 * MS, window_scaling=True, slow_start_ack_limit=ack_limit)
    world = default_world(3, services=False, offloads=offloads, tcp_config=config)  # Adaptive moderation
    server = start(world, "winsrv", bulk_receiver, any_address(4, 9))
    world.run_for(1_000_000)
    client = start(world, "client", bulk_sender, server_address(world, 4, 9), 1 << 20, 256 * KiB, 1, 0)
    run_programs(world, server, client)
    assert server.result.received == 1 << 20
    assert server.result.received_sha256 == client.result.sent_sha256
    host = world.host("client")
    assert host.nic.itr_setting == "Adaptive"
    assert host.stack.counters.tcp_segments_retransmitted == 0
    return host.nic.counters.lso_largest


def test_one_smss_per_ack_keeps_large_sends_under_64k_at_adaptive_moderation():
    assert _largest_large_send(1) < 64 * KiB


def test_windows_slow_start_limit_takes_large_sends_past_64k_at_adaptive_moderation():
    assert _largest_large_send(WINDOWS_SLOW_START_ACK_LIMIT) > 64 * KiB


def test_the_default_config_is_windows_slow_start():
    assert TcpConfig().slow_start_ack_limit == WINDOWS_SLOW_START_ACK_LIMIT == 8
