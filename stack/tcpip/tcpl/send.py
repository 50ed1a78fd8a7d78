"""TCP glue, send: client sends as stream ranges, segments built over the client's pages (partial MDLs), to IP.

Part of the TcpLayer that stack/tcpip/tcp_glue.py assembles."""

from __future__ import annotations

from bisect import bisect_right
from functools import partial
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Callable
from stack.kernel import (STATUS_HOST_UNREACHABLE, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
                          STATUS_PENDING, STATUS_SUCCESS, kroutine)
from stack.kernel.mdl import IoBuildPartialMdl, Mdl
from ..events import SegmentSent
from ..tcp import TcpSegment, TcpState
from ..tcp.buffers import slice_views
from ..tcp.segment import FIN, PSH
from ..tcp.seq import SEQ_MASK
from ..transport import ConnectionEndpoint, RequestComplete
from ..wire.tcp import emit_tcp_header, fill_tcp_checksum
from ..wire.ipv4 import IPPROTO_TCP
from .common import MAX_PAYLOAD_MDLS, SendRequest, Tcb, _ACK, _CAN_SEND, _mdl_pieces, _summary

PARTIAL_MDL_MAX = 64 * 1024  # bytes one partial MDL from the MDL pool can describe (ip.MDL_POOL_PAGES)

if TYPE_CHECKING:
    from ..tcp_glue import TcpLayer
    from ..ip import TxPacket


class SendLayer:
    """Client sends as stream ranges, segments built over the client's pages (partial MDLs), to IP.

    Large sends: where the route's adapter offers LSO, the core builds one segment per large send
    (TcpConnection.tso_size asks lso_limit) and it goes to IP as one LSO packet, as Linux's
    tcp_write_xmit builds TSO-sized skbs.  Segments the core still makes one per MSS (a
    retransmission going back, data behind a resent segment) are joined here into LSO sends by
    the same rule the core follows, so the NIC cuts the same frames either way."""

    tso_emission = True  # False: the core emits one segment per MSS and _transmit joins them (as before)

    def send(self, endpoint: ConnectionEndpoint, mdl: Mdl, offset: int, length: int,
             completion: RequestComplete | None, disconnect: Callable[[int], None] | None = None) -> int:
        tcb: Tcb = endpoint._tcb
        core = tcb.core
        if endpoint.closed or core is None or tcb.reset_delivered or core.state not in _CAN_SEND \
                or tcb.disconnect_completion is not None:
            return STATUS_INVALID_DEVICE_STATE
        if length < 0 or offset < 0:
            return STATUS_INVALID_PARAMETER
        if length == 0:
            return STATUS_SUCCESS
        try:
            pieces = _mdl_pieces(mdl, offset, length)
        except ValueError:
            return STATUS_INVALID_PARAMETER
        if core.tso_size is None:
            core.tso_size = partial(self.lso_limit, tcb)
        request = SendRequest(tcb.stream_end, length, pieces, completion)
        tcb.sends.append(request)
        tcb.send_starts.append(request.start)
        tcb.stream_end += length
        last = len(pieces) - 1
        for i, (src, off, n) in enumerate(pieces):
            views = src.views(off, n)
            for j, view in enumerate(views):
                core.send(view, request if (i == last and j == len(views) - 1) else None)
        if disconnect is not None:  # send and disconnect: the FIN is queued before anything leaves
            tcb.disconnect_completion = disconnect
            core.close(self.kernel.now_ns)
        self._kick(tcb)
        return STATUS_PENDING

    def _maybe_complete_send(self, tcb: Tcb, request: SendRequest) -> None:
        if request.done or request.inflight:
            return
        if request.acked:
            request.done = True
            self._upcall(tcb.endpoint, "send-complete", STATUS_SUCCESS, request.length)
            if request.completion is not None:
                request.completion(STATUS_SUCCESS, request.length)
        elif request.failed:  # failed while NBLs were still out
            request.done = True
            if request.completion is not None:
                request.completion(request.failed, 0)
        self._compact_sends(tcb)

    def _compact_sends(self, tcb: Tcb) -> None:
        sends = tcb.sends
        head = tcb.send_head
        while head < len(sends) and sends[head].done:
            head += 1
        tcb.send_head = head
        if head > 64 and head * 2 > len(sends):
            del sends[:head]
            del tcb.send_starts[:head]
            tcb.send_head = 0

    def lso_limit(self, tcb: Tcb) -> int:
        """TcpConnection.tso_size: payload bytes one large send may carry now (0: none, or
        tso_emission off)."""
        return self._lso_max(tcb) if self.tso_emission else 0

    def _lso_max(self, tcb: Tcb) -> int:
        """Payload bytes one LSO send may carry on this connection's route now (0: no LSO)."""
        path = tcb.path
        if path is None:
            return 0
        iface = path.interface
        if not iface.lso_enabled(path.version):
            return 0
        core = tcb.core
        return iface.lso_max_payload(path, core is not None and core.rcv_wscale + core.snd_wscale > 0)

    def _transmit(self, tcb: Tcb, segments: list[TcpSegment]) -> None:
        count = len(segments)
        core = tcb.core
        if count == 1:  # a lone segment: one packet (one LSO send when the core built it large)
            TcpTcbSend(self, tcb, segments, core.max_payload if segments[0].segments > 1 else 0)
            return
        mss = core.max_payload if core is not None else 0
        lso_max = self._lso_max(tcb)
        i = 0
        while i < count:
            seg = segments[i]
            j = i + 1
            if seg.segments > 1:  # the core's large send: one LSO send as it stands
                TcpTcbSend(self, tcb, segments[i:j], mss)
                i = j
                continue
            # Consecutive MSS-sized segments of one loop join one LSO send (the rule
            # TcpConnection._emit_large follows when it builds the large send itself).
            if lso_max and seg.payload and seg.flags == _ACK:
                total = seg.payload_len
                if total == mss:
                    next_seq = (seg.seq + total) & SEQ_MASK  # where the previous segment of the batch ends
                    while j < count and total + mss <= lso_max:
                        nxt = segments[j]
                        plen = nxt.payload_len
                        if (not plen or plen > mss or nxt.seq != next_seq
                                or nxt.ack != seg.ack or nxt.window != seg.window
                                or nxt.timestamps != seg.timestamps or nxt.sack_blocks != seg.sack_blocks
                                or nxt.flags & ~(_ACK | 0x08 | 0x01) or not nxt.flags & _ACK):
                            break
                        total += plen
                        next_seq = (nxt.seq + plen) & SEQ_MASK
                        j += 1
                        if plen < mss or nxt.flags != _ACK:
                            break
                    if j - i > 1:
                        TcpTcbSend(self, tcb, segments[i:j], mss)
                        i = j
                        continue
            TcpTcbSend(self, tcb, segments[i:i + 1], 0)
            i += 1

    def build_and_send(self, tcb: Tcb, segs: list[TcpSegment], lso_mss: int) -> None:
        """One packet to IP: `segs` (consecutive; one LSO send when more than one)."""
        path = tcb.path
        ip = self.stack.ip
        first = segs[0]
        if len(segs) > 1:
            payload_len = sum([len(v) for s in segs for v in s.payload])
            flags = segs[-1].flags
            wire_segments = len(segs)
        else:
            payload_len = first.payload_len
            flags = first.flags
            wire_segments = first.segments  # >1: the core's large send
        # No header slot or MDLs: the segment is lost here and counted; the core retransmits it.
        pool = self.stack.mdl_pool
        packet = ip.new_packet(path, IPPROTO_TCP) if (len(pool.free) >= MAX_PAYLOAD_MDLS
                                                      or pool.reserve(MAX_PAYLOAD_MDLS)) else None
        if packet is None:
            self.stack.drop("tcp", "no_memory")
            return
        buf = packet.buf
        offset = packet.l4_offset
        # The first segment's options: the core sized the payload for them (SACK included).
        end = emit_tcp_header(buf, offset, first.src_port, first.dst_port, first.seq, first.ack, flags,
                              first.window, first.mss, first.wscale, first.sack_permitted, first.sack_blocks,
                              first.timestamps)
        k = self.kernel
        if k.cpu_model is not None:  # Kernel.charge, asked once (no processor model: nothing to spend)
            k.charge("tcp_tx_segment")  # one packet to IP (an LSO packet is one, however many segments)
        if not path.interface.tcp_checksum_offload(path.version):
            offload = False
            k.charge("checksum_byte", end - offset + payload_len)
            fill_tcp_checksum(buf, offset, end, [view for s in segs for view in s.payload], path.src, path.dst)
        else:
            offload = True
        packet.l4_length = end - offset
        if payload_len:
            self._attach_payload(tcb, packet, first.seq, payload_len)
        packet.payload_length = payload_len
        packet.lso_mss = lso_mss
        packet.checksum_offload = offload
        # Segments Sent counts each MSS-sized segment of an LSO send (what the wire carries), as
        # it did when the core built them one by one.
        self.counters.tcp_segments_sent += wire_segments
        if k.bus.subscribers:
            for s in (segs if wire_segments == len(segs) else _wire_segments(first, lso_mss)):
                k.bus.publish(SegmentSent(host=k.name, depth=len(k.frames), conn=tcb.endpoint.address,
                                          summary=_summary(path.src, path.dst, s), length=s.payload_len))
        packet.on_failed = lambda status, tcb=tcb: self._send_failed(tcb, status)
        ip.send_packet(packet)

    def _attach_payload(self, tcb: Tcb, packet: "TxPacket", seq32: int, length: int) -> None:
        """Partial MDLs over the client's pages for stream bytes starting at `seq32`."""
        sends = tcb.sends
        starts = tcb.send_starts
        head = tcb.send_head
        ref = sends[head] if head < len(sends) else sends[-1]
        stream_off = ref.start + ((seq32 - (tcb.snd_base + ref.start)) & SEQ_MASK)
        if stream_off >= tcb.stream_end:  # behind the reference: unwrap backwards
            stream_off -= 1 << 32
        i = bisect_right(starts, stream_off, 0) - 1
        pool = self.stack.mdl_pool
        mdls = packet.payload_mdls
        requests = packet.requests
        while length > 0:
            request = sends[i]
            within = stream_off - request.start
            take = min(request.length - within, length)
            request.inflight += 1
            requests.append(request)
            left = take
            pos = within
            for src, src_off, n in request.pieces:
                if pos >= n:
                    pos -= n
                    continue
                piece = min(n - pos, left)
                va = src.virtual_address + src_off + pos
                while piece > PARTIAL_MDL_MAX:  # a pool MDL maps 64 KiB: a send past that takes several
                    target = pool.get()
                    IoBuildPartialMdl(src, target, va, PARTIAL_MDL_MAX)
                    mdls.append(target)
                    va += PARTIAL_MDL_MAX
                    piece -= PARTIAL_MDL_MAX
                    left -= PARTIAL_MDL_MAX
                target = pool.get()
                IoBuildPartialMdl(src, target, va, piece)
                mdls.append(target)
                left -= piece
                pos = 0
                if not left:
                    break
            stream_off += take
            length -= take
            i += 1
        packet.on_complete = self._payload_sent
        packet.owner = tcb

    def _payload_sent(self, packet: "TxPacket") -> None:
        """NDIS handed the NBL back: the client's pages are no longer referenced by it."""
        tcb: Tcb = packet.owner
        for request in packet.requests:
            request.inflight -= 1
            if not request.inflight:
                self._maybe_complete_send(tcb, request)

    def _send_failed(self, tcb: Tcb, status: int) -> None:
        core = tcb.core
        if core is not None and core.state is TcpState.SYN_SENT and status == STATUS_HOST_UNREACHABLE:
            tcb.fail_status = STATUS_HOST_UNREACHABLE
            core.abort(self.kernel.now_ns)
            self._kick(tcb)

    def _send_bare(self, remote: bytes, local: bytes, seg: TcpSegment) -> None:
        """A segment with no connection behind it (RST to nowhere, listener replies)."""
        ip = self.stack.ip
        remote_ip = IPv4Address(remote) if len(remote) == 4 else IPv6Address(remote)
        path = ip.route(remote_ip, IPv4Address(local) if len(local) == 4 else IPv6Address(local))
        if path is None:
            self.stack.drop("tcp", "no_route")
            return
        if seg.flags & 0x04:
            self.counters.tcp_resets_sent += 1
        packet = ip.new_packet(path, IPPROTO_TCP)
        if packet is None:  # dropped and counted by ip
            return
        buf = packet.buf
        offset = packet.l4_offset
        end = emit_tcp_header(buf, offset, seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window,
                              seg.mss, seg.wscale, seg.sack_permitted, seg.sack_blocks, seg.timestamps)
        fill_tcp_checksum(buf, offset, end, (), path.src, path.dst)
        packet.l4_length = end - offset
        self.counters.tcp_segments_sent += 1
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(SegmentSent(host=k.name, depth=len(k.frames), conn=0,
                                      summary=_summary(path.src, path.dst, seg), length=0))
        ip.send_packet(packet)


def _wire_segments(seg: TcpSegment, mss: int) -> list[TcpSegment]:
    """The MSS-sized segments one large send stands for, as the NIC cuts it (PSH and FIN on the
    last only) - what a listener saw when the core built them one by one."""
    total = seg.payload_len
    out: list[TcpSegment] = []
    for lo in range(0, total, mss):
        hi = min(lo + mss, total)
        flags = seg.flags if hi == total else seg.flags & ~(PSH | FIN)
        out.append(TcpSegment(seg.src_port, seg.dst_port, (seg.seq + lo) & SEQ_MASK, seg.ack, flags, seg.window,
                              None, None, False, seg.timestamps, seg.sack_blocks,
                              tuple(slice_views(seg.payload, lo, hi))))
    return out


@kroutine("tcpip")
def TcpTcbSend(layer: TcpLayer, tcb: Tcb, segments: list[TcpSegment], lso_mss: int) -> None:
    layer.build_and_send(tcb, segments, lso_mss)
