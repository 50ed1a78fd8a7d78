"""Classic libpcap capture files (the format tcpdump -w and Wireshark read).

The writer prefers the nanosecond variant (magic 0xa1b23c4d) because the
virtual clock counts nanoseconds; the reader takes both variants in either
byte order and is used by tests and tools.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

MAGIC_MICROSECONDS = 0xA1B2C3D4
MAGIC_NANOSECONDS = 0xA1B23C4D
VERSION_MAJOR = 2
VERSION_MINOR = 4
LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 262144

_FILE_HEADER_BODY = struct.Struct("HHiIII")  # after the magic; byte order chosen at use
_RECORD_HEADER = struct.Struct("<IIII")
_NS_PER_S = 1_000_000_000


class PcapFormatError(ValueError):
    """A capture file that cannot be read."""


@dataclass(frozen=True, slots=True)
class PcapRecord:
    time_ns: int
    data: bytes
    original_length: int


class PcapWriter:
    """Append frames to a pcap file: ``PcapWriter(path_or_binary_file)``.

    A path is opened (and closed by ``close``); a binary file object passed in
    stays open and is only flushed, since its owner decides its life.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        nanosecond: bool = True,
        snaplen: int = DEFAULT_SNAPLEN,
        linktype: int = LINKTYPE_ETHERNET,
    ) -> None:
        if isinstance(target, (str, os.PathLike)):
            self._file: BinaryIO = open(target, "wb")
            self._owns_file = True
        else:
            self._file = target
            self._owns_file = False
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self.linktype = linktype
        self.frames_written = 0
        self._closed = False
        magic = MAGIC_NANOSECONDS if nanosecond else MAGIC_MICROSECONDS
        self._file.write(struct.pack("<IHHiIII", magic, VERSION_MAJOR, VERSION_MINOR, 0, 0, snaplen, linktype))

    def write(self, time_ns: int, frame: bytes | bytearray | memoryview) -> None:
        """Record ``frame`` seen at virtual time ``time_ns``; longer than snaplen is cut."""
        if self._closed:
            raise ValueError("write to a closed PcapWriter")
        if time_ns < 0:
            raise ValueError(f"negative capture time {time_ns}")
        seconds, fraction = divmod(time_ns, _NS_PER_S)
        if not self.nanosecond:
            fraction //= 1000
        if seconds > 0xFFFFFFFF:
            raise ValueError(f"capture time {time_ns} ns does not fit a pcap timestamp")
        original_length = len(frame)
        captured = frame if original_length <= self.snaplen else memoryview(frame)[: self.snaplen]
        self._file.write(_RECORD_HEADER.pack(seconds, fraction, len(captured), original_length))
        self._file.write(captured)
        self.frames_written += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_file:
            self._file.close()
        else:
            self._file.flush()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class PcapCapture:
    linktype: int
    nanosecond: bool
    snaplen: int
    records: list[PcapRecord]


def read_pcap(source: str | os.PathLike[str] | BinaryIO) -> list[PcapRecord]:
    """The records of a capture file, times in nanoseconds."""
    return load_pcap(source).records


def load_pcap(source: str | os.PathLike[str] | BinaryIO) -> PcapCapture:
    """Read a whole capture file with its header fields."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            content = handle.read()
    else:
        content = source.read()
    if len(content) < 24:
        raise PcapFormatError("file header truncated")
    for order in ("<", ">"):
        magic = struct.unpack_from(order + "I", content, 0)[0]
        if magic in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS):
            break
    else:
        raise PcapFormatError(f"not a pcap file (magic {content[:4].hex()})")
    nanosecond = magic == MAGIC_NANOSECONDS
    _major, _minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from(
        order + _FILE_HEADER_BODY.format, content, 4)
    record_header = struct.Struct(order + "IIII")
    records: list[PcapRecord] = []
    offset = 24
    while offset < len(content):
        if len(content) - offset < record_header.size:
            raise PcapFormatError(f"record header truncated at offset {offset}")
        seconds, fraction, captured, original = record_header.unpack_from(content, offset)
        offset += record_header.size
        if len(content) - offset < captured:
            raise PcapFormatError(f"record data truncated at offset {offset}")
        time_ns = seconds * _NS_PER_S + (fraction if nanosecond else fraction * 1000)
        records.append(PcapRecord(time_ns, content[offset : offset + captured], original))
        offset += captured
    return PcapCapture(linktype, nanosecond, snaplen, records)
