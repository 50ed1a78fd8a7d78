"""Real clients in hundreds through `--forward`: every one gets a reply or a refusal within
seconds, lab-side failure resets the host connection, and afterwards the process holds no
socket in CLOSE-WAIT.  Loopback only; counts and wall time bounded."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from bridge_harness import drive, run_thread

from stack.bridge.lab import bridge_lab
from stack.bridge.session import BridgeSession

CLIENT_TIMEOUT_S = 20
CLOSE_WAIT = "08"  # /proc/net/tcp state


def _close_wait_on(port: int) -> int:
    """Sockets of this machine in CLOSE-WAIT whose local port is `port` (the forward's accepted ones)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == CLOSE_WAIT and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


@pytest.fixture()
def forwarded():
    world = bridge_lab(1)
    session = BridgeSession.live_session(world, forwards=["127.0.0.1:0=winsrv:80"])
    session.start()
    port = session.forward_host.bound_addresses()[0][1]
    yield session, port
    session.close()


def _get(port: int, outcomes: dict[int, str], i: int) -> None:
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S) as sock:
            sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: winsrv\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        outcomes[i] = "reply" if data.startswith(b"HTTP/1.1 ") else "closed"
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
        outcomes[i] = "refused"
    except socket.timeout:
        outcomes[i] = f"hung {time.monotonic() - started:.1f}s"


def _burst(port: int, count: int) -> dict[int, str]:
    outcomes: dict[int, str] = {}
    threads = [threading.Thread(target=_get, args=(port, outcomes, i), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLIENT_TIMEOUT_S + 10)
    return outcomes


def _settle(session: BridgeSession) -> None:
    drive(session, lambda: not session.forwarder.relays and not session.forward_host.conns, 60)


def test_five_hundred_concurrent_clients_each_get_a_reply_or_a_refusal(forwarded) -> None:
    session, port = forwarded
    outcomes = run_thread(session, lambda: _burst(port, 500), max_wall_s=120)
    assert len(outcomes) == 500
    hung = [o for o in outcomes.values() if o.startswith("hung")]
    assert not hung, f"{len(hung)} clients got nothing: {hung[:5]}"
    assert list(outcomes.values()).count("reply") >= 256  # at least the admitted ones were served
    _settle(session)
    assert _close_wait_on(port) == 0


def test_lab_side_allocation_failures_reset_host_connections_instead_of_stranding_them(forwarded) -> None:
    session, port = forwarded
    gateway = session.world.host("gateway").kernel
    gateway.verifier.configure(3000)  # 30 % of the gateway's allocations fail: sockets, buffers, threads
    outcomes = run_thread(session, lambda: _burst(port, 150), max_wall_s=120)
    gateway.verifier.disable()
    assert len(outcomes) == 150
    hung = [o for o in outcomes.values() if o.startswith("hung")]
    assert not hung, f"{len(hung)} clients got nothing: {hung[:5]}"
    assert sum(gateway.verifier.injected.values()) > 0
    assert "refused" in outcomes.values() or "closed" in outcomes.values()
    _settle(session)
    assert _close_wait_on(port) == 0
    assert session.world.scheduler.halted is None
