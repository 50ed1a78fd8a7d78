"""Recording files: round trip, crash tolerance, and clear errors for bad files."""

from __future__ import annotations

import io

import pytest

from stack.bridge.record import (KIND_ACCEPT, KIND_DATA, KIND_FRAME, BridgeInput, RecordingError, RecordingHeader,
                                 RecordingWriter, read_recording)


def _write(inputs: list[BridgeInput], *, end: tuple[int, int] | None = (100, 5_000)) -> str:
    buf = io.StringIO()
    writer = RecordingWriter(buf, RecordingHeader(seed=7, forwards=["127.0.0.1:8080=winsrv:80"], tap=None))
    for inp in inputs:
        writer.append(inp)
    if end is not None:
        writer.close(*end)
    return buf.getvalue()


def test_recording_round_trips_inputs_header_and_end_marker() -> None:
    inputs = [BridgeInput(3, 1000, KIND_ACCEPT, 1, 0, b"127.0.0.1:5555"),
              BridgeInput(9, 2000, KIND_DATA, 1, 0, bytes(range(256)) * 4),
              BridgeInput(9, 2000, KIND_FRAME, 0, 0, b"\xff" * 60)]
    rec = read_recording(io.StringIO(_write(inputs)))
    assert rec.header.seed == 7 and rec.header.forwards == ["127.0.0.1:8080=winsrv:80"]
    assert rec.inputs == inputs
    assert rec.complete and (rec.end_event, rec.end_ns) == (100, 5_000)


def test_recording_without_end_marker_still_reads_after_a_crash() -> None:
    rec = read_recording(io.StringIO(_write([BridgeInput(1, 10, KIND_DATA, 2, 0, b"x")], end=None)))
    assert not rec.complete and len(rec.inputs) == 1


def test_recording_file_path_round_trip(tmp_path) -> None:
    path = tmp_path / "run.wbr"
    writer = RecordingWriter(path, RecordingHeader(seed=1))
    writer.append(BridgeInput(0, 0, KIND_FRAME, data=b"abc"))
    writer.close(1, 1)
    assert read_recording(path).inputs[0].data == b"abc"


@pytest.mark.parametrize("text, message", [
    ("", "empty recording"),
    ('{"format": "other"}\n', "not a wskdbg bridge recording"),
    ('{"format": "wskdbg-bridge-recording", "version": 99, "seed": 1}\n', "unsupported recording version"),
    ('{"format": "wskdbg-bridge-recording", "version": 1, "seed": 1}\n[1, 2, "bogus", 0, 0, ""]\n', "unknown input kind"),
    ('{"format": "wskdbg-bridge-recording", "version": 1, "seed": 1}\n[1, 2, "data", 0, 0, "!!"]\n', "bad base64"),
    ('{"format": "wskdbg-bridge-recording", "version": 1, "seed": 1}\n[1, 2]\n', "6 fields"),
    ('{"format": "wskdbg-bridge-recording", "version": 1, "seed": 1}\nnot json\n', "line 2: not JSON"),
    ('{"format": "wskdbg-bridge-recording", "version": 1, "seed": 1}\n[5, 2, "eof", 1, 0, ""]\n[4, 2, "eof", 1, 0, ""]\n',
     "out of order"),
    ('{"format": "wskdbg-bridge-recording", "version": 1, "seed": 1}\n{"end_event": 1, "end_ns": 1}\n[5, 2, "eof", 1, 0, ""]\n',
     "after the end marker"),
])
def test_bad_recording_names_the_line_and_problem(text: str, message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        read_recording(io.StringIO(text))
