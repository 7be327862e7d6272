"""Wiring of `otus agent`: environment, API client, metrics, signals (its flags are defined in `cli.main`)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading

from otus_agent.daemon.manager import TaskManager
from otus_agent.kube import identity
from otus_agent.kube.runner import TaskFileAgent
from otus_agent.kube.status import StatusReporter
from otus_agent.observability import logs, metrics
from otus_spec import IdentityOptions, SpecError

log = logging.getLogger("otus.kube.agent")
SYNC_WAIT_S = 10.0          # node agent: how long the first list of pods and services may delay the capture


def _api(kubeconfig: str | None, kind: str = "custom"):
    try:
        from kubernetes import client, config
    except ImportError:
        log.error("status reporting off: the kubernetes package is not installed (pip install 'otus[operator]')")
        return None
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        log.warning("status reporting off: not in a cluster and no --kubeconfig")
        return None
    return client.CoreV1Api() if kind == "core" else client.CustomObjectsApi()


def start_capture_point(env: dict[str, str] | os._Environ = os.environ) -> None:
    """The records' capture point, and in sidecar mode the pod's own addresses, from the downward API
    (kube/identity.py), before any task process forks."""
    from otus_agent import identity as hooks
    hooks.set_capture(identity.capture_point(env))
    own = identity.own_identity(env)
    if own:
        from orjson import dumps
        identity.LocalSink().publish({ip: (who, dumps(who)) for ip, who in own.items()})


class IdentityService:
    """The node agent's watch of pods and Services, as the task's ``identity`` section says
    (``otus_spec.IdentityOptions``: the CaptureTask's ``spec.identity``).  ``apply`` runs before each task
    start (TaskFileAgent's ``on_spec``), so the watch and the fork hook exist before a capture process
    forks; a later change takes effect on the running table: grace and bound at once, the watch
    started or stopped (its addresses then stop resolving).  Default (``enabled`` unset): on for a node
    agent in a cluster (or with --kubeconfig), off in sidecar mode.  Its table publishes to a snapshot file
    in the state directory that every forked capture process follows.  The environment plays no part
    (``OTUS_IDENTITY*`` are no longer read): the task file is the one place."""

    def __init__(self, kubeconfig: str | None, state_dir: str, env: dict[str, str] | os._Environ = os.environ,
                 sync_wait_s: float = SYNC_WAIT_S):
        self.kubeconfig, self.env, self.sync_wait_s = kubeconfig, env, sync_wait_s
        self.path = os.path.join(state_dir, "identity.tsv")
        self.table: identity.IdentityTable | None = None
        self.watch: identity.IdentityWatch | None = None
        self.applied: IdentityOptions | None = None

    def wanted(self, opts: IdentityOptions) -> bool:
        if opts.enabled is not None:
            return opts.enabled
        in_cluster = bool(self.kubeconfig or self.env.get("KUBERNETES_SERVICE_HOST"))
        return in_cluster and self.env.get("OTUS_MODE") != "sidecar"

    def apply(self, opts: IdentityOptions) -> None:
        if opts == self.applied:
            return
        self.applied = opts
        on = self.wanted(opts)
        if self.watch is not None and not on:
            self.watch.stop.set()
            self.watch = None
            assert self.table is not None
            self.table.clear()
            self._flush()
            log.info("identity watch of pods and services off (the task's identity.enabled)")
            return
        if self.watch is not None:
            assert self.table is not None
            self.table.configure(opts.grace_s, opts.max_entries)
            self._flush()
            log.info(f"identity: grace {opts.grace_s:g} s, at most {opts.max_entries} addresses")
            return
        if not on:
            return
        core = _api(self.kubeconfig, "core")
        if core is None:
            log.warning("identity watch off: no Kubernetes API")
            return
        if self.table is None:
            self.table = identity.IdentityTable(opts.grace_s, opts.max_entries, identity.FileSink(self.path))
        else:
            self.table.configure(opts.grace_s, opts.max_entries)
        self.watch = identity.IdentityWatch(core, self.table, threading.Event()).start()
        identity.follow_in_children(self.path)
        if not self.watch.wait_synced(self.sync_wait_s):   # the first records resolve; an API away delays no longer
            log.warning(f"identity: pods and services not listed within {self.sync_wait_s:g} s; capturing, "
                        "resolving later")
        log.info(f"identity watch of pods and services on (grace {opts.grace_s:g} s, "
                 f"at most {opts.max_entries} addresses)")

    def _flush(self) -> None:
        assert self.table is not None
        if isinstance(self.table.sink, identity.FileSink):
            with self.table.lock:
                self.table.sink.flush(force=True)

    def close(self) -> None:
        if self.watch is not None:
            self.watch.stop.set()


class _LazyIdentityCollector:
    """The identity table's families once (and while) the table exists: it is made at the first task."""

    def __init__(self, ids: IdentityService):
        self.ids = ids

    def collect(self):
        return identity.IdentityCollector(self.ids.table).collect() if self.ids.table is not None else []


def run(args: argparse.Namespace) -> int:
    if args.status_interval < 1 or args.poll_interval <= 0 or args.task_check_interval <= 0:
        raise SpecError("--status-interval must be >= 1, --poll-interval and --task-check-interval > 0")
    logs.setup("info", args.log_format, None)
    try:
        os.makedirs(args.state_dir, mode=0o750, exist_ok=True)
    except OSError as e:
        raise SpecError(f"state directory {args.state_dir}: {e.strerror}") from None
    manager = TaskManager(args.state_dir)
    reporter = None
    ns, task = os.environ.get("OTUS_TASK_NAMESPACE"), os.environ.get("OTUS_TASK")
    agent_name = os.environ.get("OTUS_AGENT_NAME") or socket.gethostname()
    if ns and task:
        api = _api(args.kubeconfig)
        if api is not None:
            reporter = StatusReporter(api, ns, task, agent_name, args.status_interval)
    else:
        log.warning("status reporting off: $OTUS_TASK_NAMESPACE and $OTUS_TASK are not set")
    stop = threading.Event()
    start_capture_point()
    ids = IdentityService(args.kubeconfig, args.state_dir)
    server = None
    if args.metrics_listen:
        host, _, port = args.metrics_listen.rpartition(":")
        if not port.isdigit():
            raise SpecError(f"--metrics-listen: expected [HOST]:PORT, got {args.metrics_listen!r}")
        try:
            server = metrics.serve((host.strip("[]") or "0.0.0.0", int(port)), manager.snapshot,
                                   [_LazyIdentityCollector(ids)])
        except OSError as e:
            raise SpecError(f"metrics listen {args.metrics_listen}: {e.strerror}") from None
    task_file, cm = args.task_file, None
    if args.task_configmap:
        ns_cm, sep, cm_name = args.task_configmap.partition("/")
        if not sep or not ns_cm or not cm_name:
            raise SpecError(f"--task-configmap: expected NAMESPACE/NAME, got {args.task_configmap!r}")
        core = _api(args.kubeconfig, "core")
        if core is None:
            raise SpecError("--task-configmap needs the Kubernetes API (in a cluster, or --kubeconfig)")
        from otus_agent.kube.configmap import ConfigMapSource
        cm = ConfigMapSource(core, ns_cm, cm_name, os.path.join(args.state_dir, "task"))
        task_file = cm.task_file
    agent = TaskFileAgent(task_file, manager, reporter, os.environ.get("OTUS_NODE"), os.environ.get("OTUS_POD"),
                          source=cm, check_interval_s=args.task_check_interval, on_spec=ids.apply,
                          task_ref=f"CaptureTask {ns}/{task}" if ns and task else "the CaptureTask")
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info(f"agent {agent_name} started on {args.task_file or args.task_configmap}")
    try:
        return agent.run(stop, args.poll_interval)
    finally:
        stop.set()
        ids.close()
        manager.shutdown()
        if server is not None:
            server.shutdown()
