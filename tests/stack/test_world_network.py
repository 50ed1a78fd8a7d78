"""The lab's network behaviour: neighbour resolution, ping, UDP, refusals, TIME_WAIT, determinism."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from stack.kernel import STATUS_CONNECTION_REFUSED, STATUS_PORT_UNREACHABLE
from stack.tcpip.addr import SockAddr
from stack.tcpip.events import NeighborStateChanged, TcpStateChanged
from stack.usermode.programs import echo_client, echo_server, udp_client, udp_echo_server
from stack.usermode.socket import SOCK_STREAM, Socket, SocketError

from world_harness import SECOND, any_address, lab, run_programs, server_address, start


def _ping(world, source: str, destination, count: int = 3):
    transport = world.host(source).transport
    session = world.run_in(source, lambda: transport.ping(destination, count=count, interval_ns=SECOND // 10))
    world.run_while(lambda: not session.done, max_time_ns=world.now_ns + 10 * SECOND)
    return session


def test_ping_v4_resolves_arp_and_records_rtts():
    world = lab()
    session = _ping(world, "client", IPv4Address("10.0.0.1"))
    assert session.received == 3 and session.lost == 0
    assert all(rtt is not None and rtt > 0 for rtt in session.rtts_ns)
    assert session.rtts_ns[0] > session.rtts_ns[1]  # the first waited for ARP
    table = world.host("client").stack.interfaces[0].arp.table()
    assert table[0]["address"] == "10.0.0.1" and table[0]["state"] == "REACHABLE"
    assert table[0]["mac"] == "-".join(f"{b:02x}" for b in world.host("winsrv").mac)
    # the server learnt the client from the request (no ARP of its own needed for the reply)
    assert world.host("winsrv").stack.counters.arp_requests_sent == 0


def test_ping_v6_resolves_with_neighbor_discovery():
    world = lab()
    seen = []
    world.bus.subscribe(lambda e: seen.append(e) if isinstance(e, NeighborStateChanged) else None)
    session = _ping(world, "client", IPv6Address("fd00::1"))
    assert session.received == 3
    client_stack = world.host("client").stack
    assert client_stack.counters.nd_solicitations_sent == 1
    assert world.host("winsrv").stack.counters.nd_advertisements_sent == 1
    assert [(e.host, e.new) for e in seen if e.address == "fd00::1"][:2] == [("client", "INCOMPLETE"),
                                                                             ("client", "REACHABLE")]


def test_ping_to_a_missing_host_reports_every_echo_lost():
    world = lab()
    session = _ping(world, "client", IPv4Address("10.0.0.99"), count=2)
    assert session.received == 0 and session.sent == 2
    world.run_for(5 * SECOND)  # resolution gives up after three solicitations
    assert world.host("client").stack.counters.drops[("neighbor", "unresolved")] >= 1


def test_udp_echo_over_both_families():
    world = lab()
    for version, port in ((4, 5000), (6, 5001)):
        server = start(world, "winsrv", udp_echo_server, any_address(version, port), 3)
        world.run_for(1_000_000)
        messages = [b"one", b"two" * 100, bytes(range(256)) * 4]
        client = start(world, "client", udp_client, server_address(world, version, port), messages)
        run_programs(world, server, client)
        assert client.result == messages


def test_udp_to_a_closed_port_gets_port_unreachable():
    world = lab()
    errors = []
    client_t = world.host("client").transport

    def send():
        status, ep = client_t.udp_open(SockAddr(IPv4Address(0), 0),
                                       error=lambda ep, remote, st: errors.append((str(remote), st)))
        ep.send_bytes_to(SockAddr.parse("10.0.0.1:9999"), b"anyone?")
        return ep

    world.run_in("client", send)
    world.run_for(SECOND)
    assert errors == [("10.0.0.1:9999", STATUS_PORT_UNREACHABLE)]
    assert world.host("winsrv").stack.counters.unreachables_sent == 1
    assert world.host("winsrv").stack.counters.drops[("udp", "no_endpoint")] == 1


def test_connect_to_a_closed_port_is_refused_by_rst():
    world = lab()

    def connect_closed(ctx=None):
        sock = yield from Socket.create()
        try:
            yield from sock.connect(SockAddr.parse("10.0.0.1:81"))
        except SocketError as err:
            return err.status
        return 0

    program = start(world, "client", connect_closed)
    run_programs(world, program)
    assert program.result == STATUS_CONNECTION_REFUSED
    assert world.host("winsrv").stack.counters.tcp_resets_sent == 1


def test_active_closer_passes_through_time_wait_then_closes():
    world = lab(time_wait_ms=1500)
    states = []
    world.bus.subscribe(lambda e: states.append(e) if isinstance(e, TcpStateChanged) else None)
    server = start(world, "winsrv", echo_server, any_address(4, 7))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, 4, 7), b"x" * 1000)
    run_programs(world, server, client)
    world.run_until_idle(max_time_ns=world.now_ns + 5 * SECOND)
    # The server shut down first after echoing (it sees the client's FIN only after its own),
    # so somebody went through TIME_WAIT and every TCB ended CLOSED.
    tw = [e for e in states if e.new == "TIME_WAIT"]
    assert tw, [(e.host, e.old, e.new) for e in states]
    closed_after = [e for e in states if e.old == "TIME_WAIT" and e.new == "CLOSED"]
    assert len(closed_after) == len(tw)
    assert closed_after[0].time_ns - tw[0].time_ns >= 1500 * 1_000_000
    for name in ("client", "winsrv"):
        assert world.host(name).transport.connections() == []


def test_same_seed_gives_the_same_event_sequence():
    def run(seed: int) -> list[str]:
        world = lab(seed=seed)
        log: list[str] = []
        world.bus.subscribe(lambda e: log.append(f"{e.time_ns} {e.host} {e.describe()}"))
        server = start(world, "winsrv", echo_server, any_address(6, 7))
        world.run_for(1_000_000)
        client = start(world, "client", echo_client, server_address(world, 6, 7), b"determinism" * 500)
        run_programs(world, server, client)
        return log

    first, second, other = run(5), run(5), run(6)
    assert first == second
    assert first != other
