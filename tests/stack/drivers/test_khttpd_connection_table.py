"""khttpd's connection table: arrival order kept, removal and the per-client count O(1) (issue 14:
a list made every accept and every close a scan of all connections)."""

from __future__ import annotations

from stack.drivers.khttpd.state import KhttpdConnection, KhttpdConnections


def _connection(remote: str, over_limit: bool = False) -> KhttpdConnection:
    return KhttpdConnection(0, None, None, remote, "10.0.0.1", None, over_limit)  # type: ignore[arg-type]


def test_connections_iterate_in_arrival_order_and_count_per_client_within_the_limits():
    table = KhttpdConnections()
    a, b, c, refused = _connection("10.0.0.2"), _connection("10.0.0.3"), _connection("10.0.0.2"), \
        _connection("10.0.0.2", over_limit=True)
    for connection in (a, b, c, refused):
        table.append(connection)
    assert list(table) == [a, b, c, refused] and len(table) == 4 and table
    assert table.from_client("10.0.0.2") == 2  # the 503'd one does not count against the client
    assert table.from_client("10.0.0.9") == 0
    table.remove(a)
    table.remove(refused)
    assert list(table) == [b, c] and a not in table and c in table
    assert table.from_client("10.0.0.2") == 1
    table.remove(c)
    table.remove(b)
    assert not table and table.from_client("10.0.0.2") == 0 and table.from_client("10.0.0.3") == 0


def test_an_equal_but_different_connection_is_not_in_the_table():
    table = KhttpdConnections()
    table.append(_connection("10.0.0.2"))
    assert _connection("10.0.0.2") not in table
