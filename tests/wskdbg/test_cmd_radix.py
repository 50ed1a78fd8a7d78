"""`n`: the default number base of MASM expressions (MS Learn, "n (Set Number Base)").

    0:000> n 10
    base is 10
    0:000> ? 1+10
    Evaluate expression: 11 = 0000000b
"""

from __future__ import annotations

import pytest
from dbg_harness import factory

from wskdbg.engine import Engine


@pytest.fixture
def dbg():
    engine = Engine(factory=factory("none"), seed=1)
    yield engine
    engine.close()


def test_the_debugger_starts_in_radix_16_and_n_alone_shows_it(dbg):
    assert dbg.execute("n").text == "base is 16"
    assert dbg.execute("? 1+10").text.startswith("Evaluate expression: 17 = ")


def test_n_10_makes_unprefixed_numbers_decimal_and_prefixes_still_say_their_own_base(dbg):
    assert dbg.execute("n 10").text == "base is 10"
    assert dbg.execute("? 1+10").text == "Evaluate expression: 11 = 00000000`0000000b"
    assert dbg.execute("? 0x10 + 0n10 + 0t10 + 0y10").text.startswith("Evaluate expression: 36 = ")
    assert dbg.execute("n 16").text == "base is 16"  # Radix itself is decimal, whatever the base
    assert dbg.execute("? 10").text.startswith("Evaluate expression: 16 = ")


def test_n_8_reads_octal_and_rejects_a_digit_octal_has_not(dbg):
    dbg.execute("n 8")
    assert dbg.execute("? 17").text.startswith("Evaluate expression: 15 = ")
    assert dbg.execute("? 18").error


def test_the_radix_applies_to_ranges_too(dbg):
    dbg.execute("n 10")
    address = dbg.execute("? @rsp").data["value"]
    rows = dbg.execute(f"db 0x{address:x} L16").text.splitlines()
    assert len(rows) == 1 and rows[0].count(" ") >= 16  # L16 is sixteen bytes in radix 10: one row


@pytest.mark.parametrize("line", ["n 2", "n 0x10", "n ten"])
def test_a_radix_other_than_8_10_or_16_is_an_error(dbg, line):
    result = dbg.execute(line)
    assert result.error and "Bad radix" in result.text
    assert dbg.execute("n").text == "base is 16"


# Time travel replays each recorded input in the radix it was typed under, not the one in force at
# the trip: `!nic itr 10000` typed in radix 16 is 65536/s (capped), and stays so after `n 10; !tt 0`.
RADIX_TRIP = ["!cpu winsrv x64 10", "!nic itr 10000 winsrv", "!ping -n 2 winsrv", "g", "n 10", "!tt 0", "!tt 100"]


def _check_radix_trip(engine) -> None:
    for line in RADIX_TRIP:
        result = engine.execute(line)
        assert not result.error, f"{line}: {result.text}"
    assert "Time Travel Position" in result.text  # the replay reached the end of the trace
    nic = engine.execute("!nic").text.split("*InterruptModeration")[-1].splitlines()
    assert [row.split()[3] for row in nic if row.startswith("winsrv")] == ["65536"]
    winsrv = engine.execute("!cpu").text.splitlines()[1].split()
    assert winsrv[:3] == ["winsrv", "x64", "16"]
    assert engine.execute("n").text == "base is 10"  # the trip leaves the radix the user chose


def test_time_travel_replays_inputs_in_the_radix_they_were_typed_under():
    engine = Engine(seed=1)
    try:
        _check_radix_trip(engine)
    finally:
        engine.close()


def test_time_travel_through_a_machine_server_replays_inputs_in_their_radix():
    from lab_template import standard_engine

    from wskdbg.checkpoints import SUPPORTED
    from wskdbg.machine_server import MachineProxy
    if not SUPPORTED:
        pytest.skip("checkpoints need fork() (POSIX)")
    proxy = MachineProxy(standard_engine(1), every=100_000, cap=4)  # no checkpoint after the inputs
    try:
        _check_radix_trip(proxy)
    finally:
        proxy.close()
