"""IP fragmentation and reassembly end to end through the lab: big pings and UDP datagrams
over IPv4 and IPv6, what the wire carries (checked with scapy), loss and reassembly timeouts,
fragment floods, and crafted fragments handed to the normal protocol dispatch."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address

import pytest

from stack.nic.capture import Capture
from stack.nic.link import FaultConfig
from stack.tcpip.events import FragmentReassembled
from stack.tcpip.fragment import emit_fragment_header
from stack.tcpip.icmp import MAX_ICMP_BODY, ping_data
from stack.tcpip.wire import (ETHERTYPE_IPV4, ETHERTYPE_IPV6, SYN, build_ethernet, build_ipv4, build_ipv6, build_tcp,
                              parse_frame)
from stack.tcpip.wire.icmp import build_icmp_echo_reply
from stack.tcpip.wire.icmpv6 import build_icmpv6_echo_request
from stack.usermode.socket import SOCK_DGRAM, Socket

from world_harness import SECOND, any_address, lab, run_programs, server_address, start

# the layers these tests decode, not scapy.all (which loads every protocol scapy knows: ~0.8 s
# of CPU more in each test process that collects this module)
pytest.importorskip("scapy.layers.inet")

CLIENT4, SERVER4 = IPv4Address("10.0.0.2"), IPv4Address("10.0.0.1")
CLIENT6, SERVER6 = IPv6Address("fd00::2"), IPv6Address("fd00::1")


def _server(version: int):
    return SERVER4 if version == 4 else SERVER6


def _ping(world, destination, size: int, count: int = 2):
    transport = world.host("client").transport
    session = world.run_in("client", lambda: transport.ping(destination, count=count, payload_size=size,
                                                             interval_ns=SECOND // 10))
    world.run_while(lambda: not session.done, max_time_ns=world.now_ns + 10 * SECOND)
    return session


def _client_link_capture(world) -> Capture:
    """Every frame once: the client's link sees both directions of every exchange with the server."""
    return Capture().attach_link(world.host("client").link).start()


def _server_link_capture(world) -> Capture:
    """What the server's link carried: the frames that reached the server (past a lossy client link)
    and the server's own."""
    return Capture().attach_link(world.host("winsrv").link).start()


def _counters(world, host: str):
    return world.host(host).stack.counters


def _udp_receiver(address, count: int):
    sock = yield from Socket.create(2 if address.ip.version == 4 else 23, SOCK_DGRAM)
    yield from sock.bind(address)
    got = []
    for _ in range(count):
        data, _ = yield from sock.recvfrom(65536)
        got.append(data)
    yield from sock.close()
    return got


def _udp_sender(address, messages):
    sock = yield from Socket.create(2 if address.ip.version == 4 else 23, SOCK_DGRAM)
    for message in messages:
        yield from sock.sendto(message, address)
    yield from sock.close()


def _send_udp(world, version: int, messages: list[bytes], port: int = 5100) -> list[bytes]:
    receiver = start(world, "winsrv", _udp_receiver, any_address(version, port), len(messages))
    world.run_for(1_000_000)
    sender = start(world, "client", _udp_sender, server_address(world, version, port), messages)
    run_programs(world, receiver, sender)
    return receiver.result


# --- scapy helpers ---------------------------------------------------------------------------

def _ip_packets(frames: list[bytes]):
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether
    return [Ether(f)[IP] for f in frames if Ether(f).haslayer(IP)]


def _v6_datagrams(frames: list[bytes]) -> list:
    """The IPv6 packets of the capture with fragments put back together by scapy's defragment6."""
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, defragment6
    from scapy.layers.l2 import Ether
    whole, groups = [], {}
    for f in frames:
        packet = Ether(f)
        if not packet.haslayer(IPv6):
            continue
        if packet.haslayer(IPv6ExtHdrFragment):
            ip = packet[IPv6]
            groups.setdefault((ip.src, ip.dst, packet[IPv6ExtHdrFragment].id), []).append(ip)
        else:
            whole.append(packet[IPv6])
    return whole + [IPv6(bytes(defragment6(group))) for group in groups.values()]  # decoded afresh


def _checksum_mismatches(packet, *, ip_header: bool = False) -> list[str]:
    """Recompute the L4 checksum of a reassembled packet (or, `ip_header`, the IPv4 header
    checksum of a fragment as it was on the wire); name the ones that differ."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6TimeExceeded, IPv6
    cls = IP if packet.haslayer(IP) else IPv6
    fresh = packet.copy()
    candidates = (IP,) if ip_header else (UDP, ICMP, ICMPv6EchoRequest, ICMPv6EchoReply, ICMPv6TimeExceeded)
    layers = [layer for layer in candidates if fresh.haslayer(layer)]
    for layer in layers:
        for name in ("chksum", "cksum"):
            if name in fresh[layer].fields:
                delattr(fresh[layer], name)
    rebuilt = cls(bytes(fresh))
    bad = []
    for layer in layers:
        name = "cksum" if "cksum" in packet[layer].fields else "chksum"
        if getattr(packet[layer], name) != getattr(rebuilt[layer], name):
            bad.append(f"{layer.__name__}: {packet.summary()}")
    return bad


# --- ping ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1600, 4000, 65500])
@pytest.mark.parametrize("version", [4, 6])
def test_big_ping_gets_byte_exact_replies(version, size):
    world = lab(seed=5)
    session = _ping(world, _server(version), size)
    assert (session.sent, session.received) == (2, 2)  # a reply counts only with our data back byte-exact
    assert session.payload_size == size
    client, server = _counters(world, "client"), _counters(world, "winsrv")
    fragments = -(-(size + 8) // (1480 if version == 4 else 1448))
    for side in (client, server):
        assert getattr(side, f"ipv{version}_datagrams_fragmented") == 2
        assert getattr(side, f"ipv{version}_fragments_created") == 2 * fragments
        assert getattr(side, f"ipv{version}_reassembly_required") == 2 * fragments
        assert getattr(side, f"ipv{version}_reassembly_successful") == 2
        assert getattr(side, f"ipv{version}_reassembly_failures") == 0
        assert side.total_drops == 0
    # echo data too big for a header slot went out of pool buffers that all came back
    from stack.kernel.pool import TagUsage, tag_from_str
    pooled = 2 if size > MAX_ICMP_BODY else 0
    for host in ("client", "winsrv"):
        usage = world.host(host).kernel.pool.usage.get((tag_from_str("IpDg"), False), TagUsage())
        assert usage.allocs == usage.frees == pooled and usage.bytes_in_use == 0
        slots = world.host(host).stack.slot_pool
        assert len(slots.free) == slots.total  # every fragment's header slot is back


@pytest.mark.parametrize("version", [4, 6])
def test_big_ping_capture_decodes_and_scapy_reassembles_the_same_echo_data(version):
    from scapy.layers.inet import ICMP, IP, defragment
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest
    world = lab(seed=6)
    capture = _client_link_capture(world)
    session = _ping(world, _server(version), 4000, count=1)
    assert session.received == 1
    frames = [r.frame for r in capture.records]
    assert max(len(f) for f in frames) <= 1514  # every fragment fits the link
    if version == 4:
        packets = _ip_packets(frames)
        fragments = [p for p in packets if p.flags.MF or p.frag]
        assert len(fragments) == 6 and all(not p.flags.DF for p in fragments)
        assert all(p.frag * 8 % 8 == 0 for p in fragments)
        assert len({(p.src, p.id) for p in fragments}) == 2  # one identification per datagram (and host)
        assert [m for p in fragments for m in _checksum_mismatches(p, ip_header=True)] == []
        datagrams = [p for p in defragment(packets) if p.haslayer(ICMP)]
        echo = [p for p in datagrams if p[ICMP].type in (0, 8)]
    else:
        datagrams = _v6_datagrams(frames)
        echo = [p for p in datagrams if p.haslayer(ICMPv6EchoRequest) or p.haslayer(ICMPv6EchoReply)]
    assert len(echo) == 2
    for packet in echo:
        assert _checksum_mismatches(packet) == []
        data = bytes(packet[ICMP].payload) if version == 4 else bytes(
            (packet[ICMPv6EchoRequest] if packet.haslayer(ICMPv6EchoRequest) else packet[ICMPv6EchoReply]).data)
        assert data == ping_data(4000)


def test_an_echo_reply_with_other_data_is_not_a_reply():
    world = lab(seed=7)
    _ping(world, SERVER4, 32, count=1)  # ARP done
    transport = world.host("client").transport
    session = world.run_in("client", lambda: transport.ping(SERVER4, count=1, payload_size=100))
    wrong = build_icmp_echo_reply(session.identifier, 0, b"x" * 100)
    frame = build_ethernet(world.host("client").mac, world.host("winsrv").mac, ETHERTYPE_IPV4,
                           build_ipv4(SERVER4.packed, CLIENT4.packed, 1, wrong))
    world.host("client").nic.deliver(frame, world.now_ns)  # before the real reply
    world.run_while(lambda: not session.done, max_time_ns=world.now_ns + 5 * SECOND)
    assert session.received == 1
    assert _counters(world, "client").drops[("icmp", "echo_data_mismatch")] == 1


# --- UDP --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 6])
def test_udp_datagram_of_20000_bytes_arrives_byte_exact_and_scapy_agrees(version):
    from scapy.layers.inet import UDP, defragment
    world = lab(seed=8)
    capture = _client_link_capture(world)
    message = random.Random(version).randbytes(20000)
    assert _send_udp(world, version, [message]) == [message]
    frames = [r.frame for r in capture.records]
    if version == 4:
        datagrams = [p for p in defragment(_ip_packets(frames)) if p.haslayer(UDP)]
    else:
        datagrams = [p for p in _v6_datagrams(frames) if p.haslayer(UDP)]
    assert len(datagrams) == 1
    assert bytes(datagrams[0][UDP].payload) == message
    assert _checksum_mismatches(datagrams[0]) == []
    assert getattr(_counters(world, "winsrv"), f"ipv{version}_reassembly_successful") == 1
    # the payload went out zero-copy (partial MDLs over the sender's buffer): only the UDP header was copied
    copies = world.host("client").kernel.copies.snapshot()
    assert copies["ip fragmentation"] == (1, 8)


def test_largest_udp_datagrams_pass_and_bigger_ones_are_refused():
    world = lab(seed=9)
    v4, v6 = random.Random(1).randbytes(65507), random.Random(2).randbytes(65527)
    assert _send_udp(world, 4, [v4], port=5200) == [v4]
    assert _send_udp(world, 6, [v6], port=5201) == [v6]
    from stack.kernel import STATUS_INVALID_PARAMETER
    from stack.tcpip.addr import SockAddr
    transport = world.host("client").transport

    def try_send(version: int, size: int) -> int:
        status, endpoint = transport.udp_open(SockAddr(CLIENT4 if version == 4 else CLIENT6, 0))
        result = endpoint.send_bytes_to(SockAddr(_server(version), 9), bytes(size))
        endpoint.close()
        return result

    assert world.run_in("client", try_send, 4, 65508) == STATUS_INVALID_PARAMETER
    assert world.run_in("client", try_send, 6, 65528) == STATUS_INVALID_PARAMETER


def test_a_datagram_that_asked_for_checksum_offload_is_checksummed_before_it_is_fragmented():
    from stack.tcpip.wire import emit_udp
    world = lab(seed=17)
    _ping(world, SERVER4, 32, count=1)
    data = random.Random(3).randbytes(3000)

    def send() -> None:
        ip = world.host("client").stack.ip
        packet = ip.new_packet(ip.route(SERVER4), 17)
        views = ip.allocate_payload(packet, len(data))
        views[0][:] = data[:len(views[0])]
        if len(views) > 1:
            views[1][:] = data[len(views[0]):]
        emit_udp(packet.buf, packet.l4_offset, src_port=40000, dst_port=4321, payload=views)
        packet.buf[packet.l4_offset + 6:packet.l4_offset + 8] = b"\xbe\xef"  # left to offload: not yet right
        packet.l4_length = 8
        packet.checksum_offload = True
        ip.send_packet(packet)

    world.run_in("client", send)
    world.run_for(SECOND)
    server = _counters(world, "winsrv")
    assert server.ipv4_reassembly_successful == 1
    assert server.drops[("udp", "no_endpoint")] == 1 and server.drops[("udp", "bad_checksum")] == 0
    assert _counters(world, "client").checksum_offload_sends == 0  # never asked of the NIC for fragments


# --- loss and the reassembly timer ------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 6])
def test_lost_fragments_time_out_are_counted_and_icmp_time_exceeded_goes_out(version):
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    from scapy.layers.inet6 import ICMPv6TimeExceeded, IPv6ExtHdrFragment
    world = lab(seed=10)
    _ping(world, _server(version), 32, count=1)  # neighbours resolved before the link turns bad
    capture = _server_link_capture(world)
    world.set_faults("client", FaultConfig(loss=0.4), direction=0)
    session = _ping(world, _server(version), 4000, count=12)
    world.clear_faults()
    world.run_for(61 * SECOND)
    server = _counters(world, "winsrv")
    # what reached the server, datagram by datagram: which fragments (by offset)
    arrived: dict[int, set[int]] = {}
    exceeded = []
    for record in capture.records:
        packet = Ether(record.frame)
        if version == 4 and packet.haslayer(IP):
            ip = packet[IP]
            if ip.src == str(CLIENT4) and (ip.flags.MF or ip.frag):
                arrived.setdefault(ip.id, set()).add(ip.frag * 8)
            if ip.src == str(SERVER4) and packet.haslayer(ICMP) and packet[ICMP].type == 11:
                exceeded.append(packet)
        elif version == 6 and packet.haslayer(ICMPv6TimeExceeded):  # (it quotes a fragment header too)
            exceeded.append(packet)
        elif version == 6 and packet.haslayer(IPv6ExtHdrFragment):
            if packet["IPv6"].src == str(CLIENT6):
                arrived.setdefault(packet[IPv6ExtHdrFragment].id, set()).add(packet[IPv6ExtHdrFragment].offset * 8)
    incomplete = [offsets for offsets in arrived.values() if len(offsets) < 3]
    with_first = [offsets for offsets in incomplete if 0 in offsets]
    assert incomplete and with_first and len(with_first) < len(incomplete)  # the seed gives every case
    assert getattr(server, f"ipv{version}_reassembly_failures") == len(incomplete)
    assert getattr(server, f"ipv{version}_reassembly_successful") == len(arrived) - len(incomplete)
    assert server.drops[(f"ipv{version}", "reassembly_timeout")] == len(incomplete)
    # ICMP only for the datagrams whose first fragment arrived, code 1, quoting that fragment
    assert server.time_exceeded_sent == len(exceeded) == len(with_first)
    for packet in exceeded:
        if version == 4:
            assert packet[ICMP].code == 1
            quoted = bytes(packet[ICMP].payload)
            assert len(quoted) == 28 and quoted[6] & 0x20 and quoted[20] == 8  # header with MF, echo request
        else:
            assert packet[ICMPv6TimeExceeded].code == 1
            quoted = bytes(packet)[14 + 40 + 8:]  # as much of the first fragment as fits the minimum MTU
            assert quoted[6] == 44 and quoted[48] == 128 and len(quoted) == 1280 - 40 - 8
    assert world.host("winsrv").stack.ip.fragmentation.snapshot()[f"ipv{version}"] == {"datagrams": 0,
                                                                                      "bytes_held": 0}
    assert session.received < 12
    assert _counters(world, "client").drops.get(("icmp", "unsupported_type"), 0) == 0
    assert _counters(world, "client").drops.get(("icmpv6", "unsupported_type"), 0) == 0


# --- crafted fragments -------------------------------------------------------------------------------

def _inject(world, frame: bytes, host: str = "winsrv") -> None:
    world.host(host).nic.deliver(frame, world.now_ns)
    world.run_for(200_000)
    world.check()


def _to_server(world, ethertype: int, packet: bytes) -> bytes:
    return build_ethernet(world.host("winsrv").mac, world.host("client").mac, ethertype, packet)


def test_a_fragment_flood_with_distinct_ids_never_holds_more_than_the_cap():
    world = lab(seed=11)
    table = world.host("winsrv").stack.ip.fragmentation.v4
    table.max_datagrams = 16
    most = 0
    for ident in range(60):
        packet = build_ipv4(CLIENT4.packed, SERVER4.packed, 17, b"f" * 1000, identification=ident,
                            more_fragments=True, fragment_offset=1480)
        _inject(world, _to_server(world, ETHERTYPE_IPV4, packet))
        most = max(most, len(table.entries))
        assert len(table.entries) <= 16 and table.bytes_held <= table.max_bytes
    server = _counters(world, "winsrv")
    assert most == 16 and server.drops[("ipv4", "reassembly_limit")] == 44
    assert server.ipv4_reassembly_required == 60
    world.run_for(61 * SECOND)
    assert table.entries == {} and table.bytes_held == 0
    assert server.ipv4_reassembly_failures == 16 and server.time_exceeded_sent == 0  # no first fragments


def test_a_fragmented_tcp_syn_reaches_tcp_like_any_other():
    world = lab(seed=12)
    syn = build_tcp(CLIENT4.packed, SERVER4.packed, 40000, 4444, 1000, 0, SYN)  # a closed port: RST
    for offset, more in ((0, True), (8, False)):
        chunk = syn[offset:offset + 8] if more else syn[offset:]
        packet = build_ipv4(CLIENT4.packed, SERVER4.packed, 6, chunk, identification=77, more_fragments=more,
                            fragment_offset=offset)
        _inject(world, _to_server(world, ETHERTYPE_IPV4, packet))
    server = _counters(world, "winsrv")
    assert server.ipv4_reassembly_successful == 1 and server.tcp_resets_sent == 1
    assert server.ipv4_received == 2  # the fragments; the reassembled datagram is not a third arrival


def test_ipv6_atomic_fragment_is_an_ordinary_datagram():
    world = lab(seed=13)
    _ping(world, SERVER6, 32, count=1)  # ND done
    echo = build_icmpv6_echo_request(CLIENT6.packed, SERVER6.packed, 0x4242, 1, b"atomic")
    header = bytearray(8)
    emit_fragment_header(header, 0, next_header=58, fragment_offset=0, more=False, identification=9)
    before = _counters(world, "winsrv").echo_replies_sent
    _inject(world, _to_server(world, ETHERTYPE_IPV6, build_ipv6(CLIENT6.packed, SERVER6.packed, 44,
                                                                 bytes(header) + echo)))
    server = _counters(world, "winsrv")
    assert server.echo_replies_sent == before + 1
    assert server.ipv6_reassembly_required == 0 and server.total_drops == 0


def test_ipv6_overlapping_fragments_discard_the_datagram():
    world = lab(seed=14)
    received: list = []
    world.bus.subscribe(lambda e: received.append(e) if isinstance(e, FragmentReassembled) else None)
    for offset, more, data in ((0, True, b"a" * 16), (8, True, b"b" * 16), (24, False, b"c" * 8)):
        header = bytearray(8)
        emit_fragment_header(header, 0, next_header=17, fragment_offset=offset, more=more, identification=3)
        _inject(world, _to_server(world, ETHERTYPE_IPV6,
                                  build_ipv6(CLIENT6.packed, SERVER6.packed, 44, bytes(header) + data)))
    server = _counters(world, "winsrv")
    assert server.drops[("ipv6", "fragment_overlap")] == 1
    assert server.drops[("ipv6", "reassembly_discarded")] == 1
    assert server.ipv6_reassembly_failures == 1 and server.ipv6_reassembly_successful == 0
    world.run_for(61 * SECOND)
    assert server.ipv6_reassembly_failures == 1 and server.time_exceeded_sent == 0  # discarded silently
    assert received == []


def test_reassembly_is_observable_and_counted_as_one_copy_per_fragment():
    world = lab(seed=15)
    seen: list = []
    world.bus.subscribe(lambda e: seen.append(e) if isinstance(e, FragmentReassembled) else None)
    session = _ping(world, SERVER4, 4000, count=1)
    assert session.received == 1
    assert [(e.host, e.version, e.fragments, e.length) for e in seen] == [("winsrv", 4, 3, 4028),
                                                                           ("client", 4, 3, 4028)]
    reassembly = world.host("winsrv").kernel.copies.snapshot()["ip reassembly"]
    assert reassembly == (3, 4008)  # the echo request's L4 bytes, each copied once out of its NBL


def test_same_seed_gives_the_same_fragments_on_the_wire():
    def run() -> list[bytes]:
        world = lab(seed=16)
        capture = _client_link_capture(world)
        _ping(world, SERVER6, 3000, count=1)
        _send_udp(world, 4, [bytes(range(256)) * 40])
        return [r.frame for r in capture.records]

    first = run()
    assert first == run()
    assert any(parse_frame(f).network is not None for f in first)


# --- the debugger ---------------------------------------------------------------------------------------

def test_ping_command_takes_up_to_65500_bytes_and_ipstats_shows_fragmentation():
    from tests.wskdbg.net_lab import bare_engine, run
    engine = bare_engine()
    try:
        out = run(engine, "!ping /w -n 1 -l 65500 winsrv")
        assert "Pinging 10.0.0.1 with 65500 bytes of data:" in out
        assert "Reply from 10.0.0.1: bytes=65500 time=" in out and "Received = 1, Lost = 0" in out
        error = engine.execute("!ping -l 65501 winsrv")
        assert error.error and "l must be between 0 and 65500" in error.text
        stats = run(engine, "!ipstats")
        for label, value in (("Reassembly Required", 45), ("Reassembly Successful", 1), ("Reassembly Failures", 0),
                             ("Datagrams Successfully Fragmented", 1), ("Datagrams Failing Fragmentation", 0),
                             ("Fragments Created", 45)):
            assert f"  {label:<34}= {value}" in stats
        assert stats.index("IPv4 Statistics") < stats.index("Reassembly Required") < stats.index("IPv6 Statistics")
    finally:
        engine.close()
