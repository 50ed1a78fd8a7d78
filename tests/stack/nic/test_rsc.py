"""Receive segment coalescing in the NIC: which segments join, and what the unit looks like in memory."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Ether

from stack.kernel.machine import Machine
from stack.kernel.pool import NonPagedPoolNx
from stack.ndis.nbl import build_nonpaged_mdl
from stack.nic import EmulatedNic, NicOffloads
from stack.nic.rsc import MAX_IP_DATAGRAM, classify
from stack.wire.checksum import ones_sum

MAC = bytes.fromhex("020000000001")
PEER = bytes.fromhex("020000000002")
BUFFER = 1514


def rsc_nic(buffers: int = 64, buffer_size: int = BUFFER, mtu: int = 1500):
    machine = Machine(seed=21, memory_mb=8)
    k = machine.kernel
    nic = EmulatedNic(k, MAC, mtu=mtu, offloads=NicOffloads(rsc=True))
    for i in range(buffers):
        va = k.pool.allocate(NonPagedPoolNx, buffer_size, "RxBf")
        mdl = build_nonpaged_mdl(k, va, buffer_size)
        sg, pos, left = [], mdl.byte_offset, buffer_size
        for pfn in mdl.pfns:
            take = min(0x1000 - (pos & 0xFFF), left)
            if take <= 0:
                break
            sg.append((pfn, pos & 0xFFF, take))
            pos += take
            left -= take
        nic.post_rx_buffer(sg, va)
    return k, nic


def v4(seq: int, payload: bytes, *, ack: int = 5000, window: int = 1000, flags: str = "A", ts: int | None = None,
       sport: int = 40000, options: list | None = None, ip_options: bytes = b"", tos: int = 0, frag: int = 0) -> bytes:
    opts = options if options is not None else ([("NOP", None), ("NOP", None), ("Timestamp", (ts, 77))]
                                                 if ts is not None else [])
    ip = IP(src="10.0.0.2", dst="10.0.0.1", tos=tos, flags="DF", frag=frag, id=seq & 0xFFFF, ttl=64)
    if ip_options:
        ip.options = ip_options
    pkt = Ether(dst=MAC, src=PEER) / ip / TCP(sport=sport, dport=7, seq=seq, ack=ack, flags=flags, window=window,
                                             options=opts) / payload
    return bytes(pkt)


def v6(seq: int, payload: bytes, *, ack: int = 5000, ext: bool = False) -> bytes:
    ip = IPv6(src="fd00::2", dst="fd00::1")
    inner = TCP(sport=40000, dport=7, seq=seq, ack=ack, flags="A", window=1000) / payload
    pkt = Ether(dst=MAC, src=PEER) / (ip / IPv6ExtHdrDestOpt() / inner if ext else ip / inner)
    return bytes(pkt)


def unit_bytes(k, nic, completion) -> bytes:
    """The unit as tcpip would see it: the first buffer's frame, then each joined buffer's payload."""
    data = k.mem.read(completion.cookie, completion.length)
    for va, length in completion.rsc.extra if completion.rsc else ():
        data += k.mem.read(va, length)
    return data


PAYLOADS = [bytes([i]) * 1000 for i in range(1, 6)]


def test_in_order_data_segments_of_one_connection_become_one_unit():
    k, nic = rsc_nic()
    seq = 1000
    for p in PAYLOADS:
        nic.frame_arrived(v4(seq, p))
        seq += len(p)
    (done,) = nic.take_rx_completions()
    assert done.rsc.segments == 5 and done.rsc.extra_bytes == 4000
    assert nic.counters.rsc_units == 1 and nic.counters.rsc_coalesced_segments == 4
    assert nic.counters.frames_in == 5


def test_unit_headers_describe_the_whole_unit_and_the_ip_checksum_is_recomputed():
    k, nic = rsc_nic()
    seq = 1000
    for i, p in enumerate(PAYLOADS):
        nic.frame_arrived(v4(seq, p, ack=5000 + i * 10, window=1000 + i))
        seq += len(p)
    (done,) = nic.take_rx_completions()
    parsed = Ether(unit_bytes(k, nic, done))
    assert parsed[IP].len == 20 + 20 + 5000
    assert ones_sum(bytes(parsed[IP])[:20]) == 0xFFFF
    tcp = parsed[TCP]
    assert tcp.seq == 1000 and tcp.ack == 5040 and tcp.window == 1004
    assert bytes(tcp.payload) == b"".join(PAYLOADS)
    assert not tcp.flags & 0x08  # no segment had PSH


def test_psh_on_any_joined_segment_is_kept_on_the_unit():
    k, nic = rsc_nic()
    nic.frame_arrived(v4(1000, PAYLOADS[0]))
    nic.frame_arrived(v4(2000, PAYLOADS[1], flags="PA"))
    (done,) = nic.take_rx_completions()
    assert Ether(unit_bytes(k, nic, done))[TCP].flags & 0x08


def test_joined_segments_put_only_their_payload_in_memory():
    k, nic = rsc_nic()
    nic.frame_arrived(v4(1000, PAYLOADS[0]))
    nic.frame_arrived(v4(2000, PAYLOADS[1]))
    (done,) = nic.take_rx_completions()
    ((va, length),) = done.rsc.extra
    assert length == 1000 and k.mem.read(va, length) == PAYLOADS[1]
    assert nic.dma_rx_bytes == len(v4(1000, PAYLOADS[0])) + 1000


def test_out_of_order_segment_ends_the_unit_and_starts_the_next():
    k, nic = rsc_nic()
    nic.frame_arrived(v4(1000, PAYLOADS[0]))
    nic.frame_arrived(v4(2000, PAYLOADS[1]))
    nic.frame_arrived(v4(4000, PAYLOADS[2]))  # a hole at 3000
    nic.frame_arrived(v4(5000, PAYLOADS[3]))
    first, second = nic.take_rx_completions()
    assert first.rsc.segments == 2 and second.rsc.segments == 2
    assert nic.counters.rsc_aborts["out_of_order"] == 1
    assert Ether(unit_bytes(k, nic, second))[TCP].seq == 4000


def test_pure_ack_is_not_coalesced_and_ends_the_unit():
    k, nic = rsc_nic()
    nic.frame_arrived(v4(1000, PAYLOADS[0]))
    nic.frame_arrived(v4(2000, PAYLOADS[1]))
    nic.frame_arrived(v4(3000, b""))
    nic.frame_arrived(v4(3000, PAYLOADS[2]))
    unit, ack, fresh = nic.take_rx_completions()
    assert unit.rsc.segments == 2 and ack.rsc is None and fresh.rsc.segments == 1


def test_fin_syn_rst_urg_segments_are_exceptions():
    for flags in ("FA", "S", "RA", "UA", "EA"):
        seg, flow = classify(v4(1000, b"x" * 10, flags=flags))
        assert seg is None and flow is not None, flags


def test_ip_options_fragments_and_ecn_ce_are_exceptions():
    assert classify(v4(1000, b"x" * 10, ip_options=b"\x01\x01\x01\x00"))[0] is None
    assert classify(v4(1000, b"x" * 10, frag=100))[0] is None
    assert classify(v4(1000, b"x" * 10, tos=0x03))[0] is None


def test_only_the_timestamp_option_may_be_present():
    assert classify(v4(1000, b"x" * 10, ts=123))[0] is not None
    sack = [("NOP", None), ("NOP", None), ("SAck", (100, 200))]
    assert classify(v4(1000, b"x" * 10, options=sack))[0] is None


def test_ipv6_extension_headers_are_not_coalesced_but_plain_ipv6_is():
    assert classify(v6(1000, b"x" * 10))[0] is not None
    assert classify(v6(1000, b"x" * 10, ext=True))[0] is None


def test_ipv6_unit_payload_length_covers_every_segment():
    k, nic = rsc_nic()
    nic.frame_arrived(v6(1000, PAYLOADS[0]))
    nic.frame_arrived(v6(2000, PAYLOADS[1]))
    (done,) = nic.take_rx_completions()
    parsed = Ether(unit_bytes(k, nic, done))
    assert parsed[IPv6].plen == 20 + 2000 and bytes(parsed[TCP].payload) == PAYLOADS[0] + PAYLOADS[1]


def test_backwards_ack_or_timestamp_ends_the_unit():
    k, nic = rsc_nic()
    nic.frame_arrived(v4(1000, PAYLOADS[0], ack=9000))
    nic.frame_arrived(v4(2000, PAYLOADS[1], ack=8000))
    assert [c.rsc.segments for c in nic.take_rx_completions()] == [1, 1]
    nic.frame_arrived(v4(3000, PAYLOADS[2], ts=500))
    nic.frame_arrived(v4(4000, PAYLOADS[3], ts=400))
    assert [c.rsc.segments for c in nic.take_rx_completions()] == [1, 1]


def test_unit_keeps_the_first_timestamp_and_reports_the_delta():
    k, nic = rsc_nic()
    nic.frame_arrived(v4(1000, PAYLOADS[0], ts=500))
    nic.frame_arrived(v4(2000, PAYLOADS[1], ts=530))
    (done,) = nic.take_rx_completions()
    options = dict(Ether(unit_bytes(k, nic, done))[TCP].options)
    assert options["Timestamp"] == (500, 77) and done.rsc.timestamp_delta == 30


def test_unit_never_grows_past_the_largest_ip_datagram():
    k, nic = rsc_nic(buffers=80)
    seq = 0
    for _ in range(60):
        nic.frame_arrived(v4(seq, b"z" * 1400))
        seq += 1400
    units = nic.take_rx_completions()
    assert sum(u.rsc.segments for u in units) == 60 and len(units) == 2
    for u in units:
        assert 40 + 1400 * u.rsc.segments <= MAX_IP_DATAGRAM
    assert nic.counters.rsc_aborts["max_size"] == 1


def test_bad_checksum_segment_is_never_coalesced():
    k, nic = rsc_nic()
    nic.frame_arrived(v4(1000, PAYLOADS[0]))
    bad = bytearray(v4(2000, PAYLOADS[1]))
    bad[-1] ^= 0xFF
    nic.frame_arrived(bytes(bad))
    first, second = nic.take_rx_completions()
    assert first.rsc.segments == 1 and second.rsc is None and second.checksum & 1  # TCP checksum failed


def test_two_connections_interleaved_form_two_units():
    k, nic = rsc_nic()
    for i in range(3):
        nic.frame_arrived(v4(1000 + i * 1000, PAYLOADS[i], sport=40000))
        nic.frame_arrived(v4(7000 + i * 1000, PAYLOADS[i], sport=40001))
    a, b = nic.take_rx_completions()
    assert a.rsc.segments == 3 and b.rsc.segments == 3


def test_taking_the_completions_closes_every_unit():
    k, nic = rsc_nic()
    nic.frame_arrived(v4(1000, PAYLOADS[0]))
    nic.frame_arrived(v4(2000, PAYLOADS[1]))
    nic.take_rx_completions()
    nic.frame_arrived(v4(3000, PAYLOADS[2]))
    (done,) = nic.take_rx_completions()
    assert done.rsc.segments == 1


def test_ring_accounting_counts_buffers_held_by_an_open_unit():
    k, nic = rsc_nic(buffers=4)
    nic.frame_arrived(v4(1000, PAYLOADS[0]))
    nic.frame_arrived(v4(2000, PAYLOADS[1]))
    # ring of 256: 2 still posted, 1 completed (the unit's head), 1 filled by the joined segment
    assert nic.rx_posted == 2 and nic.rx_free == nic.rx_ring_size - 2 - 1 - 1


def test_rsc_off_indicates_every_segment_alone():
    k, nic = rsc_nic()
    nic.offloads.rsc = False
    nic.frame_arrived(v4(1000, PAYLOADS[0]))
    nic.frame_arrived(v4(2000, PAYLOADS[1]))
    assert [c.rsc for c in nic.take_rx_completions()] == [None, None]

