"""Call stacks (`k` and its variants) and the register display (`r`), x64 shapes.

Current WinDbg numbers the frames of every `k` variant by default, and pads the RetAddr
column to 22 characters (a 17-character address and five spaces) so that inline frames
(`(Inline Function) --------`--------`) line up::

     # Child-SP          RetAddr               Call Site
    00 fffff508`1b4a6dc0 fffff805`72502487     CI!CiValidateImagePages+0x360

`kb`/`kv` put the four home-space arguments between the columns and the call site
(`: Args to Child ... : Call Site`); `!analyze -v` (STACK_TEXT) and `!thread` print the
same rows without the frame number.  The renderers take plain frame records (anything
with `symbol`, `call_site`, `child_sp`, `ret_addr`, `args`) so REPL, TUI and batch runs
print the same text.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from wskdbg.render.fmt import addr64

NUMBER_COLUMN = " # "
K_HEADER = "Child-SP          RetAddr               Call Site"
KB_HEADER = ("Child-SP          RetAddr               : Args to Child"
             "                                                           : Call Site")


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


def _columns(f: Any) -> str:
    """`Child-SP RetAddr` padded as WinDbg pads it (RetAddr is a 22-character column)."""
    return f"{addr64(f.child_sp)} {addr64(f.ret_addr):<22}"


def stack_text_row(f: Any) -> str:
    """One `kb` row without the frame number (STACK_TEXT, `!thread`)."""
    args = " ".join(addr64(x) for x in four_args(f.args))
    return f"{_columns(f)}: {args} : {f.call_site}"


def format_k(frames: Iterable[Any], options: str = "", count: int | None = None,
             numbered: bool = True) -> list[str]:
    """`k`, `kn`, `kb`, `kc`, `kp`, `kv` (options are the letters after k).

    Every variant numbers its frames, as current WinDbg does by default (`kn` is the
    same as `k`); `numbered=False` gives the unnumbered rows of STACK_TEXT and `!thread`.
    """
    rows = list(frames)[: count if count is not None else None]
    prefix = (lambda i: f"{i:02x} ") if numbered else (lambda i: "")
    head = NUMBER_COLUMN if numbered else ""
    if "c" in options:
        # `kc` is module!function only, without offsets (" # Call Site" / "00 ntdll!NtWaitForSingleObject").
        return [head + "Call Site"] + [prefix(i) + f.symbol for i, f in enumerate(rows)]
    if "b" in options or "v" in options:
        return [head + KB_HEADER] + [prefix(i) + stack_text_row(f) for i, f in enumerate(rows)]
    lines = [head + K_HEADER]
    for i, f in enumerate(rows):
        site = f.call_site
        if "p" in options:
            site = f"{f.symbol}(" + ", ".join(param_text(a) for a in f.args) + ")" + (
                f"+{f.offset:#x}" if getattr(f, "offset", 0) else "")
        lines.append(prefix(i) + f"{_columns(f)}{site}")
    return lines


def format_registers(regs: dict[str, int], symbol_line: str, location_line: str) -> list[str]:
    """The x64 kernel `r` block exactly as KD prints it; nothing of our own is added (the
    REPL and TUI status lines carry the IRQL, thread and host)::

        rax=fffff800411cbf70 rbx=fffff8003f637240 rcx=fffff8004150b2e0
        rdx=0000000000000000 rsi=fffff800436a8e80 rdi=fffff8003f634180
        rip=fffff800411cbf70 rsp=fffff800436a8ba8 rbp=fffff800436a8cb0
         r8=0000000000000000  r9=0000000000000000 r10=fffff800411cbf70
        r11=0000000000000000 r12=00000de72daeb7b4 r13=0000000000000000
        r14=fffff8004150b2e0 r15=fffff80041509b50
        iopl=0         nv up ei pl zr na po nc
        cs=0010  ss=0018  ds=002b  es=002b  fs=0053  gs=002b             efl=00000246
        nt!KdpTimeSlipDpcRoutine:
        fffff800`411cbf70 4883ec28        sub     rsp,28h
    """
    def r(name: str) -> str:
        return f"{name:>3}={regs.get(name, 0):016x}"

    return [
        " ".join(r(n) for n in ("rax", "rbx", "rcx")),
        " ".join(r(n) for n in ("rdx", "rsi", "rdi")),
        " ".join(r(n) for n in ("rip", "rsp", "rbp")),
        " ".join(r(n) for n in ("r8", "r9", "r10")),
        " ".join(r(n) for n in ("r11", "r12", "r13")),
        " ".join(r(n) for n in ("r14", "r15")),
        "iopl=0         nv up ei pl nz na pe nc",
        f"cs=0010  ss=0018  ds=002b  es=002b  fs=0053  gs=002b             efl={regs.get('efl', 0x202):08x}",
        f"{symbol_line}:",
        location_line,
    ]
