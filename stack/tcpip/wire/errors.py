"""The one error type of the wire layer.

Every parser raises ``WireError`` on malformed input, never IndexError or
struct.error, so the NIC, NDIS and tcpip layers can drop the frame and count
it under ``(layer, reason)``.
"""

from __future__ import annotations

# Reasons in use, so callers can pre-create counters.
TRUNCATED = "truncated"
BAD_CHECKSUM = "bad_checksum"
BAD_VERSION = "bad_version"
BAD_HEADER_LENGTH = "bad_header_length"
BAD_LENGTH = "bad_length"
BAD_OPTION = "bad_option"
UNSUPPORTED = "unsupported"

REASONS = (TRUNCATED, BAD_CHECKSUM, BAD_VERSION, BAD_HEADER_LENGTH, BAD_LENGTH, BAD_OPTION, UNSUPPORTED)


class WireError(ValueError):
    """A frame or packet that cannot be parsed.

    ``layer`` is the protocol that rejected it ("ethernet", "arp", "ipv4",
    "ipv6", "icmp", "icmpv6", "udp", "tcp", "pcap"); ``reason`` is a short
    machine-friendly word from ``REASONS``; ``detail`` is for humans.
    """

    __slots__ = ("layer", "reason", "detail")

    def __init__(self, layer: str, reason: str, detail: str = "") -> None:
        self.layer = layer
        self.reason = reason
        self.detail = detail
        message = f"{layer}: {reason}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)

    @property
    def key(self) -> tuple[str, str]:
        """The ``(layer, reason)`` pair a drop counter is keyed by."""
        return (self.layer, self.reason)

    def __reduce__(self):  # keep pickling/copying working with the 3-arg init
        return (type(self), (self.layer, self.reason, self.detail))
