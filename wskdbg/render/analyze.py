"""`.bugcheck` and `!analyze [-v]` in WinDbg's layout."""

from __future__ import annotations

import re
from typing import Any, Sequence

from stack.kernel.bugcheck import BUGCHECK_HELP, argument_meanings
from stack.kernel.irql import irql_name

from wskdbg.render.fmt import addr64, addr64_nobt
from wskdbg.render.stack import format_k

BANNER = [
    "*" * 79,
    "*" + " " * 77 + "*",
    "*" + "Bugcheck Analysis".center(77) + "*",
    "*" + " " * 77 + "*",
    "*" * 79,
]


def bugcheck_lines(code: int, params: Sequence[int]) -> list[str]:
    return [f"Bugcheck code {code:08x}", "Arguments " + " ".join(addr64(p) for p in params)]


def _module_of(symbol: str) -> str:
    return symbol.partition("!")[0] if "!" in symbol else symbol


def python_exception_note(detail: str) -> list[str]:
    """The exception line and the Python frames (file names only, no host paths or line numbers)."""
    if not detail:
        return []
    first = detail.splitlines()[0]
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', detail)
    out = ["PYTHON_EXCEPTION:  " + first, ""]
    if frames:
        out.append("PYTHON_STACK:")
        for path, fn in frames[-8:]:
            out.append(f"    {path.replace(chr(92), '/').rsplit('/', 1)[-1]} in {fn}")
        out.append("")
    return out


def analyze_lines(info: Any, frames: Sequence[Any], image_of: dict[str, str], verbose: bool) -> list[str]:
    """The `!analyze` report.  `frames` are the crash stack rows (nt!KeBugCheckEx first)."""
    description = BUGCHECK_HELP.get(info.code, ("", ()))[0]
    # Verifier codes: Arg1 is a subcode that decides what Arg2..Arg4 mean.
    arg_meanings = argument_meanings(info.code, info.params)
    culprit = info.faulting_symbol
    module = _module_of(culprit)
    image = image_of.get(module, f"{module}.sys")
    bucket = f"0x{info.code:X}_{culprit}"
    if not verbose:
        return BANNER + ["", "Use !analyze -v to get detailed debugging information.", "",
                         f"BugCheck {info.code:X}, {{{', '.join(f'{p:x}' for p in info.params)}}}", "",
                         f"Probably caused by : {image} ( {culprit} )", "", "Followup:     MachineOwner",
                         "---------"]
    lines = BANNER + ["", f"{info.name} ({info.code:x})"]
    lines += description.splitlines() if description else ["(no description for this bug check code)"]
    lines.append("Arguments:")
    for i, (p, meaning) in enumerate(zip(info.params, arg_meanings), start=1):
        lines.append(f"Arg{i}: {addr64_nobt(p)}, {meaning}".rstrip(", ").rstrip())
    faulting = next((f for f in frames if f.symbol == culprit), frames[0] if frames else None)
    lines += ["", "Debugging Details:", "------------------", ""]
    if faulting is not None:
        lines += ["FAULTING_IP: ", f"{faulting.symbol}+{faulting.offset:x}",
                  f"{addr64(faulting.location)} [{info.host}] {faulting.symbol}", ""]
    lines += ["DEFAULT_BUCKET_ID:  DRIVER_FAULT", "", f"BUGCHECK_STR:  0x{info.code:X}", "",
              f"PROCESS_NAME:  {info.process}", "", f"CURRENT_IRQL:  {info.irql:x} ({irql_name(info.irql)})", "",
              f"CURRENT_THREAD:  {addr64_nobt(info.thread)} ({info.thread_name})", "",
              f"HOST:  {info.host}", ""]
    if info.code == 0x1E:
        lines += python_exception_note(info.detail)
    elif info.detail:
        lines += ["EMULATOR_NOTE:  " + info.detail.splitlines()[0], ""]
    if len(frames) > 1:
        lines += [f"LAST_CONTROL_TRANSFER:  from {addr64(frames[1].location)} to {addr64(frames[0].location)}", ""]
    lines.append("STACK_TEXT:  ")
    lines += format_k(frames, "b")[1:]
    lines += ["", f"SYMBOL_NAME:  {culprit}+{faulting.offset:x}" if faulting else f"SYMBOL_NAME:  {culprit}", "",
              f"MODULE_NAME: {module}", "", f"IMAGE_NAME:  {image}", "",
              "STACK_COMMAND:  .thread ; .cxr ; kb", "", f"BUCKET_ID:  {bucket}", "",
              "Followup:     MachineOwner", "---------"]
    return lines
