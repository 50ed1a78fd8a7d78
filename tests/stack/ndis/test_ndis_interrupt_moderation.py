"""OID_GEN_INTERRUPT_MODERATION through NdisOidRequest to netvmini (stack/ndis/interrupt_moderation.py).

MS Learn: the OID is mandatory for NDIS 6.0 miniports, query and set; the query returns
NDIS_INTERRUPT_MODERATION_PARAMETERS (header NDIS_OBJECT_TYPE_DEFAULT / revision 1 / size 12, Flags,
InterruptModeration Unknown 0, NotSupported 1, Enabled 2, Disabled 3); a set with Enabled enables
moderation, "otherwise, it should disable interrupt moderation".  Here Enabled is the NIC's
"Interrupt Moderation Rate" (stack/nic/itr.py) and its moderation delay.
"""

from __future__ import annotations

import pytest
from ndis_harness import MAC_A, MAC_B, ethernet, two_hosts

from stack.ndis import NDIS_OID_REQUEST, NdisOidRequest, NdisRequestSetInformation
from stack.ndis.constants import (NDIS_STATUS_BUFFER_TOO_SHORT, NDIS_STATUS_INVALID_DATA,
                                  NDIS_STATUS_INVALID_LENGTH, NDIS_STATUS_INVALID_PARAMETER, NDIS_STATUS_SUCCESS,
                                  OID_GEN_INTERRUPT_MODERATION, OID_GEN_SUPPORTED_LIST, oid_name)
from stack.ndis.interrupt_moderation import (NDIS_INTERRUPT_MODERATION_PARAMETERS, NdisInterruptModerationDisabled,
                                             NdisInterruptModerationEnabled, NdisInterruptModerationNotSupported,
                                             NdisInterruptModerationUnknown)
from stack.nic.events import Interrupt

US = 1000


def oid(h, request: NDIS_OID_REQUEST) -> int:
    return h.machine.run_in(h.proto_b.kernel, NdisOidRequest, h.proto_b.open, request)


def query(h) -> NDIS_INTERRUPT_MODERATION_PARAMETERS:
    req = NDIS_OID_REQUEST(OID_GEN_INTERRUPT_MODERATION)
    assert oid(h, req) == NDIS_STATUS_SUCCESS
    assert req.BytesWritten == 12
    return NDIS_INTERRUPT_MODERATION_PARAMETERS.from_bytes(bytes(req.InformationBuffer))


def set_moderation(h, value: int, **header) -> int:
    raw = NDIS_INTERRUPT_MODERATION_PARAMETERS(value, **header).to_bytes()
    return oid(h, NDIS_OID_REQUEST(OID_GEN_INTERRUPT_MODERATION, RequestType=NdisRequestSetInformation,
                                   InformationBuffer=raw))


def test_the_oid_and_its_values_are_the_real_ones_and_the_miniport_lists_it():
    assert OID_GEN_INTERRUPT_MODERATION == 0x00010209 and oid_name(0x00010209) == "OID_GEN_INTERRUPT_MODERATION"
    assert (NdisInterruptModerationUnknown, NdisInterruptModerationNotSupported, NdisInterruptModerationEnabled,
            NdisInterruptModerationDisabled) == (0, 1, 2, 3)
    h = two_hosts()
    req = NDIS_OID_REQUEST(OID_GEN_SUPPORTED_LIST)
    assert oid(h, req) == NDIS_STATUS_SUCCESS
    raw = bytes(req.InformationBuffer)
    assert OID_GEN_INTERRUPT_MODERATION in {int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)}


def test_query_reports_enabled_with_a_header_of_revision_1_while_the_nic_moderates():
    h = two_hosts(interrupt_moderation_ns=10 * US)
    h.nic_b.set_interrupt_moderation_rate("Adaptive")
    p = query(h)
    assert (p.Type, p.Revision, p.Size, p.Flags) == (0x80, 1, 12, 0)  # no reset needed to change it
    assert p.InterruptModeration == NdisInterruptModerationEnabled


def test_query_reports_disabled_when_nothing_holds_interrupts_back():
    h = two_hosts(interrupt_moderation_ns=0)  # the rate Off and no moderation delay
    assert query(h).InterruptModeration == NdisInterruptModerationDisabled
    h.nic_b.set_interrupt_moderation_rate(10_000)  # a rate alone is moderation too
    assert query(h).InterruptModeration == NdisInterruptModerationEnabled


def test_query_into_a_short_buffer_asks_for_12_bytes():
    h = two_hosts()
    req = NDIS_OID_REQUEST(OID_GEN_INTERRUPT_MODERATION, InformationBufferLength=8)
    assert oid(h, req) == NDIS_STATUS_BUFFER_TOO_SHORT and req.BytesNeeded == 12


def test_set_disabled_turns_the_rate_and_the_delay_off_and_set_enabled_brings_back_what_was_in_force():
    h = two_hosts(interrupt_moderation_ns=10 * US)
    nic = h.nic_b
    nic.set_interrupt_moderation_rate("Medium")
    assert set_moderation(h, NdisInterruptModerationDisabled) == NDIS_STATUS_SUCCESS
    assert (nic.interrupt_moderation_ns, nic.interrupt_throttle_ns, nic.itr_setting) == (0, 0, "Off")
    assert query(h).InterruptModeration == NdisInterruptModerationDisabled
    assert set_moderation(h, NdisInterruptModerationEnabled) == NDIS_STATUS_SUCCESS
    assert (nic.interrupt_moderation_ns, nic.itr_setting) == (10 * US, "Medium")
    assert nic.interrupt_throttle_ns == 950 * 256
    assert query(h).InterruptModeration == NdisInterruptModerationEnabled
    assert h.nic_a.itr_setting == "Off" and h.nic_a.interrupt_moderation_ns == 10 * US  # only B's adapter


def test_set_enabled_on_a_nic_that_never_moderated_turns_on_the_vendors_default_adaptive():
    h = two_hosts(interrupt_moderation_ns=0)
    assert set_moderation(h, NdisInterruptModerationEnabled) == NDIS_STATUS_SUCCESS
    assert h.nic_b.itr_setting == "Adaptive" and h.nic_b.itr_adaptive is not None
    assert set_moderation(h, NdisInterruptModerationEnabled) == NDIS_STATUS_SUCCESS  # already on: unchanged
    assert h.nic_b.itr_setting == "Adaptive"


@pytest.mark.parametrize("value", [NdisInterruptModerationUnknown, NdisInterruptModerationNotSupported])
def test_a_set_with_any_value_but_enabled_disables_moderation(value):
    h = two_hosts(interrupt_moderation_ns=10 * US)
    h.nic_b.set_interrupt_moderation_rate("Adaptive")
    assert set_moderation(h, value) == NDIS_STATUS_SUCCESS
    assert query(h).InterruptModeration == NdisInterruptModerationDisabled


@pytest.mark.parametrize("raw, status", [
    (NDIS_INTERRUPT_MODERATION_PARAMETERS(NdisInterruptModerationDisabled).to_bytes()[:8], NDIS_STATUS_INVALID_LENGTH),
    (NDIS_INTERRUPT_MODERATION_PARAMETERS(NdisInterruptModerationDisabled, Type=0x81).to_bytes(),
     NDIS_STATUS_INVALID_PARAMETER),
    (NDIS_INTERRUPT_MODERATION_PARAMETERS(NdisInterruptModerationDisabled, Revision=0).to_bytes(),
     NDIS_STATUS_INVALID_PARAMETER),
    (NDIS_INTERRUPT_MODERATION_PARAMETERS(NdisInterruptModerationDisabled, Size=8).to_bytes(),
     NDIS_STATUS_INVALID_PARAMETER),
    (NDIS_INTERRUPT_MODERATION_PARAMETERS(7).to_bytes(), NDIS_STATUS_INVALID_DATA),
])
def test_a_malformed_set_fails_and_changes_nothing(raw, status):
    h = two_hosts(interrupt_moderation_ns=10 * US)
    h.nic_b.set_interrupt_moderation_rate("Adaptive")
    req = NDIS_OID_REQUEST(OID_GEN_INTERRUPT_MODERATION, RequestType=NdisRequestSetInformation, InformationBuffer=raw)
    assert oid(h, req) == status
    if status == NDIS_STATUS_INVALID_LENGTH:
        assert req.BytesNeeded == 12
    assert h.nic_b.itr_setting == "Adaptive" and h.nic_b.interrupt_moderation_ns == 10 * US


def _interrupts_for_a_burst(disable: bool) -> int:
    """B's interrupts for 100 back-to-back frames from A, with B's moderation as the lab ships it
    (Adaptive, 10 us delay) or after an OID set to Disabled."""
    h = two_hosts(latency_ns=0, interrupt_moderation_ns=10 * US, rx_ring_size=512)
    h.nic_b.set_interrupt_moderation_rate("Adaptive")
    if disable:
        assert set_moderation(h, NdisInterruptModerationDisabled) == NDIS_STATUS_SUCCESS
    host_b = h.proto_b.kernel.name
    seen = [0]
    h.machine.bus.subscribe(lambda e: seen.__setitem__(0, seen[0] + 1)
                            if isinstance(e, Interrupt) and e.host == host_b else None)
    at = h.scheduler.now_ns + 1_000 * US
    for i in range(100):
        at += 2 * US
        h.scheduler.call_at(at, h.proto_a.kernel, h.proto_a.send, ethernet(MAC_B, MAC_A, bytes([i]) * 1500))
    h.run()
    assert len(h.proto_b.received) == 100
    return seen[0]


def test_disabled_through_the_oid_the_nic_interrupts_for_each_frame_of_a_burst():
    # "To allow accurate measurement of round trip time ..., NDIS provides the ability to disable and
    # enable interrupt moderation on demand" (MS Learn, "Interrupt Moderation")
    moderated = _interrupts_for_a_burst(disable=False)
    disabled = _interrupts_for_a_burst(disable=True)
    assert disabled >= 90 and moderated < disabled // 2, (moderated, disabled)
