"""The leak check's discounts are bounded: idle open files up to the open-file cache's limit, idle
system workers up to EXP_IDLE_WORKERS_MAX.  Past those limits a cache or a worker pool that
keeps growing is growth, and the check must say so (mutants below break each limit)."""

from __future__ import annotations

from typing import Any

import pytest

from stack.drivers.khttpd import filecache
from stack.drivers.khttpd.driver import khttpd_globals
from stack.fs.kfs import CCB_TAG, FILE_OBJECT_TAG
from stack.kernel import IoAllocateWorkItem, IoFreeWorkItem, IoQueueWorkItem, KeSetEvent, KeWaitForSingleObject, kroutine
from stack.kernel.ke import EXP_IDLE_WORKERS_MAX, KEVENT, DelayedWorkQueue, THREAD_TAG
from stack.kernel.machine import Machine
from stack.usermode.webserver import http_fetch

from khttpd_lab import SERVER4, boot_lab, run_client
from leak_check import growth, resource_counts, settle, snapshot

PATHS = ("/style.css", "/files/1KB.bin", "/files/4KB.bin", "/about.txt")


def _serve_four_more_files(lab: Any) -> list[str]:
    run_client(lab, http_fetch, SERVER4, "GET", "/index.html")
    settle(lab)
    before = snapshot(lab, ("winsrv",))
    for path in PATHS:
        assert run_client(lab, http_fetch, SERVER4, "GET", path).status == 200
    settle(lab)  # TIME_WAIT over, workers idle
    return growth(before["winsrv"], snapshot(lab, ("winsrv",))["winsrv"])


def test_an_open_file_cache_within_its_limit_is_not_growth():
    lab = boot_lab(seed=8, parameters={"OpenFileCache": 2})
    lines = _serve_four_more_files(lab)  # (the server's TIME_WAIT TCBs outlive the settle: not asked here)
    assert not [line for line in lines if f"'{FILE_OBJECT_TAG}'" in line or f"'{CCB_TAG}'" in line], lines
    assert len(khttpd_globals(lab.host("winsrv").kernel).open_files.entries) == 2


def test_an_open_file_cache_past_its_limit_is_reported_as_file_object_and_ccb_growth(monkeypatch):
    monkeypatch.setattr(filecache, "_make_room", lambda cache, now_ns: True)  # mutant: never closes for room
    lab = boot_lab(seed=8, parameters={"OpenFileCache": 2})
    lines = _serve_four_more_files(lab)
    assert len(khttpd_globals(lab.host("winsrv").kernel).open_files.entries) == 5
    assert any(f"'{FILE_OBJECT_TAG}'" in line for line in lines), lines
    assert any(f"'{CCB_TAG}'" in line for line in lines), lines


def _idle_workers(m: Machine, count: int) -> None:
    """`count` work routines that wait, all at once, then all done: `count` workers went idle."""
    ev = KEVENT()

    @kroutine("testdrv")
    def WaitingWork(DeviceObject: Any, Context: Any) -> Any:
        yield KeWaitForSingleObject(ev)
        IoFreeWorkItem(Context)

    def queue() -> None:
        for _ in range(count):
            item = IoAllocateWorkItem(None)
            IoQueueWorkItem(item, WaitingWork, DelayedWorkQueue, item)

    m.run_in(m.kernel, queue)
    m.scheduler.run_until_idle()
    m.run_in(m.kernel, KeSetEvent, ev)  # a notification event: every waiter wakes
    m.scheduler.run_until_idle()


@pytest.mark.parametrize("keep", [EXP_IDLE_WORKERS_MAX, EXP_IDLE_WORKERS_MAX + 8])
def test_idle_workers_are_discounted_only_up_to_exp_idle_workers_max(monkeypatch, keep):
    from stack.kernel import ke
    monkeypatch.setattr(ke, "EXP_IDLE_WORKERS_MAX", keep)  # keep > the real limit: a mutant pool that never shrinks
    m = Machine(seed=3, memory_mb=4)
    before = resource_counts(m.kernel)
    _idle_workers(m, EXP_IDLE_WORKERS_MAX + 8)
    assert len(ke.ExpWorkerPool.of(m.kernel).idle) == keep
    lines = growth(before, resource_counts(m.kernel))
    if keep == EXP_IDLE_WORKERS_MAX:
        assert lines == []
    else:
        assert any(f"'{THREAD_TAG}'" in line for line in lines) and any("threads" in line for line in lines), lines
