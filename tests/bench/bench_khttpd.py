"""khttpd benchmark, in the spirit of the thesis's measurements (a script, not a test).

    python tests/bench/bench_khttpd.py [--count N] [--host-count N] [--aim-only] [--samples N] [--calls]
                                       [--zero-copy-only] [--profile-only [N]] [--gc settle|default]

First the issue 14 aim, side by side in this run: a 1 KiB GET with a new connection per request,
the emulated client + khttpd (WSK zero copy) against http.client + http.server on the real
loopback, each with a warm-up and the median of --samples samples (wall and CPU req/s), and
their wall ratio (aim >= 1.0); with --calls also the Python calls per emulated request (cProfile,
deterministic: the figure to compare across machines and loads).  Then the second aim, zero copy
against copy mode at 1 MiB (aim >= 1.2), each with a warm-up and the median of --samples samples
(with --calls also the Python calls per 1 MiB request in each mode).
--aim-only stops there (--zero-copy-only runs only the second aim; --profile-only prints only the
calls per 1 KiB request and the top N functions of a cProfile over the measured requests, by own
time and by calls, builtins folded into their callers).  The host's garbage collector runs as
the wskdbg command line sets it (--gc settle: wider generations, stack.kernel.hostgc, as
bench_throughput.py runs) unless --gc default; both sides of every ratio run under it.
Then the full table:

For each file size (64 B .. 1 MiB) and each server path — khttpd zero copy over
WSK, copying (CopyMode) over WSK, zero copy over TDI (Transport=TDI), answered
from the response cache in TDI's receive event and in WskReceiveEvent (ResponseCache), and the
relay, redirect, kernel-request-queue and accept-queue hand-overs to the user-mode web server
(/app/bytes?n=<size>, a reply of the same size) — `client` fetches the file N
times, one new connection per request, through the whole emulated stack.
Reported: requests per second and throughput in *virtual* time (what the
emulated machines experienced) and in *wall* time (what it cost this Python
process), plus the payload bytes copied on winsrv per request.

For comparison, the same requests go to a plain Python HTTP server
(http.server.ThreadingHTTPServer) on this host's real loopback 127.0.0.1,
bounded to a small count; only wall time exists there.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import sys
import threading
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

# Run as `python tests/bench/bench_khttpd.py` from the repository root: put the root on the path
# (the script's own directory is what Python puts there) so `stack` and `tests` import.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stack.fs.docroot_manifest import DOCROOT_SIZES, docroot_files, file_bytes  # noqa: E402

SIZES = ["files/64B.bin", "files/1KB.bin", "files/4KB.bin", "files/16KB.bin", "files/64KB.bin",
         "files/256KB.bin", "files/1MB.bin"]


@dataclass
class Row:
    server: str
    path: str
    size: int
    count: int
    virtual_s: float | None
    wall_s: float
    copied_per_request: float | None = None

    def rps(self, seconds: float | None) -> str:
        return f"{self.count / seconds:10.0f}" if seconds else "         -"

    def mbps(self, seconds: float | None) -> str:
        return f"{self.count * self.size * 8 / seconds / 1e6:10.1f}" if seconds else "         -"


def _emulated_rows(count: int, seed: int) -> list[Row]:
    from stack.usermode.socket import SockAddr, run_program
    from stack.usermode.webserver import http_fetch
    from tests.stack.drivers.khttpd_lab import boot_lab

    rows: list[Row] = []
    for mode, image_params in (("khttpd WSK zero-copy", {}), ("khttpd WSK copy", {"CopyMode": True}),
                               ("khttpd TDI zero-copy", {"Transport": "TDI"}),
                               ("khttpd TDI cached", {"Transport": "TDI", "ResponseCache": 4 << 20}),
                               ("khttpd WSK cached", {"ResponseCache": 4 << 20}),
                               ("hand-over relay", {}), ("hand-over redirect", {"HandOver": "Redirect"}),
                               ("hand-over queue", {"HandOver": "Queue"}), ("hand-over accept", {"HandOver": "Accept"})):
        world = boot_lab(seed=seed, parameters=image_params)  # also starts the user-mode server
        winsrv = world.host("winsrv").kernel
        client = world.host("client").kernel
        if image_params.get("HandOver") == "Queue":  # the user-mode server reads khttpd's request queue
            from stack.usermode.khttpq import request_queue_server
            run_program(winsrv, request_queue_server, None, None, name="queue-server")
        server = SockAddr.parse("10.0.0.1:80")
        for path in SIZES:
            size = DOCROOT_SIZES[path]
            target = f"/{path}" if not mode.startswith("hand-over") else f"/app/bytes?n={size}"
            body_size = size

            def fetch_all() -> Any:
                for _ in range(count):
                    response = yield from http_fetch(server, "GET", target)
                    if response.status == 307:  # the redirect hand-over: ask the user-mode server itself
                        location = SockAddr.parse(response.header("location").split("/")[2])
                        response = yield from http_fetch(location, "GET", target)
                    if response.status != 200 or len(response.body) < body_size:
                        raise RuntimeError(f"{target}: {response.status}")
                return count

            copies_before = winsrv.copies.total_bytes
            start_ns = world.now_ns
            wall = time.perf_counter()
            program = run_program(client, fetch_all, name="bench")
            world.run_while(lambda: not program.done)
            wall = time.perf_counter() - wall
            world.check()
            program.raise_error()
            rows.append(Row(mode, target[:24], body_size, count, (world.now_ns - start_ns) / 1e9, wall,
                            (winsrv.copies.total_bytes - copies_before) / count))
    return rows


class _MemoryHandler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def _host_rows(count: int) -> list[Row]:
    files = {path: file_bytes(content) for path, content in docroot_files().items()}
    _MemoryHandler.files = files
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MemoryHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    rows = []
    try:
        for path in SIZES:
            wall = time.perf_counter()
            for _ in range(count):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/" + path)
                body = conn.getresponse().read()
                conn.close()
                if len(body) != DOCROOT_SIZES[path]:
                    raise RuntimeError(f"loopback {path}: {len(body)} bytes")
            rows.append(Row("python http.server (real loopback)", "/" + path, DOCROOT_SIZES[path], count, None,
                            time.perf_counter() - wall))
    finally:
        server.shutdown()
        server.server_close()
    return rows


AIM_PATH = "files/1KB.bin"


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _profile(fn: Callable[[], None]) -> Any:
    import cProfile
    import pstats
    profile = cProfile.Profile()
    profile.enable()
    fn()
    profile.disable()
    return pstats.Stats(profile)


def _calls_per_request(fn: Callable[[], None], count: int) -> float:
    """Python calls (cProfile's count, builtins included) per request of one run of `fn`."""
    return sum(row[1] for row in _profile(fn).stats.values()) / count  # type: ignore[attr-defined]


def profile_rows(count: int, seed: int, top: int) -> None:
    """Where a 1 KiB new-connection GET's Python calls go: the top functions by own time and by
    calls per request, each builtin's calls counted in the function that made them."""
    fn = _fetcher({}, "/" + AIM_PATH, 1024, count, seed)
    fn()  # warm-up
    stats = _profile(fn).stats  # type: ignore[attr-defined]
    rows: dict[tuple, list[float]] = {}
    root = str(Path(__file__).resolve().parents[2]) + "/"
    for (path, line, name), (_, calls, own, _, callers) in stats.items():
        if path == "~":  # a builtin: its calls and time go to each caller
            for caller, (_, ccalls, cown, _) in callers.items():
                row = rows.setdefault(caller, [0, 0.0])
                row[0] += ccalls
                row[1] += cown
            continue
        row = rows.setdefault((path, line, name), [0, 0.0])
        row[0] += calls
        row[1] += own
    total = sum(row[1] for row in rows.values())
    print(f"1 KiB GET, new connection per request: {sum(r[1] for r in stats.values()) / count:.0f} Python calls "
          f"per request (cProfile over {count} requests after a warm-up; builtins folded into their callers)")
    for title, key in (("own time", 1), ("calls", 0)):
        print(f"  top {top} by {title}:  calls/req  us/req  function")
        for (path, line, name), row in sorted(rows.items(), key=lambda kv: -kv[1][key])[:top]:
            where = path.replace(root, "").split("site-packages/")[-1]
            print(f"  {row[0] / count:29.1f} {row[1] / count * 1e6:7.1f}  {where}:{line}({name})")
    print(f"  (own time under the profiler: {total / count * 1e6:.0f} us per request)\n")


def _fetcher(parameters: dict[str, Any], target: str, size: int, count: int, seed: int) -> Callable[[], None]:
    """A lab booted with khttpd `parameters`; the returned function GETs `target` `count` times,
    one new connection each."""
    from stack.usermode.socket import SockAddr, run_program
    from stack.usermode.webserver import http_fetch
    from tests.stack.drivers.khttpd_lab import boot_lab

    world = boot_lab(seed=seed, parameters=parameters)
    server = SockAddr.parse("10.0.0.1:80")

    def fetch() -> None:
        def fetch_all() -> Any:
            for _ in range(count):
                response = yield from http_fetch(server, "GET", target)
                if response.status != 200 or len(response.body) != size:
                    raise RuntimeError(f"{target}: {response.status}")
        program = run_program(world.host("client").kernel, fetch_all, name="bench")
        world.run_while(lambda: not program.done)
        world.check()
        program.raise_error()
    return fetch


def zero_copy_rows(count: int, samples: int, seed: int, calls: bool = False) -> None:
    """1 MiB GETs, zero copy (header + cache pages as one MDL chain) against copy mode."""
    import statistics
    path = "files/1MB.bin"
    results = {}
    call_counts = {}
    for name, parameters in (("zero copy", {}), ("copy mode", {"CopyMode": True})):
        fn = _fetcher(parameters, "/" + path, DOCROOT_SIZES[path], count, seed)
        fn()  # warm-up
        timed = [_timed(fn) for _ in range(samples)]
        results[name] = (statistics.median(w for w, _ in timed), statistics.median(c for _, c in timed))
        if calls:
            call_counts[name] = _calls_per_request(fn, count)
    print(f"1 MiB GET, khttpd over WSK, new connection per request, {count} requests per sample, "
          f"median of {samples} after a warm-up:")
    for name, (wall, cpu) in results.items():
        print(f"  {name:44} {count / wall:8.1f} req/s wall {count / cpu:8.1f} req/s CPU")
    (zw, zc), (cw, cc) = results.values()
    print(f"  ratio zero copy / copy mode: {cw / zw:.2f} wall (aim >= 1.2), {cc / zc:.2f} CPU")
    if call_counts:
        print("  Python calls per 1 MiB request: " + ", ".join(f"{n} {c:.0f}" for n, c in call_counts.items()))
    print()


def aim_rows(count: int, samples: int, seed: int, calls: bool = False) -> None:
    """The 1 KiB new-connection GET, emulated vs real loopback: warm-up, median of samples, ratio."""
    import statistics
    from stack.usermode.socket import SockAddr, run_program
    from stack.usermode.webserver import http_fetch
    from tests.stack.drivers.khttpd_lab import boot_lab

    world = boot_lab(seed=seed)
    server = SockAddr.parse("10.0.0.1:80")

    def emulated() -> None:
        def fetch_all() -> Any:
            for _ in range(count):
                response = yield from http_fetch(server, "GET", "/" + AIM_PATH)
                if response.status != 200 or len(response.body) != 1024:
                    raise RuntimeError(f"{AIM_PATH}: {response.status}")
        program = run_program(world.host("client").kernel, fetch_all, name="bench")
        world.run_while(lambda: not program.done)
        world.check()
        program.raise_error()

    _MemoryHandler.files = {AIM_PATH: file_bytes(docroot_files()[AIM_PATH])}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MemoryHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    port = httpd.server_address[1]

    def loopback() -> None:
        for _ in range(count):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/" + AIM_PATH)
            body = conn.getresponse().read()
            conn.close()
            if len(body) != 1024:
                raise RuntimeError(f"loopback {AIM_PATH}: {len(body)} bytes")

    try:
        results = {}
        for name, fn in (("emulated client + khttpd (WSK zero copy)", emulated),
                         ("http.client + http.server, real loopback", loopback)):
            fn()  # warm-up
            timed = [_timed(fn) for _ in range(samples)]
            results[name] = (statistics.median(w for w, _ in timed), statistics.median(c for _, c in timed))
    finally:
        httpd.shutdown()
        httpd.server_close()
    print(f"1 KiB GET, new connection per request, {count} requests per sample, median of {samples} after a warm-up:")
    for name, (wall, cpu) in results.items():
        print(f"  {name:44} {count / wall:8.0f} req/s wall {count / cpu:8.0f} req/s CPU (this process)")
    (ew, ec), (lw, lc) = results.values()
    print(f"  ratio emulated / loopback: {lw / ew:.2f} wall (aim >= 1.0), {lc / ec:.2f} CPU "
          "(the loopback server's thread runs in this process too)")
    if calls:
        print(f"  Python calls per emulated request: {_calls_per_request(emulated, count):.0f}")
    print()


def cpu_model_rows(count: int, seed: int) -> None:
    """With processors that spend time (the 2003 profile, 1 Gb/s): virtual time per request and
    winsrv CPU per request for each server (tests/bench/thesis_lab.py)."""
    from tests.bench.thesis_lab import MORE_SERVERS, SERVERS, measure, server_world

    print("\nwinsrv with one 2003-era processor (stack/kernel/costs.py), 1 Gb/s, one request at a time:")
    print(f"{'server':20} {'size':>8} | {'virt us/req':>11} {'cpu us/req':>10} {'copied B/req':>12}")
    for server in SERVERS + MORE_SERVERS:
        world = server_world(server, "2003", 1_000_000_000, seed)
        for size in (1024, 65536, 262144, 1048576):
            r = measure(world, server, size, count if size < 262144 else max(1, count // 4))
            print(f"{server:20} {size:8d} | {r['ns_per_request'] / 1000:11.1f} {r['cpu_ns_per_request'] / 1000:10.1f} "
                  f"{r['copied_per_request']:12.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="requests per size in the emulated lab")
    parser.add_argument("--host-count", type=int, default=50, help="requests per size on the real loopback")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samples", type=int, default=5, help="timed samples for the aim ratio (median shown)")
    parser.add_argument("--aim-count", type=int, default=100, help="requests per sample for the aim ratio")
    parser.add_argument("--aim-only", action="store_true", help="print the aim ratios only")
    parser.add_argument("--calls", action="store_true", help="also count Python calls per emulated request")
    parser.add_argument("--zero-copy-only", action="store_true", help="print the zero copy / copy ratio only")
    parser.add_argument("--zero-copy-count", type=int, default=4, help="1 MiB requests per sample")
    parser.add_argument("--profile-only", type=int, nargs="?", const=30, default=None, metavar="N",
                        help="print the calls per 1 KiB request and the top N functions (default 30), nothing else")
    parser.add_argument("--gc", choices=("settle", "default"), default="settle",
                        help="host GC as the wskdbg command line sets it (settle: wider generations, "
                             "stack.kernel.hostgc) or Python's defaults")
    args = parser.parse_args(argv)
    if args.gc == "settle":
        from stack.kernel import hostgc
        hostgc.settle(freeze=False)  # both sides of every ratio run under it
    if args.profile_only is not None:
        profile_rows(args.aim_count, args.seed, args.profile_only)
        return
    if not args.zero_copy_only:
        aim_rows(args.aim_count, args.samples, args.seed, args.calls)
    zero_copy_rows(args.zero_copy_count, args.samples, args.seed, args.calls)
    if args.aim_only or args.zero_copy_only:
        return
    rows: list[Row] = []
    runners: list[tuple[str, Callable[[], list[Row]]]] = [
        ("emulated", lambda: _emulated_rows(args.count, args.seed)), ("loopback", lambda: _host_rows(args.host_count))]
    for _, run in runners:
        rows += run()
    print(f"{'server':36} {'size':>8} {'n':>4} | {'virt req/s':>10} {'virt Mbit/s':>11} | "
          f"{'wall req/s':>10} {'wall Mbit/s':>11} | {'copied B/req':>12}")
    print("-" * 118)
    for row in rows:
        copied = f"{row.copied_per_request:12.0f}" if row.copied_per_request is not None else "           -"
        print(f"{row.server:36} {row.size:8d} {row.count:4d} | {row.rps(row.virtual_s)} {row.mbps(row.virtual_s)} "
              f"| {row.rps(row.wall_s)} {row.mbps(row.wall_s)} | {copied}")
    cpu_model_rows(args.count, args.seed)


if __name__ == "__main__":
    main()
