"""The compiled SIP lane writes exactly the records the general path writes, in the same order.

Compared byte for byte: generated workloads (UDP, TCP, fragments, VLAN, IPv6; with task/agent labels;
with Kafka pairs), every capture of the corpus, random SIP messages and random SDP bodies (hypothesis).
"""
from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otus_agent.capture.pcapfile import open_capture
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.reporters.sink import RecordSink
from otus_agent.sim import packets as P
from otus_agent.sip.framing import LANE_COMPILED, SipConfig, SipStage
from otus_agent.sip.sdp_cy import parse_sdp

from ...conftest import corpus_path, pcap_bytes

pytestmark = pytest.mark.skipif(not LANE_COMPILED, reason="the lane exists only in the compiled build")


class FakeKafka:
    """Collects what RecordSink would hand to the Kafka reporter (no broker needed for equality)."""

    def __init__(self):
        self.pairs = []

    def write(self, pairs):
        self.pairs.extend(pairs)


def run(path, lane: bool, extra: dict | None = None, kafka: bool = False, **cfg):
    out = bytearray()
    k = FakeKafka() if kafka else None
    sink = RecordSink(out.extend, k)
    st = SipStage(SipConfig(extra=extra or {}, **cfg), sink.emit, None, sink.emit_block if lane else None,
                  want_pairs=kafka)
    assert (st.lane is not None) == lane
    with open_capture(str(path)) as r:
        DatagramStage(sink=st.on_datagram, lane=st.run_lane if lane else None).run(r.batches())
    st.finish()        # what the stage still holds (call summaries, TCP leftovers) reaches the sink first
    sink.flush()
    return bytes(out), st.summary(), (k.pairs if k else None)


def same(path, **kw):
    a = run(path, False, **kw)
    b = run(path, True, **kw)
    assert a[0] == b[0], "records differ"
    assert a[1] == b[1], "counters differ"
    assert a[2] == b[2], "Kafka pairs differ"
    return b


def test_generated_workloads(workload_pcap):
    path, wl = workload_pcap
    out, summary, _ = same(path)
    assert summary["sip_messages"] == wl.sip_messages and summary["fast_path"] > 0.8 * wl.sip_messages
    same(path, extra={"task": "t-1", "agent": 'node "7"\\'})
    _, _, pairs = same(path, kafka=True)
    assert len(pairs) == wl.sip_messages and all(isinstance(k, bytes) and v.startswith(b"{") for k, v in pairs)
    same(path, heuristic=False)
    same(path, ports=(5080,))          # most SIP then reaches the lane through the heuristic


@pytest.mark.corpus
def test_every_corpus_capture():
    root = corpus_path("pcap")
    files = sorted(p for p in root.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))
    assert files
    compared = 0
    for f in files:
        try:
            a = run(f, False)
        except Exception:
            continue              # captures the reader refuses are covered elsewhere
        b = run(f, True)
        assert a[0] == b[0], f
        assert a[1] == b[1], f
        compared += 1
    assert compared >= 15


HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=30).filter(
    lambda s: s.strip() == s)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ua=HEADER_TEXT, cid=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
       branch=st.text("abcdefXYZ0123456789-._!%*+`'~", min_size=1, max_size=20),
       status=st.integers(100, 699), tab=st.booleans(), ipv6=st.booleans(), body=st.booleans())
def test_random_messages(tmp_path_factory, ua, cid, branch, status, tab, ipv6, body):
    sdp = (b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
           b"m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n") if body else b""
    ua_line = ua.replace(" ", "\t") if tab else ua
    msgs = [
        (f"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{branch}\r\n"
         f"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {cid}\r\n"
         f"CSeq: 1 INVITE\r\nUser-Agent: {ua_line}\r\nMax-Forwards: 70\r\n"
         + ("Content-Type: application/sdp\r\n" if body else "")
         + f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp,
        (f"SIP/2.0 {status} Whatever {ua}\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{branch}\r\n"
         f"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\nCall-ID: {cid}\r\n"
         f"CSeq: 1 INVITE\r\nServer: {ua}\r\nContent-Length: 0\r\n\r\n").encode(),
    ]
    frames = []
    for m in msgs:
        if ipv6:
            a, b = bytes(15) + b"\x01", bytes(15) + b"\x02"
            frames.append(P.ethernet(b"\x02" * 6, b"\x04" * 6, 0x86DD, P.ipv6(a, b, 17, P.udp(a, b, 5060, 5060, m))))
        else:
            a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
            frames.append(P.ethernet(b"\x02" * 6, b"\x04" * 6, 0x0800, P.ipv4(a, b, 17, P.udp(a, b, 5060, 5060, m))))
    path = tmp_path_factory.mktemp("rand") / "m.pcap"
    path.write_bytes(pcap_bytes(frames))
    same(path, kafka=True)


SDP_LINE = st.one_of(
    st.sampled_from([b"v=0", b"s=-", b"t=0 0", b"c=IN IP4 10.1.1.1", b"c=IN IP6 ::1/64", b"c=IN", b"m=audio",
                     b"m=audio 4000 RTP/AVP 0 8 101", b"m=video 0/2 RTP/AVPF", b"m=audio 70000 RTP/AVP 0",
                     b"m=audio 00012 RTP/AVP", b"m=  audio   5 x  ", b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:0 PCMA/8000",
                     b"a=rtpmap:101  telephone-event/8000  ", b"a=rtpmap:x", b"a=rtpmap: y z", b"a=sendrecv",
                     b"o=- 1 2 IN IP4 1.2.3.4", b"o=a b c", b"o=u\"q 1 2 IN IP4 h\\x", b"x", b"", b"=", b"\r",
                     b"a=rtpmap:9 G722/8000\t", b"c=IN IP4 \x01x", "a=rtpmap:8 é".encode()]),
    st.binary(max_size=12))


@settings(max_examples=400, deadline=None)
@given(lines=st.lists(SDP_LINE, max_size=14), crlf=st.booleans(), vfirst=st.booleans())
def test_sdp_writer_matches_the_parser(lines, crlf, vfirst):
    from otus_agent.sip.writer_cy import sdp_json
    body = (b"\r\n" if crlf else b"\n").join(([b"v=0"] if vfirst else []) + lines)
    got = sdp_json(body)
    want = parse_sdp(body)
    assert got == (orjson.dumps(want) if want is not None else b"null"), body


def test_lane_writes_unusual_sdp_as_the_parser_does():
    """One scanner: what the lane once deferred to the Python parser it now writes from the same offsets."""
    from otus_agent.sip.writer_cy import sdp_json
    for body in (b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 A\r\na=rtpmap:0 B\r\n",   # repeated key
                 b"v=0\r\nm=audio\t1 RTP/AVP 0\r\n",                                    # a tab
                 "v=0\r\ns=é\r\n".encode(),                                            # non-ASCII, not read
                 "v=0\r\nm=audio 1 RTP/AVP 0 é\r\n".encode(),                          # non-ASCII in a field
                 b"v=0\r\nm=audio 1 RTP/AVP 0\r\n"):
        assert sdp_json(body) == orjson.dumps(parse_sdp(body)), body


def test_random_order_of_tcp_and_udp_keeps_record_order(tmp_path):
    """UDP (lane) and TCP (general path) messages interleaved in one batch come out in packet order."""
    rnd = random.Random(3)
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    frames, order, seq = [], [], 1000
    for i in range(300):
        m = (f"OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{i}\r\nFrom: <sip:a@x>;tag={i}\r\n"
             f"To: <sip:b@x>\r\nCall-ID: c{i}\r\nCSeq: {i + 1} OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
        if rnd.random() < 0.3:
            frames.append(P.ethernet(b"\x02" * 6, b"\x04" * 6, 0x0800,
                                     P.ipv4(a, b, 6, P.tcp(a, b, 40000, 5060, seq, 1, 0x18, m))))
            seq += len(m)
        else:
            frames.append(P.ethernet(b"\x02" * 6, b"\x04" * 6, 0x0800, P.ipv4(a, b, 17, P.udp(a, b, 5060, 5060, m))))
        order.append(f"c{i}")
    path = tmp_path / "mix.pcap"
    path.write_bytes(pcap_bytes(frames))
    out, summary, _ = same(path)
    got = [orjson.loads(x)["call_id"] for x in out.splitlines()]
    assert got == order and summary["fast_path"] == 300


def test_tcp_edge_cases_same_with_and_without_the_lane(tmp_path):
    """Retransmitted, out-of-order, coalesced and split segments: the lane's shortcut for a whole
    in-order message must agree with the stream reassembler on all of them."""
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])

    def msg(i: int) -> bytes:
        return (f"MESSAGE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK{i}\r\nFrom: <sip:a@x>;tag={i}\r\n"
                f"To: <sip:b@x>\r\nCall-ID: t{i}\r\nCSeq: {i + 1} MESSAGE\r\nContent-Length: 2\r\n\r\nhi").encode()

    def seg(seq: int, data: bytes, flags: int = 0x18) -> bytes:
        return P.ethernet(b"\x02" * 6, b"\x04" * 6, 0x0800, P.ipv4(a, b, 6, P.tcp(a, b, 40001, 5060, seq, 1, flags, data)))
    m = [msg(i) for i in range(8)]
    seq = 500
    frames = [seg(seq - 1, b"", 0x02)]                      # SYN
    frames.append(seg(seq, m[0]))
    seq += len(m[0])
    frames.append(seg(seq - len(m[0]), m[0]))               # retransmission
    frames.append(seg(seq + len(m[1]), m[2]))               # ahead of m[1]
    frames.append(seg(seq, m[1]))                           # fills the gap
    seq += len(m[1]) + len(m[2])
    frames.append(seg(seq, m[3] + m[4]))                    # two in one segment
    seq += len(m[3]) + len(m[4])
    frames.append(seg(seq, m[5][:30]))                      # one over two segments
    frames.append(seg(seq + 30, m[5][30:]))
    seq += len(m[5])
    frames.append(seg(seq, b"\r\n\r\n"))                    # keep-alive
    seq += 4
    frames.append(seg(seq, m[6]))
    seq += len(m[6])
    frames.append(seg(seq, m[7], 0x19))                     # with FIN
    path = tmp_path / "tcp.pcap"
    path.write_bytes(pcap_bytes(frames))
    out, summary, _ = same(path)
    got = [orjson.loads(x)["call_id"] for x in out.splitlines()]
    assert got == [f"t{i}" for i in range(8)]
    assert summary["tcp"]["retransmissions"] == 1 and summary["tcp"]["out_of_order"] == 1
