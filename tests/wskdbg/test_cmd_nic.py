"""!nic itr: the NICs' interrupt throttle rate (Intel's Interrupt Moderation Rate), set from the debugger."""

from __future__ import annotations

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture(scope="module")
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def _interrupts_for_one_echo(itr: str | None) -> tuple[int, int]:
    engine = lab_engine()
    try:
        run(engine, "!offload winsrv rsc=on")
        if itr is not None:
            run(engine, f"!nic itr {itr} winsrv")
        nic = engine.world.host("winsrv").nic
        before = nic.counters.interrupts, nic.counters.rsc_units
        out = run(engine, '!echo /w -s 262144 "throttle "')
        assert "262144 echoed intact" in out
        return nic.counters.interrupts - before[0], nic.counters.rsc_units - before[1]
    finally:
        engine.close()


def test_itr_sets_the_throttle_on_one_host_and_nic_shows_it(dbg):
    assert run(dbg, "!nic itr 10000 winsrv") == "Interrupt throttle rate is now at most 10000 interrupts per second for winsrv."
    assert dbg.world.host("winsrv").nic.interrupt_throttle_ns == 100_000
    assert dbg.world.host("client").nic.interrupt_throttle_ns == 0
    assert run(dbg, "!nic").splitlines()[-1] == "Interrupt throttle rate (at most N interrupts per second): winsrv 10000/s"
    run(dbg, "!nic itr off")
    assert all(h.nic.interrupt_throttle_ns == 0 for h in dbg.world.hosts.values())
    assert "Interrupt throttle" not in run(dbg, "!nic")


def test_a_throttled_nic_takes_fewer_interrupts_and_builds_fewer_larger_rsc_units_for_the_same_echo():
    free_interrupts, free_units = _interrupts_for_one_echo(None)
    throttled_interrupts, throttled_units = _interrupts_for_one_echo("10000")
    assert throttled_interrupts < free_interrupts * 2 // 3
    assert throttled_units < free_units


@pytest.mark.parametrize("line, message", [
    ("!nic itr", "say !nic itr"),
    ("!nic itr 50", "between 100 and 100000"),
    ("!nic itr 200000", "between 100 and 100000"),
    ("!nic itr 1000 nosuch", "nosuch"),
    ("!nic bogus", "(passthrough, itr)"),
])
def test_bad_itr_arguments_are_command_errors(dbg, line, message):
    result = dbg.execute(line)
    assert result.error and message in result.text, result.text
