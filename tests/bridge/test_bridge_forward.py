"""Port forwarding against real clients: curl and Python sockets reach khttpd and echosrv.

Everything listens on loopback with ports the kernel picks, so nothing here needs
privileges and no traffic leaves the machine.
"""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest
from bridge_harness import echo_client_argv, need_tools, pattern, run_process, run_thread, drive

from stack.bridge.forward import ForwardSpecError
from stack.bridge.lab import bridge_lab
from stack.bridge.session import BridgeSession
from stack.fs.docroot_manifest import docroot_files, file_bytes

ECHO_MIB = 4 * 1024 * 1024


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def forwarded():
    """One lab for the module: khttpd and echosrv forwarded from loopback ports."""
    world = bridge_lab(1)
    forwards = ["127.0.0.1:0=winsrv:80", "127.0.0.1:0=winsrv:40007", "127.0.0.1:0=winsrv:9"]
    if _has_ipv6_loopback():
        forwards.append("[::1]:0=winsrv:40007")
    session = BridgeSession.live_session(world, forwards=forwards)
    session.start()
    ports = [port for _, port in session.forward_host.bound_addresses()]
    yield session, ports
    session.close()


def _http_base(forwarded) -> str:
    return f"http://127.0.0.1:{forwarded[1][0]}"


def _settle(session: BridgeSession) -> None:
    """Let the lab finish closing what the clients closed."""
    drive(session, lambda: not session.forwarder.relays and not session.forward_host.conns, 30)


def test_curl_through_forward_fetches_every_docroot_file_byte_exact(forwarded, tmp_path: Path) -> None:
    need_tools("curl")
    session, _ = forwarded
    files = docroot_files()
    argv = ["curl", "-sS", "--fail", "--max-time", "80"]
    for i, path in enumerate(files):
        argv += ["-o", str(tmp_path / f"f{i}"), f"{_http_base(forwarded)}/{path}"]
    done = run_process(session, argv)
    assert done.returncode == 0, done.stderr
    for i, (path, content) in enumerate(files.items()):
        assert (tmp_path / f"f{i}").read_bytes() == file_bytes(content), path
    _settle(session)


def _curl_status(session: BridgeSession, *args: str) -> tuple[int, bytes]:
    done = run_process(session, ["curl", "-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}", *args])
    assert done.returncode == 0, done.stderr
    body, _, code = done.stdout.rpartition(b"\n")
    return int(code), body


def test_curl_head_answers_headers_without_body(forwarded) -> None:
    need_tools("curl")
    session, _ = forwarded
    done = run_process(session, ["curl", "-sS", "-I", "--max-time", "30", f"{_http_base(forwarded)}/about.txt"])
    head = done.stdout.decode()
    assert head.startswith("HTTP/1.1 200")
    expected = len(file_bytes(docroot_files()["about.txt"]))
    assert f"Content-Length: {expected}" in head and head.endswith("\r\n\r\n")


@pytest.mark.parametrize("args, status", [
    (("/no/such/file.html",), 404),
    (("-X", "DELETE", "/index.html"), 405),
    (("-X", "POST", "-d", "x=1", "/index.html"), 405),
])
def test_curl_gets_404_and_405(forwarded, args: tuple[str, ...], status: int) -> None:
    need_tools("curl")
    session, _ = forwarded
    *opts, path = args
    code, _ = _curl_status(session, *opts, _http_base(forwarded) + path)
    assert code == status


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/files/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd"])
def test_curl_path_traversal_with_path_as_is_is_refused(forwarded, path: str) -> None:
    need_tools("curl")
    session, _ = forwarded
    code, body = _curl_status(session, "--path-as-is", _http_base(forwarded) + path)
    assert code in (400, 403, 404)
    assert b"root:" not in body


def test_python_client_echoes_4mib_through_forward_byte_exact(forwarded) -> None:
    session, ports = forwarded
    done = run_process(session, echo_client_argv("127.0.0.1", ports[1], ECHO_MIB))
    assert done.stdout.startswith(b"OK"), done.stdout + done.stderr
    _settle(session)


def test_nc_through_forward_reaches_echosrv(forwarded) -> None:
    need_tools("nc")
    session, ports = forwarded
    lines = b"".join(b"line %d to the emulated echo server\n" % i for i in range(200))
    done = run_process(session, ["nc", "-N", "-w", "20", "127.0.0.1", str(ports[1])], stdin=lines)
    assert done.returncode == 0, done.stderr
    assert done.stdout == lines
    _settle(session)


def test_ipv6_listen_address_reaches_echosrv_over_ipv6(forwarded) -> None:
    session, ports = forwarded
    if len(ports) < 4:
        pytest.skip("no IPv6 loopback on this machine")
    seen: list[str] = []
    session.forwarder.on_state = lambda conn, state, detail, now: seen.append(f"{state} {detail}")
    try:
        done = run_process(session, echo_client_argv("::1", ports[3], 64 * 1024))
    finally:
        session.forwarder.on_state = None
    assert done.stdout.startswith(b"OK")
    assert any(s.startswith("connected") and "[fd00::1]:40007" in s for s in seen)


def test_many_connections_at_once_each_echo_their_own_bytes(forwarded) -> None:
    session, ports = forwarded
    from echo_client import echo, pattern as echo_pattern

    results: dict[int, bool] = {}

    def client(i: int) -> None:
        results[i] = echo("127.0.0.1", ports[1], 16 * 1024 + i) == echo_pattern(16 * 1024 + i)

    def many() -> None:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    run_thread(session, many)
    assert results == {i: True for i in range(24)}
    assert session.forwarder.stats.accepted >= 24
    _settle(session)


def test_refused_lab_connection_resets_the_host_connection(forwarded) -> None:
    session, ports = forwarded

    def client() -> str:
        try:
            # (a connect with a timeout looks at the socket again after the handshake; the
            # bridge may have reset it by then, so the reset can surface here too)
            with socket.create_connection(("127.0.0.1", ports[2]), timeout=30) as sock:
                data = sock.recv(100)
        except ConnectionResetError:
            return "reset"
        return "eof" if data == b"" else "data"

    assert run_thread(session, client) in ("reset", "eof")
    _settle(session)


def test_host_reset_aborts_the_lab_connection(forwarded) -> None:
    session, ports = forwarded
    states: list[str] = []
    session.forwarder.on_state = lambda conn, state, detail, now: states.append(state)

    def client() -> None:
        sock = socket.create_connection(("127.0.0.1", ports[1]), timeout=30)
        sock.sendall(b"x" * 1000)
        assert sock.recv(1000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST

    try:
        run_thread(session, client)
        _settle(session)
    finally:
        session.forwarder.on_state = None
    assert "connected" in states and states[-1] == "closed"
    assert session.forward_host.stats.resets >= 1


@pytest.fixture()
def forwarded_without_autotuning():
    """echosrv forwarded from loopback on a lab whose tcpip does not auto-tune its receive window
    (`netsh int tcp set global autotuninglevel=disabled`): 64 KiB, so a stall reaches the bridge
    within what a test can push (with auto-tuning winsrv would buffer up to ~16 MiB first)."""
    from stack.tcpip.tcp import TcpConfig
    from stack.world import default_world
    world = default_world(1, tcp_config=TcpConfig(recv_buffer_max=None))
    session = BridgeSession.live_session(world, forwards=["127.0.0.1:0=winsrv:40007"])
    session.start()
    ports = [port for _, port in session.forward_host.bound_addresses()]
    yield session, [None] + ports
    session.close()


def test_slow_reader_stalls_the_sender_instead_of_growing_buffers(forwarded_without_autotuning) -> None:
    """A client that writes 3 MiB to echosrv and reads nothing: the bridge holds at most a window each way."""
    session, ports = forwarded_without_autotuning
    window = session.forwarder.window
    payload = pattern(3 * 1024 * 1024)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):  # small client buffers: the stall shows sooner
        sock.setsockopt(socket.SOL_SOCKET, option, 32 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", ports[1]))
    sock.setblocking(False)
    sent = 0
    peak = {"outbuf": 0, "inbound": 0, "pending": 0}

    def push() -> bool:
        nonlocal sent
        try:
            while sent < len(payload):
                sent += sock.send(payload[sent:sent + 65536])
        except BlockingIOError:
            pass
        for conn in session.forward_host.conns.values():
            peak["outbuf"] = max(peak["outbuf"], len(conn.outbuf))
            peak["pending"] = max(peak["pending"], session.forward_host._lab_pending(conn))
        for relay in session.forwarder.relays.values():
            peak["inbound"] = max(peak["inbound"], relay.inbound_bytes)
        return False

    try:
        # Run the lab for a while (bounded) with the client never reading.
        drive(session, push, max_wall_s=4)
        assert sent < len(payload), "everything was accepted although nobody read the echo"
        assert peak["outbuf"] <= window and peak["inbound"] <= window and peak["pending"] <= window
        assert session.forward_host.stats.paused_reads > 0
        # Now read it all back: nothing was lost while stalled.
        received = bytearray()

        def drain() -> bool:
            push()
            if sent == len(payload):
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            try:
                while True:
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        return True
                    received.extend(chunk)
            except BlockingIOError:
                return False

        assert drive(session, drain, max_wall_s=90) == "done"
        assert bytes(received) == payload
    finally:
        sock.close()
    _settle(session)


def test_unknown_target_host_is_a_clear_error() -> None:
    from stack.world import default_world
    world = default_world(1, services=False)
    with pytest.raises(ForwardSpecError, match="no lab host named 'nosuch'"):
        BridgeSession.live_session(world, forwards=["127.0.0.1:0=nosuch:80"])
