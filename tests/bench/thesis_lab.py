"""The thesis comparison's lab: winsrv with processors that spend time, the four ways to serve a file.

    world = server_world("khttpd zero-copy", profile="2003", link_bps=100_000_000)
    rps, mbps, per_request_ns = measure(world, "khttpd zero-copy", "/files/1KB.bin", count=20, clients=1)

Servers:  khttpd zero-copy (port 80), khttpd copy (CopyMode), hand-over (khttpd relays
/app/bytes?n=<size> to the user-mode web server on 8080), user-mode static (stack.usermode.staticweb
on 8000: ReadFile + AFD send, two copies).  Only winsrv has a processor model: the client's code
takes no time, as the thesis's load generators were separate, faster machines.
"""

from __future__ import annotations

from typing import Any

from stack.fs.docroot_manifest import DOCROOT_SIZES
from stack.usermode import staticweb
from stack.usermode.socket import SockAddr, run_program
from stack.usermode.webserver import http_fetch
from stack.world import World, default_world

SERVERS = ("khttpd zero-copy", "khttpd copy", "hand-over", "user-mode static")
# Beyond the thesis's four: hits answered in WskReceiveEvent, and the accept-queue hand-over (afd moves the
# connection with its unread request to the user-mode server).  khttpd's parameters for each server:
MORE_SERVERS = ("khttpd WSK cached", "hand-over accept")
PARAMETERS = {"khttpd copy": {"CopyMode": True}, "khttpd WSK cached": {"ResponseCache": 4 << 20},
              "hand-over accept": {"HandOver": "Accept"}}
SIZE_PATHS = {1024: "/files/1KB.bin", 4096: "/files/4KB.bin", 16384: "/files/16KB.bin", 65536: "/files/64KB.bin",
              262144: "/files/256KB.bin", 1048576: "/files/1MB.bin"}


def server_world(server: str, profile: str = "2003", link_bps: int = 1_000_000_000, seed: int = 1) -> World:
    from tests.stack.drivers.khttpd_lab import boot_lab
    world = default_world(seed=seed, services=False)
    for name in ("winsrv", "client"):
        world.host(name).link.bandwidth_bps = link_bps
        world.host(name).nic.set_link_speed(link_bps)
    boot_lab(seed=seed, parameters=PARAMETERS.get(server, {}), world=world)
    if server == "user-mode static":
        staticweb.install(world)
    world.set_processors("winsrv", profile, 1)
    return world


def target(server: str, size: int) -> tuple[SockAddr, str]:
    if server == "user-mode static":
        return SockAddr.parse(f"10.0.0.1:{staticweb.STATICWEB_PORT}"), SIZE_PATHS[size]
    if server.startswith("hand-over"):
        return SockAddr.parse("10.0.0.1:80"), f"/app/bytes?n={size}"
    return SockAddr.parse("10.0.0.1:80"), SIZE_PATHS[size]


def measure(world: World, server: str, size: int, count: int, clients: int = 1) -> dict[str, float]:
    """`clients` closed-loop clients each fetch `count` times, a new connection per request
    (httperf --num-calls=1); returns req/s and Mbit/s in virtual time, and winsrv's CPU use."""
    address, path = target(server, size)
    assert server.startswith("hand-over") or DOCROOT_SIZES[path.lstrip("/")] == size

    def client() -> Any:
        for _ in range(count):
            response = yield from http_fetch(address, "GET", path)
            if response.status != 200 or len(response.body) < size:
                raise RuntimeError(f"{server} {path}: {response.status}, {len(response.body)} bytes")
        return count

    winsrv = world.host("winsrv").kernel
    model = winsrv.cpu_model
    busy0 = sum(p.isr_ns + p.dpc_ns + p.thread_ns for p in model.processors) if model else 0.0
    copies0 = winsrv.copies.total_bytes
    start = world.now_ns
    programs = [run_program(world.host("client").kernel, client, name=f"httperf{i}") for i in range(clients)]
    world.run_while(lambda: not all(p.done for p in programs), max_events=50_000_000)
    world.check()
    for p in programs:
        p.raise_error()
    seconds = (world.now_ns - start) / 1e9
    n = count * clients
    busy = (sum(p.isr_ns + p.dpc_ns + p.thread_ns for p in model.processors) if model else 0.0) - busy0
    return {"rps": n / seconds, "mbps": n * size * 8 / seconds / 1e6, "ns_per_request": seconds * 1e9 / n,
            "cpu_ns_per_request": busy / n, "copied_per_request": (winsrv.copies.total_bytes - copies0) / n,
            "utilisation": busy / (seconds * 1e9)}
