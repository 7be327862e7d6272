"""The task manager: owns running tasks, persists them, and is all the control plane talks to."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from otus_agent.capture.afpacket import CaptureError
from otus_agent.daemon.task import preflight, task_main, view_dir
from otus_spec import TaskSpec

log = logging.getLogger("otus.manager")
MAX_TASKS = 64


class TaskError(Exception):
    """A request the manager refuses (duplicate id, unknown task, bad interface...)."""


@dataclass
class TaskHandle:
    spec: TaskSpec
    status: str = "starting"          # starting, running, completed, failed, stopped
    reason: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    stats: dict = field(default_factory=dict)
    process: mp.process.BaseProcess | None = None
    conn: object = None

    def view(self) -> dict:
        k = self.stats.get("kernel", {})
        sip = self.stats.get("sip", {})
        return {"id": self.spec.id, "status": self.status, "reason": self.reason,
                "interfaces": self.spec.interfaces, "started": self.started, "finished": self.finished,
                "packets": self.stats.get("packets", 0), "kernel_drops": k.get("kernel_drops", 0),
                "sip_messages": sip.get("sip_messages", 0), "malformed": sip.get("malformed_messages", 0)}


class TaskManager:
    def __init__(self, state_dir: str, kafka_brokers: list[str] | None = None, tap_path: str | None = None):
        self.state_dir = state_dir
        self.tap_path = tap_path   # tasks copy their records there (daemon/tap.py) when set
        self.kafka_brokers = list(kafka_brokers or [])
        self.tasks_dir = os.path.join(state_dir, "tasks")
        os.makedirs(self.tasks_dir, mode=0o750, exist_ok=True)
        self.tasks: dict[str, TaskHandle] = {}
        self.lock = threading.RLock()
        self.ctx = mp.get_context("fork")
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="otus-task-monitor", daemon=True)
        self._monitor.start()

    # --------------------------------------------------------------- requests
    def create(self, spec: TaskSpec, persist: bool = True) -> dict:
        with self.lock:
            if spec.id in self.tasks and self.tasks[spec.id].status in ("starting", "running"):
                raise TaskError(f"task {spec.id} already exists")
            if len([t for t in self.tasks.values() if t.status in ("starting", "running")]) >= MAX_TASKS:
                raise TaskError(f"too many tasks (limit {MAX_TASKS})")
            try:
                preflight(spec)
            except CaptureError as e:
                raise TaskError(str(e)) from None
            if persist:
                self._save(spec)
            h = TaskHandle(spec)
            self.tasks[spec.id] = h
            self._start(h)
            log.info("task created", extra={"task": spec.id})
            return h.view()

    def delete(self, task_id: str, timeout: float = 15) -> dict:
        with self.lock:
            h = self.tasks.get(task_id)
            if h is None:
                raise TaskError(f"no such task: {task_id}")
            self._stop_task(h, timeout)
            del self.tasks[task_id]
            shutil.rmtree(view_dir(self.state_dir, task_id), ignore_errors=True)   # its flow views, if any
            try:
                os.unlink(self._path(task_id))
            except FileNotFoundError:
                pass
            log.info("task deleted", extra={"task": task_id})
            return h.view()

    def get(self, task_id: str) -> dict:
        with self.lock:
            h = self.tasks.get(task_id)
            if h is None:
                raise TaskError(f"no such task: {task_id}")
            return {**h.view(), "spec": h.spec.model_dump(mode="json"), "stats": h.stats}

    def list(self) -> list[dict]:
        with self.lock:
            return [h.view() for h in self.tasks.values()]

    def view_dir(self, task_id: str) -> str:
        """Where a task's capture processes serve their flow table (flows/view.py, daemon/views.py)."""
        return view_dir(self.state_dir, task_id)

    def flow_views(self, task_id: str | None = None) -> dict[str, str]:
        """task -> view directory of the running tasks with the flow parser (``task_id``: that one only)."""
        with self.lock:
            if task_id is not None:
                h = self.tasks.get(task_id)
                if h is None:
                    raise TaskError(f"no such task: {task_id}")
                if "flow" not in h.spec.parsers:
                    raise TaskError(f"task {task_id} does not run the flow parser (parsers: {', '.join(h.spec.parsers)})")
                running = [h] if h.status == "running" else []
            else:
                running = [h for h in self.tasks.values() if h.status == "running" and "flow" in h.spec.parsers]
            return {h.spec.id: self.view_dir(h.spec.id) for h in running}

    def snapshot(self) -> list[tuple[TaskSpec, str, dict]]:
        with self.lock:
            return [(h.spec, h.status, h.stats) for h in self.tasks.values()]

    def restore(self) -> list[str]:
        """Start the tasks persisted in the state directory; a broken file is logged, not fatal."""
        restored = []
        for name in sorted(os.listdir(self.tasks_dir)):
            if not name.endswith(".json"):
                continue
            path = os.path.join(self.tasks_dir, name)
            try:
                with open(path, encoding="utf-8") as f:
                    spec = TaskSpec.model_validate_json(f.read())
            except (OSError, ValueError) as e:
                log.error(f"cannot restore {name}: {e}")
                continue
            try:
                self.create(spec, persist=False)
                restored.append(spec.id)
            except TaskError as e:  # e.g. its interface is gone: shown as failed, kept on disk
                log.error(f"cannot restore task {spec.id}: {e}", extra={"task": spec.id})
                with self.lock:
                    self.tasks[spec.id] = TaskHandle(spec, status="failed", reason=str(e), finished=time.time())
        return restored

    def shutdown(self, timeout: float = 15) -> None:
        """SIGTERM every task (they drain and flush), wait, keep their persisted specs."""
        self._stop.set()
        with self.lock:
            for h in self.tasks.values():
                self._stop_task(h, timeout)

    # --------------------------------------------------------------- internals
    def _path(self, task_id: str) -> str:
        return os.path.join(self.tasks_dir, f"{task_id}.json")

    def _save(self, spec: TaskSpec) -> None:
        tmp = self._path(spec.id) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(spec.model_dump_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(spec.id))  # crash-safe: old or new, never half

    def _start(self, h: TaskHandle) -> None:
        parent, child = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(target=task_main, args=(child, h.spec.model_dump_json(), self.kafka_brokers,
                                                     self.state_dir, self.tap_path),
                             name=f"otus-task-{h.spec.id}", daemon=False)
        p.start()
        child.close()
        h.process, h.conn, h.status = p, parent, "running"

    def _stop_task(self, h: TaskHandle, timeout: float) -> None:
        p = h.process
        if p is not None and p.is_alive():
            p.terminate()
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(5)
        self._drain(h)
        if h.status in ("starting", "running"):
            h.status, h.finished = "stopped", time.time()

    def _drain(self, h: TaskHandle) -> None:
        conn = h.conn
        if conn is None:
            return
        try:
            while conn.poll():
                self._handle(h, conn.recv())
        except (EOFError, OSError):
            pass
        if h.process is not None and not h.process.is_alive():
            conn.close()
            h.conn = None

    def _handle(self, h: TaskHandle, msg: tuple) -> None:
        kind, body = msg
        if kind == "stats":
            h.stats = body
        elif kind == "done":
            h.stats = body
            h.status, h.finished = "completed", time.time()
        elif kind == "error":
            h.status, h.reason, h.finished = "failed", body, time.time()
            log.error(f"task failed: {body}", extra={"task": h.spec.id})

    def _watch(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                conns = {h.conn: h for h in self.tasks.values() if h.conn is not None}
            if not conns:
                time.sleep(0.2)
                continue
            for c in wait(list(conns), timeout=0.2):
                h = conns[c]
                with self.lock:
                    try:
                        self._handle(h, c.recv())
                    except (EOFError, OSError):
                        c.close()
                        h.conn = None
                        if h.status == "running":
                            code = h.process.exitcode if h.process is not None else None
                            h.status, h.finished = "failed", time.time()
                            h.reason = f"task process ended unexpectedly (exit code {code})"
                            log.error(h.reason, extra={"task": h.spec.id})


