"""Every frame of a captured run decodes cleanly in scapy, with correct IP/TCP/UDP/ICMP checksums."""

from __future__ import annotations

import pytest

from stack.usermode.programs import echo_client, echo_server, pattern, udp_client, udp_echo_server

from world_harness import SECOND, any_address, lab, run_programs, server_address, start

# the layers these tests decode, not scapy.all (which loads every protocol scapy knows: ~0.8 s
# of CPU more in each test process that collects this module)
pytest.importorskip("scapy.layers.inet")


def _checksums_ok(frame: bytes) -> list[str]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    packet = Ether(frame)
    problems = []
    if packet.haslayer(Raw) and not (packet.haslayer(TCP) or packet.haslayer(UDP) or packet.haslayer(ICMP)
                                     or packet.haslayer(ICMPv6EchoRequest) or packet.haslayer(ICMPv6EchoReply)):
        if not packet.haslayer("ARP") and not packet.haslayer("Padding"):
            problems.append(f"undecoded payload: {packet.summary()}")
    rebuilt = packet.copy()
    layers = []
    for layer in (IP, TCP, UDP, ICMP, ICMPv6EchoRequest, ICMPv6EchoReply, ICMPv6ND_NS, ICMPv6ND_NA):
        if rebuilt.haslayer(layer):
            layers.append(layer)
            for field_name in ("cksum", "chksum"):
                if field_name in rebuilt[layer].fields:
                    delattr(rebuilt[layer], field_name)
    fresh = Ether(bytes(rebuilt))
    for layer in layers:
        field = "cksum" if "cksum" in packet[layer].fields else "chksum"
        if getattr(packet[layer], field) != getattr(fresh[layer], field):
            problems.append(f"{layer.__name__} checksum {getattr(packet[layer], field):#06x} "
                            f"!= {getattr(fresh[layer], field):#06x}: {packet.summary()}")
    return problems


@pytest.mark.parametrize("lso", [True, False], ids=["lso", "no-lso"])
def test_capture_decodes_with_correct_checksums(lso):
    world = lab(seed=4, lso=lso)
    capture = world.capture()
    for version in (4, 6):
        server = start(world, "winsrv", echo_server, any_address(version, 7))
        world.run_for(1_000_000)
        client = start(world, "client", echo_client, server_address(world, version, 7), pattern(version, 96 * 1024))
        run_programs(world, server, client)
        userver = start(world, "winsrv", udp_echo_server, any_address(version, 53), 1)
        world.run_for(1_000_000)
        uclient = start(world, "client", udp_client, server_address(world, version, 53), [b"dns?" * 10])
        run_programs(world, userver, uclient)
        transport = world.host("client").transport
        target = world.host("winsrv").address4 if version == 4 else world.host("winsrv").address6
        session = world.run_in("client", lambda: transport.ping(target, count=2, interval_ns=SECOND // 100))
        world.run_while(lambda: not session.done, max_time_ns=world.now_ns + 5 * SECOND)
    frames = [record.frame for record in capture.records]
    assert len(frames) > 100
    problems = [p for frame in frames for p in _checksums_ok(frame)]
    assert problems == []
    if lso:  # the NIC cut large sends into MSS frames on the wire
        assert max(len(f) for f in frames) <= 1514
        assert world.host("client").stack.counters.lso_sends > 0


def test_the_checker_flags_a_wrong_tcp_checksum():
    from stack.tcpip.wire import ETHERTYPE_IPV4, SYN, build_ethernet, build_ipv4, build_tcp
    src, dst = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1])
    segment = bytearray(build_tcp(src, dst, 1, 2, 100, 0, SYN))
    good = build_ethernet(bytes(6), bytes(6), ETHERTYPE_IPV4, build_ipv4(src, dst, 6, bytes(segment)))
    segment[16] ^= 1
    bad = build_ethernet(bytes(6), bytes(6), ETHERTYPE_IPV4, build_ipv4(src, dst, 6, bytes(segment)))
    assert _checksums_ok(good) == []
    assert len(_checksums_ok(bad)) == 1
