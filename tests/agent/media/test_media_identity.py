"""Media records carry the identity of their addresses and the capture point, as SIP records do
(issue 18), each key only when known, and validate against schemas/media-record.v1.json."""
from __future__ import annotations

import contextlib
import io
import json
import pathlib

import jsonschema

from otus_agent import identity
from otus_agent.cli.main import main
from otus_agent.sim.callgen import WorkloadSpec, generate

ROOT = pathlib.Path(__file__).resolve().parents[3]
POD = {"namespace": "voice", "pod": "uac-7d9f-x2", "workload": {"kind": "Deployment", "name": "uac"}, "node": "n1"}


def test_media_records_name_the_pods(tmp_path):
    pcap, out = tmp_path / "rtp.pcap", tmp_path / "records.jsonl"
    with open(pcap, "wb") as f:
        generate(f, WorkloadSpec(calls=3, seed=5, rtp_packets=30, tcp_ratio=0, large_invite_ratio=0, vlan_ratio=0,
                                 ipv6_ratio=0, ipv4_pair=("10.9.0.1", "10.9.0.2")))
    identity.ADDRESSES["10.9.0.1"] = POD
    identity.set_capture({"agent": "a1", "node": "n1"})
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            assert main(["run", "--pcap", str(pcap), "--parsers", "sip,rtp", "--output", str(out)]) == 0
    finally:
        identity.clear()
        identity.set_capture(None)
    media = [json.loads(x) for x in out.read_text().splitlines() if '"type":"media"' in x]
    assert media
    schema = json.loads((ROOT / "schemas" / "media-record.v1.json").read_text())
    for r in media:
        jsonschema.validate(r, schema)
        assert r["capture"] == {"agent": "a1", "node": "n1"}
        known = {k: r.get(k) for k in ("src_k8s", "dst_k8s") if k in r}
        side = "src_k8s" if r["src_ip"] == "10.9.0.1" else "dst_k8s"
        assert known == {side: POD}            # the other address is no pod's: no key
    # outside a cluster: none of the keys
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["run", "--pcap", str(pcap), "--parsers", "sip,rtp", "--output", str(out)]) == 0
    plain = [json.loads(x) for x in out.read_text().splitlines() if '"type":"media"' in x]
    assert plain and not any(k in r for r in plain for k in ("capture", "src_k8s", "dst_k8s"))
