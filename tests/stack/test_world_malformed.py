"""Malformed and truncated frames are dropped and counted where they are rejected; nothing escapes."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.tcpip import wire
from stack.tcpip.wire import ETHERTYPE_IPV4, ETHERTYPE_IPV6, SYN, build_ethernet, build_ipv4, build_ipv6, build_tcp

from world_harness import SECOND, lab

CLIENT_IP = IPv4Address("10.0.0.2").packed
SERVER_IP = IPv4Address("10.0.0.1").packed


def _inject(world, frame: bytes) -> None:
    nic = world.host("winsrv").nic
    nic.deliver(frame, world.now_ns)
    world.run_for(1_000_000)
    world.check()


def _server_frame(world, ethertype: int, payload: bytes) -> bytes:
    return build_ethernet(world.host("winsrv").mac, world.host("client").mac, ethertype, payload)


def _tcp_syn_v4(port: int = 7) -> bytes:
    return build_ipv4(CLIENT_IP, SERVER_IP, 6, build_tcp(CLIENT_IP, SERVER_IP, 40000, port, 1000, 0, SYN))


def _drops(world):
    return world.host("winsrv").stack.counters.drops


def test_bad_ipv4_header_checksum_is_counted_at_ipv4():
    world = lab(checksum=False)
    packet = bytearray(_tcp_syn_v4())
    packet[10] ^= 0xFF
    _inject(world, _server_frame(world, ETHERTYPE_IPV4, bytes(packet)))
    assert _drops(world)[("ipv4", "bad_checksum")] == 1


def test_bad_tcp_checksum_is_counted_at_tcp_with_and_without_offload():
    for checksum in (True, False):
        world = lab(checksum=checksum)
        packet = bytearray(_tcp_syn_v4())
        packet[20 + 16] ^= 0x55
        _inject(world, _server_frame(world, ETHERTYPE_IPV4, bytes(packet)))
        assert _drops(world)[("tcp", "bad_checksum")] == 1


def test_truncated_frames_are_counted_at_the_layer_they_cut_into():
    world = lab()
    syn = _tcp_syn_v4()
    _inject(world, _server_frame(world, ETHERTYPE_IPV4, syn[:12]))
    assert _drops(world)[("ipv4", "truncated")] == 1
    v6 = build_ipv6(bytes.fromhex("fd00" + "00" * 13 + "02"), bytes.fromhex("fd00" + "00" * 13 + "01"), 17,
                    wire.build_udp(bytes.fromhex("fd00" + "00" * 13 + "02"), bytes.fromhex("fd00" + "00" * 13 + "01"),
                                   5, 6, b"x"))
    _inject(world, _server_frame(world, ETHERTYPE_IPV6, v6[:-3]))
    assert _drops(world)[("ipv6", "truncated")] == 1
    short_tcp = build_ipv4(CLIENT_IP, SERVER_IP, 6, b"\x00" * 10)
    _inject(world, _server_frame(world, ETHERTYPE_IPV4, short_tcp))
    assert _drops(world)[("tcp", "truncated")] == 1
    _inject(world, _server_frame(world, wire.ETHERTYPE_ARP, b"\x00\x01\x08\x00\x06\x04"))
    assert _drops(world)[("arp", "truncated")] == 1


def _still_works(world) -> None:
    transport = world.host("client").transport
    session = world.run_in("client", lambda: transport.ping(IPv4Address("10.0.0.1"), count=1))
    world.run_while(lambda: not session.done, max_time_ns=world.now_ns + 5 * SECOND)
    assert session.received == 1


_WORLD = None


def _shared_world():
    global _WORLD
    if _WORLD is None:
        _WORLD = lab(seed=11)
    return _WORLD


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ethertype=st.sampled_from([ETHERTYPE_IPV4, ETHERTYPE_IPV6, wire.ETHERTYPE_ARP, 0x1234]),
       body=st.binary(max_size=200))
def test_random_frames_never_escape(ethertype, body):
    world = _shared_world()
    _inject(world, _server_frame(world, ethertype, body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(min_value=0, max_value=200), st.integers(min_value=1, max_value=255)),
                      min_size=1, max_size=4),
       cut=st.integers(min_value=0, max_value=80),
       kind=st.sampled_from(["tcp4", "udp6", "icmp4", "ns6"]))
def test_mutated_valid_frames_never_escape(flips, cut, kind):
    world = _shared_world()
    c6 = bytes.fromhex("fd00" + "00" * 13 + "02")
    s6 = bytes.fromhex("fd00" + "00" * 13 + "01")
    if kind == "tcp4":
        frame = _server_frame(world, ETHERTYPE_IPV4, _tcp_syn_v4())
    elif kind == "udp6":
        frame = _server_frame(world, ETHERTYPE_IPV6, build_ipv6(c6, s6, 17, wire.build_udp(c6, s6, 5353, 53, b"q" * 30)))
    elif kind == "icmp4":
        frame = _server_frame(world, ETHERTYPE_IPV4,
                              build_ipv4(CLIENT_IP, SERVER_IP, 1, wire.build_icmp_echo_request(1, 1, b"ping" * 8)))
    else:
        ns = wire.build_neighbor_solicitation(c6, wire.solicited_node_multicast(s6), s6, world.host("client").mac)
        frame = _server_frame(world, ETHERTYPE_IPV6, build_ipv6(c6, wire.solicited_node_multicast(s6), 58, ns,
                                                                hop_limit=255))
    data = bytearray(frame)
    for pos, xor in flips:
        if 6 <= pos < len(data):  # keep the destination MAC so the NIC accepts it
            data[pos] ^= xor
    if cut:
        data = data[: max(6, len(data) - cut)]
    _inject(world, bytes(data))


def test_host_still_works_after_the_fuzzing():
    world = _shared_world()
    before = sum(_drops(world).values())
    _inject(world, _server_frame(world, ETHERTYPE_IPV4, b"\x45" + b"\x00" * 5))
    assert sum(_drops(world).values()) == before + 1
    _still_works(world)
