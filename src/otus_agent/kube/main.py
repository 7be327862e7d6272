"""Wiring of `otus agent`: environment, API client, metrics, signals (its flags are defined in `cli.main`)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading

from otus_agent.daemon.manager import TaskManager
from otus_agent.kube.runner import TaskFileAgent
from otus_agent.kube.status import StatusReporter
from otus_agent.observability import logs, metrics
from otus_spec import SpecError

log = logging.getLogger("otus.kube.agent")


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
    server = None
    if args.metrics_listen:
        host, _, port = args.metrics_listen.rpartition(":")
        if not port.isdigit():
            raise SpecError(f"--metrics-listen: expected [HOST]:PORT, got {args.metrics_listen!r}")
        try:
            server = metrics.serve((host.strip("[]") or "0.0.0.0", int(port)), manager.snapshot)
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
                          source=cm, check_interval_s=args.task_check_interval,
                          task_ref=f"CaptureTask {ns}/{task}" if ns and task else "the CaptureTask")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info(f"agent {agent_name} started on {args.task_file or args.task_configmap}")
    try:
        return agent.run(stop, args.poll_interval)
    finally:
        manager.shutdown()
        if server is not None:
            server.shutdown()
