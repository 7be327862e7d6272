"""The media lane (rtp_cy.MediaLane behind MediaStage.run_lane, ``--parsers sip,rtp``) against the datagram
path (every packet a Datagram to SIP and to MediaStage.feed_packet): the same records and counters on
generated calls with loss, reordering, duplicates, an SSRC change, RTCP on its own port and multiplexed
(rtcp-mux), SIP in between (also on the media flows), IPv6, and hostile RTP on known flows, which the lane
counts by reason as the path does.  The lane's flow table and the pure source (the pure build's lane)
are checked against the build under test on the same decoded rows."""
from __future__ import annotations

import importlib.util
import pathlib
import random
import socket
import struct
import sys
from array import array

import orjson
import pytest

from otus_agent.capture.pcapfile import PcapWriter, open_capture
from otus_agent.decode.decoder import Decoder
from otus_agent.engine.pipeline import Engine, EngineConfig
from otus_agent.media import rtp_cy
from otus_agent.media.rtp_cy import MediaLane, RtpStream, flow_key
from otus_agent.sim import packets as P
from otus_agent.sim.callgen import ETH_IPV4, ETH_IPV6, _msg
from otus_agent.sim.rtpgen import rtcp_bye, rtcp_sr
from otus_agent.sip.framing import SipConfig

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S
# hostile payloads on a known RTP flow, by the reason the media stage counts (rtp_cy.RTP_REASONS)
HOSTILE = {
    "short_header": [b"", b"\x80\x00\x00"],
    "bad_version": [b"\x40\x00\x00\x01" + bytes(20)],
    "csrc_past_end": [b"\x8f\x00\x00\x01" + bytes(20)],                          # 15 CSRCs in 24 bytes
    "extension_past_end": [b"\x90\x00\x00\x01" + bytes(8) + b"\xbe\xde\x7f\xff" + bytes(4)],
    "bad_padding": [b"\xa0\x00\x00\x01" + bytes(20) + b"\x00", b"\xa0\x00\x00\x01" + bytes(8) + b"\xff"],
}


def _sdp(ip: str, port: int, mux: bool) -> str:
    af = "IP6" if ":" in ip else "IP4"
    lines = ["v=0", f"o=t 1 1 IN {af} {ip}", "s=t", f"c=IN {af} {ip}", "t=0 0", f"m=audio {port} RTP/AVP 0 101",
             "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=sendrecv"]
    return "\r\n".join(lines + (["a=rtcp-mux"] if mux else [])) + "\r\n"


def _rtp(seq: int, ts: int, ssrc: int, pt: int = 0, payload: bytes = bytes(160)) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def write_capture(path: pathlib.Path, seed: int, packets: int = 400) -> tuple[dict[str, int], dict[str, int]]:
    """Three calls (plain IPv4, rtcp-mux IPv4, plain IPv6) with impaired media, SIP in between and hostile
    RTP; returns how many hostile packets of each reason it wrote on known flows, all and on the plain
    (not multiplexed) ones, the flows the lane holds (an OPTIONS on a media flow counts as bad_version)."""
    rng = random.Random(seed)
    frames: list[tuple[int, int, bytes]] = []

    def put(ts: int, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> None:
        dgram = P.udp(src, dst, sport, dport, payload)
        ip = P.ipv6(src, dst, 17, dgram) if len(src) == 16 else P.ipv4(src, dst, 17, dgram)
        frames.append((ts, len(frames), P.ethernet(b"\x02\0\0\0\0\1", b"\x02\0\0\0\0\2",
                                                   ETH_IPV6 if len(src) == 16 else ETH_IPV4, ip)))

    hostile = dict.fromkeys(HOSTILE, 0)
    plain = dict.fromkeys(HOSTILE, 0)
    calls = [(bytes((10, 9, 0, 1)), bytes((10, 9, 1, 1)), False),
             (bytes((10, 9, 0, 2)), bytes((10, 9, 1, 2)), True),
             (socket.inet_pton(socket.AF_INET6, "fd00::9:1"), socket.inet_pton(socket.AF_INET6, "fd00::9:2"), False)]
    for n, (a, b, mux) in enumerate(calls):
        fam = socket.AF_INET6 if len(a) == 16 else socket.AF_INET
        a_ip, b_ip = socket.inet_ntop(fam, a), socket.inet_ntop(fam, b)
        ha, hb = (f"[{a_ip}]", f"[{b_ip}]") if fam == socket.AF_INET6 else (a_ip, b_ip)
        a_port, b_port = 30000 + 10 * n, 32000 + 10 * n
        cid, t0 = f"lane-{seed}-{n}@x", T0 + n * 300 * MS
        fr, to = ("From", f"<sip:a@{ha}>;tag=f{n}"), ("To", f"<sip:b@{hb}>;tag=t{n}")
        via = ("Via", f"SIP/2.0/UDP {ha}:5060;branch=z9hG4bK{n}a")
        put(t0, a, b, 5060, 5060, _msg(f"INVITE sip:b@{hb} SIP/2.0", [via, fr, ("To", f"<sip:b@{hb}>"),
                                       ("Call-ID", cid), ("CSeq", "1 INVITE")], _sdp(a_ip, a_port, mux)))
        put(t0 + 40 * MS, b, a, 5060, 5060, _msg("SIP/2.0 200 OK", [via, fr, to, ("Call-ID", cid),
                                                 ("CSeq", "1 INVITE")], _sdp(b_ip, b_port, mux)))
        put(t0 + 50 * MS, a, b, 5060, 5060, _msg(f"ACK sip:b@{hb} SIP/2.0", [via, fr, to, ("Call-ID", cid),
                                                 ("CSeq", "1 ACK")]))
        m0 = t0 + 100 * MS
        end = m0
        for d, (src, dst, sp, dp) in enumerate([(a, b, a_port, b_port), (b, a, b_port, a_port)]):
            ssrc = rng.getrandbits(32)
            seq0, ts0 = rng.randrange(65536 - packets // 2, 65536), rng.getrandbits(32)   # seq wraps
            arrivals: list[list] = []
            for i in range(packets):
                if n == 0 and d == 0 and i == packets // 2:   # the sender restarts: a new SSRC, a new seq
                    ssrc, seq0 = ssrc ^ 0x5A5A5A5A, rng.randrange(0, 1000) - i
                if rng.random() < 0.03:
                    continue                                  # lost
                pt, body = (101, b"\x05\x0a\x00\xa0") if i % 97 == 50 else (0, bytes(160))
                arr = m0 + i * 20 * MS + d * 3 * MS + rng.randrange(0, 6 * MS)
                pkt = _rtp(seq0 + i, ts0 + 160 * i, ssrc, pt, body)
                arrivals.append([arr, pkt])
                if rng.random() < 0.02:
                    arrivals.append([arr + MS, pkt])          # duplicate
            for k in range(1, len(arrivals) - 1):             # reordering: neighbours swap arrival times
                if rng.random() < 0.02:
                    arrivals[k][0], arrivals[k + 1][0] = arrivals[k + 1][0], arrivals[k][0]
            for arr, pkt in arrivals:
                put(arr, src, dst, sp, dp, pkt)
                end = max(end, arr)
            rtcp_port = (sp, dp) if mux else (sp + 1, dp + 1)
            for k in range(1, packets // 50):
                ts = m0 + k * S + d * 7 * MS
                put(ts, src, dst, *rtcp_port, rtcp_sr(ssrc, ts, ts0 + k * 8000, 50 * k, 8000 * k,
                                                       (ssrc ^ 1, 3, k, 0, 40, 0), f"c{n}{d}@lane"))
            put(end - 30 * MS + d * MS, src, dst, *rtcp_port, rtcp_bye(ssrc))
            # hostile RTP on the known flow, and a payload SIP's heuristic would look at
            for j, (reason, bodies) in enumerate(HOSTILE.items()):
                for body in bodies:
                    put(m0 + (3 + j) * S + d * MS + len(body), src, dst, sp, dp, body)
                    hostile[reason] += 1
                    plain[reason] += not mux
            put(m0 + 2 * S + 500 * MS, src, dst, sp, dp, _rtp(seq0 + 7, ts0 + 7 * 160, ssrc,
                                                              payload=b" x SIP/2.0\r\n" + bytes(40)))
            put(m0 + 2 * S + 700 * MS, src, dst, sp, dp,
                _msg(f"OPTIONS sip:x@{hb} SIP/2.0", [via, fr, to, ("Call-ID", f"opt-on-media-{n}-{d}"),
                                                     ("CSeq", "1 OPTIONS")]))
            hostile["bad_version"] += 1   # the OPTIONS is no RTP either ('O' is version 1)
            plain["bad_version"] += not mux
        for k in range(1, 6):   # SIP in the middle of the call
            put(m0 + k * S + 333 * MS, a, b, 5060, 5060, _msg(f"OPTIONS sip:b@{hb} SIP/2.0", [
                via, fr, to, ("Call-ID", f"opt-{n}-{k}"), ("CSeq", f"{k} OPTIONS")]))
        put(end + 100 * MS, a, b, 5060, 5060, _msg(f"BYE sip:b@{hb} SIP/2.0", [via, fr, to, ("Call-ID", cid),
                                                  ("CSeq", "2 BYE")]))
    frames.sort()
    with open(path, "wb") as f:
        w = PcapWriter(f, 1, nanosecond=True)
        for ts, _, frame in frames:
            w.write(ts, frame)
    return hostile, plain


def _run(pcap: pathlib.Path, parsers: tuple[str, ...], heuristic: bool) -> tuple[Engine, list[bytes]]:
    lines: list[bytes] = []
    e = Engine(EngineConfig(parsers=parsers, settings={"sip": SipConfig(heuristic=heuristic)}), lines.append)
    with open_capture(pcap) as r:
        e.run(r.batches())
    e.finish()
    return e, [x for x in b"".join(lines).splitlines() if b'"type":' in x]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("heuristic", [True, False])
def test_lane_gives_the_records_and_counters_of_the_datagram_path(tmp_path, seed, heuristic):
    pcap = tmp_path / "w.pcap"
    hostile, on_plain = write_capture(pcap, seed)
    lane, got = _run(pcap, ("sip", "rtp"), heuristic)
    plain, ref = _run(pcap, ("sip", "rtp", "datagrams"), heuristic)   # a third parser: no lane, every Datagram
    assert lane.datagrams.lane is not None and plain.datagrams.lane is None
    assert got == ref
    media = [x for x in got if b'"type":"media"' in x]
    ssrcs_on_call0 = {x.split(b'"ssrc":')[1].split(b",")[0] for x in media if b'"src_port":30000' in x}
    assert len(ssrcs_on_call0) == 2                                   # the SSRC change: two streams
    assert any(b'"cname":"c10@lane"' in x for x in media)             # multiplexed RTCP joined
    assert any(b'"dst_ip":"fd00::9:2"' in x for x in media)
    counts = lane.parsers["rtp"].summary()
    assert counts == plain.parsers["rtp"].summary()
    for reason, n in hostile.items():                                 # every hostile packet counted once
        assert counts[f"bad_{reason}"] == n, reason
    stage = lane.parsers["rtp"].summary.__self__
    refused = stage.lane.refused()
    # the lane took the hostile packets of its flows itself (the OPTIONS on a media flow: SIP's, with the
    # heuristic on: it stays on the datagram path)
    assert refused == {**on_plain, "bad_version": on_plain["bad_version"] - (4 if heuristic else 0)}
    # the RTP of plain flows took the lane, but for each stream's first packet and those at a flush (1/s);
    # multiplexed flows' RTP never does (RTCP must be told apart first)
    finals = [orjson.loads(x) for x in media if b'"final":true' in x]
    on_lane_flows = sum(r["packets"] for r in finals if r["src_port"] not in (30010, 32010))
    assert sum(r["packets"] for r in finals) == counts["rtp_packets"] > on_lane_flows
    assert 0.9 * on_lane_flows < stage.lane_packets < on_lane_flows
    sip_records = [x for x in got if b'"call_id":"opt-on-media-' in x]
    assert len(sip_records) == (6 if heuristic else 0)                # SIP still sees what it may want


def _load_pure():
    """rtp_cy from its source, uncompiled (the pure build's module), whatever build is installed."""
    name = "otus_pure_rtp_cy"
    spec = importlib.util.spec_from_file_location(name, pathlib.Path(rtp_cy.__file__).with_name("rtp_cy.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _rows(pcap: pathlib.Path):
    dec = Decoder(4096)
    with open_capture(pcap) as r:
        for b in r.batches():
            out = dec.decode(b.buf, b.n, b.offs, b.caplens, b.links)
            yield b.buf, array("q", out[:b.n * 17]), b.n, array("q", b.ts_ns[:b.n])


def test_pure_and_build_lane_take_the_same_rows_with_the_same_statistics(tmp_path):
    """The pure source's MediaLane and the installed one (compiled when built) on the same decoded rows."""
    pcap = tmp_path / "w.pcap"
    write_capture(pcap, 3, packets=200)
    pure = _load_pure()
    assert pure.cython.compiled is False
    lanes = [(MediaLane(), RtpStream), (pure.MediaLane(), pure.RtpStream)]
    streams: list[dict[bytes, object]] = [{}, {}]
    for buf, out, n, ts in _rows(pcap):
        i = 0
        while i < n:
            took = [lane.run(buf, out, n, ts, i, T0 + 100 * S) for lane, _ in lanes]
            assert took[0] == took[1]
            j = took[0]
            if j >= n:
                break
            o = j * 17
            if out[o] == 0 and out[o + 5] == 17:   # a row left to the path: route its flow on both, as the stage
                pay, ln = out[o + 7], out[o + 8]
                payload = buf[pay:pay + ln]
                if len(payload) >= 12 and payload[0] >> 6 == 2 and out[o + 10] != 5060:
                    l3, v4 = out[o + 3], out[o + 2] == 4
                    src, dst = (buf[l3 + 12:l3 + 16], buf[l3 + 16:l3 + 20]) if v4 else \
                        (buf[l3 + 8:l3 + 24], buf[l3 + 24:l3 + 40])
                    key = src + dst + struct.pack("!HH", out[o + 9], out[o + 10])
                    ssrc = int.from_bytes(payload[8:12], "big")
                    for k, (lane, cls) in enumerate(lanes):
                        st = streams[k].get(key + payload[8:12])
                        if st is None:
                            st = streams[k][key + payload[8:12]] = cls(ssrc, {0: "PCMU/8000"})
                        lane.put(key, st)
                        st.add_packet(ts[j], payload)
            i = j + 1
    assert lanes[0][0].packets == lanes[1][0].packets > 900
    assert lanes[0][0].refused() == lanes[1][0].refused() != {}
    assert streams[0].keys() == streams[1].keys()
    fields = ("packets", "octets", "expected", "lost", "duplicates", "out_of_order", "seq_errors", "max_delta",
              "mean_jitter", "max_jitter", "markers", "ts_jumps", "te_events", "last_ts_ns")
    for key, a in streams[0].items():
        b = streams[1][key]
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields], key


@pytest.mark.parametrize("load", [lambda: rtp_cy, _load_pure], ids=["build", "pure"])
def test_flow_table_put_pop_get_and_growth(load):
    mod = load()
    lane = mod.MediaLane()
    keys = [mod.flow_key(f"10.{i >> 8 & 255}.{i & 255}.1", 4000 + i % 7, "10.0.0.2", 5000) for i in range(5000)]
    keys += [mod.flow_key(f"fd00::{i:x}", 6000, "fd00::1", 7000 + i) for i in range(3000)]
    streams = [mod.RtpStream(i) for i in range(len(keys))]
    for k, s in zip(keys, streams):
        lane.put(k, s)
    assert lane.size == len(keys)
    assert all(lane.get(k) is s for k, s in zip(keys, streams))           # after several doublings
    for k in keys[::2]:
        lane.pop(k)
    assert lane.size == len(keys) // 2
    assert all(lane.get(k) is None for k in keys[::2]) and all(lane.get(k) is s for k, s in
                                                               zip(keys[1::2], streams[1::2]))
    for k in keys[::2]:                        # the removed slots are used again; growth drops them
        lane.put(k, streams[0])
    assert lane.size == len(keys) and all(lane.get(k) is streams[0] for k in keys[::2])
    lane.put(keys[1], streams[2])              # a flow's last stream wins
    assert lane.get(keys[1]) is streams[2] and lane.size == len(keys)
    assert lane.get(mod.flow_key("10.0.0.2", 5000, "10.0.0.1", 4000)) is None
    with pytest.raises(ValueError):
        lane.put(b"short", streams[0])


def test_flow_key_is_what_the_ip_header_carries():
    assert flow_key("10.1.2.3", 1, "10.4.5.6", 65535) == bytes((10, 1, 2, 3, 10, 4, 5, 6, 0, 1, 255, 255))
    k6 = flow_key("fd00::1", 2, "::ffff:1.2.3.4", 3)
    assert len(k6) == 36 and k6[:16] == socket.inet_pton(socket.AF_INET6, "fd00::1") and k6[-4:] == b"\0\2\0\3"
