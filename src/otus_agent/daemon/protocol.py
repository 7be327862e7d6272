"""Control requests: one JSON object per line each way over the Unix socket.

Request: {"cmd": "<name>", ...}; reply: {"ok": true, "result": ...} or
{"ok": false, "error": "<one line>"}.  Requests are validated here, so the
socket server and the Kafka command channel accept exactly the same things.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from otus_agent.flows.view import FlowProto, TcpState
from otus_spec import TaskSpec, describe

MAX_REQUEST = 1 << 20


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cmd: Literal["task.create", "task.delete", "task.list", "task.status", "status", "stats", "reload", "stop",
                 "flow.connections", "flow.icmp", "interfaces"]
    id: str | None = Field(default=None, max_length=63)
    spec: dict[str, Any] | None = None
    query: dict[str, Any] | None = Field(default=None, description="flow.connections: a ConnectionQuery; "
                                         "flow.icmp: {limit}; interfaces: {all}")


class ConnectionQuery(BaseModel):
    """Filters of the live connections (flows/view.py); every one given must match."""
    model_config = ConfigDict(extra="forbid")
    proto: FlowProto | None = None
    ip: str | None = Field(default=None, max_length=45, description="an address on either side")
    port: int | None = Field(default=None, ge=0, le=65535, description="a port on either side")
    state: TcpState | None = Field(default=None, description="TCP state as the observer sees it (TCP flows only)")
    offset: int = Field(default=0, ge=0, le=100_000)
    limit: int = Field(default=100, ge=1, le=1000)

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import ipaddress
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"not an IP address: {v!r}") from None


class IcmpQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=100, description="ICMP errors listed (newest first)")


class InterfacesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: bool = Field(default=False, description="every interface of the host, not only the tasks'")


QUERIES: dict[str, type[BaseModel]] = {"flow.connections": ConnectionQuery, "flow.icmp": IcmpQuery,
                                       "interfaces": InterfacesQuery}


class ProtocolError(Exception):
    pass


def parse_request(line: bytes) -> tuple[Request, TaskSpec | None]:
    import json
    if len(line) > MAX_REQUEST:
        raise ProtocolError("request too large")
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("request is not JSON (or nested too deeply)") from None
    if not isinstance(data, dict):
        raise ProtocolError("request must be a JSON object")
    try:
        req = Request.model_validate(data)
    except ValidationError as e:
        raise ProtocolError(describe(e, "request").replace("\n", "; ")) from None
    spec = None
    if req.cmd == "task.create":
        if req.spec is None:
            raise ProtocolError("task.create needs 'spec'")
        try:
            spec = TaskSpec.model_validate(req.spec)
        except ValidationError as e:
            raise ProtocolError(describe(e, "task").replace("\n", "; ")) from None
    elif req.cmd in ("task.delete", "task.status") and not req.id:
        raise ProtocolError(f"{req.cmd} needs 'id'")
    elif req.cmd in QUERIES:
        try:
            req.query = QUERIES[req.cmd].model_validate(req.query or {}).model_dump()
        except ValidationError as e:
            raise ProtocolError(describe(e, "query").replace("\n", "; ")) from None
    return req, spec
