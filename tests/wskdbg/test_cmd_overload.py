"""`!netsh int ipv4 show|set dynamicport tcp` and `!connload`: issue 12's overload from the prompt."""

from __future__ import annotations

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture(scope="module")
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def test_netsh_shows_the_dynamic_port_range_as_windows_prints_it(dbg) -> None:
    # `netsh int ipv4 show dynamicport tcp` on Windows Server 2008 and later:
    #   Protocol tcp Dynamic Port Range
    #   ---------------------------------
    #   Start Port      : 49152
    #   Number of Ports : 16384
    text = run(dbg, "!netsh int ipv4 show dynamicport tcp")
    assert text.splitlines()[1:5] == ["Protocol tcp Dynamic Port Range", "-" * 33, "Start Port      : 49152",
                                      "Number of Ports : 16384"]
    assert "(lab) winsrv: ports in use" in text


def test_netsh_set_follows_netshs_limits_and_rejects_bad_input(dbg) -> None:
    for line, message in (("!netsh int ipv4 set dynamicport tcp start=1024 num=300", "The parameter is incorrect"),
                          ("!netsh int ipv4 set dynamicport tcp start=60000 num=6000", "The parameter is incorrect"),
                          ("!netsh int ipv4 set dynamicport tcp start=50000", "give both start=N and num=N"),
                          ("!netsh int ipv4 set dynamicport tcp begin=5", "expected start=N or num=N"),
                          ("!netsh int ipv6 show dynamicport udp", "usage: !netsh")):
        result = dbg.execute(line)
        assert result.error and message in result.text, (line, result.text)
    assert run(dbg, "!netsh int ipv4 set dynamicport tcp start=50000 num=255") == "Ok."
    assert dbg.execute("!netsh int ipv4 show dynamicport tcp").data["num"] == 255
    assert run(dbg, "!netsh int ipv4 set dynamicport tcp start=49152 num=16384") == "Ok."


def test_connload_needs_a_count_and_reports_nothing_before_a_load(dbg) -> None:
    for line, message in (("!connload", "no connection load has run"),
                          ("!connload /backlog 5", "give the number of connections"),
                          ("!connload /fast 5", "unexpected '/fast'")):
        result = dbg.execute(line)
        assert result.error and message in result.text, (line, result.text)
