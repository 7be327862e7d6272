"""A Kubernetes API emulator (kmock) on loopback, and the real kopf operator against it.

No API server can run on this machine, so the operator's tests use kmock's
stateful KubernetesEmulator, over real HTTP, through the official client and
kopf's own.  Where the emulator is less than a real server, this subclass
adds what the operator relies on: uid, resourceVersion, creationTimestamp and
generation (bumped on spec changes).  Not emulated, and so not tested here:
label selectors on the server (the operator filters again itself), strategic
merge, garbage collection, and admission (webhook calls are made by the test
with real AdmissionReview payloads).

kmock's public API (``kmock.KubernetesEmulator``, ``Server``, ``KubernetesError``,
``action``, ``method``, ``emulator.objects`` and its ``Object`` entries) is used
wherever it suffices.  Five kmock internals are still reached, here only:

- ``KubernetesEmulator._handle``, overridden: the one hook that sees every
  request before kmock answers it, which the RBAC check (every call recorded),
  PUT routing (kmock does not route replace), server-side apply creating a
  missing object, and the metadata stamping all need.  kmock's public reactions
  (``emulator[criteria] << response``) answer requests instead of the
  emulator, they cannot amend a request and let the emulator go on.
- ``_lock``, ``_objects`` and ``_buses``, in ``_apply_creates`` only: creating
  an object from an apply-patch must store it and tell the watchers (ADDED) as
  one step under kmock's own lock, as kmock does for a POST.
- ``_requests`` (kmock's request history), in ``_forget``: a served request is
  dropped from it, since kmock searches that whole history for every new
  request and the emulator's answers grew slower with every call (the
  operator tests' time-outs late in a session; see ``_forget``).

The operator runs in ``Operator``: kopf's documented embedding
(``kopf.operator()`` in a thread of its own), not ``kopf.testing.KopfRunner``,
because KopfRunner drives the ``kopf run`` command line, which cannot hand the
operator its configuration as a memo (``memo=``) nor take a stop flag.  The
tests' helpers (waiting, ports, CaptureTask reads) are in ``support.py``.
"""
from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import os
import tempfile
import threading
import uuid

import attrs
import jsonpatch
import yaml
from kmock import KubernetesEmulator, KubernetesError, Server, action, method

RESOURCES = {
    "v1/namespaces": dict(kind="Namespace", namespaced=False),
    "v1/pods": dict(kind="Pod", namespaced=True, subresources=["ephemeralcontainers", "status"]),
    "v1/configmaps": dict(kind="ConfigMap", namespaced=True),
    "v1/serviceaccounts": dict(kind="ServiceAccount", namespaced=True),
    "v1/services": dict(kind="Service", namespaced=True),
    "v1/events": dict(kind="Event", namespaced=True),
    "v1/secrets": dict(kind="Secret", namespaced=True),
    "apps/v1/daemonsets": dict(kind="DaemonSet", namespaced=True, subresources=["status"]),
    "rbac.authorization.k8s.io/v1/roles": dict(kind="Role", namespaced=True),
    "rbac.authorization.k8s.io/v1/rolebindings": dict(kind="RoleBinding", namespaced=True),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": dict(kind="ClusterRoleBinding", namespaced=False),
    "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations":
        dict(kind="MutatingWebhookConfiguration", namespaced=False),
    # kopf's peering objects (their CRDs have no status subresource: kopf patches the object itself)
    "kopf.dev/v1/clusterkopfpeerings": dict(kind="ClusterKopfPeering", namespaced=False),
    "kopf.dev/v1/kopfpeerings": dict(kind="KopfPeering", namespaced=True),
    "otus.io/v1alpha1/capturetasks": dict(kind="CaptureTask", namespaced=True, subresources=["status"],
                                          singular="capturetask", shortnames=["ct"]),
}
SYSTEM_FIELDS = {"uid", "resourceVersion", "creationTimestamp", "generation", "finalizers", "deletionTimestamp",
                 "status"}
VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]
TEST_USER = "test-token"
OPERATOR_NAMESPACE = "otus-system"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:otus-operator"


def verb_of(request) -> str:
    """The RBAC verb of a request, as the API server's authorizer names it."""
    m = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
    if m == "GET":
        if str(request.params.get("watch", "")).lower() in ("true", "1"):
            return "watch"
        return "get" if request.name is not None else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if request.name is not None else "deletecollection"}.get(m, m.lower())


@attrs.frozen
class Call:
    """One API request as RBAC sees it (the request attributes of the authorizer)."""
    user: str
    verb: str
    group: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    path: str


class StampingEmulator(KubernetesEmulator):
    _rv = itertools.count(1)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[Call] = []          # every request, for the RBAC check

    def _record(self, request) -> None:
        auth = request.headers.get("Authorization", "")
        user = auth.split(" ", 1)[1] if " " in auth else auth
        r = request.resource
        self.calls.append(Call(user=user, verb=verb_of(request), group=(getattr(r, "group", None) or "") if r else "",
                               resource=(getattr(r, "plural", None) or "") if r else "",
                               subresource=request.subresource, namespace=request.namespace, name=request.name,
                               path=str(request.url.path)))

    async def _handle(self, request):
        self._record(request)
        if request.resource is not None and request.name is not None and request.method == method.PUT:
            request = self._as_replace(request)
        if request.action == action.UPDATE and "apply-patch" in request.headers.get("Content-Type", "") \
                and isinstance(request.data, dict):
            await self._apply_creates(request)
        if request.resource is not None and request.data is not None:
            self._stamp(request)
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as e:  # what a real API server answers to a failed 'test'
            raise KubernetesError(status=422, reason="Invalid", message=f"the server rejected our request: {e}")
        finally:
            self._forget(request)

    def _forget(self, request) -> None:
        """Drop a served request from kmock's request history (``_requests``).  kmock keeps every request
        and, for each new one, looks it up by identity in that whole history once per reaction, so each
        request costs time in proportion to all before it: measured here, a GET took 113 ms after 300
        requests and 437 ms after 900, and the operator tests timed out late in a session.  The tests
        read the calls from ``self.calls``, never from kmock's history."""
        history = self._requests
        for i in range(len(history) - 1, -1, -1):
            if history[i] is request:
                del history[i]
                return

    async def _apply_creates(self, request) -> None:
        """Server-side apply of a missing object creates it (kmock only patches existing ones)."""
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key in self._objects and not self._objects[key].deleted:
                return
            obj = copy.deepcopy(request.data)
            m = obj.setdefault("metadata", {})
            m.update(uid=str(uuid.uuid4()), generation=1, namespace=request.namespace,
                     creationTimestamp=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            if key in self._objects:
                self._objects[key].create(obj)
            else:
                self._objects[key] = obj
            await self._buses[request.resource].put({"type": "ADDED", "object": self._objects[key].raw})

    def _as_replace(self, request):
        """PUT (replace), which kmock does not route: a merge patch that also removes what the new object lacks."""
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            raise KubernetesError(status=404, reason="NotFound", message=f"{request.name} not found")
        old = self.objects[key].raw
        sent_rv = (request.data.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != old.get("metadata", {}).get("resourceVersion"):   # optimistic concurrency
            raise KubernetesError(status=409, reason="Conflict",
                                  message=f"Operation cannot be fulfilled on {request.name}: the object has been "
                                          "modified; please apply your changes to the latest version and try again")

        def diff(a, b, top=False):
            out = {}
            for k in a:
                if k not in b and not (top and k in SYSTEM_FIELDS):
                    out[k] = None
            for k, v in b.items():
                out[k] = diff(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) and k != "metadata" \
                    else v
            return out
        data = diff(old, request.data)
        meta = {k: None for k in old.get("metadata", {}) if k not in request.data.get("metadata", {})
                and k not in SYSTEM_FIELDS}
        data["metadata"] = {**meta, **request.data.get("metadata", {})}
        return attrs.evolve(request, action=action.UPDATE, method=method.PATCH, data=data)

    def _stamp(self, request) -> None:
        rv = str(next(self._rv))
        data = request.data
        if request.action == action.CREATE and isinstance(data, dict):
            m = data.setdefault("metadata", {})
            if not m.get("name") and m.get("generateName"):      # as the API server does (kopf's Events)
                m["name"] = m["generateName"] + uuid.uuid4().hex[:5]
            m.update(uid=str(uuid.uuid4()), resourceVersion=rv, generation=1,
                     creationTimestamp=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            if request.namespace and not m.get("namespace"):
                m["namespace"] = request.namespace
        elif request.action == action.UPDATE and request.name is not None:
            key = (request.resource, request.namespace, request.name)
            current = self.objects[key] if key in self.objects else None
            if isinstance(data, list):
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": rv})
            elif isinstance(data, dict):
                m = data.setdefault("metadata", {})
                m.pop("uid", None)
                m.pop("creationTimestamp", None)
                m["resourceVersion"] = rv
                if current is not None and request.subresource != "status" and "spec" in data \
                        and data["spec"] != current.get("spec"):
                    m["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1
                elif current is not None:
                    m["generation"] = current.get("metadata", {}).get("generation", 1)


class Cluster:
    """The emulator in a thread of its own (its own event loop), with a kubeconfig pointing at it."""

    def __init__(self, emulator: type[StampingEmulator] = StampingEmulator) -> None:
        self._emulator_class = emulator
        self.url: str | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="kmock", daemon=True)
        self.dir = tempfile.mkdtemp(prefix="otus-kmock-")
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")                    # the tests' own identity
        self.operator_kubeconfig = os.path.join(self.dir, "operator-kubeconfig")  # the operator's
        self.error: BaseException | None = None

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as e:  # surfaced by start()
            self.error = e
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self._emulator_class() as k, Server(k) as server:
            for key, info in RESOURCES.items():
                k.resources[key] = {**info, "verbs": VERBS}
            self.emulator = k
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def start(self) -> "Cluster":
        self._thread.start()
        if not self._ready.wait(10) or self.error is not None:
            raise RuntimeError(f"the Kubernetes emulator did not start: {self.error!r}")
        self._write_kubeconfig(self.kubeconfig, TEST_USER)
        self._write_kubeconfig(self.operator_kubeconfig, OPERATOR_USER)
        return self

    def _write_kubeconfig(self, path: str, token: str) -> None:
        """The bearer token doubles as the user name in the recorded calls."""
        with open(path, "w") as f:
            yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "kmock",
                            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                            "users": [{"name": "u", "user": {"token": token}}],
                            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u"}}]}, f)

    def calls(self, user: str = "", since: int = 0) -> list:
        """API calls recorded since index ``since`` (all users when ``user`` is empty)."""
        return [c for c in self.emulator.calls[since:] if not user or c.user == user]

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def client(self):
        from kubernetes import client, config
        cfg = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        return client.ApiClient(cfg)


class Operator:
    """The real kopf operator (otus_operator.handlers) in a thread with its own loop, started with
    ``config`` (an otus_operator.handlers.OperatorConfig) as its memo, as otus-operator starts it."""

    def __init__(self, cluster: Cluster, config) -> None:
        self.cluster = cluster
        self.config = config
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="kopf", daemon=True)

    def _main(self) -> None:
        import kopf

        from otus_operator import handlers
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(kopf.operator(clusterwide=True, standalone=True, stop_flag=self.stop_flag,
                                                  ready_flag=self.ready_flag, memo=handlers.memo(self.config)))
        except BaseException as e:
            self.error = e
        finally:
            loop.close()

    def start(self) -> "Operator":
        self._thread.start()
        if not self.ready_flag.wait(20):
            raise RuntimeError(f"kopf did not start: {self.error!r}")
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        self._thread.join(20)


def uncovered_calls(calls, rules=None) -> list[str]:
    """The operator's resource requests that its generated RBAC rules do not allow (discovery, i.e.
    non-resource URLs like /api and /apis, is granted to every authenticated user by system:discovery)."""
    from otus_operator import rbac
    names = rbac.release_names("otus")       # the tests' peering object, webhook configuration, Secret
    own = rbac.own_namespace_rules(**names)
    out = []
    for c in calls:
        if not c.resource:
            continue
        cluster_rules = rbac.rules(**names) if rules is None else rules
        if not rbac.allows(cluster_rules, c.verb, c.group, c.resource, c.subresource, c.name) and not (
                c.namespace == OPERATOR_NAMESPACE and rbac.allows(own, c.verb, c.group, c.resource, c.subresource,
                                                                  c.name)):
            out.append(f"{c.verb} {c.group or 'core'}/{c.resource}{'/' + c.subresource if c.subresource else ''}"
                       f" ns={c.namespace} name={c.name} ({c.path})")
    return sorted(set(out))
