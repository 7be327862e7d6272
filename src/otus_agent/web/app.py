"""The HTTP API (/api/v1, OpenAPI at /api/v1/openapi.json) and the console page at /.

Task and daemon requests go through ``dispatch``: the control socket's own function
(``ControlServer.dispatch``, one JSON request to one {"ok", "result" | "error"} reply), so the API
and ``otus task ...`` are one implementation.  ``dispatch=None`` makes a read-only console
(``otus console``).  Mutations need ``Authorization: Bearer <token>``; the token comes from the
daemon's configuration (a file or an environment variable), never a flag; with no token configured
they are refused.  No CORS headers are sent (browsers keep other origins out).  Every error is
``{"error": "<message>"}`` (validation errors add ``fields``), never a traceback.
"""
from __future__ import annotations

import hmac
import json
import logging
from importlib import resources
from typing import Any, Callable

import yaml
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from otus_agent.flows.view import FlowProto, TcpState
from otus_agent.web.limits import BodyLimit
from otus_agent.web.models import ConnectionsPage, DaemonCounters, IcmpReport, StatsReport
from otus_agent.web.sse import StreamHub
from otus_agent.web.store import RecordStore
from otus_spec import TaskSpec, describe

log = logging.getLogger("otus.http")
Dispatch = Callable[[bytes], dict]
STATIC = ("index.html", "console.js", "console.css")
_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
# the page loads nothing from elsewhere, runs no inline script and cannot be framed
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class ApiError(Exception):
    def __init__(self, status: int, message: str, fields: list[dict] | None = None):
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields


def _status_of(error: str) -> int:
    """The HTTP status of a control-plane refusal (the socket's message kept as the error text)."""
    if error.startswith("no such task"):
        return 404
    if "already exists" in error:
        return 409
    if error.startswith("too many tasks"):
        return 429
    if error.startswith("internal error"):
        return 500
    return 400


def _fields(message: str) -> list[dict]:
    """describe()'s 'task: loc: msg' lines as [{"field", "message"}]."""
    out = []
    for line in message.splitlines():
        parts = line.split(": ", 2)
        if len(parts) == 3:
            out.append({"field": parts[1], "message": parts[2]})
        else:
            out.append({"field": "(body)", "message": line})
    return out


def parse_task(body: bytes, content_type: str) -> TaskSpec:
    """The same YAML or JSON task as ``otus task create -f``; ApiError(422) naming each bad field."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "task: the body is not UTF-8") from None
    try:
        data: Any = json.loads(text) if "json" in content_type else yaml.safe_load(text)
    except (ValueError, RecursionError) as e:
        raise ApiError(422, f"task: not valid JSON: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ApiError(422, f"task: not valid YAML: {where}{getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise ApiError(422, f"task: expected a mapping of fields, got {type(data).__name__}")
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as e:
        msg = describe(e, "task")
        raise ApiError(422, msg.replace("\n", "; "), _fields(msg)) from None
    except (ValueError, TypeError, RecursionError) as e:
        raise ApiError(422, f"task: {e}") from None


def create_app(store: RecordStore, dispatch: Dispatch | None, token: Callable[[], str | None],
               max_body: int = 1 << 20, title: str = "Otus") -> FastAPI:
    app = FastAPI(title=f"{title} API", version="1", openapi_url="/api/v1/openapi.json", docs_url=None,
                  redoc_url=None, description="Tasks, daemon status, recent calls and a live record stream.")
    hub = StreamHub(store)
    bearer = HTTPBearer(auto_error=False, description="the daemon's token (otus.http.token_file or token_env)")

    def call(payload: dict) -> Any:
        if dispatch is None:
            raise ApiError(405, "read-only console: tasks are managed on each agent")
        reply = dispatch(json.dumps(payload).encode())
        if not reply.get("ok"):
            err = str(reply.get("error", "request failed"))
            raise ApiError(_status_of(err), err)
        return reply["result"]

    def authorised(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if dispatch is None:
            raise ApiError(405, "read-only console: tasks are managed on each agent")
        want = token()
        if not want:
            raise ApiError(403, "mutations are disabled: no token configured (otus.http.token_file or the "
                                "environment variable otus.http.token_env names)")
        if cred is None or not hmac.compare_digest(cred.credentials.encode(), want.encode()):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        body: dict = {"error": e.message}
        if e.fields is not None:
            body["fields"] = e.fields
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse(body, status_code=e.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        msg = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
        return JSONResponse({"error": msg}, status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(x) for x in err.get("loc", ())), "message": str(err.get("msg", ""))}
                  for err in e.errors()]
        text = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse({"error": f"bad request: {text}", "fields": fields}, status_code=422)

    @app.exception_handler(Exception)
    async def _crash(_: Request, e: Exception) -> JSONResponse:
        log.exception("HTTP request failed")
        return JSONResponse({"error": f"internal error: {type(e).__name__}"}, status_code=500)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable) -> Response:
        resp = await call_next(request)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    # ------------------------------------------------------------------ the page
    def static(name: str) -> Response:
        data = resources.files("otus_agent.web").joinpath("static", name).read_bytes()
        return Response(data, media_type=_TYPES[name.rsplit(".", 1)[1]])

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return static("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in STATIC:
            raise ApiError(404, "no such file")
        return static(name)

    # ------------------------------------------------------------------ daemon
    @app.get("/api/v1/status", summary="the daemon's status (as `otus status`)")
    def status() -> Any:
        return call({"cmd": "status"}) if dispatch is not None else {"read_only": True, "console": store.stats()}

    @app.get("/api/v1/stats", summary="the daemon's, every task's and the interfaces' counters",
             response_model=StatsReport,
             description="`tasks` is `otus stats`; `interfaces` the kernel counters of the interfaces the running "
                         "tasks capture on (all with `all_interfaces`, or when a task uses 'any'), with rates since "
                         "the previous ask.")
    def stats(all_interfaces: bool = Query(False, description="every interface of the host")) -> StatsReport:
        if dispatch is None:
            return StatsReport(daemon=DaemonCounters.model_validate({"read_only": True}), store=store.stats(), tasks={},
                               interfaces={})
        ifs = call({"cmd": "interfaces", "query": {"all": all_interfaces}})
        daemon = call({"cmd": "status"})
        return StatsReport(daemon=DaemonCounters.model_validate(daemon), store={**store.stats(), "stream": hub.stats()},
                           tasks=call({"cmd": "stats"}), interfaces=ifs.get("interfaces", {}),
                           interfaces_skipped=ifs.get("skipped", 0))

    @app.get("/api/v1/connections", summary="live connections of the flow tables (parser flow), filtered and paged",
             response_model=ConnectionsPage,
             description="Every running task with the flow parser (or `task`), each capture process asked at once. "
                         "Filters combine; `state` matches TCP flows only. Oldest first; `offset`/`limit` page.")
    def connections(task: str | None = Query(None, min_length=1, max_length=63),
                    proto: FlowProto | None = Query(None), ip: str | None = Query(None, max_length=45,
                                                                                  description="either side"),
                    port: int | None = Query(None, ge=0, le=65535, description="either side"),
                    state: TcpState | None = Query(None, description="TCP state as the observer sees it"),
                    offset: int = Query(0, ge=0, le=100_000), limit: int = Query(100, ge=1, le=1000)) -> Any:
        q = {"proto": proto, "ip": ip, "port": port, "state": state, "offset": offset, "limit": limit}
        return call({"cmd": "flow.connections", "id": task, "query": q})

    @app.get("/api/v1/icmp", summary="ICMP type/code counts and the last ICMP errors, joined to their flows",
             response_model=IcmpReport)
    def icmp_report(task: str | None = Query(None, min_length=1, max_length=63),
                    limit: int = Query(100, ge=1, le=100, description="errors listed, newest first")) -> Any:
        return call({"cmd": "flow.icmp", "id": task, "query": {"limit": limit}})

    @app.get("/api/v1/store", summary="the console's record store: size, limits, evictions")
    def store_stats() -> dict:
        return {**store.stats(), "stream": hub.stats()}

    @app.get("/api/v1/metrics", summary="the console's counters, Prometheus text format",
             response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        lines = []
        for name, kind, text, value in store.metrics():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    # ------------------------------------------------------------------ tasks
    @app.get("/api/v1/tasks", summary="list tasks (as `otus task list`)")
    def tasks() -> Any:
        return call({"cmd": "task.list"}) if dispatch is not None else []

    body_doc = {"requestBody": {"required": True, "content": {
        "application/yaml": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object", "description": "a task (docs/reference.md)"}}}}}

    @app.post("/api/v1/tasks/validate", summary="check a task (YAML or JSON) without creating it",
              openapi_extra=body_doc)
    async def validate(request: Request) -> dict:
        spec = parse_task(await request.body(), request.headers.get("content-type", ""))
        return {"valid": True, "task": spec.model_dump(mode="json")}

    @app.post("/api/v1/tasks", status_code=201, summary="create a task (as `otus task create -f`)",
              openapi_extra=body_doc, dependencies=[Depends(authorised)])
    async def create(request: Request) -> Any:
        spec = parse_task(await request.body(), request.headers.get("content-type", ""))
        from starlette.concurrency import run_in_threadpool
        return await run_in_threadpool(call, {"cmd": "task.create", "spec": spec.model_dump(mode="json")})

    @app.get("/api/v1/tasks/{task_id}", summary="one task in detail (as `otus task status`)")
    def task(task_id: str) -> Any:
        return call({"cmd": "task.status", "id": _task_id(task_id)})

    @app.delete("/api/v1/tasks/{task_id}", summary="stop and remove a task (as `otus task delete`)",
                dependencies=[Depends(authorised)])
    def delete(task_id: str) -> Any:
        return call({"cmd": "task.delete", "id": _task_id(task_id)})

    # ------------------------------------------------------------------ calls
    @app.get("/api/v1/calls", summary="recent calls, newest first")
    def calls(call_id: str | None = Query(None, max_length=1024, description="substring of the Call-ID"),
              from_user: str | None = Query(None, max_length=256), to_user: str | None = Query(None, max_length=256),
              since: float | None = Query(None, description="last activity at or after (Unix seconds)"),
              until: float | None = Query(None, description="first message at or before (Unix seconds)"),
              status: str | None = Query(None, max_length=32, description="486, 4xx, or a state (answered)"),
              q: str | None = Query(None, max_length=256, description="substring of Call-ID, from, to or state"),
              limit: int = Query(200, ge=1, le=5000)) -> list[dict]:
        return store.query(call_id, from_user, to_user, since, until, status, q, limit)

    @app.get("/api/v1/messages", summary="one call and its messages in capture order")
    def messages(call_id: str = Query(..., min_length=1, max_length=1024)) -> dict:
        c, msgs = store.call(call_id), store.messages(call_id)
        if c is None or msgs is None:
            raise ApiError(404, "no such call in the console's store (it keeps the last calls only)")
        return {"call": c, "messages": msgs}

    @app.get("/api/v1/stream", summary="new records and call updates, as Server-Sent Events",
             response_class=StreamingResponse,
             description="events: `record` (a record as JSON), `call` (a call's summary), `gap` (records missed: "
                         "the reader was too slow). `Last-Event-ID` resumes.")
    async def stream(request: Request, kinds: str = Query("record,call", max_length=64)) -> StreamingResponse:
        want = {k.strip() for k in kinds.split(",")}
        if not want <= {"record", "call"}:
            raise ApiError(422, "kinds: a comma-separated list of record, call")
        if hub.full():
            raise ApiError(429, f"too many live streams open (limit {hub.max_clients})")
        last = request.headers.get("last-event-id", "")
        gen = hub.open(request, int(last) if last.isdigit() else None, want)
        return StreamingResponse(gen, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    app.add_middleware(BodyLimit, max_body=max_body)
    return app


def _task_id(v: str) -> str:
    if not v or len(v) > 63:
        raise ApiError(422, "task id: 1 to 63 characters")
    return v
