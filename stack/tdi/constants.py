"""TDI constants with their tdikrnl.h / tdi.h names and values.

Minor functions of IRP_MJ_INTERNAL_DEVICE_CONTROL, event types, request flags,
the extended-attribute names ZwCreateFile takes, address types and query types.
`TDI_MINOR_NAMES` is what `!irp` prints for a TDI request's minor function.
"""

from __future__ import annotations

from typing import Final

# --- minor functions (tdikrnl.h) -----------------------------------------------------------
TDI_ASSOCIATE_ADDRESS: Final = 0x01
TDI_DISASSOCIATE_ADDRESS: Final = 0x02
TDI_CONNECT: Final = 0x03
TDI_LISTEN: Final = 0x04
TDI_ACCEPT: Final = 0x05
TDI_DISCONNECT: Final = 0x06
TDI_SEND: Final = 0x07
TDI_RECEIVE: Final = 0x08
TDI_SEND_DATAGRAM: Final = 0x09
TDI_RECEIVE_DATAGRAM: Final = 0x0A
TDI_SET_EVENT_HANDLER: Final = 0x0B
TDI_QUERY_INFORMATION: Final = 0x0C
TDI_SET_INFORMATION: Final = 0x0D
TDI_ACTION: Final = 0x0E

TDI_MINOR_NAMES: Final[dict[int, str]] = {
    TDI_ASSOCIATE_ADDRESS: "TDI_ASSOCIATE_ADDRESS", TDI_DISASSOCIATE_ADDRESS: "TDI_DISASSOCIATE_ADDRESS",
    TDI_CONNECT: "TDI_CONNECT", TDI_LISTEN: "TDI_LISTEN", TDI_ACCEPT: "TDI_ACCEPT",
    TDI_DISCONNECT: "TDI_DISCONNECT", TDI_SEND: "TDI_SEND", TDI_RECEIVE: "TDI_RECEIVE",
    TDI_SEND_DATAGRAM: "TDI_SEND_DATAGRAM", TDI_RECEIVE_DATAGRAM: "TDI_RECEIVE_DATAGRAM",
    TDI_SET_EVENT_HANDLER: "TDI_SET_EVENT_HANDLER", TDI_QUERY_INFORMATION: "TDI_QUERY_INFORMATION",
    TDI_SET_INFORMATION: "TDI_SET_INFORMATION", TDI_ACTION: "TDI_ACTION",
}

# --- event types (TDI_SET_EVENT_HANDLER) --------------------------------------------------
TDI_EVENT_CONNECT: Final = 0
TDI_EVENT_DISCONNECT: Final = 1
TDI_EVENT_ERROR: Final = 2
TDI_EVENT_RECEIVE: Final = 3
TDI_EVENT_RECEIVE_DATAGRAM: Final = 4
TDI_EVENT_RECEIVE_EXPEDITED: Final = 5
TDI_EVENT_SEND_POSSIBLE: Final = 6
TDI_EVENT_CHAINED_RECEIVE: Final = 7
TDI_EVENT_CHAINED_RECEIVE_DATAGRAM: Final = 8
TDI_EVENT_CHAINED_RECEIVE_EXPEDITED: Final = 9
TDI_EVENT_ERROR_EX: Final = 10

TDI_EVENT_NAMES: Final[dict[int, str]] = {
    0: "TDI_EVENT_CONNECT", 1: "TDI_EVENT_DISCONNECT", 2: "TDI_EVENT_ERROR", 3: "TDI_EVENT_RECEIVE",
    4: "TDI_EVENT_RECEIVE_DATAGRAM", 5: "TDI_EVENT_RECEIVE_EXPEDITED", 6: "TDI_EVENT_SEND_POSSIBLE",
    7: "TDI_EVENT_CHAINED_RECEIVE", 8: "TDI_EVENT_CHAINED_RECEIVE_DATAGRAM",
    9: "TDI_EVENT_CHAINED_RECEIVE_EXPEDITED", 10: "TDI_EVENT_ERROR_EX",
}
# The events this tdx implements; others are refused with STATUS_INVALID_PARAMETER.
TDX_SUPPORTED_EVENTS: Final = frozenset({TDI_EVENT_CONNECT, TDI_EVENT_DISCONNECT, TDI_EVENT_ERROR,
                                         TDI_EVENT_RECEIVE, TDI_EVENT_CHAINED_RECEIVE, TDI_EVENT_RECEIVE_DATAGRAM,
                                         TDI_EVENT_CHAINED_RECEIVE_DATAGRAM})
# ... and which of them an address object of each protocol takes
TDX_DATAGRAM_EVENTS: Final = frozenset({TDI_EVENT_RECEIVE_DATAGRAM, TDI_EVENT_CHAINED_RECEIVE_DATAGRAM, TDI_EVENT_ERROR})

# --- listen / disconnect / send / receive flags ---------------------------------------------
TDI_QUERY_ACCEPT: Final = 0x00000001  # TDI_LISTEN: complete the listen, the client decides with TDI_ACCEPT

TDI_DISCONNECT_WAIT: Final = 0x0001
TDI_DISCONNECT_ABORT: Final = 0x0002
TDI_DISCONNECT_RELEASE: Final = 0x0004

TDI_SEND_EXPEDITED: Final = 0x0020
TDI_SEND_PARTIAL: Final = 0x0040
TDI_SEND_NO_RESPONSE_EXPECTED: Final = 0x0080
TDI_SEND_NON_BLOCKING: Final = 0x0100
TDI_SEND_AND_DISCONNECT: Final = 0x0200

TDI_RECEIVE_TRUNCATED: Final = 0x00000001
TDI_RECEIVE_FRAGMENT: Final = 0x00000002
TDI_RECEIVE_PARTIAL: Final = 0x00000010
TDI_RECEIVE_NORMAL: Final = 0x00000020
TDI_RECEIVE_EXPEDITED: Final = 0x00000040
TDI_RECEIVE_PEEK: Final = 0x00000080
TDI_RECEIVE_NO_RESPONSE_EXP: Final = 0x00000100
TDI_RECEIVE_COPY_LOOKAHEAD: Final = 0x00000200
TDI_RECEIVE_ENTIRE_MESSAGE: Final = 0x00000400
TDI_RECEIVE_AT_DISPATCH_LEVEL: Final = 0x00000800
TDI_RECEIVE_NO_PUSH: Final = 0x00004000

# --- extended attributes ZwCreateFile takes (tdi.h) ----------------------------------------------
TdiTransportAddress: Final = "TransportAddress"
TdiConnectionContext: Final = "ConnectionContext"
TDI_TRANSPORT_ADDRESS_LENGTH: Final = len(TdiTransportAddress)  # sizeof(TdiTransportAddress) - 1
TDI_CONNECTION_CONTEXT_LENGTH: Final = len(TdiConnectionContext)

# FILE_OBJECT->FsContext2 of each kind of TDI file object, as the TDI samples test it.
TDI_TRANSPORT_ADDRESS_FILE: Final = 1
TDI_CONNECTION_FILE: Final = 2
TDI_CONTROL_CHANNEL_FILE: Final = 3

# --- addresses --------------------------------------------------------------------------------
TDI_ADDRESS_TYPE_IP: Final = 2
TDI_ADDRESS_TYPE_IP6: Final = 23
TDI_ADDRESS_LENGTH_IP: Final = 14  # sizeof(TDI_ADDRESS_IP)
TDI_ADDRESS_LENGTH_IP6: Final = 24  # sizeof(TDI_ADDRESS_IP6)

# --- TDI_QUERY_INFORMATION types --------------------------------------------------------------
TDI_QUERY_BROADCAST_ADDRESS: Final = 0x00000001
TDI_QUERY_PROVIDER_INFO: Final = 0x00000002
TDI_QUERY_ADDRESS_INFO: Final = 0x00000003
TDI_QUERY_CONNECTION_INFO: Final = 0x00000004
TDI_QUERY_PROVIDER_STATISTICS: Final = 0x00000005

# --- TDI_PROVIDER_INFO.ServiceFlags ----------------------------------------------------------------
TDI_SERVICE_CONNECTION_MODE: Final = 0x00000001
TDI_SERVICE_ORDERLY_RELEASE: Final = 0x00000002
TDI_SERVICE_CONNECTIONLESS_MODE: Final = 0x00000004
TDI_SERVICE_ERROR_FREE_DELIVERY: Final = 0x00000008
TDI_SERVICE_EXPEDITED_DATA: Final = 0x00000040
TDI_SERVICE_DELAYED_ACCEPTANCE: Final = 0x00000200
TDI_SERVICE_FORCE_ACCESS_CHECK: Final = 0x00004000
TDI_SERVICE_NO_PUSH: Final = 0x00080000


def tdi_minor_name(minor: int) -> str:
    return TDI_MINOR_NAMES.get(minor, f"TDI_{minor:02x}")
