"""SACK-based loss recovery (RFC 6675 with RFC 2018): the sender's scoreboard
and how the connection uses it."""

from __future__ import annotations

from tcp_harness import LOCAL_ISS, MASK, REMOTE_ISS, Harness, active_open, config, seg

from stack.tcpip.tcp import Retransmitted, TcpSegment
from stack.tcpip.tcp.scoreboard import MAX_BLOCKS_PER_ACK, Scoreboard

L1 = LOCAL_ISS + 1
R1 = REMOTE_ISS + 1
WINDOW = 60_000


# --- the scoreboard on its own (sequence numbers relative to SND.UNA = 0 is not possible:
# they are unwrapped, so a base keeps them honest) -------------------------------------------

B = 1_000_000


def board(*ranges: tuple[int, int], una: int = B, snd_max: int = B + 10_000) -> Scoreboard:
    b = Scoreboard(1000)
    b.take([((B + s) & MASK, (B + e) & MASK) for s, e in ranges], una, snd_max)
    return b


def rel(b: Scoreboard) -> list[tuple[int, int]]:
    return [(s - B, e - B) for s, e in b.ranges]


def test_scoreboard_merges_overlapping_and_adjacent_blocks_and_keeps_them_sorted() -> None:
    b = board((5000, 6000), (1000, 2000))
    b.take([((B + 2000) & MASK, (B + 3000) & MASK), ((B + 5500) & MASK, (B + 7000) & MASK)], B, B + 10_000)
    assert rel(b) == [(1000, 3000), (5000, 7000)]
    assert b.sacked_bytes == 4000 and b.high_sacked == B + 7000


def test_scoreboard_trims_below_a_new_snd_una() -> None:
    b = board((1000, 3000), (5000, 7000))
    b.trim(B + 2000)
    assert rel(b) == [(2000, 3000), (5000, 7000)] and b.sacked_bytes == 3000
    b.trim(B + 5000)
    assert rel(b) == [(5000, 7000)]
    b.trim(B + 7000)
    assert b.ranges == [] and b.sacked_bytes == 0


def test_scoreboard_ignores_blocks_below_snd_una_beyond_snd_max_or_empty() -> None:
    b = board((-2000, -1000), (9000, 11_000), (3000, 3000))
    assert b.ranges == [] and b.sacked_bytes == 0
    b = board((-500, 1000))  # a D-SACK that reaches above SND.UNA keeps only what is above
    assert rel(b) == [(0, 1000)]


def test_scoreboard_takes_at_most_four_blocks_from_one_ack() -> None:
    b = board(*((i * 1000, i * 1000 + 500) for i in range(6)))
    assert len(b.ranges) == MAX_BLOCKS_PER_ACK


def test_scoreboard_unwraps_blocks_across_the_32_bit_boundary() -> None:
    una = (1 << 32) - 1000  # unwrapped SND.UNA just below the wrap
    b = Scoreboard(1000)
    b.take([(1000, 2000)], una, una + 10_000)  # wire 1000 = una + 2000
    assert b.ranges == [(una + 2000, una + 3000)]


def test_is_lost_needs_three_blocks_or_more_than_two_smss_sacked_above() -> None:
    b = board((1000, 2000), (3000, 4000))
    assert not b.is_lost(B)  # two blocks, 2000 bytes: not enough
    b = board((1000, 2000), (3000, 4000), (5000, 5100))
    assert b.is_lost(B)  # three discontiguous blocks above
    assert not b.is_lost(B + 2000)  # two blocks, 1100 bytes
    b = board((1000, 3001))
    assert b.is_lost(B) and not b.is_lost(B + 3001)  # 2001 bytes > (3 - 1) * SMSS


def test_pipe_counts_unsacked_not_lost_and_retransmitted_octets() -> None:
    b = board((1000, 4000))  # [0, 1000) is lost; [4000, 10000) is in flight
    assert b.pipe(B, B + 10_000) == 6000
    b.high_rxt = B + 1000  # the lost hole went out again
    assert b.pipe(B, B + 10_000) == 7000
    b.high_rxt = B + 5000  # a retransmitted octet that is not lost counts twice
    assert b.pipe(B, B + 10_000) == 7000 + 1000


def test_next_seg_takes_lost_holes_in_order_then_unsacked_ones_only_without_new_data() -> None:
    b = board((1000, 2000), (3000, 4000), (5000, 6000), (7000, 7500))
    # Holes [0,1000) [2000,3000) are lost (three blocks above each); [4000,5000) and [6000,7000) not.
    assert b.next_seg(B, True) == (B, 1000)
    b.high_rxt = B + 1000
    assert b.next_seg(B, True) == (B + 2000, 1000)
    b.high_rxt = B + 3000
    assert b.next_seg(B, True) is None  # rule 1 fails: rule 2 (new data) comes first
    assert b.next_seg(B, False) == (B + 4000, 1000)  # rule 3
    b.high_rxt = B + 7000
    assert b.next_seg(B, False) is None  # nothing SACKed above the rest


# --- the connection ---------------------------------------------------------------------------

def ten_segments_in_flight(sack: bool = True, rack_tlp: bool = False) -> Harness:
    # RFC 6675's own rules (DupThresh, IsLost): RACK-TLP off; test_tcp_rack_tlp.py has RACK's.
    cfg = config(sack=True, recv_buffer=60_000, rack_tlp=rack_tlp)
    h = active_open(cfg, window=WINDOW, **({"sack_permitted": True} if sack else {}))
    h.conn.send(b"".join(bytes([i]) * 1000 for i in range(10)))
    out = h.recv()
    assert [s.seq for s in out] == [(L1 + i * 1000) & MASK for i in range(10)]
    return h


def sack_ack(h: Harness, ack: int, *blocks: tuple[int, int]) -> list[TcpSegment]:
    """The peer's ACK with SACK blocks given relative to L1; returns what goes out."""
    h.send(seg(R1, L1 + ack, window=WINDOW,
               sack_blocks=tuple(((L1 + s) & MASK, (L1 + e) & MASK) for s, e in blocks)))
    return h.recv()


def rexmits(h: Harness) -> list[tuple[int, str]]:
    return [((e.seq - L1) & MASK, e.reason) for e in h.take_events() if isinstance(e, Retransmitted)]


def lose_0_3_6(h: Harness) -> list[TcpSegment]:
    """Segments 0, 3 and 6 are lost; the peer SACKs each of the others as it arrives."""
    out: list[TcpSegment] = []
    arrived: list[int] = []
    for i in (1, 2, 4, 5, 7, 8, 9):
        arrived.append(i)
        blocks: list[tuple[int, int]] = []
        for j in arrived:
            if blocks and blocks[-1][1] == j * 1000:
                blocks[-1] = (blocks[-1][0], j * 1000 + 1000)
            else:
                blocks.append((j * 1000, j * 1000 + 1000))
        blocks.reverse()  # newest first, as a receiver reports them
        out += sack_ack(h, 0, *blocks[:3])
    return out


def test_three_holes_in_one_window_are_all_retransmitted_within_one_round_trip() -> None:
    h = ten_segments_in_flight()
    out = lose_0_3_6(h)
    assert sorted((s.seq - L1) & MASK for s in out) == [0, 3000, 6000]
    assert [s.payload for s in out] and all(s.payload_len == 1000 for s in out)
    assert rexmits(h) == [(0, "fast"), (3000, "sack"), (6000, "sack")]
    c = h.conn
    assert (c.retransmissions, c.fast_retransmits, c.sack_retransmissions) == (3, 1, 2)
    assert c.in_recovery and c.ssthresh == c.cwnd == 5000  # FlightSize / 2, no inflation


def test_without_sack_the_same_losses_get_one_newreno_retransmission_per_round_trip() -> None:
    h = ten_segments_in_flight(sack=False)  # blocks arrive but SACK was not negotiated
    out = lose_0_3_6(h)
    assert [(s.seq - L1) & MASK for s in out] == [0]
    assert rexmits(h) == [(0, "fast")]
    c = h.conn
    assert c.in_recovery and c.ssthresh == 5000 and c.cwnd == 5000 + 3000 + 4 * 1000  # NewReno inflation
    assert c.snapshot()["sack_scoreboard"] is None and c.sack_retransmissions == 0


def test_recovery_starts_on_islost_before_three_duplicate_acks() -> None:
    h = ten_segments_in_flight()
    out = sack_ack(h, 0, (1000, 4000))  # one ACK reports three segments above the hole
    assert h.conn.dup_acks == 1 and h.conn.in_recovery
    assert [(s.seq - L1) & MASK for s in out] == [0]
    assert rexmits(h) == [(0, "fast")]


def test_fewer_than_dupthresh_segments_sacked_do_not_start_recovery() -> None:
    h = ten_segments_in_flight()
    assert sack_ack(h, 0, (1000, 3000)) == []
    assert not h.conn.in_recovery
    assert h.conn.snapshot()["sack_scoreboard"] == {"blocks": 1, "sacked_bytes": 2000, "pipe": 8000,
                                                    "in_sack_recovery": False}


def test_sacked_data_is_never_retransmitted_in_recovery() -> None:
    h = ten_segments_in_flight()
    out = sack_ack(h, 0, (1000, 2000), (3000, 4000), (5000, 10_000))
    sent = [((s.seq - L1) & MASK, s.payload_len) for s in out]
    assert sent == [(0, 1000), (2000, 1000), (4000, 1000)]  # only the holes
    out = sack_ack(h, 0, (1000, 2000), (3000, 4000), (5000, 10_000))
    assert out == []  # a further duplicate resends nothing: the holes are already out


def test_recovery_ends_when_an_ack_covers_the_recovery_point() -> None:
    h = ten_segments_in_flight()
    lose_0_3_6(h)
    h.take_events()
    sack_ack(h, 3000, (4000, 6000), (7000, 10_000))  # partial: still recovering
    assert h.conn.in_recovery and h.conn.cwnd == 5000
    assert rexmits(h) == []  # no NewReno partial-ACK retransmission: the hole is already out
    sack_ack(h, 10_000)
    c = h.conn
    assert not c.in_recovery and c.cwnd == c.ssthresh == 5000
    assert c.snapshot()["sack_scoreboard"] == {"blocks": 0, "sacked_bytes": 0, "pipe": 0,
                                               "in_sack_recovery": False}


def test_new_data_goes_out_in_recovery_once_lost_holes_are_resent() -> None:
    h = ten_segments_in_flight()
    h.conn.send(b"n" * 3000)
    out = sack_ack(h, 0, (1000, 10_000))  # 9 segments SACKed: pipe is the one resent hole
    assert [((s.seq - L1) & MASK) for s in out] == [0, 10_000, 11_000, 12_000]
    assert rexmits(h) == [(0, "fast")]


def test_first_timeout_goes_back_but_skips_sacked_data() -> None:
    h = ten_segments_in_flight()
    sack_ack(h, 0, (2000, 10_000))  # recovery: [0, 2000) resent, and lost again
    h.take_events()
    h.fire_next_timer()
    assert h.conn.cwnd == 1000 and not h.conn.in_recovery
    assert [((s.seq - L1) & MASK) for s in h.recv()] == [0]
    out = sack_ack(h, 1000, (2000, 10_000))
    assert [((s.seq - L1) & MASK) for s in out] == [1000]  # then nothing: the rest is SACKed
    assert rexmits(h) == [(0, "rto"), (1000, "rto")]
    assert sack_ack(h, 2000, (2000, 10_000)) == []
    assert h.conn.snd_nxt == (L1 + 10_000) & MASK


def test_second_timeout_forgets_sacks_in_case_the_receiver_reneged() -> None:
    h = ten_segments_in_flight()
    sack_ack(h, 0, (2000, 10_000))
    h.fire_next_timer()
    h.recv()  # [0, 1000) again
    h.fire_next_timer()  # and lost again
    assert h.conn.snapshot()["sack_scoreboard"]["blocks"] == 0  # type: ignore[index]
    h.recv()
    h.take_events()
    out = sack_ack(h, 2000)  # the receiver dropped what it had SACKed
    assert [((s.seq - L1) & MASK) for s in out] == [2000, 3000]
    assert rexmits(h) == [(2000, "rto"), (3000, "rto")]


def test_a_reordered_ack_below_snd_una_does_not_move_the_window_edge() -> None:
    # Found by the loss sweep: a late pure ACK (higher SEQ than later retransmissions)
    # re-applied its old, larger window from the newer SND.UNA, the sender overran the
    # peer's window, and every later ACK landed outside the peer's closed window.
    h = ten_segments_in_flight()
    h.send(seg(R1, L1 + 5000, window=2000))
    assert h.conn.snd_wnd == 2000
    h.send(seg(R1 + 10, L1 + 1000, window=WINDOW))  # sent before the ACK above, arriving after it
    assert h.conn.snd_wnd == 2000
