"""The CaptureTask CRD (generated, checked in) and the pure render functions."""
from __future__ import annotations

import copy
import json
import pathlib

import jsonschema
import pytest
import yaml

from otus_operator import crd, render
from otus_operator.crd import CaptureTaskSpec

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_checked_in_crd_matches_generator():
    assert (ROOT / "crds" / "capturetask.yaml").read_text() == crd.dump_yaml(), \
        "regenerate: python -m otus_operator.crd > crds/capturetask.yaml"


def _jsonschema(s: dict) -> dict:
    """OpenAPI v3 structural schema -> JSON Schema (nullable becomes a null type; k8s keys dropped)."""
    s = {k: v for k, v in s.items() if not k.startswith("x-kubernetes")}
    for bound, edge in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if s.get(bound) is True:                     # OpenAPI v3.0's flag -> JSON Schema's number
            s[bound] = s.pop(edge)
    if s.pop("nullable", False):
        s["type"] = [s["type"], "null"]
    if "properties" in s:
        s["properties"] = {k: _jsonschema(v) for k, v in s["properties"].items()}
        if "metadata" not in s["properties"]:
            s["additionalProperties"] = False  # kubectl's strict field validation (the default since 1.27)
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = _jsonschema(s["additionalProperties"])
    if "items" in s:
        s["items"] = _jsonschema(s["items"])
    return s


def schema() -> dict:
    return _jsonschema(crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def examples() -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds" / "examples").glob("*.yaml"))]


def test_crd_shape():
    c = crd.crd()
    v = c["spec"]["versions"][0]
    assert c["spec"]["names"]["shortNames"] == ["ct"] and c["spec"]["names"]["categories"] == ["otus"]
    assert v["subresources"] == {"status": {}}
    cols = v["additionalPrinterColumns"]
    assert [col["name"] for col in cols if not col.get("priority")] == ["Mode", "Phase", "Ready", "Packets", "Drops",
                                                                        "Age"]
    assert [col["name"] for col in cols if col.get("priority") == 1] == ["Target", "Matched", "Streams",  # -o wide
                                                                         "Worst-MOS"]
    spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["capture"]["properties"]["workers"]["description"]
    assert any("exactly one of nodes or pods" in r["message"] for r in spec["x-kubernetes-validations"])


def _schema_at(schema: dict, json_path: str) -> dict | None:
    """The schema node a printer column's simple JSONPath (.a.b.c) reads, or None when there is none."""
    node = schema
    for part in json_path.lstrip(".").split("."):
        node = (node.get("properties") or {}).get(part)
        if node is None:
            return None
    return node


def test_printer_columns_read_fields_the_schema_defines_with_their_type():
    """kubectl prints an empty cell for a path that does not exist: each column must name a field of the
    schema (status.target and status.totals.matchedCalls are defined so agents can report them later)."""
    v = crd.crd()["spec"]["versions"][0]
    root = v["schema"]["openAPIV3Schema"]
    kinds = {"string": "string", "integer": "integer", "number": "number", "date": "string"}
    for col in v["additionalPrinterColumns"]:
        if col["jsonPath"] == ".metadata.creationTimestamp":
            continue
        node = _schema_at(root, col["jsonPath"])
        assert node is not None, col
        assert node["type"] == kinds[col["type"]], col
    status = crd.CaptureTaskStatus.model_validate({"target": "pods app=sbc", "totals": {"matchedCalls": 3}})
    assert status.totals.matchedCalls == 3 and crd.AgentStatus(state="Capturing").matchedCalls == 0


def test_target_text_and_selector_syntax():
    spec = CaptureTaskSpec.model_validate({"target": {"pods": {"selector": {"tier": "edge", "app": "sbc"}}}})
    assert spec.target.text() == "pods app=sbc,tier=edge"
    assert CaptureTaskSpec.model_validate({"target": {"nodes": {}}}).target.text() == "nodes (all)"
    ok = {"app.kubernetes.io/name": "sbc", "a": "", "x_y.z-1": "A.b_c-9"}
    assert crd.check_selector(ok) == ok
    for bad in ({"app": "bad value!"}, {"app name": "x"}, {"Bad_Prefix/app": "x"}, {"app": "-edge"},
                {"app": "x" * 64}, {"/app": "x"}):
        with pytest.raises(ValueError):
            crd.check_selector(bad)
    with pytest.raises(Exception, match="invalid label value"):
        CaptureTaskSpec.model_validate({"target": {"pods": {"selector": {"app": "bad value!"}}}})


def test_examples_valid_against_schema_and_models():
    ex = examples()
    assert {e["metadata"]["name"] for e in ex} == {"edge-sip", "sbc-sip"}
    for e in ex:
        jsonschema.validate(e, schema())
        CaptureTaskSpec.model_validate(e["spec"])


@pytest.mark.parametrize("mutate,where", [
    (lambda s: s["capture"].update(workers=0), "workers"),
    (lambda s: s["capture"].update(snaplen=10), "snaplen"),
    (lambda s: s["limits"].update(duration="one day"), "duration"),
    (lambda s: s["capture"].update(bogus=1), "bogus"),
])
def test_invalid_specs_rejected(mutate, where):
    e = copy.deepcopy(examples()[0])
    mutate(e["spec"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(e, schema())
    with pytest.raises(Exception) as err:
        CaptureTaskSpec.model_validate(e["spec"])
    assert where in str(err.value)


def test_render_daemonset_and_configmap():
    e = examples()[0]
    spec = CaptureTaskSpec.model_validate(e["spec"])
    ds = render.daemonset("edge-sip", "voip", "uid-1", spec)
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["hostNetwork"] and pod["nodeSelector"] == {"otus.io/capture": "true"}
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert c["args"][:3] == ["agent", "--task-file", "/etc/otus/task/task.yaml"]
    assert ds["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert {v["name"]: v for v in pod["volumes"]}["otus-task"] == {"name": "otus-task",
                                                                  "configMap": {"name": "otus-edge-sip"}}
    cm = render.configmap("edge-sip", "voip", "uid-1", spec)
    task = yaml.safe_load(cm["data"]["task.yaml"])
    assert task["id"] == "edge-sip" and task["workers"] == 2 and task["limits"]["duration_s"] == 86400
    kafka = next(r for r in task["reporters"] if r["type"] == "kafka")
    assert kafka["topic"] == "otus-edge-sip" and task["sip"]["call_summaries"] is True
    # a task change does not touch the pod template (agents follow the file); an image change does
    spec2 = spec.model_copy(update={"capture": spec.capture.model_copy(update={"workers": 4})})
    ds2 = render.daemonset("edge-sip", "voip", "uid-1", spec2)
    assert ds2["spec"]["template"] == ds["spec"]["template"]
    spec3 = spec.model_copy(update={"agent": spec.agent.model_copy(update={"image": "otus-agent:0.2"})})
    assert render.daemonset("edge-sip", "voip", "uid-1", spec3)["spec"]["template"]["metadata"] != \
        ds["spec"]["template"]["metadata"]
    # the args the agent gets are ones its CLI accepts
    from otus_agent.cli.main import build_parser
    build_parser().parse_args(c["args"])
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip("kubernetes-validate not installed")
    for obj in (ds, cm, *render.agent_rbac("edge-sip", "voip", "uid-1", sidecar=False),
                *render.agent_rbac("edge-sip", "voip", "uid-1", sidecar=True)):
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_render_sidecar_and_secret_ref():
    e = examples()[1]
    spec = CaptureTaskSpec.model_validate(e["spec"])
    pod = {"spec": {"containers": [{"name": "app", "image": "a"}]}}
    native = render.inject(pod, "sbc-sip", spec)
    c = native["initContainers"][0]
    assert c["restartPolicy"] == "Always" and c["name"] == "otus-agent" and "containers" not in native
    assert [v["name"] for v in native["volumes"]] == ["otus-task", "otus-spool", "otus-tmp"]
    legacy = render.inject(pod, "sbc-sip", spec, native=False)
    assert [x["name"] for x in legacy["containers"]] == ["app", "otus-agent"]
    assert "restartPolicy" not in legacy["containers"][1]
    assert render.has_agent({"spec": legacy}) and not render.has_agent(pod)
    task = render.task_spec("sbc-sip", spec)
    assert {"type": "hep", "address": "homer.monitoring.svc:9060", "proto": "udp"}.items() <= \
        next(r for r in task["reporters"] if r["type"] == "hep").items()
    assert render.selects({"app": "sbc"}, {"app": "sbc", "x": "y"}) and not render.selects({"app": "sbc"}, {})
    assert not render.selects({}, {"app": "sbc"})
    with pytest.raises(ValueError):
        render.daemonset("sbc-sip", "voip", "u", spec)
    s2 = CaptureTaskSpec.model_validate({"target": {"nodes": {}}, "outputs": {"kafka": {
        "brokers": ["k:9092"], "passwordSecretRef": {"name": "kafka-creds"}}}})
    c2 = render.agent_container("t", s2)
    env = {x["name"]: x for x in c2["env"]}
    assert env["OTUS_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-creds", "key": "password"}
    assert not any("password" in a for a in c2["args"])
    task = render.task_spec("t", s2)
    assert task["reporters"][0]["password_env"] == "OTUS_KAFKA_SASL_PASSWORD" and "password" not in json.dumps(
        task["reporters"][0]["options"])


def test_render_ephemeral_agent_for_a_running_pod():
    from otus_agent.cli.main import build_parser
    spec = CaptureTaskSpec.model_validate({"target": {"pods": {"selector": {"app": "sbc"}, "attachExisting": True}}})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sbc-0", "namespace": "voip"},
           "spec": {"containers": [{"name": "sbc", "image": "sbc:1"}],
                    "volumes": [{"name": "kube-api-access-x1", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}]}}
    c = render.ephemeral_container("sbc-sip", "voip", spec, pod)
    assert "ports" not in c and "resources" not in c
    assert c["volumeMounts"][0]["name"] == "kube-api-access-x1"
    args = build_parser().parse_args(c["args"])
    assert args.task_configmap == "voip/otus-sbc-sip" and args.task_file is None
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN"]}
    with_agent = {**pod, "spec": {**pod["spec"], "ephemeralContainers": [c]}}
    assert render.has_agent(with_agent) and not render.has_agent(pod)
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(with_agent, "1.30.0", strict=True)
    no_token = render.ephemeral_container("sbc-sip", "voip", spec, {"spec": {"containers": []}})
    assert "volumeMounts" not in no_token


def test_sip_match_reaches_the_agents_task():
    """spec.sip.match (camelCase) becomes the task's sip.match, which the agent's contract loads as is."""
    from otus_agent.sip.select import Selector
    from otus_spec import task_from_dict
    spec = CaptureTaskSpec.model_validate({"target": {"nodes": {}}, "sip": {"match": {
        "methods": ["invite"], "fromUser": ["alice"], "requestUriPrefix": ["sip:+1555"],
        "headers": [{"name": "X-Tenant", "equals": "acme"}]}}})
    task = task_from_dict(yaml.safe_load(render.configmap("sel", "voip", "uid-1", spec)["data"]["task.yaml"]))
    m = task.sip.match
    assert m is not None and (m.methods, m.from_user, m.request_uri_prefix) == (["INVITE"], ["alice"], ["sip:+1555"])
    assert Selector.from_options(m.model_dump()).matches("INVITE", "alice", "bob", "sip:+15551@gw", "c",
                                                         lambda n: ["acme"] if n == "x-tenant" else [])
    plain = task_from_dict(yaml.safe_load(render.configmap("p", "voip", "u", CaptureTaskSpec.model_validate(
        {"target": {"nodes": {}}}))["data"]["task.yaml"]))
    assert plain.sip.match is None
    with pytest.raises(Exception, match="at least one condition"):
        CaptureTaskSpec.model_validate({"target": {"nodes": {}}, "sip": {"match": {}}})
