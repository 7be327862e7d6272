"""The number, token and host walks exist once, in the scanner; the full parser calls them on its text.

Checked against the str-based tests the parser had before (kept here as oracles) on random text,
in the compiled and the pure build.
"""
from __future__ import annotations

import pathlib

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from otus_agent.sip import grammar, scan_cy
from otus_agent.sip import message_cy as sip
from otus_agent.sip.records import Correlator, fast_sip_record, sip_record

from ...conftest import load_pure

PURE = load_pure("sip/scan_cy.py", "otus_pure_sipscan_walks")
_DROP_TOKEN = str.maketrans("", "", grammar.TOKEN.decode("ascii"))
_DROP_HOST = str.maketrans("", "", grammar.HOST.decode("ascii"))


def _reference_token(s: str) -> bool:
    return bool(s) and not s.translate(_DROP_TOKEN)


def _reference_host(host: str) -> bool:
    if not host:
        return False
    if host[0] == "[":
        return host[-1] == "]" and host[1:-1].isascii() and scan_cy.valid_ipv6(host[1:-1].encode("ascii"))
    return not host.translate(_DROP_HOST)


TEXT = st.text(alphabet=st.one_of(st.sampled_from("aZ09-.!%*_+`'~:;[]@ \t/?\"<>,"), st.characters()), max_size=12)
REF = st.builds(lambda s, close: "[" + s + ("]" if close else ""), st.text(alphabet="0123456789abcdefABCDEF:.]%x",
                                                                           max_size=40), st.booleans())


@settings(max_examples=1000, deadline=None)
@given(st.one_of(TEXT, REF))
def test_the_parser_uses_the_scanner_walks(s):
    b = s.encode("utf-8", "surrogatepass")
    assert sip._is_token(s) == _reference_token(s) == scan_cy.is_token(b) == PURE.is_token(b), s
    assert sip.valid_host(s) == _reference_host(s) == scan_cy.valid_host(b) == PURE.valid_host(b), s


def test_the_parser_has_no_walk_of_its_own():
    src = (pathlib.Path(sip.__file__).parent / "message_cy.py").read_text()
    assert "maketrans" not in src and "translate(" not in src


def _reference_digits(s: str) -> int:
    return int(s) if s and s.isascii() and s.isdigit() else -1


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789", max_size=30), st.text(alphabet="0123456789 +-x\u0663\u00b2\u00e9",
                                                                           max_size=8)),
       st.sampled_from([grammar.MAX_PORT, grammar.MAX_CSEQ, grammar.MAX_DELTA, 1 << 40, grammar.MAX_LIMIT]))
def test_numbers_are_read_by_one_walk(s, limit):
    want = _reference_digits(s)
    got = sip._digits(s)
    assert got == want or (want > grammar.MAX_LIMIT and got == grammar.MAX_LIMIT + 1), s
    b = s.encode()
    scanned = scan_cy.digits(b, limit)
    assert scanned == PURE.digits(b, limit) == (-1 if want < 0 else -2 if want > limit else want), s


def test_long_numbers_with_leading_zeros_take_the_fast_path_with_the_parser_values():
    """No length cap on the walk: what the parser reads without a defect, the scanner accepts, with its values."""
    data = (b"INVITE sip:bob@example.com:00000000000005060 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP h.example.com:000000000000005060;branch=z9hG4bK1\r\n"
            b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\n"
            b"CSeq: 0000000000000000000001 INVITE\r\nMax-Forwards: 0000000000000070\r\n"
            b"Content-Length: 00000000000000000\r\n\r\n")
    m = sip.parse(data)
    assert m.defects == [] and m.cseq_num == 1 and m.content_length == 0
    sc = scan_cy.Scanner()
    assert sc.scan(data, False) == 1
    assert fast_sip_record(data, sc, len(data), len(data), 1, "a", 1, "b", 2, "udp") == \
        sip_record(m, 1, "a", 1, "b", 2, "udp", Correlator())
    assert sc.scan(data.replace(b"CSeq: 0", b"CSeq: 9"), False) == 0      # over MAX_CSEQ: the parser's to flag


# ------------------------------------------------------------------ the URI, name-addr, Via and parameter walks
PIECES = ["sip:", "sips:", "tel:", "SIP:", "mailto:", "+:", ":", "@", "alice", "bob", ":pw", "example.com", "10.0.0.1",
          "[::1]", "[2001:db8::1", "]", ":5060", ":99999", ":0000000000000000000005", ":x", ";", ";tag=1", ";lr",
          "; branch = z9hG4bK1 ", ";a=b=c", ";=", ";x=\"q;r\"", "?", "?h=v", "<", ">", "\"", "\\", "\"Bob \\\"B\\\"\"",
          "Bob Smith", " ", "\t", ",", "SIP/2.0/UDP ", "SIP / 2.0 / TCP", "sip/2.0/tls", "/", "é", "\u00a0", "\u2003",
          "\x1c", "\x0b", "\u0131", "\udc80", "\x7f", "\x00"]
HOSTILE = st.one_of(st.lists(st.sampled_from(PIECES), max_size=9).map("".join), TEXT)


@settings(max_examples=3000, deadline=None)
@given(HOSTILE)
def test_the_parser_built_on_the_scanner_walks_reads_as_before(s):
    """parse_uri, parse_name_addr, parse_via, parse_params and the host[:port] split now stand on the scanner's
    walks (lenient); objects and defects equal the str grammar they replaced, on hostile text too."""
    from . import grammar_oracle as old
    assume("\u212a" not in s)    # the one change: see test_a_scheme_is_a_token_before_lower_casing
    assert sip.parse_params(s) == old.parse_params(s), s
    assert sip._split_hostport(s) == old._split_hostport(s), s
    assert sip.parse_uri(s) == old.parse_uri(s), s
    assert sip.parse_name_addr(s) == old.parse_name_addr(s), s
    assert sip.parse_via(s) == old.parse_via(s), s
    assert sip.split_commas(s) == old.split_commas(s), s
    for i in range(len(s) + 1):
        assert sip._closing_quote(s, i) == old._closing_quote(s, i), (s, i)


def test_a_scheme_is_a_token_before_lower_casing():
    """The str grammar lower-cased the scheme before testing it, so KELVIN SIGN (U+212A, lower 'k') passed
    as a token; the byte walk tests the scheme as written (RFC 3261 25.1), as the scanner always did."""
    assert sip.parse_uri("\u212asip:a@b") == (None, False)
    assert sip.parse_name_addr("<\u212asip:a@b>")[1] == "bad_uri"


VALUE = st.lists(st.sampled_from(PIECES + ["<sip:a@example.com>", "sip:b@10.0.0.2:5060", ";tag=x", ";expires=60",
                                           ";expires=99999999999", ";branch=z9hG4bK7", "SIP/2.0/UDP 10.0.0.1:5060"]),
                 min_size=1, max_size=7).map("".join)


def _message(frm: str, to: str, via: str, contact: str) -> bytes:
    return (f"INVITE sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nFrom: {frm}\r\nTo: {to}\r\nCall-ID: c1\r\n"
            f"CSeq: 1 INVITE\r\nContact: {contact}\r\nContent-Length: 0\r\n\r\n").encode("utf-8", "surrogatepass")


@settings(max_examples=2000, deadline=None)
@given(st.one_of(VALUE, st.just("<sip:alice@example.com>;tag=1")), st.one_of(VALUE, st.just("<sip:bob@example.com>")),
       st.one_of(VALUE, st.just("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1")),
       st.one_of(VALUE, st.just("<sip:alice@10.0.0.1>;expires=60"), st.just("*")))
def test_the_scanner_accepts_only_what_the_parser_reads_clean_with_the_same_fields(frm, to, via, contact):
    """Hostile From/To/Via/Contact values: both scanner builds give one verdict; when they accept, the parser
    finds no defect and its objects give the scanner's fields (user, host, tag, branch)."""
    data = _message(frm, to, via, contact)
    sc, pure = scan_cy.Scanner(), PURE.Scanner()
    verdict = sc.scan(data, False)
    assert pure.scan(data, False) == verdict and list(pure.arr) == list(sc.arr)
    if verdict != 1:
        return
    m = sip.parse(data)
    assert m.defects == [], (m.defects, data)
    f = sc.fields(data)
    assert (f["from_user"], f["from_host"], f["from_tag"]) == (m.from_.uri.user, m.from_.uri.host, m.from_.params.get("tag"))
    assert (f["to_user"], f["to_host"], f["to_tag"]) == (m.to.uri.user, m.to.uri.host, m.to.params.get("tag"))
    assert f["via_branch"] == m.via[0].branch
    assert fast_sip_record(data, sc, len(data), len(data), 1, "a", 1, "b", 2, "udp") == \
        sip_record(m, 1, "a", 1, "b", 2, "udp", Correlator())


# the grammar walks of issue 14: each exists once, in scan_cy; message_cy builds objects from their spans
WALKS = {"_param(": "param_spans", "_hostport(": "hostport", "_quoted(": "closing_quote", "_uri(": "uri_spans",
         "_name_addr(": "name_addr_spans", "_via(": "via_spans", "_comma(": "comma_spans"}


def test_each_grammar_walk_exists_once():
    """A second URI / name-addr / Via / parameter / host:port / quoted-string / list walk in either module fails
    this: the scanner defines each once (and calls it in strict mode), the parser imports the lenient entry."""
    root = pathlib.Path(sip.__file__).parent
    scan_src = (root / "scan_cy.py").read_text()
    parse_src = (root / "message_cy.py").read_text()
    for walk, entry in WALKS.items():
        assert scan_src.count("\ndef " + walk) == 1, walk
        assert f"import {entry} as " in parse_src, entry
    for gone in ("def _name_addr_expires", "while i < b and p[i] != 34:"):
        assert gone not in scan_src, gone
    # the parser finds no delimiter itself: no character search or split of its own beyond LWS and case
    for gone in ('.find("', ".find('", '.rfind(', '.split("/"', 'split(";")', 'inq = ', 'ina = '):
        assert gone not in parse_src.split("# ---------------------------------------------------------------- framing")[0], gone


def test_several_contacts_go_to_the_parser_one_quoted_with_a_comma_does_not():
    sc = scan_cy.Scanner()
    one = _message("<sip:a@example.com>;tag=1", "<sip:b@example.com>", "SIP/2.0/UDP h;branch=z9hG4bK1", "{}")
    assert sc.scan(one.replace(b"{}", b'"Smith, J" <sip:j@10.0.0.1>;expires=60'), False) == 1
    assert sc.scan(one.replace(b"{}", b"<sip:j@10.0.0.1>, <sip:k@10.0.0.2>"), False) == 0
    assert sc.scan(one.replace(b"{}", b"sip:j@10.0.0.1;expires=99999999999"), False) == 0   # past MAX_DELTA
