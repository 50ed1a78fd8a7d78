"""SYN attack protection without per-SYN state: the listener's answer to a SYN
flood once its SYN queue (the half-open connections) is full.

Windows' tcpip turns SYN attack protection on by itself when the half-open
count passes a threshold (MS Learn, "SYN attack protection" in the TCP/IP
security guidance: since Windows Vista it is always enabled and no longer
tuned through TcpMaxHalfOpen).  While it is on, a new SYN costs the listener
nothing: everything needed to resume the handshake is encoded in our ISN
(RFC 4987 section 3.6, "SYN cookies"), and the peer's ACK of that ISN is
checked before a connection is created.

The cookie (our ISN), 32 bits:
    bits 31..27  time counter (COUNTER_NS ticks) mod 32
    bits 26..24  index of the peer's MSS in MSS_TABLE (rounded down)
    bits 23..0   keyed hash of (addresses, ports, peer's ISN, counter)
A cookie is valid for the counter it was made in and the one after
(64 to 128 seconds).  What the cookie cannot carry is lost: window scaling,
SACK and timestamps are off on a connection opened from a cookie.

Sans-IO: secret, segment fields and time in, integers out.
"""

from __future__ import annotations

import hashlib

from .seq import SEQ_MASK

MSS_TABLE = (536, 1024, 1220, 1360, 1400, 1440, 1452, 1460)  # IPv4/IPv6 MSS values seen in practice
COUNTER_NS = 64 * 1_000_000_000
_HASH_MASK = (1 << 24) - 1


def _hash(secret: bytes, addresses: bytes, sport: int, dport: int, peer_isn: int, counter: int) -> int:
    data = addresses + sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + peer_isn.to_bytes(4, "big") \
        + counter.to_bytes(8, "big")
    return int.from_bytes(hashlib.blake2s(data, key=secret, digest_size=4).digest(), "big") & _HASH_MASK


def mss_index(mss: int) -> int:
    """The largest table entry not above the peer's MSS (the cookie rounds down, never up)."""
    best = 0
    for i, value in enumerate(MSS_TABLE):
        if value <= mss:
            best = i
    return best


def make_cookie(secret: bytes, addresses: bytes, sport: int, dport: int, peer_isn: int, mss: int,
                now_ns: int) -> int:
    """Our ISN for a SYN answered without state (`sport` is the peer's port)."""
    counter = now_ns // COUNTER_NS
    index = mss_index(mss)
    return ((counter & 31) << 27 | index << 24
            | _hash(secret, addresses, sport, dport, peer_isn & SEQ_MASK, counter)) & SEQ_MASK


def check_cookie(secret: bytes, addresses: bytes, sport: int, dport: int, peer_isn: int, cookie: int,
                 now_ns: int) -> int | None:
    """The MSS a valid cookie encodes, or None (forged, stale or for another connection)."""
    now_counter = now_ns // COUNTER_NS
    for age in (0, 1):
        counter = now_counter - age
        if counter < 0 or (counter & 31) != cookie >> 27:
            continue
        if _hash(secret, addresses, sport, dport, peer_isn & SEQ_MASK, counter) == cookie & _HASH_MASK:
            return MSS_TABLE[(cookie >> 24) & 7]
    return None
