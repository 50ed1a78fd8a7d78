"""Tunables of one TCP connection.

Defaults follow Windows' tcpip.sys where the RFCs leave a choice, because the
emulated machine is a Windows kernel:
  * minimum RTO 300 ms (Windows "MinRto"; RFC 6298 says 1 s, Linux uses 200 ms),
  * initial RTO 1 s (RFC 6298, Windows "InitialRto"),
  * 5 data retransmissions, then the connection is reset (TcpMaxDataRetransmissions),
  * 2 SYN retransmissions (TcpMaxConnectRetransmissions / "Max SYN Retransmissions"),
  * delayed ACK 200 ms or every 2nd segment (TcpAckFrequency = 2),
  * initial congestion window 10 segments (RFC 6928, Windows' default template),
  * congestion provider CUBIC (RFC 9438; Windows 10 1709 / Server 2019 and later,
    `netsh int tcp show supplemental`: "Congestion Control Provider : cubic"), and
    Proportional Rate Reduction in SACK recovery (RFC 6937; Windows 11 / Server 2022,
    `netsh int tcp show global`: "Proportional Rate Reduction : enabled").
TIME_WAIT lasts 2*MSL with MSL = 120 s as RFC 9293 says; tests shorten it.

Receive window auto-tuning, as Windows' "normal" level (MS Learn, "Description of
Windows TCP features" / `netsh int tcp set global autotuninglevel=normal`): the
receive buffer starts at 64 KiB and grows with the measured bandwidth-delay
product up to 16 MiB, which window scaling (RFC 7323, shift 8) lets us offer.
recv_buffer_max=None turns auto-tuning off (a fixed recv_buffer).
"""

from __future__ import annotations

from dataclasses import dataclass

from .congestion import WINDOWS_SLOW_START_ACK_LIMIT
from .errors import TcpConfigError

MS = 1_000_000  # nanoseconds
ETHERNET_MSS = 1460  # 1500-byte MTU less the IPv4 and TCP headers
SECOND = 1_000_000_000
MSL_NS = 120 * SECOND
MAX_WSCALE = 14  # RFC 7323 section 2.3
MAX_WINDOW = 0xFFFF << MAX_WSCALE
CONGESTION_PROVIDERS = ("cubic", "newreno")  # the lab's subset of netsh's congestionprovider values


def wscale_for_buffer(recv_buffer: int) -> int:
    """Smallest shift whose scaled 16-bit window covers the whole buffer."""
    shift = 0
    while (recv_buffer >> shift) > 0xFFFF and shift < MAX_WSCALE:
        shift += 1
    return shift


@dataclass(slots=True)
class TcpConfig:
    # Our MSS option (what we can receive); also caps the send MSS.  None: what the interface's
    # MTU carries (1460 over Ethernet IPv4) - the stack fills it in per connection.
    mss: int | None = None
    recv_buffer: int = 64 * 1024  # initial receive buffer in bytes = the window we offer at first
    recv_buffer_max: int | None = 0xFFFF << 8  # auto-tuning's ceiling (~16 MiB, shift 8); None = fixed
    window_scaling: bool = True  # offer RFC 7323 window scaling on SYN
    wscale: int | None = None  # shift we offer; None = smallest that covers the largest buffer
    nagle: bool = True  # RFC 896; the connection's `nodelay` property overrides
    # Hold a small segment only while a previous *small* segment is unacknowledged
    # (Minshall, as Linux does).  False gives classic RFC 896 behaviour, whose stall
    # behind a delayed ACK at the tail of every large send is the textbook lesson.
    nagle_minshall: bool = True
    delayed_ack_ns: int = 200 * MS  # 0 = acknowledge every segment at once
    delayed_ack_every_segments: int = 2  # ACK at least every Nth in-order data segment
    rto_initial_ns: int = 1 * SECOND
    rto_min_ns: int = 300 * MS
    rto_max_ns: int = 60 * SECOND
    clock_granularity_ns: int = 1 * MS  # G in RFC 6298
    max_retransmits: int = 5  # data retransmissions by timeout before Reset("timeout")
    syn_retries: int = 2  # SYN / SYN-ACK retransmissions before giving up
    time_wait_ns: int = 2 * MSL_NS
    sack: bool = True  # offer SACK-permitted; SACK blocks are generated for out-of-order data
    timestamps: bool = True  # offer RFC 7323 timestamps (RTTM and PAWS)
    fin_wait_2_timeout_ns: int | None = None  # None = wait for the peer's FIN forever (RFC)
    keepalive_idle_ns: int | None = None  # None = keep-alive off
    keepalive_interval_ns: int = 1 * SECOND
    keepalive_probes: int = 10
    initial_cwnd_segments: int = 10  # RFC 6928 IW10 (RFC 5681 allows 2-4)
    # SMSS one ACK may grow cwnd by in the first slow start (Windows' HyStart++: 8, congestion.py; RFC 5681: 1)
    slow_start_ack_limit: int = WINDOWS_SLOW_START_ACK_LIMIT
    # Windows' "congestionprovider" (netsh int tcp set supplemental): "cubic" (RFC 9438) or "newreno"
    congestion_provider: str = "cubic"
    # RFC 6937 PRR (with SSRB) paces sends in SACK recovery; False: RFC 6675's cwnd = ssthresh.
    # RFC 9937 (Dec 2025) obsoletes RFC 6937 (SSRB only on "safe" ACKs, CRB otherwise; RecoverFS
    # without bytes SACKed before recovery); the lab follows RFC 6937 (prr.py).
    prr: bool = True
    # RACK-TLP loss detection (RFC 8985, Windows 10 1709+ / Server 2019+: rack.py) when SACK is
    # negotiated; False keeps RFC 6675's DupThresh rules and the RTO as the only tail-loss answer.
    rack_tlp: bool = True
    challenge_ack: bool = True  # RFC 5961: only an exact-match RST resets, others get an ACK
    # Replies to unacceptable segments that carry no data (pure ACKs, RSTs) are
    # rate-limited, as Linux's tcp_invalid_ratelimit does: two ends answering each
    # other's stale duplicates (PAWS, TIME_WAIT) would otherwise feed an ACK storm.
    invalid_ack_interval_ns: int = 500 * MS

    @property
    def option_mss(self) -> int:
        """The MSS this configuration advertises (Ethernet's 1460 when left to the MTU)."""
        return self.mss if self.mss is not None else ETHERNET_MSS

    def __post_init__(self) -> None:
        if self.mss is not None and not 64 <= self.mss <= 65495:
            raise TcpConfigError(f"mss={self.mss} outside 64..65495")
        if not 1 <= self.recv_buffer <= MAX_WINDOW:
            raise TcpConfigError(f"recv_buffer={self.recv_buffer} outside 1..{MAX_WINDOW}")
        if self.recv_buffer_max is not None and not self.recv_buffer <= self.recv_buffer_max <= MAX_WINDOW:
            raise TcpConfigError(f"recv_buffer_max={self.recv_buffer_max} outside {self.recv_buffer}..{MAX_WINDOW}")
        if self.wscale is None:
            self.wscale = wscale_for_buffer(self.recv_buffer_max or self.recv_buffer)
        if not 0 <= self.wscale <= MAX_WSCALE:
            raise TcpConfigError(f"wscale={self.wscale} outside 0..{MAX_WSCALE}")
        if self.delayed_ack_ns < 0 or self.delayed_ack_every_segments < 1:
            raise TcpConfigError("delayed_ack_ns must be >= 0 and delayed_ack_every_segments >= 1")
        if not 0 < self.rto_min_ns <= self.rto_initial_ns <= self.rto_max_ns:
            raise TcpConfigError("need 0 < rto_min_ns <= rto_initial_ns <= rto_max_ns")
        if self.clock_granularity_ns < 0:
            raise TcpConfigError("clock_granularity_ns must be >= 0")
        if self.max_retransmits < 0 or self.syn_retries < 0:
            raise TcpConfigError("max_retransmits and syn_retries must be >= 0")
        if self.time_wait_ns < 0:
            raise TcpConfigError("time_wait_ns must be >= 0")
        if self.keepalive_idle_ns is not None and (
            self.keepalive_idle_ns <= 0 or self.keepalive_interval_ns <= 0 or self.keepalive_probes < 1
        ):
            raise TcpConfigError("keep-alive times must be > 0 and keepalive_probes >= 1")
        if self.initial_cwnd_segments < 1:
            raise TcpConfigError("initial_cwnd_segments must be >= 1")
        if self.slow_start_ack_limit < 1:
            raise TcpConfigError("slow_start_ack_limit must be >= 1")
        if self.congestion_provider not in CONGESTION_PROVIDERS:
            raise TcpConfigError(f"congestion_provider={self.congestion_provider!r}: one of {', '.join(CONGESTION_PROVIDERS)}")
        if self.fin_wait_2_timeout_ns is not None and self.fin_wait_2_timeout_ns <= 0:
            raise TcpConfigError("fin_wait_2_timeout_ns must be > 0 or None")
        if self.invalid_ack_interval_ns < 0:
            raise TcpConfigError("invalid_ack_interval_ns must be >= 0")

    @property
    def offered_wscale(self) -> int | None:
        """The window-scale option we put on our SYN, or None."""
        return self.wscale if self.window_scaling else None
