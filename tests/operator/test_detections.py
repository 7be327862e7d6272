"""Issue 19.4 / 18.3 and 16.5: what the detectors and the media stage put on the CaptureTask.

The agent's status entry carries a bounded summary of the alerts in effect (kind, source, count, last time)
and its media totals, made from the counters of the real stages run on generated attacks and calls
(otus_agent.kube.status.entry); the operator, against the emulator (core/v1 Events checked against the
Kubernetes schema), posts one Warning per new kind and source however many agents report it, a Normal
...Resolved when it leaves every agent's list, and rolls the streams and the worst MOS up into the totals."""
from __future__ import annotations

import io
import pathlib
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson
from support import agent_report, create, events, example, get, status, wait_for

from otus_agent.capture.pcapfile import open_capture
from otus_agent.engine.pipeline import EngineConfig, build_engine
from otus_agent.kube.status import ALERTS_MAX, alerts_in_effect, entry
from otus_agent.sim import flowgen
from otus_operator import alerts
from otus_operator.crd import AgentStatus
from otus_operator.status import roll_up
from otus_spec import ALERTS_IN_STATUS, DetectOptions

from .test_crd_render import schema
from .test_events import ROUNDS_S, check_shape

SEC = flowgen.SEC


def run(path: str, parsers: tuple[str, ...]) -> tuple[dict, list[dict]]:
    """The engine a task runs: its summary (the task's stats) and its records."""
    out: list[bytes] = []
    eng = build_engine(EngineConfig(parsers=parsers), out.append)
    with open_capture(path) as r:
        eng.run(r.batches())
    eng.finish()
    return eng.summary(), [orjson.loads(x) for chunk in out for x in chunk.splitlines() if x]


def attack_stats(tmp_path: pathlib.Path, start_ns: int) -> dict:
    """Two port scans from two sources, and a SYN flood, captured from ``start_ns``."""
    tr = flowgen.Trace()
    flowgen.port_scan(tr, start_ns, "203.0.113.5", "10.0.0.9", range(1, 301), step_ns=10_000_000)
    flowgen.port_scan(tr, start_ns, "198.51.100.7", "10.0.0.9", range(1000, 1200), step_ns=10_000_000)
    path = str(tmp_path / "attack.pcap")
    tr.write(path)
    stats, recs = run(path, ("flow", "detect"))
    assert {(a["detector"], a["src_ip"]) for a in recs if a["type"] == "alert"} == {
        ("port_scan", "203.0.113.5"), ("port_scan", "198.51.100.7")}
    return stats


def test_the_entry_lists_the_alerts_in_effect(tmp_path: pathlib.Path) -> None:
    start = time.time_ns() - 10 * SEC
    stats = attack_stats(tmp_path, start)
    got = alerts_in_effect(stats, None)
    assert [(a["kind"], a["source"]) for a in got] == [("port_scan", "203.0.113.5/10.0.0.9"),
                                                      ("port_scan", "198.51.100.7/10.0.0.9")]
    big = got[0]
    # the scan kept firing past the threshold (held back by the cooldown): counted, the last time is its end
    assert big["count"] == 300 - DetectOptions().port_scan.distinct_ports + 1
    last = datetime.strptime(big["lastSeen"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(last.timestamp() - (start + 299 * 10_000_000) / 1e9) < 1
    assert "probed 100 tcp ports of 10.0.0.9" in big["message"]
    # the entry an agent patches, validated by the operator's model (what the CRD says)
    e = AgentStatus.model_validate(entry({"status": "running"}, stats, "n1", "p1"))
    assert [a.kind for a in e.alerts] == ["port_scan", "port_scan"]
    # over once quiet for resolve_after_s (the task's setting, default 300 s)
    later = datetime.now(timezone.utc) + timedelta(seconds=DetectOptions().resolve_after_s)
    assert alerts_in_effect(stats, None, later) == []
    assert len(alerts_in_effect(stats, {"detect": {"resolve_after_s": 10_000}}, later)) == 2
    assert ALERTS_MAX == ALERTS_IN_STATUS == AgentStatus.model_fields["alerts"].metadata[0].max_length


def test_the_entry_carries_streams_and_the_worst_mos(tmp_path: pathlib.Path) -> None:
    from otus_agent.sim.rtpgen import RtpGenSpec, generate
    buf = io.BytesIO()
    wl = generate(buf, RtpGenSpec(calls=3, packets=300, loss=0.08, seed=4))
    path = tmp_path / "rtp.pcap"
    path.write_bytes(buf.getvalue())
    stats, recs = run(str(path), ("sip", "rtp"))
    media = [r for r in recs if r["type"] == "media"]
    e = entry({"status": "running"}, stats, "n1", "p1")
    assert e["mediaStreams"] == len(wl.streams) == len({(r["ssrc"], r["src_port"]) for r in media}) > 0
    assert e["worstMos"] == round(min(r["mos"] for r in media), 2) < 4.4
    assert entry({"status": "running"}, {}, "n1", "p1")["worstMos"] is None


def test_detections_are_keyed_by_kind_and_source_across_agents() -> None:
    def agent(*found: tuple[str, str, int]) -> AgentStatus:
        return AgentStatus.model_validate({"state": "Capturing", "alerts": [
            {"kind": k, "source": s, "count": n, "lastSeen": "2026-01-01T00:00:0%dZ" % n, "message": f"{k} {s}"}
            for k, s, n in found]})
    found = alerts.detections({"a1": agent(("port_scan", "1.2.3.4/10.0.0.9", 3), ("toll_fraud", "alice", 1)),
                               "a2": agent(("port_scan", "1.2.3.4/10.0.0.9", 4))})
    assert sorted(a.key for a in found) == ["PortScan/1.2.3.4/10.0.0.9", "TollFraud/alice"]
    scan = next(a for a in found if a.reason == "PortScan")
    assert "7 times" in scan.message and "a1, a2" in scan.message
    assert alerts.reason_of("register_brute_force") == "RegisterBruteForce"


def test_media_totals_roll_up_and_keep_the_worst() -> None:
    from otus_operator.crd import CaptureTaskSpec
    spec = CaptureTaskSpec.model_validate({"target": {"nodes": {}}})
    now = datetime.now(timezone.utc)
    rep = {"state": "Capturing", "lastReport": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    first = roll_up(spec, {"a": {**rep, "mediaStreams": 4, "worstMos": 3.9},
                           "b": {**rep, "mediaStreams": 2, "worstMos": 2.75}}, 1, now)
    assert (first["totals"]["mediaStreams"], first["totals"]["worstMos"]) == (6, 2.75)
    # agent b restarts (its counters anew, a better MOS): the streams add up, the worst stays
    second = roll_up(spec, {"a": {**rep, "mediaStreams": 5, "worstMos": 3.9}, "b": {**rep, "mediaStreams": 1,
                                                                                  "worstMos": 4.3}}, 1, now, first)
    assert (second["totals"]["mediaStreams"], second["totals"]["worstMos"]) == (8, 2.75)
    none = roll_up(spec, {"a": rep}, 1, now)
    assert "worstMos" not in none["totals"]            # absent until measured: no null to patch every round


def test_detector_alerts_are_events_on_the_capturetask(api, ns, tmp_path):
    t = example("daemonset")
    t["metadata"]["name"] = "attack"
    create(api, ns, t)
    wait_for(lambda: api["apps"].read_namespaced_daemon_set("otus-attack", ns), what="the DaemonSet")
    api["apps"].patch_namespaced_daemon_set_status("otus-attack", ns, {"status": {
        "desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberMisscheduled": 0, "numberReady": 2}})
    stats = attack_stats(tmp_path, time.time_ns() - 10 * SEC)
    e = entry({"status": "running", "packets": 500}, stats, "node-a1", "a1")
    # two agents see the same attack: one Warning per kind and source
    agent_report(api, ns, "attack", "a1", packets=500, alerts=e["alerts"], mediaStreams=3, worstMos=3.1)
    agent_report(api, ns, "attack", "a2", packets=500, alerts=e["alerts"][:1])

    def warned():
        seen = [x for x in events(api, ns, "attack") if x["reason"] == "PortScan"]
        return seen if len(seen) == 2 else None
    posted = wait_for(warned, what="a PortScan Warning per source")
    obj = get(api, ns, "attack")
    for x in posted:
        check_shape(x, obj)
        assert x["type"] == "Warning" and "port_scan" in x["message"]
    assert any("203.0.113.5/10.0.0.9" in x["message"] and "a1, a2" in x["message"] for x in posted)
    st = status(api, ns, "attack")
    assert {"PortScan/203.0.113.5/10.0.0.9", "PortScan/198.51.100.7/10.0.0.9"} <= set(st["alerts"])
    assert (st["totals"]["mediaStreams"], st["totals"]["worstMos"]) == (3, 3.1)
    import jsonschema
    jsonschema.validate(get(api, ns, "attack"), schema())           # the agents' alerts as the CRD has them
    time.sleep(ROUNDS_S)
    assert Counter(x["reason"] for x in events(api, ns, "attack"))["PortScan"] == 2        # not one per round

    # the smaller scan stops (no agent lists it): Resolved for it alone; the other goes on
    agent_report(api, ns, "attack", "a1", packets=600, alerts=e["alerts"][:1], mediaStreams=3, worstMos=3.1)
    resolved = wait_for(lambda: [x for x in events(api, ns, "attack") if x["reason"] == "PortScanResolved"],
                        what="PortScanResolved")
    assert len(resolved) == 1 and resolved[0]["type"] == "Normal" and "198.51.100.7/10.0.0.9" in resolved[0]["message"]
    check_shape(resolved[0], obj)
    time.sleep(ROUNDS_S)
    seen = Counter((x["type"], x["reason"]) for x in events(api, ns, "attack"))
    assert seen[("Warning", "PortScan")] == 2 and seen[("Normal", "PortScanResolved")] == 1, seen
    assert set(status(api, ns, "attack")["alerts"]) >= {"PortScan/203.0.113.5/10.0.0.9"}
