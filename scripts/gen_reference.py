#!/usr/bin/env python3
"""Write docs/reference.md from the code: the task file, the daemon configuration, the CaptureTask spec,
the Helm values and the Prometheus metrics.  `python scripts/gen_reference.py > docs/reference.md`;
a test fails when the checked-in file and this output differ."""
from __future__ import annotations

import json
import pathlib
import sys
import types
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _type(t) -> str:
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in typing.get_args(t))
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(t))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type(a) for a in typing.get_args(t))}]"
    if isinstance(t, type) and issubclass(t, BaseModel):
        return "object"
    return getattr(t, "__name__", str(t)).replace("NoneType", "null")


def _default(f) -> str:
    if f.default is not PydanticUndefined:
        v = f.default
    elif f.default_factory is not None:
        v = f.default_factory()
    else:
        return "required"
    if isinstance(v, BaseModel):
        return ""
    if isinstance(v, list) and v and isinstance(v[0], BaseModel):
        v = [x.model_dump(exclude_defaults=True) for x in v]
    return f"`{json.dumps(v)}`" if v is not None else ""


def _rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = []
    for name, f in model.model_fields.items():
        path = f"{prefix}{f.alias or name}"
        rows.append(f"| `{path}` | {_type(f.annotation)} | {_default(f)} | {(f.description or '').replace('|', '/')} |")
        inner = [a for a in (typing.get_args(f.annotation) or (f.annotation,))
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        for m in inner:
            rows += _rows(m, path + ".")
        if typing.get_origin(f.annotation) is list:
            for a in typing.get_args(f.annotation):
                if isinstance(a, type) and issubclass(a, BaseModel):
                    rows += _rows(a, path + "[].")
    return rows


def table(model: type[BaseModel]) -> str:
    return "\n".join(["| field | type | default | meaning |", "|---|---|---|---|", *_rows(model)])


def values_table() -> str:
    schema = json.loads((ROOT / "helm" / "otus" / "values.schema.json").read_text())
    import yaml
    defaults = yaml.safe_load((ROOT / "helm" / "otus" / "values.yaml").read_text())
    rows = ["| value | type | default |", "|---|---|---|"]

    def walk(s: dict, d, path: str) -> None:
        for k, sub in s.get("properties", {}).items():
            p = f"{path}{k}"
            dv = d.get(k) if isinstance(d, dict) else None
            if sub.get("type") == "object" and sub.get("properties"):
                walk(sub, dv, p + ".")
                continue
            t = sub.get("type") or " \\| ".join(f"`{e}`" for e in sub.get("enum", []))
            rows.append(f"| `{p}` | {t if isinstance(t, str) else '/'.join(t)} | `{json.dumps(dv)}` |")
    walk(schema, defaults, "")
    return "\n".join(rows)


def metric_families() -> list[tuple[str, object]]:
    """Every family an agent exports, from the code that exports it (each parser's own metrics function,
    fed an empty stage), with where it comes from: a new family appears here, and in the reference, by
    itself."""
    import tempfile

    from otus_agent.dns.metrics import domain_metrics
    from otus_agent.dns.stage import DnsStage
    from otus_agent.flows.metrics import flow_metrics
    from otus_agent.flows.stage import FlowStage
    from otus_agent.kube.identity import IdentityCollector, IdentityTable
    from otus_agent.observability.ifstats import InterfaceStats
    from otus_agent.observability.metrics import TaskCollector, _detect_metrics, media_metrics, relay_metrics
    with tempfile.TemporaryDirectory() as empty:        # no interfaces: the families, no samples
        interfaces = InterfaceStats([], root=empty).metrics()
    return [*(("task", m) for m in TaskCollector(lambda: []).collect()),
            *(("parser rtp", m) for m in media_metrics("t", {})),
            *(("fanout workers", m) for m in relay_metrics("t", {})),
            *(("parser flow", m) for m in flow_metrics("t", FlowStage())),
            *(("parser dns", m) for m in domain_metrics("t", DnsStage())),
            *(("parser detect", m) for m in _detect_metrics("t", {})),
            *(("interfaces", m) for m in interfaces),
            *(("`otus agent` identity", m) for m in IdentityCollector(IdentityTable()).collect())]


def metrics_table() -> str:
    rows = ["| metric | type | labels | from | meaning |", "|---|---|---|---|---|"]
    seen: dict[str, int] = {}
    for source, m in metric_families():
        name = m.name + ("_total" if m.type == "counter" else "")
        labels = ", ".join(f"`{x}`" for x in getattr(m, "_labelnames", ()))
        if name in seen:        # a family several parsers export (otus_table_evictions): one row, every source
            i = seen[name]
            if source not in rows[i]:
                parts = rows[i].split(" | ")
                parts[3] += f", {source}"
                rows[i] = " | ".join(parts)
            continue
        seen[name] = len(rows)
        rows.append(f"| `{name}` | {m.type} | {labels} | {source} | {m.documentation} |")
    return "\n".join(rows)


def main() -> str:
    from otus_operator.crd import CaptureTaskSpec
    from otus_spec import AgentConfig, TaskSpec
    return f"""# Otus configuration reference

Generated by `scripts/gen_reference.py` from the models; do not edit by hand.

## Task file (`otus validate -f`, `otus task create -f`, the operator's ConfigMap)

Model: `otus_spec.TaskSpec`. Unknown fields are errors.

{table(TaskSpec)}

## Daemon configuration (`otus daemon --config`, `configs/otus.yaml`)

Model: `otus_spec.AgentConfig`.

{table(AgentConfig)}

## CaptureTask `spec` (`otus.io/v1alpha1`)

Model: `otus_operator.crd.CaptureTaskSpec`; the CRD's schema is generated from it (`kubectl explain capturetask.spec`).

{table(CaptureTaskSpec)}

## Helm values (`helm/otus/values.yaml`, checked by `values.schema.json`)

{values_table()}

## Prometheus metrics (agents, `:9091/metrics`)

Generated from the families each exporter builds (`scripts/gen_reference.py: metric_families`). "from": the
task processes' counters (every task), a parser's families (tasks running it), the kernel counters of the task
interfaces (`interfaces`), or `otus agent`'s identity table (node agents in Kubernetes).

{metrics_table()}
"""


if __name__ == "__main__":
    sys.stdout.write(main())
