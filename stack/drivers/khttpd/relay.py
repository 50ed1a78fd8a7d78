"""Sans-IO reader of the user-mode web server's response, for khttpd's hand-over path.

khttpd forwards a dynamic request's raw bytes to the user-mode server and
feeds whatever comes back into ``BackendResponseReader`` until it reports the
response complete; the driver then re-frames it for its own client connection
(status, body, and the headers the HTTP core does not manage itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import h11

MAX_BACKEND_RESPONSE = 4 * 1024 * 1024
_HOP_BY_HOP = frozenset({b"server", b"date", b"content-length", b"connection", b"transfer-encoding",
                         b"keep-alive", b"content-type"})


class BackendError(Exception):
    """The user-mode server answered something that is not a usable HTTP response (khttpd answers 502)."""


@dataclass(frozen=True, slots=True)
class BackendResponse:
    status: int
    content_type: str | None
    headers: tuple[tuple[bytes, bytes], ...]  # end-to-end headers worth passing on
    body: bytes


class BackendResponseReader:
    """Parse one HTTP/1.1 response to a request whose method is ``method``."""

    def __init__(self, method: str, max_size: int = MAX_BACKEND_RESPONSE) -> None:
        self._h11 = h11.Connection(h11.CLIENT)
        # h11 must believe it sent the request to frame the response (HEAD has no body).
        self._h11.send(h11.Request(method=method, target="/", headers=[("Host", "backend")]))
        self._h11.send(h11.EndOfMessage())
        self._max_size = max_size
        self._received = 0
        self._head: h11.Response | None = None
        self._body = bytearray()
        self.result: BackendResponse | None = None

    def feed(self, data: bytes | memoryview) -> BackendResponse | None:
        """Feed bytes (b"" = the server closed); returns the response once complete."""
        if self.result is not None:
            return self.result
        self._received += len(data)
        if self._received > self._max_size:
            raise BackendError(f"backend response over {self._max_size} bytes")
        self._h11.receive_data(bytes(data))
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise BackendError(f"malformed backend response: {exc}") from exc
            if event is h11.NEED_DATA:
                if not data:
                    raise BackendError("backend closed before the response was complete")
                return None
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                self._head = event
            elif isinstance(event, h11.Data):
                self._body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return self._finish()
            elif event is h11.PAUSED:
                return self._finish()

    def _finish(self) -> BackendResponse:
        head = self._head
        if head is None:
            raise BackendError("backend sent no response head")
        content_type = None
        passed: list[tuple[bytes, bytes]] = []
        for name, value in head.headers:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name not in _HOP_BY_HOP:
                passed.append((bytes(name), bytes(value)))
        self.result = BackendResponse(head.status_code, content_type, tuple(passed), bytes(self._body))
        return self.result
