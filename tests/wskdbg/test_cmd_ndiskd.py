"""!ndiskd.*: adapters, NBLs and NBs, the ownership log, pending NBLs, protocols, OIDs."""

from __future__ import annotations

import re

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture(scope="module")
def dbg():
    engine = lab_engine()
    run(engine, '!echo /w "ndis test"')
    yield engine
    engine.close()


def test_netadapter_table_lists_the_hosts_adapter_with_driver_and_handle(dbg):
    lines = run(dbg, "!ndiskd.netadapter").splitlines()
    assert lines[0].split() == ["Driver", "NetAdapter", "Name"]
    cells = lines[1].split(maxsplit=2)
    assert len(cells[0]) == 16 and len(cells[1]) == 16
    assert cells[2] == "WSKDBG Virtual Ethernet Adapter"


def test_miniport_is_an_alias_of_netadapter(dbg):
    assert run(dbg, "!ndiskd.miniport") == run(dbg, "!ndiskd.netadapter")


def test_netadapter_detail_shows_state_binding_and_real_counters(dbg):
    handle = dbg.execute("!ndiskd.netadapter").data["adapters"][0]["adapter"]
    text = run(dbg, f"!ndiskd.netadapter -handle {handle:x}")
    for section in ("MINIPORT", "STATE", "BINDINGS", "DATAPATH", "MORE INFORMATION"):
        assert f"\n{section}\n" in text
    assert "    Miniport           Running" in text
    assert "    MAC address        " + "-".join(f"{b:02x}" for b in dbg.world.hosts["winsrv"].mac) in text
    assert "    TCPIP              " in text
    counters = dbg.world.hosts["winsrv"].adapter.counters
    assert counters.nbls_indicated > 0
    assert f"NBLs indicated     0n{counters.nbls_indicated} " in text
    assert run(dbg, f"!ndiskd.netadapter {handle:x}") == text


def test_netadapter_rejects_an_address_that_is_not_an_adapter_with_a_caret(dbg):
    result = dbg.execute("!ndiskd.netadapter -handle 1234")
    assert result.error
    assert "is not a NetAdapter" in result.text and "^" in result.text


# MS Learn, "!ndiskd.nbl" (Examples):
# 2: kd> !ndiskd.nbl ffffdf80149524a0
#     NBL                ffffdf80149524a0    Next NBL           NULL
#     First NB           ffffdf8014952610    Source             ffffdf80140c71a0 - Microsoft Kernel Debug Network Adapter
#     Flags              INDICATED, RETURNED, NBL_ALLOCATED, PROTOCOL_020_0,
#                        PROTOCOL_200_0
#
#     Walk the NBL chain                     Dump data payload
#     Show out-of-band information
#     Review NBL history
def test_nbl_default_view_is_the_documented_one(dbg):
    received = [e for e in dbg.execute("!ndiskd.nbllog -force").data["events"] if e["event"] == "Indicated"]
    nbl = received[-1]["nbl"]  # a receive NBL of netvmini's pool: indicated, then returned
    lines = run(dbg, f"!ndiskd.nbl {nbl:x}").splitlines()
    assert lines[0] == f"    NBL                {nbl:016x}    Next NBL           NULL"
    assert re.fullmatch(r"    First NB           [0-9a-f]{16}    Source             [0-9a-f]{16} - .+", lines[1])
    assert lines[2].startswith("    Flags              ") and "INDICATED" in lines[2]
    flags_end = lines.index("")
    assert all(line.startswith(" " * 23) and line[23] != " " for line in lines[3:flags_end])
    assert lines[flags_end:] == ["", "    Walk the NBL chain                     Dump data payload",
                                 "    Show out-of-band information", "    Review NBL history"]
    assert "MDL" not in "\n".join(lines) and "Current owner" not in "\n".join(lines)


def test_nbl_options_show_nbs_mdls_owner_and_data(dbg):
    received = [e for e in dbg.execute("!ndiskd.nbllog -force").data["events"] if e["event"] == "Indicated"]
    nbl = received[-1]["nbl"]
    chain = run(dbg, f"!ndiskd.nbl {nbl:x} -chain")
    assert "Source pool" in chain and "MDL [current]" in chain and "Walk the NBL chain" not in chain
    assert "Current owner      netvmini" in run(dbg, f"!ndiskd.nbl {nbl:x} -NblCurrentOwner")
    assert "Current owner      netvmini" in run(dbg, f"!ndiskd.nbl {nbl:x} -basic")
    data = run(dbg, f"!ndiskd.nbl {nbl:x} -data")
    length = dbg.execute(f"!ndiskd.nbl {nbl:x}").data["data_length"]
    dump = [line for line in data.splitlines() if line.startswith("ffff") and "`" in line[:9]]
    assert "NET_BUFFER " in data and len(dump) == (length + 15) // 16


def test_flags_wrap_under_their_column():
    from wskdbg.render.net import wrapped_pair
    lines = wrapped_pair("Flags", ["INDICATED", "RETURNED", "NBL_ALLOCATED", "PROTOCOL_020_0", "PROTOCOL_200_0"])
    assert lines == ["    Flags              INDICATED, RETURNED, NBL_ALLOCATED, PROTOCOL_020_0,",
                     "                       PROTOCOL_200_0"]


def test_nb_and_nbl_reject_wrong_objects(dbg):
    assert "is not a NET_BUFFER_LIST" in dbg.execute("!ndiskd.nbl 10").text
    assert "an NBL address is required" in dbg.execute("!ndiskd.nbl").text
    assert dbg.execute("!ndiskd.nb 10").error


def test_nb_shows_length_offset_and_current_mdl(dbg):
    nbl_addr = dbg.execute("!ndiskd.nbllog").data["events"][-1]["nbl"]
    nb = dbg.execute(f"!ndiskd.nbl {nbl_addr:x}").data["nbs"][0]["address"]
    text = run(dbg, f"!ndiskd.nb {nb:x}")
    assert text.splitlines()[0].startswith(f"    NB                 {nb:016x}")
    assert "Current MDL        [First MDL]" in text


def test_nbllog_filters_by_nbl_and_limits_to_200_without_force(dbg):
    everything = dbg.execute("!ndiskd.nbllog -force").data
    limited = dbg.execute("!ndiskd.nbllog")
    assert everything["total"] > 200
    assert len(limited.data["events"]) == 200
    assert "-force shows them all" in limited.text
    one = everything["events"][-1]["nbl"]
    rows = dbg.execute(f"!ndiskd.nbllog -nbl {one:x}").data["events"]
    assert rows and all(r["nbl"] == one for r in rows)
    assert rows[0]["event"] == "Allocated"


def test_pendingnbls_reports_none_when_the_lab_is_quiet(dbg):
    text = run(dbg, "!ndiskd.pendingnbls")
    assert "PHASE 3/3: Found 0 pending NBLs." in text


def test_protocol_lists_tcpip_and_its_handlers(dbg):
    listing = run(dbg, "!ndiskd.protocol")
    assert listing.splitlines()[0].endswith(" - TCPIP")
    handle = dbg.execute("!ndiskd.protocol").data["protocols"][0]["address"]
    detail = run(dbg, f"!ndiskd.protocol {handle:x}")
    assert "ReceiveNetBufferListsHandler" in detail and "tcpip!FlReceiveNetBufferListChain" in detail


def test_oid_and_help(dbg):
    assert "No OIDs are pending." in run(dbg, "!ndiskd.oid")
    assert "nbllog" in run(dbg, "!ndiskd.help")


def test_unknown_option_points_at_it(dbg):
    result = dbg.execute("!ndiskd.nbllog -bogus")
    assert result.error and result.data["position"] == len("!ndiskd.nbllog ")


def test_nbl_info_decodes_the_receive_checksum_result(dbg):
    received = [e for e in dbg.execute("!ndiskd.nbllog -force").data["events"] if e["event"] == "Indicated"]
    nbl = received[-1]["nbl"]
    text = run(dbg, f"!ndiskd.nbl {nbl:x} -info")
    assert "Out-of-band information:" in text
    assert "TcpIpChecksumNetBufferListInfo" in text and "Succeeded" in text


def test_nbl_info_shows_the_coalesced_segment_count_of_an_rsc_receive():
    from stack.nic import NicOffloads
    from stack.world import default_world
    from wskdbg.engine import Engine

    engine = Engine(factory=lambda seed: default_world(seed, offloads=NicOffloads(rsc=True)), seed=1)
    try:
        run(engine, '!echo /w -s 60000 "rsc"')
        events = engine.execute("!ndiskd.nbllog -force").data["events"]
        shown = [engine.execute(f"!ndiskd.nbl {e['nbl']:x} -info") for e in events if e["event"] == "Indicated"]
        coalesced = [r for r in shown if "CoalescedSegCount" in r.text]
        assert coalesced, "a 60000-byte echo over RSC NICs coalesces at least once"
        row = next(i for i in coalesced[0].data["info"] if i["name"] == "TcpRecvSegCoalesceInfo")
        assert row["value"] & 0xFFFF >= 2
        assert "TcpChecksumValueInvalid" in coalesced[0].text
    finally:
        engine.close()
