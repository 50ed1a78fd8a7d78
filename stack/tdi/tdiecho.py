"""tdiecho.sys: an echo server over the TDI sockets library (the WSK echosrv's TDI twin).

DriverEntry creates \\Device\\tdiecho, starts the library (ks_startup) and one system
thread per address family that binds port `Port` (\\Device\\Tcp and \\Device\\Tcp6),
listens with the chosen accept design and echoes each connection on a thread of its own.
Parameters: Port (7), Design (KS_LISTEN_EVENT or KS_LISTEN_IRP), Backlog (4).
"""

from __future__ import annotations

from typing import Any, Generator

from stack.kernel import (NT_SUCCESS, STATUS_SUCCESS, IoCreateDevice, PsCreateSystemThread, current_kernel,
                          kroutine)
from stack.kernel.io import FILE_DEVICE_NETWORK, DriverImage, DriverObject
from stack.tcpip.addr import SockAddr

from . import sockets as ks

MODULE = "tdiecho"


@kroutine(MODULE)
def TdiEchoDriverEntry(DriverObject: DriverObject, RegistryPath: str) -> int:
    params = {"Port": 7, "Design": ks.KS_LISTEN_EVENT, "Backlog": 4}
    params.update(DriverObject.extension.pop("parameters", {}))
    status, device = IoCreateDevice(DriverObject, 0, "\\Device\\tdiecho", FILE_DEVICE_NETWORK)
    if not NT_SUCCESS(status):
        return status
    ks.ks_startup(device)
    state = DriverObject.extension["tdiecho"] = {"params": params, "connections": 0, "echoed": 0}
    for any_ip, af in (("0.0.0.0", 2), ("::", 23)):
        PsCreateSystemThread(TdiEchoListenThread, (state, SockAddr(any_ip, params["Port"]), af),
                             name=f"tdiecho listen {af}")
    return STATUS_SUCCESS


@kroutine(MODULE)
def TdiEchoListenThread(Context: tuple[dict, SockAddr, int]) -> Generator[Any, Any, None]:
    state, local, af = Context
    params = state["params"]
    fd = ks.socket(af)
    status = yield from ks.bind(fd, local)
    if NT_SUCCESS(status):
        status = yield from ks.listen(fd, params["Backlog"], params["Design"])
    if not NT_SUCCESS(status):
        current_kernel().dbg_print(f"tdiecho: listen on {local} failed: {status:#x}\n")
        return
    while True:
        child = yield from ks.accept(fd)
        if child < 0:
            return
        state["connections"] += 1
        PsCreateSystemThread(TdiEchoConnectionThread, (state, child), name=f"tdiecho conn {child}")


@kroutine(MODULE)
def TdiEchoConnectionThread(Context: tuple[dict, int]) -> Generator[Any, Any, None]:
    state, fd = Context
    while True:
        data = yield from ks.recv(fd, 16 * 1024)
        if not data:
            break
        sent = yield from ks.send(fd, data)
        if sent < 0:
            break
        state["echoed"] += sent
    yield from ks.shutdown(fd, ks.SD_SEND)
    yield from ks.closesocket(fd)


def tdiecho_image(**parameters: Any) -> DriverImage:
    def entry(DriverObject: DriverObject, RegistryPath: str) -> Any:
        DriverObject.extension["parameters"] = dict(parameters)
        return TdiEchoDriverEntry(DriverObject, RegistryPath)

    entry.symbol = TdiEchoDriverEntry.symbol  # type: ignore[attr-defined]
    return DriverImage("tdiecho", MODULE, entry, image="tdiecho.sys", pool_tags=(ks.BUFFER_TAG,),
                       description="echo server over TDI")
