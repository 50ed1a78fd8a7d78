"""Option negotiation: MSS, window scaling (RFC 7323), timestamps, SACK."""

from __future__ import annotations

from tcp_harness import (
    ACK, LOCAL_ISS, LOCAL_PORT, MS, REMOTE_ISS, REMOTE_PORT, SYN, Harness, active_open, config, seg,
)

from stack.tcpip.tcp import DEFAULT_MSS, TcpConnection


def test_mss_is_min_of_both_sides() -> None:
    assert active_open(mss=1400).conn.mss == 1000
    assert active_open(mss=700).conn.mss == 700


def test_mss_defaults_to_536_without_option() -> None:
    h = active_open(mss=None)
    assert h.conn.mss == DEFAULT_MSS == 536
    h.conn.nodelay = True
    h.conn.send(b"a" * 1200)
    sizes = [s.payload_len for s in h.recv()]
    assert sizes == [536, 536, 128]


def test_window_scaling_applies_when_both_sides_offer_it() -> None:
    cfg = config(window_scaling=True, recv_buffer=200_000)
    assert cfg.wscale == 2
    h = Harness(TcpConnection(cfg, LOCAL_PORT, REMOTE_PORT, LOCAL_ISS))
    h.conn.connect(0)
    h.recv_one(flags=SYN, wscale=2, window=65535)
    h.send(seg(REMOTE_ISS, LOCAL_ISS + 1, SYN | ACK, window=30000, mss=1000, wscale=3))
    ack = h.recv_one(flags=ACK)
    assert ack.window == 200_000 >> 2  # our window, scaled by our shift
    assert (h.conn.snd_wscale, h.conn.rcv_wscale) == (3, 2)
    assert h.conn.snd_wnd == 30000  # the SYN-ACK's window is never scaled
    h.send(seg(REMOTE_ISS + 1, LOCAL_ISS + 1, window=1000))
    assert h.conn.snd_wnd == 8000  # later windows are


def test_window_scaling_off_when_peer_does_not_offer_it() -> None:
    cfg = config(window_scaling=True, recv_buffer=200_000)
    h = Harness(TcpConnection(cfg, LOCAL_PORT, REMOTE_PORT, LOCAL_ISS))
    h.conn.connect(0)
    h.recv_one(flags=SYN, wscale=2)
    h.send(seg(REMOTE_ISS, LOCAL_ISS + 1, SYN | ACK, window=30000, mss=1000))
    assert h.recv_one(flags=ACK).window == 65535  # capped, unscaled
    assert (h.conn.snd_wscale, h.conn.rcv_wscale) == (0, 0)
    h.send(seg(REMOTE_ISS + 1, LOCAL_ISS + 1, window=1000))
    assert h.conn.snd_wnd == 1000


def test_window_scaling_off_when_we_do_not_offer_it() -> None:
    h = Harness(TcpConnection(config(window_scaling=False), LOCAL_PORT, REMOTE_PORT, LOCAL_ISS))
    h.conn.open_passive(seg(REMOTE_ISS, None, SYN, mss=1000, wscale=7), 0)
    h.recv_one(flags=SYN | ACK, wscale=None)
    assert (h.conn.snd_wscale, h.conn.rcv_wscale) == (0, 0)


def test_passive_syn_ack_answers_only_offered_options() -> None:
    cfg = config(window_scaling=True, timestamps=True, sack=True, recv_buffer=100_000)
    h = Harness(TcpConnection(cfg, LOCAL_PORT, REMOTE_PORT, LOCAL_ISS))
    h.conn.open_passive(seg(REMOTE_ISS, None, SYN, mss=1000), 0)
    h.recv_one(flags=SYN | ACK, wscale=None, sack_permitted=False, timestamps=None)
    h2 = Harness(TcpConnection(cfg, LOCAL_PORT, REMOTE_PORT, LOCAL_ISS))
    h2.conn.open_passive(seg(REMOTE_ISS, None, SYN, mss=1000, wscale=0, sack_permitted=True,
                             timestamps=(777, 0)), 0)
    synack = h2.recv_one(flags=SYN | ACK, wscale=1, sack_permitted=True)
    assert synack.timestamps == (LOCAL_ISS, 777)  # TSval clock is offset by the ISS


def test_window_scale_above_14_is_treated_as_14() -> None:
    h = active_open(config(window_scaling=True), wscale=20)
    assert h.conn.snd_wscale == 14


def test_timestamps_are_echoed_and_measure_rtt() -> None:
    h = active_open(config(timestamps=True), timestamps=(5000, LOCAL_ISS))
    assert h.conn.timestamps_enabled and h.conn.max_payload == 1000 - 12
    h.conn.send(b"z" * 10)
    out = h.recv_one(payload=b"z" * 10)
    assert out.timestamps == (LOCAL_ISS, 5000)
    h.now = 120 * MS
    h.send(seg(REMOTE_ISS + 1, LOCAL_ISS + 11, timestamps=(5100, LOCAL_ISS)))
    assert h.conn.srtt_ns is not None and h.conn.srtt_ns > 0
    assert h.conn.snapshot()["srtt_ns"] == h.conn.srtt_ns


def test_paws_drops_segment_with_old_timestamp() -> None:
    h = active_open(config(timestamps=True), timestamps=(5000, LOCAL_ISS))
    h.send(seg(REMOTE_ISS + 1, LOCAL_ISS + 1, payload=b"new", timestamps=(5010, LOCAL_ISS)))
    h.recv()
    h.send(seg(REMOTE_ISS + 4, LOCAL_ISS + 1, payload=b"old", timestamps=(4000, LOCAL_ISS)))
    out = h.recv_one(flags=ACK, ack=REMOTE_ISS + 4)
    assert out.timestamps == (LOCAL_ISS, 5010)
    assert h.conn.recv_available() == 3


def test_sack_blocks_describe_out_of_order_data() -> None:
    h = active_open(config(sack=True), sack_permitted=True)
    assert h.conn.sack_enabled
    base = REMOTE_ISS + 1
    h.send(seg(base + 100, LOCAL_ISS + 1, payload=b"b" * 100))
    h.recv_one(ack=base, sack_blocks=((base + 100, base + 200),))
    h.send(seg(base + 300, LOCAL_ISS + 1, payload=b"d" * 100))
    h.recv_one(ack=base, sack_blocks=((base + 300, base + 400), (base + 100, base + 200)))
    h.send(seg(base + 200, LOCAL_ISS + 1, payload=b"c" * 100))
    h.recv_one(ack=base, sack_blocks=((base + 100, base + 400),))
    h.send(seg(base, LOCAL_ISS + 1, payload=b"a" * 100))
    h.recv_one(ack=base + 400, sack_blocks=())


def test_no_sack_blocks_unless_negotiated() -> None:
    h = active_open(config(sack=True))
    h.send(seg(REMOTE_ISS + 101, LOCAL_ISS + 1, payload=b"b" * 100))
    h.recv_one(flags=ACK, sack_blocks=())


def test_rtt_below_one_timestamp_tick_is_still_measured_to_the_nanosecond() -> None:
    # A LAN round trip (100 us) is far below the 1 ms TSval tick: every echo reads 0 ticks,
    # so the timed segment, not the echo, must give the sample.
    h = Harness(TcpConnection(config(timestamps=True), LOCAL_PORT, REMOTE_PORT, LOCAL_ISS))
    h.conn.connect(0)
    h.recv_one(flags=SYN)
    h.now = 100_000
    h.send(seg(REMOTE_ISS, LOCAL_ISS + 1, SYN | ACK, mss=1000, timestamps=(5000, LOCAL_ISS)))
    h.recv()
    assert h.conn.timestamps_enabled and h.conn.srtt_ns == 100_000
    h.conn.send(b"q" * 10)
    h.recv()
    h.now = 180_000
    h.send(seg(REMOTE_ISS + 1, LOCAL_ISS + 11, timestamps=(5000, LOCAL_ISS)))
    assert h.conn.srtt_ns == (7 * 100_000 + 80_000) // 8  # the data segment was timed too
    assert h.conn.snapshot()["srtt_ns"] == h.conn.srtt_ns and h.conn.snapshot()["rttvar_ns"] > 0


def test_after_a_retransmission_the_echoed_timestamp_gives_the_sample_karn_cannot() -> None:
    h = active_open(config(timestamps=True), timestamps=(5000, LOCAL_ISS))
    srtt = h.conn.srtt_ns
    h.conn.send(b"r" * 10)
    h.recv()
    h.now = 1000 * MS  # the RTO fires: the segment goes out again (untimed, Karn)
    h.conn.on_timer(h.now)
    again = h.recv_one(payload=b"r" * 10)
    assert h.conn.retransmissions == 1 and h.conn.rto_ns > 300 * MS  # backed off
    h.now += 40 * MS
    h.send(seg(REMOTE_ISS + 1, LOCAL_ISS + 11, timestamps=(5001, again.timestamps[0])))
    assert h.conn.srtt_ns != srtt  # the echo of the retransmission's TSval timed it: 40 ms
    assert h.conn.rto_ns == max(300 * MS, h.conn.srtt_ns + 4 * h.conn.rttvar_ns)  # backoff cleared


def _option_bytes(s) -> int:
    return (12 if s.timestamps else 0) + (4 + 8 * len(s.sack_blocks) if s.sack_blocks else 0)


def test_data_segments_carrying_sack_blocks_shrink_their_payload_to_stay_within_the_mss() -> None:
    h = active_open(config(sack=True, timestamps=True), sack_permitted=True, timestamps=(5000, LOCAL_ISS),
                    window=60000)
    h.conn.nodelay = True
    base = REMOTE_ISS + 1
    for hole in range(3):  # three out-of-order islands: three SACK blocks (the most next to timestamps)
        h.send(seg(base + 100 + 200 * hole, LOCAL_ISS + 1, payload=b"x" * 100, timestamps=(5000, LOCAL_ISS)))
    h.recv()
    h.conn.send(b"d" * 5000)
    data = [s for s in h.recv() if s.payload_len]
    assert data and all(len(s.sack_blocks) == 3 for s in data)
    for s in data[:-1]:
        assert s.payload_len + _option_bytes(s) == 1000  # full: the MSS less timestamps and 3 blocks
    assert h.conn.max_payload == 1000 - 12  # the per-connection figure is unchanged


def test_once_the_holes_fill_data_segments_grow_back_to_the_full_payload() -> None:
    h = active_open(config(sack=True), sack_permitted=True, window=60000)
    h.conn.nodelay = True
    base = REMOTE_ISS + 1
    h.send(seg(base + 100, LOCAL_ISS + 1, payload=b"y" * 100))
    h.recv()
    h.conn.send(b"e" * 1500)
    first = [s for s in h.recv() if s.payload_len]
    assert first[0].sack_blocks and first[0].payload_len == 1000 - 12  # one block: 4 + 8 bytes
    h.send(seg(base, LOCAL_ISS + 1, payload=b"y" * 100))  # the hole is filled
    h.recv()
    h.conn.send(b"f" * 2000)
    later = [s for s in h.recv() if s.payload_len]
    assert not later[0].sack_blocks and later[0].payload_len == 1000
