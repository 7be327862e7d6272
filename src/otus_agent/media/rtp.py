"""RTP (RFC 3550 5.1) and RTCP (RFC 3550 6, RFC 3611 4.7) parsing, hostile input counted by reason.

The RTP header parse itself is in ``rtp_cy`` (the hot path, compiled when Cython is there)
and re-exported here; RTCP is parsed here, once per report: a compound packet must be
validated as a whole before any of it is trusted.  Nothing keeps payload bytes:
``RtpHeader`` holds offsets and lengths only.

Every parse function returns ``None`` for a packet it refuses and adds one to
``counters[reason]``; nothing raises on bad bytes.
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from otus_agent.media.rtp_cy import R_CSRC, R_EXT, R_PADDING, R_SHORT, R_VERSION, RtpHeader, parse_rtp

__all__ = ["RtpHeader", "parse_rtp", "parse_rtcp", "looks_like_rtcp", "Rtcp", "ReportBlock", "VoipMetrics"]

RTP_VERSION = 2

# reasons a datagram is refused (counter keys, also exported as metric labels); the RTP ones: rtp_cy
R_RTCP_LENGTH = "rtcp_length_past_end"
R_RTCP_COUNT = "rtcp_count_past_length"
R_RTCP_PADDING = "rtcp_padding_not_last"
R_RTCP_FIRST = "rtcp_first_not_sr_rr"
R_RTCP_SDES = "rtcp_sdes_item_past_end"
R_XR_BLOCK = "rtcp_xr_block_past_end"
R_RTCP_TRAILING = "rtcp_trailing_octets"   # counted, the compound is still accepted
REASONS = (R_SHORT, R_VERSION, R_CSRC, R_EXT, R_PADDING, R_RTCP_LENGTH, R_RTCP_COUNT, R_RTCP_PADDING,
           R_RTCP_FIRST, R_RTCP_SDES, R_XR_BLOCK, R_RTCP_TRAILING)

_U16 = struct.Struct("!H")


def looks_like_rtcp(buf: bytes) -> bool:
    """RFC 5761 4: on a multiplexed port, RTCP has packet type 192..223 in the second octet."""
    return len(buf) >= 8 and buf[0] >> 6 == RTP_VERSION and 192 <= buf[1] <= 223


# ---------------------------------------------------------------- RTCP

PT_SR, PT_RR, PT_SDES, PT_BYE, PT_APP, PT_XR = 200, 201, 202, 203, 204, 207
SDES_CNAME = 1
XR_VOIP_METRICS = 7


@dataclass(slots=True)
class ReportBlock:
    """One SR/RR reception report (RFC 3550 6.4.1) about ``ssrc``, from the report's sender."""
    ssrc: int
    fraction_lost: float          # 0..1
    cumulative_lost: int          # signed 24-bit
    highest_seq: int
    jitter: int                   # timestamp units
    lsr: int                      # middle 32 bits of the NTP time of the last SR
    dlsr: int                     # 1/65536 s


@dataclass(slots=True)
class VoipMetrics:
    """RFC 3611 4.7 VoIP Metrics report block (the fields a MOS report needs)."""
    ssrc: int
    loss_rate: float              # fraction
    discard_rate: float
    round_trip_delay_ms: int
    end_system_delay_ms: int
    r_factor: int | None          # 127 = unavailable
    mos_lq: float | None          # 127 = unavailable
    mos_cq: float | None


@dataclass
class Rtcp:
    """What one compound RTCP packet said."""
    sender_ssrc: int | None = None
    sr_ntp_mid: int | None = None   # middle 32 bits of the SR's NTP timestamp (what LSR echoes)
    sr_packets: int | None = None
    sr_octets: int | None = None
    reports: list[tuple[int, ReportBlock]] = field(default_factory=list)   # (reporter ssrc, block)
    cnames: dict[int, str] = field(default_factory=dict)
    bye: list[int] = field(default_factory=list)
    xr_voip: list[tuple[int, VoipMetrics]] = field(default_factory=list)
    packets: int = 0


def _report_blocks(buf: bytes, off: int, count: int, reporter: int, out: Rtcp) -> None:
    for i in range(count):
        o = off + 24 * i
        ssrc, lost_word, hseq, jit, lsr, dlsr = struct.unpack_from("!IIIIII", buf, o)
        cum = lost_word & 0xFFFFFF
        if cum & 0x800000:
            cum -= 1 << 24
        out.reports.append((reporter, ReportBlock(ssrc, (lost_word >> 24) / 256.0, cum, hseq, jit, lsr, dlsr)))


def _sdes(buf: bytes, off: int, end: int, count: int, out: Rtcp, counters: Counter[str]) -> bool:
    for _ in range(count):
        if off + 4 > end:
            counters[R_RTCP_COUNT] += 1
            return False
        ssrc = struct.unpack_from("!I", buf, off)[0]
        off += 4
        while True:
            if off >= end:
                counters[R_RTCP_SDES] += 1
                return False
            typ = buf[off]
            if typ == 0:
                off = (off + 4) & ~3   # the null item and padding to the next 32-bit boundary
                break
            if off + 2 > end or off + 2 + buf[off + 1] > end:
                counters[R_RTCP_SDES] += 1
                return False
            ln = buf[off + 1]
            if typ == SDES_CNAME:
                out.cnames[ssrc] = buf[off + 2:off + 2 + ln].decode("utf-8", "replace")
            off += 2 + ln
    return True


def _xr(buf: bytes, off: int, end: int, out: Rtcp, counters: Counter[str]) -> bool:
    reporter = struct.unpack_from("!I", buf, off)[0]
    off += 4
    while off + 4 <= end:
        bt = buf[off]
        blen = 4 + 4 * _U16.unpack_from(buf, off + 2)[0]
        if off + blen > end:
            counters[R_XR_BLOCK] += 1
            return False
        if bt == XR_VOIP_METRICS and blen >= 36:
            (ssrc, loss, disc, _bd, _gd, _bdur, _gdur, rtd, esd, _sig, _noise, _rerl, _gmin, rf, _erf,
             mlq, mcq) = struct.unpack_from("!IBBBBHHHHbbBBBBBB", buf, off + 4)
            out.xr_voip.append((reporter, VoipMetrics(
                ssrc, loss / 256.0, disc / 256.0, rtd, esd, None if rf == 127 else rf,
                None if mlq == 127 else mlq / 10.0, None if mcq == 127 else mcq / 10.0)))
        off += blen
    return True


def parse_rtcp(buf: bytes, counters: Counter[str]) -> Rtcp | None:
    """A compound RTCP packet, every length checked before use, or None with the reason counted.

    RFC 3550 A.2's validity rules: version 2 throughout, the first packet SR or RR, padding
    only on the last one, and the lengths adding up to the datagram exactly.
    """
    n = len(buf)
    if n < 8:
        counters[R_SHORT] += 1
        return None
    out = Rtcp()
    off = 0
    first = True
    while off < n:
        if off + 4 > n:
            if first:
                counters[R_RTCP_LENGTH] += 1
                return None
            counters[R_RTCP_TRAILING] += 1   # a few stray octets after a valid compound (seen in the wild)
            break
        b0, pt, words = struct.unpack_from("!BBH", buf, off)
        if b0 >> 6 != RTP_VERSION:
            counters[R_VERSION] += 1
            return None
        end = off + 4 + 4 * words
        if end > n:
            counters[R_RTCP_LENGTH] += 1
            return None
        if first and pt not in (PT_SR, PT_RR):
            counters[R_RTCP_FIRST] += 1
            return None
        if b0 & 0x20:
            if end != n:
                counters[R_RTCP_PADDING] += 1
                return None
            pad = buf[n - 1]
            if pad == 0 or pad > end - off - 4:
                counters[R_PADDING] += 1
                return None
            end -= pad
        count = b0 & 0x1F
        body = off + 4
        if pt == PT_SR:
            if body + 24 + 24 * count > end:
                counters[R_RTCP_COUNT] += 1
                return None
            ssrc, ntp_hi, ntp_lo, _rtp_ts, pkts, octets = struct.unpack_from("!IIIIII", buf, body)
            out.sender_ssrc, out.sr_packets, out.sr_octets = ssrc, pkts, octets
            out.sr_ntp_mid = ((ntp_hi & 0xFFFF) << 16) | (ntp_lo >> 16)
            _report_blocks(buf, body + 24, count, ssrc, out)
        elif pt == PT_RR:
            if body + 4 + 24 * count > end:
                counters[R_RTCP_COUNT] += 1
                return None
            ssrc = struct.unpack_from("!I", buf, body)[0]
            if out.sender_ssrc is None:
                out.sender_ssrc = ssrc
            _report_blocks(buf, body + 4, count, ssrc, out)
        elif pt == PT_SDES:
            if not _sdes(buf, body, end, count, out, counters):
                return None
        elif pt == PT_BYE:
            if body + 4 * count > end:
                counters[R_RTCP_COUNT] += 1
                return None
            out.bye.extend(struct.unpack_from(f"!{count}I", buf, body))
        elif pt == PT_XR:
            if body + 4 > end:
                counters[R_RTCP_COUNT] += 1
                return None
            if not _xr(buf, body, end, out, counters):
                return None
        out.packets += 1
        first = False
        off = off + 4 + 4 * words
    return out
