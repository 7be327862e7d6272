"""Generated traffic for the flow table, DNS and the detectors: TCP connections that handshake,
reset, half-close or go quiet, UDP exchanges, ICMP echo and errors, DNS, and attacks.

Frames are Ethernet (linktype 1) built with ``sim.packets``; a ``Trace`` collects them with
timestamps and writes a pcap that tshark reads as the truth.
"""
from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass, field

from otus_agent.capture.pcapfile import PcapWriter
from otus_agent.sim import packets as P

MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"
SEC = 1_000_000_000


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def frame(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    """An Ethernet frame carrying ``l4`` over IPv4 or IPv6 (chosen by the address)."""
    s, d = ip(src), ip(dst)
    if len(s) == 4:
        return P.ethernet(MAC_A, MAC_B, 0x0800, P.ipv4(s, d, proto, l4))
    return P.ethernet(MAC_A, MAC_B, 0x86DD, P.ipv6(s, d, proto, l4))


def udp_frame(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    return frame(src, dst, 17, P.udp(ip(src), ip(dst), sport, dport, payload))


def tcp_frame(src: str, sport: int, dst: str, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"",
              window: int = 65535) -> bytes:
    return frame(src, dst, 6, P.tcp(ip(src), ip(dst), sport, dport, seq, ack, flags, payload, window))


def icmp_message(typ: int, code: int, rest: bytes, v6: bool = False, src: str = "", dst: str = "") -> bytes:
    """An ICMP (or ICMPv6, whose checksum covers the pseudo-header) message with its checksum."""
    h = struct.pack("!BBH", typ, code, 0) + rest
    data = (P._pseudo(ip(src), ip(dst), 58, len(h)) + h) if v6 else h
    c = P._csum(data)
    return h[:2] + struct.pack("!H", c) + h[4:]


def icmp_frame(src: str, dst: str, typ: int, code: int, rest: bytes) -> bytes:
    v6 = ":" in src
    return frame(src, dst, 58 if v6 else 1, icmp_message(typ, code, rest, v6, src, dst))


def echo_frame(src: str, dst: str, ident: int, seq: int, reply: bool = False, data: bytes = b"x" * 32) -> bytes:
    v6 = ":" in src
    typ = (129 if reply else 128) if v6 else (0 if reply else 8)
    return icmp_frame(src, dst, typ, 0, struct.pack("!HH", ident, seq) + data)


def unreachable_frame(router: str, quoted: bytes, code: int = 3, cut: int = 0) -> bytes:
    """ICMP destination unreachable from ``router`` quoting ``quoted`` (an Ethernet frame it got);
    the quote is the IP header plus 8 bytes, ``cut`` bytes fewer (a truncated quote)."""
    ipdat = quoted[14:]
    v6 = ipdat[0] >> 4 == 6
    hl = 40 if v6 else (ipdat[0] & 15) * 4
    q = ipdat[:max(0, hl + 8 - cut)]
    src = str(ipaddress.ip_address(ipdat[8:24] if v6 else ipdat[12:16]))
    return icmp_frame(router, src, 1 if v6 else 3, 4 if v6 and code == 3 else code, b"\0\0\0\0" + q)


@dataclass
class Trace:
    """Frames with timestamps; ``write`` sorts them by time into a pcap."""
    frames: list[tuple[int, bytes]] = field(default_factory=list)

    def add(self, ts_ns: int, data: bytes) -> None:
        self.frames.append((ts_ns, data))

    def write(self, path: str) -> None:
        with open(path, "wb") as f:
            w = PcapWriter(f, 1, nanosecond=True)
            for ts, data in sorted(self.frames, key=lambda e: e[0]):
                w.write(ts, data)


@dataclass
class TcpConn:
    """One TCP connection between a client and a server, written segment by segment."""
    trace: Trace
    client: str
    cport: int
    server: str
    sport: int
    cseq: int = 1000
    sseq: int = 5000

    def c(self, t: int, flags: int, payload: bytes = b"", window: int = 65535, seq: int | None = None) -> None:
        s = self.cseq if seq is None else seq
        self.trace.add(t, tcp_frame(self.client, self.cport, self.server, self.sport, s, self.sseq, flags, payload,
                                    window))
        if seq is None:
            self.cseq += len(payload) + (1 if flags & (P.TCP_SYN | P.TCP_FIN) else 0)

    def s(self, t: int, flags: int, payload: bytes = b"", window: int = 65535, seq: int | None = None) -> None:
        s = self.sseq if seq is None else seq
        self.trace.add(t, tcp_frame(self.server, self.sport, self.client, self.cport, s, self.cseq, flags, payload,
                                    window))
        if seq is None:
            self.sseq += len(payload) + (1 if flags & (P.TCP_SYN | P.TCP_FIN) else 0)

    def handshake(self, t: int) -> int:
        self.c(t, P.TCP_SYN)
        self.s(t + 1000, P.TCP_SYN | P.TCP_ACK)
        self.c(t + 2000, P.TCP_ACK)
        return t + 2000

    def exchange(self, t: int, n: int = 3, size: int = 200) -> int:
        for i in range(n):
            self.c(t + i * 10_000, P.TCP_ACK | P.TCP_PSH, b"q" * size)
            self.s(t + i * 10_000 + 5000, P.TCP_ACK | P.TCP_PSH, b"r" * (size * 2))
        return t + n * 10_000

    def close(self, t: int) -> int:
        self.c(t, P.TCP_FIN | P.TCP_ACK)
        self.s(t + 1000, P.TCP_FIN | P.TCP_ACK)
        self.c(t + 2000, P.TCP_ACK)
        return t + 2000


def tcp_states_trace() -> tuple[Trace, dict[tuple[str, int], str]]:
    """Connections ending each way; returns the trace and the expected end state per client port."""
    tr = Trace()
    want: dict[tuple[str, int], str] = {}
    cli, srv = "10.0.0.1", "10.0.0.2"
    # 1: full handshake, data, FIN both ways
    c = TcpConn(tr, cli, 40001, srv, 80)
    c.close(c.exchange(c.handshake(SEC)))
    want[(cli, 40001)] = "closed"
    # 2: handshake then RST from the server
    c = TcpConn(tr, cli, 40002, srv, 80)
    c.s(c.exchange(c.handshake(2 * SEC), 1) + 1000, P.TCP_RST | P.TCP_ACK)
    want[(cli, 40002)] = "reset"
    # 3: half-close: the client sends FIN, the server keeps sending, never closes
    c = TcpConn(tr, cli, 40003, srv, 80)
    t = c.exchange(c.handshake(3 * SEC), 1)
    c.c(t, P.TCP_FIN | P.TCP_ACK)
    c.s(t + 1000, P.TCP_ACK | P.TCP_PSH, b"late data")
    want[(cli, 40003)] = "timed_out"  # half-closed, then quiet: only FIN from the client in its flags
    # 4: established, then silence: ended by the idle timeout
    c = TcpConn(tr, cli, 40004, srv, 80)
    c.exchange(c.handshake(4 * SEC), 2)
    want[(cli, 40004)] = "timed_out"
    # 5: SYN that nobody answers (SYN, SYN retransmitted)
    c = TcpConn(tr, cli, 40005, srv, 81)
    c.c(5 * SEC, P.TCP_SYN)
    c.c(6 * SEC, P.TCP_SYN, seq=1000)
    want[(cli, 40005)] = "timed_out"
    # 6: a retransmitted data segment and a zero window from the server, then FIN both ways
    c = TcpConn(tr, cli, 40006, srv, 80)
    t = c.handshake(7 * SEC)
    c.c(t + 1000, P.TCP_ACK | P.TCP_PSH, b"a" * 100)
    c.c(t + 300_000_000, P.TCP_ACK | P.TCP_PSH, b"a" * 100, seq=c.cseq - 100)
    c.s(t + 301_000_000, P.TCP_ACK, window=0)
    c.close(t + 400_000_000)
    want[(cli, 40006)] = "closed"
    # 7: IPv6, handshake then RST from the client
    c = TcpConn(tr, "fd00::1", 40007, "fd00::2", 443)
    c.c(c.handshake(8 * SEC) + 1000, P.TCP_RST)
    want[("fd00::1", 40007)] = "reset"
    # 8: port reuse: the connection of port 40001's client comes back on the same ports after FIN
    c = TcpConn(tr, cli, 40008, srv, 80)
    c.close(c.handshake(9 * SEC))
    c2 = TcpConn(tr, cli, 40008, srv, 80, cseq=90000, sseq=91000)
    c2.close(c2.exchange(c2.handshake(10 * SEC), 1))
    want[(cli, 40008)] = "closed"
    # the clock runs on, so the quiet connections time out (30 s SYN, 300 s established)
    tr.add(400 * SEC, udp_frame("10.9.9.9", 9, "10.9.9.8", 9, b"tick"))
    return tr, want


def mixed_trace(seed: int = 1, tcp_conns: int = 40, udp_flows: int = 40) -> Trace:
    """A mix of TCP, UDP (v4 and v6) and ICMP with errors quoting UDP flows (some truncated)."""
    rnd = random.Random(seed)
    tr = Trace()
    t = SEC
    for i in range(tcp_conns):
        v6 = i % 5 == 0
        cli = f"fd00::{i + 10:x}" if v6 else f"10.1.{i // 200}.{i % 200 + 10}"
        srv = "fd00::1" if v6 else "10.2.0.1"
        c = TcpConn(tr, cli, 20000 + i, srv, rnd.choice((80, 443, 5060)), cseq=rnd.randrange(1 << 32),
                    sseq=rnd.randrange(1 << 32))
        end = c.exchange(c.handshake(t), rnd.randrange(1, 6), rnd.randrange(1, 700))
        if rnd.random() < 0.7:
            c.close(end)
        else:
            c.s(end, P.TCP_RST | P.TCP_ACK)
        t += rnd.randrange(1, 50) * 1_000_000
    for i in range(udp_flows):
        v6 = i % 4 == 0
        a = f"fd00::a{i:x}" if v6 else f"10.3.0.{i + 1}"
        b = "fd00::b" if v6 else "10.4.0.1"
        sp, dp = 30000 + i, rnd.choice((5060, 53, 9999))
        first = udp_frame(a, sp, b, dp, b"u" * rnd.randrange(1, 900))
        tr.add(t, first)
        for j in range(rnd.randrange(0, 6)):
            tr.add(t + (j + 1) * 1_000_000, udp_frame(b, dp, a, sp, b"v" * rnd.randrange(1, 900)))
            tr.add(t + (j + 1) * 1_000_000 + 500, udp_frame(a, sp, b, dp, b"w" * rnd.randrange(1, 900)))
        if i % 7 == 3:  # the far side says port unreachable, quoting our first datagram
            tr.add(t + 50_000_000, unreachable_frame(b, first))
        if i % 11 == 5:  # a router quotes a truncated header
            tr.add(t + 60_000_000, unreachable_frame("10.99.0.1" if not v6 else "fd00::99", first, cut=6))
        t += rnd.randrange(1, 30) * 1_000_000
    for i in range(5):  # ping, v4 and v6
        a, b = ("10.5.0.1", "10.5.0.2") if i % 2 else ("fd00::5:1", "fd00::5:2")
        for s in range(3):
            tr.add(t + s * SEC, echo_frame(a, b, 100 + i, s))
            tr.add(t + s * SEC + 300_000, echo_frame(b, a, 100 + i, s, reply=True))
    return tr


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(lab)]) + lab.encode() for lab in name.strip(".").split(".") if lab) + b"\0"


def dns_message(ident: int, qname: str, qtype: int = 1, response: bool = False, rcode: int = 0,
                answers: tuple[tuple[str, int, int, str], ...] = ()) -> bytes:
    """A DNS query or response; ``answers`` are (name, type, ttl, data) with A, AAAA or CNAME data.
    An answer owned by the question's name points back to it (compression), as servers write them."""
    flags = (0x8180 if response else 0x0100) | rcode
    out = struct.pack("!HHHHHH", ident, flags, 1, len(answers), 0, 0) + dns_name(qname) + struct.pack("!HH", qtype, 1)
    for name, rtype, ttl, data in answers:
        owner = b"\xc0\x0c" if name.strip(".").lower() == qname.strip(".").lower() else dns_name(name)
        if rtype == 1:
            rdata = ip(data)
        elif rtype == 28:
            rdata = ip(data)
        else:
            rdata = dns_name(data)
        out += owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata
    return out


@dataclass
class DnsWorld:
    """Names, what they resolve to, and traffic to them: DNS over UDP and TCP, then bytes to the addresses."""
    client: str = "10.10.0.5"
    server: str = "10.10.0.53"
    names: dict[str, tuple[tuple[str, int, int, str], ...]] = field(default_factory=lambda: {
        "www.example.com": (("www.example.com", 5, 300, "cdn.example.net"), ("cdn.example.net", 5, 300,
                                                                             "edge.cdn.example.net"),
                            ("edge.cdn.example.net", 1, 60, "192.0.2.10"), ("edge.cdn.example.net", 1, 60,
                                                                           "192.0.2.11")),
        "api.example.org": (("api.example.org", 1, 120, "198.51.100.7"),),
        "v6.example.org": (("v6.example.org", 28, 120, "2001:db8::7"),),
    })

    def trace(self, seed: int = 5) -> tuple[Trace, dict[str, tuple[int, int]]]:
        """Returns the trace and, per domain, the frame bytes sent to and received from its addresses."""
        rnd = random.Random(seed)
        tr = Trace()
        want: dict[str, tuple[int, int]] = {}
        t = SEC
        for i, (name, answers) in enumerate(self.names.items()):
            qtype = 28 if any(a[1] == 28 for a in answers) else 1
            q = dns_message(0x1000 + i, name, qtype)
            r = dns_message(0x1000 + i, name, qtype, True, 0, answers)
            if i == 1:  # over TCP: handshake, length-prefixed query and response
                c = TcpConn(tr, self.client, 41000 + i, self.server, 53)
                t2 = c.handshake(t)
                c.c(t2 + 1000, P.TCP_ACK | P.TCP_PSH, struct.pack("!H", len(q)) + q)
                c.s(t2 + 3_000_000, P.TCP_ACK | P.TCP_PSH, struct.pack("!H", len(r)) + r)
                c.close(t2 + 4_000_000)
            else:
                tr.add(t, udp_frame(self.client, 50000 + i, self.server, 53, q))
                tr.add(t + 2_000_000, udp_frame(self.server, 53, self.client, 50000 + i, r))
            t += 10_000_000
            sent = recv = 0
            for a in answers:
                if a[1] not in (1, 28):
                    continue
                client = "fd00::5" if a[1] == 28 else self.client
                conn = TcpConn(tr, client, rnd.randrange(30000, 40000), a[3], 443)
                before = len(tr.frames)
                conn.close(conn.exchange(conn.handshake(t), rnd.randrange(1, 4), rnd.randrange(50, 500)))
                for ts, fr in tr.frames[before:]:
                    if ip(a[3]) in (fr[30:34], fr[38:54]):
                        sent += len(fr)
                    else:
                        recv += len(fr)
                t += 50_000_000
            want[name] = (sent, recv)
        return tr, want
