"""CUBIC congestion avoidance (RFC 9438), sans I/O: window arithmetic in bytes on the
connection's virtual clock (ns).  NewReno/SackRecovery (congestion.py) own slow start, cwnd
and the recovery episodes; they ask this object for ssthresh at a congestion event and for
the next cwnd on each ACK in congestion avoidance.

Why CUBIC: Windows' default congestion provider since Windows 10 1709 / Server 2019
(`netsh int tcp show supplemental`: "Congestion Control Provider : cubic"; Get-NetTCPSetting's
CongestionProvider CUBIC - Microsoft networking blog, "TCP Templates for Windows Server 2019",
Oct 2018, and "Algorithmic improvements boost TCP performance on the Internet", May 2021).

The RFC 9438 rules kept here (section numbers are the RFC's; W in segments there, bytes here):
  4.1.1  C = 0.4, beta_cubic = 0.7, alpha_cubic = 3 * (1 - beta) / (1 + beta).
  4.2    W_cubic(t) = C * (t - K)^3 + W_max, t in seconds since the congestion avoidance stage
         began (t_epoch), K = cubic_root((W_max - cwnd_epoch) / C); per ACK in congestion
         avoidance target = W_cubic(t + RTT) clamped to [cwnd, 1.5 * cwnd] and cwnd grows by
         (target - cwnd) / cwnd per SMSS acknowledged.
  4.3    Reno-friendly region: W_est starts at cwnd_epoch and grows by alpha_cubic *
         segments_acked / cwnd; alpha_cubic becomes 1 once W_est >= cwnd_prior; while
         W_cubic(t) < W_est, cwnd = W_est.
  4.4/4.5 concave (cwnd < W_max) and convex (cwnd >= W_max) regions: the same target rule.
  4.6    on a congestion event ssthresh = flight_size * beta_cubic (at least 2 SMSS),
         cwnd_prior = cwnd; the epoch ends.
  4.7    fast convergence: W_max = cwnd * (1 + beta_cubic) / 2 when cwnd < W_max (the flow is
         losing share), else W_max = cwnd.
  4.8    a timeout sets ssthresh as 4.6 (cwnd goes to 1 SMSS as Reno does, congestion.py); in
         the first congestion avoidance stage after it, K = 0 and W_max = cwnd_epoch.
Not modelled: 4.9 (undoing a spurious congestion event), and the RFC's exclusion of
application-limited periods from t.  With no loss before (no W_max yet) the first stage starts
like the one after a timeout (K = 0, W_max = cwnd_epoch), as Linux's tcp_cubic does.

At the lab's RTTs (tens of microseconds) a second of virtual time is tens of thousands of round
trips, so after a loss the Reno-friendly estimate, which grows per ACK, overtakes the cubic
curve, which grows per second (RFC 9438 4.3: that region exists for short-RTT, small-BDP
paths); with a longer RTT or a larger W_max the concave climb back to W_max shows."""

from __future__ import annotations

from typing import Protocol

C = 0.4  # RFC 9438 4.1.1
BETA_CUBIC = 0.7
ALPHA_CUBIC = 3 * (1 - BETA_CUBIC) / (1 + BETA_CUBIC)  # ~0.529
_NS = 1e9


class _Rtt(Protocol):
    srtt_ns: int | None


def icbrt(n: int) -> int:
    """floor(cube root of n) for an integer n >= 0, by Newton's method on integers (Linux's
    tcp_cubic takes its cube root on integers too): no libm pow(), so K is the same on every
    platform and a transcript that prints it cannot change with the C library."""
    if n <= 0:
        return 0
    x = 1 << -(-n.bit_length() // 3)  # a power of two at or above the root
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            return x
        x = y


def k_ns(w_max: int, cwnd_epoch: int, smss: int) -> int:
    """RFC 9438 eq. 2 in integer ns: K = cubic_root((W_max - cwnd_epoch) / C), W in segments,
    C = 2/5; negative when cwnd_epoch > W_max.  (Floats elsewhere use only + - * /, which IEEE 754
    rounds the same everywhere.)"""
    d = w_max - cwnd_epoch
    root = icbrt(abs(d) * 5 * 10**27 // (2 * smss))
    return root if d >= 0 else -root


class Cubic:
    """One connection's CUBIC state.  `rtt` is the connection's RTT estimator (srtt_ns)."""

    __slots__ = ("smss", "rtt", "fast_convergence", "w_max", "k_s", "k_ns", "epoch_start_ns", "cwnd_epoch",
                 "w_est", "cwnd_prior", "_after_timeout")

    def __init__(self, smss: int, rtt: _Rtt | None = None, fast_convergence: bool = True) -> None:
        self.smss = smss
        self.rtt = rtt
        self.fast_convergence = fast_convergence
        self.w_max = 0  # bytes; 0 = no congestion event yet
        self.k_s = 0.0  # K in seconds
        self.k_ns = 0  # ... and in ns, as computed (integers: k_ns())
        self.epoch_start_ns: int | None = None  # t_epoch; None = no congestion avoidance stage running
        self.cwnd_epoch = 0
        self.w_est = 0.0  # RFC 9438 4.3, bytes
        self.cwnd_prior = 0  # cwnd at the last congestion event
        self._after_timeout = True  # the next stage uses K = 0, W_max = cwnd_epoch (4.8)

    def w_cubic(self, t_s: float) -> float:
        """RFC 9438 4.2 eq. 1, in bytes: W_cubic(t) = C * (t - K)^3 + W_max."""
        d = t_s - self.k_s
        return C * d * d * d * self.smss + self.w_max

    def on_congestion(self, cwnd: int, flight: int) -> int:
        """A loss detected by ACKs (fast retransmit, SACK recovery): 4.7 then 4.6.  Returns
        the new ssthresh; the caller sets cwnd (RFC 6675 / PRR decide how it gets there)."""
        if self.fast_convergence and cwnd < self.w_max:
            self.w_max = int(cwnd * (1 + BETA_CUBIC) / 2)
        else:
            self.w_max = cwnd
        self.cwnd_prior = cwnd
        self.epoch_start_ns = None
        self._after_timeout = False
        return max(int(flight * BETA_CUBIC), 2 * self.smss)

    def on_timeout(self, cwnd: int, flight: int) -> int:
        """The retransmission timer expired (4.8): ssthresh as on a loss, and the first
        congestion avoidance stage afterwards starts with K = 0 at its own cwnd."""
        ssthresh = self.on_congestion(cwnd, flight)
        self._after_timeout = True
        return ssthresh

    def on_ack(self, cwnd: int, acked: int, now_ns: int) -> int:
        """One ACK of `acked` new bytes in congestion avoidance: the next cwnd (4.2-4.5)."""
        if self.epoch_start_ns is None:
            self._start_epoch(cwnd, now_ns)
        smss = self.smss
        t_s = (now_ns - self.epoch_start_ns) / _NS  # type: ignore[operator]
        # 4.3: the Reno-friendly estimate, alpha 1 once it is back at the window before the loss
        alpha = 1.0 if self.w_est >= self.cwnd_prior else ALPHA_CUBIC
        self.w_est += alpha * acked * smss / cwnd
        if self.w_cubic(t_s) < self.w_est:
            w_est = int(self.w_est)
            return w_est if w_est > cwnd else cwnd
        rtt = self.rtt
        srtt = rtt.srtt_ns if rtt is not None and rtt.srtt_ns is not None else 0
        target = self.w_cubic(t_s + srtt / _NS)
        if target < cwnd:
            target = cwnd
        elif target > 1.5 * cwnd:
            target = 1.5 * cwnd
        return cwnd + int((target - cwnd) * acked / cwnd)

    def _start_epoch(self, cwnd: int, now_ns: int) -> None:
        """The first ACK of a congestion avoidance stage (4.2; 4.8 after a timeout)."""
        self.epoch_start_ns = now_ns
        self.cwnd_epoch = cwnd
        self.w_est = float(cwnd)
        if self._after_timeout or self.w_max == 0:
            self.w_max = cwnd
            self.k_s = 0.0
            self.k_ns = 0
            self._after_timeout = False
        else:
            self.k_ns = k_ns(self.w_max, cwnd, self.smss)
            self.k_s = self.k_ns / _NS

    def snapshot(self) -> dict[str, object]:
        """What `!tcb` shows: W_max, K, the epoch's start and W_est (bytes, ns)."""
        return {"w_max": self.w_max, "k_ns": self.k_ns, "epoch_start_ns": self.epoch_start_ns,
                "cwnd_epoch": self.cwnd_epoch, "w_est": int(self.w_est), "cwnd_prior": self.cwnd_prior,
                "smss": self.smss, "after_timeout": self._after_timeout}


def curve_at(snap: dict, cwnd: int, now_ns: int) -> tuple[int, str]:
    """From a snapshot: W_cubic(t) now and the region cwnd grows in (RFC 9438 4.3-4.5) -
    "Reno-friendly" while W_cubic(t) < W_est, else "concave" below W_max, "convex" above."""
    d = (now_ns - snap["epoch_start_ns"]) / _NS - snap["k_ns"] / _NS
    w = int(C * d * d * d * snap["smss"] + snap["w_max"])
    if w < snap["w_est"]:
        return w, "Reno-friendly"
    return w, "concave" if cwnd < snap["w_max"] else "convex"
