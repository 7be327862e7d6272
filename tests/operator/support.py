"""The operator tests' helpers, in one place: waiting, ports, and reading/writing CaptureTasks as a user would.

The emulator itself (a Kubernetes API on loopback, the kopf operator in a thread) is ``emulator.py``.
"""
from __future__ import annotations

import copy
import json
import pathlib
from typing import Any, Callable

from kubernetes.client.rest import ApiException

from tests.support import Clock, free_port, poll, wait_for  # noqa: F401 - shared with the other tiers

G, V, P = "otus.io", "v1alpha1", "capturetasks"
ROOT = pathlib.Path(__file__).resolve().parents[2]


def example(name: str) -> dict:
    """A CaptureTask from crds/examples/."""
    import yaml
    return yaml.safe_load((ROOT / "crds" / "examples" / f"{name}.yaml").read_text())


def validate_k8s(obj: dict) -> None:
    """``obj`` against Kubernetes' own OpenAPI schema (strict: unknown fields fail), server fields aside."""
    import pytest
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    obj = copy.deepcopy(obj)
    for k in ("uid", "resourceVersion", "creationTimestamp", "generation"):
        obj.get("metadata", {}).pop(k, None)
    kubernetes_validate.validate(obj, "1.30.0", strict=True)


def gone(fn: Callable[[], Any]) -> bool:
    """Whether ``fn`` (a read) answers 404."""
    try:
        fn()
    except ApiException as e:
        return e.status == 404
    return False


# ----------------------------------------------------------------- CaptureTasks, through the official client
def create(api: dict, ns: str, obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = ns
    return api["custom"].create_namespaced_custom_object(G, V, ns, P, obj)


def get(api: dict, ns: str, name: str) -> dict:
    return api["custom"].get_namespaced_custom_object(G, V, ns, P, name)


def status(api: dict, ns: str, name: str) -> dict:
    return get(api, ns, name).get("status") or {}


def cond(st: dict, ctype: str) -> dict:
    return next((c for c in st.get("conditions", []) if c["type"] == ctype), {})


def events(api: dict, ns: str, name: str) -> list[dict]:
    """The core/v1 Events on the CaptureTask ``name``, as the API stores them (oldest first)."""
    raw = json.loads(api["core"].list_namespaced_event(ns, _preload_content=False).data)
    return [e for e in raw["items"] if (e.get("involvedObject") or {}).get("kind") == "CaptureTask"
            and e["involvedObject"].get("name") == name]


def agent_report(api: dict, ns: str, task: str, agent: str, **fields: Any) -> None:
    """What an agent does (otus_agent.kube.status): patch its own entry on the status subresource."""
    from otus_agent.kube.status import StatusReporter, now_rfc3339
    e = {"node": f"node-{agent}", "pod": agent, "state": "Capturing", "packets": 0, "drops": 0, "sipMessages": 0,
         "spoolBytes": 0, "lastReport": now_rfc3339(), "error": None, **fields}
    StatusReporter(api["custom"], ns, task, agent).report(e, force=True)
