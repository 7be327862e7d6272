"""The scanner's first pass over the header block (compiled: eight bytes at a time, each line's CR noted
for the line walk) gives the verdicts and offsets of the pure build's byte walk: every byte class it must
stop at, at every position relative to an 8-byte word, and header counts around MAX_HEADERS, whole and cut
(stream: incomplete, -1)."""
from __future__ import annotations

from array import array

import pytest

from otus_agent.sip import scan_cy as sipscan

from ...conftest import load_pure

MSG = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\r\n"
       b"From: \"A B\" <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID:\tabc\r\n"
       b"CSeq: 1 INVITE\r\nUser-Agent: x\r\nContent-Length: 4\r\n\r\nbody")


@pytest.fixture(scope="module")
def pure():
    return load_pure("sip/scan_cy.py", "otus_pure_sipscan_lines")


def both(pure, data: bytes, stream: bool) -> int:
    o1, o2 = array("q", bytes(8 * 48)), array("q", bytes(8 * 48))
    r = sipscan.scan(data, o1, stream)
    assert r == pure.scan(data, o2, stream), data
    assert list(o1) == list(o2), data
    return r


@pytest.mark.parametrize("byte", [0, 1, 9, 10, 11, 12, 13, 14, 31, 32, 0x7F, 0x80, 0xFF])
def test_every_stop_byte_at_every_position(pure, byte):
    assert both(pure, MSG, False) == 1
    hend = MSG.index(b"\r\n\r\n")
    verdicts = set()
    for pos in range(hend + 4):
        data = MSG[:pos] + bytes([byte]) + MSG[pos + 1:]
        for stream in (False, True):
            verdicts.add(both(pure, data, stream))
        verdicts.add(both(pure, MSG[:pos] + bytes([byte]) + MSG[pos:], False))    # inserted, shifting the rest
    if byte in (0, 10, 0x80, 0xFF):
        assert 1 not in {both(pure, MSG[:p] + bytes([byte]) + MSG[p + 1:], False) for p in range(hend) if MSG[p] != byte}
    assert verdicts <= {-1, 0, 1}


@pytest.mark.parametrize("extra", [124, 125, 126, 127, 128, 129, 140])
def test_header_counts_around_the_limit(pure, extra):
    head, body = MSG.split(b"\r\n\r\n")
    data = head + b"".join(b"\r\nX-H%d: v" % i for i in range(extra)) + b"\r\n\r\n" + body
    nh = head.count(b"\r\n") + extra        # header lines (the start line's CRLF ends no header)
    assert both(pure, data, False) == (1 if nh <= 128 else 0)
    for cut in (len(data) - 3, len(data) - len(body) - 3, len(data) // 2):   # incomplete: wait for more, or not
        both(pure, data[:cut], True)
        assert both(pure, data[:cut], False) in (0, 1)
