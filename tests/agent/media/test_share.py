"""Fanout sharing in media discovery: announcements taken on one worker and applied on another rebuild
the same expected-address table; RTP seen before its announcement is held (bounded) and adopted."""
from __future__ import annotations

import json
import struct

from otus_agent.media import discovery as D
from otus_agent.media.discovery import MediaDiscovery, Unannounced, rtcp_is_here
from otus_agent.sim.rtpgen import rtcp_bye, rtcp_sr

from .test_discovery import rec, sdp


def _wire(items: list) -> list:
    """What the relay does to items: JSON and back."""
    return json.loads(json.dumps(items))


def _call(d: MediaDiscovery, cid: str = "c1", a_port: int = 4000, b_port: int = 6000, **b_attrs) -> None:
    d.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", a_port), cid=cid, ts=100))
    d.on_sip_record(rec(None, 200, sdp("10.0.0.2", b_port, **b_attrs), src="10.0.0.2", dst="10.0.0.1", ttag="b",
                        cid=cid, ts=200))


def _rtp(seq: int, ssrc: int = 0x1234, pt: int = 0, size: int = 172, cc: int = 0) -> bytes:
    head = struct.pack("!BBHII", 0x80 | cc, pt, seq, seq * 160, ssrc) + b"\x11\x22\x33\x44" * cc
    return head + b"\xab" * (size - len(head))


def test_applied_announcements_rebuild_the_same_table():
    a, b = MediaDiscovery(), MediaDiscovery()
    for d in (a, b):
        d.share()
    _call(a, rtcp_mux=True)
    a.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", 4000, direction="sendonly"), ttag="b", ts=300))  # hold
    items = a.take()
    assert [it[0] for it in items] == ["a", "a", "a"] and a.take() == []
    b.apply(_wire(items))
    assert b.expected == a.expected and b.expected          # same keys, same Endpoint values (side, held, mux)
    assert b.expected[("10.0.0.1", 4000)].held and b.expected[("10.0.0.2", 6000)].mux
    assert b.expected[("10.0.0.2", 6000)].rtpmap == {0: "PCMU/8000", 101: "telephone-event/8000"}
    assert b.take() == []                                    # applied, never taken again (no echo)
    assert b.counters["endpoints_applied"] == a.counters["endpoints_announced"] == 5   # caller's side twice
    c = MediaDiscovery()          # a worker starting again: b's dump holds what b applied, too
    c.apply(_wire(b.dump()))
    assert c.expected == a.expected and b.counters["share_dumped"] == 2
    assert b.counters["endpoints_announced"] == 0
    # the caller's identity travels: later SIP of the call on b tells the sides apart as a would
    b.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", 4200), ttag="b", ts=400))
    assert b.expected[("10.0.0.1", 4200)].side == "caller" and ("10.0.0.1", 4000) not in b.expected


def test_withdrawal_and_call_end_propagate():
    a, b = MediaDiscovery(), MediaDiscovery()
    a.share()
    _call(a)
    b.apply(_wire(a.take()))
    a.on_sip_record(rec("INVITE", sdp=sdp("0.0.0.0", 4000), ttag="b", ts=300))    # RFC 2543 hold: withdrawn
    a.on_sip_record(rec("BYE", ttag="b", ts=900))
    a.on_sip_record({"type": "call", "call_id": "c2", "end_ts": 950})
    items = _wire(a.take())
    assert items[0][:2] == ["a", "c1"] and items[0][4] == []
    ends, rtcp, _ = b.apply(items)
    assert ("10.0.0.1", 4000) not in b.expected and ("10.0.0.2", 6000) in b.expected
    assert ends == [("c1", 900), ("c2", 950)] and rtcp == []
    b.end_call("c1")          # what the stage does after the linger
    assert b.expected == {} and "c1" not in b.calls


def test_not_sharing_takes_nothing_and_holds_nothing():
    d = MediaDiscovery()
    _call(d)
    assert d.outbox is None and d.waiting is None and d.take() == [] and d.fresh == {}


def test_malformed_items_are_counted_and_skipped():
    a, b = MediaDiscovery(), MediaDiscovery()
    a.share()
    _call(a)
    good = _wire(a.take())
    b.apply([["a", "c9"], ["a", "c9", "nobody", 0, [], None, None], ["a", "c9", "caller", 0, [["x", "y", 0, "", {}]],
             None, None], 7] + good)
    assert b.counters["share_bad_items"] == 4 and b.expected == a.expected


def test_outbox_is_bounded(monkeypatch):
    monkeypatch.setattr(D, "MAX_OUTBOX", 3)
    d = MediaDiscovery()
    d.share()
    for n in range(4):
        d.on_sip_record(rec("BYE", cid=f"c{n}", ts=n))
    assert [it[1] for it in d.take()] == ["c1", "c2", "c3"] and d.counters["share_outbox_dropped"] == 1


def test_held_rtp_is_adopted_from_the_announcements_time_on():
    a, b = MediaDiscovery(), MediaDiscovery()
    a.share()
    b.share()
    # caller -> callee: its destination announced in the 200 (ts 200), its source in the INVITE (ts 100);
    # one worker counts it from the INVITE on (matched by source), so two must too, although both sides'
    # announcements arrive together (early media, or the SIP's worker lagging)
    flow = ("10.0.0.1", 4000, "10.0.0.2", 6000)
    for seq, ts in ((1, 90), (2, 150), (3, 210)):
        b.waiting.hold(ts, flow, _rtp(seq))
    b.waiting.hold(220, ("10.9.9.9", 7000, "10.9.9.8", 7002), _rtp(1, ssrc=9))   # nobody announces it
    _call(a)
    b.apply(_wire(a.take()))
    held = b.adopt()
    assert [(ts, f) for ts, f, _ in held] == [(150, flow), (210, flow)]
    assert [struct.unpack("!H", p[2:4])[0] for _, _, p in held] == [2, 3]
    assert all(len(p) == 172 and p[12:] == bytes(160) for _, _, p in held)   # header kept, payload zeros
    assert b.counters["unannounced_before_sdp"] == 1 and b.counters["unannounced_adopted"] == 2
    assert list(b.waiting.flows) == [("10.9.9.9", 7000, "10.9.9.8", 7002)] and b.adopt() == []


def test_flows_announced_by_their_source_address_are_adopted_too():
    a, b = MediaDiscovery(), MediaDiscovery()
    a.share()
    b.share()
    flow = ("10.0.0.2", 6000, "10.0.0.7", 9000)   # from the callee's announced address to somewhere else
    b.waiting.hold(250, flow, _rtp(5))
    _call(a)
    b.apply(_wire(a.take()))
    assert [f for _, f, _ in b.adopt()] == [flow]


def test_only_headers_are_held_rtcp_whole():
    u = Unannounced()
    flow = ("10.0.0.1", 4000, "10.0.0.2", 6000)
    u.hold(1, flow, _rtp(1, cc=2))
    rtcp = struct.pack("!BBH", 0x80, 203, 1) + b"\0\0\0\1"
    u.hold(2, ("10.0.0.1", 4001, "10.0.0.2", 6001), rtcp)
    u.hold(3, flow, b"not rtp at all")                      # not version 2: not held
    assert [len(h) for _, h, _ in u.flows[flow]] == [20]   # 12 + 2 CSRCs
    assert u.flows[("10.0.0.1", 4001, "10.0.0.2", 6001)][0][1] == rtcp
    assert u.counters["unannounced_held"] == 2


def test_unannounced_table_bounds():
    u = Unannounced(max_flows=2, max_packets=3, max_age_ns=1000)
    f1, f2, f3, f4 = (("10.0.0.1", p, "10.0.0.2", 6000) for p in (4000, 4002, 4004, 4006))
    for seq in range(5):                    # per flow: the last max_packets stay
        u.hold(10 + seq, f1, _rtp(seq))
    assert [struct.unpack("!H", h[2:4])[0] for _, h, _ in u.flows[f1]] == [2, 3, 4]
    assert u.counters["unannounced_overflow"] == 2
    u.hold(20, f2, _rtp(0))
    u.hold(21, f3, _rtp(0))                 # full: the oldest flow (f1) goes
    assert list(u.flows) == [f2, f3] and u.counters["unannounced_evicted"] == 3
    u.hold(5000, f4, _rtp(0))               # f2 and f3 silent for longer than max_age: expired
    assert list(u.flows) == [f4] and u.counters["unannounced_expired"] == 2
    u.drop_all()
    assert not u.flows and u.counters["unannounced_expired"] == 3


def test_rtcp_travels_whole_and_is_kept_where_its_streams_are():
    a, b = MediaDiscovery(), MediaDiscovery()
    a.share()
    sr = rtcp_sr(0xA1, 1_700_000_000 * 10**9, 0, 10, 1600, (0xB2, 5, 1, 0, 40, 0), "a@x")
    flow = ("10.0.0.1", 4001, "10.0.0.2", 6001)
    a.rtcp_out(123, flow, sr)
    b.on_sip_record(rec("BYE", ts=5))              # not sharing: nothing to take
    ends, rtcp, _ = b.apply(_wire(a.take()))
    assert ends == [] and rtcp == [(123, flow, sr)] and a.counters["share_rtcp_forwarded"] == 1
    # kept by a worker with the sender's stream, or the stream a report block is about; else forwarded
    assert rtcp_is_here(sr, {0xA1}) and rtcp_is_here(sr, {0xB2}) and not rtcp_is_here(sr, {0xC3})
    assert rtcp_is_here(rtcp_bye(0xC3), {0xC3}) and not rtcp_is_here(rtcp_bye(0xC3), {0xA1})
    assert rtcp_is_here(b"\x80\xc9\x00", set())                  # refused: kept, the stage counts it
    b.apply([["r", 1, "10.0.0.1", 4001, "10.0.0.2", 6001, "not base64!"]])
    assert b.counters["share_bad_items"] == 1


def test_stream_news_travel_and_bad_parts_are_refused():
    """A stream of a call whose SIP another worker has: its opening and its summary part, as items."""
    a, b = MediaDiscovery(), MediaDiscovery()
    a.share()
    b.share()
    _call(b)                                 # b saw the call's SIP, a only applies it
    a.apply(_wire(b.take()))
    assert b.is_here("c1") and not a.is_here("c1") and not b.is_here("c2")
    key = ("10.0.0.1", 4000, "10.0.0.2", 6000, 0x1234)
    good = [None, 3, 1, 4.1, 80.5, 2.0, None, 0x1234, 10, 90]
    a.stream_out("c1", key)
    a.stream_out("c1", key, good)
    items = _wire(a.take())
    none = [None] * 7
    bad = [["m", "c1", list(key), p] for p in ([None, 3], [None, 3.0, 1, *none], [None, 3, 1, "4", *none[1:]],
                                               [7, 3, 1, *none], [None, True, 1, *none], good[:7],
                                               [None, 3, 1, *none[:4], "7", 10, 90], [None, 3, 1, *none[:5], 1.5, 90])]
    bad += [["s", "c1", ["10.0.0.1", 4000]], ["x"], ["x", 7]]   # a stream key short; a reuse without its Call-ID
    ends, rtcp, news = b.apply(bad + items)
    assert news == [("c1", key, None), ("c1", key, good)] and ends == [] and rtcp == []
    assert b.counters["share_bad_items"] == len(bad)
    b.recorded("c1")                         # its record is made: later streams are not waited for
    assert not b.is_here("c1") and "c1" in b.calls


def test_the_calls_waiting_for_other_workers_streams_are_bounded(monkeypatch):
    from otus_agent.media import stage as S
    monkeypatch.setattr(S, "MAX_CALLS", 2)
    st = S.MediaStage()
    st.discovery.share()
    for n in range(3):
        _call(st.discovery, cid=f"c{n}", a_port=4000 + 10 * n, b_port=6000 + 10 * n)
    key = ("10.0.0.1", 4000, "10.0.0.2", 6000, 1)
    st.apply_streams([(f"c{n}", key, None) for n in range(3)] + [("elsewhere", key, None)])
    assert list(st.remote) == ["c1", "c2"] and st.c["call_media_remote_evicted"] == 1
    assert st.c["call_streams_remote"] == 3
    # a part of a stream nobody waits for is not added; the one waited for is, and ends the wait
    part = ["to_callee", 5, 1, 4.0, 80.0, 1.0, None, 1, 10, 90]
    st.apply_streams([("c0", key, part), ("c1", key, part)])
    assert "c0" not in st.call_media and st.call_media["c1"].section["to_callee"] == {"packets": 5, "lost": 1}
    assert "c1" not in st.remote and st.c["call_streams_reported"] == 1
    rec = {"type": "call", "call_id": "c2", "end_ts": 1_000}
    assert st.hold_call(rec) and not st.flush(1_000)   # c2's stream still open elsewhere: held
    [out] = st.flush(1_000 + st.linger_ns + S.REMOTE_WAIT_NS)
    assert out is rec and rec["media"]["streams"] == 0 and st.c["call_media_wait_expired"] == 1
    assert not st.remote and not st.held
