"""Which (ip, port) carries which call's media: SDP offer/answer from SIP records, and a heuristic.

Why from the SIP records and not from the bodies: the agent already parsed the SDP once
(``sip.sdp_cy``), and the record is what every stage shares.  The record's ``sdp`` has,
per ``m=`` line, ``port``, ``connection`` (media ``c=``, else the session one), ``rtpmap``.
Three optional keys are read when present (``sdp_cy`` emits them when the body has them), at media
level or session level: ``direction`` (``sendrecv``/``sendonly``/``recvonly``/``inactive``),
``rtcp`` (the ``a=rtcp:`` value, ``"port"`` or ``"port IN IP4 addr"``) and ``rtcp_mux`` (bool).

Rules:
- the sender of an SDP announces where *it* receives: ``(c= address, m= port)`` maps to the
  call, RTCP on ``a=rtcp:`` or port + 1, or on the same port with ``a=rtcp-mux``;
- a later SDP from the same side of the call (re-INVITE, UPDATE, 200 to either) replaces
  that side's addresses; ``c=0.0.0.0`` (RFC 2543 hold) or port 0 withdraws them; a
  ``sendonly``/``inactive`` side is marked held (its address stays: it may still send);
- the endpoint table has a limit; an announcement that does not fit is refused and counted.

The heuristic (off by default) promotes an unannounced UDP flow to RTP after
``HEURISTIC_PACKETS`` packets with version 2, a non-RTCP payload type, one SSRC and
sequence numbers stepping by 1..``HEURISTIC_MAX_STEP``; its candidate table is bounded and
refuses (counted) when full.
"""
from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

# The live filter for media (issue 16: "update the kernel filter, or use a second socket"):
# a second socket with this *static* filter.  Why: announced ports change with every call
# (thousands a second on an SBC), and each kernel filter replacement is a window where
# packets are either missed or doubled; a static filter that passes only UDP whose payload
# starts with version 2 (RTP and RTCP both) never changes, and this table picks the
# announced streams out in user space at dictionary cost.  VLAN-tagged traffic needs the
# same expression after ``vlan and``.
MEDIA_BPF = "udp and udp[8] & 0xc0 = 0x80 and udp portrange 1024-65535"
HOLD_ADDRESSES = ("0.0.0.0", "::")
HEURISTIC_PACKETS = 4
HEURISTIC_MAX_STEP = 3


@dataclass(slots=True)
class Endpoint:
    """An announced receive address of one side of one call."""
    call_id: str
    side: str                     # "caller" or "callee": who announced it
    rtcp: bool                    # True: RTCP-only port
    mux: bool                     # RTP port that also carries RTCP (RFC 5761)
    rtpmap: dict[int, str]
    media: str                    # m= type: audio, video...
    held: bool = False


@dataclass
class _Call:
    caller_tag: str | None = None
    caller_ip: str | None = None
    keys: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: {"caller": [], "callee": []})
    ending_ns: int | None = None


def _rtpmap(m: dict) -> dict[int, str]:
    out: dict[int, str] = {}
    for k, v in (m.get("rtpmap") or {}).items():
        if str(k).isdigit():
            out[int(k)] = str(v)
    return out


def _address(text: str) -> str | None:
    """The SDP address as the decoder writes packet addresses (inet_ntop form), None for a name."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _rtcp_attr(value: object, default_ip: str) -> tuple[str, int] | None:
    if isinstance(value, int):
        return default_ip, value
    if not isinstance(value, str):
        return None
    f = value.split()
    if not f or not f[0].isdigit():
        return None
    ip = _address(f[3]) if len(f) >= 4 else default_ip
    return (ip, int(f[0])) if ip else None


class MediaDiscovery:
    """The expected-address table: ``expected[(ip, port)] -> Endpoint``."""

    def __init__(self, max_endpoints: int = 200_000, heuristic: bool = False, max_candidates: int = 4096):
        self.max_endpoints = max_endpoints
        self.heuristic = heuristic
        self.max_candidates = max_candidates
        self.expected: dict[tuple[str, int], Endpoint] = {}
        self.calls: dict[str, _Call] = {}
        self.candidates: dict[tuple[str, int, str, int], list] = {}   # [(ssrc, last seq), packet headers...]
        self.counters: Counter[str] = Counter()

    # ------------------------------------------------------------ SDP

    def on_sip_record(self, rec: dict) -> None:
        """Learn from one SIP record (type ``sip``); records without SDP only track the caller."""
        cid = rec.get("call_id")
        if not cid or rec.get("type") != "sip":
            return
        call = self.calls.get(cid)
        method = rec.get("method")
        if call is None:
            if method != "INVITE" and not rec.get("sdp"):
                return
            call = self.calls[cid] = _Call()
            if method is not None:
                call.caller_tag, call.caller_ip = rec.get("from_tag"), rec.get("src_ip")
            else:   # first seen is a response: its sender is the callee
                call.caller_tag, call.caller_ip = rec.get("from_tag"), rec.get("dst_ip")
        sdp = rec.get("sdp")
        if not isinstance(sdp, dict):
            return
        self.counters["sdp_seen"] += 1
        sender_tag = rec.get("from_tag") if method is not None else rec.get("to_tag")
        if sender_tag and call.caller_tag:
            side = "caller" if sender_tag == call.caller_tag else "callee"
        else:
            side = "caller" if rec.get("src_ip") == call.caller_ip else "callee"
        self._announce(cid, call, side, sdp)

    def _announce(self, cid: str, call: _Call, side: str, sdp: dict) -> None:
        for key in call.keys[side]:
            ep = self.expected.get(key)
            if ep is not None and ep.call_id == cid:
                del self.expected[key]
        call.keys[side] = []
        session_conn = sdp.get("connection")
        session_dir = sdp.get("direction")
        for m in sdp.get("media") or ():
            if not isinstance(m, dict):
                continue
            port = m.get("port")
            ip = m.get("connection") or session_conn
            if not isinstance(port, int) or port <= 0 or port > 65535 or not ip:
                self.counters["media_rejected_or_no_address"] += 1
                continue
            if ip in HOLD_ADDRESSES:
                self.counters["hold_zero_address"] += 1
                continue
            ip = _address(ip)
            if ip is None:   # an FQDN in c=: Otus does not resolve names on the capture path
                self.counters["connection_not_an_address"] += 1
                continue
            if ip in HOLD_ADDRESSES:   # e.g. "0:0::0"
                self.counters["hold_zero_address"] += 1
                continue
            direction = m.get("direction") or session_dir or "sendrecv"
            held = direction in ("sendonly", "inactive")
            if held:
                self.counters["hold_direction"] += 1
            mux = bool(m.get("rtcp_mux") or sdp.get("rtcp_mux"))
            rtpmap = _rtpmap(m)
            media = str(m.get("type") or "")
            self._put(call, side, (ip, port), Endpoint(cid, side, False, mux, rtpmap, media, held))
            if not mux:
                rtcp = _rtcp_attr(m.get("rtcp"), ip) if m.get("rtcp") is not None else (ip, port + 1)
                if rtcp is not None and 0 < rtcp[1] <= 65535:
                    self._put(call, side, rtcp, Endpoint(cid, side, True, False, rtpmap, media, held))

    def _put(self, call: _Call, side: str, key: tuple[str, int], ep: Endpoint) -> None:
        if key not in self.expected and len(self.expected) >= self.max_endpoints:
            self.counters["endpoints_refused_full"] += 1
            return
        if key in self.expected and self.expected[key].call_id != ep.call_id:
            self.counters["endpoints_reassigned"] += 1   # a port reused by a newer call wins
        self.expected[key] = ep
        call.keys[side].append(key)
        self.counters["endpoints_announced"] += 1

    def end_call(self, cid: str) -> None:
        """Forget a call's addresses (its streams are closed by the stage)."""
        call = self.calls.pop(cid, None)
        if call is None:
            return
        for keys in call.keys.values():
            for key in keys:
                ep = self.expected.get(key)
                if ep is not None and ep.call_id == cid:
                    del self.expected[key]

    # ------------------------------------------------------------ heuristic

    def heuristic_match(self, ts_ns: int, src: str, sport: int, dst: str, dport: int,
                        buf: bytes) -> list[tuple[int, int, int, int, bool, int]] | None:
        """The packets that qualified a flow as RTP (to replay into its new stream), else None.

        A candidate keeps at most ``HEURISTIC_PACKETS`` headers (never payload), so a stream
        found this way counts from its first packet, as tshark's heuristic does."""
        if len(buf) < 12 or buf[0] >> 6 != 2 or 72 <= (buf[1] & 0x7F) <= 76:
            return None
        ssrc = int.from_bytes(buf[8:12], "big")
        seq = (buf[2] << 8) | buf[3]
        pkt = (ts_ns, seq, int.from_bytes(buf[4:8], "big"), buf[1] & 0x7F, bool(buf[1] & 0x80), len(buf))
        key = (src, sport, dst, dport)
        c = self.candidates.get(key)
        if c is None or c[0][0] != ssrc or not 1 <= (seq - c[-1][1]) & 0xFFFF <= HEURISTIC_MAX_STEP:
            if c is None and len(self.candidates) >= self.max_candidates:
                self.counters["heuristic_refused_full"] += 1
                return None
            self.candidates[key] = [(ssrc, seq), pkt]
            return None
        c[0] = (ssrc, seq)
        c.append(pkt)
        if len(c) - 1 < HEURISTIC_PACKETS:
            return None
        del self.candidates[key]
        self.counters["heuristic_streams"] += 1
        return c[1:]
