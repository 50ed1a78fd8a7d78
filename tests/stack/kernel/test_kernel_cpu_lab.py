"""The processor model in the whole lab: what the thesis and Mogul & Ramakrishnan measured, from the
model's costs (tests/bench/thesis_lab.py, tests/bench/bench_livelock.py), and determinism."""

from __future__ import annotations

from tests.bench import bench_livelock
from tests.bench.thesis_lab import measure, server_world


def _cpu_per_request(server: str, size: int) -> float:
    world = server_world(server, "2003", 1_000_000_000)
    return measure(world, server, size, 3)["cpu_ns_per_request"]


def test_khttpd_copy_mode_costs_more_processor_time_than_zero_copy_at_64_kib():
    assert _cpu_per_request("khttpd copy", 65536) > 1.2 * _cpu_per_request("khttpd zero-copy", 65536)


def test_the_user_mode_static_server_costs_more_than_khttpd_at_1_kib():
    assert _cpu_per_request("user-mode static", 1024) > _cpu_per_request("khttpd zero-copy", 1024)


def test_the_same_load_with_the_model_on_gives_the_same_figures_twice():
    first = measure(server_world("user-mode static", "2003", 100_000_000), "user-mode static", 16384, 3, clients=2)
    second = measure(server_world("user-mode static", "2003", 100_000_000), "user-mode static", 16384, 3, clients=2)
    assert first == second


def test_interrupt_per_packet_livelocks_and_moderation_with_a_quota_plateaus():
    _, a_peak, _ = bench_livelock.point("a", 40_000, 5, "2003")
    _, a_flood, _ = bench_livelock.point("a", 320_000, 5, "2003")
    _, b_flood, _ = bench_livelock.point("b", 320_000, 5, "2003")
    assert a_flood < 0.25 * a_peak      # past its peak, (a) delivers almost nothing
    assert b_flood > 0.8 * a_peak       # (b) keeps delivering
