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
