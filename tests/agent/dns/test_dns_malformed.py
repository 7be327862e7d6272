"""Malformed DNS: each kind is counted by its reason, and no input makes the parser raise anything else."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otus_agent.dns import DnsStage
from otus_agent.dns.message import DnsError, parse, read_name
from otus_agent.reassembly.datagrams import Datagram
from otus_agent.sim import flowgen

HDR = struct.pack("!HHHHHH", 7, 0x8180, 1, 1, 0, 0)


def datagram(payload: bytes) -> Datagram:
    return Datagram(1, 4, "10.0.0.53", "10.0.0.1", 17, 53, 4000, payload)


@pytest.mark.parametrize("msg, reason", [
    (b"\x00\x01\x01", "truncated_header"),
    (HDR + b"\xc0\x0c" + b"\0\1\0\1", "compression_loop"),  # a pointer to itself
    (HDR + b"\x03abc\xc0\x0c" + b"\0\1\0\1", "compression_loop"),  # label then a pointer back to it
    (HDR + b"\xc0\x20" + b"\0\1\0\1", "compression_loop"),  # a pointer forwards
    (HDR + b"\x40abc\0\0\1\0\1", "bad_label_type"),
    (HDR + b"\x3fabc", "name_past_end"),
    (HDR + (b"\x3f" + b"a" * 63) * 5 + b"\0\0\1\0\1", "name_too_long"),
    (HDR + b"\x03www\0\0\1\0\1", "count_past_end"),  # says one answer, has none
    (HDR + b"\x03www\0\0\1\0\1" + b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\x04\1\2", "rdata_past_end"),
    (HDR + b"\x03www\0\0\1\0\1" + b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\x03\1\2\3", "bad_rdata_length"),
    (HDR + b"\x03www\0\0\1", "question_past_end"),
    (HDR + b"\x03www\0\0\1\0\1" + b"\xc0\x0c\0\1\0", "rr_past_end"),
])
def test_malformed_counted_by_reason(msg: bytes, reason: str) -> None:
    with pytest.raises(DnsError) as e:
        parse(msg)
    assert e.value.reason == reason
    recs: list[dict] = []
    stage = DnsStage(sink=recs.append)
    stage.feed(datagram(msg))
    assert stage.summary()["malformed"] == {reason: 1}
    assert recs[0]["error"] == reason


def test_well_formed_compressed_chain_parses() -> None:
    msg = flowgen.dns_message(5, "a.example", 1, True, 0, (("a.example", 5, 60, "b.example"),
                                                           ("b.example", 1, 60, "192.0.2.1")))
    m = parse(msg)
    assert m.resolved() == (["b.example"], [m.answers[1]])
    assert read_name(msg, 12) == ("a.example", 12 + 11)


def test_cname_loop_in_answers_ends() -> None:
    msg = flowgen.dns_message(5, "a.x", 1, True, 0, (("a.x", 5, 60, "b.x"), ("b.x", 5, 60, "a.x")))
    chain, addrs = parse(msg).resolved()
    assert chain == ["b.x"] and addrs == []


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        parse(data)
    except DnsError:
        pass


@settings(max_examples=1500, deadline=None)
@given(st.integers(0, 400), st.binary(min_size=1, max_size=8), st.integers(0, 255))
def test_fuzz_mutated_real_messages(pos: int, patch: bytes, cut: int) -> None:
    base = flowgen.dns_message(9, "www.example.com", 1, True, 0, (
        ("www.example.com", 5, 300, "cdn.example.net"), ("cdn.example.net", 1, 60, "192.0.2.10")))
    p = pos % len(base)
    data = (base[:p] + patch + base[p + len(patch):])[:max(1, len(base) - cut % 40)]
    stage = DnsStage(sink=lambda r: None)
    stage.feed(datagram(data))  # never raises; malformed or parsed
    s = stage.summary()
    assert sum(s["malformed"].values()) + s["responses"] + s["queries"] == 1
