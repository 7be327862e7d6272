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

Fanout workers (``otus run --interface X --workers N``): the kernel hashes each flow to one worker, so a
call's SIP and its RTP usually land on different ones.  ``share()`` turns on the exchange: ``take()``
returns what this table learned from its own SIP since the last call (per call side, the endpoints it now
has; call ends), as JSON-able lists, and ``apply()`` applies another worker's.  An applied announcement
changes the table as the SDP itself would have (same endpoints, same side) and is never taken again (no
echo).  A stream of a call whose SIP this worker did not see (``is_here``) is told to the others when it
opens and when it ends (``stream_out``), for the call record the SIP's worker makes.  RTP that reaches
this worker before the announcement does is held in ``Unannounced`` (bounded) and adopted when it
arrives, from the announcement's capture time on, so a stream counts the packets a single worker would
have counted.  With the heuristic on, unannounced flows go to it first, as with one worker, and are not
held.  RTCP naming none of this worker's streams (``rtcp_is_here``) is forwarded the same way
(``rtcp_out``) to the worker whose streams it is about.
"""
from __future__ import annotations

import base64
import ipaddress
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Container, Iterable, Mapping

from otus_agent.media.rtp import parse_rtcp
from otus_agent.media.summary import valid_part

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
# fanout sharing (share()): items ``take`` keeps when nobody takes them (the oldest go first, counted)
MAX_OUTBOX = 10_000
# Unannounced: flows held, packets per flow, how long (capture time) a flow waits for its announcement.
# Why these: an announcement reaches the other workers a loop iteration or a ring block's retire timeout
# (50 ms) later, under load some hundreds of ms; 100 packets are 2 s of 20 ms RTP
UNANNOUNCED_FLOWS = 1024
UNANNOUNCED_PACKETS = 100
UNANNOUNCED_AGE_NS = 5_000_000_000
# Endpoint flags on the wire (take/apply)
_F_RTCP, _F_MUX, _F_HELD = 1, 2, 4
Held = tuple[int, tuple[str, int, str, int], bytes]   # (capture ts, flow, datagram) for the stage's feed_packet
StreamKey = tuple[str, int, str, int, int]            # (src, sport, dst, dport, ssrc): one RTP stream
# a stream of another worker's call: opened (part None) or ended with its summary part (summary.part)
StreamNews = tuple[str, StreamKey, list | None]


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
    here: bool = False            # this worker saw the call's SIP itself (it makes the call's record)


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
        # fanout sharing, None until share(): what take() returns next, the RTP held for an announcement,
        # and the endpoints announced (here or applied) since the last adopt() with their capture time
        self.outbox: deque[list] | None = None
        self.waiting: Unannounced | None = None
        self.fresh: dict[tuple[str, int], int] = {}
        # the stage's, set when it shares: applied call ends and Call-ID reuses, in the items' order (an end
        # applied after the reused Call-ID's new offer would end the new call); None: ``apply`` returns ends
        self.on_end: Callable[[str, int | None], None] | None = None
        self.on_reused: Callable[[str], None] | None = None
        self.on_rtcp: Callable[[Held], None] | None = None   # forwarded RTCP, before a reuse ends its stream

    # ------------------------------------------------------------ SDP

    def on_sip_record(self, rec: dict) -> None:
        """Learn from one SIP record (type ``sip``); records without SDP only track the caller."""
        cid = rec.get("call_id")
        if self.outbox is not None and cid and (rec.get("type") == "call" or rec.get("method") == "BYE"):
            self._out(["e", cid, rec.get("ts") or rec.get("end_ts")])   # the stage ends the call's streams
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
        call.here = True
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
        if self.outbox is not None:
            self._share_side(cid, call, side, rec.get("ts"))

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

    def _put(self, call: _Call, side: str, key: tuple[str, int], ep: Endpoint,
             counter: str = "endpoints_announced") -> None:
        if key not in self.expected and len(self.expected) >= self.max_endpoints:
            self.counters["endpoints_refused_full"] += 1
            return
        if key in self.expected and self.expected[key].call_id != ep.call_id:
            self.counters["endpoints_reassigned"] += 1   # a port reused by a newer call wins
        self.expected[key] = ep
        call.keys[side].append(key)
        self.counters[counter] += 1

    # ------------------------------------------------------------ fanout sharing

    def share(self, waiting: Unannounced | None = None) -> None:
        """Record announcements for ``take`` and hold unannounced RTP (``waiting``, default bounds)."""
        self.outbox = deque()
        self.waiting = waiting if waiting is not None else Unannounced(counters=self.counters)

    def _out(self, item: list) -> None:
        assert self.outbox is not None
        if len(self.outbox) >= MAX_OUTBOX:
            self.outbox.popleft()
            self.counters["share_outbox_dropped"] += 1
        self.outbox.append(item)

    def _share_side(self, cid: str, call: _Call, side: str, ts: object) -> None:
        """One call side's endpoints as they are now: ``["a", call id, side, ts, [[ip, port, flags, media,
        {pt: codec}], ...], caller tag, caller ip]`` (an empty list withdraws them); ``ts`` dates the SDP
        for ``adopt``, the caller's tag and address let a worker that sees later SIP of the call tell
        the sides apart as this one did."""
        t = int(ts) if isinstance(ts, int) else 0
        for key in call.keys[side]:
            self.fresh.setdefault(key, t)
        self._out(self._side_item(cid, call, side, t))

    def _side_item(self, cid: str, call: _Call, side: str, ts: int) -> list:
        eps = []
        for key in call.keys[side]:
            ep = self.expected.get(key)
            if ep is not None and ep.call_id == cid:
                flags = (_F_RTCP if ep.rtcp else 0) | (_F_MUX if ep.mux else 0) | (_F_HELD if ep.held else 0)
                eps.append([key[0], key[1], flags, ep.media, {str(k): v for k, v in ep.rtpmap.items()}])
        return ["a", cid, side, ts, eps, call.caller_tag, call.caller_ip]

    def rtcp_out(self, ts_ns: int, flow: tuple[str, int, str, int], payload: bytes) -> None:
        """An RTCP datagram about none of this worker's streams (``rtcp_is_here``), for the worker whose they
        are: ``["r", ts, src, sport, dst, dport, base64 packet]`` (RTCP is control, no media payload).
        Why: RTCP is a flow of its own (port + 1), the kernel may hash it elsewhere than its RTP."""
        self._out(["r", ts_ns, *flow, base64.b64encode(payload).decode()])
        self.counters["share_rtcp_forwarded"] += 1

    def is_here(self, cid: str) -> bool:
        """Whether this worker saw the call's SIP itself (fanout: then its record is made here)."""
        call = self.calls.get(cid)
        return call is not None and call.here

    def recorded(self, cid: str) -> None:
        """The call's record is made (fanout: the streams of it other workers open later are not waited for)."""
        call = self.calls.get(cid)
        if call is not None:
            call.here = False

    def reused_out(self, cid: str) -> None:
        """A new dialog came with the Call-ID of one still lingering, which ended here now (MediaStage._reused):
        ``["x", call id]``, ahead of the new offer's announcement, so the other workers end it too."""
        if self.outbox is not None:
            self._out(["x", cid])

    def stream_out(self, cid: str, key: StreamKey, part: list | None = None) -> None:
        """A stream of a call whose SIP another worker has, for that worker's call record: opened
        (``["s", call id, key]``) or ended with its part of the call's media section (``["m", call id,
        key, summary.part]``).  Why both: the call's worker holds the call record while a stream it heard
        of is open, and knows when the last one has reported."""
        if part is None:
            self._out(["s", cid, list(key)])
            self.counters["share_streams_opened"] += 1
        else:
            self._out(["m", cid, list(key), part])
            self.counters["share_streams_ended"] += 1

    def dump(self) -> list[list]:
        """Every call side in the table, learned here or applied (items as ``take``'s, capture time 0): for a
        worker that starts again after calls were set up, also those whose SIP the dead worker had."""
        out = [self._side_item(cid, call, side, 0) for cid, call in self.calls.items()
               for side in ("caller", "callee") if call.keys[side]]
        self.counters["share_dumped"] += len(out)
        return out

    def take(self) -> list[list]:
        """What this worker learned from its own traffic since the last call (JSON-able, in order): call
        sides, call ends, RTCP for other workers' streams."""
        if not self.outbox:
            return []
        out = list(self.outbox)
        self.outbox.clear()
        self.counters["share_taken"] += len(out)
        return out

    def apply(self, items: list) -> tuple[list[tuple[str, int | None]], list[Held], list[StreamNews]]:
        """Another worker's ``take``: its call sides replace ours, as their SDP would have; returns the call
        ends (call id, capture ts), the RTCP datagrams (ts, flow, packet) and the news of streams of
        calls whose SIP may be here (call id, stream key, None or the ended stream's summary part) for the
        stage.  Malformed items are counted and skipped."""
        ends: list[tuple[str, int | None]] = []
        rtcp: list[Held] = []
        news: list[StreamNews] = []
        for it in items:
            try:
                if it[0] in ("s", "m"):
                    src, sport, dst, dport, ssrc = it[2]
                    skey = (str(src), int(sport), str(dst), int(dport), int(ssrc))
                    part = it[3] if it[0] == "m" else None
                    if it[0] == "m" and not valid_part(part):
                        raise TypeError(part)
                    news.append((str(it[1]), skey, part))
                    continue
                if it[0] == "e":
                    end = (str(it[1]), it[2] if isinstance(it[2], int) else None)
                    if self.on_end is not None:
                        self.on_end(*end)
                    else:
                        ends.append(end)
                    self.counters["share_applied_ends"] += 1
                    continue
                if it[0] == "x":
                    if len(it) != 2 or not isinstance(it[1], str):
                        raise TypeError(it)
                    if self.on_reused is not None:
                        self.on_reused(it[1])
                    self.counters["share_applied_reuses"] += 1
                    continue
                if it[0] == "r":
                    _, ts, src, sport, dst, dport, b64 = it
                    held = (int(ts), (str(src), int(sport), str(dst), int(dport)), base64.b64decode(b64, validate=True))
                    if self.on_rtcp is not None:
                        self.on_rtcp(held)
                    else:
                        rtcp.append(held)
                    continue
                _, cid, side, ts, eps, caller_tag, caller_ip = it
                if side not in ("caller", "callee") or not isinstance(cid, str):
                    raise ValueError(side)
                parsed = [((str(ip), int(port)), Endpoint(cid, side, bool(f & _F_RTCP), bool(f & _F_MUX),
                                                          {int(k): str(v) for k, v in rtpmap.items()}, str(media),
                                                          bool(f & _F_HELD)))
                          for ip, port, f, media, rtpmap in eps]
            except (TypeError, ValueError, IndexError, AttributeError):   # binascii.Error is a ValueError
                self.counters["share_bad_items"] += 1
                continue
            call = self.calls.get(cid)
            if call is None:
                call = self.calls[cid] = _Call(caller_tag if isinstance(caller_tag, str) else None,
                                               caller_ip if isinstance(caller_ip, str) else None)
            for key in call.keys[side]:
                ep = self.expected.get(key)
                if ep is not None and ep.call_id == cid:
                    del self.expected[key]
            call.keys[side] = []
            for key, ep in parsed:
                self._put(call, side, key, ep, "endpoints_applied")   # announced elsewhere: counted apart
                if self.expected.get(key) is ep:
                    self.fresh.setdefault(key, ts if isinstance(ts, int) else 0)
            self.counters["share_applied_sides"] += 1
        return ends, rtcp, news

    def adopt(self) -> list[Held]:
        """The held packets of the flows announced since the last call, by capture time (to feed the stage)."""
        if not self.fresh:
            return []
        fresh, self.fresh = self.fresh, {}
        if self.waiting is None or not self.waiting.flows:
            return []
        return self.waiting.adopt(fresh)

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


class Unannounced:
    """Recent RTP-shaped datagrams of flows no announcement covers yet (fanout workers only, ``share``).

    Why: another worker may have seen the SDP of a stream whose RTP the kernel hashed here, and its
    announcement arrives a loop iteration (or a ring block's retire timeout) after the first packets.
    ``hold`` keeps them; ``adopt`` hands back the packets of the flows just announced, from the
    announcement's capture time on (earlier ones a single worker would have ignored too: counted
    ``unannounced_before_sdp``).  RTP is kept as its header and size only (the payload is rebuilt as
    zeros of the same length for the replay: nothing reads it), RTCP whole.

    Bounds: at most ``max_flows`` flows (full: the least recently active goes, ``unannounced_evicted``),
    the last ``max_packets`` per flow (older ones go, ``unannounced_overflow``), and a flow silent for
    ``max_age_ns`` of capture time goes when a new flow comes (``unannounced_expired``); all counted in
    packets.  RTP of a flow that stays unannounced (no SIP for it anywhere) keeps its flow's slot, the
    oldest packets rolling out (counted as overflow).
    """

    def __init__(self, max_flows: int = UNANNOUNCED_FLOWS, max_packets: int = UNANNOUNCED_PACKETS,
                 max_age_ns: int = UNANNOUNCED_AGE_NS, counters: Counter[str] | None = None):
        self.max_flows, self.max_packets, self.max_age_ns = max_flows, max_packets, max_age_ns
        self.flows: OrderedDict[tuple[str, int, str, int], deque[tuple[int, bytes, int]]] = OrderedDict()
        self.counters: Counter[str] = counters if counters is not None else Counter()

    def hold(self, ts_ns: int, flow: tuple[str, int, str, int], payload: bytes) -> None:
        if len(payload) < 8 or payload[0] >> 6 != 2:
            return   # not RTP/RTCP-shaped: nothing an announcement could claim
        q = self.flows.get(flow)
        c = self.counters
        if q is None:
            self._expire(ts_ns)
            if len(self.flows) >= self.max_flows:
                _, old = self.flows.popitem(last=False)
                c["unannounced_evicted"] += len(old)
            q = self.flows[flow] = deque(maxlen=self.max_packets)
        else:
            if len(q) == self.max_packets:
                c["unannounced_overflow"] += 1
            self.flows.move_to_end(flow)   # the table's order: least recently active first
        q.append((ts_ns, _header(payload), len(payload)))
        c["unannounced_held"] += 1

    def _expire(self, now_ns: int) -> None:
        limit = now_ns - self.max_age_ns
        flows = self.flows
        while flows:
            flow, q = next(iter(flows.items()))
            if q[-1][0] >= limit:
                return
            del flows[flow]
            self.counters["unannounced_expired"] += len(q)

    def adopt(self, fresh: dict[tuple[str, int], int]) -> list[Held]:
        """Packets of the flows ``fresh`` covers, oldest first, each from the earliest announcement covering
        it on: the stage matches a flow by its destination or, failing that, by its source, so a caller's
        RTP is counted from the offer on although the answer names its destination (early media, and both
        sides applied at once when the SIP's worker lags)."""
        out = []
        for flow in [f for f in self.flows if (f[2], f[3]) in fresh or (f[0], f[1]) in fresh]:
            since = min(t for t in (fresh.get((flow[2], flow[3])), fresh.get((flow[0], flow[1]))) if t is not None)
            q = self.flows.pop(flow)
            before = 0
            for ts, head, size in q:
                if ts < since:
                    before += 1
                else:
                    out.append((ts, flow, head + bytes(size - len(head)) if size > len(head) else head))
            self.counters["unannounced_before_sdp"] += before
            self.counters["unannounced_adopted"] += len(q) - before
        out.sort(key=lambda p: p[0])
        return out

    def drop_all(self) -> None:
        """End of capture: what still waits is counted as expired."""
        for q in self.flows.values():
            self.counters["unannounced_expired"] += len(q)
        self.flows.clear()


def _header(payload: bytes) -> bytes:
    """What the stage reads of an RTP packet: its header (CSRCs, extension; ``adopt`` fills the rest
    with zeros).  Whole: RTCP, RTP with padding (its count is the packet's last octet) and RTP whose
    header claims more than the packet holds (the stage counts those as it would have)."""
    n = len(payload)
    if 192 <= payload[1] <= 223:   # RTCP (RFC 5761 4): parsed whole
        return payload
    end = 12 + 4 * (payload[0] & 0x0F)
    if payload[0] & 0x10:
        if end + 4 > n:
            return payload
        end += 4 + 4 * ((payload[end + 2] << 8) | payload[end + 3])
    if end > n or payload[0] & 0x20:   # padding: its count is the last octet, keep the packet
        return payload
    return payload[:end]


def rtcp_is_here(payload: bytes, streams: Container[int] | Mapping[int, Iterable],
                 hosts: tuple[str, str] | None = None) -> bool:
    """Whether an RTCP packet names an SSRC in ``streams`` (sender, report blocks, SDES, BYE, XR), or is
    refused (then the stage that got it counts it): fanout workers keep such RTCP, forward the rest.

    With ``hosts`` (the RTCP's source and destination), ``streams`` maps each SSRC to its open streams
    (``.key``: src, sport, dst, dport, ssrc) and one of them must be between those two hosts.  Why: a
    media relay forwards a stream with its SSRC, so one SSRC is on a stream of each leg, and the worker
    holding the other leg's stream must not keep the RTCP (MediaStage._rtcp would join it there)."""
    rt = parse_rtcp(payload, Counter())
    if rt is None:
        return True
    named = (rt.sender_ssrc, *(b.ssrc for _, b in rt.reports), *(r for r, _ in rt.reports), *rt.cnames,
             *rt.bye, *(x.ssrc for _, x in rt.xr_voip))
    if hosts is None:
        return any(s in streams for s in named)
    src, dst = hosts
    for s in named:
        for ms in streams.get(s, ()):   # type: ignore[union-attr]
            k = ms.key
            if (k[0] == src and k[2] == dst) or (k[0] == dst and k[2] == src):
                return True
    return False
