"""!lookaside: a lookaside list's counters in kdexts' shape, -all, and its errors."""

from __future__ import annotations

import re

import pytest

from stack.kernel.lookaside import LOOKASIDE_LIST_EX, lookaside_lists
from wskdbg.render.lookaside import lookaside_lines

from tests.wskdbg.net_lab import lab_engine, run

# `!lookaside 0xfffff88001294f80` (MS Learn, the !lookaside extension page):
WINDBG_EXAMPLE = """\
Lookaside "" @ 0xfffff88001294f80  Tag(hex): 0x7366744e "Ntfs"
    Type           =       0011  PagedPool RaiseIfAllocationFailure
    Current Depth  =          0  Max Depth  =          4
    Size           =        496  Max Alloc  =       1984
    AllocateMisses =          8  FreeMisses =          0
    TotalAllocates =     272492  TotalFrees =     272488
    Hit Rate       =         99% Hit Rate   =        100%"""


def test_the_renderer_reproduces_the_published_windbg_example_byte_for_byte():
    row = {"address": 0xFFFFF88001294F80, "name": "", "tag": "Ntfs", "tag_value": 0x7366744E, "type": 0x11,
           "type_text": "PagedPool RaiseIfAllocationFailure", "current_depth": 0, "max_depth": 4, "size": 496,
           "allocate_misses": 8, "free_misses": 0, "total_allocates": 272492, "total_frees": 272488}
    assert "\n".join(lookaside_lines(row)) == WINDBG_EXAMPLE


@pytest.fixture(scope="module")
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def _khttpd_lists(dbg) -> dict[str, LOOKASIDE_LIST_EX]:
    return {lk.tag_text: lk for lk in lookaside_lists(dbg.kernels["winsrv"]).values()}


def test_all_lists_khttpds_four_lists_with_the_routine_that_set_them_up(dbg):
    out = run(dbg, "!lookaside -all")
    heads = re.findall(r'^Lookaside "" @ 0x[0-9a-f]{16}  Tag\(hex\): 0x[0-9a-f]{8} "(\w{4})"$', out, re.M)
    assert heads == ["Khtc", "Khtb", "Khth", "Khts"]
    assert out.count("    (initialised by khttpd!DriverEntry)") == 4


def test_after_requests_one_at_a_time_the_list_shows_one_miss_and_the_hit_rate(dbg):
    before = _khttpd_lists(dbg)["Khtc"].total_allocates
    run(dbg, "!httperf /w --server winsrv --uri /index.html --num-conns 4 --rate 20 --num-calls 1")
    lk = _khttpd_lists(dbg)["Khtc"]
    out = run(dbg, f"!lookaside 0x{lk.address:x}").splitlines()
    assert lk.total_allocates == before + 4
    assert out[0] == f'Lookaside "" @ 0x{lk.address:016x}  Tag(hex): 0x6374684b "Khtc"'
    assert out[1] == "    Type           =       0200  NonPagedPoolNx"
    assert out[2] == f"    Current Depth  =          {lk.current_depth}  Max Depth  =          4"
    assert out[3] == "    Size           =        256  Max Alloc  =       1024"
    assert out[4] == f"    AllocateMisses = {lk.allocate_misses:>10}  FreeMisses = {lk.free_misses:>10}"
    hit = (lk.total_allocates - lk.allocate_misses) * 100 // lk.total_allocates
    assert out[6] == f"    Hit Rate       = {hit:>10}% Hit Rate   = {100:>10}%"


def test_an_address_that_is_no_lookaside_list_is_a_clear_error(dbg):
    result = dbg.execute("!lookaside 0x1000")
    assert result.error and "is not a lookaside list on winsrv" in result.text


def test_options_that_would_change_the_machine_are_refused(dbg):
    lk = _khttpd_lists(dbg)["Khtc"]
    result = dbg.execute(f"!lookaside 0x{lk.address:x} 2")
    assert result.error and "option 2 (set depth) changes the machine: not supported" in result.text


def test_bare_lookaside_says_the_lab_has_no_system_lists(dbg):
    assert "The lab models no system lookaside lists" in run(dbg, "!lookaside")


def test_address_0_is_no_address_as_ms_learn_documents_it(dbg):
    # MS Learn's syntax for !lookaside: `!lookaside [Address [Options [Depth]]]`, `!lookaside [-all]`,
    # `!lookaside 0 [-all]`: an Address of 0 is the bare command
    assert run(dbg, "!lookaside 0") == run(dbg, "!lookaside")
    assert run(dbg, "!lookaside 0 -all") == run(dbg, "!lookaside -all")


def test_under_driver_verifier_the_lists_show_max_depth_0(dbg):
    k = dbg.kernels["winsrv"]
    lk = _khttpd_lists(dbg)["Khtc"]
    k.verifier.configure(1, tags=["Zzzz"])  # any active simulation: ExDisableAllLookasideLists
    try:
        out = run(dbg, f"!lookaside 0x{lk.address:x}").splitlines()
    finally:
        k.verifier.disable()
    assert out[2].endswith("Max Depth  =          0")
    assert out[3] == "    Size           =        256  Max Alloc  =          0"
