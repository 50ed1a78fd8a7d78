"""Bug checks: the emulated machine stops with a real code and four parameters.

`KeBugCheckEx` raises `KernelBugCheck`, a BaseException so that a driver's
`except Exception` cannot swallow it; the scheduler catches it at the event
boundary, records a `BugCheckInfo` and halts the world.  Nothing escapes to
the debugger: it inspects the frozen machine instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IRQL_NOT_GREATER_OR_EQUAL = 0x09
IRQL_NOT_LESS_OR_EQUAL = 0x0A
SPIN_LOCK_ALREADY_OWNED = 0x0F
KMODE_EXCEPTION_NOT_HANDLED = 0x1E
NO_MORE_IRP_STACK_LOCATIONS = 0x35
MULTIPLE_IRP_COMPLETE_REQUESTS = 0x44
PAGE_FAULT_IN_NONPAGED_AREA = 0x50
PROCESS_HAS_LOCKED_PAGES = 0x76
BAD_POOL_CALLER = 0xC2
DRIVER_VERIFIER_DETECTED_VIOLATION = 0xC4
IRQL_UNEXPECTED_VALUE = 0xC8
DRIVER_VERIFIER_IOMANAGER_VIOLATION = 0xC9
DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS = 0xCE
DRIVER_IRQL_NOT_LESS_OR_EQUAL = 0xD1
WORKER_THREAD_RETURNED_AT_BAD_IRQL = 0xE1
MANUALLY_INITIATED_CRASH = 0xE2
DPC_WATCHDOG_VIOLATION = 0x133

BUGCHECK_NAMES = {
    IRQL_NOT_GREATER_OR_EQUAL: "IRQL_NOT_GREATER_OR_EQUAL",
    IRQL_NOT_LESS_OR_EQUAL: "IRQL_NOT_LESS_OR_EQUAL",
    SPIN_LOCK_ALREADY_OWNED: "SPIN_LOCK_ALREADY_OWNED",
    KMODE_EXCEPTION_NOT_HANDLED: "KMODE_EXCEPTION_NOT_HANDLED",
    NO_MORE_IRP_STACK_LOCATIONS: "NO_MORE_IRP_STACK_LOCATIONS",
    MULTIPLE_IRP_COMPLETE_REQUESTS: "MULTIPLE_IRP_COMPLETE_REQUESTS",
    PAGE_FAULT_IN_NONPAGED_AREA: "PAGE_FAULT_IN_NONPAGED_AREA",
    PROCESS_HAS_LOCKED_PAGES: "PROCESS_HAS_LOCKED_PAGES",
    BAD_POOL_CALLER: "BAD_POOL_CALLER",
    DRIVER_VERIFIER_DETECTED_VIOLATION: "DRIVER_VERIFIER_DETECTED_VIOLATION",
    IRQL_UNEXPECTED_VALUE: "IRQL_UNEXPECTED_VALUE",
    DRIVER_VERIFIER_IOMANAGER_VIOLATION: "DRIVER_VERIFIER_IOMANAGER_VIOLATION",
    DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS: "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS",
    DRIVER_IRQL_NOT_LESS_OR_EQUAL: "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
    WORKER_THREAD_RETURNED_AT_BAD_IRQL: "WORKER_THREAD_RETURNED_AT_BAD_IRQL",
    MANUALLY_INITIATED_CRASH: "MANUALLY_INITIATED_CRASH",
    DPC_WATCHDOG_VIOLATION: "DPC_WATCHDOG_VIOLATION",
}

# Driver Verifier subcodes (Parameter 1 of 0xC4) with the values Windows documents for
# Bug Check 0xC4; the comment gives Parameters 2..4.
C4_RAISE_IRQL_INVALID = 0x30  # current IRQL, requested IRQL, 0
C4_LOWER_IRQL_INVALID = 0x31  # current IRQL, requested IRQL, 0
C4_POOL_LEAK_ON_UNLOAD = 0x62  # driver, reserved, allocations not freed
C4_UNLOCK_NOT_LOCKED = 0x7C  # MDL, MDL flags, 0: MmUnlockPages on pages never locked
C4_UNLOCK_NONPAGED_POOL_MDL = 0x7D  # MDL, MDL flags, 0: MmUnlockPages on nonpaged-pool pages
C4_BUILD_MDL_FOR_PAGED_POOL = 0x7F  # IRQL, MDL, MDL flags: MmBuildMdlForNonPagedPool on paged pool
C4_PROBE_NONPAGED_MDL = 0xB0  # MDL, MDL flags, incorrect flags: MmProbeAndLockPages
C4_UNLOCK_PARTIAL_MDL = 0xB4  # MDL, MDL flags, MDL_PARTIAL: MmUnlockPages on a partial MDL
C4_MDL_FREED_MAPPED = 0xB8  # MDL, MDL flags, reserved: IoFreeMdl while still mapped

# Emulator-defined 0xC4 subcodes: rules the emulator enforces for which Windows documents
# no Driver Verifier subcode.  `!analyze -v` labels them "emulator-defined subcode".
EMU_C4_MDL_FREED_LOCKED = 0x1040  # MDL, pages still locked, 0: IoFreeMdl with MDL_PAGES_LOCKED set
EMU_C4_PARTIAL_MDL_OUT_OF_RANGE = 0x1043  # source MDL, VirtualAddress, Length: IoBuildPartialMdl
EMU_C4_PARTIAL_MDL_TOO_SMALL = 0x1044  # target MDL, pages needed, pages available: IoBuildPartialMdl
EMU_C4_MDL_READ_CHAIN_NOT_NULL = 0x1045  # file object, *MdlChain, 0: FsRtlMdlReadEx

C9_FREE_IRP_WITH_THREAD = 0x02
C9_COMPLETE_PENDING = 0x06
C9_CALL_ABOVE_DISPATCH = 0x10


@dataclass(frozen=True, slots=True)
class SubcodeHelp:
    """What Parameter 1 of a verifier bug check means, and Parameters 2..4 with it."""

    summary: str
    args: tuple[str, str, str]
    emulator_defined: bool = False

    @property
    def arg1(self) -> str:
        return f"emulator-defined subcode: {self.summary}" if self.emulator_defined else self.summary


SUBCODE_HELP: dict[int, dict[int, SubcodeHelp]] = {
    DRIVER_VERIFIER_DETECTED_VIOLATION: {
        C4_RAISE_IRQL_INVALID: SubcodeHelp(
            "KeRaiseIrql was passed an IRQL lower than the current one.", ("Current IRQL", "Requested IRQL", "")),
        C4_LOWER_IRQL_INVALID: SubcodeHelp(
            "KeLowerIrql was passed an IRQL higher than the current one.", ("Current IRQL", "Requested IRQL", "")),
        C4_POOL_LEAK_ON_UNLOAD: SubcodeHelp(
            "The driver is unloading without first freeing its pool allocations.",
            ("Driver object", "Reserved", "Allocations that were not freed")),
        C4_UNLOCK_NOT_LOCKED: SubcodeHelp(
            "MmUnlockPages was passed an MDL whose pages were never successfully locked.",
            ("MDL address", "MDL flags", "")),
        C4_UNLOCK_NONPAGED_POOL_MDL: SubcodeHelp(
            "MmUnlockPages was passed an MDL whose pages are from nonpaged pool.",
            ("MDL address", "MDL flags", "")),
        C4_BUILD_MDL_FOR_PAGED_POOL: SubcodeHelp(
            "MmBuildMdlForNonPagedPool was passed an MDL whose pages are from paged pool.",
            ("Current IRQL", "MDL address", "MDL flags")),
        C4_PROBE_NONPAGED_MDL: SubcodeHelp(
            "MmProbeAndLockPages was called for an MDL with incorrect flags.",
            ("MDL address", "MDL flags", "Incorrect MDL flags")),
        C4_UNLOCK_PARTIAL_MDL: SubcodeHelp(
            "MmUnlockPages was called for a partial MDL.",
            ("MDL address", "MDL flags", "Unexpected partial MDL flag")),
        C4_MDL_FREED_MAPPED: SubcodeHelp(
            "The pages described by the MDL are still mapped; unmap them before IoFreeMdl.",
            ("MDL address", "MDL flags", "Reserved")),
        0xCA: SubcodeHelp(
            "The driver has attempted to re-initialize a lookaside list.",
            ("Address of the lookaside list", "Reserved", "Reserved")),
        0xCB: SubcodeHelp(
            "The driver has attempted to delete an uninitialized lookaside list.",
            ("Address of the lookaside list", "Reserved", "Reserved")),
        0xCC: SubcodeHelp(
            "The driver has attempted to free a pool allocation that contains an active lookaside list.",
            ("Address of the lookaside list", "Starting address of the pool allocation",
             "Size of the pool allocation")),
        0x1050: SubcodeHelp(
            "ExAllocateFromLookasideListEx or ExFreeToLookasideListEx on a lookaside list that is not "
            "initialized (deleted, or never set up).",
            ("Address of the lookaside list", "Entry being freed (0 for an allocation)", ""),
            emulator_defined=True),
        EMU_C4_MDL_FREED_LOCKED: SubcodeHelp(
            "IoFreeMdl was called on an MDL whose pages are still locked (call MmUnlockPages first).",
            ("MDL address", "Number of locked pages", ""), emulator_defined=True),
        EMU_C4_PARTIAL_MDL_OUT_OF_RANGE: SubcodeHelp(
            "IoBuildPartialMdl was asked for a range outside the source MDL.",
            ("Source MDL address", "VirtualAddress", "Length"), emulator_defined=True),
        EMU_C4_PARTIAL_MDL_TOO_SMALL: SubcodeHelp(
            "IoBuildPartialMdl was given a target MDL too small for the range.",
            ("Target MDL address", "Pages needed", "Pages the target can describe"), emulator_defined=True),
        EMU_C4_MDL_READ_CHAIN_NOT_NULL: SubcodeHelp(
            "FsRtlMdlReadEx was called with *MdlChain not NULL (MS Learn: it must be initialized to NULL).",
            ("File object address", "The MDL *MdlChain pointed to", ""), emulator_defined=True),
    },
    DRIVER_VERIFIER_IOMANAGER_VIOLATION: {
        C9_FREE_IRP_WITH_THREAD: SubcodeHelp(
            "The driver attempted to free an IRP that is still associated with a thread.",
            ("Address of IRP being freed", "", "")),
        C9_COMPLETE_PENDING: SubcodeHelp(
            "IoCompleteRequest was called with a status marked as pending.",
            ("IRP status", "Address of IRP being completed", "")),
        C9_CALL_ABOVE_DISPATCH: SubcodeHelp(
            "IoCallDriver was called above DISPATCH_LEVEL.", ("Current IRQL", "Reserved", "Reserved")),
    },
    # Bug Check 0x133 (MS Learn): Parameter 1 says which watchdog fired
    DPC_WATCHDOG_VIOLATION: {
        0: SubcodeHelp(
            "A single DPC or ISR exceeded its time allotment. The offending\n"
            "component can usually be identified with a stack trace.",
            ("The DPC time count (in ticks).", "The DPC time allotment (in ticks).", "Reserved")),
        1: SubcodeHelp(
            "The system cumulatively spent an extended period of time at\n"
            "DISPATCH_LEVEL or above.",
            ("The watchdog period (in ticks).", "cast to nt!DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK, which contains\n"
             "additional information regarding the cumulative timeout", "Reserved")),
    },
}


def subcode_help(code: int, subcode: int) -> SubcodeHelp | None:
    """The documented (or emulator-defined) meaning of Parameter 1, if the code has subcodes."""
    return SUBCODE_HELP.get(code, {}).get(subcode)


# A short explanation of each code and its parameters, in the style `!analyze -v` prints.
BUGCHECK_HELP: dict[int, tuple[str, tuple[str, str, str, str]]] = {
    # The texts of 0xA, 0xD1, 0x44, 0x1E, 0xC2, 0xC4 and 0xC9 are the debugger's own, word for
    # word, as published `!analyze -v` captures print them.
    IRQL_NOT_LESS_OR_EQUAL: (
        "An attempt was made to access a pageable (or completely invalid) address at an\n"
        "interrupt request level (IRQL) that is too high.  This is usually\n"
        "caused by drivers using improper addresses.\n"
        "If a kernel debugger is available get the stack backtrace.",
        ("memory referenced", "IRQL",
         "bitfield :\n\tbit 0 : value 0 = read operation, 1 = write operation\n"
         "\tbit 3 : value 0 = not an execute operation, 1 = execute operation "
         "(only on chips which support this level of status)",
         "address which referenced memory"),
    ),
    DRIVER_IRQL_NOT_LESS_OR_EQUAL: (
        "An attempt was made to access a pageable (or completely invalid) address at an\n"
        "interrupt request level (IRQL) that is too high.  This is usually\n"
        "caused by drivers using improper addresses.\n"
        "If kernel debugger is available get stack backtrace.",
        ("memory referenced", "IRQL", "value 0 = read operation, 1 = write operation", "address which referenced memory"),
    ),
    MULTIPLE_IRP_COMPLETE_REQUESTS: (
        "A driver has requested that an IRP be completed (IoCompleteRequest()), but\n"
        "the packet has already been completed.  This is a tough bug to find because\n"
        "the easiest case, a driver actually attempted to complete its own packet\n"
        "twice, is generally not what happened.  Rather, two separate drivers each\n"
        "believe that they own the packet, and each attempts to complete it.  The\n"
        "first actually works, and the second fails.  Tracking down which drivers\n"
        "in the system actually did this is difficult, generally because the trails\n"
        "of the first driver have been covered by the second.  However, the driver\n"
        "stack for the current request can be found by examining the DeviceObject\n"
        "fields in each of the stack locations.",
        # Parameters 2..4 are reserved (MS Learn); the debugger prints them bare.
        ("Address of the IRP", "", "", ""),
    ),
    NO_MORE_IRP_STACK_LOCATIONS: (
        "A higher level driver has attempted to call a lower level driver through\n"
        "the IoCallDriver() interface, but there are no more stack locations in the\n"
        "packet, hence, the lower level driver would not be able to access its\n"
        "parameters, as there are no parameters for it.",
        ("Address of the IRP", "Reserved", "Reserved", "Reserved"),
    ),
    BAD_POOL_CALLER: (
        "The current thread is making a bad pool request.  Typically this is at a bad IRQL level or double "
        "freeing the same allocation, etc.",
        ("type of pool violation the caller is guilty of.", "", "", ""),
    ),
    DRIVER_VERIFIER_DETECTED_VIOLATION: (
        "A device driver attempting to corrupt the system has been caught.  This is\n"
        "because the driver was specified in the registry as being suspect (by the\n"
        "administrator) and the kernel has enabled substantial checking of this driver.\n"
        "If the driver attempts to corrupt the system, bugchecks 0xC4, 0xC1 and 0xA will\n"
        "be among the most commonly seen crashes.",
        ("violation type", "", "", ""),
    ),
    DRIVER_VERIFIER_IOMANAGER_VIOLATION: (
        "The IO manager has caught a misbehaving driver.",
        ("violation type", "", "", ""),
    ),
    KMODE_EXCEPTION_NOT_HANDLED: (
        "This is a very common bugcheck.  Usually the exception address pinpoints\n"
        "the driver/function that caused the problem.  Always note this address\n"
        "as well as the link date of the driver/image that contains this address.",
        ("The exception code that was not handled", "The address that the exception occurred at",
         "Parameter 0 of the exception", "Parameter 1 of the exception"),
    ),
    IRQL_NOT_GREATER_OR_EQUAL: (
        "KeRaiseIrql was asked to raise to an IRQL lower than the current one.",
        ("current IRQL", "requested IRQL", "", ""),
    ),
    SPIN_LOCK_ALREADY_OWNED: (
        "A request was made to acquire a spin lock the caller already owns.",
        ("Address of the spin lock", "", "", ""),
    ),
    IRQL_UNEXPECTED_VALUE: (
        "The IRQL on return from a routine is not the IRQL it was entered at.",
        ("(current IRQL << 16) | expected IRQL", "routine address", "", ""),
    ),
    MANUALLY_INITIATED_CRASH: ("The user manually initiated this crash dump.", ("", "", "", "")),
    # MS Learn, Bug Check 0xE1: a worker thread completed and returned at IRQL >= DISPATCH_LEVEL
    # (ExpWorkerThread checks for anything but PASSIVE_LEVEL).  For IoQueueWorkItem the executive
    # work routine is nt!IopProcessWorkItem and its parameter the IO_WORKITEM.
    WORKER_THREAD_RETURNED_AT_BAD_IRQL: (
        "A worker thread completed and returned with IRQL >= DISPATCH_LEVEL.\n"
        "To find the driver, use the ln command on the worker routine address.",
        ("Address of the worker routine", "IRQL that the worker thread returned at", "Work item parameter",
         "Work item address"),
    ),
    DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS: (
        "A driver unloaded without cancelling timers, DPCs, worker threads, etc.\n"
        "The broken driver's name is displayed on the screen.",
        ("memory referenced", "value 0 = read operation, 1 = write operation",
         "If non-zero, the instruction address which referenced the bad memory address.",
         "Mm internal code."),
    ),
    DPC_WATCHDOG_VIOLATION: (
        "The DPC watchdog detected a prolonged run time at an IRQL of DISPATCH_LEVEL\n"
        "or above.",
        ("", "", "", ""),
    ),
}


def bugcheck_name(code: int) -> str:
    return BUGCHECK_NAMES.get(code, f"BUGCHECK_{code:X}")


def argument_meanings(code: int, params: tuple[int, ...] | list[int]) -> tuple[str, str, str, str]:
    """What each of the four parameters means; a known subcode refines the generic text."""
    generic = BUGCHECK_HELP.get(code, ("", ("", "", "", "")))[1]
    found = subcode_help(code, params[0]) if params else None
    if found is None:
        return generic
    return (found.arg1, *found.args)


@dataclass(slots=True)
class BugCheckInfo:
    """Everything `.bugcheck` and `!analyze -v` need, frozen at the moment of the crash."""

    code: int
    params: tuple[int, int, int, int]
    host: str
    time_ns: int
    irql: int
    thread: int  # ETHREAD address or 0 in a DPC
    thread_name: str
    process: str
    frames: list[str]  # innermost first, `module!Routine`
    faulting_symbol: str
    detail: str = ""  # extra text, e.g. the Python exception inside a driver
    seq: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return bugcheck_name(self.code)


class KernelBugCheck(BaseException):
    """Unwinds emulated code to the scheduler when the machine bug-checks."""

    def __init__(self, info: BugCheckInfo) -> None:
        super().__init__(f"bug check {info.code:#x}")
        self.info = info
