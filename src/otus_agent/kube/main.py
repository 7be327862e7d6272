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
from otus_spec import SpecError

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


def start_identity(args: argparse.Namespace, stop: threading.Event,
                   env: dict[str, str] | os._Environ = os.environ) -> identity.IdentityTable | None:
    """The records' capture point and identities (kube/identity.py), before any task process forks.

    Sidecar mode: the capture point and the pod's own addresses, from the downward API; no watch.
    Node agent (DaemonSet): also the watch of pods and Services, when in a cluster (or with
    --kubeconfig) and not turned off (``OTUS_IDENTITY=false``); its table publishes to a snapshot file in
    the state directory that every forked capture process follows."""
    from otus_agent import identity as hooks
    settings = identity.IdentitySettings.from_env(env)
    hooks.set_capture(identity.capture_point(env))
    own = identity.own_identity(env)
    if own:
        from orjson import dumps
        identity.LocalSink().publish({ip: (who, dumps(who)) for ip, who in own.items()})
    in_cluster = bool(args.kubeconfig or env.get("KUBERNETES_SERVICE_HOST"))
    enabled = settings.enabled if settings.enabled is not None else in_cluster and env.get("OTUS_MODE") != "sidecar"
    if not enabled:
        return None
    core = _api(args.kubeconfig, "core")
    if core is None:
        log.warning("identity watch off: no Kubernetes API")
        return None
    path = os.path.join(args.state_dir, "identity.tsv")
    table = identity.IdentityTable(settings.grace_s, settings.max_entries, identity.FileSink(path))
    watch = identity.IdentityWatch(core, table, stop).start()
    identity.follow_in_children(path)
    if not watch.wait_synced(SYNC_WAIT_S):     # the first records resolve; an API away delays capture no longer
        log.warning(f"identity: pods and services not listed within {SYNC_WAIT_S:g} s; capturing, resolving later")
    log.info(f"identity watch of pods and services on (grace {settings.grace_s:g} s, "
             f"at most {settings.max_entries} addresses)")
    return table


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
    table = start_identity(args, stop)
    server = None
    if args.metrics_listen:
        host, _, port = args.metrics_listen.rpartition(":")
        if not port.isdigit():
            raise SpecError(f"--metrics-listen: expected [HOST]:PORT, got {args.metrics_listen!r}")
        try:
            server = metrics.serve((host.strip("[]") or "0.0.0.0", int(port)), manager.snapshot,
                                   [identity.IdentityCollector(table)] if table is not None else [])
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
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info(f"agent {agent_name} started on {args.task_file or args.task_configmap}")
    try:
        return agent.run(stop, args.poll_interval)
    finally:
        stop.set()
        manager.shutdown()
        if server is not None:
            server.shutdown()
