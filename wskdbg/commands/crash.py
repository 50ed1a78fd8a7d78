"""Bug checks: .bugcheck, !analyze, !error."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stack.kernel.ntstatus import STATUS_NAMES

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.render.analyze import analyze_lines, bugcheck_lines
from wskdbg.render.ntstatus_text import STATUS_MESSAGES

if TYPE_CHECKING:
    from wskdbg.engine import Engine


@command(".bugcheck", area="crash", syntax=".bugcheck", summary="Show the bug check code and its four arguments",
         help="`Bugcheck code 00000044` and `Arguments ...` (zeros while the machine has not bug-checked).")
def cmd_bugcheck(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    info = dbg.scheduler.halted
    if info is None:
        return CommandResult("\n".join(bugcheck_lines(0, (0, 0, 0, 0))), {"code": 0, "params": [0, 0, 0, 0]})
    return CommandResult("\n".join(bugcheck_lines(info.code, info.params)),
                         {"code": info.code, "name": info.name, "params": list(info.params), "host": info.host})


@command("!analyze", area="crash", syntax="!analyze [-v]", summary="Analyze the bug check",
         help="""
The Bugcheck Analysis banner, NAME (code) with the debugger's whole description, the Arguments
(a reserved one prints bare), then Debugging Details in the current debugger's order:
BUGCHECK_CODE, BUGCHECK_P1..P4, PROCESS_NAME, STACK_TEXT (from nt!KeBugCheckEx), SYMBOL_NAME,
MODULE_NAME, IMAGE_NAME, STACK_COMMAND, BUCKET_ID_FUNC_OFFSET, FAILURE_BUCKET_ID, OSPLATFORM_TYPE
and Followup.  Keys the debugger reads from a dump or the OS (OS_VERSION, FAILURE_ID_HASH ...) are
left out rather than invented.  What only the emulator knows is labelled as its own: for 0x1E (a
Python exception inside emulated code) PYTHON_EXCEPTION and PYTHON_STACK, else EMULATOR_NOTE.""")
def cmd_analyze(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    verbose = False
    for word, at in words:
        if word.lower().startswith("-v"):
            verbose = True
        else:
            raise inv.error(f"unknown option '{word}' (this !analyze knows -v)", at)
    info = dbg.scheduler.halted
    if info is None:
        return CommandResult("The machine has not bug-checked: there is nothing to analyze.", {"code": None})
    k = dbg.kernel_of(info.host)
    frames = dbg.stack(info.host)
    images = {m.name: m.image for m in k.modules}
    lines = analyze_lines(info, frames, images, verbose)
    return CommandResult("\n".join(lines), {"code": info.code, "name": info.name, "params": list(info.params),
                                             "host": info.host, "faulting_symbol": info.faulting_symbol,
                                             "frames": [f.symbol for f in frames], "detail": info.detail})


WIN32_MESSAGES = {
    0: "The operation completed successfully.",
    1: "Incorrect function.",
    2: "The system cannot find the file specified.",
    5: "Access is denied.",
    6: "The handle is invalid.",
    8: "Not enough memory resources are available to process this command.",
    87: "The parameter is incorrect.",
    997: "Overlapped I/O operation is in progress.",
    10054: "An existing connection was forcibly closed by the remote host.",
    10060: "A connection attempt failed because the connected party did not properly respond after a period "
           "of time.",
    10061: "No connection could be made because the target machine actively refused it.",
}


@command("!error", area="crash", syntax="!error Value [Flags]", summary="Explain an NTSTATUS or Win32 error code",
         help="`!error c000021b` prints `Error code: (NTSTATUS) 0xc000021b (3221226011) - {Data Not Accepted} The "
              "TDI client could not\nhandle the data received during an indication.` (the system message table's "
              "text).\nValues below 0x10000 are Win32 errors unless Flags is 1 (NTSTATUS).")
def cmd_error(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        raise inv.error("an error value is required", 0)
    if len(words) > 2:
        raise inv.syntax_error(words[2][1])
    value = dbg.evaluate(words[0][0], inv.args_offset + words[0][1]) & 0xFFFFFFFF
    force_nt = len(words) == 2 and dbg.evaluate(words[1][0], inv.args_offset + words[1][1]) == 1
    if value < 0x10000 and not force_nt:
        msg = WIN32_MESSAGES.get(value, "<Unable to get error code text>")
        return CommandResult(f"Error code: (Win32) {value:#x} ({value}) - {msg}", {"kind": "win32", "value": value})
    name = STATUS_NAMES.get(value)
    msg = STATUS_MESSAGES.get(value, "<Unable to get error code text>")
    return CommandResult(f"Error code: (NTSTATUS) {value:#x} ({value}) - {msg}",
                         {"kind": "ntstatus", "value": value, "name": name, "message": msg})
