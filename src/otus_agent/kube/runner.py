"""`otus agent`: run the task in a mounted file, follow its changes, report onto the CaptureTask.

The operator renders each CaptureTask into a ConfigMap holding ``task.yaml``
(and ``suspend`` while the task is suspended) mounted into the agent.  The
kubelet swaps the files atomically when the ConfigMap changes; this loop sees
the change and restarts only the capture task process -- the pod, its
sidecar neighbours and its metrics endpoint stay.  An invalid new file leaves
the running task alone and shows up as the agent's ``error``.

When the task disappears -- the CaptureTask answers 404, is marked for
deletion, answers 403 (its Role, owned by the task, was deleted with it:
access revoked) or 401 (its ServiceAccount went the same way), the task
ConfigMap answers 404/403, or the task file that was there is removed -- the
agent stops the capture at once (the task process drains and flushes its
reporters), logs one line, and then *idles*: no capture, no status patches,
the metrics endpoint still up, rechecking with exponential back-off
(``check_interval_s`` doubling up to ``MAX_BACKOFF_S``) and logging again at
most every ``IDLE_LOG_EVERY_S``.  If the task comes back (access restored,
the file back) the capture resumes.  While capturing, a GET of the task goes
out only when no status patch has for ``check_interval_s`` (every answer to a
patch says the same), so detection takes seconds at a bounded API cost.

Why idle rather than exit: an agent runs as a native sidecar (an init
container with ``restartPolicy: Always``), as a regular container of a pod
whose ``restartPolicy`` is ``Always``, or in a DaemonSet pod (always
``Always``).  The kubelet restarts all of these whatever the exit code, 0
included, with a growing back-off: an exiting agent would become a
CrashLoopBackOff in the user's pod, restarts on ``kubectl get pods`` and a
new container every few minutes that immediately finds its task gone again.
An idle agent costs a sleeping process and one GET per back-off period; it
goes away with its pod, which the user or the operator's next rollout
replaces.  A ``kubectl debug`` ephemeral container is never restarted, so
idling there is harmless too.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

import yaml

from otus_agent.daemon.manager import TaskError, TaskManager
from otus_agent.kube.status import StatusReporter, entry
from otus_spec import IdentityOptions, SpecError, TaskSpec

log = logging.getLogger("otus.kube.agent")

CHECK_INTERVAL_S = 5.0      # with no status patch for this long, GET the CaptureTask to see it is still there
MAX_BACKOFF_S = 300.0       # while the task is gone: rechecks back off up to this
IDLE_LOG_EVERY_S = 600.0    # while the task is gone: at most one log line per this


class TaskFileAgent:
    def __init__(self, task_file: str, manager: TaskManager, reporter: StatusReporter | None = None,
                 node: str | None = None, pod: str | None = None, source=None,
                 check_interval_s: float = CHECK_INTERVAL_S, clock: Callable[[], float] = time.monotonic,
                 task_ref: str = "the CaptureTask", on_spec: Callable[[IdentityOptions], None] | None = None):
        """``source``: a ConfigMapSource (``sync()`` before each pass, ``gone``), or None for a mounted file.
        ``on_spec``: given each new valid task's ``identity`` section before the task (re)starts (the
        agent's identity watch, kube/main.py); a change of that section alone restarts nothing."""
        self.on_spec = on_spec
        self.task_file = task_file
        self.source = source
        self.check_interval_s = check_interval_s
        self.clock = clock
        self.task_ref = task_ref
        self.seen_file = False                # the task file existed at some point
        self.idle_reason: str | None = None   # why the agent is idling (its task gone), None while serving it
        self.idle_since = 0.0
        self.next_check = 0.0
        self.backoff = check_interval_s
        self.last_idle_log = 0.0
        self.suspend_file = os.path.join(os.path.dirname(task_file) or ".", "suspend")
        self.manager = manager
        self.reporter = reporter
        self.node, self.pod = node, pod
        self.raw: bytes | None = None
        self.spec: TaskSpec | None = None     # the task running (or last run)
        self.error: str | None = None         # why the current file is not running
        self.suspended = False
        self.restarts = 0                     # task restarts caused by file changes

    # ----------------------------------------------------------- one pass
    def _read(self) -> tuple[bytes | None, bool]:
        try:
            with open(self.task_file, "rb") as f:
                raw = f.read(1 << 20)
            self.seen_file = True
        except OSError as e:
            self.error = f"task file {self.task_file}: {e.strerror}"
            raw = None
        try:
            with open(self.suspend_file, "rb") as f:
                suspended = f.read(16).strip().lower() in (b"true", b"1", b"yes")
        except OSError:
            suspended = False
        return raw, suspended

    def _parse(self, raw: bytes) -> TaskSpec | None:
        try:
            data = yaml.safe_load(raw)
            if not isinstance(data, dict):
                raise SpecError("the task file is not a mapping")
            return TaskSpec.model_validate(data)
        except (yaml.YAMLError, SpecError, ValueError) as e:
            text = str(e).splitlines()
            self.error = f"invalid task file: {' '.join(t.strip() for t in text[:4])}"
            log.error(self.error)
            return None

    def _running(self) -> bool:
        if self.spec is None:
            return False
        try:
            return self.manager.get(self.spec.id)["status"] in ("starting", "running")
        except TaskError:
            return False

    def _stop(self) -> None:
        if self.spec is not None:
            try:
                self.manager.delete(self.spec.id)
            except TaskError:
                pass

    def _start(self, spec: TaskSpec) -> None:
        try:
            self.manager.create(spec, persist=False)
            self.spec, self.error = spec, None
            log.info("task started", extra={"task": spec.id})
        except TaskError as e:
            self.spec, self.error = spec, str(e)
            log.error(f"task not started: {e}", extra={"task": spec.id})

    def step(self) -> dict:
        """Apply the file's current content; return (and maybe report) this agent's status entry."""
        raw, suspended = self._read()
        if suspended and not self.suspended:
            log.info("task suspended")
            self._stop()
        self.suspended = suspended
        if raw is not None and raw != self.raw:
            self.raw = raw
            spec = self._parse(raw)
            if spec is not None and self.on_spec is not None:
                try:
                    self.on_spec(spec.identity)
                except Exception as err:    # identity is an annotation: its failure never stops the capture
                    log.error(f"identity settings not applied: {err}")
            if spec is not None and self.spec is not None and spec != self.spec and self._running() \
                    and spec.model_copy(update={"identity": self.spec.identity}) == self.spec:
                self.spec = spec          # only the identity section changed: applied above, the capture goes on
            elif spec is not None and (spec != self.spec or not self._running()):
                if self.spec is not None:
                    self._stop()
                    self.restarts += 1
                if not self.suspended:
                    self._start(spec)
                else:
                    self.spec = spec
        elif not self.suspended and self.spec is not None and self.error is None and not self._view():
            self._start(self.spec)        # resumed after a suspension (the task was removed)
        e = self.status_entry()
        if self.reporter is not None:
            self.reporter.report(e)
        return e

    def _view(self) -> dict:
        if self.spec is None:
            return {}
        try:
            return self.manager.get(self.spec.id)
        except TaskError:
            return {}

    def status_entry(self) -> dict:
        v = self._view()
        state = "Suspended" if self.suspended else None
        if self.error and not v:
            state = "Failed"
        return entry(v, v.get("stats", {}), self.node, self.pod, state, self.error)

    # ----------------------------------------------------------- task gone
    def gone(self) -> str | None:
        """Why this agent's task is gone, or None while it is there."""
        if self.reporter is not None and self.reporter.gone:
            return f"{self.task_ref}: {self.reporter.gone}"
        if self.source is not None and self.source.gone:
            return f"task ConfigMap {self.source.namespace}/{self.source.name}: {self.source.gone}"
        if self.seen_file and not os.path.exists(self.task_file):
            return f"task file {self.task_file} removed"
        return None

    def _go_idle(self, reason: str) -> None:
        self._stop()                       # the task process drains and flushes its reporters
        self.spec, self.raw, self.error = None, None, None
        now = self.clock()
        self.idle_reason, self.idle_since, self.last_idle_log = reason, now, now
        self.backoff = self.check_interval_s
        self.next_check = now + self.backoff
        log.warning(f"task gone ({reason}): capture stopped; idling without capturing, rechecking with back-off "
                    f"from {self.check_interval_s:g} s to {MAX_BACKOFF_S:g} s")

    def _idle(self) -> None:
        """One pass while the task is gone: recheck when the back-off says so; log rarely."""
        now = self.clock()
        if now >= self.next_check:
            if self.reporter is not None and self.reporter.gone:
                self.reporter.check()
            if self.source is not None:
                self.source.sync()
            self.backoff = min(self.backoff * 2, MAX_BACKOFF_S)
            self.next_check = now + self.backoff
        reason = self.gone()
        if reason is None:
            log.info(f"task back after {now - self.idle_since:.0f} s (was: {self.idle_reason}): capture resumes")
            self.idle_reason = None
        elif now - self.last_idle_log >= IDLE_LOG_EVERY_S:
            log.warning(f"task still gone ({reason}) for {now - self.idle_since:.0f} s; not capturing")
            self.last_idle_log = now

    def _pass(self) -> dict | None:
        """One poll: serve the task (and maybe probe for it), or idle while it is gone."""
        if self.idle_reason is not None:
            self._idle()
            if self.idle_reason is not None:
                return None
        if self.source is not None:
            self.source.sync()
        reason = self.gone()
        if reason is None:
            e = self.step()
            r = self.reporter
            if r is not None and self.clock() - r.last_asked >= self.check_interval_s:
                r.check()                  # no patch went out for a while: is the task still there?
            reason = self.gone()
            if reason is None:
                return e
        self._go_idle(reason)
        return None

    def run(self, stop: threading.Event, poll_s: float = 2.0) -> int:
        """Poll every ``poll_s`` until ``stop``; 0 unless the last state was Failed."""
        e = None
        while True:
            e = self._pass() or e
            if stop.wait(poll_s):
                break
        self._stop()
        if self.idle_reason is not None:
            log.info("stopping; the task was gone, nothing to report")
            return 0
        if self.reporter is not None:
            self.reporter.report({**self.status_entry(), "state": "Stopped"}, force=True)
        return 0 if e is None or e["state"] != "Failed" else 1
