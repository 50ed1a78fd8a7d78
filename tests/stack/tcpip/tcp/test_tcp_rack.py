"""RACK-TLP (RFC 8985) as a state machine on its own (stack/tcpip/tcp/rack.py): each test one rule of
the RFC, driven by transmissions, ACKs and time, as smoltcp tests its socket."""

from __future__ import annotations

from stack.tcpip.tcp.rack import NO_SRTT_PTO_NS, WC_DEL_ACK_NS, Rack, is_dsack, sent_after

SMSS = 1000
B = 1_000_000  # unwrapped sequence numbers start here
US = 1000


def rack_with(*sends: tuple[int, int]) -> Rack:
    """Segments i (1000 bytes at B + 1000 * i) sent at the given times: (i, time)."""
    r = Rack(SMSS)
    for i, t in sends:
        r.on_send(B + 1000 * i, B + 1000 * (i + 1), t)
    return r


def ack(r: Rack, now: int, una: int = 0, sacked: tuple[tuple[int, int], ...] = (), dsack: bool = False,
        recovering: bool = False, srtt: int | None = 100 * US) -> int:
    """An ACK: `una` and SACKed segment ranges relative to B in segments."""
    return r.on_ack(B + 1000 * una, [(B + 1000 * s, B + 1000 * e) for s, e in sacked], dsack, now,
                    B + 1000 * 10, recovering, srtt)


def lost(r: Rack) -> list[int]:
    return [(rec[0] - B) // 1000 for rec in r.records if rec[3] & 2]


def test_sent_after_orders_by_time_then_by_end_sequence() -> None:
    assert sent_after(2, 0, 1, 9) and not sent_after(1, 9, 2, 0)
    assert sent_after(1, 5, 1, 4) and not sent_after(1, 4, 1, 4)


def test_a_segment_sent_before_a_delivered_one_is_lost_once_rtt_plus_reo_wnd_passed() -> None:
    r = rack_with((0, 0), (1, 10 * US), (2, 20 * US))
    # segment 2 SACKed at 120 us: RACK.rtt = 100 us; min_RTT/4 = 25 us of reordering window
    assert ack(r, 120 * US, sacked=((2, 3),)) == 0
    assert lost(r) == [] and r.reo_wnd == 25 * US
    assert r.reo_at == 0 + 100 * US + 25 * US + 10 * US  # segment 1 is due last: 10 + 100 + 25 us
    # the reordering timer fires: both are lost (segment 0 since 125 us, segment 1 since 135 us)
    assert r.on_reo_timeout(135 * US) == 2 and lost(r) == [0, 1]
    assert r.lost_high == B + 2000 and r.reo_at is None


def test_segments_sent_after_the_newest_delivered_one_are_never_marked_lost() -> None:
    r = rack_with((0, 0), (1, 10 * US), (2, 20 * US))
    ack(r, 500 * US, sacked=((0, 1),))
    assert lost(r) == []  # 1 and 2 left after segment 0: no evidence against them, however late


def test_a_resend_is_judged_by_its_own_transmit_time() -> None:
    r = rack_with((0, 0), (1, 10 * US), (2, 20 * US), (3, 30 * US))
    ack(r, 120 * US, sacked=((1, 4),))  # 3 segments SACKed: reo_wnd 0 (DupThresh), segment 0 lost
    assert lost(r) == [0] and r.reo_wnd == 0
    assert r.on_retransmit(B, B + 1000, 130 * US) is True  # RACK had marked it lost
    assert lost(r) == [] and r.rack_retransmissions == 1
    ack(r, 140 * US, sacked=((1, 4),))
    assert lost(r) == []  # the resend left at 130 us, after RACK.xmit_ts (30 us)


def test_a_lost_retransmission_is_detected() -> None:
    r = rack_with((0, 0), (1, 10 * US), (2, 20 * US), (3, 30 * US), (4, 40 * US))
    ack(r, 120 * US, sacked=((1, 4),))
    r.on_retransmit(B, B + 1000, 130 * US)  # segment 0 again at 130 us
    r.on_send(B + 5000, B + 6000, 140 * US)  # new data after it
    ack(r, 240 * US, sacked=((1, 4), (5, 6)))  # 5 (sent at 140) delivered; the resend (130) is not
    assert lost(r) == [0, 4]
    assert r.first_lost() == (B, B + 1000)  # NextSeg's first lost hole: the resend itself was lost


def test_reo_wnd_is_a_quarter_min_rtt_and_never_above_srtt() -> None:
    r = rack_with((0, 0), (1, 0))
    ack(r, 400 * US, sacked=((1, 2),), srtt=50 * US)
    assert r.min_rtt == 400 * US and r.reo_wnd == 50 * US  # min(400/4, SRTT 50)


def test_reo_wnd_is_zero_without_reordering_once_dupthresh_segments_are_sacked() -> None:
    r = rack_with(*((i, 0) for i in range(5)))
    ack(r, 100 * US, sacked=((1, 3),))
    assert r.reo_wnd == 25 * US  # 2 segments SACKed
    ack(r, 100 * US, sacked=((1, 4),))
    assert r.reo_wnd == 0  # 3 segments: RACK mimics DupThresh


def test_reo_wnd_is_zero_in_recovery_without_reordering() -> None:
    r = rack_with((0, 0), (1, 0))
    ack(r, 100 * US, sacked=((1, 2),), recovering=True)
    assert r.reo_wnd == 0


def test_reordering_is_seen_when_a_never_resent_segment_is_delivered_below_fack() -> None:
    r = rack_with(*((i, 0) for i in range(5)))
    ack(r, 100 * US, sacked=((2, 3),))
    assert not r.reordering_seen and r.fack == B + 3000
    ack(r, 110 * US, una=1, sacked=((2, 3),))  # segment 0 arrives late, below FACK
    assert r.reordering_seen
    ack(r, 110 * US, una=1, sacked=((2, 5),))
    assert r.reo_wnd == 25 * US  # reordering seen: the window stays open with 3 SACKed


def test_a_delivered_resend_below_fack_is_not_reordering() -> None:
    r = rack_with(*((i, 0) for i in range(5)))
    ack(r, 100 * US, sacked=((1, 4),))
    r.on_retransmit(B, B + 1000, 100 * US)
    ack(r, 200 * US, una=4)
    assert not r.reordering_seen


def test_dsack_widens_reo_wnd_once_per_round_trip() -> None:
    r = rack_with((0, 0), (1, 0))
    ack(r, 100 * US, sacked=((1, 2),), srtt=1000 * US)
    assert r.reo_wnd == 25 * US and r.reo_wnd_mult == 1
    ack(r, 100 * US, sacked=((1, 2),), dsack=True, srtt=1000 * US)
    assert r.reo_wnd_mult == 2 and r.reo_wnd == 50 * US and r.dsack_round == B + 10_000
    ack(r, 100 * US, sacked=((1, 2),), dsack=True, srtt=1000 * US)
    assert r.reo_wnd_mult == 2  # a second DSACK in the same round trip (SND.UNA below dsack_round)
    r.on_ack(B + 10_000, [], True, 200 * US, B + 20_000, False, 1000 * US)  # the round ended: grows again
    assert r.reo_wnd_mult == 3


def test_reo_wnd_mult_resets_after_16_dsack_free_recoveries() -> None:
    r = rack_with((0, 0))
    ack(r, 100 * US, dsack=True)
    assert r.reo_wnd_mult == 2
    for _ in range(15):
        ack(r, 100 * US, recovering=True)
        ack(r, 100 * US, recovering=False)
    assert r.reo_wnd_mult == 2
    ack(r, 100 * US, recovering=True)
    ack(r, 100 * US, recovering=False)
    assert r.reo_wnd_mult == 1


def test_an_ambiguous_resend_ack_does_not_update_rack() -> None:
    r = rack_with((0, 0), (1, 0))
    ack(r, 100 * US, sacked=((1, 2),))
    r.on_retransmit(B, B + 1000, 200 * US)
    ack(r, 210 * US, una=1)  # 10 us after the resend, below min_RTT (100 us): the original's ACK
    assert r.xmit_ts == 0 and r.rtt == 100 * US


def test_an_ack_echoing_an_older_timestamp_than_the_resend_does_not_update_rack() -> None:
    r = rack_with((0, 0), (1, 0))
    ack(r, 100 * US, sacked=((1, 2),))
    r.on_retransmit(B, B + 1000, 5_000 * US)  # at 5 ms
    r.on_ack(B + 1000, [], False, 9_000 * US, B + 10_000, False, None, ts_echo_ms=0)  # TSecr of the original
    assert r.xmit_ts == 0


def test_is_dsack_reads_rfc_2883s_first_block() -> None:
    assert is_dsack(((100, 200),), 300) == (100, 200)  # below the cumulative ACK
    assert is_dsack(((400, 500), (300, 600)), 300) == (400, 500)  # inside the second block
    assert is_dsack(((400, 500), (600, 700)), 300) is None
    assert is_dsack((), 300) is None


def test_pto_is_two_srtt_plus_the_delayed_ack_time_for_one_segment_and_capped_by_the_rto() -> None:
    r = Rack(SMSS)
    r.arm_pto(1000, 100 * US, False, None)
    assert r.pto_at == 1000 + 200 * US
    r.arm_pto(1000, 100 * US, True, None)
    assert r.pto_at == 1000 + 200 * US + WC_DEL_ACK_NS
    r.arm_pto(1000, 100 * US, True, 1000 + 150 * US)
    assert r.pto_at == 1000 + 150 * US  # never after the RTO
    r.arm_pto(0, None, False, None)
    assert r.pto_at == NO_SRTT_PTO_NS


def test_a_probe_starts_a_tlp_episode_that_an_ack_above_it_ends_as_a_repaired_loss() -> None:
    r = Rack(SMSS)
    r.arm_pto(0, 100 * US, False, None)
    r.on_probe_sent(B + 5000, True)
    assert r.tlp_end_seq == B + 5000 and r.pto_at is None and r.tlp_probes == 1
    assert r.tlp_on_ack(B + 4000, None, False) is False and r.tlp_end_seq == B + 5000  # below the probe
    assert r.tlp_on_ack(B + 6000, None, False) is True
    assert r.tlp_end_seq is None and r.tlp_recoveries == 1


def test_a_dsack_of_the_probe_ends_the_episode_without_a_loss() -> None:
    r = Rack(SMSS)
    r.on_probe_sent(B + 5000, True)
    assert r.tlp_on_ack(B + 5000, (B + 4000, B + 5000), False) is False
    assert r.tlp_end_seq is None and r.tlp_recoveries == 0


def test_a_probe_of_new_data_delivered_is_no_loss() -> None:
    r = Rack(SMSS)
    r.on_probe_sent(B + 5000, False)
    assert r.tlp_on_ack(B + 6000, None, False) is False and r.tlp_end_seq is None


def test_a_plain_duplicate_ack_at_the_probe_ends_the_episode_without_a_loss() -> None:
    r = Rack(SMSS)
    r.on_probe_sent(B + 5000, True)
    assert r.tlp_on_ack(B + 5000, None, True) is False and r.tlp_end_seq is None


def test_records_split_where_sacks_and_acks_cut_a_large_send() -> None:
    r = Rack(SMSS)
    r.on_send(B, B + 10_000, 0)  # one large send of ten segments
    ack(r, 100 * US, una=2, sacked=((5, 7),))
    assert [(s - B, e - B, f) for s, e, _, f in r.records] == [(2000, 5000, 0), (5000, 7000, 4), (7000, 10_000, 0)]
    assert r.segs_sacked == 2000


def test_a_repeated_rto_ends_the_episode_and_forgets_what_was_marked_lost() -> None:
    r = rack_with((0, 0), (1, 10 * US), (2, 20 * US), (3, 30 * US))
    ack(r, 120 * US, sacked=((1, 4),))
    r.on_probe_sent(B + 4000, True)
    r.on_go_back()
    assert lost(r) == [] and r.tlp_end_seq is None and r.lost_high == 0 and r.next_deadline() is None


def test_an_rto_marks_lost_the_head_and_what_waited_rtt_plus_reo_wnd_only() -> None:
    r = rack_with((0, 0), (1, 10 * US), (2, 20 * US), (3, 200 * US), (4, 290 * US))
    ack(r, 110 * US, sacked=((1, 2),))  # RACK.rtt 100 us; reo_wnd a quarter of min_rtt (25 us)
    r.on_probe_sent(B + 5000, True)
    r.on_rto(300 * US, B)  # RFC 8985 6.3: SND.UNA's segment, and those sent before 300 - 125 = 175 us
    assert lost(r) == [0, 2] and r.tlp_end_seq is None and r.next_deadline() is None


def test_rack_rtt_comes_from_every_unambiguous_delivery_not_only_the_newest_sent() -> None:
    r = rack_with((0, 0), (1, 10 * US))
    ack(r, 110 * US, sacked=((1, 2),))  # segment 1 (sent at 10 us): RACK.rtt 100 us, RACK.xmit_ts 10 us
    assert r.rtt == 100 * US and r.xmit_ts == 10 * US
    ack(r, 150 * US, una=2)  # segment 0 (sent at 0) arrives late: RFC 8985 6.2 Step 2 takes its RTT too
    assert r.rtt == 150 * US and r.xmit_ts == 10 * US


def test_sacked_records_split_at_sack_edges_are_joined_again() -> None:
    r = rack_with(*((i, i * US) for i in range(10)))
    for top in range(2, 11):  # the peer SACKs one more segment per ACK: 1..top
        ack(r, (100 + top) * US, sacked=((1, top),))
    # segment 0 (still missing) and one SACKed record for 1-9, not nine
    assert [(s - B, e - B, f) for s, e, _, f in r.records] == [(0, 1000, 2), (1000, 10_000, 4)]
    assert r.segs_sacked == 9000
    ack(r, 300 * US, una=10)
    assert r.records == [] and r.segs_sacked == 0
