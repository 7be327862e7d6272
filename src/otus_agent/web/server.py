"""Serve the app with uvicorn on a thread of the daemon (or of ``otus console``)."""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Callable

import uvicorn

from otus_agent.web.app import Dispatch, create_app
from otus_agent.web.store import RecordStore

log = logging.getLogger("otus.http")


def token_source(token_file: str | None, token_env: str) -> Callable[[], str | None]:
    """The bearer token, read on each mutation (a rotated file is picked up); never from a flag."""
    env = os.environ.get(token_env, "").strip() or None

    def read() -> str | None:
        if token_file is None:
            return env
        try:
            with open(token_file, encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError as e:
            log.error(f"http token file {token_file}: {e.strerror}")
            return None
    return read


class HttpServer:
    def __init__(self, address: tuple[str, int], store: RecordStore, dispatch: Dispatch | None,
                 token: Callable[[], str | None], max_body: int, title: str = "Otus"):
        host, port = address
        # bind here, so a taken port is an error at start (not a log line from a thread)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.app = create_app(store, dispatch, token, max_body, title)
        cfg = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2,
                             limit_concurrency=128, server_header=False)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="otus-http",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()
