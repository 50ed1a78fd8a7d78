"""!discard (a timed transfer between two user-mode programs) and !afd (user-mode sockets with their
send buffering)."""

from __future__ import annotations

import pytest

from tests.wskdbg.net_lab import lab_engine, run


@pytest.fixture(scope="module")
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def test_discard_with_sndbuf_0_reports_sends_that_return_only_after_their_ack(dbg):
    out = run(dbg, "!discard /w -b 0 -n 2 -s 20000").splitlines()
    assert out[0] == "discard: 2 x 20000 bytes to 10.0.0.1:9 from client, SO_SNDBUF 0"
    assert out[1].startswith("discard: 2 sends to 10.0.0.1:9, SO_SNDBUF 0; connected in ")
    assert out[2].startswith("  send #1  20000 bytes  returned at +") and "after" in out[2]
    assert out[3].startswith("  send #2  20000 bytes  returned at +") and "at once" not in out[3]
    assert out[4].startswith("  shutdown: FIN acknowledged at +")
    assert out[5] == "discard: winsrv's server read 40000 bytes"


def test_discard_by_default_reports_the_first_sends_completing_at_once(dbg):
    out = run(dbg, "!discard /w -n 3 -s 65536").splitlines()
    assert "SO_SNDBUF 8192 (default: afd sizes the buffer dynamically)" in out[1]
    assert out[2].endswith("returned at +0.000ms  at once (buffered by afd)")
    assert out[3].endswith("returned at +0.000ms  at once (buffered by afd)")
    assert "at once" not in out[4]  # two buffered sends ahead, past the quota: KB 214397's third rule
    assert out[-1] == "discard: winsrv's server read 196608 bytes"


def test_discard_rejects_a_negative_send_buffer(dbg):
    result = dbg.execute("!discard /w -b -1")
    assert result.error and "b must be between 0 and" in result.text


def test_afd_lists_user_mode_sockets_with_their_buffered_sends_mid_transfer(dbg):
    # Shape as !wsk's table (afdkd's own columns are not published): one row per endpoint.
    run(dbg, "!discard -n 8 -s 65536")
    run(dbg, "bp /h client afd!AfdBufferedSendComplete")
    run(dbg, "g")
    table = run(dbg, ".host client;!afd").splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("Endpoint"))
    assert table[header].split() == ["Endpoint", "Type", "State", "Local", "Remote", "Owner", "SndBuf",
                                     "Buffered/Sends"]
    row = table[header + 1].split()
    assert row[1:3] == ["Stream", "ESTABLISHED"] and row[4] == "10.0.0.1:9" and row[5] == "discard"
    assert row[6] == "65536*"
    buffered, sends = row[7].split("/")
    assert int(buffered) == 65536 * int(sends) and int(sends) >= 2
    assert table[-1].startswith("* SO_SNDBUF not set")
    detail = dbg.execute(f"!afd {row[0]}")
    assert not detail.error
    lines = detail.text.splitlines()
    assert lines[0] == f"AFD endpoint {row[0]}"
    assert "    SO_SNDBUF        8192  (default; dynamic: 65536)" in lines
    assert "    Ideal backlog    65536" in lines
    assert any(line.startswith("    Transport object ") and "(!tcb " in line for line in lines)
    run(dbg, "bc *")
    out = run(dbg, "g")
    assert "discard: winsrv's server read 524288 bytes" in out


def test_afd_with_an_unknown_address_says_so(dbg):
    result = dbg.execute("!afd 0x1234")
    assert result.error and "is not an open user-mode socket" in result.text
