"""Call summary records gain a media section (issue 16) when the rtp parser runs: the call's streams,
its worst quality and the packets and loss per direction, from the same run's media records."""
from __future__ import annotations

import contextlib
import io
import json
import pathlib

import jsonschema

from otus_agent.cli.main import main
from otus_agent.sim.callgen import WorkloadSpec, generate

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _run(tmp: pathlib.Path, pcap: pathlib.Path, *extra: str) -> list[dict]:
    out = tmp / "records.jsonl"
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["run", "--pcap", str(pcap), "--calls", "--output", str(out), *extra]) == 0
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_call_records_carry_their_streams(tmp_path):
    pcap = tmp_path / "calls.pcap"
    with open(pcap, "wb") as f:
        generate(f, WorkloadSpec(calls=12, seed=9, rtp_packets=60, tcp_ratio=0.2, large_invite_ratio=0.2))
    recs = _run(tmp_path, pcap, "--parsers", "sip,rtp")
    calls = [r for r in recs if r["type"] == "call"]
    media = [r for r in recs if r["type"] == "media" and r["final"]]
    assert len(calls) == 12 and media
    schema = json.loads((ROOT / "schemas" / "sip-record.v1.json").read_text())
    for c in calls:
        jsonschema.validate(c, schema)
        mine = [m for m in media if m["call_id"] == c["call_id"]]
        s = c["media"]
        assert s["streams"] == len(mine) > 0
        assert s["worst_mos"] == min(m["mos"] for m in mine)
        for d in ("to_caller", "to_callee"):
            assert s[d]["packets"] == sum(m["packets"] for m in mine if m["direction"] == d)
            assert s[d]["lost"] == sum(max(0, m["lost"]) for m in mine if m["direction"] == d)
        # the call's record comes once its streams have ended: after their final records
        assert recs.index(c) > max(recs.index(m) for m in mine)
    # without the rtp parser the call records are as before: no media key
    assert not any("media" in r for r in _run(tmp_path, pcap) if r["type"] == "call")


def test_a_call_without_media_has_an_empty_section(tmp_path):
    pcap = tmp_path / "norpt.pcap"
    with open(pcap, "wb") as f:
        generate(f, WorkloadSpec(calls=3, seed=2, rtp_packets=0))
    calls = [r for r in _run(tmp_path, pcap, "--parsers", "sip,rtp") if r["type"] == "call"]
    assert len(calls) == 3 and all(c["media"]["streams"] == 0 and c["media"]["worst_mos"] is None for c in calls)


def _final(direction: str, ssrc: int, start: int, end: int, packets: int, lost: int, mos: float = 4.3) -> dict:
    return {"type": "media", "final": True, "direction": direction, "ssrc": ssrc, "start_ts": start, "end_ts": end,
            "packets": packets, "lost": lost, "mos": mos, "r_factor": 90.0, "max_jitter_ms": 1.0, "rtt_ms": None}


def test_a_relays_two_legs_are_one_path_and_a_moved_stream_two():
    """Per direction, streams with one SSRC whose times overlap are one media path (a relay's legs): the
    leg with the most loss stands for it.  The same SSRC later on a new port (a re-INVITE) is a path of its
    own; so is another SSRC.  Every order of the streams ending gives the same section."""
    import itertools

    from otus_agent.media.summary import call_media_summary
    recs = [
        _final("to_callee", 7, 1000, 5000, 240, 10),            # A -> relay
        _final("to_callee", 7, 1001, 5001, 235, 15, mos=4.0),   # relay -> B: the first leg's loss and its own
        _final("to_callee", 7, 6000, 9000, 150, 0),             # the same SSRC after a re-INVITE moved it
        _final("to_caller", 8, 1000, 5000, 250, 0),
        _final("to_caller", 9, 1000, 5000, 250, -2),            # another SSRC (duplicates: negative loss)
    ]
    want = {"streams": 5, "worst_mos": 4.0, "worst_r_factor": 90.0, "max_jitter_ms": 1.0, "max_rtt_ms": None,
            "to_callee": {"packets": 235 + 150, "lost": 15}, "to_caller": {"packets": 500, "lost": 0}}
    for order in itertools.permutations(recs):
        assert call_media_summary(order) == want
    # a leg bridging two paths joins them: one path, its lossiest leg standing
    bridged = recs[:3] + [_final("to_callee", 7, 4000, 7000, 300, 20)]
    for order in itertools.permutations(bridged):
        assert call_media_summary(order)["to_callee"] == {"packets": 300, "lost": 20}
