"""Network detectors on generated captures through the real flow table: attacks are caught within their
window, a clean generated hour stays silent."""
from __future__ import annotations

import pathlib

import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.detect import DetectConfig, NetworkDetector
from otus_agent.flows import FlowStage
from otus_agent.sim import flowgen

SEC = flowgen.SEC


def alerts_of(tmp_path: pathlib.Path, trace: flowgen.Trace, config: DetectConfig | None = None) -> list[dict]:
    path = str(tmp_path / "t.pcap")
    trace.write(path)
    alerts: list[dict] = []
    det = NetworkDetector(config, sink=alerts.append)
    stage = FlowStage(events=det.observe)
    with open_capture(path) as r:
        stage.run(r.batches())
    stage.flush()
    return alerts


def test_port_scan_detected_within_window(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    flowgen.port_scan(tr, 10 * SEC, "203.0.113.5", "10.0.0.9", range(1, 1025), step_ns=20_000_000)
    alerts = alerts_of(tmp_path, tr)
    scans = [a for a in alerts if a["detector"] == "port_scan"]
    assert len(scans) == 1  # the cooldown keeps it to one
    a = scans[0]
    assert (a["src_ip"], a["dst_ip"], a["type"]) == ("203.0.113.5", "10.0.0.9", "alert")
    assert a["ts"] - 10 * SEC <= DetectConfig().port_scan.window_s * SEC
    assert a["count"] == DetectConfig().port_scan.distinct_ports


def test_host_sweep_detected(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    flowgen.host_sweep(tr, SEC, "203.0.113.6", "10.8.0.0", 22, 300)
    alerts = alerts_of(tmp_path, tr)
    assert [(a["detector"], a["dst_port"]) for a in alerts] == [("host_sweep", 22)]


def test_syn_flood_detected_and_not_for_completed_handshakes(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    flowgen.syn_flood(tr, 5 * SEC, "10.0.0.80", 80, 3000, 3 * SEC)
    alerts = alerts_of(tmp_path, tr)
    floods = [a for a in alerts if a["detector"] == "syn_flood"]
    assert len(floods) == 1 and floods[0]["dst_port"] == 80
    assert floods[0]["ts"] - 5 * SEC <= DetectConfig().syn_flood.window_s * SEC
    # the same number of connections that complete their handshake: no flood
    tr = flowgen.Trace()
    for i in range(3000):
        c = flowgen.TcpConn(tr, f"10.9.{i // 250}.{i % 250 + 1}", 30000 + i % 30000, "10.0.0.80", 80)
        c.handshake(5 * SEC + i * 1_000_000)
    assert alerts_of(tmp_path, tr) == []


def test_icmp_flood_detected(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    flowgen.icmp_flood(tr, SEC, "198.18.0.1", "10.0.0.7", 5000, 2 * SEC)
    alerts = alerts_of(tmp_path, tr)
    assert [a["detector"] for a in alerts] == ["icmp_flood"]
    assert alerts[0]["dst_ip"] == "10.0.0.7"


def test_thresholds_are_configurable(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    flowgen.port_scan(tr, SEC, "203.0.113.5", "10.0.0.9", range(1, 31))
    assert alerts_of(tmp_path, tr) == []
    cfg = DetectConfig.model_validate({"port_scan": {"distinct_ports": 25}})
    assert [a["detector"] for a in alerts_of(tmp_path, tr, cfg)] == ["port_scan"]


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="distinct_ports"):
        DetectConfig.model_validate({"port_scan": {"distinct_ports": 0}})


def test_clean_hour_raises_no_alert(tmp_path: pathlib.Path) -> None:
    tr = flowgen.clean_network_hour()
    assert tr.frames[-1][0] - tr.frames[0][0] > 3500 * SEC or max(f[0] for f in tr.frames) > 3500 * SEC
    assert alerts_of(tmp_path, tr) == []
