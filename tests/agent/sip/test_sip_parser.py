"""SIP parser units: grammar corners, header forms, URIs, defects, redaction."""
from __future__ import annotations

import pytest

from otus_agent.sip import message_cy as sip
from otus_agent.sip.records import Correlator, sip_record
from otus_agent.sip.sdp_cy import parse_sdp, sdp_from_body


def msg(first: str, *headers: str, body: str = "", cl: bool = True) -> bytes:
    h = list(headers)
    if cl:
        h.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join([first, *h]) + "\r\n\r\n" + body).encode()


BASE = ("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport", "Max-Forwards: 70",
        'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774', "To: <sip:bob@biloxi.example.com>",
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "CSeq: 314159 INVITE")


def test_basic_request():
    m = sip.parse(msg("INVITE sip:bob@biloxi.example.com SIP/2.0", *BASE, "User-Agent: softphone 1.0"))
    assert m.defects == []
    assert (m.method, m.request_uri, m.call_id, m.cseq_num, m.cseq_method) == (
        "INVITE", "sip:bob@biloxi.example.com", "a84b4c76e66710@pc33.atlanta.example.com", 314159, "INVITE")
    assert m.from_.display == "Alice" and m.from_.uri.user == "alice" and m.from_.params["tag"] == "1928301774"
    assert m.to.uri.host == "biloxi.example.com" and "tag" not in m.to.params
    v = m.via[0]
    assert (v.transport, v.host, v.port, v.branch, v.params["rport"]) == ("UDP", "192.0.2.1", 5060,
                                                                           "z9hG4bK776asdhds", "")
    assert m.header("user-agent") == "softphone 1.0"


def test_status_line_and_server():
    m = sip.parse(msg("SIP/2.0 486 Busy Here", *BASE, "Server: pbx/2"))
    assert (m.is_request, m.status_code, m.reason, m.method) == (False, 486, "Busy Here", None)
    assert not m.defects


@pytest.mark.parametrize("compact,long", [("i", "call-id"), ("f", "from"), ("t", "to"), ("v", "via"),
                                          ("m", "contact"), ("l", "content-length"), ("c", "content-type"),
                                          ("k", "supported"), ("s", "subject"), ("e", "content-encoding"),
                                          ("o", "event"), ("u", "allow-events"), ("r", "refer-to"),
                                          ("x", "session-expires"), ("b", "referred-by"), ("y", "identity")])
def test_compact_forms(compact, long):
    assert sip.COMPACT[compact] == long
    m = sip.parse(msg("OPTIONS sip:x@example.com SIP/2.0", *BASE, f"{compact.upper()}: value-{compact}"))
    assert any(f"value-{compact}" in v for v in m.headers[long])


def test_case_insensitive_names_folding_and_repeats():
    m = sip.parse(msg("OPTIONS sip:x@example.com SIP/2.0", *BASE, "sUbJeCt: one", "  two\tthree",
                      "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>", "Route: <sip:p3.example.com;lr>"))
    assert m.headers["subject"] == ["one two\tthree"]
    assert len(m.headers["route"]) == 2
    assert [x.strip() for x in sip.split_commas(m.headers["route"][0])] == ["<sip:p1.example.com;lr>",
                                                                           "<sip:p2.example.com;lr>"]


def test_name_addr_forms():
    na, d = sip.parse_name_addr('"Bob \\"the\\" Builder" <sip:bob@example.com;transport=tcp>;tag=a;x=y')
    assert d is None and na.display == 'Bob "the" Builder'
    assert na.uri.params["transport"] == "tcp" and na.params == {"tag": "a", "x": "y"}
    na, d = sip.parse_name_addr("sip:carol@example.com;tag=7")
    assert d is None and na.uri.user == "carol" and na.params["tag"] == "7"
    na, d = sip.parse_name_addr("Carol Smith<sip:carol@example.com>")
    assert d is None and na.display == "Carol Smith"
    _, d = sip.parse_name_addr('"unterminated <sip:a@b>')
    assert d == "unterminated_quoted_string"
    na, d = sip.parse_name_addr("Smith, John <sip:j@example.com>;tag=9")
    assert d == "bad_display_name" and na.params["tag"] == "9"  # flagged, tag still read


@pytest.mark.parametrize("uri,user,host,port", [
    ("sip:alice@atlanta.example.com", "alice", "atlanta.example.com", None),
    ("sips:alice:secret@192.0.2.4:5061;transport=tls", "alice", "192.0.2.4", 5061),
    ("sip:[2001:db8::10]:5070", None, "[2001:db8::10]", 5070),
    ("sip:[2001:db8::10:5070]", None, "[2001:db8::10:5070]", None),
    ("sip:user;par=u%40example.net@example.com", "user;par=u%40example.net", "example.com", None),
])
def test_sip_uris(uri, user, host, port):
    u, ok = sip.parse_uri(uri)
    assert ok and (u.user, u.host, u.port) == (user, host, port)


def test_tel_and_bad_uris():
    u, ok = sip.parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert ok and u.scheme == "tel" and u.user == "+1-201-555-0123" and u.params["phone-context"] == "example.com"
    for bad in ("sip:2001:db8::10", "sip:[2001:db8:::192.0.2.1]", "sip:a@b c", "nocolon", "sip:@host"):
        assert not sip.parse_uri(bad)[1], bad


def test_via_list_received_and_transport():
    vias, d = sip.parse_via("SIP/2.0/TCP h1.example.com;branch=z9hG4bK1;received=192.0.2.9, "
                            "SIP / 2.0 / SCTP [2001:db8::1]:5062;branch=z9hG4bK2")
    assert d is None
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("TCP", "h1.example.com", None, "z9hG4bK1"), ("SCTP", "[2001:db8::1]", 5062, "z9hG4bK2")]
    assert vias[0].params["received"] == "192.0.2.9"
    assert sip.parse_via("SIP/2.0/UDP 192.0.2.15;;,;,,")[1] == "bad_via"


def test_contact_expires_pai_reason_and_correlation():
    m = sip.parse(msg("SIP/2.0 200 OK", *BASE, "Contact: <sip:alice@192.0.2.1>;expires=3600",
                      "P-Asserted-Identity: \"Alice\" <sip:+15551234@example.com>",
                      "Reason: Q.850;cause=16;text=\"Normal call clearing\"",
                      "P-Charging-Vector: icid-value=\"AyretyU0dm+6O2IrT5tAFrbHLso=\";orig-ioi=home1.net"))
    assert not m.defects
    assert m.headers["reason"][0].startswith("Q.850")
    assert sip.parse_name_addr(m.headers["p-asserted-identity"][0])[0].uri.user == "+15551234"
    c = Correlator()
    assert c.find(m.headers) == "AyretyU0dm+6O2IrT5tAFrbHLso="
    m2 = sip.parse(msg("BYE sip:x@example.com SIP/2.0", *BASE[:5], "CSeq: 2 BYE", "X-CID: corr-42"))
    assert c.find(m2.headers) == "corr-42"
    assert Correlator(["X-Other"]).find(m2.headers) is None
    with pytest.raises(ValueError):
        Correlator([";param"])


def test_authorization_redacted_by_default():
    auth = 'Digest username="alice", realm="atlanta.example.com", response="42ab", nonce="x"'
    raw = msg("REGISTER sip:registrar.example.com SIP/2.0", *BASE[:5], "CSeq: 1 REGISTER",
              f"Authorization: {auth}", f"Proxy-Authorization: {auth}")
    m = sip.parse(raw)
    assert m.headers["authorization"] == ["Digest <redacted>"]
    assert m.headers["proxy-authorization"] == ["Digest <redacted>"]
    assert "42ab" not in repr(m.headers)
    assert sip.parse(raw, redact=False).headers["authorization"] == [auth]


@pytest.mark.parametrize("first,headers,defect", [
    ("INVITE  sip:a@example.com SIP/2.0", BASE, "bad_request_line"),
    ("INVITE sip:a@example.com SIP/3.0", BASE, "bad_version"),
    ("INVITE <sip:a@example.com> SIP/2.0", BASE, "bad_request_uri"),
    ("SIP/2.0 1000 Huge", BASE, "bad_status_code"),
    ("SIP/2.0 99 Small", BASE, "bad_status_code"),
    ("OPTIONS sip:a@example.com SIP/2.0", BASE, "cseq_method_mismatch"),
    ("INVITE sip:a@example.com SIP/2.0", BASE[1:], "missing_via"),
    ("INVITE sip:a@example.com SIP/2.0", BASE + ("Call-ID: second",), "duplicate_call_id"),
    ("INVITE sip:a@example.com SIP/2.0", BASE[:1] + BASE[2:] + ("Max-Forwards: 256",), "bad_max_forwards"),
    ("INVITE sip:a@example.com SIP/2.0", BASE + ("Expires: 4294967296",), "bad_expires"),
    ("INVITE sip:a@example.com SIP/2.0", BASE + ("Date: Sat, 13 Nov 2010 23:29:00 PST",), "bad_date"),
    ("INVITE sip:a@example.com SIP/2.0", BASE + ("no colon here",), "bad_header_line"),
])
def test_defects(first, headers, defect):
    m = sip.parse(msg(first, *headers))
    assert defect in m.defects, m.defects


def test_content_length_rules():
    good = msg("INVITE sip:a@example.com SIP/2.0", *BASE, body="v=0\r\n")
    assert sip.parse(good).body == b"v=0\r\n"
    over = good.replace(b"Content-Length: 5", b"Content-Length: 50")
    assert "content_length_exceeds_datagram" in sip.parse(over).defects
    neg = good.replace(b"Content-Length: 5", b"Content-Length: -5")
    assert "bad_content_length" in sip.parse(neg).defects
    # stream framing: incomplete -> None, complete -> exact length, trailing data left alone
    assert sip.parse(over, stream=True) is None
    two = good + good
    m = sip.parse(two, stream=True)
    assert m.length == len(good) and m.body == b"v=0\r\n"


def test_junk_before_message_is_skipped_and_flagged():
    m = sip.parse(b"\0\0\0\0" + msg("OPTIONS sip:a@example.com SIP/2.0", *BASE[:5], "CSeq: 1 OPTIONS"))
    assert m.method == "OPTIONS" and m.junk == 4 and "junk_before_message" in m.defects


def test_looks_like_sip():
    assert sip.looks_like_sip(b"SIP/2.0 200 OK\r\n")
    assert sip.looks_like_sip(b"INVITE sip:a@b SIP/2.0\r\n")
    assert not sip.looks_like_sip(b"GET / HTTP/1.1\r\n")
    assert not sip.looks_like_sip(b"\x80\x00\x12\x34RTP")


SDP = ("v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
       "m=audio 49170 RTP/AVP 0 8 97\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:97 iLBC/8000\r\n"
       "m=video 51372 RTP/AVP 31\r\nc=IN IP6 2001:db8::2\r\na=rtpmap:31 H261/90000\r\n")


def test_sdp():
    s = parse_sdp(SDP.encode())
    assert s["origin"] == {"username": "alice", "session_id": "2890844526", "session_version": "2890844526",
                           "address": "192.0.2.10"}
    assert s["connection"] == "192.0.2.10"
    a, v = s["media"]
    assert (a["type"], a["port"], a["proto"], a["payloads"]) == ("audio", 49170, "RTP/AVP", ["0", "8", "97"])
    assert a["rtpmap"] == {"0": "PCMU/8000", "97": "iLBC/8000"}
    assert v["connection"] == "2001:db8::2" and v["rtpmap"] == {"31": "H261/90000"}
    assert parse_sdp(b"not sdp") is None


def test_multipart_sdp():
    body = ("--bnd\r\nContent-Type: application/pidf+xml\r\n\r\n<x/>\r\n--bnd\r\nContent-Type: application/sdp"
            "\r\n\r\n" + SDP + "\r\n--bnd--\r\n").encode()
    s = sdp_from_body('multipart/mixed;boundary="bnd"', body)
    assert s is not None and s["media"][0]["port"] == 49170
    assert sdp_from_body("multipart/mixed", body) is None


def test_record_fields():
    m = sip.parse(msg("INVITE sip:bob@biloxi.example.com SIP/2.0", *BASE, "Content-Type: application/sdp",
                      "X-CID: c1", body=SDP))
    r = sip_record(m, 5, "192.0.2.1", 5060, "192.0.2.2", 5060, "udp", Correlator(), {"task": "t1"})
    assert r["method"] == "INVITE" and r["from_user"] == "alice" and r["from_tag"] == "1928301774"
    assert r["to_host"] == "biloxi.example.com" and r["via_branch"] == "z9hG4bK776asdhds"
    assert r["correlation_id"] == "c1" and r["sdp"]["media"][0]["port"] == 49170 and r["task"] == "t1"
    assert "error" not in r
