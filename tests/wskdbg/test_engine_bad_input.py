"""Bad input, property-based over the registry: a clear error, and the machine left as it was."""

from __future__ import annotations

import os
import tempfile

from dbg_harness import factory
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wskdbg.commands import REGISTRY, load_all
from wskdbg.engine import Engine

load_all()
OWN_MODULES = {"execution", "inspection", "memory", "io", "crash", "tracing", "session", "services"}
SPECS = [s for s in REGISTRY if s.handler.__module__.rsplit(".", 1)[-1] in OWN_MODULES]
NAMES = sorted({name for s in SPECS for name in s.names})

_ENGINE: Engine | None = None


def engine() -> Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Engine(factory=factory("client"), seed=1)
        _ENGINE.execute("bp testbus!TestBusCompleteDpc")
        _ENGINE.execute("g")  # stopped mid-event: the richest state to poke at
    return _ENGINE


def snapshot(dbg: Engine) -> tuple:
    k = dbg.kernel
    usage = {key: (u.allocs, u.frees, u.bytes_in_use) for key, u in k.pool.usage.items()}
    return dbg.scheduler.events_run, dbg.scheduler.now_ns, dbg.bus.seq, usage, dbg.scheduler.halted is None


junk = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x7F), max_size=30),
    st.sampled_from(["zz", "(", ")", "L", "L?", "-", "/", "/c", "/w", '"', '"unterminated', "{", "}", "poi(", "0x",
                     "ffffffff`ffffffff", "1 2 3 4 5 6", "-r99", "!", "!!", "$t99", "@", "L-1", "0 0 0 0 0", "*",
                     "m", "1-", ",", "/e", "/e irp =", "= 5", "nt!", "!nt", "0n", "0y2", "1/0"]),
)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(NAMES), args=junk)
def test_malformed_arguments_get_a_clear_error_and_change_nothing(name: str, args: str) -> None:
    # `t ;0` is two commands: t steps (as it should), then 0 fails - a line of several commands
    # is not one malformed command (the next test feeds whole lines).
    assume(";" not in args)
    dbg = engine()
    spec = REGISTRY.find(name)
    before = snapshot(dbg)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # .logopen and scripts touch only a scratch directory
        try:
            result = dbg.execute(f"{name} {args}" if not name.startswith(("$", "?")) else f"{name}{args}")
        finally:
            if dbg.log_file is not None:
                dbg.execute(".logclose")
            os.chdir(cwd)
    assert "Internal debugger error" not in result.text, result.text
    assert isinstance(result.text, str)
    if result.error:
        assert result.text.strip(), "an error must say what is wrong"
    if result.error or not spec.mutates:
        assert snapshot(dbg) == before, f"{name} {args!r} changed the machine"


@settings(max_examples=200, deadline=None)
@given(line=st.text(max_size=40))
def test_any_line_never_raises_and_unknown_commands_point_at_the_fault(line: str) -> None:
    dbg = engine()
    words = line.split()
    if words and REGISTRY.find(words[0].lstrip()) is not None:
        return  # known commands are covered above
    before = snapshot(dbg)
    result = dbg.execute(line)
    assert "Internal debugger error" not in result.text
    if line.strip() and not line.strip().startswith(("$$", "*", ";")) and result.error:
        assert "^" in result.text or "No export" in result.text or result.text
    if result.error:
        assert snapshot(dbg) == before


def test_unknown_command_error_has_a_caret_under_the_command():
    r = engine().execute("frobnicate 1 2")
    assert r.error
    assert r.text == "       ^ Syntax error at 'frobnicate 1 2': unknown command 'frobnicate' (try 'help')"


def test_expression_errors_point_at_the_bad_token():
    r = engine().execute("db 1000 + zz")
    assert r.text == " " * len("0: kd> db 1000 + ") + "^ Couldn't resolve error at 'zz'"
    r = engine().execute("? 1; ? (2")
    assert r.text.splitlines() == ["Evaluate expression: 1 = 00000000`00000001",
                                   " " * len("0: kd> ? 1; ? (2") + "^ Syntax error at ''"]


def test_twenty_thousand_term_sum_is_a_clear_error_not_an_internal_one():
    r = engine().execute("? " + "+".join(["1"] * 20000))
    assert r.error
    assert "Internal debugger error" not in r.text
    assert r.text.endswith("^ Expression too long: 39999 characters (the limit is 4096)")


def test_k_rejects_negative_zero_and_oversized_frame_counts():
    # A fresh engine: the property tests above may have moved the shared one on.
    dbg = Engine(factory=factory("client"), seed=1)
    dbg.execute("bp testbus!TestBusCompleteDpc")
    dbg.execute("g")
    r = dbg.execute("kn -5")
    assert r.error and r.text == " " * len("0: kd> kn ") + "^ the frame count cannot be negative (-5)"
    for count in ("10000", "0", "L0n65536"):
        r = dbg.execute(f"k {count}")
        assert r.error and r.text.endswith("^ the frame count must be 1..0xffff"), count
    r = dbg.execute("kn 2")
    assert not r.error and len(r.text.splitlines()) == 3  # the header and two frames
    assert not dbg.execute("k ffff").error
