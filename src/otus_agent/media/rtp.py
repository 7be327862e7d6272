"""RTP (RFC 3550 5.1) and RTCP (RFC 3550 6, RFC 3611 4.7) parsing, hostile input counted by reason.

The RTP header parse itself is in ``rtp_cy`` (the hot path, compiled when Cython is there), the RTCP
compound parse in ``rtcp_cy`` (compiled too: a compound packet is validated as a whole before any of it
is trusted); both are re-exported here.  Nothing keeps payload bytes:
``RtpHeader`` holds offsets and lengths only.

Every parse function returns ``None`` for a packet it refuses and adds one to
``counters[reason]``; nothing raises on bad bytes.
"""
from __future__ import annotations

from otus_agent.media.rtcp_cy import (
    PT_APP,
    PT_BYE,
    PT_RR,
    PT_SDES,
    PT_SR,
    PT_XR,
    R_RTCP_COUNT,
    R_RTCP_FIRST,
    R_RTCP_LENGTH,
    R_RTCP_PADDING,
    R_RTCP_SDES,
    R_RTCP_TRAILING,
    R_XR_BLOCK,
    SDES_CNAME,
    XR_VOIP_METRICS,
    ReportBlock,
    Rtcp,
    VoipMetrics,
    parse_rtcp,
)
from otus_agent.media.rtp_cy import R_CSRC, R_EXT, R_PADDING, R_SHORT, R_VERSION, RtpHeader, parse_rtp

__all__ = ["RtpHeader", "parse_rtp", "parse_rtcp", "looks_like_rtcp", "Rtcp", "ReportBlock", "VoipMetrics",
           "PT_SR", "PT_RR", "PT_SDES", "PT_BYE", "PT_APP", "PT_XR", "SDES_CNAME", "XR_VOIP_METRICS"]

RTP_VERSION = 2

# reasons a datagram is refused (counter keys, also exported as metric labels): RTP's from rtp_cy, RTCP's
# from rtcp_cy
REASONS = (R_SHORT, R_VERSION, R_CSRC, R_EXT, R_PADDING, R_RTCP_LENGTH, R_RTCP_COUNT, R_RTCP_PADDING,
           R_RTCP_FIRST, R_RTCP_SDES, R_XR_BLOCK, R_RTCP_TRAILING)


def looks_like_rtcp(buf: bytes) -> bool:
    """RFC 5761 4: on a multiplexed port, RTCP has packet type 192..223 in the second octet."""
    return len(buf) >= 8 and buf[0] >> 6 == RTP_VERSION and 192 <= buf[1] <= 223
