"""Call stacks (`k` and its variants) and the register display (`r`), x64 shapes.

The renderers take plain frame records (anything with `symbol`, `call_site`,
`child_sp`, `ret_addr`, `args`) so REPL, TUI and batch runs print the same text.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from wskdbg.render.fmt import addr64

K_HEADER = "Child-SP          RetAddr           Call Site"
KB_HEADER = "Child-SP          RetAddr           : Args to Child                                                           : Call Site"


def arg_value(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value & 0xFFFFFFFFFFFFFFFF
    return (getattr(value, "address", 0) or 0) & 0xFFFFFFFFFFFFFFFF


def four_args(args: Sequence[Any]) -> list[int]:
    vals = [arg_value(a) for a in list(args)[:4]]
    return vals + [0] * (4 - len(vals))


def param_text(value: Any) -> str:
    """One parameter as `kp` shows it."""
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"')[:40] + '"'
    if value is None:
        return "0x00000000`00000000"
    return f"0x{addr64(arg_value(value))}"


def format_k(frames: Iterable[Any], options: str = "", count: int | None = None) -> list[str]:
    """`k`, `kn`, `kb`, `kc`, `kp`, `kv` (options are the letters after k)."""
    numbered = "n" in options
    rows = list(frames)[: count if count is not None else None]
    if "c" in options:
        lines = [(" # " if numbered else "") + "Call Site"]
        for i, f in enumerate(rows):
            lines.append((f"{i:02x} " if numbered else "") + f.symbol)
        return lines
    if "b" in options or "v" in options:
        lines = [(" # " if numbered else "") + KB_HEADER]
        for i, f in enumerate(rows):
            a = four_args(f.args)
            args = " ".join(addr64(x) for x in a)
            lines.append((f"{i:02x} " if numbered else "") +
                         f"{addr64(f.child_sp)} {addr64(f.ret_addr)} : {args} : {f.call_site}")
        return lines
    lines = [(" # " if numbered else "") + K_HEADER]
    for i, f in enumerate(rows):
        site = f.call_site
        if "p" in options:
            site = f"{f.symbol}(" + ", ".join(param_text(a) for a in f.args) + ")" + (
                f"+{f.offset:#x}" if getattr(f, "offset", 0) else "")
        lines.append((f"{i:02x} " if numbered else "") + f"{addr64(f.child_sp)} {addr64(f.ret_addr)} {site}")
    return lines


def format_registers(regs: dict[str, int], symbol_line: str, location_line: str, extra: str) -> list[str]:
    """The x64 kernel `r` layout, then our line with IRQL, thread and position."""
    def r(name: str) -> str:
        return f"{name}={regs.get(name, 0):016x}"

    lines = [
        " ".join(r(n) for n in ("rax", "rbx", "rcx")),
        " ".join(r(n) for n in ("rdx", "rsi", "rdi")),
        " ".join(r(n) for n in ("rip", "rsp", "rbp")),
        " " + " ".join(r(n) for n in ("r8", "r9", "r10")),
        " ".join(r(n) for n in ("r11", "r12", "r13")),
        " ".join(r(n) for n in ("r14", "r15")),
        "iopl=0         nv up ei pl nz na pe nc",
        f"cs=0010  ss=0018  ds=002b  es=002b  fs=0053  gs=002b             efl={regs.get('efl', 0x202):08x}",
        extra,
        f"{symbol_line}:",
        location_line,
    ]
    return lines
