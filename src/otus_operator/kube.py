"""Server-side apply and delete of the objects render.py produces (the official client).

Server-side apply (field manager ``otus-operator``, forced) creates or
updates in one request and removes fields the operator stopped setting,
without touching fields other controllers own.  404 on delete is the normal
race of a level-triggered controller and is absorbed here.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.rest import ApiException  # re-exported for handlers

REQUEST_TIMEOUT = (5, 15)      # connect, read (seconds): no call may block a handler, or shutdown, for ever


class _Client(client.ApiClient):
    """The official client with a default timeout on every request (it has none by default)."""

    def request(self, *args, **kwargs):
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = REQUEST_TIMEOUT
        return super().request(*args, **kwargs)


_api_client: client.ApiClient | None = None


def api() -> client.ApiClient:
    global _api_client
    if _api_client is None:
        _api_client = _Client()
    return _api_client


def reset() -> None:
    """Forget the client (after the configuration changed)."""
    global _api_client
    _api_client = None


FIELD_MANAGER = "otus-operator"


def _ops(kind: str) -> tuple[Callable, Callable, Callable, Callable]:
    core, apps, rbac = client.CoreV1Api(api()), client.AppsV1Api(api()), client.RbacAuthorizationV1Api(api())
    table = {
        "ConfigMap": (core, "config_map"), "ServiceAccount": (core, "service_account"), "Service": (core, "service"),
        "DaemonSet": (apps, "daemon_set"), "Role": (rbac, "role"), "RoleBinding": (rbac, "role_binding"),
    }
    if kind == "ClusterRoleBinding":     # cluster-scoped: the same calls without the namespace argument
        return (lambda _ns, body, **kw: rbac.create_cluster_role_binding(body, **kw),
                lambda name, _ns, body, **kw: rbac.patch_cluster_role_binding(name, body, **kw),
                lambda name, _ns, **kw: rbac.delete_cluster_role_binding(name, **kw),
                lambda name, _ns, **kw: rbac.read_cluster_role_binding(name, **kw))
    if kind not in table:
        raise ValueError(f"no client for kind {kind}")
    a, n = table[kind]
    return (getattr(a, f"create_namespaced_{n}"), getattr(a, f"patch_namespaced_{n}"),
            getattr(a, f"delete_namespaced_{n}"), getattr(a, f"read_namespaced_{n}"))


def apply(obj: dict) -> None:
    """Server-side apply ``obj`` (create or update)."""
    _, patch, _, _ = _ops(obj["kind"])
    patch(obj["metadata"]["name"], obj["metadata"].get("namespace"), obj, field_manager=FIELD_MANAGER, force=True,
          _content_type="application/apply-patch+yaml", _preload_content=False)


def delete(kind: str, namespace: str, name: str) -> bool:
    """Delete if present; True when something was deleted."""
    _, _, remove, _ = _ops(kind)
    try:
        remove(name, namespace, _preload_content=False)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def read(kind: str, namespace: str, name: str) -> dict | None:
    _, _, _, get = _ops(kind)
    try:
        return json.loads(get(name, namespace, _preload_content=False).data)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def list_pods(namespace: str, selector: dict[str, str]) -> list[dict]:
    label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    r = client.CoreV1Api(api()).list_namespaced_pod(namespace, label_selector=label_selector, _preload_content=False)
    items = json.loads(r.data).get("items", [])
    # the server filters already; filtering again costs little and keeps a wrong answer out
    return [p for p in items if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                                    for k, v in selector.items())]


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api())


def server_minor_version() -> int | None:
    try:
        v: Any = client.VersionApi(api()).get_code()
        return int("".join(ch for ch in v.minor if ch.isdigit()))
    except (ApiException, ValueError, OSError):
        return None


def add_ephemeral_container(namespace: str, pod: dict, container: dict) -> None:
    """Append ``container`` to the pod's ephemeral containers (the list is sent whole)."""
    current = list((pod.get("spec") or {}).get("ephemeralContainers") or [])
    client.CoreV1Api(api()).patch_namespaced_pod_ephemeralcontainers(
        pod["metadata"]["name"], namespace, {"spec": {"ephemeralContainers": current + [container]}},
        _preload_content=False)
