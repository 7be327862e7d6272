"""The task from its ConfigMap through the API, for agents that cannot mount it (ephemeral containers).

Each sync writes the ConfigMap's ``task.yaml`` and ``suspend`` into a private
directory the way the kubelet updates a mounted ConfigMap (a new file renamed
over the old), so the file-following agent (runner.TaskFileAgent) serves both.
A 404 or 403 (the ConfigMap deleted with its task, or the agent's access to
it revoked) sets ``gone``; the files stay, and the agent stops capturing.
"""
from __future__ import annotations

import logging
import os

from otus_agent.kube.status import FailureLog, gone_reason

log = logging.getLogger("otus.kube.configmap")

MAX_TASK_BYTES = 1 << 20


class ConfigMapSource:
    def __init__(self, core_api, namespace: str, name: str, directory: str):
        self.api, self.namespace, self.name = core_api, namespace, name
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.task_file = os.path.join(directory, "task.yaml")
        self.last: dict[str, str] = {}
        self.failures = 0
        self.gone: str | None = None      # why the ConfigMap is gone for this agent (404, 403)
        self.fail_log = FailureLog(log, f"reading the task ConfigMap {namespace}/{name}")

    def _write(self, key: str, text: str) -> None:
        path = os.path.join(self.dir, key)
        tmp = os.path.join(self.dir, f".{key}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)

    def sync(self) -> bool:
        """Fetch the ConfigMap and update the files; False when it could not be read."""
        try:
            cm = self.api.read_namespaced_config_map(self.name, self.namespace)
        except Exception as e:  # the API being away must not stop the capture: keep the last files
            self.failures += 1
            reason = gone_reason(e)
            if reason is not None:
                self.gone = reason          # the agent logs that transition itself, once
            else:
                self.fail_log.failed(str(getattr(e, "status", None) or type(e).__name__))
            return False
        self.fail_log.ok()
        self.gone = None
        data = dict(cm.data or {})
        for key in ("task.yaml", "suspend"):
            text = data.get(key, "")
            if len(text) > MAX_TASK_BYTES:
                log.error(f"task ConfigMap {self.namespace}/{self.name}: {key} larger than {MAX_TASK_BYTES} bytes")
                continue
            if self.last.get(key) != text:
                self._write(key, text)
                self.last[key] = text
        return True
