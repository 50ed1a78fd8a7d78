"""A small engine stand-in with the real engine's surface (execute / break_in / state).

It drives a kernel-only `Machine` with two hosts and a layered test driver:
every 100 µs of virtual time echosrv on winsrv sends an IRP with an MDL over
"hello N" down afd -> tcpip -> ndis -> netvmini, which pends it and
completes it 50 µs later; completion routines run back up.  The machine
always has work, so `g` runs until `break_in()`.  Steps are whole scheduler
events (the real engine stops at each hand-off; the views do not care).

`.crash` makes netvmini complete an IRP twice: MULTIPLE_IRP_COMPLETE_REQUESTS.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from stack.kernel import (IRP_MJ_INTERNAL_DEVICE_CONTROL, STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING,
                          STATUS_SUCCESS, IoAllocateIrp, IoAllocateMdl, IoCallDriver, IoCompleteRequest,
                          IoCopyCurrentIrpStackLocationToNext, IoCreateDevice, IoFreeIrp, IoFreeMdl, IoLoadDriver,
                          IoMarkIrpPending, IoSetCompletionRoutine, MmBuildMdlForNonPagedPool, NonPagedPoolNx,
                          kroutine)
from stack.kernel.io import FILE_DEVICE_UNKNOWN, DriverImage
from stack.kernel.irp import IoGetNextIrpStackLocation, Irp
from stack.kernel.machine import Machine
from stack.kernel.symbols import current_kernel
from stack.kernel.wpp import TRACE_LEVEL_INFORMATION, WPP_DEFINE_CONTROL_GUID, WPP_INIT_TRACING, TraceEvents

from wskdbg.tui.crash_screen import local_analysis
from wskdbg.tui.irp_view import render_irp

SEND_PERIOD_NS = 100_000
COMPLETE_DELAY_NS = 50_000
LAYERS = ("afd", "tcpip", "ndis", "netvmini")

ECHO_TRACE = WPP_DEFINE_CONTROL_GUID("echosrv", "1b5b2a61-8a3e-4c57-9e9d-0f3d5a2c7e01", ["TRCINFO", "TRCERROR"])


@dataclass(slots=True)
class Result:
    text: str
    data: Any = None


# --- the layered test driver ------------------------------------------------------------

def _lower(device: Any) -> Any:
    return device.extension["lower"]


@kroutine("afd")
def AfdDispatchInternalDeviceControl(DeviceObject: Any, Irp: Irp) -> int:
    IoCopyCurrentIrpStackLocationToNext(Irp)
    return IoCallDriver(_lower(DeviceObject), Irp)


@kroutine("tcpip")
def TcpDispatch(DeviceObject: Any, Irp: Irp) -> int:
    IoCopyCurrentIrpStackLocationToNext(Irp)
    return IoCallDriver(_lower(DeviceObject), Irp)


@kroutine("ndis")
def NdisDispatch(DeviceObject: Any, Irp: Irp) -> int:
    IoCopyCurrentIrpStackLocationToNext(Irp)
    return IoCallDriver(_lower(DeviceObject), Irp)


@kroutine("netvmini")
def MiniportCompleteIrp(Irp: Irp) -> None:
    Irp.IoStatus.Status = STATUS_SUCCESS
    Irp.IoStatus.Information = Irp.mdl_address.byte_count if Irp.mdl_address else 0
    IoCompleteRequest(Irp)
    if current_kernel().extensions.get("standin.crash"):
        IoCompleteRequest(Irp)  # the driver bug `.crash` arms: a second completion


@kroutine("netvmini")
def MiniportDispatch(DeviceObject: Any, Irp: Irp) -> int:
    IoMarkIrpPending(Irp)
    current_kernel().call_later(COMPLETE_DELAY_NS, MiniportCompleteIrp, Irp, label="netvmini!MiniportCompleteIrp")
    return STATUS_PENDING


@kroutine("echosrv")
def EchoSendComplete(DeviceObject: Any, Irp: Irp, Context: Any) -> int:
    TraceEvents(ECHO_TRACE, TRACE_LEVEL_INFORMATION, "TRCINFO", "send irp %p complete, %d bytes", Irp.address,
                Irp.IoStatus.Information)
    if Irp.mdl_address is not None:
        IoFreeMdl(Irp.mdl_address)
        Irp.mdl_address = None
    IoFreeIrp(Irp)
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine("echosrv")
def EchoSend(top: Any, buffer: int, counter: list[int]) -> None:
    k = current_kernel()
    counter[0] += 1
    payload = f"hello {counter[0]}\n".encode()
    k.write(buffer, payload.ljust(32, b"."))
    irp = IoAllocateIrp(top.stack_size + 1)
    IoAllocateMdl(buffer, 32, Irp=irp)
    MmBuildMdlForNonPagedPool(irp.mdl_address)
    loc = IoGetNextIrpStackLocation(irp)
    loc.major = IRP_MJ_INTERNAL_DEVICE_CONTROL
    IoSetCompletionRoutine(irp, EchoSendComplete, None)
    TraceEvents(ECHO_TRACE, TRACE_LEVEL_INFORMATION, "TRCINFO", "sending %d bytes in irp %p", 32, irp.address)
    IoCallDriver(top, irp)
    k.call_later(SEND_PERIOD_NS, EchoSend, top, buffer, counter, label="echosrv!EchoSend")


@kroutine("echosrv")
def EchoDriverEntry(DriverObject: Any, RegistryPath: str) -> int:
    WPP_INIT_TRACING(ECHO_TRACE)
    return STATUS_SUCCESS


def _plain_entry(DriverObject: Any, RegistryPath: str) -> int:
    return STATUS_SUCCESS


def build_machine(seed: int) -> Machine:
    m = Machine(seed=seed, hosts=("winsrv", "client"), memory_mb=4)
    k = m.kernels["winsrv"]
    drivers = {}
    for module, dispatch in zip(LAYERS, (AfdDispatchInternalDeviceControl, TcpDispatch, NdisDispatch, MiniportDispatch)):
        drivers[module] = (IoLoadDriver(k, DriverImage(module, module, _plain_entry)), dispatch)
    IoLoadDriver(k, DriverImage("echosrv", "echosrv", EchoDriverEntry))
    m.scheduler.run_until_idle()
    k.wpp.start("standin", ECHO_TRACE.guid, 0x3, TRACE_LEVEL_INFORMATION)

    def setup() -> None:
        lower = None
        for module in reversed(LAYERS):
            drv, dispatch = drivers[module]
            drv.MajorFunction[IRP_MJ_INTERNAL_DEVICE_CONTROL] = dispatch
            _, dev = IoCreateDevice(drv, 0, module, FILE_DEVICE_UNKNOWN)
            dev.extension = {"lower": lower}
            dev.stack_size = 1 if lower is None else lower.stack_size + 1
            lower = dev
        buffer = k.pool.allocate(NonPagedPoolNx, 64, "Echo")
        k.call_later(SEND_PERIOD_NS, EchoSend, lower, buffer, [0], label="echosrv!EchoSend")

    m.run_in(k, setup)
    client = m.kernels["client"]
    client.load_module("usermode", "echocli.exe")
    return m


# --- the engine surface ---------------------------------------------------------------------

class StandinEngine:
    """execute / break_in / state / machine / prompt, like wskdbg.engine.Engine."""

    def __init__(self, seed: int = 1) -> None:
        self.seed = seed
        self.machine = build_machine(seed)
        self._break = threading.Event()
        self.state = "broken"
        self.executed: list[str] = []
        self.running_for_a_while = threading.Event()  # set once `g` has run 200 events

    def prompt(self) -> str:
        return "0: kd> "

    def command_names(self) -> list[str]:
        return ["g", "t", "p", "gu", "k", "!irp", "!analyze", ".reboot", ".crash", "db", "dt"]

    def break_in(self) -> None:
        self._break.set()

    def execute(self, command: str) -> Result:
        self.executed.append(command)
        word, _, rest = command.strip().partition(" ")
        sched = self.machine.scheduler
        if word in ("g", "t", "p", "gu"):
            if sched.halted is not None:
                return Result("The machine has bug-checked: use .reboot")
            self.state = "running"
            self._break.clear()
            self.running_for_a_while.clear()
            limit = {"t": 1, "p": 1, "gu": 3}.get(word)
            ran = 0
            while (limit is None or ran < limit) and not self._break.is_set():
                if not sched.run_one():
                    break
                ran += 1
                if ran == 200:
                    self.running_for_a_while.set()
            self.state = "bugchecked" if sched.halted is not None else "broken"
            if sched.halted is not None:
                info = sched.halted
                return Result(f"*** Fatal System Error: {info.code:#010x}\nBreak instruction exception - code 80000003")
            if word == "g" and self._break.is_set():
                return Result("Break instruction exception - code 80000003 (first chance)\nnt!DbgBreakPointWithStatus:")
            event = sched.events_run
            return Result(f"event {event}")
        if word == ".reboot":
            self.machine = build_machine(self.seed)
            self.state = "broken"
            return Result("Shutting down...\nRebooting: a new machine from seed %d" % self.seed)
        if word == ".crash":
            self.machine.kernels["winsrv"].extensions["standin.crash"] = True
            return Result("the next send completes its IRP twice")
        if word == "!analyze":
            info = sched.halted
            return Result(local_analysis(info) if info else "No bugcheck to analyze")
        if word == "!irp":
            try:
                address = int(rest.strip(), 16)
            except ValueError:
                return Result(f"Invalid IRP address '{rest}'")
            for kernel in self.machine.kernels.values():
                obj = kernel.addr_objects.get(address)
                if isinstance(obj, Irp):
                    return Result(render_irp(obj))
            return Result(f"{address:x}: not an IRP")
        if word == "k":
            frames = self.machine.kernels["winsrv"].frames
            return Result("\n".join(f.symbol for f in reversed(frames)) or "nt!KiIdleLoop")
        return Result(f"Unknown command '{word}'")
