"""tcpip.sys: DriverEntry registers the NDIS protocol, binds every adapter, creates the devices.

    drv = load_tcpip(kernel)                        # IoLoadDriver on the scheduler
    configure_interface(kernel, mac, ipv4="10.0.0.1/24", ipv6="fd00::1/64")

Addresses are configuration (the registry/NSI in Windows): given before the
adapter binds they wait for it; given after they apply at once.
"""

from __future__ import annotations

from typing import Any, Callable

from stack.kernel import (IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, STATUS_SUCCESS, IoCompleteRequest,
                          IoCreateDevice, IoLoadDriver, current_kernel, kroutine)
from stack.kernel.io import FILE_DEVICE_NETWORK, DriverImage, DriverObject
from stack.kernel.kernel import Kernel
from stack.ndis.constants import NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG
from stack.ndis import (NDIS_OPEN_PARAMETERS, NDIS_PROTOCOL_DRIVER_CHARACTERISTICS, NDIS_STATUS_SUCCESS,
                        NET_BUFFER_LIST_POOL_PARAMETERS, NdisAllocateNetBufferListPool, NdisOpenAdapterEx,
                        NdisRegisterProtocolDriver)

from .ip import Interface
from .stack import TcpipStack
from .tcp import TcpConfig

# \Device\Tcp, \Device\Tcp6, \Device\Udp, \Device\Udp6 belong to tdx.sys (stack.tdi), as on Vista and later.
TCPIP_DEVICES = ("\\Device\\Ip",)
CONFIG_KEY = "tcpip.config"


@kroutine("tcpip")
def TcpipDispatchCreateClose(DeviceObject: Any, Irp: Any) -> int:
    Irp.IoStatus.Status = STATUS_SUCCESS
    Irp.IoStatus.Information = 0
    IoCompleteRequest(Irp)
    return STATUS_SUCCESS


@kroutine("tcpip")
def TcpipBindAdapter(ProtocolDriverContext: TcpipStack, BindContext: Any, BindParameters: Any) -> int:
    """BindAdapterHandlerEx: one Interface per adapter, opened with NdisOpenAdapterEx."""
    stack = ProtocolDriverContext
    mac = bytes(_field(BindParameters, "CurrentMacAddress", "MacAddress", default=bytes(6)))[:6]
    mtu = int(_field(BindParameters, "MtuSize", "Mtu", default=1500))
    name = str(_field(BindParameters, "AdapterName", "Name", default=f"if{len(stack.interfaces)}"))
    iface = Interface(stack, name, mac, mtu)
    iface.index = len(stack.interfaces) + 1
    _take_offloads(iface, _field(BindParameters, "DefaultOffloadConfiguration", "OffloadConfiguration",
                                 default=None))
    status, binding = NdisOpenAdapterEx(stack.protocol_handle, iface, NDIS_OPEN_PARAMETERS(AdapterName=name),
                                        BindContext)
    if status != NDIS_STATUS_SUCCESS:
        return status
    iface.binding = binding
    iface.nbl_pool = stack.nbl_pool
    stack.interfaces.append(iface)
    config = stack.pending_config.pop(mac, None)
    if config is not None:
        stack.configure(iface, config.get("ipv4"), config.get("ipv6"), config.get("gateway4"), config.get("gateway6"))
    return NDIS_STATUS_SUCCESS


@kroutine("tcpip")
def TcpipUnbindAdapter(UnbindContext: Any, ProtocolBindingContext: Interface) -> int:
    iface = ProtocolBindingContext
    stack = iface.stack
    if iface in stack.interfaces:
        stack.interfaces.remove(iface)
    iface.arp.flush()
    iface.nd.flush()
    from stack.ndis import NdisCloseAdapterEx
    NdisCloseAdapterEx(iface.binding)
    return NDIS_STATUS_SUCCESS


@kroutine("tcpip")
def FlReceiveNetBufferListChain(ProtocolBindingContext: Interface, NetBufferLists: Any, PortNumber: int,
                                NumberOfNetBufferLists: int, ReceiveFlags: int) -> None:
    """tcpip's ProtocolReceiveNetBufferLists (the framing layer's name, as Windows stacks show it)."""
    iface = ProtocolBindingContext
    iface.stack.receive_indication(iface, NetBufferLists, ReceiveFlags)


@kroutine("tcpip")
def TcpipSendNetBufferListsComplete(ProtocolBindingContext: Interface, NetBufferLists: Any,
                                    SendCompleteFlags: int) -> None:
    ProtocolBindingContext.stack.send_complete(NetBufferLists)


@kroutine("tcpip")
def TcpipStatus(ProtocolBindingContext: Interface, StatusIndication: Any) -> None:
    """The adapter's offloads changed (OID_TCP_OFFLOAD_PARAMETERS): use only what it now does."""
    if getattr(StatusIndication, "StatusCode", None) == NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG:
        _take_offloads(ProtocolBindingContext, StatusIndication.StatusBuffer)


@kroutine("tcpip")
def TcpipPnPEvent(ProtocolBindingContext: Any, NetPnPEventNotification: Any) -> int:
    return NDIS_STATUS_SUCCESS


@kroutine("tcpip")
def TcpipDriverEntry(DriverObject: DriverObject, RegistryPath: str) -> int:
    k = current_kernel()
    config = k.extensions.pop(CONFIG_KEY, {})
    stack = TcpipStack(k, config.get("tcp_config"))
    stack.pending_config.update(config.get("interfaces", {}))
    k.extensions["tcpip"] = stack
    for major in (IRP_MJ_CREATE, IRP_MJ_CLOSE, IRP_MJ_CLEANUP):
        DriverObject.MajorFunction[major] = TcpipDispatchCreateClose
    for path in TCPIP_DEVICES:
        status, device = IoCreateDevice(DriverObject, 0, path, FILE_DEVICE_NETWORK)
        if device is not None:
            device.extension = stack
            device.flags &= ~0x80
    chars = NDIS_PROTOCOL_DRIVER_CHARACTERISTICS(
        Name="TCPIP", MajorNdisVersion=6, MinorNdisVersion=30,
        BindAdapterHandlerEx=TcpipBindAdapter, UnbindAdapterHandlerEx=TcpipUnbindAdapter,
        ReceiveNetBufferListsHandler=FlReceiveNetBufferListChain,
        SendNetBufferListsCompleteHandler=TcpipSendNetBufferListsComplete,
        StatusHandlerEx=TcpipStatus, NetPnPEventHandler=TcpipPnPEvent)
    status, handle = NdisRegisterProtocolDriver(stack, chars)
    if status != NDIS_STATUS_SUCCESS:
        return status
    stack.protocol_handle = handle
    stack.nbl_pool = NdisAllocateNetBufferListPool(handle, NET_BUFFER_LIST_POOL_PARAMETERS(
        fAllocateNetBuffer=True, DataSize=0, PoolTag="TcpN"))
    return STATUS_SUCCESS


TCPIP_IMAGE = DriverImage("tcpip", "tcpip", TcpipDriverEntry, image="tcpip.sys", size=0x2F0000,
                          pool_tags=("TcpE", "TcpW", "TcpL", "UdpA", "IpHd"),
                          description="TCP/IP Protocol Driver")


def load_tcpip(kernel: Kernel, tcp_config: TcpConfig | None = None,
               interfaces: dict[bytes, dict[str, str | None]] | None = None,
               on_done: Callable[[int], None] | None = None) -> DriverObject:
    """Start loading tcpip.sys on `kernel` (it runs when the scheduler runs).

    `interfaces` maps an adapter's MAC to {"ipv4": "10.0.0.1/24", "ipv6": "fd00::1/64",
    "gateway4": None, "gateway6": None}, applied when that adapter binds."""
    kernel.extensions[CONFIG_KEY] = {"tcp_config": tcp_config, "interfaces": dict(interfaces or {})}
    return IoLoadDriver(kernel, TCPIP_IMAGE, on_done)


def configure_interface(kernel: Kernel, mac: bytes, ipv4: str | None = None, ipv6: str | None = None,
                        gateway4: str | None = None, gateway6: str | None = None) -> None:
    """Set an adapter's addresses now (bound) or when it binds."""
    stack: TcpipStack | None = kernel.extensions.get("tcpip")
    config = {"ipv4": ipv4, "ipv6": ipv6, "gateway4": gateway4, "gateway6": gateway6}
    if stack is None:
        pending = kernel.extensions.setdefault(CONFIG_KEY, {"tcp_config": None, "interfaces": {}})
        pending["interfaces"][bytes(mac)] = config
        return
    for iface in stack.interfaces:
        if iface.mac == bytes(mac):
            stack.configure(iface, ipv4, ipv6, gateway4, gateway6)
            return
    stack.pending_config[bytes(mac)] = config


def _field(obj: Any, *names: str, default: Any) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return default


def _take_offloads(iface: Interface, offload: Any) -> None:
    """Read the adapter's NDIS_OFFLOAD: checksum and LSO v2 capabilities."""
    if offload is None:
        return
    checksum = getattr(offload, "Checksum", None)
    lso = getattr(offload, "LsoV2", None)
    if checksum is not None:
        v4 = getattr(checksum, "IPv4Transmit", None)
        v6 = getattr(checksum, "IPv6Transmit", None)
        iface.tx_csum_v4 = bool(v4 and getattr(v4, "TcpChecksum", 0))
        iface.tx_csum_v6 = bool(v6 and getattr(v6, "TcpChecksum", 0))
        rx = getattr(checksum, "IPv4Receive", None)
        iface.rx_csum = bool(rx and getattr(rx, "TcpChecksum", 0))
    if lso is not None:
        v4 = getattr(lso, "IPv4", None)
        v6 = getattr(lso, "IPv6", None)
        iface.lso_v4_max = int(getattr(v4, "MaxOffLoadSize", 0) or 0) if v4 is not None else 0
        iface.lso_v6_max = int(getattr(v6, "MaxOffLoadSize", 0) or 0) if v6 is not None else 0
