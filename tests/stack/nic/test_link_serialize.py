"""The link's one-pass serialization of a passed-through unit (link._serialize, _forget_finished)
gives exactly what its per-frame loop gives: finish times, and the queue of frames still on the wire."""

from __future__ import annotations

import random
from collections import deque

from stack.nic.link import _forget_finished, _serialize


def _per_frame(busy: int, times: list[int], durations: list[int]) -> list[int]:
    finishes = []
    for t, d in zip(times, durations):
        busy = max(busy, t) + d
        finishes.append(busy)
    return finishes


def test_one_pass_serialization_matches_the_per_frame_recurrence():
    rng = random.Random(14)
    for _ in range(5000):
        n = rng.randint(1, 60)
        times = sorted(rng.randint(0, 5000) for _ in range(n))
        durations = [rng.randint(1, 200) for _ in range(n)]
        busy = rng.randint(0, 6000)
        assert _serialize(busy, times, durations) == _per_frame(busy, times, durations)


def test_a_short_last_segment_waits_for_the_one_before_it():
    # store and forward at the same rate: the short last frame arrives before the previous one left
    assert _serialize(0, [100, 200, 230], [100, 100, 30]) == [200, 300, 330]


def test_forgetting_finished_frames_matches_popping_them_one_by_one():
    rng = random.Random(15)
    for _ in range(5000):
        q = deque(sorted(rng.randint(0, 1000) for _ in range(rng.randint(0, 30))))
        now = rng.randint(-10, 1010)
        expected = deque(q)
        while expected and expected[0] <= now:
            expected.popleft()
        _forget_finished(q, now)
        assert q == expected
