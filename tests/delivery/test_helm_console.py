"""The chart's cluster-wide console (issue 17.4), rendered by Helm's own engine and validated against the
Kubernetes schemas: off by default; when on, a Deployment and a Service whose arguments `otus console`
itself accepts, least privilege (no service account token, non-root, read-only root, no capabilities,
resources); Kafka authentication as flags `otus console` takes, the SASL password and CA only from Secrets
mounted as files; no token Secret (the console's API is read-only)."""
from __future__ import annotations

import pytest

from .test_helm_chart import CHART, FOREIGN, KUBE, by_kind, helm, kubernetes_validate, render

ON = {"console": {"enabled": True, "kafka": {"brokers": "kafka-0.kafka:9092,kafka-1.kafka:9092"}}}
SASL = {"console": {**ON["console"], "kafka": {
    "brokers": "kafka-0.kafka:9093", "securityProtocol": "SASL_SSL",
    "sasl": {"mechanism": "SCRAM-SHA-512", "username": "otus-console",
             "passwordSecret": {"name": "otus-kafka-creds", "key": "pw"}},
    "tls": {"caSecret": {"name": "kafka-cluster-ca", "key": "ca.pem"}},
    "options": {"ssl.endpoint.identification.algorithm": "https"}}}}


def _console(docs: list[dict]) -> tuple[dict, dict]:
    deps = [d for d in by_kind(docs, "Deployment") if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "otus-console"]
    svcs = [s for s in by_kind(docs, "Service") if s["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "otus-console"]
    assert len(deps) == len(svcs) == 1, (deps, svcs)
    return deps[0], svcs[0]


def test_off_by_default():
    docs = render({})
    assert not [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "otus-console"]


@pytest.mark.parametrize("values", [ON, SASL, {"console": {**ON["console"], "kafka": {
    "brokers": "k:9092", "topic": "otus-edge", "fromBeginning": True},
    "service": {"type": "NodePort", "port": 8080}, "image": {"repository": "r/otus-agent", "tag": "9.9.9"},
    "nodeSelector": {"kubernetes.io/os": "linux"}, "podAnnotations": {"a": "b"}}, "imagePullSecrets": [{"name": "rc"}]}],
    ids=["on", "sasl", "options"])
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


def test_kafka_auth_reaches_the_console_and_the_password_only_as_a_mounted_file(tmp_path):
    """The values become `otus console` flags it parses into the kafka reporter's settings (KafkaAuth); the
    password file the flag names is where the Secret is mounted, read-only and not world-readable; no
    secret in the arguments or the environment."""
    from otus_agent.cli.main import build_parser
    from otus_agent.web.console import kafka_auth
    dep, _ = _console(render(SASL))
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = build_parser().parse_args(c["args"])
    auth = kafka_auth(args)
    assert auth.options == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                            "sasl.username": "otus-console", "ssl.ca.location": "/etc/otus/kafka-ca/ca.crt",
                            "ssl.endpoint.identification.algorithm": "https"}
    assert auth.password_env is None
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for path, secret, key, leaf in ((auth.password_file, "otus-kafka-creds", "pw", "password"),
                                    (auth.options["ssl.ca.location"], "kafka-cluster-ca", "ca.pem", "ca.crt")):
        directory, _, name = path.rpartition("/")
        m = mounts[directory]
        assert m["readOnly"] is True and name == leaf
        v = vols[m["name"]]["secret"]
        assert v["secretName"] == secret and v["items"] == [{"key": key, "path": leaf}]
    assert vols[mounts["/etc/otus/kafka-sasl"]["name"]]["secret"]["defaultMode"] & 0o007 == 0   # not world-readable
    assert not any("pw" in a.split("=")[-1] or "creds" in a for a in c["args"])
    assert "env" not in c and "envFrom" not in c
    # what the console does with it: the password read from the mounted file, into librdkafka's settings
    pw = tmp_path / "password"
    pw.write_text("hunter2\n")
    conf = auth.model_copy(update={"password_file": str(pw)}).client_conf()
    assert conf["sasl.password"] == "hunter2" and conf["sasl.mechanism"] == "SCRAM-SHA-512"


def test_no_token_secret_is_mounted():
    """The console's API is read-only: nothing would read a token, so the chart mounts none and refuses the
    old value."""
    dep, _ = _console(render(SASL))
    assert not [m for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                if "console" in m["mountPath"]]
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as e:
        chart.render({"console": {**ON["console"], "token": {"existingSecret": "t"}}}, name="otus",
                     namespace="otus-system", is_install=True)
    assert "token" in str(e.value)


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
    ({"console": {**ON["console"], "kafka": {"brokers": "k:9092", "sasl": {"password": "s3cret"}}}}, "password"),
    ({"console": {**ON["console"], "kafka": {"brokers": "k:9092", "options": {"sasl.password": "x"}}}}, "sasl.password"),
    ({"console": {**ON["console"], "kafka": {"brokers": "k:9092", "sasl": {"mechanism": "PLAIN"}}}}, "passwordSecret"),
    ({"console": {**ON["console"], "kafka": {"brokers": "k:9092", "securityProtocol": "TLS"}}}, "securityProtocol"),
    ({"console": {**ON["console"], "service": {"type": "ExternalName"}}}, "type"),
    ({"console": {**ON["console"], "replicas": 3}}, "replicas"),
])
def test_bad_values_fail_at_install(values, where):
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as e:
        chart.render(values, name="otus", namespace="otus-system", is_install=True)
    assert where in str(e.value)
