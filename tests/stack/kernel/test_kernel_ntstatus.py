"""Part 6: NTSTATUS values and names."""

from __future__ import annotations

from stack.kernel import (STATUS_BUFFER_OVERFLOW, STATUS_CANCELLED, STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING,
                          STATUS_SUCCESS, STATUS_TIMEOUT, STATUS_UNSUCCESSFUL, NT_SUCCESS)
from stack.kernel.ntstatus import STATUS_NAMES, status_from_name, status_name


def test_status_values_are_the_ntstatus_h_ones():
    assert (STATUS_SUCCESS, STATUS_TIMEOUT, STATUS_PENDING) == (0, 0x102, 0x103)
    assert STATUS_MORE_PROCESSING_REQUIRED == 0xC0000016
    assert STATUS_CANCELLED == 0xC0000120
    assert STATUS_UNSUCCESSFUL == 0xC0000001


def test_status_names_round_trip_and_unknown_codes_print_as_hex():
    assert status_name(STATUS_PENDING) == "STATUS_PENDING"
    assert status_name(0) == "STATUS_SUCCESS"  # not STATUS_WAIT_0
    assert status_name(-0x3FFFFFEA) == "STATUS_MORE_PROCESSING_REQUIRED"  # a negative C int
    assert status_name(0xC0DE0001) == "0xc0de0001"
    assert status_from_name("STATUS_CANCELLED") == STATUS_CANCELLED
    assert status_from_name(" pending ") == STATUS_PENDING
    assert status_from_name("STATUS_NO_SUCH_THING") is None
    for value, name in STATUS_NAMES.items():
        assert status_from_name(name) == value


def test_nt_success_counts_success_and_informational_codes_only():
    assert NT_SUCCESS(STATUS_SUCCESS) and NT_SUCCESS(STATUS_PENDING) and NT_SUCCESS(STATUS_TIMEOUT)
    assert not NT_SUCCESS(STATUS_BUFFER_OVERFLOW)  # a warning
    assert not NT_SUCCESS(STATUS_UNSUCCESSFUL) and not NT_SUCCESS(STATUS_CANCELLED)
    assert not NT_SUCCESS(-1)
