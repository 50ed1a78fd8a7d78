"""Packet capture on a link or a switch port, written out as pcap.

A capture taps frames as they are put on a link end (both directions) or
as they enter and leave a switch port, stamping each with the virtual
time.  With a `PcapWriter` target it streams; records are also kept in
memory (``records``) unless ``keep=False``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from .link import Link
from .pcap import PcapWriter
from .switch import SwitchPort


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    time_ns: int
    frame: bytes


class Capture:
    def __init__(self, name: str = "capture", *, keep: bool = True,
                 writer: PcapWriter | None = None) -> None:
        self.name = name
        self.keep = keep
        self.writer = writer
        self.records: list[CapturedFrame] = []
        self.running = False
        self.frames_seen = 0
        self._links: list[Link] = []
        self._ports: list[SwitchPort] = []

    # -- where to listen --------------------------------------------------------------
    def attach_link(self, link: Link) -> "Capture":
        link.add_tap(self._tap)
        self._links.append(link)
        return self

    def attach_port(self, port: SwitchPort) -> "Capture":
        port.taps.append(self._tap)
        self._ports.append(port)
        return self

    def detach(self) -> None:
        for link in self._links:
            link.remove_tap(self._tap)
        for port in self._ports:
            if self._tap in port.taps:
                port.taps.remove(self._tap)
        self._links.clear()
        self._ports.clear()

    # -- running ------------------------------------------------------------------------
    def start(self) -> "Capture":
        self.running = True
        return self

    def stop(self) -> None:
        self.running = False
        if self.writer is not None:
            self.writer.flush()

    def _tap(self, frame: bytes, time_ns: int) -> None:
        if not self.running:
            return
        self.frames_seen += 1
        if self.keep:
            self.records.append(CapturedFrame(time_ns, bytes(frame)))
        if self.writer is not None:
            self.writer.write(time_ns, frame)

    def write_pcap(self, target: str | os.PathLike[str] | BinaryIO) -> int:
        """Write the kept records to a pcap file; returns how many were written."""
        with PcapWriter(target) as writer:
            for rec in self.records:
                writer.write(rec.time_ns, rec.frame)
            return writer.frames_written

    def clear(self) -> None:
        self.records.clear()
