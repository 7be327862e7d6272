"""Roll the agents' reports up into the CaptureTask's status: phase, totals, conditions.

Pure: the operator's status loop (handlers.status_loop) reads ``status.agents`` (each agent patches
its own entry) and writes back what ``roll_up`` returns as a merge patch.
Conditions have the metav1.Condition shape; ``lastTransitionTime`` only moves
when a condition's status changes, so `kubectl wait --for=condition=Ready`
and ArgoCD see stable conditions.
"""
from __future__ import annotations

from datetime import datetime, timezone

from .alerts import SPOOL_ALARM_BYTES
from .crd import AgentStatus, CaptureTaskSpec, duration_seconds

KERNEL_DROP_RATIO = 0.001        # Degraded/KernelDrops above 0.1 % of all packets since the start (the
                                 # Warning Event looks at one status interval instead: alerts.py)
STALE_AFTER_S = 120              # an agent silent this long counts as not ready


def _ts(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)



CRASH_RESTARTS = 5               # an agent container restarted this often counts as crash-looping


def crash_looping(pods: list[dict], container: str = "otus-agent") -> list[str]:
    """Pods whose agent container is in CrashLoopBackOff or restarted CRASH_RESTARTS times."""
    out = []
    for p in pods:
        st = p.get("status") or {}
        for c in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or []):
            if c.get("name") != container:
                continue
            waiting = (c.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff" or c.get("restartCount", 0) >= CRASH_RESTARTS:
                out.append(p.get("metadata", {}).get("name", "?"))
    return sorted(out)


def unschedulable(pods: list[dict]) -> list[str]:
    """Pending pods the scheduler could not place, with its reason ("pod: 0/3 nodes are available: ...")."""
    out = []
    for p in pods:
        st = p.get("status") or {}
        if st.get("phase") not in (None, "Pending"):
            continue
        for c in st.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                out.append(f"{p.get('metadata', {}).get('name', '?')}: {c.get('message') or c.get('reason', '')}")
    return sorted(out)


COUNTERS = ("packets", "drops", "sipMessages", "matchedCalls", "mediaStreams")


def worst_mos(prev_totals: dict | None, parsed: dict[str, AgentStatus]) -> float | None:
    """The lowest MOS over the task's life: the previous roll-up's and every agent's (agents restart theirs)."""
    values = [a.worstMos for a in parsed.values() if a.worstMos is not None]
    before = (prev_totals or {}).get("worstMos")
    if isinstance(before, (int, float)):
        values.append(float(before))
    return min(values) if values else None


def monotonic_totals(prev: dict, parsed: dict[str, AgentStatus]) -> tuple[dict, dict]:
    """(totals, counters): totals grow by what each agent counted since its last seen counters; a counter
    below its last value means the agent restarted its counters (a new pod, a task restart after a spec
    change), so all of it is new.  Totals never go backwards over the task's life (issue 13.7)."""
    current = {n: {k: getattr(a, k) for k in COUNTERS} for n, a in parsed.items()}
    if "counters" not in prev:                      # a status written before counters existed
        return {k: sum(c[k] for c in current.values()) for k in COUNTERS}, current
    last = prev.get("counters") or {}
    totals = {k: int((prev.get("totals") or {}).get(k, 0)) for k in COUNTERS}
    for n, cur in current.items():
        before = last.get(n) or {}
        for k in COUNTERS:
            b = int(before.get(k, 0))
            totals[k] += cur[k] - b if cur[k] >= b else cur[k]
    return totals, current


def roll_up(spec: CaptureTaskSpec, agents: dict[str, dict], generation: int, now: datetime,
            previous: dict | None = None, desired_agents: int | None = None,
            crashing: list[str] | None = None, unscheduled: list[str] | None = None) -> dict:
    prev = previous or {}
    parsed = {name: AgentStatus.model_validate(a) for name, a in agents.items()}
    totals, counters = monotonic_totals(prev, parsed)
    mos = worst_mos(prev.get("totals"), parsed)
    if mos is not None:            # absent until measured (a null in a merge patch would delete, every round)
        totals["worstMos"] = mos

    def fresh(a: AgentStatus) -> bool:
        t = _parse(a.lastReport)
        return t is not None and (now - t).total_seconds() <= STALE_AFTER_S

    ready = sum(1 for a in parsed.values() if a.state == "Capturing" and fresh(a))
    failed = [n for n, a in parsed.items() if a.state == "Failed"]
    start = prev.get("startTime") or (_ts(now) if parsed else None)
    completion = prev.get("completionTime")
    dur = duration_seconds(spec.limits.duration)
    done = completion is not None or (dur is not None and start is not None
                                      and (now - _parse(start)).total_seconds() >= dur)
    want = desired_agents if desired_agents is not None else max(1, len(parsed))

    if spec.suspend:
        phase, ready_c = "Suspended", ("False", "Suspended", "the task is suspended")
    elif done:
        phase, ready_c = "Succeeded", ("False", "Completed", "the capture duration has elapsed")
        completion = completion or _ts(now)
    elif failed and ready == 0:
        phase, ready_c = "Failed", ("False", "AgentsFailed", f"agents failed: {', '.join(sorted(failed))}")
    elif unscheduled and ready < want:
        phase = "Running" if ready else "Pending"
        ready_c = ("False", "AgentsUnschedulable", f"{ready}/{want} agents capturing; not scheduled: "
                   + "; ".join(unscheduled[:5]))
    elif not parsed:
        phase, ready_c = "Pending", ("False", "AgentsPending", "no agent has reported yet")
    elif ready >= want:
        phase, ready_c = "Running", ("True", "AgentsReady", f"{ready}/{want} agents capturing")
    else:
        phase, ready_c = "Running" if ready else "Pending", ("False", "AgentsNotReady", f"{ready}/{want} agents capturing")

    capturing = ("True", "Capturing", f"{ready} agents capturing") if ready and phase == "Running" else \
        ("False", "NotCapturing", "no agent is capturing")
    reasons = []
    if totals["packets"] and totals["drops"] > KERNEL_DROP_RATIO * (totals["packets"] + totals["drops"]):
        reasons.append(("KernelDrops", f"{totals['drops']} of {totals['packets'] + totals['drops']} packets dropped"))
    spooling = sorted(n for n, a in parsed.items() if a.spoolBytes >= SPOOL_ALARM_BYTES or a.kafkaAvailable is False)
    if spooling:
        reasons.append(("KafkaUnavailable", f"records waiting in the spool on {', '.join(spooling)}"))
    if failed and phase != "Failed":
        reasons.append(("AgentFailed", f"agents failed: {', '.join(sorted(failed))}"))
    if unscheduled and phase not in ("Suspended", "Succeeded"):
        reasons.insert(0, ("AgentUnschedulable", "agent pods not scheduled: " + "; ".join(unscheduled[:5])))
    if crashing and phase not in ("Suspended", "Succeeded"):
        reasons.insert(0, ("AgentCrashLooping", f"agent containers crash-looping in {', '.join(crashing[:10])}"))
    degraded = ("True", reasons[0][0], "; ".join(m for _, m in reasons)) if reasons else ("False", "AsExpected", "")

    old = {c["type"]: c for c in prev.get("conditions", [])}

    def cond(ctype: str, value: tuple[str, str, str]) -> dict:
        status, reason, message = value
        o = old.get(ctype)
        changed = o is None or o.get("status") != status
        return {"type": ctype, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": _ts(now) if changed else o["lastTransitionTime"],
                "observedGeneration": generation}

    return {
        "phase": phase,
        "mode": "DaemonSet" if spec.target.nodes is not None else "Sidecar",
        "target": spec.target.text(),
        "observedGeneration": generation,
        "readyAgents": ready,
        "totals": totals,
        "conditions": [cond("Ready", ready_c), cond("Capturing", capturing), cond("Degraded", degraded)],
        "startTime": start,
        "completionTime": completion,
        "counters": counters,
    }


def departed(agents: dict[str, dict], pods: set[str], now: datetime) -> list[str]:
    """Agent entries to drop from status.agents (issue 13.8): their pod is gone and they have been
    silent for STALE_AFTER_S (a fresh report outlives the pod list it raced with)."""
    out = []
    for name, a in agents.items():
        t = _parse((a or {}).get("lastReport"))
        if name not in pods and (t is None or (now - t).total_seconds() > STALE_AFTER_S):
            out.append(name)
    return sorted(out)
