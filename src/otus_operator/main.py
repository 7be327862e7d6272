"""`otus-operator`: run the CaptureTask operator (all namespaces unless --namespace).

Two replicas, one active: kopf peering (``--peering NAME``), not a coordination.k8s.io Lease of our own.
kopf's peering pauses exactly what must not run twice -- its watchers, handlers and daemons -- and
resumes them, while its admission server keeps serving, which a standby must do (the webhook Service
routes to every Ready replica).  A Lease would need that pause rebuilt around kopf.  Priorities are
random per pod (equal ones would pause every replica), the lifetime is 10 s: a replica killed without a
goodbye is replaced within about 10 s; one stopped with SIGTERM removes itself at once.  Peering is
not a strict lock (a starting replica may handle an event before it sees a higher-priority peer);
the handlers are idempotent, so that overlap is harmless.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .alerts import DROP_ALERT_RATIO


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otus-operator", description="Reconcile CaptureTask resources into Otus agents.")
    p.add_argument("--namespace", "-n", action="append", metavar="NS",
                   help="watch only this namespace (repeatable; default: all namespaces)")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster, then ~/.kube/config)")
    p.add_argument("--no-webhook", action="store_true", help="no sidecar injection (DaemonSet mode only)")
    p.add_argument("--webhook-service", default="otus-operator-webhook", help="Service in front of the webhook")
    p.add_argument("--webhook-namespace", default=None, help="namespace of that Service (default $OTUS_OPERATOR_NAMESPACE)")
    p.add_argument("--webhook-port", type=int, default=9443, help="port the webhook listens on")
    p.add_argument("--webhook-config", metavar="NAME",
                   help="the MutatingWebhookConfiguration (the chart's) to put the CA bundle into")
    p.add_argument("--webhook-ca-secret", metavar="NAME",
                   help="Secret (in the webhook namespace) through which replicas share the self-signed certificate")
    p.add_argument("--webhook-cert-dir", metavar="DIR",
                   help="tls.crt, tls.key and ca.crt (e.g. from cert-manager); default: a self-signed CA")
    p.add_argument("--sidecar", choices=("auto", "native", "container"), default="auto",
                   help="native sidecars (init container, restartPolicy Always) or regular containers")
    p.add_argument("--status-interval", type=float, default=10.0, metavar="SECONDS",
                   help="how often each CaptureTask's status is rolled up")
    p.add_argument("--agent-image", metavar="IMAGE", help="agent image for tasks that name none")
    p.add_argument("--agent-pull-policy", choices=("Always", "IfNotPresent", "Never"), default="IfNotPresent",
                   help="imagePullPolicy of the agent containers")
    p.add_argument("--agent-resources", metavar="JSON", help="agent resources for tasks that set none")
    p.add_argument("--agent-tolerations", metavar="JSON", help="agent tolerations (nodes mode) for tasks that set none")
    p.add_argument("--metrics-port", type=int, default=8081, help="the operator's Prometheus port (0 = off)")
    p.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="kopf liveness endpoint ('' = off)")
    p.add_argument("--readiness", default="0.0.0.0:8082", metavar="ADDR:PORT",
                   help="serve /readyz here: ready once watching (or standing by as a peer) ('' = off)")
    p.add_argument("--peering", metavar="NAME",
                   help="run with kopf peering through this (Cluster)KopfPeering object: of several replicas, "
                        "one is active, the others stand by (default: standalone)")
    p.add_argument("--priority", type=int, default=None,
                   help="peering priority (default: random, so that replicas never tie)")
    p.add_argument("--peering-lifetime", type=int, default=10, metavar="SECONDS",
                   help="a peer silent this long counts as gone and a standby takes over")
    p.add_argument("--no-events", action="store_true", help="do not post Kubernetes events")
    p.add_argument("--drop-alert-ratio", type=float, default=DROP_ALERT_RATIO, metavar="RATIO",
                   help="post a KernelDrops Warning Event when more than this share of one status interval's "
                        f"packets was dropped (default {DROP_ALERT_RATIO:g})")
    p.add_argument("--verbose", action="store_true")
    return p


def load_kube_config(kubeconfig: str | None) -> None:
    from kubernetes import config
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)
        return
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def _agent_defaults(args: argparse.Namespace):
    import json

    from .render import DEFAULTS, AgentDefaults

    def parsed(text: str | None, kind: type, flag: str):
        if text is None:
            return None
        try:
            v = json.loads(text)
        except ValueError as e:
            raise ValueError(f"{flag}: not JSON: {e}") from None
        if not isinstance(v, kind):
            raise ValueError(f"{flag}: expected a JSON {kind.__name__}")
        return v
    res = parsed(args.agent_resources, dict, "--agent-resources")
    tol = parsed(args.agent_tolerations, list, "--agent-tolerations")
    return AgentDefaults(image=args.agent_image or DEFAULTS.image,
                         resources=res if res is not None else DEFAULTS.resources,
                         tolerations=tuple(tol) if tol is not None else DEFAULTS.tolerations,
                         pull_policy=getattr(args, "agent_pull_policy", None) or DEFAULTS.pull_policy)


SHUTDOWN_BUDGET_S = 3.5       # SIGTERM to exit, at most (plus half a second for cancellation)


async def _operate(kopf, handlers, args, config) -> None:
    """kopf.operator in this (main) thread, with our own signal handlers installed once kopf is ready."""
    import asyncio
    loop = asyncio.get_running_loop()
    handlers.STOP = asyncio.Event()
    ready = asyncio.Event()
    peering: dict = {"standalone": True}
    if args.peering:
        import random
        prio = args.priority if args.priority is not None else random.SystemRandom().randint(1, 2 ** 31 - 1)
        peering = {"standalone": False, "peering_name": args.peering, "priority": prio}
    op = asyncio.create_task(kopf.operator(stop_flag=handlers.STOP, ready_flag=ready, **peering,
                                           memo=handlers.memo(config),
                                           clusterwide=not args.namespace, namespaces=args.namespace or (),
                                           liveness_endpoint=args.liveness or None))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({op, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not op.done():
        # after kopf's start-up activities, so after kopf installed its handlers: ours replace them
        handlers.install_signal_handlers(loop)
    waiter.cancel()
    stopping = asyncio.create_task(handlers.STOP.wait())
    await asyncio.wait({op, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if op.done():
        stopping.cancel()
        await op
        return
    # Stopping: kopf finishes or cancels its handlers, then gives leftover tasks 5 s of its own --
    # too long for a 5 s bound on a busy node.  Past SHUTDOWN_BUDGET_S, whatever runs is cancelled.
    done, _ = await asyncio.wait({op}, timeout=SHUTDOWN_BUDGET_S)
    if not done:
        logging.getLogger("otus.operator").warning(
            f"still stopping after {SHUTDOWN_BUDGET_S:g} s: cancelling what is left")
        op.cancel()
        await asyncio.wait({op}, timeout=0.5)
    elif not op.cancelled() and (error := op.exception()) is not None:
        raise error


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.kubeconfig:
        import os
        os.environ["KUBECONFIG"] = args.kubeconfig   # before kubernetes is imported: kopf's login reads it too
    if args.status_interval < 1:
        sys.stderr.write("otus-operator: error: --status-interval must be at least 1 second\n")
        return 2
    if not 0 < args.drop_alert_ratio < 1:
        sys.stderr.write("otus-operator: error: --drop-alert-ratio must be between 0 and 1\n")
        return 2
    try:
        agent = _agent_defaults(args)
    except ValueError as e:
        sys.stderr.write(f"otus-operator: error: {e}\n")
        return 2
    try:
        import kopf
    except ImportError:
        sys.stderr.write("otus-operator: error: kopf is not installed: pip install 'otus[operator]'\n")
        return 2
    from kubernetes.config import ConfigException
    try:
        load_kube_config(args.kubeconfig)
    except (ConfigException, OSError) as e:
        sys.stderr.write(f"otus-operator: error: no Kubernetes credentials: {e}\n")
        return 2
    from . import handlers
    c = handlers.OperatorConfig()
    c.webhook = not args.no_webhook
    c.webhook_service = args.webhook_service
    if args.webhook_namespace:
        c.webhook_namespace = args.webhook_namespace
    c.webhook_port = args.webhook_port
    c.cert_dir = args.webhook_cert_dir
    c.webhook_config = args.webhook_config
    c.webhook_ca_secret = args.webhook_ca_secret
    c.sidecar = args.sidecar
    c.status_interval_s = args.status_interval
    c.post_events = not args.no_events
    c.agent = agent
    c.peering = args.peering
    c.namespaces = tuple(args.namespace or ())
    c.peering_lifetime = args.peering_lifetime
    c.drop_alert_ratio = args.drop_alert_ratio
    if c.webhook:
        handlers.register_webhook()     # before kopf starts: kopf reads the registry at start-up
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
    from . import health
    health.install()
    if args.readiness:
        addr, _, port = args.readiness.rpartition(":")
        try:
            health.serve(addr or "0.0.0.0", int(port))
        except (OSError, ValueError) as e:
            sys.stderr.write(f"otus-operator: error: --readiness {args.readiness}: {e}\n")
            return 2
    if args.metrics_port:
        from . import metrics
        try:
            metrics.serve(args.metrics_port)
        except OSError as e:
            sys.stderr.write(f"otus-operator: error: metrics port {args.metrics_port}: {e.strerror}\n")
            return 2
    import asyncio
    import os
    loop = asyncio.new_event_loop()
    code = 0
    try:
        loop.run_until_complete(_operate(kopf, handlers, args, c))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except Exception:
        logging.getLogger("otus.operator").exception("the operator failed")
        code = 1
    # kopf has finished or cancelled every handler by now.  A sync handler still inside an
    # API call (bounded by kube.REQUEST_TIMEOUT) runs in a thread that nothing can cancel;
    # waiting for it at interpreter exit would hold the pod past its grace period, so the
    # process ends here without joining those threads (kopf abandoned them already).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
