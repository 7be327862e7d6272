"""The SIP fast path must agree with the full parser wherever it accepts a message."""
from __future__ import annotations

import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otus_agent.capture.pcapfile import open_capture
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.sip import message_cy as sip
from otus_agent.sip import scan_cy as sipscan
from otus_agent.sip import slots
from otus_agent.sip.records import Correlator, fast_sip_record, sip_record

from ...conftest import CORPUS, load_pure


@pytest.fixture(scope="module")
def pure_scan():
    return load_pure("sip/scan_cy.py", "otus_pure_sipscan")


def corpus_messages(workload_path) -> list[bytes]:
    msgs = [p.read_bytes() for p in sorted((CORPUS / "sip-torture").rglob("*.msg"))] if CORPUS.exists() else []
    files = [workload_path] + (sorted((CORPUS / "pcap" / "sip").glob("*.pcap*")) if CORPUS.exists() else [])
    for f in files:
        with open_capture(f) as r:
            DatagramStage(sink=lambda d: msgs.append(d.payload) if d.proto == 17 and sip.looks_like_sip(d.payload)
                     else None).run(r.batches())
    return msgs


def test_fast_path_agrees_with_full_parser(workload_pcap, pure_scan):
    msgs = corpus_messages(workload_pcap[0])
    assert len(msgs) > 1000
    c = Correlator()
    o = array("q", bytes(8 * slots.LAYOUT["NOUT"]))
    o2 = array("q", bytes(8 * slots.LAYOUT["NOUT"]))
    accepted = 0
    for data in msgs:
        r = sipscan.scan(data, o, False)
        assert pure_scan.scan(data, o2, False) == r and (r != 1 or o == o2), data[:80]  # both builds agree
        if r != 1:
            continue
        accepted += 1
        m = sip.parse(data)
        assert m.defects == [], (data[:200], m.defects)  # the fast path never accepts a flawed message
        bs, cl = o[slots.LAYOUT["O_BODY"]], o[slots.LAYOUT["O_CL"]]
        sc = sipscan.Scanner()
        assert sc.scan(data, False) == 1 and sc.arr == o
        fast = fast_sip_record(data, sc, bs, bs + cl if cl >= 0 else len(data), 1, "a", 1, "b", 2, "udp")
        assert fast == sip_record(m, 1, "a", 1, "b", 2, "udp", c)
    assert accepted > 0.8 * len(msgs)


def test_stream_mode_framing():
    one = (b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n"
           b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\n"
           b"CSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nabcd")
    o = array("q", bytes(8 * slots.LAYOUT["NOUT"]))
    assert sipscan.scan(one + one, o, True) == 1
    assert o[slots.LAYOUT["O_BODY"]] + o[slots.LAYOUT["O_CL"]] == len(one)
    assert sipscan.scan(one[:-1], o, True) == -1   # body incomplete: wait
    assert sipscan.scan(one[:60], o, True) == -1   # headers incomplete: wait
    assert sipscan.scan(one[:-1], o, False) == 0   # a datagram: the full parser flags it


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6), st.integers(0, 400),
       st.booleans())
def test_fuzz_both_builds(muts, cut, stream):
    """Mutated and cut messages: the pure build never raises (every read is guarded), and
    the compiled build returns the same verdict."""
    pure = load_pure("sip/scan_cy.py", "otus_pure_sipscan_fuzz")
    base = bytearray(b'INVITE sip:bob@[2001:db8::1]:5060 SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com:5060;branch=z9\r\n'
                     b'From: "A" <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: x@y\r\n'
                     b'CSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.1>;expires=60\r\n'
                     b'P-Charging-Vector: icid-value="ab";orig-ioi=x\r\nContent-Length: 0\r\n\r\n')
    for pos, val in muts:
        base[pos % len(base)] = val
    data = bytes(base[:cut])
    o1 = array("q", bytes(8 * 48))
    o2 = array("q", bytes(8 * 48))
    assert pure.scan(data, o1, stream) == sipscan.scan(data, o2, stream)


def test_random_garbage_compiled():
    rng = random.Random(9)
    o = array("q", bytes(8 * 48))
    for _ in range(3000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
        assert sipscan.scan(data, o, rng.random() < 0.5) in (-1, 0, 1)


@settings(max_examples=200, deadline=None)
@given(pre=st.binary(max_size=20), post=st.binary(max_size=20), cut=st.integers(0, 400), stream=st.booleans())
def test_scan_at_equals_scan_of_the_slice(pre, post, cut, stream):
    """scan_at (in place, used by the SIP lane) sees exactly what scan sees on the copied slice."""
    msg = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\r\n"
           b"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: abc\r\n"
           b"CSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nbody")[:cut]
    for mod in (sipscan, load_pure("sip/scan_cy.py", "otus_pure_sipscan_at")):
        a, b = mod.Scanner(), mod.Scanner()
        assert a.scan(msg, stream) == b.scan_at(pre + msg + post, len(pre), len(msg), stream)
        assert list(a.arr) == list(b.arr)
    with pytest.raises(ValueError):
        sipscan.Scanner().scan_at(b"abc", 2, 5, False)


_PURE_V6 = []


def _pure_v6():
    if not _PURE_V6:
        _PURE_V6.append(load_pure("sip/scan_cy.py", "otus_pure_sipscan_v6").valid_ipv6)
    return _PURE_V6[0]


def _pton_ok(text: str) -> bool:
    import socket
    try:
        socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return False
    return True


V6_PARTS = st.one_of(st.sampled_from(["::", ":", "0", "1", "ffff", "FFFF", "10000", "abc", "1.2.3.4", "01.2.3.4",
                                      "255.255.255.255", "256.1.1.1", "1.2.3", "1.2.3.4.5", ".", "db8", "0:0"]),
                     st.text("0123456789abcdefABCDEF:.", max_size=6))


@settings(max_examples=3000, deadline=None)
@given(parts=st.lists(V6_PARTS, max_size=12))
def test_ipv6_check_agrees_with_inet_pton(parts):
    """The scanner validates IPv6 references in C; it must accept exactly what inet_pton accepts."""
    text = "".join(parts)
    want = _pton_ok(text)
    assert sipscan.valid_ipv6(text.encode()) == want, text
    assert _pure_v6()(text.encode()) == want, text


def test_ipv6_check_known_cases():
    for ok in ("::", "::1", "2001:db8::1", "fe80::1:2:3:4", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4"):
        assert sipscan.valid_ipv6(ok.encode()), ok
    for bad in ("", ":", ":1", "1:", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::8:9", "12345::", "::01.2.3.4",
                "1:2:3:4:5:6:7:1.2.3.4", "1.2.3.4", "g::"):
        assert not sipscan.valid_ipv6(bad.encode()), bad
