"""Large sends built by the core (TcpConnection.tso_size, Linux's TSO-sized skbs): with a limit,
the send loop emits one segment per large send instead of one per MSS.  Cut back into MSS-sized
segments (as the NIC does) they are exactly what the per-MSS loop sends, grouped exactly as the
glue would have joined those into LSO sends; and every counter, timer and event is the same."""

from __future__ import annotations

import random

import pytest

from stack.tcpip.tcp import ACK, FIN, PSH, TcpSegment
from stack.tcpip.tcp.seq import SEQ_MASK

from tcp_harness import MS, REMOTE_ISS, Harness, active_open, config, seg

MSS = 1000


def _cut(segment: TcpSegment, mss: int) -> list[TcpSegment]:
    """The MSS-sized segments a large send stands for (PSH and FIN only on the last)."""
    if segment.segments == 1:
        return [segment]
    data = b"".join(bytes(c) for c in segment.payload)
    assert -(-len(data) // mss) == segment.segments
    out = []
    for lo in range(0, len(data), mss):
        last = lo + mss >= len(data)
        flags = segment.flags if last else segment.flags & ~(PSH | FIN)
        out.append(TcpSegment(segment.src_port, segment.dst_port, (segment.seq + lo) & SEQ_MASK, segment.ack,
                              flags, segment.window, None, None, False, segment.timestamps, segment.sack_blocks,
                              (memoryview(data[lo:lo + mss]),)))
    return out


def _glue_groups(segments: list[TcpSegment], mss: int, lso_max: int) -> list[int]:
    """How many consecutive per-MSS segments the glue joins into each packet (tcpl/send.py
    _transmit's rule: a full unflagged segment starts a group; segments join while the group
    has room for another MSS, and a short or flagged one ends it)."""
    groups, i = [], 0
    while i < len(segments):
        first, j = segments[i], i + 1
        if first.flags == ACK and first.payload_len == mss:
            total = mss
            while j < len(segments) and total + mss <= lso_max:
                nxt = segments[j]
                plen = nxt.payload_len
                if (not plen or plen > mss or nxt.seq != (segments[j - 1].seq + segments[j - 1].payload_len) & SEQ_MASK
                        or (nxt.ack, nxt.window, nxt.timestamps, nxt.sack_blocks)
                        != (first.ack, first.window, first.timestamps, first.sack_blocks)
                        or nxt.flags & ~(ACK | PSH | FIN) or not nxt.flags & ACK):
                    break
                total += plen
                j += 1
                if plen < mss or nxt.flags != ACK:
                    break
        groups.append(j - i)
        i = j
    return groups


def _view(segment: TcpSegment) -> tuple:
    return (segment.seq, segment.ack, segment.flags, segment.window, segment.timestamps, segment.sack_blocks,
            b"".join(bytes(c) for c in segment.payload))


def _pair(lso_max: int, **cfg) -> tuple[Harness, Harness]:
    syn = {"timestamps": (1, 0)} if cfg.get("timestamps") else {}
    per_mss = active_open(config(mss=MSS, **cfg), window=cfg.get("recv_buffer", 8000), **syn)
    large = active_open(config(mss=MSS, **cfg), window=cfg.get("recv_buffer", 8000), **syn)
    large.conn.tso_size = lambda: lso_max
    return per_mss, large


def _step_both(per_mss: Harness, large: Harness, lso_max: int) -> int:
    """Poll both; assert the large sends are the per-MSS segments as the glue would join them."""
    want = per_mss.recv()
    got = large.recv()
    mss = per_mss.conn.max_payload
    assert [_view(s) for g in got for s in _cut(g, mss)] == [_view(s) for s in want]
    assert _regroup_ok(got, _glue_groups(want, mss, lso_max)), [g.describe() for g in got]
    assert per_mss.conn.snapshot() == large.conn.snapshot()
    for name in ("_small_end", "_rtt_seq", "_rtt_start", "_rtt_karn", "_max_snd_wnd", "_persist_backoff"):
        assert getattr(per_mss.conn, name) == getattr(large.conn, name), name
    assert per_mss.take_events() == large.take_events()
    assert per_mss.conn.poll_at() == large.conn.poll_at()
    return sum(1 for g in got if g.segments > 1)


def _regroup_ok(got: list[TcpSegment], groups: list[int]) -> bool:
    """A group of per-MSS segments the glue joins may also come as that many lone segments from the
    core when it did not build them (a retransmission going back, data behind a resent segment):
    the glue then joins them itself.  Every large send must still be a whole group."""
    k = 0
    for n in groups:
        if k < len(got) and got[k].segments == n:
            k += 1
        elif len(got[k:k + n]) == n and all(s.segments == 1 for s in got[k:k + n]):
            k += n
        else:
            return False
    return k == len(got)


def _drive(seed: int, lso_max: int, steps: int = 400, **cfg) -> int:
    """Random sends, ACKs (partial, duplicate, window changes, zero windows), time (RTO, persist,
    delayed ACK) and a close, fed alike to a per-MSS connection and a large-send one."""
    rng = random.Random(seed)
    per_mss, large = _pair(lso_max, **cfg)
    peer_seq = REMOTE_ISS + 1
    built = 0
    data = random.Random(seed + 1).randbytes(1 << 20)
    pos = 0
    closed = False
    for _ in range(steps):
        action = rng.random()
        conn = per_mss.conn
        if action < 0.3 and not closed:
            n = rng.choice([1, 7, MSS - 1, MSS, MSS + 1, 3 * MSS, 5 * MSS + 17, 12_345, 40_000])
            piece = data[pos:pos + n]
            pos += n
            per_mss.conn.send(piece)
            large.conn.send(piece)
        elif action < 0.75:
            una, top = conn.snd_una, conn.snd_max
            outstanding = (top - una) & SEQ_MASK
            ack = (una + rng.randint(0, outstanding)) & SEQ_MASK if rng.random() < 0.8 else una
            window = rng.choice([0, 500, 1500, 4000, 8000, 8000, 30_000, 65_535])
            for h in (per_mss, large):
                h.send(seg(peer_seq, ack, window=window))
        elif action < 0.95:
            ns = rng.choice([10 * MS, 200 * MS, 1000 * MS, 3000 * MS])
            for h in (per_mss, large):
                h.advance(ns)
        elif not closed and pos > 50_000:
            closed = True
            for h in (per_mss, large):
                h.conn.close(h.now)
        if per_mss.conn.state.value == "CLOSED":
            break
        built += _step_both(per_mss, large, lso_max)
    return built


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("lso_max", [2 * MSS, 5 * MSS + 500, 64 * MSS])
def test_large_sends_cut_back_are_the_per_mss_segments_with_the_same_state(seed, lso_max):
    assert _drive(seed, lso_max) > 0


@pytest.mark.parametrize("seed", range(6))
def test_large_sends_match_without_minshall_and_with_nodelay(seed):
    assert _drive(seed, 16 * MSS, nagle_minshall=False) > 0
    assert _drive(100 + seed, 16 * MSS, nagle=False) > 0


@pytest.mark.parametrize("seed", range(6))
def test_large_sends_match_with_timestamps_and_a_large_window(seed):
    assert _drive(seed, 40 * MSS, timestamps=True, recv_buffer=60_000) > 0


def test_a_limit_below_two_segments_builds_no_large_send():
    per_mss, large = _pair(2 * MSS - 1)
    for h in (per_mss, large):
        h.conn.send(bytes(10 * MSS))
    _step_both(per_mss, large, 2 * MSS - 1)
    assert large.conn.segments_sent == per_mss.conn.segments_sent


def test_a_large_send_carries_psh_and_fin_on_its_last_segment_and_times_its_first():
    per_mss, large = _pair(64 * MSS)
    for h in (per_mss, large):
        h.conn.send(bytes(3 * MSS + 10))
        h.conn.close(h.now)
    got = large.recv()
    per_mss.recv()
    assert len(got) == 1
    big = got[0]
    assert big.segments == 4 and big.payload_len == 3 * MSS + 10 and big.flags == ACK | PSH | FIN
    assert large.conn.segments_sent == per_mss.conn.segments_sent
    assert large.conn._rtt_seq == per_mss.conn._rtt_seq == large.conn._snd_una + MSS  # the first segment is timed
    assert large.conn._small_end == per_mss.conn._small_end
