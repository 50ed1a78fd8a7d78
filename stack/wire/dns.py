"""DNS messages (RFC 1035), shared by kernel-mode WSK name resolution and user-mode DNS (stack.wire):
a sans-IO parser and builder for queries and answers.

Only what the lab needs — A, AAAA and CNAME records, name compression when reading
(and for answer names pointing at the question when writing) — but every malformed
input raises `DnsError`, never a random exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
TYPE_ANY = 255
CLASS_IN = 1

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080

HEADER = struct.Struct(">HHHHHH")
MAX_NAME = 255
MAX_LABEL = 63
MAX_POINTER_HOPS = 32


class DnsError(ValueError):
    """A DNS message that cannot be parsed or built."""


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    name: str
    qtype: int
    qclass: int = CLASS_IN


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str
    rtype: int
    rclass: int
    ttl: int
    data: bytes  # RDATA as it is on the wire (4 bytes for A, 16 for AAAA)


@dataclass(slots=True)
class DnsMessage:
    id: int
    flags: int
    questions: list[DnsQuestion] = field(default_factory=list)
    answers: list[DnsRecord] = field(default_factory=list)
    authorities: list[DnsRecord] = field(default_factory=list)
    additionals: list[DnsRecord] = field(default_factory=list)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


def normalize_name(name: str) -> str:
    return name.rstrip(".").lower()


def _encode_name(name: str) -> bytes:
    name = name.rstrip(".")
    if not name:
        return b"\x00"
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
        if not raw or len(raw) > MAX_LABEL:
            raise DnsError(f"bad label {label!r} in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise DnsError(f"name too long: {name!r}")
    return bytes(out)


def _decode_name(data: memoryview, offset: int) -> tuple[str, int]:
    """Read a (possibly compressed) name at `offset`; returns it and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    hops = 0
    total = 0
    while True:
        if offset >= len(data):
            raise DnsError("name runs past the end of the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DnsError("truncated compression pointer")
            if end is None:
                end = offset + 2
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise DnsError("compression pointer loop")
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise DnsError(f"unsupported label type {length:#x}")
        offset += 1
        if length == 0:
            break
        if offset + length > len(data):
            raise DnsError("label runs past the end of the message")
        total += length + 1
        if total > MAX_NAME:
            raise DnsError("name too long")
        labels.append(bytes(data[offset:offset + length]).decode("ascii", errors="replace"))
        offset += length
    return ".".join(labels), (end if end is not None else offset)


def _read_record(data: memoryview, offset: int) -> tuple[DnsRecord, int]:
    name, offset = _decode_name(data, offset)
    if offset + 10 > len(data):
        raise DnsError("truncated resource record")
    rtype, rclass, ttl, rdlength = struct.unpack_from(">HHIH", data, offset)
    offset += 10
    if offset + rdlength > len(data):
        raise DnsError("RDATA runs past the end of the message")
    rdata = bytes(data[offset:offset + rdlength])
    if rtype == TYPE_A and rdlength != 4 or rtype == TYPE_AAAA and rdlength != 16:
        raise DnsError(f"bad RDATA length {rdlength} for type {rtype}")
    if rtype == TYPE_CNAME:
        target, _ = _decode_name(data, offset)
        rdata = target.encode("ascii")
    return DnsRecord(name, rtype, rclass, ttl, rdata), offset + rdlength


def parse_message(raw: bytes | bytearray | memoryview) -> DnsMessage:
    data = memoryview(raw)
    if len(data) < HEADER.size:
        raise DnsError(f"message of {len(data)} bytes is shorter than the header")
    ident, flags, qd, an, ns, ar = HEADER.unpack_from(data, 0)
    offset = HEADER.size
    msg = DnsMessage(ident, flags)
    for _ in range(qd):
        name, offset = _decode_name(data, offset)
        if offset + 4 > len(data):
            raise DnsError("truncated question")
        qtype, qclass = struct.unpack_from(">HH", data, offset)
        offset += 4
        msg.questions.append(DnsQuestion(name, qtype, qclass))
    for count, target in ((an, msg.answers), (ns, msg.authorities), (ar, msg.additionals)):
        for _ in range(count):
            record, offset = _read_record(data, offset)
            target.append(record)
    return msg


def build_message(msg: DnsMessage) -> bytes:
    out = bytearray(HEADER.pack(msg.id & 0xFFFF, msg.flags & 0xFFFF, len(msg.questions), len(msg.answers),
                                len(msg.authorities), len(msg.additionals)))
    first_question_at = len(out) if msg.questions else None
    first_question = normalize_name(msg.questions[0].name) if msg.questions else None
    for q in msg.questions:
        out += _encode_name(q.name)
        out += struct.pack(">HH", q.qtype, q.qclass)
    for record in (*msg.answers, *msg.authorities, *msg.additionals):
        if first_question_at is not None and normalize_name(record.name) == first_question:
            out += struct.pack(">H", 0xC000 | first_question_at)  # point at the question's name
        else:
            out += _encode_name(record.name)
        rdata = _encode_name(record.data.decode("ascii")) if record.rtype == TYPE_CNAME else record.data
        out += struct.pack(">HHIH", record.rtype, record.rclass, record.ttl, len(rdata))
        out += rdata
    return bytes(out)


def build_query(ident: int, name: str, qtype: int, recursion_desired: bool = True) -> bytes:
    return build_message(DnsMessage(ident, FLAG_RD if recursion_desired else 0, [DnsQuestion(name, qtype)]))


def build_response(query: DnsMessage, answers: list[DnsRecord], rcode: int = RCODE_NOERROR,
                   authoritative: bool = True) -> bytes:
    flags = FLAG_QR | (query.flags & FLAG_RD) | FLAG_RA | (FLAG_AA if authoritative else 0) | (rcode & 0xF)
    flags |= query.flags & 0x7800  # echo the opcode
    return build_message(DnsMessage(query.id, flags, list(query.questions), answers))
