"""Payload types: RTP clock rates and codec names (RFC 3551 6; Wireshark's clock_map for tshark parity)."""
from __future__ import annotations

STATIC_CLOCK = {0: 8000, 1: 8000, 2: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000, 9: 8000,
                10: 44100, 11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000, 16: 11025, 17: 22050,
                18: 8000, 19: 8000, 25: 90000, 26: 90000, 28: 90000, 31: 90000, 32: 90000, 33: 90000,
                34: 90000}
STATIC_CODEC = {0: "PCMU", 3: "GSM", 4: "G723", 8: "PCMA", 9: "G722", 13: "CN", 18: "G729", 19: "CN"}
PT_CN, PT_CN_OLD = 13, 19


def clock_rate(pt: int, rtpmap: dict[int, str] | None) -> int:
    """Clock rate in Hz for a payload type, 0 when jitter cannot be computed (as Wireshark:
    an unknown dynamic type, and telephone-event, whose timestamp does not advance)."""
    if pt < 96:
        return STATIC_CLOCK.get(pt, 0)
    enc = (rtpmap or {}).get(pt)
    if not enc:
        return 0
    name, _, rest = enc.partition("/")
    if name.lower() == "telephone-event":
        return 0
    rate = rest.split("/", 1)[0]
    return int(rate) if rate.isdigit() else 0


def codec_name(pt: int, rtpmap: dict[int, str] | None) -> str | None:
    enc = (rtpmap or {}).get(pt)
    if enc:
        return enc.split("/", 1)[0]
    return STATIC_CODEC.get(pt)


def telephone_event_pt(rtpmap: dict[int, str] | None) -> int:
    for k, v in (rtpmap or {}).items():
        if v.lower().startswith("telephone-event"):
            return k
    return -1
