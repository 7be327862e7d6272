"""Write realistic SIP call captures: the workload of tests and benchmarks.

Each call is INVITE (with SDP) -> 100 -> 180 -> 200 (with SDP) -> ACK -> BYE
-> 200, between many UAC/UAS address pairs, with configurable shares of
large INVITEs sent as IP fragments, calls over TCP, VLAN-tagged frames and
IPv6, and optional RTP between the signalling.  Deterministic for a seed.
"""
from __future__ import annotations

import random
import socket
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from otus_agent.capture.pcapfile import PcapWriter
from otus_agent.sim import packets as P

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD


@dataclass
class WorkloadSpec:
    calls: int = 1000
    seed: int = 1
    large_invite_ratio: float = 0.1   # INVITE over the MTU: IP-fragmented (UDP) or segmented (TCP)
    tcp_ratio: float = 0.1
    vlan_ratio: float = 0.1
    ipv6_ratio: float = 0.1
    rtp_packets: int = 0              # RTP packets per direction per call
    start_ns: int = 1_700_000_000 * 1_000_000_000
    mtu: int = 1500
    # (uac, uas) addresses for every call instead of random ones, e.g. a test's own namespaces
    ipv4_pair: tuple[str, str] | None = None
    ipv6_pair: tuple[str, str] | None = None
    mac_pair: tuple[bytes, bytes] | None = None
    # "classic": the workload above, unchanged for the tests that pin its output; "pbx": the realistic
    # trunk of issue 15 (sim/pbx.py: ~1 kB INVITEs, five codecs, TCP connections, overlapping calls)
    profile: Literal["classic", "pbx"] = "classic"
    calls_per_second: float = 200.0   # pbx: call arrival rate (how many dialogs are open at once)
    open_dialogs: bool = False        # pbx: only INVITE and its 200, no BYE: every dialog stays open


@dataclass
class GeneratedCall:
    call_id: str
    transport: str
    ipv6: bool
    vlan: int | None
    large: bool
    messages: list[str] = field(default_factory=list)   # first lines, in order sent


@dataclass
class Workload:
    calls: list[GeneratedCall]
    packets: int = 0
    fragments: int = 0
    sip_messages: int = 0
    l4_datagrams: int = 0   # UDP datagrams (whole or fragmented) plus TCP segments
    tcp_segments: int = 0


def _sdp(ip: str, port: int, session: int, large: bool) -> str:
    af = "IP6" if ":" in ip else "IP4"
    lines = [
        "v=0", f"o=otus {session} {session} IN {af} {ip}", "s=otus call", f"c=IN {af} {ip}", "t=0 0",
        f"m=audio {port} RTP/AVP 0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv",
    ]
    if large:  # many codecs and crypto lines, as real SBC offers carry
        for i in range(40):
            lines.append(f"a=crypto:{i + 1} AES_CM_128_HMAC_SHA1_80 inline:{'K' * 40}{i:04d}|2^31|1:1")
    return "\r\n".join(lines) + "\r\n"


def _msg(first: str, headers: list[tuple[str, str]], body: str = "", ctype: str = "application/sdp") -> bytes:
    out = [first]
    out += [f"{k}: {v}" for k, v in headers]
    if body:
        out.append(f"Content-Type: {ctype}")
    out.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(out) + "\r\n\r\n" + body).encode()


def _addr(rng: random.Random, v6: bool, side: int) -> tuple[str, bytes]:
    if v6:
        raw = bytes.fromhex("fd00000000000000") + struct.pack("!HHHH", side, rng.randrange(1, 0xFFFF), 0,
                                                               rng.randrange(1, 0xFFFF))
        return socket.inet_ntop(socket.AF_INET6, raw), raw
    raw = bytes((10, side, rng.randrange(0, 256), rng.randrange(1, 255)))
    return ".".join(map(str, raw)), raw


def generate(f: BinaryIO, spec: WorkloadSpec) -> Workload:
    """Write the workload as an Ethernet pcap to ``f``; return what was written."""
    if spec.profile == "pbx":
        from otus_agent.sim import pbx
        return pbx.generate(f, spec)
    if spec.profile != "classic":
        raise ValueError(f"unknown workload profile {spec.profile!r} (classic, pbx)")
    rng = random.Random(spec.seed)
    w = PcapWriter(f, 1, snaplen=65535, nanosecond=True)
    wl = Workload(calls=[])
    ts = spec.start_ns
    ident = 1
    for n in range(spec.calls):
        v6 = rng.random() < spec.ipv6_ratio
        tcp = rng.random() < spec.tcp_ratio
        large = rng.random() < spec.large_invite_ratio
        vlan = rng.randrange(1, 4095) if rng.random() < spec.vlan_ratio else None
        a_txt, a_raw = _addr(rng, v6, 1)
        b_txt, b_raw = _addr(rng, v6, 2)
        pair = spec.ipv6_pair if v6 else spec.ipv4_pair
        if pair is not None:
            fam = socket.AF_INET6 if v6 else socket.AF_INET
            a_txt, b_txt = pair
            a_raw, b_raw = socket.inet_pton(fam, a_txt), socket.inet_pton(fam, b_txt)
        a_mac = bytes((2, 0, 0, 0, 1, n % 256))
        b_mac = bytes((2, 0, 0, 0, 2, n % 256))
        if spec.mac_pair is not None:
            a_mac, b_mac = spec.mac_pair
        a_port, b_port = (rng.randrange(20000, 60000) if tcp else 5060), 5060
        call_id = f"{rng.getrandbits(64):016x}@{a_txt}"
        call = GeneratedCall(call_id, "tcp" if tcp else "udp", v6, vlan, large)
        wl.calls.append(call)
        ftag, ttag = f"{rng.getrandbits(32):08x}", f"{rng.getrandbits(32):08x}"
        user_a, user_b = f"1{n:06d}", f"2{n:06d}"
        tp = "TCP" if tcp else "UDP"
        host_a = f"[{a_txt}]" if v6 else a_txt
        host_b = f"[{b_txt}]" if v6 else b_txt
        seqs = {True: rng.randrange(1 << 31), False: rng.randrange(1 << 31)}  # per direction (a->b = True)

        def emit(from_a: bool, payload: bytes, kind: str) -> None:
            nonlocal ts, ident
            src, dst = (a_raw, b_raw) if from_a else (b_raw, a_raw)
            smac, dmac = (a_mac, b_mac) if from_a else (b_mac, a_mac)
            sport, dport = (a_port, b_port) if from_a else (b_port, a_port)
            if kind == "rtp":
                sport, dport = (40000, 50000) if from_a else (50000, 40000)
            etype = ETH_IPV6 if v6 else ETH_IPV4
            vl = (vlan,) if vlan is not None else ()
            frames: list[bytes] = []
            if tcp and kind == "sip":
                mss = spec.mtu - (60 if v6 else 40)
                for off in range(0, len(payload), mss):
                    seg = P.tcp(src, dst, sport, dport, seqs[from_a], 1, P.TCP_ACK | P.TCP_PSH, payload[off:off + mss])
                    seqs[from_a] += len(payload[off:off + mss])
                    frames.append(P.ipv6(src, dst, 6, seg) if v6 else P.ipv4(src, dst, 6, seg, ident & 0xFFFF, df=True))
                    ident += 1
                    wl.tcp_segments += 1
                    wl.l4_datagrams += 1
            else:
                dgram = P.udp(src, dst, sport, dport, payload)
                wl.l4_datagrams += 1
                if v6:
                    if 40 + len(dgram) > spec.mtu:
                        frames = P.ipv6_fragments(src, dst, 17, dgram, ident, spec.mtu)
                        wl.fragments += len(frames)
                    else:
                        frames = [P.ipv6(src, dst, 17, dgram)]
                else:
                    if 20 + len(dgram) > spec.mtu:
                        frames = P.ipv4_fragments(src, dst, 17, dgram, ident & 0xFFFF, spec.mtu)
                        wl.fragments += len(frames)
                    else:
                        frames = [P.ipv4(src, dst, 17, dgram, ident & 0xFFFF)]
                ident += 1
            for fr in frames:
                w.write(ts, P.ethernet(smac, dmac, etype, fr, vl))
                wl.packets += 1
                ts += rng.randrange(20_000, 200_000)
            if kind == "sip":
                wl.sip_messages += 1
                call.messages.append(payload.split(b"\r\n", 1)[0].decode())

        via_a = f"SIP/2.0/{tp} {host_a}:{a_port};branch=z9hG4bK{rng.getrandbits(40):010x}"
        common = [("From", f"\"Alice {n}\" <sip:{user_a}@{host_a}>;tag={ftag}"),
                  ("To", f"<sip:{user_b}@{host_b}>"), ("Call-ID", call_id)]
        uri = f"sip:{user_b}@{host_b}:{b_port}"
        invite_hdrs = [("Via", via_a), ("Max-Forwards", "70")] + common + [
            ("CSeq", "1 INVITE"), ("Contact", f"<sip:{user_a}@{host_a}:{a_port};transport={tp.lower()}>"),
            ("User-Agent", "otus-callgen/1.0"), ("X-CID", f"corr-{n}")]
        emit(True, _msg(f"INVITE {uri} SIP/2.0", invite_hdrs, _sdp(a_txt, 40000, n, large)), "sip")
        to_tagged = [common[0], (common[1][0], common[1][1] + f";tag={ttag}"), common[2]]
        resp = [("Via", via_a)]
        emit(False, _msg("SIP/2.0 100 Trying", resp + [common[0], common[1], common[2], ("CSeq", "1 INVITE")]), "sip")
        emit(False, _msg("SIP/2.0 180 Ringing", resp + to_tagged + [("CSeq", "1 INVITE")]), "sip")
        emit(False, _msg("SIP/2.0 200 OK", resp + to_tagged + [
            ("CSeq", "1 INVITE"), ("Contact", f"<sip:{user_b}@{host_b}:{b_port}>"), ("Server", "otus-uas/1.0")],
            _sdp(b_txt, 50000, n + 1, False)), "sip")
        via_ack = f"SIP/2.0/{tp} {host_a}:{a_port};branch=z9hG4bK{rng.getrandbits(40):010x}"
        emit(True, _msg(f"ACK {uri} SIP/2.0", [("Via", via_ack), ("Max-Forwards", "70")] + to_tagged +
                        [("CSeq", "1 ACK")]), "sip")
        for _ in range(spec.rtp_packets):
            for from_a in (True, False):
                emit(from_a, bytes((0x80, 0)) + struct.pack("!HII", rng.randrange(65536), rng.getrandbits(32),
                                                             0x1234) + bytes(160), "rtp")
        via_bye = f"SIP/2.0/{tp} {host_a}:{a_port};branch=z9hG4bK{rng.getrandbits(40):010x}"
        emit(True, _msg(f"BYE {uri} SIP/2.0", [("Via", via_bye), ("Max-Forwards", "70")] + to_tagged +
                        [("CSeq", "2 BYE")]), "sip")
        emit(False, _msg("SIP/2.0 200 OK", [("Via", via_bye)] + to_tagged + [("CSeq", "2 BYE")]), "sip")
    w.flush()
    return wl
