"""The operator's own Prometheus metrics (reconciles, injections, status roll-ups, tasks by phase)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

REGISTRY = CollectorRegistry()
RECONCILES = Counter("otus_operator_reconciles", "CaptureTask reconciles by result", ["result"], registry=REGISTRY)
INJECTIONS = Counter("otus_operator_sidecar_injections", "Admission reviews of pods by outcome", ["outcome"],
                     registry=REGISTRY)
ROLLUPS = Counter("otus_operator_status_updates", "Status roll-ups written (unchanged ones are skipped)",
                  registry=REGISTRY)
ROLLUP_ERRORS = Counter("otus_operator_status_errors", "Status roll-ups that failed", registry=REGISTRY)
PHASES = Gauge("otus_operator_capturetasks", "CaptureTasks by phase", ["phase"], registry=REGISTRY)

_phases: dict[tuple[str, str], str] = {}


def set_phase(namespace: str, name: str, phase: str | None) -> None:
    """Track one task's phase (None: the task is gone) and refresh the per-phase gauge."""
    if phase is None:
        _phases.pop((namespace, name), None)
    else:
        _phases[(namespace, name)] = phase
    for p in ("Pending", "Running", "Succeeded", "Failed", "Suspended"):
        PHASES.labels(p).set(sum(1 for v in _phases.values() if v == p))


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)
