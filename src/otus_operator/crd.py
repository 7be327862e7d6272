"""The CaptureTask custom resource: pydantic models, and the CRD generated from them.

`python -m otus_operator.crd > crds/capturetask.yaml` writes the CRD; a test
checks the checked-in file matches.  The schema is structural (every level
typed, $refs inlined, nullables marked), carries the field descriptions for
`kubectl explain`, the defaults, and CEL rules where a rule spans fields.
"""
from __future__ import annotations

import copy
import re
import sys
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from otus_spec import ALERT_TEXT_IN_STATUS, ALERTS_IN_STATUS, DetectOptions, IdentityOptions, SipMatch

GROUP = "otus.io"
VERSION = "v1alpha1"
KIND = "CaptureTask"
PLURAL = "capturetasks"


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_selector(selector: dict[str, str]) -> dict[str, str]:
    """A label selector the API server would accept: keys [prefix/]name, values empty or a label name
    (the syntax of Kubernetes labels).  A bad one fails the task (SelectorInvalid), not a list call."""
    for key, value in selector.items():
        prefix, slash, name = key.rpartition("/")
        if not name or not _LABEL_NAME.match(name) or (slash and (not prefix or len(prefix) > 253
                                                                  or not _DNS_SUBDOMAIN.match(prefix))):
            raise ValueError(f"invalid label key {key!r}")
        if not _LABEL_NAME.match(value):
            raise ValueError(f"invalid label value {value!r} for {key!r} (at most 63 of A-Z a-z 0-9 - _ ., "
                             "starting and ending with a letter or digit)")
    return selector


def selector_text(selector: dict[str, str]) -> str:
    """``app=sbc,tier=edge``: how kubectl writes a selector."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


class NodeTarget(_M):
    selector: dict[str, str] = Field(default={}, description="Node labels; agents run on every matching node "
                                                             "(empty: every schedulable node).")
    _check = field_validator("selector")(check_selector)


class PodTarget(_M):
    selector: dict[str, str] = Field(min_length=1, description="Pod labels in the CaptureTask's namespace; a capture "
                                                               "sidecar is injected into new matching pods.")
    _check = field_validator("selector")(check_selector)
    attachExisting: bool = Field(default=False, description="Also attach the agent to matching pods created before "
                                 "the task, as an ephemeral container (no restart; it stays for the pod's life).")


class Target(_M):
    nodes: NodeTarget | None = Field(default=None, description="DaemonSet mode: capture on nodes.")
    pods: PodTarget | None = Field(default=None, description="Sidecar mode: capture inside pods.")

    def text(self) -> str:
        """What `kubectl get ct -o wide` shows as the target: ``pods app=sbc`` or ``nodes (all)``."""
        kind, selector = ("pods", self.pods.selector) if self.pods is not None else \
            ("nodes", self.nodes.selector if self.nodes is not None else {})
        return f"{kind} {selector_text(selector) or '(all)'}"


class Capture(_M):
    interfaces: list[str] = Field(default=["any"], min_length=1, max_length=16,
                                  description="Interfaces to capture on ('any' for all).")
    bpfFilter: str | None = Field(default=None, max_length=4096,
                                  description="tcpdump-syntax kernel filter; default: the SIP ports plus IP fragments, "
                                  "widened for media (RTP-shaped UDP) and dns (its ports); none with flow.")
    snaplen: int = Field(default=65535, ge=64, le=262144, description="Bytes kept per packet.")
    workers: int = Field(default=1, ge=1, le=64,
                         description="Capture processes per agent (PACKET_FANOUT). With call summaries or rtp, "
                                     "all of SIP goes to the first of them.")
    promiscuous: bool = Field(default=False, description="Put the interfaces in promiscuous mode.")


class Sip(_M):
    ports: list[int] = Field(default=[5060, 5061, 5080], min_length=1, max_length=64,
                             description="Ports always parsed as SIP.")
    correlationHeaders: list[str] = Field(default=["X-CID", "P-Charging-Vector;icid-value"], max_length=16,
                                          description="'Header' or 'Header;param' giving correlation_id.")
    discardMethods: list[str] = Field(default=[], max_length=32, description="Methods counted but not reported.")
    callSummaries: bool = Field(default=False, description="Emit a call summary record when each call ends.")
    redactAuthorization: bool = Field(default=True, description="Redact Authorization headers.")
    match: SipMatchSpec | None = Field(default=None, description="Report only the dialogs these conditions select "
                                       "(docs/selectors.md); the rest is counted.")


class Media(_M):
    enabled: bool = Field(default=False, description="Measure RTP/RTCP quality (the rtp parser; needs sip).")
    interimSeconds: float = Field(default=60.0, gt=0, description="An interim media record this often per stream.")
    idleTimeoutSeconds: float = Field(default=30.0, gt=0, description="A stream without packets this long ends.")
    maxStreams: int = Field(default=100_000, gt=0, description="Streams followed; when full the least recently "
                            "active is closed (end_reason evicted).")
    heuristic: bool = Field(default=False, description="Also follow RTP streams no SDP announced.")


class Flow(_M):
    enabled: bool = Field(default=False, description="Track every flow (the flow parser; no kernel filter).")
    maxFlows: int = Field(default=65536, ge=1, description="Flows held at once; the oldest is evicted when full.")
    udpTimeoutSeconds: float = Field(default=60.0, gt=0, description="Idle limit of a UDP flow.")
    tcpEstablishedTimeoutSeconds: float = Field(default=300.0, gt=0, description="Idle limit of an established TCP "
                                                "flow.")
    reportIntervalSeconds: float = Field(default=60.0, ge=0, description="Interval records of active flows; 0: "
                                         "end only.")


class Dns(_M):
    enabled: bool = Field(default=False, description="Parse DNS and attribute traffic to domains (the dns parser).")
    ports: list[int] = Field(default=[53, 5353], min_length=1, max_length=16, description="DNS server ports.")
    topDomains: int = Field(default=100, ge=1, description="Domains exported as metrics; the rest sum into 'other'.")
    cacheEntries: int = Field(default=65536, ge=1, description="Address -> domain entries; the oldest goes when "
                              "full.")


def camel(name: str) -> str:
    """A task field's CaptureTask name: ``window_s`` -> ``windowSeconds``, ``max_keys`` -> ``maxKeys``."""
    parts = name.split("_")
    if len(parts) > 1 and parts[-1] == "s":
        parts[-1] = "seconds"
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


class _Mirror(_M):
    """A CaptureTask section generated from a task model (``mirror``): same fields, defaults and limits,
    camelCase names; ``task_options`` turns it back into the task's own (snake_case) section."""
    _snake: ClassVar[dict[str, str]] = {}
    _source: ClassVar[type[BaseModel] | None] = None

    @model_validator(mode="after")
    def _source_rules(self) -> Any:
        """The task model's own checks (its validators are not copied): a CaptureTask the agent would
        refuse is refused here, with the task model's words."""
        if self._source is not None:
            try:
                self._source.model_validate(self.task_options())
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(camel(str(x)) for x in err["loc"])
                raise ValueError(f"{where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}") from None
        return self

    def task_options(self) -> dict:
        out: dict = {}
        for name, snake in self._snake.items():
            v = getattr(self, name)
            if isinstance(v, _Mirror):
                v = v.task_options()
            elif isinstance(v, (list, tuple)):
                v = [x.model_dump(exclude_none=True) if isinstance(x, BaseModel) else x for x in v]
            out[snake] = v
        return out


def mirror(model: type[BaseModel], name: str, base: type[_Mirror] = _Mirror, **extra: Any) -> type[_Mirror]:
    """The CaptureTask form of ``model`` (one definition of the fields: the task's; nested models mirrored too)."""
    fields: dict[str, Any] = {}
    snake: dict[str, str] = {}
    for fname, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            sub = mirror(ann, name + ann.__name__.removesuffix("Options"))
            fields[camel(fname)] = (sub, Field(default_factory=sub, description=f.description))
        else:
            info = copy.copy(f)
            if isinstance(info.default, tuple):
                info = FieldInfo.merge_field_infos(info, default=list(info.default))
                ann = list[str]
            fields[camel(fname)] = (ann, info)
        snake[camel(fname)] = fname
    m = create_model(name, __base__=base, __doc__=model.__doc__, **extra, **fields)  # type: ignore[call-overload]
    m._snake = snake
    m._source = model
    return m


if TYPE_CHECKING:               # what mypy sees of the generated model
    class SipMatchSpec(_Mirror):
        pass
else:
    SipMatchSpec = mirror(SipMatch, "SipMatch")
Sip.model_rebuild()


class _DetectBase(_Mirror):
    @model_validator(mode="before")
    @classmethod
    def _was_a_bool(cls, v: Any) -> Any:
        """``detect: true`` (before thresholds existed) is ``detect: {enabled: true}``."""
        return {"enabled": v} if isinstance(v, bool) else v


if TYPE_CHECKING:               # what mypy sees of the generated model
    class Detect(_DetectBase):
        enabled: bool = False
else:
    Detect = mirror(DetectOptions, "Detect", _DetectBase, enabled=(bool, Field(
        default=False, description="Alerts from SIP records and flow events (the detect parser); the thresholds "
        "below are the task's detect section (docs/reference.md).")))


if TYPE_CHECKING:               # what mypy sees of the generated model
    class Identity(_Mirror):
        enabled: bool | None = None
else:
    Identity = mirror(IdentityOptions, "Identity")


class SecretKeyRef(_M):
    name: str = Field(min_length=1, max_length=253, description="Secret in the CaptureTask's namespace.")
    key: str = Field(default="password", min_length=1, description="Key holding the SASL password.")


class KafkaOutput(_M):
    brokers: list[str] = Field(min_length=1, description="HOST:PORT list.")
    topic: str = Field(default="otus-{task}", description="Topic; '{task}' becomes the CaptureTask name.")
    options: dict[str, str] = Field(default={}, description="librdkafka settings (security.protocol, ...); no secrets.")
    passwordSecretRef: SecretKeyRef | None = Field(default=None, description="SASL password from a Secret.")


class HepOutput(_M):
    address: str = Field(min_length=3, description="Homer/heplify-server HOST:PORT.")
    proto: Literal["udp", "tcp"] = Field(default="udp", description="HEP transport.")


class Outputs(_M):
    kafka: KafkaOutput | None = Field(default=None, description="Records to Kafka (key: Call-ID).")
    hep: HepOutput | None = Field(default=None, description="SIP messages as HEP v3.")
    console: bool = Field(default=False, description="Records on the agent's stdout (kubectl logs).")


class Limits(_M):
    duration: str | None = Field(default=None, pattern=r"^[0-9]+(s|m|h)$",
                                 description="Stop capturing after this long, e.g. 30m; then phase Succeeded.")
    maxPackets: int | None = Field(default=None, ge=1, description="Stop after about this many packets per agent.")


def duration_seconds(text: str | None) -> float | None:
    """'90s', '30m', '24h' (the Limits.duration pattern) in seconds."""
    if not text:
        return None
    return float(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]


class Agent(_M):
    image: str | None = Field(default=None, max_length=512,
                              description="Agent image (default: the operator's, set by the Helm chart).")
    resources: dict[str, dict[str, str]] | None = Field(
        default=None, description="Agent container resources (default: the operator's).")
    tolerations: list[dict[str, str]] | None = Field(
        default=None, description="Tolerations of the agent pods in nodes mode (default: the operator's).")


class CaptureTaskSpec(_M):
    target: Target = Field(description="Where to capture: exactly one of nodes or pods.")
    capture: Capture = Field(default_factory=Capture, description="Capture options.")
    sip: Sip = Field(default_factory=Sip, description="SIP options.")
    media: Media = Field(default_factory=Media, description="Media quality (RTP/RTCP) options.")
    flow: Flow = Field(default_factory=Flow, description="Flow table options.")
    dns: Dns = Field(default_factory=Dns, description="DNS options.")
    detect: Detect = Field(default_factory=Detect, description="Detection: alerts, their thresholds and windows.")
    identity: Identity = Field(default_factory=Identity, description="Pod, workload, node and Service of the "
                               "records' addresses: the node agents' watch of pods and Services (docs/deployment.md).")
    outputs: Outputs = Field(default_factory=Outputs, description="Where records go.")
    limits: Limits = Field(default_factory=Limits, description="When to stop.")
    suspend: bool = Field(default=False, description="Stop capturing without deleting the task.")
    agent: Agent = Field(default_factory=Agent, description="Agent image and resources.")

    @model_validator(mode="after")
    def _identity_watch_needs_nodes(self) -> "CaptureTaskSpec":
        if self.identity.enabled and self.target.pods is not None:
            raise ValueError(IDENTITY_SIDECAR)
        return self


IDENTITY_SIDECAR = ("identity.enabled: the watch of pods and Services runs in node agents (target.nodes) only; "
                    "a sidecar knows its own pod from the downward API and holds no rights to watch: leave it unset")


class Condition(_M):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    lastTransitionTime: str
    observedGeneration: int | None = None


class AgentAlert(_M):
    kind: str = Field(max_length=ALERT_TEXT_IN_STATUS,
                      description="The detector: port_scan, syn_flood, sip_scanner, toll_fraud, ...")
    source: str = Field(max_length=ALERT_TEXT_IN_STATUS, description="What it is about: a source address, 'source/IP' "
                        "or 'user/NAME' (REGISTER brute force), 'SRC/DST' (port scan), ...")
    count: int = Field(default=0, description="Times the detector fired for it (alerts and repeats in cooldown).")
    lastSeen: str | None = Field(default=None, description="When it last fired.")
    message: str = Field(default="", max_length=ALERT_TEXT_IN_STATUS, description="The last alert's summary.")


class AgentStatus(_M):
    node: str | None = None
    pod: str | None = None
    state: str = Field(description="Starting, Capturing, Failed, Stopped.")
    packets: int = 0
    drops: int = 0
    sipMessages: int = 0
    matchedCalls: int = Field(default=0, description="Dialogs the task's sip.match selector admitted "
                              "(0 without a selector).")
    spoolBytes: int = 0
    mediaStreams: int = Field(default=0, description="RTP streams measured (the rtp parser).")
    worstMos: float | None = Field(default=None, description="The lowest MOS of any media record (absent: none yet).")
    alerts: list[AgentAlert] = Field(default=[], max_length=ALERTS_IN_STATUS, description="Detector alerts in effect "
                                     "(fired within detect.resolveAfterSeconds), newest first.")
    kafkaAvailable: bool | None = Field(default=None, description="Whether the Kafka reporter reaches a broker "
                                        "(absent: not reported; the spool size tells then).")
    lastReport: str | None = None
    error: str | None = None


class Totals(_M):
    packets: int = 0
    drops: int = 0
    sipMessages: int = 0
    matchedCalls: int = Field(default=0, description="Dialogs the SIP selector matched, over all agents.")
    mediaStreams: int = Field(default=0, description="RTP streams measured, over all agents.")
    worstMos: float | None = Field(default=None, description="The lowest MOS any agent measured over the task's life.")


class PodsStatus(_M):
    matching: int = Field(default=0, description="Pods matching the selector.")
    injected: int = Field(default=0, description="Matching pods that carry the capture agent.")
    notInjected: list[str] = Field(default=[], max_length=50, description="Matching pods created before the task "
                                   "(no agent; recreate them to capture). At most 50 names.")


class CaptureTaskStatus(_M):
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"] | None = None
    mode: Literal["DaemonSet", "Sidecar"] | None = None
    target: str | None = Field(default=None, description="Where the task captures: 'nodes' or 'pods' and the "
                               "selector, as `kubectl get ct -o wide` shows it.")
    observedGeneration: int | None = None
    readyAgents: int = 0
    agents: dict[str, AgentStatus] = {}
    totals: Totals = Field(default_factory=Totals)
    conditions: list[Condition] = []
    pods: PodsStatus | None = Field(default=None, description="Sidecar mode: the selected pods.")
    startTime: str | None = None
    completionTime: str | None = None
    agentPort: int | None = Field(default=None, description="DaemonSet mode: the host port of this task's agents "
                                  "(metrics), allocated by the operator so that tasks sharing a node never conflict.")
    counters: dict[str, Totals] = Field(default_factory=dict, description="The last counters seen per agent: "
                                        "totals add what each agent counted since, so they never go backwards "
                                        "when agents restart their counters.")
    alerts: list[str] = Field(default=[], description="Alerts in effect (reason, or reason/agent): a Warning "
                              "Event is posted on the CaptureTask when one starts, a Normal one when it ends.")


# ----------------------------------------------------------------- schema generation
def _structural(schema: dict, defs: dict) -> dict:
    """pydantic JSON schema -> Kubernetes structural schema (refs inlined, nullables, no titles)."""
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        extra = {k: v for k, v in schema.items() if k not in ("$ref",)}
        return _structural({**copy.deepcopy(defs[name]), **extra}, defs)
    s = {k: v for k, v in schema.items() if k not in ("title",)}
    if "anyOf" in s:
        options = [o for o in s.pop("anyOf") if o.get("type") != "null"]
        nullable = len(options) < len(schema["anyOf"])
        if len(options) == 1:
            inner = _structural(options[0], defs)
            s = {**inner, **{k: v for k, v in s.items()}}
            if nullable:
                s["nullable"] = True
        else:
            raise ValueError(f"cannot express a union in a structural schema: {schema}")
    if "const" in s:
        s["enum"] = [s.pop("const")]
    for bound, edge in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(s.get(bound), (int, float)) and not isinstance(s[bound], bool):
            s[edge], s[bound] = s[bound], True     # OpenAPI v3.0 (what the API server takes): a flag on the bound
    if s.get("type") == "object":
        if "properties" in s:
            s["properties"] = {k: _structural(v, defs) for k, v in s["properties"].items()}
        if isinstance(s.get("additionalProperties"), dict):
            s["additionalProperties"] = _structural(s["additionalProperties"], defs)
        elif s.get("additionalProperties") is False:
            del s["additionalProperties"]
    if s.get("type") == "array" and "items" in s:
        s["items"] = _structural(s["items"], defs)
    if "default" in s and s["default"] is None:
        del s["default"]
    return s


def _schema(model: type[BaseModel]) -> dict:
    js = model.model_json_schema()
    defs = js.pop("$defs", {})
    return _structural(js, defs)


def crd() -> dict:
    spec = _schema(CaptureTaskSpec)
    spec["x-kubernetes-validations"] = [
        {"rule": "has(self.target.nodes) != has(self.target.pods)",
         "message": "target needs exactly one of nodes or pods"},
        {"rule": "!has(self.outputs.kafka) || !self.outputs.kafka.options.exists(k, k.contains('password') || "
                 "k.contains('secret'))",
         "message": "put Kafka secrets in passwordSecretRef, not in options"},
        {"rule": "!has(self.target.pods) || !has(self.identity) || !has(self.identity.enabled) || "
                 "self.identity.enabled != true", "message": IDENTITY_SIDECAR},
    ]
    status = _schema(CaptureTaskStatus)
    status["properties"]["agents"]["x-kubernetes-map-type"] = "granular"
    status["properties"]["conditions"]["x-kubernetes-list-type"] = "map"
    status["properties"]["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": "capturetask",
                      "shortNames": ["ct"], "categories": ["otus"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Mode", "type": "string", "jsonPath": ".status.mode"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyAgents"},
                    {"name": "Packets", "type": "integer", "jsonPath": ".status.totals.packets"},
                    {"name": "Drops", "type": "integer", "jsonPath": ".status.totals.drops"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    # -o wide only
                    {"name": "Target", "type": "string", "jsonPath": ".status.target", "priority": 1},
                    {"name": "Matched", "type": "integer", "jsonPath": ".status.totals.matchedCalls", "priority": 1,
                     "description": "SIP dialogs the selector matched"},
                    {"name": "Streams", "type": "integer", "jsonPath": ".status.totals.mediaStreams", "priority": 1,
                     "description": "RTP streams measured"},
                    {"name": "Worst-MOS", "type": "number", "jsonPath": ".status.totals.worstMos", "priority": 1,
                     "description": "the lowest MOS measured"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A SIP capture: where (nodes or pods), how, and where the records go.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": status,
                    },
                }},
            }],
        },
    }


def dump_yaml() -> str:
    import yaml
    return "# Generated by `python -m otus_operator.crd`; do not edit by hand.\n" + \
        yaml.safe_dump(crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(dump_yaml())
