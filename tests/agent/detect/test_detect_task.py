"""Detector thresholds from the task (``detect`` in TaskSpec) and from a CaptureTask (``spec.detect``) reach
the detectors the daemon builds: a changed threshold changes what fires, on the same generated capture."""
from __future__ import annotations

import pathlib

from otus_agent.capture.pcapfile import open_capture
from otus_agent.daemon.task import parser_settings
from otus_agent.detect import DetectConfig
from otus_agent.engine.pipeline import EngineConfig, build_engine
from otus_agent.sim import flowgen
from otus_spec import DetectOptions, TaskSpec

SEC = flowgen.SEC


def alerts(path: str, spec: TaskSpec) -> list[dict]:
    """The alerts of the engine a daemon task runs (its parsers and their settings from the task)."""
    import orjson
    out: list[bytes] = []
    eng = build_engine(EngineConfig(parsers=tuple(spec.parsers), settings=parser_settings(spec)), out.append)
    with open_capture(path) as r:
        eng.run(r.batches())
    eng.finish()
    recs = [orjson.loads(line) for chunk in out for line in chunk.splitlines() if line]
    return [r for r in recs if r.get("type") == "alert"]


def scan(tmp_path: pathlib.Path, ports: int) -> str:
    tr = flowgen.Trace()
    flowgen.port_scan(tr, SEC, "203.0.113.5", "10.0.0.9", range(1, ports + 1))
    path = str(tmp_path / "scan.pcap")
    tr.write(path)
    return path


def test_the_detectors_run_on_the_tasks_own_model() -> None:
    assert DetectConfig is DetectOptions        # one definition of the fields and their defaults


def test_a_task_threshold_changes_what_fires(tmp_path: pathlib.Path) -> None:
    path = scan(tmp_path, 30)
    default = TaskSpec(id="t", interfaces=["lo"], parsers=["flow", "detect"])
    assert alerts(path, default) == []                     # 30 ports: under the default 100
    low = TaskSpec.model_validate({"id": "t", "interfaces": ["lo"], "parsers": ["flow", "detect"],
                                   "detect": {"port_scan": {"distinct_ports": 25}}})
    fired = alerts(path, low)
    assert [(a["detector"], a["src_ip"], a["count"]) for a in fired] == [("port_scan", "203.0.113.5", 25)]
    high = low.model_copy(update={"detect": DetectOptions.model_validate({"port_scan": {"distinct_ports": 31}})})
    assert alerts(path, high) == []


def test_a_capturetask_threshold_reaches_the_agent(tmp_path: pathlib.Path) -> None:
    """The CaptureTask's camelCase section renders into the task's detect section (operator -> agent)."""
    from otus_operator.crd import CaptureTaskSpec
    from otus_operator.render import task_spec
    path = scan(tmp_path, 30)
    ct = CaptureTaskSpec.model_validate({"target": {"nodes": {}}, "flow": {"enabled": True},
                                         "detect": {"enabled": True, "portScan": {"distinctPorts": 20,
                                                                                  "windowSeconds": 5}}})
    spec = TaskSpec.model_validate(task_spec("ct", ct))
    assert spec.detect.port_scan.distinct_ports == 20 and spec.detect.port_scan.window_s == 5
    assert spec.detect.syn_flood == DetectOptions().syn_flood       # untouched sections keep the defaults
    assert [a["count"] for a in alerts(path, spec)] == [20]
    old = CaptureTaskSpec.model_validate({"target": {"nodes": {}}, "detect": True})     # before thresholds
    assert old.detect.enabled and TaskSpec.model_validate(task_spec("ct", old)).detect == DetectOptions()


def test_alerts_are_counted_in_prometheus(tmp_path: pathlib.Path) -> None:
    """The engine's detect summary, as the daemon's collector turns it into metrics families."""
    from otus_agent.observability.metrics import _stage_metrics
    spec = TaskSpec(id="t", interfaces=["lo"], parsers=["flow", "detect"])
    eng = build_engine(EngineConfig(parsers=tuple(spec.parsers), settings=parser_settings(spec)), lambda b: None)
    with open_capture(scan(tmp_path, 300)) as r:
        eng.run(r.batches())
    eng.finish()
    fams = {m.name: m for m in _stage_metrics("t", {"detect": eng.summary()["detect"]}) if m.name.startswith(
        ("otus_alerts", "otus_detect"))}
    fired = {s.labels["detector"]: s.value for s in fams["otus_alerts"].samples}
    assert fired.get("port_scan", 0) >= 1 and set(fams) == {"otus_alerts", "otus_alerts_suppressed",
                                                            "otus_detect_evictions"}
