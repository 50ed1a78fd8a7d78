"""The emulated network hardware: NIC, links, switch and capture.

Public API (names are stable):

``EmulatedNic(kernel, mac, *, name="nic0", mtu=1500, link_speed_bps=10**9,
tx_ring_size=256, rx_ring_size=256, offloads=NicOffloads())``
    One host's network card, owned by that host's `Kernel`.  The miniport
    (`stack.ndis.netvmini`) drives it through:
    ``post_rx_buffer(sg, cookie) -> bool`` (receive buffers: scatter-gather
    lists of ``(pfn, offset, length)``), ``post_tx(sg, cookie, *, csum=0,
    lso_mss=0, lso_tcp_header_offset=0) -> bool`` then ``ring_doorbell()``;
    ``take_tx_completions()`` / ``take_rx_completions()`` in its DPC;
    ``connect_interrupt(isr)`` (called at NIC_DIRQL), ``enable_interrupts()``,
    ``disable_interrupts()``.  Counters: ``counters`` (NicCounters: frames and
    bytes in/out, ``drops`` by reason, interrupts), ``dma_tx_bytes``,
    ``dma_rx_bytes``.  ``set_interrupt_moderation_rate("Adaptive" | "Off" |
    "Minimal" ... "Extreme" | interrupts per second)``: Intel's "Interrupt
    Moderation Rate" (itr.py; the lab's hosts ship Adaptive).  As a `FrameSink`, ``deliver(frame, time_ns)`` schedules
    ``frame_arrived(frame)`` on the NIC's kernel at ``time_ns``.

``Link(scheduler, *, bandwidth_bps=10**9, latency_ns=50_000, queue_frames=256,
rng=None, faults=None)``
    A full-duplex cable.  ``link.connect(a, b)`` joins two ports (a NIC or a
    `SwitchPort`: anything with ``deliver`` and ``attach``).  ``link.ends[0]``
    carries a->b, ``link.ends[1]`` b->a; each `LinkEnd` has its own
    ``faults`` (`FaultConfig`: loss, duplicate, reorder, corrupt probabilities,
    reorder_delay_ns, corrupt_bytes) and ``counters`` (`LinkCounters`).

``Switch(scheduler, bus, *, name="sw0", aging_ns=300 s)``; ``switch.add_port(name)
-> SwitchPort``; a learning switch (``mac_table``) that floods unknown,
broadcast and multicast destinations; per-port ``counters``.

``Capture()``: ``attach_link(link)``, ``attach_port(port)``, ``start()``,
``stop()``, ``records`` (``CapturedFrame(time_ns, frame)``),
``write_pcap(path_or_file)``.

``FrameSink`` (Protocol): ``deliver(frame: bytes, time_ns: int) -> None`` -
the frame reaches this sink at virtual time ``time_ns`` (>= now); the sink
schedules its own processing.  A TAP bridge can implement it.

Events (stack.kernel.events.Event subclasses): ``FrameTransmitted``,
``FrameReceived``, ``FrameDropped(layer, reason)``, ``Interrupt``.

Offload helpers (pure, on bytes): ``segment_lso``, ``fill_checksums``,
``validate_rx_checksums``; drop reasons ``DROP_*``.
"""

from .capture import Capture, CapturedFrame
from .events import FrameDropped, FrameReceived, FrameTransmitted, Interrupt
from .link import FaultConfig, FramePort, FrameSink, Link, LinkCounters, LinkEnd
from .nic import (DROP_LINK_DOWN, DROP_NO_RX_BUFFER, DROP_OVERSIZE, DROP_RUNT, DROP_TX_MALFORMED, DROP_TX_OVERSIZE,
                  EmulatedNic, NicCounters, NicOffloads, RxCompletion, SgElement, TxCompletion)
from .offload import fill_checksums, segment_lso, validate_rx_checksums
from .switch import Switch, SwitchPort, SwitchPortCounters

__all__ = [
    "Capture", "CapturedFrame", "FrameDropped", "FrameReceived", "FrameTransmitted", "Interrupt", "FaultConfig",
    "FramePort", "FrameSink", "Link", "LinkCounters", "LinkEnd", "EmulatedNic", "NicCounters", "NicOffloads",
    "RxCompletion", "SgElement", "TxCompletion", "fill_checksums", "segment_lso", "validate_rx_checksums",
    "Switch", "SwitchPort", "SwitchPortCounters", "DROP_LINK_DOWN", "DROP_NO_RX_BUFFER", "DROP_OVERSIZE",
    "DROP_RUNT", "DROP_TX_MALFORMED", "DROP_TX_OVERSIZE",
]
