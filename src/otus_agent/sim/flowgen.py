"""Generated traffic for the flow table, DNS and the detectors: TCP connections that handshake,
reset, half-close or go quiet, UDP exchanges, ICMP echo and errors, DNS, and attacks.

Frames are Ethernet (linktype 1) built with ``sim.packets``; a ``Trace`` collects them with
timestamps and writes a pcap that tshark reads as the truth.
"""
from __future__ import annotations

import ipaddress
import random
import struct
import zlib
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


MAX_MIXED = 10_000          # 20000 + i and 30000 + i stay distinct, valid ports
V6_TCP_CLIENTS = ipaddress.IPv6Address("fd00::1:0")
V6_UDP_CLIENTS = ipaddress.IPv6Address("fd00::2:0")


def mixed_trace(seed: int = 1, tcp_conns: int = 40, udp_flows: int = 40) -> Trace:
    """A mix of TCP, UDP (v4 and v6) and ICMP with errors quoting UDP flows (some truncated).  Up to
    MAX_MIXED conversations of each kind: their client ports are distinct."""
    if not (0 <= tcp_conns <= MAX_MIXED and 0 <= udp_flows <= MAX_MIXED):
        raise ValueError(f"mixed_trace: at most {MAX_MIXED} TCP connections and {MAX_MIXED} UDP flows")
    rnd = random.Random(seed)
    tr = Trace()
    t = SEC
    for i in range(tcp_conns):
        v6 = i % 5 == 0
        cli = str(V6_TCP_CLIENTS + i) if v6 else f"10.1.{i // 200}.{i % 200 + 10}"
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
        a = str(V6_UDP_CLIENTS + i) if v6 else f"10.3.{i // 250}.{i % 250 + 1}"
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


# -- attacks and clean workloads for the detectors ------------------------------------------------

def port_scan(tr: Trace, t: int, src: str, dst: str, ports: range, step_ns: int = 1_000_000) -> None:
    """A SYN scan: closed ports answer RST."""
    for i, port in enumerate(ports):
        tr.add(t + i * step_ns, tcp_frame(src, 61000, dst, port, 777, 0, P.TCP_SYN))
        tr.add(t + i * step_ns + 1000, tcp_frame(dst, port, src, 61000, 0, 778, P.TCP_RST | P.TCP_ACK))


def host_sweep(tr: Trace, t: int, src: str, net: str, port: int, hosts: int, step_ns: int = 1_000_000) -> None:
    base = ipaddress.ip_address(net)
    for i in range(hosts):
        tr.add(t + i * step_ns, tcp_frame(src, 62000 + i % 1000, str(base + i + 1), port, 1, 0, P.TCP_SYN))


def syn_flood(tr: Trace, t: int, dst: str, port: int, n: int, duration_ns: int, seed: int = 3) -> None:
    """SYNs from spoofed sources that never complete the handshake (the victim's SYN-ACKs go nowhere)."""
    rnd = random.Random(seed)
    for i in range(n):
        src = f"198.18.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        ts = t + i * duration_ns // n
        sp = rnd.randrange(1024, 65535)
        tr.add(ts, tcp_frame(src, sp, dst, port, rnd.randrange(1 << 32), 0, P.TCP_SYN))
        tr.add(ts + 500, tcp_frame(dst, port, src, sp, 1, 1, P.TCP_SYN | P.TCP_ACK))


def icmp_flood(tr: Trace, t: int, src: str, dst: str, n: int, duration_ns: int) -> None:
    for i in range(n):
        tr.add(t + i * duration_ns // n, echo_frame(src, dst, 4242, i & 0xFFFF))


def clean_network_hour(seed: int = 11, hosts: int = 40) -> Trace:
    """An hour of ordinary traffic: hosts open HTTPS and SIP connections that complete, query DNS,
    send RTP, and a monitor pings every host every 10 s."""
    rnd = random.Random(seed)
    tr = Trace()
    servers = ["10.20.0.10", "10.20.0.11", "10.20.0.12"]
    for h in range(hosts):
        me = f"10.30.0.{h + 10}"
        t = rnd.randrange(0, 60) * SEC
        while t < 3600 * SEC:
            kind = rnd.random()
            if kind < 0.5:
                c = TcpConn(tr, me, rnd.randrange(20000, 60000), rnd.choice(servers), 443)
                c.close(c.exchange(c.handshake(t), rnd.randrange(1, 5), rnd.randrange(100, 1200)))
            elif kind < 0.8:
                sp = rnd.randrange(20000, 60000)
                tr.add(t, udp_frame(me, sp, "10.20.0.53", 53, dns_message(rnd.randrange(1 << 16), "svc.example")))
                tr.add(t + 2_000_000, udp_frame("10.20.0.53", 53, me, sp, dns_message(0, "svc.example", 1, True, 0, (
                    ("svc.example", 1, 60, "10.20.0.10"),))))
            else:
                rport = rnd.randrange(10000, 20000) & ~1
                for k in range(50):
                    tr.add(t + k * 20_000_000, udp_frame(me, rport, "10.30.0.250", 30000, b"\x80" + b"r" * 171))
            t += rnd.randrange(20, 120) * SEC
    for k in range(360):
        for h in range(hosts):
            me = f"10.30.0.{h + 10}"
            tr.add(k * 10 * SEC + h * 1000, echo_frame("10.30.0.2", me, 9, k))
            tr.add(k * 10 * SEC + h * 1000 + 300_000, echo_frame(me, "10.30.0.2", 9, k, reply=True))
    return tr


def sip_message(first: str, call_id: str, cseq: int, method: str, from_user: str, to_user: str,
                ua: str = "Yealink SIP-T46S 66.86.0.15", to_tag: str | None = None, host: str = "pbx.example") -> bytes:
    lines = [first,
             f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{zlib.crc32(f'{call_id}{cseq}{first}'.encode())}",
             f"From: <sip:{from_user}@{host}>;tag=f{zlib.crc32(call_id.encode())}",
             f"To: <sip:{to_user}@{host}>" + (f";tag={to_tag}" if to_tag else ""),
             f"Call-ID: {call_id}", f"CSeq: {cseq} {method}", "Max-Forwards: 70", f"User-Agent: {ua}",
             "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class SipSide:
    """SIP over UDP between a client and a server, for the detector tests."""
    trace: Trace
    client: str
    server: str = "10.40.0.1"
    cport: int = 5060

    def req(self, t: int, method: str, call_id: str, cseq: int, from_user: str, to_user: str, ruri_user: str = "",
            ua: str = "Yealink SIP-T46S 66.86.0.15", to_tag: str | None = None, dst: str | None = None) -> None:
        first = f"{method} sip:{ruri_user or to_user}@pbx.example SIP/2.0"
        self.trace.add(t, udp_frame(self.client, self.cport, dst or self.server, 5060,
                                    sip_message(first, call_id, cseq, method, from_user, to_user, ua, to_tag)))

    def resp(self, t: int, code: int, reason: str, method: str, call_id: str, cseq: int, from_user: str,
             to_user: str, to_tag: str | None = "srv1") -> None:
        self.trace.add(t, udp_frame(self.server, 5060, self.client, self.cport,
                                    sip_message(f"SIP/2.0 {code} {reason}", call_id, cseq, method, from_user, to_user,
                                                "Asterisk PBX 18.0", to_tag)))

    def call(self, t: int, call_id: str, caller: str, callee: str, duration_ns: int) -> None:
        self.req(t, "INVITE", call_id, 1, caller, callee)
        self.resp(t + 5_000_000, 100, "Trying", "INVITE", call_id, 1, caller, callee, None)
        self.resp(t + 2 * SEC, 200, "OK", "INVITE", call_id, 1, caller, callee)
        self.req(t + 2 * SEC + 5_000_000, "ACK", call_id, 1, caller, callee, to_tag="srv1")
        end = t + 2 * SEC + duration_ns
        self.req(end, "BYE", call_id, 2, caller, callee, to_tag="srv1")
        self.resp(end + 5_000_000, 200, "OK", "BYE", call_id, 2, caller, callee)

    def register(self, t: int, call_id: str, user: str, cseq: int, outcome: int = 200) -> None:
        """REGISTER, 401 challenge, REGISTER with credentials, then ``outcome``."""
        self.req(t, "REGISTER", call_id, cseq, user, user)
        self.resp(t + 3_000_000, 401, "Unauthorized", "REGISTER", call_id, cseq, user, user)
        self.req(t + 6_000_000, "REGISTER", call_id, cseq + 1, user, user)
        self.resp(t + 9_000_000, outcome, "OK" if outcome == 200 else "Forbidden", "REGISTER", call_id, cseq + 1,
                  user, user)


def clean_sip_hour(seed: int = 12, phones: int = 40) -> Trace:
    """An hour of an ordinary PBX: phones re-register every 10 min (challenged, then 200), call each other
    and now and then abroad (long calls), and the PBX pings every phone with OPTIONS each minute."""
    rnd = random.Random(seed)
    tr = Trace()
    for p in range(phones):
        side = SipSide(tr, f"10.50.0.{p + 10}")
        user = str(1000 + p)
        for k, t in enumerate(range(rnd.randrange(0, 600) * SEC, 3600 * SEC, 600 * SEC)):
            side.register(t, f"reg-{user}-{k}@x", user, 2 * k + 1)
        t = rnd.randrange(0, 300) * SEC
        n = 0
        while t < 3500 * SEC:
            callee = f"+4420{rnd.randrange(10**7):07d}" if rnd.random() < 0.2 else str(1000 + rnd.randrange(phones))
            side.call(t, f"call-{user}-{n}@x", user, callee, rnd.randrange(60, 600) * SEC)
            t += rnd.randrange(300, 900) * SEC
            n += 1
        for k in range(60):  # the PBX's keepalive OPTIONS to the phone, answered 200
            tr.add(k * 60 * SEC + p * 10_000_000, udp_frame("10.40.0.1", 5060, side.client, 5060, sip_message(
                f"OPTIONS sip:{user}@{side.client} SIP/2.0", f"ka-{user}-{k}@pbx", 1, "OPTIONS", "pbx", user,
                "Asterisk PBX 18.0")))
    return tr
