"""The congestion provider and its state in the debugger: `!netsh int tcp show|set supplemental|global`,
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
    assert run(dbg, "!netsh int tcp set supplemental template=internet congestionprovider=newreno") .startswith("Ok.\n(lab) ")
    assert dbg.execute("!netsh int tcp show supplemental").data["congestion_provider"] == "newreno"
    assert dbg.world.host("winsrv").stack.tcp.config.congestion_provider == "newreno"
    assert dbg.world.host("client").stack.tcp.config.congestion_provider == "cubic"  # one host's template
    assert run(dbg, "!netsh int tcp set supplemental congestionprovider=cubic") .startswith("Ok.\n(lab) ")


def test_a_loss_stops_at_tcp_retransmit_and_tcb_shows_cubic_and_prr(dbg) -> None:
    run(dbg, ".host client")
    run(dbg, "!fault client loss=0.5% dir=out")
    run(dbg, "bp /h client /e tcp.retransmit rack")  # RACK-TLP finds the loss (RFC 8985)
    run(dbg, '!echo -n 1 -s 1000000 "cubic "')
    stop = run(dbg, "g")
    assert "tcp.retransmit: TCP retransmit (rack)" in stop
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


def test_tcb_after_a_timeout_says_w_max_resets_at_the_next_epoch() -> None:
    # RFC 9438 4.8: after an RTO the next congestion avoidance stage uses W_max = cwnd_epoch (K = 0);
    # the W_max kept until then is not what the curve will use, and !tcb says so.
    from stack.tcpip.tcp.cubic import Cubic
    from wskdbg.render.net import congestion_lines
    c = Cubic(1448)
    c.on_timeout(15_928, 15_928)
    text = "\n".join(congestion_lines({"cubic": c.snapshot()}, 1448, 0))
    assert "W_max 15928 until the next epoch, which starts with W_max = cwnd_epoch and K 0 (after a timeout)" in text
    c.on_ack(4 * 1448, 1448, 10**9)  # the next stage begins: W_max is its cwnd_epoch
    text = "\n".join(congestion_lines({"cubic": c.snapshot()}, 4 * 1448, 10**9))
    assert f"W_max {4 * 1448}  K 0" in text and "after a timeout" not in text
    c.on_congestion(8 * 1448, 8 * 1448)  # a loss found by ACKs: W_max is the window at the loss
    assert "W_max 11584  no epoch (slow start or loss recovery)" in "\n".join(
        congestion_lines({"cubic": c.snapshot()}, 5 * 1448, 2 * 10**9))


def test_nic_shows_the_frames_a_nic_dropped_for_want_of_a_receive_buffer(dbg) -> None:
    # no link counts these (!lab's Lost column is the link's): !nic lists them once there are any
    nic = dbg.world.host("winsrv").nic
    before = nic.counters.drops["no_rx_buffer"]
    nic._drop("no_rx_buffer", 1514)  # what EmulatedNic.receive does when no receive buffer is posted
    text = run(dbg, "!nic")
    assert "Receive drops at the NIC (frames that reached it and were not indicated)" in text
    assert f"winsrv     no_rx_buffer {before + 1}" in text.splitlines()


def test_netsh_show_global_prints_windows_rows_with_the_labs_values(dbg) -> None:
    # Windows 11's `netsh int tcp show global` prints, among others, "HyStart : enabled" and
    # "Proportional Rate Reduction : enabled" under "TCP Global Parameters"
    text = run(dbg, "!netsh int tcp show global")
    assert text.splitlines()[:4] == ["Querying active state...", "", "TCP Global Parameters", "-" * 46]
    assert "HyStart                             : enabled" in text
    assert "Proportional Rate Reduction         : enabled" in text
    assert "Initial RTO                         : 1000" in text


def test_netsh_set_global_hystart_disabled_gives_rfc_5681_slow_start_to_new_connections(dbg) -> None:
    run(dbg, ".host winsrv")
    tcp = dbg.world.host("winsrv").stack.tcp
    assert tcp.config.slow_start_ack_limit == 8
    assert run(dbg, "!netsh int tcp set global hystart=disabled prr=disabled") .startswith("Ok.\n(lab) ")
    assert (tcp.config.slow_start_ack_limit, tcp.config.prr) == (1, False)
    assert dbg.world.host("client").stack.tcp.config.slow_start_ack_limit == 8  # one host's setting
    text = run(dbg, "!netsh int tcp show global")
    assert "HyStart                             : disabled" in text and "(RFC 5681)" in text
    assert run(dbg, "!netsh int tcp set global hystart=enabled prr=enabled") .startswith("Ok.\n(lab) ")
    assert (tcp.config.slow_start_ack_limit, tcp.config.prr) == (8, True)
    for line in ("!netsh int tcp set global hystart=maybe", "!netsh int tcp set global", "!netsh int tcp show global x"):
        assert dbg.execute(line).error, line
