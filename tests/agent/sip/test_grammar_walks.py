"""The token and host walks exist once, in the scanner; the full parser calls them on its text.

Checked against the str-based tests the parser had before (kept here as oracles) on random text,
in the compiled and the pure build.
"""
from __future__ import annotations

import pathlib

from hypothesis import given, settings
from hypothesis import strategies as st

from otus_agent.sip import grammar, scan_cy
from otus_agent.sip import message_cy as sip

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
