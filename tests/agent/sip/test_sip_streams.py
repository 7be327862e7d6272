"""SIP over TCP (stream reassembly and framing), SCTP, dialogs, and fuzzing."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otus_agent.reassembly.datagrams import Datagram
from otus_agent.reassembly.tcpstream import TcpReassembler
from otus_agent.sip import message_cy as sip
from otus_agent.sip.dialogs_cy import CallTable
from otus_agent.sip.framing import SipConfig, SipStage

A, B = ("192.0.2.1", 40000), ("192.0.2.2", 5060)


def message(method: str = "INVITE", cseq: int = 1, call: str = "c1", body: bytes = b"", status: int = 0,
            to_tag: str | None = None, from_tag: str = "ft") -> bytes:
    first = f"SIP/2.0 {status} X" if status else f"{method} sip:bob@example.com SIP/2.0"
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    h = [first, "Via: SIP/2.0/TCP 192.0.2.1:40000;branch=z9hG4bK" + str(cseq) + method,
         f"From: <sip:alice@example.com>;tag={from_tag}", f"To: {to}", f"Call-ID: {call}",
         f"CSeq: {cseq} {method}", f"Content-Length: {len(body)}"] + (
             ["Content-Type: application/sdp"] if body else [])
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def seg(payload: bytes, seq: int, flags: int = 0x18, src=A, dst=B, ts: int = 0) -> Datagram:
    return Datagram(ts, 4, src[0], dst[0], 6, src[1], dst[1], payload, seq, flags)


def run(segments: list[Datagram], **cfg) -> tuple[list[dict], SipStage]:
    out: list[dict] = []
    stage = SipStage(SipConfig(**cfg), out.append)
    for d in segments:
        stage.on_datagram(d)
    stage.finish()
    return out, stage


BODY = b"v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def stream_of(n: int) -> bytes:
    return b"".join(message("INVITE" if i % 2 == 0 else "BYE", cseq=i + 1, call=f"c{i}", body=BODY if i % 2 == 0
                            else b"") for i in range(n))


def cut(data: bytes, sizes: list[int], isn: int = 1000) -> list[Datagram]:
    out, pos = [], 0
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append(seg(data[pos:pos + n], isn + pos, ts=i))
        pos += n
        i += 1
    return out


def calls_of(recs):
    return [(r["call_id"], r["cseq_num"], r["method"]) for r in recs]


EXPECTED = [(f"c{i}", i + 1, "INVITE" if i % 2 == 0 else "BYE") for i in range(6)]


def test_one_message_over_many_segments_and_many_in_one():
    data = stream_of(6)
    recs, st = run(cut(data, [7, 100, 3, 1400]))
    assert calls_of(recs) == EXPECTED and st.malformed == {}
    recs, st = run([seg(data, 1000)])
    assert calls_of(recs) == EXPECTED
    assert recs[0]["transport"] == "tcp" and recs[0]["sdp"]["media"][0]["port"] == 4000


def test_out_of_order_and_retransmissions():
    segs = cut(stream_of(6), [50])
    rng = random.Random(4)
    shuffled = segs[:1] + rng.sample(segs[1:], len(segs) - 1)  # the first one opens the stream
    dup = shuffled + [segs[3], segs[10]]  # retransmissions after the fact
    recs, st = run(dup)
    assert calls_of(recs) == EXPECTED
    assert st.tcp.retransmissions >= 2 and st.tcp.out_of_order > 0


def test_partial_overlap_retransmission():
    data = stream_of(2)
    a = seg(data[:100], 1000)
    b = seg(data[50:200], 1050)  # repacketised: overlaps the first 50 bytes
    c = seg(data[200:], 1200)
    recs, _ = run([a, b, c])
    assert calls_of(recs) == EXPECTED[:2]


def test_syn_then_data_and_keepalives():
    data = b"\r\n\r\n" + stream_of(2) + b"\r\n"
    syn = seg(b"", 999, flags=0x02)
    recs, st = run([syn] + cut(data, [64], isn=1000))
    assert calls_of(recs) == EXPECTED[:2] and st.keepalives >= 1


def test_junk_in_stream_resyncs():
    data = b"garbage that is not sip\r\nmore junk\r\n" + stream_of(2)
    d = seg(message("OPTIONS", call="x"), 1, src=("192.0.2.9", 5060), dst=("192.0.2.8", 1234))
    recs, st = run([d, seg(data, len(d.payload) + 1, src=("192.0.2.9", 5060), dst=("192.0.2.8", 1234))])
    assert calls_of(recs)[1:] == EXPECTED[:2]
    assert st.malformed.get("junk_in_stream") == 1 and st.junk_bytes > 0


def test_truncated_message_at_fin_counted():
    data = stream_of(1)
    recs, st = run([seg(data[:-10], 1000), seg(b"", 1000 + len(data) - 10, flags=0x11)])
    assert recs == [] and st.malformed == {"truncated_at_close": 1}


def test_stream_limits():
    t = TcpReassembler(max_streams=3, max_buffer=4096, max_pending=4, timeout_s=10)
    for i in range(5):
        t.open(("a", i, "b", 5060), 0, ts=i)
    assert len(t.streams) == 3 and t.evictions == 2
    s = t.open(("x", 1, "y", 2), 0, ts=10)
    t.add(s, 0, 0x18, b"a" * 5000, ts=10)
    assert t.overflows == 1 and len(s.buf) <= 4096
    s2 = t.open(("x", 2, "y", 2), 0, ts=10)
    for k in range(6):  # six segments behind a hole: the hole is given up
        t.add(s2, 100 + k * 10, 0x18, b"b" * 10, ts=10)
    assert t.gaps == 1 and bytes(s2.buf).startswith(b"b")
    t.expire(10 + 11 * 10**9)
    assert t.evictions == 4 and t.timeouts == 3 and not t.streams  # the cap held: 3 streams at most
    with pytest.raises(ValueError):
        TcpReassembler(max_buffer=10)


def test_sequence_wraparound():
    data = stream_of(2)
    isn = (1 << 32) - 60
    segs = cut(data, [40], isn=isn)
    for d in segs:
        d.tcp_seq %= 1 << 32
    recs, _ = run(segs)
    assert calls_of(recs) == EXPECTED[:2]


def test_websocket_masked_frames():
    import os
    hs = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Protocol: sip\r\nSec-WebSocket-Key: x\r\n\r\n")
    m = message("REGISTER", call="ws1").replace(b"Via: SIP/2.0/TCP", b"Via: SIP/2.0/WS")
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(m))
    frame = bytes([0x81, 0x80 | 126]) + len(m).to_bytes(2, "big") + key + masked
    src, dst = ("192.0.2.5", 50000), ("192.0.2.6", 8080)
    recs, _ = run([seg(hs, 1, src=src, dst=dst), seg(frame[:20], 1 + len(hs), src=src, dst=dst),
                   seg(frame[20:], 21 + len(hs), src=src, dst=dst)])
    assert [(r["transport"], r["call_id"]) for r in recs] == [("ws", "ws1")]


def test_sctp_data_chunks_and_fragmented_user_message():
    m1 = message("OPTIONS", call="s1")
    m2 = message("INVITE", call="s2", body=BODY)

    def chunk(flags: int, data: bytes, tsn: int) -> bytes:
        ln = 16 + len(data)
        c = bytes([0, flags]) + ln.to_bytes(2, "big") + tsn.to_bytes(4, "big") + b"\0\0\0\0" + b"\0\0\0\0" + data
        return c + b"\0" * (-ln % 4)
    d1 = Datagram(0, 4, A[0], B[0], 132, 5060, 5060, chunk(3, m1, 1) + chunk(2, m2[:100], 2))
    d2 = Datagram(1, 4, A[0], B[0], 132, 5060, 5060, chunk(1, m2[100:], 3))
    recs, st = run([d1, d2])
    assert [(r["transport"], r["call_id"]) for r in recs] == [("sctp", "s1"), ("sctp", "s2")]


def _udp(payload: bytes, ts: int = 0, src=A, dst=B) -> Datagram:
    return Datagram(ts, 4, src[0], dst[0], 17, src[1], dst[1], payload)


def test_dialog_summary_answered_and_bye():
    s = 10**9
    flow = [
        (message("INVITE", 1, "d1"), 0, A, B),
        (message("INVITE", 1, "d1", status=100), s // 10, B, A),
        (message("INVITE", 1, "d1", status=180, to_tag="tt"), 2 * s, B, A),
        (message("INVITE", 1, "d1", status=200, to_tag="tt"), 5 * s, B, A),
        (message("ACK", 1, "d1", to_tag="tt"), 5 * s + 1, A, B),
        (message("INVITE", 2, "d1", to_tag="tt"), 10 * s, A, B),  # re-INVITE
        (message("INVITE", 2, "d1", status=200, to_tag="tt"), 10 * s + 5, B, A),
        (message("BYE", 3, "d1", to_tag="ft", from_tag="tt"), 65 * s, B, A),  # callee hangs up
        (message("BYE", 3, "d1", status=200, to_tag="ft", from_tag="tt"), 65 * s + 1, A, B),
    ]
    recs, st = run([_udp(p, ts, a, b) for p, ts, a, b in flow], call_summaries=True)
    calls = [r for r in recs if r["type"] == "call"]
    assert len(calls) == 1
    c = calls[0]
    assert (c["state"], c["final_status"], c["ended_by"], c["reinvites"]) == ("ended", 200, "callee", 1)
    assert (c["setup_ms"], c["answer_ms"], c["duration_ms"]) == (2000.0, 5000.0, 60000.0)


def test_dialog_cancel_reject_and_limits():
    flow = [(message("INVITE", 1, "x1"), 0), (message("CANCEL", 1, "x1"), 1),
            (message("INVITE", 1, "x1", status=487, to_tag="t"), 2),
            (message("INVITE", 1, "x2"), 3), (message("INVITE", 1, "x2", status=486, to_tag="t"), 4)]
    recs, _ = run([_udp(p, ts) for p, ts in flow], call_summaries=True)
    calls = {r["call_id"]: r for r in recs if r["type"] == "call"}
    assert calls["x1"]["state"] == "cancelled" and calls["x1"]["ended_by"] == "caller"
    assert calls["x2"]["state"] == "failed" and calls["x2"]["final_status"] == 486
    t = CallTable(max_calls=2, timeout_s=5)
    for i in range(4):
        t.observe(sip.parse(message("INVITE", 1, f"e{i}")), i)
    assert t.counters()["evictions"] == 2 and t.counters()["active"] == 2
    ended = t.observe(sip.parse(message("OPTIONS", 1, "zz")), 100 * 10**9)
    assert {e["state"] for e in ended} == {"timed_out"} and t.counters()["active"] == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_parser_random_bytes(data):
    for stream in (False, True):
        m = sip.parse(data, stream=stream)
        assert m is None or isinstance(m.defects, list)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8), st.booleans())
def test_fuzz_parser_mutated_messages(muts, stream):
    data = bytearray(message("INVITE", 1, "f1", body=BODY))
    for pos, val in muts:
        data[pos % len(data)] = val
    sip.parse(bytes(data), stream=stream)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-300, 3000), st.integers(1, 400), st.sampled_from([0x18, 0x10, 0x02, 0x11,
                                                                                         0x04])), max_size=25))
def test_fuzz_tcp_segments_never_raise(segs):
    data = stream_of(4) + bytes(range(256))
    stage = SipStage(SipConfig())
    for off, n, flags in segs:
        o = max(0, off)
        stage.on_datagram(seg(data[o:o + n], 1000 + off, flags=flags))
    stage.finish()
