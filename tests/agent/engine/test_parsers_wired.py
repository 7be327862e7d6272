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
    # rtp listens to SIP: the SIP parser ran on the general path, records are dicts the media stage saw;
    # the one lane is the media stage's beside it (RTP of announced flows only)
    assert engine.datagrams.lane is not None and engine.datagrams.lane.__name__ == "run_lane"
    assert engine.datagrams.lane.__self__ is engine.parsers["rtp"].summary.__self__


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
    top = summary["dns"]["top"]          # per-domain traffic, from every decoded packet (the batch hook)
    for name, (sent, recv) in want.items():
        if sent or recv:
            assert (top[name]["sent"], top[name]["received"]) == (sent, recv), name


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


def test_parser_counters_reach_prometheus(rtp_pcap, tmp_path):
    """A task summary with rtp, flow and dns (as a task process sends it) rendered by the daemon's collector."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from otus_agent.observability.metrics import TaskCollector
    from otus_spec import TaskSpec
    path, wl = rtp_pcap
    _, s1, _ = _run(path, ("sip", "rtp", "flow", "dns"))
    _, s2, _ = _run(path, ("sip", "flow"))
    reg = CollectorRegistry()
    snap = [(TaskSpec(id="m", interfaces=["lo"]), "running", s1), (TaskSpec(id="f", interfaces=["lo"]), "running", s2)]
    reg.register(TaskCollector(lambda: snap))
    text = generate_latest(reg).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}    # a parse error would raise here
    assert text.count("# TYPE otus_table_evictions_total counter") == 1         # one family, samples of all sources

    def value(name: str, **labels: str) -> float:
        return next(s.value for f in fams.values() for s in f.samples if s.name == name and s.labels == labels)
    assert value("otus_media_rtp_packets_total", task="m") == s1["rtp"]["rtp_packets"] > 0
    assert value("otus_media_streams_total", task="m") == len(wl.streams)
    assert value("otus_media_loss_ratio", task="m") == pytest.approx(s1["rtp"]["loss_ratio"]) and s1["rtp"]["loss_ratio"] > 0
    assert value("otus_media_mos_count", task="m") == len(wl.streams)          # every stream has a final MOS
    assert value("otus_flows_created_total", task="m") == s1["flow"]["created"] == value("otus_flows_created_total",
                                                                                          task="f")
    assert value("otus_dns_messages_total", task="m", kind="query") == 0      # no DNS in this capture
    assert value("otus_table_evictions_total", task="m", table="media_streams") == 0
    assert value("otus_table_evictions_total", task="f", table="flows") == 0
    assert not [s for f in fams.values() for s in f.samples if s.name.startswith("otus_media") and s.labels.get(
        "task") == "f"]


def test_detect_alerts_on_a_sip_scanner_from_sip_records(tmp_path):
    """detect beside sip reads its records (the lane is off: it produces bytes only)."""
    tr = flowgen.Trace()
    for i in range(80):
        side = flowgen.SipSide(tr, "203.0.113.66", cport=5070)
        side.req(flowgen.SEC + i * 200_000_000, "OPTIONS", f"scan{i}@x", 1, "100", "100", ua="friendly-scanner",
                 dst=f"10.60.0.{i + 1}")
    path = tmp_path / "sipscan.pcap"
    tr.write(str(path))
    recs, summary, engine = _run(path, ("sip", "detect"))
    assert sorted(r["detector"] for r in recs if r["type"] == "alert") == ["options_sweep", "sip_scanner"]
    assert sum(1 for r in recs if r["type"] == "sip") == 80 and engine.datagrams.lane is None
    assert "sip" in summary["detect"] and "network" not in summary["detect"]
