"""The operator's own permissions, as data: one source for the Helm chart and the docs.

`python -m otus_operator.rbac > helm/otus/files/operator-rules.yaml` writes
them; a test checks the chart's copy matches.  Each rule names why it exists.
Agents get a Role reaching only their CaptureTask (render.agent_rbac), which the
operator may only grant because it holds those verbs itself.  Node agents
(DaemonSet tasks) also read pods and Services cluster-wide, for the records'
identity (otus_agent/kube/identity.py): exactly get/list/watch of those two,
in the ClusterRole ``AGENT_IDENTITY_ROLE`` the chart installs
(files/agent-identity-rules.yaml, from ``AGENT_IDENTITY_RULES``), bound to each
DaemonSet task's ServiceAccount by a ClusterRoleBinding the operator renders
(render.agent_identity_binding) and may create because it holds ``bind`` on
that one ClusterRole.
"""
from __future__ import annotations

import sys

from .crd import GROUP

_CRUD = ["get", "list", "watch", "create", "update", "patch", "delete"]

# What the operator does in the namespaces it watches: all of them (in the ClusterRole), or, with
# operator.watchNamespaces, in a Role of each watched namespace only.
WATCH_RULES: list[tuple[str, dict]] = [
    ("CaptureTasks: watch, finalizers and annotations",
     {"apiGroups": [GROUP], "resources": ["capturetasks"], "verbs": ["get", "list", "watch", "patch", "update"]}),
    ("CaptureTask status: roll-up",
     {"apiGroups": [GROUP], "resources": ["capturetasks/status"], "verbs": ["get", "patch", "update"]}),
    ("agents in nodes mode",
     {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": _CRUD}),
    ("task files, agent service accounts, agent metrics Services",
     {"apiGroups": [""], "resources": ["configmaps", "serviceaccounts", "services"], "verbs": _CRUD}),
    ("per-task agent permissions",
     {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": _CRUD}),
    ("sidecar mode: which pods carry an agent",
     {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}),
    ("sidecar mode, attachExisting: the agent as an ephemeral container in running pods",
     {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["patch"]}),
    ("events on CaptureTasks",
     {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}),
]

# The node agents' identity watch (kube/identity.py: list, then watch, of pods and Services in all
# namespaces); get/list/watch and nothing else, in a ClusterRole of this fixed name.
AGENT_IDENTITY_ROLE = "otus-agent-identity"
AGENT_IDENTITY_RULES: list[tuple[str, dict]] = [
    ("node agents: which pod, workload, node or Service holds an address (list+watch cluster-wide)",
     {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]}),
]

# What only a cluster-wide grant can give (cluster-scoped objects), always in the ClusterRole.
OPERATOR_RULES: list[tuple[str, dict]] = [
    ("kopf: namespace and resource discovery",
     {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}),
    ("kopf: resource discovery",
     {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
      "verbs": ["get", "list", "watch"]}),
    ("the chart's sidecar-injection webhook configuration: the operator fills in its CA bundle",
     {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
      "resourceNames": ["$webhook"], "verbs": ["get", "patch"]}),
    ("kopf peering (two replicas, one active): see the peers",
     {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings", "kopfpeerings"], "verbs": ["list", "watch"]}),
    ("kopf peering: keep-alives in its own peering object only",
     {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings", "kopfpeerings"],
      "resourceNames": ["$peering"], "verbs": ["get", "patch"]}),
    ("node agents' identity watch: one ClusterRoleBinding per DaemonSet task (names vary per task, so "
     "not restricted by name; it can bind only roles the operator holds, or the next rule's)",
     {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterrolebindings"],
      "verbs": ["get", "create", "patch", "delete"]}),
    ("... to the agents' identity ClusterRole, which the operator may bind without holding its rights",
     {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
      "resourceNames": [AGENT_IDENTITY_ROLE], "verbs": ["bind"]}),
]


# In the operator's own namespace only (a Role, not the ClusterRole).
OWN_NAMESPACE_RULES: list[tuple[str, dict]] = [
    ("the webhook certificate the replicas share (a Secret the chart creates empty)",
     {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["$caSecret"], "verbs": ["get", "patch"]}),
]

# names only the Helm release knows: the chart renders them (files/operator-rules.yaml goes through `tpl`)
PLACEHOLDERS = {"$peering": '{{ include "otus.peeringName" . }}', "$webhook": '{{ include "otus.webhookConfig" . }}',
                "$caSecret": '{{ include "otus.webhookService" . }}-ca'}


def release_names(fullname: str) -> dict[str, str]:
    """The placeholders' values for a release whose chart fullname is ``fullname`` (see _helpers.tpl)."""
    return {"peering": fullname, "webhook": f"{fullname}-sidecar.otus.io", "caSecret": f"{fullname}-webhook-ca"}


def rules(**names: str) -> list[dict]:
    """The rules with the release's object names (``peering="otus"``); placeholders left as they are
    for names not given."""
    def fill(rule: dict) -> dict:
        if "resourceNames" not in rule:
            return rule
        return {**rule, "resourceNames": [names.get(n[1:], n) if n.startswith("$") else n
                                          for n in rule["resourceNames"]]}
    return [fill(r) for _, r in WATCH_RULES + OPERATOR_RULES]


def cluster_rules(**names: str) -> list[dict]:
    """The ClusterRole's rules when the operator watches only some namespaces."""
    return _fill(OPERATOR_RULES, names)


def watch_rules(**names: str) -> list[dict]:
    return _fill(WATCH_RULES, names)


def _fill(table, names):
    out = []
    for _, rule in table:
        if "resourceNames" in rule:
            rule = {**rule, "resourceNames": [names.get(n[1:], n) if n.startswith("$") else n
                                              for n in rule["resourceNames"]]}
        out.append(rule)
    return out


def own_namespace_rules(**names: str) -> list[dict]:
    return _fill(OWN_NAMESPACE_RULES, names)


_NO_NAMES = {"create", "deletecollection"}   # RBAC cannot restrict these by resourceNames


def rule_allows(rule: dict, verb: str, group: str, resource: str, subresource: str | None = None,
                name: str | None = None) -> bool:
    """Whether one PolicyRule allows a request, by the API server's RBAC rules
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/): apiGroups, resources
    ("res/sub" for subresources), verbs, each possibly "*"; resourceNames, when set, only
    match requests naming one of them, which create and deletecollection never do."""
    res = f"{resource}/{subresource}" if subresource else resource
    if not ({group, "*"} & set(rule.get("apiGroups") or [])):
        return False
    if not ({res, "*"} & set(rule.get("resources") or []) or (subresource and f"*/{subresource}" in rule["resources"])):
        return False
    if not ({verb, "*"} & set(rule.get("verbs") or [])):
        return False
    names = rule.get("resourceNames")
    if names:
        return verb not in _NO_NAMES and name in names
    return True


def allows(rules_: list[dict], verb: str, group: str, resource: str, subresource: str | None = None,
           name: str | None = None) -> bool:
    return any(rule_allows(r, verb, group, resource, subresource, name) for r in rules_)


def dump_yaml(table=None) -> str:
    import yaml
    out = ["# Generated by `python -m otus_operator.rbac`; do not edit by hand."]
    for why, rule in (OPERATOR_RULES if table is None else table):
        out.append(f"# {why}")
        text = yaml.safe_dump([rule], sort_keys=False, default_flow_style=None, width=120).rstrip()
        for k, v in PLACEHOLDERS.items():
            text = text.replace(k, v)
        out.append(text)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    # python -m otus_operator.rbac [own-namespace | watch | agent-identity]
    table = {"own-namespace": OWN_NAMESPACE_RULES, "watch": WATCH_RULES,
             "agent-identity": AGENT_IDENTITY_RULES}.get((sys.argv[1:] or [""])[0])
    sys.stdout.write(dump_yaml(table))
