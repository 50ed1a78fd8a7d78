"""The parts on their own: sequence arithmetic, the RTO estimator, NewReno,
the buffers, configuration and segment validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.tcpip.tcp import TcpConfig, TcpConfigError, TcpSegment, TcpSegmentError
from stack.tcpip.tcp.buffers import PIECE_OVERHEAD, ReceiveBuffer, SendBuffer, slice_views
from stack.tcpip.tcp.congestion import NewReno
from stack.tcpip.tcp.rtt import RttEstimator
from stack.tcpip.tcp.seq import seq_add, seq_diff, seq_ge, seq_gt, seq_in_window, seq_le, seq_lt, unwrap

MS = 1_000_000


def test_sequence_comparisons_wrap() -> None:
    assert seq_lt(0xFFFFFFF0, 0x10) and seq_gt(0x10, 0xFFFFFFF0)
    assert seq_le(5, 5) and seq_ge(5, 5)
    assert seq_diff(0x10, 0xFFFFFFF0) == 0x20 and seq_add(0xFFFFFFFF, 2) == 1
    assert seq_in_window(3, 0xFFFFFFFE, 10) and not seq_in_window(8, 0xFFFFFFFE, 10)


@given(st.integers(0, 1 << 40), st.integers(-(1 << 31) + 1, (1 << 31) - 1))
def test_unwrap_recovers_nearby_numbers(reference: int, delta: int) -> None:
    value = max(reference + delta, 0)
    assert unwrap(value & 0xFFFFFFFF, reference) == value


def test_rtt_estimator_first_and_later_samples() -> None:
    est = RttEstimator(1000 * MS, 200 * MS, 60_000 * MS, 1 * MS)
    assert est.rto_ns == 1000 * MS and est.srtt_ns is None
    est.sample(500 * MS)
    assert (est.srtt_ns, est.rttvar_ns, est.rto_ns) == (500 * MS, 250 * MS, 1500 * MS)
    est.sample(100 * MS)
    assert est.rttvar_ns == (3 * 250 * MS + 400 * MS) // 4 and est.srtt_ns == (7 * 500 * MS + 100 * MS) // 8
    est.back_off()
    est.back_off()
    assert est.rto_ns == 4 * est.base_rto_ns
    est.sample(100 * MS)
    assert est.backoff == 0


def test_rtt_estimator_uses_clock_granularity_when_variance_is_zero() -> None:
    est = RttEstimator(1000 * MS, 1, 60_000 * MS, 7 * MS)
    est.sample(0)
    assert est.rto_ns == 7 * MS


def test_newreno_congestion_avoidance_adds_one_smss_per_window() -> None:
    cc = NewReno(1000, 2, recover=0)
    cc.ssthresh = 2000
    assert cc.cwnd == 2000
    cc.on_new_ack(1000, 1000, 0)
    assert cc.cwnd == 2000
    cc.on_new_ack(1000, 2000, 0)
    assert cc.cwnd == 3000


def test_newreno_third_duplicate_enters_recovery_once() -> None:
    cc = NewReno(1000, 10, recover=0)
    assert [cc.on_dup_ack(100, 8000, 9000) for _ in range(3)] == [False, False, True]
    assert cc.in_recovery and cc.ssthresh == 4000 and cc.cwnd == 7000 and cc.recover == 8999
    assert cc.on_dup_ack(100, 8000, 9000) is False and cc.cwnd == 8000


def test_slice_views_crosses_chunks() -> None:
    views = [memoryview(b"abc"), memoryview(b"defg"), memoryview(b"h")]
    assert [bytes(v) for v in slice_views(views, 2, 7)] == [b"c", b"defg"]
    assert [bytes(v) for v in slice_views(views, 0, 8)] == [b"abc", b"defg", b"h"]


def test_send_buffer_slices_across_sends_and_releases_on_ack() -> None:
    buf = SendBuffer(100)
    buf.append(memoryview(b"hello"), "a")
    buf.append(memoryview(b" big "), None)
    buf.append(memoryview(b"world"), "c")
    assert b"".join(buf.slice(103, 6)) == b"lo big"
    assert buf.ack_to(104) == []
    assert buf.ack_to(110) == ["a"]
    assert len(buf) == 5 and b"".join(buf.slice(110, 100)) == b"world"
    assert buf.ack_to(115) == ["c"]


def test_send_buffer_compacts_after_many_chunks() -> None:
    buf = SendBuffer(0)
    for k in range(200):
        buf.append(memoryview(bytes([k % 256])), k)
    assert buf.ack_to(150) == list(range(150))
    assert bytes(b"".join(buf.slice(150, 3))) == bytes([150, 151, 152])


def test_receive_buffer_keeps_old_bytes_on_overlap() -> None:
    rb = ReceiveBuffer(max_charge=1 << 20)
    rb.insert(10, [memoryview(b"KLMN")])
    rb.insert(8, [memoryview(b"ijklmnop")])
    assert rb.ooo_ranges() == [(8, 16)]
    assert rb.take_contiguous(8) == 16
    assert b"".join(rb.read(100)) == b"ijKLMNop"


def test_receive_buffer_bounds_held_bytes_plus_a_charge_per_piece() -> None:
    # two 1-byte pieces cost 2 + 2 * PIECE_OVERHEAD; a third does not fit; bytes, not a piece count
    rb = ReceiveBuffer(max_charge=2 + 2 * PIECE_OVERHEAD)
    assert rb.insert(10, [memoryview(b"a")])
    assert rb.insert(20, [memoryview(b"b")])
    assert not rb.insert(30, [memoryview(b"c")])
    assert rb.ooo_ranges() == [(10, 11), (20, 21)]


def test_receive_buffer_holds_hundreds_of_full_size_pieces_in_a_window() -> None:
    # 200 segments of 1448 bytes beyond one hole (~290 KB): the 64-piece bound dropped 136 of them
    rb = ReceiveBuffer(max_charge=2 * 512 * 1024)
    stream = bytes(k % 251 for k in range(201 * 1448))
    for k in range(200, 0, -1):  # arrival order does not matter
        assert rb.insert(k * 1448, [memoryview(stream)[k * 1448:(k + 1) * 1448]])
    assert rb.ooo_ranges() == [(1448, 201 * 1448)]
    rb.push([memoryview(stream)[:1448]])
    assert rb.take_contiguous(1448) == 201 * 1448
    assert b"".join(rb.read(1 << 20)) == stream


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 20)), max_size=30))
def test_receive_buffer_reassembles_any_arrival_order(pieces: list[tuple[int, int]]) -> None:
    stream = bytes(range(100))
    rb = ReceiveBuffer(max_charge=1 << 20)
    rcv_nxt = 0
    for start, length in pieces + [(0, 100)]:
        end = min(start + length, 100) if (start, length) != (0, 100) else 100
        if end <= rcv_nxt:
            continue
        lo = max(start, rcv_nxt)
        if lo == rcv_nxt:
            rb.push([memoryview(stream)[lo:end]])
            rcv_nxt = rb.take_contiguous(end)
        else:
            rb.insert(lo, [memoryview(stream)[lo:end]])
    assert rcv_nxt == 100
    assert b"".join(rb.read(1000)) == stream


def test_config_picks_wscale_from_buffer_and_validates() -> None:
    assert TcpConfig(recv_buffer=65535, recv_buffer_max=None).wscale == 0
    assert TcpConfig(recv_buffer=65536, recv_buffer_max=None).wscale == 1
    # auto-tuning (the default) offers the shift its ~16 MiB ceiling needs: 8, as Windows' "normal" level
    assert TcpConfig().wscale == 8 and TcpConfig().recv_buffer == 64 * 1024
    assert TcpConfig(window_scaling=False).offered_wscale is None
    for bad in (dict(mss=10), dict(recv_buffer=0), dict(wscale=15), dict(rto_min_ns=0),
                dict(rto_initial_ns=10, rto_min_ns=20), dict(delayed_ack_every_segments=0),
                dict(keepalive_idle_ns=-1), dict(initial_cwnd_segments=0), dict(recv_buffer_max=1000)):
        with pytest.raises(TcpConfigError):
            TcpConfig(**bad)  # type: ignore[arg-type]


def test_segment_lengths_and_validation() -> None:
    s = TcpSegment(1, 2, 3, 4, 0x02 | 0x01, 100, payload=(memoryview(b"ab"), memoryview(b"c")))
    assert s.payload_len == 3 and s.seg_len == 5
    s.validate()
    for field, value in (("src_port", 70000), ("seq", -1), ("window", 1 << 16), ("flags", 256),
                         ("mss", 0), ("timestamps", (1,)), ("payload", (b"raw",))):
        bad = TcpSegment(1, 2, 3, 4, 0, 100)
        setattr(bad, field, value)
        with pytest.raises(TcpSegmentError):
            bad.validate()
    assert "len=3" in s.describe()


def test_receive_buffer_peek_offers_bytes_without_consuming_them():
    from stack.tcpip.tcp.buffers import ReceiveBuffer
    buf = ReceiveBuffer(1 << 20)
    buf.push([memoryview(b"abc"), memoryview(b"defg")], [0x5000, 0x7000])
    assert [(at, bytes(v)) for at, v in buf.peek(5)] == [(0x5000, b"abc"), (0x7000, b"de")]
    assert buf.ready_bytes == 7
    assert b"".join(bytes(v) for v in buf.read(7)) == b"abcdefg"
    assert buf.peek(4) == []
