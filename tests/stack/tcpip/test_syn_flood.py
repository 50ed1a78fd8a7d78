"""A SYN flood against winsrv's web server: protection switches on, a legitimate client still
gets its page, and nothing the flood or a reset created outlives its connection."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

import pytest

from stack.synflood import start_syn_flood
from stack.tcpip.addr import SockAddr
from stack.usermode.socket import run_program
from stack.usermode.webserver import http_fetch
from stack.world import default_world

SECOND = 1_000_000_000


def _pool_tags(world, host: str) -> Counter:
    return Counter(block.tag_str for block in world.host(host).kernel.pool.allocated_blocks())


def _tcp_objects(world, host: str) -> tuple[int, int]:
    tcp = world.host(host).stack.tcp
    return len(tcp.tcbs), len(tcp.connections)


@pytest.fixture(scope="module")
def flooded():
    world = default_world(1)
    world.run_for(SECOND)
    baseline = (_pool_tags(world, "winsrv"), _tcp_objects(world, "winsrv"))
    flood = start_syn_flood(world, "winsrv", 80, 10_000)
    world.run_for(SECOND // 10)  # the SYN queue is full by now
    listener = next(lst for lst in world.host("winsrv").transport.listeners() if lst.local.port == 80)
    during = world.host("winsrv").stack.tcp.listener_snapshot(listener)
    fetch = run_program(world.host("client").kernel, http_fetch, SockAddr.parse("10.0.0.1:80"), "GET",
                        "/index.html")
    world.run_while(lambda: not (fetch.done and flood.done), max_time_ns=world.now_ns + 30 * SECOND)
    world.check()
    fetch.raise_error()
    return world, flood, fetch, during, baseline


def test_http_during_a_10000_syn_flood_succeeds_through_a_syn_cookie(flooded) -> None:
    world, flood, fetch, during, _ = flooded
    assert flood.sent == 10_000 and fetch.done
    assert fetch.result.status == 200 and fetch.result.body
    counters = world.host("winsrv").transport.counters()
    assert counters["tcp_syn_protection_activations"] >= 1
    assert counters["tcp_syn_cookie_connections"] >= 1  # the client's connection came from a cookie


def test_syn_queue_stays_bounded_while_the_flood_runs(flooded) -> None:
    _, _, _, during, _ = flooded
    assert during["syn_protection"] is True
    assert during["pending_handshakes"] <= 200
    assert during["syn_cookies_sent"] > 1000  # answered without keeping state


def test_no_tcb_or_pool_growth_after_the_flood_times_out(flooded) -> None:
    world, _, _, _, (tags_before, objects_before) = flooded
    # SYN-ACK retransmissions run out; khttpd closed first (send and disconnect), so winsrv's side
    # of the legitimate connection sits in TIME_WAIT for 2 MSL = 240 s before its TCB goes.
    world.run_for(250 * SECOND)
    world.check()
    assert _tcp_objects(world, "winsrv") == objects_before
    after = _pool_tags(world, "winsrv")
    assert {tag: after[tag] for tag in ("TcpE", "TcpL")} == {tag: tags_before[tag] for tag in ("TcpE", "TcpL")}
    # The header slots and partial MDLs are lookaside caches that grew for the SYN-ACKs queued
    # behind ARP (IpHd, Mdl): every one of them is back on its free list.
    stack = world.host("winsrv").stack
    assert len(stack.slot_pool.free) == stack.slot_pool.total
    assert len(stack.mdl_pool.free) == stack.mdl_pool.total
    counters = world.host("winsrv").transport.counters()
    assert counters["tcp_failed_connection_attempts"] >= 200  # the half-open ones that timed out
    assert counters["tcp_current_connections"] == 0


def test_connections_reset_before_accept_free_their_tcbs() -> None:
    world = default_world(2, services=False)
    server = world.host("winsrv").transport
    status, listener = world.run_in("winsrv", lambda: server.tcp_listen(SockAddr(IPv4Address(0), 9000), None, 8))
    assert listener is not None
    baseline = _tcp_objects(world, "winsrv"), _pool_tags(world, "winsrv")["TcpE"]
    client = world.host("client").transport
    conns = []
    for _ in range(5):
        _, conn = world.run_in("client", lambda: client.tcp_connect(SockAddr.parse("10.0.0.1:9000"),
                                                                    lambda ep, st: None))
        conns.append(conn)
    world.run_for(SECOND // 10)
    assert world.host("winsrv").stack.tcp.listener_snapshot(listener)["ready_to_accept"] == 5
    for conn in conns:
        world.run_in("client", lambda c=conn: c.disconnect(abortive=True))
    world.run_for(SECOND // 10)
    world.check()
    assert (_tcp_objects(world, "winsrv"), _pool_tags(world, "winsrv")["TcpE"]) == baseline
    counters = server.counters()
    assert counters["tcp_reset_connections"] == 5 and counters["tcp_current_connections"] == 0


def test_a_half_open_connection_reset_by_its_peer_frees_its_tcb() -> None:
    from stack.tcpip.wire import ETHERTYPE_IPV4, RST, SYN, TcpOptions, build_ethernet, build_ipv4, build_tcp

    world = default_world(3, services=False)
    server = world.host("winsrv").transport
    _, listener = world.run_in("winsrv", lambda: server.tcp_listen(SockAddr(IPv4Address(0), 9001), None, 8))
    baseline = _tcp_objects(world, "winsrv"), _pool_tags(world, "winsrv")["TcpE"]
    # a peer with no stack of its own (nothing answers the SYN-ACK), so only its RST ends the handshake
    client_ip, server_ip = IPv4Address("10.0.0.77").packed, IPv4Address("10.0.0.1").packed
    host, peer_mac = world.host("winsrv"), bytes.fromhex("025f00000077")

    def inject(flags: int, seq: int) -> None:
        segment = build_tcp(client_ip, server_ip, 41000, 9001, seq, 0, flags, 64240,
                            options=TcpOptions(mss=1460) if flags & SYN else None)
        frame = build_ethernet(host.mac, peer_mac, ETHERTYPE_IPV4, build_ipv4(client_ip, server_ip, 6, segment))
        host.link.ends[1].deliver(frame, world.now_ns)
        world.run_for(SECOND // 100)

    inject(SYN, 1000)
    assert world.host("winsrv").stack.tcp.listener_snapshot(listener)["pending_handshakes"] == 1
    assert _tcp_objects(world, "winsrv")[0] == baseline[0][0] + 1
    inject(RST, 1001)  # the peer gives up before the handshake completes
    world.check()
    assert (_tcp_objects(world, "winsrv"), _pool_tags(world, "winsrv")["TcpE"]) == baseline
    assert server.counters()["tcp_failed_connection_attempts"] == 1
