"""DNS messages, the lab DNS server, and WskGetAddressInfo (hosts table, then DNS over UDP)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, strategies as st
from wsk_harness import Call, WskLab

from stack import wsk
from stack.kernel import STATUS_NOT_FOUND, STATUS_PENDING, STATUS_SUCCESS
from stack.usermode import dns, httpbin
from stack.wire.dns import (FLAG_QR, RCODE_FORMERR, RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA, DnsError, build_query,
                                parse_message)


# --- wire format --------------------------------------------------------------------------------------

def test_query_and_answer_round_trip_with_a_compressed_answer_name():
    zone = dns.Zone()
    zone.add("httpbin.org", "10.0.0.80", "fd00::80")
    query = build_query(0x1234, "HTTPBIN.org.", TYPE_AAAA)
    reply = dns.answer(zone, query)
    msg = parse_message(reply)
    assert msg.id == 0x1234 and msg.flags & FLAG_QR and msg.rcode == 0
    assert [(r.name, r.rtype, IPv6Address(r.data)) for r in msg.answers] == [
        ("HTTPBIN.org", TYPE_AAAA, IPv6Address("fd00::80"))]
    assert b"\xc0\x0c" in reply  # the answer's name points at the question


def test_unknown_names_get_nxdomain_and_garbage_gets_formerr_or_silence():
    zone = dns.Zone()
    assert parse_message(dns.answer(zone, build_query(7, "nowhere.lab", TYPE_A))).rcode == RCODE_NXDOMAIN
    broken = build_query(8, "x.lab", TYPE_A)[:-3]
    assert parse_message(dns.answer(zone, broken)).rcode == RCODE_FORMERR
    assert dns.answer(zone, b"\x01") is None


def test_a_compression_pointer_loop_is_a_dns_error():
    header = bytes.fromhex("abcd01000001000000000000")
    with pytest.raises(DnsError):
        parse_message(header + b"\xc0\x0c" + b"\x00\x01\x00\x01")


@given(st.binary(max_size=80))
def test_any_bytes_parse_or_raise_dns_error(raw):
    try:
        parse_message(raw)
    except DnsError:
        pass


# Labels of 1-20 characters from [a-z0-9] (as st.text: the same strings as from_regex(r"[a-z0-9]{1,20}"),
# without its regex engine at ~5 ms a draw, which made this the suite's costliest property test).
LABELS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)


@given(st.lists(LABELS, min_size=1, max_size=4),
       st.sampled_from([TYPE_A, TYPE_AAAA]), st.integers(0, 0xFFFF))
def test_built_queries_parse_back(labels, qtype, ident):
    name = ".".join(labels)
    msg = parse_message(build_query(ident, name, qtype))
    assert (msg.id, msg.questions[0].name, msg.questions[0].qtype) == (ident, name, qtype)


# --- WskGetAddressInfo -----------------------------------------------------------------------------------

def _lookup(lab: WskLab, name: str, service: str, family: int = wsk.AF_UNSPEC) -> tuple[int, list[tuple]]:
    result = wsk.Ref()
    hints = wsk.ADDRINFOEXW(ai_flags=wsk.AI_CANONNAME, ai_family=family, ai_socktype=wsk.SOCK_STREAM)
    call = lab.call(Call)
    status = lab.call(lab.dispatch.WskGetAddressInfo, lab.npi.Client, name, service, wsk.NS_ALL, None, hints,
                      result, None, None, call.irp)
    lab.run()
    rows = []
    if call.status == STATUS_SUCCESS:
        for node in result.value:
            sa = wsk.to_sockaddr(node.ai_addr)
            rows.append((node.ai_family, str(sa.ip), sa.port, node.ai_canonname, node.ai_protocol))
        lab.call(lab.dispatch.WskFreeAddressInfo, lab.npi.Client, result.value)
    return (status, call.status), rows


def test_get_address_info_resolves_httpbin_over_udp_dns_ipv4_first():
    lab = WskLab()
    httpbin.install(lab.world)
    lab.run()
    (returned, status), rows = _lookup(lab, "httpbin.org", "http")
    assert returned == STATUS_PENDING and status == STATUS_SUCCESS
    assert rows == [(wsk.AF_INET, "10.0.0.80", 80, "httpbin.org", wsk.IPPROTO_TCP),
                    (wsk.AF_INET6, "fd00::80", 80, None, wsk.IPPROTO_TCP)]
    assert lab.world.dns.stats.answered == 2
    assert [b for b in lab.k.pool.allocated_blocks() if b.tag_str == "WskA"] == []  # freed by WskFreeAddressInfo


def test_get_address_info_finds_lab_names_in_the_hosts_table_without_dns():
    lab = WskLab()
    server = dns.install(lab.world)
    lab.run()
    (_, status), rows = _lookup(lab, "client", "7", wsk.AF_INET6)
    assert status == STATUS_SUCCESS and rows == [(wsk.AF_INET6, "fd00::2", 7, "client", wsk.IPPROTO_TCP)]
    assert server.stats.queries == 0


def test_get_address_info_of_an_unknown_name_fails_with_not_found():
    lab = WskLab()
    dns.install(lab.world)
    lab.run()
    (_, status), rows = _lookup(lab, "nowhere.example", "80")
    assert status == STATUS_NOT_FOUND and rows == []


def test_get_name_info_maps_an_address_back_to_its_lab_name():
    lab = WskLab()
    node, service = wsk.Ref(), wsk.Ref()
    call = lab.call(Call)
    lab.call(lab.dispatch.WskGetNameInfo, lab.npi.Client, wsk.SOCKADDR_IN(wsk.AF_INET, 80,
                                                                         IPv4Address("10.0.0.2").packed),
             16, node, service, 0, None, None, call.irp)
    assert call.status == STATUS_SUCCESS and (node.value, service.value) == ("client", "80")
