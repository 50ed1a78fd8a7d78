"""The TdiBuild* macros of tdikrnl.h, one function each, same parameters in the same order.

Each fills the IRP's *next* stack location (IRP_MJ_INTERNAL_DEVICE_CONTROL, the TDI
minor function, the file object, the request's Parameters) and sets the completion
routine; the client then sends it with IoCallDriver.  That round trip through the
I/O manager for every send and receive is what WSK's direct dispatch calls removed.
"""

from __future__ import annotations

from typing import Any, Callable

from stack.kernel import (IRP_MJ_INTERNAL_DEVICE_CONTROL, IoBuildDeviceIoControlRequest, IoGetNextIrpStackLocation,
                          IoSetCompletionRoutine)
from stack.kernel.irp import Irp

from .constants import (TDI_ACCEPT, TDI_ASSOCIATE_ADDRESS, TDI_CONNECT, TDI_DISASSOCIATE_ADDRESS, TDI_DISCONNECT,
                        TDI_LISTEN, TDI_QUERY_INFORMATION, TDI_RECEIVE, TDI_RECEIVE_DATAGRAM, TDI_SEND,
                        TDI_SEND_DATAGRAM, TDI_SET_EVENT_HANDLER)
from .structs import (TDI_CONNECTION_INFORMATION, TDI_REQUEST_KERNEL, TDI_REQUEST_KERNEL_ASSOCIATE,
                      TDI_REQUEST_KERNEL_QUERY_INFORMATION, TDI_REQUEST_KERNEL_RECEIVE,
                      TDI_REQUEST_KERNEL_RECEIVEDG, TDI_REQUEST_KERNEL_SEND, TDI_REQUEST_KERNEL_SENDDG,
                      TDI_REQUEST_KERNEL_SET_EVENT)

Completion = Callable[..., int] | None


def _build(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any, minor: int,
           parameters: Any) -> None:
    if CompRoutine is not None:
        IoSetCompletionRoutine(Irp, CompRoutine, Contxt, True, True, True)
    else:
        IoSetCompletionRoutine(Irp, None, None, False, False, False)
    irpsp = IoGetNextIrpStackLocation(Irp)
    irpsp.major = IRP_MJ_INTERNAL_DEVICE_CONTROL
    irpsp.minor = minor
    irpsp.device_object = DevObj
    irpsp.file_object = FileObj
    irpsp.parameters = parameters


def TdiBuildInternalDeviceControlIrp(IrpSubFunction: int, DeviceObject: Any, FileObject: Any, Event: Any,
                                     IoStatusBlock: Any) -> Irp | None:
    """An IRP the I/O manager frees on completion (signalling Event); the minor is set by TdiBuild*."""
    return IoBuildDeviceIoControlRequest(0x00000003, DeviceObject, None, 0, None, 0, True, Event, IoStatusBlock)


def TdiBuildAssociateAddress(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any,
                             AddrHandle: int) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_ASSOCIATE_ADDRESS,
           TDI_REQUEST_KERNEL_ASSOCIATE(AddrHandle))


def TdiBuildDisassociateAddress(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion,
                                Contxt: Any) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_DISASSOCIATE_ADDRESS, TDI_REQUEST_KERNEL())


def TdiBuildConnect(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any, Time: Any,
                    RequestConnectionInfo: TDI_CONNECTION_INFORMATION | None,
                    ReturnConnectionInfo: TDI_CONNECTION_INFORMATION | None) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_CONNECT,
           TDI_REQUEST_KERNEL(0, RequestConnectionInfo, ReturnConnectionInfo, Time))


def TdiBuildListen(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any, Flags: int,
                   RequestConnectionInfo: TDI_CONNECTION_INFORMATION | None,
                   ReturnConnectionInfo: TDI_CONNECTION_INFORMATION | None) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_LISTEN,
           TDI_REQUEST_KERNEL(Flags, RequestConnectionInfo, ReturnConnectionInfo))


def TdiBuildAccept(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any,
                   RequestConnectionInfo: TDI_CONNECTION_INFORMATION | None,
                   ReturnConnectionInfo: TDI_CONNECTION_INFORMATION | None) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_ACCEPT,
           TDI_REQUEST_KERNEL(0, RequestConnectionInfo, ReturnConnectionInfo))


def TdiBuildDisconnect(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any, Time: Any,
                       Flags: int, RequestConnectionInfo: TDI_CONNECTION_INFORMATION | None,
                       ReturnConnectionInfo: TDI_CONNECTION_INFORMATION | None) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_DISCONNECT,
           TDI_REQUEST_KERNEL(Flags, RequestConnectionInfo, ReturnConnectionInfo, Time))


def TdiBuildSend(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any, MdlAddr: Any,
                 InFlags: int, SendLen: int) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_SEND, TDI_REQUEST_KERNEL_SEND(SendLen, InFlags))
    Irp.mdl_address = MdlAddr


def TdiBuildReceive(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any, MdlAddr: Any,
                    InFlags: int, ReceiveLen: int) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_RECEIVE, TDI_REQUEST_KERNEL_RECEIVE(ReceiveLen, InFlags))
    Irp.mdl_address = MdlAddr


def TdiBuildSendDatagram(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any, MdlAddr: Any,
                         SendLen: int, SendDatagramInfo: TDI_CONNECTION_INFORMATION | None) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_SEND_DATAGRAM,
           TDI_REQUEST_KERNEL_SENDDG(SendLen, SendDatagramInfo))
    Irp.mdl_address = MdlAddr


def TdiBuildReceiveDatagram(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any,
                            MdlAddr: Any, ReceiveLen: int,
                            ReceiveDatagramInfo: TDI_CONNECTION_INFORMATION | None,
                            ReturnInfo: TDI_CONNECTION_INFORMATION | None, InFlags: int) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_RECEIVE_DATAGRAM,
           TDI_REQUEST_KERNEL_RECEIVEDG(ReceiveLen, ReceiveDatagramInfo, ReturnInfo, InFlags))
    Irp.mdl_address = MdlAddr


def TdiBuildSetEventHandler(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any,
                            InEventType: int, InEventHandler: Callable[..., int] | None, InEventContext: Any) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_SET_EVENT_HANDLER,
           TDI_REQUEST_KERNEL_SET_EVENT(InEventType, InEventHandler, InEventContext))


def TdiBuildQueryInformation(Irp: Irp, DevObj: Any, FileObj: Any, CompRoutine: Completion, Contxt: Any,
                             QType: int, MdlAddr: Any) -> None:
    _build(Irp, DevObj, FileObj, CompRoutine, Contxt, TDI_QUERY_INFORMATION,
           TDI_REQUEST_KERNEL_QUERY_INFORMATION(QType))
    Irp.mdl_address = MdlAddr
