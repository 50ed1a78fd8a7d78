"""Scheduler.claim_next: an event (with an insertion number reserved earlier) runs inside the running
event, never queued, only when the run loop would have run it next anyway: same order, same clock,
same event count, the loop's condition asked at the same points and seeing the same heap."""

from __future__ import annotations

from stack.kernel.scheduler import Scheduler


def _chain(sched: Scheduler, log: list, times: list[int], name: str = "chain") -> None:
    """Queue `times` as a chain: one heap event, then continuations while allowed (as the NIC does)."""
    seq0 = sched.reserve_seqs(len(times))

    def run(i: int) -> None:
        while True:
            log.append((name, i, sched.now_ns))
            i += 1
            if i == len(times):
                return
            if not sched.claim_next(times[i], seq0 + i, None, run, (i,)):
                sched.call_at_seq(times[i], seq0 + i, None, run, i)  # it runs as its own event
                return

    sched.call_at_seq(times[0], seq0, None, run, 0)


def _separate(sched: Scheduler, log: list, times: list[int], name: str = "chain") -> None:
    """The same events queued one each (what the chain must be indistinguishable from)."""
    for i, t in enumerate(times):
        sched.call_at(t, None, lambda i=i: log.append((name, i, sched.now_ns)))


def _both(setup, run) -> tuple[tuple, tuple]:
    """Build the same schedule twice, chained and separate; run each; return (log, events_run, now)."""
    out = []
    for queue in (_chain, _separate):
        sched, log = Scheduler(), []
        setup(sched, log, queue)
        result = run(sched)
        out.append((log, sched.events_run, sched.now_ns, result))
        if queue is _chain:
            claimed = sched.claimed
    return out[0], out[1], claimed


def test_a_chain_runs_in_one_heap_event_when_nothing_is_between_its_events():
    chained, separate, claimed = _both(lambda s, log, q: q(s, log, [10, 20, 30, 40]),
                                         lambda s: s.run_until_idle())
    assert chained == separate
    assert claimed == 3  # 4 events run, 1 of them taken from the heap


def test_an_event_between_two_chain_events_runs_between_them():
    def setup(sched, log, queue):
        queue(sched, log, [10, 20, 30, 40])
        sched.call_at(25, None, lambda: log.append(("other", 0, sched.now_ns)))

    chained, separate, claimed = _both(setup, lambda s: s.run_until_idle())
    assert chained == separate
    assert [e[0] for e in chained[0]] == ["chain", "chain", "other", "chain", "chain"]
    assert claimed == 2


def test_ties_break_by_the_reserved_insertion_number():
    """An event queued earlier at the same time runs first; one queued later (even while the chain
    was in flight, at the next segment's time) runs after."""
    def setup(sched, log, queue):
        sched.call_at(30, None, lambda: log.append(("earlier", 0, sched.now_ns)))
        queue(sched, log, [10, 20, 30, 40])
        sched.call_at(20, None, lambda: log.append(("later", 0, sched.now_ns)))
        sched.call_at(40, None, lambda: log.append(("later", 1, sched.now_ns)))

    chained, separate, _ = _both(setup, lambda s: s.run_until_idle())
    assert chained == separate
    assert [e[:2] for e in chained[0]] == [("chain", 0), ("chain", 1), ("later", 0), ("earlier", 0), ("chain", 2),
                                           ("chain", 3), ("later", 1)]


def test_work_queued_now_by_a_chain_event_runs_before_the_next_one():
    """A DPC queued (call_soon) by a segment's interrupt runs at that segment's time, before the next."""
    def setup(sched, log, queue):
        queue(sched, log, [10, 20, 30])
        sched.call_at(10, None, lambda: sched.call_soon(None, lambda: log.append(("dpc", 0, sched.now_ns))))

    chained, separate, _ = _both(setup, lambda s: s.run_until_idle())
    assert chained == separate
    assert [e[0] for e in chained[0]] == ["chain", "dpc", "chain", "chain"]


def test_run_until_never_runs_a_chain_event_past_its_time():
    chained, separate, claimed = _both(lambda s, log, q: q(s, log, [10, 20, 30, 40]),
                                         lambda s: s.run_until(25))
    assert chained == separate
    assert chained[2] == 25 and len(chained[0]) == 2 and claimed == 1


def test_max_events_counts_continuations():
    chained, separate, _ = _both(lambda s, log, q: q(s, log, [10, 20, 30, 40, 50]),
                                 lambda s: s.run_until_idle(max_events=3))
    assert chained == separate
    assert chained[3] == 3 and len(chained[0]) == 3


def test_run_while_asks_its_condition_before_every_event():
    asked = []

    def run(sched):
        def condition():
            asked.append(sched.now_ns)
            return sched.now_ns < 20
        return sched.run_while(condition)

    chained, separate, _ = _both(lambda s, log, q: q(s, log, [10, 20, 30, 40]), run)
    assert chained == separate
    assert len(chained[0]) == 2
    assert asked == [0, 10, 20] * 2  # asked before every event, once, at the same times both ways


def test_a_condition_that_reads_the_heap_sees_the_next_event_queued():
    def run(sched):
        return sched.run_while(lambda: sched.peek_time() is not None and sched.peek_time() < 30)

    chained, separate, claimed = _both(lambda s, log, q: q(s, log, [10, 20, 30, 40]), run)
    assert chained == separate
    assert len(chained[0]) == 2 and claimed == 1


def test_a_condition_that_lists_pending_events_sees_the_one_about_to_be_claimed():
    seen = []

    def run(sched):
        def condition():
            seen.append([(e.time_ns, e.args) for e in sched.pending()])
            return sched.now_ns < 30
        return sched.run_while(condition)

    def setup(sched, log, queue):
        queue(sched, log, [10, 20, 30])
        sched.call_at(25, None, lambda: log.append(("other", 0, sched.now_ns)))

    runs = []
    for queue in (_chain, _separate):
        sched, log = Scheduler(), []
        seen.clear()
        setup(sched, log, queue)
        run(sched)
        runs.append(([[t for t, _ in row] for row in seen], log, sched.events_run, sched.claimed))
    (pending_chained, log_chained, events_chained, claimed), (pending_separate, log_separate, events_separate, _) = runs
    # a chain queues its next event only when the one before has run, so the lists are shorter; what
    # comes next is the same, the event about to be claimed (20) included
    assert pending_chained == [[10, 25], [20, 25], [25, 30], [30], []]
    assert [row[:1] for row in pending_chained] == [row[:1] for row in pending_separate]
    assert (log_chained, events_chained) == (log_separate, events_separate)
    assert claimed == 1  # 20 was claimed inside 10's event while the condition listed it as pending


def test_claim_next_leaves_the_heap_alone_when_it_says_no():
    sched = Scheduler()
    sched.call_at(5, None, lambda: None)
    answers = []

    def first():
        answers.append(sched.claim_next(10, sched.reserve_seqs(1), None, print, ()))
    sched.call_at(1, None, first)
    sched.run_until_idle()
    assert answers == [False] and sched.heap_size() == 0 and sched.claimed == 0


def test_stepping_with_run_one_never_continues():
    sched, log = Scheduler(), []
    _chain(sched, log, [10, 20, 30])
    while sched.run_one():
        pass
    assert [e[1:] for e in log] == [(0, 10), (1, 20), (2, 30)]
    assert sched.events_run == 3 and sched.claimed == 0


def test_a_real_time_hook_turns_continuations_off():
    sched, log = Scheduler(), []
    advanced = []
    sched.before_advance = advanced.append
    _chain(sched, log, [10, 20, 30])
    sched.run_until_idle()
    assert advanced == [10, 20, 30]  # the hook saw every step of the clock
    assert sched.claimed == 0


def test_claim_next_yields_to_an_event_queued_earlier_at_the_same_time():
    """Same nanosecond: the insertion number decides, as in the heap (call_at before reserve_seqs)."""
    sched, order = Scheduler(), []

    def first():
        order.append("first")
        seq = reserve[0]
        if sched.claim_next(20, seq, None, order.append, ("chained",)):
            order.append("chained")
        else:
            sched.call_at_seq(20, seq, None, order.append, "chained")
    sched.call_at(10, None, first)
    sched.call_at(20, None, order.append, "queued earlier")
    reserve = [sched.reserve_seqs(1)]
    sched.call_at(20, None, order.append, "queued later")
    sched.run_until_idle()
    assert order == ["first", "queued earlier", "chained", "queued later"] and sched.claimed == 0
    assert sched.events_run == 4


def test_claim_next_runs_an_event_due_at_the_same_time_as_a_later_queued_one():
    sched, order = Scheduler(), []
    reserve = sched.reserve_seqs(1)

    def first():
        order.append("first")
        assert sched.claim_next(20, reserve, None, order.append, ("chained",))
        order.append("chained")
    sched.call_at(10, None, first)
    sched.call_at(20, None, order.append, "queued later")
    sched.run_until_idle()
    assert order == ["first", "chained", "queued later"] and sched.claimed == 1 and sched.events_run == 3
