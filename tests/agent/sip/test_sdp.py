"""SDP is parsed once: one scanner into offsets (sip/sdpspans.pxd), two emitters that agree.

Checked on random and hostile bodies (hypothesis): the dict emitter of the compiled build equals the pure
build's; the JSON emitter (the compiled lane's) writes exactly ``orjson.dumps`` of the dict emitter's
output; and both read the text as the str-based parser before issue 14 did (``_reference`` below, the
definition the records were pinned with: decode as UTF-8 else latin-1, split lines on LF, fields on
``str.split()`` whitespace), apart from the two documented bounds (a port is ASCII digits, at most
MAX_RTPMAP rtpmap entries per body).
"""
from __future__ import annotations

import pathlib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otus_agent.sip import sdp_cy, sdpspans
from otus_agent.sip.framing import LANE_COMPILED

from ...conftest import load_pure

PURE = load_pure("sip/sdp_cy.py", "otus_pure_sdp")
COMPILED = sdp_cy.__file__.endswith(".so")


def _reference(body: bytes) -> dict | None:
    """The str-based reading (sdp_cy.parse_sdp before the offsets), as an oracle for the tests only."""
    if not body.startswith(b"v="):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")
    origin = conn = cur = None
    media: list[dict] = []
    nrtp = 0
    # a= direction, rtcp-mux and rtcp: (issue 16): the last of each, written after the other keys
    extra: list[dict] = []
    session: dict = {}
    for line in text.split("\n"):
        if len(line) < 2 or line[1] != "=":
            continue
        t, v = line[0], line[2:].rstrip("\r")
        if t == "m":
            cur = None
            f = v.split()
            if len(media) < sdpspans.MAX_MEDIA and len(f) >= 3:
                port_s = f[1].split("/", 1)[0]
                ok = port_s.isascii() and port_s.isdigit() and len(port_s) <= 5
                cur = {"type": f[0], "port": int(port_s) if ok else None, "proto": f[2], "payloads": f[3:]}
                media.append(cur)
                extra.append({})
        elif t == "c":
            f = v.split()
            addr = f[2].split("/", 1)[0] if len(f) >= 3 else None
            if cur is None:
                conn = addr
            else:
                cur["connection"] = addr
        elif t == "o":
            f = v.split()
            if len(f) >= 6:
                origin = {"username": f[0], "session_id": f[1], "session_version": f[2], "address": f[5]}
        elif t == "a" and v in ("sendrecv", "sendonly", "recvonly", "inactive"):
            (extra[-1] if cur is not None else session)["direction"] = v
        elif t == "a" and v == "rtcp-mux":
            (extra[-1] if cur is not None else session)["rtcp_mux"] = True
        elif t == "a" and cur is not None and v.startswith("rtcp:") and v.isascii() and v[5:].strip():
            extra[-1]["rtcp"] = v[5:].strip()
        elif t == "a" and cur is not None and v.startswith("rtpmap:"):
            sp = v.find(" ")
            if sp > 7:
                rtpmap = cur.setdefault("rtpmap", {})
                if v[7:sp] in rtpmap or nrtp < sdpspans.MAX_RTPMAP:
                    nrtp += v[7:sp] not in rtpmap
                    rtpmap[v[7:sp]] = v[sp + 1:].strip()
    for m, x in zip(media, extra):
        if m.get("rtpmap") == {}:
            del m["rtpmap"]
        for k in ("direction", "rtcp_mux", "rtcp"):
            if k in x:
                m[k] = x[k]
    out: dict = {"media": media}
    if origin is not None:
        out["origin"] = origin
    if conn is not None:
        out["connection"] = conn
    for k in ("direction", "rtcp_mux"):
        if k in session:
            out[k] = session[k]
    return out


def _json(body: bytes) -> bytes:
    from otus_agent.sip.writer_cy import sdp_json
    return sdp_json(body)


def check(body: bytes) -> None:
    want = _reference(body)
    got = sdp_cy.parse_sdp(body)
    assert orjson.dumps(got) == orjson.dumps(want), body          # key order included
    assert orjson.dumps(PURE.parse_sdp(body)) == orjson.dumps(want), body
    if LANE_COMPILED:
        assert _json(body) == (orjson.dumps(got) if got is not None else b"null"), body


LINES = [b"v=0", b"o=- 1 2 IN IP4 1.2.3.4", b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10", b"o=a b c",
         b"s=-", b"t=0 0", b"c=IN IP4 10.1.1.1", b"c=IN IP6 ::1/64", b"c=IN IP4 224.2.1.1/127/3", b"c=IN", b"c=",
         b"m=audio 4000 RTP/AVP 0 8 101", b"m=video 0/2 RTP/AVPF", b"m=audio 70000 RTP/AVP 0", b"m=audio",
         b"m=audio 00012 RTP/AVP", b"m=  audio   5 x  ", b"m=audio 123456 RTP/AVP 0", b"m=audio /2 RTP/AVP 0",
         b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:0 PCMA/8000", b"a=rtpmap:101  telephone-event/8000  ",
         b"a=rtpmap:x", b"a=rtpmap: y z", b"a=rtpmap:", b"a=sendrecv", b"a=rtcp:9 IN IP4 0.0.0.0", b"a=rtcp-mux",
         b"a=sendonly", b"a=recvonly", b"a=inactive", b"a=inactive ", b"a=sendrecv\r", b"a=rtcp:  53021 ", b"a=rtcp:",
         b"a=rtcp: \x0b", "a=rtcp:9 é".encode(), b"a=rtcp-mux x", b"a=RTCP-MUX", b'a=rtcp:1 "q\\',
         b"x", b"", b"=", b"\r", b"\r\r", b"v=", b"a=rtpmap:9 G722/8000\t", b"c=IN IP4 \x01x", b'o=u"q 1 2 IN IP4 h\\x',
         "a=rtpmap:8 é".encode(), "s=Ünïcödé".encode(), "m=audio 1 RTP/AVP 0 é".encode(), b"m=audio 1 RTP/AVP \xe9",
         "m=audio\u2000 1\u00a0RTP/AVP 0\u3000".encode(), b"m=a\xa0 1 b \x85 c", "o=a\u3000b c d e f g".encode(),
         b"c=\x1cIN\x1dIP4\x1e1.2.3.4/2", b"a=rtpmap:0\x0b x\x0c", "m=audio \u00b2 RTP/AVP".encode("latin-1"),
         "m=audio \u0663 RTP/AVP".encode(), b"m=a 1\r\r b", b"\xc3(", b"a=rtpmap:0 \xe2\x80\x8a", b"\xe2\x80",
         "a=rtpmap:\u00e9 x\u2028".encode()]
# bytes that are whitespace in one encoding and not in another, or that break a field or a line
HOSTILE = [b" ", b"\t", b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1f", b"\x00", b"\x7f", b"\xa0", b"\x85", b"\xc2",
           "\u2028".encode(), "\u00a0".encode(), "\u1680".encode(), "\u205f".encode(), "\u200b".encode(), b"/",
           b"=", b'"', b"\\", b"\xff", b"\xed\xa0\x80"]


@st.composite
def line(draw) -> bytes:
    b = bytearray(draw(st.sampled_from(LINES)))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(b)))
        b[at:at] = draw(st.one_of(st.sampled_from(HOSTILE), st.binary(min_size=1, max_size=3)))
    return bytes(b)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.one_of(line(), st.binary(max_size=16)), max_size=16), sep=st.sampled_from([b"\r\n", b"\n"]),
       vfirst=st.booleans())
def test_both_emitters_agree_on_random_and_hostile_bodies(lines, sep, vfirst):
    check(sep.join(([b"v=0"] if vfirst else []) + lines))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_both_emitters_agree_on_random_bytes(raw):
    check(raw)
    check(b"v=" + raw)


@pytest.mark.parametrize("body", [
    b"v=0\r\n" + b"".join(b"m=audio %d RTP/AVP 0\r\nc=IN IP4 10.0.0.%d\r\n" % (i, i) for i in range(40)),
    b"v=0\r\nm=audio 1 RTP/AVP 0\r\n" + b"".join(b"a=rtpmap:%d X/%d\r\n" % (i, i) for i in range(140)),
    b"v=0\r\nm=audio 1 RTP/AVP 0\r\n" + b"".join(b"a=rtpmap:%d X/%d\r\n" % (i % 3, i) for i in range(300)),
    b"v=0\r\n" + b"".join(b"m=audio 1 RTP/AVP 0\r\na=rtpmap:%d X\r\na=rtpmap:%d Y\r\n" % (i, i + 1) for i in range(80)),
    b"v=0\r\nm=audio 1 RTP/AVP " + b" ".join(b"%d" % i for i in range(500)) + b"\r\n",
    b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 A\r\nc=IN IP4 1.1.1.1\r\nc=IN\r\n",
    b"v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio\r\nc=IN IP4 2.2.2.2\r\n",        # a bad m= line: c= is the session's
    "v=0\r\ns=\u00e9\r\nm=audio 1 RTP/AVP 0\r\n".encode("latin-1"),
])
def test_bounds_and_key_order(body):
    check(body)


def test_the_bounds():
    many = b"v=0\r\n" + b"".join(b"m=audio %d RTP/AVP 0\r\n" % i for i in range(40))
    assert len(sdp_cy.parse_sdp(many)["media"]) == sdpspans.MAX_MEDIA
    rtp = b"v=0\r\nm=audio 1 RTP/AVP 0\r\n" + b"".join(b"a=rtpmap:%d X/%d\r\na=rtpmap:0 Z\r\n" % (i, i)
                                                        for i in range(200))
    got = sdp_cy.parse_sdp(rtp)["media"][0]["rtpmap"]
    assert len(got) == sdpspans.MAX_RTPMAP and got["0"] == "Z" and got["127"] == "X/127" and "128" not in got
    assert sdp_cy.parse_sdp("v=0\r\nm=audio \u00b2 RTP/AVP 0\r\n".encode("latin-1"))["media"][0]["port"] is None


def test_the_layout_is_consistent():
    s = sdpspans
    assert s.SD_RTP == s.SD_MEDIA + s.MAX_MEDIA * s.MW and s.NSDP == s.SD_RTP + s.MAX_RTPMAP * s.RW
    assert max(v for k, v in s.LAYOUT.items() if k.startswith("SD_") and k != "SD_RTP" and k != "SD_MEDIA") < \
        s.SD_MEDIA
    assert max(v for k, v in s.LAYOUT.items() if k.startswith("M_")) < s.MW
    assert max(v for k, v in s.LAYOUT.items() if k.startswith("R_")) < s.RW


SDP = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


@pytest.mark.parametrize("ct,body,found", [
    ("application/sdp", SDP, SDP),
    (" Application/SDP ; x=1", SDP, SDP),
    ("application/sdp", b"x" + SDP, None),
    ('multipart/mixed;boundary="b"', b"--b\r\nContent-Type: text/plain\r\n\r\nv=hi\r\n--b\r\n"
     b"Content-Type: application/sdp\r\n\r\n" + SDP + b"\r\n--b--\r\n", SDP),
    ("multipart/mixed; boundary=b", b"pre--b\r\nContent-Type: multipart/alternative;boundary=c\r\n\r\n--c\n"
     b"Content-Type: application/sdp\n\n" + SDP[:-2] + b"\r\n--c--\r\n--b--", SDP[:-2]),    # nested
    ("multipart/mixed; boundary=b", b"--b\r\n\r\n" + SDP + b"--b--", None),        # a part without a type
    ("multipart/mixed", b"--b\r\nContent-Type: application/sdp\r\n\r\n" + SDP, None),
    ("multipart/mixed;boundary=b", b"--b--\r\n--b\r\nContent-Type: application/sdp\r\n\r\n" + SDP, None),
])
def test_the_sdp_part_is_found_once_and_fed_to_the_scanner(ct, body, found):
    span = sdp_cy.sdp_span(ct, body)
    assert (body[span[0]:span[1]] if span else None) == found
    assert sdp_cy.sdp_from_body(ct, body) == (sdp_cy.parse_sdp(found) if found else None)
    assert PURE.sdp_span(ct, body) == span


@pytest.mark.skipif(not COMPILED, reason="the compiled build")
def test_the_lane_has_no_sdp_parser_of_its_own():
    src = (pathlib.Path(sdp_cy.__file__).parent / "writer_cy.py").read_text()
    assert "from cython.cimports.otus_agent.sip.sdp_cy import" in src and "_scan_sdp(" in src
    for gone in ("def _tokens", "def _close_media", "def _is_app_sdp", "sdp_from_body", "MAX_RTPMAP = "):
        assert gone not in src


BODIES = [SDP, SDP + b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:0 G711\r\n", SDP + "a=rtpmap:0 PCMU/8000 é\r\n".encode(),
          SDP + "m=vidéo 5 RTP/AVP\u00a031\r\n".encode(), SDP + "m=vid\xe9o 5 RTP/AVP\xa031\r\n".encode("latin-1"),
          SDP + b"".join(b"m=audio %d RTP/AVP 0\r\n" % i for i in range(40)), b"v=0\r\n", b"x=0\r\n"]
TYPES = ["application/sdp", "Application/SDP ; x=y", "application/sdp\x0b", "\x1capplication/sdp", "text/plain",  # str.strip()
         "multipart/mixed;boundary=b"]


@pytest.mark.skipif(not LANE_COMPILED, reason="the lane exists only in the compiled build")
def test_the_lane_and_the_general_path_write_the_same_sdp(tmp_path):
    from otus_agent.sim import packets as P

    from ...conftest import pcap_bytes
    from .test_udplane import same
    frames = []
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    for i, (ct, body) in enumerate((ct, body) for ct in TYPES for body in BODIES):
        if ct.startswith("multipart"):
            body = b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/sdp\r\n\r\n" + \
                body + b"\r\n--b--\r\n"
        m = (f"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{i}\r\n"
             f"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c{i}\r\n"
             f"CSeq: 1 INVITE\r\nContent-Type: {ct}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        frames.append(P.ethernet(b"\x02" * 6, b"\x04" * 6, 0x0800, P.ipv4(a, b, 17, P.udp(a, b, 5060, 5060, m))))
    path = tmp_path / "sdp.pcap"
    path.write_bytes(pcap_bytes(frames))
    out, summary, _ = same(path)
    assert summary["fast_path"] == len(frames)          # every one written by the lane
    recs = [orjson.loads(x) for x in out.splitlines()]
    assert sum(r["sdp"] is not None for r in recs) == 5 * (len(BODIES) - 1)     # text/plain has none


CT_PIECES = ["application/sdp", "APPLICATION/SDP", "multipart/mixed", "MultiPart/", "multipart", " ", "\t", "\x0b",
             "\x1c", "\xa0", "\x85", "\u2000", "\u3000", "\u200b", ";", "boundary=b", "\u0130", "\u212a", "\udc80", "\r"]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(CT_PIECES), max_size=6))
def test_one_media_type_test_reads_content_type_as_str_does(pieces):
    """sdp_span and the lane share _sdp_kind on bytes; it reads the text as ct.split(';')[0].strip().lower()."""
    ct = "".join(pieces)
    low = ct.split(";", 1)[0].strip().lower()
    multipart = b"--b\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n--b--"
    want = (0, len(SDP)) if low == "application/sdp" else None
    assert sdp_cy.sdp_span(ct, SDP) == PURE.sdp_span(ct, SDP) == want, ct
    want = sdp_cy.sdp_span(ct, multipart)
    assert (want is not None) == (low.startswith("multipart/") and sdp_cy.boundary_of(ct) == "b"), ct
    assert PURE.sdp_span(ct, multipart) == want


def test_whitespace_is_what_str_isspace_says_in_each_encoding():
    """The scanner's one whitespace test (pure build: its cfuncs are callable), over every code point."""
    for c in range(0x110000):
        if 0xD800 <= c < 0xE000:
            continue
        b = chr(c).encode()
        assert PURE._ws(b, 0, len(b), 1) == (len(b) if chr(c).isspace() else 0), hex(c)
        if c < 256:
            assert PURE._ws(bytes([c]), 0, 1, 2) == int(chr(c).isspace()), hex(c)


def test_the_offsets_layout_is_cimported_not_copied():
    from otus_agent import _pxd
    assert "sip/sdpspans" in _pxd.VIEWS           # its Python view is generated and drift-checked
    root = pathlib.Path(sdp_cy.__file__).parent
    for mod in ("sdp_cy.py", "writer_cy.py"):
        text = (root / mod).read_text()
        assert "from cython.cimports.otus_agent.sip.sdpspans import" in text, mod
        for name in sdpspans.LAYOUT:
            assert f"\n{name} = " not in text, f"{mod} redeclares {name}"
