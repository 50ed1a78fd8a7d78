"""Traffic from the `client` host: `!echo`, `!http`, `!ping`, `!httperf`.

Each command starts a user-mode program on `client` (a thread of that host,
running the socket API over AFD and tcpip) and returns at once: the machine
is not running, so the program runs when the session continues (`g`, `p`,
`t`), and its output appears in the run's output when it finishes — so
breakpoints set before can stop anywhere along the program's path.  With `/w`
the command runs the machine itself until the program finishes (or a
breakpoint, bug check or the time limit stops it), which is what scripts
that only want the result use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any, Callable, Generator

from stack.kernel import KEVENT, KeSetEvent, KeWaitForSingleObject, NotificationEvent, current_kernel
from stack.kernel.ntstatus import STATUS_CONNECTION_REFUSED, status_name
from stack.tcpip.addr import AF_INET, AF_INET6, SockAddr
from stack.usermode.httperf import HttperfConfig, HttperfError, httperf, report_lines
from stack.usermode.socket import SOCK_STREAM, Socket, SocketError, UserBuffer, run_program
from stack.usermode.webserver import HttpClientError, http_fetch, http_raw

from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command, tokenize
from wskdbg.render.net import ms

if TYPE_CHECKING:
    from wskdbg.engine import Engine

CLIENT_HOST = "client"
SERVER_HOST = "winsrv"
ECHO_PORT = 40007
HTTP_PORT = 80
WAIT_SLICE_NS = 1_000_000  # /w runs the machine in slices of this much virtual time
WAIT_LIMIT_NS = 600 * 1_000_000_000  # and gives up after this much
BODY_PREVIEW = 256
DEFAULT_ECHO_TEXT = "hello from client"
JOBS_STATE = "traffic.jobs"


# --- parsing ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class Args:
    wait: bool = False
    ipv6: bool = False
    options: dict[str, tuple[str, int]] = field(default_factory=dict)
    words: list[tuple[str, int]] = field(default_factory=list)


def parse_args(inv: Invocation, valued: tuple[str, ...], max_words: int) -> Args:
    """`/w`, `-6`, `-opt value` / `--opt value` and up to `max_words` plain words."""
    out = Args()
    tokens = tokenize(inv.args)
    i = 0
    while i < len(tokens):
        word, at = tokens[i]
        low = word.lower()
        if low == "/w":
            out.wait = True
        elif low == "-6":
            out.ipv6 = True
        elif low == "-4":
            out.ipv6 = False
        elif low.startswith("-") and len(low) > 1 and inv.args[at] != '"':
            name = low.lstrip("-")
            if name not in valued:
                raise inv.error(f"Unknown option '{word}' (see: help {inv.spec.name})", at)
            if i + 1 >= len(tokens):
                raise inv.error(f"{word} needs a value", at + len(word))
            out.options[name] = tokens[i + 1]
            i += 1
        else:
            if len(out.words) >= max_words:
                raise inv.syntax_error(at)
            out.words.append((word, at))
        i += 1
    return out


def int_option(dbg: "Engine", inv: Invocation, args: Args, name: str, default: int, low: int, high: int) -> int:
    if name not in args.options:
        return default
    text, at = args.options[name]
    # counts and sizes are decimal, as ping.exe and httperf take them; anything else is an expression
    value = int(text) if text.isdigit() else dbg.evaluate(text, inv.args_offset + at)
    if not low <= value <= high:
        raise inv.error(f"{name} must be between {low} and {high}", at)
    return value


def world_host(dbg: "Engine", name: str, inv: Invocation | None = None, at: int = 0) -> Any:
    hosts = getattr(dbg.world, "hosts", None)
    if not isinstance(hosts, dict):
        raise CommandError("this machine is not a lab world (no hosts)")
    for key, host in hosts.items():
        if key.lower() == name.lower():
            return host
    message = f"no host named '{name}' in the lab (hosts: {', '.join(hosts)})"
    raise inv.error(message, at) if inv is not None else CommandError(message)


def server_address(dbg: "Engine", name: str, port: int, ipv6: bool, inv: Invocation | None = None,
                   at: int = 0) -> SockAddr:
    """A host name of the lab or a literal address, with a port."""
    try:
        literal = ip_address(name.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        return SockAddr(literal, port)
    host = world_host(dbg, name, inv, at)
    address = host.address6 if ipv6 else host.address4
    if address is None:
        raise CommandError(f"{host.name} has no IPv{6 if ipv6 else 4} address")
    return SockAddr(address, port)


# --- running a program -----------------------------------------------------------------------------------

@dataclass
class TrafficJob:
    name: str
    program: Any
    lines: list[str] = field(default_factory=list)
    finished: bool = False


def start_job(dbg: "Engine", name: str, body: Callable[[], Generator[Any, Any, Any]],
              report: Callable[[Any], list[str]], failure: Callable[[BaseException], list[str]]) -> TrafficJob:
    """Start `body` as a program on the client host; its report is emitted when it finishes."""
    if dbg.scheduler.halted is not None:
        raise CommandError("the machine has bug-checked; .reboot first")
    kernel = dbg.kernel_of(world_host(dbg, CLIENT_HOST).name)
    job = TrafficJob(name, None)

    def program() -> Generator[Any, Any, Any]:
        try:
            result = yield from body()
            job.lines = report(result)
        except (SocketError, HttpClientError, HttperfError, ConnectionError, ValueError) as exc:
            job.lines = failure(exc)
        job.finished = True
        dbg.emit("\n".join(job.lines))  # the program's console output, in the run's output
        return None

    program.__name__ = name
    job.program = run_program(kernel, program, name=name)
    dbg.state.setdefault(JOBS_STATE, []).append(job)
    return job


def finish(dbg: "Engine", inv: Invocation, job: TrafficJob, args: Args, started: str) -> CommandResult:
    """Return at once (the program runs with the machine) or, with /w, run until it is done."""
    data = {"job": job.name, "thread": getattr(job.program.thread, "address", 0)}
    if not args.wait:
        return CommandResult(f"{started}\n{job.name} runs on {CLIENT_HOST} when the machine runs (g); "
                             "its output follows when it finishes.", data)
    if dbg.in_bp_command:
        raise inv.error("/w cannot run the machine from a breakpoint command", 0)
    lines = [started] + run_until_done(dbg, job)
    data.update(finished=job.finished, output=job.lines)
    return CommandResult("\n".join(lines), data)


def run_until_done(dbg: "Engine", job: TrafficJob) -> list[str]:
    """Run the machine in short slices of virtual time until the job's program has finished."""
    from wskdbg.commands.execution import render_stop

    lines: list[str] = []
    sched = dbg.scheduler
    limit = sched.now_ns + WAIT_LIMIT_NS
    while not job.program.done:
        if sched.halted is not None:
            break
        nxt = sched.peek_time()
        if nxt is None:
            lines.append(f"The machine went idle before {job.name} finished.")
            break
        if nxt > limit:
            lines.append(f"{job.name} did not finish within {WAIT_LIMIT_NS // 1_000_000_000} s of virtual time; "
                         "g continues it.")
            break
        stop = dbg.resume(dbg.make_request("g", deadline_ns=max(sched.now_ns, nxt) + WAIT_SLICE_NS))
        lines += dbg.take_run_output()
        if stop.reason in ("timecap", "idle"):
            continue
        lines += render_stop(dbg, stop)
        if stop.breakpoint is not None and stop.breakpoint.one_shot:
            dbg.breakpoints.remove([stop.breakpoint.id])
        if not job.program.done:
            lines.append(f"({job.name} is still running; g continues it)")
        break
    return lines


def _now() -> int:
    return current_kernel().now_ns


# --- !echo ----------------------------------------------------------------------------------------------

@dataclass
class EchoResult:
    local: str = ""
    remote: str = ""
    connect_ns: int = 0
    exchanges: list[tuple[int, int, bool, int]] = field(default_factory=list)  # sent, echoed, intact, rtt
    total_ns: int = 0
    sample: bytes = b""


def echo_program(server: SockAddr, message: bytes, count: int) -> Generator[Any, Any, EchoResult]:
    result = EchoResult(remote=str(server), sample=message)
    start = _now()
    sock = yield from Socket.create(AF_INET6 if server.ip.version == 6 else AF_INET, SOCK_STREAM)
    buf = UserBuffer(max(len(message), 1))
    try:
        yield from sock.connect(server)
        result.connect_ns = _now() - start
        info = yield from sock.info()
        result.local = str(info.get("local") or "")
        for _ in range(count):
            sent_at = _now()
            yield from sock.send(message)
            echoed = bytearray()
            while len(echoed) < len(message):
                n = yield from sock.recv_into(buf, len(message) - len(echoed))
                if n == 0:
                    break
                echoed += buf.read(n)
            result.exchanges.append((len(message), len(echoed), bytes(echoed) == message, _now() - sent_at))
            if len(echoed) < len(message):
                break
        yield from sock.shutdown()
    finally:
        yield from sock.close()
        buf.free()
    result.total_ns = _now() - start
    return result


def echo_report(r: EchoResult) -> list[str]:
    preview = r.sample[:40].decode("latin-1")
    if len(r.sample) > 40:
        preview += "..."
    lines = [f"echo {r.local} -> {r.remote}: connected in {ms(r.connect_ns)}"]
    for i, (sent, echoed, intact, rtt) in enumerate(r.exchanges, 1):
        lines.append(f"  #{i}  {sent} bytes sent, {echoed} echoed {'intact' if intact else 'CORRUPTED'} "
                     f"in {ms(rtt)}  \"{preview}\"")
    good = all(intact and sent == echoed for sent, echoed, intact, _ in r.exchanges)
    n = len(r.exchanges)
    lines.append(f"echo: {n} exchange{'s' if n != 1 else ''}, {'all echoed intact' if good else 'ECHO MISMATCH'}; "
                 f"closed after {ms(r.total_ns)}")
    return lines


def socket_failure(what: str, hint: str) -> Callable[[BaseException], list[str]]:
    def failure(exc: BaseException) -> list[str]:
        if isinstance(exc, SocketError):
            refused = exc.status == STATUS_CONNECTION_REFUSED  # nobody listens: the server is not running
            return [f"{what}: {exc.call} failed: {status_name(exc.status)} (0x{exc.status & 0xFFFFFFFF:08x})"
                    f"{hint if refused else ''}"]
        return [f"{what}: failed: {exc}"]
    return failure


@command("!echo", area="services", syntax='!echo [/w] [-6] [-n Count] [-s Size] ["Text"]', mutates=True,
         summary="Echo exchange from client with echosrv on winsrv:40007",
         help="""
Starts a user-mode program on `client` that connects to echosrv (winsrv port 40007; -6 uses
fd00::1), sends the text (default "hello from client"; -s Size repeats it to Size bytes),
reads the echo back, -n times (default 1), then closes.  The program runs when the machine runs:
set breakpoints first (e.g. `bp /h winsrv echosrv!WskSampleReceiveIrpCompletionRoutine`) and `g`.
With /w the command runs the machine until the program is done and prints the result: each
exchange's size and round-trip time in virtual time, and whether the echo was intact.
echosrv must be running on winsrv (it is in the standard lab).  Count and Size are decimal whatever
`n` says, as a Windows tool's switches read (0x... or another expression evaluates in the radix).""")
def cmd_echo(dbg: "Engine", inv: Invocation) -> CommandResult:
    args = parse_args(inv, ("n", "s"), 1)
    count = int_option(dbg, inv, args, "n", 1, 1, 1000)
    text = args.words[0][0] if args.words else DEFAULT_ECHO_TEXT
    size = int_option(dbg, inv, args, "s", len(text.encode("latin-1", "replace")), 1, 1 << 20)
    base = text.encode("latin-1", "replace") or b"x"
    message = (base * (size // len(base) + 1))[:size]
    server = server_address(dbg, SERVER_HOST, ECHO_PORT, args.ipv6)
    job = start_job(dbg, "echo", lambda: echo_program(server, message, count), echo_report,
                    socket_failure("echo", " - is echosrv running on winsrv? (sc query echosrv; to start it: "
                                           "sc start echosrv; g)"))
    started = f"echo: {count} x {len(message)} bytes to {server} from {CLIENT_HOST}"
    return finish(dbg, inv, job, args, started)


# --- !http ------------------------------------------------------------------------------------------------

def http_report(method: str, target: str, server: SockAddr, elapsed: list[int]) -> Callable[[Any], list[str]]:
    def report(resp: Any) -> list[str]:
        head = resp.raw_head.decode("latin-1").rstrip("\r\n").split("\r\n")
        lines = [f"http: {method} {target} from {server}: {resp.status} {resp.reason}, "
                 f"{len(resp.body)} body bytes in {ms(elapsed[0])}"] + head
        if resp.body:
            preview = resp.body[:BODY_PREVIEW]
            lines.append("")
            text = preview.decode("utf-8", "replace")
            lines += [line.rstrip() for line in text.splitlines()]
            if len(resp.body) > BODY_PREVIEW:
                lines.append(f"... ({len(resp.body) - BODY_PREVIEW} more bytes)")
        return lines
    return report


@command("!http", area="services", syntax='!http [/w] [-6] [GET|HEAD] /Path | !http [/w] [-6] -raw "Request"',
         mutates=True, summary="HTTP request from client to khttpd on winsrv:80",
         help="""
Starts a user-mode HTTP client on `client` that sends `GET /Path` (or HEAD) to khttpd on winsrv
port 80 (-6: fd00::1) with Connection: close, and prints the status line, the headers and the
first 256 bytes of the body, with the time the exchange took in virtual time.  Runs when the
machine runs (g); /w runs it to completion now.  khttpd must be running (it is in the standard lab).
-raw sends the quoted bytes exactly as written, the way `printf '...' | nc winsrv 80` would, and
prints the one response and whether the server then closed the connection: the request line,
headers and body are yours, so malformed requests reach khttpd's parser as they are.  Escapes:
\\r \\n \\t \\\\ \\" and \\xHH; any other character must be Latin-1.
  !http /w -raw "GET / HTTP/1.1\\r\\nHost: winsrv\\r\\nTransfer-Encoding: chunked\\r\\nContent-Length: 5\\r\\n\\r\\n\"""")
def cmd_http(dbg: "Engine", inv: Invocation) -> CommandResult:
    args = parse_args(inv, ("raw",), 2)
    if "raw" in args.options:
        return _http_raw(dbg, inv, args)
    words = [w for w, _ in args.words]
    method = "GET"
    if words and words[0].upper() in ("GET", "HEAD"):
        method = words.pop(0).upper()
    if len(words) != 1:
        raise inv.error("give one path, e.g. !http /index.html", len(inv.args))
    target = words[0]
    if not target.startswith("/"):
        raise inv.error("the path must start with /", args.words[-1][1])
    server = server_address(dbg, SERVER_HOST, HTTP_PORT, args.ipv6)
    elapsed = [0]

    def body() -> Generator[Any, Any, Any]:
        start = _now()
        resp = yield from http_fetch(server, method, target)
        elapsed[0] = _now() - start
        return resp

    job = start_job(dbg, "http", body, http_report(method, target, server, elapsed),
                    socket_failure("http", KHTTPD_HINT))
    return finish(dbg, inv, job, args, f"http: {method} {target} to {server} from {CLIENT_HOST}")


KHTTPD_HINT = " - is khttpd running on winsrv? (sc query khttpd; to start it: sc start kfs; sc start khttpd; g)"
_ESCAPES = {"r": 0x0D, "n": 0x0A, "t": 0x09, "\\": 0x5C, '"': 0x22}


def unescape_request(text: str) -> bytes:
    """The bytes a -raw request stands for: C escapes (\\r \\n \\t \\\\ \\" \\xHH), Latin-1 otherwise.
    ValueError names what is wrong and where."""
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            if ord(ch) > 0xFF:
                raise ValueError(f"character {ch!r} at {i} is not Latin-1 (write it as \\xHH bytes)")
            out.append(ord(ch))
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("a lone \\ at the end (write \\\\ for a backslash)")
        code = text[i + 1]
        if code == "x":
            digits = text[i + 2:i + 4]
            if len(digits) != 2 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"\\x at {i} needs two hex digits")
            out.append(int(digits, 16))
            i += 4
        elif code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        else:
            raise ValueError(f"unknown escape \\{code} at {i} (\\r \\n \\t \\\\ \\\" \\xHH)")
    return bytes(out)


def raw_report(size: int, server: SockAddr, elapsed: list[int]) -> Callable[[Any], list[str]]:
    base = http_report("raw", f"request ({size} bytes)", server, elapsed)

    def report(result: Any) -> list[str]:
        response, closed = result
        lines = base(response)
        lines.insert(1, "khttpd closed the connection after the response" if closed
                     else "the connection stayed open after the response")
        return lines
    return report


def _http_raw(dbg: "Engine", inv: Invocation, args: Args) -> CommandResult:
    text, at = args.options["raw"]
    if args.words:
        raise inv.error("-raw sends the whole request: give no method or path beside it", args.words[0][1])
    try:
        data = unescape_request(text)
    except ValueError as exc:
        raise inv.error(f"-raw: {exc}", at) from None
    if not data:
        raise inv.error("-raw needs the request's bytes in quotes", at)
    server = server_address(dbg, SERVER_HOST, HTTP_PORT, args.ipv6)
    elapsed = [0]

    def body() -> Generator[Any, Any, Any]:
        start = _now()
        result = yield from http_raw(server, data)
        elapsed[0] = _now() - start
        return result

    job = start_job(dbg, "http", body, raw_report(len(data), server, elapsed), socket_failure("http", KHTTPD_HINT))
    return finish(dbg, inv, job, args, f"http: raw request ({len(data)} bytes) to {server} from {CLIENT_HOST}")


# --- !ping ------------------------------------------------------------------------------------------------

def ping_program(destination: Any, count: int, size: int) -> Generator[Any, Any, Any]:
    transport = current_kernel().extensions["tcpip"].transport
    done = KEVENT(NotificationEvent, False)
    session = transport.ping(destination, count, size, completion=lambda s: KeSetEvent(done, 0, False))
    if not session.done:
        yield KeWaitForSingleObject(done)
    return session


def ping_report(session: Any) -> list[str]:
    dest = str(session.destination)
    lines = [f"Pinging {dest} with {session.payload_size} bytes of data:"]
    for rtt in session.rtts_ns:
        lines.append("Request timed out." if rtt is None else
                     f"Reply from {dest}: bytes={session.payload_size} time={ms(rtt)}")
    sent, received = session.sent, session.received
    loss = (sent - received) * 100 // sent if sent else 0
    lines += ["", f"Ping statistics for {dest}:",
              f"    Packets: Sent = {sent}, Received = {received}, Lost = {sent - received} ({loss}% loss),"]
    rtts = [r for r in session.rtts_ns if r is not None]
    if rtts:
        lines += ["Approximate round trip times in milli-seconds:",
                  f"    Minimum = {ms(min(rtts))}, Maximum = {ms(max(rtts))}, Average = {ms(sum(rtts) // len(rtts))}"]
    return lines


@command("!ping", area="services", syntax="!ping [/w] [-6] [-n Count] [-l Size] Host", mutates=True,
         summary="ICMP echo (ping) from client to a host of the lab",
         help="""
`!ping winsrv` sends 4 echo requests (one per virtual second) from `client` over ICMP (-6: ICMPv6
to the host's IPv6 address; a literal address works too) and prints ping.exe's report with
round-trip times in virtual milliseconds.  -n sets the count, -l the payload size (0 to 65500, as
ping.exe; data bigger than the link's MTU goes as IP fragments).  Count and Size are decimal whatever
`n` says, as ping.exe reads them (0x... or another expression evaluates in the radix).  Runs when the
machine runs (g); /w runs it to completion now.""")
def cmd_ping(dbg: "Engine", inv: Invocation) -> CommandResult:
    args = parse_args(inv, ("n", "l"), 1)
    if not args.words:
        raise inv.error("say which host to ping, e.g. !ping winsrv", 0)
    count = int_option(dbg, inv, args, "n", 4, 1, 1000)
    size = int_option(dbg, inv, args, "l", 32, 0, 65500)  # ping.exe's range; IP fragments what the link cannot carry
    destination = server_address(dbg, args.words[0][0], 0, args.ipv6, inv, args.words[0][1]).ip
    job = start_job(dbg, "ping", lambda: ping_program(destination, count, size), ping_report,
                    socket_failure("ping", ""))
    return finish(dbg, inv, job, args, f"ping: {count} echo requests to {destination} from {CLIENT_HOST}")


# --- !httperf ---------------------------------------------------------------------------------------------

@command("!httperf", area="services",
         syntax="!httperf [/w] [-6] --server Host --uri /Path [--num-conns N] [--rate R] [--num-calls C] "
                "[--port P] [--method GET|HEAD]", mutates=True,
         summary="httperf-like load generator from client, statistics in virtual time",
         help="""
Starts httperf on `client`: --num-conns connections (default 1) opened at --rate per second
(0, the default: one after another), each sending --num-calls requests (default 1) for --uri to
--server (a lab host; port 80 unless --port) on one keep-alive connection.  When it finishes it
prints httperf's report — Total, Connection rate/time/length, Request rate/size, Reply rate
(sampled every 5 s), Reply time, Reply size, Reply status (1xx..5xx), Net I/O and Errors — all
measured on the virtual clock.  Runs when the machine runs (g); /w runs it to completion now.""")
def cmd_httperf(dbg: "Engine", inv: Invocation) -> CommandResult:
    args = parse_args(inv, ("server", "uri", "num-conns", "rate", "num-calls", "port", "method"), 0)
    if "server" not in args.options:
        raise inv.error("--server is required, e.g. --server winsrv", 0)
    server_name, server_at = args.options["server"]
    port = int_option(dbg, inv, args, "port", HTTP_PORT, 1, 65535)
    num_conns = int_option(dbg, inv, args, "num-conns", 1, 1, 100_000)
    num_calls = int_option(dbg, inv, args, "num-calls", 1, 1, 10_000)
    rate = 0.0
    if "rate" in args.options:
        text, at = args.options["rate"]
        try:
            rate = float(text)
        except ValueError:
            raise inv.error(f"'{text}' is not a rate (connections per second)", at) from None
        if not math.isfinite(rate) or rate < 0:
            raise inv.error("--rate must be a number >= 0", at)
    uri, uri_at = args.options.get("uri", ("/", 0))
    method = args.options.get("method", ("GET", 0))[0].upper()
    server = server_address(dbg, server_name, port, args.ipv6, inv, server_at)
    config = HttperfConfig(server, uri=uri, host=server_name, num_conns=num_conns, rate=rate, num_calls=num_calls,
                           method=method)
    try:
        config.validate()
    except HttperfError as exc:
        raise inv.error(str(exc), uri_at) from None
    job = start_job(dbg, "httperf", lambda: httperf(config), report_lines, socket_failure("httperf", ""))
    return finish(dbg, inv, job, args,
                  f"httperf: {num_conns} connections x {num_calls} calls to {server}{uri} at "
                  f"{'max' if rate == 0 else f'{rate:g}/s'} from {CLIENT_HOST}")
