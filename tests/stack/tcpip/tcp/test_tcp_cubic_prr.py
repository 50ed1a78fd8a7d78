"""CUBIC (RFC 9438) and PRR (RFC 6937): each rule on its own, then through a connection.

Each test names the rule it holds; section numbers are the RFCs'.  Windows' defaults:
`netsh int tcp show supplemental` "Congestion Control Provider : cubic" (Windows 10 1709 and
later), `netsh int tcp show global` "Proportional Rate Reduction : enabled" (Windows 11 /
Server 2022)."""

from __future__ import annotations

import math

import pytest
from tcp_harness import LOCAL_ISS, MASK, REMOTE_ISS, Harness, active_open, config, seg

from stack.tcpip.tcp import MS, TcpConfig, TcpSegment
from stack.tcpip.tcp.cubic import ALPHA_CUBIC, BETA_CUBIC, C, Cubic, icbrt, k_ns
from stack.tcpip.tcp.errors import TcpConfigError
from stack.tcpip.tcp.prr import Prr

SMSS = 1000
SEC = 1_000_000_000
L1 = LOCAL_ISS + 1
R1 = REMOTE_ISS + 1
WINDOW = 60_000


class _Rtt:
    def __init__(self, srtt_ns: int | None) -> None:
        self.srtt_ns = srtt_ns


def cubic_after_loss(cwnd_segments: int, srtt_ns: int = 0, **kw: bool) -> tuple[Cubic, int]:
    """A CUBIC that saw one loss at cwnd_segments (all in flight); returns it and ssthresh."""
    c = Cubic(SMSS, _Rtt(srtt_ns), **kw)
    ssthresh = c.on_congestion(cwnd_segments * SMSS, cwnd_segments * SMSS)
    return c, ssthresh


# --- RFC 9438 on its own ------------------------------------------------------------------------

def test_constants_are_rfc_9438s_c_0_4_beta_0_7_and_alpha_from_beta() -> None:
    assert (C, BETA_CUBIC) == (0.4, 0.7)
    assert ALPHA_CUBIC == pytest.approx(3 * 0.3 / 1.7)  # 4.1.1: about 0.529


def test_beta_cubic_sets_ssthresh_to_0_7_of_the_flight_with_a_floor_of_2_smss() -> None:
    _, ssthresh = cubic_after_loss(100)
    assert ssthresh == 70_000  # 4.6: flight_size * beta_cubic, not Reno's half
    c = Cubic(SMSS)
    assert c.on_congestion(2000, 2000) == 2000  # 0.7 * 2 SMSS, raised to 2 SMSS


def test_k_is_the_time_the_curve_takes_back_to_w_max() -> None:
    c, ssthresh = cubic_after_loss(100)
    c.on_ack(ssthresh, SMSS, 0)  # the first ACK of congestion avoidance starts the epoch at cwnd 70
    assert c.w_max == 100_000 and c.cwnd_epoch == 70_000
    # 4.2 eq. 2: K = cubic_root((W_max - cwnd_epoch) / C) = cubic_root(30 / 0.4) = 75^(1/3) s
    assert c.k_s == pytest.approx(4.217163326508746, abs=1e-9)
    assert c.w_cubic(0) == pytest.approx(c.cwnd_epoch, abs=1)  # the curve starts at cwnd_epoch


def test_k_is_computed_on_integers_so_no_libm_can_change_it() -> None:
    # floor(cube root) exactly, where a float pow() can be off by one ulp (and differ by platform)
    for n in (0, 1, 7, 8, 26, 27, 10**27 - 1, 10**27, 75 * 10**27, (3 * 10**20 + 1) ** 3 - 1):
        r = icbrt(n)
        assert r ** 3 <= n < (r + 1) ** 3
    assert k_ns(100_000, 70_000, SMSS) == 4_217_163_326  # 75^(1/3) s = 4.2171633265... s
    assert k_ns(70_000, 100_000, SMSS) == -4_217_163_326  # cwnd_epoch above W_max: K < 0


def climb(c: Cubic, cwnd: int, rtt_ns: int, until_s: float) -> list[int]:
    """cwnd after each RTT when every segment of each window is ACKed one RTT after it left."""
    seen, now = [], 0
    while now < until_s * SEC:
        now += rtt_ns
        for _ in range(cwnd // SMSS):
            cwnd = c.on_ack(cwnd, SMSS, now)
        seen.append(cwnd)
    return seen


def test_the_window_climbs_a_concave_curve_to_w_max_then_a_convex_one_past_it() -> None:
    # 4.4 / 4.5: after a loss at 1000 segments (200 ms RTT, where the cubic curve, not the
    # Reno-friendly estimate, leads) the climb is fast at first, flattens at W_max around t = K,
    # then speeds up again.
    c, ssthresh = cubic_after_loss(1000, srtt_ns=200 * MS)
    k = 750 ** (1 / 3)  # K = cubic_root((1000 - 700) / 0.4) s, reached as the epoch starts
    per_s = 5  # RTTs per second
    seen = climb(c, ssthresh, 200 * MS, 2 * k + 1)
    at = lambda t: seen[int(t * per_s) - 1]  # noqa: E731
    early, late = at(1) - ssthresh, at(k) - at(k - 1)
    assert early > 3 * late > 0  # concave: growth slows as cwnd nears W_max
    assert abs(at(k) - c.w_max) < 0.01 * c.w_max  # the plateau at W_max around t = K
    assert at(k + 2) - at(k + 1) < at(2 * k) - at(2 * k - 1)  # convex: growth speeds up past it
    assert all(b >= a for a, b in zip(seen, seen[1:]))  # cwnd never falls without a loss


def test_the_target_is_clamped_to_one_and_a_half_cwnd() -> None:
    # 4.2: target = min(W_cubic(t + RTT), 1.5 cwnd): one ACK of N bytes adds at most N / 2.
    c, ssthresh = cubic_after_loss(100, srtt_ns=100 * MS)
    c.on_ack(ssthresh, 1, 0)
    assert c.on_ack(110_000, 8 * SMSS, 60 * SEC) == 110_000 + 4 * SMSS


def test_the_window_follows_the_virtual_clock_not_the_number_of_acks() -> None:
    # W_cubic depends on t = now - t_epoch: the same ACKs later in virtual time grow cwnd more.
    ends = []
    for gap_ns in (1 * MS, 10 * MS):
        c, ssthresh = cubic_after_loss(100, srtt_ns=0)
        cwnd = ssthresh
        for i in range(1, 201):
            cwnd = c.on_ack(cwnd, SMSS, i * gap_ns)
        ends.append(cwnd)
    assert ends[0] < ends[1]


def test_the_reno_friendly_estimate_takes_over_at_small_windows_and_short_rtts() -> None:
    # 4.3: with a 10-segment W_max and a 50 us RTT the cubic curve barely moves in a few ms,
    # while W_est grows alpha_cubic segments per RTT: cwnd follows W_est.
    c, ssthresh = cubic_after_loss(10, srtt_ns=50_000)
    cwnd, now = ssthresh, 0
    for _ in range(40):  # 40 round trips of cwnd / SMSS ACKs each
        now += 50_000
        for _ in range(cwnd // SMSS):
            cwnd = c.on_ack(cwnd, SMSS, now)
    t_s = now / SEC
    assert c.w_cubic(t_s) < c.w_est and cwnd == int(c.w_est)
    assert cwnd > 7_000 + 20 * SMSS  # ~0.53 then 1 segment per round trip, far above the curve


def test_alpha_becomes_one_once_w_est_reaches_the_window_before_the_loss() -> None:
    # 4.3: W_est grows by alpha_cubic * acked / cwnd until it reaches cwnd_prior, then by 1.
    c, ssthresh = cubic_after_loss(10)
    c.on_ack(ssthresh, 1, 0)
    c.w_est = 7_000.0
    c.on_ack(7_000, SMSS, 0)
    assert c.w_est == pytest.approx(7_000 + ALPHA_CUBIC * SMSS * SMSS / 7_000)
    c.w_est = 10_000.0  # back at cwnd_prior
    c.on_ack(10_000, SMSS, 0)
    assert c.w_est == pytest.approx(10_000 + SMSS * SMSS / 10_000)


def test_fast_convergence_lowers_w_max_when_a_loss_comes_below_the_last_w_max() -> None:
    c, _ = cubic_after_loss(100)
    assert c.w_max == 100_000
    c.on_congestion(80_000, 80_000)  # 4.7: losing share - release bandwidth for new flows
    assert c.w_max == int(80_000 * (1 + BETA_CUBIC) / 2) == 68_000
    c.on_congestion(120_000, 120_000)  # above the last W_max: W_max = cwnd
    assert c.w_max == 120_000


def test_without_fast_convergence_w_max_is_the_window_at_the_loss() -> None:
    c, _ = cubic_after_loss(100, fast_convergence=False)
    c.on_congestion(80_000, 80_000)
    assert c.w_max == 80_000


def test_after_a_timeout_the_first_stage_starts_with_k_zero_at_its_own_window() -> None:
    # 4.8: ssthresh by beta_cubic; then in the first congestion avoidance K = 0, W_max = cwnd_epoch.
    c, _ = cubic_after_loss(100)
    assert c.on_timeout(50_000, 40_000) == 28_000
    c.on_ack(28_000, SMSS, 5 * SEC)
    assert (c.k_s, c.w_max, c.cwnd_epoch, c.epoch_start_ns) == (0.0, 28_000, 28_000, 5 * SEC)


def test_a_congestion_event_ends_the_epoch() -> None:
    c, ssthresh = cubic_after_loss(100)
    c.on_ack(ssthresh, SMSS, 1 * SEC)
    assert c.epoch_start_ns == 1 * SEC
    c.on_congestion(75_000, 75_000)
    assert c.epoch_start_ns is None  # the next congestion avoidance ACK starts a new one


# --- RFC 6937 on its own ------------------------------------------------------------------------

def test_prr_sends_ssthresh_over_recoverfs_of_what_was_delivered_while_pipe_is_above_ssthresh() -> None:
    prr = Prr()
    prr.start(0, 10_000, 0)  # RecoverFS = 10 segments in flight, ssthresh 7 segments
    assert prr.recover_fs == 10_000
    # one segment delivered (SACKed), pipe still 9000 > 7000: sndcnt = CEIL(1000 * 0.7) - 0
    assert prr.on_ack(0, 1000, 9000, 7000, SMSS) == 9000 + 700
    prr.on_send(1000)  # what the connection sent (a full segment once cwnd - pipe allowed it)
    # two delivered: CEIL(2000 * 0.7) - 1000 = 400
    assert prr.on_ack(0, 2000, 9000, 7000, SMSS) == 9000 + 400
    assert (prr.prr_delivered, prr.prr_out, prr.sndcnt) == (2000, 1000, 400)


def test_prr_ssrb_lets_pipe_climb_back_to_ssthresh_by_at_most_delivered_plus_one_mss() -> None:
    prr = Prr()
    prr.start(0, 10_000, 0)
    # pipe fell to 3000 (many losses): limit = MAX(prr_delivered - prr_out, DeliveredData) + MSS
    assert prr.on_ack(0, 2000, 3000, 7000, SMSS) == 3000 + 2000 + 1000
    prr.on_send(3000)
    assert prr.on_ack(0, 3000, 5000, 7000, SMSS) == 5000 + 1000 + 1000  # DeliveredData 1000 + MSS
    assert prr.on_ack(0, 9000, 6500, 7000, SMSS) == 7000  # never past ssthresh - pipe


def test_prr_delivered_data_is_snd_una_advance_plus_the_change_in_sacked_bytes() -> None:
    prr = Prr()
    prr.start(0, 10_000, 1000)
    prr.on_ack(0, 3000, 9000, 7000, SMSS)  # two more SACKed
    assert prr.prr_delivered == 2000
    # the cumulative ACK moves 4000 over the 3000 SACKed: only 1000 is new
    prr.on_ack(4000, 0, 6000, 7000, SMSS)
    assert prr.prr_delivered == 3000


def test_prr_over_a_whole_episode_sends_ssthresh_over_recoverfs_of_the_delivered_data() -> None:
    prr = Prr()
    prr.start(0, 20_000, 0)
    ssthresh, sent, pipe = 14_000, 0, 20_000
    for k in range(1, 20):  # 19 segments SACKed one by one, the lost one resent
        pipe -= SMSS
        cwnd = prr.on_ack(0, k * SMSS, pipe, ssthresh, SMSS)
        while cwnd - pipe >= SMSS:
            prr.on_send(SMSS)
            pipe += SMSS
            sent += SMSS
    assert sent == math.floor(19 * SMSS * 0.7 / SMSS) * SMSS  # 13 of 19: the ratio, not a burst
    assert pipe == ssthresh  # the flight (the lost segment still counted) has come down to ssthresh


# --- the configuration ----------------------------------------------------------------------------

def test_the_default_provider_is_cubic_with_prr_and_newreno_stays_selectable() -> None:
    assert (TcpConfig().congestion_provider, TcpConfig().prr) == ("cubic", True)
    assert TcpConfig(congestion_provider="newreno").congestion_provider == "newreno"
    with pytest.raises(TcpConfigError, match="congestion_provider"):
        TcpConfig(congestion_provider="bbr2")


# --- through a connection -------------------------------------------------------------------------

def windows_cc(**kw: object) -> TcpConfig:
    # RACK-TLP off: these tests enter recovery by RFC 6675's DupThresh rule, whose ACK count they
    # check; test_tcp_rack_tlp.py holds recoveries that RACK starts.
    return config(**{"sack": True, "recv_buffer": 60_000, "congestion_provider": "cubic", "prr": True,
                     "rack_tlp": False, **kw})


def in_flight(cfg: TcpConfig, segments: int = 10) -> Harness:
    h = active_open(cfg, window=WINDOW, sack_permitted=True)
    h.conn.send(b"".join(bytes([i % 256]) * 1000 for i in range(segments)))
    out = h.recv()
    assert len(out) == segments
    return h


def sack_ack(h: Harness, ack: int, *blocks: tuple[int, int]) -> list[TcpSegment]:
    h.send(seg(R1, L1 + ack, window=WINDOW,
               sack_blocks=tuple(((L1 + s) & MASK, (L1 + e) & MASK) for s, e in blocks)))
    return h.recv()


def rel(out: list[TcpSegment]) -> list[int]:
    return [(s.seq - L1) & MASK for s in out]


def test_a_cubic_connection_enters_sack_recovery_with_ssthresh_0_7_of_the_flight() -> None:
    h = in_flight(windows_cc())
    for k in (2, 3, 4):
        sack_ack(h, 0, (1000, k * 1000))
    c = h.conn
    assert c.in_recovery and c.ssthresh == 7000  # 0.7 * 10 segments; NewReno would say 5000
    assert c.snapshot()["congestion"]["cubic"]["w_max"] == 10_000  # type: ignore[index]


def lose_the_first_of_30(prr: bool) -> tuple[Harness, list[int], list[dict]]:
    """30 segments in flight (IW30 for brevity) and 30 more queued; the first is lost and the
    peer SACKs the other 29 one by one.  Returns the segments sent per ACK and PRR's counters."""
    h = in_flight(windows_cc(prr=prr, initial_cwnd_segments=30), segments=30)
    h.conn.send(b"n" * 30_000)
    sent, counters = [], []
    for k in range(1, 30):
        sent.append(len(sack_ack(h, 0, (1000, 1000 + k * 1000))))
        counters.append({**h.conn.snapshot()["congestion"].get("prr", {}),  # type: ignore[union-attr]
                         "pipe": h.conn.snapshot()["sack_scoreboard"]["pipe"]})  # type: ignore[index]
    return h, sent, counters


def test_prr_spreads_the_sends_of_a_recovery_over_the_acks_at_ssthresh_over_recoverfs() -> None:
    # ssthresh = 0.7 * 30 = 21 segments.  At the third duplicate recovery starts with pipe at
    # 27 (30, less 3 SACKed, less the lost one, plus its retransmission) - above ssthresh, so
    # PRR sends CEIL(prr_delivered * 21 / 30) - prr_out: about 7 segments for every 10 delivered.
    h, sent, counters = lose_the_first_of_30(prr=True)
    assert h.conn.ssthresh == 21_000 and sent[:3] == [0, 0, 1]  # the fast retransmit
    for c in counters[2:]:
        if c["pipe"] > 21_000:  # proportional part: never ahead of the ratio (the fast retransmit
            # goes regardless, RFC 6675 5 step 4.3)
            assert c["prr_out"] <= max(-(-c["prr_delivered"] * 21_000 // 30_000), 1000)
    assert sent[3:9] == [0, 1, 0, 1, 1, 0]  # paced from the start
    assert max(len(run) for run in "".join(map(str, sent[3:])).split("1")) <= 2  # no long silence
    assert counters[-1]["prr_delivered"] == 27_000  # 29 SACKed, the 2 before recovery not counted
    assert counters[-1]["pipe"] == 21_000  # the flight is at ssthresh: PRR-SSRB holds it there
    sack_ack(h, h.conn.snd_max - L1)  # everything acknowledged: the episode ends
    assert not h.conn.in_recovery and h.conn.cwnd == h.conn.ssthresh == 21_000  # RFC 6675 / RFC 6937
    assert "prr" not in h.conn.snapshot()["congestion"]  # type: ignore[operator]


def test_without_prr_the_same_recovery_is_silent_until_pipe_falls_below_ssthresh() -> None:
    # RFC 6675 (prr=False): cwnd = ssthresh = 21 at once, pipe 27: nothing new for 6 ACKs,
    # then one per ACK - the half-RTT stall PRR removes.
    h, sent, _ = lose_the_first_of_30(prr=False)
    assert sent[:3] == [0, 0, 1] and sent[3:9] == [0] * 6 and sent[9:] == [1] * 20
    sack_ack(h, h.conn.snd_max - L1)
    assert h.conn.cwnd == h.conn.ssthresh == 21_000


def test_newreno_is_still_selectable_and_halves_the_window() -> None:
    h = in_flight(config(sack=True, recv_buffer=60_000, congestion_provider="newreno", prr=True, rack_tlp=False))
    for k in (2, 3, 4):
        sack_ack(h, 0, (1000, k * 1000))
    assert h.conn.ssthresh == 5000 and h.conn.snapshot()["congestion"] == {  # type: ignore[index]
        "provider": "newreno", "prr": {"recover_fs": 10_000, "prr_delivered": 1000, "prr_out": 1000, "sndcnt": 500}}


def test_a_timeout_under_cubic_sets_ssthresh_by_beta_and_cwnd_to_one_segment() -> None:
    h = in_flight(windows_cc(), segments=4)
    h.fire_next_timer()
    assert h.conn.cwnd == 1000 and h.conn.ssthresh == 2800  # RFC 9438 4.8: 0.7 * 4000


# --- the ACK that starts recovery is delivered data (RFC 6937 3.1; Linux tcp_prr / ns-3 count it) ---

def prr_of(h: Harness) -> dict:
    return h.conn.snapshot()["congestion"]["prr"]  # type: ignore[index,return-value]


def test_prr_counts_the_third_duplicate_ack_that_starts_recovery_as_delivered() -> None:
    h = in_flight(windows_cc())
    for k in (2, 3, 4):  # DupThresh path: the third duplicate SACKs one more segment
        sack_ack(h, 0, (1000, k * 1000))
    assert h.conn.in_recovery and prr_of(h)["prr_delivered"] == 1000


def test_prr_counts_the_ack_that_starts_recovery_by_islost_as_delivered() -> None:
    # IsLost path (RFC 6675 5 step 3b): one ACK SACKs three segments above the hole; all three
    # were delivered by that ACK, as on the DupThresh path.
    h = in_flight(windows_cc())
    sack_ack(h, 0, (1000, 4000))
    assert h.conn.in_recovery and prr_of(h)["prr_delivered"] == 3000


def test_prr_counts_the_islost_trigger_acks_cumulative_advance_too() -> None:
    # the trigger ACK moves SND.UNA by one segment and SACKs three above the next hole: 4000 delivered
    h = in_flight(windows_cc())
    sack_ack(h, 1000, (2000, 5000))
    assert h.conn.in_recovery and prr_of(h)["prr_delivered"] == 4000
    assert prr_of(h)["recover_fs"] == 9000  # RecoverFS: the flight when recovery starts


# --- rules a broken implementation would break -------------------------------------------------

def test_sack_recovery_exit_sets_cwnd_to_ssthresh_when_pipe_ended_below_it() -> None:
    # RFC 6675 / RFC 6937: at the end of recovery cwnd = ssthresh.  Five of ten segments lost: PRR
    # leaves cwnd at pipe + sndcnt, below ssthresh, on the last ACK inside the episode.
    h = in_flight(windows_cc())
    for k in (6, 7, 8, 9, 10):
        sack_ack(h, 0, (5000, k * 1000))
    assert h.conn.in_recovery and h.conn.cwnd < h.conn.ssthresh == 7000
    sack_ack(h, 10_000)
    assert not h.conn.in_recovery and h.conn.cwnd == 7000


def test_prr_rounds_the_proportional_share_up() -> None:
    # RFC 6937 3.1: sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out:
    # 1000 * 2000 / 3000 = 666.7 -> 667 (a floor would give 666)
    prr = Prr()
    prr.start(0, 3000, 0)
    assert prr.on_ack(0, 1000, 2500, 2000, SMSS) == 2500 + 667


def test_the_target_is_where_the_curve_will_be_one_rtt_later() -> None:
    # RFC 9438 4.2: target = W_cubic(t + RTT).  With a 200 ms RTT halfway to K the curve climbs
    # C * ((t + 0.2 - K)^3 - (t - K)^3) segments in that RTT (about 0.97); a window on the curve
    # at t grows by that much per window ACKed.  W_cubic(t) as the target would add nothing.
    c, _ = cubic_after_loss(100, srtt_ns=200 * MS)
    c.on_ack(70_000, 1, 0)  # the epoch starts at t = 0, cwnd 70 segments
    k = 75 ** (1 / 3)
    t = k / 2
    on_curve = lambda x: 0.4 * (x - k) ** 3 * SMSS + 100_000  # noqa: E731
    cwnd = int(on_curve(t))
    grown = c.on_ack(cwnd, cwnd, int(t * SEC)) - cwnd
    assert grown == pytest.approx(on_curve(t + 0.2) - cwnd, abs=2) and grown > 900


def test_a_new_epoch_restarts_the_reno_friendly_estimate_at_its_own_window() -> None:
    # RFC 9438 4.3: W_est = cwnd_epoch when a congestion avoidance stage begins, every stage.
    c, ssthresh = cubic_after_loss(100)
    c.on_ack(ssthresh, SMSS, 0)
    for _ in range(2000):
        c.on_ack(ssthresh, SMSS, 1_000)  # the first epoch's estimate grows well past 70 segments
    assert c.w_est > 80_000
    second = c.on_congestion(80_000, 80_000)  # a second loss ends the epoch
    c.on_ack(second, SMSS, 2 * SEC)
    assert c.cwnd_epoch == second == 56_000
    assert c.w_est == pytest.approx(56_000 + ALPHA_CUBIC * SMSS * SMSS / 56_000)
