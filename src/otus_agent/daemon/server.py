"""`otus daemon`: the long-lived agent -- tasks, control socket, metrics, logs.

SIGTERM/SIGINT drain every task (their counters and records flushed) and
exit; SIGHUP (or `otus reload`) re-reads the configuration file and applies
what can change at run time (log level and format); tasks persist in the
state directory and come back on the next start.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from otus_agent import __version__
from otus_agent.daemon.manager import TaskManager
from otus_agent.daemon.uds import ControlServer
from otus_agent.observability import logs, metrics
from otus_spec import AgentConfig, SpecError, load_config

log = logging.getLogger("otus.daemon")


class Daemon:
    def __init__(self, config_path: str | None, config: AgentConfig):
        self.config_path = config_path
        self.config = config
        self.started = time.time()
        self.stopping = threading.Event()
        o = config.otus
        self.loki = logs.setup(o.log.level, o.log.format, self._loki_endpoint(o))
        try:
            os.makedirs(o.state_dir, mode=0o750, exist_ok=True)
        except OSError as e:
            raise SpecError(f"state directory {o.state_dir}: {e.strerror}") from None
        self.store = self.tap = self.http = None
        self._ifstats = None
        self._if_lock = threading.Lock()
        tap_path = os.path.join(o.state_dir, "tap.sock") if o.http.enabled else None
        self.manager = TaskManager(o.state_dir, o.kafka.brokers, tap_path)
        self.metrics_server = None
        if o.metrics.enabled:
            try:
                self.metrics_server = metrics.serve(o.metrics.address(), self.manager.snapshot)
            except OSError as e:
                raise SpecError(f"metrics listen {o.metrics.listen}: {e.strerror}") from None
        try:
            self.control = ControlServer(o.control.socket, o.control.mode, o.control.group, self.manager,
                                         self.status, self.stats, self.reload, self.stop, self.interfaces)
        except OSError as e:
            if self.metrics_server is not None:
                self.metrics_server.shutdown()
            raise SpecError(f"control socket {o.control.socket}: {e}") from None

        if o.http.enabled:
            self._start_http(o, tap_path)

        self.commands = None
        cc = o.command_channel
        if cc.enabled:
            token = os.environ.get(cc.token_env, "")
            brokers = cc.kafka.brokers or o.kafka.brokers
            if not token:
                log.error(f"command channel disabled: ${cc.token_env} is empty (every command must carry it)")
            elif not brokers:
                log.error("command channel disabled: no Kafka brokers configured")
            else:
                from otus_agent.daemon.commands import CommandChannel
                self.commands = CommandChannel(brokers, cc.kafka.topic, cc.kafka.reply_topic, token,
                                               self.control.dispatch)

    def _start_http(self, o, tap_path: str) -> None:
        """The HTTP API and console (web/), fed by the record tap (daemon/tap.py)."""
        h = o.http
        try:
            from otus_agent.web.server import HttpServer, token_source
            from otus_agent.web.store import RecordStore
        except ImportError as e:
            raise SpecError(f"otus.http.enabled needs the web extra (pip install 'otus[web]'): {e}") from None
        from otus_agent.daemon.tap import TapReceiver
        self.store = RecordStore(h.store.calls, h.store.max_bytes, h.store.messages_per_call)
        try:
            self.http = HttpServer(h.address(), self.store, self.control.dispatch,
                                   token_source(h.token_file, h.token_env), h.max_body_bytes)
            self.tap = TapReceiver(tap_path, self.store.add_line)
        except OSError as e:
            self.control.server.server_close()   # not serving yet: close() would wait for serve_forever
            try:
                os.unlink(o.control.socket)
            except FileNotFoundError:
                pass
            if self.metrics_server is not None:
                self.metrics_server.shutdown()
            raise SpecError(f"http listen {h.listen}: {e.strerror or e}") from None

    @staticmethod
    def _loki_endpoint(o) -> str | None:
        lk = o.log.outputs.loki
        return lk.endpoint if lk.enabled else None

    def status(self) -> dict:
        tasks = self.manager.list()
        return {"version": __version__, "pid": os.getpid(), "host": socket.gethostname(),
                "uptime_s": round(time.time() - self.started, 1), "socket": self.config.otus.control.socket,
                "metrics": self.config.otus.metrics.listen if self.config.otus.metrics.enabled else None,
                "tasks": len(tasks), "running": sum(1 for t in tasks if t["status"] == "running"),
                "command_channel": self.commands.stats() if self.commands is not None else None,
                "http": f"{self.config.otus.http.address()[0]}:{self.http.port}" if self.http is not None else None,
                "tap": self.tap.stats() if self.tap is not None else None,
                "loki": self.loki.stats() if self.loki is not None else None}

    def stats(self) -> dict:
        return {spec.id: {"status": st, **s} for spec, st, s in self.manager.snapshot()}

    def interfaces(self, all: bool = False) -> dict:
        """Kernel counters and rates (since the previous ask) of the tasks' interfaces, or of every one."""
        from otus_agent.observability.ifstats import InterfaceStats
        names: set[str] = set()
        for spec, st, _ in self.manager.snapshot():
            if st in ("starting", "running"):
                names.update(spec.interfaces)
        want = None if all or "any" in names else sorted(names)
        with self._if_lock:
            if self._ifstats is None:
                self._ifstats = InterfaceStats([])      # one reader: the rates are kept between asks
            self._ifstats.names = want
            polled = self._ifstats.poll() if want is None or want else {}
            skipped = self._ifstats.skipped
        return {"interfaces": polled, "skipped": skipped}

    def reload(self) -> dict:
        if self.config_path is None:
            return {"reloaded": False, "reason": "no configuration file (defaults in use)"}
        try:
            new = load_config(self.config_path)
        except SpecError as e:
            log.error(f"reload refused: {e}")
            raise
        changed = []
        if new.otus.log != self.config.otus.log:
            self.loki = logs.setup(new.otus.log.level, new.otus.log.format, self._loki_endpoint(new.otus))
            changed.append("log")
        fixed = [k for k in ("control", "metrics", "state_dir", "http")
                 if getattr(new.otus, k) != getattr(self.config.otus, k)]
        self.config = new
        log.info("configuration reloaded")
        return {"reloaded": True, "applied": changed, "needs_restart": fixed}

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> int:
        self.control.start()
        if self.commands is not None:
            self.commands.start()
        if self.http is not None and self.tap is not None:
            self.tap.start()
            self.http.start()
        restored = self.manager.restore()
        log.info(f"otus daemon {__version__} started; control socket {self.config.otus.control.socket}; "
                 f"http: {self.config.otus.http.listen if self.http is not None else 'off'}; "
                 f"restored tasks: {restored}")

        def on_term(*_: object) -> None:
            self.stopping.set()

        def on_hup(*_: object) -> None:
            try:
                self.reload()
            except SpecError:
                pass
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        while not self.stopping.wait(0.5):
            pass
        log.info("stopping: draining tasks")
        self.manager.shutdown()
        if self.commands is not None:
            self.commands.close()
        if self.http is not None and self.tap is not None:
            self.http.close()
            self.tap.close()
        self.control.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        log.info("stopped")
        if self.loki is not None:
            self.loki.close()
        return 0
