"""`!verifier`: Driver Verifier's low resources simulation on the current host.

Showing follows the debugger extension (`!verifier`, `!verifier 4 [Quantity]`);
setting follows `verifier /volatile /faults [Probability] [PoolTags] [Applications] [DelayMins]`,
where Applications are driver images here (khttpd.sys) and `/classes` picks the allocation
routines to fail (pool, nbl, irp, mdl, thread, workitem, page; all by default).
`!verifier -disable` turns injection off; the counts stay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stack.kernel.pool import tag_from_str, tag_to_str
from stack.kernel.verifier import CLASS_ROUTINES, DEFAULT_PROBABILITY, FAULT_CLASSES

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.render.verifier import VerifierSummary, history_lines, summary_lines

if TYPE_CHECKING:
    from wskdbg.engine import Engine

NS_PER_MINUTE = 60 * 1_000_000_000


@command("!verifier", area="crash", mutates=True,
         syntax="!verifier [Flags [Quantity]] | !verifier /faults [Probability [PoolTags [Images [DelayMins]]]] "
                "[/classes List] | !verifier -disable",
         summary="Driver Verifier: low resources simulation and failed allocations",
         help="""
!verifier                 status, statistics and failures by class (NULL returned deliberately or
                          because memory ran out) on the current host.
!verifier 4 [Quantity]    the newest failed allocations (default 4): thread, routine, caller.
!verifier /faults 600 "Echo Ipis" echosrv.sys 0 /classes pool,irp
                          fail 600/10000 of the allocations (decimal, as verifier.exe takes it;
                          default 600 = 6 %), only with those pool tags, only from those images,
                          starting DelayMins minutes from now; the classes limit which routines
                          fail (pool nbl irp mdl thread workitem page).  Deterministic: the
                          choices come from the world's seed.
!verifier -disable        stop injecting.""")
def cmd_verifier(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    k = dbg.kernel
    if words and words[0][0].lower() in ("-disable", "/reset"):
        if len(words) > 1:
            raise inv.syntax_error(words[1][1])
        k.verifier.disable()
        return CommandResult("Low resources simulation disabled.", {"active": False})
    if words and words[0][0].lower() == "/faults":
        return _set_faults(dbg, inv, words[1:])
    flags = dbg.evaluate(words[0][0], inv.args_offset + words[0][1]) if words else 0
    if flags == 4:
        if len(words) > 2:
            raise inv.syntax_error(words[2][1])
        quantity = dbg.evaluate(words[1][0], inv.args_offset + words[1][1]) if len(words) == 2 else 4
        return _history(dbg, quantity)
    if len(words) > 1:
        raise inv.syntax_error(words[1][1])
    return _summary(dbg)


def _summary(dbg: "Engine") -> CommandResult:
    k = dbg.kernel
    v = k.verifier
    succeeded = sum(u.allocs for u in k.pool.usage.values())
    by_class = [(c, v.attempts[c], v.injected[c], v.exhausted[c]) for c in FAULT_CLASSES]
    summary = VerifierSummary(
        active=v.active, probability=v.probability, tags=sorted(tag_to_str(t) for t in v.tags),
        images=sorted(f"{i}.sys" for i in v.images), classes=[c for c in FAULT_CLASSES if c in v.classes],
        start_ns=v.start_ns, pool_succeeded=succeeded, pool_failed=v.injected["pool"] + v.exhausted["pool"],
        deliberate=sum(v.injected.values()), by_class=by_class)
    return CommandResult("\n".join(summary_lines(summary)), {
        "active": v.active, "probability": v.probability, "tags": summary.tags, "images": summary.images,
        "classes": summary.classes, "injected": dict(v.injected), "exhausted": dict(v.exhausted),
        "attempts": dict(v.attempts)})


def _history(dbg: "Engine", quantity: int) -> CommandResult:
    k = dbg.kernel
    records = list(k.verifier.log)[::-1][:max(0, quantity)]
    symbols = {s: k.symbol_address(s) for r in records for s in (CLASS_ROUTINES[r.cls], r.caller)}
    lines = history_lines(records, k.verifier.records, symbols)
    return CommandResult("\n".join(lines), {"records": [
        {"index": r.index, "time_ns": r.time_ns, "class": r.cls, "caller": r.caller, "tag": r.tag,
         "injected": r.injected, "thread": r.thread} for r in records]})


def _set_faults(dbg: "Engine", inv: Invocation, words: list[tuple[str, int]]) -> CommandResult:
    classes: list[str] | None = None
    positional: list[tuple[str, int]] = []
    i = 0
    while i < len(words):
        word, at = words[i]
        if word.lower() == "/classes":
            if i + 1 >= len(words):
                raise inv.error("/classes needs a list, e.g. /classes pool,irp", at)
            classes = [c.strip().lower() for c in words[i + 1][0].split(",") if c.strip()]
            bad = [c for c in classes if c not in FAULT_CLASSES]
            if bad:
                raise inv.error(f"unknown class '{bad[0]}' (one of {', '.join(FAULT_CLASSES)})", words[i + 1][1])
            i += 2
            continue
        positional.append((word, at))
        i += 1
    if len(positional) > 4:
        raise inv.syntax_error(positional[4][1])
    probability = DEFAULT_PROBABILITY
    if positional:
        text, at = positional[0]
        try:
            probability = int(text, 0)
        except ValueError:
            raise inv.error(f"'{text}' is not a probability (1 to 10000, in 1/10000)", at) from None
        if not 1 <= probability <= 10_000:
            raise inv.error(f"probability {probability} is not between 1 and 10000", at)
    tags = positional[1][0].split() if len(positional) > 1 else []
    for tag in tags:
        if len(tag) > 4:
            raise inv.error(f"'{tag}' is not a pool tag (four characters at most)", positional[1][1])
    images = positional[2][0].split() if len(positional) > 2 else []
    delay_ns = 0
    if len(positional) > 3:
        text, at = positional[3]
        if not text.isdigit():
            raise inv.error(f"'{text}' is not a number of minutes", at)
        delay_ns = int(text) * NS_PER_MINUTE
    k = dbg.kernel
    k.verifier.configure(probability, tags=[tag_to_str(tag_from_str(t)) for t in tags], images=images,
                         classes=classes, start_ns=k.now_ns + delay_ns if delay_ns else 0)
    result = _summary(dbg)
    return CommandResult(result.text, result.data)
