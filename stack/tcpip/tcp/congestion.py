"""Congestion control: slow start and congestion avoidance (RFC 5681) with
NewReno fast retransmit / fast recovery (RFC 6582), or, when SACK was
negotiated, SACK-based loss recovery (RFC 6675) driven by a scoreboard.

The congestion provider (TcpConfig.congestion_provider, Windows' `netsh int tcp set supplemental
congestionprovider=`) decides congestion avoidance and the reduction on a loss: "cubic" (RFC 9438,
cubic.py; Windows' default since Windows 10 1709 / Server 2019) or "newreno" (RFC 5681: one SMSS
per window, ssthresh = FlightSize / 2).  In a SACK recovery PRR (RFC 6937, prr.py; on in Windows 11
/ Server 2022, TcpConfig.prr) paces the sends down to ssthresh instead of RFC 6675's cwnd = ssthresh.

Slow start grows cwnd by min(N, L*SMSS) per ACK that covers N new bytes.  L is
TcpConfig.slow_start_ack_limit, by default Windows' 8 in the first slow start of a connection
(later ones, after an RTO set ssthresh, use RFC 5681's 1; slow_start_ack_limit=1 gives RFC 5681
throughout).  Sources for Windows': Windows enables
HyStart++ by default (`netsh int tcp show global`: "HyStart : enabled", "Pacing Profile : off"); RFC
9406 (HyStart++, written by Windows' TCP developers, whose first draft described "the current
implementation in the Windows operating system") 4.2: "For each arriving ACK in slow start, where N
is the number of previously unacknowledged bytes acknowledged in the arriving ACK: cwnd = cwnd +
min(N, L * SMSS)", 4.3: "L = infinity if paced, L = 8 if non-paced", and "An implementation SHOULD
use HyStart++ only for the initial slow start ... and fall back to using standard slow start" (RFC
5681: at most SMSS per ACK).  So with L = 8 one ACK for a large RSC unit (about 30 segments under Adaptive
interrupt moderation) grows cwnd by 8 segments, not 1.  What is inferred: Microsoft does not publish
tcpip.sys's constant; L = 8 is the RFC's for an unpaced sender.  HyStart++'s delay-based exit (an
RTT rise of at least 4 ms) and its Conservative Slow Start are not modelled: the lab's RTTs are tens
of microseconds.

Why the default became 8 only now: with 8, a 4 MiB bulk echo under Adaptive moderation overran
winsrv's 512-buffer receive ring while the NIC throttled bulk traffic to igb's 4,000 interrupts/s
(250 us: up to 208 line-rate frames arrive between interrupts at 10 Gb/s).  Without RACK-TLP the
sender recovered through a retransmission timeout (33.6 -> 333 virtual ms); with RACK-TLP it
recovered without one but kept overrunning the ring (110 frames dropped, 308 segments resent).
Both blockers are gone: RACK-TLP (rack.py) and PRR recover without an RTO, and a 10 Gb/s NIC takes ixgbe's
12,000/s bulk rate (stack/nic/itr.py).  The 4 MiB echo at L = 8 now has 0 ring drops and 0 resends
in 8.75 virtual ms against 11.07 at L = 1 (tests/bench/bench_congestion.py --mib 4 --rows
cubic:-:1,cubic:-:8), costs fewer Python calls per MiB (66,700 against 69,200;
tests/bench/bench_throughput.py --mib 4 --profile-only) and builds larger RSC units (30.1 segments
against 26.9; bench_rsc_units.py --mib 4).  The margin is thin: at its fullest the ring had 2 of
512 buffers posted at a DPC (tests/bench/bench_rx_ring.py); at 4,000/s L = 8 still drops 128
frames (bench_rx_ring.py --bulk-rate 4000 --limits 8).

Sequence numbers handed in are the connection's unwrapped ints, so plain
comparisons are correct.  `smss` is the sender's maximum payload per segment."""

from __future__ import annotations

from .cubic import Cubic
from .prr import Prr
from .scoreboard import DUP_THRESH, Scoreboard

DUP_ACK_THRESHOLD = DUP_THRESH
_INFINITE_SSTHRESH = 0x7FFFFFFF
WINDOWS_SLOW_START_ACK_LIMIT = 8  # RFC 9406 4.3 L, unpaced: Windows' HyStart++ (see the module docstring)


class NewReno:
    __slots__ = ("smss", "cwnd", "ssthresh", "in_recovery", "recover", "dup_acks", "_ca_bytes", "ack_limit", "cubic")

    def __init__(self, smss: int, initial_cwnd_segments: int, recover: int, ack_limit: int = 1,
                 cubic: Cubic | None = None) -> None:
        self.cubic = cubic  # None: NewReno's congestion avoidance and halving (the "newreno" provider)
        self.ack_limit = ack_limit  # L in SMSS for the first slow start (TcpConfig.slow_start_ack_limit)
        self.smss = smss
        self.cwnd = initial_cwnd_segments * smss
        self.ssthresh = _INFINITE_SSTHRESH  # "arbitrarily high" (RFC 5681 3.1)
        self.in_recovery = False
        self.recover = recover  # RFC 6582: initialised to the ISS
        self.dup_acks = 0  # consecutive duplicate ACKs
        self._ca_bytes = 0  # bytes acked toward the next congestion-avoidance increment

    @property
    def provider(self) -> str:
        """The congestion provider's name as `netsh int tcp show supplemental` prints it."""
        return "newreno" if self.cubic is None else "cubic"

    def reset_window(self, smss: int, initial_cwnd_segments: int) -> None:
        """Set the initial window once the MSS is negotiated."""
        self.smss = smss
        self.cwnd = initial_cwnd_segments * smss
        if self.cubic is not None:
            self.cubic.smss = smss

    def loss_ssthresh(self, flight: int) -> int:
        """ssthresh after a loss the ACKs revealed: CUBIC's beta (RFC 9438 4.6, 4.7) or half
        the flight (RFC 5681 eq. 4)."""
        if self.cubic is not None:
            return self.cubic.on_congestion(self.cwnd, flight)
        return max(flight // 2, 2 * self.smss)

    def on_new_ack(self, acked: int, ack: int, flight_after: int, now: int = 0) -> bool:
        """SND.UNA advanced by `acked` bytes to `ack` at `now` (ns, CUBIC's clock).  Returns True
        when the ACK is a NewReno partial ACK and the first unacknowledged segment must
        be retransmitted at once."""
        self.dup_acks = 0
        if self.in_recovery:
            if ack > self.recover:
                # Full acknowledgment of everything up to and including
                # `recover` (RFC 6582 3.2 step 3, first option).
                self.in_recovery = False
                self.cwnd = min(self.ssthresh, max(flight_after, self.smss) + self.smss)
                self._ca_bytes = 0
                return False
            # Partial acknowledgment: deflate by the newly acked amount, add
            # back one SMSS if at least that much was acked (step 3).
            self.cwnd = max(self.cwnd - acked, self.smss)
            if acked >= self.smss:
                self.cwnd += self.smss
            return True
        if self.cwnd < self.ssthresh:
            # slow start (see the module docstring): L in the first one, RFC 5681's 1 SMSS after an RTO
            limit = self.ack_limit if self.ssthresh == _INFINITE_SSTHRESH else 1
            self.cwnd += min(acked, limit * self.smss)
        elif self.cubic is not None:
            self.cwnd = self.cubic.on_ack(self.cwnd, acked, now)
        else:
            self._ca_bytes += acked
            if self._ca_bytes >= self.cwnd:
                self._ca_bytes -= self.cwnd
                self.cwnd += self.smss
        return False

    def on_dup_ack(self, ack: int, flight: int, snd_max: int) -> bool:
        """A duplicate ACK (RFC 5681 definition).  Returns True when the first
        unacknowledged segment must be fast-retransmitted."""
        self.dup_acks += 1
        if self.in_recovery:
            self.cwnd += self.smss  # inflate for the segment that left the network
            return False
        if self.dup_acks != DUP_ACK_THRESHOLD:
            return False
        if ack <= self.recover:
            # The ACK does not cover more than `recover`: these duplicates may
            # stem from a retransmission already made (RFC 6582 3.2 step 2).
            return False
        self.ssthresh = self.loss_ssthresh(flight)
        self.cwnd = self.ssthresh + DUP_ACK_THRESHOLD * self.smss
        self.recover = snd_max - 1  # highest sequence number transmitted
        self.in_recovery = True
        return True

    def on_rto(self, flight: int, snd_max: int) -> None:
        """The retransmission timer expired (RFC 5681 eq. 4, loss window 1 SMSS;
        RFC 6582 section 4: recover = highest sequence sent; CUBIC: RFC 9438 4.8)."""
        cubic = self.cubic
        self.ssthresh = cubic.on_timeout(self.cwnd, flight) if cubic is not None else max(flight // 2, 2 * self.smss)
        self.cwnd = self.smss
        self.in_recovery = False
        self.dup_acks = 0
        self._ca_bytes = 0
        self.recover = snd_max - 1


class SackRecovery(NewReno):
    """RFC 6675 loss recovery: cwnd = ssthresh for the whole episode, no inflation;
    the connection sends while cwnd - pipe >= 1 SMSS, choosing what with the
    scoreboard's next_seg().  Outside recovery it grows cwnd exactly as NewReno."""

    __slots__ = ("scoreboard", "prr")

    def __init__(self, smss: int, initial_cwnd_segments: int, recover: int, ack_limit: int = 1,
                 cubic: Cubic | None = None, prr: bool = False) -> None:
        super().__init__(smss, initial_cwnd_segments, recover, ack_limit, cubic)
        self.scoreboard = Scoreboard(smss)
        self.prr = Prr() if prr else None  # RFC 6937 paces the episode; None: RFC 6675's cwnd = ssthresh

    def reset_window(self, smss: int, initial_cwnd_segments: int) -> None:
        super().reset_window(smss, initial_cwnd_segments)
        self.scoreboard.smss = smss

    def on_new_ack(self, acked: int, ack: int, flight_after: int, now: int = 0) -> bool:
        if not self.in_recovery:
            return super().on_new_ack(acked, ack, flight_after, now)
        self.dup_acks = 0
        if ack > self.recover:  # RFC 6675 5 (A): RecoveryPoint is covered
            self.in_recovery = False
            self.cwnd = self.ssthresh  # RFC 5681 3.2 step 6
            self._ca_bytes = 0
        return False  # no partial-ACK rule: pipe and the scoreboard decide what is resent

    def on_dup_ack(self, ack: int, flight: int, snd_max: int) -> bool:
        self.dup_acks += 1
        if self.in_recovery or self.dup_acks < DUP_ACK_THRESHOLD:
            return False
        return self.enter_recovery(ack, flight, snd_max)

    def enter_recovery(self, ack: int, flight: int, snd_max: int) -> bool:
        """RFC 6675 5 step 4, on DupThresh duplicate ACKs or IsLost(SND.UNA).  Returns
        True when recovery starts and the first hole must be retransmitted at once."""
        if self.in_recovery or ack <= self.recover:
            # Not before everything outstanding at the previous episode (or RTO) is
            # acknowledged (RFC 6675 5.1, as RFC 6582 3.2 step 2).
            return False
        # RFC 5681 eq. 4 or RFC 9438 4.6; with PRR, cwnd is pipe + sndcnt from the next ACK on
        self.ssthresh = self.cwnd = self.loss_ssthresh(flight)
        self.recover = snd_max - 1  # RecoveryPoint = HighData
        self.in_recovery = True
        self._ca_bytes = 0
        self.scoreboard.high_rxt = ack
        if self.prr is not None:
            self.prr.start(ack, snd_max, self.scoreboard.sacked_bytes)
        return True

    def prr_ack(self, una: int, pipe: int) -> None:
        """RFC 6937 on an ACK during recovery, after the scoreboard took its blocks."""
        prr = self.prr
        if prr is not None and self.in_recovery:
            self.cwnd = prr.on_ack(una, self.scoreboard.sacked_bytes, pipe, self.ssthresh, self.smss)

    def on_rto(self, flight: int, snd_max: int) -> None:
        super().on_rto(flight, snd_max)
        self.scoreboard.high_rxt = 0
