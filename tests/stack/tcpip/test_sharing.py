"""Sharing transport addresses, row by row as MS Learn's "Sharing Transport Addresses" table
gives it: a second bind after a first one to the same port, each with no option, SO_REUSEADDR
or SO_EXCLUSIVEADDRUSE, each to the wildcard or to a specific address.  CHECK cells are the
default security descriptor's access check: the same owner passes, another owner is denied."""

from __future__ import annotations

import pytest

from stack.kernel.ntstatus import STATUS_ACCESS_DENIED, STATUS_ADDRESS_ALREADY_EXISTS, STATUS_SUCCESS
from stack.tcpip.sharing import SHARING_TABLE, BindTable, Binding, Share

OK, INUSE, DENIED = STATUS_SUCCESS, STATUS_ADDRESS_ALREADY_EXISTS, STATUS_ACCESS_DENIED
CHECK = "CHECK"
SPECIFIC = bytes([10, 0, 0, 1])
D, R, X = Share.DEFAULT, Share.REUSEADDR, Share.EXCLUSIVE

# (second option, second wildcard?) -> results after a first bind of
#   default/wildcard, default/specific, REUSEADDR/wildcard, REUSEADDR/specific, EXCLUSIVE/wildcard, EXCLUSIVE/specific
ROWS = {
    (D, True): (INUSE, OK, INUSE, OK, INUSE, OK),
    (D, False): (CHECK, INUSE, CHECK, DENIED, DENIED, INUSE),
    (R, True): (DENIED, OK, OK, OK, DENIED, OK),
    (R, False): (CHECK, DENIED, OK, OK, DENIED, DENIED),
    (X, True): (INUSE, INUSE, INUSE, INUSE, INUSE, INUSE),
    (X, False): (CHECK, INUSE, CHECK, INUSE, DENIED, INUSE),
}
FIRSTS = ((D, True), (D, False), (R, True), (R, False), (X, True), (X, False))
CASES = [(second, first, expected) for second, row in ROWS.items() for first, expected in zip(FIRSTS, row)]


def _name(case) -> str:
    (s, sw), (f, fw), _ = case
    return f"{s.name}-{'wild' if sw else 'specific'}-after-{f.name}-{'wild' if fw else 'specific'}"


def _bind(table: BindTable, share: Share, wildcard: bool, owner: str) -> int:
    return table.bind(Binding(4, None if wildcard else SPECIFIC, 80, share, owner))


@pytest.mark.parametrize("case", CASES, ids=[_name(c) for c in CASES])
def test_second_bind_by_another_owner_gets_the_table_result(case) -> None:
    (second, second_wild), (first, first_wild), expected = case
    table = BindTable()
    assert _bind(table, first, first_wild, "first") == OK
    want = DENIED if expected == CHECK else expected
    assert _bind(table, second, second_wild, "second") == want


@pytest.mark.parametrize("case", [c for c in CASES if c[2] == CHECK], ids=[_name(c) for c in CASES if c[2] == CHECK])
def test_access_check_passes_for_the_same_owner(case) -> None:
    (second, second_wild), (first, first_wild), _ = case
    table = BindTable()
    assert _bind(table, first, first_wild, "owner") == OK
    assert _bind(table, second, second_wild, "owner") == OK


def test_the_table_has_every_cell_of_the_documented_table() -> None:
    assert len(SHARING_TABLE) == 36 and len(CASES) == 36


def test_different_specific_addresses_never_share() -> None:
    table = BindTable()
    assert table.bind(Binding(4, bytes([10, 0, 0, 1]), 80, X, "a")) == OK
    assert table.bind(Binding(4, bytes([10, 0, 0, 9]), 80, X, "b")) == OK


def test_a_dual_stack_ipv6_wildcard_covers_ipv4_but_a_v6only_one_does_not() -> None:
    table = BindTable()
    assert table.bind(Binding(6, None, 80, D, "a", dual_stack=True)) == OK
    assert table.bind(Binding(4, None, 80, D, "b")) == INUSE
    table = BindTable()
    assert table.bind(Binding(6, None, 80, D, "a", dual_stack=False)) == OK
    assert table.bind(Binding(4, None, 80, D, "b")) == OK


def test_a_released_binding_frees_the_address() -> None:
    table = BindTable()
    first = Binding(4, None, 80, D, "a")
    assert table.bind(first) == OK
    table.release(first)
    assert table.bind(Binding(4, None, 80, D, "b")) == OK
