"""Retransmission timeout estimator (RFC 6298) with Karn's backoff.

Karn's rule about *which* samples are valid lives in the connection (it
knows whether a timed segment was retransmitted, or echoes a timestamp);
this class only does the arithmetic, in integer nanoseconds."""

from __future__ import annotations

_MAX_BACKOFF = 30


class RttEstimator:
    __slots__ = ("srtt_ns", "rttvar_ns", "backoff", "samples", "_base_ns", "_min_ns", "_max_ns", "_g_ns", "_rto_ns")

    def __init__(self, initial_ns: int, min_ns: int, max_ns: int, granularity_ns: int) -> None:
        self.srtt_ns: int | None = None
        self.rttvar_ns: int | None = None
        self.backoff = 0  # number of doublings since the last valid sample (RFC 6298 5.5)
        self.samples = 0
        self._base_ns = initial_ns  # RTO before clamping and backoff (2.1)
        self._min_ns = min_ns
        self._max_ns = max_ns
        self._g_ns = granularity_ns
        self._rto_ns = self._compute_rto()

    def sample(self, rtt_ns: int) -> None:
        """Feed one valid measurement R (RFC 6298 2.2 / 2.3) and forget the backoff."""
        rtt_ns = max(rtt_ns, 0)
        if self.srtt_ns is None or self.rttvar_ns is None:
            self.srtt_ns = rtt_ns
            self.rttvar_ns = rtt_ns // 2
        else:
            # RTTVAR first, using the old SRTT; beta = 1/4, alpha = 1/8.
            self.rttvar_ns = (3 * self.rttvar_ns + abs(self.srtt_ns - rtt_ns)) // 4
            self.srtt_ns = (7 * self.srtt_ns + rtt_ns) // 8
        self._base_ns = self.srtt_ns + max(self._g_ns, 4 * self.rttvar_ns)
        self.backoff = 0
        self.samples += 1
        self._rto_ns = self._compute_rto()

    def back_off(self) -> None:
        """The retransmission timer expired: RTO = RTO * 2 (5.5)."""
        if self.backoff < _MAX_BACKOFF:
            self.backoff += 1
        self._rto_ns = self._compute_rto()

    @property
    def base_rto_ns(self) -> int:
        """RTO clamped to [min, max] without backoff."""
        return min(max(self._base_ns, self._min_ns), self._max_ns)

    @property
    def rto_ns(self) -> int:
        """The current RTO including exponential backoff, at most the maximum (2.4, 2.5)."""
        return self._rto_ns  # read on every ACK and send: kept up to date by sample() and back_off()

    def _compute_rto(self) -> int:
        return min(self.base_rto_ns << self.backoff, self._max_ns)
