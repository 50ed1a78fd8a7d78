"""`!lookaside`: drivers' lookaside lists (ExInitializeLookasideListEx) and their hit rates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stack.kernel.lookaside import LOOKASIDE_LIST_EX, lookaside_lists

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.render.fmt import addr64
from wskdbg.render.lookaside import lookaside_lines, lookaside_row

if TYPE_CHECKING:
    from wskdbg.engine import Engine


@command("!lookaside", area="memory", syntax="!lookaside [Address [Options]] | !lookaside [0] -all",
         summary="Show a lookaside list's depth, misses and hit rates (-all: every list)",
         help="""
A lookaside list keeps freed blocks of one size and tag for the next allocation of that kind, so
most allocations never reach the pool (ExAllocateFromLookasideListEx; a miss goes to the pool).
Entries on a list are still allocated pool: `!poolused` counts them.  With an Address (a
LOOKASIDE_LIST_EX, e.g. inside khttpd's globals block) the list's counters as kdexts prints them:
type, current and maximum depth, entry size, misses, totals and hit rates.  `-all` lists every
lookaside list of the current host in the order they were initialised, with the routine that set it
up.  Windows' bare `!lookaside` shows the system's own lists (the lab models none; Options 1 and 2,
reset counters and set depth, change the machine and are not supported).  An Address of 0 is the
same as none: `!lookaside 0` is the bare form, `!lookaside 0 -all` is `-all` (MS Learn's syntax).""")
def cmd_lookaside(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    lists = lookaside_lists(dbg.kernel)
    if words and words[0][0].lower() != "-all" and (len(words) == 1 or words[1][0].lower() == "-all") and (
            dbg.evaluate(words[0][0], inv.args_offset + words[0][1]) == 0):
        words = words[1:]  # Address 0: no address (`!lookaside 0`, `!lookaside 0 -all`)
    if not words or (len(words) == 1 and words[0][0].lower() == "-all"):
        if not words:
            return CommandResult("The lab models no system lookaside lists; `!lookaside -all` lists the "
                                 f"drivers' lists ({len(lists)} on {dbg.current_host}).", {"lists": []})
        rows = [lookaside_row(lk) for lk in lists.values()]
        out: list[str] = []
        for r in rows:
            dbg.note_address(addr64(r["address"]))
            out += lookaside_lines(r) + [f"    (initialised by {r['owner']})", ""]
        if not rows:
            out.append(f"(no lookaside lists on {dbg.current_host})")
        return CommandResult("\n".join(out).rstrip("\n"), {"lists": rows})
    if len(words) > 2:
        raise inv.syntax_error(words[2][1])
    address = dbg.evaluate(words[0][0], inv.args_offset + words[0][1])
    if len(words) == 2:
        option = dbg.evaluate(words[1][0], inv.args_offset + words[1][1])
        if option in (1, 2):
            raise inv.error(f"option {option} ({'reset counters' if option == 1 else 'set depth'}) changes the "
                            "machine: not supported", words[1][1])
        if option != 0:
            raise inv.error(f"unknown option {option} (0 display, 1 reset counters, 2 set depth)", words[1][1])
    lookaside = lists.get(address)
    if not isinstance(lookaside, LOOKASIDE_LIST_EX):
        raise inv.error(f"{addr64(address)} is not a lookaside list on {dbg.current_host} "
                        "(`!lookaside -all` lists them)", words[0][1])
    row = lookaside_row(lookaside)
    return CommandResult("\n".join(lookaside_lines(row)), row)
