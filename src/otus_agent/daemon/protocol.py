"""Control requests: one JSON object per line each way over the Unix socket.

Request: {"cmd": "<name>", ...}; reply: {"ok": true, "result": ...} or
{"ok": false, "error": "<one line>"}.  Requests are validated here, so the
socket server and the Kafka command channel accept exactly the same things.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from otus_spec import TaskSpec, describe

MAX_REQUEST = 1 << 20


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cmd: Literal["task.create", "task.delete", "task.list", "task.status", "status", "stats", "reload", "stop"]
    id: str | None = Field(default=None, max_length=63)
    spec: dict[str, Any] | None = None


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
    return req, spec
