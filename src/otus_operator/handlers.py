"""kopf handlers: thin glue between CaptureTask events and render/status/kube.

Every decision lives in the pure modules (render, status); the handlers read,
call them and write.  Children carry owner references (the API server's
garbage collector removes them) and are also deleted explicitly behind the
``otus.io/cleanup`` finalizer, so deletion works the same with or without GC.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

import kopf
from pydantic import ValidationError

from . import alerts, health, kube, metrics, render, status, webhook
from .crd import GROUP, PLURAL, VERSION, AgentStatus, CaptureTaskSpec

log = logging.getLogger("otus.operator")

NOT_INJECTED_MAX = 50
ATTACH_PER_ROUND = 10          # ephemeral containers added per status round, at most (API load)


@dataclass
class OperatorConfig:
    """The operator's settings: built by the entry point (or a test) and handed to kopf as ``memo.config``
    (kopf's operator memo, shallow-copied into every resource's memo, so every handler sees this object)."""
    webhook: bool = True
    webhook_service: str = "otus-operator-webhook"
    webhook_namespace: str = os.environ.get("OTUS_OPERATOR_NAMESPACE", "otus-system")
    webhook_addr: str = "0.0.0.0"
    webhook_port: int = 9443
    webhook_service_port: int = 443
    cert_dir: str | None = None          # mounted tls.crt/tls.key/ca.crt (cert-manager); else self-signed
    work_dir: str = "/tmp/otus-operator"
    post_events: bool = True
    status_interval_s: float = 10.0
    sidecar: str = "auto"                # native | container | auto (native from Kubernetes 1.29)
    agent: render.AgentDefaults = field(default_factory=render.AgentDefaults)
    webhook_config: str | None = None    # the chart's MutatingWebhookConfiguration: the operator patches its CA
    webhook_ca_secret: str | None = None # Secret the replicas share the self-signed certificate through
    namespaces: tuple = ()               # watched namespaces (empty: all)
    peering: str | None = None           # kopf peering object (two replicas, one active); None: standalone
    peering_lifetime: int = 10           # seconds a silent peer counts as alive (failover bound)
    drop_alert_ratio: float = alerts.DROP_ALERT_RATIO   # Warning Event KernelDrops: share of one interval


@dataclass
class OperatorState:
    """What the handlers share at run time (``memo.state``): decided at start-up or kept between rounds."""
    native: bool = False                 # sidecars as native init containers (decided at start-up)
    port_lock: threading.Lock = field(default_factory=threading.Lock)
    ports_given: dict[tuple[str, str], int] = field(default_factory=dict)   # allocated, maybe not yet in a status
    task_cache_lock: threading.Lock = field(default_factory=threading.Lock)
    task_cache: dict[str, tuple[float, list[dict]]] = field(default_factory=dict)


def memo(config: OperatorConfig | None = None) -> kopf.Memo:
    """The memo to start kopf with (``kopf.operator(memo=...)``)."""
    return kopf.Memo(config=config or OperatorConfig(), state=OperatorState())


def _parts(memo: kopf.Memo) -> tuple[OperatorConfig, OperatorState]:
    return memo.config, memo.state

# Shutdown.  kopf goes on processing resource events for a moment after SIGTERM and may
# spawn a status daemon after its daemon killer ran; that daemon would then only end when
# kopf's hung-task timeout cancels it (5 s and more).  SHUTDOWN is set by our own signal
# handler the moment the signal arrives, so new daemons return at once, and STOP (passed
# to kopf as its stop flag by main) makes kopf stop as its own signal handler would.
SHUTDOWN = threading.Event()
STOP: asyncio.Event | None = None


def _spec(body) -> CaptureTaskSpec:
    return CaptureTaskSpec.model_validate(dict(body.get("spec") or {}))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _error_status(message: str, generation: int | None) -> dict:
    ts = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"phase": "Failed", "observedGeneration": generation,
            "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": message[:1024],
                            "lastTransitionTime": ts, "observedGeneration": generation}]}


def install_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    """Replace kopf's SIGTERM/SIGINT handlers (main.py calls it once kopf is ready, i.e. after kopf
    installed its own): mark the shutdown, then stop kopf through its stop flag."""
    def stop(sig: signal.Signals) -> None:
        if not SHUTDOWN.is_set():
            log.info(f"{sig.name} received: stopping")
        SHUTDOWN.set()
        if STOP is not None:
            STOP.set()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    if "config" not in memo:             # `kopf run` (no embedding): the defaults
        memo.config, memo.state = OperatorConfig(), OperatorState()
    cfg, state = _parts(memo)
    settings.persistence.finalizer = "otus.io/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="otus.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="otus.io",
                                                                          key="last-handled-configuration")
    # Events (issue 13.6): kopf 1.45 posts only explicit kopf.event() calls unless loggers is on; with
    # it, every handler's log line of INFO and above becomes an Event on the CaptureTask (kubectl describe)
    settings.posting.enabled = cfg.post_events
    settings.posting.loggers = cfg.post_events
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "otus-operator"   # the "From" of `kubectl describe ct`
    # a daemon told to stop (task deleted, operator pausing) gets this long to return before kopf falls
    # back to cancelling it and re-checking on later handling cycles (which delays the finalizer's removal)
    settings.background.instant_exit_timeout = 1.0
    settings.watching.server_timeout = 300
    settings.process.ultimate_exiting_timeout = 20    # last resort, within Kubernetes' 30 s grace period
    if cfg.peering:
        settings.peering.lifetime = cfg.peering_lifetime
        settings.peering.stealth = True               # no log line per keep-alive
    health.HEALTH.webhook = cfg.webhook
    health.HEALTH.peering = bool(cfg.peering)
    if cfg.webhook:
        register_webhook()
        settings.admission.server = webhook.server(cfg.webhook_service, cfg.webhook_namespace,
                                                   cfg.webhook_addr, cfg.webhook_port,
                                                   cfg.webhook_service_port, cfg.cert_dir,
                                                   os.path.join(cfg.work_dir, "webhook-certs"),
                                                   cfg.webhook_config, cfg.webhook_ca_secret)
        # not kopf's managed mode: the chart owns the configuration (helm uninstall removes it)
        settings.admission.managed = None
    if cfg.sidecar == "auto":
        minor = kube.server_minor_version()
        state.native = minor is not None and minor >= 29
    else:
        state.native = cfg.sidecar == "native"
    log.info(f"sidecars injected as {'native init containers' if state.native else 'regular containers'}")
    health.HEALTH.started = True


# ----------------------------------------------------------------- reconcile
def _stop_agents(name: str, namespace: str, uid: str, spec: CaptureTaskSpec) -> None:
    kube.apply(render.configmap(name, namespace, uid, spec, suspended=True))
    kube.delete("DaemonSet", namespace, render.child_name(name))


def _rejected(body, e: ValidationError, generation: int | None, patch: kopf.Patch, cfg: OperatorConfig) -> str:
    """Mark the task Failed/InvalidSpec and post one Warning Event per rejected generation (a resume after
    a restart finds the same generation already rejected and stays quiet)."""
    msg = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:5])
    prev = body.get("status") or {}
    ready = next((c for c in prev.get("conditions") or [] if c.get("type") == "Ready"), {})
    already = ready.get("reason") == "InvalidSpec" and prev.get("observedGeneration") == generation
    patch.status.update(_error_status(f"invalid spec: {msg}", generation))
    if cfg.post_events and not already:
        selector = any("selector" in err["loc"] for err in e.errors())
        post(body, "Warning", "SelectorInvalid" if selector else "InvalidSpec", f"task spec rejected: {msg}")
    return msg


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(body, name: str, namespace: str, uid: str, patch: kopf.Patch, logger, memo: kopf.Memo, **_) -> None:
    cfg, state = _parts(memo)
    generation = body.get("metadata", {}).get("generation")
    try:
        spec = _spec(body)
    except ValidationError as e:
        msg = _rejected(body, e, generation, patch, cfg)
        metrics.RECONCILES.labels("invalid").inc()
        metrics.set_phase(namespace, name, "Failed")
        raise kopf.PermanentError(f"invalid spec: {msg}") from None
    sidecar = spec.target.pods is not None
    finished = (body.get("status") or {}).get("phase") == "Succeeded"
    accounts: set[str] = set()
    if sidecar:
        binding = kube.read("RoleBinding", namespace, render.child_name(name)) or {}
        accounts = {s["name"] for s in binding.get("subjects") or [] if s.get("kind") == "ServiceAccount"}
        accounts |= {render.pod_service_account(p) for p in kube.list_pods(namespace, spec.target.pods.selector)
                     if render.has_agent(p)}
    watch = spec.identity.enabled is not False
    for obj in render.agent_rbac(name, namespace, uid, sidecar, accounts, identity=watch):
        kube.apply(obj)
    if sidecar or not watch:   # node agents only read pods and Services cluster-wide, and only when they watch
        # (a task may turn to sidecar mode, or turn the watch off)
        kube.delete("ClusterRoleBinding", "", render.identity_binding_name(name, namespace))
    kube.apply(render.configmap(name, namespace, uid, spec, suspended=spec.suspend or finished))
    port = render.METRICS_PORT if sidecar else agent_port(body, namespace, name, cfg, state)
    if not sidecar:
        patch.status["agentPort"] = port
    kube.apply(render.metrics_service(name, namespace, uid, port))
    if sidecar or spec.suspend or finished:
        if kube.delete("DaemonSet", namespace, render.child_name(name)):
            logger.info("agents stopped: DaemonSet deleted")
    else:
        kube.apply(render.daemonset(name, namespace, uid, spec, cfg.agent, port))
    patch.status["mode"] = "Sidecar" if sidecar else "DaemonSet"
    patch.status["target"] = spec.target.text()
    if spec.suspend:
        patch.status["agents"] = None        # stale entries would read as running agents on resume
    metrics.RECONCILES.labels("ok").inc()
    logger.info(f"reconciled ({'suspended' if spec.suspend else 'sidecar' if sidecar else 'daemonset'})")


def agent_port(body, namespace: str, name: str, cfg: OperatorConfig, state: OperatorState) -> int:
    """This DaemonSet task's agent host port: the one in its status, else the lowest no other task holds
    (one active operator allocates; the lock covers kopf handling several tasks at once)."""
    have = (body.get("status") or {}).get("agentPort")
    if isinstance(have, int):
        return have
    with state.port_lock:
        given = state.ports_given
        if (namespace, name) in given:
            return given[(namespace, name)]
        if cfg.namespaces:               # namespaced Roles only: list where the operator may
            items = [o for n in cfg.namespaces
                     for o in kube.custom().list_namespaced_custom_object(GROUP, VERSION, n, PLURAL).get("items", [])]
        else:
            items = kube.custom().list_cluster_custom_object(GROUP, VERSION, PLURAL).get("items", [])
        used = {o["status"]["agentPort"] for o in items if isinstance((o.get("status") or {}).get("agentPort"), int)
                and (o["metadata"].get("namespace"), o["metadata"]["name"]) != (namespace, name)}
        used |= {p for k, p in given.items() if k != (namespace, name)}
        port = render.allocate_port(used)
        given[(namespace, name)] = port
        return port


@kopf.on.delete(GROUP, VERSION, PLURAL)
def cleanup(name: str, namespace: str, logger, memo: kopf.Memo, **_) -> None:
    n = render.child_name(name)
    gone = [k for k in ("DaemonSet", "ConfigMap", "RoleBinding", "Role", "ServiceAccount")
            if kube.delete(k, namespace, n)]
    if kube.delete("Service", namespace, render.metrics_service(name, namespace, "")["metadata"]["name"]):
        gone.append("Service")
    if kube.delete("ClusterRoleBinding", "", render.identity_binding_name(name, namespace)):   # not garbage-collected
        gone.append("ClusterRoleBinding")
    metrics.set_phase(namespace, name, None)
    state = memo.state
    with state.port_lock:
        state.ports_given.pop((namespace, name), None)
    logger.info(f"cleaned up: {', '.join(gone) or 'nothing left'}")


# ----------------------------------------------------------------- status roll-up
def _pods(name: str, namespace: str, spec: CaptureTaskSpec, cfg: OperatorConfig) -> dict:
    selector = spec.target.pods.selector if spec.target.pods else {}
    pods = [p for p in kube.list_pods(namespace, selector)
            if render.selects(selector, p.get("metadata", {}).get("labels"))
            and not p.get("metadata", {}).get("deletionTimestamp")]
    if spec.target.pods is not None and spec.target.pods.attachExisting and not spec.suspend:
        attached = 0
        for p in pods:
            ann = (p.get("metadata") or {}).get("annotations") or {}
            if render.has_agent(p) or ann.get("otus.io/inject") == "false" or attached >= ATTACH_PER_ROUND:
                continue
            if (p.get("status") or {}).get("phase") not in ("Running", None):
                continue
            c = render.ephemeral_container(name, namespace, spec, p, cfg.agent)
            try:
                kube.add_ephemeral_container(namespace, p, c)
            except kube.ApiException as e:
                log.warning(f"{namespace}/{p['metadata']['name']}: ephemeral agent not attached: {e.status} {e.reason}")
                continue
            p.setdefault("spec", {}).setdefault("ephemeralContainers", []).append(c)
            attached += 1
            metrics.INJECTIONS.labels("ephemeral").inc()
    injected = [p for p in pods if render.has_agent(p)]
    ensure_bound(name, namespace, {render.pod_service_account(p) for p in injected})
    missing = sorted(p["metadata"]["name"] for p in pods if not render.has_agent(p))
    return {"matching": len(pods), "injected": len(injected), "notInjected": missing[:NOT_INJECTED_MAX],
            "_crashing": status.crash_looping(injected), "_names": [p["metadata"]["name"] for p in pods],
            "_missing": len(missing)}


def ensure_bound(task: str, namespace: str, accounts: set[str]) -> None:
    """Add service accounts to the task's agent RoleBinding (a JSON patch; only when one is missing)."""
    if not accounts:
        return
    n = render.child_name(task)
    binding = kube.read("RoleBinding", namespace, n)
    if binding is None:
        return                               # reconcile creates it, with the accounts of the pods
    have = {s.get("name") for s in binding.get("subjects") or [] if s.get("kind") == "ServiceAccount"}
    missing = sorted(accounts - have)
    if not missing:
        return
    from kubernetes import client
    ops: list[dict] = [{"op": "test", "path": "/metadata/resourceVersion",
                        "value": binding["metadata"]["resourceVersion"]}]
    if binding.get("subjects") is None:
        ops.append({"op": "add", "path": "/subjects", "value": []})
    ops += [{"op": "add", "path": "/subjects/-", "value": render.sa_subject(sa, namespace)} for sa in missing]
    client.RbacAuthorizationV1Api(kube.api()).patch_namespaced_role_binding(
        n, namespace, ops, _content_type="application/json-patch+json", _preload_content=False)


def roll_up_once(name: str, namespace: str, cfg: OperatorConfig) -> dict | None:
    """Read the CaptureTask, compute its status, write it if it changed; returns the patch or None."""
    api = kube.custom()
    try:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except kube.ApiException as e:
        if e.status == 404:
            return None
        raise
    if obj.get("metadata", {}).get("deletionTimestamp"):
        return None
    try:
        spec = CaptureTaskSpec.model_validate(obj.get("spec") or {})
    except ValidationError:
        return None                      # reconcile already reported InvalidSpec
    prev = obj.get("status") or {}
    desired = None
    pods = None
    unscheduled: list[str] = []
    failed_pods: list[str] = []
    missing = 0
    if spec.target.pods is not None:
        pods = _pods(name, namespace, spec, cfg)
        desired = pods["injected"]
        crashing = pods.pop("_crashing")
        pod_names = set(pods.pop("_names"))
        missing = pods.pop("_missing")
    else:
        ds = kube.read("DaemonSet", namespace, render.child_name(name))
        if ds is not None and "desiredNumberScheduled" in (ds.get("status") or {}):
            desired = ds["status"]["desiredNumberScheduled"]
        agent_pods = kube.list_pods(namespace, {render.LABEL: name}) if ds is not None else []
        crashing = status.crash_looping(agent_pods)
        failed_pods = alerts.failed_pods(agent_pods)
        unscheduled = status.unschedulable(agent_pods)      # why an agent is not running (e.g. no free port)
        pod_names = {p["metadata"]["name"] for p in agent_pods}
    now = _now()
    agents = prev.get("agents") or {}
    gone = status.departed(agents, pod_names, now)
    agents = {k: v for k, v in agents.items() if k not in gone}
    new = status.roll_up(spec, agents, obj["metadata"].get("generation", 1), now, prev, desired,
                         crashing, unscheduled)
    running = new["phase"] not in ("Suspended", "Succeeded")
    found = alerts.active({k: AgentStatus.model_validate(v) for k, v in agents.items()}, crashing=crashing,
                          failed=failed_pods, window=alerts.drop_window(prev.get("totals"), new["totals"]),
                          previous=prev.get("alerts") or [], drop_ratio=cfg.drop_alert_ratio, not_injected=missing,
                          not_injected_names=(pods or {}).get("notInjected"),
                          selector=spec.target.text().partition(" ")[2], unscheduled=unscheduled) if running else []
    new["alerts"] = sorted(a.key for a in found)
    if gone:                                             # merge patch: null removes the entries
        new["agents"] = {k: None for k in gone}
        new["counters"] = {**new["counters"], **{k: None for k in gone}}
    if pods is not None:
        new["pods"] = pods
    metrics.set_phase(namespace, name, new["phase"])
    if all(prev.get(k) == v for k, v in new.items()):
        return None                      # nothing changed: no write (rate limit by construction)
    if new["phase"] == "Succeeded" and prev.get("phase") != "Succeeded":
        _stop_agents(name, namespace, obj["metadata"].get("uid", ""), spec)
        log.info(f"{namespace}/{name}: duration elapsed, agents stopped")
    api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": new})
    metrics.ROLLUPS.inc()
    if cfg.post_events:
        _post_changes(obj, prev, new, found, running)
    return new


def post(obj: dict, type_: str, reason: str, message: str) -> None:
    """One core/v1 Event on ``obj`` through kopf's posting queue (what kopf's own Events use, so every Event
    on a CaptureTask has one shape and one source); an Event is never worth a failed handler."""
    try:
        kopf.event(obj, type=type_, reason=reason, message=message[:1024])
    except Exception as e:
        log.debug(f"event not posted: {e}")


def _post_changes(obj: dict, prev: dict, new: dict, found: list[alerts.Alert], running: bool) -> None:
    """Events for what a user watches: phase changes, and alerts when they start and end."""
    if new.get("phase") != prev.get("phase"):
        ready = next((c for c in new["conditions"] if c["type"] == "Ready"), {})
        post(obj, "Warning" if new["phase"] == "Failed" else "Normal", new["phase"],
             f"phase {prev.get('phase') or '-'} -> {new['phase']}: {ready.get('message', '')}")
    started, ended = alerts.transitions(prev.get("alerts") or [], found)
    for a in started:
        post(obj, "Warning", a.reason, a.message)
    for key in ended if running else ():
        reason, _, subject = key.partition("/")
        post(obj, "Normal", f"{reason}Resolved", f"{reason} is over{' for ' + subject if subject else ''}")


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=2.0)
async def status_loop(stopped: kopf.DaemonStopped, name: str, namespace: str, logger, memo: kopf.Memo,
                      **_) -> None:
    """One loop per CaptureTask: roll the agents' entries up every status interval.

    Async on purpose.  A sync daemon runs in a thread of kopf's executor that only
    returns once its stop flag is set; a daemon spawned while the operator shuts down
    (a resource event still in flight at SIGTERM) never sees that flag, kopf cannot
    cancel a thread, and the interpreter then waits for it at exit forever (the hang
    after "Daemon 'status_loop' succeeded", issue 12).

    It returns as soon as it is told to stop, even in the middle of a roll-up: the
    blocking roll-up runs in a worker thread, and waiting for it (several API calls,
    slow on a busy node) held the task's deletion -- kopf keeps the finalizer until
    its daemons exit, and re-checks a daemon that missed the instant exit only on a
    later handling cycle.  The abandoned roll-up ends on its own, bounded by the API
    client's request timeout, and finds the task deleted or being deleted.
    """
    cfg = memo.config
    loop = asyncio.get_running_loop()
    stop = asyncio.ensure_future(_until(stopped))
    work: asyncio.Future | None = None
    try:
        while not stop.done() and not SHUTDOWN.is_set():
            # kopf.event() from the worker thread needs kopf's context (the posting queue)
            work = loop.run_in_executor(None, contextvars.copy_context().run, roll_up_once, name, namespace, cfg)
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                return                                   # told to stop: the roll-up is left to finish alone
            if (e := work.exception()) is not None:      # keep rolling up; the next round may succeed
                metrics.ROLLUP_ERRORS.inc()
                logger.warning(f"status roll-up failed: {type(e).__name__}: {e}")
            await _pause(stop, cfg.status_interval_s)
    finally:
        stop.cancel()
        if work is not None and not work.done():         # returned or cancelled mid-roll-up
            work.add_done_callback(_forget)


async def _until(stopped: kopf.DaemonStopped) -> None:
    await stopped.wait()


async def _pause(stop: asyncio.Future, seconds: float) -> None:
    """Wait ``seconds`` or until ``stop``; SHUTDOWN (a threading.Event) is looked at every 0.25 s."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not stop.done() and not SHUTDOWN.is_set():
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return
        await asyncio.wait({stop}, timeout=min(0.25, left))


def _forget(work: asyncio.Future) -> None:
    """The result of a roll-up whose daemon has stopped: nobody waits for it any more."""
    if not work.cancelled() and work.exception() is not None:
        log.debug(f"roll-up after stop failed: {work.exception()!r}")


# ----------------------------------------------------------------- sidecar injection
TASK_CACHE_S = 2.0


def sidecar_tasks(namespace: str, state: OperatorState) -> list[dict]:
    """Pods-mode CaptureTasks of a namespace, for the admission webhook: read from the API server
    (cached for TASK_CACHE_S), not from a kopf index, so that a standby replica -- whose watchers
    kopf's peering has paused, and whose indexes stay empty -- injects exactly as the active one."""
    import time
    now = time.monotonic()
    with state.task_cache_lock:
        hit = state.task_cache.get(namespace)
        if hit is not None and now - hit[0] < TASK_CACHE_S:
            return hit[1]
    items = kube.custom().list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL).get("items", [])
    tasks = [{"name": o["metadata"]["name"], "spec": dict(o.get("spec") or {})} for o in items
             if ((o.get("spec") or {}).get("target") or {}).get("pods")
             and not (o.get("metadata") or {}).get("deletionTimestamp")]
    with state.task_cache_lock:
        state.task_cache[namespace] = (now, tasks)
    return tasks


def inject_sidecar(body, patch: kopf.Patch, warnings: list[str], logger, memo: kopf.Memo, dryrun: bool = False,
                   **_) -> None:
    cfg, state = _parts(memo)
    meta = body.get("metadata") or {}
    pod = {"spec": dict(body.get("spec") or {})}
    if render.has_agent(pod) or (meta.get("annotations") or {}).get("otus.io/inject") == "false":
        metrics.INJECTIONS.labels("skipped").inc()
        return
    matches = []
    namespace = meta.get("namespace")
    if not namespace:
        metrics.INJECTIONS.labels("no_task").inc()
        return
    for entry in sidecar_tasks(namespace, state):
        try:
            spec = CaptureTaskSpec.model_validate(entry["spec"])
        except ValidationError:
            continue
        if not spec.suspend and spec.target.pods is not None and render.selects(spec.target.pods.selector,
                                                                                 meta.get("labels")):
            matches.append((entry["name"], spec))
    if not matches:
        metrics.INJECTIONS.labels("no_task").inc()
        return
    matches.sort(key=lambda m: m[0])
    name, spec = matches[0]
    if len(matches) > 1:
        warnings.append(f"otus: several CaptureTasks select this pod; injected {name!r} only")
    if not dryrun:      # the pod's agent may read its task: bind its service account before the pod runs
        try:
            ensure_bound(name, namespace, {render.pod_service_account(pod)})
        except kube.ApiException as e:
            logger.warning(f"service account not bound for {name!r}: {e.status} {e.reason}; the status loop retries")
    for key, value in render.inject(pod, name, spec, native=state.native, defaults=cfg.agent).items():
        patch.spec[key] = value
    patch.metadata.annotations["otus.io/capturetask"] = name
    patch.metadata.labels[render.LABEL] = name          # the task's metrics Service selects it
    metrics.INJECTIONS.labels("injected").inc()
    logger.info(f"capture agent of {name!r} injected")


_webhook_registered = False


def register_webhook() -> None:
    """Register the injection webhook (once).  Without it kopf needs no webhook server: --no-webhook."""
    global _webhook_registered
    if not _webhook_registered:
        kopf.on.mutate("v1", "pods", operations=["CREATE"], id="inject", ignore_failures=True,
                       persistent=True, side_effects=True)(inject_sidecar)
        _webhook_registered = True
