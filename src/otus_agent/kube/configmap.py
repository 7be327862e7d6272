"""The task from its ConfigMap through the API, for agents that cannot mount it (ephemeral containers).

Each sync writes the ConfigMap's ``task.yaml`` and ``suspend`` into a private
directory the way the kubelet updates a mounted ConfigMap (a new file renamed
over the old), so the file-following agent (runner.TaskFileAgent) serves both.
"""
from __future__ import annotations

import logging
import os

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
            log.warning(f"task ConfigMap {self.namespace}/{self.name}: {getattr(e, 'status', type(e).__name__)}")
            return False
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
