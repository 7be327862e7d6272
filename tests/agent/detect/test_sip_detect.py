"""SIP detectors on generated SIP traffic through the real decode, SIP parser and dialog tracker:
attacks are caught within their window, a clean generated PBX hour stays silent."""
from __future__ import annotations

import pathlib

from otus_agent.capture.pcapfile import open_capture
from otus_agent.detect import DetectConfig, SipDetector
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.sim import flowgen
from otus_agent.sip.framing import SipConfig, SipStage

SEC = flowgen.SEC


def alerts_of(tmp_path: pathlib.Path, trace: flowgen.Trace, config: DetectConfig | None = None) -> list[dict]:
    path = str(tmp_path / "t.pcap")
    trace.write(path)
    alerts: list[dict] = []
    det = SipDetector(config, sink=alerts.append)
    sip = SipStage(SipConfig(call_summaries=True), emit=det.observe)
    pipe = DatagramStage(sink=sip.on_datagram)
    with open_capture(path) as r:
        pipe.run(r.batches())
    return alerts


def test_scanner_user_agent_and_options_sweep(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    for i in range(80):
        side = flowgen.SipSide(tr, "203.0.113.66", cport=5070)
        side.req(SEC + i * 200_000_000, "OPTIONS", f"scan{i}@x", 1, "100", "100", ua="friendly-scanner",
                 dst=f"10.60.0.{i + 1}")
    alerts = alerts_of(tmp_path, tr)
    kinds = sorted(a["detector"] for a in alerts)
    assert kinds == ["options_sweep", "sip_scanner"]
    sweep = next(a for a in alerts if a["detector"] == "options_sweep")
    assert sweep["src_ip"] == "203.0.113.66" and sweep["ts"] - SEC <= 60 * SEC


def test_register_brute_force_per_source_and_per_user(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    atk = flowgen.SipSide(tr, "203.0.113.77")
    for i in range(40):  # one source guessing 1001's password
        atk.req(SEC + i * SEC, "REGISTER", "bf@x", i + 1, "1001", "1001")
        atk.resp(SEC + i * SEC + 2_000_000, 403, "Forbidden", "REGISTER", "bf@x", i + 1, "1001", "1001")
    for i in range(15):  # many sources, one user each try: only the per-user count sees it
        s = flowgen.SipSide(tr, f"198.51.100.{i + 1}")
        s.req(100 * SEC + i * SEC, "REGISTER", f"d{i}@x", 1, "1002", "1002")
        s.resp(100 * SEC + i * SEC + 2_000_000, 401, "Unauthorized", "REGISTER", f"d{i}@x", 1, "1002", "1002")
    alerts = alerts_of(tmp_path, tr)
    brute = [a for a in alerts if a["detector"] == "register_brute_force"]
    assert {(a.get("user"), a["src_ip"]) for a in brute} == {
        (None, "203.0.113.77"), ("1001@pbx.example", "203.0.113.77"), ("1002@pbx.example", "198.51.100.10")}
    per_src = next(a for a in brute if "user" not in a)
    assert per_src["ts"] - SEC <= 60 * SEC and per_src["count"] == 20


def test_invite_flood(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    side = flowgen.SipSide(tr, "203.0.113.88")
    for i in range(200):
        side.req(SEC + i * 25_000_000, "INVITE", f"fl{i}@x", 1, "9999", f"{5000 + i}")
    alerts = alerts_of(tmp_path, tr)
    assert [a["detector"] for a in alerts] == ["invite_flood"]
    assert alerts[0]["ts"] - SEC <= 10 * SEC


def test_toll_fraud(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    side = flowgen.SipSide(tr, "10.50.0.99")
    for i in range(12):
        side.call(SEC + i * 20 * SEC, f"tf{i}@x", "2001", f"+88213{i:06d}", 5 * SEC)
    alerts = alerts_of(tmp_path, tr)
    assert [(a["detector"], a["account"]) for a in alerts] == [("toll_fraud", "2001")]
    # the same calls to a home prefix, or long ones, are not fraud
    cfg = DetectConfig.model_validate({"toll_fraud": {"home_prefixes": ["+882"]}})
    assert alerts_of(tmp_path, tr, cfg) == []


def test_clean_pbx_hour_raises_no_alert(tmp_path: pathlib.Path) -> None:
    tr = flowgen.clean_sip_hour()
    assert max(f[0] for f in tr.frames) > 3500 * SEC
    assert alerts_of(tmp_path, tr) == []
