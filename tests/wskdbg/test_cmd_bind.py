"""`!bind`: bind sockets from the prompt and read the sharing table's answers."""

from __future__ import annotations

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture(scope="module")
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def test_specific_bind_after_another_owners_wildcard_is_access_denied_and_same_owner_succeeds(dbg) -> None:
    assert run(dbg, "!bind -o procA tcp 0.0.0.0:7001").endswith("STATUS_SUCCESS - socket 1")
    denied = dbg.execute("!bind -o procB tcp 10.0.0.1:7001")
    assert denied.data["status_name"] == "STATUS_ACCESS_DENIED"
    assert run(dbg, "!bind -o procA tcp 10.0.0.1:7001").endswith("STATUS_SUCCESS - socket 2")
    assert dbg.execute("!bind -o procB tcp 0.0.0.0:7001").data["status_name"] == "STATUS_ADDRESS_ALREADY_EXISTS"


def test_listing_and_closing_frees_the_addresses(dbg) -> None:
    run(dbg, "!bind -r -o procA udp 0.0.0.0:7002")
    assert "SO_REUSEADDR" in run(dbg, "!bind")
    assert run(dbg, "!bind -c *").startswith("Closed ")
    assert run(dbg, "!bind -x -o procB udp 0.0.0.0:7002").endswith("STATUS_SUCCESS - socket 1")
    run(dbg, "!bind -c *")


def test_the_table_prints_every_row_of_the_documented_table(dbg) -> None:
    lines = run(dbg, "!bind -t").splitlines()
    # MS Learn "Sharing Transport Addresses", row "SO_REUSEADDR / Specific":
    #   CHECK  DENIED  SUCCESS  SUCCESS  DENIED  DENIED
    row = next(line for line in lines if line.strip().startswith("REUSEADDR specific"))
    assert row.split()[2:] == ["CHECK", "DENIED", "SUCCESS", "SUCCESS", "DENIED", "DENIED"]


def test_bad_input_gets_a_clear_error(dbg) -> None:
    for line, message in (("!bind -z tcp 10.0.0.1:1", "unknown option '-z'"),
                          ("!bind sctp 10.0.0.1:1", "the protocol is tcp or udp"),
                          ("!bind tcp 10.0.0.1:0", "give a port"),
                          ("!bind -r -x tcp 10.0.0.1:1", "exclude each other"),
                          ("!bind -c 99", "no socket 99")):
        result = dbg.execute(line)
        assert result.error and message in result.text, (line, result.text)
