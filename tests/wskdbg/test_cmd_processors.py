"""!cpu, !running, !prcb, !runaway, !dpcs and !thread's times with winsrv's processor model on."""

from __future__ import annotations

import re

import pytest

from stack.kernel.costs import COST_TABLE
from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def _load(dbg) -> None:
    run(dbg, "!cpu winsrv 2003 1")
    run(dbg, "!httperf --server winsrv --uri /index.html --num-conns 1 --num-calls 100")
    run(dbg, "g")


def test_without_a_model_the_commands_say_code_takes_no_time(dbg):
    assert "code takes no time" in run(dbg, "!cpu")
    result = dbg.execute("!running")
    assert result.error and "winsrv has no processor model" in result.text


def test_cpu_turns_the_model_on_and_accounts_isr_dpc_and_thread_time(dbg):
    _load(dbg)
    row = next(r for r in dbg.execute("!cpu").data["hosts"] if r["host"] == "winsrv")
    assert row["profile"] == "2003" and row["processors"] == 1
    assert row["isr_ns"] > 0 and row["dpc_ns"] > 0 and row["thread_ns"] > 0
    assert 0 < row["load"] <= 1


def test_running_matches_the_debugging_tools_shape(dbg):
    # MS Learn, "!running":   System Processors 3 (affinity mask)
    #                           Idle Processors 0
    #                                Prcb              Current           Next
    #                             0  e0000000818f8000  e0000000818f9e50  e0000000866f12f0  ................
    _load(dbg)
    lines = run(dbg, "!running -i").splitlines()
    assert lines[0] == "System Processors 1 (affinity mask)"
    assert lines[1].startswith("  Idle Processors ")
    assert "     Prcb              Current           Next" in lines
    row = next(line for line in lines if line.startswith("  0  "))
    assert re.fullmatch(r"  0  [0-9a-f]{16}  [0-9a-f]{16}  [0-9a-f ]{16}  \.{16}", row)


def test_prcb_matches_the_debugging_tools_shape(dbg):
    # MS Learn, "!prcb":  PRCB for Processor 0 at e0000000818ba000:
    #                     Threads--  Current e0000000818bbe10 Next 0000000000000000 Idle e0000000818bbe10
    #                     Number 0 SetMember 00000001
    #                     Interrupt Count -- 0000b81f
    #                     Times -- Dpc    00000028 Interrupt 000003ff
    #                              Kernel 00005ef4 User      00000385
    _load(dbg)
    result = dbg.execute("!prcb")
    lines = result.text.splitlines()
    assert re.fullmatch(r"PRCB for Processor 0 at [0-9a-f]{16}:", lines[0])
    assert re.fullmatch(r"Threads--  Current [0-9a-f]{16} Next [0-9a-f]{16} Idle [0-9a-f]{16}", lines[1])
    assert lines[2] == "Number 0 SetMember 00000001"
    assert lines[3] == f"Interrupt Count -- {result.data['interrupts']:08x}" and result.data["interrupts"] > 0
    assert re.fullmatch(r"Times -- Dpc    [0-9a-f]{8} Interrupt [0-9a-f]{8} ", lines[4])
    assert re.fullmatch(r"         Kernel [0-9a-f]{8} User      [0-9a-f]{8}", lines[5])


def test_runaway_lists_kernel_time_most_first_in_the_debugging_tools_shape(dbg):
    # MS Learn, "!runaway 7":   Kernel Mode Time
    #                           Thread       Time
    #                           0:55c        0:00:00.0140
    # Stop while khttpd's connection worker still exists (an exited thread leaves the list, as on Windows).
    run(dbg, "!cpu winsrv 2003 1")
    run(dbg, "bp /h winsrv khttpd!KhttpdSendChain 0n60")
    run(dbg, "!httperf --server winsrv --uri /index.html --num-conns 1 --num-calls 100")
    run(dbg, "g")
    text = run(dbg, "!runaway 2")
    lines = text.splitlines()
    assert lines[:2] == [" Kernel Mode Time", " Thread       Time"]
    first = re.match(r" (\d+):([0-9a-f]+) +(\d):(\d\d):(\d\d)\.(\d{4})    (.*)", lines[2])
    assert first and first.group(7).startswith("worker khttpd")
    assert int(first.group(6)) > 0  # 60 requests of khttpd's work: a few milliseconds


def test_thread_shows_the_kernel_time_its_code_spent(dbg):
    run(dbg, "!cpu winsrv 2003 1")
    # the 250th response (pass count 0n250): the worker has served 249 already, about 7 us each
    run(dbg, "bp /h winsrv khttpd!KhttpdSendChain 0n250")
    run(dbg, "!httperf --server winsrv --uri /index.html --num-conns 1 --num-calls 250")
    run(dbg, "g")
    text = run(dbg, "!thread")
    kernel = re.search(r"KernelTime +(\d\d):(\d\d):(\d\d)\.(\d{3})", text)
    assert kernel and int(kernel.group(4)) >= 1  # at least a millisecond of 249 requests' work
    assert "RUNNING on processor 0" in text


def test_the_costs_name_a_source_for_every_operation():
    for op, (old, new, source) in COST_TABLE.items():
        assert old >= 0 and new >= 0 and len(source) > 20, op
