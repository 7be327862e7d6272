"""The ArgoCD health check for CaptureTask, executed by a real Lua interpreter (lupa) on objects in each phase,
including status objects produced by the operator's own roll-up."""
from __future__ import annotations

import pathlib
from datetime import datetime, timezone

import pytest
import yaml

lupa = pytest.importorskip("lupa")

ROOT = pathlib.Path(__file__).resolve().parents[2]
LUA = (ROOT / "argocd" / "health-capturetask.lua").read_text()


def health(obj: dict) -> dict:
    """Run the script as ArgoCD does: the resource as a Lua table named obj, the script's return value."""
    rt = lupa.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(v):
        if isinstance(v, dict):
            return rt.table_from({k: to_lua(x) for k, x in v.items()})
        if isinstance(v, list):
            return rt.table_from([to_lua(x) for x in v])
        return v
    rt.globals().obj = to_lua(obj)
    result = rt.execute(LUA)
    return {"status": result["status"], "message": result["message"]}


def ct(status: dict | None, generation: int = 1) -> dict:
    o = {"apiVersion": "otus.io/v1alpha1", "kind": "CaptureTask",
         "metadata": {"name": "t", "namespace": "voip", "generation": generation},
         "spec": {"target": {"nodes": {}}}}
    if status is not None:
        o["status"] = status
    return o


NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
T = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


def rolled(spec: dict, agents: dict, **kw) -> dict:
    from otus_operator.crd import CaptureTaskSpec
    from otus_operator.status import roll_up
    return roll_up(CaptureTaskSpec.model_validate(spec), agents, 1, NOW, **kw)


def agent(state="Capturing", packets=1000, drops=0):
    return {"state": state, "packets": packets, "drops": drops, "sipMessages": 10, "spoolBytes": 0, "lastReport": T}


def test_each_phase_maps_to_a_health():
    nodes = {"target": {"nodes": {}}}
    assert health(ct(None))["status"] == "Progressing"
    assert health(ct(rolled(nodes, {})))["status"] == "Progressing"                       # Pending
    h = health(ct(rolled(nodes, {"a": agent()}, desired_agents=1)))
    assert h == {"status": "Healthy", "message": "1/1 agents capturing"}
    assert health(ct(rolled(nodes, {"a": agent()}, desired_agents=2)))["status"] == "Progressing"
    h = health(ct(rolled(nodes, {"a": agent(drops=500)}, desired_agents=1)))
    assert h["status"] == "Degraded" and h["message"].startswith("KernelDrops")
    h = health(ct(rolled(nodes, {"a": agent(state="Failed")}, desired_agents=1)))
    assert h["status"] == "Degraded" and "agents failed" in h["message"]
    assert health(ct(rolled({**nodes, "suspend": True}, {"a": agent()})))["status"] == "Suspended"
    done = rolled({**nodes, "limits": {"duration": "1s"}}, {"a": agent()},
                  previous={"startTime": "2026-11-23T11:00:00Z"})
    assert done["phase"] == "Succeeded" and health(ct(done)) == {"status": "Healthy", "message": "Capture completed"}
    crash = rolled(nodes, {"a": agent()}, desired_agents=1, crashing=["otus-t-x"])
    assert health(ct(crash))["status"] == "Degraded"


def test_an_old_generation_is_still_progressing():
    st = rolled({"target": {"nodes": {}}}, {"a": agent()}, desired_agents=1)
    assert health(ct(st, generation=1))["status"] == "Healthy"
    assert health(ct(st, generation=2))["status"] == "Progressing"


def test_invalid_spec_status_is_degraded():
    from otus_operator.handlers import _error_status
    h = health(ct(_error_status("invalid spec: capture.workers: too small", 1)))
    assert h["status"] == "Degraded" and "capture.workers" in h["message"]


def test_argocd_cm_patch_carries_the_script():
    cm = yaml.safe_load((ROOT / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert cm["data"]["resource.customizations.health.otus.io_CaptureTask"] == LUA
    apps = list(yaml.safe_load_all((ROOT / "argocd" / "application.yaml").read_text()))
    assert apps[0]["spec"]["source"]["path"] == "helm/otus" and (ROOT / apps[0]["spec"]["source"]["path"]).is_dir()
    assert (ROOT / apps[1]["spec"]["source"]["path"]).is_dir()
