"""The daemon's Unix control socket: who may talk to it, and what each request does."""
from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import socket
import socketserver
import struct
import threading
from typing import Callable

from otus_agent.daemon.manager import TaskError, TaskManager
from otus_agent.daemon.protocol import ProtocolError, parse_request

log = logging.getLogger("otus.control")
SO_PEERCRED = 17


def peer_allowed(conn: socket.socket, group: str | None) -> bool:
    """root, the daemon's own user, or a member of the socket's configured group."""
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, SO_PEERCRED, 12))
    if uid == 0 or uid == os.getuid():
        return True
    if group is None:
        return False
    try:
        g = grp.getgrnam(group)
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return False
    return g.gr_gid == gid or g.gr_gid in os.getgrouplist(name, gid)


class ControlServer:
    def __init__(self, path: str, mode: int, group: str | None, manager: TaskManager,
                 status: Callable[[], dict], stats: Callable[[], dict], reload: Callable[[], dict],
                 stop: Callable[[], None], interfaces: Callable[..., dict] | None = None):
        self.path, self.mode, self.group = path, mode, group
        self.manager = manager
        self.handlers: dict[str, Callable[..., dict]] = {"status": status, "stats": stats, "reload": reload,
                                                          "interfaces": interfaces or (lambda **_: {})}
        self.stop_cb = stop
        d = os.path.dirname(path) or "."
        if not os.path.isdir(d):
            raise OSError(f"control socket directory does not exist: {d}")
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale socket from a daemon that died
            else:
                probe.close()
                raise OSError(f"another daemon is already listening on {path}")
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                if not peer_allowed(self.connection, outer.group):
                    self.wfile.write(b'{"ok":false,"error":"permission denied"}\n')
                    return
                line = self.rfile.readline(1 << 20)
                self.wfile.write((json.dumps(outer.dispatch(line)) + "\n").encode())

        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self.server.daemon_threads = True
        os.chmod(path, mode)
        if group:
            try:
                os.chown(path, -1, grp.getgrnam(group).gr_gid)
            except KeyError:
                raise OSError(f"control socket group does not exist: {group}") from None
        self.thread = threading.Thread(target=self.server.serve_forever, name="otus-control", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def dispatch(self, line: bytes) -> dict:
        try:
            req, spec = parse_request(line)
            m = self.manager
            if req.cmd == "task.create":
                return {"ok": True, "result": m.create(spec)}
            if req.cmd == "task.delete":
                return {"ok": True, "result": m.delete(req.id)}
            if req.cmd == "task.status":
                return {"ok": True, "result": m.get(req.id)}
            if req.cmd == "task.list":
                return {"ok": True, "result": m.list()}
            if req.cmd == "flow.connections":
                from otus_agent.daemon import views
                return {"ok": True, "result": views.connections(m.flow_views(req.id), req.query or {})}
            if req.cmd == "flow.icmp":
                from otus_agent.daemon import views
                return {"ok": True, "result": views.icmp(m.flow_views(req.id), (req.query or {}).get("limit", 100))}
            if req.cmd == "interfaces":
                return {"ok": True, "result": self.handlers["interfaces"](**(req.query or {}))}
            if req.cmd == "stop":
                threading.Thread(target=self.stop_cb, daemon=True).start()
                return {"ok": True, "result": "stopping"}
            return {"ok": True, "result": self.handlers[req.cmd]()}
        except (ProtocolError, TaskError) as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a bug must not kill the control plane; say what happened
            log.exception("control request failed")
            return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}


def request(path: str, payload: dict, timeout: float = 30) -> dict:
    """Client side: one request, one reply; ConnectionError when no daemon listens."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except FileNotFoundError:
            raise ConnectionError(f"no daemon is running: {path} does not exist (start one with: otus daemon)") \
                from None
        except ConnectionRefusedError:
            raise ConnectionError(f"no daemon is listening on {path} (start one with: otus daemon)") from None
        except PermissionError:
            raise ConnectionError(f"permission denied on {path}: run as root or as a member of the socket's "
                                  "group") from None
        s.sendall((json.dumps(payload) + "\n").encode())
        f = s.makefile("rb")
        line = f.readline(1 << 24)
        if not line:
            raise ConnectionError(f"the daemon on {path} closed the connection without a reply")
        return json.loads(line)
    finally:
        s.close()
