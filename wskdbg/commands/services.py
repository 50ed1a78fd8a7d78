"""Drivers as services: `sc query|start|stop NAME`, and the catalog of drivers `sc` can load.

Drivers become startable in three ways (first match wins):

1. the world offers them: `world.available_drivers()` returning name -> DriverImage;
2. somebody registered them: `register_driver("echosrv", image_or_factory)`;
3. a known module exports `DRIVER_IMAGE` (see KNOWN_DRIVER_MODULES), imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

from stack.kernel.io import DriverImage, IoLoadDriver, IoUnloadDriver

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize

if TYPE_CHECKING:
    from wskdbg.engine import Engine

# name -> module exporting DRIVER_IMAGE
KNOWN_DRIVER_MODULES: dict[str, str] = {
    "afd": "stack.afd",
    "buggy": "stack.drivers.buggy",
    "echosrv": "stack.drivers.echosrv",
    "ksocket": "stack.drivers.ksocket",
    "khttpd": "stack.drivers.khttpd.driver",
    "kfs": "stack.fs.kfs",
}

_REGISTERED: dict[str, Callable[[], DriverImage] | DriverImage] = {}

SERVICE_TYPE_KERNEL_DRIVER = 1
STATE_NAMES = {1: "STOPPED", 2: "START_PENDING", 3: "STOP_PENDING", 4: "RUNNING"}


def register_driver(name: str, image: DriverImage | Callable[[], DriverImage]) -> None:
    """Make a driver startable with `sc start <name>` (an image, or a function returning one)."""
    _REGISTERED[name.lower()] = image


def unregister_driver(name: str) -> None:
    _REGISTERED.pop(name.lower(), None)


def available_drivers(world: Any = None) -> dict[str, DriverImage]:
    """Every driver `sc` knows about: the world's, the registered ones, and the known modules'."""
    out: dict[str, DriverImage] = {}
    offer = getattr(world, "available_drivers", None)
    if callable(offer):
        try:
            for name, image in dict(offer()).items():
                out[name.lower()] = image
        except Exception:  # a world still being written must not break sc
            pass
    for name, image in _REGISTERED.items():
        if name in out:
            continue
        if isinstance(image, DriverImage):
            out[name] = image
            continue
        try:
            made = image()
        except Exception:  # a factory whose driver is not written yet: not available
            continue
        if isinstance(made, DriverImage):
            out[name] = made
    for name, module in KNOWN_DRIVER_MODULES.items():
        if name in out:
            continue
        try:
            image = getattr(importlib.import_module(module), "DRIVER_IMAGE", None)
        except Exception:  # not written yet, or broken: just not available
            image = None
        if isinstance(image, DriverImage):
            out[name] = image
    return out


def _state(dbg: "Engine", name: str) -> tuple[int, Any]:
    drv = dbg.kernel.drivers.get(name.lower())
    if drv is None:
        return 1, None
    if getattr(drv, "loaded", False):
        return 4, drv
    return 2, drv


def _query_lines(name: str, state: int, exit_code: int = 0) -> list[str]:
    lines = [f"SERVICE_NAME: {name}",
             f"        TYPE               : {SERVICE_TYPE_KERNEL_DRIVER}  KERNEL_DRIVER",
             f"        STATE              : {state}  {STATE_NAMES[state]}"]
    if state == 4:
        lines.append("                                (STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)")
    lines += [f"        WIN32_EXIT_CODE    : {exit_code}  ({exit_code:#x})",
              "        SERVICE_EXIT_CODE  : 0  (0x0)",
              "        CHECKPOINT         : 0x0",
              "        WAIT_HINT          : 0x0"]
    return lines


ALREADY_RUNNING = ("[SC] StartService FAILED 1056:", "", "An instance of the service is already running.")
ERROR_SERVICE_ALREADY_RUNNING = 1056

SC_HELP = """
  sc query [Name]   the state of a driver (or of every driver sc knows and every loaded one)
  sc start Name     load it: map the module, create \\Driver\\Name, queue DriverEntry on a system
                    thread (START_PENDING: it runs when the machine runs, so `bu name!DriverEntry`
                    then `g` stops inside DriverEntry).  A service that is already running
                    answers as on Windows: [SC] StartService FAILED 1056 (every host starts
                    afd at boot; the standard lab starts kfs, echosrv and khttpd on winsrv)
  sc stop Name      unload it: DriverUnload on a system thread, then the pool-leak check
Startable drivers come from the world (available_drivers()), from
wskdbg.commands.services.register_driver(), or from modules exporting DRIVER_IMAGE."""


@command("sc", area="services", syntax="sc query [Name] | sc start Name | sc stop Name", mutates=True,
         summary="Query, start and stop drivers", help=SC_HELP)
def cmd_sc(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        raise inv.error("sc needs query, start or stop", 0)
    verb, vat = words[0]
    verb = verb.lower()
    seen: set[str] = dbg.state.setdefault("sc_seen", set())  # drivers ever loaded count as installed
    seen.update(dbg.kernel.drivers)
    if len(words) > 2:
        raise inv.syntax_error(words[2][1])
    name = words[1][0] if len(words) == 2 else None
    if verb == "query":
        names = [name] if name else sorted(set(available_drivers(dbg.world)) | seen)
        lines: list[str] = []
        data = []
        for n in names:
            state, _ = _state(dbg, n)
            if name and state == 1 and n.lower() not in available_drivers(dbg.world) and n.lower() not in seen:
                raise inv.error(f"[SC] EnumQueryServicesStatus:OpenService FAILED 1060: The specified service "
                                f"does not exist as an installed service ({n}).", words[1][1])
            lines += _query_lines(n, state) + [""]
            data.append({"name": n, "state": STATE_NAMES[state]})
        return CommandResult("\n".join(lines).rstrip(), {"services": data})
    if verb not in ("start", "stop"):
        raise inv.error(f"unknown sc verb '{words[0][0]}' (query, start, stop)", vat)
    if name is None:
        raise inv.error(f"sc {verb} needs a driver name", len(inv.args))
    if dbg.scheduler.halted is not None:
        raise inv.error("the machine has bug-checked; .reboot first")
    k = dbg.kernel
    state, drv = _state(dbg, name)
    if verb == "start":
        if state != 1:
            # What sc.exe prints (and its exit code); the machine is untouched, so a script that
            # starts a service the lab already runs just says so and goes on.
            return CommandResult("\n".join(ALREADY_RUNNING),
                                 {"name": drv.short_name, "state": STATE_NAMES[state],
                                  "win32_error": ERROR_SERVICE_ALREADY_RUNNING})
        image = available_drivers(dbg.world).get(name.lower())
        if image is None:
            known = ", ".join(sorted(available_drivers(dbg.world))) or "none"
            raise inv.error(f"[SC] StartService FAILED 1060: no driver named '{name}' (available: {known})",
                            words[1][1])
        IoLoadDriver(k, image)
        return CommandResult("\n".join(_query_lines(image.name, 2)), {"name": image.name, "state": "START_PENDING"})
    if state == 1:
        raise inv.error(f"[SC] ControlService FAILED 1062: The service has not been started ({name}).", words[1][1])
    IoUnloadDriver(k, drv)
    return CommandResult("\n".join(_query_lines(drv.short_name, 3)), {"name": drv.short_name, "state": "STOP_PENDING"})
