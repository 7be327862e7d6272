"""An agent's own entry in ``status.agents`` of its CaptureTask, patched at a bounded rate.

Each agent writes only ``status.agents.<its name>`` with a JSON merge patch on
the status subresource, so concurrent agents never overwrite each other's
entries and never touch the operator's fields (phase, conditions, totals).
Patches go out at most once per ``min_interval_s`` -- sooner only when the
state changes, and never more than once a second -- so a thousand agents
cannot flood the API server.

Every answer also says whether the CaptureTask is still there for this agent:
404 (deleted), 403 (the agent's Role, owned by the task, is gone: access
revoked), 401 (its ServiceAccount, owned by the task, is gone) and an object
marked for deletion all set ``gone``; any other
failure (the API server away, a timeout) does not, so a flaky API never stops
a capture.  ``check`` asks with a GET (the agent's Role grants it), for when
no patch has gone out for a while.  Failures are logged once when they start,
then at most once per ``LOG_EVERY_S`` with a count, and once when they end.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from otus_spec import ALERT_TEXT_IN_STATUS, ALERTS_IN_STATUS, DetectOptions

log = logging.getLogger("otus.kube.status")

GROUP, VERSION, PLURAL = "otus.io", "v1alpha1", "capturetasks"
MIN_GAP_S = 1.0          # even a state change waits this long after the previous patch
ERROR_MAX = 512          # an error message is cut to this many characters
LOG_EVERY_S = 300.0      # a failure that lasts is logged again at most this often
ALERTS_MAX = ALERTS_IN_STATUS   # detector alerts in effect listed in the entry (the CRD's AgentStatus.alerts)
ALERT_TEXT_MAX = ALERT_TEXT_IN_STATUS   # characters of an alert's kind, source and message

STATES = {"starting": "Starting", "running": "Capturing", "completed": "Stopped", "stopped": "Stopped",
          "failed": "Failed", "suspended": "Suspended"}


class CustomObjects(Protocol):
    def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str, plural: str,
                                              name: str, body: Any) -> Any: ...

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                     name: str) -> Any: ...


def gone_reason(exc: BaseException) -> str | None:
    """Why an API error means the object is gone for this agent, or None for a transient failure."""
    status = getattr(exc, "status", None)
    if status == 404:
        return "404 Not Found: deleted"
    if status == 403:
        return "403 Forbidden: access revoked"
    if status == 401:                     # a DaemonSet agent's ServiceAccount is deleted with its task
        return "401 Unauthorized: credentials rejected"
    return None


class FailureLog:
    """One warning when failures start, then at most one per ``every_s`` (with a count), one when they end."""

    def __init__(self, logger: logging.Logger, what: str, every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.log, self.what, self.every_s, self.clock = logger, what, every_s, clock
        self.streak = 0
        self.last_logged = float("-inf")
        self.last_text: str | None = None

    def failed(self, text: str, **extra: Any) -> None:
        self.streak += 1
        now = self.clock()
        if self.streak == 1 or text != self.last_text or now - self.last_logged >= self.every_s:
            again = f" ({self.streak} failures in a row)" if self.streak > 1 else ""
            self.log.warning(f"{self.what} failed: {text}{again}", extra=extra)
            self.last_logged, self.last_text = now, text

    def ok(self, **extra: Any) -> None:
        if self.streak:
            self.log.info(f"{self.what} works again after {self.streak} failures", extra=extra)
        self.streak, self.last_text = 0, None


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _section(stats: dict, name: str) -> dict:
    v = stats.get(name)
    return v if isinstance(v, dict) else {}


def _parse_ts(text: Any) -> datetime | None:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def alerts_in_effect(stats: dict, spec: dict | None, now: datetime | None = None) -> list[dict]:
    """The detectors' alerts still firing (``detect.*.recent``, detect/alerts.py): those that fired within the
    task's ``detect.resolve_after_s``, newest first, at most ``ALERTS_MAX`` (the operator posts an Event per
    new kind and source, and a Resolved one when it leaves this list)."""
    now = now or datetime.now(timezone.utc)
    try:
        resolve = DetectOptions.model_validate((spec or {}).get("detect") or {}).resolve_after_s
    except ValueError:
        resolve = DetectOptions().resolve_after_s
    out = []
    parts = _section(stats, "detect")
    for part in parts.values():
        recent = part.get("recent") if isinstance(part, dict) else None
        for key, e in (recent or {}).items():
            kind, _, source = str(key).partition("|")
            last = _parse_ts(e.get("last")) if isinstance(e, dict) else None
            if last is None or (now - last).total_seconds() > resolve:
                continue
            out.append({"kind": kind[:ALERT_TEXT_MAX], "source": source[:ALERT_TEXT_MAX], "count": int(e.get("count", 0)),
                        "lastSeen": e["last"], "message": str(e.get("summary") or "")[:ALERT_TEXT_MAX]})
    out.sort(key=lambda a: (a["lastSeen"], a["kind"], a["source"]), reverse=True)
    return out[:ALERTS_MAX]


def worst_mos(stats: dict) -> float | None:
    """The lowest MOS any media record of the task carried (``rtp.mos_worst``: the workers' minima)."""
    rtp = _section(stats, "rtp")
    values = []
    for k in (rtp.get("mos_worst") or {}):
        try:
            values.append(float(k))
        except ValueError:
            continue
    return min(values) if values else None


def entry(view: dict, stats: dict, node: str | None, pod: str | None, state: str | None = None,
          error: str | None = None) -> dict:
    """One agent's status entry (the operator's AgentStatus shape) from a task's view and counters."""
    report = stats.get("report", {}) if isinstance(stats.get("report"), dict) else {}
    err = error if error is not None else view.get("reason")
    rtp = _section(stats, "rtp")
    return {
        "node": node, "pod": pod,
        "state": state or STATES.get(view.get("status", ""), "Starting"),
        "packets": int(view.get("packets", 0)), "drops": int(view.get("kernel_drops", 0)),
        "sipMessages": int(view.get("sip_messages", 0)), "spoolBytes": int(report.get("spool_bytes", 0)),
        "matchedCalls": int(_section(_section(stats, "sip"), "select").get("matched_dialogs", 0)),
        "mediaStreams": int(rtp.get("streams_started", 0)), "worstMos": worst_mos(stats),
        "alerts": alerts_in_effect(stats, view.get("spec")),
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
        self.checks = 0
        self.gone: str | None = None      # why the CaptureTask is gone for this agent (404, 403, deleting)
        self.last_asked = float("-inf")   # when the API was last asked about the task (patch or get)
        self.fail_log = FailureLog(log, "status patch", clock=clock)

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
        self.last_sent = self.last_asked = self.clock()
        try:
            obj = self.api.patch_namespaced_custom_object_status(GROUP, VERSION, self.namespace, PLURAL, self.task,
                                                                 body)
        except Exception as exc:  # the API being away must not stop the capture
            self.failures += 1
            self._answer(exc)
            status = getattr(exc, "status", None)
            if gone_reason(exc) is None:    # gone: the agent logs that transition itself, once
                self.fail_log.failed(f"{status or type(exc).__name__} {getattr(exc, 'reason', '') or ''}".strip(),
                                     task=self.task)
            return False
        self.fail_log.ok(task=self.task)
        self._answer(None, obj)
        self.patches += 1
        self.last_state = e["state"]
        return True

    def check(self) -> str | None:
        """GET the CaptureTask: update and return ``gone`` (None: it is there; a transient failure changes nothing)."""
        self.checks += 1
        self.last_asked = self.clock()
        try:
            obj = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.task)
        except Exception as exc:
            self._answer(exc)
            return self.gone
        self._answer(None, obj)
        return self.gone

    def _answer(self, exc: BaseException | None, obj: Any = None) -> None:
        if exc is not None:
            reason = gone_reason(exc)
            if reason is None:
                return                    # the API server away, a timeout: says nothing about the task
            self.gone = reason
        elif isinstance(obj, dict) and (obj.get("metadata") or {}).get("deletionTimestamp"):
            self.gone = "being deleted"
        else:
            self.gone = None

    def stats(self) -> dict:
        return {"status_patches": self.patches, "status_failures": self.failures, "status_skipped": self.skipped,
                "task_checks": self.checks}
