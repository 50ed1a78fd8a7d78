"""Nothing a connection or a request creates outlives it: pool by tag (what `!poolused` shows),
threads, IRPs, NBLs, TCBs and WSK sockets are back to the baseline after a workload.

The HTTP test runs 2,000 requests: 200 connections of 10 requests, half static and half relayed to
the user-mode server, so a leak of anything per request or per connection shows a hundredfold and
any growth fails.  WSKDBG_LEAK_REQUESTS sets another count (5,000 took about 30 s of wall time)."""

from __future__ import annotations

import os

from leak_check import assert_no_growth, settle, snapshot, structure_sizes
from test_low_resources import echo_outcome, echo_workload, lab, run_bounded

from stack.kernel.ke import EXP_IDLE_WORKERS_MAX, ExpWorkerPool
from stack.usermode.httperf import HttperfConfig, httperf
from khttpd_lab import SERVER4
from stack.usermode.socket import run_program
from test_low_resources import SECOND

REQUESTS = int(os.environ.get("WSKDBG_LEAK_REQUESTS", "2000"))


def _httperf(world, uri: str, conns: int, calls: int):
    config = HttperfConfig(SERVER4, uri=uri, num_conns=conns, num_calls=calls, rate=500)
    return run_program(world.host("client").kernel, httperf, config, name=f"httperf {uri}")


def test_khttpd_requests_leave_no_thread_pool_block_or_irp_behind() -> None:
    world = lab(2)
    warm = [_httperf(world, "/index.html", 10, 10), _httperf(world, "/cgi/echo", 10, 10)]
    run_bounded(world, warm)
    settle(world, 5)
    before = snapshot(world)
    winsrv = world.host("winsrv").kernel
    workers = ExpWorkerPool.of(winsrv)
    threads_before = len(winsrv.threads) - len(workers.idle)
    conns = REQUESTS // 20  # half static, half relayed to the user-mode server; 10 requests a connection
    programs = [_httperf(world, "/index.html", conns, 10), _httperf(world, "/cgi/echo", conns, 10)]
    run_bounded(world, programs, seconds=600)
    for p in programs:
        p.raise_error()
        assert p.result.total_errors == 0 and len(p.result.replies) == conns * 10
    settle(world, 5)
    # A worker per connection while it lasts; then each worker waits for the next work item (a few
    # are kept idle, the rest exit) - none is left running or blocked in khttpd.
    assert len(winsrv.threads) - len(workers.idle) == threads_before
    assert len(workers.idle) <= EXP_IDLE_WORKERS_MAX and workers.reused > 0
    assert_no_growth(before, snapshot(world))


def test_echo_workloads_leave_nothing_behind() -> None:
    world = lab(4)
    run_bounded(world, echo_workload(world, 20))
    settle(world, 5)
    before = snapshot(world)
    for _ in range(3):
        programs = echo_workload(world, 20, size=40_000)
        run_bounded(world, programs)
        assert [echo_outcome(p) for p in programs] == ["ok"] * 20
    settle(world, 5)
    assert_no_growth(before, snapshot(world))


def test_python_structures_return_to_their_level_after_the_same_requests_again() -> None:
    # One new connection per request, as `!httperf` and bench_memory.py make them: PFN rows, pool
    # block records, time-wait TCBs and the scheduler's heap reach the workload's level in the
    # first run and stay there in the second (issue 14: each once grew with every request).
    world = lab(3)
    tcp = world.host("winsrv").stack.tcp
    tcp.max_time_wait_tcbs = 100  # reached in the first run: the table stays at its bound

    def requests() -> None:
        program = _httperf(world, "/index.html", 300, 1)
        run_bounded(world, [program], seconds=600)
        program.raise_error()
        assert program.result.total_errors == 0 and len(program.result.replies) == 300
        world.run_for(SECOND // 10)  # not past TIME_WAIT: the table holds its records

    requests()
    first = structure_sizes(world)
    assert first["winsrv"].objects["time-wait tcbs"] == 100
    reclaimed = world.host("winsrv").stack.counters.tcp_time_wait_reclaimed
    requests()
    assert world.host("winsrv").stack.counters.tcp_time_wait_reclaimed == reclaimed + 300
    assert_no_growth(first, structure_sizes(world))
