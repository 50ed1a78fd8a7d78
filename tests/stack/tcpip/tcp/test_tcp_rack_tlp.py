"""RACK-TLP (RFC 8985) through the real TCP connection: a tail loss recovered by a probe instead of the
retransmission timer, reordering inside the reordering window left alone, a DSACK widening that window,
and no RACK without SACK."""

from __future__ import annotations

from tcp_harness import LOCAL_ISS, MASK, REMOTE_ISS, SYN, Harness, config, seg

from stack.tcpip.tcp import ACK, LossProbe, Retransmitted, TcpConnection, TcpState

L1 = LOCAL_ISS + 1
R1 = REMOTE_ISS + 1
WINDOW = 60_000
US = 1000
RTT = 100 * US


def opened(sack: bool = True) -> Harness:
    """An established connection whose handshake measured a 100 us round trip (SRTT 100 us)."""
    h = Harness(TcpConnection(config(sack=True, recv_buffer=60_000), 80, 49152, LOCAL_ISS))
    h.conn.connect(h.now)
    h.recv_one(flags=SYN)
    h.now += RTT
    h.send(seg(REMOTE_ISS, L1, SYN | ACK, window=WINDOW, mss=1000, **({"sack_permitted": True} if sack else {})))
    h.recv_one(flags=ACK)
    assert h.state is TcpState.ESTABLISHED and h.conn.srtt_ns == RTT
    h.take_events()
    return h


def send_segments(h: Harness, count: int) -> None:
    h.conn.nodelay = True
    h.conn.send(b"".join(bytes([i]) * 1000 for i in range(count)))
    assert len(h.recv()) == count


def peer_ack(h: Harness, ack: int, *blocks: tuple[int, int]) -> list:
    """The peer's ACK, blocks relative to L1; returns what the connection sends."""
    h.send(seg(R1, L1 + ack, window=WINDOW, sack_blocks=tuple(((L1 + s) & MASK, (L1 + e) & MASK) for s, e in blocks)))
    return h.recv()


def resent(h: Harness) -> list[tuple[int, str]]:
    return [((e.seq - L1) & MASK, e.reason) for e in h.take_events() if isinstance(e, Retransmitted)]


def test_a_lost_tail_is_recovered_by_a_tlp_probe_within_two_round_trips_not_by_the_rto() -> None:
    h = opened()
    send_segments(h, 6)  # segments 4 and 5, the tail, are lost
    h.now += RTT
    assert peer_ack(h, 4000) == []
    assert h.conn.snapshot()["timers"]["tlp"] == h.now + 2 * h.conn.srtt_ns  # PTO = 2 * SRTT (RFC 8985 7.2)
    sent_at = h.now
    h.advance(2 * h.conn.srtt_ns)  # no ACK comes: the PTO fires, long before the 300 ms RTO
    probe = h.recv()
    assert [((s.seq - L1) & MASK, s.payload_len) for s in probe] == [(5000, 1000)]  # the highest segment again
    events = h.take_events()
    assert any(isinstance(e, LossProbe) and e.retransmission for e in events)
    assert h.now - sent_at <= 2 * RTT + RTT // 2
    h.now += RTT
    out = peer_ack(h, 4000, (5000, 6000))  # the probe's SACK lets RACK see segment 4 lost
    assert [((s.seq - L1) & MASK) for s in out] == [4000]
    assert resent(h) == [(4000, "rack")]
    h.now += RTT
    peer_ack(h, 6000)
    c = h.conn
    assert c.timeouts == 0 and c.snd_una == c.snd_max
    rack = c.snapshot()["rack"]
    assert rack["tlp_probes"] == 1 and rack["rack_retransmissions"] == 1 and rack["lost_marked"] == 1


def test_a_probe_sends_new_data_when_the_peers_window_allows_whatever_cwnd_says() -> None:
    h = opened()
    h.conn.nodelay = True
    h.conn.send(b"x" * 11_000)  # IW10: ten segments leave, the eleventh waits for cwnd
    assert len(h.recv()) == 10
    h.advance(2 * h.conn.srtt_ns)
    probe = h.recv()
    assert [((s.seq - L1) & MASK, s.payload_len) for s in probe] == [(10_000, 1000)]  # new data, not a resend
    assert resent(h) == [] and h.conn.snapshot()["rack"]["tlp_end_seq"] == (L1 + 11_000) & MASK


def test_a_probe_resends_the_highest_segment_when_nothing_new_can_go() -> None:
    h = opened()
    send_segments(h, 3)
    h.advance(2 * h.conn.srtt_ns)
    assert [((s.seq - L1) & MASK) for s in h.recv()] == [2000]
    assert resent(h) == [(2000, "tlp")]


def test_the_pto_waits_for_a_delayed_ack_when_one_segment_is_in_flight() -> None:
    h = opened()
    send_segments(h, 1)
    pto = h.conn.snapshot()["timers"]["tlp"] - h.now
    assert pto == 2 * h.conn.srtt_ns + 200_000_000  # + WCDelAckT (RFC 8985 7.2)


def test_reordering_within_reo_wnd_is_not_a_loss() -> None:
    h = opened()
    send_segments(h, 6)
    h.now += RTT
    peer_ack(h, 1000)  # min_RTT 100 us: reo_wnd = 25 us
    h.now += 5 * US
    assert peer_ack(h, 1000, (2000, 3000)) == []  # segment 2 overtook segment 1
    snap = h.conn.snapshot()
    assert snap["rack"]["reo_wnd_ns"] == 25 * US and snap["timers"]["rack_reorder"] is not None
    h.now += 10 * US
    assert peer_ack(h, 3000) == []  # segment 1 arrives inside the window: no loss
    assert resent(h) == [] and not h.conn.in_recovery
    assert h.conn.snapshot()["rack"]["reordering_seen"]


def test_a_segment_still_missing_when_the_reordering_timer_fires_is_resent_by_rack() -> None:
    h = opened()
    send_segments(h, 6)
    h.now += RTT
    peer_ack(h, 1000)
    h.now += 5 * US
    assert peer_ack(h, 1000, (2000, 3000)) == []
    h.advance(h.conn.snapshot()["timers"]["rack_reorder"] - h.now)
    out = h.recv()
    assert [((s.seq - L1) & MASK) for s in out] == [1000]
    assert resent(h) == [(1000, "rack")] and h.conn.in_recovery and h.conn.timeouts == 0


def test_three_duplicate_acks_alone_are_not_a_loss_once_reordering_was_seen() -> None:
    h = opened()
    send_segments(h, 10)
    h.now += RTT
    peer_ack(h, 1000)
    h.now += 5 * US
    peer_ack(h, 1000, (2000, 3000))
    peer_ack(h, 3000)  # reordering seen
    h.now += 5 * US
    for top in (5000, 6000, 7000):  # segment 3 late again: three duplicate ACKs with SACK
        assert peer_ack(h, 3000, (4000, top)) == []
    assert resent(h) == [] and not h.conn.in_recovery  # RACK, not DupThresh, decides (RFC 8985)


def test_a_dsack_widens_reo_wnd() -> None:
    h = opened()
    send_segments(h, 4)
    h.now += RTT
    peer_ack(h, 1000)
    assert h.conn.snapshot()["rack"]["reo_wnd_mult"] == 1
    h.now += US
    peer_ack(h, 2000, (0, 1000))  # a DSACK: segment 0 arrived twice (RFC 2883)
    rack = h.conn.snapshot()["rack"]
    assert rack["reo_wnd_mult"] == 2 and rack["dsacks"] == 1
    assert rack["reo_wnd_ns"] == 2 * rack["min_rtt_ns"] // 4


def test_without_sack_there_is_no_rack_and_a_lost_tail_waits_for_the_rto() -> None:
    h = opened(sack=False)
    send_segments(h, 6)
    h.now += RTT
    peer_ack(h, 4000)
    snap = h.conn.snapshot()
    assert snap["rack"] is None and snap["timers"]["tlp"] is None
    h.advance(250_000_000)
    assert h.recv() == [] and h.conn.timeouts == 0
    h.advance(100_000_000)
    assert h.conn.timeouts == 1


def test_rack_tlp_can_be_switched_off_with_sack_on() -> None:
    h = Harness(TcpConnection(config(sack=True, rack_tlp=False), 80, 49152, LOCAL_ISS))
    h.conn.connect(h.now)
    h.recv()
    h.send(seg(REMOTE_ISS, L1, SYN | ACK, window=WINDOW, mss=1000, sack_permitted=True))
    assert h.conn.sack_enabled and h.conn.snapshot()["rack"] is None


def _three_holes_resent() -> Harness:
    """Ten segments out, 1, 3 and 5 lost; the peer's SACKs let RACK mark them lost one by one and each goes
    out again (the scenario of a lost retransmission among retransmissions still in flight)."""
    h = opened()
    send_segments(h, 10)
    h.now += RTT
    peer_ack(h, 1000)
    peer_ack(h, 1000, (2000, 3000))
    peer_ack(h, 1000, (2000, 3000), (4000, 5000))
    peer_ack(h, 1000, (2000, 3000), (4000, 5000), (6000, 7000))
    for top in (8000, 9000, 10_000):
        h.now += 10 * US
        peer_ack(h, 1000, (2000, 3000), (4000, 5000), (6000, top))
    assert resent(h) == [(1000, "rack"), (3000, "rack"), (5000, "rack")]
    return h


def test_a_lost_retransmission_is_resent_but_no_retransmission_still_in_flight_is() -> None:
    h = _three_holes_resent()
    # Segment 3's resend (sent 10 us after segment 1's) is SACKed: segment 1's resend, sent before it, is
    # lost (RFC 8985 9.3).  Segment 5's resend left 10 us after segment 3's and is still in flight: RACK
    # has not judged it lost, so NextSeg must not send it again (it used to, 90 us after the first resend,
    # when HighRxt was lowered to segment 1: a needless copy whose DSACK then widened reo_wnd).
    h.now += RTT - 10 * US
    out = peer_ack(h, 1000, (2000, 5000), (6000, 10_000))
    assert [((s.seq - L1) & MASK) for s in out] == [1000]
    assert resent(h) == [(1000, "rack")]
    h.now += 10 * US
    assert peer_ack(h, 1000, (2000, 10_000)) == []  # segment 5's resend arrives: nothing more goes out
    assert resent(h) == []


def test_pipe_counts_a_resent_segment_once_and_a_lost_one_not_at_all() -> None:
    h = _three_holes_resent()
    board = h.conn.snapshot()["sack_scoreboard"]
    # in flight: the three resends (3000 octets) and nothing else unSACKed (segments 7-10 are SACKed)
    assert board["pipe"] == 3000


def test_a_probe_that_repaired_a_loss_cuts_cwnd_to_ssthresh_of_the_flight_without_a_recovery_episode() -> None:
    h = opened()
    send_segments(h, 6)  # segment 6, the tail, is lost
    h.now += RTT
    peer_ack(h, 5000)
    h.advance(h.conn.snapshot()["timers"]["tlp"] - h.now)  # one segment out: 2 * SRTT + WCDelAckT
    assert [((s.seq - L1) & MASK) for s in h.recv()] == [5000]  # the probe: the highest segment again
    h.now += RTT
    peer_ack(h, 6000)  # the probe's ACK (TLP.end_seq, no DSACK): the episode stays open
    c = h.conn
    h.conn.send(b"n" * 1000)
    assert len(h.recv()) == 1
    cwnd_before = c.snapshot()["cwnd"]
    h.now += RTT
    peer_ack(h, 7000)  # above TLP.end_seq: the probe repaired a single loss (RFC 8985 7.4.2)
    snap = c.snapshot()
    assert snap["rack"]["tlp_recoveries"] == 1
    cong = snap
    # "as it would any other loss": ssthresh from the 1000 octets in flight (CUBIC: 0.7 x, at least
    # 2 SMSS), cwnd = ssthresh at once, and no recovery episode - the PTO keeps watching new data
    assert cong["ssthresh"] == cong["cwnd"] == max(700, 2 * c._sack.smss) < cwnd_before
    assert not snap["sack_scoreboard"]["in_sack_recovery"]
    h.conn.send(b"m" * 1000)
    h.recv()
    assert snap["timers"]["tlp"] is None and c.snapshot()["timers"]["tlp"] is not None


def test_a_timeout_resends_what_rack_marks_lost_not_segments_sent_within_the_last_round_trip() -> None:
    h = opened()
    c = h.conn
    send_segments(h, 1)
    h.now += RTT
    peer_ack(h, 1000)  # RACK.rtt 100 us
    c.send(b"a" * 2000)
    assert len(h.recv()) == 2  # segments 1000 and 2000: both lost, and so is the tail probe
    h.advance(c.snapshot()["timers"]["tlp"] - h.now)
    h.recv()
    rto_at = c.snapshot()["timers"]["retransmit"]
    h.advance(rto_at - h.now - 50 * US)
    c.send(b"b" * 3000)  # segments 3000-5000 leave 50 us before the timeout: in flight when it fires
    assert len(h.recv()) == 3
    h.take_events()
    h.advance(50 * US)
    out = h.recv()
    # RFC 8985 6.3: SND.UNA's segment and those older than RACK.rtt + reo_wnd are lost; the three
    # sent 50 us ago are not and stay in flight.  Only the head goes now (cwnd 1 SMSS).
    assert [((s.seq - L1) & MASK) for s in out] == [1000]
    assert resent(h) == [(1000, "rto")]
    h.now += 20 * US
    assert peer_ack(h, 2000) == []  # cwnd 2 SMSS, but pipe (the three in flight) fills it: no go-back-N
    h.now += 40 * US
    out = peer_ack(h, 2000, (3000, 6000))  # they arrived: the lost segment 2000 goes, nothing else
    assert [((s.seq - L1) & MASK) for s in out] == [2000]
    h.now += RTT
    peer_ack(h, 6000)
    assert resent(h) == [(2000, "rack")] and c.snd_una == c.snd_max and c.timeouts == 1


def test_the_pto_stays_off_during_recovery_even_when_nothing_is_sacked() -> None:
    h = opened()
    c = h.conn
    send_segments(h, 10)  # segments 1000 and 9000 (the tail) are lost
    h.now += RTT
    peer_ack(h, 1000, (2000, 9000))  # RACK: 1000 lost, recovery up to 9999, 1000 resent
    assert resent(h) == [(1000, "rack")]
    h.now += RTT
    out = peer_ack(h, 9000)  # the resend arrived: no SACK block left, but recovery still runs (9000 <= recover)
    # RACK, not a probe, finds the tail: 9000 left before the delivered resend, a round trip ago
    assert [((s.seq - L1) & MASK) for s in out] == [9000] and resent(h) == [(9000, "rack")]
    snap = c.snapshot()
    assert snap["sack_scoreboard"]["in_sack_recovery"] and snap["sack_scoreboard"]["blocks"] == 0
    assert snap["timers"]["tlp"] is None  # RFC 8985 7.2: no PTO while fast recovery runs
    h.advance(250 * US)
    assert h.recv() == [] and c.snapshot()["rack"]["tlp_probes"] == 0


def _prr_burst(rack_tlp: bool) -> list[list[int]]:
    """Ten segments, 1-6 lost; the peer SACKs 7, 8, 9 and then sends a duplicate.  What each ACK sends."""
    h = Harness(TcpConnection(config(sack=True, recv_buffer=60_000, prr=True, congestion_provider="newreno",
                                     rack_tlp=rack_tlp), 80, 49152, LOCAL_ISS))
    h.conn.connect(h.now)
    h.recv_one(flags=SYN)
    h.now += RTT
    h.send(seg(REMOTE_ISS, L1, SYN | ACK, window=WINDOW, mss=1000, sack_permitted=True))
    h.recv_one(flags=ACK)
    send_segments(h, 10)
    h.now += RTT
    sent = [peer_ack(h, 1000)]
    for top in (8000, 9000, 10_000):
        sent.append(peer_ack(h, 1000, (7000, top)))
    h.now += 10 * US
    sent.append(peer_ack(h, 1000, (7000, 10_000)))
    return [[(s.seq - L1) & MASK for s in out] for out in sent]


def test_prr_counts_the_ack_on_which_rack_starts_recovery_and_sends_as_the_dupthresh_path() -> None:
    # RFC 6937: the ACK that starts recovery delivered data (segment 9 SACKed); PRR runs on it after RACK
    # marked the losses, so the first burst is PRR's, not ssthresh - pipe (it was 1000-4000 at once).
    assert _prr_burst(True) == _prr_burst(False) == [[], [], [], [1000, 2000], [3000]]


def test_a_pto_that_fires_while_a_probe_is_out_sends_nothing_and_rearms_the_rto() -> None:
    h = opened()
    c = h.conn
    send_segments(h, 6)
    h.now += RTT
    peer_ack(h, 4000)
    h.advance(2 * c.srtt_ns)
    probed_at = h.now
    assert [((s.seq - L1) & MASK) for s in h.recv()] == [5000]  # the probe; TLP.end_seq 6000
    h.now += RTT
    peer_ack(h, 5000)  # new data ACKed below TLP.end_seq: the PTO (and the RTO) restart, the episode stays open
    fires = c.snapshot()["timers"]["tlp"]
    assert fires is not None and c.snapshot()["rack"]["tlp_end_seq"] == (L1 + 6000) & MASK
    assert c.snapshot()["timers"]["retransmit"] == h.now + c.snapshot()["rto_ns"]
    h.advance(fires - h.now)
    assert h.recv() == [] and c.snapshot()["rack"]["tlp_probes"] == 1  # one probe per episode
    # RFC 8985 7.3: the RTO is re-armed, one RTO after the head segment (the probe) left
    assert c.snapshot()["timers"]["retransmit"] == probed_at + c.snapshot()["rto_ns"]


def test_a_lost_head_of_resends_sent_at_one_instant_is_caught_by_their_delivered_tail_not_the_rto() -> None:
    h = opened()
    send_segments(h, 10)  # segments 0-2 are lost
    h.now += RTT
    out = peer_ack(h, 0, (3000, 10_000))
    # RACK marks the three lost and all three go out again at the same instant (in sequence order)
    assert [((s.seq - L1) & MASK) for s in out] == [0, 1000, 2000]
    assert resent(h) == [(0, "rack"), (1000, "rack"), (2000, "rack")]
    h.now += RTT
    # The receiver's ring dropped the first two resends; the third arrives.  RACK's segment is now that
    # resend, and the two sent with it but lower in sequence were sent before it: they are lost retransmissions
    # (RFC 8985 6.2 Step 5), resent now.  The lab's tie-break for resends at one instant used to skip them,
    # leaving no reordering timer and no PTO (recovery runs): the connection waited for the 300 ms RTO.
    out = peer_ack(h, 0, (2000, 10_000))
    assert [((s.seq - L1) & MASK) for s in out] == [0, 1000]
    assert resent(h) == [(0, "rack"), (1000, "rack")]
    h.now += RTT
    peer_ack(h, 10_000)
    c = h.conn
    assert c.timeouts == 0 and c.snd_una == c.snd_max
