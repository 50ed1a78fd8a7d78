"""The processor model: costs charged where incurred, preemption ISR > DPC > thread,
quantum end and priority, the DPC watchdog (stack.kernel.cpu, stack.kernel.costs)."""

from __future__ import annotations

from typing import Any

from stack.kernel import bugcheck as bc
from stack.kernel.costs import COST_TABLE, PROFILES
from stack.kernel.cpu import ISR_LEVEL, install, set_level
from stack.kernel.ke import KDPC, KEVENT, KeInsertQueueDpc, KeSetEvent, KeWaitForSingleObject, PsCreateSystemThread
from stack.kernel.symbols import current_kernel

from kernel_harness import assert_running, crash, new_machine, run

US = 1_000
MS = 1_000_000


def _machine(processors: int = 1, profile: str = "2003"):
    m = new_machine()
    model = install(m.kernel, profile, processors)
    return m, model


def _fake_isr(work_ns: int, log: list, dpc: KDPC | None = None) -> None:
    """An interrupt: spends work_ns at ISR level, may queue a DPC."""
    k = current_kernel()
    log.append(("isr", k.now_ns))
    k.charge("spin_ns", work_ns)
    if dpc is not None:
        KeInsertQueueDpc(dpc)


set_level(_fake_isr, ISR_LEVEL)


def _signal(event: KEVENT) -> None:
    """A device interrupt that readies a thread (its DPC's work, folded in)."""
    KeSetEvent(event)


set_level(_signal, ISR_LEVEL)


def _spinner(name: str, work_ns: int, log: list, priority: int = 8, gate: KEVENT | None = None):
    def body(_ctx: Any):
        if gate is not None:
            yield KeWaitForSingleObject(gate)
        k = current_kernel()
        log.append((name, k.now_ns))
        k.charge("spin_ns", work_ns)
        log.append((name + " end", k.now_ns))
        return 0
        yield  # a generator: runs as a thread

    def start() -> Any:
        t = PsCreateSystemThread(body, None, name=name)
        t.priority = priority
        return t  # kept: an exited thread leaves the kernel's thread list
    return start


def test_zero_profile_turns_the_model_off():
    m = new_machine()
    assert install(m.kernel, "zero") is None
    assert m.kernel.cpu_model is None and m.kernel.copies.on_copy is None
    assert all(v == 0 for v in PROFILES["zero"].ns_table().values())


def test_a_copy_of_n_bytes_costs_n_times_the_per_byte_cost_on_the_processor_that_did_it():
    m, model = _machine(processors=2)
    seen: dict[str, int] = {}

    def body(_ctx: Any):
        k = current_kernel()
        seen["cpu"] = k.cpu
        t0 = k.now_ns
        k.copies.count(10_000, "test copy")
        seen["spent"] = k.now_ns - t0
        return 0
        yield

    thread = run(m, lambda: PsCreateSystemThread(body, None, name="copier"))
    m.scheduler.run_until_idle()
    assert_running(m)
    per_byte = COST_TABLE["copy_byte"][0]
    assert seen["spent"] == 10_000 * per_byte
    assert model.times(thread).kernel_ns >= 10_000 * per_byte
    assert model.processors[seen["cpu"]].thread_ns >= 10_000 * per_byte


def test_effects_scheduled_by_an_event_happen_at_start_plus_cost_so_far():
    m, _ = _machine()
    fired: list[int] = []

    def work() -> None:
        k = current_kernel()
        k.charge("spin_ns", 7 * US)
        k.call_soon(lambda: fired.append(current_kernel().now_ns))

    run(m, work)
    m.scheduler.run_until_idle()
    assert fired == [7 * US]


def test_when_the_processor_frees_isrs_go_before_dpcs_and_dpcs_before_threads():
    m, _ = _machine()
    log: list = []
    dpc = KDPC(lambda d, c, a, b: (log.append(("dpc", current_kernel().now_ns)),
                                    current_kernel().charge("spin_ns", 20 * US)), None)
    gate = KEVENT()
    run(m, _spinner("B", 1 * US, log, gate=gate))      # thread B waits for its event
    m.scheduler.run_until_idle()
    run(m, _spinner("A", 100 * US, log))                # thread A: a 100 us burst
    m.scheduler.run_while(lambda: "A" not in dict(log))
    a_start = dict(log)["A"]
    a_end = a_start + 100 * US
    m.scheduler.call_at(a_start + 10 * US, m.kernel, _signal, gate)                  # B ready at +10 us
    m.scheduler.call_at(a_start + 20 * US, m.kernel, _fake_isr, 5 * US, log, dpc)    # an interrupt at +20 us
    m.scheduler.call_at(a_start + 30 * US, m.kernel, _fake_isr, 1 * US, log)         # another at +30 us
    m.scheduler.run_until_idle()
    assert_running(m)
    events = sorted(((name, t) for name, t in log if not name.endswith("end") and name != "A"), key=lambda e: e[1])
    # nothing runs inside A's burst; when it ends: the ISRs (the signalling one, then these two in
    # arrival order), then the DPC the first one queued, then thread B
    assert [name for name, _ in events] == ["isr", "isr", "dpc", "B"]
    isr_times = [t for name, t in events if name == "isr"]
    assert isr_times == [a_end, a_end + 5 * US]
    dpc_time = dict(events)["dpc"]
    assert dpc_time == a_end + 6 * US + COST_TABLE["dpc"][0]   # after both ISRs, plus its own dispatch
    assert dict(events)["B"] >= dpc_time + 20 * US              # the thread waits for the DPC


def test_an_equal_priority_thread_goes_next_and_a_burst_past_its_quantum_counts_a_quantum_end():
    m, model = _machine()
    log: list = []
    gate_b, gate_c = KEVENT(), KEVENT()
    run(m, _spinner("B", 1 * MS, log, gate=gate_b))
    run(m, _spinner("C", 1 * MS, log, gate=gate_c))
    m.scheduler.run_until_idle()
    a = run(m, _spinner("A", model.quantum_ns + 10 * MS, log))   # A runs past its quantum
    m.scheduler.run_while(lambda: "A" not in dict(log))
    a_start = dict(log)["A"]
    m.scheduler.call_at(a_start + 1 * MS, m.kernel, _signal, gate_b)
    m.scheduler.call_at(a_start + 2 * MS, m.kernel, _signal, gate_c)
    m.scheduler.run_until_idle()
    assert_running(m)
    starts = dict(log)
    assert a_start + model.quantum_ns + 10 * MS <= starts["B"] < starts["C"]   # first come, first served
    assert model.times(a).quantum_ends == 1


def test_a_higher_priority_thread_goes_before_lower_ones_that_were_ready_earlier():
    m, _ = _machine()
    log: list = []
    low_gate, high_gate = KEVENT(), KEVENT()
    run(m, _spinner("low", 1 * MS, log, priority=4, gate=low_gate))
    run(m, _spinner("high", 1 * MS, log, priority=12, gate=high_gate))
    m.scheduler.run_until_idle()
    run(m, _spinner("A", 10 * MS, log))
    m.scheduler.run_while(lambda: "A" not in dict(log))
    a_start = dict(log)["A"]
    m.scheduler.call_at(a_start + 1 * MS, m.kernel, _signal, low_gate)
    m.scheduler.call_at(a_start + 2 * MS, m.kernel, _signal, high_gate)
    m.scheduler.run_until_idle()
    assert_running(m)
    starts = dict(log)
    assert a_start + 10 * MS <= starts["high"] < starts["low"]
    assert starts["low"] >= starts["high"] + 1 * MS


def test_a_wait_frees_the_processor():
    m, _ = _machine()
    log: list = []
    ev = KEVENT()

    def waiter(_ctx: Any):
        k = current_kernel()
        log.append(("W", k.now_ns))
        yield KeWaitForSingleObject(ev)
        log.append(("W woke", current_kernel().now_ns))

    run(m, lambda: PsCreateSystemThread(waiter, None, name="W"))
    m.scheduler.call_at(1 * MS, m.kernel, _spinner("X", 1 * MS, log))
    m.scheduler.call_at(5 * MS, m.kernel, lambda: KeSetEvent(ev))
    m.scheduler.run_until_idle()
    starts = dict(log)
    assert 1 * MS <= starts["X"] < 1 * MS + 100 * US   # W's wait left the processor free
    assert starts["W woke"] >= 5 * MS


def test_a_dpc_running_past_the_single_dpc_limit_bug_checks_0x133_with_windows_parameters():
    m, _ = _machine()
    dpc = KDPC(lambda d, c, a, b: current_kernel().charge("spin_ns", 21_000 * MS), None)
    m.scheduler.call_at(0, m.kernel, _fake_isr, 1 * US, [], dpc)
    m.scheduler.run_until_idle()
    info = crash(m)
    assert info.code == bc.DPC_WATCHDOG_VIOLATION == 0x133
    assert info.params[0] == 0
    assert info.params[2] == 0x500                     # the DPC time allotment (in ticks): 20 s
    assert info.params[1] > 0x500                      # the DPC time count (in ticks)
    assert bc.argument_meanings(info.code, info.params)[0].startswith("A single DPC or ISR exceeded")


def test_dpcs_back_to_back_past_the_cumulative_limit_bug_check_0x133_parameter_1():
    m, _ = _machine()

    def again(d: KDPC, c: Any, a: Any, b: Any) -> None:
        current_kernel().charge("spin_ns", 10_000 * MS)  # 10 s each, under the single limit
        KeInsertQueueDpc(d)

    dpc = KDPC(again, None)
    m.scheduler.call_at(0, m.kernel, _fake_isr, 1 * US, [], dpc)
    m.scheduler.run_until_idle(max_events=1000)
    info = crash(m)
    assert info.code == 0x133
    assert info.params[0] == 1 and info.params[1] == 0x1E00  # the watchdog period (in ticks): 120 s
    assert "cumulatively" in bc.argument_meanings(info.code, info.params)[0]
