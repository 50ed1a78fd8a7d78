"""The receive buffer keeps, next to every piece, where its bytes live - through every slice.

The glue gives each payload chunk a location (the physical address of the NIC buffer it sits in)
and the receive buffer only ever adds offsets to it: when a segment is trimmed to the window,
when an out-of-order piece overlaps what is already held, when a filled hole is taken partly,
when a read takes part of a piece.  Here a bytearray stands for physical memory: every arrival
is written at a fresh place in it, as a NIC writes each frame into a buffer of its own, and every
run the buffer offers must be exactly the bytes at its location.
"""

from __future__ import annotations

import random

import pytest

from stack.tcpip.tcp.buffers import NOWHERE, ReceiveBuffer, slice_runs
from stack.tcpip.tcp.segment import TcpSegment

from tcp_harness import LOCAL_ISS, REMOTE_ISS, active_open, seg


class Memory:
    """A stand-in for physical memory: arrivals are written one after another."""

    def __init__(self) -> None:
        self.bytes = bytearray(1 << 22)
        self.used = 0

    def place(self, data: bytes) -> tuple[memoryview, int]:
        at = self.used + 7  # a gap, so a location off by a few bytes reads other bytes
        self.bytes[at:at + len(data)] = data
        self.used = at + len(data)
        return memoryview(self.bytes)[at:at + len(data)], at


def _check_runs(memory: Memory, runs: list[tuple[int, memoryview]], expected: bytes) -> None:
    pos = 0
    for at, view in runs:
        assert at >= 0
        assert bytes(view) == expected[pos:pos + len(view)]
        assert memory.bytes[at:at + len(view)] == view, f"location {at} does not hold its bytes"
        pos += len(view)
    assert pos == len(expected)


def test_a_read_that_takes_part_of_a_piece_moves_its_location_on():
    memory = Memory()
    a, at_a = memory.place(b"abcdef")
    b, at_b = memory.place(b"ghij")
    buf = ReceiveBuffer(1 << 20)
    buf.push([a, b], [at_a, at_b])
    assert b"".join(buf.read(4)) == b"abcd"
    _check_runs(memory, buf.peek(6), b"efghij")
    assert buf.peek(6)[0][0] == at_a + 4


def test_empty_views_are_not_queued_and_a_read_of_everything_empties_the_buffer():
    memory = Memory()
    a, at_a = memory.place(b"abc")
    b, at_b = memory.place(b"defgh")
    buf = ReceiveBuffer(1 << 20)
    buf.push([a, memoryview(b""), b], [at_a, 12345, at_b])
    assert buf.ready_bytes == 8
    _check_runs(memory, buf.peek(100), b"abcdefgh")
    assert len(buf.peek(100)) == 2  # the empty view left no run behind
    assert [bytes(v) for v in buf.read(8)] == [b"abc", b"defgh"]  # exactly all: every view whole
    assert buf.ready_bytes == 0 and buf.read(100) == [] and buf.peek(100) == []
    buf.push([a, b], [at_a, at_b])
    assert [bytes(v) for v in buf.read(1000)] == [b"abc", b"defgh"]  # more than there is
    assert buf.ready_bytes == 0


def test_bytes_without_a_location_stay_without_one_however_they_are_sliced():
    buf = ReceiveBuffer(1 << 20)
    buf.push([memoryview(b"copied bytes")])
    buf.read(3)
    buf.insert(20, [memoryview(b"held")])
    [(at, view)] = buf.peek(100)
    assert bytes(view) == b"ied bytes" and at < 0


def test_slicing_runs_moves_each_location_by_what_was_cut():
    views = [memoryview(b"0123"), memoryview(b"456789")]
    out, at = slice_runs(views, [100, 200], 2, 7)
    assert [bytes(v) for v in out] == [b"23", b"456"] and at == [102, 200]


@pytest.mark.parametrize("seed", range(6))
def test_reassembly_under_arbitrary_arrivals_offers_only_runs_that_hold_their_bytes(seed):
    """Segments of a stream arrive in any order, overlapping, duplicated; the buffer is driven the
    way the core drives it (trim to RCV.NXT, push and take filled holes, or hold) and read in
    pieces of any size."""
    rng = random.Random(seed)
    stream = rng.randbytes(4000)
    memory = Memory()
    buf = ReceiveBuffer(1 << 20)
    rcv_nxt = read = 0
    while read < len(stream):
        s = rng.randrange(max(0, rcv_nxt - 300), min(len(stream), rcv_nxt + 1500))
        e = min(len(stream), s + rng.randrange(1, 700))
        split = rng.randrange(s, e + 1)  # two chunks, as a coalesced segment carries
        views, at = zip(*(memory.place(stream[x:y]) for x, y in ((s, split), (split, e)) if y > x))
        if e > rcv_nxt:
            if s < rcv_nxt:
                views, at = slice_runs(views, at, rcv_nxt - s, e - s)
                s = rcv_nxt
            if s == rcv_nxt:
                buf.push(views, at)
                rcv_nxt = buf.take_contiguous(e) if buf.has_ooo else e
            else:
                buf.insert(s, views, at)
        _check_runs(memory, buf.peek(buf.ready_bytes), stream[read:rcv_nxt])
        take = rng.randrange(0, buf.ready_bytes + 1)
        assert b"".join(buf.read(take)) == stream[read:read + take]
        read += take


def test_the_core_keeps_a_segments_locations_and_drops_them_once_its_payload_is_replaced():
    h = active_open()
    memory = Memory()
    first, at_first = memory.place(b"in place, ")
    segment = seg(REMOTE_ISS + 1, LOCAL_ISS + 1, window=8000)
    segment.payload = (first,)
    segment.payload_at = (segment.payload, (at_first,))
    h.send(segment)
    second, at_second = memory.place(b"then copied")
    segment = seg(REMOTE_ISS + 1 + len(first), LOCAL_ISS + 1, window=8000)
    segment.payload = (second,)
    segment.payload_at = (segment.payload, (at_second,))
    segment.payload = (memoryview(b"then copied"),)  # the glue copied it out: the locations go with it
    h.send(segment)
    runs = h.conn.peek(100)
    assert [bytes(v) for _, v in runs] == [b"in place, ", b"then copied"]
    assert runs[0][0] == at_first and runs[1][0] == NOWHERE


def test_a_segment_with_no_locations_is_queued_as_before():
    seg = TcpSegment(1, 2, 3, 4, 0, 100, payload=(memoryview(b"abc"),))
    assert seg.payload_at is None


@pytest.mark.parametrize("seed", range(4))
def test_a_partial_read_over_many_views_takes_whole_views_then_cuts_one(seed):
    """An RSC unit queues dozens of views; a read smaller than what is queued hands back the
    views that fit whole, as they are, then the first part of the next one, whose rest (and its
    location, moved on) stays at the head of the buffer."""
    rng = random.Random(seed)
    memory = Memory()
    pieces = [memory.place(rng.randbytes(rng.choice((1, 2, 100, 1448)))) for _ in range(60)]
    stream = b"".join(bytes(v) for v, _ in pieces)
    buf = ReceiveBuffer(1 << 20)
    buf.push([v for v, _ in pieces], [at for _, at in pieces])
    read = 0
    while buf.ready_bytes:
        take = rng.randrange(0, buf.ready_bytes + 2)
        queued = buf.peek(buf.ready_bytes)
        out = buf.read(take)
        got = b"".join(bytes(v) for v in out)
        assert got == stream[read:read + take]
        whole = max(len(out) - 1, 0)
        assert [bytes(v) for v in out[:whole]] == [bytes(v) for _, v in queued[:whole]]
        assert all(v.obj is memory.bytes for v in out)  # no copies
        read += len(got)
        assert buf.ready_bytes == len(stream) - read
        _check_runs(memory, buf.peek(buf.ready_bytes), stream[read:])
    assert buf.read(0) == [] and buf.read(5) == []
