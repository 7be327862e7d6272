"""`otus agent`: run the task in a mounted file, follow its changes, report onto the CaptureTask.

The operator renders each CaptureTask into a ConfigMap holding ``task.yaml``
(and ``suspend`` while the task is suspended) mounted into the agent.  The
kubelet swaps the files atomically when the ConfigMap changes; this loop sees
the change and restarts only the capture task process -- the pod, its
sidecar neighbours and its metrics endpoint stay.  An invalid new file leaves
the running task alone and shows up as the agent's ``error``.
"""
from __future__ import annotations

import logging
import os
import threading

import yaml

from otus_agent.daemon.manager import TaskError, TaskManager
from otus_spec import SpecError, TaskSpec
from otus_agent.kube.status import StatusReporter, entry

log = logging.getLogger("otus.kube.agent")


class TaskFileAgent:
    def __init__(self, task_file: str, manager: TaskManager, reporter: StatusReporter | None = None,
                 node: str | None = None, pod: str | None = None):
        self.task_file = task_file
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
            if spec is not None and (spec != self.spec or not self._running()):
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

    def run(self, stop: threading.Event, poll_s: float = 2.0, before_step=None) -> int:
        """Step every ``poll_s`` until ``stop``; ``before_step`` (e.g. a ConfigMap sync) runs first."""
        while True:
            if before_step is not None:
                before_step()
            e = self.step()
            if self.reporter is not None and self.reporter.gone:
                log.warning("the CaptureTask is gone; capture stopped")
                self._stop()
                self.reporter = None
            if stop.wait(poll_s):
                break
        self._stop()
        if self.reporter is not None:
            self.reporter.report({**self.status_entry(), "state": "Stopped"}, force=True)
        return 0 if e["state"] != "Failed" else 1
