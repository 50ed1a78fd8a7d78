"""The network view: TCP connections, and a ladder of the selected one's segments.

The ladder is drawn the way Wireshark's flow graph draws a conversation: one
vertical line per endpoint, one arrow per segment in virtual-time order, the
segment's flags/seq/ack/len written on the arrow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import ScrollableContainer, Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static

from .link import EngineLink, SegmentNote

# "10.0.0.2.49152 > 10.0.0.1.7: Flags [P.], seq 1:101, ack 1, win 512, length 100"
SUMMARY_RE = re.compile(r"^(?P<src>\S+)\.(?P<sport>\d+) > (?P<dst>\S+)\.(?P<dport>\d+): (?P<rest>.*)$")
LADDER_ROWS = 200  # the newest segments of the conversation


@dataclass(frozen=True, slots=True)
class ConnRow:
    host: str
    address: int
    local: str
    remote: str
    state: str
    snd_una: int
    snd_nxt: int
    rcv_nxt: int
    snd_wnd: int
    rcv_wnd: int
    cwnd: int
    srtt_ms: float
    retrans: int

    @property
    def ports(self) -> tuple[int, int]:
        return (_port(self.local), _port(self.remote))


def _cells(r: ConnRow) -> tuple[str, ...]:
    return (r.host, r.local, r.remote, r.state, str(r.snd_una), str(r.snd_nxt), str(r.rcv_nxt),
            str(r.snd_wnd), str(r.rcv_wnd), str(r.cwnd), f"{r.srtt_ms:.3f}ms", str(r.retrans))


def _port(endpoint: str) -> int:
    tail = endpoint.rpartition(":")[2] or endpoint.rpartition(".")[2]
    return int(tail) if tail.isdigit() else 0


def connections_of(kernels: dict[str, Any]) -> list[tuple[str, Any]]:
    """(host, ConnectionEndpoint) for every TCP connection of every host."""
    out: list[tuple[str, Any]] = []
    for host, kernel in kernels.items():
        transport = getattr(kernel.extensions.get("tcpip"), "transport", None)
        if transport is not None:
            out.extend((host, conn) for conn in transport.connections())
    return out


def conn_rows(kernels: dict[str, Any]) -> list[ConnRow]:
    """Reads the machine: call it while it is stopped or on its thread."""
    rows: list[ConnRow] = []
    for host, conn in connections_of(kernels):
        snap: dict[str, Any] = conn.snapshot()
        srtt = snap.get("srtt_ns") or 0
        rows.append(ConnRow(
            host=host, address=int(snap.get("address", getattr(conn, "address", 0)) or 0),
            local=str(snap.get("local", getattr(conn, "local", "?"))),
            remote=str(snap.get("remote", getattr(conn, "remote", "?"))),
            state=str(snap.get("state", "?")),
            snd_una=int(snap.get("snd_una", 0) or 0), snd_nxt=int(snap.get("snd_nxt", 0) or 0),
            rcv_nxt=int(snap.get("rcv_nxt", 0) or 0), snd_wnd=int(snap.get("snd_wnd", 0) or 0),
            rcv_wnd=int(snap.get("rcv_wnd", 0) or 0), cwnd=int(snap.get("cwnd", 0) or 0),
            srtt_ms=srtt / 1e6, retrans=int(snap.get("retransmissions", 0) or 0)))
    return rows


# The TCP statistics `!netstat -s` prints (wskdbg/render/net.py), as the view's columns, headed
# short so a host's row fits beside the stack view: Active Opens, Passive Opens, Failed Connection
# Attempts, Reset Connections, Current Connections, Segments Retransmitted, SYN queue drops and
# SYN attack protection activations.  heading -> counter in the transport's snapshot.
TCP_STAT_COLUMNS = (
    ("actv", "tcp_active_opens"), ("pasv", "tcp_passive_opens"),
    ("fail", "tcp_failed_connection_attempts"), ("rst", "tcp_reset_connections"),
    ("cur", "tcp_current_connections"), ("rexmt", "tcp_segments_retransmitted"),
    ("qdrop", "tcp_syn_queue_drops"), ("synprot", "tcp_syn_protection_activations"),
)
# Issue 12's overload lines of `!netstat -s`, in a second table under the first (no room beside it):
# connections refused because the listen backlog was full, connections in TIME_WAIT, free dynamic
# ports and connects that found none.
OVERLOAD_COLUMNS = (
    ("refused(backlog)", "tcp_backlog_refusals"), ("TIME_WAIT", "tcp_time_wait_connections"),
    ("ports free", "tcp_dynamic_ports_free"), ("no port", "tcp_port_exhaustion_failures"),
)


@dataclass(frozen=True, slots=True)
class TcpStatsRow:
    """One host's TCP statistics: Active Opens, Passive Opens, Failed Connection Attempts, Reset
    Connections, Current Connections, Segments Retransmitted, SYN queue drops, SYN-protection
    activations, in TCP_STAT_COLUMNS order."""

    host: str
    values: tuple[int, ...]
    overload: tuple[int, ...] = ()  # in OVERLOAD_COLUMNS order

    def value(self, counter: str) -> int:
        names = [name for _, name in TCP_STAT_COLUMNS]
        if counter in names:
            return self.values[names.index(counter)]
        return self.overload[[name for _, name in OVERLOAD_COLUMNS].index(counter)]


def tcp_stats_rows(kernels: dict[str, Any]) -> list[TcpStatsRow]:
    """Reads the machine (like conn_rows): the counters `!netstat -s` prints, per host."""
    rows: list[TcpStatsRow] = []
    for host, kernel in kernels.items():
        transport = getattr(kernel.extensions.get("tcpip"), "transport", None)
        if transport is not None:
            counters = transport.counters()
            rows.append(TcpStatsRow(host, tuple(int(counters.get(name, 0) or 0) for _, name in TCP_STAT_COLUMNS),
                                    tuple(int(counters.get(name, 0) or 0) for _, name in OVERLOAD_COLUMNS)))
    return rows


@dataclass(frozen=True, slots=True)
class LadderStep:
    time_ns: int
    left_to_right: bool
    label: str


def ladder_steps(segments: list[SegmentNote], host: str, ports: tuple[int, int]) -> list[LadderStep]:
    """The segments of the conversation on `ports` (local, remote as seen from `host`)."""
    wanted = {ports[0], ports[1]}
    steps: list[LadderStep] = []
    for seg in segments:
        m = SUMMARY_RE.match(seg.summary)
        if m is None:
            continue
        sport, dport = int(m["sport"]), int(m["dport"])
        if {sport, dport} != wanted:
            continue
        left_to_right = seg.host == host and sport == ports[0]
        if seg.host != host:
            left_to_right = sport == ports[0]
        steps.append(LadderStep(seg.time_ns, left_to_right, m["rest"]))
    return steps[-LADDER_ROWS:]


def render_ladder(steps: list[LadderStep], left: str, right: str, width: int) -> Text:
    time_w = 12
    lane = max(20, width - time_w - 4)
    out = Text(no_wrap=True, overflow="crop")
    out.append(" " * time_w + " " + left[: lane // 2].ljust(lane // 2) + right[: lane - lane // 2].rjust(lane - lane // 2),
               style="bold")
    out.append("\n")
    if not steps:
        out.append(" " * time_w + " │" + " " * (lane - 2) + "│\n")
        out.append("(no segments yet for this connection)", style="dim")
        return out
    inner = lane - 2
    for step in steps:
        ms = f"{step.time_ns / 1e6:10.3f}ms"
        label = f" {step.label} "[: inner - 4]
        fill = inner - len(label) - 1
        left_fill = fill // 2
        right_fill = fill - left_fill
        if step.left_to_right:
            arrow = "─" * left_fill + label + "─" * right_fill + "▶"
        else:
            arrow = "◀" + "─" * left_fill + label + "─" * right_fill
        out.append(ms.rjust(time_w) + " │", style="dim")
        out.append(arrow, style="cyan" if step.left_to_right else "magenta")
        out.append("│\n", style="dim")
    return out


class NetworkView(Vertical):
    """Connections table + the selected connection's ladder."""

    DEFAULT_CSS = """
    NetworkView { height: 1fr; }
    NetworkView > #conn-table { height: 7; }
    NetworkView > #tcp-stats { height: auto; max-height: 7; }
    NetworkView > #tcp-overload { height: auto; max-height: 7; }
    NetworkView > #ladder-scroll { height: 1fr; border-top: solid $primary 50%; }
    """

    def __init__(self, link: EngineLink, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.link = link
        self.segments: tuple[SegmentNote, ...] | list[SegmentNote] = ()
        self.rows: list[ConnRow] = []
        self.stats: list[TcpStatsRow] = []
        self.selected: ConnRow | None = None
        self._ladder_key: tuple = ()

    def compose(self) -> ComposeResult:
        table: DataTable = DataTable(id="conn-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("host", "local", "remote", "state", "snd_una", "snd_nxt", "rcv_nxt", "snd_wnd",
                          "rcv_wnd", "cwnd", "srtt", "rexmit")
        yield table
        stats: DataTable = DataTable(id="tcp-stats", cursor_type="none", show_cursor=False)
        stats.add_columns("host", *(heading for heading, _ in TCP_STAT_COLUMNS))
        yield stats
        overload: DataTable = DataTable(id="tcp-overload", cursor_type="none", show_cursor=False)
        overload.add_columns("host", *(heading for heading, _ in OVERLOAD_COLUMNS))
        yield overload
        with ScrollableContainer(id="ladder-scroll"):
            yield Static("Select a connection to draw its segments.", id="ladder")

    def show(self, rows: tuple[ConnRow, ...] | list[ConnRow],
             stats: tuple[TcpStatsRow, ...] | list[TcpStatsRow] = (), segments: tuple[SegmentNote, ...] = ()) -> None:
        """Repaint from a MachineView's rows (and the segments it saw, for the ladder)."""
        self.segments = segments
        if list(stats) != self.stats:
            self.stats = list(stats)
            table = self.query_one("#tcp-stats", DataTable)
            table.clear()
            for s in self.stats:
                table.add_row(s.host, *(str(v) for v in s.values))
            overload = self.query_one("#tcp-overload", DataTable)
            overload.clear()
            for s in self.stats:
                overload.add_row(s.host, *(str(v) for v in s.overload))
        rows = list(rows)
        if rows != self.rows:
            old, self.rows = self.rows, rows
            table = self.query_one("#conn-table", DataTable)
            cursor = table.cursor_row
            self._update_table(table, old, rows)
            if rows:
                table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
            if self.selected is not None:  # keep following the same connection by its ports
                match = [r for r in rows if r.host == self.selected.host and r.ports == self.selected.ports]
                self.selected = match[0] if match else self.selected
        if self.selected is None and self.rows:
            self.selected = self.rows[0]
        self._draw_ladder()

    @staticmethod
    def _update_table(table: DataTable, old: list[ConnRow], rows: list[ConnRow]) -> None:
        """Change only the rows that changed: thousands of TIME_WAIT connections late in a long run
        must not be redrawn at every step (or trip in time)."""
        for i in range(len(old) - 1, len(rows) - 1, -1):
            table.remove_row(str(i))
        for i, r in enumerate(rows):
            if i >= len(old):
                table.add_row(*_cells(r), key=str(i))
            elif old[i] != r:
                before = _cells(old[i])
                for column, value in enumerate(_cells(r)):
                    if value != before[column]:
                        table.update_cell_at(Coordinate(i, column), value)

    def _draw_ladder(self) -> None:
        sel = self.selected
        if sel is None:
            return
        segments = list(self.segments)
        key = (sel, len(segments), segments[-1].seq if segments else 0, self.size.width)
        if key == self._ladder_key:
            return
        self._ladder_key = key
        steps = ladder_steps(segments, sel.host, sel.ports)
        width = max(40, (self.size.width or 80) - 2)
        self.query_one("#ladder", Static).update(
            render_ladder(steps, f"{sel.host} {sel.local}", f"{sel.remote}", width))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        index = int(event.row_key.value or 0)
        if 0 <= index < len(self.rows):
            self.selected = self.rows[index]
            self._draw_ladder()
