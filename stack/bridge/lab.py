"""The lab a bridge serves by default: `default_world` with echosrv and khttpd running on winsrv.

Registered as topology "default", so a recording names it and `wskdbg run rec.wbr`
rebuilds it.  (The debugger may build its own lab and register it under another
name with `stack.bridge.session.register_topology`.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from stack.kernel.io import IoLoadDriver
from stack.kernel.ntstatus import NT_SUCCESS, status_name

from .realtime import BridgeError
from .session import register_topology

if TYPE_CHECKING:
    from stack.world import World

SERVER_HOST = "winsrv"
# (module holding DRIVER_IMAGE, what it is) in load order; WSK first, the servers need it
SERVER_DRIVERS = (("stack.wsk.provider", "wsk"), ("stack.drivers.echosrv", "echosrv"),
                  ("stack.drivers.khttpd.driver", "khttpd"))


def load_driver(world: "World", host: str, image: object, *, max_events: int = 2_000_000) -> int:
    """Load a driver image on a host and run the lab until its DriverEntry returned."""
    kernel = world.host(host).kernel
    result: list[int] = []
    IoLoadDriver(kernel, image, on_done=result.append)  # type: ignore[arg-type]
    world.run_while(lambda: not result, max_events=max_events)
    world.check()
    if not result:
        raise BridgeError(f"{getattr(image, 'name', image)} did not finish loading on {host}")
    return result[0]


def bridge_lab(seed: int = 1) -> "World":
    from stack.world import default_world

    world = default_world(seed)
    for module_name, what in SERVER_DRIVERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # that server is not part of this build
            raise
        image = getattr(module, "DRIVER_IMAGE", None)
        if image is None or what in world.host(SERVER_HOST).kernel.extensions:
            continue
        status = load_driver(world, SERVER_HOST, image)
        if not NT_SUCCESS(status):
            raise BridgeError(f"{what} failed to load on {SERVER_HOST}: {status_name(status)}")
    return world


register_topology("default", bridge_lab)
