"""One TCP connection as a sans-IO state machine (RFC 9293 with RFC 6298,
5681, 6582, 7323, 1122, 5961, and RFC 2018 / 6675 SACK loss recovery).

Inputs: application calls, segments (on_segment) and time (on_timer).
Outputs: segments (poll_output), the next deadline (poll_at) and events
(drain_events).  Call poll_output after every input, including application
calls (send, close, read, abort); poll_at covers timers only, not output
that is ready now.  Call on_timer once the clock reaches poll_at().

Windows: TcpSegment.window is the raw 16-bit field both ways.  The core
scales what it receives by snd_wscale and chooses the field it sends itself;
the SYN's window is never scaled.  snd_wnd / rcv_wnd are in bytes.

Large sends: with `tso_size` set (the glue's LSO limit for the route), the send loop emits
one segment per large send - TcpSegment.segments MSS-sized segments the NIC will cut - where
it would have emitted that many in a row (Linux's TSO-sized skbs); see _emit_large.

Internally every sequence number is unwrapped (see seq.py): the send side
counts up from the ISS, the receive side from the IRS.  Only segments and
the introspection properties use 32-bit values.
"""

from __future__ import annotations

from typing import Callable, Literal

from .buffers import ReceiveBuffer, SendBuffer, slice_runs, slice_views
from .config import TcpConfig
from .congestion import NewReno, SackRecovery
from .cubic import Cubic
from .errors import TcpConfigError, TcpStateError
from .events import (
    Closed,
    DataAcked,
    DataReceived,
    Established,
    LossProbe,
    OutOfOrderDropped,
    PeerClosed,
    Reset,
    ResetReason,
    Retransmitted,
    StateChanged,
    TcpEvent,
)
from .rack import Rack, is_dsack
from .rtt import RttEstimator
from .segment import ACK, FIN, PSH, RST, SYN, TcpSegment, rst_for_unexpected
from .seq import SEQ_MASK, unwrap
from .states import (
    ABORT_SENDS_RST,
    CAN_RECEIVE,
    CAN_SEND,
    ON_CLOSE,
    ON_FIN_ACKED,
    ON_FIN_RECEIVED,
    TcpState,
)

S = TcpState
CAN_SEND_PROBE = frozenset((S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK))
DEFAULT_MSS = 536  # RFC 9293 3.7.1: assumed when the peer sends no MSS option
TIMESTAMP_OPTION_BYTES = 12  # NOP NOP kind len TSval TSecr, taken from each segment's payload
SACK_OPTION_BYTES = 4  # NOP NOP kind len, then 8 bytes per block (RFC 2018), also taken from the payload
SACK_BLOCK_BYTES = 8
_TS_UNIT_NS = 1_000_000  # the TSval clock ticks once per millisecond
_HALF = 1 << 31


class TcpConnection:
    __slots__ = (
        "config", "local_port", "remote_port", "iss", "_state", "_events", "_out", "_passive",
        # send side
        "_snd_una", "_snd_nxt", "_snd_max", "_snd_wnd", "_snd_wl1", "_snd_wl2", "_max_snd_wnd",
        "_sndbuf", "_fin_queued", "_close_requested", "_nodelay", "_small_end", "_minshall",
        # receive side
        "_irs", "_rcv_nxt", "_rcv_adv", "_rcvbuf", "_ooo_fin", "_peer_fin",
        "_rcv_space", "_rcv_space_max", "_tune_at", "_tune_seq", "_tune_read", "_bytes_read",
        # negotiated options
        "_snd_mss", "_max_payload", "_wscale_on", "_snd_wscale", "_rcv_wscale", "_ts_on", "_ts_recent", "_last_ack_sent",
        "_sack_on",
        # timers and their bookkeeping
        "_rexmit_at", "_delack_at", "_persist_at", "_tw_at", "_ka_at", "_rexmit_count", "_persist_backoff",
        "_persist_unanswered", "_probe_pending", "_probe_outstanding", "_ka_pending", "_ka_probes",
        "_ack_now", "_unacked_segs", "_invalid_ack_at", "_fast_rexmit", "_rtt_seq", "_rtt_start", "_rtt_karn", "_karn_tsval", "_syn_retransmitted",
        "_rtt", "_cc", "_sack", "_sack_busy", "_syn_jitter", "tso_size", "_rack", "_rack_at", "_rack_rto",
        "_sacked_before",
        # counters
        "segments_sent", "segments_received", "retransmissions", "fast_retransmits", "sack_retransmissions",
        "timeouts", "dup_acks",
        "bytes_acked", "bytes_received", "window_probes", "window_probes_received", "challenge_acks", "ooo_dropped",
    )

    def __init__(self, config: TcpConfig, local_port: int, remote_port: int, iss: int,
                 syn_jitter: Callable[[int], int] | None = None) -> None:
        for name, port in (("local_port", local_port), ("remote_port", remote_port)):
            if not 0 <= port <= 0xFFFF:
                raise TcpConfigError(f"{name}={port} is not a 16-bit port")
        if not 0 <= iss <= SEQ_MASK:
            raise TcpConfigError(f"iss={iss} is not a 32-bit sequence number")
        self.config = config
        self.local_port = local_port
        self.remote_port = remote_port
        self.iss = iss
        self._state = S.CLOSED
        self._events: list[TcpEvent] = []
        self._out: list[TcpSegment] = []  # resets and other replies computed during input
        self._passive = False

        self._snd_una = iss
        self._snd_nxt = iss
        self._snd_max = iss  # one past the highest sequence number ever sent
        self._snd_wnd = 0
        self._snd_wl1 = 0
        self._snd_wl2 = iss
        self._max_snd_wnd = 0
        self._sndbuf = SendBuffer(iss + 1)
        self._fin_queued = False  # our FIN sits at _sndbuf.end
        self._close_requested = False  # close() in SYN_RECEIVED: FIN once established
        self._nodelay = not config.nagle
        self._minshall = config.nagle_minshall
        self._small_end = 0  # end of the last sub-MSS segment sent (Minshall's Nagle)

        self._irs = 0
        self._rcv_nxt = 0
        self._rcv_adv = 0  # right edge of the window we advertised; never moves left
        self._rcvbuf = ReceiveBuffer(2 * (config.recv_buffer_max or config.recv_buffer))  # the window bounds held bytes
        self._ooo_fin: int | None = None  # FIN seen beyond a gap
        self._peer_fin = False
        # Receive window auto-tuning (see _autotune): the buffer's current size, its ceiling, and
        # the measurement epoch (start time, RCV.NXT and bytes read by the client at its start).
        self._rcv_space = config.recv_buffer
        self._rcv_space_max = config.recv_buffer_max or config.recv_buffer
        self._tune_at: int | None = None
        self._tune_seq = 0
        self._tune_read = 0
        self._bytes_read = 0

        self._snd_mss = DEFAULT_MSS
        self._max_payload = DEFAULT_MSS
        self._wscale_on = False
        self._snd_wscale = 0
        self._rcv_wscale = 0
        self._ts_on = False
        self._ts_recent = 0
        self._last_ack_sent = 0
        self._sack_on = False

        self._rexmit_at: int | None = None
        self._delack_at: int | None = None
        self._persist_at: int | None = None
        self._tw_at: int | None = None
        self._ka_at: int | None = None
        self._rexmit_count = 0  # consecutive timeouts for the current SND.UNA
        self._persist_backoff = 0
        self._persist_unanswered = 0
        self._probe_pending = False
        self._probe_outstanding = False
        self._ka_pending = False
        self._ka_probes = 0
        self._ack_now = False
        self._invalid_ack_at: int | None = None  # last reply to an unacceptable dataless segment
        self._unacked_segs = 0  # in-order data segments received since our last ACK
        self._fast_rexmit = False
        self._rtt_seq: int | None = None  # the timed segment ends here (one per RTT, to the nanosecond)
        self._rtt_start = 0
        # Karn: a retransmission cancelled the timing and no valid sample came since; with
        # timestamps the echoed TSval still times the segment that was acknowledged (RFC 7323 4.1).
        self._rtt_karn = False
        self._karn_tsval = 0  # our TSval at the latest retransmission
        self._syn_retransmitted = False
        self._rtt = RttEstimator(config.rto_initial_ns, config.rto_min_ns, config.rto_max_ns,
                                 config.clock_granularity_ns)
        self._cc = NewReno(DEFAULT_MSS, config.initial_cwnd_segments, iss, config.slow_start_ack_limit,
                           self._new_cubic())
        self._sack: SackRecovery | None = None  # the same object as _cc once SACK is negotiated
        # SACK is on and the scoreboard holds ranges or a SACK recovery runs: the one test
        # that keeps the SACK work off the path of ordinary ACKs.
        self._sack_busy = False
        self._rack: Rack | None = None  # RACK-TLP loss detection (RFC 8985), with SACK only: _rack_start
        self._rack_rto = False  # after a timeout RACK marked (RFC 8985 6.3): resend what it marked lost
        self._sacked_before = 0  # the scoreboard's SACKed bytes before the ACK _take_sack last took
        self._rack_at: int | None = None  # its reordering timer or PTO, whichever is due first
        # Extra ns added to each SYN / SYN-ACK retransmission timeout (given the RTO): the glue
        # draws it from the world's seed so that a burst of handshakes does not retry in
        # lock-step waves.  None: the plain RFC 6298 timer.
        self._syn_jitter = syn_jitter
        # The glue's answer to "how many payload bytes may one large send carry on this route
        # now" (the NIC's LSO limit; 0: no LSO).  Set, the send loop emits one segment per
        # large send instead of one per MSS - see _large_send.  None: one segment per MSS.
        self.tso_size: Callable[[], int] | None = None

        self.segments_sent = 0
        self.segments_received = 0
        self.retransmissions = 0
        self.fast_retransmits = 0
        self.sack_retransmissions = 0  # holes resent because the scoreboard said so (RFC 6675 NextSeg)
        self.timeouts = 0
        self.dup_acks = 0
        self.bytes_acked = 0
        self.bytes_received = 0
        self.window_probes = 0
        self.window_probes_received = 0  # segments at RCV.NXT into our closed window (ACK taken, data not)
        self.challenge_acks = 0
        self.ooo_dropped = 0

    # ------------------------------------------------------------------
    # application side
    # ------------------------------------------------------------------
    def connect(self, now_ns: int) -> None:
        """Active open: CLOSED -> SYN_SENT.  The SYN leaves with the next poll_output."""
        if self._state is not S.CLOSED or self._snd_max != self.iss:
            raise TcpStateError("connect", self._state, "a connection object opens once")
        self._set_state(S.SYN_SENT)

    def open_passive(self, syn: TcpSegment, now_ns: int) -> None:
        """LISTEN -> SYN_RECEIVED for a SYN that a listener accepted; the SYN-ACK
        leaves with the next poll_output.  TcpListener calls this."""
        if self._state is not S.CLOSED or self._snd_max != self.iss or not syn.flags & SYN:
            raise TcpStateError("open_passive", self._state, "needs a fresh connection and a SYN")
        self._passive = True
        self._state = S.LISTEN
        self._take_peer_syn(syn)
        self._snd_wnd = syn.window  # windows in SYN segments are never scaled
        self._snd_wl1 = self._irs
        self._max_snd_wnd = syn.window
        self._set_state(S.SYN_RECEIVED)
        self._arm_keepalive(now_ns)

    def open_from_cookie(self, ack: TcpSegment, peer_mss: int, now_ns: int) -> None:
        """The peer's ACK of a SYN-ACK the listener sent without state (a SYN cookie, see
        syncookie.py): rebuild SYN_RECEIVED from the ACK (its SEQ - 1 is the peer's ISN, the
        cookie - our ISS - gave `peer_mss`) and take the ACK, which establishes the
        connection.  The cookie SYN-ACK offered no window scaling, SACK or timestamps."""
        syn = TcpSegment(self.remote_port, self.local_port, (ack.seq - 1) & SEQ_MASK, 0, SYN, ack.window,
                         mss=peer_mss)
        self.open_passive(syn, now_ns)
        self._snd_nxt = self._snd_max = self.iss + 1  # the SYN-ACK is out already
        self.segments_sent += 1
        self.on_segment(ack, now_ns)

    def send(self, data: memoryview | bytes | bytearray, token: object = None) -> None:
        """Queue `data` by reference.  DataAcked(token) follows once all of it is acknowledged."""
        if self._state not in CAN_SEND or self._close_requested:
            raise TcpStateError("send", self._state)
        view = data if isinstance(data, memoryview) else memoryview(data)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        if not len(view) and not len(self._sndbuf):
            if token is not None:
                self._events.append(DataAcked(token))
            return
        self._sndbuf.append(view, token)

    def read(self, max_bytes: int) -> list[memoryview]:
        """Take up to `max_bytes` in-order bytes (zero copy); may queue a window update."""
        rcvbuf = self._rcvbuf
        before = rcvbuf.ready_bytes
        views = rcvbuf.read(max_bytes)
        if views:
            self._bytes_read += before - rcvbuf.ready_bytes
            if self._state in CAN_RECEIVE:
                self._maybe_window_update()
        return views

    def recv_into(self, buffer: memoryview | bytearray) -> int:
        """Copy in-order bytes into `buffer`; returns how many were copied."""
        target = buffer if isinstance(buffer, memoryview) else memoryview(buffer)
        n = self._rcvbuf.read_into(target)
        if n:
            self._bytes_read += n
            if self._state in CAN_RECEIVE:
                self._maybe_window_update()
        return n

    def recv_available(self) -> int:
        return self._rcvbuf.ready_bytes

    @property
    def at_eof(self) -> bool:
        """The peer's FIN arrived and every byte before it has been read."""
        return self._peer_fin and not self._rcvbuf.ready_bytes

    def close(self, now_ns: int) -> None:
        """Graceful close: FIN after the queued data.  Calling it again is harmless."""
        state = self._state
        if state is S.SYN_SENT or state is S.LISTEN:
            self._set_state(S.CLOSED)  # RFC 9293 3.10.4: delete the TCB
            return
        if state is S.SYN_RECEIVED:
            self._close_requested = True
            return
        nxt = ON_CLOSE.get(state)
        if nxt is not None:
            self._fin_queued = True
            self._set_state(nxt)

    def abort(self, now_ns: int) -> None:
        """Send a RST (when synchronized) and go to CLOSED at once."""
        state = self._state
        if state is S.CLOSED:
            return
        if state in ABORT_SENDS_RST:
            self._out.append(self._rst(self._snd_max))
        self._reset("aborted")

    @property
    def nodelay(self) -> bool:
        return self._nodelay

    @nodelay.setter
    def nodelay(self, value: bool) -> None:
        self._nodelay = bool(value)

    # ------------------------------------------------------------------
    # network side
    # ------------------------------------------------------------------
    def on_segment(self, seg: TcpSegment, now_ns: int) -> None:
        self.segments_received += 1
        _SEGMENT_HANDLERS[self._state](self, seg, now_ns)
        if self._ka_at is not None:
            self._arm_keepalive(now_ns)

    def poll_at(self) -> int | None:
        """Earliest timer deadline in ns, or None when no timer runs."""
        best = self._rexmit_at
        deadline = self._delack_at
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        deadline = self._persist_at
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        deadline = self._tw_at
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        deadline = self._ka_at
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        deadline = self._rack_at
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        return best

    def on_timer(self, now_ns: int) -> None:
        if self._tw_at is not None and now_ns >= self._tw_at:
            self._tw_at = None
            if self._state is S.FIN_WAIT_2:
                self._reset("timeout")
            else:
                self._set_state(S.CLOSED)
            return
        if self._rack_at is not None and now_ns >= self._rack_at:
            self._on_rack_timer(now_ns)  # before the RTO: a probe due with it re-arms it (RFC 8985 7.3)
        if self._rexmit_at is not None and now_ns >= self._rexmit_at:
            self._on_retransmit_timeout(now_ns)
            if self._state is S.CLOSED:
                return
        if self._persist_at is not None and now_ns >= self._persist_at:
            self._on_persist_timeout(now_ns)
            if self._state is S.CLOSED:
                return
        if self._delack_at is not None and now_ns >= self._delack_at:
            self._delack_at = None
            self._ack_now = True
        if self._ka_at is not None and now_ns >= self._ka_at:
            self._on_keepalive_timeout(now_ns)

    def poll_output(self, now_ns: int) -> list[TcpSegment]:
        out = self._out
        if out:
            self._out = []
        else:
            out = []
        state = self._state
        if state is S.CLOSED or state is S.LISTEN:
            return out
        if state is S.SYN_SENT or state is S.SYN_RECEIVED:
            if self._snd_nxt == self.iss:
                self._emit_syn(now_ns, out)
            elif self._ack_now and state is S.SYN_RECEIVED:
                out.append(self._make(now_ns, ACK, self._snd_max))
            self._ack_now = False
            return out
        if state is not S.TIME_WAIT:
            if self._probe_pending:
                self._send_window_probe(now_ns, out)
            if self._fast_rexmit:
                self._fast_rexmit = False
                self._retransmit_head(now_ns, out)
            if self._sack_busy and (self._cc.in_recovery or self._rack_rto):
                self._send_sack_recovery(now_ns, out)
            else:
                self._send_data(now_ns, out)
            if self._ka_pending:
                self._ka_pending = False
                out.append(self._make(now_ns, ACK, self._snd_una - 1))  # RFC 1122 4.2.3.6 garbage-less probe
        if self._ack_now:
            # SEQ is the highest sequence sent, not the rewound retransmission point:
            # the peer may already hold everything up to it, and would find an older
            # SEQ unacceptable and drop the ACK (two rewound ends would ACK each
            # other forever without learning anything).
            out.append(self._make(now_ns, ACK, self._snd_max))
        return out

    def drain_events(self) -> list[TcpEvent]:
        events = self._events
        self._events = []
        return events

    @property
    def has_events(self) -> bool:
        """Events are waiting for drain_events() (a cheap test before an empty drain)."""
        return bool(self._events)

    def peek(self, max_bytes: int) -> list[tuple[int, memoryview]]:
        """Up to `max_bytes` in-order bytes without consuming them (a receive indication's offer), as
        runs (location, view): where each view's bytes live (the physical address the glue gave with
        the segment, TcpSegment.payload_at; negative for a copy)."""
        return self._rcvbuf.peek(max_bytes)

    # ------------------------------------------------------------------
    # introspection (32-bit wire values where the field is a sequence number)
    # ------------------------------------------------------------------
    @property
    def state(self) -> TcpState:
        return self._state

    @property
    def snd_una(self) -> int:
        return self._snd_una & SEQ_MASK

    @property
    def snd_nxt(self) -> int:
        return self._snd_nxt & SEQ_MASK

    @property
    def snd_max(self) -> int:
        return self._snd_max & SEQ_MASK

    @property
    def snd_wnd(self) -> int:
        return self._snd_wnd

    @property
    def irs(self) -> int:
        return self._irs & SEQ_MASK

    @property
    def rcv_nxt(self) -> int:
        return self._rcv_nxt & SEQ_MASK

    @property
    def rcv_wnd(self) -> int:
        """Bytes the peer may still send inside the window we advertised."""
        return max(self._rcv_adv - self._rcv_nxt, 0)

    @property
    def recv_buffer(self) -> int:
        """The receive buffer now (auto-tuning grows it from config.recv_buffer)."""
        return self._rcv_space

    @property
    def cwnd(self) -> int:
        return self._cc.cwnd

    @property
    def ssthresh(self) -> int:
        return self._cc.ssthresh

    @property
    def in_recovery(self) -> bool:
        return self._cc.in_recovery

    @property
    def srtt_ns(self) -> int | None:
        return self._rtt.srtt_ns

    @property
    def rttvar_ns(self) -> int | None:
        return self._rtt.rttvar_ns

    @property
    def rto_ns(self) -> int:
        return self._rtt.rto_ns

    @property
    def mss(self) -> int:
        """Effective send MSS: min(peer's MSS option or 536, ours)."""
        return self._snd_mss

    @property
    def max_payload(self) -> int:
        """Payload bytes per full segment (MSS less the timestamp option)."""
        return self._max_payload

    @property
    def snd_wscale(self) -> int:
        """Shift applied to windows the peer sends (its option); 0 when scaling is off."""
        return self._snd_wscale

    @property
    def rcv_wscale(self) -> int:
        """Shift applied to windows we send (our option); 0 when scaling is off."""
        return self._rcv_wscale

    @property
    def timestamps_enabled(self) -> bool:
        return self._ts_on

    @property
    def sack_enabled(self) -> bool:
        return self._sack_on

    @property
    def send_queued(self) -> int:
        """Bytes queued by send() and not yet acknowledged."""
        return len(self._sndbuf)

    def snapshot(self) -> dict[str, object]:
        """Everything a `!tcb` command shows, as plain values."""
        return {
            "state": self._state.value,
            "local_port": self.local_port,
            "remote_port": self.remote_port,
            "iss": self.iss,
            "irs": self.irs,
            "snd_una": self.snd_una,
            "snd_nxt": self.snd_nxt,
            "snd_max": self.snd_max,
            "snd_wnd": self._snd_wnd,
            "rcv_nxt": self.rcv_nxt,
            "rcv_wnd": self.rcv_wnd,
            "recv_buffer": self._rcv_space,
            "cwnd": self._cc.cwnd,
            "ssthresh": self._cc.ssthresh,
            "in_recovery": self._cc.in_recovery,
            "congestion": self._congestion_summary(),
            "srtt_ns": self._rtt.srtt_ns,
            "rttvar_ns": self._rtt.rttvar_ns,
            "rto_ns": self._rtt.rto_ns,
            "mss": self._snd_mss,
            "snd_wscale": self._snd_wscale,
            "rcv_wscale": self._rcv_wscale,
            "timestamps": self._ts_on,
            "sack": self._sack_on,
            "nodelay": self._nodelay,
            "send_queued": len(self._sndbuf),
            "recv_available": self._rcvbuf.ready_bytes,
            "ooo_bytes": self._rcvbuf.ooo_bytes,
            "segments_sent": self.segments_sent,
            "segments_received": self.segments_received,
            "retransmissions": self.retransmissions,
            "fast_retransmits": self.fast_retransmits,
            "sack_retransmissions": self.sack_retransmissions,
            "sack_scoreboard": self._scoreboard_summary(),
            "rack": self._rack_summary(),
            "timeouts": self.timeouts,
            "dup_acks": self.dup_acks,
            "bytes_acked": self.bytes_acked,
            "bytes_received": self.bytes_received,
            "window_probes": self.window_probes,
            "window_probes_received": self.window_probes_received,
            "challenge_acks": self.challenge_acks,
            "ooo_dropped": self.ooo_dropped,
            "timers": {
                "retransmit": self._rexmit_at,
                "delayed_ack": self._delack_at,
                "persist": self._persist_at,
                "time_wait": self._tw_at,  # also the FIN_WAIT_2 timeout, when configured
                "keepalive": self._ka_at,
                "tlp": self._rack.pto_at if self._rack is not None else None,  # RFC 8985 PTO
                "rack_reorder": self._rack.reo_at if self._rack is not None else None,
            },
        }

    def _congestion_summary(self) -> dict[str, object]:
        """The provider, CUBIC's state (RFC 9438) and PRR's counters during a recovery (RFC 6937)."""
        cc = self._cc
        out: dict[str, object] = {"provider": cc.provider}
        if cc.cubic is not None:
            out["cubic"] = cc.cubic.snapshot()
        sack = self._sack
        if sack is not None and sack.prr is not None and sack.in_recovery:
            out["prr"] = sack.prr.snapshot()
        return out

    def _rack_summary(self) -> dict[str, object] | None:
        """RACK-TLP's state for `!tcb` (sequence numbers as 32-bit wire values), or None without it."""
        rack = self._rack
        if rack is None:
            return None
        out = rack.snapshot()
        out["end_seq"] = rack.end_seq & SEQ_MASK
        if rack.tlp_end_seq is not None:
            out["tlp_end_seq"] = rack.tlp_end_seq & SEQ_MASK
        return out

    def _scoreboard_summary(self) -> dict[str, object] | None:
        sack = self._sack
        if sack is None:
            return None
        board = sack.scoreboard
        return {"blocks": len(board.ranges), "sacked_bytes": board.sacked_bytes,
                "pipe": board.pipe(self._snd_una, self._snd_max), "in_sack_recovery": sack.in_recovery}

    def __repr__(self) -> str:
        return (f"<TcpConnection {self.local_port}->{self.remote_port} {self._state.value} "
                f"una={self.snd_una} nxt={self.snd_nxt} rcv_nxt={self.rcv_nxt}>")

    # ------------------------------------------------------------------
    # segment arrival, one handler per group of states
    # ------------------------------------------------------------------
    def _seg_closed(self, seg: TcpSegment, now: int) -> None:
        rst = rst_for_unexpected(seg)
        if rst is not None:
            self._out.append(rst)

    def _seg_syn_sent(self, seg: TcpSegment, now: int) -> None:
        flags = seg.flags
        ack = 0
        if flags & ACK:
            ack = unwrap(seg.ack, self._snd_una)
            if ack <= self.iss or ack > self._snd_max:
                if not flags & RST:
                    self._out.append(TcpSegment(self.local_port, self.remote_port, seg.ack, 0, RST, 0))
                return
        if flags & RST:
            if flags & ACK:  # acceptable ACK checked above
                self._reset("refused")
            return
        if not flags & SYN:
            return
        self._take_peer_syn(seg)
        if flags & ACK:
            self._snd_wnd = seg.window
            self._max_snd_wnd = seg.window
            self._snd_wl1 = self._irs
            self._snd_wl2 = ack
            self._ack_new_data(seg, ack, now)
            self._set_state(S.ESTABLISHED)
            self._ack_now = True
            self._arm_keepalive(now)
            if seg.payload or flags & FIN:
                self._seg_text_and_fin(seg, self._irs, seg.payload_len, now)
        else:
            # Simultaneous open (RFC 9293 figure 7): answer with SYN-ACK.
            self._snd_wnd = seg.window
            self._max_snd_wnd = seg.window
            self._snd_wl1 = self._irs
            self._snd_nxt = self.iss
            self._snd_max = self.iss
            self._set_state(S.SYN_RECEIVED)

    def _seg_synchronized(self, seg: TcpSegment, now: int) -> None:
        flags = seg.flags
        state = self._state
        rcv_nxt = self._rcv_nxt
        seq = rcv_nxt + ((seg.seq - rcv_nxt + _HALF) & SEQ_MASK) - _HALF  # unwrap(seg.seq, rcv_nxt), inlined

        if state is S.SYN_RECEIVED and flags & SYN and seq == self._irs and not flags & RST:
            self._seg_syn_in_syn_received(seg, now)
            return

        # 1. Sequence number acceptability (RFC 9293 3.10.7.4 table).
        plen = seg.payload_len
        seg_len = plen + (flags & SYN) // SYN + (flags & FIN)
        rcv_wnd = self._rcv_adv - rcv_nxt
        probe = False
        if seg_len == 0:
            ok = seq == rcv_nxt if rcv_wnd <= 0 else rcv_nxt <= seq < rcv_nxt + rcv_wnd
        elif rcv_wnd <= 0:
            # A lone FIN at RCV.NXT is taken even into a zero window, as Linux does.
            ok = seq == rcv_nxt and plen == 0 and flags & (FIN | SYN) == FIN
            # A window probe: its data cannot be taken, but its ACK must be ("special
            # allowance should be made to accept valid ACKs, URGs, and RSTs", RFC 9293
            # 3.10.7.4).  Dropping the whole segment deadlocks two ends whose windows
            # are both closed while each waits for the other's acknowledgment.
            if not ok and seq == rcv_nxt and not flags & SYN:
                ok = probe = True
        else:
            last = seq + seg_len - 1
            ok = rcv_nxt <= seq < rcv_nxt + rcv_wnd or rcv_nxt <= last < rcv_nxt + rcv_wnd
        timestamps = seg.timestamps
        if ok and timestamps is not None and self._ts_on and not flags & RST \
                and (timestamps[0] - self._ts_recent) & SEQ_MASK >= _HALF:  # seq_diff(TSval, TS.Recent) < 0
            ok = False  # PAWS (RFC 7323 5.3)
        if not ok:
            if not flags & RST:
                self._ack_invalid(seg_len, now)
                if state is S.TIME_WAIT and flags & FIN:
                    self._tw_at = now + self.config.time_wait_ns  # retransmitted FIN
            return

        # 2. RST.  RFC 5961 3.2: only an exact match resets; in-window gets a challenge ACK.
        # In TIME_WAIT a RST is ignored (RFC 1337: no TIME-WAIT assassination), so
        # the connection keeps absorbing old duplicates for the full 2*MSL.
        if flags & RST:
            if state is S.TIME_WAIT:
                return
            if seq == rcv_nxt or not self.config.challenge_ack:
                self._reset("refused" if state is S.SYN_RECEIVED and not self._passive else "peer_reset")
            else:
                self._challenge_ack(0, now)
            return

        if timestamps is not None and self._ts_on and seq <= self._last_ack_sent:
            self._ts_recent = timestamps[0]  # RFC 7323 4.3

        # 4. SYN in a synchronized state: challenge ACK (RFC 5961 4.2).
        if flags & SYN:
            self._challenge_ack(seg_len, now)
            return

        # 5. ACK.
        if not flags & ACK:
            return
        snd_una = self._snd_una
        ack = snd_una + ((seg.ack - snd_una + _HALF) & SEQ_MASK) - _HALF  # unwrap(seg.ack, snd_una), inlined
        if state is S.SYN_RECEIVED:
            if not self._snd_una < ack <= self._snd_max:
                self._out.append(TcpSegment(self.local_port, self.remote_port, seg.ack, 0, RST, 0))
                return
            self._complete_passive_handshake(seg, seq, ack, now)
        if not self._seg_ack(seg, seq, ack, plen, now):
            return
        state = self._state
        if state is S.TIME_WAIT:
            if flags & FIN:
                self._ack_now = True
                self._tw_at = now + self.config.time_wait_ns
            return
        if probe:  # the data (and a FIN behind it) stays out; the ACK tells the window
            self.window_probes_received += 1
            self._ack_now = True
            return
        # 7 and 8. Text and FIN.
        if plen or flags & FIN or self._ooo_fin is not None:
            self._seg_text_and_fin(seg, seq, plen, now)

    def _seg_syn_in_syn_received(self, seg: TcpSegment, now: int) -> None:
        """A SYN with SEQ = IRS while we wait for our SYN's ACK: the peer's
        retransmitted SYN (resend our SYN-ACK), or in a simultaneous open
        the peer's SYN-ACK (figure 7 line 6), which completes the handshake."""
        if not seg.flags & ACK:
            self._snd_nxt = self.iss
            return
        ack = unwrap(seg.ack, self._snd_una)
        if not self._snd_una < ack <= self._snd_max:
            self._out.append(TcpSegment(self.local_port, self.remote_port, seg.ack, 0, RST, 0))
            return
        self._snd_wnd = seg.window  # a SYN's window is never scaled
        self._snd_wl1 = self._irs
        self._snd_wl2 = ack
        self._max_snd_wnd = max(self._max_snd_wnd, seg.window)
        self._ack_new_data(seg, ack, now)
        self._become_established(now)

    def _complete_passive_handshake(self, seg: TcpSegment, seq: int, ack: int, now: int) -> None:
        wnd = seg.window << self._snd_wscale
        self._snd_wnd = wnd
        self._snd_wl1 = seq
        self._snd_wl2 = ack
        self._max_snd_wnd = max(self._max_snd_wnd, wnd)
        self._become_established(now)

    def _become_established(self, now: int) -> None:
        self._set_state(S.ESTABLISHED)
        if self._close_requested:
            self._close_requested = False
            self._fin_queued = True
            self._set_state(S.FIN_WAIT_1)
        self._arm_keepalive(now)

    def _seg_ack(self, seg: TcpSegment, seq: int, ack: int, plen: int, now: int) -> bool:
        """Step 5 of segment arrival in synchronized states.  False = drop the segment."""
        snd_una = self._snd_una
        if ack > self._snd_max:
            self._ack_invalid(plen, now)  # acknowledges something not yet sent
            return False
        if ack < snd_una - self._max_snd_wnd and self.config.challenge_ack:
            self._challenge_ack(plen, now)  # RFC 5961 5.2: too old to be plausible
            return False
        self._persist_unanswered = 0
        wnd = seg.window << self._snd_wscale
        if ack > snd_una:
            self._ack_new_data(seg, ack, now)
        elif (ack == snd_una and plen == 0 and not seg.flags & (SYN | FIN) and wnd == self._snd_wnd
              and self._snd_max > snd_una):
            self.dup_acks += 1  # RFC 5681 section 2 definition of a duplicate ACK
            if self._rack is None and self._cc.on_dup_ack(ack, self._snd_max - snd_una, self._snd_max):
                self._fast_rexmit = True
                self._sack_busy = self._sack_on
        if seg.sack_blocks or self._sack_busy:
            self._take_sack(seg.sack_blocks, snd_una)
            if self._rack is None:
                self._prr_ack()
        if self._rack is not None:
            self._rack_on_ack(seg, snd_una, ack, now)
            if self._sack_busy:
                self._prr_ack()  # after RACK marked this ACK's losses (and maybe started recovery)
        # Window update, guarded against old segments (RFC 9293 3.10.7.4).  An ACK that
        # advances SND.UNA is newer than any that came before, whatever its SEQ (a peer
        # that went back to retransmit sends old SEQs): as Linux's tcp_may_update_window.
        # Otherwise the window stays relative to the old ACK and slides past the edge the
        # peer offered.  An ACK below SND.UNA never updates it (RFC 9293: SND.UNA =< SEG.ACK):
        # its window is relative to that older ACK, and a reordered pure ACK (whose SEQ can
        # exceed that of later retransmissions) would otherwise move the edge past the offer.
        if ack > snd_una or ack == snd_una and (
                self._snd_wl1 < seq or (self._snd_wl1 == seq and self._snd_wl2 <= ack)):
            old = self._snd_wnd
            self._snd_wnd = wnd
            self._snd_wl1 = seq
            self._snd_wl2 = ack
            if wnd > self._max_snd_wnd:
                self._max_snd_wnd = wnd
            if wnd and not old:
                self._persist_at = None
                self._persist_backoff = 0
        if self._probe_outstanding:
            self._probe_outstanding = False
            if self._snd_una < self._snd_nxt:
                # The probe byte was not taken: forget it, it leaves again as new data.
                self._snd_nxt = self._snd_max = self._snd_una
                self._rtt_seq = None
        if self._fin_queued and self._snd_una > self._sndbuf.end:
            nxt = ON_FIN_ACKED.get(self._state)
            if nxt is S.TIME_WAIT:
                self._enter_time_wait(now)
            elif nxt is S.CLOSED:
                self._set_state(S.CLOSED)
                return False
            elif nxt is not None:
                self._set_state(nxt)
                if nxt is S.FIN_WAIT_2 and self.config.fin_wait_2_timeout_ns is not None:
                    # Like Linux's tcp_fin_timeout: do not wait forever for a vanished peer.
                    self._tw_at = now + self.config.fin_wait_2_timeout_ns
        return True

    def _take_sack(self, blocks: tuple[tuple[int, int], ...], una_before: int | None = None) -> None:
        """Update the scoreboard from an ACK (after SND.UNA moved) and enter SACK
        recovery when IsLost(SND.UNA) says so before DupThresh duplicates came
        (RFC 6675 5 step 3b).  `una_before`: SND.UNA before this ACK (for PRR)."""
        sack = self._sack
        if sack is None:
            return  # SACK was not negotiated: blocks are ignored
        board = sack.scoreboard
        una = self._snd_una
        self._sacked_before = sacked_before = board.sacked_bytes
        board.take(blocks, una, self._snd_max)
        if not sack.in_recovery and board.is_lost(una) \
                and sack.enter_recovery(una, self._snd_max - una, self._snd_max):
            self._fast_rexmit = True
            self._prr_count_trigger(una if una_before is None else una_before, sacked_before)
        self._sack_busy = bool(board.ranges) or sack.in_recovery or self._rack_rto

    def _new_cubic(self) -> Cubic | None:
        """The "cubic" congestion provider's state (RFC 9438), on the connection's RTT estimator."""
        return Cubic(DEFAULT_MSS, self._rtt) if self.config.congestion_provider == "cubic" else None

    def _prr_count_trigger(self, una_before: int, sacked_before: int) -> None:
        """The ACK that started recovery by IsLost delivered data too: PRR counts it, as on the
        DupThresh path (whose baseline is taken before the ACK's blocks) and as Linux / ns-3 do."""
        prr = self._sack.prr if self._sack is not None else None
        if prr is not None:
            prr.rebase(una_before, sacked_before)

    def _prr_ack(self) -> None:
        """RFC 6937 on each ACK of a SACK recovery: cwnd = pipe + sndcnt (prr.py)."""
        sack = self._sack
        if sack is not None and sack.prr is not None and sack.in_recovery:
            sack.prr_ack(self._snd_una, sack.scoreboard.pipe(self._snd_una, self._snd_max))

    def _ack_new_data(self, seg: TcpSegment, ack: int, now: int) -> None:
        """SND.UNA < ack <= SND.MAX: advance, complete tokens, sample RTT, grow cwnd."""
        snd_una = self._snd_una
        acked = ack - snd_una
        sndbuf = self._sndbuf
        data_lo = snd_una if snd_una > self.iss else self.iss + 1
        data_hi = ack if ack < sndbuf.end else sndbuf.end
        if data_hi > data_lo:
            self.bytes_acked += data_hi - data_lo
            for token in sndbuf.ack_to(data_hi):
                self._events.append(DataAcked(token))
        self._snd_una = ack
        if self._snd_nxt < ack:
            self._snd_nxt = ack
        # RTT measurement: the one timed segment, to the nanosecond (RFC 6298, Karn).  The
        # timestamp clock ticks in milliseconds - coarser than a LAN's RTT, where every echo
        # would read 0 - so an echoed TSval is used only where Karn leaves no timed segment:
        # after a retransmission, at least one tick (as Linux does).
        timestamps = seg.timestamps
        if self._rtt_seq is not None and ack >= self._rtt_seq:
            self._rtt.sample(now - self._rtt_start)
            self._rtt_seq = None
            self._rtt_karn = False
        elif self._rtt_karn and self._ts_on and timestamps is not None:
            # Only an echo of a segment sent since the retransmission measures the path: an
            # older TSecr (a receiver that found our resent segment old and re-ACKed with its
            # TS.Recent) would count the whole recovery as one round trip and pin the RTO at
            # its maximum.
            ticks = (self._ts_clock(now) - timestamps[1]) & SEQ_MASK
            if ticks < _HALF and (timestamps[1] - self._karn_tsval) & SEQ_MASK < _HALF:
                self._rtt.sample(max(ticks, 1) * _TS_UNIT_NS)
                self._rtt_karn = False
        self._rexmit_count = 0
        self._rexmit_at = None if ack >= self._snd_max else now + self._rtt.rto_ns  # RFC 6298 5.2 / 5.3
        if self._state is S.SYN_SENT or self._state is S.SYN_RECEIVED:
            return  # the SYN's ACK does not grow the initial window
        if snd_una == self.iss:
            acked -= 1  # the SYN is not data
        if self._cc.on_new_ack(acked, ack, self._snd_max - ack, now):
            self._fast_rexmit = True  # NewReno partial ACK

    def _seg_text_and_fin(self, seg: TcpSegment, seq: int, plen: int, now: int) -> None:
        """Steps 7 and 8: queue payload (`plen` bytes, in order or held), then the FIN."""
        flags = seg.flags
        if flags & SYN:
            seq += 1
        state = self._state
        if plen and state in CAN_RECEIVE:
            self._receive_payload(seg, seq, plen, now)
        if state not in ON_FIN_RECEIVED:
            return  # the peer's FIN was already processed
        if flags & FIN:
            fin_seq = seq + plen
            if fin_seq == self._rcv_nxt:
                self._receive_fin(now)
                return
            if self._rcv_nxt < fin_seq <= self._rcv_adv:
                self._ooo_fin = fin_seq  # wait for the gap before it
            self._ack_now = True
        if self._ooo_fin is not None and self._ooo_fin == self._rcv_nxt:
            self._receive_fin(now)

    def _receive_payload(self, seg: TcpSegment, seq: int, plen: int, now: int) -> None:
        rcv_nxt = self._rcv_nxt
        end = seq + plen
        lo = seq if seq > rcv_nxt else rcv_nxt
        right = self._rcv_adv
        hi = end if end < right else right
        if hi <= lo:
            self._ack_now = True  # nothing new inside the window
            return
        views = seg.payload
        payload_at = seg.payload_at
        at = payload_at[1] if payload_at is not None and payload_at[0] is views else None
        if lo != seq or hi != end:
            if at is None:
                views = tuple(slice_views(views, lo - seq, hi - seq))
            else:
                views, at = slice_runs(views, at, lo - seq, hi - seq)
            self._ack_now = True
        rcvbuf = self._rcvbuf
        if lo != rcv_nxt:
            if not rcvbuf.insert(lo, views, at):
                self.ooo_dropped += 1
                self._events.append(OutOfOrderDropped(lo & SEQ_MASK, hi - lo))
            self._ack_now = True  # duplicate ACK tells the sender about the gap
            return
        rcvbuf.push(views, at, hi - lo)
        new_nxt = hi
        if rcvbuf.has_ooo:
            new_nxt = rcvbuf.take_contiguous(hi)
            self._ack_now = True  # a hole was filled (RFC 5681 4.2)
        nbytes = new_nxt - rcv_nxt
        self._rcv_nxt = new_nxt
        self.bytes_received += nbytes
        self._events.append(DataReceived(nbytes, bool(seg.flags & PSH)))
        if self._rcv_space < self._rcv_space_max:
            self._autotune(now)
        # Delayed ACK (RFC 1122 4.2.3.2): every Nth segment, else after the timer.
        self._unacked_segs += seg.segments
        config = self.config
        if self._unacked_segs >= config.delayed_ack_every_segments or not config.delayed_ack_ns:
            self._ack_now = True
        elif self._delack_at is None:
            self._delack_at = now + config.delayed_ack_ns

    def _autotune(self, now: int) -> None:
        """Receive window auto-tuning, at most once per round trip (srtt).  Two signals grow the
        buffer, never past recv_buffer_max (the most our window scale can express):
          * the measured bandwidth-delay product: more than half the buffer arrived within one
            RTT, so the window limits the sender - the buffer grows to twice what arrived
            (Dynamic Right-Sizing);
          * a client slower than the path but still reading: unread data passed half the
            buffer and the client took data during the RTT - the buffer doubles, so the
            window stays open instead of swinging between a few KiB and zero;
          * pressure within a round trip: a reading client's unread data passed 3/4 of the
            buffer (a burst indicated in one DPC) - the buffer doubles at once.  (What the
            adapter cannot lend as held NBLs, the glue copies out: NDIS_RECEIVE_FLAGS_RESOURCES.)
        A client that reads nothing never grows it: its data fills the window, then the window
        is zero.  Windows' "normal" auto-tuning level starts at 64 KiB and grows to 16 MiB
        (MS Learn, "Description of Windows TCP features"); the scaled window is RFC 7323's."""
        start = self._tune_at
        if start is None:
            self._tune_at, self._tune_seq, self._tune_read = now, self._rcv_nxt, self._bytes_read
            return
        rtt = self._rtt.srtt_ns or self.config.rto_initial_ns
        if now - start < rtt:
            # Within the round trip, only pressure grows it: a reading client's unread data past
            # 3/4 of the buffer (a whole window can arrive in one receive DPC, before the reader
            # runs) doubles it at once, so the window does not close under a client that reads.
            if self._bytes_read > self._tune_read and 4 * self._rcvbuf.ready_bytes > 3 * self._rcv_space:
                self._rcv_space = min(2 * self._rcv_space, self._rcv_space_max)
            return
        arrived = self._rcv_nxt - self._tune_seq
        space = self._rcv_space
        if self._bytes_read > self._tune_read:
            if 2 * arrived > space:
                space = 2 * arrived
            if 2 * self._rcvbuf.ready_bytes > self._rcv_space:
                space = max(space, 2 * self._rcv_space)
            self._rcv_space = min(max(space, self._rcv_space), self._rcv_space_max)
        self._tune_at, self._tune_seq, self._tune_read = now, self._rcv_nxt, self._bytes_read

    def _receive_fin(self, now: int) -> None:
        self._rcv_nxt += 1
        self._ooo_fin = None
        self._peer_fin = True
        self._ack_now = True
        self._events.append(PeerClosed())
        nxt = ON_FIN_RECEIVED[self._state]
        if nxt is S.TIME_WAIT:
            self._enter_time_wait(now)
        else:
            self._set_state(nxt)

    # ------------------------------------------------------------------
    # output
    # ------------------------------------------------------------------
    def _emit_syn(self, now: int, out: list[TcpSegment]) -> None:
        config = self.config
        passive = self._state is S.SYN_RECEIVED
        flags = SYN | ACK if passive else SYN
        window = min(self._rcv_space, 0xFFFF)  # never scaled on a SYN
        if passive:
            # Options in a SYN-ACK only answer options the peer offered (RFC 7323 1.3, RFC 2018).
            wscale = config.wscale if self._wscale_on else None
            timestamps = (self._ts_clock(now), self._ts_recent) if self._ts_on else None
            sack_permitted = self._sack_on
        else:
            wscale = config.offered_wscale
            timestamps = (self._ts_clock(now), 0) if config.timestamps else None
            sack_permitted = config.sack
        seg = TcpSegment(self.local_port, self.remote_port, self.iss, self._rcv_nxt & SEQ_MASK if passive else 0,
                         flags, window, mss=config.option_mss, wscale=wscale, sack_permitted=sack_permitted,
                         timestamps=timestamps)
        out.append(seg)
        self.segments_sent += 1
        self._last_ack_sent = self._rcv_nxt
        if self._snd_max > self.iss:
            self.retransmissions += 1
            self._start_karn(now)
            self._events.append(Retransmitted(self.iss, 1, "rto"))
        else:
            self._rtt_seq = self.iss + 1
            self._rtt_start = now
        self._snd_nxt = self._snd_max = self.iss + 1
        if self._rexmit_at is None:
            rto = self._rtt.rto_ns
            self._rexmit_at = now + rto + (self._syn_jitter(rto) if self._syn_jitter is not None else 0)

    def _send_data(self, now: int, out: list[TcpSegment], cwnd: int | None = None) -> None:
        """Send what the windows, Nagle and sender-side SWS avoidance allow.  `cwnd`
        overrides the congestion window (SACK recovery passes what pipe leaves)."""
        sndbuf = self._sndbuf
        data_end = sndbuf.end
        fin = self._fin_queued
        max_payload = self._payload_limit()
        if cwnd is None:
            cwnd = self._cc.cwnd
        first_out = len(out)  # segments this loop adds after its first share that one's ACK, window and options
        # Large sends (TSO): only at full-sized segments (no SACK blocks trim them) and when no data
        # segment precedes this loop in `out` - the glue would have joined the two (_emit_large).
        tso = self.tso_size if max_payload == self._max_payload and not (out and out[-1].payload) else None
        lso_max = -1  # asked of the glue once per loop, and only when a large send could form
        while True:
            seq = self._snd_nxt
            una = self._snd_una
            gap = credit = 0
            if seq < self._snd_max and self._sack_busy:
                seq, gap, credit = self._skip_sacked(seq, una)
            wnd = self._snd_wnd
            if cwnd + credit < wnd:  # SACKed bytes are out of the network, not out of the peer's window
                wnd = cwnd + credit
            if wnd < 1 and seq == una and seq < self._snd_max:
                wnd = 1  # a timeout retransmission goes out even into a zero window
            remaining = data_end - seq
            if remaining > 0:
                usable = una + wnd - seq
                n = remaining if remaining < max_payload else max_payload
                if 0 < gap < n:
                    n = gap
                if usable < n:
                    n = usable
                if n <= 0:
                    break
                if n < max_payload and seq >= self._snd_max and seq > una:
                    # New sub-MSS data while data is in flight: wait for an ACK.
                    # Window-limited: sender SWS avoidance (RFC 1122 4.2.3.4) unless
                    # it is at least half the largest window seen; otherwise Nagle
                    # (RFC 896) unless nodelay or this is the last data before FIN.
                    if n < remaining:
                        if n < self._max_snd_wnd // 2:
                            break
                    elif not (self._nodelay or fin) and (not self._minshall or self._small_end > una):
                        # Minshall's refinement: hold only while a *small* segment is
                        # unacknowledged, so the tail of one large send is not stalled
                        # behind the peer's delayed ACK.
                        break
                if tso is not None and n == max_payload < remaining and seq >= self._snd_max:
                    if lso_max < 0:
                        lso_max = tso()
                    if lso_max >= 2 * max_payload and self._emit_large(
                            now, out, seq, remaining, usable, fin, max_payload, lso_max // max_payload,
                            len(out) > first_out):
                        continue
                flags = ACK
                if n == remaining:
                    flags = ACK | PSH | FIN if fin else ACK | PSH
                self._emit(now, out, seq, n, flags, max_payload, len(out) > first_out)
                tso = None  # the glue may join what follows to this segment (a retransmission going back)
            elif fin and seq == data_end:
                self._emit(now, out, seq, 0, ACK | FIN, max_payload)
                break
            else:
                break
        if (self._snd_wnd == 0 and self._persist_at is None and self._rexmit_at is None
                and self._snd_nxt == self._snd_una and data_end > self._snd_nxt):
            self._persist_at = now + self._persist_interval()

    def _emit(self, now: int, out: list[TcpSegment], seq: int, n: int, flags: int, max_payload: int,
              follows: bool = False) -> None:
        """One segment of new or rewound data; `max_payload` is _payload_limit() (the caller's).
        `follows`: out[-1] was made by the same send loop, at the same time, with nothing received
        since - this segment's ACK, window, timestamps and SACK blocks are that one's (what _make
        would compute again; its bookkeeping is already done)."""
        payload = self._sndbuf.slice(seq, n) if n else ()
        prev_max = self._snd_max
        if follows:
            prev = out[-1]
            out.append(TcpSegment(self.local_port, self.remote_port, seq & SEQ_MASK, prev.ack, flags, prev.window,
                                  None, None, False, prev.timestamps, prev.sack_blocks, payload))
            self.segments_sent += 1
        else:
            out.append(self._make(now, flags, seq, payload))
        end = seq + n + (flags & FIN)
        if seq < self._snd_max:
            self.retransmissions += 1
            self._start_karn(now)
            self._events.append(Retransmitted(seq & SEQ_MASK, end - seq, "rto"))
        elif self._rtt_seq is None:
            self._rtt_seq = end
            self._rtt_start = now
        self._snd_nxt = end
        if end > self._snd_max:
            self._snd_max = end
        if 0 < n < max_payload and end > self._small_end:
            self._small_end = end
        if self._rexmit_at is None:
            self._rexmit_at = now + self._rtt.rto_ns
        if self._rack is not None:
            self._rack_sent(seq, end, now, prev_max)

    def _emit_large(self, now: int, out: list[TcpSegment], seq: int, remaining: int, usable: int, fin: bool,
                    mss: int, slots: int, follows: bool) -> bool:
        """One segment for what the per-MSS loop would send next as one large send (Linux's
        TSO-sized skb, tcp_tso_segs): new data at `seq`, whose first MSS is full and unflagged.
        It carries exactly the segments that loop would emit and the glue would have joined
        into one LSO send (at most `slots` of `mss` bytes, the last one may be short): full
        segments while the windows hold them, then the tail the loop would send (Nagle, Minshall
        and sender SWS decide as there), PSH/FIN as on the last of them.  Its `segments` says how
        many; the NIC cuts the same frames.  Every count and timer is what those segments would
        have set: the RTT times the first, _small_end is the tail's end.  False (nothing sent)
        when only one segment would go."""
        avail = remaining if remaining < usable else usable
        count = avail // mss
        if count > slots:
            count = slots
        n = count * mss
        flags = ACK
        if n == remaining:
            flags = ACK | PSH | FIN if fin else ACK | PSH
        elif count < slots:
            tail = avail - n  # less than an MSS: what the loop's next iteration would size
            if tail > 0 and (tail >= self._max_snd_wnd // 2 if tail < remaining - n else
                             self._nodelay or fin or (self._minshall and self._small_end <= self._snd_una)):
                if tail == remaining - n:
                    flags = ACK | PSH | FIN if fin else ACK | PSH
                n += tail
                count += 1
        if count < 2:
            return False
        payload = self._sndbuf.slice(seq, n)
        if follows:
            prev = out[-1]
            seg = TcpSegment(self.local_port, self.remote_port, seq & SEQ_MASK, prev.ack, flags, prev.window,
                             None, None, False, prev.timestamps, prev.sack_blocks, payload, count)
            self.segments_sent += count
        else:
            seg = self._make(now, flags, seq, payload)
            seg.segments = count
            self.segments_sent += count - 1
        out.append(seg)
        end = seq + n + (flags & FIN)
        if self._rtt_seq is None:
            self._rtt_seq = seq + mss  # the first of its segments is the one timed
            self._rtt_start = now
        self._snd_nxt = end
        if end > self._snd_max:
            self._snd_max = end
        if n % mss and end > self._small_end:
            self._small_end = end
        if self._rexmit_at is None:
            self._rexmit_at = now + self._rtt.rto_ns
        if self._rack is not None:
            self._rack_sent(seq, end, now, seq)
        return True

    def _skip_sacked(self, seq: int, una: int) -> tuple[int, int, int]:
        """Going back after a timeout with a scoreboard: the first unSACKed byte at or
        after `seq` (SND.NXT moves there), the bytes before the next SACKed range (0 when
        none follows), and the SACKed bytes between SND.UNA and it, which are not in
        flight and so do not count against the window."""
        assert self._sack is not None
        board = self._sack.scoreboard
        seq, next_sacked = board.first_unsacked(seq)
        self._snd_nxt = seq
        gap = next_sacked - seq if next_sacked is not None else 0
        return seq, gap, board.sacked_between(una, seq)

    def _retransmit_head(self, now: int, out: list[TcpSegment]) -> None:
        """Fast retransmit / NewReno partial ACK: resend the first unacknowledged
        segment regardless of cwnd (RFC 5681 3.2 step 3, RFC 6582 3.2 step 3),
        stopping short of data the peer SACKed."""
        seq = self._snd_una
        n = self._snd_max - seq
        if n <= 0:
            return
        if self._sack_busy:
            assert self._sack is not None
            next_sacked = self._sack.scoreboard.first_unsacked(seq)[1]
            if next_sacked is not None:
                n = next_sacked - seq
        self._resend(now, out, seq, n, "fast")

    def _send_sack_recovery(self, now: int, out: list[TcpSegment]) -> None:
        """RFC 6675 5 (C): while cwnd - pipe >= 1 SMSS, send what NextSeg() picks:
        lost holes first (rule 1), then new data (rule 2), then, only when no new data
        can go, holes not yet deemed lost (rule 3)."""
        sack = self._sack
        assert sack is not None
        board = sack.scoreboard
        smss = self._max_payload
        una = self._snd_una
        room = sack.cwnd - board.pipe(una, self._snd_max)
        new_data_tried = False
        while room >= smss:
            hole = board.next_seg(una, not new_data_tried)
            if hole is None:
                if new_data_tried:
                    break
                before = self._snd_max
                self._send_data(now, out, self._snd_nxt - una + room)
                room -= self._snd_max - before
                self._prr_sent(self._snd_max - before)
                new_data_tried = True  # rule 3 applies only when rule 2 sent nothing
                if self._snd_max > before:
                    break
                continue
            sent = self._resend(now, out, hole[0], hole[1], "sack")
            if not sent:
                break
            room -= sent  # RFC 6675 (C.4)

    def _prr_sent(self, n: int) -> None:
        """RFC 6937: prr_out counts what a recovery sends, retransmitted or new."""
        sack = self._sack
        if sack is not None and sack.prr is not None and sack.in_recovery:
            sack.prr.on_send(n)

    def _resend(self, now: int, out: list[TcpSegment], seq: int, n: int,
                reason: Literal["fast", "sack", "tlp", "rto"]) -> int:
        """Retransmit up to `n` bytes (one segment) at `seq` < SND.MAX regardless of
        cwnd; returns the sequence space it covered."""
        data_end = self._sndbuf.end
        n = min(n, data_end - seq, self._payload_limit())
        if n < 0:
            n = 0
        flags = ACK
        if self._fin_queued and seq + n == data_end and self._snd_max > data_end:
            flags |= FIN
        if n == 0 and not flags & FIN:
            return 0
        payload = self._sndbuf.slice(seq, n) if n else ()
        out.append(self._make(now, flags, seq, payload))
        end = seq + n + (flags & FIN)
        self.retransmissions += 1
        if self._rack is not None and self._rack.on_retransmit(seq, end, now) and reason != "tlp" and reason != "rto":
            reason = "rack"  # RACK marked it lost (RFC 8985 6.2), whichever rule picked it
        elif reason == "fast":
            self.fast_retransmits += 1
        elif reason == "sack":
            self.sack_retransmissions += 1
        self._start_karn(now)
        self._events.append(Retransmitted(seq & SEQ_MASK, end - seq, reason))  # type: ignore[arg-type]
        if self._snd_nxt < end:
            self._snd_nxt = end
        sack = self._sack
        if sack is not None and reason != "tlp" and end > sack.scoreboard.high_rxt:  # (a timeout's head too)
            sack.scoreboard.high_rxt = end  # RFC 6675 (C.2)
        self._prr_sent(end - seq)
        return end - seq

    def _send_window_probe(self, now: int, out: list[TcpSegment]) -> None:
        """Persist timer fired: one byte beyond the closed window (RFC 9293 3.8.6.1)."""
        self._probe_pending = False
        seq = self._snd_nxt
        if seq != self._snd_una or self._sndbuf.end <= seq:
            return
        out.append(self._make(now, ACK, seq, self._sndbuf.slice(seq, 1)))
        self.window_probes += 1
        self._probe_outstanding = True
        self._snd_nxt = seq + 1
        if seq + 1 > self._snd_max:
            self._snd_max = seq + 1

    def _sack_limit(self) -> int:
        return 3 if self._ts_on else 4  # what fits in 40 option bytes next to the timestamps

    def _payload_limit(self) -> int:
        """Payload bytes a data segment may carry now: the MSS less the timestamp option (fixed
        per connection) and the SACK blocks the next segment will carry (while data is out of
        order), so that no segment outgrows the MTU (RFC 2018, RFC 6691)."""
        if not (self._sack_on and self._rcvbuf.has_ooo):
            return self._max_payload
        blocks = min(len(self._rcvbuf.ooo_ranges()), self._sack_limit())
        return max(self._max_payload - SACK_OPTION_BYTES - SACK_BLOCK_BYTES * blocks, 1)

    def _make(self, now: int, flags: int, seq: int, payload: tuple[memoryview, ...] = ()) -> TcpSegment:
        rcv_nxt = self._rcv_nxt
        timestamps = (self._ts_clock(now), self._ts_recent) if self._ts_on else None
        sack_blocks: tuple[tuple[int, int], ...] = ()
        if self._sack_on and self._rcvbuf.has_ooo:
            sack_blocks = tuple((s & SEQ_MASK, e & SEQ_MASK) for s, e in self._rcvbuf.sack_ranges(self._sack_limit()))
        seg = TcpSegment(self.local_port, self.remote_port, seq & SEQ_MASK, rcv_nxt & SEQ_MASK, flags,
                         self._window_field(), None, None, False, timestamps, sack_blocks, payload)
        self._last_ack_sent = rcv_nxt
        self._ack_now = False
        self._delack_at = None
        self._unacked_segs = 0
        self.segments_sent += 1
        return seg

    def _rst(self, seq: int) -> TcpSegment:
        self.segments_sent += 1
        return TcpSegment(self.local_port, self.remote_port, seq & SEQ_MASK, 0, RST, 0)

    def _window_field(self) -> int:
        """The 16-bit window to send.  Receiver SWS avoidance (RFC 1122 4.2.3.3):
        the right edge moves only by min(buffer/2, MSS) or more, and never left."""
        config = self.config
        shift = self._rcv_wscale
        rcv_nxt = self._rcv_nxt
        adv = self._rcv_adv
        space = self._rcv_space
        edge = rcv_nxt + space - self._rcvbuf.ready_bytes
        if edge - adv < min(space // 2, config.option_mss):
            edge = adv
        wnd = edge - rcv_nxt
        if wnd <= 0:
            return 0
        cap = 0xFFFF << shift
        if wnd > cap:
            wnd = cap
        field = (wnd + (1 << shift) - 1) >> shift  # round up so the edge never retreats
        if field > 0xFFFF:
            field = 0xFFFF
        new_edge = rcv_nxt + (field << shift)
        if new_edge > adv:
            self._rcv_adv = new_edge
        return field

    def _maybe_window_update(self) -> None:
        """After a read: announce the reopened window when it at least doubles
        and passes the SWS threshold."""
        config = self.config
        advertised = self._rcv_adv - self._rcv_nxt
        space = self._rcv_space
        gain = self._rcv_nxt + space - self._rcvbuf.ready_bytes - self._rcv_adv
        if gain >= min(space // 2, config.option_mss) and gain >= advertised:
            self._ack_now = True

    def _challenge_ack(self, seg_len: int, now: int) -> None:
        self.challenge_acks += 1
        self._ack_invalid(seg_len, now)

    def _ack_invalid(self, seg_len: int, now: int) -> None:
        """Answer an unacceptable segment with an ACK; at most one per
        invalid_ack_interval_ns when the segment held no data, SYN or FIN."""
        if seg_len == 0:
            last = self._invalid_ack_at
            if last is not None and now - last < self.config.invalid_ack_interval_ns:
                return
            self._invalid_ack_at = now
        self._ack_now = True

    # ------------------------------------------------------------------
    # timers
    # ------------------------------------------------------------------
    def _on_retransmit_timeout(self, now: int) -> None:
        state = self._state
        if self._snd_una >= self._snd_max:
            self._rexmit_at = None
            return
        synchronizing = state is S.SYN_SENT or state is S.SYN_RECEIVED
        limit = self.config.syn_retries if synchronizing else self.config.max_retransmits
        if self._rexmit_count >= limit:
            if state in ABORT_SENDS_RST:
                self._out.append(self._rst(self._snd_max))
            self._reset("timeout")
            return
        self._rexmit_count += 1
        self.timeouts += 1
        self._rtt.back_off()
        if synchronizing:
            self._syn_retransmitted = True
            self._snd_nxt = self.iss
        else:
            self._cc.on_rto(self._snd_max - self._snd_una, self._snd_max)
            sack = self._sack
            if self._rack is not None and self._rexmit_count == 1:
                self._rack_on_rto(now)  # RFC 8985 6.3: resend what RACK marks lost, not everything
            elif sack is not None:
                self._rack_rto = False
                # The first timeout keeps the scoreboard, so going back skips SACKed data
                # (RFC 6675 5.1).  A second one for the same SND.UNA drops it: SACKs are
                # advisory and the receiver may have reneged (RFC 2018 section 8), so
                # everything unacknowledged goes out again.
                if self._rexmit_count > 1:
                    sack.scoreboard.clear()
                self._sack_busy = bool(sack.scoreboard.ranges)
            if not self._rack_rto:
                self._snd_nxt = self._snd_una  # go back: resend from the first unacknowledged byte
                self._fast_rexmit = False
                if self._rack is not None:
                    self._rack_go_back()
        self._rtt_seq = None
        rto = self._rtt.rto_ns
        if synchronizing and self._syn_jitter is not None:
            rto += self._syn_jitter(rto)
        self._rexmit_at = now + rto

    def _persist_interval(self) -> int:
        return min(self._rtt.base_rto_ns << self._persist_backoff, self.config.rto_max_ns)

    def _on_persist_timeout(self, now: int) -> None:
        self._persist_at = None
        if self._snd_wnd or self._sndbuf.end <= self._snd_una:
            return
        if self._persist_unanswered > self.config.max_retransmits:
            self._out.append(self._rst(self._snd_max))
            self._reset("timeout")
            return
        if self._probe_outstanding:  # the previous probe got no answer: send it again
            self._probe_outstanding = False
            self._snd_nxt = self._snd_max = self._snd_una
        self._persist_unanswered += 1
        self._probe_pending = True
        if self._persist_backoff < 30:
            self._persist_backoff += 1
        self._persist_at = now + self._persist_interval()

    def _arm_keepalive(self, now: int) -> None:
        idle = self.config.keepalive_idle_ns
        if idle is not None and self._state in (S.ESTABLISHED, S.CLOSE_WAIT, S.SYN_RECEIVED):
            self._ka_at = now + idle
            self._ka_probes = 0
        else:
            self._ka_at = None

    def _on_keepalive_timeout(self, now: int) -> None:
        config = self.config
        if self._state not in (S.ESTABLISHED, S.CLOSE_WAIT) or config.keepalive_idle_ns is None:
            self._ka_at = None
            return
        if self._snd_una < self._snd_max:  # data in flight: the retransmission timer watches
            self._ka_at = now + config.keepalive_idle_ns
            return
        if self._ka_probes >= config.keepalive_probes:
            self._out.append(self._rst(self._snd_max))
            self._reset("keepalive_timeout")
            return
        self._ka_probes += 1
        self._ka_pending = True
        self._ka_at = now + config.keepalive_interval_ns

    # ------------------------------------------------------------------
    # RACK-TLP (RFC 8985; the state machine is rack.py, these feed it and act on its answers)
    # ------------------------------------------------------------------
    def _rack_start(self) -> None:
        """SACK was negotiated: RACK-TLP detects losses (RFC 8985 needs SACK; without it the
        connection keeps NewReno's duplicate ACKs).  RACK, not DupThresh, says what is lost."""
        assert self._sack is not None
        self._rack = Rack(self._max_payload)
        self._sack.scoreboard.set_rack_frontier(0)
        self._sack.scoreboard.rack = self._rack

    def _rack_sent(self, seq: int, end: int, now: int, prev_max: int) -> None:
        """[seq, end) left (new above `prev_max`, the old SND.MAX; resent below it).  New data
        that is not a probe restarts the PTO unless a recovery runs or SACKed data is out (7.2)."""
        rack = self._rack
        assert rack is not None
        if seq < prev_max:
            rack.on_retransmit(seq, end if end < prev_max else prev_max, now)
        if end > prev_max:
            rack.on_send(seq if seq > prev_max else prev_max, end, now)
            self._tlp_arm(now)

    def _tlp_arm(self, now: int) -> None:
        """Start or restart the PTO (RFC 8985 7.2), or stop it when it must not run."""
        rack = self._rack
        assert rack is not None and self._sack is not None
        una = self._snd_una
        if una >= self._snd_max or una <= self._cc.recover or self._sack.scoreboard.ranges:
            rack.pto_at = None  # nothing out, fast or RTO recovery, or data delivered out of order
        else:
            rack.arm_pto(now, self._rtt.srtt_ns, self._snd_max - una <= self._max_payload, self._rexmit_at)
        self._rack_at = rack.next_deadline()

    def _rack_on_ack(self, seg: TcpSegment, old_una: int, ack: int, now: int) -> None:
        """RFC 8985 6.2 (RACK) and 7.4 (TLP) for an acceptable ACK, after the scoreboard took it."""
        rack = self._rack
        sack = self._sack
        assert rack is not None and sack is not None
        blocks = seg.sack_blocks
        if ack == old_una and not blocks and rack.reo_at is None and rack.tlp_end_seq is None:
            return  # nothing delivered, no timer to revisit
        board = sack.scoreboard
        if self._rack_rto and ack > self._cc.recover:
            self._rack_rto = False  # everything sent before the timeout is acknowledged
        dsack = is_dsack(blocks, ack) if blocks else None
        timestamps = seg.timestamps
        echo_ms = (timestamps[1] - self.iss) & SEQ_MASK if timestamps is not None and self._ts_on else None
        lost = rack.on_ack(ack, board.ranges, dsack is not None, now, self._snd_nxt, ack <= self._cc.recover,
                           self._rtt.srtt_ns, echo_ms)
        if rack.tlp_end_seq is not None and rack.tlp_on_ack(ack, dsack, ack == old_una and not blocks):
            self._events.append(LossProbe(ack & SEQ_MASK, True, True))
            if not lost and not sack.in_recovery:  # else the recovery RACK starts (or runs) reduces cwnd
                self._tlp_cwnd_reduction(self._snd_max - old_una)
        if lost:
            self._rack_mark_lost(old_una)
        if ack > old_una or (rack.pto_at is not None and board.ranges):
            self._tlp_arm(now)  # restart on new data ACKed; stop once data is delivered out of order
        self._rack_at = rack.next_deadline()

    def _tlp_cwnd_reduction(self, flight: int) -> None:
        """The probe repaired a loss: "Invoke congestion control to reduce cwnd" (RFC 8985 7.4.2), "as it
        would any other loss" - ssthresh from the FlightSize the loss happened in (RFC 5681 eq. 4, CUBIC's
        beta) and cwnd = ssthresh at once, without a recovery episode (there is no hole left to repair):
        Linux's one-shot CWR in tcp_process_tlp_ack."""
        sack = self._sack
        assert sack is not None
        sack.ssthresh = sack.cwnd = sack.loss_ssthresh(flight)

    def _rack_mark_lost(self, una_before: int | None = None) -> None:
        """RACK marked segments lost: they are the scoreboard's lost holes (IsLost; NextSeg resends
        the records flagged LOST, a lost retransmission included), and fast recovery starts (RFC 8985
        6.2 Step 5, 9.3)."""
        rack = self._rack
        sack = self._sack
        assert rack is not None and sack is not None
        board = sack.scoreboard
        board.set_rack_frontier(rack.lost_high)
        una = self._snd_una
        if not sack.in_recovery and sack.enter_recovery(una, self._snd_max - una, self._snd_max):
            self._fast_rexmit = True  # the first lost segment goes out at once, whatever cwnd says
            if una_before is not None:  # on an ACK, which PRR then counts as delivered (RFC 6937)
                self._prr_count_trigger(una_before, self._sacked_before)
        self._sack_busy = True

    def _on_rack_timer(self, now: int) -> None:
        """The RACK reordering timer (6.3) or the PTO (7.3) fired."""
        rack = self._rack
        assert rack is not None
        if rack.reo_at is not None and now >= rack.reo_at and rack.on_reo_timeout(now):
            self._rack_mark_lost()
        if rack.pto_at is not None and now >= rack.pto_at:
            rack.pto_at = None
            if self._snd_una < self._snd_max and rack.tlp_end_seq is None and self._state in CAN_SEND_PROBE:
                self._send_tlp_probe(now)
            elif self._snd_una < self._snd_max and rack.records:
                # RFC 8985 7.3: "regardless of whether a loss probe was sent, the sender MUST re-arm the
                # RTO timer, not the PTO timer, if FlightSize is not empty" (a probe is out: no second
                # one).  One RTO after the head segment left, as Linux's tcp_rearm_rto.
                head = rack.records[0][2] + self._rtt.rto_ns
                self._rexmit_at = head if head > now else now
        self._rack_at = rack.next_deadline()

    def _send_tlp_probe(self, now: int) -> None:
        """TLP_send_probe() (RFC 8985 7.3): the next new segment if the peer's window takes it
        (whatever cwnd says), else the highest segment sent again; then the RTO, not the PTO,
        watches the probe."""
        rack = self._rack
        assert rack is not None
        out = self._out
        data_end = self._sndbuf.end
        snd_max = self._snd_max
        room = self._snd_una + self._snd_wnd - snd_max
        limit = self._payload_limit()
        if self._snd_nxt == snd_max and data_end > snd_max and room > 0:
            n = min(data_end - snd_max, limit, room)
            flags = ACK
            if n == data_end - snd_max:
                flags = ACK | PSH | FIN if self._fin_queued else ACK | PSH
            # The probe is the segment timed: the stall it ends is no round trip of the older one (its
            # ACK may have been lost, and without a resend Karn's rule would not discard that sample).
            self._rtt_seq = None
            self._emit(now, out, snd_max, n, flags, limit)
            retransmission = False
        else:
            top = data_end if snd_max > data_end else snd_max  # a FIN rides on the last data
            start = top - limit if top - limit > self._snd_una else self._snd_una
            self._resend(now, out, start, top - start, "tlp")
            retransmission = True
        rack.on_probe_sent(self._snd_max, retransmission)
        self._events.append(LossProbe(rack.tlp_end_seq & SEQ_MASK if rack.tlp_end_seq is not None else 0,
                                      retransmission))
        self._rexmit_at = now + self._rtt.rto_ns

    def _rack_on_rto(self, now: int) -> None:
        """The first timeout for SND.UNA (RFC 8985 6.3, RACK_mark_losses_on_RTO): RACK marks lost the
        segment at SND.UNA and those sent more than RACK.rtt + reo_wnd ago; the head goes out now, the
        other lost ones as cwnd (1 SMSS, growing in slow start) - pipe allows, through NextSeg, until
        everything sent before the timeout is acknowledged.  Segments in flight that RACK does not
        deem lost are not sent again (Linux's tcp_timeout_mark_lost)."""
        rack = self._rack
        sack = self._sack
        assert rack is not None and sack is not None
        una = self._snd_una
        rack.on_rto(now, una)
        board = sack.scoreboard
        board.set_rack_frontier(rack.lost_high)
        self._rack_rto = self._sack_busy = True
        self._fast_rexmit = False
        self._rack_at = None
        next_sacked = board.first_unsacked(una)[1]
        self._resend(now, self._out, una, (next_sacked if next_sacked is not None else self._snd_max) - una, "rto")

    def _rack_go_back(self) -> None:
        """A repeated timeout: SACKs may have been reneged (the scoreboard is cleared), everything
        unacknowledged goes out again from SND.UNA, so RACK forgets its marks and timers."""
        rack = self._rack
        assert rack is not None and self._sack is not None
        rack.on_go_back()
        self._sack.scoreboard.set_rack_frontier(0)
        self._rack_at = None

    # ------------------------------------------------------------------
    # state bookkeeping
    # ------------------------------------------------------------------
    def _take_peer_syn(self, syn: TcpSegment) -> None:
        """Record the peer's ISN and negotiate options from its SYN."""
        config = self.config
        self._irs = syn.seq
        self._rcv_nxt = syn.seq + 1
        self._rcv_adv = self._rcv_nxt + min(self._rcv_space, 0xFFFF)
        self._last_ack_sent = self._rcv_nxt
        peer_mss = syn.mss if syn.mss else DEFAULT_MSS
        self._snd_mss = max(min(peer_mss, config.option_mss), 1)
        self._wscale_on = config.window_scaling and syn.wscale is not None
        if self._wscale_on:
            self._snd_wscale = min(syn.wscale, 14)  # RFC 7323 2.3: larger values mean 14
            self._rcv_wscale = config.wscale or 0
        else:
            self._snd_wscale = self._rcv_wscale = 0
            self._rcv_space_max = min(self._rcv_space_max, max(self._rcv_space, 0xFFFF))  # unscaled: 64 KiB
        self._sack_on = config.sack and syn.sack_permitted
        if self._sack_on and self._sack is None:
            self._sack = SackRecovery(DEFAULT_MSS, config.initial_cwnd_segments, self._cc.recover,
                                      config.slow_start_ack_limit, self._cc.cubic, config.prr)
            self._cc = self._sack
        self._ts_on = config.timestamps and syn.timestamps is not None
        if syn.timestamps is not None and self._ts_on:
            self._ts_recent = syn.timestamps[0]
        overhead = TIMESTAMP_OPTION_BYTES if self._ts_on else 0
        self._max_payload = max(self._snd_mss - overhead, 1)
        initial = 1 if self._syn_retransmitted else config.initial_cwnd_segments  # RFC 6928 / 5681 3.1
        self._cc.reset_window(self._max_payload, initial)
        if self._sack_on and config.rack_tlp:
            self._rack_start()

    def _start_karn(self, now: int) -> None:
        """A retransmission: never time a retransmitted segment (Karn), and remember when
        it left so that only echoes of segments sent since then give samples (an echo of an
        earlier copy whose ACK was lost would count the lost time as round-trip time)."""
        self._rtt_seq = None
        self._rtt_karn = True
        self._karn_tsval = self._ts_clock(now)

    def _ts_clock(self, now: int) -> int:
        # Offset by the ISS so that TSvals do not reveal the clock (RFC 7323 7.1).
        return (self.iss + now // _TS_UNIT_NS) & SEQ_MASK

    def _enter_time_wait(self, now: int) -> None:
        self._set_state(S.TIME_WAIT)
        self._rexmit_at = self._persist_at = self._delack_at = self._ka_at = None
        self._tw_at = now + self.config.time_wait_ns

    def _reset(self, reason: ResetReason) -> None:
        self._events.append(Reset(reason))
        self._set_state(S.CLOSED)

    def _set_state(self, new: TcpState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self._events.append(StateChanged(old, new))
        if new is S.ESTABLISHED and (old is S.SYN_SENT or old is S.SYN_RECEIVED):
            self._events.append(Established())
        elif new is S.CLOSED:
            self._rexmit_at = self._delack_at = self._persist_at = self._tw_at = self._ka_at = None
            self._ack_now = self._fast_rexmit = self._probe_pending = self._ka_pending = False
            self._rcvbuf.drop_ooo()
            self._events.append(Closed())


_SEGMENT_HANDLERS: dict[TcpState, Callable[[TcpConnection, TcpSegment, int], None]] = {
    S.CLOSED: TcpConnection._seg_closed,
    S.LISTEN: TcpConnection._seg_closed,  # a listening endpoint is a TcpListener, not a connection
    S.SYN_SENT: TcpConnection._seg_syn_sent,
    S.SYN_RECEIVED: TcpConnection._seg_synchronized,
    S.ESTABLISHED: TcpConnection._seg_synchronized,
    S.FIN_WAIT_1: TcpConnection._seg_synchronized,
    S.FIN_WAIT_2: TcpConnection._seg_synchronized,
    S.CLOSE_WAIT: TcpConnection._seg_synchronized,
    S.CLOSING: TcpConnection._seg_synchronized,
    S.LAST_ACK: TcpConnection._seg_synchronized,
    S.TIME_WAIT: TcpConnection._seg_synchronized,
}
