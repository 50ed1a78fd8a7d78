"""The passive side: a listening endpoint with a bounded SYN queue and a
bounded accept backlog.  Sans-IO like the connection; the glue owns the
4-tuple demux and routes every segment of an existing connection to it."""

from __future__ import annotations

from collections import deque
from typing import Callable

from .config import TcpConfig
from .connection import TcpConnection
from .errors import TcpConfigError
from .segment import ACK, RST, SYN, TcpSegment, rst_for_unexpected
from .seq import SEQ_MASK
from .states import TcpState


class TcpListener:
    def __init__(self, config: TcpConfig, local_port: int, backlog: int, syn_queue: int,
                 iss_source: Callable[[], int]) -> None:
        if not 0 <= local_port <= 0xFFFF:
            raise TcpConfigError(f"local_port={local_port} is not a 16-bit port")
        if backlog < 1 or syn_queue < 1:
            raise TcpConfigError("backlog and syn_queue must be >= 1")
        self.config = config
        self.local_port = local_port
        self.backlog = backlog
        self.syn_queue_limit = syn_queue
        self._iss_source = iss_source
        self._syn_queue: list[TcpConnection] = []  # handshakes in progress (SYN_RECEIVED)
        self._accept_queue: deque[TcpConnection] = deque()  # established, waiting for accept()
        self._out: list[TcpSegment] = []
        self.syns_received = 0
        self.syns_dropped_syn_queue_full = 0
        self.syns_dropped_backlog_full = 0
        self.resets_sent = 0

    def on_segment(self, seg: TcpSegment, now_ns: int) -> TcpConnection | None:
        """A segment for the listening port that matches no connection.  A SYN
        with room in both queues yields a new connection in SYN_RECEIVED,
        which the glue must add to its demux table and drive from then on."""
        flags = seg.flags
        if flags & RST:
            return None  # RFC 9293 3.10.7.2: ignore
        if flags & ACK:
            self._send_rst(seg)  # no connection can be waiting for this ACK
            return None
        if not flags & SYN:
            return None
        self.syns_received += 1
        self._refresh()
        if len(self._syn_queue) >= self.syn_queue_limit:
            self.syns_dropped_syn_queue_full += 1
            return None  # dropped silently: the peer retransmits its SYN
        if len(self._accept_queue) >= self.backlog:
            self.syns_dropped_backlog_full += 1
            return None
        conn = TcpConnection(self.config, self.local_port, seg.src_port, self._iss_source() & SEQ_MASK)
        conn.open_passive(seg, now_ns)
        self._syn_queue.append(conn)
        return conn

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
