"""An agent's own entry in ``status.agents`` of its CaptureTask, patched at a bounded rate.

Each agent writes only ``status.agents.<its name>`` with a JSON merge patch on
the status subresource, so concurrent agents never overwrite each other's
entries and never touch the operator's fields (phase, conditions, totals).
Patches go out at most once per ``min_interval_s`` -- sooner only when the
state changes, and never more than once a second -- so a thousand agents
cannot flood the API server.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

log = logging.getLogger("otus.kube.status")

GROUP, VERSION, PLURAL = "otus.io", "v1alpha1", "capturetasks"
MIN_GAP_S = 1.0          # even a state change waits this long after the previous patch
ERROR_MAX = 512          # an error message is cut to this many characters

STATES = {"starting": "Starting", "running": "Capturing", "completed": "Stopped", "stopped": "Stopped",
          "failed": "Failed", "suspended": "Suspended"}


class CustomObjects(Protocol):
    def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str, plural: str,
                                              name: str, body: Any) -> Any: ...


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(view: dict, stats: dict, node: str | None, pod: str | None, state: str | None = None,
          error: str | None = None) -> dict:
    """One agent's status entry (the operator's AgentStatus shape) from a task's view and counters."""
    report = stats.get("report", {}) if isinstance(stats.get("report"), dict) else {}
    err = error if error is not None else view.get("reason")
    return {
        "node": node, "pod": pod,
        "state": state or STATES.get(view.get("status", ""), "Starting"),
        "packets": int(view.get("packets", 0)), "drops": int(view.get("kernel_drops", 0)),
        "sipMessages": int(view.get("sip_messages", 0)), "spoolBytes": int(report.get("spool_bytes", 0)),
        "lastReport": now_rfc3339(), "error": err[:ERROR_MAX] if err else None,
    }


class StatusReporter:
    def __init__(self, api: CustomObjects, namespace: str, task: str, agent: str, min_interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.api, self.namespace, self.task, self.agent = api, namespace, task, agent
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.last_sent = float("-inf")
        self.last_state: str | None = None
        self.patches = 0
        self.failures = 0
        self.skipped = 0
        self.gone = False        # the CaptureTask no longer exists (404)

    def due(self, state: str) -> bool:
        since = self.clock() - self.last_sent
        if state != self.last_state:
            return since >= MIN_GAP_S
        return since >= self.min_interval_s

    def report(self, e: dict, force: bool = False) -> bool:
        """Patch ``e`` as this agent's entry if due (or forced); True when a patch went out."""
        if not force and not self.due(e["state"]):
            self.skipped += 1
            return False
        body = {"status": {"agents": {self.agent: e}}}
        self.last_sent = self.clock()
        try:
            self.api.patch_namespaced_custom_object_status(GROUP, VERSION, self.namespace, PLURAL, self.task, body)
        except Exception as exc:  # the API being away must not stop the capture
            self.failures += 1
            status = getattr(exc, "status", None)
            if status == 404:
                self.gone = True
            log.warning(f"status patch failed: {status or type(exc).__name__} {getattr(exc, 'reason', '')}".strip(),
                        extra={"task": self.task})
            return False
        self.patches += 1
        self.last_state = e["state"]
        return True

    def stats(self) -> dict:
        return {"status_patches": self.patches, "status_failures": self.failures, "status_skipped": self.skipped}
