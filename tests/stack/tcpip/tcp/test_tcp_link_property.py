"""Two real connections wired back to back through a seeded lossy,
reordering, duplicating in-memory link: random data must arrive byte-exact
in both directions and both ends must reach CLOSED, within bounded steps."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.tcpip.tcp import (
    MS, Reset, SECOND, TcpConfig, TcpConnection, TcpListener, TcpSegment, TcpState,
)

MAX_STEPS = 50_000
A_PORT, B_PORT = 49152, 80


@dataclass
class LinkParams:
    seed: int
    loss: float
    duplicate: float
    delay_ns: int
    jitter_ns: int


@dataclass
class Endpoint:
    name: str
    data: bytes
    read_chunk: int
    conn: TcpConnection | None = None
    received: bytearray = field(default_factory=bytearray)
    sent: bool = False
    resets: list[Reset] = field(default_factory=list)
    send_chunks: list[int] = field(default_factory=list)

    def app(self, now: int) -> None:
        conn = self.conn
        if conn is None:
            return
        for event in conn.drain_events():
            if isinstance(event, Reset):
                self.resets.append(event)
        if not self.sent and conn.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            view = memoryview(self.data)
            pos = 0
            for size in self.send_chunks:
                if pos >= len(view):
                    break
                conn.send(view[pos:pos + size], token=pos)
                pos += size
            if pos < len(view):
                conn.send(view[pos:])
            conn.close(now)
            self.sent = True
        if conn.recv_available():
            for chunk in conn.read(self.read_chunk):
                self.received += chunk

    def drain(self) -> None:
        while self.conn is not None and self.conn.recv_available():
            for chunk in self.conn.read(self.read_chunk):
                self.received += chunk


class Link:
    def __init__(self, params: LinkParams) -> None:
        self.params = params
        self.rng = random.Random(params.seed)
        self.queue: list[tuple[int, int, str, TcpSegment]] = []
        self.counter = 0

    def transmit(self, seg: TcpSegment, to: str, now: int) -> None:
        rng, p = self.rng, self.params
        copies = 2 if rng.random() < p.duplicate else 1
        for _ in range(copies):
            if rng.random() < p.loss:
                continue
            at = now + p.delay_ns + rng.randint(0, p.jitter_ns)
            self.counter += 1
            heapq.heappush(self.queue, (at, self.counter, to, seg))


def endpoint_config(draw_flags: tuple[bool, bool, bool, bool, bool], mss: int, buffer: int) -> TcpConfig:
    wscale, ts, sack, nagle, delack = draw_flags
    return TcpConfig(mss=mss, recv_buffer=buffer, window_scaling=wscale, timestamps=ts, sack=sack, nagle=nagle,
                     delayed_ack_ns=200 * MS if delack else 0, max_retransmits=15, syn_retries=15,
                     time_wait_ns=240 * SECOND, rto_max_ns=10 * SECOND)


def run_transfer(params: LinkParams, a: Endpoint, b: Endpoint, cfg_a: TcpConfig, cfg_b: TcpConfig,
                 iss_a: int, iss_b: int) -> int:
    link = Link(params)
    listener = TcpListener(cfg_b, B_PORT, backlog=4, syn_queue=4, iss_source=lambda: iss_b)
    a.conn = TcpConnection(cfg_a, A_PORT, B_PORT, iss_a)
    now = 0
    a.conn.connect(now)

    def flush(ep: Endpoint, to: str) -> None:
        if ep.conn is not None:
            for seg in ep.conn.poll_output(now):
                link.transmit(seg, to, now)

    for step in range(MAX_STEPS):
        for ep, to in ((a, "b"), (b, "a")):
            ep.app(now)
            flush(ep, to)
        for seg in listener.poll_output(now):
            link.transmit(seg, "a", now)
        if a.conn.state is TcpState.CLOSED and b.conn is not None and b.conn.state is TcpState.CLOSED \
                and not link.queue:
            a.drain()
            b.drain()
            return step
        deadlines = [d for d in (a.conn.poll_at(), b.conn.poll_at() if b.conn else None) if d is not None]
        if link.queue:
            deadlines.append(link.queue[0][0])
        if not deadlines:
            break  # nothing can ever happen again
        now = max(now, min(deadlines))
        while link.queue and link.queue[0][0] <= now:
            _, _, to, seg = heapq.heappop(link.queue)
            if to == "a":
                a.conn.on_segment(seg, now)
                flush(a, "b")
            elif b.conn is None:
                b.conn = listener.on_segment(seg, now)
                for out in listener.poll_output(now):
                    link.transmit(out, "a", now)
                flush(b, "a")
            else:
                b.conn.on_segment(seg, now)
                flush(b, "a")
        for ep, to in ((a, "b"), (b, "a")):
            conn = ep.conn
            if conn is not None and (conn.poll_at() or now + 1) <= now:
                conn.on_timer(now)
                flush(ep, to)
    raise AssertionError(f"no progress: a={a.conn!r} b={b.conn!r} queue={len(link.queue)}")


flags = st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    size_a=st.integers(0, 30_000),
    size_b=st.integers(0, 12_000),
    loss=st.sampled_from([0.0, 0.02, 0.1, 0.2]),
    duplicate=st.sampled_from([0.0, 0.05, 0.15]),
    jitter_ms=st.sampled_from([0, 5, 40]),
    flags_a=flags,
    flags_b=flags,
    mss_a=st.sampled_from([536, 1000, 1460]),
    mss_b=st.sampled_from([100, 536, 1460]),
    buffer_a=st.sampled_from([3000, 20_000, 262_140]),
    buffer_b=st.sampled_from([1500, 8000, 200_000]),
    read_chunk=st.sampled_from([100, 1000, 1 << 20]),
    iss_a=st.sampled_from([0, 0xFFFFFF00, 0x7FFFFFF0, 12345]),
    iss_b=st.sampled_from([0xFFFFFFFF, 0xFFFFF000, 99]),
)
def test_lossy_link_transfers_random_data_exactly_and_both_ends_close(
    seed: int, size_a: int, size_b: int, loss: float, duplicate: float, jitter_ms: int,
    flags_a: tuple[bool, bool, bool, bool, bool], flags_b: tuple[bool, bool, bool, bool, bool],
    mss_a: int, mss_b: int, buffer_a: int, buffer_b: int, read_chunk: int, iss_a: int, iss_b: int,
) -> None:
    rng = random.Random(seed)
    a = Endpoint("a", rng.randbytes(size_a), read_chunk, send_chunks=[rng.randint(1, 5000) for _ in range(8)])
    b = Endpoint("b", rng.randbytes(size_b), read_chunk, send_chunks=[rng.randint(1, 3000) for _ in range(8)])
    params = LinkParams(seed, loss, duplicate, 10 * MS, jitter_ms * MS)
    run_transfer(params, a, b, endpoint_config(flags_a, mss_a, buffer_a), endpoint_config(flags_b, mss_b, buffer_b),
                 iss_a, iss_b)
    assert bytes(b.received) == a.data
    assert bytes(a.received) == b.data
    assert a.resets == [] and b.resets == []
    assert a.conn is not None and b.conn is not None
    assert a.conn.at_eof and b.conn.at_eof


def test_heavy_loss_with_reordering_still_delivers() -> None:
    rng = random.Random(7)
    a = Endpoint("a", rng.randbytes(50_000), 1 << 20, send_chunks=[1000] * 8)
    b = Endpoint("b", rng.randbytes(5_000), 700, send_chunks=[3] * 8)
    cfg = endpoint_config((True, True, True, True, True), 1460, 16_000)
    params = LinkParams(7, 0.3, 0.1, 10 * MS, 30 * MS)
    steps = run_transfer(params, a, b, cfg, cfg, 0xFFFFFFF0, 0xFFFFFF80)
    assert bytes(b.received) == a.data and bytes(a.received) == b.data
    assert a.conn is not None and a.conn.retransmissions > 0
    assert steps < MAX_STEPS


def test_clean_link_needs_no_retransmissions() -> None:
    rng = random.Random(3)
    a = Endpoint("a", rng.randbytes(100_000), 1 << 20, send_chunks=[65536] * 2)
    b = Endpoint("b", b"ok", 1 << 20)
    cfg = endpoint_config((True, True, True, True, True), 1460, 65535 * 4)
    run_transfer(LinkParams(3, 0.0, 0.0, 10 * MS, 0), a, b, cfg, cfg, 1, 2)
    assert bytes(b.received) == a.data
    assert a.conn is not None and b.conn is not None
    assert a.conn.retransmissions == 0 and b.conn.retransmissions == 0
    assert a.conn.srtt_ns is not None and 20 * MS <= a.conn.srtt_ns <= 30 * MS
