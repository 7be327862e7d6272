"""The message fingerprint (sip/fingerprint_cy.py): FNV-1a as specified, equal in the compiled and pure
builds and on every path (full parser, scanner, compiled lane), equal for the same message seen at two
capture points, different for different messages."""
from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from otus_agent.sip import fingerprint_cy
from otus_agent.sip.framing import SipConfig, SipStage
from otus_agent.sip.message_cy import parse
from otus_agent.sip.records import Correlator, sip_record
from tests.conftest import load_pure

PURE = load_pure("sip/fingerprint_cy.py", "otus_pure_fingerprint")


def fnv1a64(data: bytes) -> str:
    """The reference: FNV-1a, 64-bit (http://www.isthe.com/chongo/tech/comp/fnv/)."""
    h = 0xCBF29CE484222325
    for c in data:
        h = ((h ^ c) * 0x100000001B3) % (1 << 64)
    return f"{h:016x}"


parts = st.lists(st.binary(max_size=80), min_size=8, max_size=8)


@settings(max_examples=300, deadline=None)
@given(parts)
def test_fnv1a_over_the_nul_joined_parts_in_both_builds(p):
    want = fnv1a64(b"\0".join(p[:7] + [p[7][:fingerprint_cy.BODY_BYTES]]))
    assert fingerprint_cy.fingerprint(*p) == want == PURE.fingerprint(*p)


INVITE = (b"INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK74bf9\r\n"
          b"From: <sip:alice@a.example>;tag=9fxced76sl\r\nTo: <sip:bob@b.example>\r\n"
          b"Call-ID: 3848276298220188511@a.example\r\nCSeq: 314159 INVITE\r\nMax-Forwards: 70\r\n"
          b"Content-Type: application/sdp\r\nContent-Length: 35\r\n\r\nv=0\r\no=alice 1 1 IN IP4 a.example\r\n")


def _resp(code: int, to_tag: str) -> bytes:
    return (f"SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK74bf9\r\n"
            f"From: <sip:alice@a.example>;tag=9fxced76sl\r\nTo: <sip:bob@b.example>;tag={to_tag}\r\n"
            f"Call-ID: 3848276298220188511@a.example\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n").encode()


def _rec(data: bytes, ts: int = 1, agent: str = "a") -> dict:
    return sip_record(parse(data), ts, "10.0.0.1", 5060, "10.0.0.2", 5060, "udp", Correlator(), {"agent": agent})


def test_same_message_same_fingerprint_different_messages_different():
    a, b = _rec(INVITE, 1, "caller-sidecar"), _rec(INVITE, 2_000_000, "callee-sidecar")
    assert a["fingerprint"] == b["fingerprint"]                    # two capture points
    assert fnv1a64(b"\0".join([b"INVITE", b"3848276298220188511@a.example", b"314159", b"INVITE",
                               b"z9hG4bK74bf9", b"9fxced76sl", b"", b"v=0\r\no=alice 1 1 IN IP4 a.example\r\n"])) \
        == a["fingerprint"]                                        # recomputable from the record and the body
    fps = {_rec(m)["fingerprint"] for m in (INVITE, _resp(180, "x1"), _resp(180, "x2"), _resp(200, "x1"))}
    assert len(fps) == 4                                           # forked 180s differ by To tag
    other_body = INVITE.replace(b"o=alice 1 1", b"o=alice 2 2")
    assert _rec(other_body)["fingerprint"] != a["fingerprint"]


def test_every_path_gives_the_same_fingerprint(workload_pcap):
    """The full parser (fast path off), the scanner (fast path on, no lane) and the lane (compiled)."""
    from otus_agent.capture.pcapfile import open_capture
    from otus_agent.reassembly.datagrams import DatagramStage
    from otus_agent.reporters.sink import RecordSink

    def records(fast: bool, lane: bool) -> list[dict]:
        out = bytearray()
        sink = RecordSink(out.extend)
        st = SipStage(SipConfig(fast_path=fast), sink.emit, None, sink.emit_block if lane else None)
        with open_capture(workload_pcap[0]) as r:
            DatagramStage(sink=st.on_datagram, lane=st.run_lane if st.lane is not None else None).run(r.batches())
        sink.flush()
        st.finish()
        return [orjson.loads(x) for x in out.splitlines()]
    full, scan, lane = records(False, False), records(True, False), records(True, True)
    key = [(r["ts"], r["fingerprint"]) for r in full if r["type"] == "sip"]
    assert len(key) > 1000 and len({f for _, f in key}) > 0.9 * len(key)
    assert key == [(r["ts"], r["fingerprint"]) for r in scan if r["type"] == "sip"]
    assert key == [(r["ts"], r["fingerprint"]) for r in lane if r["type"] == "sip"]
