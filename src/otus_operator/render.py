"""Pure functions: a CaptureTask in, the Kubernetes objects that run it out.

No API calls here, so everything is testable without a cluster; the kopf
handlers (handlers.py) call these and apply the result.

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
from dataclasses import dataclass, field

import yaml

from otus_spec import TaskSpec  # the shared contract (no capture code behind it)

from .crd import GROUP, KIND, VERSION, CaptureTaskSpec, duration_seconds
from .rbac import AGENT_IDENTITY_ROLE

LABEL = "otus.io/capturetask"
MANAGED = {"app.kubernetes.io/managed-by": "otus-operator"}
CONTAINER = "otus-agent"
TASK_DIR = "/etc/otus/task"
METRICS_PORT = 9091                       # sidecars: the pod's own network namespace, no conflict
AGENT_PORTS = range(9091, 9091 + 900)     # DaemonSet agents: host ports (hostNetwork), one per task


def allocate_port(used: set[int]) -> int:
    """The lowest agent host port no other DaemonSet-mode task holds.

    hostNetwork pods' container ports are host ports: two tasks' agents asking for the same one on
    a node leave the second Pending ("didn't have free ports", issue 13.3), and without the
    declaration they would collide at bind().  Every task gets a port of its own, recorded in its
    status (agentPort), so a node runs as many tasks as the range holds."""
    for p in AGENT_PORTS:
        if p not in used:
            return p
    raise ValueError(f"no free agent port in {AGENT_PORTS.start}-{AGENT_PORTS.stop - 1}")
PASSWORD_ENV = "OTUS_KAFKA_SASL_PASSWORD"


@dataclass(frozen=True)
class AgentDefaults:
    """What a CaptureTask leaves unset about its agents: the operator's settings (Helm values)."""
    image: str = "ghcr.io/otus-voip/otus-agent:0.1.0"
    resources: dict = field(default_factory=lambda: {"requests": {"cpu": "200m", "memory": "256Mi"},
                                                     "limits": {"cpu": "2", "memory": "1Gi"}})
    tolerations: tuple = ()
    pull_policy: str = "IfNotPresent"


DEFAULTS = AgentDefaults()


def task_spec(name: str, spec: CaptureTaskSpec) -> dict:
    """The agent's TaskSpec for this CaptureTask (validated by the agent's own model)."""
    reporters: list[dict] = []
    if spec.outputs.kafka is not None:
        k = spec.outputs.kafka
        r = {"type": "kafka", "brokers": k.brokers, "topic": k.topic.replace("{task}", name),
             "options": dict(k.options)}
        if k.passwordSecretRef is not None:
            r["password_env"] = PASSWORD_ENV
        reporters.append(r)
    if spec.outputs.hep is not None:
        reporters.append({"type": "hep", "address": spec.outputs.hep.address, "proto": spec.outputs.hep.proto})
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
                "redact_authorization": spec.sip.redactAuthorization,
                **({"match": spec.sip.match.task_options()} if spec.sip.match is not None else {})},
        "parsers": ["sip"] + [n for n, on in (("rtp", spec.media.enabled), ("flow", spec.flow.enabled),
                                              ("dns", spec.dns.enabled), ("detect", spec.detect.enabled)) if on],
        "media": {"interim_s": spec.media.interimSeconds, "idle_timeout_s": spec.media.idleTimeoutSeconds,
                  "max_streams": spec.media.maxStreams, "heuristic": spec.media.heuristic},
        "flow": {"max_flows": spec.flow.maxFlows, "udp_timeout_s": spec.flow.udpTimeoutSeconds,
                 "tcp_established_timeout_s": spec.flow.tcpEstablishedTimeoutSeconds,
                 "report_interval_s": spec.flow.reportIntervalSeconds},
        "dns": {"ports": spec.dns.ports, "top_domains": spec.dns.topDomains, "cache_entries": spec.dns.cacheEntries},
        "detect": spec.detect.task_options(),
        "identity": spec.identity.task_options(),
        "reporters": reporters,
        "limits": {"duration_s": duration_seconds(spec.limits.duration), "max_packets": spec.limits.maxPackets},
    }
    return TaskSpec.model_validate(t).model_dump(mode="json", exclude={"interface"})


def _owner(name: str, uid: str) -> list[dict]:
    return [{"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": name, "uid": uid, "controller": True,
             "blockOwnerDeletion": True}]


def _meta(name: str, namespace: str, uid: str, task: str) -> dict:
    return {"name": name, "namespace": namespace, "labels": {LABEL: task, **MANAGED},
            "ownerReferences": _owner(task, uid)}


def child_name(task: str) -> str:
    """Name of the ConfigMap, DaemonSet, ServiceAccount, Role and RoleBinding of a task."""
    return f"otus-{task}"[:63].rstrip("-")


def configmap(name: str, namespace: str, uid: str, spec: CaptureTaskSpec, suspended: bool = False) -> dict:
    """The task file the agents mount; ``suspend`` tells running agents to stop capturing."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(child_name(name), namespace, uid, name),
            "data": {"task.yaml": yaml.safe_dump(task_spec(name, spec), sort_keys=False),
                     "suspend": "true" if suspended else "false"}}


def _field(path: str) -> dict:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def agent_container(name: str, spec: CaptureTaskSpec, defaults: AgentDefaults = DEFAULTS,
                    port: int = METRICS_PORT) -> dict:
    """The agent: runs the mounted task file, follows its changes, patches its status entry."""
    env = [{"name": "OTUS_TASK", "value": name},
           {"name": "OTUS_TASK_NAMESPACE", **_field("metadata.namespace")},
           {"name": "OTUS_AGENT_NAME", **_field("metadata.name")},
           {"name": "OTUS_POD", **_field("metadata.name")},
           {"name": "OTUS_NODE", **_field("spec.nodeName")},
           # the records' capture point and, in sidecar mode, the pod's own identity (kube/identity.py)
           {"name": "OTUS_MODE", "value": "daemonset" if spec.target.nodes is not None else "sidecar"},
           {"name": "OTUS_POD_NAMESPACE", **_field("metadata.namespace")},
           {"name": "OTUS_POD_IPS", **_field("status.podIPs")}]
    ref = spec.outputs.kafka.passwordSecretRef if spec.outputs.kafka is not None else None
    if ref is not None:
        env.append({"name": PASSWORD_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return {
        "name": CONTAINER,
        "image": spec.agent.image or defaults.image,
        "imagePullPolicy": defaults.pull_policy,
        "command": ["otus"],
        "args": ["agent", "--task-file", f"{TASK_DIR}/task.yaml", "--state-dir", "/var/lib/otus",
                 "--metrics-listen", f":{port}"],
        "env": env,
        "ports": [{"name": "otus-metrics", "containerPort": port, "protocol": "TCP"}],
        "resources": spec.agent.resources if spec.agent.resources is not None else defaults.resources,
        "securityContext": {
            "runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "privileged": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "otus-task", "mountPath": TASK_DIR, "readOnly": True},
                         {"name": "otus-spool", "mountPath": "/var/lib/otus"},
                         {"name": "otus-tmp", "mountPath": "/tmp"}],
    }


def daemonset(name: str, namespace: str, uid: str, spec: CaptureTaskSpec, defaults: AgentDefaults = DEFAULTS,
              port: int = METRICS_PORT) -> dict:
    if spec.target.nodes is None:
        raise ValueError("daemonset: the CaptureTask does not target nodes")
    container = agent_container(name, spec, defaults, port)
    tolerations = spec.agent.tolerations if spec.agent.tolerations is not None else list(defaults.tolerations)
    # the hash covers the container only: task changes reach the agents through the
    # mounted ConfigMap without restarting them; image or resource changes roll the pods
    digest = hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]
    labels = {LABEL: name, "app.kubernetes.io/name": "otus-agent", **MANAGED}
    pod_spec = {
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "serviceAccountName": child_name(name),
        "terminationGracePeriodSeconds": 45,
        "nodeSelector": spec.target.nodes.selector or None,
        "tolerations": tolerations or None,
        "containers": [container],
        "volumes": [{"name": "otus-task", "configMap": {"name": child_name(name)}},
                    {"name": "otus-spool", "hostPath": {"path": f"/var/lib/otus/{namespace}/{name}",
                                                        "type": "DirectoryOrCreate"}},
                    {"name": "otus-tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    pod_spec = {k: v for k, v in pod_spec.items() if v is not None}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {**_meta(child_name(name), namespace, uid, name), "labels": labels},
        "spec": {
            "selector": {"matchLabels": {LABEL: name}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {"metadata": {"labels": labels, "annotations": {"otus.io/agent-hash": digest}},
                         "spec": pod_spec},
        },
    }


def metrics_service(name: str, namespace: str, uid: str, port: int = METRICS_PORT) -> dict:
    """A headless Service over the task's agents (DaemonSet pods and injected pods carry LABEL), so a
    ServiceMonitor selecting ``app.kubernetes.io/component: agent-metrics`` finds every agent."""
    meta = _meta(child_name(name) + "-metrics" if len(child_name(name)) <= 55 else child_name(name)[:55] + "-metrics",
                 namespace, uid, name)
    meta["labels"]["app.kubernetes.io/component"] = "agent-metrics"
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"clusterIP": "None", "selector": {LABEL: name},
                     "ports": [{"name": "otus-metrics", "port": port, "targetPort": "otus-metrics",
                                "protocol": "TCP"}]}}


def agent_rbac(name: str, namespace: str, uid: str, sidecar: bool, service_accounts=(),
               identity: bool = True) -> list[dict]:
    """What an agent may do: read its own CaptureTask and its task file, patch its status -- nothing else.

    DaemonSet agents get a ServiceAccount of their own.  Sidecars run under their pod's
    ServiceAccount: the binding names exactly the service accounts of the pods that carry this
    task's agent (``service_accounts``; the webhook adds each injected pod's account before the
    pod exists, the status loop those of pods it attached to), never the namespace's whole
    ``system:serviceaccounts:<ns>`` group, so other workloads of the namespace cannot read the
    task or forge its status.  Node agents also read pods and Services cluster-wide for the records'
    identity, unless the task turns that off (``identity``: ``spec.identity.enabled`` not false).
    """
    n = child_name(name)
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(n, namespace, uid, name),
            "rules": [{"apiGroups": [GROUP], "resources": ["capturetasks"], "resourceNames": [name],
                       "verbs": ["get"]},
                      {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [n], "verbs": ["get"]},
                      {"apiGroups": [GROUP], "resources": ["capturetasks/status"], "resourceNames": [name],
                       "verbs": ["get", "patch"]}]}
    subjects = [sa_subject(sa, namespace) for sa in sorted(set(service_accounts))] if sidecar \
        else [sa_subject(n, namespace)]
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": _meta(n, namespace, uid, name),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n},
               "subjects": subjects}
    objs = [role, binding]
    if not sidecar:
        objs.insert(0, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(n, namespace, uid, name)})
        if identity:
            objs.append(agent_identity_binding(name, namespace))
    return objs


def identity_binding_name(name: str, namespace: str) -> str:
    """The ClusterRoleBinding of a DaemonSet task's agents (cluster-scoped: the namespace is in the name)."""
    return f"otus-agent-identity-{namespace}-{name}"[:253].rstrip("-")


def agent_identity_binding(name: str, namespace: str) -> dict:
    """A node agent's cluster-wide read of pods and Services (get/list/watch, the ClusterRole
    ``rbac.AGENT_IDENTITY_ROLE`` the chart installs) for the records' identity.  Cluster-scoped, so
    it cannot be owned by the namespaced CaptureTask (the garbage collector ignores such owners):
    the operator deletes it with the task, and when the task turns to sidecar mode, where each agent
    knows its own pod from the downward API and watches nothing."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": identity_binding_name(name, namespace),
                         "labels": {LABEL: name, "otus.io/capturetask-namespace": namespace, **MANAGED}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AGENT_IDENTITY_ROLE},
            "subjects": [sa_subject(child_name(name), namespace)]}


def sa_subject(sa: str, namespace: str) -> dict:
    return {"kind": "ServiceAccount", "name": sa, "namespace": namespace}


def pod_service_account(pod: dict) -> str:
    """The ServiceAccount a pod runs as (the API server's default is "default")."""
    ps = pod.get("spec") or {}
    return ps.get("serviceAccountName") or ps.get("serviceAccount") or "default"


def has_agent(pod: dict) -> bool:
    ps = pod.get("spec") or {}
    return any(c.get("name") == CONTAINER for c in (ps.get("initContainers") or []) + (ps.get("containers") or [])
               + (ps.get("ephemeralContainers") or []))


def ephemeral_container(name: str, namespace: str, spec: CaptureTaskSpec, pod: dict,
                        defaults: AgentDefaults = DEFAULTS) -> dict:
    """The agent as an ephemeral container for a pod that already runs (no restart).

    Ephemeral containers cannot add volumes, ports or resources: the agent reads
    its task from the ConfigMap through the API (``--task-configmap``) with the
    pod's service-account token (mounted when the pod has one), keeps its state
    in /tmp, and serves no metrics port.
    """
    c = agent_container(name, spec, defaults)
    for k in ("ports", "resources", "volumeMounts"):
        c.pop(k, None)
    c["args"] = ["agent", "--task-configmap", f"{namespace}/{child_name(name)}", "--state-dir", "/tmp/otus",
                 "--metrics-listen", ""]
    c["securityContext"] = {**c["securityContext"], "readOnlyRootFilesystem": False}
    token = next((v["name"] for v in ((pod.get("spec") or {}).get("volumes") or [])
                  if any("serviceAccountToken" in src for src in (v.get("projected") or {}).get("sources", []))), None)
    if token is not None:
        c["volumeMounts"] = [{"name": token, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                              "readOnly": True}]
    return c


def inject(pod: dict, name: str, spec: CaptureTaskSpec, native: bool = True,
           defaults: AgentDefaults = DEFAULTS) -> dict:
    """The pod spec fields to replace so that the pod carries the capture agent.

    A native sidecar (an init container with restartPolicy Always, Kubernetes
    >= 1.29) starts before and stops after the application; otherwise the agent
    is a regular container.  Both share the pod's network namespace.  Whole
    lists are returned (JSON patch 'add .../-' fails on absent lists).
    """
    ps = pod.get("spec") or {}
    c = agent_container(name, spec, defaults)
    vols = [{"name": "otus-task", "configMap": {"name": child_name(name)}},
            {"name": "otus-spool", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "otus-tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    out = {"volumes": list(ps.get("volumes") or []) + vols}
    if native:
        c["restartPolicy"] = "Always"
        out["initContainers"] = list(ps.get("initContainers") or []) + [c]
    else:
        out["containers"] = list(ps.get("containers") or []) + [c]
    return out


def selects(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    """matchLabels semantics: every selector label present with the same value."""
    labels = labels or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
