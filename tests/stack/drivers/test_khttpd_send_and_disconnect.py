"""Send and disconnect: khttpd's last response on a connection goes out with its FIN in one request
(WskDisconnect with a WSK_BUF over WSK, TDI_SEND with TDI_SEND_AND_DISCONNECT over TDI), and the
capture shows the FIN on the last data segment - no separate FIN segment."""

from __future__ import annotations

import pytest

from stack.fs.docroot_manifest import docroot_files, file_bytes
from stack.tcpip.wire.frame import parse_frame
from stack.tcpip.wire.tcp import FIN, TcpHeader
from stack.usermode.webserver import http_raw

from khttpd_lab import SERVER4, boot_lab, run_client

CONTENT = {name: file_bytes(content) for name, content in docroot_files().items()}
CLOSE_REQUEST = b"GET /files/%s HTTP/1.1\r\nHost: winsrv\r\nConnection: close\r\n\r\n"


def _server_segments(capture) -> list[tuple[int, int]]:
    """(flags, payload length) of every segment khttpd sent (once: the capture sees each on two links)."""
    out: dict[tuple[int, int, int], None] = {}
    for record in capture.records:
        decoded = parse_frame(record.frame, verify_checksum=False)
        if isinstance(decoded.transport, TcpHeader) and decoded.transport.src_port == 80:
            out[(decoded.transport.seq, decoded.transport.flags, len(decoded.payload))] = None
    return [(flags, length) for _, flags, length in out]


@pytest.mark.parametrize("parameters", [{}, {"Transport": "TDI"}, {"Transport": "TDI", "ResponseCache": 1 << 20}],
                         ids=["WskDisconnect-with-data", "TDI_SEND_AND_DISCONNECT", "cached-TDI_SEND_AND_DISCONNECT"])
@pytest.mark.parametrize("name", ["64B.bin", "16KB.bin"])
def test_the_fin_rides_on_the_last_data_segment(parameters, name):
    lab = boot_lab(seed=51, parameters=parameters)
    run_client(lab, http_raw, SERVER4, CLOSE_REQUEST % name.encode())  # (fills the cache when there is one)
    capture = lab.capture()
    response, closed = run_client(lab, http_raw, SERVER4, CLOSE_REQUEST % name.encode())
    lab.run_until_idle(max_time_ns=lab.now_ns + 5_000_000_000)
    capture.stop()
    assert response.body == CONTENT["files/" + name] and closed
    segments = _server_segments(capture)
    fins = [(flags, length) for flags, length in segments if flags & FIN]
    assert len(fins) == 1
    assert fins[0][1] > 0  # the FIN segment carries the response's last bytes
    data = [length for flags, length in segments if length]
    assert segments.index(fins[0]) == max(i for i, (f, n) in enumerate(segments) if n)  # the last data segment
    assert sum(data) >= len(CONTENT["files/" + name])


def test_without_send_and_disconnect_the_fin_is_a_segment_of_its_own():
    lab = boot_lab(seed=51, parameters={"SendAndDisconnect": False})
    capture = lab.capture()
    response, closed = run_client(lab, http_raw, SERVER4, CLOSE_REQUEST % b"64B.bin")
    lab.run_until_idle(max_time_ns=lab.now_ns + 5_000_000_000)
    capture.stop()
    assert closed
    fins = [(flags, length) for flags, length in _server_segments(capture) if flags & FIN]
    assert fins == [(fins[0][0], 0)]
