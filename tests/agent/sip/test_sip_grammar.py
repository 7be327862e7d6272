"""Grammar, looks_like_sip and the SIP settings are each defined once, and both builds agree on them.

- the character classes: the full parser's token/host tests are the scanner's walks over lookup tables
  from sip/grammar.py and agree on every byte;
- IPv6 references: the full parser uses the scanner's validator (which must equal inet_pton);
- looks_like_sip: one definition (scan_cy), compiled and pure equal to the reference it replaced,
  and neither the lane nor the framer carries a copy;
- SipConfig: its defaults are SipOptions' defaults and ``from_options`` is the one conversion.
"""
from __future__ import annotations

import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from otus_agent.sip import grammar, scan_cy
from otus_agent.sip import message_cy as sip
from otus_agent.sip.framing import SipConfig
from otus_spec import SipOptions, TaskSpec

from ...conftest import SRC, load_pure

_PURE = []


def pure_scan():
    if not _PURE:
        _PURE.append(load_pure("sip/scan_cy.py", "otus_pure_sipscan_grammar"))
    return _PURE[0]


def _reference_looks_like_sip(data: bytes) -> bool:
    """The Python looks_like_sip before issue 14 (message_cy), kept here as the test's oracle."""
    if data.startswith(b"SIP/2.0 "):
        return True
    sp = data.find(b" ", 0, 40)
    if sp <= 0:
        return False
    nl = data.find(b"\n", sp, 2048)
    if nl < 0:
        return False
    line = data[sp:nl].rstrip(b"\r")
    return line.endswith(b"SIP/2.0") or line[-8:].upper().endswith(b"SIP/2.0")


def test_token_and_host_classes_agree_on_every_byte():
    pure = pure_scan()
    for c in range(256):
        ch = chr(c)
        tok = c in grammar.TOKEN
        assert sip._is_token(ch) == tok, c
        assert bool(pure._tok(c)) == tok, c
        host = c in grammar.HOST
        assert sip.valid_host(ch) == host and bool(pure._hostc(c)) == host, c
        # the compiled scanner: a method ending in this byte is accepted only when it is a token
        m = b"A" + bytes([c])
        msg = (m + b" sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n"
               b"To: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 " + m + b"\r\nContent-Length: 0\r\n\r\n")
        assert (scan_cy.Scanner().scan(msg, False) == 1) == tok, c


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEF:.%x ", max_size=45))
def test_the_parser_checks_ipv6_references_as_inet_pton_does(ref):
    try:
        socket.inet_pton(socket.AF_INET6, ref)
        want = True
    except (OSError, ValueError):
        want = False
    assert sip.valid_host(f"[{ref}]") == want, ref


def test_non_ascii_ipv6_reference_is_not_a_host():
    assert not sip.valid_host("[::é]") and sip.valid_host("[::1]")


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.binary(max_size=64),
    st.builds(lambda m, u, v, e: f"{m} {u} {v}{e}".encode(), st.sampled_from(["INVITE", "x" * 45, "", "A"]),
              st.text(alphabet="sip:@ab.c", max_size=30), st.sampled_from(["SIP/2.0", "sip/2.0", "SIP/2.1", "SIP/2.0 "]),
              st.sampled_from(["\r\n", "\r\r\n", "\n", "", "\r"])),
    st.sampled_from([b"SIP/2.0 200 OK\r\n", b"SIP/2.0", b" SIP/2.0\n", b"A SIP/2.0\n", b"A " + b"x" * 3000 + b" SIP/2.0\n"]),
))
def test_looks_like_sip_in_both_builds_equals_the_reference(data):
    want = _reference_looks_like_sip(data)
    assert sip.looks_like_sip(data) == want, data
    assert pure_scan().looks_like_sip(data) == want, data


def test_looks_like_sip_is_defined_once():
    assert sip.looks_like_sip is scan_cy.looks_like_sip
    for mod in ("sip/writer_cy.py", "sip/framing.py", "sip/message_cy.py"):
        text = (SRC / mod).read_text()
        assert "def _looks_like_sip" not in text and "def looks_like_sip" not in text, mod
        assert "_plain_start" not in text, mod
    assert "cimports.otus_agent.sip.scan_cy import _looks_like_sip" in (SRC / "sip/writer_cy.py").read_text()


def test_sip_config_defaults_are_the_task_contracts():
    c, o = SipConfig(), SipOptions()
    assert SipConfig.from_options(o) == c
    assert (c.ports, c.heuristic, c.correlation_headers, c.redact_auth, c.error_records, c.discard_methods,
            c.call_summaries) == (tuple(o.ports), o.heuristic, tuple(o.correlation_headers), o.redact_authorization,
                                  o.error_records, tuple(o.discard_methods), o.call_summaries)


def test_from_options_carries_every_setting_into_the_stage():
    o = SipOptions(ports=[5070], heuristic=False, correlation_headers=["X-Foo"], redact_authorization=False,
                   discard_methods=["options"], error_records=False, call_summaries=True)
    c = SipConfig.from_options(o, {"task": "t1"})
    assert c == SipConfig(ports=(5070,), heuristic=False, correlation_headers=("X-Foo",), redact_auth=False,
                          discard_methods=("OPTIONS",), error_records=False, call_summaries=True, extra={"task": "t1"})


def test_the_daemon_builds_the_same_config_as_from_options():
    """The daemon converts a task's SIP options through from_options, the one conversion."""
    from otus_agent.daemon.task import configs
    spec = TaskSpec.model_validate({"id": "t1", "interfaces": ["lo"], "sip": {
        "ports": [5070], "heuristic": False, "redact_authorization": False, "discard_methods": ["OPTIONS"],
        "call_summaries": True, "error_records": False, "correlation_headers": ["X-Foo"]}})
    _, _, got = configs(spec)
    assert got == SipConfig.from_options(spec.sip, got.extra)
    assert got.extra["task"] == "t1"
