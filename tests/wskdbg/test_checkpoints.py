"""Time travel with checkpoints: a machine server whose trips back replay from the nearest fork.

Every test closes its proxy; `close()` returns only when no server, checkpoint or runner is left.
Work is measured in replayed hand-offs (the engine's counter), never in wall time.
"""

from __future__ import annotations

import pytest
from lab_template import standard_engine

from wskdbg.checkpoints import SUPPORTED, CheckpointRecord, Checkpointer, process_alive
from wskdbg.engine import Engine
from wskdbg.machine_server import MachineProxy, open_engine
from wskdbg.timetravel import ReplayProgress, Target

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="checkpoints need fork() (POSIX)")

ECHO = '!echo -n 60 -s 100 "hi"'  # about 8,000 hand-offs of echo traffic when the machine runs
# A session that goes back and forth in every way, then looks at the machine each time.
SCRIPT = [ECHO, "bp echosrv!WskSampleOpFree", "g", "g", "g", "k", "t- 5", "k", "!irpfind", "r", "!netstat",
          ".position", "g-", "k", "p-", "r", "!tt 30", "k", "!irpfind", "!netstat", "bc *", "g", "t-", "p- 3",
          "!tt 1F:0", "t", "p", "!tt 100", "kb", "!tt", "t- 2; k; !irpfind"]


def lab() -> Engine:
    return Engine(seed=1)


@pytest.fixture
def proxies():
    made: list[MachineProxy] = []

    def make(**kwargs) -> MachineProxy:
        made.append(MachineProxy(standard_engine(1), **kwargs))  # lab(), built once in this process
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def transcript(engine, lines: list[str]) -> list[str]:
    return [f"{line}\n{engine.execute(line).text}" for line in lines]


def test_going_back_with_checkpoints_lands_on_exactly_the_state_of_full_re_execution(proxies):
    plain = lab()
    try:
        expected = transcript(plain, SCRIPT)
    finally:
        plain.close()
    proxy = proxies(every=1500, cap=4)
    got = transcript(proxy, SCRIPT)
    assert len(proxy.checkpoint_positions) > 1  # the trips really started from checkpoints
    for want, have in zip(expected, got):
        assert have == want


def test_t_back_after_many_hand_offs_replays_only_from_the_nearest_checkpoint(proxies):
    proxy = proxies(every=2000, cap=6)
    proxy.execute(ECHO)
    proxy.execute("g")
    end = proxy.position().seq
    assert end > 6000
    before = proxy.replayed_handoffs
    result = proxy.execute("t-")
    assert not result.error and "Time Travel Position" in result.text
    nearest = max(seq for _, seq in proxy.checkpoint_positions if seq < end)
    replayed = proxy.replayed_handoffs - before
    assert end - nearest <= 2000 + 200  # the newest checkpoint is at most `every` (and one event) back
    assert replayed <= end - nearest  # only the stretch after it was replayed ...
    plain = lab()
    try:
        plain.execute(ECHO)
        plain.execute("g")
        plain.execute("t-")
        assert plain.replayed_handoffs >= end - 1  # ... where re-execution replays the whole trace
    finally:
        plain.close()


def test_checkpoints_beyond_the_cap_are_evicted_and_their_processes_killed(proxies):
    proxy = proxies(every=500, cap=3)
    proxy.execute(ECHO)
    proxy.execute("g")
    live = proxy.checkpoint_pids
    assert len(live) == 3
    evicted = proxy.evicted_pids
    assert len(evicted) >= 10  # one every 500 hand-offs were taken
    assert not [pid for pid in evicted if process_alive(pid)]
    positions = [seq for _, seq in proxy.checkpoint_positions]
    assert positions[0] == 0  # the start of the trace is never evicted, the newest is recent
    assert proxy.position().seq - positions[-1] <= 500 + 200


def test_no_child_process_survives_closing_the_engine():
    proxy = MachineProxy(standard_engine(1), every=1000, cap=4)
    try:
        proxy.execute(ECHO)
        proxy.execute("g")
        proxy.execute("t-")
        proxy.execute("p-")
        pids = set(proxy.known_pids) | set(proxy.checkpoint_pids)
        assert len(pids) >= 4 and all(process_alive(pid) for pid in proxy.checkpoint_pids)
    finally:
        proxy.close()
    assert [pid for pid in pids if process_alive(pid)] == []


def test_a_new_input_in_the_past_kills_the_checkpoints_of_the_old_future(proxies):
    proxy = proxies(every=1000, cap=8)
    proxy.execute(ECHO)
    proxy.execute("g")
    proxy.execute("!tt 40")
    here = proxy.position().seq
    later = [seq for _, seq in proxy.checkpoint_positions if seq > here]
    assert later
    result = proxy.execute('!echo -n 1 "new"')
    assert "rewrites history" in result.text
    assert all(seq < here for _, seq in proxy.checkpoint_positions)


def test_checkpoints_list_shows_the_start_and_marks_the_one_a_trip_back_uses(proxies):
    proxy = proxies(every=2000, cap=4)
    proxy.execute(ECHO)
    proxy.execute("g")
    text = proxy.execute(".checkpoints").text
    assert text.startswith("Checkpoints: 4 (at most 4; one every 2,000 hand-offs")
    assert "(start of the trace)" in text and text.count("\n >") == 1
    assert "A t- from here" in text


def test_the_in_process_engine_says_it_has_no_checkpoints():
    engine = open_engine(lab, checkpoints=False)
    try:
        assert isinstance(engine, Engine)
        assert engine.execute(".checkpoints").text.startswith("No checkpoints")
    finally:
        engine.close()


def test_the_same_session_twice_gives_the_same_transcript(proxies):
    first = transcript(proxies(every=1500, cap=4), SCRIPT[:16])
    assert transcript(proxies(every=1500, cap=4), SCRIPT[:16]) == first


def test_replay_progress_shows_after_half_a_second_then_at_most_four_times_a_second():
    shown: list[str] = []
    progress = ReplayProgress(shown.append, (10, 100), Target(1100, None, 1100, 50))
    now = [progress.began]
    progress._clock = lambda: now[0]
    progress.tick(300, 20)
    assert shown == []  # under half a second: nothing
    now[0] += 0.6
    progress.tick(600, 30)
    now[0] += 0.1
    progress.tick(700, 31)
    assert shown == ["Replaying 50% (1E:258, going to hand-off 44C)"]


def test_t_back_inside_a_script_travels_in_process_and_lands_where_re_execution_does(proxies, tmp_path):
    script = tmp_path / "back.wds"
    script.write_text("t- 3\nk\n!irpfind\n", encoding="utf-8")
    lines = [ECHO, "g", f"$$<{script}", ".position", "t-", "r"]
    plain = lab()
    try:
        expected = transcript(plain, lines)
    finally:
        plain.close()
    assert transcript(proxies(every=1500, cap=4), lines) == expected


def test_going_forward_after_a_trip_back_starts_from_a_checkpoint_of_the_recorded_future(proxies):
    proxy = proxies(every=1000, cap=12)
    proxy.execute(ECHO)
    proxy.execute("g")
    end = proxy.position()
    proxy.execute("!tt 0")
    before = proxy.replayed_handoffs
    text = proxy.execute("!tt 100").text
    assert "Time Travel Position" in text and proxy.position() == end
    assert proxy.replayed_handoffs - before <= 1000 + 200  # from the newest checkpoint, not from the start


def test_a_break_in_stops_a_run_in_the_machine_server(proxies):
    import threading
    proxy = proxies(every=5000, cap=4)
    proxy.execute("!httperf --server winsrv --uri /index.html --num-conns 0n2000")
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", proxy.execute("g")))
    worker.start()
    while worker.is_alive():  # Ctrl+C until the run has stopped (the signal may come before the run starts)
        proxy.break_in()
        worker.join(0.05)
    assert "Break instruction exception" in box["r"].text
    assert proxy.position().seq < 1_000_000  # it stopped long before 2,000 connections were done


def test_p_back_and_g_back_scan_and_replay_only_after_the_nearest_checkpoint(proxies):
    proxy = proxies(every=2000, cap=6)
    # 40 GETs: about 24,000 hand-offs, more than ten checkpoint intervals (the assertion at the end)
    proxy.execute("!httperf --server winsrv --uri /index.html --num-conns 0n40")
    proxy.execute("g")
    proxy.execute("t-")  # stopped inside an event, so p- has a context
    here = proxy.position().seq
    nearest = max(seq for _, seq in proxy.checkpoint_positions if seq < here)
    before = proxy.replayed_handoffs
    assert "Time Travel Position" in proxy.execute("p-").text
    assert proxy.replayed_handoffs - before <= 2 * (here - nearest)  # one scan, one trip, both from there
    proxy.execute("bp khttpd!KhttpdSendComplete")
    before = proxy.replayed_handoffs
    assert "Breakpoint 0 hit" in proxy.execute("g-").text
    # g- scans back checkpoint by checkpoint until the segment holding the last hit, then one trip
    # from that checkpoint: bounded by the checkpoint before the hit (which depends on where the
    # last request's hand-offs fall on the checkpoint grid), never by the start of the trace.
    hit = proxy.position().seq
    hit_checkpoint = max(seq for _, seq in proxy.checkpoint_positions if seq <= hit)
    assert hit_checkpoint > 0  # a checkpoint after the start of the trace
    assert proxy.replayed_handoffs - before <= 2 * (here - hit_checkpoint)
    assert here > 10 * (here - nearest)  # re-execution would have replayed ten times as much, twice


class _PolicyOnly(Checkpointer):
    """The eviction policy alone: records without processes (nothing to kill)."""

    def _kill(self, rec: CheckpointRecord) -> None:
        self.evicted.append(rec.pid)


def _kept_after(run: int, every: int = 10_000, cap: int = 12) -> list[int]:
    cps = _PolicyOnly("/nonexistent", -1, lambda message: None, every=every, cap=cap)
    cps.records.append(CheckpointRecord(0, 0, "", 0, 0, 0, start=True))
    for seq in range(every, run + 1, every):
        cps.records.append(CheckpointRecord(seq, seq, "", seq, seq, 0))
        cps._evict(seq)
    return [r.seq for r in cps.records]


@pytest.mark.parametrize("run", [1_000_000, 4_000_000])
def test_old_checkpoints_stay_evenly_spaced_so_a_far_trip_replays_a_bounded_fraction(run: int) -> None:
    kept = _kept_after(run)
    assert len(kept) == 12 and kept[0] == 0 and kept[-1] == run  # the start and the newest stay
    gaps = [b - a for a, b in zip(kept, kept[1:])]
    # `!tt 50` (or any far trip) replays at most a fifth of the trace (a third when every age counted)
    assert max(gaps) <= run // 5
    assert gaps[-1] <= 20_000  # and t-, p-, g- near the present stay short (the newest is at most `every` old)
