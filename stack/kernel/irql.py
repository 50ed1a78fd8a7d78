"""Interrupt request levels (x64)."""

PASSIVE_LEVEL = 0
LOW_LEVEL = 0
APC_LEVEL = 1
DISPATCH_LEVEL = 2
CMCI_LEVEL = 5
DEVICE_LEVEL_BASE = 3
NIC_DIRQL = 6  # the emulated NIC's line
CLOCK_LEVEL = 13
IPI_LEVEL = 14
HIGH_LEVEL = 15

IRQL_NAMES = {
    PASSIVE_LEVEL: "PASSIVE_LEVEL",
    APC_LEVEL: "APC_LEVEL",
    DISPATCH_LEVEL: "DISPATCH_LEVEL",
    CLOCK_LEVEL: "CLOCK_LEVEL",
    IPI_LEVEL: "IPI_LEVEL",
    HIGH_LEVEL: "HIGH_LEVEL",
}


def irql_name(irql: int) -> str:
    if irql in IRQL_NAMES:
        return IRQL_NAMES[irql]
    if DEVICE_LEVEL_BASE <= irql < CLOCK_LEVEL:
        return "DIRQL"
    return f"IRQL {irql}"
