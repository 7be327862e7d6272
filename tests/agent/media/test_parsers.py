"""RTP/RTCP parsers: every hostile shape refused and counted by its reason, fuzzed never to raise."""
from __future__ import annotations

import struct
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from otus_agent.decode.decoder import COMPILED
from otus_agent.media import rtcp_cy
from otus_agent.media import rtp as R
from otus_agent.sim.rtpgen import rtcp_bye, rtcp_sr

from ...conftest import load_pure


def rtp(b0: int = 0x80, b1: int = 0, seq: int = 1, ts: int = 160, ssrc: int = 7, rest: bytes = bytes(20)) -> bytes:
    return struct.pack("!BBHII", b0, b1, seq, ts, ssrc) + rest


def refused(buf: bytes, parse=R.parse_rtp) -> str:
    c: Counter[str] = Counter()
    assert parse(buf, c) is None
    assert sum(c.values()) == 1, c
    return next(iter(c))


def test_rtp_header_fields():
    c: Counter[str] = Counter()
    h = R.parse_rtp(rtp(b1=0x80 | 8, seq=65535, ts=0xFFFFFFFF, ssrc=0xDEADBEEF), c)
    assert h is not None and not c
    assert (h.marker, h.payload_type, h.seq, h.timestamp, h.ssrc) == (True, 8, 65535, 0xFFFFFFFF, 0xDEADBEEF)
    assert (h.payload_offset, h.payload_len, h.padding_len) == (12, 20, 0)


def test_rtp_csrc_extension_and_padding_offsets():
    c: Counter[str] = Counter()
    ext = struct.pack("!HH", 0xBEDE, 2) + bytes(8)
    body = struct.pack("!II", 1, 2) + ext + bytes(10) + bytes((0, 0, 3))
    h = R.parse_rtp(rtp(b0=0x80 | 0x20 | 0x10 | 2, rest=body), c)
    assert h is not None and not c
    assert h.csrc_count == 2 and h.extension
    assert h.payload_offset == 12 + 8 + 12
    assert h.padding_len == 3 and h.payload_len == len(body) + 12 - h.payload_offset - 3


def test_rtp_hostile_inputs_counted_by_reason():
    assert refused(b"\x80\x00\x00") == R.R_SHORT
    assert refused(rtp(b0=0x40)) == R.R_VERSION
    assert refused(rtp(b0=0x8F, rest=bytes(8))) == R.R_CSRC                      # 15 CSRCs in 8 bytes
    assert refused(rtp(b0=0x90, rest=b"\xbe\xde")) == R.R_EXT                    # extension header cut
    assert refused(rtp(b0=0x90, rest=struct.pack("!HH", 0xBEDE, 100))) == R.R_EXT  # length past the end
    assert refused(rtp(b0=0xA0, rest=bytes(4) + b"\x00")) == R.R_PADDING         # padding count 0
    assert refused(rtp(b0=0xA0, rest=b"\x00\x00\xff")) == R.R_PADDING            # padding past the header


def test_rtcp_sr_sdes_compound():
    c: Counter[str] = Counter()
    block = (99, 64, 5, 1234, 40, (0x11112222 << 32) | 0x10000)
    out = R.parse_rtcp(rtcp_sr(7, 1_700_000_000 * 10**9, 160, 10, 1600, block, "alice@host"), c)
    assert out is not None and not c
    assert out.sender_ssrc == 7 and out.sr_packets == 10 and out.sr_octets == 1600
    assert out.cnames == {7: "alice@host"}
    (reporter, b), = out.reports
    assert reporter == 7 and b.ssrc == 99 and b.fraction_lost == 0.25 and b.cumulative_lost == 5
    assert (b.highest_seq, b.jitter, b.lsr, b.dlsr) == (1234, 40, 0x11112222, 0x10000)
    assert out.sr_ntp_mid is not None


def test_rtcp_negative_cumulative_lost_and_bye():
    c: Counter[str] = Counter()
    rr = struct.pack("!BBHI", 0x81, 201, 7, 1) + struct.pack("!IIIIII", 2, 0xFFFFFF, 0, 0, 0, 0)
    out = R.parse_rtcp(rr + rtcp_bye(5)[8:], c)
    assert out is not None and not c
    assert out.reports[0][1].cumulative_lost == -1
    assert out.bye == [5]


def test_rtcp_xr_voip_metrics():
    c: Counter[str] = Counter()
    rr = struct.pack("!BBHI", 0x80, 201, 1, 1)
    vm = struct.pack("!IBBBBHHHHbbBBBBBBBBHHH", 42, 13, 0, 0, 0, 0, 0, 120, 40, -20, -70, 127, 16, 85, 127, 41,
                     127, 0, 0, 60, 80, 100)
    xr_body = struct.pack("!I", 1) + struct.pack("!BBH", 7, 0, 8) + vm
    out = R.parse_rtcp(rr + struct.pack("!BBH", 0x80, 207, len(xr_body) // 4) + xr_body, c)
    assert out is not None and not c
    (reporter, m), = out.xr_voip
    assert reporter == 1 and m.ssrc == 42 and m.round_trip_delay_ms == 120 and m.end_system_delay_ms == 40
    assert m.r_factor == 85 and m.mos_lq == 4.1 and m.mos_cq is None
    assert abs(m.loss_rate - 13 / 256) < 1e-9


def test_rtcp_hostile_inputs_counted_by_reason():
    rr = struct.pack("!BBHI", 0x80, 201, 1, 1)
    assert refused(b"\x80\xc9\x00", R.parse_rtcp) == R.R_SHORT
    assert refused(struct.pack("!BBHI", 0x80, 201, 40, 1), R.parse_rtcp) == R.R_RTCP_LENGTH   # length lies
    assert refused(struct.pack("!BBHI", 0x85, 201, 1, 1), R.parse_rtcp) == R.R_RTCP_COUNT     # 5 blocks, none
    assert refused(struct.pack("!BBHI", 0x40, 201, 1, 1), R.parse_rtcp) == R.R_VERSION
    assert refused(struct.pack("!BBHI", 0x81, 203, 1, 1), R.parse_rtcp) == R.R_RTCP_FIRST     # BYE first
    assert refused(struct.pack("!BBHI", 0xA0, 201, 1, 1) + rr, R.parse_rtcp) == R.R_RTCP_PADDING
    assert refused(rr + struct.pack("!BBHI", 0xA0, 202, 1, 0x00000009), R.parse_rtcp) == R.R_PADDING
    sdes = struct.pack("!BBHI", 0x81, 202, 2, 1) + bytes((1, 200, 0x41, 0))   # CNAME says 200 octets
    assert refused(rr + sdes, R.parse_rtcp) == R.R_RTCP_SDES
    xr = struct.pack("!BBHI", 0x80, 207, 2, 1) + struct.pack("!BBH", 7, 0, 8)  # block of 36 in 4
    assert refused(rr + xr, R.parse_rtcp) == R.R_XR_BLOCK


def test_rtcp_trailing_octets_counted_but_accepted():
    c: Counter[str] = Counter()
    assert R.parse_rtcp(struct.pack("!BBHI", 0x80, 201, 1, 1) + b"\0\0", c) is not None
    assert c == {R.R_RTCP_TRAILING: 1}


def test_rtcp_mux_demultiplexing():
    assert R.looks_like_rtcp(struct.pack("!BBHI", 0x80, 200, 6, 1))
    assert not R.looks_like_rtcp(rtp(b1=0x80 | 0))     # marker + PCMU is 128: RTP
    assert not R.looks_like_rtcp(rtp(b1=96))


def _check(parse, buf: bytes) -> None:
    c: Counter[str] = Counter()
    out = parse(buf, c)
    if out is None:
        assert sum(c.values()) == 1 and set(c) <= set(R.REASONS)
    if parse is R.parse_rtp and out is not None:
        assert 12 <= out.payload_offset <= len(buf) and out.payload_len >= 0


@settings(max_examples=1200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_rtp_never_raises(buf):
    _check(R.parse_rtp, buf)


@settings(max_examples=1200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_rtcp_never_raises(buf):
    _check(R.parse_rtcp, buf)


@settings(max_examples=800, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([200, 201, 202, 203, 204, 207]), st.integers(0, 31),
                          st.integers(0, 12), st.booleans(), st.binary(max_size=60)), min_size=1, max_size=4),
       st.binary(max_size=3))
def test_fuzz_rtcp_structured_compounds(packets, tail):
    """Plausible headers with lying counts, lengths and padding flags: mostly valid prefixes."""
    buf = b""
    for pt, count, words, pad, body in packets:
        buf += struct.pack("!BBH", 0x80 | (0x20 if pad else 0) | count, pt, words) + body
    _check(R.parse_rtcp, buf + tail)


PURE_RTCP = load_pure("media/rtcp_cy.py", "otus_pure_rtcp_cy")   # the pure build's module, whatever is installed


def _plain(rt) -> tuple | None:
    """Everything a parse result says, as plain values (the two builds' classes differ)."""
    if rt is None:
        return None
    blocks = [(r, (b.ssrc, b.fraction_lost, b.cumulative_lost, b.highest_seq, b.jitter, b.lsr, b.dlsr))
              for r, b in rt.reports]
    xr = [(r, (x.ssrc, x.loss_rate, x.discard_rate, x.round_trip_delay_ms, x.end_system_delay_ms, x.r_factor,
               x.mos_lq, x.mos_cq)) for r, x in rt.xr_voip]
    return (rt.sender_ssrc, rt.sr_ntp_mid, rt.sr_packets, rt.sr_octets, blocks, rt.cnames, rt.bye, xr, rt.packets)


def _both(buf: bytes) -> None:
    """The installed build (compiled when built) and the pure source: the same result and reasons."""
    c1: Counter[str] = Counter()
    c2: Counter[str] = Counter()
    got = _plain(R.parse_rtcp(buf, c1))
    assert got == _plain(PURE_RTCP.parse_rtcp(buf, c2)) and c1 == c2
    if got is None:
        assert sum(c1.values()) == 1 and set(c1) <= set(R.REASONS)


def test_rtcp_build_and_pure_agree_on_the_known_shapes():
    block = (99, 64, 0x800001, 1234, 40, (0x11112222 << 32) | 0x10000)
    sr = rtcp_sr(0xFFFFFFFF, 1_700_000_000 * 10**9, 160, 10, 1600, block, "alice@h\xe9st")
    vm = struct.pack("!IBBBBHHHHbbBBBBBBBBHHH", 42, 13, 0, 0, 0, 0, 0, 120, 40, -20, -70, 127, 16, 85, 127, 41,
                     127, 0, 0, 60, 80, 100)
    xr_body = struct.pack("!I", 1) + struct.pack("!BBH", 7, 0, 8) + vm
    xr = struct.pack("!BBH", 0x80, 207, len(xr_body) // 4) + xr_body
    for buf in (sr, sr + rtcp_bye(5)[8:], sr + xr, sr + xr + b"\0\0", sr[:-1], xr + sr):
        _both(buf)
    assert _plain(R.parse_rtcp(sr + xr, Counter()))[4][0][1][2] == -0x7FFFFF   # signed 24-bit cumulative loss
    assert rtcp_cy.__file__.endswith(".py") is not COMPILED and PURE_RTCP.cython.compiled is False   # a compiled fast path: rtcp_cy compiled too


_RTCP_PT = st.sampled_from([200, 201, 202, 203, 204, 207, 205, 199])


@st.composite
def _hostile_rtcp(draw) -> bytes:
    """Compounds of SR/RR with (truncated) report blocks, SDES with items that overrun, BYE, XR with VoIP
    metrics blocks whose lengths lie, padding flags anywhere, counts and length fields that lie either way
    (each lie now and then: most compounds are valid or nearly, so the deep fields are reached)."""
    out = b""
    for i in range(draw(st.integers(1, 4))):
        pt = draw(st.sampled_from([200, 201])) if i == 0 and draw(st.integers(0, 7)) else draw(_RTCP_PT)
        count = 0
        body = b""
        if pt in (200, 201):
            count = draw(st.integers(0, 3))
            body = draw(st.binary(min_size=4, max_size=4)) + (draw(st.binary(min_size=20, max_size=20)) if pt == 200
                                                              else b"")
            body += b"".join(draw(st.binary(min_size=24, max_size=24)) for _ in range(count))
            body = body[:len(body) - draw(st.sampled_from([0, 0, 0, 0, 4, 24]))]   # a block cut short
        elif pt == 202:
            count = draw(st.integers(0, 3))
            for _ in range(count):
                chunk = draw(st.binary(min_size=4, max_size=4))
                for _ in range(draw(st.integers(0, 3))):
                    item = draw(st.binary(max_size=12))
                    ln = len(item) if draw(st.integers(0, 5)) else draw(st.integers(0, 255))   # overrun
                    chunk += bytes((draw(st.sampled_from([1, 1, 2, 8])), ln)) + item
                chunk += b"\0"
                body += chunk + b"\0" * (-len(chunk) % 4)
        elif pt == 203:
            count = draw(st.integers(0, 3))
            body = draw(st.binary(min_size=4 * count, max_size=4 * count))
        elif pt == 207:
            body = draw(st.binary(min_size=4, max_size=4))
            for _ in range(draw(st.integers(0, 2))):
                bt = draw(st.sampled_from([7, 7, 1, 4]))
                blk = draw(st.binary(min_size=32, max_size=32)) if bt == 7 else draw(st.binary(max_size=12))
                blk += b"\0" * (-len(blk) % 4)
                words = len(blk) // 4 if draw(st.integers(0, 5)) else draw(st.integers(0, 12))   # a lie
                body += bytes((bt, 0)) + struct.pack("!H", words) + blk
        else:
            body = draw(st.binary(max_size=40))
            body += b"\0" * (-len(body) % 4)
        if not draw(st.integers(0, 5)):
            count = draw(st.integers(0, 31))   # a count that lies
        words = len(body) // 4 + (0 if draw(st.integers(0, 5)) else draw(st.sampled_from([-1, 1, 50])))
        pad = not draw(st.integers(0, 9))
        b0 = (0x80 if draw(st.integers(0, 15)) else 0x40) | (0x20 if pad else 0) | count
        out += struct.pack("!BBH", b0, pt, max(0, words) & 0xFFFF) + body
    return out + (draw(st.binary(max_size=3)) if not draw(st.integers(0, 5)) else b"")


@settings(max_examples=1500, deadline=None)
@given(_hostile_rtcp())
def test_fuzz_rtcp_build_and_pure_agree_on_hostile_compounds(buf):
    _both(buf)


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_rtcp_build_and_pure_agree_on_any_bytes(buf):
    _both(buf)
