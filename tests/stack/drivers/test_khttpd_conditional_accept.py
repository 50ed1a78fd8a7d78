"""khttpd with ConditionalAccept=1: SO_CONDITIONAL_ACCEPT on its listening socket, so WskInspectEvent decides
at the SYN, before tcpip answers it - a client over its connection limit gets a RST instead of a SYN-ACK
and a 503, and when every slot is taken the SYN waits unanswered until a connection closes."""

from __future__ import annotations

from stack.drivers.khttpd.driver import khttpd_globals
from stack.tcpip.wire.frame import parse_frame
from stack.tcpip.wire.tcp import ACK, RST, SYN, TcpHeader
from stack.usermode.socket import SocketError, run_program
from stack.usermode.webserver import HttpClient, http_fetch

from khttpd_lab import SERVER4, boot_lab, run_client


def _from_port_80(capture) -> list[tuple[int, int]]:
    """(flags, client port) of every distinct segment khttpd's port sent."""
    seen: dict[tuple[int, int, int], None] = {}
    for record in capture.records:
        tcp = parse_frame(record.frame, verify_checksum=False).transport
        if isinstance(tcp, TcpHeader) and tcp.src_port == 80:
            seen[(tcp.seq, tcp.flags, tcp.dst_port)] = None
    return [(flags, port) for _, flags, port in seen]


def _holder():
    """A client that keeps one keep-alive connection open until told to close it."""
    state: dict = {"close": False}

    def body():
        client = yield from HttpClient.connect(SERVER4)
        state["first"] = yield from client.request("GET", "/index.html")
        while not state["close"]:
            from stack.kernel import KeDelayExecutionThread
            yield KeDelayExecutionThread(0, False, -10 * 10_000)
        yield from client.close()

    return state, body


def test_a_client_over_its_limit_gets_a_reset_at_the_syn_not_a_syn_ack_and_a_503():
    lab = boot_lab(seed=91, parameters={"ConditionalAccept": 1, "MaxConnectionsPerClient": 1})
    g = khttpd_globals(lab.host("winsrv").kernel)
    state, body = _holder()
    holder = run_program(lab.host("client").kernel, body, name="holder")
    lab.run_while(lambda: "first" not in state, max_events=500_000)
    capture = lab.capture()

    def second():
        try:
            yield from http_fetch(SERVER4, "GET", "/index.html")
        except SocketError as err:
            return err.status
        return 0

    status = run_client(lab, second)
    capture.stop()
    assert status != 0  # the connect was refused
    assert [flags for flags, _ in _from_port_80(capture)] == [RST | ACK]
    assert g.stats.inspect_rejected == 1 and g.stats.connections_refused == 0 and g.stats.connections_accepted == 1
    state["close"] = True
    lab.run_while(lambda: not holder.done, max_events=500_000)


def test_when_every_slot_is_taken_the_syn_waits_unanswered_until_a_connection_closes():
    lab = boot_lab(seed=93, parameters={"ConditionalAccept": 1, "MaxConnections": 1})
    g = khttpd_globals(lab.host("winsrv").kernel)
    state, body = _holder()
    holder = run_program(lab.host("client").kernel, body, name="holder")
    lab.run_while(lambda: "first" not in state, max_events=500_000)
    capture = lab.capture()
    waiting = run_program(lab.host("client").kernel, http_fetch, SERVER4, "GET", "/style.css", name="waiting")
    lab.run_for(2_500_000_000)  # 2.5 s: the second SYN (and its retransmission) get no answer
    assert not waiting.done and g.stats.inspect_pended == 1
    assert not [f for f, _ in _from_port_80(capture) if f & SYN]
    state["close"] = True  # the first connection closes: its slot goes to the waiting SYN
    lab.run_while(lambda: not (waiting.done and holder.done), max_events=2_000_000)
    capture.stop()
    waiting.raise_error()
    assert waiting.result.status == 200
    flags = [f for f, _ in _from_port_80(capture)]
    assert flags.count(SYN | ACK) == 1 and not any(f & RST for f in flags)
    assert g.stats.connections_refused == 0 and not g.inspect_waiting and g.inspect_admitting == 0
