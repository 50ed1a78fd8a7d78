"""NTSTATUS message texts, as `!error` prints them.

The texts are the system message table's (MS-ERREF 2.3.1, the MessageText of ntstatus.h),
word for word, for every status the lab returns (stack/kernel/ntstatus.py) and the transport
and I/O statuses a reader is likely to meet; placeholders such as %hs stay, as WinDbg prints
them.
"""

from __future__ import annotations

STATUS_MESSAGES: dict[int, str] = {
    0x00000000: "The operation completed successfully.",  # STATUS_SUCCESS
    0x00000102: "The given Timeout interval expired.",  # STATUS_TIMEOUT
    0x00000103: "The operation that was requested is pending completion.",  # STATUS_PENDING
    0x80000005: (  # STATUS_BUFFER_OVERFLOW
        "{Buffer Overflow} The data was too large to fit into the specified buffer."
    ),
    0x80000006: (  # STATUS_NO_MORE_FILES
        "{No More Files} No more files were found which match the file specification."
    ),
    0x80000011: "{Device Busy} The device is currently busy.",  # STATUS_DEVICE_BUSY
    0xc0000001: "{Operation Failed} The requested operation was unsuccessful.",  # STATUS_UNSUCCESSFUL
    0xc0000002: "{Not Implemented} The requested operation is not implemented.",  # STATUS_NOT_IMPLEMENTED
    0xc0000004: (  # STATUS_INFO_LENGTH_MISMATCH
        "The specified information record length does not match the length that is required for the "
        "specified information class."
    ),
    0xc0000005: (  # STATUS_ACCESS_VIOLATION
        "The instruction at 0x%p referenced memory at 0x%p. The memory could not be %s."
    ),
    0xc0000008: "An invalid HANDLE was specified.",  # STATUS_INVALID_HANDLE
    0xc000000d: "An invalid parameter was passed to a service or function.",  # STATUS_INVALID_PARAMETER
    0xc0000010: (  # STATUS_INVALID_DEVICE_REQUEST
        "The specified request is not a valid operation for the target device."
    ),
    0xc0000011: (  # STATUS_END_OF_FILE
        "The end-of-file marker has been reached. There is no valid data in the file beyond this "
        "marker."
    ),
    0xc0000016: (  # STATUS_MORE_PROCESSING_REQUIRED
        "{Still Busy} The specified I/O request packet (IRP) cannot be disposed of because the I/O "
        "operation is not complete."
    ),
    0xc0000017: (  # STATUS_NO_MEMORY
        "{Not Enough Quota} Not enough virtual memory or paging file quota is available to complete "
        "the specified operation."
    ),
    0xc0000022: (  # STATUS_ACCESS_DENIED
        "{Access Denied} A process has requested access to an object but has not been granted those "
        "access rights."
    ),
    0xc0000023: (  # STATUS_BUFFER_TOO_SMALL
        "{Buffer Too Small} The buffer is too small to contain the entry. No information has been "
        "written to the buffer."
    ),
    0xc0000024: (  # STATUS_OBJECT_TYPE_MISMATCH
        "{Wrong Type} There is a mismatch between the type of object that is required by the "
        "requested operation and the type of object that is specified in the request."
    ),
    0xc0000034: "The object name is not found.",  # STATUS_OBJECT_NAME_NOT_FOUND
    0xc0000035: "The object name already exists.",  # STATUS_OBJECT_NAME_COLLISION
    0xc0000043: (  # STATUS_SHARING_VIOLATION
        "A file cannot be opened because the share access flags are incompatible."
    ),
    0xc0000044: "Insufficient quota exists to complete the operation.",  # STATUS_QUOTA_EXCEEDED
    0xc0000048: (  # STATUS_PORT_ALREADY_SET
        "An attempt was made to set the DebugPort or ExceptionPort of a process, but a port already "
        "exists in the process, or an attempt was made to set the CompletionPort of a file but a "
        "port was already set in the file, or an attempt was made to set the associated completion "
        "port of an ALPC port but it is already set."
    ),
    0xc000009a: "Insufficient system resources exist to complete the API.",  # STATUS_INSUFFICIENT_RESOURCES
    0xc00000a3: (  # STATUS_DEVICE_NOT_READY
        "{Drive Not Ready} The drive is not ready for use; its door may be open. Check drive %hs "
        "and make sure that a disk is inserted and that the drive door is closed."
    ),
    0xc00000b0: "The specified named pipe is in the disconnected state.",  # STATUS_PIPE_DISCONNECTED
    0xc00000b5: (  # STATUS_IO_TIMEOUT
        "{Device Timeout} The specified I/O operation on %hs was not completed before the time-out "
        "period expired."
    ),
    0xc00000b6: "The specified file has been closed by another process.",  # STATUS_FILE_FORCED_CLOSED
    0xc00000bb: "The request is not supported.",  # STATUS_NOT_SUPPORTED
    0xc00000bc: "This remote computer is not listening.",  # STATUS_REMOTE_NOT_LISTENING
    0xc00000c3: "The network responded incorrectly.",  # STATUS_INVALID_NETWORK_RESPONSE
    0xc00000c4: "An unexpected network error occurred.",  # STATUS_UNEXPECTED_NETWORK_ERROR
    0xc00000d0: (  # STATUS_REQUEST_NOT_ACCEPTED
        "No more connections can be made to this remote computer at this time because the computer "
        "has already accepted the maximum number of connections."
    ),
    0xc00000e8: (  # STATUS_INVALID_USER_BUFFER
        "An access to a user buffer failed at an expected point in time. This code is defined "
        "because the caller does not want to accept STATUS_ACCESS_VIOLATION in its filter."
    ),
    0xc0000120: "The I/O request was canceled.",  # STATUS_CANCELLED
    0xc0000128: (  # STATUS_FILE_CLOSED
        "An I/O request other than close and several other special case operations was attempted "
        "using a file object that had already been closed."
    ),
    0xc0000140: "The connection handle that was given to the transport was invalid.",  # STATUS_INVALID_CONNECTION
    0xc0000141: "The address handle that was given to the transport was invalid.",  # STATUS_INVALID_ADDRESS
    0xc0000184: "The device is not in a valid state to perform this request.",  # STATUS_INVALID_DEVICE_STATE
    0xc0000206: "The size of the buffer is invalid for the specified operation.",  # STATUS_INVALID_BUFFER_SIZE
    0xc0000207: (  # STATUS_INVALID_ADDRESS_COMPONENT
        "The transport rejected the specified network address as invalid."
    ),
    0xc0000208: (  # STATUS_INVALID_ADDRESS_WILDCARD
        "The transport rejected the specified network address due to invalid use of a wildcard."
    ),
    0xc0000209: (  # STATUS_TOO_MANY_ADDRESSES
        "The transport address could not be opened because all the available addresses are in use."
    ),
    0xc000020a: (  # STATUS_ADDRESS_ALREADY_EXISTS
        "The transport address could not be opened because it already exists."
    ),
    0xc000020b: "The transport address is now closed.",  # STATUS_ADDRESS_CLOSED
    0xc000020c: "The transport connection is now disconnected.",  # STATUS_CONNECTION_DISCONNECTED
    0xc000020d: "The transport connection has been reset.",  # STATUS_CONNECTION_RESET
    0xc000020e: "The transport cannot dynamically acquire any more nodes.",  # STATUS_TOO_MANY_NODES
    0xc000020f: "The transport aborted a pending transaction.",  # STATUS_TRANSACTION_ABORTED
    0xc000021b: (  # STATUS_DATA_NOT_ACCEPTED
        "{Data Not Accepted} The TDI client could not handle the data received during an "
        "indication."
    ),
    0xc0000225: "The object was not found.",  # STATUS_NOT_FOUND
    0xc000022a: (  # STATUS_DUPLICATE_OBJECTID
        "The attempt to insert the ID in the index failed because the ID is already in the index."
    ),
    0xc0000236: "The transport-connection attempt was refused by the remote system.",  # STATUS_CONNECTION_REFUSED
    0xc0000237: "The transport connection was gracefully closed.",  # STATUS_GRACEFUL_DISCONNECT
    0xc0000238: (  # STATUS_ADDRESS_ALREADY_ASSOCIATED
        "The transport endpoint already has an address associated with it."
    ),
    0xc0000239: (  # STATUS_ADDRESS_NOT_ASSOCIATED
        "An address has not yet been associated with the transport endpoint."
    ),
    0xc000023a: "An operation was attempted on a nonexistent transport connection.",  # STATUS_CONNECTION_INVALID
    0xc000023b: "An invalid operation was attempted on an active transport connection.",  # STATUS_CONNECTION_ACTIVE
    0xc000023c: "The remote network is not reachable by the transport.",  # STATUS_NETWORK_UNREACHABLE
    0xc000023d: "The remote system is not reachable by the transport.",  # STATUS_HOST_UNREACHABLE
    0xc000023e: "The remote system does not support the transport protocol.",  # STATUS_PROTOCOL_UNREACHABLE
    0xc000023f: (  # STATUS_PORT_UNREACHABLE
        "No service is operating at the destination port of the transport on the remote system."
    ),
    0xc0000240: "The request was aborted.",  # STATUS_REQUEST_ABORTED
    0xc0000241: "The transport connection was aborted by the local system.",  # STATUS_CONNECTION_ABORTED
    0xc00002b9: "The requested interface is not supported.",  # STATUS_NOINTERFACE
    0x80000013: (  # STATUS_INVALID_EA_NAME
        "{Illegal EA} The specified extended attribute (EA) name contains at least one illegal character."
    ),
    0xc000013b: (  # STATUS_LOCAL_DISCONNECT
        "{Virtual Circuit Closed} The network transport on your computer has closed a network connection. "
        "There may or may not be I/O requests outstanding."
    ),
    0xc000013c: (  # STATUS_REMOTE_DISCONNECT
        "{Virtual Circuit Closed} The network transport on a remote computer has closed a network connection. "
        "There may or may not be I/O requests outstanding."
    ),
    0xc0000238: "The transport endpoint already has an address associated with it.",  # STATUS_ADDRESS_ALREADY_ASSOCIATED
}
