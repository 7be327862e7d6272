"""End to end: the installed ``otus`` console script with ``--parsers sip,rtp,flow`` on a generated capture.

The capture (sim/rtpgen.py: SIP calls with impaired RTP/RTCP) is read by the real command; its media
records are compared with ``tshark -z rtp,streams`` and its flow records with tshark's
per-conversation counts on the same file.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from otus_agent.sim.rtpgen import RtpGenSpec, generate
from tests.agent.flows.tshark import _ep, _oriented, tshark_conversations
from tests.agent.media.helpers import final_by_key, tshark_streams

OTUS = shutil.which("otus", path=str(pathlib.Path(sys.executable).parent))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if OTUS is None:
        pytest.skip("the otus console script is not installed (scripts/bootstrap installs it)")
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed (scripts/bootstrap installs it)")
    d = tmp_path_factory.mktemp("e2e")
    path = d / "calls.pcap"
    with open(path, "wb") as f:
        wl = generate(f, RtpGenSpec(calls=3, packets=400, seed=7))
    res = subprocess.run([OTUS, "run", "--pcap", str(path), "--parsers", "sip,rtp,flow"], capture_output=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    summary = json.loads(res.stderr.decode().strip().splitlines()[-1])
    return path, wl, recs, summary


def test_media_records_match_tsharks_rtp_streams(run):
    path, wl, recs, summary = run
    media = [r for r in recs if r["type"] == "media"]
    ours = final_by_key(media)
    theirs = {(t["src_ip"], t["src_port"], t["dst_ip"], t["dst_port"], t["ssrc"]): t for t in tshark_streams(path)}
    assert len(ours) == len(theirs) == len(wl.streams)          # one final record per stream tshark sees
    for k, t in theirs.items():
        assert ours[k]["packets"] == t["packets"] and ours[k]["lost"] == t["lost"], k
    assert {r["call_id"] for r in ours.values()} == set(wl.call_ids)
    assert summary["rtp"]["streams_active"] == 0 and summary["rtp"]["rtp_packets"] > 0
    assert sum(1 for r in recs if r["type"] == "sip") == summary["sip"]["sip_messages"]


def test_flow_records_match_tsharks_conversation_counts(run):
    path, wl, recs, summary = run
    ends = [r for r in recs if r["type"] == "flow" and r["event"] == "end"]
    s = wl.streams[0]    # one RTP conversation: both directions of the first call's media
    a, b = _ep(s.src_ip, s.src_port), _ep(s.dst_ip, s.dst_port)
    ours = [_oriented(_ep(r["src_ip"], r["src_port"]), _ep(r["dst_ip"], r["dst_port"]), r["src_packets"],
                      r["src_bytes"], r["dst_packets"], r["dst_bytes"]) for r in ends if r["proto"] == "udp"]
    theirs = [c for c in tshark_conversations(str(path), "udp") if {c[0], c[1]} == {a, b}]
    assert len(theirs) == 1 and theirs[0] in ours
    assert summary["flow"]["packets"] == summary["packets"]
