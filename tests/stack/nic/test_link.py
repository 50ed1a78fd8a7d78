"""Links: serialization, latency, drop-tail queue and seeded fault injection."""

from __future__ import annotations

import random

import pytest

from stack.kernel.scheduler import Scheduler
from stack.nic import FaultConfig, Link


class Recorder:
    """A FramePort that remembers what reaches it and when."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[int, bytes]] = []
        self.sink = None

    def deliver(self, frame: bytes, time_ns: int) -> None:
        self.arrivals.append((time_ns, frame))

    def attach(self, sink) -> None:
        self.sink = sink


def wired(**kw) -> tuple[Link, Recorder, Recorder]:
    link = Link(Scheduler(), **kw)
    a, b = Recorder(), Recorder()
    link.connect(a, b)
    return link, a, b


def frames(n: int, size: int = 100) -> list[bytes]:
    return [bytes([i % 256]) * size for i in range(n)]


def test_frame_arrives_after_serialization_plus_latency():
    link, a, b = wired(bandwidth_bps=10_000_000, latency_ns=5_000)
    a.sink.deliver(b"x" * 1250, 0)  # 10 000 bits at 10 Mb/s = 1 ms
    assert b.arrivals == [(1_000_000 + 5_000, b"x" * 1250)]


def test_back_to_back_frames_wait_for_the_previous_to_finish_serializing():
    link, a, b = wired(bandwidth_bps=10_000_000, latency_ns=5_000)
    for f in frames(3, 1250):
        a.sink.deliver(f, 0)
    assert [t for t, _ in b.arrivals] == [1_005_000, 2_005_000, 3_005_000]


def test_idle_link_starts_a_later_frame_immediately():
    link, a, b = wired(bandwidth_bps=10_000_000, latency_ns=0)
    a.sink.deliver(b"x" * 1250, 0)
    a.sink.deliver(b"y" * 1250, 5_000_000)
    assert [t for t, _ in b.arrivals] == [1_000_000, 6_000_000]


def test_directions_are_independent():
    link, a, b = wired(bandwidth_bps=10_000_000, latency_ns=0)
    a.sink.deliver(b"x" * 1250, 0)
    b.sink.deliver(b"y" * 1250, 0)
    assert b.arrivals[0][0] == 1_000_000 and a.arrivals[0][0] == 1_000_000


def test_queue_overflow_drops_tail_and_counts():
    link, a, b = wired(bandwidth_bps=10_000_000, queue_frames=3)
    for f in frames(5, 1250):
        a.sink.deliver(f, 0)
    end = link.ends[0]
    assert len(b.arrivals) == 3 and end.counters.queue_drops == 2
    assert [f for _, f in b.arrivals] == frames(3, 1250)
    a.sink.deliver(b"late" * 300, 3_000_000)  # the queue has drained by then
    assert len(b.arrivals) == 4


@pytest.mark.parametrize("kind", ["loss", "duplicate", "reorder", "corrupt"])
def test_each_fault_at_probability_one_hits_every_frame(kind):
    link, a, b = wired(rng=random.Random(1), latency_ns=0)
    link.set_faults(FaultConfig(**{kind: 1.0}), direction=0)
    sent = frames(20)
    for f in sent:
        a.sink.deliver(f, 0)
    c = link.ends[0].counters
    if kind == "loss":
        assert b.arrivals == [] and c.lost == 20
    elif kind == "duplicate":
        assert [f for _, f in b.arrivals] == [f for f in sent for _ in (0, 1)] and c.duplicated == 20
    elif kind == "reorder":
        plain = wired(latency_ns=0)
        for f in sent:
            plain[1].sink.deliver(f, 0)
        delay = FaultConfig().reorder_delay_ns
        assert [t for t, _ in b.arrivals] == [t + delay for t, _ in plain[2].arrivals] and c.reordered == 20
    else:
        assert c.corrupted == 20
        assert all(got != orig and len(got) == len(orig) for (_, got), orig in zip(b.arrivals, sent))


def test_reordered_frame_is_overtaken_by_the_next():
    link, a, b = wired(latency_ns=1000)
    link.ends[0].faults = FaultConfig(reorder=1.0, reorder_delay_ns=100_000)
    a.sink.deliver(b"first" * 20, 0)
    link.ends[0].faults = FaultConfig()
    a.sink.deliver(b"second" * 20, 0)
    assert sorted(b.arrivals)[0][1] == b"second" * 20


@pytest.mark.parametrize("kind", ["loss", "duplicate", "reorder", "corrupt"])
def test_seeded_fault_fraction_matches_the_rng(kind):
    link, a, b = wired(rng=random.Random(7), latency_ns=0)
    link.set_faults(FaultConfig(**{kind: 0.3}), direction=0)
    for i, f in enumerate(frames(1000)):
        a.sink.deliver(f, i * 1000)  # spaced out so the queue never overflows
    reference = random.Random(7)
    expected = 0
    for _ in range(1000):
        if reference.random() < 0.3:
            expected += 1
            if kind == "corrupt":  # a corrupted frame draws its byte positions and flips
                reference.randrange(100)
                reference.randrange(1, 256)
    counters = link.ends[0].counters
    got = {"loss": counters.lost, "duplicate": counters.duplicated, "reorder": counters.reordered,
           "corrupt": counters.corrupted}[kind]
    assert got == expected
    assert 200 < got < 400


def test_fault_injection_is_deterministic_for_a_seed():
    def run() -> tuple:
        link, a, b = wired(rng=random.Random(42), latency_ns=10)
        link.set_faults(FaultConfig(loss=0.1, duplicate=0.1, reorder=0.1, corrupt=0.1))
        for i, f in enumerate(frames(300)):
            a.sink.deliver(f, i * 1000)
            b.sink.deliver(f, i * 1000)
        return tuple(b.arrivals), tuple(a.arrivals), link.ends[0].counters, link.ends[1].counters

    assert run() == run()


def test_faults_on_one_direction_leave_the_other_clean():
    link, a, b = wired(rng=random.Random(3))
    link.set_faults(FaultConfig(loss=1.0), direction=0)
    a.sink.deliver(b"x" * 60, 0)
    b.sink.deliver(b"y" * 60, 0)
    assert b.arrivals == [] and len(a.arrivals) == 1


def test_bad_fault_probability_is_rejected():
    link, _, _ = wired()
    with pytest.raises(ValueError):
        link.set_faults(FaultConfig(loss=1.5))
