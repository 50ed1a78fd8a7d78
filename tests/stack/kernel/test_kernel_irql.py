"""Part 2: IRQL levels, raise/lower checks, DPC and spin lock discipline."""

from __future__ import annotations

from kernel_harness import crash, new_machine, run

from stack.kernel import (APC_LEVEL, DISPATCH_LEVEL, HIGH_LEVEL, PASSIVE_LEVEL, KeAcquireSpinLock,
                          KeAcquireSpinLockAtDpcLevel, KeGetCurrentIrql, KeInsertQueueDpc, KeLowerIrql, KeRaiseIrql,
                          KeRaiseIrqlToDpcLevel, KeReleaseSpinLockFromDpcLevel, kroutine)
from stack.kernel.irql import CLOCK_LEVEL, NIC_DIRQL, irql_name
from stack.kernel.ke import KDPC, KSPIN_LOCK


def test_irql_levels_have_their_x64_values_and_names():
    assert (PASSIVE_LEVEL, APC_LEVEL, DISPATCH_LEVEL, CLOCK_LEVEL, HIGH_LEVEL) == (0, 1, 2, 13, 15)
    assert DISPATCH_LEVEL < NIC_DIRQL < CLOCK_LEVEL
    assert irql_name(DISPATCH_LEVEL) == "DISPATCH_LEVEL"
    assert irql_name(NIC_DIRQL) == "DIRQL"
    assert irql_name(HIGH_LEVEL) == "HIGH_LEVEL"


def test_raise_then_lower_irql_walks_through_the_levels():
    m = new_machine()

    def body():
        seen = [KeGetCurrentIrql()]
        a = KeRaiseIrql(APC_LEVEL)
        seen.append(KeGetCurrentIrql())
        d = KeRaiseIrqlToDpcLevel()
        seen.append(KeGetCurrentIrql())
        dev = KeRaiseIrql(NIC_DIRQL)
        seen.append(KeGetCurrentIrql())
        KeLowerIrql(dev)
        KeLowerIrql(d)
        KeLowerIrql(a)
        seen.append(KeGetCurrentIrql())
        return (a, d, dev), seen

    olds, seen = run(m, body)
    assert olds == (PASSIVE_LEVEL, APC_LEVEL, DISPATCH_LEVEL)
    assert seen == [PASSIVE_LEVEL, APC_LEVEL, DISPATCH_LEVEL, NIC_DIRQL, PASSIVE_LEVEL]


def test_each_event_starts_at_passive_level_even_after_one_left_irql_raised():
    m = new_machine()
    run(m, KeRaiseIrql, DISPATCH_LEVEL)  # a sloppy event
    assert run(m, KeGetCurrentIrql) == PASSIVE_LEVEL


def test_raising_to_a_lower_irql_bugchecks_irql_not_greater_or_equal():
    m = new_machine()
    run(m, lambda: (KeRaiseIrql(DISPATCH_LEVEL), KeRaiseIrql(APC_LEVEL)))
    info = crash(m)
    assert info.code == 0x09
    assert info.params[:2] == (DISPATCH_LEVEL, APC_LEVEL)


def test_lowering_to_a_higher_irql_bugchecks_verifier_0x31():
    m = new_machine()
    run(m, KeLowerIrql, DISPATCH_LEVEL)
    info = crash(m)
    assert info.code == 0xC4
    assert info.params[:3] == (0x31, PASSIVE_LEVEL, DISPATCH_LEVEL)


def test_dpc_that_returns_at_another_irql_bugchecks_irql_unexpected_value():
    m = new_machine()

    @kroutine("testdrv")
    def LoweringDpc(dpc, ctx, a1, a2):
        KeLowerIrql(PASSIVE_LEVEL)

    run(m, KeInsertQueueDpc, KDPC(LoweringDpc))
    m.scheduler.run_until_idle()
    info = crash(m)
    assert info.code == 0xC8
    assert info.params[0] == (PASSIVE_LEVEL << 16) | DISPATCH_LEVEL


def test_dpc_that_returns_holding_a_spin_lock_bugchecks():
    m = new_machine()
    lock = KSPIN_LOCK()

    @kroutine("testdrv")
    def LeakyDpc(dpc, ctx, a1, a2):
        KeAcquireSpinLockAtDpcLevel(lock)

    run(m, KeInsertQueueDpc, KDPC(LeakyDpc))
    m.scheduler.run_until_idle()
    assert crash(m).code == 0xC4


def test_acquiring_a_spin_lock_already_owned_bugchecks_0xf():
    m = new_machine()
    lock = KSPIN_LOCK()
    lock.address = 0xFFFFC10000001230
    run(m, lambda: (KeAcquireSpinLock(lock), KeAcquireSpinLockAtDpcLevel(lock)))
    info = crash(m)
    assert info.code == 0x0F and info.params[0] == lock.address


def test_spin_lock_at_dpc_level_below_dispatch_bugchecks_0x9():
    m = new_machine()
    run(m, KeAcquireSpinLockAtDpcLevel, KSPIN_LOCK())
    assert crash(m).code == 0x09


def test_release_from_dpc_level_keeps_the_irql():
    m = new_machine()
    lock = KSPIN_LOCK()

    def body():
        old = KeRaiseIrqlToDpcLevel()
        KeAcquireSpinLockAtDpcLevel(lock)
        KeReleaseSpinLockFromDpcLevel(lock)
        irql = KeGetCurrentIrql()
        KeLowerIrql(old)
        return irql, lock.owned

    assert run(m, body) == (DISPATCH_LEVEL, False)
