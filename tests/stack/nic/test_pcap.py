"""pcap capture files: what we write, scapy reads back byte for byte, and vice versa."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter as ScapyPcapWriter
from scapy.utils import rdpcap, wrpcap

from stack.nic.pcap import (
    LINKTYPE_ETHERNET,
    MAGIC_MICROSECONDS,
    MAGIC_NANOSECONDS,
    PcapFormatError,
    PcapRecord,
    PcapWriter,
    load_pcap,
    read_pcap,
)

FRAMES = [
    (0, bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="18:03:73:c1:e8:72", type=0x0806) / bytes(28))),
    (1_000_000_001, bytes(range(60))),
    (1_700_000_123_456_789, memoryview(b"\x02" * 1514)),
]


def test_nanosecond_capture_is_read_by_scapy_with_identical_bytes_and_times(tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    with PcapWriter(path) as writer:
        for time_ns, frame in FRAMES:
            writer.write(time_ns, frame)
        assert writer.frames_written == 3
    assert path.read_bytes()[:4] == MAGIC_NANOSECONDS.to_bytes(4, "little")
    packets = rdpcap(str(path))
    assert len(packets) == 3
    for packet, (time_ns, frame) in zip(packets, FRAMES):
        assert bytes(packet) == bytes(frame)
        assert Decimal(packet.time) * 1_000_000_000 == time_ns


def test_microsecond_capture_keeps_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "us.pcap"
    with PcapWriter(path, nanosecond=False) as writer:
        writer.write(2_000_123_999, b"frame")
    assert path.read_bytes()[:4] == MAGIC_MICROSECONDS.to_bytes(4, "little")
    packet = rdpcap(str(path))[0]
    assert Decimal(packet.time) == Decimal("2.000123")
    assert read_pcap(path) == [PcapRecord(2_000_123_000, b"frame", 5)]


def test_our_reader_returns_what_our_writer_wrote() -> None:
    buffer = io.BytesIO()
    writer = PcapWriter(buffer)
    for time_ns, frame in FRAMES:
        writer.write(time_ns, frame)
    writer.close()
    assert not buffer.closed  # a caller's file stays the caller's
    buffer.seek(0)
    capture = load_pcap(buffer)
    assert capture.linktype == LINKTYPE_ETHERNET and capture.nanosecond
    assert [(r.time_ns, r.data) for r in capture.records] == [(t, bytes(f)) for t, f in FRAMES]


def test_reader_understands_scapy_written_captures(tmp_path: Path) -> None:
    frame = Ether(dst="02:00:00:00:00:0b") / b"payload"
    frame.time = Decimal("12.345678")
    wrpcap(str(tmp_path / "us.pcap"), [frame])
    assert read_pcap(tmp_path / "us.pcap") == [PcapRecord(12_345_678_000, bytes(frame), len(frame))]
    nano = Ether() / b"x"
    nano.time = Decimal("3.000000007")
    with ScapyPcapWriter(str(tmp_path / "ns.pcap"), nano=True) as writer:
        writer.write(nano)
    assert read_pcap(tmp_path / "ns.pcap")[0].time_ns == 3_000_000_007


def test_big_endian_capture_is_read() -> None:
    header = MAGIC_NANOSECONDS.to_bytes(4, "big") + bytes.fromhex("00020004") + bytes(8)
    header += (65535).to_bytes(4, "big") + (1).to_bytes(4, "big")
    record = (5).to_bytes(4, "big") + (6).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + b"hi"
    assert read_pcap(io.BytesIO(header + record)) == [PcapRecord(5_000_000_006, b"hi", 2)]


def test_frames_longer_than_snaplen_are_cut_but_keep_original_length() -> None:
    buffer = io.BytesIO()
    with PcapWriter(buffer, snaplen=64) as writer:
        writer.write(1, bytes(100))
    buffer.seek(0)
    assert read_pcap(buffer) == [PcapRecord(1, bytes(64), 100)]


def test_writer_refuses_negative_times_and_writes_after_close() -> None:
    writer = PcapWriter(io.BytesIO())
    with pytest.raises(ValueError):
        writer.write(-1, b"x")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError):
        writer.write(0, b"x")


@pytest.mark.parametrize("content", [b"", b"\xd4\xc3\xb2", b"GIF89a" + bytes(30)])
def test_reader_rejects_files_that_are_not_pcap(content: bytes) -> None:
    with pytest.raises(PcapFormatError):
        read_pcap(io.BytesIO(content))


def test_reader_rejects_truncated_records() -> None:
    buffer = io.BytesIO()
    with PcapWriter(buffer) as writer:
        writer.write(1, b"abcdef")
    whole = buffer.getvalue()
    for cut in range(25, len(whole)):
        with pytest.raises(PcapFormatError):
            read_pcap(io.BytesIO(whole[:cut]))
