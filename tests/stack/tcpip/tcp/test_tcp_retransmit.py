"""Retransmission timer (RFC 6298, Karn), congestion control (RFC 5681; optionally the initial slow
start as Windows' HyStart++, RFC 9406) and NewReno fast retransmit / fast recovery (RFC 6582)."""

from __future__ import annotations

from tcp_harness import (
    ACK, LOCAL_ISS, LOCAL_PORT, MS, REMOTE_ISS, REMOTE_PORT, RST, SYN, Harness, active_open, config, seg,
)

from stack.tcpip.tcp import Closed, Reset, Retransmitted, StateChanged, TcpConnection, TcpState
from stack.tcpip.tcp.congestion import WINDOWS_SLOW_START_ACK_LIMIT

L1 = LOCAL_ISS + 1
R1 = REMOTE_ISS + 1


def open_with_rtt(handshake_rtt_ns: int, **cfg: object) -> Harness:
    h = Harness(TcpConnection(config(**cfg), LOCAL_PORT, REMOTE_PORT, LOCAL_ISS))
    h.conn.connect(0)
    h.recv_one(flags=SYN)
    h.now = handshake_rtt_ns
    h.send(seg(REMOTE_ISS, L1, SYN | ACK, mss=1000))
    h.recv_one(flags=ACK)
    h.take_events()
    return h


def test_rtt_estimator_follows_rfc6298_after_samples() -> None:
    h = open_with_rtt(100 * MS)
    assert (h.conn.srtt_ns, h.conn.rttvar_ns) == (100 * MS, 50 * MS)
    assert h.conn.rto_ns == 300 * MS  # 100 + 4 * 50
    h.conn.send(b"a")
    h.recv()
    h.now = 300 * MS
    h.send(seg(R1, L1 + 1))  # R = 200 ms
    assert (h.conn.srtt_ns, h.conn.rttvar_ns) == (112_500_000, 62_500_000)
    assert h.conn.rto_ns == 362_500_000
    h.conn.send(b"b")
    h.recv()
    h.now = 350 * MS
    h.send(seg(R1, L1 + 2))  # R = 50 ms
    assert (h.conn.srtt_ns, h.conn.rttvar_ns) == (104_687_500, 62_500_000)
    assert h.conn.rto_ns == 354_687_500


def test_rto_is_clamped_to_the_configured_minimum() -> None:
    h = open_with_rtt(2 * MS)
    assert h.conn.rto_ns == 300 * MS


def test_only_one_segment_is_timed_per_round_trip() -> None:
    h = open_with_rtt(100 * MS)
    h.conn.nodelay = True
    h.conn.send(b"a")
    h.recv()
    h.now = 150 * MS
    h.conn.send(b"b")  # sent while "a" is being timed: not timed
    h.recv()
    h.now = 200 * MS
    h.send(seg(R1, L1 + 1))  # sample 200 ms for "a"
    srtt = h.conn.srtt_ns
    h.now = 210 * MS
    h.send(seg(R1, L1 + 2))
    assert h.conn.srtt_ns == srtt


def test_retransmission_timeout_backs_off_exponentially_then_gives_up() -> None:
    h = active_open(config(max_retransmits=3))
    h.conn.send(b"lost")
    h.recv_one(payload=b"lost")
    intervals = []
    for _ in range(3):
        intervals.append(h.fire_next_timer())
        h.recv_one(seq=L1, payload=b"lost")
    assert intervals == [300 * MS, 600 * MS, 1200 * MS]
    assert h.take_events() == [Retransmitted(L1, 4, "rto")] * 3
    assert h.fire_next_timer() == 2400 * MS
    h.recv_one(flags=RST, seq=L1 + 4)
    assert h.state is TcpState.CLOSED
    assert h.take_events() == [Reset("timeout"), StateChanged(TcpState.ESTABLISHED, TcpState.CLOSED), Closed()]
    assert (h.conn.timeouts, h.conn.retransmissions) == (3, 3)


def test_rto_backoff_is_capped_at_rto_max() -> None:
    h = active_open(config(max_retransmits=20, rto_max_ns=2000 * MS))
    h.conn.send(b"x")
    h.recv()
    intervals = [h.fire_next_timer() for _ in range(6)]
    assert intervals == [300 * MS, 600 * MS, 1200 * MS, 2000 * MS, 2000 * MS, 2000 * MS]


def test_timeout_collapses_cwnd_and_retransmits_go_back_n() -> None:
    h = active_open()
    h.conn.nodelay = True
    h.conn.send(b"d" * 4000)
    assert len(h.recv()) == 4
    h.fire_next_timer()
    assert h.conn.cwnd == 1000 and h.conn.ssthresh == 2000  # max(flight / 2, 2 * SMSS)
    h.recv_one(seq=L1, payload=b"d" * 1000)  # one segment: the loss window
    h.send(seg(R1, L1 + 1000))
    assert h.conn.cwnd == 2000  # slow start again
    assert [s.seq - L1 for s in h.recv()] == [1000, 2000]


def test_new_ack_restarts_and_full_ack_stops_the_timer() -> None:
    h = active_open()
    h.conn.nodelay = True
    h.conn.send(b"d" * 2000)
    h.recv()
    h.now = 100 * MS
    h.send(seg(R1, L1 + 1000))
    assert h.conn.poll_at() == 100 * MS + h.conn.rto_ns
    h.send(seg(R1, L1 + 2000))
    assert h.conn.poll_at() is None


def test_karn_no_sample_from_retransmitted_segment_and_backoff_kept() -> None:
    h = open_with_rtt(100 * MS)
    h.conn.send(b"k")
    h.recv()
    h.fire_next_timer()  # at 400 ms
    h.recv_one(payload=b"k")
    assert h.conn.rto_ns == 600 * MS
    h.now += 50 * MS
    h.send(seg(R1, L1 + 1))  # ambiguous: original or retransmission?
    assert (h.conn.srtt_ns, h.conn.rttvar_ns) == (100 * MS, 50 * MS)
    assert h.conn.rto_ns == 600 * MS  # the backed-off RTO stays until a valid sample
    h.conn.send(b"m")
    h.recv()
    h.now += 100 * MS
    h.send(seg(R1, L1 + 2))
    assert h.conn.rto_ns == 300 * MS


def test_timestamps_give_valid_samples_for_retransmitted_segments() -> None:
    h = active_open(config(timestamps=True), timestamps=(1, LOCAL_ISS))
    h.conn.send(b"t")
    first = h.recv_one(payload=b"t")
    h.fire_next_timer()
    again = h.recv_one(payload=b"t")
    assert again.timestamps is not None and first.timestamps is not None
    h.now += 30 * MS
    h.send(seg(R1, L1 + 1, timestamps=(2, again.timestamps[0])))
    # The handshake measured 0; this 30 ms sample comes from the retransmission it echoes.
    assert (h.conn.srtt_ns, h.conn.rttvar_ns) == (30 * MS // 8, 30 * MS // 4)
    assert h.conn.rto_ns == 300 * MS  # valid sample: the backoff is gone


def test_an_echo_older_than_the_retransmission_gives_no_rtt_sample() -> None:
    # The peer had the original all along (our view was stale): it found the resent segment
    # old and re-ACKed, echoing the original's TSval.  That "round trip" spans the whole
    # recovery and must not be fed to the estimator.
    h = active_open(config(timestamps=True), timestamps=(1, LOCAL_ISS))
    h.conn.send(b"t")
    first = h.recv_one(payload=b"t")
    h.fire_next_timer()
    again = h.recv_one(payload=b"t")
    assert first.timestamps is not None and again.timestamps is not None
    assert first.timestamps[0] != again.timestamps[0]
    srtt, backed_off = h.conn.srtt_ns, h.conn.rto_ns
    h.now += 10_000 * MS
    h.send(seg(R1, L1 + 1, timestamps=(2, first.timestamps[0])))
    assert h.conn.snd_una == L1 + 1
    assert h.conn.srtt_ns == srtt and h.conn.rto_ns == backed_off == 600 * MS


def test_slow_start_grows_cwnd_by_one_smss_per_ack() -> None:
    h = active_open()
    h.conn.nodelay = True
    h.conn.send(b"s" * 3000)
    h.recv()
    assert h.conn.cwnd == 10_000  # IW10
    for k in (1, 2, 3):
        h.send(seg(R1, L1 + 1000 * k))
    assert h.conn.cwnd == 13_000


def test_rfc_5681_slow_start_grows_cwnd_by_one_smss_even_for_a_stretch_ack() -> None:
    h = active_open(config(slow_start_ack_limit=1), window=65_535)  # L = 1: RFC 5681's rule
    h.conn.nodelay = True
    h.conn.send(b"s" * 20_000)
    h.recv()
    h.send(seg(R1, L1 + 5000, window=65_535))  # one ACK for 5 segments (an RSC unit's)
    assert h.conn.cwnd == 11_000  # RFC 5681: at most SMSS per ACK


def test_the_default_first_slow_start_is_windows_hystart_counting_a_stretch_acks_bytes() -> None:
    assert config().slow_start_ack_limit == WINDOWS_SLOW_START_ACK_LIMIT == 8
    h = active_open(window=65_535)
    h.conn.nodelay = True
    h.conn.send(b"s" * 20_000)
    h.recv()
    h.send(seg(R1, L1 + 5000, window=65_535))  # one ACK for 5 segments (an RSC unit's)
    assert h.conn.cwnd == 15_000  # RFC 9406: min(N, 8 * SMSS)


def test_with_windows_ack_limit_the_first_slow_start_counts_an_acks_bytes_up_to_8_smss() -> None:
    # HyStart++ (RFC 9406 4.2/4.3, enabled by default in Windows, unpaced): cwnd += min(N, L * SMSS), L = 8.
    # One ACK for a large RSC unit grows cwnd by 8 segments, not 1 (RFC 5681) and not all of them.
    h = active_open(config(slow_start_ack_limit=WINDOWS_SLOW_START_ACK_LIMIT), window=65_535)
    h.conn.nodelay = True
    h.conn.send(b"s" * 60_000)
    h.recv()
    assert h.conn.cwnd == 10_000  # IW10
    h.send(seg(R1, L1 + 2000, window=65_535))  # a stretch ACK of 2 segments: both count
    assert h.conn.cwnd == 12_000
    h.recv()
    h.send(seg(R1, L1 + 10_000, window=65_535))  # 8 segments: all 8
    assert h.conn.cwnd == 20_000
    h.recv()
    h.send(seg(R1, L1 + 20_000, window=65_535))  # 10 segments in one ACK: at most 8
    assert h.conn.cwnd == 28_000


def test_with_windows_ack_limit_slow_start_after_a_timeout_grows_by_one_smss_per_ack_again() -> None:
    # RFC 9406 4.2: HyStart++ only for the initial slow start; then standard slow start (RFC 5681)
    h = active_open(config(slow_start_ack_limit=WINDOWS_SLOW_START_ACK_LIMIT))
    h.conn.nodelay = True
    h.conn.send(b"d" * 8000)
    h.recv()
    h.fire_next_timer()
    assert h.conn.cwnd == 1000 and h.conn.ssthresh == 4000
    h.recv_one(seq=L1, payload=b"d" * 1000)
    h.send(seg(R1, L1 + 3000))  # covers 3 segments (the originals got through)
    assert h.conn.cwnd == 2000


def test_a_slow_start_ack_limit_below_one_is_refused() -> None:
    import pytest

    from stack.tcpip.tcp import TcpConfigError
    with pytest.raises(TcpConfigError):
        config(slow_start_ack_limit=0)


def five_segments_in_flight() -> Harness:
    h = active_open()
    h.conn.nodelay = True
    h.conn.send(b"f" * 5000)
    assert len(h.recv()) == 5
    h.send(seg(R1, L1 + 1000))
    h.take_events()
    return h


def test_fast_retransmit_after_triple_duplicate_ack() -> None:
    h = five_segments_in_flight()
    h.send(seg(R1, L1 + 1000))
    h.send(seg(R1, L1 + 1000))
    h.recv_nothing()
    h.send(seg(R1, L1 + 1000))
    h.recv_one(seq=L1 + 1000, payload=b"f" * 1000)
    assert h.take_events() == [Retransmitted(L1 + 1000, 1000, "fast")]
    assert (h.conn.dup_acks, h.conn.fast_retransmits) == (3, 1)
    assert h.conn.in_recovery
    assert h.conn.ssthresh == 2000 and h.conn.cwnd == 5000  # flight 4000 / 2; + 3 SMSS
    h.send(seg(R1, L1 + 1000))
    assert h.conn.cwnd == 6000  # inflated by every further duplicate
    h.recv_nothing()


def test_ack_with_data_or_new_window_is_not_a_duplicate() -> None:
    h = five_segments_in_flight()
    h.send(seg(R1, L1 + 1000, payload=b"x"))
    h.send(seg(R1 + 1, L1 + 1000, window=7000))
    h.send(seg(R1 + 1, L1 + 1000, window=7000))
    h.recv()
    assert h.conn.dup_acks == 1 and h.conn.fast_retransmits == 0


def test_newreno_partial_ack_retransmits_next_hole_and_deflates() -> None:
    h = five_segments_in_flight()
    for _ in range(4):
        h.send(seg(R1, L1 + 1000))
    h.recv()
    assert h.conn.cwnd == 6000
    h.take_events()
    h.send(seg(R1, L1 + 3000))  # partial: recover is the last byte sent (L1 + 4999)
    h.recv_one(seq=L1 + 3000, payload=b"f" * 1000)
    assert h.take_events() == [Retransmitted(L1 + 3000, 1000, "fast")]
    assert h.conn.in_recovery and h.conn.cwnd == 6000 - 2000 + 1000
    h.send(seg(R1, L1 + 5000))  # full acknowledgment
    assert not h.conn.in_recovery
    assert h.conn.cwnd == 2000  # min(ssthresh, max(flight, SMSS) + SMSS)
    assert h.conn.poll_at() is None


def test_no_second_fast_retransmit_for_duplicates_below_recover_after_timeout() -> None:
    h = five_segments_in_flight()
    h.fire_next_timer()
    h.recv()
    for _ in range(3):
        h.send(seg(R1, L1 + 1000))
    h.recv_nothing()
    assert h.conn.fast_retransmits == 0


def test_fin_only_outstanding_is_retransmitted_on_timeout() -> None:
    h = active_open()
    h.conn.close(0)
    h.recv_one(flags=ACK | 0x01, seq=L1)
    h.fire_next_timer()
    h.recv_one(flags=ACK | 0x01, seq=L1)
    assert h.take_events()[-1] == Retransmitted(L1, 1, "rto")


def test_persist_gives_up_when_probes_go_unanswered() -> None:
    h = active_open(config(max_retransmits=2), window=0)
    h.conn.send(b"z" * 10)
    h.recv_nothing()
    probes = 0
    while h.state is not TcpState.CLOSED and probes < 10:
        h.fire_next_timer()
        probes += len([s for s in h.recv() if s.payload_len])
    assert h.state is TcpState.CLOSED and probes == 3
    assert Reset("timeout") in h.take_events()


def test_keepalive_probes_then_resets_a_silent_peer() -> None:
    h = active_open(config(keepalive_idle_ns=10_000 * MS, keepalive_interval_ns=1000 * MS, keepalive_probes=2))
    assert h.conn.poll_at() == 10_000 * MS
    h.fire_next_timer()
    h.recv_one(flags=ACK, seq=L1 - 1, payload=b"")
    h.send(seg(R1, L1))  # the peer answers: idle timer restarts
    assert h.conn.poll_at() == h.now + 10_000 * MS
    h.fire_next_timer()
    h.recv_one(seq=L1 - 1)
    assert h.fire_next_timer() == 1000 * MS
    h.recv_one(seq=L1 - 1)
    h.fire_next_timer()
    h.recv_one(flags=RST)
    assert Reset("keepalive_timeout") in h.take_events()


def test_pure_ack_after_timeout_carries_the_highest_sequence_sent() -> None:
    h = active_open()
    h.conn.nodelay = True
    h.conn.send(b"g" * 2000)
    h.recv()
    h.fire_next_timer()
    h.recv_one(seq=L1, payload=b"g" * 1000)  # go-back-N restarts at SND.UNA
    h.send(seg(R1, L1, payload=b"peer data"))  # nothing new acknowledged
    h.advance(200 * MS)
    # The peer may hold all 2000 bytes already; an ACK at the rewound SEQ would
    # be unacceptable to it (RFC 9293 3.10.7.4) and dropped.
    h.recv_one(flags=ACK, seq=L1 + 2000, ack=R1 + 9, payload=b"")
