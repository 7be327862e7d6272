"""The chart's cluster-wide console (issue 17.4), rendered by Helm's own engine and validated against the
Kubernetes schemas: off by default; when on, a Deployment and a Service whose arguments `otus console`
itself accepts, least privilege (no service account token, non-root, read-only root, no capabilities,
resources), and the bearer token only from a Secret mounted as a file."""
from __future__ import annotations

import pytest

from .test_helm_chart import CHART, FOREIGN, KUBE, by_kind, helm, kubernetes_validate, render

ON = {"console": {"enabled": True, "kafka": {"brokers": "kafka-0.kafka:9092,kafka-1.kafka:9092"}}}
TOKEN = {"console": {**ON["console"], "token": {"existingSecret": "otus-console-token", "key": "bearer"}}}


def _console(docs: list[dict]) -> tuple[dict, dict]:
    deps = [d for d in by_kind(docs, "Deployment") if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "otus-console"]
    svcs = [s for s in by_kind(docs, "Service") if s["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "otus-console"]
    assert len(deps) == len(svcs) == 1, (deps, svcs)
    return deps[0], svcs[0]


def test_off_by_default():
    docs = render({})
    assert not [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "otus-console"]


@pytest.mark.parametrize("values", [ON, TOKEN, {"console": {**ON["console"], "kafka": {
    "brokers": "k:9092", "topic": "otus-edge", "fromBeginning": True},
    "service": {"type": "NodePort", "port": 8080}, "image": {"repository": "r/otus-agent", "tag": "9.9.9"},
    "nodeSelector": {"kubernetes.io/os": "linux"}, "podAnnotations": {"a": "b"}}, "imagePullSecrets": [{"name": "rc"}]}],
    ids=["on", "token", "options"])
def test_renders_valid_objects_and_lints(values):
    docs = render(values)
    _console(docs)
    for d in docs:
        if (d["apiVersion"], d["kind"]) not in FOREIGN:
            kubernetes_validate.validate(d, KUBE, strict=True)
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE}")
    assert not report["errors"], report
    assert not [m for m in report["messages"] if m["severity"] >= 2], report["messages"]


def test_least_privilege_and_arguments_otus_console_accepts():
    from otus_agent.cli.main import build_parser
    dep, svc = _console(render(ON))
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    assert dep["spec"]["template"]["metadata"]["labels"]["otus.io/inject"] == "false"
    assert c["image"] == "ghcr.io/otus-voip/otus-agent:0.1.0"        # the agent image carries the console
    args = build_parser().parse_args(c["args"])
    assert args.command == "console" and args.func.__module__ == "otus_agent.web.console"
    assert args.kafka_brokers == "kafka-0.kafka:9092,kafka-1.kafka:9092" and args.topic == "otus-sip"
    assert not args.from_beginning and args.calls == 1000
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
    assert args.listen == f"0.0.0.0:{port}"
    assert c["readinessProbe"]["httpGet"] == {"path": "/api/v1/status", "port": "http"}
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    assert "env" not in c and not [v for v in pod["volumes"] if "secret" in v]     # no token configured: none


def test_the_token_is_a_mounted_secret_file_never_a_flag_or_env_value():
    dep, _ = _console(render(TOKEN))
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    vol = next(v for v in pod["volumes"] if "secret" in v)
    assert vol["secret"]["secretName"] == "otus-console-token"
    assert vol["secret"]["items"] == [{"key": "bearer", "path": "token"}]
    assert vol["secret"]["defaultMode"] & 0o007 == 0                  # not world-readable
    mount = next(m for m in c["volumeMounts"] if m["name"] == vol["name"])
    assert mount["readOnly"] is True and mount["mountPath"] == "/etc/otus/console"
    assert not any("token" in a.lower() for a in c["args"])
    assert "env" not in c and "envFrom" not in c


def test_options_reach_the_console():
    from otus_agent.cli.main import build_parser
    values = {"console": {**ON["console"], "kafka": {"brokers": "k:9092", "topic": "voip-records", "fromBeginning": True},
                          "calls": 5000, "port": 9000, "image": {"repository": "r/agent", "tag": "2.0.0",
                                                                  "pullPolicy": "Always"}}}
    dep, svc = _console(render(values))
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(c["args"])
    assert (args.topic, args.from_beginning, args.calls, args.listen) == ("voip-records", True, 5000, "0.0.0.0:9000")
    assert c["image"] == "r/agent:2.0.0" and c["imagePullPolicy"] == "Always" and c["ports"][0]["containerPort"] == 9000
    agent = render({"agent": {"image": {"repository": "corp/otus-agent", "tag": "1.2.3"}}, **ON})
    assert _console(agent)[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "corp/otus-agent:1.2.3"


@pytest.mark.parametrize("values,where", [
    ({"console": {"enabled": True}}, "brokers"),
    ({"console": {"enabled": True, "kafka": {"brokers": ""}}}, "brokers"),
    ({"console": {**ON["console"], "kafka": {"brokers": "no-port"}}}, "brokers"),
    ({"console": {**ON["console"], "port": "http"}}, "port"),
    ({"console": {**ON["console"], "token": {"value": "s3cret"}}}, "value"),      # no inline tokens
    ({"console": {**ON["console"], "service": {"type": "ExternalName"}}}, "type"),
    ({"console": {**ON["console"], "replicas": 3}}, "replicas"),
])
def test_bad_values_fail_at_install(values, where):
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as e:
        chart.render(values, name="otus", namespace="otus-system", is_install=True)
    assert where in str(e.value)
