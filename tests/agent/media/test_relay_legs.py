"""A call through a SIP proxy with a media relay beside it (Kamailio + rtpengine, both legs on the
capture point): four streams, and RTCP joined to the right one although each SSRC is on two.

rtpengine forwards a stream with its SSRC unchanged by default, so the caller's SSRC is on A -> relay
and on relay -> B, and the RTCP about it comes on both legs too.  Each RTCP item joins the stream whose
hosts are the RTCP packet's (sender's reports: src -> dst; report blocks: dst -> src).  Before, the
stream opened last took every copy: the first leg's streams had no CNAME, no round trip, no RTCP loss
and were not ended by their RTCP BYE.  The engine is the one ``otus run --pcap`` builds.
"""
from __future__ import annotations

from otus_agent.sim.rtpgen import RtpGenSpec, generate

from .helpers import run_engine as _run


def test_each_leg_of_a_relayed_call_has_its_own_stream_and_rtcp(tmp_path):
    path = tmp_path / "relay.pcap"
    with open(path, "wb") as f:
        wl = generate(f, RtpGenSpec(calls=4, packets=300, seed=21, proxy=True))
    recs, summary = _run(path)
    media = {(r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["ssrc"]): r
             for r in recs if r["type"] == "media" and r["final"]}
    assert len(media) == len(wl.streams) == 4 * 4
    by_ssrc: dict[int, list[dict]] = {}
    for s in wl.streams:
        r = media[(s.src_ip, s.src_port, s.dst_ip, s.dst_port, s.ssrc)]
        assert r["call_id"] == s.call_id
        assert r["packets"] == s.sent + s.duplicated and r["duplicates"] == s.duplicated
        by_ssrc.setdefault(s.ssrc, []).append(r)
    assert sorted(len(v) for v in by_ssrc.values()) == [2] * (2 * 4)   # each SSRC on both legs
    for pair in by_ssrc.values():
        near, far = pair
        # RTCP reached both: the SR's CNAME, the report's loss, the round trip, the RTCP BYE
        for r in pair:
            assert r["cname"] is not None and r["rtcp_cumulative_lost"] is not None, r
            assert r["rtt_ms"] is not None and r["end_reason"] == "rtcp_bye", r
        assert near["cname"] == far["cname"] and near["rtcp_cumulative_lost"] == far["rtcp_cumulative_lost"]
    assert summary["rtp"]["rtcp_packets"] == wl.rtcp_packets
    assert summary["rtp"]["rtcp_ssrc_shared"] > 0
    # the call record counts all four streams
    calls = {r["call_id"]: r for r in recs if r["type"] == "call"}
    assert set(calls) == set(wl.call_ids)
    assert all(c["media"]["streams"] == 4 and c["state"] == "ended" for c in calls.values())
    # and its packets and loss once per direction: the two legs carry the same media (the relay forwards
    # each stream with its SSRC), so summing them would double both
    for cid, c in calls.items():
        for d in ("to_caller", "to_callee"):
            legs = [r for r in media.values() if r["call_id"] == cid and r["direction"] == d]
            assert len(legs) == 2 and legs[0]["ssrc"] == legs[1]["ssrc"]
            assert c["media"][d] == {"packets": legs[0]["packets"], "lost": max(0, legs[0]["lost"])}
            assert legs[0]["packets"] == legs[1]["packets"] and legs[0]["lost"] == legs[1]["lost"]


def test_a_direct_call_has_no_shared_ssrc(tmp_path):
    path = tmp_path / "direct.pcap"
    with open(path, "wb") as f:
        wl = generate(f, RtpGenSpec(calls=3, packets=200, seed=21))
    recs, summary = _run(path)
    finals = [r for r in recs if r["type"] == "media" and r["final"]]
    assert len(finals) == len(wl.streams) == 6
    assert all(r["cname"] is not None and r["end_reason"] == "rtcp_bye" for r in finals)
    assert "rtcp_ssrc_shared" not in summary["rtp"]
