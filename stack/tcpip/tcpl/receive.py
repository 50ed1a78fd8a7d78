"""TCP glue, receive: segment demultiplexing, the core fed, data delivered (receive handler or posted MDL).

Part of the TcpLayer that stack/tcpip/tcp_glue.py assembles."""

from __future__ import annotations

from typing import TYPE_CHECKING
from collections import deque
from stack.kernel import (DISPATCH_LEVEL, STATUS_CONNECTION_RESET, STATUS_INVALID_DEVICE_STATE,
                          STATUS_INVALID_PARAMETER, STATUS_PENDING, STATUS_SUCCESS, kroutine)
from stack.kernel.mdl import Mdl, copy_to_mdl, mdl_chain_length
from ..events import SegmentReceived
from ..tcp import TcpConnection, TcpSegment, TcpState, rst_for_unexpected
from ..tcp.seq import SEQ_MASK
from ..transport import RECEIVE_PUSH, RECEIVE_WAITALL, ConnectionEndpoint, RequestComplete
from ..wire import WireError
from ..wire.tcp import parse_tcp_segment
from .common import PUSH_TIMER_NS, ReceiveRequest, Tcb, _HALF, _seq_le, _summary

if TYPE_CHECKING:
    from ..tcp_glue import TcpLayer
    from ..ip import RxFrame


class ReceiveLayer:
    """Segment demultiplexing, the core fed, data delivered (receive handler or posted MDL)."""

    def receive(self, endpoint: ConnectionEndpoint, mdl: Mdl, offset: int, length: int,
                completion: RequestComplete, flags: int) -> int:
        tcb: Tcb = endpoint._tcb
        if endpoint.closed or tcb.core is None:
            return STATUS_INVALID_DEVICE_STATE
        if length <= 0 or offset < 0 or offset + length > mdl_chain_length(mdl):
            return STATUS_INVALID_PARAMETER
        if tcb.reset_delivered:
            return tcb.fail_status or STATUS_CONNECTION_RESET
        if tcb.eof_delivered and not tcb.core.recv_available():
            return STATUS_SUCCESS  # graceful end of stream: zero bytes
        tcb.receives.append(ReceiveRequest(mdl, offset, length, completion, flags))
        self._kick(tcb)
        return STATUS_PENDING

    def _deliver(self, tcb: Tcb) -> None:
        core = tcb.core
        endpoint = tcb.endpoint
        if core is None:
            return
        took = False
        available = core.recv_available()
        if endpoint.closed:
            if available:
                core.read(available)  # nobody will read it: keep the window open
                took = True
        else:
            if tcb.push_end is not None and _seq_le(tcb.push_end, core.rcv_nxt):
                tcb.push_end = None
                tcb.push_pending = True
            if tcb.receives:
                # tcb.receives is read afresh each time: a completion may close (and swap it).
                while available and tcb.receives:
                    took = True
                    req = tcb.receives[0]
                    want = req.length - req.filled
                    views = core.read(want)
                    n = TcpDeliverDataToClient(self, tcb, req, views)
                    req.filled += n
                    available = core.recv_available()
                    # Windows completes a receive when it is full, or - unless the client asked
                    # for MSG_WAITALL - once the data up to a PSH is in, or after the push timer.
                    full = req.filled >= req.length
                    pushed = tcb.push_pending and not available
                    if full or (pushed and not req.flags & RECEIVE_WAITALL):
                        if pushed:
                            tcb.push_pending = False
                        self._complete_receive(tcb, req)
                        available = core.recv_available()  # the completion may have read (a new receive)
                if tcb.receives and tcb.receives[0].filled and tcb.push_timer is None:
                    tcb.push_timer = self.kernel.call_later(PUSH_TIMER_NS, self._push_timer_event, tcb,
                                                            label="TCP receive push timer")
            handler = endpoint.receive_handler
            if available and handler is not None and not tcb.receives and (tcb.listener is None or tcb.accepted):
                runs = core.peek(available)  # (physical address, view) of each run
                flags = RECEIVE_PUSH if tcb.last_push else 0
                tcb.last_push = False
                self._upcall(endpoint, "receive", STATUS_SUCCESS, available)
                taken = handler(endpoint, runs, available, flags)
                if taken:
                    core.read(min(max(taken, 0), available))
                    took = True
        if took and tcb.held:
            self._release_held(tcb)
        if core.at_eof and not tcb.eof_delivered and not endpoint.closed and (tcb.listener is None or tcb.accepted):
            tcb.eof_delivered = True
            if tcb.push_timer is not None:
                tcb.push_timer.cancel()
                tcb.push_timer = None
            receives, tcb.receives = tcb.receives, deque()
            for req in receives:
                self._upcall(endpoint, "receive-complete", STATUS_SUCCESS, req.filled)
                req.completion(STATUS_SUCCESS, req.filled)
            handler = endpoint.disconnect_handler
            if handler is not None:
                self._upcall(endpoint, "disconnect", STATUS_SUCCESS)
                handler(endpoint, False, STATUS_SUCCESS)

    @kroutine("tcpip", "TcpCompleteClientReceiveRequest")
    def _complete_receive(self, tcb: Tcb, req: ReceiveRequest) -> None:
        tcb.receives.popleft()
        if tcb.push_timer is not None:
            tcb.push_timer.cancel()
            tcb.push_timer = None
        self._upcall(tcb.endpoint, "receive-complete", STATUS_SUCCESS, req.filled)
        req.completion(STATUS_SUCCESS, req.filled)

    def _push_timer_event(self, tcb: Tcb) -> None:
        """No PSH arrived for a while: hand the client what its receive holds so far."""
        k = self.kernel
        tcb.push_timer = None
        k.irql = DISPATCH_LEVEL
        if tcb.receives and tcb.receives[0].filled and not tcb.receives[0].flags & RECEIVE_WAITALL:
            self._complete_receive(tcb, tcb.receives[0])
            if tcb.core is not None:
                self._kick(tcb)

    def _read_pointer(self, core: TcpConnection) -> int:
        return (core.rcv_nxt - core.recv_available()) & SEQ_MASK

    def _release_held(self, tcb: Tcb) -> None:
        """Return every held NBL whose data the client has taken (end at or before the read pointer)."""
        core = tcb.core
        read_ptr = self._read_pointer(core)
        held = tcb.held
        if tcb.held_sorted:  # in-order arrivals: the taken ones are a prefix (no rescan of the window)
            n = len(held)
            i = 0
            while i < n and _seq_le(held[i][0], read_ptr):
                held[i][1].release()
                i += 1
            if i:
                del held[:i]
            return
        keep = []
        for end, rx in held:
            if _seq_le(end, read_ptr):
                rx.release()
            else:
                keep.append((end, rx))
        tcb.held = keep
        tcb.held_sorted = all(_seq_le(a[0], b[0]) for a, b in zip(keep, keep[1:]))

    def _release_all_held(self, tcb: Tcb) -> None:
        held, tcb.held = tcb.held, []
        tcb.held_sorted = True
        for _, rx in held:
            rx.release()

    @kroutine("tcpip", "TcpMatchReceive")
    def receive_segment(self, rx: "RxFrame", src: bytes, dst: bytes, data: memoryview,
                        tail: tuple[memoryview, ...] = (), segments: int = 1) -> None:
        """A TCP segment for one of our addresses (data = the IP payload).

        A segment the NIC coalesced (RSC) has more payload in ``tail`` - the
        other receive buffers of its NET_BUFFER - and stands for ``segments``
        wire segments; its checksum was verified per segment by the NIC."""
        self.counters.tcp_segments_received += 1
        k = self.kernel
        if k.cpu_model is not None:  # Kernel.charge, asked once (no processor model: nothing to spend)
            k.charge("tcp_rx_segment")
            if not rx.l4_checksum_ok:
                k.charge("checksum_byte", len(data))
        try:
            (src_port, dst_port, seq, ack, flags, window, mss, wscale, sack_permitted, timestamps, sack_blocks,
             payload) = parse_tcp_segment(data, src, dst, verify_checksum=not rx.l4_checksum_ok)
        except WireError as err:
            self.stack.drop(err.layer, err.reason, err.detail)
            return
        # TcpSegment.payload_at: where each payload chunk lives.  The head chunk ends the IP payload
        # that starts at rx.l4_pa (after the TCP header); an RSC unit's other chunks are its other
        # receive buffers (rx.tail_pas).  Negative when the frame is a copy.
        n = len(payload)
        if n:
            head = rx.l4_pa + len(data) - n
            if tail:
                chunks = (payload, *tail)
                payload_at = (chunks, (head, *rx.tail_pas))
            else:
                chunks = (payload,)
                payload_at = (chunks, (head,))
        else:
            chunks = tail
            payload_at = (chunks, rx.tail_pas) if tail else None
        seg = TcpSegment(src_port, dst_port, seq, ack, flags, window, mss, wscale, sack_permitted, timestamps,
                         sack_blocks, chunks, segments, payload_at)
        key = (dst, dst_port, src, src_port)
        tcb = self.connections.get(key)
        time_wait = self.time_wait.get(key) if tcb is None else None
        if k.bus.subscribers:
            conn = tcb.endpoint.address if tcb else time_wait.address if time_wait else 0
            k.bus.publish(SegmentReceived(host=k.name, depth=len(k.frames), conn=conn,
                                          summary=_summary(src, dst, seg), length=seg.payload_len))
        if tcb is not None:
            TcpTcbReceive(self, tcb, seg, rx)
            return
        if time_wait is not None:
            self._tw_segment(time_wait, seg, src, dst)
            return
        listener = self._find_listener(src, dst, dst_port)
        if listener is not None:
            self._listener_segment(listener, seg, rx, src, dst)
            return
        self.stack.drop("tcp", "no_endpoint")
        reply = rst_for_unexpected(seg)
        if reply is not None:
            self._send_bare(src, dst, reply)

    def hold_or_copy(self, tcb: Tcb, seg: TcpSegment, rx: "RxFrame") -> None:
        """Before the core sees a payload: copy it out when the NBL cannot be kept."""
        payload = seg.payload
        if payload and not rx.can_hold(self):
            # the one copy of this payload (NBL must go back now); a coalesced one is joined
            data = bytes(payload[0]) if len(payload) == 1 else b"".join(payload)
            self.kernel.copies.count(len(data), "tcp receive buffer (NBL returned)")
            self.counters.nbl_copies += 1
            seg.payload = (memoryview(data),)

    def after_segment(self, tcb: Tcb, seg: TcpSegment, rx: "RxFrame", end: int) -> None:
        """After the core and the client had the segment (whose payload ends at sequence number
        `end`): hold its NBL if still referenced."""
        payload = seg.payload
        if not payload or rx.is_copy(payload[0]):
            return
        core = tcb.core
        if core is None or core.state is TcpState.CLOSED:
            return
        if ((core.rcv_nxt - core.recv_available() - end) & SEQ_MASK) < _HALF:  # end <= the read pointer
            return  # taken by the client already, or a duplicate the core ignored
        rx.hold()
        held = tcb.held
        if held and tcb.held_sorted and not _seq_le(held[-1][0], end):
            tcb.held_sorted = False  # an out-of-order arrival: release scans the whole list until it drains
        held.append((end, rx))
        self.counters.nbls_held += 1


@kroutine("tcpip")
def TcpTcbReceive(layer: TcpLayer, tcb: Tcb, seg: TcpSegment, rx: "RxFrame") -> None:
    core = tcb.core
    if core is None:
        return
    payload = seg.payload
    if payload:  # (a pure ACK has nothing to hold or copy)
        end = (seg.seq + seg.payload_len) & SEQ_MASK  # where the payload ends (summed once)
        layer.hold_or_copy(tcb, seg, rx)
        if seg.flags & 0x08:  # PSH: remember where the pushed data ends
            tcb.push_end = end
    core.on_segment(seg, layer.kernel.scheduler.now_ns)  # k.now_ns without the property
    tcb.rx_indicating = rx
    layer._kick(tcb)
    tcb.rx_indicating = None
    if payload:
        layer.after_segment(tcb, seg, rx, end)


@kroutine("tcpip")
def TcpDeliverDataToClient(layer: TcpLayer, tcb: Tcb, request: ReceiveRequest, views: list[memoryview]) -> int:
    """Copy in-order bytes into the client's posted receive MDL (the one counted copy)."""
    # (the buffer queues no empty views: any view means bytes to copy)
    return copy_to_mdl(request.mdl, request.offset + request.filled, views, "tcp receive into client MDL") \
        if views else 0

