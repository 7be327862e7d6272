"""MediaStage lifecycle: records at BYE, RTCP BYE, idle timeout, interim; bounded table; schema; summary."""
from __future__ import annotations

import json
import struct

import jsonschema
import pytest
from pydantic import ValidationError

from otus_agent.media.fields import NAMES
from otus_agent.media.stage import MediaConfig, MediaStage
from otus_agent.media.summary import call_media_summary
from otus_agent.reassembly.datagrams import Datagram
from otus_agent.sim.rtpgen import rtcp_bye

from ...conftest import ROOT
from .test_discovery import rec, sdp

SCHEMA = json.loads((ROOT / "schemas" / "media-record.v1.json").read_text())
S = 1_000_000_000
A, B = ("10.0.0.1", 4000), ("10.0.0.2", 6000)


def rtp(seq: int, ts: int, ssrc: int = 7, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + bytes(160)


def call(stage: MediaStage, cid: str = "c1", a=A, b=B) -> None:
    stage.on_sip_record(rec("INVITE", sdp=sdp(a[0], a[1]), src=a[0], dst=b[0], cid=cid))
    stage.on_sip_record(rec(None, 200, sdp(b[0], b[1]), src=b[0], dst=a[0], cid=cid, ttag="b"))


def stream(stage: MediaStage, n: int, t0: int = 0, src=A, dst=B, ssrc: int = 7, skip=()) -> None:
    for i in range(n):
        if i not in skip:
            stage.feed_packet(t0 + i * 20_000_000, src[0], src[1], dst[0], dst[1], rtp(i, i * 160, ssrc))


def test_bye_ends_streams_after_linger_with_schema_valid_records():
    st = MediaStage(MediaConfig(bye_linger_s=2))
    call(st)
    stream(st, 50, skip={10, 11})
    stream(st, 50, src=B, dst=A, ssrc=8)
    st.on_sip_record(rec("BYE", cid="c1", ts=2 * S, ttag="b"))
    assert st.flush(3 * S) == []                        # still lingering
    out = st.flush(4 * S)
    assert len(out) == 2 and {r["end_reason"] for r in out} == {"bye"}
    by = {r["ssrc"]: r for r in out}
    assert by[7]["lost"] == 2 and by[7]["packets"] == 48 and by[7]["direction"] == "to_callee"
    assert by[8]["lost"] == 0 and by[8]["direction"] == "to_caller" and by[8]["codec"] == "PCMU"
    for r in out:
        jsonschema.validate(r, SCHEMA)
        assert tuple(r) == NAMES
        assert r["call_id"] == "c1" and r["final"]
    assert not st.discovery.expected and st.counters()["streams_active"] == 0
    st.feed_packet(5 * S, A[0], A[1], B[0], B[1], rtp(60, 9600))   # after the call: not media any more
    assert st.counters()["streams_active"] == 0


def test_rtcp_bye_and_idle_timeout_and_interim():
    st = MediaStage(MediaConfig(interim_s=0.5, idle_timeout_s=5))
    call(st)
    stream(st, 50)                                       # ends at 0.98 s
    stream(st, 50, src=B, dst=A, ssrc=8)
    interim = st.flush(S)
    assert len(interim) == 2 and not any(r["final"] for r in interim) and interim[0]["end_reason"] is None
    st.feed_packet(S + 1, B[0], B[1] + 1, A[0], A[1] + 1, rtcp_bye(8))
    out = st.flush(S + 2)
    assert [(r["ssrc"], r["end_reason"]) for r in out] == [(8, "rtcp_bye")]
    # 7 is idle for 4.02 s only: one more interim (totals so far), not its end
    assert [(r["ssrc"], r["final"], r["packets"]) for r in st.flush(5 * S)] == [(7, False, 50)]
    out = st.flush(6 * S)
    assert [(r["ssrc"], r["end_reason"], r["final"]) for r in out] == [(7, "idle", True)]


def test_table_full_evicts_least_recent_and_counts():
    st = MediaStage(MediaConfig(max_streams=2, idle_timeout_s=60))
    call(st)
    stream(st, 5, ssrc=1)
    stream(st, 5, t0=S, ssrc=2)
    stream(st, 5, t0=2 * S, ssrc=3)                      # no room: ssrc 1 (least recent) goes
    c = st.counters()
    assert c["streams_evicted"] == 1 and c["streams_active"] == 2
    out = st.flush(2 * S + 1)
    assert [(r["ssrc"], r["end_reason"], r["packets"]) for r in out] == [(1, "evicted", 5)]
    assert {r["ssrc"] for r in st.finish()} == {2, 3}


def test_unannounced_traffic_ignored_and_hostile_rtp_counted():
    st = MediaStage()
    call(st)
    st.feed_packet(0, "192.0.2.1", 1, "192.0.2.2", 2, rtp(1, 1))      # nobody announced it
    st.feed_packet(0, A[0], A[1], B[0], B[1], b"\x80\x00\x00")         # short header on an RTP port
    st.feed_packet(0, A[0], A[1], B[0], B[1], bytes((0x8F,)) + bytes(15))
    c = st.counters()
    assert c.get("rtp_packets", 0) == 0 and c["bad_short_header"] == 1 and c["bad_csrc_past_end"] == 1
    st.feed(Datagram(0, 4, A[0], B[0], 6, A[1], B[1], rtp(1, 1)))     # TCP: never RTP here
    assert st.counters().get("rtp_packets", 0) == 0
    st.feed(Datagram(0, 4, A[0], B[0], 17, A[1], B[1], rtp(1, 1)))
    assert st.counters()["rtp_packets"] == 1


def test_counters_histograms_and_loss_ratio():
    st = MediaStage()
    call(st)
    stream(st, 100, skip=set(range(10, 20)))
    st.finish()
    c = st.counters()
    assert c["lost_total"] == 10 and c["expected_total"] == 100 and c["loss_ratio"] == pytest.approx(0.1)
    assert c["jitter_ms_hist"]["+Inf"] == 1 and c["mos_hist"]["+Inf"] == 1
    assert list(c["mos_hist"].values()) == sorted(c["mos_hist"].values())   # cumulative


def test_call_summary_worst_mos_and_loss_per_direction():
    st = MediaStage()
    call(st)
    stream(st, 100, skip=set(range(20)))
    stream(st, 100, src=B, dst=A, ssrc=8, skip={3})
    recs = st.finish()
    s = call_media_summary(recs + [dict(recs[0], final=False, mos=1.0)])   # interim records do not count
    assert s["streams"] == 2
    assert s["worst_mos"] == min(r["mos"] for r in recs)
    assert s["to_callee"] == {"packets": 80, "lost": 0}   # the first 20 never seen: no loss to count
    assert s["to_caller"] == {"packets": 99, "lost": 1}


def test_config_is_validated():
    with pytest.raises(ValidationError):
        MediaConfig(max_streams=0)
    with pytest.raises(ValidationError):
        MediaConfig(unknown=1)


def test_fast_path_takes_every_packet_after_the_first_and_high_bit_fields_survive():
    """SSRC and timestamps with bit 31 set (a C int would overflow) stay on the per-flow fast path."""
    st = MediaStage()
    call(st)
    for i in range(200):
        st.feed_packet(i * 20_000_000, A[0], A[1], B[0], B[1], rtp(i, 0xFFFFF000 + i * 160, 0xDEADBEEF))
    (r,) = st.finish()
    assert st.counters()["slow_path_datagrams"] == 1
    assert r["ssrc"] == 0xDEADBEEF and r["packets"] == 200 and r["lost"] == 0 and r["ts_jumps"] == 0
    assert r["mean_jitter_ms"] == 0.0 and r["max_delta_ms"] == pytest.approx(20.0)


def test_new_ssrc_on_a_flow_is_a_new_stream_as_tshark_counts_it():
    st = MediaStage()
    call(st)
    stream(st, 30, ssrc=1)
    stream(st, 30, t0=S, ssrc=2)
    out = sorted(st.finish(), key=lambda r: r["ssrc"])
    assert [(r["ssrc"], r["packets"], r["lost"]) for r in out] == [(1, 30, 0), (2, 30, 0)]


def test_rtcp_mux_on_the_rtp_port_is_rtcp_not_rtp():
    from otus_agent.sim.rtpgen import rtcp_sr
    st = MediaStage()
    st.on_sip_record(rec("INVITE", sdp=sdp(A[0], A[1], rtcp_mux=True), src=A[0], dst=B[0]))
    st.on_sip_record(rec(None, 200, sdp(B[0], B[1], rtcp_mux=True), src=B[0], dst=A[0], ttag="b"))
    stream(st, 20)
    st.feed_packet(S, A[0], A[1], B[0], B[1], rtcp_sr(7, S, 3200, 20, 3200, None, "mux@a"))
    stream(st, 10, t0=S + 1)   # the stream goes on after the SR, on the same 4-tuple
    (r,) = st.finish()
    c = st.counters()
    assert c["rtcp_packets"] == 1 and r["packets"] == 30 and r["cname"] == "mux@a"
    assert not st.discovery.expected.get((A[0], A[1] + 1))


def test_rtcp_xr_voip_metrics_and_rr_join_the_stream_by_ssrc():
    st = MediaStage()
    call(st)
    stream(st, 20, ssrc=0x1234)
    rr = struct.pack("!BBHI", 0x81, 201, 7, 99) + struct.pack("!IIIIII", 0x1234, (64 << 24) | 3, 19, 80, 0, 0)
    vm = struct.pack("!IBBBBHHHHbbBBBBBBBBHHH", 0x1234, 13, 0, 0, 0, 0, 0, 120, 40, -20, -70, 127, 16, 85, 127,
                     41, 127, 0, 0, 60, 80, 100)
    xr_body = struct.pack("!I", 99) + struct.pack("!BBH", 7, 0, 8) + vm
    xr = struct.pack("!BBH", 0x80, 207, len(xr_body) // 4) + xr_body
    st.feed_packet(S, B[0], B[1] + 1, A[0], A[1] + 1, rr + xr)          # from the receiver's RTCP port
    (r,) = st.finish()
    assert (r["xr_mos_lq"], r["xr_r_factor"]) == (4.1, 85)
    assert r["rtcp_fraction_lost"] == 0.25 and r["rtcp_cumulative_lost"] == 3
    assert r["rtcp_jitter_ms"] == pytest.approx(80 / 8)                   # 80 timestamp units at 8 kHz
    assert r["rtt_ms"] is None                                           # no LSR: no round trip


def test_payload_bytes_are_never_kept():
    """No reference to a datagram's payload survives feeding it (RTP, RTCP, heuristic candidates)."""
    import sys

    from otus_agent.sim.rtpgen import rtcp_sr
    st = MediaStage(MediaConfig(heuristic=True))
    call(st)
    pkts = [rtp(i, i * 160) for i in range(10)]
    other = [rtp(i, i * 160, ssrc=99) for i in range(2)]        # unannounced: a heuristic candidate
    sr = rtcp_sr(7, S, 0, 10, 1600, None, "x@y")
    before = [sys.getrefcount(p) for p in pkts + other + [sr]]
    for i in range(len(pkts)):
        st.feed_packet(i, A[0], A[1], B[0], B[1], pkts[i])
    for i in range(len(other)):
        st.feed_packet(i, "192.0.2.1", 7000, "192.0.2.2", 7002, other[i])
    st.feed_packet(S, A[0], A[1] + 1, B[0], B[1] + 1, sr)
    assert [sys.getrefcount(p) for p in pkts + other + [sr]] == before
    assert len(st.discovery.candidates) == 1


def test_rtcp_mux_flow_keeps_rtp_fast_and_rtcp_parsed_and_new_ssrc_takes_the_flow():
    """An rtcp-mux flow is outside the fast table (RTCP must be told apart first): its RTP still goes
    straight to the stream, its RTCP is parsed, and rtp_packets counts every packet once, also after
    the streams end; a new SSRC on a plain flow opens a stream and takes the flow over."""
    st = MediaStage()
    st.on_sip_record(rec("INVITE", sdp=sdp(A[0], A[1], rtcp_mux=True), src=A[0], dst=B[0]))
    st.on_sip_record(rec(None, 200, sdp(B[0], B[1], rtcp_mux=True), src=B[0], dst=A[0], ttag="b"))
    for i in range(100):
        st.feed_packet(i * 20_000_000, A[0], A[1], B[0], B[1], rtp(i, i * 160, 7))
        if i % 25 == 24:   # an RR on the RTP flow itself
            st.feed_packet(i * 20_000_000 + 1, A[0], A[1], B[0], B[1], struct.pack("!BBHI", 0x80, 201, 1, 7))
    stream(st, 30, src=B, dst=A, ssrc=8)
    stream(st, 30, t0=40 * 20_000_000, src=B, dst=A, ssrc=9)   # the B side restarts with another SSRC
    c = st.counters()
    assert c["rtp_packets"] == 160 and c["rtcp_packets"] == 4
    # first packet of A's flow, its 4 RTCP, first packet of SSRC 8 and of SSRC 9: the rest took the fast path
    assert c["slow_path_datagrams"] == 1 + 4 + 1 + 1
    by = {r["ssrc"]: r for r in st.finish()}
    assert {s: by[s]["packets"] for s in by} == {7: 100, 8: 30, 9: 30}
    assert by[7]["lost"] == 0 and by[9]["lost"] == 0
    assert st.counters()["rtp_packets"] == 160 and st.counters()["streams_active"] == 0
