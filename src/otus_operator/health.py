"""Readiness of the operator, with a meaning: served on ``/readyz`` (``--readiness``).

Liveness is kopf's own endpoint (``--liveness``, ``/healthz``): kopf answers it from the
reactor's event loop, so it fails when the reactor is dead or blocked.

Ready means the operator does its job from now on:

* the webhook server listens (when the webhook is on), and
* the operator *watches*: kopf has listed the CaptureTasks (its watch stream reached the
  end of the initial listing, kopf's ``Bookmark.LISTED``) and is not paused -- or, with two
  replicas, it is the standby: kopf's peering has paused it in favour of a live peer with a
  higher priority, and it watches the peering object so that it takes over when that peer
  goes.  A standby serves the (stateless) sidecar-injection webhook too, which is why it
  counts as ready: the webhook Service routes to both replicas, and a Deployment rollout
  waits for new pods to be Ready.

kopf has no public hook for "the initial listing is over", so ``watch_hook`` wraps
``kopf._cogs.clients.watching.infinite_watch`` (the generator every kopf watcher iterates)
and passes every event through unchanged.  Checked against kopf 1.45; if kopf moves it,
``install`` says so in the log and readiness falls back to "kopf has started".
"""
from __future__ import annotations

import http.server
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("otus.operator")

PEERING_PLURALS = ("clusterkopfpeerings", "kopfpeerings")


@dataclass
class Watch:
    listed: bool = False
    paused: Any = None             # kopf's operator_paused ToggleSet (is_on(): paused)

    def is_paused(self) -> bool:
        return self.paused is not None and self.paused.is_on()


@dataclass
class Health:
    webhook: bool = True                      # the webhook must listen for the operator to be ready
    webhook_listening: bool = False
    started: bool = False                     # kopf's start-up activities are done
    hooked: bool = False                      # the watch hook is installed (else: readiness = started)
    peering: bool = False                     # runs with kopf peering (two replicas)
    watches: dict = field(default_factory=dict)   # (plural, namespace) -> Watch
    lock: threading.Lock = field(default_factory=threading.Lock)

    def state(self) -> tuple[bool, str]:
        """(ready, why) -- the why is the probe's body, for `kubectl describe pod`."""
        with self.lock:
            tasks = [w for (plural, _), w in self.watches.items() if plural == "capturetasks"]
            peers = [w for (plural, _), w in self.watches.items() if plural in PEERING_PLURALS]
        if not self.started:
            return False, "kopf is starting"
        if self.webhook and not self.webhook_listening:
            return False, "the webhook server does not listen yet"
        if not self.hooked:
            return True, "started (watch state unknown)"
        if tasks and all(w.listed and not w.is_paused() for w in tasks):
            return True, "watching CaptureTasks"
        if self.peering and tasks and all(w.is_paused() for w in tasks) and peers and all(w.listed for w in peers):
            return True, "standby: paused in favour of a peer, watching the peering"
        return False, "not watching CaptureTasks yet"


HEALTH = Health()


def watch_hook(original):
    """Wrap kopf's infinite_watch: note when each watch stream has listed its objects."""
    def infinite_watch(*, settings, resource, namespace, operator_paused=None, **kwargs):
        key = (resource.plural, namespace)

        async def stream():
            with HEALTH.lock:
                HEALTH.watches[key] = Watch(paused=operator_paused)
            try:
                async for event in original(settings=settings, resource=resource, namespace=namespace,
                                            operator_paused=operator_paused, **kwargs):
                    if event is _LISTED:
                        with HEALTH.lock:
                            HEALTH.watches[key].listed = True
                    yield event
            finally:
                with HEALTH.lock:
                    HEALTH.watches.pop(key, None)
        return stream()
    infinite_watch.__wrapped__ = original
    return infinite_watch


_LISTED = object()


def install() -> None:
    """Hook kopf's watch streams (once, before kopf starts)."""
    global _LISTED
    try:
        from kopf._cogs.clients import watching
        _LISTED = watching.Bookmark.LISTED
        if not hasattr(watching.infinite_watch, "__wrapped__"):
            watching.infinite_watch = watch_hook(watching.infinite_watch)
        HEALTH.hooked = True
    except (ImportError, AttributeError) as e:
        log.warning(f"readiness: kopf's watch stream cannot be observed ({e}); ready once kopf has started")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?")[0] != "/readyz":
            self.send_error(404)
            return
        ready, why = HEALTH.state()
        body = (why + "\n").encode()
        self.send_response(200 if ready else 503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:       # probes every few seconds: not worth a log line
        pass


def serve(addr: str, port: int) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((addr, port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="readyz", daemon=True).start()
    return server
