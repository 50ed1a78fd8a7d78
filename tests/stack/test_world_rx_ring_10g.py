"""winsrv's 512-buffer receive ring under Windows' slow start (HyStart++'s L = 8 SMSS per ACK) at
10 Gb/s, end to end through NIC, netvmini, NDIS, tcpip, AFD and the echo programs.

The NIC's Adaptive interrupt moderation throttles a bulk stream to its bulk_latency rate.  igb's
(1 GbE) 4,000 interrupts/s is 250 us between interrupts: 208 full frames at 10 Gb/s, and with the
NBLs tcpip holds for data the echo server has not read yet (up to ~350 of the 512 buffers) the ring
overran.  A 10 Gb/s Intel NIC (ixgbe_set_itr: bulk_latency -> IXGBE_12K_ITR) interrupts 12,000 times
a second, 83 us apart (69 frames), and the ring keeps up (stack/nic/itr.py).

The headroom is thin: at 12K and L = 8 the fewest buffers still posted at a DPC was 4 of 512 for
this 2 MiB echo (2 for 4 MiB), while tcpip/AFD hold up to 370-446 of them and RSC units still open
hold more (tests/bench/bench_rx_ring.py --mib 2).  The drop and retransmit checks come first so a
regression shows as no_rx_buffer drops, not as a rate."""

from __future__ import annotations

import hashlib

from stack.nic import NicOffloads
from stack.tcpip.addr import SockAddr
from stack.tcpip.tcp import MS, TcpConfig
from stack.tcpip.tcp.congestion import WINDOWS_SLOW_START_ACK_LIMIT
from stack.usermode.programs import echo_client, echo_server, pattern
from stack.usermode.socket import run_program
from stack.world import default_world

MiB = 1 << 20


def test_windows_slow_start_echo_does_not_overrun_the_receive_ring_at_10_gbps_adaptive_moderation():
    config = TcpConfig(time_wait_ns=1000 * MS, slow_start_ack_limit=WINDOWS_SLOW_START_ACK_LIMIT)
    world = default_world(1, services=False, offloads=NicOffloads(lso=True, rsc=True), tcp_config=config)
    winsrv = world.host("winsrv")
    assert winsrv.nic.link_speed_bps == 10_000_000_000 and winsrv.nic.itr_setting == "Adaptive"
    data = pattern(42, 2 * MiB)
    server = run_program(winsrv.kernel, echo_server, SockAddr.parse("0.0.0.0:7"))
    world.run_for(1_000_000)
    client = run_program(world.host("client").kernel, echo_client, SockAddr.parse("10.0.0.1:7"), data)
    world.run_while(lambda: not (client.done and server.done), max_events=20_000_000)
    client.raise_error()
    assert client.result.received_sha256 == hashlib.sha256(data).hexdigest()
    for host in world.hosts.values():
        assert host.nic.counters.drops["no_rx_buffer"] == 0, host.name
        assert host.stack.counters.tcp_segments_retransmitted == 0, host.name
    # the bulk stream moved winsrv's NIC to bulk_latency, at ixgbe's 12K interrupts/s
    assert winsrv.nic.counters.rsc_units > 0
    assert winsrv.nic.itr_adaptive.rates["bulk_latency"] == 12_000
