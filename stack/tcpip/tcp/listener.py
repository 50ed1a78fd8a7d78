"""The passive side: a listening endpoint with a bounded SYN queue and a
bounded accept backlog.  Sans-IO like the connection; the glue owns the
4-tuple demux and routes every segment of an existing connection to it.

SYN attack protection (given a cookie secret): once the SYN queue - the
half-open connections - is full, the listener stops keeping state for new
SYNs.  It answers each with a SYN-ACK whose ISN is a SYN cookie
(syncookie.py) and creates the connection only when an ACK returns that
cookie, so legitimate clients still connect during a flood while the
listener's memory stays bounded by the SYN queue.  Protection stays on for
PROTECTION_HOLD_NS after the queue was last found full.  Without a secret a
full SYN queue drops new SYNs (the peer retransmits).

A full accept backlog (connections established but not yet accepted) is
refused the Windows way: a SYN that finds it full is answered with a RST
(the client's connect fails with WSAECONNREFUSED), where Linux drops the SYN
and lets the client retry.  While SYN attack protection is on the handshake
completes first (a cookie), so a connection that then finds the backlog full
is reset instead (the client's next call fails with WSAECONNRESET).  Sources:
Microsoft KB 113576 "Winsock App's Reject Connection Requests with Reset
Frames"; the Windows Networking blog "SYN attack protection on Windows Server
2003 SP1" (2005: reset after the handshake when protection is on); the
Winsock `listen` reference ("the client will receive an error with an
indication of WSAECONNREFUSED")."""

from __future__ import annotations

from collections import deque
from typing import Callable

from .config import TcpConfig
from .connection import TcpConnection
from .errors import TcpConfigError
from .segment import ACK, FIN, RST, SYN, TcpSegment, rst_for_unexpected
from .seq import SEQ_MASK
from .states import TcpState
from .syncookie import check_cookie, make_cookie

PROTECTION_HOLD_NS = 10 * 1_000_000_000


class TcpListener:
    def __init__(self, config: TcpConfig, local_port: int, backlog: int, syn_queue: int,
                 iss_source: Callable[[], int], syn_cookie_secret: bytes | None = None,
                 syn_jitter: Callable[[int], int] | None = None) -> None:
        if not 0 <= local_port <= 0xFFFF:
            raise TcpConfigError(f"local_port={local_port} is not a 16-bit port")
        if backlog < 1 or syn_queue < 1:
            raise TcpConfigError("backlog and syn_queue must be >= 1")
        self.config = config
        self.local_port = local_port
        self.backlog = backlog
        self.syn_queue_limit = syn_queue
        self._iss_source = iss_source
        self._secret = syn_cookie_secret
        self._syn_jitter = syn_jitter
        self._protect_until: int | None = None  # SYN attack protection is on until then
        self._syn_queue: list[TcpConnection] = []  # handshakes in progress (SYN_RECEIVED)
        self._accept_queue: deque[TcpConnection] = deque()  # established, waiting for accept()
        self._out: list[TcpSegment] = []
        self.syns_received = 0
        self.syns_dropped_syn_queue_full = 0
        self.syns_refused_backlog_full = 0  # SYNs answered with RST: the accept backlog was full
        self.resets_backlog_full = 0  # handshakes completed into a full backlog, then reset
        self.resets_sent = 0
        self.protection_activations = 0  # times SYN attack protection switched on
        self.syn_cookies_sent = 0
        self.syn_cookies_accepted = 0
        self.syn_cookies_rejected = 0  # ACKs whose cookie did not check out (answered with RST)

    def protection_active(self, now_ns: int) -> bool:
        return self._protect_until is not None and now_ns < self._protect_until

    def on_segment(self, seg: TcpSegment, now_ns: int, addresses: bytes = b"",
                   config: TcpConfig | None = None) -> TcpConnection | None:
        """A segment for the listening port that matches no connection.  A SYN
        with room in both queues yields a new connection in SYN_RECEIVED,
        which the glue must add to its demux table and drive from then on; an
        ACK of a valid SYN cookie yields an ESTABLISHED one.  `addresses` (the
        peer's and our IP address bytes) key the cookie; `config` (default: the
        listener's) is the one for the peer's address family, whose MSS differs."""
        config = config or self.config
        flags = seg.flags
        if flags & RST:
            return None  # RFC 9293 3.10.7.2: ignore
        if flags & ACK:
            if not flags & SYN and self._secret is not None and self._protect_until is not None:
                return self._cookie_ack(seg, now_ns, addresses, config)
            self._send_rst(seg)  # no connection can be waiting for this ACK
            return None
        if not flags & SYN:
            return None
        self.syns_received += 1
        self._refresh()
        if self.backlog_full() and not self.protection_active(now_ns):
            self.syns_refused_backlog_full += 1
            self._send_rst(seg)  # RST|ACK acknowledging the SYN: WSAECONNREFUSED at the client
            return None
        if len(self._syn_queue) >= self.syn_queue_limit or self.protection_active(now_ns):
            if self._secret is None:
                self.syns_dropped_syn_queue_full += 1
                return None  # dropped silently: the peer retransmits its SYN
            if len(self._syn_queue) >= self.syn_queue_limit:
                if not self.protection_active(now_ns):
                    self.protection_activations += 1
                self._protect_until = now_ns + PROTECTION_HOLD_NS
            self._send_cookie(seg, now_ns, addresses, config)
            return None
        conn = TcpConnection(config, self.local_port, seg.src_port, self._iss_source() & SEQ_MASK,
                             self._syn_jitter)
        conn.open_passive(seg, now_ns)
        self._syn_queue.append(conn)
        return conn

    def _send_cookie(self, syn: TcpSegment, now_ns: int, addresses: bytes, config: TcpConfig) -> None:
        """A SYN-ACK with a cookie for an ISN and no options a cookie cannot carry."""
        assert self._secret is not None
        mss = syn.mss if syn.mss else 536
        cookie = make_cookie(self._secret, addresses, syn.src_port, self.local_port, syn.seq, mss, now_ns)
        self._out.append(TcpSegment(self.local_port, syn.src_port, cookie, (syn.seq + 1) & SEQ_MASK, SYN | ACK,
                                    min(config.recv_buffer, 0xFFFF), mss=config.option_mss))
        self.syn_cookies_sent += 1

    def _cookie_ack(self, seg: TcpSegment, now_ns: int, addresses: bytes,
                    config: TcpConfig) -> TcpConnection | None:
        assert self._secret is not None
        iss = (seg.ack - 1) & SEQ_MASK
        mss = check_cookie(self._secret, addresses, seg.src_port, self.local_port, (seg.seq - 1) & SEQ_MASK, iss,
                           now_ns)
        if mss is None:
            self.syn_cookies_rejected += 1
            self._send_rst(seg)
            return None
        if self.backlog_full():
            if not seg.payload and not seg.flags & FIN:
                self.resets_backlog_full += 1  # counted at the handshake's ACK, not again at its data
            self._send_rst(seg)  # the handshake completed at the client: its connection is reset
            return None
        conn = TcpConnection(config, self.local_port, seg.src_port, iss, self._syn_jitter)
        conn.open_from_cookie(seg, mss, now_ns)
        if conn.state is TcpState.CLOSED:
            return None
        self.syn_cookies_accepted += 1
        self._accept_queue.append(conn)
        return conn

    def backlog_full(self) -> bool:
        """Are `backlog` connections established and waiting for accept()?  (Connections that
        died while waiting no longer count: they are purged only when the queue looks full.)"""
        queue = self._accept_queue
        if len(queue) < self.backlog:
            return False
        live = [conn for conn in queue if conn.state is not TcpState.CLOSED]
        if len(live) != len(queue):
            self._accept_queue = queue = deque(live)
        return len(queue) >= self.backlog

    def backlog_full_without(self, conn: TcpConnection) -> bool:
        """Would the backlog be full without `conn` (a connection that just completed its handshake)?"""
        self._refresh()
        live = sum(1 for c in self._accept_queue if c is not conn and c.state is not TcpState.CLOSED)
        return live >= self.backlog

    def accept(self) -> TcpConnection | None:
        """The oldest connection whose handshake completed, or None."""
        self._refresh()
        queue = self._accept_queue
        while queue:
            conn = queue.popleft()
            if conn.state is not TcpState.CLOSED:
                return conn
        return None

    def poll_output(self, now_ns: int) -> list[TcpSegment]:
        out = self._out
        self._out = []
        return out

    @property
    def pending_handshakes(self) -> int:
        self._refresh()
        return len(self._syn_queue)

    @property
    def ready_to_accept(self) -> int:
        self._refresh()
        return len(self._accept_queue)

    def _refresh(self) -> None:
        """Move finished handshakes to the accept queue; forget failed ones."""
        still: list[TcpConnection] = []
        for conn in self._syn_queue:
            state = conn.state
            if state is TcpState.SYN_RECEIVED:
                still.append(conn)
            elif state is not TcpState.CLOSED:
                self._accept_queue.append(conn)
        self._syn_queue = still

    def _send_rst(self, seg: TcpSegment) -> None:
        rst = rst_for_unexpected(seg)
        if rst is not None:
            self._out.append(rst)
            self.resets_sent += 1
