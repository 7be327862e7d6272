"""Address -> identity in the cluster: which pod (namespace, workload, node, service) or Service holds an IP.

``IdentityTable`` is fed by ``IdentityWatch``: a list, then a watch from the list's
``resourceVersion``, of pods and of services cluster-wide, as the Kubernetes API prescribes
(https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes):

* the list is paginated (``limit``/``continue``) and replaces what the table knew of that kind;
  the watch starts at the list's ``resourceVersion`` with bookmarks asked for (optional for the
  server), follows ``ADDED``/``MODIFIED``/``DELETED``/``BOOKMARK``, and when it ends (the server's
  ``timeoutSeconds``) watches again from the last ``resourceVersion`` seen;
* ``410 Gone`` (an ``ERROR`` event, or the HTTP status; also an expired ``continue`` token) means
  that version is compacted away: relist;
* any other failure (connection, 5xx, 429, a 401/403 while RBAC settles) waits with exponential
  back-off (``BACKOFF_S`` doubling to ``MAX_BACKOFF_S``, with jitter) and relists.

What a pod's identity holds, and why:

* addresses from ``status.podIPs`` (``status.podIP`` on old servers): every family;
* ``workload``: the controller owner reference.  A ReplicaSet owned by a Deployment is given as
  the Deployment *without reading ReplicaSets* (the agent may read pods and services only): the
  Deployment controller names its ReplicaSets ``<deployment>-<pod-template-hash>`` and labels their
  pods ``pod-template-hash``, so a ReplicaSet owner whose name ends in ``-<that label>`` is a
  Deployment's and the name minus the suffix is the Deployment.  A ReplicaSet of no Deployment
  (no such label, or a name that does not end so) stays a ReplicaSet; a Job stays a Job (a
  CronJob's Job names carry no marker as reliable);
* ``node``: ``spec.nodeName``; ``service``: the first Service (by name) of the pod's namespace
  whose selector matches the pod's labels;
* pods with ``hostNetwork: true`` are left out: their address is the node's, shared by every
  host-network pod of the node (kube-proxy, CNI agents, the Otus node agent itself), so naming one
  of them would be a guess, and usually a wrong one;
* a pod in phase ``Succeeded`` or ``Failed`` has released its address: it is treated as deleted.

A Service's identity (``namespace``, ``service``) is keyed by its ``spec.clusterIPs`` (headless
Services have none).

**Settings.**  ``enabled``, ``grace_s`` and ``max_entries`` are the task's ``identity`` section
(``otus_spec.IdentityOptions``; the CaptureTask's ``spec.identity``, rendered by the operator into the task
file); ``kube/main.py: IdentityService`` applies them, a change to a running table (``configure``) included.

**Grace and reuse.**  A deleted pod's addresses keep resolving to it for ``grace_s`` (default
60 s), so packets still in rings, reassembly and TCP streams when the DELETE arrives are attributed
to the pod that sent them.  Each address has a queue of holders in the order they claimed it; it
resolves to the oldest holder that is alive or within its grace.  So an address reused by a new pod
resolves to the old pod until the old one's grace ends, then to the new one.  The other way round
(the new pod at once) would misattribute every late packet of the old pod; this way the new pod's
first packets, at most ``grace_s`` of them, are misattributed only when the address is reused within
``grace_s`` of a deletion, which IPAM that hands out addresses in turn (host-local, most cloud CNIs)
rarely does.

**Bounds.**  At most ``max_entries`` addresses (default 65,536).  Measured by
``bench/bench_identity.py``: 10,000 pods with two addresses each and 1,000 Services hold 15.8 MB
(table and published dicts, 1.6 kB per pod), so the default bound is about 50 MB; each capture
process holds the published dicts again.  A new address in a full table first drops expired holders, then
evicts the address whose holder was deleted longest ago, else the oldest address; evictions are
counted (``otus_identity_evictions_total``).  An evicted address resolves to nothing until its
holder changes again.  Identities whose JSON is longer than ``otus_agent.identity.MAX_FRAGMENT`` are
left out (counted as ``oversized``).

**Where the answers go.**  The table *publishes* each address's current answer to a sink: the
``otus_agent/identity.py`` dicts of this process (``LocalSink``), or, for ``otus agent``, whose capture
runs in forked task processes, a snapshot file those processes follow (``FileSink`` and
``follow_snapshot``).
"""
from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from orjson import dumps

from otus_agent import identity as hooks
from otus_agent.kube.status import FailureLog
from otus_spec import IDENTITY_GRACE_S, IDENTITY_MAX_ENTRIES

log = logging.getLogger("otus.kube.identity")

GRACE_S = IDENTITY_GRACE_S           # the task contract's defaults (otus_spec.IdentityOptions)
MAX_ENTRIES = IDENTITY_MAX_ENTRIES
PAGE = 500                  # list page size
WATCH_TIMEOUT_S = 300       # the server ends a watch after this (plus jitter): watch again from the last version
BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
PUBLISH_EVERY_S = 1.0       # snapshot file: at most this often


def capture_point(env: dict[str, str] | os._Environ = os.environ) -> dict[str, str] | None:
    """The records' capture point from the downward-API variables the operator sets (render.agent_container):
    agent and node always, pod and namespace in sidecar mode (``OTUS_MODE=sidecar``), where the agent's
    pod is the application's.  None outside Kubernetes (no ``OTUS_NODE``)."""
    node = env.get("OTUS_NODE")
    if not node:
        return None
    point = {"agent": env.get("OTUS_AGENT_NAME") or env.get("OTUS_POD") or node, "node": node}
    if env.get("OTUS_MODE") == "sidecar":
        if env.get("OTUS_POD"):
            point["pod"] = env["OTUS_POD"]
        if env.get("OTUS_POD_NAMESPACE"):
            point["namespace"] = env["OTUS_POD_NAMESPACE"]
    return point


def own_identity(env: dict[str, str] | os._Environ = os.environ) -> dict[str, dict]:
    """Sidecar mode: the agent's pod is the application's, known from the downward API (``OTUS_POD_IPS``,
    ``status.podIPs``, comma-separated): its addresses -> {namespace, pod, node}, no watch needed.
    (The workload is not: owner references are not in the downward API.)"""
    if env.get("OTUS_MODE") != "sidecar" or not env.get("OTUS_POD"):
        return {}
    ident = {"namespace": env.get("OTUS_POD_NAMESPACE", ""), "pod": env["OTUS_POD"]}
    if env.get("OTUS_NODE"):
        ident["node"] = env["OTUS_NODE"]
    return {ip.strip(): ident for ip in env.get("OTUS_POD_IPS", "").split(",") if ip.strip()}


# ------------------------------------------------------------------ identities from objects
def workload_of(meta: dict) -> dict | None:
    """The pod's controller as {kind, name}; a Deployment's ReplicaSet as the Deployment (module docstring)."""
    refs = meta.get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), None)
    if ref is None or not ref.get("kind") or not ref.get("name"):
        return None
    kind, name = ref["kind"], ref["name"]
    if kind == "ReplicaSet":
        h = (meta.get("labels") or {}).get("pod-template-hash")
        if h and name.endswith("-" + h) and len(name) > len(h) + 1:
            return {"kind": "Deployment", "name": name[:-len(h) - 1]}
    return {"kind": kind, "name": name}


def pod_ips(pod: dict) -> tuple[str, ...]:
    st = pod.get("status") or {}
    ips = tuple(p["ip"] for p in st.get("podIPs") or [] if isinstance(p, dict) and p.get("ip"))
    if not ips and st.get("podIP"):
        ips = (st["podIP"],)
    return ips


def service_ips(svc: dict) -> tuple[str, ...]:
    spec = svc.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return tuple(ip for ip in ips if ip and ip != "None")


def _matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@dataclass(slots=True)
class _Holder:
    key: tuple                  # ("pod", uid) or ("svc", namespace, name)
    ips: tuple[str, ...]
    ident: dict
    frag: bytes
    namespace: str
    labels: dict = field(default_factory=dict)     # pods: for Service selectors
    selector: dict = field(default_factory=dict)   # services
    gone_at: float | None = None                   # deleted (monotonic); resolves until gone_at + grace


Answer = tuple[dict, bytes]      # an address's identity and its JSON (shared by the holder's addresses: never mutated)


class Sink(Protocol):
    def publish(self, changes: dict[str, Answer | None]) -> None: ...


class LocalSink:
    """This process's ``otus_agent/identity.py`` dicts (tests, and capture in the watching process itself)."""

    def publish(self, changes: dict[str, Answer | None]) -> None:
        for ip, answer in changes.items():
            key = ip.encode()
            if answer is None:
                hooks.ADDRESSES.pop(ip, None)
                hooks.FRAGMENTS.pop(key, None)
            else:
                hooks.ADDRESSES[ip], hooks.FRAGMENTS[key] = answer
        if changes:
            hooks.changed()


class IdentityTable:
    """Holders by key, addresses -> holders in claim order; answers published to ``sink`` as they change."""

    def __init__(self, grace_s: float = GRACE_S, max_entries: int = MAX_ENTRIES, sink: Sink | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.grace_s, self.max_entries, self.clock = grace_s, max_entries, clock
        self.sink = sink if sink is not None else LocalSink()
        self.lock = threading.RLock()
        self.holders: dict[tuple, _Holder] = {}
        self.addrs: OrderedDict[str, list[_Holder]] = OrderedDict()
        self.by_ns: dict[str, dict[tuple, _Holder]] = {}     # pods and services by namespace
        self.dying: OrderedDict[tuple, _Holder] = OrderedDict()   # deleted, in deletion order
        self.answer: dict[str, bytes] = {}                    # what was published per address
        self.counters = {"evictions": 0, "oversized": 0, "relists": 0, "events": 0, "watch_errors": 0}
        self._changed: set[str] = set()

    # -------------------------------------------------------------- lookups
    def resolve(self, ip: str) -> dict | None:
        """The identity ``ip`` resolves to now (what the records carry)."""
        with self.lock:
            self.expire()
            h = self._current(ip)
            return h.ident if h is not None else None

    def _current(self, ip: str) -> _Holder | None:
        hs = self.addrs.get(ip)
        return hs[0] if hs else None

    def __len__(self) -> int:
        return len(self.addrs)

    def stats(self) -> dict:
        with self.lock:
            return {**self.counters, "addresses": len(self.addrs), "holders": len(self.holders),
                    "dying": len(self.dying)}

    def configure(self, grace_s: float, max_entries: int) -> None:
        """New settings for a running table (the task's identity section changed): a shorter grace
        expires at once what it no longer covers, a smaller bound evicts (counted) down to it."""
        with self.lock:
            self.grace_s, self.max_entries = grace_s, max_entries
            self.expire()
            while len(self.addrs) > self.max_entries:
                self._evict_one()
            self._flush()

    def clear(self) -> None:
        """Forget everything (the watch turned off): every address stops resolving."""
        with self.lock:
            self._changed.update(self.addrs)
            self.holders.clear()
            self.addrs.clear()
            self.by_ns.clear()
            self.dying.clear()
            self._flush()

    # -------------------------------------------------------------- pods and services
    def pod_identity(self, pod: dict, service: str | None) -> dict:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        ident: dict[str, Any] = {"namespace": meta.get("namespace", ""), "pod": meta.get("name", "")}
        w = workload_of(meta)
        if w is not None:
            ident["workload"] = w
        if spec.get("nodeName"):
            ident["node"] = spec["nodeName"]
        if service:
            ident["service"] = service
        return ident

    def _service_for(self, ns: str, labels: dict) -> str | None:
        names = [h.key[2] for h in self.by_ns.get(ns, {}).values()
                 if h.key[0] == "svc" and h.gone_at is None and _matches(h.selector, labels)]
        return min(names) if names else None

    def upsert_pod(self, pod: dict) -> None:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
        st = pod.get("status") or {}
        with self.lock:
            if (pod.get("spec") or {}).get("hostNetwork") or st.get("phase") in ("Succeeded", "Failed"):
                self._remove(("pod", uid))
                return
            labels = meta.get("labels") or {}
            ns = meta.get("namespace", "")
            ident = self.pod_identity(pod, self._service_for(ns, labels))
            self._put(_Holder(("pod", uid), pod_ips(pod), ident, b"", ns, labels=labels))
            self._flush()

    def delete_pod(self, pod: dict) -> None:
        meta = pod.get("metadata") or {}
        with self.lock:
            self._remove(("pod", meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"))
            self._flush()

    def upsert_service(self, svc: dict, reselect: bool = True) -> None:
        meta = svc.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        with self.lock:
            sel = (svc.get("spec") or {}).get("selector") or {}
            self._put(_Holder(("svc", ns, name), service_ips(svc), {"namespace": ns, "service": name}, b"", ns,
                              selector=sel))
            if reselect:
                self._reselect(ns)
            self._flush()

    def delete_service(self, svc: dict) -> None:
        meta = svc.get("metadata") or {}
        ns = meta.get("namespace", "")
        with self.lock:
            self._remove(("svc", ns, meta.get("name", "")))
            self._reselect(ns)
            self._flush()

    def replace(self, kind: str, objects: list[dict]) -> None:
        """A fresh list of ``kind`` ("pod" or "svc"): upsert each; those of that kind not in it are deleted."""
        with self.lock:
            keep: set[tuple] = set()
            touched: set[str] = set()          # namespaces whose pods' Service is looked up again, once each
            for o in objects:
                meta = o.get("metadata") or {}
                if kind == "pod":
                    keep.add(("pod", meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"))
                    self.upsert_pod(o)
                else:
                    keep.add(("svc", meta.get("namespace", ""), meta.get("name", "")))
                    touched.add(meta.get("namespace", ""))
                    self.upsert_service(o, reselect=False)
            for key in [k for k, h in self.holders.items() if k[0] == kind and k not in keep and h.gone_at is None]:
                touched.add(self.holders[key].namespace)
                self._remove(key)
            if kind == "svc":
                for ns in touched:
                    self._reselect(ns)
            self._flush()

    def _reselect(self, ns: str) -> None:
        """The ``service`` of every live pod of ``ns`` again (a Service there changed)."""
        for h in list(self.by_ns.get(ns, {}).values()):
            if h.key[0] == "pod" and h.gone_at is None:
                svc = self._service_for(ns, h.labels)
                if h.ident.get("service") != svc:
                    ident = {k: v for k, v in h.ident.items() if k != "service"}
                    if svc:
                        ident["service"] = svc
                    self._put(_Holder(h.key, h.ips, ident, b"", ns, labels=h.labels))

    # -------------------------------------------------------------- the holder queues
    def _put(self, new: _Holder) -> None:
        new.frag = bytes(memoryview(dumps(new.ident)))     # orjson's bytes keep a 4 kB buffer: a tight copy
        if len(new.frag) > hooks.MAX_FRAGMENT:
            self.counters["oversized"] += 1
            self._remove(new.key)
            return
        old = self.holders.get(new.key)
        if old is not None and old.gone_at is not None:       # came back (a relist after a missed event)
            self.dying.pop(new.key, None)
        self.holders[new.key] = new
        self.by_ns.setdefault(new.namespace, {})[new.key] = new
        old_ips = set(old.ips) if old is not None else set()
        for ip in old_ips - set(new.ips):
            self._unclaim(ip, old)            # type: ignore[arg-type]
        for ip in new.ips:
            hs = self.addrs.get(ip)
            if hs is None:
                if len(self.addrs) >= self.max_entries:
                    self._make_room()
                hs = self.addrs[ip] = []
            for i, h in enumerate(hs):
                if h.key == new.key:
                    hs[i] = new
                    break
            else:
                hs.append(new)
            self._changed.add(ip)

    def _unclaim(self, ip: str, h: _Holder) -> None:
        hs = self.addrs.get(ip)
        if hs is None:
            return
        hs[:] = [x for x in hs if x.key != h.key]
        if not hs:
            del self.addrs[ip]
        self._changed.add(ip)

    def _remove(self, key: tuple) -> None:
        """A holder deleted: it keeps its addresses for the grace period (services and pods alike)."""
        h = self.holders.get(key)
        if h is None or h.gone_at is not None:
            return
        h.gone_at = self.clock()
        self.dying[key] = h
        if self.grace_s <= 0:
            self.expire()

    def _drop(self, h: _Holder) -> None:
        for ip in h.ips:
            self._unclaim(ip, h)
        self.holders.pop(h.key, None)
        self.dying.pop(h.key, None)
        ns = self.by_ns.get(h.namespace)
        if ns is not None:
            ns.pop(h.key, None)
            if not ns:
                del self.by_ns[h.namespace]

    def expire(self) -> None:
        """Holders past their grace let go of their addresses (the next holder, if any, takes over)."""
        with self.lock:
            limit = self.clock() - self.grace_s
            while self.dying:
                key, h = next(iter(self.dying.items()))
                if h.gone_at is None or h.gone_at > limit:
                    break
                self._drop(h)
            self._flush()

    def _make_room(self) -> None:
        self.expire()
        if len(self.addrs) < self.max_entries:
            return
        self._evict_one()

    def _evict_one(self) -> None:
        victim = next((ip for h in self.dying.values() for ip in h.ips if ip in self.addrs), None)
        if victim is None:
            victim = next(iter(self.addrs))
        for h in self.addrs.pop(victim):
            h.ips = tuple(ip for ip in h.ips if ip != victim)
        self._changed.add(victim)
        self.counters["evictions"] += 1

    def _flush(self) -> None:
        """Publish the answers that changed."""
        if not self._changed:
            return
        changes: dict[str, Answer | None] = {}
        for ip in self._changed:
            h = self._current(ip)
            frag = h.frag if h is not None else None
            if self.answer.get(ip) != frag:
                changes[ip] = (h.ident, h.frag) if h is not None else None
                if frag is None:
                    self.answer.pop(ip, None)
                else:
                    self.answer[ip] = frag
        self._changed.clear()
        if changes:
            self.sink.publish(changes)


# ------------------------------------------------------------------ the snapshot file (otus agent)
class FileSink:
    """The table's answers as a file the capture processes follow: one ``IP<TAB>JSON`` line per address,
    replaced atomically (write, rename) at most once per ``every_s``.  ``flush`` writes when due."""

    def __init__(self, path: str, every_s: float = PUBLISH_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.path, self.every_s, self.clock = path, every_s, clock
        self.answers: dict[str, bytes] = {}
        self.dirty = True
        self.last = float("-inf")
        self.writes = 0

    def publish(self, changes: dict[str, Answer | None]) -> None:
        for ip, answer in changes.items():
            if answer is None:
                self.answers.pop(ip, None)
            else:
                self.answers[ip] = answer[1]
        self.dirty = True

    def flush(self, force: bool = False) -> bool:
        now = self.clock()
        if not self.dirty or (not force and now - self.last < self.every_s):
            return False
        tmp = f"{self.path}.tmp"
        with open(tmp, "wb") as f:
            f.write(b"".join(ip.encode() + b"\t" + frag + b"\n" for ip, frag in self.answers.items()))
        os.replace(tmp, self.path)
        self.dirty, self.last = False, now
        self.writes += 1
        return True


def load_snapshot(path: str, sink: LocalSink | None = None) -> int:
    """Make this process's ``otus_agent/identity.py`` dicts say what the snapshot file says; the entries changed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return 0
    new: dict[bytes, bytes] = {}
    for line in data.splitlines():
        ip, sep, frag = line.partition(b"\t")
        if sep:
            new[ip] = frag
    changes: dict[str, Answer | None] = {}
    for key in [k for k in hooks.FRAGMENTS if k != hooks.CAPTURE_KEY and k not in new]:
        changes[key.decode()] = None
    parsed: dict[bytes, dict] = {}          # a pod's addresses share one identity
    for key, frag in new.items():
        if hooks.FRAGMENTS.get(key) != frag:
            frag = bytes(frag)
            if frag not in parsed:
                parsed[frag] = json.loads(frag)
            changes[key.decode()] = (parsed[frag], frag)
    (sink or LocalSink()).publish(changes)
    return len(changes)


def follow_snapshot(path: str, stop: threading.Event, every_s: float = PUBLISH_EVERY_S) -> threading.Thread:
    """A thread keeping this process's tables equal to the snapshot file (checked every ``every_s``)."""
    def loop() -> None:
        seen = None
        while not stop.is_set():
            try:
                st = os.stat(path)
                sig = (st.st_ino, st.st_mtime_ns, st.st_size)
            except OSError:
                sig = None
            if sig is not None and sig != seen:
                load_snapshot(path)
                seen = sig
            stop.wait(every_s)
    t = threading.Thread(target=loop, name="otus-identity-follow", daemon=True)
    t.start()
    return t


# ------------------------------------------------------------------ list + watch
class Gone(Exception):
    """410 Gone: the resourceVersion (or continue token) is too old; relist."""


def _status(e: BaseException) -> int | None:
    return getattr(e, "status", None)


def iter_lines(resp) -> Iterator[bytes]:
    """The watch response's JSON lines, as they arrive."""
    buf = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buf += chunk
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            line, buf = buf[:i], buf[i + 1:]
            if line.strip():
                yield line
    if buf.strip():
        yield buf


class IdentityWatch:
    """List+watch of pods and services (one thread each) into ``table``, and a janitor thread that
    expires graces and flushes a ``FileSink`` (when the table publishes to one)."""

    KINDS = {"pod": ("list_pod_for_all_namespaces", "upsert_pod", "delete_pod"),
             "svc": ("list_service_for_all_namespaces", "upsert_service", "delete_service")}

    def __init__(self, core, table: IdentityTable, stop: threading.Event | None = None,
                 watch_timeout_s: int = WATCH_TIMEOUT_S, backoff_s: float = BACKOFF_S,
                 max_backoff_s: float = MAX_BACKOFF_S, page: int = PAGE):
        self.core, self.table = core, table
        self.stop = stop or threading.Event()
        self.watch_timeout_s, self.backoff_s, self.max_backoff_s, self.page = \
            watch_timeout_s, backoff_s, max_backoff_s, page
        self.synced = {k: threading.Event() for k in self.KINDS}     # first list done
        self.versions: dict[str, str] = {}
        self.failures = {k: FailureLog(log, f"identity watch of {k}s") for k in self.KINDS}
        self.threads: list[threading.Thread] = []

    def start(self) -> IdentityWatch:
        for kind in self.KINDS:
            t = threading.Thread(target=self._run, args=(kind,), name=f"otus-identity-{kind}", daemon=True)
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self._janitor, name="otus-identity-expire", daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def wait_synced(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the first lists (so the first records resolve); whether both came."""
        deadline = time.monotonic() + timeout_s
        ok = all(e.wait(max(0.0, deadline - time.monotonic())) for e in self.synced.values())
        if isinstance(self.table.sink, FileSink):
            with self.table.lock:
                self.table.sink.flush(force=True)
        return ok

    def _janitor(self) -> None:
        while not self.stop.wait(1.0):
            self.table.expire()
            if isinstance(self.table.sink, FileSink):
                with self.table.lock:
                    self.table.sink.flush()

    def _list(self, kind: str) -> str:
        fn = getattr(self.core, self.KINDS[kind][0])
        items: list[dict] = []
        token = None
        while True:
            try:
                kw: dict[str, Any] = {"limit": self.page, "_preload_content": False, "_request_timeout": (10, 60)}
                if token:
                    kw["_continue"] = token
                body = json.loads(fn(**kw).data)
            except Exception as e:
                if _status(e) == 410:
                    raise Gone("continue token expired") from None
                raise
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                self.table.replace(kind, items)
                return meta.get("resourceVersion") or ""

    def _watch(self, kind: str, rv: str) -> str:
        """One watch from ``rv`` until the server ends it; the last resourceVersion seen."""
        name, up, down = self.KINDS[kind]
        timeout = self.watch_timeout_s + random.randint(0, max(1, self.watch_timeout_s // 5))
        try:
            resp = getattr(self.core, name)(watch=True, resource_version=rv, allow_watch_bookmarks=True,
                                            timeout_seconds=timeout, _preload_content=False,
                                            _request_timeout=(10, timeout + 30))
        except Exception as e:
            if _status(e) == 410:
                raise Gone("watch: 410") from None
            raise
        try:
            for line in iter_lines(resp):
                if self.stop.is_set():
                    break
                ev = json.loads(line)
                typ, obj = ev.get("type"), ev.get("object") or {}
                if typ == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message") or "410 Gone")
                    raise RuntimeError(f"watch error: {obj.get('code')} {obj.get('message')}")
                new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                if typ in ("ADDED", "MODIFIED"):
                    getattr(self.table, up)(obj)
                elif typ == "DELETED":
                    getattr(self.table, down)(obj)
                self.table.counters["events"] += typ != "BOOKMARK"
                if new_rv:
                    rv = new_rv
                    self.versions[kind] = rv
        finally:
            resp.release_conn()
        return rv

    def _run(self, kind: str) -> None:
        backoff = self.backoff_s
        while not self.stop.is_set():
            try:
                rv = self._list(kind)
                self.versions[kind] = rv
                self.synced[kind].set()
                self.failures[kind].ok()
                backoff = self.backoff_s
                while not self.stop.is_set():
                    rv = self._watch(kind, rv)
            except Gone as e:
                self.table.counters["relists"] += 1
                log.info(f"identity watch of {kind}s: {e}; relisting")
                self.stop.wait(self.backoff_s * 0.1)     # a server answering 410 at once is not hammered
            except Exception as e:
                self.table.counters["watch_errors"] += 1
                status = _status(e)
                what = f"{status} {getattr(e, 'reason', '') or ''}".strip() if status else repr(e)[:200]
                self.failures[kind].failed(f"{what}; retrying with back-off ({self.backoff_s:g} s doubling to "
                                           f"{self.max_backoff_s:g} s)")
                self.stop.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.max_backoff_s)


_FOLLOWING: list[str] = []


def follow_in_children(path: str) -> None:
    """Every process forked from now on (the task processes and their capture workers) follows the
    snapshot file: their records are made there, the watch runs here."""
    if _FOLLOWING:
        _FOLLOWING[0] = path
        return
    _FOLLOWING.append(path)

    def child() -> None:
        follow_snapshot(_FOLLOWING[0], threading.Event())
    os.register_at_fork(after_in_child=child)


# ------------------------------------------------------------------ metrics
class IdentityCollector:
    """Prometheus families of the table (registered on ``otus agent``'s metrics endpoint)."""

    def __init__(self, table: IdentityTable):
        self.table = table

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        s = self.table.stats()
        g = GaugeMetricFamily("otus_identity_addresses", "Addresses in the pod/Service identity table")
        g.add_metric([], s["addresses"])
        d = GaugeMetricFamily("otus_identity_deleted_held", "Deleted pods and Services held for their grace period")
        d.add_metric([], s["dying"])
        e = CounterMetricFamily("otus_identity_evictions", "Addresses evicted from the full identity table")
        e.add_metric([], s["evictions"])
        r = CounterMetricFamily("otus_identity_relists", "Relists of pods or Services after 410 Gone")
        r.add_metric([], s["relists"])
        w = CounterMetricFamily("otus_identity_watch_errors", "Identity watch failures (retried with back-off)")
        w.add_metric([], s["watch_errors"])
        return [g, d, e, r, w]
