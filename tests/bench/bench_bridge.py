"""Bridge benchmark (a script, not a test): the emulated stack against real clients.

    python tests/bench/bench_bridge.py [--seconds S] [--bulk-mib N] [--samples 3] [--only echo]

1. Requests per second through the port forward (127.0.0.1 -> gateway -> khttpd on
   winsrv) with a real client (http.client): keep-alive requests on one connection,
   then one new connection per request.
2. Bulk throughput over the TAP bridge (root only): the host kernel's TCP inside the
   namespace downloads /files/1MB.bin from khttpd N times with curl, and a Python
   client echoes N MiB with echosrv.
3. Echo through the port forward: a real Python client (127.0.0.1 -> forward -> echosrv on
   winsrv) echoes N MiB, next to the same echo made inside the lab (client host -> winsrv,
   the lab running flat out, same lab and server); printed as the ratio forward ÷ lab (the aim
   is >= 0.5), each the median of --samples runs after a warm-up, with wall and CPU time.
   Both are slow next to bench_throughput's echo for the same reasons: the standard lab's NICs
   have RSC off (every 1460-byte segment is its own indication and TCP receive: ~2,600 per MiB
   against ~400 with RSC), and the server is echosrv over WSK.
4. For scale, the host's own loopback TCP (127.0.0.1, two Python threads) in the same run.

Every loop is bounded in count and wall time.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stack.bridge.lab import bridge_lab  # noqa: E402
from stack.bridge.session import BridgeSession, TapOptions  # noqa: E402
from stack.bridge.tap import tap_unavailable_reason  # noqa: E402

ECHO_CLIENT = str(Path(__file__).resolve().parents[1] / "bridge" / "echo_client.py")
sys.path.insert(0, str(Path(ECHO_CLIENT).parent))
from echo_client import pattern as real_pattern  # noqa: E402


def _while_lab_runs(session: BridgeSession, fn: Callable[[], Any], max_wall_s: float) -> Any:
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", fn()), daemon=True)
    thread.start()
    session.run(max_wall_s=max_wall_s, until=lambda: not thread.is_alive())
    thread.join(5)
    return box.get("r")


def bench_forward(seconds: float) -> None:
    session = BridgeSession.live_session(bridge_lab(1), forwards=["127.0.0.1:0=winsrv:80"])
    session.start()
    (_, port), = session.forward_host.bound_addresses()
    try:
        def keep_alive() -> tuple[int, float]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            n, start = 0, time.monotonic()
            while time.monotonic() - start < seconds and n < 5000:
                conn.request("GET", "/index.html")
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
                n += 1
            conn.close()
            return n, time.monotonic() - start

        def new_connections() -> tuple[int, float]:
            n, start = 0, time.monotonic()
            while time.monotonic() - start < seconds and n < 5000:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/index.html", headers={"Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                assert resp.status == 200
                n += 1
            return n, time.monotonic() - start

        for name, fn in (("keep-alive, one connection", keep_alive), ("new connection per request", new_connections)):
            v0 = session.world.now_ns
            n, wall = _while_lab_runs(session, fn, seconds + 30)
            virtual = (session.world.now_ns - v0) / 1e9
            print(f"forward  GET /index.html {name:28s} {n:5d} requests in {wall:6.2f} s wall "
                  f"= {n / wall:8.1f} req/s  ({virtual:.2f} s virtual)")
    finally:
        session.close()


def bench_tap(mib: int) -> None:
    reason = tap_unavailable_reason()
    if reason is not None:
        print(f"tap      skipped: {reason}")
        return
    session = BridgeSession.live_session(bridge_lab(1), tap=TapOptions())
    session.start()
    ns = session.tap.namespace
    try:
        if shutil.which("curl"):
            urls = []
            for _ in range(mib):
                urls += ["-o", os.devnull, "http://10.0.0.1/files/1MB.bin"]
            proc = subprocess.Popen(ns.exec_argv(["curl", "-sS", "--fail", *urls]))
            start = time.monotonic()
            session.run(max_wall_s=300, until=lambda: proc.poll() is not None)
            wall = time.monotonic() - start
            print(f"tap      curl GET 1 MiB x {mib:<3d} (host TCP -> emulated khttpd)   "
                  f"{mib / wall:8.2f} MiB/s wall (exit {proc.poll()})")
        for server in ("10.0.0.1", "fd00::1"):
            proc = subprocess.Popen(ns.exec_argv([sys.executable, ECHO_CLIENT, server, "40007", str(mib << 20)]),
                                    stdout=subprocess.PIPE, text=True)
            start = time.monotonic()
            session.run(max_wall_s=300, until=lambda: proc.poll() is not None)
            wall = time.monotonic() - start
            out = proc.stdout.read().strip() if proc.stdout else ""
            print(f"tap      echo {mib} MiB with echosrv at {server:9s} (both ways)     "
                  f"{mib / wall:8.2f} MiB/s wall ({out})")
    finally:
        session.close()


def lab_echo(payload: bytes) -> tuple[float, float]:
    """The in-lab baseline: the client host echoes `payload` with echosrv on winsrv:40007, in the same
    lab the forward uses (bridge_lab), the lab running flat out.  Returns (wall s, CPU s) of the run."""
    from stack.tcpip.addr import SockAddr
    from stack.usermode.programs import echo_client
    from stack.usermode.socket import run_program
    world = bridge_lab(1)
    server = world.host("winsrv")
    client = run_program(world.host("client").kernel, echo_client, SockAddr(server.address4, 40007), payload)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    world.run_while(lambda: not client.done, max_events=50_000_000)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    client.raise_error()
    result = client.result
    assert result.received == len(payload) and result.received_sha256 == result.sent_sha256, "lab echo corrupted"
    return wall, cpu


def forward_echo(payload: bytes) -> tuple[float, float, bool]:
    """A real client - a process of its own, as real clients are (a thread of this process would take
    the GIL from the lab on every socket call: ~3 ms a call) - echoes `payload` through --forward to
    echosrv.  Returns (wall s, CPU s of the lab's process, byte-exact)."""
    session = BridgeSession.live_session(bridge_lab(1), forwards=["127.0.0.1:0=winsrv:40007"])
    session.start()
    (_, port), = session.forward_host.bound_addresses()
    try:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        proc = subprocess.Popen([sys.executable, ECHO_CLIENT, "127.0.0.1", str(port), str(len(payload))],
                                stdout=subprocess.PIPE, text=True)
        session.run(max_wall_s=300, until=lambda: proc.poll() is not None)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        out = proc.communicate(timeout=30)[0].strip()
    finally:
        session.close()
    return wall, cpu, out == f"OK {len(payload)}"


def _median(runs: list[tuple]) -> tuple:
    return sorted(runs, key=lambda r: r[0])[len(runs) // 2]


def bench_forward_echo(mib: float, samples: int = 3) -> None:
    """Echo N MiB through --forward from a real client, and the same echo inside the lab.

    Both run the same lab (bridge_lab: the standard lab, RSC off as its NICs ship) and the same
    server (echosrv on winsrv:40007); each is warmed up once and the median of `samples` wall
    times is shown, with the CPU time of this process (the forward's includes the real client
    client is another process, so the forward's CPU is the lab's alone)."""
    size = int(mib * (1 << 20))
    payload = real_pattern(size)
    lab_echo(payload[:1 << 18])  # warm-up (imports, first-use paths)
    forward_echo(payload[:1 << 18])
    lab_wall, lab_cpu = _median([lab_echo(payload) for _ in range(samples)])
    fwd_wall, fwd_cpu, ok = _median([forward_echo(payload) for _ in range(samples)])
    lab_rate, fwd_rate = size / lab_wall / 1e6, size / fwd_wall / 1e6
    print(f"echo     {mib:g} MiB inside the lab (client -> winsrv:40007)          {lab_rate:8.2f} MB/s wall "
          f"{size / lab_cpu / 1e6:8.2f} MB/s cpu  (median of {samples})")
    print(f"echo     {mib:g} MiB through --forward from a real client           {fwd_rate:8.2f} MB/s wall "
          f"{size / fwd_cpu / 1e6:8.2f} MB/s cpu  ({'byte-exact' if ok else 'MISMATCH'})")
    print(f"echo     forward / lab                                          {fwd_rate / lab_rate:8.3f}   "
          f"(wall; cpu {lab_cpu / fwd_cpu:.3f}; aim >= 0.5)")


def bench_loopback(mib: int) -> None:
    """The host's own TCP over 127.0.0.1, for scale."""
    size = mib << 20
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = [0]

    def server() -> None:
        conn, _ = listener.accept()
        with conn:
            while True:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                received[0] += len(chunk)

    thread = threading.Thread(target=server, daemon=True)
    thread.start()
    block = b"\x5a" * (1 << 20)
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as client:
        for _ in range(mib):
            client.sendall(block)
    thread.join(60)
    wall = time.monotonic() - start
    listener.close()
    print(f"loopback host TCP 127.0.0.1, {mib} MiB one way                       "
          f"{mib / wall:8.2f} MiB/s wall ({received[0] == size and 'all received'})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="wall seconds per request benchmark")
    parser.add_argument("--bulk-mib", type=int, default=4, help="MiB per bulk transfer")
    parser.add_argument("--samples", type=int, default=3, help="runs per echo figure; the median is shown")
    parser.add_argument("--only", choices=("forward", "echo", "tap", "loopback"), help="run one part only")
    args = parser.parse_args(argv)
    parts = {"forward": lambda: bench_forward(args.seconds),
             "echo": lambda: bench_forward_echo(args.bulk_mib, args.samples),
             "tap": lambda: bench_tap(args.bulk_mib), "loopback": lambda: bench_loopback(max(args.bulk_mib, 64))}
    if args.only:
        parts[args.only]()
        return
    bench_forward(args.seconds)
    bench_forward_echo(args.bulk_mib, args.samples)
    bench_tap(args.bulk_mib)
    bench_loopback(max(args.bulk_mib, 64))


if __name__ == "__main__":
    main()
