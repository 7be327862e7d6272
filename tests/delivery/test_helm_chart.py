"""The Helm chart, rendered and linted by Helm's own Go engine (helm-python-sdk), every object validated
against the Kubernetes schemas, for the defaults and each documented option."""
from __future__ import annotations

import json
import pathlib
import re

import pytest
import yaml

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "otus"
KUBE = "1.30.0"
# custom resources of other projects: kubernetes-validate has no schema for them
FOREIGN = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("cert-manager.io/v1", "Certificate"),
           ("cert-manager.io/v1", "Issuer"), ("kopf.dev/v1", "ClusterKopfPeering"), ("kopf.dev/v1", "KopfPeering")}

OPTIONS = {
    "defaults": {},
    "cert-manager": {"webhook": {"certManager": {"enabled": True}}},
    "cert-manager-issuer": {"webhook": {"certManager": {"enabled": True,
                                                        "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}},
    "no-webhook": {"webhook": {"enabled": False}},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "namespaces": {"operator": {"watchNamespaces": ["voip", "sbc"]}},
    "no-dashboard": {"grafana": {"dashboard": {"enabled": False}}},
    "agent-defaults": {"agent": {"image": {"repository": "registry.example/otus-agent", "tag": "1.2.3"},
                                 "tolerations": [{"key": "voip", "operator": "Exists", "effect": "NoSchedule"}]}},
    "scheduling": {"operator": {"nodeSelector": {"kubernetes.io/os": "linux"}, "postEvents": False,
                                "tolerations": [{"key": "infra", "operator": "Exists"}]},
                   "imagePullSecrets": [{"name": "regcred"}]},
}


def render(values: dict) -> list[dict]:
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name="otus", namespace="otus-system", is_install=True)
    docs = []
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_renders_valid_objects_and_lints(option):
    values = OPTIONS[option]
    docs = render(values)
    assert docs
    for d in docs:
        if (d["apiVersion"], d["kind"]) in FOREIGN:
            assert d["metadata"]["name"] and (d["spec"] if d["apiVersion"] != "kopf.dev/v1" else True)
            continue
        kubernetes_validate.validate(d, KUBE, strict=True)
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE}")
    assert not report["errors"], report
    assert not [m for m in report["messages"] if m["severity"] >= 2], report["messages"]


def _operator_args(docs: list[dict]) -> list[str]:
    dep = by_kind(docs, "Deployment")[0]
    return dep["spec"]["template"]["spec"]["containers"][0]["args"]


def test_defaults_least_privilege_and_args_the_operator_accepts():
    from otus_operator.main import _agent_defaults, build_parser
    docs = render({})
    dep = by_kind(docs, "Deployment")[0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert dep["spec"]["replicas"] == 1
    args = build_parser().parse_args(_operator_args(docs))
    assert args.webhook_service == "otus-webhook" and args.webhook_namespace == "otus-system"
    d = _agent_defaults(args)
    assert d.image == "ghcr.io/otus-voip/otus-agent:0.1.0" and d.resources["limits"]["memory"] == "1Gi"
    svc = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "otus-webhook")
    assert svc["spec"]["ports"][0]["port"] == 443 and svc["spec"]["ports"][0]["targetPort"] == "webhook"
    assert not by_kind(docs, "ServiceMonitor") and by_kind(docs, "ConfigMap")


def test_options_reach_the_operator():
    from otus_operator.main import _agent_defaults, build_parser
    a = build_parser().parse_args(_operator_args(render(OPTIONS["namespaces"])))
    assert a.namespace == ["voip", "sbc"]
    a = build_parser().parse_args(_operator_args(render(OPTIONS["no-webhook"])))
    assert a.no_webhook
    a = build_parser().parse_args(_operator_args(render({"operator": {"dropAlertRatio": 0.05}})))
    assert a.drop_alert_ratio == 0.05
    from otus_operator.alerts import DROP_ALERT_RATIO
    assert build_parser().parse_args(_operator_args(render({}))).drop_alert_ratio == DROP_ALERT_RATIO
    assert [s["metadata"]["name"] for s in by_kind(render(OPTIONS["no-webhook"]), "Service")] == \
        ["otus-operator-metrics"]
    docs = render(OPTIONS["cert-manager"])
    a = build_parser().parse_args(_operator_args(docs))
    cert = by_kind(docs, "Certificate")[0]
    assert a.webhook_cert_dir == "/etc/otus/webhook-certs"
    assert cert["spec"]["dnsNames"][0] == "otus-webhook.otus-system.svc" and by_kind(docs, "Issuer")
    assert not by_kind(render(OPTIONS["cert-manager-issuer"]), "Issuer")
    d = _agent_defaults(build_parser().parse_args(_operator_args(render(OPTIONS["agent-defaults"]))))
    assert d.image == "registry.example/otus-agent:1.2.3" and d.tolerations[0]["key"] == "voip"
    docs = render(OPTIONS["service-monitor"])
    sm = by_kind(docs, "ServiceMonitor")[0]
    assert sm["metadata"]["labels"]["release"] == "prom" and sm["spec"]["namespaceSelector"] == {"any": True}
    assert sm["spec"]["endpoints"][0]["port"] == "otus-metrics"
    op_sm = by_kind(docs, "ServiceMonitor")[1]
    op_svc = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "otus-operator-metrics")
    assert op_sm["spec"]["selector"]["matchLabels"].items() <= op_svc["metadata"]["labels"].items()
    assert op_svc["spec"]["ports"][0]["name"] == op_sm["spec"]["endpoints"][0]["port"] == "metrics"
    a = build_parser().parse_args(_operator_args(docs))
    assert a.metrics_port == op_svc["spec"]["ports"][0]["port"] == 8081


def test_service_monitor_selects_the_operators_metrics_services():
    from otus_operator import render as r
    sm = by_kind(render(OPTIONS["service-monitor"]), "ServiceMonitor")[0]
    svc = r.metrics_service("edge-sip", "voip", "uid")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["name"] == sm["spec"]["endpoints"][0]["port"]


@pytest.mark.parametrize("values,where", [
    ({"operator": {"replicas": 4}}, "replicas"),
    ({"webhook": {"port": "https"}}, "port"),
    ({"operator": {"sidecar": "maybe"}}, "sidecar"),
    ({"operator": {"dropAlertRatio": 1.5}}, "dropAlertRatio"),
    ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "watchNamespaces"),
    ({"agent": {"imag": {}}}, "imag"),
    ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "interval"),
])
def test_bad_values_fail_at_install(values, where):
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as e:
        chart.render(values, name="otus", namespace="otus-system", is_install=True)
    assert where in str(e.value)


def test_chart_copies_match_their_sources():
    from otus_operator import crd, rbac
    assert (CHART / "crds" / "capturetask.yaml").read_text() == crd.dump_yaml(), \
        "cp crds/capturetask.yaml helm/otus/crds/"
    assert (CHART / "files" / "operator-rules.yaml").read_text() == rbac.dump_yaml(), \
        "python -m otus_operator.rbac > helm/otus/files/operator-rules.yaml"
    assert (CHART / "files" / "operator-namespace-rules.yaml").read_text() == \
        rbac.dump_yaml(rbac.OWN_NAMESPACE_RULES), \
        "python -m otus_operator.rbac own-namespace > helm/otus/files/operator-namespace-rules.yaml"
    docs = render({})
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    assert role["rules"] == rbac.rules(**rbac.release_names("otus"))
    assert (CHART / "files" / "operator-watch-rules.yaml").read_text() == rbac.dump_yaml(rbac.WATCH_RULES), \
        "python -m otus_operator.rbac watch > helm/otus/files/operator-watch-rules.yaml"
    own = next(d for d in docs if d["kind"] == "Role")
    assert own["metadata"]["namespace"] == "otus-system"
    assert own["rules"] == rbac.own_namespace_rules(**rbac.release_names("otus"))


def test_two_replicas_peer_with_probes_that_mean_something():
    """replicas: 2 (issue 12): both peer through the chart's peering object, one active; readiness is
    the operator's /readyz, liveness kopf's; the rollout never has both old pods gone at once."""
    from otus_operator.main import build_parser
    docs = render({"operator": {"replicas": 2}})
    dep = by_kind(docs, "Deployment")[0]
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(c["args"])
    peering = by_kind(docs, "ClusterKopfPeering")[0]
    assert args.peering == peering["metadata"]["name"] == "otus"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "readyz"}
    assert args.readiness.endswith(f":{ports['readyz']}")
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert args.liveness.endswith(f":{ports['healthz']}/healthz")
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    ns = render({"operator": {"replicas": 2, "watchNamespaces": ["voip", "sbc"]}})
    assert not by_kind(ns, "ClusterKopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in by_kind(ns, "KopfPeering")) == ["sbc", "voip"]


def test_watch_namespaces_scope_the_operator_to_roles_in_those_namespaces():
    """Least privilege (issue 13): with watchNamespaces, no cluster-wide rights on DaemonSets, RBAC objects,
    ConfigMaps, Services, pods or CaptureTasks: a Role in each watched namespace."""
    from otus_operator import rbac
    names = rbac.release_names("otus")
    docs = render(OPTIONS["namespaces"])
    cr = by_kind(docs, "ClusterRole")[0]
    assert cr["rules"] == rbac.cluster_rules(**names)
    for res in ("daemonsets", "roles", "rolebindings", "configmaps", "pods", "capturetasks"):
        assert not any(res in r["resources"] for r in cr["rules"]), res
    roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role")}
    assert set(roles) == {"voip", "sbc", "otus-system"}
    for ns in ("voip", "sbc"):
        assert roles[ns]["rules"] == rbac.watch_rules(**names)
        rb = next(b for b in by_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == ns)
        assert rb["roleRef"]["name"] == roles[ns]["metadata"]["name"]
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "otus-operator", "namespace": "otus-system"}]


def test_uninstall_leaves_no_webhook_configuration_behind():
    """Issue 13.5/13.8: the chart owns the MutatingWebhookConfiguration (a release object, so `helm
    uninstall` deletes it; no hook, no keep policy), the operator only patches its CA in and creates no
    cluster-scoped object itself (tests/operator check its calls); there is no validating configuration."""
    docs = render({})
    cfg = by_kind(docs, "MutatingWebhookConfiguration")
    assert len(cfg) == 1 and not by_kind(docs, "ValidatingWebhookConfiguration")
    meta = cfg[0]["metadata"]
    assert "helm.sh/hook" not in meta.get("annotations", {}) and "helm.sh/resource-policy" not in \
        meta.get("annotations", {})
    from otus_operator.main import build_parser
    args = build_parser().parse_args(_operator_args(docs))
    assert args.webhook_config == meta["name"] == "otus-sidecar.otus.io"
    hook = cfg[0]["webhooks"][0]
    assert hook["clientConfig"]["service"] == {"name": "otus-webhook", "namespace": "otus-system", "port": 443,
                                               "path": "/inject"}
    assert hook["timeoutSeconds"] == 5 and hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "NoneOnDryRun"
    expr = hook["namespaceSelector"]["matchExpressions"]
    assert {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
            "values": ["kube-system", "kube-node-lease", "kube-public", "otus-system"]} in expr
    assert hook["objectSelector"]["matchExpressions"] == [{"key": "otus.io/inject", "operator": "NotIn",
                                                            "values": ["false"]}]
    secret = next(d for d in by_kind(docs, "Secret") if d["metadata"]["name"] == args.webhook_ca_secret)
    assert "data" not in secret                             # the operator fills it in
    scoped = by_kind(render(OPTIONS["namespaces"]), "MutatingWebhookConfiguration")[0]["webhooks"][0]
    assert {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["voip", "sbc"]} in \
        scoped["namespaceSelector"]["matchExpressions"]
    cm = by_kind(render(OPTIONS["cert-manager"]), "MutatingWebhookConfiguration")[0]
    assert cm["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "otus-system/otus-webhook"
    assert not by_kind(render(OPTIONS["no-webhook"]), "MutatingWebhookConfiguration")


def test_helm_test_hooks_check_crd_operator_and_webhook():
    from otus_operator import selftest
    chart = helm.Chart.load(str(CHART))
    out = chart.render({}, name="otus", namespace="otus-system", is_install=True)
    docs = [d for p, t in out.items() if "/tests/" in p for d in yaml.safe_load_all(t) if d]
    pods = by_kind(docs, "Pod")
    assert {p["spec"]["containers"][0]["command"][-1] for p in pods} == {"crd-served", "operator-ready",
                                                                          "webhook-answers"}
    for d in docs:
        assert d["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert d["metadata"].get("namespace") == "otus-system"       # nothing cluster-scoped to leave behind
        kubernetes_validate.validate(d, KUBE, strict=True)
    for p in pods:
        assert p["spec"]["containers"][0]["command"][:3] == ["python", "-m", "otus_operator.selftest"]
        assert p["metadata"]["labels"]["otus.io/inject"] == "false"
        assert p["spec"]["containers"][0]["command"][-1] in selftest.__doc__
    env = {e["name"]: e["value"] for e in pods[0]["spec"]["containers"][0]["env"]}
    svc_names = {s["metadata"]["name"] for s in by_kind(render({}), "Service")}
    assert env["OTUS_METRICS_SERVICE"] in svc_names and env["OTUS_WEBHOOK_SERVICE"] in svc_names
    no_hook = chart.render(OPTIONS["no-webhook"], name="otus", namespace="otus-system", is_install=True)
    assert "webhook-answers" not in no_hook["otus/templates/tests/checks.yaml"]


def test_agent_pull_policy_reaches_the_agents():
    from otus_operator import render as r
    from otus_operator.crd import CaptureTaskSpec
    from otus_operator.main import _agent_defaults, build_parser
    d = _agent_defaults(build_parser().parse_args(_operator_args(render({"agent": {"image": {
        "repository": "r/agent", "pullPolicy": "Always"}}}))))
    spec = CaptureTaskSpec.model_validate({"target": {"nodes": {}}})
    assert r.agent_container("t", spec, d)["imagePullPolicy"] == "Always"


def test_dashboard_queries_name_real_metrics():
    docs = render({})
    cm = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["otus.json"])
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("capture rate", "drops by stage", "methods", "class", "spool"):
        assert topic in titles.replace("method", "methods") or topic in titles
    source = (ROOT / "src" / "otus_agent" / "observability" / "metrics.py").read_text()
    families = set(re.findall(r'MetricFamily\(\s*"(otus_[a-z_]+)"', source))
    used = {re.sub(r"_(total|bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"otus_[a-z_]+", e)}
    assert used and used <= families, used - families


def test_notes_tell_how_to_create_a_first_task():
    chart = helm.Chart.load(str(CHART))
    notes = chart.render({}, name="otus", namespace="otus-system", is_install=True)["otus/templates/NOTES.txt"]
    assert "kind: CaptureTask" in notes and "kubectl wait" in notes
    block = notes.split("cat <<'YAML' | kubectl apply -f -\n", 1)[1].split("  YAML", 1)[0]
    task = yaml.safe_load("\n".join(line[2:] for line in block.splitlines()))
    from otus_operator.crd import CaptureTaskSpec
    CaptureTaskSpec.model_validate(task["spec"])
