"""Part 9: WPP providers, sessions, the bounded ring, the prefix and the format specifiers."""

from __future__ import annotations

import pytest
from kernel_harness import new_machine, record_events, run

from stack.kernel import (NS_PER_MS, STATUS_PENDING, TRACE_LEVEL_ERROR, TRACE_LEVEL_INFORMATION,
                          TRACE_LEVEL_VERBOSE, WPP_CLEANUP, WPP_DEFINE_CONTROL_GUID, WPP_INIT_TRACING, DoTraceMessage,
                          PsCreateSystemThread, TraceEvents, kroutine)
from stack.kernel import wpp
from stack.kernel.events import WppMessage
from stack.kernel.wpp import WppError, canonical_guid, format_message

GUID = "{D0A4B2C6-1E3F-4A5B-8C7D-9E0F1A2B3C4D}"


def _provider():
    return WPP_DEFINE_CONTROL_GUID("EchoTrace", GUID, ["TRACE_INIT", "TRACE_IO", "TRACE_ERROR"])


def _setup(**session):
    m = new_machine()
    p = run(m, WPP_INIT_TRACING, _provider())
    s = m.kernel.wpp.start("EchoSession", "EchoTrace", **session) if session else None
    return m, p, s


@kroutine("wpptest")
def EchoRoutine(p, level, flag, fmt, *args):
    TraceEvents(p, level, flag, fmt, *args)


def test_provider_flags_are_bits_in_declaration_order_and_the_guid_is_canonical():
    p = _provider()
    assert p.guid == "d0a4b2c6-1e3f-4a5b-8c7d-9e0f1a2b3c4d"
    assert [p.bit(f) for f in p.flags] == [0x1, 0x2, 0x4]
    with pytest.raises(WppError):
        p.bit("TRACE_NOPE")
    assert canonical_guid("(d0a4b2c6,1e3f,4a5b,8c7d,9e0f1a2b3c4d)") == p.guid
    assert canonical_guid("#" + p.guid.upper()) == p.guid
    with pytest.raises(WppError):
        canonical_guid("not-a-guid")
    with pytest.raises(WppError):
        WPP_DEFINE_CONTROL_GUID("TooMany", GUID, [f"F{i}" for i in range(32)])


def test_messages_reach_a_session_only_for_enabled_flags_and_levels():
    m, p, s = _setup(flags=0x2, level=TRACE_LEVEL_INFORMATION)
    run(m, EchoRoutine, p, TRACE_LEVEL_INFORMATION, "TRACE_IO", "io %d", 1)
    run(m, EchoRoutine, p, TRACE_LEVEL_VERBOSE, "TRACE_IO", "too verbose %d", 2)
    run(m, EchoRoutine, p, TRACE_LEVEL_ERROR, "TRACE_INIT", "flag off %d", 3)
    run(m, EchoRoutine, p, TRACE_LEVEL_ERROR, "TRACE_IO", "error %d", 4)
    texts = [m.kernel.wpp.format_record(r, prefix="") for r in s.buffer]
    assert texts == ["io 1", "error 4"]
    assert [r.function for r in s.buffer] == ["EchoRoutine", "EchoRoutine"]
    assert p.messages == 2


def test_do_trace_message_checks_the_flag_only():
    m, p, s = _setup(flags=0x1, level=TRACE_LEVEL_ERROR)
    run(m, DoTraceMessage, p, "TRACE_INIT", "hello %s", "world")
    run(m, DoTraceMessage, p, "TRACE_IO", "not enabled")
    assert [m.kernel.wpp.format_record(r, prefix="") for r in s.buffer] == ["hello world"]


def test_stopping_a_session_by_name_disables_the_provider():
    m, p, s = _setup(flags=0x7, level=TRACE_LEVEL_VERBOSE)
    assert p.enabled_flags == 0x7
    with pytest.raises(WppError):
        m.kernel.wpp.start("EchoSession", "EchoTrace", 1)
    stopped = m.kernel.wpp.stop("EchoSession")
    assert stopped is s and p.enabled_flags == 0 and p.level == 0
    run(m, EchoRoutine, p, TRACE_LEVEL_ERROR, "TRACE_IO", "after stop")
    assert len(s.buffer) == 0
    with pytest.raises(WppError):
        m.kernel.wpp.stop("EchoSession")


def test_enable_on_a_running_session_changes_flags_and_level():
    m, p, s = _setup(flags=0x1, level=TRACE_LEVEL_ERROR)
    m.kernel.wpp.enable("EchoSession", GUID, 0x2, TRACE_LEVEL_VERBOSE)
    assert (p.enabled_flags, p.level) == (0x2, TRACE_LEVEL_VERBOSE)
    m.kernel.wpp.disable("EchoSession", GUID)
    assert p.enabled_flags == 0


def test_two_sessions_each_get_what_they_asked_for():
    m, p, s = _setup(flags=0x1, level=TRACE_LEVEL_VERBOSE)
    other = m.kernel.wpp.start("Other", GUID, 0x2, TRACE_LEVEL_VERBOSE)
    assert p.enabled_flags == 0x3
    run(m, EchoRoutine, p, TRACE_LEVEL_ERROR, "TRACE_INIT", "init")
    run(m, EchoRoutine, p, TRACE_LEVEL_ERROR, "TRACE_IO", "io")
    assert [r.fmt for r in s.buffer] == ["init"]
    assert [r.fmt for r in other.buffer] == ["io"]


def test_a_session_registered_before_its_provider_enables_it_on_registration():
    m = new_machine()
    s = m.kernel.wpp.start("Early", GUID, 0x4, TRACE_LEVEL_ERROR)
    p = run(m, WPP_INIT_TRACING, _provider())
    assert p.enabled_flags == 0x4
    run(m, EchoRoutine, p, TRACE_LEVEL_ERROR, "TRACE_ERROR", "seen")
    assert len(s.buffer) == 1
    run(m, WPP_CLEANUP, p)
    assert m.kernel.wpp.find_provider("EchoTrace") is None


def test_ring_is_bounded_and_counts_the_events_it_lost():
    m, p, s = _setup(flags=0x2, level=TRACE_LEVEL_VERBOSE, buffer_records=4)

    def burst():
        for i in range(10):
            TraceEvents(p, TRACE_LEVEL_ERROR, "TRACE_IO", "n=%d", i)

    run(m, burst)
    assert s.capacity == 4 and len(s.buffer) == 4
    assert s.events_lost == 6 and s.total == 10
    assert [r.args[0] for r in s.buffer] == [6, 7, 8, 9]


def test_default_prefix_is_cpu_pid_tid_time_and_provider():
    m, p, s = _setup(flags=0x2, level=TRACE_LEVEL_VERBOSE)
    m.scheduler.run_until(1_500 * NS_PER_MS + 250 * NS_PER_MS)

    @kroutine("wpptest")
    def TracingThread(_):
        TraceEvents(p, TRACE_LEVEL_ERROR, "TRACE_IO", "Hello, %d %s", 1, "Hi")
        return
        yield

    t = run(m, PsCreateSystemThread, TracingThread, None)
    m.scheduler.run_until_idle()
    rec = s.buffer[0]
    line = m.kernel.wpp.format_record(rec)
    assert line == f"[0]0004.{t.tid:04X}::01/01/2026-00:00:01.750 [EchoTrace]Hello, 1 Hi"
    dpc_line = run(m, lambda: (TraceEvents(p, TRACE_LEVEL_ERROR, "TRACE_IO", "x"),
                               m.kernel.wpp.format_record(s.buffer[-1])))[1]
    assert dpc_line.startswith("[0]0000.0000::01/01/2026-00:00:01.750 [EchoTrace]")
    custom = m.kernel.wpp.format_record(rec, prefix="%!FUNC!:%!LEVEL!:%!FLAGS!: ")
    assert custom == "TracingThread:ERROR:TRACE_IO: Hello, 1 Hi"


@pytest.mark.parametrize(("fmt", "args", "text"), [
    ("irp %p", (0xFFFFC1_0012345678,), "irp FFFFC10012345678"),
    ("len %Iu", (4096,), "len 4096"),
    ("flags 0x%lx", (0xBEEF,), "flags 0xbeef"),
    ("st %!STATUS!", (STATUS_PENDING,), "st STATUS_PENDING"),
    ("st %!STATUS!", (0xC0DE0001,), "st 0xc0de0001"),
    ("peer %!IPADDR!:%!PORT!", (bytes([192, 168, 1, 20]), 7), "peer 192.168.1.20:7"),
    ("%s=%d%%", ("load", 50), "load=50%"),
    ("%08x|%-4d|%c", (0xAB, 7, 65), "000000ab|7   |A"),
    ("%I64x %hu %lu", (0x1_0000_0000, 65535, 99), "100000000 65535 99"),
    ("missing %d %s", (), "missing 0 (null)"),
])
def test_format_specifiers_render_like_tracefmt(fmt, args, text):
    assert format_message(fmt, args) == text


def test_format_of_an_object_with_an_address_prints_the_address():
    class Obj:
        address = 0xFFFFC10000001000

    assert format_message("%p", (Obj(),)) == "FFFFC10000001000"


def test_a_disabled_flag_never_formats_the_message(monkeypatch):
    m, p, s = _setup()  # provider registered, no session at all

    def boom(*_a):
        raise AssertionError("formatted a disabled message")

    monkeypatch.setattr(wpp, "format_message", boom)
    record_events(m)  # even with a bus subscriber
    run(m, EchoRoutine, p, TRACE_LEVEL_ERROR, "TRACE_IO", "x=%d", 1)
    run(m, DoTraceMessage, p, "TRACE_IO", "y=%d", 2)
    assert p.messages == 0
    m.kernel.wpp.start("S", GUID, 0x1, TRACE_LEVEL_ERROR)  # another flag only
    run(m, EchoRoutine, p, TRACE_LEVEL_ERROR, "TRACE_IO", "x=%d", 1)
    assert m.scheduler.halted is None


def test_an_enabled_message_is_stored_raw_and_formatted_only_when_read(monkeypatch):
    m, p, s = _setup(flags=0x2, level=TRACE_LEVEL_VERBOSE)
    calls: list[str] = []
    real = wpp.format_message
    monkeypatch.setattr(wpp, "format_message", lambda f, a: calls.append(f) or real(f, a))
    run(m, EchoRoutine, p, TRACE_LEVEL_ERROR, "TRACE_IO", "lazy %d", 5)
    assert calls == []  # nobody on the bus: no formatting at log time
    assert m.kernel.wpp.format_record(s.buffer[0], prefix="") == "lazy 5"
    assert calls == ["lazy %d"]


def test_a_delivered_message_is_published_on_the_bus_with_its_text():
    m, p, s = _setup(flags=0x2, level=TRACE_LEVEL_VERBOSE)
    events = record_events(m)
    run(m, EchoRoutine, p, TRACE_LEVEL_ERROR, "TRACE_IO", "bus %!STATUS!", 0)
    msgs = [e for e in events if isinstance(e, WppMessage)]
    assert len(msgs) == 1
    assert (msgs[0].provider, msgs[0].flag, msgs[0].function, msgs[0].text) == \
        ("EchoTrace", "TRACE_IO", "EchoRoutine", "bus STATUS_SUCCESS")


def test_tracing_with_an_unknown_flag_is_a_clear_error():
    p = _provider()
    with pytest.raises(WppError):
        TraceEvents(p, TRACE_LEVEL_ERROR, "TRACE_NOPE", "x")
    with pytest.raises(WppError):
        DoTraceMessage(p, "TRACE_NOPE", "x")


def test_trace_outside_any_kernel_event_is_ignored():
    m, p, s = _setup(flags=0x7, level=TRACE_LEVEL_VERBOSE)
    TraceEvents(p, TRACE_LEVEL_ERROR, "TRACE_IO", "outside")
    DoTraceMessage(p, "TRACE_IO", "outside")
    assert len(s.buffer) == 0


@pytest.mark.parametrize("prefix", [
    "[%9!d!]%8!04X!.%3!04X!::%4!s! [%1!s!]",  # the default
    "%2!s!: %!FUNC!: %8!04x!.%3!04x!: %4!s!:",
    "%!LEVEL! %!FLAGS! %7!d!",
    "50% done ",  # a '%' that starts no field is text
    "",
])
def test_prefix_check_accepts_the_fields_and_names_format_prefix_knows(prefix):
    from stack.kernel.wpp import check_prefix
    check_prefix(prefix)


@pytest.mark.parametrize("prefix, position, message", [
    ("%0!s!", 0, "%0 is not a prefix field: use %1 .. %9"),
    ("ab %10!d!", 3, "%10 is not a prefix field: use %1 .. %9"),
    ("%!FUNC! %!BOGUS!", 8, "unknown prefix name %!BOGUS! (known: %!FUNC!, %!LEVEL!, %!FLAGS!)"),
    ("%2", 0, "%2 needs a format between '!' marks, e.g. %2!s!"),
    ("%3!s", 0, "unterminated %3!...! (the closing '!' is missing)"),
    ("%4!I64x!", 0, "bad format 'I64x' in %4!I64x! (printf style, e.g. s, d, 04x)"),
])
def test_prefix_check_rejects_unknown_fields_and_names_with_where(prefix, position, message):
    from stack.kernel.wpp import WppPrefixError, check_prefix
    with pytest.raises(WppPrefixError) as caught:
        check_prefix(prefix)
    assert str(caught.value) == message and caught.value.position == position
