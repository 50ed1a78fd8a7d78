"""`dx`: display a typed C++ expression over emulated memory (the parser is wskdbg.dx)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wskdbg.commands.memory import ensure_layouts
from wskdbg.commands.registry import CommandResult, Invocation, command
from wskdbg.dx import DxError, Env, evaluate, parse_options, render
from wskdbg.expr import MemoryAccessError

if TYPE_CHECKING:
    from wskdbg.engine import Engine


def env_of(dbg: "Engine") -> Env:
    ctx = dbg.expr_context()
    k = dbg.kernel

    def read(address: int, size: int) -> bytes | None:
        try:
            return ctx.read_memory(address, size)
        except MemoryAccessError:
            return None

    def symbolize(address: int) -> str | None:
        name = k.symbol_for_address(address)
        return name if name and "!" in name else None

    return Env(read=read, register=ctx.register, symbol=ctx.symbol, symbolize=symbolize)


@command("dx", area="memory", syntax="dx [-r[N]] Expression",
         summary="Display a typed expression: casts, ->, ., [], linked lists (C++ syntax)",
         help="""
dx ((nt!_IRP*)0xffffc10a3b2f0000)->Tail.Overlay.CurrentStackLocation
dx -r2 *(nt!_MDL*)@$t0             (a structure, two levels deep)
dx ((nt!_DRIVER_OBJECT*)@$t0)->MajorFunction[14]
dx -r2 Debugger.Utility.Collections.FromListEntry(*(nt!_LIST_ENTRY*)@$t1, "nt!_T", "Links")
Numbers follow C++ (decimal unless 0x); registers (@rcx, @$t0, @$curthread) and symbols as in
`?`.  Types are the layouts dt knows.  Rows: `Name : value [Type: T]`; -rN expands N levels.""")
def cmd_dx(dbg: "Engine", inv: Invocation) -> CommandResult:
    ensure_layouts()
    opts = parse_options(inv.args)
    if not opts.expression:
        raise inv.error("an expression is required, e.g. dx ((nt!_IRP*)0x...)->Tail.Overlay.CurrentStackLocation",
                        len(inv.args))
    env = env_of(dbg)
    try:
        value = evaluate(opts.expression, env)
        lines = render(opts.expression, value, env, opts.recurse)
    except DxError as exc:
        raise inv.error(exc.message, opts.offset + exc.position) from None
    return CommandResult("\n".join(lines), {"type": value.type.text(), "address": value.address,
                                             "value": value.value if value.type.kind in ("scalar", "ptr") else None})
