"""Symbols: x (examine symbols), ln (nearest symbols), dps / dqs / dds (memory with symbols).

Each loaded image's symbols are its routines (`Module.symbols`, routine -> address) plus any
data symbols a layer publishes there.  Emulated routines are Python, so where WinDbg prints a
private symbol's parameter types (`ECHO!EchoEvtDeviceAdd (struct WDFDRIVER__ *, ...)`) we print
the routine's parameter names, the way its source declares them.
"""

from __future__ import annotations

import fnmatch

from typing import TYPE_CHECKING

from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command, tokenize
from wskdbg.expr import ExprError, parse_address_range
from wskdbg.render.fmt import addr64
from wskdbg.source import options as source_options
from wskdbg.source import routine_source

if TYPE_CHECKING:
    from stack.kernel.kernel import Kernel, Module

    from wskdbg.engine import Engine


def signature_text(symbol: str) -> str:
    """`(SocketContext, Flags, ...)` for a Python routine, `(<no parameter info>)` for the rest."""
    routine = routine_source(symbol)
    if routine is None:
        return "(<no parameter info>)"
    return "(" + ", ".join(routine.params) + ")"


def _module_symbols(k: "Kernel", mod: "Module") -> list[tuple[int, str]]:
    from stack.kernel.symbols import CATALOG
    for routine in CATALOG.get(mod.name, ()):  # a catalog routine always has its slot
        k.symbol_address(f"{mod.name}!{routine}")
    return sorted((address, f"{mod.name}!{name}") for name, address in mod.symbols.items())


_X_OPTIONS = {"/0", "/1", "/2", "/a", "/A", "/n", "/N", "/f", "/d", "/p", "/q"}


@command("x", area="inspection", syntax="x [/0|/1|/2] [/a|/A|/n|/N] Module!Symbol",
         summary="Examine symbols: list the symbols that match a pattern",
         help="""
`x echosrv!WskSample*`, `x afd!*Receive*`, `x *!DriverEntry`: both halves take wildcards
(* ? [..], case-insensitive).  Rows are `address module!Name (parameters)`; the parameters are the
emulated routine's own names (Python carries no C types).  /0 addresses only, /1 names only,
/2 address and name; /a /A sort by address (the default is ascending address), /n /N by name.""")
def cmd_x(dbg: "Engine", inv: Invocation) -> CommandResult:
    opts: set[str] = set()
    pattern = None
    for word, at in tokenize(inv.args):
        if word.startswith("/") and pattern is None:
            if word not in _X_OPTIONS:
                raise inv.error(f"unknown option '{word}' (x takes /0 /1 /2 /a /A /n /N)", at)
            opts.add(word)
        elif pattern is None:
            pattern = (word, at)
        else:
            raise inv.syntax_error(at)
    if pattern is None:
        raise inv.error("a pattern is required, e.g. x echosrv!WskSample*", len(inv.args))
    text, at = pattern
    if "!" not in text:
        raise inv.error(f"x needs Module!Symbol (e.g. x echosrv!{text}); a routine's locals: dv", at)
    mod_pat, _, sym_pat = text.partition("!")
    mod_pat = mod_pat or "*"
    k = dbg.kernel
    mods = [m for m in k.modules if fnmatch.fnmatchcase(m.name.lower(), mod_pat.lower())]
    if not mods and not any(c in mod_pat for c in "*?["):
        raise inv.error(f"Couldn't resolve error at '{text}' (module {mod_pat} is not loaded)", at)
    rows = []
    for mod in mods:
        for address, symbol in _module_symbols(k, mod):
            if fnmatch.fnmatchcase(symbol.partition("!")[2].lower(), sym_pat.lower()):
                rows.append((address, symbol))
    if "/n" in opts or "/N" in opts:
        rows.sort(key=lambda r: r[1].lower(), reverse="/N" in opts)
    elif "/A" in opts:
        rows.sort(reverse=True)
    lines = []
    for address, symbol in rows:
        if "/0" in opts:
            lines.append(addr64(address))
        elif "/1" in opts:
            lines.append(symbol)
        elif "/2" in opts:
            lines.append(f"{addr64(address)} {symbol}")
        else:
            lines.append(f"{addr64(address)} {symbol} {signature_text(symbol)}")
        dbg.note_address(addr64(address))
    return CommandResult("\n".join(lines), {"symbols": [{"address": a, "name": s} for a, s in rows]})


def nearest(k: "Kernel", address: int) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
    """The symbol at or below `address` and the next one above it, inside the image holding it."""
    for mod in k.modules:
        if mod.contains(address):
            syms = _module_symbols(k, mod)
            below = [s for s in syms if s[0] <= address]
            above = [s for s in syms if s[0] > address]
            return (below[-1] if below else None), (above[0] if above else None)
    return None, None


def _source_prefix(dbg: "Engine", symbol: str) -> str:
    if not source_options(dbg)["lines"]:
        return ""
    routine = routine_source(symbol)
    return "" if routine is None else f"[{routine.file} @ {routine.def_line}] "


@command("ln", area="inspection", syntax="ln Address",
         summary="List the nearest symbols to an address",
         help="""
`(address)   module!Name+0xNN   |  (address)   module!Next`, then `Exact matches:` and the
routine with its parameters when Address is a routine's first byte.  With .lines on, the line
starts with [file @ line].  ln takes any expression: `ln poi(@rsp)`, `ln @$ra`.""")
def cmd_ln(dbg: "Engine", inv: Invocation) -> CommandResult:
    if not inv.args:
        raise inv.error("an address is required", 0)
    address = dbg.evaluate(inv.args, inv.args_offset)
    k = dbg.kernel
    below, above = nearest(k, address)
    if below is None and above is None:
        return CommandResult(f"No symbols found near {addr64(address)} (it is not in a loaded image)",
                             {"address": address, "symbol": None})
    lines = []
    if below is not None:
        delta = address - below[0]
        site = below[1] if delta == 0 else f"{below[1]}+{delta:#x}"
        line = f"{_source_prefix(dbg, below[1])}({addr64(below[0])})   {site}"
        if above is not None:
            line += f"   |  ({addr64(above[0])})   {above[1]}"
    else:
        assert above is not None
        line = f"|  ({addr64(above[0])})   {above[1]}"
    lines.append(line)
    exact = below is not None and below[0] == address
    if exact:
        lines += ["Exact matches:", f"    {below[1]} {signature_text(below[1])}"]
    return CommandResult("\n".join(lines), {"address": address, "symbol": below[1] if below else None,
                                             "offset": address - below[0] if below else None,
                                             "next": above[1] if above else None, "exact": exact})


# --- dps / dqs / dds -----------------------------------------------------------------------------

_UNIT = {"dps": 8, "dqs": 8, "dds": 4}


@command("dps", "dqs", "dds", area="memory", syntax="d{p|q|d}s [Range]",
         summary="Display pointers (dps, dqs) or dwords (dds) with the symbols they point at",
         help="""
Rows `address  value symbol`: each pointer-sized (dds: 4-byte) value, followed by module!Name+0xNN
when it points into a loaded image.  Range as for d*: `addr` (0x80 bytes), `addr L count`,
`addr end`; with no range it continues where the last one ended.  Typical: `dps @rsp`,
`dps poi(@$t0+4*@$ptrsize) L1`, a driver object's dispatch table `dps <drvobj>+70 L1c`.""")
def cmd_dps(dbg: "Engine", inv: Invocation) -> CommandResult:
    kind = inv.name.lower()
    unit = _UNIT[kind]
    if inv.args:
        try:
            start, count = parse_address_range(inv.args, dbg.expr_context(), 0x80, unit, radix=dbg.radix)
        except ExprError as exc:
            raise CommandError(exc.message, inv.args_offset + exc.position) from None
    else:
        last = dbg.state.get("dps")
        if last is None:
            raise inv.error("no address to continue from: give one, e.g. dps @rsp", 0)
        start, count = last, 0x80 // unit
    k = dbg.kernel
    length = count * unit
    cells = k.mem.read_partial(start, length) if start + length <= 1 << 64 else [None] * length
    lines = []
    rows = []
    for i in range(count):
        address = start + i * unit
        chunk = cells[i * unit:(i + 1) * unit]
        if any(c is None for c in chunk):
            lines.append(f"{addr64(address)}  " + ("????????`????????" if unit == 8 else "????????"))
            rows.append({"address": address, "value": None, "symbol": None})
            continue
        value = int.from_bytes(bytes(chunk), "little")  # type: ignore[arg-type]
        text = addr64(value) if unit == 8 else f"{value:08x}"
        symbol = k.symbol_for_address(value) if value else None
        lines.append(f"{addr64(address)}  {text}" + (f" {symbol}" if symbol else ""))
        rows.append({"address": address, "value": value, "symbol": symbol})
    dbg.state["dps"] = start + length
    dbg.note_address(addr64(start))
    return CommandResult("\n".join(lines), {"rows": rows})



