"""Response models of the flow, ICMP and stats endpoints: what the OpenAPI document promises.

The flow rows are the ``type: "flow"`` record (flows/records.py) with ``event: "active"`` and the task
that holds them; counter trees that grow with the parsers a task runs stay open objects."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Connection(BaseModel):
    task: str = Field(description="the task whose flow table holds it")
    v: int
    type: str = Field(description="always 'flow'")
    event: str = Field(description="'active': a live row of the table")
    ts: int = Field(description="the table's clock when asked (ns, packet time)")
    proto: str
    ipver: int
    src_ip: str = Field(description="the initiator")
    src_port: int
    dst_ip: str
    dst_port: int
    first_ts: int
    last_ts: int
    src_packets: int
    src_bytes: int = Field(description="frame bytes, as tshark's conversations count them")
    dst_packets: int
    dst_bytes: int
    tcp_state: str | None = None
    tcp_handshake: bool | None = None
    tcp_midstream: bool | None = None
    tcp_flags_src: str | None = None
    tcp_flags_dst: str | None = None
    tcp_retransmissions: int | None = None
    tcp_zero_windows: int | None = None
    icmp_types: dict[str, int] | None = Field(default=None, description="'type/code' -> packets (ICMP flows)")
    icmp_errors: dict[str, int] | None = Field(default=None, description="'type/code' -> ICMP errors quoting it")


class ConnectionsPage(BaseModel):
    total: int = Field(description="connections matching the filters, over every asked process")
    offset: int
    limit: int
    tasks: list[str] = Field(description="the running tasks with the flow parser that were asked")
    unanswered: int = Field(description="capture processes that did not answer in time (their rows are missing)")
    connections: list[Connection] = Field(description="oldest first")


class IcmpTypeCount(BaseModel):
    task: str
    version: int = Field(description="4 (ICMP) or 6 (ICMPv6)")
    type: int
    code: int
    packets: int


class QuotedFlow(BaseModel):
    proto: str
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int


class IcmpError(BaseModel):
    task: str
    ts: int
    reporter: str | None = Field(description="the address that sent the ICMP error")
    version: int
    icmp_type: int
    icmp_code: int
    joined: bool = Field(description="whether the quoted packet's flow is (or was, when the error came) in the "
                         "table of a capture process of the task")
    flow: QuotedFlow = Field(description="the five-tuple of the quoted packet")


class IcmpReport(BaseModel):
    tasks: list[str]
    unanswered: int
    errors_joined: int
    errors_unmatched: int
    truncated: int = Field(description="ICMP messages or quoted headers too short to read")
    types: list[IcmpTypeCount]
    errors: list[IcmpError] = Field(description="the last ICMP errors, newest first (at most 100 per process)")


class InterfaceCounters(BaseModel):
    counters: dict[str, int] = Field(description="the kernel's counters (rx_packets, tx_bytes, rx_dropped, ...)")
    rates: dict[str, float] = Field(description="per second since the previous ask (empty on the first)")


class DaemonCounters(_Open):
    version: str | None = None
    uptime_s: float | None = None
    tasks: int | None = None
    running: int | None = None
    tap: dict[str, int] | None = Field(default=None, description="the record tap: lines received, refused")


class TaskCounters(_Open):
    """One task's counters (as `otus stats`): packets, kernel, each parser's under its name, reporters."""
    status: str | None = None
    packets: int | None = None
    kernel: dict[str, Any] | None = None


class StatsReport(BaseModel):
    daemon: DaemonCounters
    store: dict[str, Any] = Field(description="the console's record store")
    tasks: dict[str, TaskCounters] = Field(description="task id -> its counters (as `otus stats`)")
    interfaces: dict[str, InterfaceCounters] = Field(description="the tasks' interfaces ('any': all), or all")
    interfaces_skipped: int = Field(default=0, description="interfaces beyond the reader's limit")
