"""Local delivery: datagrams to the host's own addresses (and 127.0.0.1 / ::1) turn around in
tcpip as scheduler events of their own, never reach NDIS, and are copied exactly once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stack.kernel import STATUS_CONNECTION_REFUSED
from stack.tcpip.addr import SockAddr
from stack.tcpip.ip import LOOPBACK_COPY_REASON
from stack.usermode.programs import bulk_receiver, bulk_sender, udp_client, udp_echo_server
from stack.usermode.socket import AF_INET, SOCK_STREAM, Socket, SocketError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from world_harness import any_address, lab, run_programs, start  # noqa: E402

TOTAL = 300_000


def _nic_frames(world, host: str = "winsrv") -> tuple[int, int]:
    link = world.host(host).link
    return link.ends[0].counters.frames_in, link.ends[1].counters.frames_in


@pytest.mark.parametrize("target", ["10.0.0.1", "fd00::1", "127.0.0.1", "::1"])
def test_a_stream_to_the_hosts_own_address_arrives_intact_without_touching_the_wire(target):
    world = lab()
    version = 6 if ":" in target else 4
    server = start(world, "winsrv", bulk_receiver, any_address(version, 9000))
    world.run_for(1_000_000)
    wire_before = _nic_frames(world)
    client = start(world, "winsrv", bulk_sender, SockAddr.parse(f"[{target}]:9000" if version == 6
                                                                 else f"{target}:9000"), TOTAL)
    run_programs(world, server, client)
    assert server.result.received == TOTAL
    assert server.result.received_sha256 == client.result.sent_sha256
    assert _nic_frames(world) == wire_before  # nothing went through NDIS to the link
    world.run_for(10_000_000)  # the last ACK's loopback event
    counters = world.host("winsrv").stack.counters
    assert counters.loopback_sent == counters.loopback_received > 0
    assert counters.tcp_active_opens == counters.tcp_passive_opens == 1


def test_every_looped_back_byte_is_copied_once_and_counted():
    world = lab()
    winsrv = world.host("winsrv").kernel
    server = start(world, "winsrv", bulk_receiver, any_address(4, 9001))
    world.run_for(1_000_000)
    client = start(world, "winsrv", bulk_sender, SockAddr.parse("10.0.0.1:9001"), TOTAL)
    run_programs(world, server, client)
    counters = world.host("winsrv").stack.counters
    copies, nbytes = winsrv.copies.snapshot()[LOOPBACK_COPY_REASON]
    assert copies == counters.loopback_sent
    assert nbytes == counters.loopback_bytes
    assert TOTAL < nbytes < TOTAL * 11 // 10  # payload plus headers, once
    assert counters.nbl_copies == 0 and counters.nbls_held == 0  # no NBL behind loopback data


def test_each_looped_back_datagram_is_a_scheduler_event_of_its_own():
    world = lab()
    labels: list[str] = []
    scheduler = world.scheduler
    server = start(world, "winsrv", bulk_receiver, any_address(4, 9002))
    world.run_for(1_000_000)
    client = start(world, "winsrv", bulk_sender, SockAddr.parse("10.0.0.1:9002"), 10_000)
    while not (server.done and client.done) and scheduler.run_one():
        if scheduler.pending():
            labels.extend(e.label for e in scheduler.pending() if e.label == "tcpip loopback")
    world.check()
    counters = world.host("winsrv").stack.counters
    assert counters.loopback_sent > 0 and "tcpip loopback" in labels


def test_udp_datagrams_to_ourselves_are_echoed():
    world = lab()
    server = start(world, "winsrv", udp_echo_server, any_address(4, 5300), 2)
    world.run_for(1_000_000)
    client = start(world, "winsrv", udp_client, SockAddr.parse("127.0.0.1:5300"), [b"one", b"two"])
    run_programs(world, server, client)
    assert client.result == [b"one", b"two"]


def test_connecting_to_a_closed_port_on_ourselves_is_refused_by_the_looped_back_reset():
    world = lab()
    outcome: dict[str, int] = {}

    def prog():
        sock = yield from Socket.create(AF_INET, SOCK_STREAM)
        try:
            yield from sock.connect(SockAddr.parse("10.0.0.1:9999"))
        except SocketError as err:
            outcome["status"] = err.status
        yield from sock.close()

    program = start(world, "winsrv", prog)
    run_programs(world, program)
    assert outcome["status"] == STATUS_CONNECTION_REFUSED
