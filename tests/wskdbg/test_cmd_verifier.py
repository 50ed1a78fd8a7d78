"""!verifier: low resources simulation settings, statistics and fault history."""

from __future__ import annotations

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture
def dbg():
    engine = lab_engine()
    run(engine, ".host winsrv")
    yield engine
    engine.close()


def test_verifier_statistics_follow_the_documented_shape(dbg):
    # The Driver Verifier docs ("Low resources simulation" / global counters) show:
    #   Verify Level 5 ... enabled options are:
    #           Special pool
    #           Inject random low-resource API failures
    #   Summary of All Verifier Statistics
    #   Pool Allocations Attempted             0x862e0e
    #   ...
    #   Resource Allocations Failed Deliberately   0x3f5
    lines = run(dbg, "!verifier /faults 2000 \"\" \"\" 0 /classes pool,irp").splitlines()
    assert lines[0] == "Verify Level 4 ... enabled options are:"
    assert lines[1] == "        Inject random low-resource API failures"
    assert "Summary of All Verifier Statistics" in lines
    attempted = next(line for line in lines if line.startswith("Pool Allocations Attempted"))
    assert attempted.index("0x") == 39  # the value column of the documented output
    assert any(line.startswith("Resource Allocations Failed Deliberately   0x") for line in lines)
    assert "- Fault injection probability: 2000/10000." in lines
    assert "- Allocation classes: pool irp." in lines


def test_verifier_counts_what_failed_under_load_and_shows_the_history(dbg):
    run(dbg, "!verifier /faults 2000")
    run(dbg, "!httperf /w --server winsrv --uri /index.html --num-conns 10 --rate 100 --num-calls 2")
    data = dbg.execute("!verifier").data
    assert sum(data["injected"].values()) > 0
    history = dbg.execute("!verifier 4 2")
    assert history.text.startswith("Resource fault injection history:")
    assert len(history.data["records"]) == 2
    first = history.data["records"][0]
    assert first["injected"] and first["caller"] in history.text
    run(dbg, "!verifier -disable")
    assert dbg.execute("!verifier").data["active"] is False


@pytest.mark.parametrize("line, message", [
    ("!verifier /faults 0", "between 1 and 10000"),
    ("!verifier /faults abc", "is not a probability"),
    ("!verifier /faults 100 TooLongTag", "is not a pool tag"),
    ("!verifier /faults 100 /classes pool,disk", "unknown class 'disk'"),
    ("!verifier /faults 100 \"\" \"\" soon", "is not a number of minutes"),
])
def test_verifier_errors_say_what_is_wrong(dbg, line, message):
    result = dbg.execute(line)
    assert result.error and message in result.text
