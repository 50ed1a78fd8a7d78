"""The congestion provider and its state in the debugger: `!netsh int tcp show|set supplemental`,
`!tcb`'s CUBIC (RFC 9438) and PRR (RFC 6937) lines, and `bp /e tcp.retransmit`."""

from __future__ import annotations

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture(scope="module")
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def test_netsh_show_supplemental_prints_the_provider_as_windows_does(dbg) -> None:
    # `netsh int tcp show supplemental` on Windows 10 1709 / Server 2019 and later prints the
    # template's parameters, among them (Get-NetTCPSetting: CongestionProvider CUBIC):
    #   The TCP global default template is internet
    #
    #   TCP Supplemental Parameters
    #   ----------------------------------------------
    #   Minimum RTO (msec)                  : 300
    #   Initial Congestion Window (MSS)     : 10
    #   Congestion Control Provider         : cubic
    #   Enable Congestion Window Restart    : disabled
    #   Delayed ACK timeout (msec)          : 40
    lines = run(dbg, "!netsh int tcp show supplemental").splitlines()
    assert lines[0] == "The TCP global default template is internet"
    assert lines[2:7] == ["TCP Supplemental Parameters", "-" * 46, "Minimum RTO (msec)                  : 300",
                          "Initial Congestion Window (MSS)     : 10", "Congestion Control Provider         : cubic"]
    # the lab's delayed ACK timer is 200 ms: printed as it is, and said to differ from Windows' 40
    assert "Delayed ACK timeout (msec)          : 200" in lines
    assert any(line.startswith("(lab) ") and "Proportional Rate Reduction (show global) : enabled" in line
               for line in lines)
    assert lines[-1].startswith("(lab) ") and "internet template says 40" in lines[-1]


def test_netsh_set_supplemental_switches_the_provider_for_new_connections_and_rejects_others(dbg) -> None:
    for line, message in (("!netsh int tcp set supplemental congestionprovider=bbr2", "not a congestionprovider"),
                          ("!netsh int tcp set supplemental template=nowhere congestionprovider=cubic", "unknown template"),
                          ("!netsh int tcp set supplemental template=internet", "give congestionprovider="),
                          ("!netsh int tcp show supplemental extra", "unexpected 'extra'")):
        result = dbg.execute(line)
        assert result.error and message in result.text, (line, result.text)
    assert run(dbg, "!netsh int tcp set supplemental template=internet congestionprovider=newreno") == "Ok."
    assert dbg.execute("!netsh int tcp show supplemental").data["congestion_provider"] == "newreno"
    assert dbg.world.host("winsrv").stack.tcp.config.congestion_provider == "newreno"
    assert dbg.world.host("client").stack.tcp.config.congestion_provider == "cubic"  # one host's template
    assert run(dbg, "!netsh int tcp set supplemental congestionprovider=cubic") == "Ok."


def test_a_loss_stops_at_tcp_retransmit_and_tcb_shows_cubic_and_prr(dbg) -> None:
    run(dbg, ".host client")
    run(dbg, "!fault client loss=0.5% dir=out")
    run(dbg, "bp /h client /e tcp.retransmit fast")
    run(dbg, '!echo -n 1 -s 1000000 "cubic "')
    stop = run(dbg, "g")
    assert "tcp.retransmit: TCP retransmit (fast)" in stop
    text = run(dbg, "!tcb")
    assert "in recovery  provider cubic" in text
    assert "CUBIC          W_max " in text and "no epoch (slow start or loss recovery)" in text
    assert "PRR            RecoverFS " in text and "prr_out 1448" in text  # the fast retransmit
    run(dbg, "!fault clear")
    run(dbg, "bc *")
    run(dbg, ".runcap 0.001")
    run(dbg, "g")
    text = run(dbg, "!tcb")
    assert "not in recovery  provider cubic" in text and "PRR " not in text
    assert "region Reno-friendly" in text  # a sub-millisecond RTT: W_est leads the cubic curve
    run(dbg, ".runcap off")
    run(dbg, "g")
