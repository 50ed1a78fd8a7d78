"""Receive NBLs tcpip keeps (zero copy: the client has not taken their data yet) all go back to the
miniport, in order or not: in-order arrivals are released as a prefix, out-of-order ones by a scan."""

from __future__ import annotations

import hashlib

import pytest

from stack.nic import FaultConfig
from stack.usermode.programs import echo_client, echo_server, pattern

from world_harness import any_address, lab, run_programs, server_address, start

KiB = 1024


def _outstanding(world) -> int:
    return sum(h.adapter.MiniportAdapterContext.rx_outstanding for h in world.hosts.values())


@pytest.mark.parametrize("reorder", [0.0, 0.05], ids=["in-order", "out-of-order"])
def test_every_held_receive_nbl_returns_to_the_miniport(reorder):
    world = lab(seed=11)
    if reorder:
        world.set_faults("client", FaultConfig(reorder=reorder, reorder_delay_ns=300_000))
    data = pattern(11, 384 * KiB)
    server = start(world, "winsrv", echo_server, any_address(4, 7))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, 4, 7), data)
    held_seen = []
    tcp = world.host("winsrv").stack.tcp
    world.run_while(lambda: not (client.done and server.done) and not held_seen.append(
        max((len(t.held) for t in tcp.connections.values()), default=0)), max_events=5_000_000)
    run_programs(world, server, client)
    assert client.result.received_sha256 == hashlib.sha256(data).hexdigest()
    assert max(held_seen) > 4  # the server held NBLs while its echo was busy sending
    reordered = sum(end.counters.reordered for end in world.host("client").link.ends)
    assert (reordered > 0) == bool(reorder)
    assert world.host("winsrv").stack.counters.nbls_held > 0
    assert _outstanding(world) == 0  # every indicated NBL came back
