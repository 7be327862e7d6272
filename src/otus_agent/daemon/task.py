"""One task: a TaskSpec turned into a running capture pipeline in a process of its own.

``configs`` turns the spec into the live capture's settings; each capture process then builds its
engine from them (``engine.live`` -> ``engine.pipeline.build_engine``), as ``otus run`` does.

A task process captures, parses and reports; it sends the manager its
counters every second and a final summary, or an error.  Because each task is
a separate process, a task that fails (bad interface, crash) cannot take the
daemon or the other tasks down.
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Callable

from otus_agent.capture import bpf
from otus_agent.capture.afpacket import CaptureError, RingConfig, compile_for
from otus_agent.engine.live import LiveConfig, run_live
from otus_agent.engine.parsers import capture_clauses
from otus_agent.reassembly.datagrams import DatagramConfig
from otus_agent.reporters.sink import HepSettings, KafkaSettings
from otus_agent.sip.framing import SipConfig
from otus_spec import TaskSpec


def configs(spec: TaskSpec, kafka_defaults: list[str] | None = None,
            state_dir: str = "/var/lib/otus") -> tuple[LiveConfig, DatagramConfig, SipConfig]:
    s = spec.sip
    sip_cfg = SipConfig.from_options(s, extra={"task": spec.id, "agent": socket.gethostname()})
    parsers = tuple(spec.parsers)
    settings = parser_settings(spec)
    expr = spec.bpf_filter if spec.bpf_filter is not None else bpf.default_filter(
        tuple(s.ports), capture_clauses(parsers, settings))
    live = LiveConfig(interfaces=list(spec.interfaces), filter_expr=expr or None,
                      ring=RingConfig(spec.ring.block_size, spec.ring.blocks, spec.ring.block_timeout_ms, spec.snaplen,
                                      spec.promiscuous),
                      workers=spec.workers, duration_s=spec.limits.duration_s, max_packets=spec.limits.max_packets,
                      task=spec.id, parsers=parsers, settings=settings)
    for r in spec.reporters:
        if r.type == "kafka":
            conf = r.kafka_auth().client_conf()      # options and sasl.password: otus_spec.KafkaAuth
            live.kafka = KafkaSettings(r.brokers or list(kafka_defaults or []), r.topic,
                                       os.path.join(state_dir, "spool"), r.spool_max_bytes, r.spool_full,
                                       conf=conf or None)
        elif r.type == "hep":
            live.hep = HepSettings(r.address, r.proto, r.node_id, socket.gethostname())
    live.lines = any(r.type in ("console", "file") for r in spec.reporters)
    line_outs = [r for r in spec.reporters if r.type in ("console", "file")]
    if spec.workers > 1 and len(line_outs) == 1 and line_outs[0].type == "file":
        live.output_path = line_outs[0].path   # workers append to it themselves
    return live, DatagramConfig(), sip_cfg


def view_dir(state_dir: str, task_id: str) -> str:
    """Where a task's capture processes serve their flow table (flows/view.py; read by daemon/views.py)."""
    return os.path.join(state_dir, "views", task_id)


def parser_settings(spec: TaskSpec) -> dict:
    """The agent-side settings of the task's parsers other than sip (only those it runs)."""
    out: dict = {}
    if "rtp" in spec.parsers:
        from otus_agent.media.stage import MediaConfig
        out["rtp"] = MediaConfig(**spec.media.model_dump(exclude={"enabled"}))
    if "flow" in spec.parsers:
        from otus_agent.flows.config import FlowConfig
        out["flow"] = FlowConfig(**spec.flow.model_dump())
    if "dns" in spec.parsers:
        from otus_agent.dns.config import DnsConfig
        out["dns"] = DnsConfig(**spec.dns.model_dump())
    if "detect" in spec.parsers:
        out["detect"] = spec.detect   # otus_spec.DetectOptions is the detectors' own config (detect/config.py)
    return out


def check_filter(spec: TaskSpec) -> None:
    """The task's filter (given or default) compiles for each interface's link type; CaptureError with
    libpcap's message if not."""
    live, _, _ = configs(spec)
    if live.filter_expr:
        for name in spec.interfaces:
            compile_for(live.filter_expr, name)


def preflight(spec: TaskSpec) -> None:
    """What can be checked before starting: interfaces exist, the filter compiles."""
    for name in spec.interfaces:
        if name != "any":
            try:
                socket.if_nametoindex(name)
            except OSError:
                raise CaptureError(f"no such interface: {name}") from None
    check_filter(spec)


class Reporters:
    """Console and file outputs of one task; each write is one whole batch of lines."""

    def __init__(self, spec: TaskSpec):
        self.outs = []
        for r in spec.reporters:
            if r.type == "console":
                self.outs.append(sys.stdout.buffer)
            elif r.type == "file":
                self.outs.append(open(r.path, "ab"))

    def write(self, data: bytes) -> None:
        for o in self.outs:
            o.write(data)
            o.flush()

    def close(self) -> None:
        for o in self.outs:
            if o is not sys.stdout.buffer:
                o.close()


def task_main(conn, spec_json: str, kafka_defaults: list[str] | None = None, state_dir: str = "/var/lib/otus",
              tap_path: str | None = None) -> None:
    """Entry point of a task process (forked by the manager); ``tap_path``: also copy the records to
    the daemon's record tap (the web console), never blocking (daemon/tap.py)."""
    spec = TaskSpec.model_validate_json(spec_json)
    send: Callable[[tuple], None] = conn.send
    try:
        reporters = Reporters(spec)
    except OSError as e:
        send(("error", f"cannot open reporter output: {e}"))
        conn.close()
        return
    try:
        live, pipe_cfg, sip_cfg = configs(spec, kafka_defaults, state_dir)
        if "flow" in live.settings:       # the daemon reads the live table there (flows/view.py)
            live.settings["flow"] = live.settings["flow"].model_copy(
                update={"view_dir": view_dir(state_dir, spec.id)})
        if live.kafka is not None and not live.kafka.brokers:
            raise CaptureError("kafka reporter: no brokers (set them in the task or in the daemon's kafka.brokers)")
        write = reporters.write
        tap = None
        if tap_path is not None:
            from otus_agent.daemon.tap import TapSender
            tap = TapSender(tap_path)
            live.lines, live.output_path = True, None   # every line through this process, so the tap sees it

            def write(data: bytes) -> None:
                reporters.write(data)
                tap.write(data)
        live.on_stats = lambda st: send(("stats", st if tap is None else {**st, "tap": tap.stats()}))
        summary = run_live(live, pipe_cfg, sip_cfg, write)
        send(("done", summary if tap is None else {**summary, "tap": tap.stats()}))
    except CaptureError as e:
        send(("error", str(e)))
    except Exception as e:  # reported as the task's failure reason, never silent
        send(("error", f"{type(e).__name__}: {e}"))
    finally:
        reporters.close()
        conn.close()
        os._exit(0)
