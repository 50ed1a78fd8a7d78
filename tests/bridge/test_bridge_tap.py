"""The TAP bridge: the host kernel's own TCP/IP, inside a namespace of ours, against the emulated stack.

Needs Linux, root, /dev/net/tun and iproute2; each test skips with the reason otherwise.
Every client runs inside the namespace (`ip netns exec`), whose only link is the TAP
into the lab, so nothing leaves it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from bridge_harness import echo_client_argv, need_tools, run_process

from stack.bridge.lab import bridge_lab
from stack.bridge.session import BridgeSession, TapOptions
from stack.bridge.tap import (NETNS_ETC_DIR, NETNS_RUN_DIR, NS_PREFIX, TapNamespace, cleanup_stale_namespaces,
                              tap_unavailable_reason)
from stack.fs.docroot_manifest import synthesize_file
from stack.nic import Capture, FaultConfig
from stack.nic.pcap import PcapWriter

pytestmark = pytest.mark.root

REASON = tap_unavailable_reason()
ECHO_MIB = 4 * 1024 * 1024


def _require_tap() -> None:
    if REASON is not None:
        pytest.skip(REASON)


@pytest.fixture(scope="module")
def tapped(tmp_path_factory):
    """One lab with a TAP bridge for the module, every frame on the TAP's link captured."""
    _require_tap()
    world = bridge_lab(1)
    session = BridgeSession.live_session(world, tap=TapOptions())
    capture = Capture()
    capture.attach_link(session.tap.port.link)
    capture.start()
    session.start()
    yield session, capture, tmp_path_factory.mktemp("tap"), {}
    session.close()
    capture.stop()


def _in_ns(session: BridgeSession, argv: list[str]) -> list[str]:
    return session.tap.namespace.exec_argv(argv)


@pytest.mark.parametrize("family", ["-4", "-6"])
def test_ping_winsrv_from_the_namespace_gets_replies(tapped, family: str) -> None:
    need_tools("ping")
    session, _, _, _ = tapped
    done = run_process(session, _in_ns(session, ["ping", family, "-c", "3", "-i", "0.2", "-W", "3", "winsrv"]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"3 received" in done.stdout
    assert (b"fd00::1" in done.stdout) == (family == "-6")


def test_curl_in_the_namespace_fetches_1mib_from_khttpd_byte_exact(tapped) -> None:
    need_tools("curl")
    session, _, tmp, _ = tapped
    out = tmp / "1MB.bin"
    done = run_process(session, _in_ns(session, ["curl", "-sS", "--fail", "--max-time", "80", "-o", str(out),
                                                 "http://10.0.0.1/files/1MB.bin"]))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == synthesize_file("files/1MB.bin", 1024 * 1024)


@pytest.mark.parametrize("server", ["10.0.0.1", "fd00::1"])
def test_python_client_echoes_4mib_with_echosrv_byte_exact(tapped, server: str) -> None:
    session, _, _, _ = tapped
    done = run_process(session, _in_ns(session, echo_client_argv(server, 40007, ECHO_MIB)))
    assert done.stdout.startswith(b"OK"), done.stdout + done.stderr


def test_transfers_complete_byte_exact_with_loss_on_the_emulated_link(tapped) -> None:
    need_tools("curl")
    session, capture, tmp, marks = tapped
    marks["loss_from"] = len(capture.records)
    link = session.tap.port.link
    lost_before = sum(end.counters.lost for end in link.ends)
    link.set_faults(FaultConfig(loss=0.02))
    try:
        out = tmp / "256KB.bin"
        done = run_process(session, _in_ns(session, ["curl", "-sS", "--fail", "--max-time", "80", "-o", str(out),
                                                     "http://10.0.0.1/files/256KB.bin"]))
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() == synthesize_file("files/256KB.bin", 256 * 1024)
        for server in ("10.0.0.1", "fd00::1"):
            done = run_process(session, _in_ns(session, echo_client_argv(server, 40007, 512 * 1024)))
            assert done.stdout.startswith(b"OK"), done.stdout + done.stderr
    finally:
        link.set_faults(FaultConfig())
    assert sum(end.counters.lost for end in link.ends) > lost_before  # loss really happened, both TCPs recovered


def _tshark(pcap: Path, display_filter: str, *options: str) -> bytes:
    checks = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
              # The echo payloads are random bytes: read them as data, so no payload dissector
              # (Thrift matched one once) calls a well-formed TCP segment malformed.
              "-d", "tcp.port==40007,data"]
    found = subprocess.run(["tshark", "-n", "-r", str(pcap), *checks, *options, "-Y", display_filter],
                           capture_output=True, timeout=120)
    assert found.returncode == 0, found.stderr[-500:]
    return found.stdout.strip()


# A TCP checksum field of 0xFFFF is the other ones'-complement spelling of zero
# (RFC 1624 §3); Wireshark flags it, so such frames are verified separately below
# with the wire layer's own arithmetic instead of being taken as bad.
MALFORMED_OR_BAD_CHECKSUM = ("_ws.malformed || ip.checksum.status == 0"
                             " || (tcp.checksum.status == 0 && tcp.checksum != 0xffff)"
                             " || udp.checksum.status == 0 || icmp.checksum.status == 0"
                             " || icmpv6.checksum.status == 0")


def test_tshark_finds_no_malformed_packets_and_no_bad_checksums(tapped) -> None:
    need_tools("tshark")
    session, capture, tmp, marks = tapped
    # (the capture already holds the transfers above; one more makes this test stand alone too)
    run_process(session, _in_ns(session, ["curl", "-sS", "-o", os.devnull, "--max-time", "30", "http://winsrv/"]))
    records = list(capture.records)
    everything = tmp / "tap.pcap"
    capture.write_pcap(everything)
    # Every frame, one at a time: nothing malformed, every checksum right.
    found = _tshark(everything, MALFORMED_OR_BAD_CHECKSUM, "-o", "tcp.desegment_tcp_streams:FALSE")
    assert found == b"", found.decode("utf-8", "replace")[:3000]
    from stack.tcpip.wire import parse_frame
    ffff = _tshark(everything, "tcp.checksum == 0xffff", "-T", "fields", "-e", "frame.number")
    for number in ffff.split():
        parse_frame(records[int(number) - 1].frame, verify_checksum=True)  # raises WireError if truly bad
    counted = subprocess.run(["tshark", "-n", "-r", str(everything), "-T", "fields", "-e", "frame.number"],
                             capture_output=True, timeout=120)
    assert len(counted.stdout.split()) == len(records) > 10
    # The lossless part with HTTP and TCP reassembly on: no error of any kind.  (The lossy part
    # holds lost originals next to their retransmissions - the capture sits before the loss -
    # which Wireshark's reassembly reports as overlaps although the bytes are equal.)
    lossless = records[:marks.get("loss_from", len(records))]
    clean = tmp / "lossless.pcap"
    with PcapWriter(clean) as writer:
        for record in lossless:
            writer.write(record.time_ns, record.frame)
    found = _tshark(clean, MALFORMED_OR_BAD_CHECKSUM + " || _ws.expert.severity == error")
    assert found == b"", found.decode("utf-8", "replace")[:3000]


def test_tap_exec_runs_a_program_inside_the_namespace(tapped) -> None:
    from wskdbg.bridge_cli import tap_exec

    session, _, _, _ = tapped
    done = tap_exec(["ip", "-br", "addr", "show", "dev", session.tap.namespace.settings.ifname],
                    session.tap.namespace.name, capture_output=True, text=True, timeout=30)
    assert "10.0.0.100/24" in done.stdout and "fd00::64/64" in done.stdout


# -- life of the namespace -------------------------------------------------------------------------------

def _namespace_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_RUN_DIR, name))


def test_closing_the_bridge_removes_its_namespace_and_hosts_file() -> None:
    _require_tap()
    from stack.world import default_world

    session = BridgeSession.live_session(default_world(1), tap=True)
    name = session.tap.namespace.name
    assert _namespace_exists(name) and os.path.exists(os.path.join(NETNS_ETC_DIR, name, "hosts"))
    hosts = Path(NETNS_ETC_DIR, name, "hosts").read_text()
    assert "10.0.0.1 winsrv" in hosts and "fd00::1 winsrv" in hosts
    session.close()
    assert not _namespace_exists(name) and not os.path.exists(os.path.join(NETNS_ETC_DIR, name))


_CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from stack.bridge.tap import TapNamespace
ns = TapNamespace()
ns.create()
print(ns.name, ns._watchdog.pid, flush=True)
time.sleep(120)
"""


def test_namespace_of_a_killed_process_is_removed_by_its_watchdog() -> None:
    _require_tap()
    root = str(Path(__file__).resolve().parents[2])
    child = subprocess.Popen([sys.executable, "-c", _CHILD, root], stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the child did not create its namespace"
        name, watchdog = child.stdout.readline().split()
        assert name.startswith(NS_PREFIX) and _namespace_exists(name)
        pidfd = os.pidfd_open(int(watchdog))
    finally:
        child.send_signal(signal.SIGKILL)  # no atexit, no finally: only the watchdog is left
        child.wait(timeout=30)
    try:
        gone, _, _ = select.select([pidfd], [], [], 30)  # wait for the watchdog to exit, bounded
        assert gone, "the watchdog did not clean up"
    finally:
        os.close(pidfd)
    assert not _namespace_exists(name)


def test_stale_namespace_of_a_dead_process_is_removed_on_start() -> None:
    _require_tap()
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{NS_PREFIX}{dead.pid}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        assert name in cleanup_stale_namespaces()
        assert not _namespace_exists(name)
    finally:
        if _namespace_exists(name):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_tap_refuses_to_start_without_privileges_with_a_reason(monkeypatch) -> None:
    import stack.bridge.tap as tap

    monkeypatch.setattr(tap.os, "geteuid", lambda: 1000)
    assert "root" in (tap.tap_unavailable_reason() or "")
    with pytest.raises(tap.TapUnavailable, match="root"):
        TapNamespace()
