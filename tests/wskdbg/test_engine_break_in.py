"""Break-in is never lost: a request is kept until a run consumes it.

The lab's ticker re-arms a timer forever, so `g` with no run cap would run to the event cap;
a lost break-in therefore shows as a stop at the event cap (the tests never hang).  Every
phase of `g; g` is covered: before the machine takes its turn, during the first run,
between the two runs, during the second run.
"""

from __future__ import annotations

import threading

from dbg_harness import factory

from wskdbg.engine import Engine

BREAK_LINE = "Break instruction exception - code 80000003 (first chance)"


def ticker_engine() -> Engine:
    return Engine(factory=factory("ticker"), seed=1, run_cap_ns=1 << 62, event_cap=50_000)


def break_lines(text: str) -> int:
    return text.count(BREAK_LINE)


def test_break_in_before_the_machine_takes_its_turn_stops_the_first_run():
    engine = ticker_engine()
    try:
        engine.break_in()  # Ctrl+C as the command is submitted, before `g` starts the machine
        result = engine.execute("g; g")
        assert break_lines(result.text) == 1
        assert engine.last_stop.reason == "break"
        assert engine.scheduler.events_run < 10  # stopped at once, not at the event cap
    finally:
        engine.close()


def test_break_in_during_the_first_run_stops_it_and_drops_the_second_g():
    engine = ticker_engine()
    seen = [0]

    def on_event(ev) -> None:
        seen[0] += 1
        if seen[0] == 300:
            engine.break_in()

    engine.bus.subscribe(on_event)
    try:
        result = engine.execute("g; g")
        assert break_lines(result.text) == 1
        assert engine.last_stop.reason == "break"
        assert seen[0] < 400  # the second `g` did not run on
    finally:
        engine.close()


def test_break_in_between_the_two_runs_stops_the_second_one_at_once():
    engine = Engine(factory=factory("ticker"), seed=1, run_cap_ns=5_000_000, event_cap=50_000)
    real_execute_one = engine.execute_one
    calls = [0]

    def execute_one(text: str, offset: int = 0):
        result = real_execute_one(text, offset)
        calls[0] += 1
        if calls[0] == 1:  # the first `g` stopped at its run cap: Ctrl+C now
            assert engine.last_stop.reason == "timecap"
            engine.break_in()
        return result

    engine.execute_one = execute_one  # type: ignore[method-assign]
    try:
        engine.execute("g; g")
        assert calls[0] == 2
        assert engine.last_stop.reason == "break"
        stopped_at = engine.scheduler.now_ns
        assert stopped_at <= 5_000_000 + 2_000_000  # the second run stopped at its first hand-off
    finally:
        engine.close()


def test_break_in_during_the_second_run_stops_it():
    engine = Engine(factory=factory("ticker"), seed=1, run_cap_ns=5_000_000, event_cap=50_000)
    seen = [0]
    first_run_events = [0]

    def on_event(ev) -> None:
        seen[0] += 1
        if engine.last_stop.reason == "timecap" and not first_run_events[0]:
            first_run_events[0] = seen[0]
        if first_run_events[0] and seen[0] == first_run_events[0] + 20:
            engine.break_in()

    engine.bus.subscribe(on_event)
    try:
        result = engine.execute("g; g")
        assert first_run_events[0]  # the first run ended at its cap, the second one ran
        assert break_lines(result.text) == 1
        assert engine.last_stop.reason == "break"
    finally:
        engine.close()


def test_break_in_from_another_thread_while_g_runs():
    engine = ticker_engine()
    running = threading.Event()
    engine.bus.subscribe(lambda ev: running.set())
    box = {}
    runner = threading.Thread(target=lambda: box.setdefault("r", engine.execute("g; g")), daemon=True)
    try:
        runner.start()
        assert running.wait(30)
        engine.break_in()
        runner.join(60)
        assert not runner.is_alive()
        assert break_lines(box["r"].text) == 1
        assert engine.last_stop.reason == "break"
    finally:
        engine.close()


def test_a_break_in_no_run_consumed_ends_with_its_command_line():
    engine = ticker_engine()
    try:
        engine.break_in()
        engine.execute("? 1")  # nothing ran: the request ends with this command line
        engine.execute("bp testdrv!TestTickDpc")
        engine.execute("g")
        assert engine.last_stop.reason == "breakpoint"
    finally:
        engine.close()


def test_break_in_through_a_machine_server_returns_once_the_server_holds_the_request():
    # The server hears a break-in as SIGUSR1, whose handler runs on its main thread when that
    # thread next gets the GIL.  A front end that went on as soon as the signal was sent (a
    # test letting a stopped machine thread through after Ctrl+C) could outrun the handler, and
    # a run ending meanwhile never saw the request.  The proxy now waits for the handler.
    import os

    from wskdbg.machine_server import MachineProxy

    held_r, held_w = os.pipe()  # made before the fork: the server writes when its engine holds it

    def make_engine() -> Engine:
        engine = ticker_engine()
        real_break_in = engine.break_in

        def break_in() -> None:
            real_break_in()
            os.write(held_w, b"h")

        engine.break_in = break_in  # type: ignore[method-assign]
        return engine

    proxy = MachineProxy(make_engine)
    try:
        os.set_blocking(held_r, False)
        for _ in range(5):
            proxy.break_in()
            assert os.read(held_r, 16) == b"h"  # already there when break_in returned: no wait here
    finally:
        proxy.close()
        os.close(held_r)
        os.close(held_w)


# --- numbered break-ins through a machine server -------------------------------------------------
# SIGUSR1 carries no data, so the proxy numbers each break-in in a page every machine process
# shares and the server acknowledges by number.  Without the number, a late acknowledgement of a
# break-in that timed out was taken for the next one's, and during a hand-over the old process
# answered (and kept the request) for the runner that took the machine.

def _wait_readable(fd: int) -> None:
    import select
    ready, _, _ = select.select([fd], [], [], 30)  # bounded: a broken server fails the test, never hangs it
    assert ready, "nothing came within 30 s"


def test_a_late_acknowledgement_of_a_timed_out_break_in_is_not_taken_for_the_next_ones(monkeypatch):
    import os

    from wskdbg import machine_server
    from wskdbg.machine_server import MachineProxy

    held_r, held_w = os.pipe()  # the server writes "h" each time its engine holds a break-in
    busy_r, busy_w = os.pipe()  # the server is inside its first break-in (it read that one's number)
    release_r, release_w = os.pipe()  # the test lets the server's first break-in finish

    def make_engine() -> Engine:
        engine = ticker_engine()
        real_break_in = engine.break_in
        calls = [0]

        def break_in() -> None:
            calls[0] += 1
            if calls[0] == 1:  # the server is busy past the front end's wait on its first break-in
                os.write(busy_w, b"b")
                _wait_readable(release_r)
                os.read(release_r, 1)
            real_break_in()
            os.write(held_w, b"h")

        engine.break_in = break_in  # type: ignore[method-assign]
        return engine

    proxy = MachineProxy(make_engine)
    try:
        os.set_blocking(held_r, False)
        monkeypatch.setattr(machine_server, "_BREAK_ACK_MAX_S", 0.0)  # the first break-in times out at once
        assert proxy.break_in() is None
        _wait_readable(busy_r)
        monkeypatch.setattr(machine_server, "_BREAK_ACK_MAX_S", 5.0)
        real_send = proxy._send_break

        def send_after_the_late_acknowledgement(pid: int) -> bool:
            os.write(release_w, b"r")  # the first break-in's handler finishes now ...
            _wait_readable(proxy._acks)  # ... and its acknowledgement waits in the pipe, late
            return real_send(pid)

        proxy._send_break = send_after_the_late_acknowledgement  # type: ignore[method-assign]
        assert proxy.break_in() == (2, proxy.live_pid)  # the second one's own acknowledgement
        assert os.read(held_r, 16) == b"hh"  # and the server held it when break_in returned
    finally:
        proxy.close()
        for fd in (held_r, held_w, busy_r, busy_w, release_r, release_w):
            os.close(fd)


def test_during_a_hand_over_the_runner_takes_the_break_in_not_the_old_process(monkeypatch):
    import os
    import threading

    from wskdbg import machine_server
    from wskdbg.machine_server import MachineProxy

    leaving_r, leaving_w = os.pipe()  # the old process says it is inside its hand-over
    go_r, go_w = os.pipe()  # the test lets it hand over
    real_export = machine_server.export_debugger_state

    def export_while_the_test_breaks_in(engine):  # runs in the old process, after it said it is leaving
        os.write(leaving_w, b"l")
        _wait_readable(go_r)
        return real_export(engine)

    monkeypatch.setattr(machine_server, "export_debugger_state", export_while_the_test_breaks_in)
    proxy = MachineProxy(lambda: Engine(factory=factory("ticker"), seed=1, run_cap_ns=5_000_000, event_cap=50_000),
                         every=200, cap=4)
    box = {}
    try:
        proxy.execute("g")
        old = proxy.live_pid
        trip = threading.Thread(target=lambda: box.setdefault("r", proxy.execute("t-")), daemon=True)
        trip.start()
        _wait_readable(leaving_r)
        real_send = proxy._send_break

        def send_then_let_it_hand_over(pid: int) -> bool:
            sent = real_send(pid)  # to the old process, which is leaving: it must not take or answer
            os.write(go_w, b"g")
            return sent

        proxy._send_break = send_then_let_it_hand_over  # type: ignore[method-assign]
        ack = proxy.break_in()
        trip.join(60)
        assert not trip.is_alive()
        assert ack is not None and ack[0] == 1
        assert ack[1] != old and ack[1] == proxy.live_pid  # the runner answered, having taken it
        assert proxy.live_pid != old  # the trip really was handed over
        # The runner's replay stopped for it, as a Ctrl+C during a trip does in-process.
        assert box["r"].error and "time travel was interrupted" in box["r"].text
    finally:
        proxy.close()
        for fd in (leaving_r, leaving_w, go_r, go_w):
            os.close(fd)


def _break_in_on_a_thread(proxy, bound: float = 30.0):
    """proxy.break_in() on a thread, joined within `bound` s (a spinning one fails, never hangs)."""
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("ack", proxy.break_in()), daemon=True)
    worker.start()
    worker.join(bound)
    return worker, box


def test_break_in_returns_none_at_once_when_every_machine_process_is_gone(monkeypatch):
    # Their ends of the acknowledgement pipe closed, so it reads EOF: select says ready forever and
    # nothing will ever come.  Before, the wait never counted that time and spun at 100% CPU.
    import os
    import signal

    from wskdbg import machine_server
    from wskdbg.machine_server import MachineProxy

    proxy = MachineProxy(ticker_engine)
    try:
        monkeypatch.setattr(machine_server, "_BREAK_ACK_MAX_S", 3600.0)  # only the EOF can end the wait
        proxy.execute("n")  # the status names every machine process (the checkpoint at the start too)
        for pid in proxy.known_pids:
            os.kill(pid, signal.SIGKILL)  # the server stays a zombie (unreaped): kill() still succeeds
        _wait_readable(proxy._acks)  # EOF
        worker, box = _break_in_on_a_thread(proxy)
        assert not worker.is_alive(), "break_in did not return with no machine process left"
        assert box["ack"] is None
    finally:
        proxy.close()  # (a spinning break_in dies here: its select meets the closed pipe)


def test_a_nested_break_in_that_reads_the_outer_ones_acknowledgement_answers_both():
    # A second Ctrl+C whose handler runs inside the first one's wait reads every acknowledgement
    # that has come, the first one's included.  Break-in 2 covers break-in 1, so both return it.
    from wskdbg.machine_server import MachineProxy

    proxy = MachineProxy(ticker_engine)
    try:
        real_send = proxy._send_break
        nested = {}

        def send_then_break_in_again(pid: int) -> bool:
            sent = real_send(pid)
            if not nested:
                nested["started"] = True
                _wait_readable(proxy._acks)  # the first one's acknowledgement has come ...
                nested["ack"] = proxy.break_in()  # ... and the nested call reads it with its own
            return sent

        proxy._send_break = send_then_break_in_again  # type: ignore[method-assign]
        worker, box = _break_in_on_a_thread(proxy)
        assert not worker.is_alive()
        assert nested["ack"] == (2, proxy.live_pid)
        assert box["ack"] == (2, proxy.live_pid)  # not None after the 5 s wait for a record already read
    finally:
        proxy.close()


def test_close_racing_a_break_in_makes_it_return_none_rather_than_raise():
    from wskdbg.machine_server import MachineProxy

    proxy = MachineProxy(ticker_engine)
    real_send = proxy._send_break

    def send_then_close(pid: int) -> bool:
        sent = real_send(pid)
        proxy.close()  # another thread's close(), between the signal and the wait
        return sent

    proxy._send_break = send_then_close  # type: ignore[method-assign]
    try:
        assert proxy.break_in() is None  # not OSError(9) out of select
    finally:
        proxy.close()


def test_a_break_in_whose_signal_misses_a_process_that_handed_over_waits_for_the_runner(monkeypatch):
    # kill() on the live pid can fail because that process has just handed the machine over and
    # exited; it said it was leaving, so the runner takes the request when it takes over.
    import os
    import threading

    from wskdbg import machine_server
    from wskdbg.machine_server import MachineProxy

    leaving_r, leaving_w = os.pipe()
    go_r, go_w = os.pipe()
    real_export = machine_server.export_debugger_state

    def export_while_the_test_breaks_in(engine):
        os.write(leaving_w, b"l")
        _wait_readable(go_r)
        return real_export(engine)

    monkeypatch.setattr(machine_server, "export_debugger_state", export_while_the_test_breaks_in)
    proxy = MachineProxy(lambda: Engine(factory=factory("ticker"), seed=1, run_cap_ns=5_000_000, event_cap=50_000),
                         every=200, cap=4)
    box = {}
    try:
        proxy.execute("g")
        old = proxy.live_pid
        trip = threading.Thread(target=lambda: box.setdefault("r", proxy.execute("t-")), daemon=True)
        trip.start()
        _wait_readable(leaving_r)
        _wait_readable(proxy._acks)  # its "leaving" record has come

        def the_old_process_is_already_gone(pid: int) -> bool:
            os.write(go_w, b"g")  # it hands over ...
            return False  # ... and kill() found it gone

        proxy._send_break = the_old_process_is_already_gone  # type: ignore[method-assign]
        ack = proxy.break_in()
        trip.join(60)
        assert not trip.is_alive()
        assert ack is not None and ack[0] == 1 and ack[1] != old  # the runner answered, having taken it
        assert box["r"].error and "time travel was interrupted" in box["r"].text
    finally:
        proxy.close()
        for fd in (leaving_r, leaving_w, go_r, go_w):
            os.close(fd)
