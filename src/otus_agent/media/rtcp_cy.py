"""RTCP compound parse (RFC 3550 6, RFC 3611 4.7), compiled when Cython is there, reasons counted.

Why compiled: RTCP is about 1% of a voice network's media packets, but the pure parse (``struct`` per
field, a dataclass per report) cost about 4 us a packet, a tenth of the media stage's CPU.  Here the
octets are read in place (a pointer into the datagram compiled, the bytes object pure) and the results
are extension types; the pure build runs this same source (``tests/agent/media/test_parsers.py``
checks both on hostile input).  A compound packet is validated as a whole before any of it is
trusted: RFC 3550 A.2's rules (version 2 throughout, the first packet SR or RR, padding only on the
last one, the lengths adding up to the datagram).  ``parse_rtcp`` returns ``None`` for a packet it
refuses and adds one to ``counters[reason]``; nothing raises on bad bytes.
"""
from __future__ import annotations

from collections import Counter

try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]

from otus_agent.media.rtp_cy import R_PADDING, R_SHORT, R_VERSION

# reasons a datagram is refused (counter keys, also exported as metric labels); the RTP ones: rtp_cy
R_RTCP_LENGTH = "rtcp_length_past_end"
R_RTCP_COUNT = "rtcp_count_past_length"
R_RTCP_PADDING = "rtcp_padding_not_last"
R_RTCP_FIRST = "rtcp_first_not_sr_rr"
R_RTCP_SDES = "rtcp_sdes_item_past_end"
R_XR_BLOCK = "rtcp_xr_block_past_end"
R_RTCP_TRAILING = "rtcp_trailing_octets"   # counted, the compound is still accepted

PT_SR, PT_RR, PT_SDES, PT_BYE, PT_APP, PT_XR = 200, 201, 202, 203, 204, 207
SDES_CNAME = 1
XR_VOIP_METRICS = 7
# the same as C constants (a module name is a Python object lookup when compiled)
_SR = cython.declare(cython.int, PT_SR)
_RR = cython.declare(cython.int, PT_RR)
_SDES = cython.declare(cython.int, PT_SDES)
_BYE = cython.declare(cython.int, PT_BYE)
_XR = cython.declare(cython.int, PT_XR)
_CNAME = cython.declare(cython.int, SDES_CNAME)
_VOIP = cython.declare(cython.int, XR_VOIP_METRICS)


@cython.cclass
class ReportBlock:
    """One SR/RR reception report (RFC 3550 6.4.1) about ``ssrc``, from the report's sender."""
    ssrc = cython.declare(cython.longlong, visibility="public")
    fraction_lost = cython.declare(cython.double, visibility="public")     # 0..1
    cumulative_lost = cython.declare(cython.longlong, visibility="public")  # signed 24-bit
    highest_seq = cython.declare(cython.longlong, visibility="public")
    jitter = cython.declare(cython.longlong, visibility="public")           # timestamp units
    lsr = cython.declare(cython.longlong, visibility="public")    # middle 32 bits of the last SR's NTP time
    dlsr = cython.declare(cython.longlong, visibility="public")   # 1/65536 s

    def __init__(self, ssrc: int, fraction_lost: float, cumulative_lost: int, highest_seq: int, jitter: int,
                 lsr: int, dlsr: int):
        self.ssrc, self.fraction_lost, self.cumulative_lost = ssrc, fraction_lost, cumulative_lost
        self.highest_seq, self.jitter, self.lsr, self.dlsr = highest_seq, jitter, lsr, dlsr

    def __repr__(self) -> str:
        return (f"ReportBlock(ssrc={self.ssrc}, fraction_lost={self.fraction_lost}, cumulative_lost="
                f"{self.cumulative_lost}, highest_seq={self.highest_seq}, jitter={self.jitter}, lsr={self.lsr}, "
                f"dlsr={self.dlsr})")


@cython.cclass
class VoipMetrics:
    """RFC 3611 4.7 VoIP Metrics report block (the fields a MOS report needs)."""
    ssrc = cython.declare(cython.longlong, visibility="public")
    loss_rate = cython.declare(cython.double, visibility="public")      # fraction
    discard_rate = cython.declare(cython.double, visibility="public")
    round_trip_delay_ms = cython.declare(cython.longlong, visibility="public")
    end_system_delay_ms = cython.declare(cython.longlong, visibility="public")
    r_factor = cython.declare(object, visibility="public")    # int; None: 127, unavailable
    mos_lq = cython.declare(object, visibility="public")      # float; None: 127, unavailable
    mos_cq = cython.declare(object, visibility="public")

    def __init__(self, ssrc: int, loss_rate: float, discard_rate: float, round_trip_delay_ms: int,
                 end_system_delay_ms: int, r_factor: int | None, mos_lq: float | None, mos_cq: float | None):
        self.ssrc, self.loss_rate, self.discard_rate = ssrc, loss_rate, discard_rate
        self.round_trip_delay_ms, self.end_system_delay_ms = round_trip_delay_ms, end_system_delay_ms
        self.r_factor, self.mos_lq, self.mos_cq = r_factor, mos_lq, mos_cq

    def __repr__(self) -> str:
        return (f"VoipMetrics(ssrc={self.ssrc}, loss_rate={self.loss_rate}, discard_rate={self.discard_rate}, "
                f"round_trip_delay_ms={self.round_trip_delay_ms}, end_system_delay_ms={self.end_system_delay_ms}, "
                f"r_factor={self.r_factor}, mos_lq={self.mos_lq}, mos_cq={self.mos_cq})")


@cython.cclass
class Rtcp:
    """What one compound RTCP packet said."""
    sender_ssrc = cython.declare(object, visibility="public")   # int or None
    sr_ntp_mid = cython.declare(object, visibility="public")    # middle 32 bits of the SR's NTP time (LSR)
    sr_packets = cython.declare(object, visibility="public")
    sr_octets = cython.declare(object, visibility="public")
    reports = cython.declare(list, visibility="public")         # [(reporter ssrc, ReportBlock)]
    cnames = cython.declare(dict, visibility="public")          # ssrc -> CNAME
    bye = cython.declare(list, visibility="public")             # ssrcs
    xr_voip = cython.declare(list, visibility="public")         # [(reporter ssrc, VoipMetrics)]
    packets = cython.declare(cython.longlong, visibility="public")

    def __init__(self) -> None:
        self.sender_ssrc = self.sr_ntp_mid = self.sr_packets = self.sr_octets = None
        self.reports, self.cnames, self.bye, self.xr_voip = [], {}, [], []
        self.packets = 0


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _u32(p: cython.p_uchar, o: cython.Py_ssize_t) -> cython.longlong:
    if cython.compiled:   # C longlong before shifting: a C int would overflow at bit 31
        return (cython.cast(cython.longlong, p[o]) << 24) | (p[o + 1] << 16) | (p[o + 2] << 8) | p[o + 3]
    return (p[o] << 24) | (p[o + 1] << 16) | (p[o + 2] << 8) | p[o + 3]   # pure: Python ints, no cast call


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _u16(p: cython.p_uchar, o: cython.Py_ssize_t) -> cython.longlong:
    return (p[o] << 8) | p[o + 1]


@cython.cfunc
def _report_blocks(p: cython.p_uchar, off: cython.Py_ssize_t, count: cython.int, reporter: cython.longlong,
                   out: Rtcp) -> cython.void:
    i: cython.int
    o: cython.Py_ssize_t
    lost_word: cython.longlong
    cum: cython.longlong
    for i in range(count):
        o = off + 24 * i
        lost_word = _u32(p, o + 4)
        cum = lost_word & 0xFFFFFF
        if cum & 0x800000:
            cum -= 0x1000000
        out.reports.append((reporter, ReportBlock(_u32(p, o), (lost_word >> 24) / 256.0, cum, _u32(p, o + 8),
                                                  _u32(p, o + 12), _u32(p, o + 16), _u32(p, o + 20))))


@cython.cfunc
def _sdes(buf: bytes, p: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t, count: cython.int,
          out: Rtcp, counters: Counter) -> cython.bint:
    k: cython.int
    typ: cython.int
    ln: cython.Py_ssize_t
    ssrc: cython.longlong
    for k in range(count):
        if off + 4 > end:
            counters[R_RTCP_COUNT] += 1
            return False
        ssrc = _u32(p, off)
        off += 4
        while True:
            if off >= end:
                counters[R_RTCP_SDES] += 1
                return False
            typ = p[off]
            if typ == 0:
                off = (off + 4) & ~3   # the null item and padding to the next 32-bit boundary
                break
            if off + 2 > end or off + 2 + p[off + 1] > end:
                counters[R_RTCP_SDES] += 1
                return False
            ln = p[off + 1]
            if typ == _CNAME:
                out.cnames[ssrc] = buf[off + 2:off + 2 + ln].decode("utf-8", "replace")
            off += 2 + ln
    return True


@cython.cfunc
def _xr(p: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t, out: Rtcp,
        counters: Counter) -> cython.bint:
    reporter: cython.longlong = _u32(p, off)
    blen: cython.Py_ssize_t
    o: cython.Py_ssize_t
    rf: cython.int
    mlq: cython.int
    mcq: cython.int
    off += 4
    while off + 4 <= end:
        blen = 4 + 4 * _u16(p, off + 2)
        if off + blen > end:
            counters[R_XR_BLOCK] += 1
            return False
        if p[off] == _VOIP and blen >= 36:
            o = off + 4   # ssrc, loss, discard, burst/gap densities and durations, round trip, end system
            rf, mlq, mcq = p[o + 20], p[o + 22], p[o + 23]   # delay, signal, noise, RERL, Gmin, R, ext R, MOS
            out.xr_voip.append((reporter, VoipMetrics(
                _u32(p, o), p[o + 4] / 256.0, p[o + 5] / 256.0, _u16(p, o + 12), _u16(p, o + 14),
                None if rf == 127 else rf, None if mlq == 127 else mlq / 10.0, None if mcq == 127 else mcq / 10.0)))
        off += blen
    return True


def parse_rtcp(buf: bytes, counters: Counter) -> Rtcp | None:
    """A compound RTCP packet, every length checked before use, or None with the reason counted."""
    n: cython.Py_ssize_t = len(buf)
    if n < 8:
        counters[R_SHORT] += 1
        return None
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, buf)
    else:
        p = buf
    out: Rtcp = Rtcp()
    off: cython.Py_ssize_t = 0
    first: cython.bint = True
    b0: cython.int
    pt: cython.int
    count: cython.int
    k: cython.int
    end: cython.Py_ssize_t
    body: cython.Py_ssize_t
    pad: cython.Py_ssize_t
    nxt: cython.Py_ssize_t
    ssrc: cython.longlong
    while off < n:
        if off + 4 > n:
            if first:
                counters[R_RTCP_LENGTH] += 1
                return None
            counters[R_RTCP_TRAILING] += 1   # a few stray octets after a valid compound (seen in the wild)
            break
        b0, pt = p[off], p[off + 1]
        if b0 >> 6 != 2:
            counters[R_VERSION] += 1
            return None
        nxt = off + 4 + 4 * _u16(p, off + 2)
        end = nxt
        if end > n:
            counters[R_RTCP_LENGTH] += 1
            return None
        if first and pt != _SR and pt != _RR:
            counters[R_RTCP_FIRST] += 1
            return None
        if b0 & 0x20:
            if end != n:
                counters[R_RTCP_PADDING] += 1
                return None
            pad = p[n - 1]
            if pad == 0 or pad > end - off - 4:
                counters[R_PADDING] += 1
                return None
            end -= pad
        count = b0 & 0x1F
        body = off + 4
        if pt == _SR:
            if body + 24 + 24 * count > end:
                counters[R_RTCP_COUNT] += 1
                return None
            ssrc = _u32(p, body)
            out.sender_ssrc, out.sr_packets, out.sr_octets = ssrc, _u32(p, body + 16), _u32(p, body + 20)
            out.sr_ntp_mid = (_u16(p, body + 6) << 16) | _u16(p, body + 8)   # NTP seconds' low, fraction's high
            _report_blocks(p, body + 24, count, ssrc, out)
        elif pt == _RR:
            if body + 4 + 24 * count > end:
                counters[R_RTCP_COUNT] += 1
                return None
            ssrc = _u32(p, body)
            if out.sender_ssrc is None:
                out.sender_ssrc = ssrc
            _report_blocks(p, body + 4, count, ssrc, out)
        elif pt == _SDES:
            if not _sdes(buf, p, body, end, count, out, counters):
                return None
        elif pt == _BYE:
            if body + 4 * count > end:
                counters[R_RTCP_COUNT] += 1
                return None
            for k in range(count):
                out.bye.append(_u32(p, body + 4 * k))
        elif pt == _XR:
            if body + 4 > end:
                counters[R_RTCP_COUNT] += 1
                return None
            if not _xr(p, body, end, out, counters):
                return None
        out.packets += 1
        first = False
        off = nxt
    return out
