"""Routing table (longest-prefix match) and the neighbour cache state machine, without a network."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from stack.kernel.machine import Machine
from stack.tcpip.addr import AddressError, SockAddr
from stack.tcpip.neighbor import (DELAY, INCOMPLETE, PROBE, QUEUE_LIMIT_BYTES, REACHABLE, STALE, NeighborCache,
                                   PendingPacket, SECOND)
from stack.tcpip.route import RouteTable

import pytest


def test_longest_prefix_wins_over_default_route():
    table = RouteTable()
    table.add("0.0.0.0/0", "wan", IPv4Address("10.0.0.254"))
    table.add("10.0.0.0/24", "lan")
    table.add("10.0.0.128/25", "dmz")
    assert table.lookup(IPv4Address("10.0.0.5")).interface == "lan"
    assert table.lookup(IPv4Address("10.0.0.200")).interface == "dmz"
    default = table.lookup(IPv4Address("8.8.8.8"))
    assert default.interface == "wan" and default.gateway == IPv4Address("10.0.0.254")


def test_ipv6_on_link_prefix_and_no_route():
    table = RouteTable()
    table.add("fd00::/64", "lan")
    assert table.lookup(IPv6Address("fd00::2")).on_link
    assert table.lookup(IPv6Address("2001:db8::1")) is None
    assert table.lookup(IPv4Address("10.0.0.1")) is None


def test_lower_metric_breaks_a_prefix_tie():
    table = RouteTable()
    table.add("10.0.0.0/24", "slow", metric=500)
    table.add("10.0.0.0/24", "fast", metric=10)
    assert table.lookup(IPv4Address("10.0.0.9")).interface == "fast"


def test_sockaddr_parses_both_families_and_rejects_garbage():
    assert SockAddr.parse("10.0.0.1:80") == SockAddr(IPv4Address("10.0.0.1"), 80)
    assert SockAddr.parse("[fd00::1]:7") == SockAddr(IPv6Address("fd00::1"), 7)
    assert str(SockAddr.parse("[fd00::1]:7")) == "[fd00::1]:7"
    with pytest.raises(AddressError):
        SockAddr.parse("10.0.0.1:99999")
    with pytest.raises(AddressError):
        SockAddr.parse("not-an-address")


class _Harness:
    def __init__(self) -> None:
        self.machine = Machine(seed=3, memory_mb=4)
        self.kernel = self.machine.kernel
        self.solicits: list[tuple[bytes, bytes | None]] = []
        self.sent: list[tuple[str, bytes]] = []
        self.failed: list[tuple[str, int]] = []
        self.cache = NeighborCache(self.kernel, 2, lambda ip, mac: self.solicits.append((ip, mac)))

    def packet(self, name: str, size: int = 60) -> PendingPacket:
        return PendingPacket(lambda mac: self.sent.append((name, mac)), lambda st: self.failed.append((name, st)),
                             size)

    def run(self, fn, *args):
        return self.machine.run_in(self.kernel, fn, *args)

    def advance(self, ns: int) -> None:
        self.machine.scheduler.run_for(ns)


IP = bytes([10, 0, 0, 9])
MAC = bytes.fromhex("00155d000009")


def test_unresolved_packets_wait_and_leave_on_reply():
    h = _Harness()
    h.run(h.cache.resolve, IP, h.packet("a"))
    h.run(h.cache.resolve, IP, h.packet("b"))
    assert h.cache.entries[IP].state == INCOMPLETE
    assert h.solicits == [(IP, None)]  # one broadcast solicitation for both packets
    h.run(h.cache.confirm, IP, MAC)
    assert h.sent == [("a", MAC), ("b", MAC)]
    assert h.cache.entries[IP].state == REACHABLE


def test_resolution_retries_then_fails_queued_packets():
    h = _Harness()
    h.run(h.cache.resolve, IP, h.packet("a"))
    h.advance(10 * SECOND)
    assert len(h.solicits) == 3  # max_multicast solicitations, one per second
    assert h.failed == [("a", 0xC000023D)]  # STATUS_HOST_UNREACHABLE
    assert IP not in h.cache.entries


def test_reachable_entry_goes_stale_then_probes_then_is_deleted():
    h = _Harness()
    h.run(h.cache.confirm, IP, MAC)
    h.advance(31 * SECOND)
    h.run(h.cache.resolve, IP, h.packet("late"))
    assert h.sent == [("late", MAC)]  # a stale entry is still used
    assert h.cache.entries[IP].state == DELAY
    h.advance(5 * SECOND + 1)
    assert h.cache.entries[IP].state == PROBE
    assert h.solicits[-1] == (IP, MAC)  # unicast probe
    h.advance(5 * SECOND)
    assert IP not in h.cache.entries


def test_unsolicited_update_marks_entry_stale():
    h = _Harness()
    h.run(lambda: h.cache.confirm(IP, MAC, solicited=False))
    assert h.cache.entries[IP].state == STALE


def test_queue_limit_drops_the_oldest_packet():
    h = _Harness()
    h.cache.queue_limit_bytes = 120  # two 60-byte frames
    for name in "abc":
        h.run(h.cache.resolve, IP, h.packet(name))
    assert h.failed == [("a", 0xC000009A)]
    h.run(h.cache.confirm, IP, MAC)
    assert [name for name, _ in h.sent] == ["b", "c"]


def test_a_burst_of_a_thousand_syns_waits_whole_for_one_arp_reply():
    """1,000 SYN-sized frames fit the byte bound; all go out when the reply comes."""
    h = _Harness()
    for i in range(1000):
        h.run(h.cache.resolve, IP, h.packet(str(i), 74))
    assert h.failed == [] and h.cache.queue_drops == 0
    h.run(h.cache.confirm, IP, MAC)
    assert [name for name, _ in h.sent] == [str(i) for i in range(1000)]


def test_big_frames_still_hit_the_byte_bound():
    h = _Harness()
    for i in range(200):
        h.run(h.cache.resolve, IP, h.packet(str(i), 1514))
    kept = QUEUE_LIMIT_BYTES // 1514
    assert h.cache.queue_drops == 200 - kept
    assert h.failed[0] == ("0", 0xC000009A)
