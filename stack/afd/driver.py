"""afd.sys, one driver: `\\Driver\\AFD` with the device `\\Device\\Afd`.

AFD is both the kernel half of user-mode Winsock (IRPs from NtDeviceIoControlFile on
\\Device\\Afd, device.py) and the Winsock Kernel provider (dispatch tables called directly,
provider.py and socket.py).  Its DriverEntry sets the IRP_MJ_* routines for user mode,
lays out its globals (afd!AfdWskClientListHead), and registers the WSK provider with netio's
NMR, which attaches every WSK client registered so far.  The world loads it on every host
right after tcpip, as Windows starts afd at boot.
"""

from __future__ import annotations

from typing import Any

from stack.kernel import (IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, STATUS_SUCCESS,
                          IoCreateDevice, IoLoadDriver, current_kernel, kroutine)
from stack.kernel.io import DO_DEVICE_INITIALIZING, FILE_DEVICE_NETWORK, DriverImage, DriverObject
from stack.kernel.kernel import Kernel
from stack.wsk.netio import NmrDeregisterProvider, NmrRegisterProvider

from .device import (AFD_TAG, AfdDispatchCleanup, AfdDispatchClose, AfdDispatchCreate,
                     AfdDispatchDeviceControl)
from .indication import INDICATION_TAG
from .names import ADDRINFO_TAG
from .sendbuf import AFD_BUFFER_TAG
from .provider import _make_dispatch
from .socket import SOCKET_TAG
from .state import AFD_WSK_CLIENT_TAG, AfdDataSection, WskProvider

AFD_DEVICE_NAME = "\\Device\\Afd"
AFD_MODULE = "afd"


@kroutine(AFD_MODULE)
def AfdDriverEntry(DriverObject: DriverObject, RegistryPath: str) -> int:
    k = current_kernel()
    status, device = IoCreateDevice(DriverObject, 0, AFD_DEVICE_NAME, FILE_DEVICE_NETWORK)
    if device is None:
        return status
    device.flags &= ~DO_DEVICE_INITIALIZING
    DriverObject.MajorFunction[IRP_MJ_CREATE] = AfdDispatchCreate
    DriverObject.MajorFunction[IRP_MJ_CLEANUP] = AfdDispatchCleanup
    DriverObject.MajorFunction[IRP_MJ_CLOSE] = AfdDispatchClose
    DriverObject.MajorFunction[IRP_MJ_DEVICE_CONTROL] = AfdDispatchDeviceControl
    DriverObject.driver_unload = AfdUnload
    dispatch, tables = _make_dispatch(k)
    provider = WskProvider(k, DriverObject, device, dispatch, AfdDataSection(k, AFD_MODULE))
    provider.socket_dispatch = tables
    k.extensions["wsk"] = provider
    NmrRegisterProvider(k, provider)
    return STATUS_SUCCESS


@kroutine(AFD_MODULE)
def AfdUnload(DriverObject: Any) -> None:
    """Detach the WSK provider (NmrDeregisterProvider).  Sockets still open are the verifier's to
    report (pool tag 'WskS')."""
    k = current_kernel()
    provider = k.extensions.pop("wsk", None)
    NmrDeregisterProvider(k)
    if provider is not None:
        provider.data.release()


DRIVER_IMAGE = DriverImage("AFD", AFD_MODULE, AfdDriverEntry, image="afd.sys", size=0x90000,
                           pool_tags=(AFD_TAG, AFD_WSK_CLIENT_TAG, SOCKET_TAG, INDICATION_TAG, ADDRINFO_TAG,
                                      AFD_BUFFER_TAG),
                           description="Ancillary Function Driver for Winsock")


def load_afd(kernel: Kernel) -> DriverObject:
    """Start loading afd.sys (runs on the scheduler)."""
    return IoLoadDriver(kernel, DRIVER_IMAGE)
