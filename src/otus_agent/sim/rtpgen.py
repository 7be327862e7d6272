"""Write SIP calls with RTP/RTCP media of known impairments: the truth of the media tests.

Each call: INVITE (SDP) -> 200 (SDP) -> ACK, one RTP stream each way (PCMU, 20 ms, from
``media_after_ms`` after the INVITE: below 50, early media before the answer), RTCP
SR every ``rtcp_every`` packets each way (with a report block about the other direction,
so LSR/DLSR give a round trip), optional RFC 4733 events, then BYE -> 200 and RTCP BYE.
Impairments are drawn per packet from a seeded RNG and recorded in ``StreamTruth``:
loss (never sent), duplicates (sent twice, 1 ms apart), reordering (two neighbours' arrival
times swapped), jitter (uniform extra delay 0..``jitter_ms``) and sequence/timestamp wrap
(streams start just below 65536 / 2^32).  Frames are written in arrival-time order.

With ``proxy``, every call goes through a SIP proxy with a media relay beside it (Kamailio and
rtpengine on one host, the capture point seeing both legs): each SIP message twice, A <-> P and
P <-> B, the same Call-ID and tags on both legs; each leg's SDP names the relay, whose ports
(one facing each party) forward every packet 0.2 ms later with its SSRC and sequence unchanged, RTCP
too.  Four streams a call, each with its own truth (the far one repeats the near one's counts).
"""
from __future__ import annotations

import dataclasses
import random
import socket
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from otus_agent.capture.pcapfile import PcapWriter
from otus_agent.sim import packets as P
from otus_agent.sim.callgen import ETH_IPV4, ETH_IPV6, _msg

NTP_EPOCH_OFFSET = 2208988800
TE_PT = 101


@dataclass
class RtpGenSpec:
    calls: int = 4
    packets: int = 500                 # RTP packets per direction per call (before loss)
    seed: int = 1
    loss: float = 0.02
    duplicate: float = 0.005
    reorder: float = 0.01
    jitter_ms: float = 4.0
    wrap: bool = True                  # every other stream starts just below the seq/timestamp wrap
    ptime_ms: int = 20
    payload_type: int = 0              # 0 PCMU or 8 PCMA
    telephone_events: int = 1          # RFC 4733 events per stream (3 packets each)
    rtcp_every: int = 100              # an SR after every this many RTP packets (0: no RTCP)
    rtcp_bye: bool = True
    start_ns: int = 1_700_000_000 * 1_000_000_000
    call_gap_ms: int = 150             # calls start this far apart (they overlap)
    ipv6: bool = False                 # every call over IPv6 (SDP "IN IP6")
    proxy: bool = False                # every call through a proxy and media relay: two legs, four streams
    media_after_ms: int = 100          # media starts this long after the INVITE; below 50, before the 200's
                                       # answer (early media: the offer alone announces both directions)


@dataclass
class StreamTruth:
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    ssrc: int
    call_id: str
    sent: int = 0                      # distinct sequence numbers put on the wire
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    telephone_events: int = 0
    first_seq: int = 0


@dataclass
class RtpWorkload:
    streams: list[StreamTruth] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)
    rtp_packets: int = 0               # RTP frames written (duplicates included)
    rtcp_packets: int = 0
    frames: int = 0


def _sdp(ip: str, port: int, session: int, pt: int) -> str:
    name = "PCMU" if pt == 0 else "PCMA"
    af = "IP6" if ":" in ip else "IP4"
    return "\r\n".join([
        "v=0", f"o=rtpgen {session} {session} IN {af} {ip}", "s=rtpgen", f"c=IN {af} {ip}", "t=0 0",
        f"m=audio {port} RTP/AVP {pt} {TE_PT}", f"a=rtpmap:{pt} {name}/8000",
        f"a=rtpmap:{TE_PT} telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv"]) + "\r\n"


def _ntp(ts_ns: int) -> tuple[int, int]:
    s, ns = divmod(ts_ns, 1_000_000_000)
    return (s + NTP_EPOCH_OFFSET) & 0xFFFFFFFF, (ns << 32) // 1_000_000_000


def rtcp_sr(ssrc: int, ts_ns: int, rtp_ts: int, pkts: int, octets: int,
            block: tuple[int, int, int, int, int, int] | None = None, cname: str | None = None) -> bytes:
    """SR (+ one report block) + SDES CNAME, the compound RFC 3550 6.1 asks for."""
    hi, lo = _ntp(ts_ns)
    rc = 1 if block else 0
    body = struct.pack("!IIIIII", ssrc, hi, lo, rtp_ts & 0xFFFFFFFF, pkts, octets)
    if block:
        rssrc, frac, cum, hseq, jit, lsr_dlsr = block
        lsr, dlsr = lsr_dlsr >> 32, lsr_dlsr & 0xFFFFFFFF
        body += struct.pack("!IIIIII", rssrc, (frac << 24) | (cum & 0xFFFFFF), hseq, jit, lsr, dlsr)
    out = struct.pack("!BBH", 0x80 | rc, 200, len(body) // 4) + body
    if cname:
        item = struct.pack("!BB", 1, len(cname)) + cname.encode()
        chunk = struct.pack("!I", ssrc) + item + b"\0"
        chunk += b"\0" * (-len(chunk) % 4)
        out += struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk
    return out


def rtcp_bye(ssrc: int) -> bytes:
    rr = struct.pack("!BBHI", 0x80, 201, 1, ssrc)
    return rr + struct.pack("!BBHI", 0x81, 203, 1, ssrc)


def generate(f: BinaryIO, spec: RtpGenSpec) -> RtpWorkload:
    """Write the capture to ``f`` (Ethernet, ns timestamps); return the truth."""
    rng = random.Random(spec.seed)
    wl = RtpWorkload()
    frames: list[tuple[int, int, bytes]] = []   # (arrival ns, tie-break, frame)
    order = 0

    def put(ts: int, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> None:
        nonlocal order
        mac_s, mac_d = b"\x02\0\0\0" + src[-2:], b"\x02\0\0\0" + dst[-2:]
        dgram = P.udp(src, dst, sport, dport, payload)
        if len(src) == 16:
            frames.append((ts, order, P.ethernet(mac_s, mac_d, ETH_IPV6, P.ipv6(src, dst, 17, dgram))))
        else:
            frames.append((ts, order, P.ethernet(mac_s, mac_d, ETH_IPV4, P.ipv4(src, dst, 17, dgram))))
        order += 1

    for n in range(spec.calls):
        if spec.ipv6:
            a_raw = bytes.fromhex("fd000000000000010000000000000000")[:14] + struct.pack("!H", n + 1)
            b_raw = bytes.fromhex("fd000000000000020000000000000000")[:14] + struct.pack("!H", n + 1)
            p_raw = bytes.fromhex("fd000000000000030000000000000000")[:14] + struct.pack("!H", n + 1)
            a_ip, b_ip = socket.inet_ntop(socket.AF_INET6, a_raw), socket.inet_ntop(socket.AF_INET6, b_raw)
            p_ip = socket.inet_ntop(socket.AF_INET6, p_raw)
        else:
            a_raw, b_raw = bytes((10, 1, n // 250, n % 250 + 1)), bytes((10, 2, n // 250, n % 250 + 1))
            p_raw = bytes((10, 3, n // 250, n % 250 + 1))
            a_ip, b_ip, p_ip = ".".join(map(str, a_raw)), ".".join(map(str, b_raw)), ".".join(map(str, p_raw))
        host_a, host_b, host_p = (f"[{a_ip}]", f"[{b_ip}]", f"[{p_ip}]") if spec.ipv6 else (a_ip, b_ip, p_ip)
        a_rtp, b_rtp = 40000 + 2 * n, 50000 + 2 * n
        r_a, r_b = 30000 + 4 * n, 30002 + 4 * n   # the relay's ports facing A and facing B (proxy)

        def sip(ts: int, from_a: bool, first: str, headers: list, body: str = "", far_body: str = "") -> None:
            """One SIP message from A (else from B): straight to the other party, or through the proxy on
            both legs, the far one 1 ms later with the proxy's Via on top (requests) and ``far_body``."""
            s_raw, d_raw = (a_raw, b_raw) if from_a else (b_raw, a_raw)
            if not spec.proxy:
                put(ts, s_raw, d_raw, 5060, 5060, _msg(first, headers, body))
                return
            put(ts, s_raw, p_raw, 5060, 5060, _msg(first, headers, body))
            if not first.startswith("SIP/2.0"):
                headers = [("Via", f"SIP/2.0/UDP {host_p}:5060;branch=z9hG4bK{rng.getrandbits(40):010x}"),
                           *headers]
            put(ts + 1_000_000, p_raw, d_raw, 5060, 5060, _msg(first, headers, far_body))
        cid = f"rtpgen-{spec.seed}-{n}@{a_ip}"
        wl.call_ids.append(cid)
        t0 = spec.start_ns + n * spec.call_gap_ms * 1_000_000
        ftag, ttag = f"{rng.getrandbits(32):08x}", f"{rng.getrandbits(32):08x}"
        via = f"SIP/2.0/UDP {host_a}:5060;branch=z9hG4bK{rng.getrandbits(40):010x}"
        fr = ("From", f"<sip:a{n}@{host_a}>;tag={ftag}")
        to = ("To", f"<sip:b{n}@{host_b}>")
        tot = ("To", f"<sip:b{n}@{host_b}>;tag={ttag}")
        uri = f"sip:b{n}@{host_b}"
        sip(t0, True, f"INVITE {uri} SIP/2.0", [
            ("Via", via), ("Max-Forwards", "70"), fr, to, ("Call-ID", cid), ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:a{n}@{host_a}:5060>")], _sdp(a_ip, a_rtp, n, spec.payload_type),
            _sdp(p_ip, r_b, n + 2000, spec.payload_type))
        sip(t0 + 50_000_000, False, "SIP/2.0 200 OK", [
            ("Via", via), fr, tot, ("Call-ID", cid), ("CSeq", "1 INVITE"), ("Contact", f"<sip:b{n}@{host_b}:5060>")],
            _sdp(b_ip, b_rtp, n + 1000, spec.payload_type), _sdp(p_ip, r_a, n + 3000, spec.payload_type))
        via2 = f"SIP/2.0/UDP {host_a}:5060;branch=z9hG4bK{rng.getrandbits(40):010x}"
        sip(t0 + 60_000_000, True, f"ACK {uri} SIP/2.0", [
            ("Via", via2), ("Max-Forwards", "70"), fr, tot, ("Call-ID", cid), ("CSeq", "1 ACK")])
        media_t0 = t0 + spec.media_after_ms * 1_000_000
        # per direction (A to B, B to A), the hops its packets take: (source raw, text, port, destination raw,
        # text, port, delay ns); through the relay, a second hop 0.2 ms later
        if spec.proxy:
            hops = [[(a_raw, a_ip, a_rtp, p_raw, p_ip, r_a, 0), (p_raw, p_ip, r_b, b_raw, b_ip, b_rtp, 200_000)],
                    [(b_raw, b_ip, b_rtp, p_raw, p_ip, r_b, 0), (p_raw, p_ip, r_a, a_raw, a_ip, a_rtp, 200_000)]]
        else:
            hops = [[(a_raw, a_ip, a_rtp, b_raw, b_ip, b_rtp, 0)], [(b_raw, b_ip, b_rtp, a_raw, a_ip, a_rtp, 0)]]
        far: list[StreamTruth] = []
        ssrcs = [rng.getrandbits(32), rng.getrandbits(32)]
        last_sr: list[tuple[int, int] | None] = [None, None]   # per direction: (NTP mid, arrival ns) of its SR
        truths = []
        end_ns = media_t0
        for d in range(2):
            wrap = spec.wrap and (2 * n + d) % 2 == 0
            seq0 = 65536 - spec.packets // 3 if wrap else rng.randrange(0, 30000)
            ts0 = (1 << 32) - 160 * (spec.packets // 2) if wrap else rng.getrandbits(31)
            h = hops[d][0]
            st = StreamTruth(h[1], h[2], h[4], h[5], ssrcs[d], cid, first_seq=seq0 & 0xFFFF)
            truths.append(st)
            step = spec.ptime_ms * 8
            te_at = {spec.packets * (k + 1) // (spec.telephone_events + 1) for k in range(spec.telephone_events)}
            arrivals: list[list] = []   # [arrival ns, payload]
            i = 0   # packet index (sequence offset)
            slot = 0   # 20 ms slot index
            while i < spec.packets:
                send_ns = media_t0 + slot * spec.ptime_ms * 1_000_000 + d * 3_000_000
                rtp_ts = (ts0 + slot * step) & 0xFFFFFFFF
                group = []
                if slot in te_at:   # an RFC 4733 event: 3 packets, one timestamp, marker on the first
                    st.telephone_events += 1
                    for k in range(3):
                        ev = struct.pack("!BBH", 5, (0x80 if k == 2 else 0) | 10, 160 * (k + 1))
                        group.append((TE_PT | (0x80 if k == 0 else 0), rtp_ts, ev))
                else:
                    group.append((spec.payload_type, rtp_ts, bytes(160)))
                for j, (b1, t, pay) in enumerate(group):
                    seq = (seq0 + i) & 0xFFFF
                    i += 1
                    pkt = struct.pack("!BBHII", 0x80, b1, seq, t, ssrcs[d]) + pay
                    if rng.random() < spec.loss:
                        st.dropped += 1
                        continue
                    st.sent += 1
                    arr = send_ns + j * 1_000_000 + int(rng.random() * spec.jitter_ms * 1e6)
                    arrivals.append([arr, pkt])
                    if rng.random() < spec.duplicate:
                        st.duplicated += 1
                        arrivals.append([arr + 1_000_000, pkt])
                slot += 1
            # reordering: swap the arrival times of neighbours (the later packet arrives first)
            for k in range(1, len(arrivals) - 1):
                if rng.random() < spec.reorder and arrivals[k][1] != arrivals[k + 1][1]:
                    arrivals[k][0], arrivals[k + 1][0] = arrivals[k + 1][0], arrivals[k][0]
                    st.reordered += 1
            for arr, pkt in arrivals:
                for h_s, _hs, h_sport, h_d, _hd, h_dport, delay in hops[d]:
                    put(arr + delay, h_s, h_d, h_sport, h_dport, pkt)
                    wl.rtp_packets += 1
                end_ns = max(end_ns, arr)
            st.sent = len({a[1][2:4] for a in arrivals})
            for h in hops[d][1:]:   # the relay's copy: the same packets, the same impairments
                far.append(dataclasses.replace(st, src_ip=h[1], src_port=h[2], dst_ip=h[4], dst_port=h[5]))
        if spec.rtcp_every:
            # SRs each way, alternating, each with a report block about the other direction
            for k in range(1, spec.packets // spec.rtcp_every + 1):
                for d in range(2):
                    ts = media_t0 + k * spec.rtcp_every * spec.ptime_ms * 1_000_000 + d * 7_000_000
                    other = last_sr[1 - d]
                    lsr_dlsr = 0
                    if other is not None:
                        dlsr = (ts - other[1] - 2_000_000) * 65536 // 1_000_000_000   # "held" 2 ms less
                        lsr_dlsr = (other[0] << 32) | dlsr
                    block = (ssrcs[1 - d], 5, truths[1 - d].dropped, 0, 40, lsr_dlsr)
                    pkt = rtcp_sr(ssrcs[d], ts, 0, k * spec.rtcp_every, 160 * k * spec.rtcp_every, block,
                                  f"rtpgen{d}@call{n}")
                    hi, lo = _ntp(ts)
                    last_sr[d] = (((hi & 0xFFFF) << 16) | (lo >> 16), ts + 1_000_000)
                    for h_s, _hs, h_sport, h_d, _hd, h_dport, delay in hops[d]:
                        put(ts + delay, h_s, h_d, h_sport + 1, h_dport + 1, pkt)
                        wl.rtcp_packets += 1
        bye_ns = end_ns + 100_000_000
        via3 = f"SIP/2.0/UDP {host_a}:5060;branch=z9hG4bK{rng.getrandbits(40):010x}"
        sip(bye_ns, True, f"BYE {uri} SIP/2.0", [
            ("Via", via3), ("Max-Forwards", "70"), fr, tot, ("Call-ID", cid), ("CSeq", "2 BYE")])
        sip(bye_ns + 5_000_000, False, "SIP/2.0 200 OK", [
            ("Via", via3), fr, tot, ("Call-ID", cid), ("CSeq", "2 BYE")])
        if spec.rtcp_bye:
            for d in range(2):
                for h_s, _hs, h_sport, h_d, _hd, h_dport, delay in hops[d]:
                    put(bye_ns - 20_000_000 + d * 1_000_000 + delay, h_s, h_d, h_sport + 1, h_dport + 1,
                        rtcp_bye(ssrcs[d]))
                    wl.rtcp_packets += 1
        wl.streams.extend(truths)
        wl.streams.extend(far)
    frames.sort()
    w = PcapWriter(f, 1, snaplen=65535, nanosecond=True)
    for ts, _o, frame in frames:
        w.write(ts, frame)
    w.flush()
    wl.frames = len(frames)
    return wl


def main(argv: list[str] | None = None) -> int:
    """``python -m otus_agent.sim.rtpgen OUT.pcap [--calls N] [--packets N] [--loss F] ...``"""
    import argparse
    ap = argparse.ArgumentParser(description="write SIP calls with impaired RTP/RTCP to a pcap")
    ap.add_argument("out")
    for f in dataclasses.fields(RtpGenSpec):
        kind = bool if f.type in ("bool", bool) else float if f.type in ("float", float) else int
        if kind is bool:
            ap.add_argument(f"--{f.name.replace('_', '-')}", type=lambda s: s.lower() in ("1", "true", "yes"),
                            default=f.default)
        else:
            ap.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    a = vars(ap.parse_args(argv))
    out = a.pop("out")
    try:
        with open(out, "wb") as fh:
            wl = generate(fh, RtpGenSpec(**a))
    except OSError as e:
        ap.error(f"cannot write {out}: {e}")
    print(f"{out}: {len(wl.call_ids)} calls, {len(wl.streams)} streams, {wl.rtp_packets} RTP, "
          f"{wl.rtcp_packets} RTCP, {wl.frames} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
