"""The operator tests' helpers, in one place: waiting, ports, and reading/writing CaptureTasks as a user would.

The emulator itself (a Kubernetes API on loopback, the kopf operator in a thread) is ``emulator.py``.
"""
from __future__ import annotations

import contextlib
import copy
import json
import pathlib
import socket
import time
from typing import Any, Callable

from kubernetes.client.rest import ApiException

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


def free_port(udp: bool = False) -> int:
    """A loopback port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(fn: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Call ``fn`` until it returns something truthy or ``timeout`` passes; returns its last value (an
    exception counts as None: the thing polled for may not exist yet)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = None
        with contextlib.suppress(Exception):
            last = fn()
        if last or time.monotonic() >= deadline:
            return last
        time.sleep(interval)


def wait_for(fn: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, what: str = "condition") -> Any:
    """``poll``, failing the test with the last value when ``fn`` never became truthy."""
    last = poll(fn, timeout, interval)
    if not last:
        raise AssertionError(f"timed out waiting for {what}; last value: {json.dumps(last, default=str)[:2000]}")
    return last


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
