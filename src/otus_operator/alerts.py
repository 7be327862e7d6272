"""What an operator would page on, as Kubernetes Events on the CaptureTask, posted on transitions.

Pure: ``active`` lists the alerts one status roll-up shows; ``transitions`` compares them with the keys
kept in the previous status (``status.alerts``), so a Warning Event goes out when an alert starts and a
Normal one when it ends -- not one per round, and not again after an operator restart.  The handlers post
them with kopf (core/v1 Events on the CaptureTask: involvedObject, type, reason, message, timestamps).

An alert's key is its reason, or ``reason/subject`` for one agent (``AgentFailed/otus-edge-sip-x1``):
a second agent failing is news even while the first still fails.

The detectors' alerts (``status.agents.*.alerts``, each agent's in effect: kube/status.py) are keyed by
kind and source (``PortScan/203.0.113.5/10.0.0.9``): one Warning per attack however many agents see it,
a Normal ``PortScanResolved`` when no agent lists it any more (it stopped firing for
``detect.resolveAfterSeconds``).  At most ``DETECTIONS_MAX`` are kept, the most recently seen.
"""
from __future__ import annotations

from dataclasses import dataclass

from .crd import AgentStatus

SPOOL_ALARM_BYTES = 1 << 20      # KafkaUnavailable once an agent spools this much (status.py's condition too)
DROP_ALERT_RATIO = 0.01          # KernelDrops: above 1 % of one status interval's packets dropped (default)
NAMES_MAX = 10                   # pod names quoted in one message
DETECTIONS_MAX = 50              # detector alerts (kind and source) kept in effect at once


@dataclass(frozen=True)
class Alert:
    key: str
    reason: str
    message: str


def _names(names: list[str]) -> str:
    more = f" and {len(names) - NAMES_MAX} more" if len(names) > NAMES_MAX else ""
    return ", ".join(names[:NAMES_MAX]) + more


def failed_pods(pods: list[dict]) -> list[str]:
    """Agent pods the kubelet reports as Failed (DaemonSet mode: the whole pod is the agent)."""
    return sorted(p.get("metadata", {}).get("name", "?") for p in pods if (p.get("status") or {}).get("phase")
                  == "Failed")


def drop_window(prev_totals: dict | None, totals: dict) -> tuple[int, int]:
    """(packets, drops) counted since the previous roll-up: the status interval's share of the totals."""
    before = prev_totals or {}
    return (max(0, int(totals.get("packets", 0)) - int(before.get("packets", 0))),
            max(0, int(totals.get("drops", 0)) - int(before.get("drops", 0))))


def active(agents: dict[str, AgentStatus], *, crashing: list[str], failed: list[str], window: tuple[int, int],
           previous: list[str], drop_ratio: float = DROP_ALERT_RATIO, not_injected: int = 0,
           not_injected_names: list[str] | None = None, selector: str = "",
           unscheduled: list[str] | None = None) -> list[Alert]:
    """The alerts of one roll-up.  ``window`` is (packets, drops) since the last roll-up; with no packets in
    it the kernel-drop alert keeps its previous state (no traffic says nothing about drops)."""
    out: list[Alert] = []
    for pod in sorted(set(crashing)):
        out.append(Alert(f"AgentFailed/{pod}", "AgentFailed",
                         f"the capture agent in pod {pod} is crash-looping (CrashLoopBackOff or restarted again "
                         "and again): see `kubectl logs --previous`"))
    for pod in sorted(set(failed) - set(crashing)):
        out.append(Alert(f"AgentFailed/{pod}", "AgentFailed", f"agent pod {pod} failed"))
    seen = {a.key for a in out}
    for name, a in sorted(agents.items()):
        if a.state == "Failed" and f"AgentFailed/{name}" not in seen:
            out.append(Alert(f"AgentFailed/{name}", "AgentFailed",
                             f"agent {name} reported Failed: {a.error or 'no reason given'}"))
    for why in unscheduled or []:                # "pod: 0/3 nodes are available: ..." (status.unschedulable)
        pod = why.partition(":")[0]
        out.append(Alert(f"AgentUnschedulable/{pod}", "AgentUnschedulable", f"agent pod not scheduled: {why}"))
    packets, drops = window
    seen_all = packets + drops
    if seen_all:
        if drops > drop_ratio * seen_all:
            out.append(Alert("KernelDrops", "KernelDrops",
                             f"the kernel dropped {drops} of {seen_all} packets ({100 * drops / seen_all:.1f} %) "
                             f"in the last status interval (alert above {100 * drop_ratio:g} %): raise "
                             "capture.workers or narrow the filter"))
    elif "KernelDrops" in previous:
        out.append(Alert("KernelDrops", "KernelDrops", "no packets in the last status interval"))
    for name, a in sorted(agents.items()):
        if a.kafkaAvailable is False or a.spoolBytes >= SPOOL_ALARM_BYTES:
            out.append(Alert(f"KafkaUnavailable/{name}", "KafkaUnavailable",
                             f"agent {name} cannot deliver to Kafka: {a.spoolBytes} bytes of records waiting in "
                             "its spool"))
    if not_injected:
        names = not_injected_names or []
        out.append(Alert("SidecarNotInjected", "SidecarNotInjected",
                         f"{not_injected} pods matching {selector} have no capture agent (created before the task"
                         f"{': ' + _names(names) if names else ''}): recreate them, or set "
                         "spec.target.pods.attachExisting"))
    out += detections(agents)
    return out


def reason_of(kind: str) -> str:
    """An Event reason from a detector's name: ``port_scan`` -> ``PortScan``."""
    return "".join(p[:1].upper() + p[1:] for p in kind.split("_") if p.isalnum()) or "Detection"


def detections(agents: dict[str, AgentStatus]) -> list[Alert]:
    """One alert per detector kind and source listed by any agent, newest first, at most DETECTIONS_MAX."""
    seen: dict[tuple[str, str], list] = {}       # -> [count, last, message, agents]
    for name, a in sorted(agents.items()):
        for d in a.alerts:
            e = seen.setdefault((d.kind, d.source), [0, "", "", []])
            e[0] += d.count
            if (d.lastSeen or "") >= e[1]:
                e[1], e[2] = d.lastSeen or "", d.message
            e[3].append(name)
    out = []
    for (kind, source), (count, last, message, names) in sorted(seen.items(), key=lambda kv: kv[1][1],
                                                                 reverse=True)[:DETECTIONS_MAX]:
        reason = reason_of(kind)
        out.append(Alert(f"{reason}/{source}", reason,
                         f"{kind} {source}: {message or 'detected'} ({count} times, last {last or '?'}; seen by agent "
                         f"{_names(names)})"))
    return out


def transitions(previous: list[str], now: list[Alert]) -> tuple[list[Alert], list[str]]:
    """(started, ended): the alerts to post as Warnings, and the keys of those that ended."""
    before = set(previous)
    keys = {a.key for a in now}
    return [a for a in now if a.key not in before], sorted(before - keys)
