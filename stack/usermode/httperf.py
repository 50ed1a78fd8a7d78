"""httperf in virtual time: open connections at a fixed rate, send requests, time the replies.

    config = HttperfConfig(SockAddr.parse("10.0.0.1:80"), uri="/index.html", num_conns=20, rate=10)
    program = run_program(client_kernel, httperf, config)
    ... run the world until program.done ...
    print("\\n".join(report_lines(program.result)))

Like httperf, connection i starts at i / rate seconds (with rate 0, one after
another), each issues `num_calls` requests one after another on the same
connection (the last says `Connection: close`), and the report has httperf's
sections.  Every time is read from the virtual clock, so the numbers are the
emulated machine's, and a run replays exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Generator

from stack.kernel import current_kernel
from stack.kernel.ke import KeDelayExecutionThread
from stack.kernel.ntstatus import (STATUS_CONNECTION_REFUSED, STATUS_CONNECTION_RESET, STATUS_INSUFFICIENT_RESOURCES,
                                   STATUS_IO_TIMEOUT)
from stack.tcpip.addr import AF_INET, AF_INET6, SockAddr

from .socket import SOCK_STREAM, Socket, SocketError, UserBuffer, join, program_closing, spawn

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
RECV_SIZE = 16 * 1024
SAMPLE_NS = 5 * NS_PER_S  # httperf samples the reply rate every 5 seconds


class HttperfError(ValueError):
    """A configuration httperf cannot run."""


@dataclass(slots=True)
class HttperfConfig:
    server: SockAddr
    uri: str = "/"
    host: str = "winsrv"  # the Host header
    num_conns: int = 1
    rate: float = 0.0  # connections per second; 0 = one after another
    num_calls: int = 1  # requests per connection
    method: str = "GET"

    def validate(self) -> None:
        if self.num_conns < 1 or self.num_calls < 1:
            raise HttperfError("--num-conns and --num-calls must be at least 1")
        if self.rate < 0:
            raise HttperfError("--rate must not be negative")
        if not self.uri.startswith("/"):
            raise HttperfError("--uri must start with /")
        if self.method not in ("GET", "HEAD"):
            raise HttperfError("only GET and HEAD are supported")


@dataclass(slots=True)
class Reply:
    status: int
    header_bytes: int
    content_bytes: int
    response_ns: int  # request sent -> first byte of the reply
    transfer_ns: int  # first byte -> last byte
    done_ns: int  # virtual time the reply was complete


@dataclass(slots=True)
class ConnectionRecord:
    start_ns: int
    connect_ns: int = 0  # time to establish
    end_ns: int = 0
    replies: int = 0
    ok: bool = False


@dataclass
class HttperfResult:
    config: HttperfConfig
    start_ns: int = 0
    end_ns: int = 0
    connections: list[ConnectionRecord] = field(default_factory=list)
    requests: int = 0
    request_bytes: int = 0
    replies: list[Reply] = field(default_factory=list)
    bytes_sent: int = 0
    bytes_received: int = 0
    max_concurrent: int = 0
    errors: dict[str, int] = field(default_factory=lambda: {
        "client-timo": 0, "socket-timo": 0, "connrefused": 0, "connreset": 0, "fd-unavail": 0, "addrunavail": 0,
        "ftab-full": 0, "other": 0})
    failures: Counter = field(default_factory=Counter)  # why each failed connection failed (NTSTATUS or kind)
    _open: int = 0

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())


def _now() -> int:
    return current_kernel().now_ns


def request_bytes(config: HttperfConfig, last: bool) -> bytes:
    lines = [f"{config.method} {config.uri} HTTP/1.1", f"Host: {config.host}", "User-Agent: httperf/0.9.0"]
    if last:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _content_length(head: bytes) -> tuple[int, int]:
    """(status, Content-Length) of a response head; a malformed head raises ValueError."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"bad status line {lines[0]!r}")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return int(parts[1]), length


class _Reader:
    """Reads whole replies off one connection (bytes beyond a reply stay for the next)."""

    def __init__(self, sock: Socket, result: HttperfResult) -> None:
        self.sock = sock
        self.result = result
        self.buffer = UserBuffer(RECV_SIZE)
        self.pending = bytearray()

    def fill(self) -> Generator[Any, Any, bool]:
        n = yield from self.sock.recv_into(self.buffer)
        if n == 0:
            return False
        self.result.bytes_received += n
        self.pending += self.buffer.read(n)
        return True

    def reply(self, head_only: bool, sent_ns: int) -> Generator[Any, Any, Reply]:
        first_ns = 0
        while (end := self.pending.find(b"\r\n\r\n")) < 0:
            if not (yield from self.fill()):
                raise ConnectionError("closed before a reply")
            first_ns = first_ns or _now()
        first_ns = first_ns or _now()
        head = bytes(self.pending[:end + 4])
        del self.pending[:end + 4]
        status, length = _content_length(head)
        if head_only or status in (204, 304) or 100 <= status < 200:
            length = 0
        while len(self.pending) < length:
            if not (yield from self.fill()):
                raise ConnectionError("closed in the middle of a reply body")
        del self.pending[:length]
        done = _now()
        return Reply(status, len(head), length, first_ns - sent_ns, done - first_ns, done)

    def free(self) -> None:
        self.buffer.free()


def _family(address: SockAddr) -> int:
    return AF_INET if address.ip.version == 4 else AF_INET6


def _classify(exc: BaseException) -> str:
    if isinstance(exc, SocketError):
        return {STATUS_CONNECTION_REFUSED: "connrefused", STATUS_CONNECTION_RESET: "connreset",
                STATUS_IO_TIMEOUT: "client-timo"}.get(exc.status, "other")
    return "other"


def one_connection(config: HttperfConfig, result: HttperfResult) -> Generator[Any, Any, None]:
    """One httperf connection: connect, `num_calls` requests, close."""
    record = ConnectionRecord(_now())
    result.connections.append(record)
    result._open += 1
    result.max_concurrent = max(result.max_concurrent, result._open)
    sock: Socket | None = None
    reader: _Reader | None = None
    try:
        sock = yield from Socket.create(_family(config.server), SOCK_STREAM)
        yield from sock.connect(config.server)
        record.connect_ns = _now() - record.start_ns
        reader = _Reader(sock, result)
        for call in range(config.num_calls):
            data = request_bytes(config, call == config.num_calls - 1)
            result.requests += 1
            result.request_bytes += len(data)
            sent = _now()
            yield from sock.send(data)
            result.bytes_sent += len(data)
            reply = yield from reader.reply(config.method == "HEAD", sent)
            result.replies.append(reply)
            record.replies += 1
        record.ok = True
    except (SocketError, ConnectionError, ValueError) as exc:
        result.errors[_classify(exc)] += 1
        result.failures[exc.status if isinstance(exc, SocketError) else type(exc).__name__] += 1
    finally:
        if sock is not None:
            yield from sock.close()  # while the program is being torn down, this ends the cleanup
        if reader is not None:
            reader.free()
        if not program_closing():
            record.end_ns = _now()
        result._open -= 1


def httperf(config: HttperfConfig) -> Generator[Any, Any, HttperfResult]:
    """The load generator (a user-mode program): run every connection, then return the statistics."""
    config.validate()
    result = HttperfResult(config)
    result.start_ns = _now()
    if config.rate == 0:
        for _ in range(config.num_conns):
            yield from one_connection(config, result)
    else:
        workers = []
        for i in range(config.num_conns):
            due = result.start_ns + int(i * NS_PER_S / config.rate)
            wait = due - _now()
            if wait > 0:
                yield KeDelayExecutionThread(Interval=-((wait + 99) // 100))
            worker = spawn(one_connection, config, result, name=f"httperf-conn{i}")
            if worker.thread is None:  # no thread for it: httperf's "out of descriptors" kind of failure
                result.errors["fd-unavail"] += 1
                result.failures[STATUS_INSUFFICIENT_RESOURCES] += 1
            workers.append(worker)
        for worker in workers:
            yield from join(worker)
    result.end_ns = max([result.start_ns] + [c.end_ns for c in result.connections])
    return result


# --- the report ------------------------------------------------------------------------------

def _stats(values: list[float]) -> tuple[float, float, float, float, float]:
    """(min, avg, max, median, stddev) — zeros for no values."""
    if not values:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    ordered = sorted(values)
    n = len(ordered)
    avg = sum(ordered) / n
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    stddev = math.sqrt(sum((v - avg) ** 2 for v in ordered) / (n - 1)) if n > 1 else 0.0
    return ordered[0], avg, ordered[-1], median, stddev


def _per_s(count: float, duration_ns: int) -> float:
    return count * NS_PER_S / duration_ns if duration_ns else 0.0


def _reply_rate_samples(result: HttperfResult) -> list[float]:
    samples = []
    t = result.start_ns + SAMPLE_NS
    while t <= result.end_ns:
        n = sum(1 for r in result.replies if t - SAMPLE_NS < r.done_ns <= t)
        samples.append(n * NS_PER_S / SAMPLE_NS)
        t += SAMPLE_NS
    return samples


def report_lines(result: HttperfResult) -> list[str]:
    """httperf's statistics, all from virtual time."""
    c = result.config
    dur = result.duration_ns
    conns = len(result.connections)
    replies = result.replies
    ok_conns = [x for x in result.connections if x.ok]
    conn_ms = [(x.end_ns - x.start_ns) / NS_PER_MS for x in ok_conns]
    cmin, cavg, cmax, cmed, cdev = _stats(conn_ms)
    connect_avg = _stats([x.connect_ns / NS_PER_MS for x in ok_conns])[1]
    conn_rate = _per_s(conns, dur)
    req_rate = _per_s(result.requests, dur)
    samples = _reply_rate_samples(result)
    smin, savg, smax, _, sdev = _stats(samples)
    resp = _stats([r.response_ns / NS_PER_MS for r in replies])[1]
    xfer = _stats([r.transfer_ns / NS_PER_MS for r in replies])[1]
    header = _stats([float(r.header_bytes) for r in replies])[1]
    content = _stats([float(r.content_bytes) for r in replies])[1]
    classes = {k: 0 for k in ("1xx", "2xx", "3xx", "4xx", "5xx")}
    for r in replies:
        key = f"{r.status // 100}xx"
        if key in classes:
            classes[key] += 1
    io_bytes = result.bytes_sent + result.bytes_received
    io_rate = _per_s(io_bytes, dur)
    e = result.errors
    return [
        f"httperf --server {c.host} --port {c.server.port} --uri {c.uri} --rate {c.rate:g} "
        f"--num-conns {c.num_conns} --num-calls {c.num_calls}",
        f"Maximum connect burst length: 1",
        "",
        f"Total: connections {conns} requests {result.requests} replies {len(replies)} "
        f"test-duration {dur / NS_PER_S:.3f} s",
        "",
        f"Connection rate: {conn_rate:.1f} conn/s ({(dur / NS_PER_MS / conns) if conns else 0.0:.1f} ms/conn, "
        f"<={result.max_concurrent} concurrent connections)",
        f"Connection time [ms]: min {cmin:.3f} avg {cavg:.3f} max {cmax:.3f} median {cmed:.3f} stddev {cdev:.3f}",
        f"Connection time [ms]: connect {connect_avg:.3f}",
        f"Connection length [replies/conn]: {(len(replies) / len(ok_conns)) if ok_conns else 0.0:.3f}",
        "",
        f"Request rate: {req_rate:.1f} req/s ({(dur / NS_PER_MS / result.requests) if result.requests else 0.0:.1f}"
        f" ms/req)",
        f"Request size [B]: {(result.request_bytes / result.requests) if result.requests else 0.0:.1f}",
        "",
        f"Reply rate [replies/s]: min {smin:.1f} avg {savg:.1f} max {smax:.1f} stddev {sdev:.1f} "
        f"({len(samples)} samples)",
        f"Reply time [ms]: response {resp:.3f} transfer {xfer:.3f}",
        f"Reply size [B]: header {header:.1f} content {content:.1f} footer 0.0 (total {header + content:.1f})",
        "Reply status: " + " ".join(f"{k}={v}" for k, v in classes.items()),
        "",
        f"Net I/O: {io_rate / 1024:.1f} KB/s ({io_rate * 8 / 1e6:.3f}*10^6 bps)",
        "",
        f"Errors: total {result.total_errors} client-timo {e['client-timo']} socket-timo {e['socket-timo']} "
        f"connrefused {e['connrefused']} connreset {e['connreset']}",
        f"Errors: fd-unavail {e['fd-unavail']} addrunavail {e['addrunavail']} ftab-full {e['ftab-full']} "
        f"other {e['other']}",
    ]
