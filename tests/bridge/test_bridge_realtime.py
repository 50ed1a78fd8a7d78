"""The real-time hub: inputs enter at hook points, are recorded, and replay to the same events.

A fake wall clock stands in for time.monotonic_ns, so nothing here sleeps.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import ClassVar

import pytest

from stack.bridge.realtime import BridgeError, BridgeHub, bus_recorder
from stack.bridge.record import KIND_DATA, KIND_FRAME, BridgeInput, RecordingHeader, RecordingWriter, read_recording
from stack.kernel.events import Event, EventBus
from stack.kernel.scheduler import NS_PER_MS, Scheduler


class FakeWall:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(1, int(seconds * 1e9))


@dataclass(frozen=True, slots=True, kw_only=True)
class Worked(Event):
    kind: ClassVar[str] = "test.work"
    what: str

    def describe(self) -> str:
        return f"work {self.what}"


class ChattyEndpoint:
    """Each input publishes an event and sets off a few follow-up events (seeded)."""

    kinds = frozenset({KIND_DATA, KIND_FRAME})

    def __init__(self, sched: Scheduler, bus: EventBus) -> None:
        self.sched, self.bus = sched, bus
        self.rng = random.Random(5)
        self.received: list[bytes] = []

    def input_kernel(self, inp: BridgeInput) -> None:
        return None

    def apply(self, inp: BridgeInput) -> str:
        self.received.append(inp.data)
        for i in range(self.rng.randrange(1, 4)):
            self.sched.call_later(self.rng.randrange(0, 3 * NS_PER_MS), None, self._follow, f"{inp.data!r}/{i}")
        return inp.data.decode()

    def _follow(self, what: str) -> None:
        self.bus.publish(Worked(host="t", what=what))


class ScriptedHost:
    """Submits inputs once the fake wall clock passes their times (as if a descriptor became readable)."""

    def __init__(self, wall: FakeWall, script: list[tuple[int, str, bytes]]) -> None:
        self.wall = wall
        self.script = sorted(script)
        self.hub: BridgeHub | None = None

    def start(self, hub: BridgeHub) -> None:
        self.hub = hub

    def arrive(self) -> None:
        while self.hub is not None and self.script and self.script[0][0] <= self.wall.now:
            _, kind, data = self.script.pop(0)
            self.hub.submit(kind, 1, 0, data)

    def sleep(self, seconds: float) -> None:
        """The hub's wait: time passes, and what arrived meanwhile is there when it returns."""
        self.wall.sleep(seconds)
        self.arrive()

    def service(self, time_ns: int) -> None:
        self.arrive()

    def stop(self) -> None:
        self.hub = None


def _world() -> tuple[Scheduler, EventBus, ChattyEndpoint, list[tuple[int, str, str]]]:
    sched = Scheduler()
    bus = EventBus(clock=lambda: sched.now_ns)
    endpoint = ChattyEndpoint(sched, bus)
    seen, _ = bus_recorder(bus)
    return sched, bus, endpoint, seen


def _live_run(script: list[tuple[int, str, bytes]]) -> tuple[str, list, ChattyEndpoint, BridgeHub]:
    wall = FakeWall()
    sched, bus, endpoint, seen = _world()
    out = io.StringIO()
    host = ScriptedHost(wall, [(wall.now + t, k, d) for t, k, d in script])
    hub = BridgeHub(sched, bus, recorder=RecordingWriter(out, RecordingHeader(seed=5)), clock=wall, sleep=host.sleep)
    hub.add_endpoint(endpoint)
    hub.add_host_side(host)
    hub.attach()
    last = max(t for t, _, _ in host.script)
    why = hub.serve(until=lambda: not host.script and wall.now > last + 10 * NS_PER_MS, max_events=200_000)
    assert why == "done"
    hub.detach()
    return out.getvalue(), seen, endpoint, hub


SCRIPT = [(2_500_000, KIND_DATA, b"hello"), (2_500_000, KIND_FRAME, b"frame1"), (7_000_000, KIND_DATA, b"more"),
          (7_100_000, KIND_DATA, b"again"), (20_000_000, KIND_FRAME, b"late")]


def test_inputs_are_injected_as_events_and_recorded_with_their_hook_point() -> None:
    text, seen, endpoint, hub = _live_run(SCRIPT)
    rec = read_recording(io.StringIO(text))
    assert [i.data for i in rec.inputs] == [b"hello", b"frame1", b"more", b"again", b"late"]
    assert endpoint.received == [b"hello", b"frame1", b"more", b"again", b"late"]
    assert rec.complete and hub.stats.inputs == 5
    applied = [s for s in seen if s[1] == "bridge.input"]
    assert len(applied) == 5 and "hello" in applied[0][2]


def test_virtual_clock_follows_wall_clock_within_one_tick() -> None:
    text, _, _, hub = _live_run(SCRIPT)
    rec = read_recording(io.StringIO(text))
    for inp, (t, _, _) in zip(rec.inputs, sorted(SCRIPT)):
        # the input entered at the first hook at or after its wall time: at most one tick later
        assert t <= inp.time_ns <= t + hub.tick_ns + 1


def test_recorded_run_replays_to_the_same_event_sequence() -> None:
    text, live_seen, live_endpoint, _ = _live_run(SCRIPT)
    rec = read_recording(io.StringIO(text))
    sched, bus, endpoint, seen = _world()
    hub = BridgeHub(sched, bus, replay=rec)
    hub.add_endpoint(endpoint)
    hub.attach()
    assert hub.serve(max_events=200_000) == "replay-end"
    hub.detach()
    assert hub.divergence is None
    assert endpoint.received == live_endpoint.received
    assert seen == live_seen
    assert sched.events_run == rec.end_event


def test_replay_reports_divergence_when_the_world_differs() -> None:
    text, _, _, _ = _live_run(SCRIPT)
    rec = read_recording(io.StringIO(text))
    sched, bus, endpoint, _ = _world()
    sched.call_later(1, None, lambda: None)  # one extra event shifts every hook point
    hub = BridgeHub(sched, bus, replay=rec)
    hub.add_endpoint(endpoint)
    hub.attach()
    hub.serve(max_events=200_000)
    assert hub.divergence is not None and "recorded at event" in hub.divergence


def test_attached_world_never_goes_idle_and_detach_lets_it_idle() -> None:
    wall = FakeWall()
    sched, bus, endpoint, _ = _world()
    hub = BridgeHub(sched, bus, clock=wall, sleep=wall.sleep)
    hub.add_endpoint(endpoint)
    hub.attach()
    assert hub.serve(max_events=50) == "max-events"
    assert sched.now_ns >= 40 * hub.tick_ns
    hub.detach()
    assert sched.run_until_idle(max_events=10) <= 1 and sched.idle


def test_a_long_stop_rebases_instead_of_firing_every_timer_at_once() -> None:
    wall = FakeWall()
    sched, bus, endpoint, _ = _world()
    hub = BridgeHub(sched, bus, clock=wall, sleep=wall.sleep)
    hub.add_endpoint(endpoint)
    hub.attach()
    hub.serve(max_events=10)
    before = sched.now_ns
    wall.now += 30 * 1_000_000_000  # the debugger sat at a breakpoint for 30 s
    hub.serve(max_events=3)
    assert hub.stats.rebases == 1
    assert sched.now_ns - before <= 3 * hub.tick_ns


def test_hub_refuses_second_bridge_and_unknown_kinds() -> None:
    sched, bus, endpoint, _ = _world()
    hub = BridgeHub(sched, bus)
    hub.add_endpoint(endpoint)
    with pytest.raises(BridgeError, match="claim input kind"):
        hub.add_endpoint(endpoint)
    with pytest.raises(BridgeError, match="no bridge endpoint"):
        hub.submit("accept", 1)
    hub.attach()
    with pytest.raises(BridgeError, match="already attached"):
        BridgeHub(sched, bus).attach()
    hub.detach()
