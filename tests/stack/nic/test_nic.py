"""The emulated NIC: DMA through page frames, receive drops, interrupts, and capture to pcap."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from stack.kernel.irql import NIC_DIRQL
from stack.kernel.machine import Machine
from stack.kernel.pool import NonPagedPoolNx
from stack.ndis import NET_BUFFER_LIST_POOL_PARAMETERS, NdisAllocateNetBufferAndNetBufferList, build_sg_list
from stack.ndis import NdisAllocateNetBufferListPool
from stack.ndis.nbl import build_nonpaged_mdl
from stack.nic import Capture, EmulatedNic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ndis"))
from ndis_harness import MAC_A, MAC_B, ethernet, two_hosts  # noqa: E402

MAC = bytes.fromhex("020000000001")


def bare_nic(buffers: int = 4, buffer_size: int = 1514, **kw):
    machine = Machine(seed=11, memory_mb=4)
    k = machine.kernel
    nic = EmulatedNic(k, MAC, **kw)
    cookies = []
    for i in range(buffers):
        va = k.pool.allocate(NonPagedPoolNx, buffer_size, "RxBf")
        mdl = build_nonpaged_mdl(k, va, buffer_size)
        sg = _sg_for(mdl, buffer_size)
        nic.post_rx_buffer(sg, (i, va))
        cookies.append((i, va))
    return machine, k, nic


def _sg_for(mdl, length):
    out, pos, left = [], mdl.byte_offset, length
    for pfn in mdl.pfns:
        within = pos & 0xFFF
        take = min(0x1000 - within, left)
        if take <= 0:
            break
        out.append((pfn, within, take))
        pos += take
        left -= take
    return out


def test_dma_gather_of_a_multi_mdl_chain_is_exactly_the_bytes_it_describes():
    machine = Machine(seed=12, memory_mb=8)
    k = machine.kernel
    parts = [bytes(range(256)) * 3, b"\xAA" * 9000, b"tail-bytes" * 7]
    mdls = []
    for data in parts:
        va = k.pool.allocate(NonPagedPoolNx, len(data), "Test")
        k.mem.write(va, data)
        mdls.append(build_nonpaged_mdl(k, va, len(data)))
    mdls[0].next, mdls[1].next = mdls[1], mdls[2]
    pool = NdisAllocateNetBufferListPool(k, NET_BUFFER_LIST_POOL_PARAMETERS(fAllocateNetBuffer=True))
    total = sum(map(len, parts))
    nbl = NdisAllocateNetBufferAndNetBufferList(pool, 0, 0, mdls[0], 100, total - 150)
    nb = nbl.FirstNetBuffer
    nic = EmulatedNic(k, MAC)
    sg = build_sg_list(nb)
    assert all(0 <= off < 0x1000 for _, off, _ in sg)
    data = nic.gather(sg)
    assert data == b"".join(parts)[100:total - 50]
    assert nic.dma_tx_bytes == total - 150
    assert k.copies.total_bytes == 0


def test_received_frame_is_scattered_into_the_next_posted_buffer():
    machine, k, nic = bare_nic()
    frame = MAC + bytes(6) + b"\x08\x00" + bytes(range(200))
    nic.frame_arrived(frame)
    done = nic.take_rx_completions()
    assert len(done) == 1 and done[0].length == len(frame)
    _, va = done[0].cookie
    assert k.mem.read(va, len(frame)) == frame
    assert nic.dma_rx_bytes == len(frame) and nic.rx_posted == 3


def test_frame_with_no_posted_buffer_is_dropped_with_a_reason():
    machine, k, nic = bare_nic(buffers=1)
    frame = MAC + bytes(60)
    nic.frame_arrived(frame)
    nic.frame_arrived(frame)
    assert nic.counters.frames_in == 1 and nic.counters.drops["no_rx_buffer"] == 1


def test_jumbo_mtu_receives_a_frame_across_several_pages():
    machine, k, nic = bare_nic(buffers=1, buffer_size=9014, mtu=9000)
    frame = MAC + bytes(6) + b"\x08\x00" + bytes(i % 256 for i in range(9000))
    nic.frame_arrived(frame)
    (done,) = nic.take_rx_completions()
    assert k.mem.read(done.cookie[1], len(frame)) == frame


def test_interrupt_fires_at_nic_dirql_and_is_masked_until_enabled():
    machine, k, nic = bare_nic()
    seen = []

    def isr():
        seen.append(k.irql)
        nic.read_interrupt_cause()
        nic.disable_interrupts()

    nic.connect_interrupt(isr)
    nic.frame_arrived(MAC + bytes(60))
    nic.frame_arrived(MAC + bytes(60))  # masked: only sets the cause
    assert seen == [NIC_DIRQL]
    nic.enable_interrupts()  # the pending cause fires at once
    assert seen == [NIC_DIRQL, NIC_DIRQL]
    nic.enable_interrupts()  # nothing new since the ISR read the cause
    assert seen == [NIC_DIRQL, NIC_DIRQL] and nic.counters.interrupts == 2
    assert k.irql == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=0, max_size=1600), max_size=12))
def test_malformed_runt_and_oversize_frames_are_dropped_and_counted_never_raising(frames):
    machine, k, nic = bare_nic(buffers=6)
    nic.receive_filter = 0x20  # promiscuous: every well-sized frame is taken
    for frame in frames:
        nic.frame_arrived(frame)
    c = nic.counters
    runts = sum(1 for f in frames if len(f) < 14)
    oversize = sum(1 for f in frames if len(f) > 1514)
    assert c.drops["runt"] == runts and c.drops["oversize"] == oversize
    assert c.frames_in + sum(c.drops.values()) == len(frames)
    assert c.frames_in == min(6, len(frames) - runts - oversize)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=0, max_size=1600), min_size=1, max_size=6))
def test_garbage_on_the_wire_never_crashes_the_ndis_receive_path(frames):
    h = two_hosts(rx_ring_size=16)
    h.nic_b.receive_filter = 0x20
    for frame in frames:
        h.link.ends[0].deliver(frame, h.scheduler.now_ns)
    h.run()
    good = [f for f in frames if 14 <= len(f) <= 1514]
    assert h.proto_b.received == good
    assert h.nic_b.counters.drops["runt"] + h.nic_b.counters.drops["oversize"] == len(frames) - len(good)


def test_capture_on_a_link_writes_a_pcap_that_scapy_decodes(tmp_path):
    h = two_hosts()
    h.scheduler.run_until(1_000_000)
    capture = Capture().attach_link(h.link).start()
    sent = [ethernet(MAC_B, MAC_A, bytes([i]) * 60) for i in range(3)]
    for frame in sent:
        h.send_a(frame)
    h.run()
    capture.stop()
    h.send_a(ethernet(MAC_B, MAC_A, b"after stop" * 6))
    h.run()
    path = tmp_path / "run.pcap"
    assert capture.write_pcap(path) == 3
    packets = rdpcap(str(path))
    assert [bytes(p) for p in packets] == sent
    assert all(Ether(bytes(p)).src == "02:00:00:00:00:0a" for p in packets)
    times = [r.time_ns for r in capture.records]
    assert times == sorted(times) and times[0] >= 1_000_000
    assert [int(round(float(p.time) * 1e9)) for p in packets] == times
