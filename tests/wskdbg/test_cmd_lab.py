"""!lab, !fault and !capture on the default lab."""

from __future__ import annotations

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def test_lab_shows_hosts_addresses_macs_links_and_switch(dbg):
    text = run(dbg, "!lab")
    rows = [line.split() for line in text.splitlines()]
    winsrv_mac = "-".join(f"{b:02x}" for b in dbg.world.hosts["winsrv"].mac)
    assert ["winsrv", "10.0.0.1/24", "fd00::1/64", winsrv_mac, "winsrv-link", "sw0/winsrv"] in rows
    assert ["client", "10.0.0.2/24", "fd00::2/64"] in [r[:3] for r in rows]
    assert [r[:3] for r in rows if r and r[0] == "client-link"] == [["client-link", "0", "10"],
                                                                    ["client-link", "1", "10"]]
    assert "Switch sw0: forwarded 0, flooded 0" in text and "Capture: off" in text


def test_lab_counts_frames_and_learns_macs_after_traffic(dbg):
    run(dbg, "!ping -n 1 /w winsrv")
    data = dbg.execute("!lab").data
    client_link = next(link for link in data["links"] if link["name"] == "client-link")
    assert client_link["ends"][0]["frames_in"] == 2  # ARP request, echo request
    assert {port for _, port, _ in data["switch"]["macs"]} == {"winsrv", "client"}


def test_fault_sets_percentages_on_one_direction_and_lab_shows_them(dbg):
    result = dbg.execute("!fault client loss=2% dup=1% reorder=1% corrupt=1% dir=out")
    assert not result.error
    ends = dbg.world.hosts["client"].link.ends
    assert (ends[0].faults.loss, ends[0].faults.duplicate, ends[0].faults.reorder, ends[0].faults.corrupt) == \
        (0.02, 0.01, 0.01, 0.01)
    assert not ends[1].faults.any
    line = next(line for line in run(dbg, "!lab").splitlines() if line.split()[:2] == ["client-link", "0"])
    assert line.endswith("loss=2% dup=1% reorder=1% corrupt=1%")
    run(dbg, "!fault clear")
    assert not ends[0].faults.any


def test_fault_accepts_fractions_and_both_directions(dbg):
    run(dbg, "!fault winsrv loss=0.5")
    assert [e.faults.loss for e in dbg.world.hosts["winsrv"].link.ends] == [0.5, 0.5]


def test_lost_frames_are_retransmitted_and_counted_on_the_link(dbg):
    run(dbg, "!ping -n 1 /w winsrv")  # echosrv already runs in the standard lab
    run(dbg, "!fault client loss=20% dir=out")
    out = run(dbg, "!echo /w -n 3 -s 3000 x")
    assert "all echoed intact" in out
    assert dbg.world.hosts["client"].link.ends[0].counters.lost > 0
    # the connection is in TIME_WAIT now (only its time-wait TCB is left): the stack counted them
    assert dbg.world.hosts["client"].transport.counters()["tcp_segments_retransmitted"] > 0


@pytest.mark.parametrize("line, message, column", [
    ("!fault", "say which host", 6),
    ("!fault nosuch loss=1%", "no host named 'nosuch'", 7),
    ("!fault client loss=150%", "outside 0..100%", 19),
    ("!fault client loss=abc", "is not a probability", 19),
    ("!fault client jitter=1%", "unknown fault 'jitter'", 14),
    ("!fault client dir=up", "dir is in, out or both", 18),
    ("!fault client loss", "expected key=value", 14),
])
def test_fault_errors_say_what_and_where(dbg, line, message, column):
    result = dbg.execute(line)
    assert result.error and message in result.text
    assert result.data["position"] == column  # the caret sits under the offending text


def test_capture_writes_a_pcap_of_the_frames_on_the_links(dbg, tmp_path):
    target = tmp_path / "lab.pcap"
    assert "No capture is running." == run(dbg, "!capture")
    run(dbg, f"!capture start {target}")
    assert dbg.execute(f"!capture start {target}").error  # only one at a time
    run(dbg, "!ping -n 1 /w winsrv")
    assert "frames so far" in run(dbg, "!capture")
    out = run(dbg, "!capture stop")
    frames = int(out.split()[1])
    # the broadcast ARP request enters client's link and is flooded to the three others; the ARP
    # reply and the echo request/reply are each seen entering two links
    assert frames == 4 + 2 + 2 + 2
    raw = target.read_bytes()
    assert raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")  # pcap magic (us or ns)
    assert dbg.execute("!capture stop").error


def test_offload_lists_every_hosts_adapter_offloads():
    engine = lab_engine()
    try:
        lines = run(engine, "!offload").splitlines()
        assert lines[0].split()[:4] == ["Host", "Checksum", "LSO", "RSC"]
        assert lines[1].split()[:5] == ["winsrv", "on", "on", "(65536)", "off"]
    finally:
        engine.close()


def test_offload_switches_rsc_and_lso_through_the_oid_path_when_the_machine_runs():
    engine = lab_engine()
    try:
        winsrv = engine.world.hosts["winsrv"]
        run(engine, "!offload winsrv rsc=on lso=off")
        assert not winsrv.nic.offloads.rsc  # queued, not yet run
        oids = winsrv.adapter.counters.oids
        run(engine, '!echo /w -s 30000 "x"')
        assert winsrv.nic.offloads.rsc and not winsrv.nic.offloads.lso
        assert winsrv.adapter.counters.oids == oids + 1
        assert all(i.lso_v4_max == 0 for i in winsrv.stack.interfaces)  # tcpip took the status indication
        row = next(r for r in engine.execute("!offload").data["hosts"] if r["host"] == "winsrv")
        assert row["rsc"] and row["rsc_units"] > 0 and row["rsc_coalesced"] > 0
    finally:
        engine.close()


def test_offload_rejects_unknown_hosts_keys_and_values_with_a_caret():
    engine = lab_engine()
    try:
        for line, message in (("!offload nohost rsc=on", "no host named"), ("!offload winsrv tso=on", "unknown offload"),
                              ("!offload winsrv rsc=maybe", "rsc=on or rsc=off"), ("!offload winsrv", "say what")):
            result = engine.execute(line)
            assert result.error and message in result.text and "^" in result.text, line
    finally:
        engine.close()


def test_offload_lsosize_sets_the_lsov2_max_offload_size_and_the_largest_send_shows():
    # !offload rows: `Host Checksum LSO RSC LSO frames largest ...` (the lab's own table; LSO shows
    # the adapter's LSOv2 MaxOffLoadSize in parentheses, `largest` the biggest large send so far)
    engine = lab_engine()
    try:
        client = engine.world.hosts["client"]
        run(engine, "!offload client lsosize=262144")
        assert client.nic.offloads.lso_max_size == 65536  # queued, not yet run
        run(engine, '!echo /w -n 3 -s 262144 "big "')
        assert client.nic.offloads.lso_max_size == 262144
        assert all(i.lso_v4_max == 262144 for i in client.stack.interfaces if i.binding is not None)
        row = next(r for r in engine.execute("!offload").data["hosts"] if r["host"] == "client")
        assert row["lso_max"] == 262144 and row["lso_largest"] > 65536
        line = next(line for line in run(engine, "!offload").splitlines() if line.startswith("client"))
        assert line.split()[2:4] == ["on", "(262144)"] and int(line.split()[6]) == row["lso_largest"]
        for bad in ("!offload client lsosize=300000", "!offload client lsosize=big"):
            result = engine.execute(bad)
            assert result.error and "MaxOffLoadSize" in result.text and "^" in result.text, bad
    finally:
        engine.close()
