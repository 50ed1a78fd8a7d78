"""Small shared pieces for the kernel executive tests: a machine, a test driver, helpers."""

from __future__ import annotations

from typing import Any, Callable

from stack.kernel import (IRP_MJ_DEVICE_CONTROL, STATUS_SUCCESS, BugCheckInfo, IoCreateDevice, IoLoadDriver,
                          kroutine)
from stack.kernel.events import Event
from stack.kernel.io import FILE_DEVICE_UNKNOWN, DeviceObject, DriverImage, DriverObject
from stack.kernel.machine import Machine


def new_machine(seed: int = 7) -> Machine:
    """A small machine (4 MiB of emulated RAM keeps construction cheap)."""
    return Machine(seed=seed, memory_mb=4)


def run(m: Machine, fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` as one event on the machine's kernel and return its result."""
    return m.run_in(m.kernel, fn, *args)


def crash(m: Machine) -> BugCheckInfo:
    info = m.scheduler.halted
    assert info is not None, "expected the machine to bug-check"
    return info


def assert_running(m: Machine) -> None:
    info = m.scheduler.halted
    assert info is None, f"unexpected bug check {info.code:#x} {info.params} {info.frames}\n{info.detail}"


def record_events(m: Machine) -> list[Event]:
    seen: list[Event] = []
    m.bus.subscribe(seen.append)
    return seen


# --- a test driver -------------------------------------------------------------------
# Each device's `extension` is a dict that says how its dispatch routine behaves.

@kroutine("testdrv")
def TestDispatch(DeviceObject: DeviceObject, Irp: Any) -> int:
    behave = DeviceObject.extension["dispatch"]
    return behave(DeviceObject, Irp)


@kroutine("testdrv")
def TestDriverEntry(DriverObject: DriverObject, RegistryPath: str) -> int:
    DriverObject.MajorFunction[IRP_MJ_DEVICE_CONTROL] = TestDispatch
    return STATUS_SUCCESS


def load_test_driver(m: Machine, name: str = "testdrv", entry: Callable[..., Any] = TestDriverEntry) -> DriverObject:
    drv = IoLoadDriver(m.kernel, DriverImage(name, "testdrv", entry))
    m.scheduler.run_until_idle()
    assert_running(m)
    return drv


def create_device(m: Machine, drv: DriverObject, name: str | None, dispatch: Callable[..., int],
                  stack_size: int = 1) -> DeviceObject:
    def make() -> DeviceObject:
        status, dev = IoCreateDevice(drv, 0, name, FILE_DEVICE_UNKNOWN)
        assert status == STATUS_SUCCESS and dev is not None
        dev.stack_size = stack_size
        dev.extension = {"dispatch": dispatch}
        return dev

    return run(m, make)
