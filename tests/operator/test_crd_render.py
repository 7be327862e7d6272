"""The CaptureTask CRD (generated, checked in) and the pure render functions."""
from __future__ import annotations

import copy
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
    assert [col["name"] for col in v["additionalPrinterColumns"]] == ["Mode", "Phase", "Ready", "Packets", "Drops",
                                                                      "Age"]
    spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["capture"]["properties"]["workers"]["description"]
    assert any("exactly one of nodes or pods" in r["message"] for r in spec["x-kubernetes-validations"])


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
    assert "--kafka-brokers" in c["args"] and "otus-edge-sip" in c["args"] and "--calls" in c["args"]
    assert ds["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    cm = render.configmap("edge-sip", "voip", "uid-1", spec)
    task = yaml.safe_load(cm["data"]["task.yaml"])
    assert task["id"] == "edge-sip" and task["workers"] == 2 and task["limits"]["duration_s"] == 86400
    # the args the agent gets are ones its CLI accepts
    from otus_agent.cli import build_parser
    build_parser().parse_args(c["args"])
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip("kubernetes-validate not installed")
    for obj in (ds, cm):
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_render_sidecar_and_secret_ref():
    e = examples()[1]
    spec = CaptureTaskSpec.model_validate(e["spec"])
    patch = render.sidecar_patch("sbc-sip", spec)
    c = patch[0]["value"]
    assert patch[0]["path"] == "/spec/initContainers/-" and c["restartPolicy"] == "Always"
    assert "--hep" in c["args"] and "--interface" in c["args"]
    legacy = render.sidecar_patch("sbc-sip", spec, native=False)
    assert legacy[0]["path"] == "/spec/containers/-" and "restartPolicy" not in legacy[0]["value"]
    with pytest.raises(ValueError):
        render.daemonset("sbc-sip", "voip", "u", spec)
    s2 = CaptureTaskSpec.model_validate({"target": {"nodes": {}}, "outputs": {"kafka": {
        "brokers": ["k:9092"], "passwordSecretRef": {"name": "kafka-creds"}}}})
    c2 = render.agent_container("t", s2)
    env = {x["name"]: x for x in c2["env"]}
    assert env["OTUS_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-creds", "key": "password"}
    assert not any("password" in a for a in c2["args"])
