"""A strict DNS message parser (RFC 1035): never raises anything but ``DnsError``, whose
``reason`` names what was wrong, so malformed input is counted by reason, never a crash.

Names are bounded (labels <= 63 octets, names <= 255), compression pointers must point backwards
and a name follows at most ``MAX_POINTERS`` of them (a loop cannot spin); counts that promise more
records than the message holds are ``count_past_end``.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

MAX_POINTERS = 32
MAX_NAME = 255
MAX_LABEL = 63

TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
              35: "NAPTR", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS",
              255: "ANY"}
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
               7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}
NAME_TYPES = frozenset((2, 5, 12))  # rdata is one domain name


class DnsError(Exception):
    """Malformed DNS; ``reason`` is a short counter name."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Question:
    name: str
    qtype: int
    qclass: int


@dataclass(slots=True)
class Answer:
    name: str
    rtype: int
    rclass: int
    ttl: int
    data: str | None  # address text (A/AAAA), target name (CNAME/NS/PTR), else None


@dataclass(slots=True)
class DnsMessage:
    id: int
    response: bool
    opcode: int
    rcode: int
    flags: int
    questions: list[Question] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    authority_rrs: list[Answer] = field(default_factory=list)
    additional_rrs: list[Answer] = field(default_factory=list)

    @property
    def qname(self) -> str | None:
        return self.questions[0].name if self.questions else None

    def resolved(self) -> tuple[list[str], list[Answer]]:
        """The CNAME chain from the question's name and the A/AAAA answers at its end."""
        chain: list[str] = []
        name = (self.qname or "").lower()
        seen = {name}
        by_name: dict[str, list[Answer]] = {}
        for a in self.answers:
            by_name.setdefault(a.name.lower(), []).append(a)
        addrs: list[Answer] = []
        while True:
            rrs = by_name.get(name, [])
            addrs = [a for a in rrs if a.rtype in (1, 28) and a.data]
            cname = next((a.data for a in rrs if a.rtype == 5 and a.data), None)
            if addrs or cname is None or cname.lower() in seen:
                return chain, addrs
            chain.append(cname)
            name = cname.lower()
            seen.add(name)


def read_name(msg: bytes, off: int) -> tuple[str, int]:
    """The name at ``off`` and the offset after it (in the message, not after a pointer's target)."""
    labels: list[str] = []
    total = 0
    end = -1
    jumps = 0
    pos = off
    n = len(msg)
    while True:
        if pos >= n:
            raise DnsError("name_past_end")
        ln = msg[pos]
        kind = ln & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                raise DnsError("name_past_end")
            target = ((ln & 0x3F) << 8) | msg[pos + 1]
            if end < 0:
                end = pos + 2
            jumps += 1
            if target >= pos or jumps > MAX_POINTERS:  # a pointer must point backwards: no loop
                raise DnsError("compression_loop")
            pos = target
            continue
        if kind:
            raise DnsError("bad_label_type")
        if ln == 0:
            return (".".join(labels) if labels else "."), (end if end >= 0 else pos + 1)
        if pos + 1 + ln > n:
            raise DnsError("name_past_end")
        total += ln + 1
        if total > MAX_NAME:
            raise DnsError("name_too_long")
        labels.append(msg[pos + 1:pos + 1 + ln].decode("latin-1"))
        pos += 1 + ln


def _rr(msg: bytes, pos: int) -> tuple[Answer, int]:
    n = len(msg)
    name, pos = read_name(msg, pos)
    if pos + 10 > n:
        raise DnsError("rr_past_end")
    rtype = (msg[pos] << 8) | msg[pos + 1]
    rclass = (msg[pos + 2] << 8) | msg[pos + 3]
    ttl = int.from_bytes(msg[pos + 4:pos + 8], "big")
    rdlen = (msg[pos + 8] << 8) | msg[pos + 9]
    pos += 10
    if pos + rdlen > n:
        raise DnsError("rdata_past_end")
    data: str | None = None
    if rtype == 1 or rtype == 28:
        size = 4 if rtype == 1 else 16
        if rdlen == size:
            data = socket.inet_ntop(socket.AF_INET if rtype == 1 else socket.AF_INET6, msg[pos:pos + size])
        elif rdlen:  # empty rdata is legal in dynamic updates (RFC 2136)
            raise DnsError("bad_rdata_length")
    elif rtype in NAME_TYPES:
        target, after = read_name(msg, pos)
        if after > pos + rdlen:
            raise DnsError("rdata_past_end")
        data = target
    return Answer(name, rtype, rclass, ttl if ttl < 1 << 31 else 0, data), pos + rdlen


def parse(msg: bytes) -> DnsMessage:
    if len(msg) < 12:
        raise DnsError("truncated_header")
    ident = (msg[0] << 8) | msg[1]
    flags = (msg[2] << 8) | msg[3]
    qd, an, ns, ar = ((msg[4] << 8) | msg[5], (msg[6] << 8) | msg[7], (msg[8] << 8) | msg[9],
                      (msg[10] << 8) | msg[11])
    m = DnsMessage(ident, bool(flags & 0x8000), (flags >> 11) & 15, flags & 15, flags)
    pos = 12
    n = len(msg)
    for _ in range(qd):
        if pos >= n:
            raise DnsError("count_past_end")
        name, pos = read_name(msg, pos)
        if pos + 4 > n:
            raise DnsError("question_past_end")
        m.questions.append(Question(name, (msg[pos] << 8) | msg[pos + 1], (msg[pos + 2] << 8) | msg[pos + 3]))
        pos += 4
    for section, count in ((m.answers, an), (m.authority_rrs, ns), (m.additional_rrs, ar)):
        for _ in range(count):
            if pos >= n:
                raise DnsError("count_past_end")
            rr, pos = _rr(msg, pos)
            section.append(rr)
    return m
