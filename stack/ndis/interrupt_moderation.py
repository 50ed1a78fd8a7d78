"""OID_GEN_INTERRUPT_MODERATION in the miniport: NDIS_INTERRUPT_MODERATION_PARAMETERS, query and set.

MS Learn, "OID_GEN_INTERRUPT_MODERATION" (mandatory for NDIS 6.0 miniports, set and query): a query
returns NDIS_INTERRUPT_MODERATION_PARAMETERS with the current state; a set with
NdisInterruptModerationEnabled enables moderation, "otherwise, it should disable interrupt
moderation".  "NDIS_INTERRUPT_MODERATION_PARAMETERS structure (ntddndis.h)": an NDIS_OBJECT_HEADER
(NDIS_OBJECT_TYPE_DEFAULT, revision 1, size NDIS_SIZEOF_..._REVISION_1), ULONG Flags
(..._CHANGE_NEEDS_RESET, ..._CHANGE_NEEDS_REINITIALIZE) and the NDIS_INTERRUPT_MODERATION value
(Unknown 0, NotSupported 1, Enabled 2, Disabled 3).  "Interrupt Moderation": NDIS offers the switch so
that a round trip can be measured without the moderation delay.

What Enabled means is the vendor's: here the NIC's "Interrupt Moderation Rate" (stack/nic/itr.py)
and its moderation delay.  Disabling turns both off (`!udpload /nomod` does the same) and keeps what
was in force; enabling brings that back (the vendor's default, Adaptive, when nothing was kept).
The NIC changes its interrupt timing at once, so Flags is 0 (no reset, no halt and reinitialize).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from stack.nic.itr import DEFAULT_SETTING, OFF

from .constants import (NDIS_STATUS_INVALID_DATA, NDIS_STATUS_INVALID_LENGTH, NDIS_STATUS_INVALID_PARAMETER,
                        NDIS_STATUS_SUCCESS)

# NDIS_INTERRUPT_MODERATION
NdisInterruptModerationUnknown = 0
NdisInterruptModerationNotSupported = 1
NdisInterruptModerationEnabled = 2
NdisInterruptModerationDisabled = 3
# NDIS_INTERRUPT_MODERATION_PARAMETERS.Flags
NDIS_INTERRUPT_MODERATION_CHANGE_NEEDS_RESET = 0x00000001
NDIS_INTERRUPT_MODERATION_CHANGE_NEEDS_REINITIALIZE = 0x00000002
NDIS_OBJECT_TYPE_DEFAULT = 0x80
NDIS_INTERRUPT_MODERATION_PARAMETERS_REVISION_1 = 1

_LAYOUT = struct.Struct("<BBHIi")  # NDIS_OBJECT_HEADER {UCHAR Type; UCHAR Revision; USHORT Size}, Flags, value
NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1 = _LAYOUT.size  # 12


@dataclass(slots=True)
class NDIS_INTERRUPT_MODERATION_PARAMETERS:
    """The structure as its 12 bytes say it (the OID's InformationBuffer carries the bytes)."""

    InterruptModeration: int = NdisInterruptModerationUnknown
    Flags: int = 0
    Type: int = NDIS_OBJECT_TYPE_DEFAULT
    Revision: int = NDIS_INTERRUPT_MODERATION_PARAMETERS_REVISION_1
    Size: int = NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1

    def to_bytes(self) -> bytes:
        return _LAYOUT.pack(self.Type, self.Revision, self.Size, self.Flags, self.InterruptModeration)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "NDIS_INTERRUPT_MODERATION_PARAMETERS":
        kind, revision, size, flags, value = _LAYOUT.unpack_from(raw)
        return cls(value, flags, kind, revision, size)


def moderation_enabled(nic: Any) -> bool:
    """Whether anything holds the NIC's interrupts back: a moderation delay, a rate, or Adaptive."""
    return bool(nic.interrupt_moderation_ns or nic.interrupt_throttle_ns or nic.itr_adaptive is not None)


def query_interrupt_moderation(nic: Any) -> bytes:
    value = NdisInterruptModerationEnabled if moderation_enabled(nic) else NdisInterruptModerationDisabled
    return NDIS_INTERRUPT_MODERATION_PARAMETERS(value).to_bytes()


def set_interrupt_moderation(ctx: Any, request: Any) -> int:
    """A set request on adapter context `ctx` (netvmini's MP_ADAPTER; it keeps `moderation_kept`)."""
    raw = request.InformationBuffer
    raw = bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else b""
    if len(raw) < NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1:
        request.BytesNeeded = NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1
        return NDIS_STATUS_INVALID_LENGTH
    p = NDIS_INTERRUPT_MODERATION_PARAMETERS.from_bytes(raw)
    if (p.Type != NDIS_OBJECT_TYPE_DEFAULT or p.Revision < NDIS_INTERRUPT_MODERATION_PARAMETERS_REVISION_1
            or p.Size < NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1):
        return NDIS_STATUS_INVALID_PARAMETER
    if not NdisInterruptModerationUnknown <= p.InterruptModeration <= NdisInterruptModerationDisabled:
        return NDIS_STATUS_INVALID_DATA
    nic = ctx.nic
    enabled = moderation_enabled(nic)
    if p.InterruptModeration == NdisInterruptModerationEnabled:
        if not enabled:
            delay, setting = ctx.moderation_kept or (nic.interrupt_moderation_ns, DEFAULT_SETTING)
            nic.interrupt_moderation_ns = delay
            nic.set_interrupt_moderation_rate(setting)
    elif enabled:
        ctx.moderation_kept = (nic.interrupt_moderation_ns, nic.itr_setting)
        nic.interrupt_moderation_ns = 0
        nic.set_interrupt_moderation_rate(OFF)
    request.BytesRead = NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1
    return NDIS_STATUS_SUCCESS
