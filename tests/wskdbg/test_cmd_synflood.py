"""`!synflood`: the lab's SYN flood from the prompt, and the listener's protection state."""

from __future__ import annotations

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture(scope="module")
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def test_synflood_w_sends_every_syn_and_show_reports_protection_on(dbg) -> None:
    text = run(dbg, "!synflood /w winsrv 80 -n 1000 -r 100000")
    assert "1000 SYNs sent in" in text
    shown = run(dbg, "!synflood -s winsrv 80")
    assert "  SYN queue (half-open)      200" in shown
    assert "  SYN attack protection      on (switched on 1 times)" in shown
    row = dbg.execute("!synflood -s winsrv 80").data["listeners"][0]
    assert row["syns_received"] >= 990  # the last SYNs may still be on the wire
    assert row["syn_cookies_sent"] == row["syns_received"] - 200  # no state kept beyond the SYN queue
    stats = run(dbg, "!netstat -s")
    assert "  SYN Attack Protection Activations   = 1" in stats


def test_synflood_rejects_a_bad_port_an_unknown_host_and_a_closed_port(dbg) -> None:
    for line, message in (("!synflood winsrv http", "'http' is not a number"),
                          ("!synflood nosuch 80", "no host named 'nosuch'"),
                          ("!synflood -s winsrv 81", "nothing listens on TCP port 81 of winsrv"),
                          ("!synflood winsrv 80 -x 5", "expected -n Count or -r SynsPerSecond")):
        result = dbg.execute(line)
        assert result.error and message in result.text, (line, result.text)
