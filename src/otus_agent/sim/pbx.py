"""The realistic PBX workload: calls as Asterisk, FreeSWITCH and Kamailio send them.

Issue 15 measures speed on traffic no one here tuned for: about 1 kB INVITEs
with a five-codec SDP (PCMU, PCMA, G722, opus, telephone-event), User-Agent,
Allow, Supported and Record-Route headers, responses of 400-900 bytes.  A
share of calls runs over TCP with real connections (handshake, one segment
per MSS, ACKs, FIN), a share sends an INVITE over the MTU (IPv4/IPv6
fragments over UDP, several segments over TCP), some frames are VLAN-tagged
and some calls are IPv6.  Calls overlap in time as on a real trunk: arrivals
at ``calls_per_second``, ringing and talk times drawn per call, packets
merged by timestamp.  ``open_dialogs`` writes only INVITE and its 200 (no
BYE), so every dialog stays open: the memory bench's workload.

Deterministic for a seed; selected by ``WorkloadSpec(profile="pbx")``.
"""
from __future__ import annotations

import heapq
import random
import socket
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from otus_agent.capture.pcapfile import PcapWriter
from otus_agent.sim import packets as P

if TYPE_CHECKING:
    from otus_agent.sim.callgen import Workload, WorkloadSpec

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
NS = 1_000_000_000

# (User-Agent or Server, Allow, Supported) as these PBXs send them
_ASTERISK = ("Asterisk PBX 18.20.2",
             "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE",
             "replaces, timer")
_FREESWITCH = ("FreeSWITCH-mod_sofia/1.10.9-release~64bit",
               "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY, PUBLISH, "
               "SUBSCRIBE", "timer, path, replaces")
_PBXS = (_ASTERISK, _FREESWITCH)


def _sdp(ip: str, port: int, session: int, offer: bool, large: bool, rng: random.Random) -> str:
    """Offer: the five codecs with rtpmap/fmtp/ptime; answer: the chosen codec and DTMF."""
    af = "IP6" if ":" in ip else "IP4"
    lines = ["v=0", f"o=- {session} {session + 2} IN {af} {ip}", "s=Asterisk" if offer else "s=FreeSWITCH",
             f"c=IN {af} {ip}", "t=0 0"]
    if offer:
        lines += [f"m=audio {port} RTP/AVP 0 8 9 111 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
                  "a=rtpmap:9 G722/8000", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 useinbandfec=1;minptime=10",
                  "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=maxptime:150",
                  "a=sendrecv"]
    else:
        lines += [f"m=audio {port} RTP/AVP 8 101", "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000",
                  "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv"]
    if large:  # an SRTP/ICE offer (WebRTC gateway): over the MTU
        lines += [f"a=crypto:{i} AES_CM_128_HMAC_SHA1_{80 if i % 2 else 32} inline:{rng.getrandbits(240):060x}"
                  for i in range(1, 5)]
        lines += [f"a=ice-ufrag:{rng.getrandbits(32):08x}", f"a=ice-pwd:{rng.getrandbits(96):024x}"]
        lines += [f"a=candidate:{i} 1 udp {2130706431 - i * 256} {ip} {port + 2 * i} typ host generation 0"
                  for i in range(10)]
    return "\r\n".join(lines) + "\r\n"


def _msg(first: str, headers: list[tuple[str, str]], body: str = "") -> bytes:
    out = [first, *(f"{k}: {v}" for k, v in headers)]
    if body:
        out.append("Content-Type: application/sdp")
    out.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(out) + "\r\n\r\n" + body).encode()


def _host(rng: random.Random, v6: bool, side: int, pool: int) -> tuple[str, bytes]:
    """One of ``pool`` hosts on a side: a trunk has a few hundred peers, not one per call."""
    h = rng.randrange(pool)
    if v6:
        raw = bytes.fromhex("fd00000000000000") + struct.pack("!HHHH", side, 0, 0, h + 1)
        return socket.inet_ntop(socket.AF_INET6, raw), raw
    raw = bytes((10, side, h >> 8, 1 + (h & 0xFF) % 254))
    return ".".join(map(str, raw)), raw


class _Call:
    """One call's packets, in time order, as a generator of (ts, frame)."""

    def __init__(self, spec: WorkloadSpec, n: int, rng: random.Random, start: int, wl: Workload,
                 ident: list[int]) -> None:
        from otus_agent.sim.callgen import GeneratedCall
        self.spec, self.n, self.rng, self.wl, self.ident = spec, n, rng, wl, ident
        self.v6 = rng.random() < spec.ipv6_ratio
        self.tcp = rng.random() < spec.tcp_ratio
        self.large = rng.random() < spec.large_invite_ratio
        self.vlan = (rng.randrange(1, 4095),) if rng.random() < spec.vlan_ratio else ()
        self.a_txt, self.a_raw = _host(rng, self.v6, 1, 200)
        self.b_txt, self.b_raw = _host(rng, self.v6, 2, 200)
        self.a_mac, self.b_mac = bytes((2, 0, 0, 1, n >> 8 & 0xFF, n & 0xFF)), bytes((2, 0, 0, 2, 0, 1))
        if spec.mac_pair is not None:
            self.a_mac, self.b_mac = spec.mac_pair
        self.a_port = rng.randrange(20000, 60000) if self.tcp else 5060
        self.b_port = 5060
        self.proxy = rng.random() < 0.5   # through a Kamailio proxy: Record-Route, two Vias
        self.ts = start
        self.seq = {True: rng.getrandbits(32), False: rng.getrandbits(32)}   # a->b = True
        self.call = GeneratedCall(f"{rng.getrandbits(96):024x}@{self.a_txt}", "tcp" if self.tcp else "udp",
                                  self.v6, self.vlan[0] if self.vlan else None, self.large)
        wl.calls.append(self.call)

    def _frames(self, from_a: bool, proto: int, l4: bytes) -> list[bytes]:
        src, dst = (self.a_raw, self.b_raw) if from_a else (self.b_raw, self.a_raw)
        wl, mtu = self.wl, self.spec.mtu
        self.ident[0] = ident = (self.ident[0] + 1) & 0xFFFF
        if self.v6:
            if 40 + len(l4) > mtu:
                fr = P.ipv6_fragments(src, dst, proto, l4, ident, mtu)
                wl.fragments += len(fr)
                return fr
            return [P.ipv6(src, dst, proto, l4)]
        if 20 + len(l4) > mtu:
            fr = P.ipv4_fragments(src, dst, proto, l4, ident, mtu)
            wl.fragments += len(fr)
            return fr
        return [P.ipv4(src, dst, proto, l4, ident, df=proto == 6)]

    def _eth(self, from_a: bool, ip: bytes) -> bytes:
        smac, dmac = (self.a_mac, self.b_mac) if from_a else (self.b_mac, self.a_mac)
        return P.ethernet(smac, dmac, ETH_IPV6 if self.v6 else ETH_IPV4, ip, self.vlan)

    def _tcp(self, from_a: bool, flags: int, payload: bytes = b"") -> bytes:
        src, dst = (self.a_raw, self.b_raw) if from_a else (self.b_raw, self.a_raw)
        sport, dport = (self.a_port, self.b_port) if from_a else (self.b_port, self.a_port)
        seg = P.tcp(src, dst, sport, dport, self.seq[from_a], self.seq[not from_a], flags, payload, 64240)
        self.seq[from_a] += len(payload) + (1 if flags & (P.TCP_SYN | P.TCP_FIN) else 0)
        self.wl.l4_datagrams += bool(payload)
        self.wl.tcp_segments += 1
        return self._eth(from_a, self._frames(from_a, 6, seg)[0])

    def _gap(self, lo_us: int, hi_us: int) -> int:
        self.ts += self.rng.randrange(lo_us, hi_us) * 1000
        return self.ts

    def _send(self, from_a: bool, payload: bytes) -> Iterator[tuple[int, bytes]]:
        self.wl.sip_messages += 1
        self.call.messages.append(payload.split(b"\r\n", 1)[0].decode())
        if self.tcp:
            mss = self.spec.mtu - (60 if self.v6 else 40)
            for off in range(0, len(payload), mss):
                yield self._gap(5, 60), self._tcp(from_a, P.TCP_ACK | P.TCP_PSH, payload[off:off + mss])
            yield self._gap(40, 200), self._tcp(not from_a, P.TCP_ACK)   # the peer's (delayed) ACK
            return
        src, dst = (self.a_raw, self.b_raw) if from_a else (self.b_raw, self.a_raw)
        sport, dport = (self.a_port, self.b_port) if from_a else (self.b_port, self.a_port)
        self.wl.l4_datagrams += 1
        for ip in self._frames(from_a, 17, P.udp(src, dst, sport, dport, payload)):
            yield self._gap(5, 60), self._eth(from_a, ip)

    def packets(self) -> Iterator[tuple[int, bytes]]:
        rng, n, tp = self.rng, self.n, "TCP" if self.tcp else "UDP"
        ha = f"[{self.a_txt}]" if self.v6 else self.a_txt
        hb = f"[{self.b_txt}]" if self.v6 else self.b_txt
        ua, srv = _PBXS[rng.randrange(2)], _PBXS[rng.randrange(2)]
        if self.tcp:   # the connection: SYN, SYN-ACK, ACK
            yield self.ts, self._tcp(True, P.TCP_SYN)
            yield self._gap(200, 2000), self._tcp(False, P.TCP_SYN | P.TCP_ACK)
            yield self._gap(200, 2000), self._tcp(True, P.TCP_ACK)
        caller, callee = f"+3120{rng.randrange(10**7):07d}", f"+3130{rng.randrange(10**7):07d}"
        ftag, ttag = f"as{rng.getrandbits(32):08x}", f"{rng.getrandbits(64):016X}"
        call_id, tr = self.call.call_id, tp.lower()
        via_a = f"SIP/2.0/{tp} {ha}:{self.a_port};rport;branch=z9hG4bKPj{rng.getrandbits(128):032x}"
        vias = [("Via", via_a)]
        rr: list[tuple[str, str]] = []
        if self.proxy:   # Kamailio in the path: its Via on top, Record-Route
            vias.insert(0, ("Via", f"SIP/2.0/{tp} {hb}:5060;branch=z9hG4bK{rng.getrandbits(64):016x}.0"))
            rr = [("Record-Route", f"<sip:{hb};{'transport=tcp;' if self.tcp else ''}lr;ftag={ftag};"
                                   f"did={rng.getrandbits(24):06x}.{rng.getrandbits(32):08x}>")]
        frm = ("From", f"\"{caller}\" <sip:{caller}@{ha}>;tag={ftag}")
        to0 = ("To", f"<sip:{callee}@{hb}>")
        to1 = ("To", f"<sip:{callee}@{hb}>;tag={ttag}")
        cid = ("Call-ID", call_id)
        uri = f"sip:{callee}@{hb}:{self.b_port}"
        contact_a = ("Contact", f"<sip:{caller}@{ha}:{self.a_port};transport={tr}>")
        contact_b = ("Contact", f"<sip:{callee}@{hb}:{self.b_port};transport={tr}>")
        invite = _msg(f"INVITE {uri} SIP/2.0", [
            *vias, ("Max-Forwards", "69" if self.proxy else "70"), frm, to0, contact_a, cid,
            ("CSeq", "102 INVITE"), *rr, ("Allow", ua[1]), ("Supported", ua[2]), ("User-Agent", ua[0]),
            ("P-Asserted-Identity", f"\"{caller}\" <sip:{caller}@{ha}>"), ("Session-Expires", "1800"),
            ("Min-SE", "90"), ("X-CID", f"corr-{n}")],
            _sdp(self.a_txt, 10000 + 2 * rng.randrange(10000), rng.getrandbits(31), True, self.large, rng))
        yield from self._send(True, invite)
        resp = [*vias, frm]
        if not self.spec.open_dialogs:
            yield from self._send(False, _msg("SIP/2.0 100 Trying", [
                *resp, to0, cid, ("CSeq", "102 INVITE"), ("Server", srv[0]), ("Allow", srv[1]),
                ("Supported", srv[2])]))
            self._gap(500_000, 3_000_000)
            yield from self._send(False, _msg("SIP/2.0 180 Ringing", [
                *resp, to1, cid, ("CSeq", "102 INVITE"), *rr, contact_b, ("Server", srv[0]), ("Allow", srv[1]),
                ("Supported", srv[2])]))
            self._gap(1_000_000, 10_000_000)
        yield from self._send(False, _msg("SIP/2.0 200 OK", [
            *resp, to1, cid, ("CSeq", "102 INVITE"), *rr, contact_b, ("Server", srv[0]), ("Allow", srv[1]),
            ("Supported", "timer, replaces")],
            _sdp(self.b_txt, 20000 + 2 * rng.randrange(10000), rng.getrandbits(31), False, False, rng)))
        if self.spec.open_dialogs:
            return
        route = [("Route", rr[0][1])] if rr else []
        branch = f"z9hG4bKPj{rng.getrandbits(128):032x}"
        yield from self._send(True, _msg(f"ACK sip:{callee}@{hb}:{self.b_port};transport={tr} SIP/2.0", [
            ("Via", f"SIP/2.0/{tp} {ha}:{self.a_port};rport;branch={branch}"), ("Max-Forwards", "70"), frm, to1,
            cid, ("CSeq", "102 ACK"), *route, ("User-Agent", ua[0])]))
        self._gap(5_000_000, 120_000_000)   # talk time
        bvia = [("Via", f"SIP/2.0/{tp} {ha}:{self.a_port};rport;branch=z9hG4bKPj{rng.getrandbits(128):032x}")]
        if self.proxy:
            bvia.insert(0, ("Via", f"SIP/2.0/{tp} {hb}:5060;branch=z9hG4bK{rng.getrandbits(64):016x}.0"))
        yield from self._send(True, _msg(f"BYE sip:{callee}@{hb}:{self.b_port};transport={tr} SIP/2.0", [
            *bvia, ("Max-Forwards", "70"), frm, to1, cid, ("CSeq", "103 BYE"), *route, ("User-Agent", ua[0]),
            ("Reason", "Q.850;cause=16;text=\"Normal Clearing\"")]))
        yield from self._send(False, _msg("SIP/2.0 200 OK", [
            *bvia, frm, to1, cid, ("CSeq", "103 BYE"), ("Server", srv[0]), ("Allow", srv[1]),
            ("Supported", srv[2])]))
        if self.tcp:   # the caller closes: FIN, ACK+FIN, ACK
            yield self._gap(1000, 5000), self._tcp(True, P.TCP_FIN | P.TCP_ACK)
            yield self._gap(200, 2000), self._tcp(False, P.TCP_FIN | P.TCP_ACK)
            yield self._gap(200, 2000), self._tcp(True, P.TCP_ACK)


def generate(f: BinaryIO, spec: WorkloadSpec) -> Workload:
    """Write the PBX workload as an Ethernet pcap to ``f``, packets in time order; return what was written."""
    from otus_agent.sim.callgen import Workload
    rng = random.Random(spec.seed)
    w = PcapWriter(f, 1, snaplen=65535, nanosecond=True)
    wl = Workload(calls=[])
    heap: list[tuple[int, int, bytes, Iterator[tuple[int, bytes]]]] = []
    arrival = spec.start_ns
    mean_gap = NS / spec.calls_per_second
    ident = [0]   # the IP identification counter, shared by all calls as one host's stack would

    def push(it: Iterator[tuple[int, bytes]], order: int) -> None:
        nxt = next(it, None)
        if nxt is not None:
            heapq.heappush(heap, (nxt[0], order, nxt[1], it))
    for n in range(spec.calls):
        # a new call starts once every packet before its arrival is written: memory stays at the concurrent calls
        while heap and heap[0][0] <= arrival:
            ts, order, frame, it = heapq.heappop(heap)
            w.write(ts, frame)
            wl.packets += 1
            push(it, order)
        call = _Call(spec, n, random.Random(rng.getrandbits(64)), arrival, wl, ident)
        push(call.packets(), n)
        arrival += int(rng.expovariate(1.0) * mean_gap) + 1
    while heap:
        ts, order, frame, it = heapq.heappop(heap)
        w.write(ts, frame)
        wl.packets += 1
        push(it, order)
    w.flush()
    return wl
