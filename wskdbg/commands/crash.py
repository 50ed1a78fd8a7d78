"""Bug checks: .bugcheck, !analyze, !error."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stack.kernel.ntstatus import STATUS_NAMES

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.render.analyze import analyze_lines, bugcheck_lines

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
The banner, NAME (code) and description, the Arguments with their meanings, then Debugging
Details: FAULTING_IP, DEFAULT_BUCKET_ID, BUGCHECK_STR, PROCESS_NAME, CURRENT_IRQL, STACK_TEXT,
SYMBOL_NAME, MODULE_NAME, IMAGE_NAME, STACK_COMMAND, BUCKET_ID and Followup.  For 0x1E
(a Python exception inside emulated code) the exception is added as PYTHON_EXCEPTION.""")
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


# NTSTATUS messages (ntstatus.h MessageText), for the codes the emulator uses.
STATUS_MESSAGES = {
    0x00000000: "STATUS_SUCCESS",
    0x00000102: "{Timeout} The operation timed out.",
    0x00000103: "The operation that was requested is pending completion.",
    0x80000005: "{Buffer Overflow} The data was too large to fit into the specified buffer.",
    0x80000011: "{Device Busy} The device is currently busy.",
    0xC0000001: "{Operation Failed} The requested operation was unsuccessful.",
    0xC0000002: "{Not Implemented} The requested operation is not implemented.",
    0xC0000005: "Invalid access to memory location.",
    0xC0000008: "An invalid HANDLE was specified.",
    0xC000000D: "An invalid parameter was passed to a service or function.",
    0xC0000010: "The specified request is not a valid operation for the target device.",
    0xC0000011: "The end-of-file marker has been reached. There is no valid data in the file beyond this marker.",
    0xC0000016: "{Still Busy} The specified I/O request packet (IRP) cannot be disposed of because the I/O "
                "operation is not complete.",
    0xC0000017: "{Not Enough Quota} Not enough virtual memory or paging file quota is available to complete "
                "the specified operation.",
    0xC0000022: "{Access Denied} A process has requested access to an object, but has not been granted those "
                "access rights.",
    0xC0000023: "{Buffer Too Small} The buffer is too small to contain the entry. No information has been "
                "written to the buffer.",
    0xC0000034: "Object Name not found.",
    0xC0000035: "Object Name already exists.",
    0xC000009A: "Insufficient system resources exist to complete the API.",
    0xC00000A3: "The device is not ready.",
    0xC00000B5: "The specified I/O operation was not completed before the time-out period expired.",
    0xC00000B6: "The specified file has been closed by another process.",
    0xC00000BB: "The request is not supported.",
    0xC00000BC: "The remote computer is not available.",
    0xC00000D0: "The request was not accepted.",
    0xC0000120: "The I/O request was canceled.",
    0xC0000141: "The address handle given to the transport was invalid.",
    0xC0000184: "The device is not in a valid state to perform this request.",
    0xC000020A: "The address already exists.",
    0xC000020C: "The transport connection is now disconnected.",
    0xC000020D: "The transport connection was reset.",
    0xC000021B: "The data was not accepted.",
    0xC0000225: "The object was not found.",
    0xC0000236: "The transport connection attempt was refused by the remote system.",
    0xC0000237: "The transport connection was gracefully closed.",
    0xC0000239: "The transport address could not be opened because all the available addresses are in use.",
    0xC000023C: "The remote network is not reachable by the transport.",
    0xC000023D: "The remote system is not reachable by the transport.",
    0xC000023E: "The remote system does not support the transport protocol.",
    0xC000023F: "No service is operating at the destination port of the transport on the remote system.",
    0xC0000240: "The request was aborted.",
    0xC0000241: "The transport connection was aborted by the local system.",
    0xC00002B9: "The requested interface is not supported.",
}

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
         help="`!error c0000120` prints `Error code: (NTSTATUS) 0xc0000120 (3221225760) - The I/O request was "
              "canceled.`\nValues below 0x10000 are Win32 errors unless Flags is 1 (NTSTATUS).")
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
    suffix = f"  [{name}]" if name else ""
    return CommandResult(f"Error code: (NTSTATUS) {value:#x} ({value}) - {msg}{suffix}",
                         {"kind": "ntstatus", "value": value, "name": name})
