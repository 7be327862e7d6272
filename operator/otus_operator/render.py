"""Pure functions: a CaptureTask in, the Kubernetes objects that run it out.

No API calls here, so everything is testable without a cluster; the kopf
handlers (not built yet) will call these and apply the result.

One CaptureTask owns one DaemonSet (nodes mode): tasks differ in images,
resources, tolerations and node selectors, and one DaemonSet per task lets
each be suspended, updated and deleted (owner reference + garbage collection)
on its own.  The agent runs as UID 0 with every capability dropped except
NET_RAW and NET_ADMIN, no privilege escalation and a read-only root file
system: Kubernetes grants added capabilities to non-root processes only
through file capabilities, which a Python interpreter should not carry.
"""
from __future__ import annotations

import hashlib
import json

import yaml

from otus_agent.spec import TaskSpec  # the shared contract (no capture code behind it)

from .crd import GROUP, KIND, VERSION, CaptureTaskSpec, duration_seconds

LABEL = "otus.io/capturetask"
AGENT_CONFIG = "/etc/otus/task.yaml"



def task_spec(name: str, spec: CaptureTaskSpec) -> dict:
    """The agent's TaskSpec for this CaptureTask (validated by the agent's own model)."""
    reporters: list[dict] = []
    if spec.outputs.kafka is not None:
        k = spec.outputs.kafka
        r = {"type": "kafka", "brokers": k.brokers, "topic": k.topic, "options": dict(k.options)}
        if k.passwordSecretRef is not None:
            r["password_env"] = "OTUS_KAFKA_SASL_PASSWORD"
        reporters.append(r)
    if spec.outputs.console or not reporters:
        reporters.append({"type": "console"})
    t = {
        "id": name[:63],
        "interfaces": spec.capture.interfaces,
        "bpf_filter": spec.capture.bpfFilter,
        "snaplen": spec.capture.snaplen,
        "workers": spec.capture.workers,
        "promiscuous": spec.capture.promiscuous,
        "sip": {"ports": spec.sip.ports, "correlation_headers": spec.sip.correlationHeaders,
                "discard_methods": spec.sip.discardMethods, "call_summaries": spec.sip.callSummaries,
                "redact_authorization": spec.sip.redactAuthorization},
        "reporters": reporters,
        "limits": {"duration_s": duration_seconds(spec.limits.duration), "max_packets": spec.limits.maxPackets},
    }
    return TaskSpec.model_validate(t).model_dump(mode="json", exclude={"interface"})


def _owner(name: str, uid: str) -> list[dict]:
    return [{"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": name, "uid": uid, "controller": True,
             "blockOwnerDeletion": True}]


def configmap(name: str, namespace: str, uid: str, spec: CaptureTaskSpec) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"otus-{name}", "namespace": namespace, "labels": {LABEL: name},
                         "ownerReferences": _owner(name, uid)},
            "data": {"task.yaml": yaml.safe_dump(task_spec(name, spec), sort_keys=False)}}


def agent_container(name: str, spec: CaptureTaskSpec) -> dict:
    t = task_spec(name, spec)
    args = ["run", "--filter", t["bpf_filter"] or "", "--workers", str(t["workers"]), "--snaplen", str(t["snaplen"])]
    for i in t["interfaces"]:
        args += ["--interface", i]
    if spec.limits.duration:
        args += ["--duration", str(int(duration_seconds(spec.limits.duration)))]
    if spec.outputs.kafka is not None:
        args += ["--kafka-brokers", ",".join(spec.outputs.kafka.brokers), "--kafka-topic",
                 spec.outputs.kafka.topic.replace("{task}", name), "--spool-dir", "/var/lib/otus/spool"]
        for k, v in spec.outputs.kafka.options.items():
            args += ["--kafka-option", f"{k}={v}"]
        if spec.outputs.console:
            args.append("--console")
    if spec.outputs.hep is not None:
        args += ["--hep", spec.outputs.hep.address, "--hep-proto", spec.outputs.hep.proto]
    if spec.sip.callSummaries:
        args.append("--calls")
    env = [{"name": "OTUS_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    ref = spec.outputs.kafka.passwordSecretRef if spec.outputs.kafka is not None else None
    if ref is not None:
        env.append({"name": "OTUS_KAFKA_SASL_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return {
        "name": "otus-agent",
        "image": spec.agent.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["otus"],
        "args": args,
        "env": env,
        "resources": spec.agent.resources,
        "securityContext": {
            "runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "privileged": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "spool", "mountPath": "/var/lib/otus"}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def daemonset(name: str, namespace: str, uid: str, spec: CaptureTaskSpec) -> dict:
    if spec.target.nodes is None:
        raise ValueError("daemonset: the CaptureTask does not target nodes")
    container = agent_container(name, spec)
    digest = hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]
    labels = {LABEL: name, "app.kubernetes.io/name": "otus-agent", "app.kubernetes.io/managed-by": "otus-operator"}
    pod_spec = {
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "serviceAccountName": "otus-agent",
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 45,
        "nodeSelector": spec.target.nodes.selector or None,
        "tolerations": spec.agent.tolerations or None,
        "containers": [container],
        "volumes": [{"name": "spool", "hostPath": {"path": f"/var/lib/otus/{namespace}/{name}",
                                                  "type": "DirectoryOrCreate"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    pod_spec = {k: v for k, v in pod_spec.items() if v is not None}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": f"otus-{name}", "namespace": namespace, "labels": labels,
                     "ownerReferences": _owner(name, uid)},
        "spec": {
            "selector": {"matchLabels": {LABEL: name}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {"metadata": {"labels": labels, "annotations": {"otus.io/config-hash": digest}},
                         "spec": pod_spec},
        },
    }


def sidecar_patch(name: str, spec: CaptureTaskSpec, native: bool = True) -> list[dict]:
    """JSON patch adding the capture agent to a pod: a native sidecar (an init container
    with restartPolicy Always, Kubernetes >= 1.29) or a regular container."""
    c = agent_container(name, spec)
    c["volumeMounts"] = [{"name": "otus-spool", "mountPath": "/var/lib/otus"}, {"name": "otus-tmp", "mountPath": "/tmp"}]
    vols = [{"op": "add", "path": "/spec/volumes/-", "value": {"name": "otus-spool", "emptyDir": {"sizeLimit": "1Gi"}}},
            {"op": "add", "path": "/spec/volumes/-", "value": {"name": "otus-tmp", "emptyDir": {"sizeLimit": "64Mi"}}}]
    if native:
        c["restartPolicy"] = "Always"
        return [{"op": "add", "path": "/spec/initContainers/-", "value": c}] + vols
    return [{"op": "add", "path": "/spec/containers/-", "value": c}] + vols
