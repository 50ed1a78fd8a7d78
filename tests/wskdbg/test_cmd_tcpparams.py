"""`!tcpparams`: tcpip's MaxFreeTcbs and TcpTimedWaitDelay, and the time-wait table they bound (issue 14)."""

from __future__ import annotations

from tests.wskdbg.net_lab import lab_engine, run


def test_tcpparams_shows_the_values_as_reg_query_prints_them_and_bounds_the_time_wait_table() -> None:
    # `reg query HKLM\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters /v MaxFreeTcbs` prints:
    #   HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters
    #       MaxFreeTcbs    REG_DWORD    0x7d0
    dbg = lab_engine()
    try:
        text = run(dbg, "!tcpparams")
        lines = text.splitlines()
        assert lines[1:4] == [r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters",
                              "    MaxFreeTcbs    REG_DWORD    0x7d0", "    TcpTimedWaitDelay    REG_DWORD    0xf0"]
        assert dbg.execute("!tcpparams MaxFreeTcbs 3").data["MaxFreeTcbs"] == 3
        run(dbg, "!httperf /w --server winsrv --uri /index.html --num-conns 5")
        data = dbg.execute("!tcpparams").data
        assert (data["time_wait_tcbs"], data["reclaimed_early"]) == (3, 2)
        assert dbg.execute("!netstat -s").data["tcp_time_wait_reclaimed"] == 2
        for line, message in (("!tcpparams MaxFreeTcbs 0", "outside 1.."), ("!tcpparams MaxFreeTcbs x", "not a number"),
                              ("!tcpparams TcpTimedWaitDelay 30", "usage: !tcpparams"),
                              ("!tcpparams MaxFreeTcbs", "usage: !tcpparams")):
            result = dbg.execute(line)
            assert result.error and message in result.text, (line, result.text)
    finally:
        dbg.close()
