"""MediaStage: SIP records in, UDP datagrams in, media records out.

Wiring (for the engine): call ``on_sip_record`` with every SIP record *before* the datagrams
that follow it, ``feed`` (a ``reassembly.datagrams.Datagram``) or ``feed_packet`` with every
UDP datagram, ``flush(now_ns)`` about once a second (returns the records due), and
``finish()`` at the end of a capture.  ``counters()`` is what metrics export.  Beside SIP
(``--parsers sip,rtp``) the engine makes ``run_lane`` the datagram stage's lane: the RTP of known plain
flows goes from the decoded batch to its stream in compiled code (``rtp_cy.MediaLane``), everything
else comes to ``feed_packet`` as a datagram, with the same records and counters either way.

Bounds: the stream table holds at most ``max_streams``.  When a new stream does not fit,
idle streams are closed first; if it is still full the least recently active stream is
closed with ``end_reason: "evicted"`` (its record is still emitted) and counted in
``streams_evicted``.  Per stream, memory is bounded (the duplicate window, a few RTCP SRs).

Call records (``hold_call``) are held while their streams run; with fanout workers also while a stream
another worker has of a call whose SIP is here has not sent its summary part (``apply_streams``), at most
the linger plus ``REMOTE_WAIT_NS`` (counted when it passes).  The tables of pending summaries, held
records and awaited calls hold at most ``MAX_CALLS`` each (the oldest goes first, counted).
"""
from __future__ import annotations

import bisect
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from otus_agent.identity import annotate
from otus_agent.media import rtp as R
from otus_agent.media.discovery import Endpoint, MediaDiscovery, StreamKey, StreamNews, rtcp_is_here
from otus_agent.media.fields import NAMES, SCHEMA_VERSION
from otus_agent.media.rtp_cy import RTP_REASONS, MediaLane, RtpStream, flow_key
from otus_agent.media.streams import mos_from_r, one_way_delay_ms, r_factor
from otus_agent.media.summary import P_START, CallMedia, new_summary, part
from otus_agent.reassembly.datagrams import Datagram

JITTER_BUCKETS_MS = (1.0, 5.0, 10.0, 20.0, 50.0, 100.0)
MOS_BUCKETS = (1.0, 2.0, 3.0, 3.5, 4.0, 4.2, 4.4, 4.5)
MAX_SR_PER_SSRC = 4
MAX_CALLS = 10_000    # calls with a media summary pending, call records held for their streams, calls
#                       waiting for other workers' streams (fanout)
# fanout workers: a call record held for streams on other workers waits at most this long (after the BYE
# linger, capture time; live: wall clock) for their parts, then goes with what came (``call_media_wait_expired``)
REMOTE_WAIT_NS = 5_000_000_000
END_OF_TIME = 1 << 62


class MediaConfig(BaseModel):
    """The CaptureTask ``media`` section's agent side."""
    model_config = ConfigDict(extra="forbid")
    interim_s: float = Field(default=60.0, gt=0, description="interim record interval for running streams")
    idle_timeout_s: float = Field(default=30.0, gt=0, description="a stream without packets this long ends")
    bye_linger_s: float = Field(default=2.0, ge=0, description="media after a BYE still counts this long")
    max_streams: int = Field(default=100_000, gt=0)
    max_endpoints: int = Field(default=200_000, gt=0)
    heuristic: bool = False


@dataclass(slots=True)
class MediaStream:
    stats: RtpStream
    key: tuple[str, int, str, int, int]
    call_id: str | None
    direction: str | None
    heuristic: bool
    last_report_ns: int
    mux: bool = False
    end_reason: str | None = None
    rtt_ms: float | None = None
    rtcp_fraction_lost: float | None = None
    rtcp_cumulative_lost: int | None = None
    rtcp_jitter_ms: float | None = None
    cname: str | None = None
    xr_mos_lq: float | None = None
    xr_r_factor: int | None = None
    srs: list[tuple[int, int]] = field(default_factory=list)   # (NTP middle 32 bits, capture ns)
    remote: bool = False   # fanout: its call's SIP is on another worker, told when it opens and ends


def _direction(ep: Endpoint, to_announcer: bool) -> str:
    """Sent to the announcer's address: to that side; matched by source: to the other side."""
    if to_announcer:
        return "to_caller" if ep.side == "caller" else "to_callee"
    return "to_callee" if ep.side == "caller" else "to_caller"


class MediaStage:
    def __init__(self, config: MediaConfig | None = None):
        c = self.config = config or MediaConfig()
        # run_lane leaves to the datagram path what the SIP parser beside it may want (set by the engine)
        self.sip_ports: frozenset[int] = frozenset()
        self.sip_heuristic = True
        # the lane beside SIP (rtp_cy.MediaLane, compiled): the same non-multiplexed flows as ``fast``,
        # keyed by their raw addresses and ports, each to its stream's statistics
        self.lane = MediaLane()
        self._lane_sip: tuple[frozenset[int], bool] | None = None   # what self.lane was configured with
        self.discovery = MediaDiscovery(c.max_endpoints, c.heuristic)
        self.streams: dict[tuple[str, int, str, int, int], MediaStream] = {}
        self.flows: dict[tuple[str, int, str, int], MediaStream] = {}   # the last stream of each 4-tuple
        # the per-packet path: each non-multiplexed flow's stream's bound ``add_packet`` (one dict get and one
        # call per RTP packet); multiplexed (rtcp-mux) flows are absent, RTCP must be told apart first
        self.fast: dict[tuple[str, int, str, int], Callable[[int, bytes], int]] = {}
        self._ended_packets = 0   # RTP packets of the streams already closed (rtp_packets: these + the open ones)
        # the open streams of each SSRC, oldest first: usually one, more where a media relay forwards a
        # stream with its SSRC (rtpengine's default: the same SSRC on both legs) or two SSRCs collide
        self.by_ssrc: dict[int, list[MediaStream]] = {}
        self.by_call: dict[str, set[tuple[str, int, str, int, int]]] = {}
        self.ending: dict[str, int] = {}          # call_id -> ns after which its streams end
        self.bad: Counter[str] = Counter()        # refused RTP/RTCP by reason
        self.bad_heuristic: Counter[str] = Counter()   # unannounced datagrams the heuristic refused
        self.c: Counter[str] = Counter()
        self.slow_packets = 0   # datagrams off the per-flow fast path (metric: it should stay small)
        self.jitter_hist = [0] * (len(JITTER_BUCKETS_MS) + 1)
        self.mos_hist = [0] * (len(MOS_BUCKETS) + 1)
        self.mos_worst: float | None = None      # the lowest MOS of any record (interim or final) so far
        self.idle_ns = int(c.idle_timeout_s * 1e9)
        self.interim_ns = int(c.interim_s * 1e9)
        self.linger_ns = int(c.bye_linger_s * 1e9)
        self.last_ts_ns = 0
        self.lane_until_ns = 0   # run_lane leaves packets from this capture time on to feed (a flush is due)
        self._closed: list[dict] = []   # evicted streams' records, returned by the next flush
        # call summaries (issue 16): each call's running media summary, and the call records held
        # while their streams run; both bounded by MAX_CALLS (the oldest goes first, counted)
        self.call_media: OrderedDict[str, CallMedia] = OrderedDict()
        self.held: OrderedDict[str, tuple[dict, int]] = OrderedDict()   # call id -> (record, wait until ns)
        # fanout workers: per call whose SIP is here, the streams other workers said are open (their
        # parts not come yet); bounded by MAX_CALLS (the oldest goes, ``call_media_remote_evicted``)
        self.remote: OrderedDict[str, set[StreamKey]] = OrderedDict()
        # a reused Call-ID's old call, still waiting for other workers' parts: call id -> (its key in held,
        # remote and call_media, the new INVITE's time); one per held record at most (dropped with it)
        self.aliases: dict[str, tuple[str, int]] = {}

    # ------------------------------------------------------------ input

    def on_sip_record(self, rec: dict) -> None:
        """Learn SDP; a BYE (or a final call record) ends the call's streams after the linger."""
        cid = rec.get("call_id")
        if cid and cid in self.ending and rec.get("method") == "INVITE" and not rec.get("to_tag") \
                and rec.get("type") == "sip":
            ts = rec.get("ts")
            at = ts if isinstance(ts, int) else None
            if at is None or at < self.ending[cid]:   # else only the end no flush made yet
                self.c["call_id_reused"] += 1
            self._reused(cid, True, at)
        self.discovery.on_sip_record(rec)
        if not cid:
            return
        if (rec.get("type") == "sip" and rec.get("method") == "BYE") or rec.get("type") == "call":
            self.end_call(cid, rec.get("ts") or rec.get("end_ts") or None)

    def _reused(self, cid: str, here: bool, at: int | None = None) -> None:
        """A new dialog (an INVITE without a To tag) with the Call-ID of one whose BYE still lingers: that
        one's streams end now, before the new offer is learned.  Why: a Call-ID names one dialog, but a
        looped pcap replay, a test tool with fixed Call-IDs or a broken UA sends it again, often with the
        same ports and SSRC; left to its linger, the old call's end forgot the new call's addresses and
        its old streams took the new call's first packets (``on_sip_record`` counts ``call_id_reused``
        when the linger had not passed).  ``here``: this worker saw the INVITE
        (fanout: it tells the others, ``discovery.reused_out``); else another worker said so.  The old
        call's record goes now, or, when other workers' parts of its streams are still to come (fanout),
        waits under a key of its own (``aliases``: parts of streams that started before ``at``, the new
        INVITE's time, are the old call's)."""
        self.ending.pop(cid, None)
        if here:
            self.discovery.reused_out(cid)
        for key in list(self.by_call.get(cid, ())):
            ms = self.streams.get(key)
            if ms is not None:   # an RTCP BYE not flushed yet keeps its reason
                self._closed.append(self._close(ms, ms.end_reason or "bye"))
        self.by_call.pop(cid, None)
        self.discovery.end_call(cid)
        held = self.held.pop(cid, None)   # the old call's record, waiting for those streams
        if held is not None:
            waiting = self.remote.pop(cid, None)
            if waiting and at is not None:
                old = f"{cid}\0{at}"      # no Call-ID holds a NUL (the scanner and the parser refuse it)
                self.held[old] = held
                self.remote[old] = waiting
                cm = self.call_media.pop(cid, None)
                if cm is not None:
                    self.call_media[old] = cm
                self.aliases[cid] = (old, at)
            else:
                held[0]["media"] = self._media_of(cid)
                self._closed.append(held[0])

    def end_call(self, cid: str, ts: int | None) -> None:
        """The call ended at ``ts`` (its BYE or call record, here or on another worker; None: now): its
        streams end after the linger."""
        self.ending.setdefault(cid, int(ts if ts is not None else self.last_ts_ns) + self.linger_ns)

    def feed(self, d: Datagram) -> None:
        if d.proto == 17:
            self.feed_packet(d.ts_ns, d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.payload)

    def feed_packet(self, ts_ns: int, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
        """One UDP datagram; anything not announced (nor heuristically RTP) is ignored cheaply."""
        self.last_ts_ns = ts_ns
        add = self.fast.get((src, sport, dst, dport))
        if add is not None:
            code = add(ts_ns, payload)   # the common case: parsed and added in one call
            if code == 0:
                return
            if code > 0:
                self.bad[RTP_REASONS[code]] += 1
                return
        self._slow(ts_ns, (src, sport, dst, dport), payload)

    def run_lane(self, buf: bytes, out, n: int, ts, i: int, end: bool = True) -> int:
        """The datagram stage's lane (reassembly.datagrams): from row ``i`` of a decoded batch, the RTP
        packets of known plain flows go to their streams with no ``Datagram`` built and no other
        datagram parser called; returns the first row it leaves to the datagram path, which is each
        row that is not UDP, not on a known flow, not its stream's SSRC (the path opens that stream as
        ``feed_packet`` does), on one of ``sip_ports`` or could look like SIP to SIP's heuristic
        (``sip_heuristic``: never taken from the SIP parser), or at or after ``lane_until_ns`` (a flush
        is due).  The loop is ``rtp_cy.MediaLane.run`` (compiled: no Python per packet); packets it
        refuses as RTP are counted by reason there and folded into ``counters``."""
        lane = self.lane
        sip = (self.sip_ports, self.sip_heuristic)
        if sip != self._lane_sip:
            lane.configure(*sip)
            self._lane_sip = sip
        j = lane.run(buf, out, n, ts, i, self.lane_until_ns)
        if j > i:
            self.last_ts_ns = lane.last_ts_ns
        return j

    @property
    def lane_packets(self) -> int:
        """RTP packets run_lane took (they are also in rtp_packets)."""
        return self.lane.packets

    def _slow(self, ts_ns: int, flow: tuple[str, int, str, int], payload: bytes) -> None:
        """First packet of a flow, a new SSRC on it, RTCP, or unannounced traffic."""
        self.slow_packets += 1
        ms = self.flows.get(flow)
        if ms is not None and ms.mux and not R.looks_like_rtcp(payload):   # RTP on a multiplexed flow
            code = ms.stats.add_packet(ts_ns, payload)
            if code == 0:
                self.slow_packets -= 1   # a multiplexed flow's RTP is its fast path
                return
            if code > 0:
                self.bad[RTP_REASONS[code]] += 1
                return
        src, sport, dst, dport = flow
        exp = self.discovery.expected
        ep = exp.get((dst, dport))
        to_announcer = True
        if ep is None:
            ep = exp.get((src, sport))
            to_announcer = False
            if ep is None:
                if self.discovery.heuristic:
                    self._heuristic(ts_ns, src, sport, dst, dport, payload)
                elif self.discovery.waiting is not None:   # a fanout worker: the SDP may be another's
                    self.discovery.waiting.hold(ts_ns, flow, payload)
                return
        if ep.rtcp or (ep.mux and R.looks_like_rtcp(payload)):
            if self.discovery.outbox is not None and not rtcp_is_here(payload, self.by_ssrc, (src, dst)):
                self.discovery.rtcp_out(ts_ns, flow, payload)   # a fanout worker: its streams are elsewhere
                return
            self._rtcp(ts_ns, payload, src, dst)
            return
        h = R.parse_rtp(payload, self.bad)
        if h is None:
            return
        key = (src, sport, dst, dport, h.ssrc)
        ms = self.streams.get(key)
        if ms is None:
            ms = self._open(ts_ns, key, ep.call_id, _direction(ep, to_announcer), ep.rtpmap, False, ep.mux)
        self._route(flow, ms)
        ms.stats.add(ts_ns, h.seq, h.timestamp, h.payload_type, h.marker, len(payload))

    def _route(self, flow: tuple[str, int, str, int], ms: MediaStream) -> None:
        """``flow``'s packets go to ``ms`` from now on (its last SSRC wins, as before)."""
        self.flows[flow] = ms
        key = _lane_key(flow)
        if ms.mux:
            self.fast.pop(flow, None)
            if key is not None:
                self.lane.pop(key)
        else:
            self.fast[flow] = ms.stats.add_packet
            if key is not None:
                self.lane.put(key, ms.stats)

    def _heuristic(self, ts_ns: int, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
        ms = None
        if len(payload) >= 12:
            ms = self.streams.get((src, sport, dst, dport, int.from_bytes(payload[8:12], "big")))
        if ms is not None:
            h = R.parse_rtp(payload, self.bad)
            if h is not None:
                ms.stats.add(ts_ns, h.seq, h.timestamp, h.payload_type, h.marker, len(payload))
            return
        if R.parse_rtp(payload, self.bad_heuristic) is None:
            return   # not RTP-shaped: counted apart, unannounced traffic is not "bad RTP"
        found = self.discovery.heuristic_match(ts_ns, src, sport, dst, dport, payload)
        if found is None:
            return
        key = (src, sport, dst, dport, int.from_bytes(payload[8:12], "big"))
        ms = self._open(found[0][0], key, None, None, {}, True)
        for t, seq, rts, pt, marker, size in found:
            ms.stats.add(t, seq, rts, pt, marker, size)

    def _open(self, ts_ns: int, key: tuple[str, int, str, int, int], call_id: str | None, direction: str | None,
              rtpmap: dict[int, str], heuristic: bool, mux: bool = False) -> MediaStream:
        if len(self.streams) >= self.config.max_streams:
            self._make_room(ts_ns)
        ms = MediaStream(RtpStream(key[4], rtpmap), key, call_id, direction, heuristic, ts_ns, mux)
        self.streams[key] = ms
        self.by_ssrc.setdefault(key[4], []).append(ms)
        if call_id is not None:
            self.by_call.setdefault(call_id, set()).add(key)
            disc = self.discovery
            if disc.outbox is not None and not disc.is_here(call_id):   # fanout: its call record is elsewhere
                ms.remote = True
                disc.stream_out(call_id, key)
        self.c["streams_started"] += 1
        return ms

    def _make_room(self, now_ns: int) -> None:
        idle = [k for k, m in self.streams.items() if m.stats.last_ts_ns + self.idle_ns < now_ns]
        for k in idle:
            self._close(self.streams[k], "idle")
        if len(self.streams) >= self.config.max_streams:
            victim = min(self.streams.values(), key=lambda m: m.stats.last_ts_ns)
            self._close(victim, "evicted")
            self.c["streams_evicted"] += 1

    # ------------------------------------------------------------ RTCP

    def _stream_of(self, ssrc: int, sender: str, receiver: str) -> MediaStream | None:
        """The open stream an RTCP item is about: the only one with ``ssrc``, else the one sent from
        ``sender`` to ``receiver`` (a relay's legs carry one SSRC each way: the RTCP's own hosts tell
        them apart), else the latest opened."""
        streams = self.by_ssrc.get(ssrc)
        if not streams:
            return None
        if len(streams) > 1:
            self.c["rtcp_ssrc_shared"] += 1
            for ms in streams:
                if ms.key[0] == sender and ms.key[2] == receiver:
                    return ms
        return streams[-1]

    def _rtcp(self, ts_ns: int, payload: bytes, src: str, dst: str) -> None:
        """One RTCP packet from ``src`` to ``dst``: what its sender sends (SR, SDES, BYE) joins the stream
        from src to dst, what it reports (report blocks, XR) the stream it receives, dst to src."""
        rt = R.parse_rtcp(payload, self.bad)
        if rt is None:
            return
        self.c["rtcp_packets"] += 1
        about = self._stream_of
        if rt.sr_ntp_mid is not None and rt.sender_ssrc is not None:
            ms = about(rt.sender_ssrc, src, dst)
            if ms is not None:
                ms.srs.append((rt.sr_ntp_mid, ts_ns))
                del ms.srs[:-MAX_SR_PER_SSRC]
        for ssrc, cname in rt.cnames.items():
            ms = about(ssrc, src, dst)
            if ms is not None:
                ms.cname = cname
        for reporter, b in rt.reports:
            ms = about(b.ssrc, dst, src)
            if ms is None:
                self.c["rtcp_reports_unmatched"] += 1
                continue
            ms.rtcp_fraction_lost = b.fraction_lost
            ms.rtcp_cumulative_lost = b.cumulative_lost
            clock = ms.stats.clock
            ms.rtcp_jitter_ms = b.jitter * 1000.0 / clock if clock else None
            if b.lsr:
                for mid, sr_ns in ms.srs:
                    if mid == b.lsr:
                        rtt = (ts_ns - sr_ns) / 1e6 - b.dlsr * 1000.0 / 65536.0
                        if rtt >= 0:
                            ms.rtt_ms = rtt
                            back = about(reporter, src, dst)
                            if back is not None:
                                back.rtt_ms = rtt
                        break
        for reporter, x in rt.xr_voip:
            ms = about(x.ssrc, dst, src)
            if ms is not None:
                ms.xr_mos_lq, ms.xr_r_factor = x.mos_lq, x.r_factor
        for ssrc in rt.bye:
            ms = about(ssrc, src, dst)
            if ms is not None and ms.end_reason is None:
                ms.end_reason = "rtcp_bye"

    # ------------------------------------------------------------ output

    def flush(self, now_ns: int) -> list[dict]:
        """Records due at ``now_ns``: ended streams (BYE + linger, RTCP BYE, idle) and interims."""
        out: list[dict] = []
        for cid in [c for c, t in self.ending.items() if t <= now_ns]:
            del self.ending[cid]
            for key in list(self.by_call.get(cid, ())):
                ms = self.streams.get(key)
                if ms is not None:
                    out.append(self._close(ms, "bye"))
            self.by_call.pop(cid, None)
            self.discovery.end_call(cid)
        for ms in list(self.streams.values()):
            if ms.end_reason is not None:
                out.append(self._close(ms, ms.end_reason))
            elif ms.stats.last_ts_ns + self.idle_ns <= now_ns:
                out.append(self._close(ms, "idle"))
            elif now_ns - ms.last_report_ns >= self.interim_ns:
                ms.last_report_ns = now_ns
                rec = self.record(ms, final=False)
                out.append(rec)
                self.c["records_interim"] += 1
                self._worst(rec)
        out.extend(self._closed)
        self._closed.clear()
        if self.held:
            self._release(out, now_ns)
        return out

    def finish(self) -> list[dict]:
        """End of a capture: every stream still open ends (reason ``end``)."""
        out = self.flush(self.last_ts_ns)
        for ms in list(self.streams.values()):
            out.append(self._close(ms, ms.end_reason or "end"))
        out.extend(self._closed)
        self._closed.clear()
        self._release(out, self.last_ts_ns, every=True)
        return out

    def _close(self, ms: MediaStream, reason: str) -> dict:
        """Remove a stream and return its final record (evictions queue theirs for the next flush)."""
        if self.streams.pop(ms.key, None) is ms:
            self._ended_packets += ms.stats.packets
        flow = ms.key[:4]
        if self.flows.get(flow) is ms:
            del self.flows[flow]
            self.fast.pop(flow, None)
            key = _lane_key(flow)
            if key is not None:
                self.lane.pop(key)
        same = self.by_ssrc.get(ms.key[4], [])
        for i, m in enumerate(same):
            if m is ms:
                del same[i]
                if not same:
                    del self.by_ssrc[ms.key[4]]
                break
        if ms.call_id is not None:
            keys = self.by_call.get(ms.call_id)
            if keys is not None:
                keys.discard(ms.key)
        ms.end_reason = reason
        rec = self.record(ms, final=True)
        self.c["streams_ended"] += 1
        self.c["records_final"] += 1
        self.c["lost_total"] += max(0, rec["lost"])
        self.c["expected_total"] += max(0, rec["expected"])
        self.jitter_hist[bisect.bisect_left(JITTER_BUCKETS_MS, rec["mean_jitter_ms"])] += 1
        self.mos_hist[bisect.bisect_left(MOS_BUCKETS, rec["mos"])] += 1
        self._worst(rec)
        if reason == "evicted":
            self._closed.append(rec)
        if ms.remote and ms.call_id is not None:   # fanout: its part goes to the worker making the call's record
            self.discovery.stream_out(ms.call_id, ms.key, part(rec))
        elif ms.call_id is not None:
            self._call_media(ms.call_id).add(rec)
        return rec

    def _call_media(self, cid: str) -> CallMedia:
        cm = self.call_media.get(cid)
        if cm is None:
            if len(self.call_media) >= MAX_CALLS:
                self.call_media.popitem(last=False)
                self.c["call_media_evicted"] += 1
            cm = self.call_media[cid] = CallMedia()
        return cm

    def _media_of(self, cid: str) -> dict:
        """The call's media section, its running summary done with."""
        cm = self.call_media.pop(cid, None)
        return cm.section if cm is not None else new_summary()

    # ------------------------------------------------------------ call summaries

    def hold_call(self, rec: dict) -> bool:
        """A call summary record from the SIP stage: its media section now when none of its streams runs
        (the record then goes on, False), else kept until they end (True: ``flush`` returns it).  Fanout
        workers: also while a stream another worker said is open has not sent its part, at most
        ``REMOTE_WAIT_NS`` after the linger."""
        cid = rec.get("call_id")
        if not isinstance(cid, str):
            rec["media"] = new_summary()
            return False
        self.discovery.recorded(cid)   # fanout: streams of the call opening after this are not waited for
        if self.by_call.get(cid) or self.remote.get(cid):
            if len(self.held) >= MAX_CALLS:           # full: the oldest goes now, with what is known
                old_cid, (old, _) = self.held.popitem(last=False)
                self._unalias(old_cid)
                self.remote.pop(old_cid, None)
                old["media"] = self._media_of(old_cid)
                self._closed.append(old)
                self.c["call_records_released_early"] += 1
            end = rec.get("end_ts")
            now = max(self.last_ts_ns, end if isinstance(end, int) else 0)
            self.held[cid] = (rec, now + self.linger_ns + REMOTE_WAIT_NS)
            return True
        rec["media"] = self._media_of(cid)
        return False

    def _release(self, out: list[dict], now_ns: int, every: bool = False) -> None:
        """The held call records whose streams have all ended, here and (fanout) on the other workers or
        their wait passed (``every``: all of them), with their media."""
        remote = self.remote
        for cid in [c for c, (_, until) in self.held.items()
                    if every or not self.by_call.get(c) and (not remote.get(c) or until <= now_ns)]:
            rec, _ = self.held.pop(cid)
            self._unalias(cid)
            if remote.pop(cid, None):
                self.c["call_media_incomplete_at_end" if every else "call_media_wait_expired"] += 1
            rec["media"] = self._media_of(cid)
            out.append(rec)

    def _unalias(self, key: str) -> None:
        """``key`` (held's) is no longer held: drop the alias naming it, if it is one."""
        base, nul, _ = key.partition("\0")
        if nul and self.aliases.get(base, ("",))[0] == key:
            del self.aliases[base]

    # ------------------------------------------------------------ fanout workers (engine/parsers.Sharing)

    def share(self) -> None:
        """Switch to sharing with other fanout workers (discovery.share): once, before the first packet."""
        self.discovery.share()
        self.discovery.on_end = self.end_call
        self.discovery.on_reused = lambda cid: self._reused(cid, False)
        self.discovery.on_rtcp = lambda held: self._feed_held([held], rtcp=True)

    def share_take(self) -> list:
        """What this worker learned for the others since the last call (discovery.take)."""
        self._replay_held()   # flows this worker's own SDP announced after their first packets (capture skew)
        return self.discovery.take()

    def share_apply(self, items: list) -> None:
        """What another worker took: announcements and call ends as this worker's own SIP would give them,
        the RTP held for them fed with its capture times, RTCP of this worker's streams fed too (call ends,
        reuses and RTCP through the callbacks ``share`` set, in the items' order)."""
        _, _, news = self.discovery.apply(items)
        if news:   # streams of calls whose SIP is here, open or ended on another worker
            self.apply_streams(news)
        self._replay_held()

    def _replay_held(self) -> None:
        """The RTP held for announcements that came now (discovery.adopt), as if announced in time."""
        held = self.discovery.adopt()
        if held:
            self._feed_held(held)

    def _feed_held(self, packets: list, rtcp: bool = False) -> None:
        """Packets seen earlier (``(ts, (src, sport, dst, dport), payload)``) through ``feed_packet``; the
        stage's clock does not go back.  ``rtcp``: forwarded RTCP, fed only when it names one of this
        worker's streams (counted either way)."""
        last = self.last_ts_ns
        counters = self.discovery.counters
        for ts, (src, sport, dst, dport), payload in packets:
            if rtcp:
                if not rtcp_is_here(payload, self.by_ssrc, (src, dst)):   # on neither worker (a third, or none)
                    counters["share_rtcp_not_here"] += 1
                    continue
                counters["share_rtcp_applied"] += 1
            self.feed_packet(ts, src, sport, dst, dport, payload)
        self.last_ts_ns = max(last, self.last_ts_ns)

    def apply_streams(self, news: list[StreamNews]) -> None:
        """Fanout: other workers' streams of calls (``discovery.apply``).  Opened, of a call whose SIP is here
        and whose record is not made yet: waited for; ended, if waited for: its part joins the call's."""
        remote = self.remote
        for cid, key, p in news:
            if p is None:
                if not self.discovery.is_here(cid):
                    continue   # another worker's call (every peer hears of every stream)
                keys = remote.get(cid)
                if keys is None:
                    if len(remote) >= MAX_CALLS:
                        remote.popitem(last=False)
                        self.c["call_media_remote_evicted"] += 1
                    keys = remote[cid] = set()
                keys.add(key)
                self.c["call_streams_remote"] += 1
                continue
            alias = self.aliases.get(cid)
            if alias is not None and isinstance(p[P_START], int) and p[P_START] < alias[1]:
                cid = alias[0]   # a stream of the call whose Call-ID came again (_reused)
            keys = remote.get(cid)
            if keys is None or key not in keys:
                continue
            keys.discard(key)
            if not keys:
                del remote[cid]
            self._call_media(cid).add_part(p)
            self.c["call_streams_reported"] += 1

    def _worst(self, rec: dict) -> None:
        mos = rec.get("mos")
        if isinstance(mos, (int, float)) and (self.mos_worst is None or mos < self.mos_worst):
            self.mos_worst = float(mos)

    def record(self, ms: MediaStream, final: bool) -> dict:
        s = ms.stats
        src, sport, dst, dport, ssrc = ms.key
        loss = s.loss_ratio
        r = r_factor(loss, one_way_delay_ms(ms.rtt_ms, s.mean_jitter), s.codec)
        rec = {
            "v": SCHEMA_VERSION, "type": "media", "call_id": ms.call_id, "direction": ms.direction,
            "src_ip": src, "src_port": sport, "dst_ip": dst, "dst_port": dport, "ssrc": ssrc,
            "payload_type": s.first_pt, "payload_types": s.payload_types, "codec": s.codec,
            "packets": s.packets, "bytes": s.octets, "expected": s.expected, "lost": s.lost, "loss_ratio": loss,
            "duplicates": s.duplicates, "out_of_order": s.out_of_order, "seq_errors": s.seq_errors,
            "max_delta_ms": s.max_delta, "mean_jitter_ms": s.mean_jitter, "max_jitter_ms": s.max_jitter,
            "markers": s.markers, "ts_jumps": s.ts_jumps, "telephone_events": s.te_events,
            "rtt_ms": ms.rtt_ms, "rtcp_fraction_lost": ms.rtcp_fraction_lost,
            "rtcp_cumulative_lost": ms.rtcp_cumulative_lost, "rtcp_jitter_ms": ms.rtcp_jitter_ms,
            "cname": ms.cname, "xr_mos_lq": ms.xr_mos_lq, "xr_r_factor": ms.xr_r_factor,
            "r_factor": r, "mos": mos_from_r(r), "heuristic": ms.heuristic,
            "start_ts": s.first_ts_ns, "end_ts": s.last_ts_ns, "final": final,
            "end_reason": ms.end_reason if final else None,
        }
        assert tuple(rec) == NAMES   # one definition: media/fields.py
        annotate(rec, src, dst)      # who holds the addresses, and the capture point (absent outside a cluster)
        return rec

    # ------------------------------------------------------------ metrics

    @property
    def rtp_packets(self) -> int:
        """RTP packets accounted to a stream (every one is: the ended streams' plus the open ones')."""
        return self._ended_packets + sum(m.stats.packets for m in self.streams.values())

    def counters(self) -> dict[str, object]:
        """Plain numbers for metrics: histograms are cumulative bucket counts (Prometheus ``le``)."""
        out: dict[str, object] = dict(self.c)
        out["rtp_packets"] = self.rtp_packets
        out["slow_path_datagrams"] = self.slow_packets
        out["streams_active"] = len(self.streams)
        out["endpoints"] = len(self.discovery.expected)
        exp = self.c["expected_total"]
        out["loss_ratio"] = self.c["lost_total"] / exp if exp else 0.0
        bad = self.bad.copy()
        bad.update(self.lane.refused())   # refused on the lane, as the datagram path counts them
        for reason, n in bad.items():
            out[f"bad_{reason}"] = n
        for k, n in self.discovery.counters.items():
            out[f"discovery_{k}"] = n
        out["jitter_ms_hist"] = _cumulative(JITTER_BUCKETS_MS, self.jitter_hist)
        out["mos_hist"] = _cumulative(MOS_BUCKETS, self.mos_hist)
        # a one-key dict, not a number: fanout workers' counters are summed (engine/live.merge_counts), and
        # dicts merge into the set of the workers' minima, whose least is the task's (kube/status.worst_mos)
        out["mos_worst"] = {f"{self.mos_worst:.2f}": 1} if self.mos_worst is not None else {}
        return out


def _lane_key(flow: tuple[str, int, str, int]) -> bytes | None:
    """The lane's key of a flow (``rtp_cy.flow_key``); None for text that is no IP address (such a flow,
    e.g. fed by hand, stays on the datagram path)."""
    try:
        return flow_key(*flow)
    except (OSError, ValueError):
        return None


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    run = 0
    for b, n in zip(bounds + (float("inf"),), counts):
        run += n
        out["+Inf" if b == float("inf") else repr(b)] = run
    return out
