"""The lab itself: hosts, deterministic MACs, adding hosts later, names, faults, captures."""

from __future__ import annotations

import pytest

from stack.nic import FaultConfig
from stack.world import World, WorldError, default_world

SECOND = 1_000_000_000


def test_default_world_has_winsrv_and_client_with_their_addresses():
    world = default_world(1, services=False)
    assert sorted(world.hosts) == ["client", "winsrv"]
    assert str(world.host("winsrv").address4) == "10.0.0.1" and str(world.host("winsrv").address6) == "fd00::1"
    assert str(world.host("client").address4) == "10.0.0.2" and str(world.host("client").address6) == "fd00::2"
    for name in ("winsrv", "client"):
        kernel = world.host(name).kernel
        assert kernel.drivers["tcpip"].loaded and kernel.drivers["afd"].loaded
        assert "\\Device\\Tcp" in kernel.objects and "\\Device\\Afd" in kernel.objects
        assert kernel.module("tcpip") is not None


def test_macs_follow_the_seed():
    assert World(5).mac_for("winsrv") == World(5).mac_for("winsrv")
    assert World(5).mac_for("winsrv") != World(6).mac_for("winsrv")
    assert World(5).mac_for("winsrv")[:3] == b"\x00\x15\x5d"


def test_a_host_added_later_is_reachable_by_name():
    world = default_world(2, services=False)
    world.add_host("httpbin.org", "10.0.0.80", "fd00::80")
    transport = world.host("client").transport
    found = []
    transport.resolve("httpbin.org", lambda status, addresses: found.extend(addresses))
    assert [str(a) for a in found] == ["10.0.0.80", "fd00::80"]
    session = world.run_in("client", lambda: transport.ping(found[1], count=1))
    world.run_while(lambda: not session.done, max_time_ns=world.now_ns + 5 * SECOND)
    assert session.received == 1


def test_unknown_hosts_and_duplicate_names_are_clear_errors():
    world = default_world(1, services=False)
    with pytest.raises(WorldError, match="no host named 'nope'"):
        world.host("nope")
    with pytest.raises(WorldError, match="already exists"):
        world.add_host("client", "10.0.0.9")


def test_faults_are_set_per_link_direction_and_captures_see_frames():
    world = default_world(1, services=False)
    world.set_faults("client", FaultConfig(loss=1.0), direction=0)
    capture = world.capture()
    transport = world.host("client").transport
    session = world.run_in("client", lambda: transport.ping(world.host("winsrv").address4, count=1))
    world.run_while(lambda: not session.done, max_time_ns=world.now_ns + 5 * SECOND)
    assert session.received == 0
    assert world.host("client").link.ends[0].counters.lost >= 1
    assert capture.records  # the ARP request was seen entering the client's cable
    world.clear_faults()
    session = world.run_in("client", lambda: transport.ping(world.host("winsrv").address4, count=1))
    world.run_while(lambda: not session.done, max_time_ns=world.now_ns + 5 * SECOND)
    assert session.received == 1
