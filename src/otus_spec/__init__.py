"""The contract: a task (``TaskSpec``) and the daemon's configuration (``AgentConfig``).

Pydantic models, shared by the CLI, the daemon, the Kafka command channel and
the operator (which renders CaptureTask resources into TaskSpecs).  Unknown
fields are rejected, so a typo is an error that names the field, not a
setting silently ignored.  Task files in the older flat form
(``id``, ``interface``, ``parsers``, ``bpf_filter``) keep working.
"""
from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

TASK_ID_MAX = 63


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


MATCH_LIST_MAX = 64


def _nonempty_strings(v: list[str], what: str) -> list[str]:
    for x in v:
        if not x or len(x) > 1024 or any(ord(c) < 32 for c in x):
            raise ValueError(f"bad {what} {x!r}: 1-1024 printable characters")
    return v


class HeaderMatch(_Strict):
    name: str = Field(min_length=1, max_length=128, description="header name, case-insensitive (e.g. X-Tenant)")
    equals: str | None = Field(default=None, max_length=1024, description="the value equals this (trimmed)")
    contains: str | None = Field(default=None, max_length=1024, description="the value contains this")

    @model_validator(mode="after")
    def _one_test(self) -> "HeaderMatch":
        if (self.equals is None) == (self.contains is None):
            raise ValueError(f"header {self.name!r}: give exactly one of 'equals' or 'contains'")
        if not all(c.isascii() and (c.isalnum() or c in "-_.!%*+`'~") for c in self.name):
            raise ValueError(f"bad header name {self.name!r}")
        return self


class SipMatch(_Strict):
    """Which dialogs a task reports: conditions combined with AND, each list an OR; tested on requests,
    and a dialog whose request matches is reported whole (sip/select.py)."""
    methods: list[str] = Field(default=[], max_length=MATCH_LIST_MAX, description="request methods, e.g. INVITE")
    from_user: list[str] = Field(default=[], max_length=MATCH_LIST_MAX, description="From URI user parts, exact")
    to_user: list[str] = Field(default=[], max_length=MATCH_LIST_MAX, description="To URI user parts, exact")
    request_uri_prefix: list[str] = Field(default=[], max_length=MATCH_LIST_MAX,
                                          description="Request-URI starts with, e.g. 'sip:+1555'")
    request_uri: list[str] = Field(default=[], max_length=MATCH_LIST_MAX, description="Request-URI equals")
    call_id: list[str] = Field(default=[], max_length=MATCH_LIST_MAX, description="Call-IDs")
    headers: list[HeaderMatch] = Field(default=[], max_length=MATCH_LIST_MAX,
                                       description="header conditions (any of them)")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        for m in v:
            if not m or len(m) > 32 or not all(c.isascii() and (c.isalnum() or c in "-_.!%*+`'~") for c in m):
                raise ValueError(f"bad method {m!r}: a SIP token such as INVITE")
        return [m.upper() for m in v]

    @field_validator("from_user", "to_user", "request_uri_prefix", "request_uri", "call_id")
    @classmethod
    def _strings(cls, v: list[str]) -> list[str]:
        return _nonempty_strings(v, "value")

    @model_validator(mode="after")
    def _something(self) -> "SipMatch":
        if not (self.methods or self.from_user or self.to_user or self.request_uri_prefix or self.request_uri
                or self.call_id or self.headers):
            raise ValueError("match: give at least one condition (or leave 'match' out to report every dialog)")
        return self


class SipOptions(_Strict):
    ports: list[int] = Field(default=[5060, 5061, 5080], min_length=1,
                             description="ports always parsed as SIP; other ports when the payload looks like SIP")
    heuristic: bool = Field(default=True, description="also parse payloads that look like SIP on other ports")
    correlation_headers: list[str] = Field(default=["X-CID", "P-Charging-Vector;icid-value"],
                                           description="'Header' or 'Header;param'; first found gives correlation_id")
    redact_authorization: bool = Field(default=True, description="redact Authorization/Proxy-Authorization values")
    discard_methods: list[str] = Field(default=[], description="methods counted but not reported, e.g. OPTIONS")
    error_records: bool = Field(default=True, description="emit a record (with 'error') for malformed messages")
    call_summaries: bool = Field(default=False, description="emit a call summary record when each call ends")
    match: SipMatch | None = Field(default=None, description="report only the dialogs these conditions select "
                                   "(methods, users, Request-URI, Call-ID, headers); the rest is counted")

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        for p in v:
            if not 1 <= p <= 65535:
                raise ValueError(f"port {p} out of range 1-65535")
        return v

    @field_validator("correlation_headers")
    @classmethod
    def _corr(cls, v: list[str]) -> list[str]:
        for spec in v:
            if not spec.partition(";")[0].strip():
                raise ValueError(f"bad correlation header {spec!r}: expected 'Header' or 'Header;param'")
        return v

    @field_validator("discard_methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        return [m.upper() for m in v]


class RingOptions(_Strict):
    block_size: int = Field(default=1 << 20, ge=4096, description="TPACKET_V3 block size, a power of two")
    blocks: int = Field(default=32, ge=2, le=4096, description="blocks per ring")
    block_timeout_ms: int = Field(default=50, ge=1, le=10000, description="hand over a partly filled block after")

    @field_validator("block_size")
    @classmethod
    def _pow2(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"{v} is not a power of two")
        return v


KafkaOptions = dict[str, str | int | bool]
KAFKA_OPTIONS_DOC = "librdkafka settings passed as they are (security.protocol, sasl.mechanism, ...); no secrets"


def check_kafka_options(options: dict, where: str = "password_env") -> dict:
    """librdkafka settings that hold no secret: a key naming a password or secret is refused, so a secret
    never sits in a task file, a flag or a log line (one rule for the kafka reporter and ``otus console``)."""
    for key in options:
        if "password" in key or "secret" in key:
            raise ValueError(f"option {key!r}: put secrets in an environment variable or a file ({where})")
    return options


class KafkaAuth(_Strict):
    """How a Kafka client authenticates, besides its brokers: librdkafka settings (``security.protocol``,
    ``sasl.mechanism``, ``sasl.username``, ``ssl.ca.location``, ...) and the SASL password from an
    environment variable or a file, never inline.  The kafka reporter's ``options``/``password_env`` and
    ``otus console``'s ``--kafka-*`` flags are this one definition."""
    options: KafkaOptions = Field(default={}, description=KAFKA_OPTIONS_DOC)
    password_env: str | None = Field(default=None, description="environment variable with sasl.password")
    password_file: str | None = Field(default=None, description="file with sasl.password (a mounted Secret)")

    @model_validator(mode="after")
    def _one_password(self) -> "KafkaAuth":
        check_kafka_options(self.options, "password_env or password_file")
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("give the SASL password through password_env or password_file, not both")
        if self.password_env is not None and not self.password_env.strip():
            raise ValueError("password_env: the name of an environment variable")
        return self

    def client_conf(self, env: Any = None) -> dict:
        """The librdkafka settings with ``sasl.password`` filled in from where it is kept; SpecError when
        that file cannot be read (the message names the file, never its content)."""
        conf: dict = dict(self.options)
        if self.password_env is not None:
            conf["sasl.password"] = (os.environ if env is None else env).get(self.password_env, "")
        elif self.password_file is not None:
            try:
                with open(self.password_file, encoding="utf-8") as f:
                    conf["sasl.password"] = f.read().strip()
            except (OSError, UnicodeDecodeError) as e:
                raise SpecError(f"kafka password file {self.password_file}: "
                                f"{getattr(e, 'strerror', None) or 'not UTF-8'}") from None
        return conf


class Reporter(_Strict):
    type: Literal["console", "file", "kafka", "hep"] = Field(description="where records go (hep: SIP messages as "
                                                                        "HEP v3 to Homer)")
    path: str | None = Field(default=None, description="file reporter: JSON-lines file to append to")
    brokers: list[str] = Field(default=[], description="kafka: HOST:PORT list (default: the daemon's kafka.brokers)")
    topic: str = Field(default="otus-{task}", description="kafka: topic; '{task}' becomes the task id")
    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 16, description="kafka: disk spool limit")
    spool_full: Literal["drop-newest", "block"] = Field(default="drop-newest", description="kafka: when full")
    options: KafkaOptions = Field(default={}, description="kafka: " + KAFKA_OPTIONS_DOC)
    password_env: str | None = Field(default=None, description="kafka: environment variable with sasl.password "
                                                               "(secrets never in task files or logs)")
    address: str | None = Field(default=None, description="hep: Homer/heplify-server HOST:PORT")
    proto: Literal["udp", "tcp"] = Field(default="udp", description="hep: transport")
    node_id: int = Field(default=2001, ge=0, le=0xFFFFFFFF, description="hep: capture agent id")

    def kafka_auth(self) -> KafkaAuth:
        """This reporter's client settings as the shared definition (daemon/task.py builds its producer's)."""
        return KafkaAuth(options=self.options, password_env=self.password_env or None)

    @model_validator(mode="after")
    def _path(self) -> "Reporter":
        if self.type == "file" and not self.path:
            raise ValueError("a file reporter needs 'path'")
        if self.type != "file" and self.path:
            raise ValueError(f"a {self.type} reporter takes no 'path'")
        check_kafka_options(self.options)
        for b in self.brokers + ([self.address] if self.address else []):
            host, sep, port = b.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"address {b!r}: expected HOST:PORT")
        if (self.type == "hep") != (self.address is not None):
            raise ValueError("a hep reporter needs 'address'" if self.type == "hep"
                             else f"a {self.type} reporter takes no 'address'")
        return self


class Limits(_Strict):
    duration_s: float | None = Field(default=None, gt=0, description="stop the task after this many seconds")
    max_packets: int | None = Field(default=None, gt=0, description="stop after about this many packets")


PARSER_NAMES = ("sip", "rtp", "flow", "dns", "detect")
ParserName = Literal["sip", "rtp", "flow", "dns", "detect"]


class MediaOptions(_Strict):
    """RTP/RTCP quality (parser ``rtp``); the agent's MediaConfig has the same fields and defaults."""
    enabled: bool = Field(default=False, description="run the rtp parser (as listing 'rtp' in parsers does)")
    interim_s: float = Field(default=60.0, gt=0, description="interim record interval for running streams")
    idle_timeout_s: float = Field(default=30.0, gt=0, description="a stream without packets this long ends")
    bye_linger_s: float = Field(default=2.0, ge=0, description="media after a BYE still counts this long")
    max_streams: int = Field(default=100_000, gt=0, description="streams followed; when full, idle then the least "
                                                                "recently active are closed (end_reason evicted)")
    max_endpoints: int = Field(default=200_000, gt=0, description="SDP-announced addresses remembered")
    heuristic: bool = Field(default=False, description="also follow RTP streams no SDP announced")


class FlowOptions(_Strict):
    """The flow table (parser ``flow``); the agent's FlowConfig has the same fields and defaults."""
    max_flows: int = Field(default=65536, ge=1, description="flows held at once; the oldest is evicted when full")
    tcp_syn_timeout_s: float = Field(default=30.0, gt=0, description="idle limit before the handshake completes")
    tcp_established_timeout_s: float = Field(default=300.0, gt=0, description="idle limit of an established TCP flow")
    tcp_closed_timeout_s: float = Field(default=10.0, gt=0, description="linger after FIN both ways or RST")
    udp_timeout_s: float = Field(default=60.0, gt=0, description="idle limit of a UDP (or SCTP, other) flow")
    icmp_timeout_s: float = Field(default=30.0, gt=0, description="idle limit of an ICMP flow")
    report_interval_s: float = Field(default=60.0, ge=0, description="interval records for active flows; 0: end only")
    reassemble_fragments: bool = Field(default=True, description="count a fragmented datagram once, when complete")
    sweep_interval_s: float = Field(default=1.0, gt=0, description="how often (packet time) timeouts are checked")


class DnsIgnoreOptions(_Strict):
    ports: list[int] = Field(default=[], description="L4 ports (either side) not attributed to domains")
    addresses: list[str] = Field(default=[], description="addresses or CIDR networks (either side) not attributed")
    localhost: bool = Field(default=True, description="ignore 127.0.0.0/8 and ::1")
    domains: list[str] = Field(default=[], description="domains (and subdomains) neither cached nor recorded")


class DnsOptions(_Strict):
    """DNS and per-domain traffic (parser ``dns``); the agent's DnsConfig has the same fields and defaults."""
    ports: list[int] = Field(default=[53, 5353], min_length=1, description="DNS server ports (UDP and TCP)")
    max_pending: int = Field(default=16384, ge=1, description="queries awaiting a response; the oldest is dropped "
                                                              "when full")
    query_timeout_s: float = Field(default=10.0, gt=0, description="a query unanswered this long is unanswered")
    cache_entries: int = Field(default=65536, ge=1, description="address -> domain entries; the oldest goes when full")
    ttl_floor_s: float = Field(default=30.0, ge=0, description="an answer is kept at least this long")
    ttl_cap_s: float = Field(default=86400.0, gt=0, description="and at most this long, whatever its TTL")
    top_domains: int = Field(default=100, ge=1, description="domains exported as metrics; the rest sum into 'other'")
    max_tracked_domains: int = Field(default=10000, ge=1, description="domains counted; beyond, traffic is 'other'")
    tcp_max_streams: int = Field(default=4096, ge=1, description="DNS-over-TCP streams followed")
    ignore: DnsIgnoreOptions = Field(default_factory=DnsIgnoreOptions)

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        for p in v:
            if not 0 < p < 65536:
                raise ValueError(f"not a port: {p}")
        return v


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PortScanOptions(_Frozen):
    window_s: float = Field(default=60.0, gt=0, description="the sliding window the counts are taken over")
    distinct_ports: int = Field(default=100, ge=2, description="ports of one host probed by one source")
    distinct_hosts: int = Field(default=100, ge=2, description="hosts probed on one port by one source")


class SynFloodOptions(_Frozen):
    window_s: float = Field(default=10.0, gt=0, description="the sliding window the counts are taken over")
    incomplete: int = Field(default=500, ge=1, description="SYNs to one destination without a completed handshake")
    ratio: float = Field(default=0.8, gt=0, le=1, description="share of that destination's SYNs left incomplete")


class IcmpFloodOptions(_Frozen):
    window_s: float = Field(default=10.0, gt=0, description="the sliding window the counts are taken over")
    packets: int = Field(default=1000, ge=1, description="ICMP packets to one destination")


class SipScanOptions(_Frozen):
    window_s: float = Field(default=60.0, gt=0, description="the sliding window the counts are taken over")
    user_agents: tuple[str, ...] = Field(default=("friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sipsak-scan",
                                          "vaxsipuseragent", "sundayddr", "iwar", "smap", "pplsip", "siparator",
                                          "voipbuster"),
                                         description="User-Agent substrings of known scanners (case-insensitive)")
    options_targets: int = Field(default=50, ge=2, description="distinct hosts or users one source sends OPTIONS to")
    trusted_sources: tuple[str, ...] = Field(default=(), description="sources whose OPTIONS are not a sweep: a proxy "
                                             "pinging more registered contacts than options_targets a window")


class RegisterBruteForceOptions(_Frozen):
    window_s: float = Field(default=60.0, gt=0, description="the sliding window the counts are taken over")
    per_source: int = Field(default=20, ge=1, description="401/403 answers to REGISTERs of one source")
    per_user: int = Field(default=10, ge=1, description="401/403 answers to REGISTERs of one user")
    failure_ratio: float = Field(default=0.8, gt=0, le=1, description="failures over all final answers (a challenge "
                                 "followed by 200 is normal)")


class InviteFloodOptions(_Frozen):
    window_s: float = Field(default=10.0, gt=0, description="the sliding window the counts are taken over")
    invites: int = Field(default=50, ge=1, description="new INVITE transactions (distinct Call-IDs) from one source")


class TollFraudOptions(_Frozen):
    window_s: float = Field(default=600.0, gt=0, description="the sliding window the counts are taken over")
    calls: int = Field(default=10, ge=1, description="short international calls from one account")
    short_call_s: float = Field(default=30.0, gt=0, description="a call shorter than this (or unanswered) is short")
    international_prefixes: tuple[str, ...] = Field(default=("+", "00", "011"))
    home_prefixes: tuple[str, ...] = Field(default=(), description="prefixes that are not international here (e.g. +1)")


ALERTS_IN_STATUS = 10   # detector alerts an agent lists in its CaptureTask status entry (the CRD's maxItems)
ALERT_TEXT_IN_STATUS = 200   # characters of such an alert's source and message (the CRD's maxLength)


class DetectOptions(_Frozen):
    """Thresholds and windows of the detectors (parser ``detect``): the one definition, which the agent's
    detectors run on as they are (otus_agent.detect.config) and the CaptureTask's ``detect`` section mirrors.
    The defaults sit well above what ordinary traffic does (the clean-workload tests hold them to that)."""
    port_scan: PortScanOptions = Field(default_factory=PortScanOptions, description="distinct ports or hosts probed "
                                       "by one source in a window")
    syn_flood: SynFloodOptions = Field(default_factory=SynFloodOptions, description="SYNs without completion")
    icmp_flood: IcmpFloodOptions = Field(default_factory=IcmpFloodOptions, description="ICMP packets to one host")
    sip_scan: SipScanOptions = Field(default_factory=SipScanOptions, description="scanner User-Agents and OPTIONS "
                                     "sweeps")
    register_brute_force: RegisterBruteForceOptions = Field(default_factory=RegisterBruteForceOptions,
                                                            description="401/403 to REGISTER per source and per user")
    invite_flood: InviteFloodOptions = Field(default_factory=InviteFloodOptions, description="new INVITEs per source")
    toll_fraud: TollFraudOptions = Field(default_factory=TollFraudOptions, description="many short international "
                                         "calls from one account")
    max_keys: int = Field(default=16384, ge=1, description="sources/destinations/users tracked per detector; the oldest "
                          "goes when full (counted in evictions)")
    cooldown_s: float = Field(default=300.0, ge=0, description="an alert for the same detector and key repeats at most "
                              "this often")
    resolve_after_s: float = Field(default=300.0, gt=0, description="an alert is over (in Kubernetes: a Normal "
                                   "...Resolved Event) once its detector has not fired for its key this long")


IDENTITY_GRACE_S = 60.0
IDENTITY_MAX_ENTRIES = 65_536


class IdentityOptions(_Strict):
    """Kubernetes identity of the records' addresses (pod, workload, node, Service): the node agent's
    watch of pods and Services (``otus agent``, otus_agent/kube/identity.py).  Read by ``otus agent`` only;
    ``otus run`` and the daemon accept the section and do nothing with it.  The CaptureTask's ``identity``
    section mirrors it; a change reaches running agents without restarting their capture."""
    enabled: bool | None = Field(default=None, description="watch pods and Services cluster-wide; default "
                                 "(unset): on for node agents (DaemonSet) in a cluster, off in sidecars, which know "
                                 "their own pod from the downward API and hold no rights to watch")
    grace_s: float = Field(default=IDENTITY_GRACE_S, ge=0, le=3600, description="a deleted pod's (or Service's) "
                           "addresses still resolve to it this long, so late packets are attributed to their sender")
    max_entries: int = Field(default=IDENTITY_MAX_ENTRIES, ge=16, le=10_000_000, description="addresses the "
                             "table holds at most (about 0.8 kB each); when full, expired holders go first, then the "
                             "longest-deleted, else the oldest address (otus_identity_evictions_total)")


class TaskSpec(_Strict):
    id: str = Field(min_length=1, max_length=TASK_ID_MAX,
                    description="unique task name: lower-case letters, digits and '-' (a DNS label)")
    interfaces: list[str] = Field(default=[], description="interfaces to capture on ('any' for all)")
    interface: str | None = Field(default=None, description="a single interface (older task files)")
    bpf_filter: str | None = Field(default=None, description="tcpdump-syntax kernel filter; default: SIP ports + "
                                                             "IP fragments, widened for the parsers (rtp: RTP-shaped "
                                                             "UDP, dns: the DNS ports, flow: everything)")
    parsers: list[ParserName] = Field(default=["sip"], min_length=1,
                                      description="application parsers, each off unless named: sip, rtp (media "
                                                  "quality; needs sip), flow, dns, detect (needs sip or flow)")
    sip: SipOptions = Field(default_factory=SipOptions)
    media: MediaOptions = Field(default_factory=MediaOptions)
    flow: FlowOptions = Field(default_factory=FlowOptions)
    dns: DnsOptions = Field(default_factory=DnsOptions)
    detect: DetectOptions = Field(default_factory=DetectOptions,
                                  description="detector thresholds and windows (parser detect)")
    snaplen: int = Field(default=65535, ge=64, le=262144)
    workers: int = Field(default=1, ge=1, le=64,
                         description="capture processes sharing the traffic (fanout); with call summaries or rtp, "
                                     "all of SIP goes to the first of them")
    promiscuous: bool = False
    ring: RingOptions = Field(default_factory=RingOptions)
    identity: IdentityOptions = Field(default_factory=IdentityOptions,
                                      description="Kubernetes identity of addresses (otus agent only)")
    reporters: list[Reporter] = Field(default_factory=lambda: [Reporter(type="console")], min_length=1)

    @field_validator("reporters")
    @classmethod
    def _one_kafka(cls, v: list[Reporter]) -> list[Reporter]:
        for kind in ("kafka", "hep"):
            if sum(1 for r in v if r.type == kind) > 1:
                raise ValueError(f"at most one {kind} reporter per task")
        return v
    limits: Limits = Field(default_factory=Limits)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        ok = all(c.isascii() and (c.islower() or c.isdigit() or c == "-") for c in v)
        if not ok or v.startswith("-") or v.endswith("-"):
            raise ValueError("must be lower-case letters, digits and '-', not starting or ending with '-'")
        return v

    @field_validator("interfaces")
    @classmethod
    def _ifaces(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name or len(name) > 15 or "/" in name or " " in name or "\0" in name:
                raise ValueError(f"bad interface name {name!r}")
        if len(set(v)) != len(v):
            raise ValueError("an interface is listed twice")
        return v

    @model_validator(mode="after")
    def _one_interface_list(self) -> "TaskSpec":
        if self.interface is not None:
            if self.interfaces and self.interfaces != [self.interface]:
                raise ValueError("give either 'interface' or 'interfaces', not both")
            object.__setattr__(self, "interfaces", [self.interface])
            object.__setattr__(self, "interface", None)
            TaskSpec._ifaces(self.interfaces)
        if not self.interfaces:
            raise ValueError("no interface: set 'interfaces' (or 'interface')")
        return self

    @model_validator(mode="after")
    def _parsers(self) -> "TaskSpec":
        names = list(dict.fromkeys(self.parsers))
        if self.media.enabled and "rtp" not in names:
            names.append("rtp")
        if "rtp" in names and "sip" not in names:
            raise ValueError("parsers: rtp finds its streams in SIP's SDP: add sip")
        if "detect" in names and "sip" not in names and "flow" not in names:
            raise ValueError("parsers: detect reads sip records and flow events: add sip or flow")
        if names != self.parsers:
            object.__setattr__(self, "parsers", names)
        return self


class ControlConfig(_Strict):
    socket: str = "/var/run/otus.sock"
    mode: int = Field(default=0o660, ge=0, le=0o777, description="socket file permissions")
    group: str | None = Field(default=None, description="group owning the socket; its members may use it")

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, v: Any) -> Any:
        """'0660', '0o660' and '660' are octal, as in chmod."""
        if isinstance(v, str):
            text = v.strip().lower().removeprefix("0o")
            try:
                return int(text, 8)
            except ValueError:
                raise ValueError(f"not an octal file mode: {v!r}") from None
        return v


class MetricsConfig(_Strict):
    enabled: bool = True
    listen: str = ":9091"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected [HOST]:PORT, got {v!r}")
        return v

    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


class LokiOutput(_Strict):
    enabled: bool = False
    endpoint: str = "http://loki:3100/loki/api/v1/push"


class LogOutputs(_Strict):
    loki: LokiOutput = Field(default_factory=LokiOutput)


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    outputs: LogOutputs = Field(default_factory=LogOutputs)


class KafkaDefaults(_Strict):
    brokers: list[str] = []


class CommandKafka(_Strict):
    topic: str = "otus-commands"
    reply_topic: str = Field(default="otus-replies", description="replies go here, keyed by request_id")
    brokers: list[str] = Field(default=[], description="default: otus.kafka.brokers")


class CommandChannel(_Strict):
    enabled: bool = False
    type: Literal["kafka"] = "kafka"
    kafka: CommandKafka = Field(default_factory=CommandKafka)
    token_env: str = Field(default="OTUS_COMMAND_TOKEN",
                           description="environment variable holding the shared token every command must carry")


class HttpStore(_Strict):
    calls: int = Field(default=1000, ge=1, le=100_000, description="calls kept in memory; the oldest is evicted")
    max_bytes: int = Field(default=64 << 20, ge=1 << 20, le=4 << 30,
                           description="record bytes kept in memory across calls; the oldest call is evicted")
    messages_per_call: int = Field(default=200, ge=1, le=10_000, description="messages kept per call; later ones counted")


class HttpConfig(_Strict):
    enabled: bool = False
    listen: str = "127.0.0.1:8080"
    token_env: str = Field(default="OTUS_HTTP_TOKEN", description="environment variable holding the bearer token")
    token_file: str | None = Field(default=None, description="file holding the bearer token (wins over token_env)")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20, description="larger request bodies get 413")
    store: HttpStore = Field(default_factory=HttpStore)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return MetricsConfig._listen(v)

    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


class OtusSection(_Strict):
    control: ControlConfig = Field(default_factory=ControlConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    kafka: KafkaDefaults = Field(default_factory=KafkaDefaults)
    command_channel: CommandChannel = Field(default_factory=CommandChannel)
    http: HttpConfig = Field(default_factory=HttpConfig, description="the HTTP API and web console (issue 17)")
    state_dir: str = "/var/lib/otus"


class AgentConfig(_Strict):
    otus: OtusSection = Field(default_factory=OtusSection)


class SpecError(Exception):
    """A task or config file that is not valid; one line per problem, each naming the field."""


def describe(e: ValidationError, what: str) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{what}: {loc}: {msg}")
    return "\n".join(lines)


def _load_mapping(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read: {e}") from None
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{path}: not valid JSON: line {e.lineno}: {e.msg}") from None
    import yaml
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise SpecError(f"{path}: not valid YAML: {where}{getattr(e, 'problem', None) or e}") from None


def task_from_dict(data: Any, what: str = "task") -> TaskSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{what}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(describe(e, what)) from None


def load_task(path: str) -> TaskSpec:
    return task_from_dict(_load_mapping(path), os.path.basename(path))


def load_config(path: str | None) -> AgentConfig:
    if path is None:
        return AgentConfig()
    data = _load_mapping(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping with an 'otus' section")
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as e:
        raise SpecError(describe(e, os.path.basename(path))) from None
