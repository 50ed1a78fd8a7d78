"""smoltcp-style helpers: craft the peer's segments, feed them to a
connection and assert exactly what it sends back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stack.tcpip.tcp import (
    ACK,
    FIN,
    MS,
    PSH,
    RST,
    SYN,
    TcpConfig,
    TcpConnection,
    TcpEvent,
    TcpSegment,
    TcpState,
)

LOCAL_PORT = 80
REMOTE_PORT = 49152
LOCAL_ISS = 10_000
REMOTE_ISS = 50_000
MASK = 0xFFFFFFFF

_UNSET: Any = object()


def config(**overrides: Any) -> TcpConfig:
    """A plain configuration: no options beyond MSS unless a test asks for them.  Congestion
    control is the textbook one (NewReno, RFC 6675's cwnd = ssthresh in SACK recovery) whose
    numbers the older tests check; test_tcp_cubic_prr.py asks for Windows' CUBIC and PRR."""
    base: dict[str, Any] = dict(
        mss=1000, recv_buffer=8000, recv_buffer_max=None, window_scaling=False, timestamps=False, sack=False,
        time_wait_ns=10_000 * MS, congestion_provider="newreno", prr=False,
    )
    base.update(overrides)
    return TcpConfig(**base)


def seg(seq: int, ack: int | None = None, flags: int | None = None, window: int = 8000,
        payload: bytes = b"", **options: Any) -> TcpSegment:
    """A segment from the peer.  flags default to ACK when `ack` is given."""
    if flags is None:
        flags = ACK if ack is not None else 0
    chunks = (memoryview(payload),) if payload else ()
    return TcpSegment(REMOTE_PORT, LOCAL_PORT, seq & MASK, (ack or 0) & MASK, flags, window,
                      payload=chunks, **options)


def data_of(segment: TcpSegment) -> bytes:
    return b"".join(bytes(chunk) for chunk in segment.payload)


def expect(segment: TcpSegment, *, seq: int = _UNSET, ack: int = _UNSET, flags: int = _UNSET,
           window: int = _UNSET, payload: bytes = _UNSET, **fields: Any) -> TcpSegment:
    """Assert the named fields of an outgoing segment."""
    assert segment.src_port == LOCAL_PORT and segment.dst_port == REMOTE_PORT, segment.describe()
    wanted = dict(seq=seq, ack=ack, flags=flags, window=window, **fields)
    for name, value in wanted.items():
        if value is _UNSET:
            continue
        got = getattr(segment, name)
        if name in ("seq", "ack"):
            value &= MASK
        assert got == value, f"{name}: got {got!r}, want {value!r} in {segment.describe()}"
    if payload is not _UNSET:
        assert data_of(segment) == payload, f"payload {data_of(segment)[:40]!r}... in {segment.describe()}"
    return segment


@dataclass
class Harness:
    conn: TcpConnection
    now: int = 0
    events: list[TcpEvent] = field(default_factory=list)

    def send(self, segment: TcpSegment) -> None:
        segment.validate()
        self.conn.on_segment(segment, self.now)

    def recv(self) -> list[TcpSegment]:
        out = self.conn.poll_output(self.now)
        self.events.extend(self.conn.drain_events())
        return out

    def recv_one(self, **fields: Any) -> TcpSegment:
        out = self.recv()
        assert len(out) == 1, f"expected one segment, got {[s.describe() for s in out]}"
        return expect(out[0], **fields)

    def recv_nothing(self) -> None:
        out = self.recv()
        assert out == [], f"expected silence, got {[s.describe() for s in out]}"

    def advance(self, ns: int) -> None:
        """Move the clock, firing every timer that falls due on the way."""
        target = self.now + ns
        while True:
            deadline = self.conn.poll_at()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.conn.on_timer(self.now)
            if self.conn.poll_at() == deadline:  # the timer did not move: avoid spinning
                break
        self.now = target

    def fire_next_timer(self) -> int:
        """Jump to the next deadline and fire it; returns the time that passed."""
        deadline = self.conn.poll_at()
        assert deadline is not None, "no timer is running"
        passed = deadline - self.now
        self.now = deadline
        self.conn.on_timer(self.now)
        return passed

    def take_events(self) -> list[TcpEvent]:
        self.events.extend(self.conn.drain_events())
        events, self.events = self.events, []
        return events

    @property
    def state(self) -> TcpState:
        return self.conn.state


def active_open(cfg: TcpConfig | None = None, iss: int = LOCAL_ISS, remote_iss: int = REMOTE_ISS,
                window: int = 8000, **syn_options: Any) -> Harness:
    """A connection established by our connect(); the peer's SYN-ACK carries `syn_options`."""
    h = Harness(TcpConnection(cfg or config(), LOCAL_PORT, REMOTE_PORT, iss))
    h.conn.connect(h.now)
    h.recv_one(flags=SYN, seq=iss)
    syn_options.setdefault("mss", 1000)
    h.send(seg(remote_iss, iss + 1, SYN | ACK, window=window, **syn_options))
    h.recv_one(flags=ACK, seq=iss + 1, ack=remote_iss + 1)
    assert h.state is TcpState.ESTABLISHED
    h.take_events()
    return h


def passive_open(cfg: TcpConfig | None = None, iss: int = LOCAL_ISS, remote_iss: int = REMOTE_ISS,
                 window: int = 8000, **syn_options: Any) -> Harness:
    """A connection established by the peer's SYN, through open_passive."""
    h = Harness(TcpConnection(cfg or config(), LOCAL_PORT, REMOTE_PORT, iss))
    syn_options.setdefault("mss", 1000)
    h.conn.open_passive(seg(remote_iss, None, SYN, window=window, **syn_options), h.now)
    h.recv_one(flags=SYN | ACK, seq=iss, ack=remote_iss + 1)
    h.send(seg(remote_iss + 1, iss + 1, window=window))
    h.recv_nothing()
    assert h.state is TcpState.ESTABLISHED
    h.take_events()
    return h


__all__ = [
    "ACK", "FIN", "PSH", "RST", "SYN", "MS", "LOCAL_PORT", "REMOTE_PORT", "LOCAL_ISS", "REMOTE_ISS", "MASK",
    "Harness", "active_open", "passive_open", "config", "seg", "expect", "data_of",
]
