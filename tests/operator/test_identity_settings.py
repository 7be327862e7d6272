"""The identity settings (grace, bound, on/off) as task and CaptureTask fields: one definition
(otus_spec.IdentityOptions), mirrored into the CRD, rendered into the agents' task file, validated with
errors that name the field.  The agent honouring them against the emulator is in test_identity.py."""
from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from otus_operator import crd, render
from otus_operator.crd import CaptureTaskSpec
from otus_spec import IdentityOptions, SpecError, TaskSpec, task_from_dict

from .test_crd_render import examples, schema


def test_the_task_contract_defines_them_once():
    t = task_from_dict({"id": "a", "interfaces": ["lo"]})
    assert t.identity == IdentityOptions() and (t.identity.enabled, t.identity.grace_s, t.identity.max_entries) \
        == (None, 60.0, 65536)
    t = task_from_dict({"id": "a", "interfaces": ["lo"], "identity": {"enabled": False, "grace_s": 5,
                                                                      "max_entries": 1000}})
    assert (t.identity.enabled, t.identity.grace_s, t.identity.max_entries) == (False, 5.0, 1000)
    from otus_agent.kube import identity as ki
    assert (ki.GRACE_S, ki.MAX_ENTRIES) == (IdentityOptions().grace_s, IdentityOptions().max_entries)


@pytest.mark.parametrize("bad,needle", [
    ({"grace_s": -1}, "identity.grace_s: Input should be greater than or equal to 0"),
    ({"grace_s": 7200}, "identity.grace_s: Input should be less than or equal to 3600"),
    ({"max_entries": 3}, "identity.max_entries: Input should be greater than or equal to 16"),
    ({"enabled": "sometimes"}, "identity.enabled: Input should be a valid boolean"),
    ({"grace": 5}, "identity.grace: unknown field"),
])
def test_bad_task_identity_names_the_field(bad, needle):
    with pytest.raises(SpecError) as e:
        task_from_dict({"id": "a", "interfaces": ["lo"], "identity": bad})
    assert needle in str(e.value)


def _ct(identity: dict | None = None, target: dict | None = None) -> dict:
    e = copy.deepcopy(examples()[0])
    e["spec"]["target"] = target or {"nodes": {}}
    if identity is not None:
        e["spec"]["identity"] = identity
    return e


def test_the_crd_mirrors_them_with_the_same_limits():
    s = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    ident = s["properties"]["identity"]["properties"]
    assert set(ident) == {"enabled", "graceSeconds", "maxEntries"}
    assert (ident["graceSeconds"]["default"], ident["graceSeconds"]["minimum"], ident["graceSeconds"]["maximum"]) \
        == (60.0, 0, 3600)
    assert (ident["maxEntries"]["default"], ident["maxEntries"]["minimum"]) == (65536, 16)
    assert ident["enabled"]["nullable"] is True and "default" not in ident["enabled"]
    assert ident["graceSeconds"]["description"] == IdentityOptions.model_fields["grace_s"].description
    rule = next(r for r in s["x-kubernetes-validations"] if "identity" in r["rule"])
    assert "has(self.target.pods)" in rule["rule"] and rule["message"] == crd.IDENTITY_SIDECAR
    ok = _ct({"enabled": True, "graceSeconds": 5, "maxEntries": 2000})
    jsonschema.validate(ok, schema())
    CaptureTaskSpec.model_validate(ok["spec"])


@pytest.mark.parametrize("bad,where", [
    ({"graceSeconds": -1}, "graceSeconds"),
    ({"graceSeconds": 3601}, "graceSeconds"),
    ({"maxEntries": 15}, "maxEntries"),
    ({"maxEntries": 1.5}, "maxEntries"),
    ({"grace_s": 5}, "grace_s"),             # the task file's spelling is not the CaptureTask's
])
def test_bad_capturetask_identity_rejected_by_schema_and_model(bad, where):
    e = _ct(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(e, schema())
    with pytest.raises(Exception) as err:
        CaptureTaskSpec.model_validate(e["spec"])
    assert f"identity.{where}" in str(err.value)


def test_a_sidecar_task_cannot_turn_the_watch_on():
    pods = {"pods": {"selector": {"app": "sbc"}}}
    with pytest.raises(Exception, match="node agents .target.nodes. only"):
        CaptureTaskSpec.model_validate(_ct({"enabled": True}, pods)["spec"])
    for fine in ({}, {"enabled": False}, {"graceSeconds": 10}):
        CaptureTaskSpec.model_validate(_ct(fine, pods)["spec"])


def test_rendered_into_the_agents_task_file():
    spec = CaptureTaskSpec.model_validate(_ct({"graceSeconds": 7.5, "maxEntries": 4096})["spec"])
    task = TaskSpec.model_validate(yaml.safe_load(render.configmap("edge", "voip", "u", spec)["data"]["task.yaml"]))
    assert task.identity == IdentityOptions(grace_s=7.5, max_entries=4096)
    off = CaptureTaskSpec.model_validate(_ct({"enabled": False})["spec"])
    assert TaskSpec.model_validate(yaml.safe_load(render.configmap("edge", "voip", "u", off)["data"]["task.yaml"])) \
        .identity.enabled is False
    # the agent container carries none of it in its environment: the task file is the one place
    env = {e["name"] for e in render.agent_container("edge", spec)["env"]}
    assert not {n for n in env if n.startswith("OTUS_IDENTITY")}


def test_no_cluster_wide_read_when_the_watch_is_off():
    def kinds(identity: bool) -> list[str]:
        return [o["kind"] for o in render.agent_rbac("edge", "voip", "u", sidecar=False, identity=identity)]
    assert "ClusterRoleBinding" in kinds(True) and "ClusterRoleBinding" not in kinds(False)


def test_the_operator_renders_them_and_grants_the_watch_only_when_on(api, ns):
    """The real operator against the emulator: spec.identity reaches the task ConfigMap; with the watch off no
    identity ClusterRoleBinding exists, turning it back on creates it, off again deletes it."""
    import json

    from kubernetes.client.exceptions import ApiException
    from support import G, P, V, create, example, wait_for
    body = example("daemonset")
    body["spec"]["identity"] = {"enabled": False, "graceSeconds": 5}
    create(api, ns, body)
    name = body["metadata"]["name"]
    crb = render.identity_binding_name(name, ns)

    def task() -> dict:
        cm = api["core"].read_namespaced_config_map(render.child_name(name), ns, _preload_content=False)
        return yaml.safe_load(json.loads(cm.data)["data"]["task.yaml"])

    def binding() -> bool:
        try:
            api["rbac"].read_cluster_role_binding(crb, _preload_content=False)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise
    wait_for(lambda: task()["identity"] == {"enabled": False, "grace_s": 5.0, "max_entries": 65536},
             what="the identity section in the task file")
    assert not binding()
    api["custom"].patch_namespaced_custom_object(G, V, ns, P, name, {"spec": {"identity": {"enabled": None}}})
    wait_for(binding, what="the identity ClusterRoleBinding once the watch is on (by default)")
    assert task()["identity"]["enabled"] is None
    api["custom"].patch_namespaced_custom_object(G, V, ns, P, name, {"spec": {"identity": {"enabled": False}}})
    wait_for(lambda: not binding(), what="the binding deleted when the watch is turned off")
