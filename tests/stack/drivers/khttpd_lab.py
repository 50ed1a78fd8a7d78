"""The khttpd lab for tests and the benchmark: the bare lab + WSK + kfs + khttpd with chosen parameters
(+ the user-mode server)."""

from __future__ import annotations

from typing import Any, Callable, Generator

from stack.drivers.khttpd.driver import khttpd_globals, khttpd_image
from stack.kernel import IoLoadDriver
from stack.kernel.kernel import Kernel
from stack.usermode.socket import Program, SockAddr, run_program
from stack.usermode.webserver import WebServerStats, webserver
from stack.world import World, default_world

SERVER4 = SockAddr.parse("10.0.0.1:80")
SERVER6 = SockAddr.parse("[fd00::1]:80")


def _load(world: World, kernel: Kernel, image: Any) -> None:
    statuses: list[int] = []
    IoLoadDriver(kernel, image, on_done=statuses.append)
    world.run_while(lambda: not statuses, max_events=2_000_000)
    world.check()
    if not statuses or statuses[0] != 0:
        raise RuntimeError(f"loading {image.name} failed: {statuses}")


def ensure_wsk(world: World, host: str = "winsrv") -> None:
    """afd.sys, the WSK provider, starts with every host; load it again only if a test stopped it."""
    kernel = world.host(host).kernel
    if "wsk" not in kernel.extensions:
        from stack.afd import DRIVER_IMAGE as AFD_IMAGE
        _load(world, kernel, AFD_IMAGE)


# The user-mode server runs on winsrv itself (khttpd's hand-over is delivered locally by
# tcpip's loopback); boot_lab(backend_host="appsrv") puts it on a third host instead.
BACKEND_HOST = "winsrv"
BACKEND_ADDRESSES = ("10.0.0.3", "fd00::3")


def boot_lab(seed: int = 1, parameters: dict[str, Any] | None = None, webserver_stats: WebServerStats | None = None,
             world: World | None = None, backend_host: str = BACKEND_HOST) -> World:
    """winsrv runs khttpd (with `parameters`); `backend_host` runs the user-mode web server on 8080."""
    world = world or default_world(seed=seed, services=False)
    ensure_wsk(world)
    parameters = dict(parameters or {})
    if backend_host != "winsrv":
        if backend_host not in world.hosts:
            world.add_host(backend_host, *BACKEND_ADDRESSES)
        parameters.setdefault("BackendAddress", str(world.host(backend_host).address4))
    winsrv = world.host("winsrv").kernel
    _load(world, winsrv, khttpd_image(**parameters))
    stats = webserver_stats if webserver_stats is not None else WebServerStats()
    backend = world.host(backend_host)
    backend.extras["webserver"] = run_program(backend.kernel, webserver, None, stats, None, name="webserver")
    backend.extras["webserver_stats"] = stats
    world.run_until_idle()
    world.check()
    assert khttpd_globals(winsrv) is not None
    return world


def run_client(world: World, fn: Callable[..., Generator], *args: Any, max_events: int = 5_000_000) -> Any:
    """Run a user-mode program on `client` to completion and return its result."""
    program: Program = run_program(world.host("client").kernel, fn, *args, name=getattr(fn, "__name__", "client"))
    world.run_while(lambda: not program.done, max_events=max_events)
    world.check()
    if not program.done:
        raise RuntimeError(f"client program {program.name} did not finish")
    program.raise_error()
    return program.result
