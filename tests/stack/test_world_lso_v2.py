"""LSOv2 past 64 KB: an adapter whose MaxOffLoadSize is larger than 64 KB takes large sends that big
on window-scaled connections (IP length 0, the length from the NET_BUFFER), and they still become
exactly the wire frames LSO would cut - with pass-through or without, captured or not."""

from __future__ import annotations

import pytest

from stack.nic import NicOffloads
from stack.nic.offload import RX_IP_SUCCEEDED, RX_TCP_SUCCEEDED, validate_rx_checksums
from stack.tcpip.tcp import MS, TcpConfig
from stack.tcpip.wire.ipv4 import emit_ipv4
from stack.usermode.programs import bulk_receiver, bulk_sender
from stack.world import default_world

from world_harness import any_address, run_programs, server_address, start

KiB = 1024
BIG = 256 * KiB


def _lab(lso_max_size: int, *, window_scaling: bool = True, passthrough: bool = True):
    offloads = NicOffloads(lso=True, rsc=True, lso_max_size=lso_max_size)
    config = TcpConfig(time_wait_ns=1000 * MS, window_scaling=window_scaling)
    # The Interrupt Moderation Rate Off: with the lab's default (Adaptive) RSC units grow to ~28 segments, each
    # ACKed once, so fewer ACKs open the window and the bursts depend on the moderation too.  These tests are
    # about the large sends, so the NICs interrupt per packet.
    world = default_world(3, services=False, offloads=offloads, tcp_config=config, interrupt_moderation_rate="Off")
    for host in world.hosts.values():
        host.nic.passthrough = passthrough
    return world


def _bulk(world, version: int = 4, total: int = 1 << 20):
    """bulk_sender's blocking 256 KiB sends with SO_SNDBUF 0: each completes on its ACK, so the next
    leaves into an open window, in one burst (with afd's send buffering the sends queue up behind
    each other and leave as the ACKs open the window, in smaller bursts)."""
    server = start(world, "winsrv", bulk_receiver, any_address(version, 9))
    world.run_for(1_000_000)
    client = start(world, "client", bulk_sender, server_address(world, version, 9), total, 256 * KiB, 1, 0)
    run_programs(world, server, client)
    assert server.result.received == total
    assert server.result.received_sha256 == client.result.sent_sha256
    return world.host("client")


@pytest.mark.parametrize("version", [4, 6])
def test_max_offload_size_past_64k_gives_large_sends_past_64k_on_window_scaled_connections(version):
    client = _bulk(_lab(BIG), version)
    assert 64 * KiB < client.nic.counters.lso_largest <= BIG
    assert client.stack.counters.tcp_segments_retransmitted == 0
    assert all(i.lso_v4_max == BIG and i.lso_v6_max == BIG for i in client.stack.interfaces if i.binding)


def test_the_default_max_offload_size_keeps_large_sends_within_64k():
    client = _bulk(_lab(64 * KiB))
    assert 0 < client.nic.counters.lso_largest < 64 * KiB


def test_large_sends_stay_within_64k_without_window_scaling():
    client = _bulk(_lab(BIG, window_scaling=False))
    assert 0 < client.nic.counters.lso_largest < 64 * KiB


def test_fewer_large_sends_carry_the_same_bytes_past_64k():
    small, big = _bulk(_lab(64 * KiB)), _bulk(_lab(BIG))
    assert big.stack.counters.lso_sends < small.stack.counters.lso_sends
    # the same wire frames and bytes (a few more of them leave as one-segment sends, not LSO, in the big case)
    assert big.nic.counters.frames_out == small.nic.counters.frames_out
    assert big.nic.counters.bytes_out == small.nic.counters.bytes_out
    assert big.stack.counters.tcp_segments_retransmitted == small.stack.counters.tcp_segments_retransmitted == 0


def test_a_capture_cuts_large_sends_past_64k_into_real_frames_with_true_lengths_and_checksums():
    world = _lab(BIG)
    capture = world.capture()
    client = _bulk(world)
    assert client.nic.counters.lso_largest > 64 * KiB
    assert client.nic.passthrough_counters.units == 0  # the capture made every unit real frames
    frames = [r.frame for r in capture.records]
    tcp_data = [f for f in frames if len(f) > 100 and f[12:14] == b"\x08\x00" and f[23] == 6]
    assert len(tcp_data) > 700  # 1 MiB in 1448-byte segments
    for frame in tcp_data:
        assert len(frame) <= 1514
        assert int.from_bytes(frame[16:18], "big") == len(frame) - 14  # the IP length of this frame, never 0
        assert validate_rx_checksums(frame) == RX_IP_SUCCEEDED | RX_TCP_SUCCEEDED


def test_passthrough_gives_the_same_events_above_ndis_with_large_sends_past_64k():
    runs = {}
    for on in (False, True):
        world = _lab(BIG, passthrough=on)
        events: list = []
        world.bus.subscribe(events.append)
        _bulk(world, total=768 * KiB)
        runs[on] = (world, [(e.kind, e.host, e.time_ns, e.describe()) for e in events
                            if not e.kind.startswith(("frame.", "interrupt"))
                            and (getattr(e, "symbol", "") or "").split("!")[0].lower() != "netvmini"])
    (off_world, off_events), (on_world, on_events) = runs[False], runs[True]
    assert on_world.host("client").nic.counters.lso_largest > 64 * KiB
    assert on_world.host("client").nic.passthrough_counters.units > 0
    assert off_world.host("client").nic.passthrough_counters.units == 0
    assert len(on_events) > 1000 and on_events == off_events


def test_an_ipv4_header_past_64k_says_total_length_zero_for_lsov2_only():
    buf = bytearray(20)
    emit_ipv4(buf, 0, src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), protocol=6, payload_length=100_000, large_send=True)
    assert buf[2:4] == b"\x00\x00"
    assert validate_ip_checksum(buf)
    with pytest.raises(ValueError):
        emit_ipv4(bytearray(20), 0, src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), protocol=6, payload_length=100_000)


def validate_ip_checksum(header: bytes) -> bool:
    total = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, 20, 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def test_max_offload_size_is_bounded_by_what_the_nic_reports():
    with pytest.raises(ValueError):
        NicOffloads(lso_max_size=BIG + 1)
    with pytest.raises(ValueError):
        NicOffloads(lso_max_size=0)
