"""!nic itr: the NICs' "Interrupt Moderation Rate" (Intel's ITR; stack/nic/itr.py), set and shown from the debugger."""

from __future__ import annotations

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture(scope="module")
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def _one_echo(*itr: str) -> tuple[int, int, int]:
    """Interrupts, RSC units and coalesced segments on winsrv for one 256 KB echo after `!nic itr` with
    each of `itr` (none: the lab's default)."""
    engine = lab_engine()
    try:
        run(engine, "!offload winsrv rsc=on")
        for args in itr:
            run(engine, f"!nic itr {args}")
        c = engine.world.host("winsrv").nic.counters
        before = c.interrupts, c.rsc_units, c.rsc_coalesced_segments
        out = run(engine, '!echo /w -s 262144 "throttle "')
        assert "262144 echoed intact" in out
        return c.interrupts - before[0], c.rsc_units - before[1], c.rsc_coalesced_segments - before[2]
    finally:
        engine.close()


def test_the_lab_nics_ship_with_adaptive_moderation_as_intels_adapters_do():
    engine = lab_engine()
    try:
        assert {h.nic.itr_setting for h in engine.world.hosts.values()} == {"Adaptive"}
        table = run(engine, "!nic").split("Interrupt moderation", 1)[1].splitlines()
        # the value the standardized keyword shows in Get-NetAdapterAdvancedProperty
        # ("Interrupt Moderation  Enabled  *InterruptModeration {1}"), then Intel's rate setting
        assert table[2].split() == ["Host", "*InterruptModeration", "Rate", "Class", "now", "Ints/s", "now", "Interrupts"]
        assert table[3].split()[:6] == ["winsrv", "1", "(Enabled)", "Adaptive", "lowest_latency", "70000"]
    finally:
        engine.close()


def test_itr_sets_a_fixed_rate_on_one_host_and_nic_shows_it(dbg):
    assert run(dbg, "!nic itr 0n10000 winsrv") == "Interrupt throttle rate is now at most 10000 interrupts per second for winsrv."
    assert dbg.world.host("winsrv").nic.interrupt_throttle_ns == 100_000
    assert dbg.world.host("winsrv").nic.itr_adaptive is None
    assert dbg.world.host("client").nic.itr_setting == "Adaptive"
    rows = {line.split()[0]: line.split() for line in run(dbg, "!nic").splitlines()[-4:]}
    assert rows["winsrv"][3:6] == ["10000", "-", "10000"]
    assert rows["client"][3] == "Adaptive"
    assert run(dbg, "!nic itr off") == "Interrupt Moderation Rate is now Off for winsrv, client, dns, httpbin: no throttle."
    assert all(h.nic.interrupt_throttle_ns == 0 and h.nic.itr_adaptive is None for h in dbg.world.hosts.values())
    assert run(dbg, "!nic").splitlines()[-4].split()[3:6] == ["Off", "-", "no"]


def test_itr_alone_shows_only_the_moderation_table(dbg):
    lines = run(dbg, "!nic itr").splitlines()
    assert lines[0].startswith("Interrupt moderation (*InterruptModeration")
    assert [line.split()[0] for line in lines[3:]] == ["winsrv", "client", "dns", "httpbin"]


def test_itr_named_settings_use_intels_intervals_and_adaptive_comes_back(dbg):
    assert run(dbg, "!nic itr Medium client") == \
        "Interrupt Moderation Rate is now Medium (at most 4111 interrupts per second) for client."
    assert dbg.world.host("client").nic.interrupt_throttle_ns == 950 * 256
    assert run(dbg, "!nic itr adaptive").startswith("Interrupt Moderation Rate is now Adaptive for winsrv, client")
    assert all(h.nic.itr_adaptive is not None for h in dbg.world.hosts.values())


def test_adaptive_takes_fewer_interrupts_and_builds_larger_rsc_units_than_no_throttle_for_the_same_echo():
    # echosrv answers in 2 KB sends, each waiting for its ACK: that half of the echo is latency-bound
    # (low_latency, 20,000 interrupts/s), so the saving is in the client's bulk half: fewer, larger units
    off_interrupts, off_units, off_joined = _one_echo("off")
    interrupts, units, joined = _one_echo()
    assert interrupts < off_interrupts
    assert units < off_units
    assert (units + joined) / units > 1.25 * (off_units + off_joined) / off_units


def test_a_fixed_throttle_on_winsrv_also_takes_fewer_interrupts_than_none():
    off_interrupts, off_units, _ = _one_echo("off")
    throttled_interrupts, throttled_units, _ = _one_echo("off", "0n10000 winsrv")
    assert throttled_interrupts < off_interrupts * 2 // 3
    assert throttled_units < off_units


def test_itr_reads_the_rate_in_the_current_radix_like_every_number_the_debugger_reads(dbg):
    # WinDbg reads every MASM number in the current radix: 16 until `n` changes it (MS Learn, "n (Set
    # Number Base)"); 0n and 0x say their own.
    nic = dbg.world.host("winsrv").nic
    for text in ("2710", "0n10000", "0x2710", "0n5000*2"):
        run(dbg, f"!nic itr {text} winsrv")
        assert nic.interrupt_throttle_ns == 100_000, text
    assert run(dbg, "!nic itr 10000 winsrv") == "Interrupt throttle rate is now at most 65536 interrupts per second for winsrv."
    try:
        assert run(dbg, "n 10") == "base is 10"
        assert run(dbg, "!nic itr 10000 winsrv") == "Interrupt throttle rate is now at most 10000 interrupts per second for winsrv."
        assert run(dbg, "!nic itr 0x2710 winsrv").startswith("Interrupt throttle rate is now at most 10000 ")
    finally:
        assert run(dbg, "n 16") == "base is 16"
    run(dbg, "!nic itr adaptive")


@pytest.mark.parametrize("line, message", [
    ("!nic itr 50", "between 100 and 100000 interrupts per second (0n100 to 0n100000; 50 is 0n80)"),
    ("!nic itr 0n99", "0n99 is 0n99"),
    ("!nic itr 200000", "between 100 and 100000"),
    ("!nic itr 0n100001", "between 100 and 100000"),
    ("!nic itr 10+", "error"),
    ("!nic itr fastest", "unknown Interrupt Moderation Rate 'fastest'"),
    ("!nic itr 1000 nosuch", "nosuch"),
    ("!nic itr low winsrv extra", ""),
    ("!nic bogus", "(passthrough, itr, moderation)"),
])
def test_bad_itr_arguments_are_command_errors(dbg, line, message):
    result = dbg.execute(line)
    assert result.error and message in result.text, result.text


def test_udpload_nomod_turns_moderation_and_its_rate_off_for_the_livelock_experiment():
    engine = lab_engine()
    try:
        run(engine, "!udpload /nomod 1000 1")
        nic = engine.world.host("winsrv").nic
        assert (nic.interrupt_moderation_ns, nic.interrupt_throttle_ns, nic.itr_setting) == (0, 0, "Off")
        assert run(engine, "!nic itr").splitlines()[3].split()[:4] == ["winsrv", "0", "(Disabled)", "Off"]
        assert engine.world.host("client").nic.itr_setting == "Adaptive"
    finally:
        engine.close()


def test_nic_moderation_off_and_on_go_down_tcpips_binding_as_oid_gen_interrupt_moderation():
    engine = lab_engine()
    try:
        nic = engine.world.host("client").nic
        assert nic.itr_setting == "Adaptive" and nic.interrupt_moderation_ns
        oids_before = engine.world.host("client").adapter.counters.oids
        out = run(engine, "!nic moderation off client")
        assert out.startswith("client: OID_GEN_INTERRUPT_MODERATION (NdisInterruptModerationDisabled) queued")
        assert nic.itr_setting == "Adaptive"  # queued: nothing changes until the machine runs
        run(engine, "!ping /w -n 1 winsrv")
        assert engine.world.host("client").adapter.counters.oids == oids_before + 1  # through NDIS to the miniport
        assert (nic.itr_setting, nic.interrupt_moderation_ns, nic.interrupt_throttle_ns) == ("Off", 0, 0)
        assert run(engine, "!nic itr").splitlines()[4].split()[:4] == ["client", "0", "(Disabled)", "Off"]
        assert engine.world.host("winsrv").nic.itr_setting == "Adaptive"
        run(engine, "!nic moderation on client")
        run(engine, "!ping /w -n 1 winsrv")
        assert nic.itr_setting == "Adaptive" and nic.interrupt_moderation_ns  # what was in force came back
    finally:
        engine.close()


@pytest.mark.parametrize("line", ["!nic moderation", "!nic moderation maybe", "!nic moderation on nosuch",
                                  "!nic moderation off client extra"])
def test_bad_nic_moderation_arguments_are_command_errors(dbg, line):
    assert dbg.execute(line).error


def test_nic_itr_typed_after_a_queued_moderation_oid_still_wins_when_the_machine_runs():
    # `!nic moderation off; !nic itr high; g`: the OID is queued for the run, so `!nic itr` queues
    # behind it; the typed order holds (the last word is High), and the OID's status is shown.
    engine = lab_engine()
    try:
        run(engine, "!nic moderation off winsrv")
        out = run(engine, "!nic itr high winsrv")
        assert out.startswith("Interrupt Moderation Rate will be High")
        assert "queued behind the pending OID_GEN_INTERRUPT_MODERATION" in out
        ping = run(engine, "!ping /w -n 1 winsrv")
        assert ("winsrv: OID_GEN_INTERRUPT_MODERATION (NdisInterruptModerationDisabled) completed: "
                "NDIS_STATUS_SUCCESS") in ping
        assert engine.world.host("winsrv").nic.itr_setting == "High"
        assert run(engine, "!nic itr").splitlines()[3].split()[:4] == ["winsrv", "1", "(Enabled)", "High"]
        # with nothing queued, !nic itr takes effect at once again
        assert run(engine, "!nic itr low winsrv").startswith("Interrupt Moderation Rate is now Low")
        assert engine.world.host("winsrv").nic.itr_setting == "Low"
    finally:
        engine.close()


def test_nic_moderation_on_a_host_with_no_bound_interface_is_a_clear_error():
    engine = lab_engine()
    try:
        for interface in engine.world.host("dns").stack.interfaces:
            interface.binding = None  # tcpip unbound from dns's NIC (as after NdisUnbindAdapter)
        result = engine.execute("!nic moderation off")
        assert result.error and "dns has no interface bound to its NIC" in result.text, result.text
        assert run(engine, "!nic itr").splitlines()[3].split()[:4] == ["winsrv", "1", "(Enabled)", "Adaptive"]
        run(engine, "!ping /w -n 1 winsrv")  # nothing was queued for the other hosts either
        assert engine.world.host("winsrv").nic.itr_setting == "Adaptive"
    finally:
        engine.close()
