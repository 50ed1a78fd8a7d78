"""The Adaptive "Interrupt Moderation Rate" as a table: classes, transitions, hysteresis, smoothing (stack/nic/itr.py).

The shape is that of Intel's drivers (Linux igb_update_itr / e1000_set_itr): per interrupt, the
traffic since the last one (packets, bytes, average size) moves the class at most one row of the
table, and a falling interrupt rate applies at once while a rising one comes in quarter steps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from stack.nic.itr import (BULK_LATENCY, CLASS_RATES, FIXED_SETTINGS, LOW_LATENCY, LOWEST_LATENCY, TRANSITIONS,
                           AdaptiveItr, fixed_interval_ns, next_class, next_rate, setting_name)

FULL = 1514  # a full Ethernet frame at MTU 1500


def _counters():
    return SimpleNamespace(frames_in=0, bytes_in=0, frames_out=0, bytes_out=0)


def _interrupt(itr: AdaptiveItr, c, packets: int, size: int, *, tx: bool = False) -> int:
    """`packets` frames of `size` bytes arrived (or were sent) since the last interrupt; the next interval."""
    if tx:
        c.frames_out += packets
        c.bytes_out += packets * size
    else:
        c.frames_in += packets
        c.bytes_in += packets * size
    return itr.update(c)


def test_every_class_has_a_rate_and_every_rule_leads_to_a_class():
    assert CLASS_RATES[LOWEST_LATENCY] > CLASS_RATES[LOW_LATENCY] > CLASS_RATES[BULK_LATENCY]
    assert {rule.to for rules in TRANSITIONS.values() for rule in rules} <= set(CLASS_RATES)
    assert all(rule.to != current for current, rules in TRANSITIONS.items() for rule in rules)


def test_bulk_traffic_moves_up_one_class_per_interrupt_to_bulk_latency():
    itr, c = AdaptiveItr(), _counters()
    assert itr.latency_class == LOWEST_LATENCY
    _interrupt(itr, c, 12, FULL)  # 18 KB of full frames in one lowest-latency interval
    assert itr.latency_class == LOW_LATENCY
    interval = _interrupt(itr, c, 12, FULL)
    assert itr.latency_class == BULK_LATENCY
    assert interval == 1_000_000_000 // CLASS_RATES[BULK_LATENCY] == 250_000  # 4000 interrupts/s: 250 us


def test_a_large_send_average_goes_straight_to_bulk():
    itr, c = AdaptiveItr(), _counters()
    _interrupt(itr, c, 1, 9014)  # a jumbo frame
    assert itr.latency_class == BULK_LATENCY


def test_a_quiet_interactive_period_lowers_the_throttle_back_to_lowest_latency():
    itr, c = AdaptiveItr(), _counters()
    for _ in range(3):
        _interrupt(itr, c, 12, FULL)
    assert itr.latency_class == BULK_LATENCY
    _interrupt(itr, c, 1, 74)  # a keystroke's worth: traffic has died down
    assert itr.latency_class == LOW_LATENCY
    _interrupt(itr, c, 1, 74)
    assert itr.latency_class == LOWEST_LATENCY


def test_the_same_traffic_keeps_whichever_class_it_finds_hysteresis():
    # 8 frames of 1000 bytes per interrupt: not enough to leave lowest_latency (which wants fewer,
    # larger bursts or 10 KB), not little enough to leave bulk_latency (which wants < 1500 bytes).
    quiet, c1 = AdaptiveItr(), _counters()
    busy, c2 = AdaptiveItr(), _counters()
    for _ in range(3):
        _interrupt(busy, c2, 12, FULL)
    for _ in range(5):
        _interrupt(quiet, c1, 8, 1000)
        _interrupt(busy, c2, 8, 1000)
    assert quiet.latency_class == LOWEST_LATENCY
    assert busy.latency_class == BULK_LATENCY


def test_an_interrupt_with_no_packets_keeps_the_class():
    assert next_class(BULK_LATENCY, 0, 0) == BULK_LATENCY
    assert next_class(LOWEST_LATENCY, 0, 0) == LOWEST_LATENCY


def test_many_small_packets_at_line_rate_are_latency_traffic_not_bulk():
    assert next_class(BULK_LATENCY, 150, 150 * 200) == LOW_LATENCY  # 30 KB of 200-byte packets
    assert next_class(LOW_LATENCY, 150, 150 * 200) == LOWEST_LATENCY
    assert next_class(BULK_LATENCY, 60, 60 * FULL) == BULK_LATENCY  # a 10 Gb/s stream of full frames stays bulk


def test_receive_and_transmit_are_classified_apart_and_the_more_moderated_wins():
    itr, c = AdaptiveItr(), _counters()
    for _ in range(2):
        c.frames_out += 1  # an ACK sent per interrupt while data streams in
        c.bytes_out += 66
        _interrupt(itr, c, 12, FULL)
    assert (itr.rx_class, itr.tx_class) == (BULK_LATENCY, LOWEST_LATENCY)
    assert itr.latency_class == BULK_LATENCY


def test_the_rate_falls_at_once_and_rises_a_quarter_of_the_target_at_a_time():
    assert next_rate(70_000, 4_000) == 4_000
    assert next_rate(4_000, 20_000) == 9_000
    assert next_rate(9_000, 20_000) == 14_000
    assert next_rate(19_000, 20_000) == 20_000
    itr, c = AdaptiveItr(), _counters()
    for _ in range(3):
        _interrupt(itr, c, 12, FULL)
    rates = []
    for _ in range(6):
        _interrupt(itr, c, 1, 74)
        rates.append(itr.rate)
    assert rates == [9_000, 26_500, 44_000, 61_500, 70_000, 70_000]


def test_a_two_segment_reply_counts_as_two_packets_not_one_bulk_sized_one():
    itr, c = AdaptiveItr(), _counters()
    for _ in range(4):
        c.frames_in, c.bytes_in = c.frames_in + 2, c.bytes_in + 2180  # one RSC unit or large send of 2 segments
        itr.update(c)
    assert itr.latency_class == LOW_LATENCY  # request/response, not bulk


def test_restart_counts_only_traffic_after_it():
    itr, c = AdaptiveItr(), _counters()
    c.frames_in, c.bytes_in = 1000, 1000 * FULL  # before Adaptive was switched on
    itr.restart(c)
    _interrupt(itr, c, 1, 74)
    assert itr.latency_class == LOWEST_LATENCY


@pytest.mark.parametrize("name, per_second", [("Minimal", 19_531), ("Low", 9_765), ("Medium", 4_111),
                                              ("High", 1_953), ("Extreme", 1_085)])
def test_fixed_settings_are_intels_itr_values_in_256_ns_units(name, per_second):
    assert fixed_interval_ns(name) == FIXED_SETTINGS[name] * 256
    assert 1_000_000_000 // fixed_interval_ns(name) == per_second


def test_settings_are_named_in_any_case_and_bad_ones_are_errors():
    assert setting_name("ADAPTIVE") == "Adaptive"
    assert setting_name("extreme") == "Extreme"
    assert setting_name("fast") is None
    assert fixed_interval_ns("Off") == 0
    assert fixed_interval_ns(10_000) == 100_000
    with pytest.raises(ValueError):
        fixed_interval_ns(50)
    with pytest.raises(ValueError):
        fixed_interval_ns("Adaptive")


def test_a_10_gbps_nic_throttles_bulk_to_ixgbes_12k_interrupts_and_keeps_it_across_restart():
    # Linux ixgbe_set_itr: bulk_latency -> IXGBE_12K_ITR (commit 8ac34f10a5ea4, "Limit lowest interrupt
    # rate for adaptive interrupt moderation to 12K"); igb's 4K stays for a 1 Gb/s NIC.
    ten, slow, c1, c2 = AdaptiveItr(10_000_000_000), AdaptiveItr(1_000_000_000), _counters(), _counters()
    for _ in range(3):
        _interrupt(ten, c1, 12, FULL)
        _interrupt(slow, c2, 12, FULL)
    assert ten.latency_class == slow.latency_class == BULK_LATENCY
    assert ten.interval_ns() == 1_000_000_000 // 12_000  # 83 us: 69 full frames at 10 Gb/s
    assert slow.interval_ns() == 250_000
    ten.restart(c1)
    for _ in range(3):
        _interrupt(ten, c1, 12, FULL)
    assert ten.interval_ns() == 1_000_000_000 // 12_000
