"""tdx's upcalls from the transport: accept, receive, disconnect (DISPATCH_LEVEL, from the NIC's DPC).

A SYN arrives: a posted TDI_LISTEN with TDI_QUERY_ACCEPT completes before it is answered
(TdxTcpInspectIndication).  A handshake completes: a posted TDI_LISTEN takes the connection, else
the address object's ClientEventConnect (which returns a TDI_ACCEPT IRP).  Data arrives (as the
transport's runs: physical address, view): ClientEventChainedReceive (an MDL chain over the NIC's
page frames, one MDL per run) or ClientEventReceive (a lookahead; it may return a TDI_RECEIVE IRP,
posted by TdxPostReceiveDpc).  A chained receive
handler that returns STATUS_PENDING keeps the TSDU - and the NIC's NBLs under it - until it calls
TdiReturnChainedReceives.  The peer
closes or resets: ClientEventDisconnect (and ClientEventError on a reset).
"""

from __future__ import annotations

from typing import Any

from stack.kernel import (DISPATCH_LEVEL, STATUS_BUFFER_OVERFLOW, STATUS_DATA_NOT_ACCEPTED, STATUS_INVALID_CONNECTION,
                          STATUS_INVALID_PARAMETER, STATUS_PENDING,
                          STATUS_MORE_PROCESSING_REQUIRED, STATUS_SUCCESS, IoFreeMdl, IoGetCurrentIrpStackLocation,
                          IoSetNextIrpStackLocation, KeInsertQueueDpc, current_kernel, kroutine)
from stack.kernel.mdl import MDL_PAGES_LOCKED, Mdl, copy_to_mdl, mdl_chain_length, mdl_over_physical_run
from stack.tcpip.transport import ACCEPT, RECEIVE_PUSH, REFUSE, ConnectionEndpoint, ListenEndpoint

from .constants import (TDI_ACCEPT, TDI_DISCONNECT_ABORT, TDI_DISCONNECT_RELEASE, TDI_EVENT_CHAINED_RECEIVE,
                        TDI_EVENT_CONNECT, TDI_EVENT_DISCONNECT, TDI_EVENT_ERROR, TDI_EVENT_RECEIVE, TDI_QUERY_ACCEPT,
                        TDI_EVENT_CHAINED_RECEIVE_DATAGRAM, TDI_EVENT_RECEIVE_DATAGRAM, TDI_RECEIVE,
                        TDI_RECEIVE_AT_DISPATCH_LEVEL, TDI_RECEIVE_DATAGRAM, TDI_RECEIVE_ENTIRE_MESSAGE,
                        TDI_RECEIVE_NORMAL)
from .structs import TRANSPORT_ADDRESS
from .tdx import (MODULE, TdxAddressObject, TdxConnection, _complete, _connected, _fill_return_info,
                  _finish_query_accept, _globals, _post_receive, _update_handlers, indicate_deferred_release)
from .zw import Ref


@kroutine(MODULE)
def TdxTcpAcceptIndication(listener: ListenEndpoint, conn: ConnectionEndpoint) -> int:
    """A handshake completed: a posted TDI_LISTEN takes it, else the client's connect handler."""
    ao: TdxAddressObject | None = listener.context
    if ao is None or ao.closed:
        return REFUSE
    co_waiting = ao.query_accepts.get(str(conn.remote))
    if co_waiting is not None:  # the handshake a TDI_ACCEPT started (TDI_QUERY_ACCEPT): it completes now
        _bind(co_waiting, conn)
        _connected(co_waiting)
        _finish_query_accept(co_waiting, STATUS_SUCCESS)
        return ACCEPT
    while ao.listen_irps:
        irp = ao.listen_irps.popleft()
        irpsp = IoGetCurrentIrpStackLocation(irp)
        co: TdxConnection = irpsp.file_object.FsContext
        _bind(co, conn)
        _fill_return_info(irpsp.parameters, conn.remote)
        if irpsp.parameters.RequestFlags & TDI_QUERY_ACCEPT:
            co.state = "AcceptPending"  # no data indicated until TDI_ACCEPT
        else:
            _connected(co)
        _complete(irp, STATUS_SUCCESS)
        return ACCEPT
    entry = ao.handler(TDI_EVENT_CONNECT)
    if entry is None:
        return REFUSE
    handler, context = entry
    remote = TRANSPORT_ADDRESS(conn.remote)
    connection_context, accept_irp = Ref(), Ref()
    _globals().indications += 1
    status = handler(context, len(remote), remote, 0, None, 0, None, connection_context, accept_irp)
    if status != STATUS_MORE_PROCESSING_REQUIRED or accept_irp.value is None:
        return REFUSE  # STATUS_CONNECTION_REFUSED (or anything else): the peer gets a RST
    irp = accept_irp.value
    IoSetNextIrpStackLocation(irp)  # the IRP was built, never sent: tdx takes its own location
    irpsp = IoGetCurrentIrpStackLocation(irp)
    co = getattr(irpsp.file_object, "FsContext", None)
    if irpsp.minor != TDI_ACCEPT or not isinstance(co, TdxConnection) or co.ao is not ao \
            or co.state != "Associated":
        _complete(irp, STATUS_INVALID_CONNECTION)
        return REFUSE
    _bind(co, conn)
    _fill_return_info(irpsp.parameters, conn.remote)
    _connected(co)
    _complete(irp, STATUS_SUCCESS)
    return ACCEPT


@kroutine(MODULE)
def TdxTcpInspectIndication(listener: ListenEndpoint, local: Any, remote: Any, token: int) -> int:
    """A SYN arrived, unanswered.  A posted TDI_LISTEN with TDI_QUERY_ACCEPT completes now and tcpip
    holds the SYN for the client's TDI_ACCEPT / TDI_DISCONNECT; anything else is decided once the
    handshake is done (TdxTcpAcceptIndication), so the SYN is answered at once."""
    from stack.tcpip.syn_hold import PEND
    ao: TdxAddressObject | None = listener.context
    if ao is None or ao.closed:
        return REFUSE
    if not ao.listen_irps:
        return ACCEPT
    irp = ao.listen_irps[0]
    irpsp = IoGetCurrentIrpStackLocation(irp)
    if not irpsp.parameters.RequestFlags & TDI_QUERY_ACCEPT:
        return ACCEPT
    ao.listen_irps.popleft()
    co: TdxConnection = irpsp.file_object.FsContext
    co.state = "AcceptPending"
    co.held_syn = token
    co.remote = remote
    _fill_return_info(irpsp.parameters, remote)
    _complete(irp, STATUS_SUCCESS)
    return PEND


@kroutine(MODULE)
def TdxTcpInspectAbort(listener: ListenEndpoint, token: int) -> None:
    """The peer gave up on a SYN the client was asked about: the offered connection is gone."""
    ao: TdxAddressObject | None = listener.context
    for co in list(ao.connections) if ao is not None else []:
        if co.held_syn == token:
            co.held_syn = 0
            co.state = "Associated"
            entry = ao.handler(TDI_EVENT_DISCONNECT)
            if entry is not None:
                handler, context = entry
                _globals().indications += 1
                handler(context, co.context, 0, None, 0, None, TDI_DISCONNECT_ABORT)


def _bind(co: TdxConnection, conn: ConnectionEndpoint) -> None:
    conn.context = co
    co.endpoint = conn
    co.remote = conn.remote


def _receive_flags(flags: int) -> int:
    tdi = TDI_RECEIVE_NORMAL
    if current_kernel().irql == DISPATCH_LEVEL:
        tdi |= TDI_RECEIVE_AT_DISPATCH_LEVEL
    if flags & RECEIVE_PUSH:
        tdi |= TDI_RECEIVE_ENTIRE_MESSAGE
    return tdi


@kroutine(MODULE)
def TdxReceiveIndication(conn: ConnectionEndpoint, runs: list[tuple[int, memoryview]], nbytes: int, flags: int) -> int:
    """Received data: ClientEventChainedReceive (an MDL over the NIC's pages) or ClientEventReceive."""
    co: TdxConnection | None = conn.context
    if co is None or co.closed or co.ao is None or co.post_irp is not None or co.receive_held:
        return 0
    ao = co.ao
    g = _globals()
    chained = ao.handler(TDI_EVENT_CHAINED_RECEIVE)
    if chained is not None:
        mdl = _indication_mdl(runs)
        if mdl is not None:
            handler, context = chained
            g.indications += 1
            descriptor = TdxTsdu(mdl, co, nbytes)
            status = handler(context, co.context, _receive_flags(flags) | TDI_RECEIVE_ENTIRE_MESSAGE, nbytes, 0,
                             mdl, descriptor)
            if status == STATUS_PENDING:
                # The client keeps the TSDU: the NBLs under it stay with it until TdiReturnChainedReceives.
                descriptor.handle = conn.retain_indication()
                if descriptor.handle is not None:
                    g.tsdus[id(descriptor)] = descriptor
                    co.bytes_received += nbytes
                    return nbytes
                # (cannot be kept: the bytes stay with the transport, as for STATUS_DATA_NOT_ACCEPTED)
            _free_indication_mdl(mdl)
            if status == STATUS_SUCCESS:
                co.bytes_received += nbytes
                return nbytes
            # STATUS_DATA_NOT_ACCEPTED: wait for a TDI_RECEIVE
            co.receive_held = True
            _update_handlers(co)
            return 0
    entry = ao.handler(TDI_EVENT_RECEIVE)
    if entry is None:
        return 0
    handler, context = entry
    tsdu = _lookahead(runs)
    if len(runs) > 1:
        current_kernel().copies.count(nbytes, "tdx lookahead")
    bytes_taken, irp_out = Ref(0), Ref(None)
    g.indications += 1
    status = handler(context, co.context, _receive_flags(flags), nbytes, nbytes, bytes_taken, tsdu, irp_out)
    taken = max(0, min(int(bytes_taken.value or 0), nbytes))
    if status == STATUS_MORE_PROCESSING_REQUIRED and irp_out.value is not None:
        co.bytes_received += taken
        co.post_irp = irp_out.value
        _update_handlers(co)
        KeInsertQueueDpc(co.post_dpc, None, None)
        return taken
    if status == STATUS_SUCCESS:
        co.bytes_received += taken
        return taken
    if status == STATUS_DATA_NOT_ACCEPTED:
        co.receive_held = True
        _update_handlers(co)
    return 0


@kroutine(MODULE)
def TdxPostReceiveDpc(Dpc: Any, DeferredContext: TdxConnection, Arg1: Any, Arg2: Any) -> None:
    """Post the TDI_RECEIVE IRP a receive handler returned: it takes the bytes after those it took."""
    co = DeferredContext
    irp, co.post_irp = co.post_irp, None
    if irp is None:
        return
    IoSetNextIrpStackLocation(irp)
    irpsp = IoGetCurrentIrpStackLocation(irp)
    if co.closed or co.endpoint is None or irpsp.minor != TDI_RECEIVE:
        _complete(irp, STATUS_INVALID_CONNECTION)
        indicate_deferred_release(co)
        return
    _post_receive(co, irp, irpsp.parameters.ReceiveLength)  # its completion indicates a deferred release


@kroutine(MODULE)
def TdxDisconnectIndication(conn: ConnectionEndpoint, abortive: bool, status: int) -> None:
    co: TdxConnection | None = conn.context
    if co is None or co.closed or co.ao is None:
        return
    co.state = "Disconnected"
    if not abortive and (co.post_irp is not None or co.posting):
        # A receive handler returned an IRP that tdx's DPC has not posted yet, or that the transport
        # is completing right now: the bytes before the FIN go to that IRP first, and the release is
        # indicated when it completes (_post_receive).  A RST is indicated at once: it discards
        # what was not read.
        co.deferred_release = status
        return
    TdxIndicateDisconnect(co, abortive, status)


def TdxIndicateDisconnect(co: TdxConnection, abortive: bool, status: int) -> None:
    """ClientEventDisconnect (and ClientEventError after an abort)."""
    if co.closed or co.ao is None:
        return
    entry = co.ao.handler(TDI_EVENT_DISCONNECT)
    if entry is not None:
        handler, context = entry
        _globals().indications += 1
        handler(context, co.context, 0, None, 0, None, TDI_DISCONNECT_ABORT if abortive else TDI_DISCONNECT_RELEASE)
    if abortive:
        error = co.ao.handler(TDI_EVENT_ERROR)
        if error is not None:
            handler, context = error
            handler(context, status)


# --- datagrams (\\Device\\Udp, \\Device\\Udp6) ---------------------------------------------------------

@kroutine(MODULE)
def TdxReceiveDatagramIndication(endpoint: Any, remote: Any, runs: list[tuple[int, memoryview]], nbytes: int) -> None:
    """A datagram for a UDP address object with a datagram handler (no TDI_RECEIVE_DATAGRAM was posted):
    ClientEventChainedReceiveDatagram (an MDL over the NIC's pages) or ClientEventReceiveDatagram (the
    whole datagram as lookahead; it may return a TDI_RECEIVE_DATAGRAM IRP for the bytes it did not
    take).  Not taken: dropped, as UDP drops what nobody reads."""
    ao: TdxAddressObject | None = endpoint.context
    if ao is None or ao.closed:
        return
    g = _globals()
    source = TRANSPORT_ADDRESS(remote)
    flags = _receive_flags(0) | TDI_RECEIVE_ENTIRE_MESSAGE
    chained = ao.handler(TDI_EVENT_CHAINED_RECEIVE_DATAGRAM)
    if chained is not None:
        mdl = _indication_mdl(runs)
        if mdl is not None:
            handler, context = chained
            g.indications += 1
            # (TsduDescriptor: a datagram's NBL cannot be kept here, so STATUS_PENDING counts as refused)
            status = handler(context, len(source), source, 0, None, flags, nbytes, 0, mdl, mdl)
            _free_indication_mdl(mdl)
            g.datagrams_refused += int(status != STATUS_SUCCESS)
            return
    entry = ao.handler(TDI_EVENT_RECEIVE_DATAGRAM)
    if entry is None:
        g.datagrams_refused += 1
        return
    handler, context = entry
    tsdu = _lookahead(runs)
    bytes_taken, irp_out = Ref(0), Ref(None)
    g.indications += 1
    status = handler(context, len(source), source, 0, None, flags, nbytes, nbytes, bytes_taken, tsdu, irp_out)
    if status == STATUS_MORE_PROCESSING_REQUIRED and irp_out.value is not None:
        _fill_datagram_irp(irp_out.value, remote, tsdu, max(0, min(int(bytes_taken.value or 0), nbytes)), nbytes)
    elif status != STATUS_SUCCESS:
        g.datagrams_refused += 1


def _fill_datagram_irp(irp: Any, remote: Any, tsdu: Any, taken: int, nbytes: int) -> None:
    """The TDI_RECEIVE_DATAGRAM a datagram handler returned: the rest of the datagram, copied in now."""
    IoSetNextIrpStackLocation(irp)  # built, never sent: tdx takes its own location
    irpsp = IoGetCurrentIrpStackLocation(irp)
    if irpsp.minor != TDI_RECEIVE_DATAGRAM or irp.mdl_address is None:
        _complete(irp, STATUS_INVALID_PARAMETER)
        return
    rest = nbytes - taken
    room = min(irpsp.parameters.ReceiveLength, mdl_chain_length(irp.mdl_address))
    length = min(rest, room)
    copy_to_mdl(irp.mdl_address, 0, tsdu[taken:taken + length], "TDI_RECEIVE_DATAGRAM from the datagram event")
    _fill_return_info(irpsp.parameters, remote, "ReturnDatagramInformation")
    _complete(irp, STATUS_SUCCESS if length == rest else STATUS_BUFFER_OVERFLOW, length)


# --- chained receives a client kept (STATUS_PENDING) ------------------------------------------------

class TdxTsdu:
    """The TsduDescriptor of a chained receive: what TdiReturnChainedReceives gives back."""

    __slots__ = ("mdl", "connection", "length", "handle")

    def __init__(self, mdl: Mdl, connection: TdxConnection, length: int) -> None:
        self.mdl = mdl
        self.connection = connection
        self.length = length
        self.handle: Any = None  # the transport's hold on the NBLs (ConnectionEndpoint.retain_indication)

    def __repr__(self) -> str:
        return f"<TSDU {self.length} bytes, mdl {self.mdl.address:x}>"


@kroutine(MODULE)
def TdiReturnChainedReceives(TsduDescriptors: list[Any], NumberOfTsdus: int) -> None:
    """tdi.sys's export (served by the lab's tdx): give back TSDUs a ClientEventChainedReceive kept by
    returning STATUS_PENDING.  The NBLs under them go back to the miniport once nothing else holds
    them.  Any IRQL <= DISPATCH_LEVEL.  A descriptor that is not a kept TSDU is counted and ignored."""
    from stack.tcpip.transport import Transport
    g = _globals()
    for descriptor in list(TsduDescriptors)[:NumberOfTsdus]:
        if g.tsdus.pop(id(descriptor), None) is None:
            g.bad_tsdu_returns += 1
            continue
        _free_indication_mdl(descriptor.mdl)
        Transport.release_indication(descriptor.handle)
        descriptor.handle = None


def _lookahead(runs: list[tuple[int, memoryview]]) -> Any:
    """ClientEventReceive's Tsdu: the bytes themselves (joined, a counted copy, when several runs)."""
    return runs[0][1] if len(runs) == 1 else b"".join([view for _, view in runs])


# --- zero-copy MDLs over the NIC's receive pages (chained receive) ----------------------------------

def _indication_mdl(runs: list[tuple[int, memoryview]]) -> Mdl | None:
    """An MDL chain over the runs' page frames, one MDL per run; None when a run has no physical
    address (a copy: the client gets ClientEventReceive instead) or no MDL can be allocated."""
    k = current_kernel()
    head: Mdl | None = None
    tail: Mdl | None = None
    for address, view in runs:
        mdl = mdl_over_physical_run(k, address, len(view)) if address >= 0 and len(view) else None
        if mdl is None:
            if head is not None:
                _free_indication_mdl(head)
            return None
        if tail is None:
            head = mdl
        else:
            tail.next = mdl
        tail = mdl
    return head


def _free_indication_mdl(mdl: Mdl | None) -> None:
    while mdl is not None:
        nxt = mdl.next
        mdl.next = None
        mdl.flags &= ~MDL_PAGES_LOCKED  # NDIS owns the pages' lock, not this MDL
        IoFreeMdl(mdl)
        mdl = nxt
