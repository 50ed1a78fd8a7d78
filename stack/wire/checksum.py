"""RFC 1071 Internet checksum, fast and scatter-gather.

The ones'-complement sum of big-endian 16-bit words is congruent to the whole
buffer read as one big-endian integer modulo 0xFFFF, because 2**16 == 1
(mod 0xFFFF). So ``int.from_bytes(data, "big") % 0xFFFF`` gives the sum in one
C-speed step. The only thing the residue loses is which of the two zeros it
is: a folded sum is 0x0000 only when every word is zero, and 0xFFFF when the
words are not all zero but add up to a multiple of 0xFFFF.

Chunked input (payload spread over MDL pages) is summed without joining: a
chunk of odd length shifts everything after it by one byte, and a shift by a
byte is a multiplication by 256 modulo 0xFFFF.

All sums here are *folded* ones'-complement sums in 0..0xFFFF; a checksum
field holds the complement of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address

BytesLike = bytes | bytearray | memoryview
AddressLike = BytesLike | IPv4Address | IPv6Address

_MOD = 0xFFFF


def _fold(value: int) -> int:
    """Fold a non-negative integer congruent to a word sum into 0..0xFFFF."""
    residue = value % _MOD
    if residue == 0 and value:
        return 0xFFFF
    return residue


def ones_sum(data: BytesLike) -> int:
    """Folded ones'-complement sum of ``data``; an odd last byte is zero-padded."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    residue = value % _MOD  # _fold, inlined: every received IPv4 header is summed here
    return 0xFFFF if residue == 0 and value else residue


def ones_sum_chunks(chunks: Iterable[BytesLike], initial: int = 0) -> int:
    """Folded sum of the concatenation of ``chunks``, plus the folded ``initial``.

    Byte order carries across chunk borders: a chunk that starts at an odd
    offset contributes its first byte as the low half of a word.
    """
    if type(chunks) is tuple and len(chunks) == 1:  # one whole segment: what the NIC offloads sum
        value = int.from_bytes(chunks[0], "big")
        if len(chunks[0]) & 1:
            value <<= 8
        residue = value % _MOD
        total = 0xFFFF if (residue == 0 and value) else residue
        total += initial
        return (total & 0xFFFF) + (total >> 16)  # ones_add
    acc = 0
    odd = False
    nonzero = False
    for chunk in chunks:
        value = int.from_bytes(chunk, "big")
        if value:
            nonzero = True
        if len(chunk) & 1:
            acc = ((acc << 8) + value) % _MOD
            odd = not odd
        else:
            acc = (acc + value) % _MOD
    if odd:
        acc = (acc << 8) % _MOD
    total = 0xFFFF if (acc == 0 and nonzero) else acc
    return ones_add(initial, total)


def ones_add(a: int, b: int) -> int:
    """Ones'-complement addition of two folded sums."""
    total = a + b
    return (total & 0xFFFF) + (total >> 16)


def internet_checksum(data: BytesLike) -> int:
    """The value for a checksum field covering ``data`` (its field zeroed)."""
    return 0xFFFF - ones_sum(data)


def transport_checksum(pseudo_sum: int, chunks: Iterable[BytesLike]) -> int:
    """TCP/UDP/ICMPv6 checksum field value: pseudo-header sum plus segment chunks.

    The checksum field inside the chunks must be zero.
    """
    return 0xFFFF - ones_sum_chunks(chunks, pseudo_sum)


def transport_checksum_ok(pseudo_sum: int, chunks: Iterable[BytesLike]) -> bool:
    """True when the segment (checksum field included) sums to all ones."""
    return ones_sum_chunks(chunks, pseudo_sum) == 0xFFFF


def _raw(address: AddressLike) -> BytesLike:
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.packed
    return address


def pseudo_header_sum_v4(src: AddressLike, dst: AddressLike, proto: int, length: int) -> int:
    """Folded sum of the IPv4 pseudo-header (RFC 793 / 768)."""
    try:
        value = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto + length  # type: ignore[arg-type]
    except TypeError:  # IPv4Address objects (bytes-like ones, the usual case, need no conversion)
        value = int.from_bytes(_raw(src), "big") + int.from_bytes(_raw(dst), "big") + proto + length
    return _fold(value)


def pseudo_header_sum_v6(src: AddressLike, dst: AddressLike, next_header: int, length: int) -> int:
    """Folded sum of the IPv6 pseudo-header (RFC 8200 section 8.1)."""
    # The 32-bit length is two words; their sum is congruent to the value itself.
    value = int.from_bytes(_raw(src), "big") + int.from_bytes(_raw(dst), "big") + next_header + length
    return _fold(value)


def pseudo_header_sum(src: AddressLike, dst: AddressLike, proto: int, length: int) -> int:
    """Pseudo-header sum for either family, chosen by address length (4 or 16 bytes)."""
    raw = _raw(src)
    if len(raw) == 4:
        return pseudo_header_sum_v4(raw, dst, proto, length)
    return pseudo_header_sum_v6(raw, dst, proto, length)


Payload = BytesLike | Sequence[BytesLike]


def as_chunks(payload: Payload) -> Sequence[BytesLike]:
    """Accept one buffer or a list of buffers (scatter-gather) as a list of chunks."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return (payload,)
    return payload


def chunks_length(chunks: Iterable[BytesLike]) -> int:
    """Total byte count of the chunks (memoryviews are assumed byte-formatted)."""
    return sum(len(chunk) for chunk in chunks)
