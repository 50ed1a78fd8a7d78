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
