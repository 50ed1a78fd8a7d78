"""!tcb, !tcpconn/!netstat, !wsk, !neighbors, !route, !ipstats, !copies on the default lab."""

from __future__ import annotations

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture(scope="module")
def dbg():
    """echosrv on winsrv, one finished echo connection, and a client connection stopped mid-exchange."""
    engine = lab_engine()
    run(engine, '!echo /w "first"')
    run(engine, "bp /h winsrv echosrv!WskSampleReceiveIrpCompletionRoutine")
    run(engine, '!echo "second"')
    run(engine, "g")
    yield engine
    engine.close()


def test_tcpconn_lists_the_listener_and_the_live_connection_like_netstat(dbg):
    lines = run(dbg, "!tcpconn").splitlines()
    assert lines[0] == "Active connections on winsrv"
    assert lines[2].split() == ["Proto", "Local", "Address", "Foreign", "Address", "State", "Object"]
    rows = [line.split() for line in lines[3:]]
    assert ["TCP", "[::]:40007", "*:*", "LISTENING"] == rows[0][:4]
    assert any(r[3] == "ESTABLISHED" and r[1].endswith(":40007") for r in rows)
    assert run(dbg, "!netstat") == run(dbg, "!tcpconn")


def test_tcb_by_address_shows_tuple_sequence_space_windows_and_timers(dbg):
    rows = dbg.execute("!tcpconn").data["endpoints"]
    live = next(r for r in rows if r["state"] == "ESTABLISHED")
    text = run(dbg, f"!tcb {live['address']:x}")
    first = text.splitlines()[0]
    assert first.startswith("TCB ") and first.endswith("ESTABLISHED") and "-> [::ffff:a00:2]" in first
    for label in ("Send           iss ", "snd_una ", "snd_wnd ", "Receive        irs ", "rcv_wnd ", "mss 1460",  # an IPv4 peer on a dual-stack socket
                  "cwnd ", "ssthresh ", "rto ", "retransmissions 0", "Timers         "):
        assert label in text
    snap = dbg.execute(f"!tcb {live['address']:x}").data
    assert snap["state"] == "ESTABLISHED" and snap["address"] == live["address"]


def test_tcb_shows_the_measured_rtt_of_a_lab_connection_with_timestamps_on(dbg):
    rows = dbg.execute("!tcpconn").data["endpoints"]
    live = next(r for r in rows if r["state"] == "ESTABLISHED")
    snap = dbg.execute(f"!tcb {live['address']:x}").data
    assert snap["timestamps"] is True
    assert 0 < snap["srtt_ns"] < 1_000_000  # a LAN round trip, below one timestamp tick
    rtt_line = next(line for line in run(dbg, f"!tcb {live['address']:x}").splitlines() if "srtt" in line)
    assert "srtt -" not in rtt_line and "rttvar -" not in rtt_line


def test_tcb_takes_a_wsk_connection_socket_too(dbg):
    sock = next(s for s in dbg.execute("!wsk").data["sockets"] if s["category"] == "connection")
    tcb = dbg.execute(f"!tcb {sock['address']:x}").data
    assert tcb["address"] == sock["endpoint"]


def test_tcb_without_arguments_shows_every_connection(dbg):
    assert run(dbg, "!tcb") == run(dbg, "!tcb -all")
    assert run(dbg, "!tcb").count("TCB ") == len(dbg.world.hosts["winsrv"].transport.connections())


def test_tcb_rejects_addresses_that_are_not_tcbs_with_a_caret(dbg):
    result = dbg.execute("!tcb 42")
    assert result.error and "is not a TCB" in result.text
    assert result.data["position"] == len("!tcb ")


def test_wsk_lists_echosrvs_listening_and_connection_sockets(dbg):
    lines = run(dbg, "!wsk").splitlines()
    assert lines[0].split() == ["Socket", "Category", "State", "Family", "Local", "Remote", "Client"]
    assert any(line.split()[1:4] == ["listen", "Listening", "AF_INET6"] and line.endswith("echosrv")
               for line in lines[1:])
    sock = next(s for s in dbg.execute("!wsk").data["sockets"] if s["category"] == "connection")
    detail = run(dbg, f"!wsk {sock['address']:x}")
    endpoint = sock["endpoint"]
    assert "Client           echosrv" in detail
    assert detail.endswith(f"(!tcb {endpoint >> 32:08x}`{endpoint & 0xFFFFFFFF:08x})")


def test_neighbors_shows_the_client_in_winsrvs_arp_cache(dbg):
    text = run(dbg, "!neighbors")
    assert "(ARP cache)" in text and "(ND cache)" in text
    mac = "-".join(f"{b:02x}" for b in dbg.world.hosts["client"].mac)
    assert any(line.split()[:2] == ["10.0.0.2", mac] for line in text.splitlines())
    assert run(dbg, "!arp") == text


def test_route_shows_on_link_prefixes_of_both_families(dbg):
    text = run(dbg, "!route")
    assert "IPv4 Route Table" in text and "IPv6 Route Table" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["10.0.0.0/24", "On-link"] in [r[:2] for r in rows]
    assert ["fd00::/64", "On-link"] in [r[:2] for r in rows]


def test_ipstats_counts_tcp_and_arp_and_netstat_s_is_the_same(dbg):
    text = run(dbg, "!ipstats")
    counters = dbg.world.hosts["winsrv"].transport.counters()
    assert f"  Passive Opens                       = {counters['tcp_passive_opens']}" in text
    assert counters["tcp_passive_opens"] == 2
    assert "Drops (layer/reason)" in text
    assert run(dbg, "!netstat -s") == text


def test_ipstats_lists_drops_by_layer_and_reason():
    engine = lab_engine()
    try:
        engine.world.hosts["winsrv"].stack.drop("tcp", "bad_checksum")
        text = run(engine, "!ipstats")
        assert "  tcp/bad_checksum                  = 1" in text
    finally:
        engine.close()


def test_copies_lists_each_reason_with_totals(dbg):
    text = run(dbg, "!copies")
    snap = dbg.kernel.copies.snapshot()
    assert snap
    for reason, (copies, nbytes) in snap.items():
        assert any(line.startswith(reason) and line.split()[-2:] == [str(copies), str(nbytes)]
                   for line in text.splitlines())
    assert text.splitlines()[-1] == (f"Total: {sum(c for c, _ in snap.values())} copies, "
                                     f"{sum(b for _, b in snap.values())} bytes")


def test_network_commands_reject_stray_arguments(dbg):
    for line in ("!route x", "!neighbors x", "!copies 1", "!ipstats -q"):
        assert dbg.execute(line).error, line


def test_tcb_shows_the_sack_scoreboard_line_only_when_sack_is_on(dbg):
    rows = dbg.execute("!tcpconn").data["endpoints"]
    live = next(r for r in rows if r["state"] == "ESTABLISHED")
    snap = dbg.execute(f"!tcb {live['address']:x}").data
    assert snap["sack"] is True
    assert snap["sack_scoreboard"] == {"blocks": 0, "sacked_bytes": 0, "pipe": 0, "in_sack_recovery": False}
    text = run(dbg, f"!tcb {live['address']:x}")
    assert "SACK           scoreboard 0 blocks, 0 bytes;  pipe 0  sack retransmits 0" in text
    from wskdbg.render.net import tcb_lines
    busy = dict(snap, sack_scoreboard={"blocks": 3, "sacked_bytes": 8568, "pipe": 4284, "in_sack_recovery": True},
                sack_retransmissions=2)
    assert any(line.strip() == "SACK           scoreboard 3 blocks, 8568 bytes;  pipe 4284  sack retransmits 2"
                                "  in SACK recovery" for line in tcb_lines(busy, 0))
    off = dict(snap, sack=False, sack_scoreboard=None)
    assert not any("scoreboard" in line for line in tcb_lines(off, 0))
