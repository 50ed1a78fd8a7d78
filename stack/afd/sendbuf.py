"""afd's send buffering for user-mode sockets (Winsock's SO_SNDBUF).

By default afd copies a user-mode send into its own buffer, hands the copy to tcpip and completes
the send at once; the program's buffer is free again before anything is on the wire.  The rules,
from KB 214397 ("Design issues - Sending small data segments over TCP with Winsock"):

- afd copies every send into its kernel buffer; "Winsock can buffer significantly more than the
  SO_SNDBUF buffer size".  So the copy always goes to tcpip at once: a send larger than the buffer
  is buffered whole.
- the send completes at once while the socket is within its SO_SNDBUF quota (the bytes buffered
  before it are fewer than SO_SNDBUF), or, beyond the quota, when only one buffered send is ahead
  of it;
- otherwise its completion waits until tcpip has finished (acknowledged) enough earlier sends to
  put the socket back within the quota or down to one outstanding send.
- SO_SNDBUF = 0 turns the buffering off: afd sends from the program's locked pages and the send
  completes when tcpip is done with them, i.e. when the peer has acknowledged all of it (the lab's
  only behaviour before; afd.device.AfdSend keeps that path).

The default SO_SNDBUF is 8192, afd's DefaultSendWindow ("Windows Sockets and DNS Registry
Parameters", AFD: 4096/8192/8192 by memory size; what getsockopt(SO_SNDBUF) reports on Windows 7,
zeromq/libzmq#1472).  Since Windows 7 afd also sizes the buffer dynamically while the program has
not set SO_SNDBUF (dynamic send buffering): it follows the connection's ideal send backlog (ISB,
MS Learn SIO_IDEAL_SEND_BACKLOG_QUERY).  tcpip's ISB algorithm is not public; the lab's ISB is the
fixed 64 KiB its WSK provider already reports in WskSendBacklogEvent, so the default quota is
max(8192, 64 KiB).

Invented by the lab, and said so: when no pool is left for the copy afd falls back to the SO_SNDBUF=0
path for that send (completes on the ACK) instead of failing it; MSDN Magazine (Oct 2000, "Write
Scalable Winsock Apps Using Completion Ports") describes that locked path for a full buffer.

Errors after completion: a buffered send that tcpip fails after its IRP completed (the connection
was reset or aborted) is remembered, and the program's next send reports it, as Winsock reports a
reset on the next call.  Buffered data survives a graceful close or shutdown (tcpip queues the FIN
behind it) and is discarded by a RST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stack.kernel import (NT_SUCCESS, STATUS_PENDING, STATUS_SUCCESS, ExAllocatePoolWithTag, ExFreePoolWithTag,
                          IoAllocateMdl, IoCompleteRequest, IoFreeMdl, IoMarkIrpPending, MmBuildMdlForNonPagedPool,
                          kroutine)
from stack.kernel.mdl import Mdl, copy_to_mdl, mdl_chain_views
from stack.kernel.pool import NonPagedPoolNx

from .socket import IDEAL_SEND_BACKLOG

if TYPE_CHECKING:
    from .device import AfdEndpoint

AFD_BUFFER_TAG = "AfdB"  # pooltag.txt: "AfdB - afd.sys - Afd data buffer"
AFD_DEFAULT_SEND_WINDOW = 8192  # HKLM\System\CurrentControlSet\Services\Afd\Parameters\DefaultSendWindow


@dataclass(slots=True, eq=False)
class BufferedSend:
    """One user-mode send copied into afd's buffer and given to tcpip."""

    length: int
    buffer: int  # nonpaged pool ('AfdB') holding the copy
    mdl: Mdl
    irp: Any = None  # the program's IRP while its completion waits for the quota rule


def ideal_send_backlog(endpoint: "AfdEndpoint") -> int:
    """SIO_IDEAL_SEND_BACKLOG_QUERY: the lab's ISB for a connected socket (0 when not connected)."""
    return IDEAL_SEND_BACKLOG if endpoint.connection is not None else 0


def send_quota(endpoint: "AfdEndpoint") -> int:
    """Bytes afd buffers before completions wait: SO_SNDBUF as set, else dynamic (the ISB, at least
    the default window)."""
    if endpoint.send_window is not None:
        return endpoint.send_window
    return max(AFD_DEFAULT_SEND_WINDOW, ideal_send_backlog(endpoint))


def may_complete(bytes_ahead: int, sends_ahead: int, quota: int) -> bool:
    """KB 214397: within the quota, or beyond it with at most one buffered send ahead."""
    return bytes_ahead < quota or sends_ahead <= 1


def _complete(irp: Any, status: int, information: int) -> int:
    irp.IoStatus.Status = status
    irp.IoStatus.Information = information
    IoCompleteRequest(irp)
    return status


def copy_send(user_mdl: Mdl, length: int) -> BufferedSend | None:
    """afd's copy of a send, from the program's locked pages into nonpaged pool ('AfdB').
    None: no pool or MDL for it (nothing is left allocated)."""
    buffer = ExAllocatePoolWithTag(NonPagedPoolNx, length, AFD_BUFFER_TAG)
    if not buffer:
        return None
    mdl = IoAllocateMdl(buffer, length, False, False, None)
    if mdl is None:
        ExFreePoolWithTag(buffer, AFD_BUFFER_TAG)
        return None
    MmBuildMdlForNonPagedPool(mdl)
    copy_to_mdl(mdl, 0, mdl_chain_views(user_mdl, 0, length), "afd send buffer")
    return BufferedSend(length, buffer, mdl)


@kroutine("afd")
def AfdBufferedSend(endpoint: "AfdEndpoint", conn: Any, entry: BufferedSend, irp: Any) -> int:
    """Give afd's copy of a send to tcpip and complete the program's IRP now or, by the KB 214397
    rule, once enough earlier buffered sends are done."""
    length = entry.length
    bytes_ahead, sends_ahead = endpoint.buffered_bytes, len(endpoint.buffered)
    endpoint.buffered.append(entry)
    endpoint.buffered_bytes += length
    status = conn.send(entry.mdl, 0, length, lambda result, nbytes: AfdBufferedSendComplete(endpoint, entry, result))
    if status != STATUS_PENDING:  # refused at once: nothing was buffered
        _release(endpoint, entry)
        return _complete(irp, status, length if status == STATUS_SUCCESS else 0)
    endpoint.sends_buffered += 1
    if may_complete(bytes_ahead, sends_ahead, send_quota(endpoint)):
        return _complete(irp, STATUS_SUCCESS, length)
    entry.irp = irp
    endpoint.sends_held += 1
    IoMarkIrpPending(irp)
    return STATUS_PENDING


def _release(endpoint: "AfdEndpoint", entry: BufferedSend) -> None:
    buffered = endpoint.buffered
    if buffered and buffered[0] is entry:
        buffered.popleft()
    else:
        buffered.remove(entry)  # tcpip completes in stream order; only a failure could differ
    endpoint.buffered_bytes -= entry.length
    IoFreeMdl(entry.mdl)
    ExFreePoolWithTag(entry.buffer, AFD_BUFFER_TAG)


@kroutine("afd")
def AfdBufferedSendComplete(endpoint: "AfdEndpoint", entry: BufferedSend, status: int) -> None:
    """tcpip is done with a buffered send (acknowledged, or failed): free the copy, then complete the
    sends whose completion the quota rule held back."""
    _release(endpoint, entry)
    if endpoint.closed and not endpoint.buffered:  # the last send of a lingering close
        from .device import free_endpoint
        free_endpoint(endpoint)
    irp, entry.irp = entry.irp, None
    if not NT_SUCCESS(status):
        if irp is not None:
            _complete(irp, status, 0)
        elif not endpoint.send_error:
            endpoint.send_error = status  # the program already saw success: its next send reports this
        return
    if irp is not None:
        _complete(irp, STATUS_SUCCESS, entry.length)
    release_waiting(endpoint)


def release_waiting(endpoint: "AfdEndpoint") -> None:
    """Complete, in order, every held-back send the rule now lets go (the rule is monotone along the
    queue, so the first that must still wait ends the walk)."""
    if endpoint.send_error:
        return  # the connection failed: the held sends complete with tcpip's failure
    quota = send_quota(endpoint)
    bytes_ahead = 0
    for sends_ahead, entry in enumerate(endpoint.buffered):
        if entry.irp is not None:
            if not may_complete(bytes_ahead, sends_ahead, quota):
                return
            irp, entry.irp = entry.irp, None
            _complete(irp, STATUS_SUCCESS, entry.length)
        bytes_ahead += entry.length

