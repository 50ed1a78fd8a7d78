"""Data transfer: segmentation, reassembly, windows, Nagle, delayed ACK, zero window."""

from __future__ import annotations

import pytest
from tcp_harness import (
    ACK, LOCAL_ISS, MASK, MS, PSH, REMOTE_ISS, active_open, config, data_of, seg,
)

from stack.tcpip.tcp import DataAcked, DataReceived, TcpStateError

L1 = LOCAL_ISS + 1  # our first data byte
R1 = REMOTE_ISS + 1  # the peer's first data byte


def test_send_splits_at_mss_and_pushes_the_last_segment() -> None:
    h = active_open()
    h.conn.nodelay = True
    h.conn.send(b"a" * 2500)
    out = h.recv()
    assert [(s.seq - L1, s.payload_len, s.flags) for s in out] == [
        (0, 1000, ACK), (1000, 1000, ACK), (2000, 500, ACK | PSH)]
    assert h.conn.snd_nxt == L1 + 2500 and h.conn.poll_at() == h.conn.rto_ns


def test_send_is_zero_copy_and_token_completes_when_all_acked() -> None:
    h = active_open()
    buffer = bytearray(b"0123456789" * 150)
    h.conn.send(memoryview(buffer), token="irp-1")
    out = h.recv()
    assert [s.payload_len for s in out] == [1000, 500]
    assert out[0].payload[0].obj is buffer  # a view of the caller's buffer, not a copy
    assert b"".join(bytes(v) for s in out for v in s.payload) == bytes(buffer)
    h.send(seg(R1, L1 + 1000))
    assert DataAcked("irp-1") not in h.take_events()
    h.send(seg(R1, L1 + 1500))
    assert h.take_events() == [DataAcked("irp-1")]
    assert h.conn.bytes_acked == 1500 and h.conn.poll_at() is None


def test_zero_length_send_with_nothing_queued_completes_at_once() -> None:
    h = active_open()
    h.conn.send(b"", token="empty")
    assert h.take_events() == [DataAcked("empty")]


def test_tokens_complete_in_order_of_their_buffers() -> None:
    h = active_open()
    h.conn.send(b"aaa", token=1)
    h.conn.send(b"", token=2)
    h.conn.send(b"bbb", token=3)
    h.conn.nodelay = True
    h.recv()
    h.send(seg(R1, L1 + 3))
    assert h.take_events() == [DataAcked(1), DataAcked(2)]
    h.send(seg(R1, L1 + 6))
    assert h.take_events() == [DataAcked(3)]


def test_send_respects_the_peer_window() -> None:
    h = active_open(window=2000)
    h.conn.send(b"w" * 5000)
    assert [s.payload_len for s in h.recv()] == [1000, 1000]
    h.send(seg(R1, L1 + 2000, window=2000))
    assert [s.payload_len for s in h.recv()] == [1000, 1000]


def test_sender_avoids_silly_window_while_data_is_in_flight() -> None:
    h = active_open(window=1500)
    h.conn.send(b"w" * 5000)
    assert [s.payload_len for s in h.recv()] == [1000]  # 500 < max window / 2: wait
    h.send(seg(R1, L1 + 1000, window=1500))
    assert [s.payload_len for s in h.recv()] == [1000]


def test_sender_fills_a_small_window_when_nothing_is_in_flight() -> None:
    h = active_open(window=300)
    h.conn.send(b"w" * 5000)
    h.recv_one(payload=b"w" * 300)


def test_receive_in_order_emits_data_received_and_reads_zero_copy() -> None:
    h = active_open()
    payload = b"hello world"
    h.send(seg(R1, L1, ACK | PSH, payload=payload))
    assert h.take_events() == [DataReceived(11, True)]
    assert h.conn.recv_available() == 11
    views = h.conn.read(5)
    assert [bytes(v) for v in views] == [b"hello"]
    target = bytearray(10)
    assert h.conn.recv_into(target) == 6 and bytes(target[:6]) == b" world"
    assert h.conn.bytes_received == 11


def test_out_of_order_segments_are_reassembled() -> None:
    h = active_open()
    h.send(seg(R1 + 200, L1, payload=b"C" * 100))
    h.recv_one(flags=ACK, ack=R1)  # immediate duplicate ACK
    h.send(seg(R1 + 100, L1, payload=b"B" * 100))
    h.recv_one(flags=ACK, ack=R1)
    assert h.conn.recv_available() == 0
    h.send(seg(R1, L1, payload=b"A" * 100))
    h.recv_one(flags=ACK, ack=R1 + 300)  # a filled hole is acknowledged at once
    assert b"".join(bytes(v) for v in h.conn.read(1000)) == b"A" * 100 + b"B" * 100 + b"C" * 100
    assert DataReceived(300, False) in h.take_events()


def test_overlapping_retransmission_is_trimmed() -> None:
    h = active_open()
    h.send(seg(R1, L1, payload=b"abcdef"))
    h.send(seg(R1 + 3, L1, payload=b"DEFghi"))  # first half already received
    h.recv_one(ack=R1 + 9)
    assert b"".join(bytes(v) for v in h.conn.read(100)) == b"abcdefghi"


def test_duplicate_segment_is_acked_and_dropped() -> None:
    h = active_open()
    h.send(seg(R1, L1, payload=b"abc"))
    h.recv()
    h.send(seg(R1, L1, payload=b"abc"))
    h.recv_one(flags=ACK, ack=R1 + 3)
    assert h.conn.recv_available() == 3


@pytest.mark.parametrize("offset", [8000, 9000, -3000])
def test_out_of_window_segment_gets_an_ack_and_is_dropped(offset: int) -> None:
    h = active_open()
    h.send(seg(R1 + offset, L1, payload=b"x" * 10))
    h.recv_one(flags=ACK, seq=L1, ack=R1, window=8000)
    assert h.conn.recv_available() == 0 and h.conn.rcv_nxt == R1


def test_segment_crossing_the_right_edge_is_cut_to_the_window() -> None:
    h = active_open(config(recv_buffer=1000))
    h.send(seg(R1, L1, payload=b"y" * 1200))
    h.recv_one(flags=ACK, ack=R1 + 1000, window=0)
    assert h.conn.recv_available() == 1000


def test_ack_of_unsent_data_is_answered_and_dropped() -> None:
    h = active_open()
    h.send(seg(R1, L1 + 50, payload=b"zz"))
    h.recv_one(flags=ACK, ack=R1)
    assert h.conn.snd_una == L1 and h.conn.recv_available() == 0


def test_nagle_holds_small_segment_while_data_is_unacked() -> None:
    h = active_open()
    h.conn.send(b"first")
    h.recv_one(payload=b"first")
    h.conn.send(b"second")
    h.conn.send(b"third")
    h.recv_nothing()
    h.send(seg(R1, L1 + 5))
    h.recv_one(seq=L1 + 5, payload=b"secondthird")


def test_nagle_sends_full_segments_while_data_is_unacked() -> None:
    h = active_open()
    h.conn.send(b"x")
    h.recv()
    h.conn.send(b"y" * 1500)
    assert [s.payload_len for s in h.recv()] == [1000]  # the 500-byte tail waits


def test_nagle_minshall_sends_the_tail_of_a_large_send_at_once() -> None:
    h = active_open()
    h.conn.send(b"y" * 1500)
    assert [s.payload_len for s in h.recv()] == [1000, 500]


def test_classic_nagle_holds_the_tail_of_a_large_send_until_acked() -> None:
    h = active_open(config(nagle_minshall=False))
    h.conn.send(b"y" * 1500)
    assert [s.payload_len for s in h.recv()] == [1000]
    h.send(seg(R1, L1 + 1000))
    assert [s.payload_len for s in h.recv()] == [500]


def test_nodelay_sends_small_segments_at_once() -> None:
    h = active_open()
    h.conn.nodelay = True
    h.conn.send(b"first")
    h.recv_one(payload=b"first")
    h.conn.send(b"second")
    h.recv_one(seq=L1 + 5, payload=b"second")


def test_nagle_does_not_hold_the_data_before_fin() -> None:
    h = active_open()
    h.conn.send(b"a")
    h.recv()
    h.conn.send(b"bc")
    h.conn.close(0)
    h.recv_one(payload=b"bc", flags=ACK | PSH | 0x01)


def test_delayed_ack_fires_after_timer() -> None:
    h = active_open()
    h.send(seg(R1, L1, payload=b"x" * 100))
    h.recv_nothing()
    assert h.conn.poll_at() == 200 * MS
    h.advance(199 * MS)
    h.recv_nothing()
    h.advance(1 * MS)
    h.recv_one(flags=ACK, ack=R1 + 100)
    assert h.conn.poll_at() is None


def test_delayed_ack_every_second_segment() -> None:
    h = active_open()
    h.send(seg(R1, L1, payload=b"x" * 1000))
    h.recv_nothing()
    h.send(seg(R1 + 1000, L1, payload=b"x" * 1000))
    h.recv_one(flags=ACK, ack=R1 + 2000)
    h.send(seg(R1 + 2000, L1, payload=b"x" * 1000))
    h.recv_nothing()
    assert h.conn.poll_at() == 200 * MS


def test_delayed_ack_is_piggybacked_on_data() -> None:
    h = active_open()
    h.send(seg(R1, L1, payload=b"ping"))
    h.conn.send(b"pong")
    h.recv_one(ack=R1 + 4, payload=b"pong")
    assert h.conn.poll_at() == h.conn.rto_ns  # only the retransmission timer is left


def test_delayed_ack_zero_acks_every_segment() -> None:
    h = active_open(config(delayed_ack_ns=0))
    h.send(seg(R1, L1, payload=b"x"))
    h.recv_one(flags=ACK, ack=R1 + 1)


def test_window_shrinks_as_data_waits_and_reopens_on_read() -> None:
    h = active_open(config(recv_buffer=4000))
    windows = []
    for k in range(4):
        h.send(seg(R1 + 1000 * k, L1, payload=b"d" * 1000))
        windows += [s.window for s in h.recv()]
    assert windows == [2000, 0]
    assert h.conn.rcv_wnd == 0
    h.send(seg(R1 + 4000, L1, payload=b"e"))  # into the zero window
    h.recv_one(flags=ACK, ack=R1 + 4000, window=0)
    h.conn.read(500)  # 500 free < min(buffer/2, mss): stay silent (receiver SWS avoidance)
    h.recv_nothing()
    h.conn.read(500)
    h.recv_one(flags=ACK, ack=R1 + 4000, window=1000)
    h.conn.read(500)  # would only grow the window by half: not worth an ACK
    h.recv_nothing()
    h.conn.read(500)
    h.recv_one(flags=ACK, ack=R1 + 4000, window=2000)


def test_small_read_does_not_advertise_a_silly_window() -> None:
    h = active_open(config(recv_buffer=4000))
    for k in range(4):
        h.send(seg(R1 + 1000 * k, L1, payload=b"d" * 1000))
    h.recv()
    h.conn.read(10)
    h.recv_nothing()
    h.send(seg(R1 + 4000, L1, payload=b"e"))
    h.recv_one(window=0)


def test_zero_window_persist_probes_back_off_and_reopen() -> None:
    h = active_open(window=0)
    h.conn.send(b"p" * 3000)
    h.recv_nothing()
    assert h.conn.poll_at() == 300 * MS  # persist timer = RTO
    intervals = []
    for _ in range(3):
        intervals.append(h.fire_next_timer())
        h.recv_one(seq=L1, payload=b"p")  # one byte beyond the window
        h.send(seg(R1, L1, window=0))  # the peer still has no room
        h.recv_nothing()
    assert intervals == [300 * MS, 600 * MS, 1200 * MS]
    assert h.conn.window_probes == 3 and h.conn.retransmissions == 0
    h.send(seg(R1, L1, window=2000))  # window update
    assert [(s.seq - L1, s.payload_len) for s in h.recv()] == [(0, 1000), (1000, 1000)]
    assert h.conn.poll_at() == h.now + h.conn.rto_ns


def test_zero_window_probe_accepted_by_peer_moves_on() -> None:
    h = active_open(window=0)
    h.conn.send(b"q" * 10)
    h.recv_nothing()
    h.fire_next_timer()
    h.recv_one(payload=b"q")
    h.send(seg(R1, L1 + 1, window=500))
    h.recv_one(seq=L1 + 1, payload=b"q" * 9)


def test_window_probe_into_our_closed_window_still_acknowledges_our_data() -> None:
    # Both windows closed: we may not take the peer's probe byte, but its ACK must be taken
    # (RFC 9293 3.10.7.4), or neither end ever learns its data arrived.
    h = active_open(config(recv_buffer=2000))
    h.conn.nodelay = True
    h.conn.send(b"s" * 500, token="ours")
    h.recv_one(seq=L1, payload=b"s" * 500)
    h.send(seg(R1, L1, payload=b"d" * 1000))
    h.send(seg(R1 + 1000, L1, payload=b"d" * 1000))  # our receive buffer is now full
    h.recv_one(ack=R1 + 2000, window=0)
    h.send(seg(R1 + 2000, L1 + 500, payload=b"p"))  # the peer's probe, acking our 500 bytes
    assert DataAcked("ours") in h.take_events()
    assert h.conn.snd_una == L1 + 500
    assert h.conn.rcv_nxt == R1 + 2000 and h.conn.window_probes_received == 1  # the byte stayed out
    h.recv_one(seq=L1 + 500, ack=R1 + 2000, window=0, payload=b"")


def test_an_ack_of_new_data_updates_the_window_even_on_an_old_seq() -> None:
    # The peer's pure ACKs carry its SND.MAX while it retransmits from below it (SEQ under
    # SND.WL1); the retransmission's ACK takes our data and closes the peer's window.
    # Keeping the old window would slide it past the edge the peer offered.
    h = active_open(window=8000)
    h.conn.nodelay = True
    h.conn.send(b"a" * 1000)
    h.recv_one(seq=L1, payload=b"a" * 1000)
    h.send(seg(R1 + 1000, L1))  # a pure ACK at the peer's SND.MAX: SND.WL1 = R1 + 1000
    h.send(seg(R1, L1 + 1000, window=0, payload=b"d" * 1000))  # the retransmission, older SEQ
    assert h.conn.snd_una == L1 + 1000 and h.conn.snd_wnd == 0
    h.recv()  # the duplicate is acknowledged
    h.conn.send(b"b" * 500)
    h.recv_nothing()  # nothing beyond the closed window; the persist timer runs instead
    assert h.conn.snapshot()["timers"]["persist"] is not None


def test_window_update_from_zero_resumes_sending() -> None:
    h = active_open(window=1000)
    h.conn.send(b"r" * 2000)
    h.recv_one(payload=b"r" * 1000)
    h.send(seg(R1, L1 + 1000, window=0))
    h.recv_nothing()
    assert h.conn.snapshot()["timers"]["persist"] is not None
    h.send(seg(R1, L1 + 1000, window=1000))
    h.recv_one(seq=L1 + 1000, payload=b"r" * 1000)
    assert h.conn.snapshot()["timers"]["persist"] is None


def test_send_after_close_is_a_state_error() -> None:
    h = active_open()
    h.conn.close(0)
    with pytest.raises(TcpStateError):
        h.conn.send(b"late")


def test_sequence_numbers_wrap_around_2_to_32() -> None:
    iss, remote_iss = 0xFFFFFF00, 0xFFFFFFF0
    h = active_open(iss=iss, remote_iss=remote_iss)
    h.conn.nodelay = True
    data = bytes(range(256)) * 8
    h.conn.send(data)
    out = h.recv()
    assert [s.seq for s in out] == [0xFFFFFF01, (0xFFFFFF01 + 1000) & 0xFFFFFFFF, (0xFFFFFF01 + 2000) & 0xFFFFFFFF]
    assert b"".join(data_of(s) for s in out) == data
    h.send(seg(remote_iss + 1, iss + 1 + 2048, payload=b"back" * 10))
    assert h.conn.snd_una == (iss + 1 + 2048) & 0xFFFFFFFF and h.conn.send_queued == 0
    assert h.conn.rcv_nxt == (remote_iss + 41) & 0xFFFFFFFF
    h.send(seg(remote_iss + 41, iss + 1 + 2048, payload=b"more"))
    h.recv_one(ack=remote_iss + 45)
    assert b"".join(bytes(v) for v in h.conn.read(100)) == b"back" * 10 + b"more"


def test_hundreds_of_out_of_order_segments_inside_the_window_are_all_held() -> None:
    # 150 segments beyond one lost segment, all inside the 160 KB window: the receiver holds every
    # one (the old bound of 64 pieces dropped 86 of them while advertising the window), delivers the
    # whole stream in order once the hole fills, and acknowledges all of it.
    h = active_open(config(recv_buffer=160_000, window_scaling=True, sack=True), wscale=0, sack_permitted=True)
    stream = bytes(k % 251 for k in range(151 * 1000))
    for k in range(1, 151):
        h.send(seg(R1 + k * 1000, L1, payload=stream[k * 1000:(k + 1) * 1000]))
        h.recv()
    assert h.conn.ooo_dropped == 0
    assert h.conn.snapshot()["ooo_bytes"] == 150_000
    h.send(seg(R1, L1, payload=stream[:1000]))
    h.recv_one(flags=ACK, ack=R1 + 151_000)
    assert b"".join(bytes(v) for v in h.conn.read(200_000)) == stream


def test_tiny_pieces_beyond_the_charge_bound_are_dropped_and_reported() -> None:
    # A peer that splits the window into 1-byte pieces: each held piece is charged PIECE_OVERHEAD
    # too, so the buffer stops holding them before its bound and every piece it drops is reported
    # (OutOfOrderDropped; the TCB layer counts it as drop tcp/ooo_queue_full in !netstat -s).
    from stack.tcpip.tcp import OutOfOrderDropped
    from stack.tcpip.tcp.buffers import PIECE_OVERHEAD
    h = active_open()  # recv_buffer 8000: bound 16000
    held = 16000 // (PIECE_OVERHEAD + 1)
    for k in range(1, 2 * held + 1):
        h.send(seg(R1 + 2 * k, L1, payload=b"x"))
        h.recv()
    dropped = [e for e in h.take_events() if isinstance(e, OutOfOrderDropped)]
    assert len(dropped) == held == h.conn.ooo_dropped
    assert dropped[0] == OutOfOrderDropped((R1 + 2 * (held + 1)) & MASK, 1)
