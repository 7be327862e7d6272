"""The rtp, flow, dns and detect parsers run by the engine (registry entries in engine/parsers.py).

Each is checked against the same stage wired by hand on the same generated capture: the engine
must hand over exactly what the stage would produce alone (records and counters), and SIP must
stay what it is without the new parsers.
"""
from __future__ import annotations

import json

import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.engine.parsers import PARSERS, capture_clauses
from otus_agent.engine.pipeline import EngineConfig, build_engine
from otus_agent.flows import FlowStage
from otus_agent.sim import flowgen
from otus_agent.sim.rtpgen import RtpGenSpec, generate
from tests.agent.media.helpers import run_pcap


def _run(path, parsers: tuple[str, ...], settings: dict | None = None) -> tuple[list[dict], dict, object]:
    out = bytearray()
    engine = build_engine(EngineConfig(parsers=parsers, settings=settings or {}), out.extend)
    with open_capture(str(path)) as r:
        engine.run(r.batches())
    engine.finish()
    return [json.loads(x) for x in bytes(out).splitlines()], engine.summary(), engine


@pytest.fixture(scope="module")
def rtp_pcap(tmp_path_factory):
    path = tmp_path_factory.mktemp("rtp") / "calls.pcap"
    with open(path, "wb") as f:
        wl = generate(f, RtpGenSpec(calls=3, packets=300))
    return path, wl


def test_rtp_in_the_engine_matches_the_stages_wired_by_hand(rtp_pcap):
    path, wl = rtp_pcap
    recs, summary, engine = _run(path, ("sip", "rtp"))
    media = [r for r in recs if r["type"] == "media"]
    want, stage, _ = run_pcap(path)
    assert media == json.loads(json.dumps(want))      # same records, same order, same flush times
    assert sum(1 for r in media if r["final"]) == len(wl.streams)
    assert {r["call_id"] for r in media} == set(wl.call_ids)
    assert summary["rtp"]["rtp_packets"] == stage.counters()["rtp_packets"] > 0
    # rtp listens to SIP: the SIP parser ran on the general path, records are dicts the media stage saw
    assert engine.datagrams.lane is None


def test_sip_records_unchanged_by_the_media_parser(rtp_pcap):
    path, _ = rtp_pcap
    alone, _, _ = _run(path, ("sip",))
    with_rtp, _, _ = _run(path, ("sip", "rtp"))
    assert [r for r in with_rtp if r["type"] != "media"] == alone


@pytest.fixture(scope="module")
def mixed_pcap(tmp_path_factory):
    path = tmp_path_factory.mktemp("flows") / "mixed.pcap"
    flowgen.mixed_trace(seed=2, tcp_conns=10, udp_flows=10).write(str(path))
    return path


def test_flow_in_the_engine_matches_the_flow_stage(mixed_pcap):
    recs, summary, _ = _run(mixed_pcap, ("flow",))
    want: list[dict] = []
    st = FlowStage(sink=want.append)
    with open_capture(str(mixed_pcap)) as r:
        st.run(r.batches())
    st.flush()
    assert recs == json.loads(json.dumps(want)) and want
    assert summary["flow"]["created"] == st.created and summary["flow"]["packets"] == st.packets


def test_flow_beside_sip_keeps_the_lane_and_sees_every_packet(rtp_pcap):
    path, _ = rtp_pcap
    alone, _, _ = _run(path, ("sip",))
    recs, summary, engine = _run(path, ("sip", "flow"))
    assert [r for r in recs if r["type"] == "sip"] == [r for r in alone if r["type"] == "sip"]
    assert summary["flow"]["packets"] == summary["packets"]
    assert (engine.datagrams.lane is not None) == (_run(path, ("sip",))[2].datagrams.lane is not None)


def test_dns_parser_reports_queries_and_domain_traffic(tmp_path):
    world = flowgen.DnsWorld()
    tr, want = world.trace()
    path = tmp_path / "dns.pcap"
    tr.write(str(path))
    recs, summary, engine = _run(path, ("dns",))
    dns = [r for r in recs if r["type"] == "dns"]
    assert summary["dns"]["queries"] == len(world.names) == summary["dns"]["matched"]
    assert {r.get("qname") or r.get("query") or r.get("name") for r in dns} >= set(world.names)
    stage = engine.parsers["dns"]
    assert stage.summary is not None
    top = engine_domain_traffic(engine)
    for name, (sent, recv) in want.items():
        if sent or recv:
            assert top[name][:2] == (sent, recv)


def engine_domain_traffic(engine) -> dict:
    """The DNS stage's per-domain traffic, through the closure the registry built (its summary)."""
    summary = engine.parsers["dns"].summary
    stage = summary.__self__            # a bound method of the DnsStage
    return {d: tuple(v) for d, v in stage.traffic.top().items()}


def test_detect_alerts_on_a_port_scan_from_flow_events(tmp_path):
    tr = flowgen.Trace()
    flowgen.port_scan(tr, flowgen.SEC, "10.9.0.1", "10.9.0.2", range(1, 400))
    path = tmp_path / "scan.pcap"
    tr.write(str(path))
    recs, summary, _ = _run(path, ("flow", "detect"))
    alerts = [r for r in recs if r["type"] == "alert"]
    assert alerts and all(a["detector"] == "port_scan" for a in alerts)
    assert "network" in summary["detect"] and "sip" not in summary["detect"]
    quiet, _, _ = _run(path, ("flow",))
    assert not [r for r in quiet if r["type"] == "alert"]


@pytest.mark.parametrize("parsers, message", [
    (("rtp",), "rtp reads the records of sip"),
    (("detect",), "detect reads the records of sip or flow"),
    (("sip", "nosuch"), "unknown parser nosuch"),
])
def test_bad_parser_lists_are_refused_clearly(parsers, message):
    with pytest.raises(ValueError, match=message):
        build_engine(EngineConfig(parsers=parsers), lambda b: None)


def test_capture_clauses_per_parser():
    assert capture_clauses(("sip",), {}) == ()
    assert capture_clauses(("sip", "flow", "rtp"), {}) is None
    rtp = capture_clauses(("sip", "rtp"), {})
    assert rtp is not None and "udp[8] & 0xc0 = 0x80" in rtp[0]
    assert capture_clauses(("sip", "dns"), {}) == ("(udp or tcp) and (port 53 or port 5353)",)
    assert set(PARSERS) >= {"sip", "rtp", "flow", "dns", "detect"}
