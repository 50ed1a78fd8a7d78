"""Modular 32-bit sequence-number arithmetic (RFC 9293 section 3.4, RFC 1982).

The connection keeps every sequence number *unwrapped*: a plain Python int
that starts at the ISS and only ever grows.  Comparisons are then ordinary
integer comparisons.  Wire values (32-bit) are unwrapped against a nearby
reference when a segment arrives and masked when a segment leaves.  A TCP
window never exceeds 2**30 bytes (RFC 7323), so "nearest to the reference"
is unambiguous.
"""

from __future__ import annotations

SEQ_MOD = 1 << 32
SEQ_MASK = SEQ_MOD - 1
_HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    """a + n modulo 2**32."""
    return (a + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in sequence space, in [-2**31, 2**31)."""
    d = (a - b) & SEQ_MASK
    return d - SEQ_MOD if d >= _HALF else d


def seq_lt(a: int, b: int) -> bool:
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    return seq_diff(a, b) >= 0


def seq_in_window(seq: int, start: int, length: int) -> bool:
    """start <= seq < start + length, modulo 2**32."""
    return 0 <= ((seq - start) & SEQ_MASK) < length


def unwrap(wire: int, reference: int) -> int:
    """The unwrapped number closest to `reference` whose low 32 bits are `wire`."""
    d = (wire - reference) & SEQ_MASK
    if d >= _HALF:
        d -= SEQ_MOD
    return reference + d
