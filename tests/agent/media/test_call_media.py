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
