"""The daemon's side of the flow views (flows/view.py): ask every capture process of a task, merge.

A task with the ``flow`` parser serves its live table on ``<state_dir>/views/<task>/<pid>.sock``, one
socket per capture process (fanout workers each have their own table).  A socket nobody listens on
(the process is gone) is removed; one that does not answer within ``TIMEOUT_S`` is counted in
``unanswered``, and the answer is what the others said.
"""
from __future__ import annotations

import glob
import os
import socket
from typing import Any

import orjson

from otus_agent.flows.view import row_order

TIMEOUT_S = 2.0
REPLY_MAX = 64 << 20    # bytes of one process's answer (ROWS_MAX rows fit well within)


def ask(view_dir: str, request: dict) -> tuple[list[dict], int]:
    """(the answers of every live view socket in ``view_dir``, how many did not answer)."""
    answers: list[dict] = []
    unanswered = 0
    for path in sorted(glob.glob(os.path.join(glob.escape(view_dir), "*.sock"))):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT_S)
        try:
            try:
                s.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                try:
                    os.unlink(path)          # its process is gone
                except FileNotFoundError:
                    pass
                continue
            s.sendall(orjson.dumps(request) + b"\n")
            buf = bytearray()
            while len(buf) <= REPLY_MAX:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
            reply = orjson.loads(bytes(buf))
            if isinstance(reply, dict) and "error" not in reply:
                answers.append(reply)
            else:
                unanswered += 1
        except (OSError, orjson.JSONDecodeError):
            unanswered += 1
        finally:
            s.close()
    return answers, unanswered


def connections(views: dict[str, str], query: dict[str, Any]) -> dict:
    """Live connections of the tasks ``views`` names (task -> view dir), filtered, oldest first, paged."""
    offset, limit = int(query.get("offset") or 0), int(query.get("limit") or 100)
    req = {"what": "connections", **{k: query.get(k) for k in ("proto", "ip", "port", "state")},
           "limit": offset + limit}
    rows: list[dict] = []
    total = unanswered = 0
    for task, d in sorted(views.items()):
        answers, missed = ask(d, req)
        unanswered += missed
        for a in answers:
            total += int(a.get("total", 0))
            rows += [{**r, "task": task} for r in a.get("connections", [])]
    rows.sort(key=lambda r: (row_order(r), r["task"]))
    return {"total": total, "offset": offset, "limit": limit, "tasks": sorted(views), "unanswered": unanswered,
            "connections": rows[offset:offset + limit]}


def _join_across(view_dir: str, errors: list[dict]) -> None:
    """Fanout workers: an ICMP error unmatched where it was captured may quote a flow another worker holds
    (PACKET_FANOUT hashes the ICMP packet apart from it); ask them all, mark those found as joined.  The
    counters (errors_joined, errors_unmatched) stay as each worker counted them."""
    from otus_agent.flows.view import LOOKUP_MAX
    lonely = [e for e in errors if not e["joined"]][:LOOKUP_MAX]
    if not lonely:
        return
    tuples = [[f["proto"], f["src_ip"], f["src_port"], f["dst_ip"], f["dst_port"]] for f in (e["flow"] for e in lonely)]
    answers, _ = ask(view_dir, {"what": "lookup", "flows": tuples})
    for a in answers:
        for e, hit in zip(lonely, a.get("found", [])):
            if hit:
                e["joined"] = True


def icmp(views: dict[str, str], limit: int = 100) -> dict:
    """ICMP type/code counts summed over the tasks' processes, and their last errors (newest first)."""
    types: dict[tuple[str, int, int, int], int] = {}
    sums = {"errors_joined": 0, "errors_unmatched": 0, "truncated": 0}
    errors: list[dict] = []
    unanswered = 0
    for task, d in sorted(views.items()):
        answers, missed = ask(d, {"what": "icmp", "limit": limit})
        unanswered += missed
        mine: list[dict] = []
        for a in answers:
            for t in a.get("types", []):
                k = (task, t["version"], t["type"], t["code"])
                types[k] = types.get(k, 0) + t["packets"]
            for name in sums:
                sums[name] += int(a.get(name, 0))
            mine += [{**e, "task": task} for e in a.get("errors", [])]
        if len(answers) > 1:
            _join_across(d, mine)
        errors += mine
    errors.sort(key=lambda e: e["ts"], reverse=True)
    return {"tasks": sorted(views), "unanswered": unanswered, **sums,
            "types": [{"task": k[0], "version": k[1], "type": k[2], "code": k[3], "packets": n}
                      for k, n in sorted(types.items())],
            "errors": errors[:limit]}
