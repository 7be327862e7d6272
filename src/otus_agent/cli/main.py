"""`otus` command line.  Errors are one line on stderr and a non-zero exit."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Sequence, TextIO

from otus_agent import __version__

if TYPE_CHECKING:
    from otus_agent.reassembly.datagrams import DatagramConfig
    from otus_agent.sip.framing import SipConfig

# Start-up (issue 15): a command imports what it runs, inside the function that runs it; `otus run
# --pcap` never loads pydantic, the task contract, Kafka, Kubernetes or Prometheus.
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return v


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return v


def _add_agent_parser(sub) -> None:
    """`otus agent` (run by ``otus_agent.kube.main``): defined here, so that parsing a command line loads no
    Kubernetes, daemon or metrics module."""
    a = sub.add_parser("agent", help="run the task from a file and report to Kubernetes (used by the operator)",
                       description="Run the task in --task-file, restart it when the file changes, and patch this "
                                   "agent's entry in the CaptureTask's status.  The CaptureTask comes from "
                                   "$OTUS_TASK_NAMESPACE/$OTUS_TASK; the agent's name from $OTUS_AGENT_NAME "
                                   "(default: the host name).")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--task-file", metavar="FILE", help="task file (the operator's ConfigMap, mounted)")
    src.add_argument("--task-configmap", metavar="NAMESPACE/NAME",
                     help="read the task from this ConfigMap through the API (ephemeral containers)")
    a.add_argument("--state-dir", default="/var/lib/otus", metavar="DIR", help="spool and state directory")
    a.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster service account)")
    a.add_argument("--status-interval", type=float, default=10.0, metavar="SECONDS",
                   help="at most one status patch per interval (sooner on a state change)")
    a.add_argument("--poll-interval", type=float, default=2.0, metavar="SECONDS", help="task file check interval")
    a.add_argument("--task-check-interval", type=float, default=5.0, metavar="SECONDS",
                   help="with no status patch for this long, GET the CaptureTask to see it still exists; while "
                        "it is gone (404, 403, being deleted) capture stops and rechecks back off from this")
    a.add_argument("--metrics-listen", default=":9091", metavar="[HOST]:PORT", help="Prometheus endpoint ('' = off)")
    a.add_argument("--log-format", choices=("json", "text"), default="json")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``command`` (the one being run, when known) skips importing the modules
    that only other commands' options live in (``otus console`` pulls logging, threading and uuid)."""
    p = argparse.ArgumentParser(prog="otus", description="Otus: packet capture and SIP analysis for VoIP.")
    p.add_argument("--version", action="version", version=f"otus {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("run", help="turn live traffic or a capture file into SIP records",
                       description="Capture live (AF_PACKET ring, kernel BPF filter, fanout workers) or read a "
                                   "pcap/pcapng file through the agent pipeline (L2-L4 decoding, IPv4/IPv6 and "
                                   "TCP reassembly, SIP parsing) and print one JSON record per SIP message on "
                                   "stdout; a JSON summary goes to stderr at exit. SIGINT/SIGTERM stop a live "
                                   "capture cleanly.")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--interface", "-i", action="append", metavar="IF",
                     help="capture live on this interface ('any' for all; repeatable); needs CAP_NET_RAW")
    src.add_argument("--pcap", metavar="FILE", help="pcap or pcapng file to read")
    src.add_argument("--demo", action="store_true",
                     help="generate a built-in SIP call workload (fragments, TCP, VLAN, IPv6) and decode it")
    r.add_argument("--demo-calls", type=_positive_int, default=200, metavar="N",
                   help="calls in the demo workload (default 200)")
    r.add_argument("--filter", "-f", metavar="EXPR", dest="bpf_filter",
                   help="tcpdump-syntax kernel filter for live capture (default: the SIP ports over UDP/TCP/SCTP "
                        "plus IP fragments; '' captures everything)")
    r.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="live capture processes sharing the traffic by flow (PACKET_FANOUT; default 1)")
    r.add_argument("--duration", type=_positive_float, metavar="SECONDS", help="stop a live capture after this long")
    r.add_argument("--max-packets", type=_positive_int, metavar="N",
                   help="stop a live capture after about N packets (per worker)")
    r.add_argument("--snaplen", type=_positive_int, default=65535, metavar="BYTES",
                   help="bytes kept per captured packet (default 65535)")
    r.add_argument("--promisc", action="store_true", help="put the interfaces in promiscuous mode while capturing")
    r.add_argument("--ring-block-size", type=_positive_int, default=1 << 20, metavar="BYTES",
                   help="TPACKET_V3 block size, a power of two (default 1 MiB)")
    r.add_argument("--ring-blocks", type=_positive_int, default=32, metavar="N",
                   help="TPACKET_V3 blocks per ring (default 32)")
    r.add_argument("--block-timeout", type=_positive_int, default=50, metavar="MS",
                   help="hand a partly filled block over after this many ms (default 50)")
    r.add_argument("--write-pcap", metavar="PATH",
                   help="also write captured packets to rotating pcap files PATH_NNNNN.pcap")
    r.add_argument("--pcap-max-bytes", type=_positive_int, default=100 << 20, metavar="BYTES",
                   help="size of one --write-pcap file (default 100 MiB)")
    r.add_argument("--pcap-max-files", type=_positive_int, default=10, metavar="N",
                   help="--write-pcap files kept; the oldest is deleted (default 10)")
    r.add_argument("--output", metavar="FILE", help="write the JSON lines to FILE instead of stdout")
    r.add_argument("--kafka-brokers", metavar="HOST:PORT[,...]",
                   help="send records to Kafka (key = Call-ID; idempotent, acks=all, lz4) instead of stdout")
    r.add_argument("--kafka-topic", default="otus-sip", metavar="TOPIC",
                   help="Kafka topic; '{task}' is replaced by the task name (default otus-sip)")
    r.add_argument("--console", action="store_true", help="with --kafka-brokers, also print the records")
    r.add_argument("--spool-dir", metavar="DIR",
                   help="disk spool for records not yet confirmed by Kafka (default /var/lib/otus/spool as root, "
                        "else ~/.local/state/otus/spool); what it holds is sent at the next start")
    r.add_argument("--spool-max-bytes", type=_positive_int, default=1 << 30, metavar="BYTES",
                   help="spool size limit (default 1 GiB)")
    r.add_argument("--spool-full", choices=("drop-newest", "block"), default="drop-newest",
                   help="when the spool is full: drop new records (counted) or block the capture (default drop-newest)")
    r.add_argument("--kafka-option", action="append", metavar="KEY=VALUE",
                   help="librdkafka setting passed as is, e.g. security.protocol=SASL_SSL (repeatable); the SASL "
                        "password comes from $OTUS_KAFKA_SASL_PASSWORD, never from the command line")
    r.add_argument("--hep", metavar="HOST:PORT", help="also send every SIP message as HEP v3 to Homer/heplify-server")
    r.add_argument("--hep-proto", choices=("udp", "tcp"), default="udp", help="HEP transport (default udp)")
    r.add_argument("--hep-node-id", type=_positive_int, default=2001, metavar="N", help="HEP capture agent id")
    r.add_argument("--hep-node-name", metavar="NAME", help="HEP node name (default: the host name)")
    r.add_argument("--kafka-flush-timeout", type=_positive_float, default=30.0, metavar="SECONDS",
                   help="at exit, wait this long for Kafka to confirm everything (the rest stays spooled)")
    r.add_argument("--parsers", default="sip", metavar="LIST",
                   help="application parsers, comma-separated: sip, rtp (media quality; needs sip), flow (flow "
                        "table), dns, detect (alerts from sip records and flow events) (default sip); the default "
                        "kernel filter widens to what they need")
    r.add_argument("--media-interim", type=_positive_float, default=60.0, metavar="SECONDS",
                   help="with rtp: an interim media record for running streams this often (default 60)")
    r.add_argument("--media-heuristic", action="store_true",
                   help="with rtp: also follow RTP streams no SDP announced (looks for RTP-shaped UDP)")
    r.add_argument("--datagrams", action="store_true",
                   help="print one JSON line per L4 datagram (UDP/TCP/SCTP payload) instead of SIP records")
    r.add_argument("--task", metavar="FILE",
                   help="take the SIP settings (sip: ports, heuristic, correlation headers, call summaries, the "
                        "match selector, ...) and the parsers from this task file (see docs/selectors.md); the "
                        "SIP flags below are then refused, --calls adds call summaries")
    r.add_argument("--calls", action="store_true",
                   help="also emit a call summary record (type=call) when each call ends")
    r.add_argument("--no-error-records", action="store_true",
                   help="count malformed SIP messages but do not emit records for them")
    r.add_argument("--sip-port", type=_port, action="append", metavar="PORT",
                   help="port always parsed as SIP (repeatable; default 5060, 5061, 5080)")
    r.add_argument("--no-heuristic", action="store_true",
                   help="parse only the --sip-port ports (default: also any payload that looks like SIP)")
    r.add_argument("--correlation-header", action="append", metavar="SPEC",
                   help="header giving correlation_id, e.g. X-CID or 'P-Charging-Vector;icid-value' "
                        "(repeatable, first found wins; default both of those)")
    r.add_argument("--discard-method", action="append", metavar="METHOD",
                   help="count but do not report messages of this method (e.g. OPTIONS; repeatable)")
    r.add_argument("--no-verify-checksum", action="store_true",
                   help="accept IPv4 headers with a bad checksum (default: count and drop them)")
    r.add_argument("--no-vxlan", action="store_true", help="do not decode UDP port 4789 as VXLAN")
    r.add_argument("--frag-timeout", type=_positive_float, default=30.0, metavar="SECONDS",
                   help="drop an incomplete fragmented datagram after this capture time (default 30)")
    r.add_argument("--frag-max-datagrams", type=_positive_int, default=8192, metavar="N",
                   help="fragmented datagrams in flight before the oldest is evicted (default 8192)")
    r.add_argument("--frag-max-bytes", type=_positive_int, default=32 << 20, metavar="BYTES",
                   help="fragment bytes in flight before the oldest datagram is evicted (default 32 MiB)")
    r.add_argument("--frag-max-fragments", type=_positive_int, default=1024, metavar="N",
                   help="fragments per datagram before it is dropped (default 1024)")
    if command in (None, "console"):
        from otus_agent.web.console import add_parser as add_console_parser
        add_console_parser(sub)   # `otus console` (issue 17): web/console.py
    else:
        sub.add_parser("console", help="the web console")   # parsed only when it is the command: see above
    from otus_agent.cli.filter import add_parser as add_filter_parser
    add_filter_parser(sub)    # `otus filter suggest` (issue 19): cli/filter.py
    d = sub.add_parser("daemon", help="run the agent daemon (tasks, control socket, metrics)",
                       description="Run Otus as a long-lived daemon: tasks from the control socket are "
                                   "captured, persisted in the state directory and restored on restart.")
    d.add_argument("--config", "-c", metavar="FILE", help="YAML configuration (default: built-in defaults)")
    _add_agent_parser(sub)
    v = sub.add_parser("validate", help="check a task file offline (no daemon needed)")
    v.add_argument("-f", "--file", required=True, metavar="FILE", help="task file (YAML or JSON)")
    v.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    t = sub.add_parser("task", help="create, list, inspect and delete tasks on the running daemon")
    tsub = t.add_subparsers(dest="task_cmd", metavar="ACTION", required=True)
    tc = tsub.add_parser("create", help="create a task from a file")
    tc.add_argument("-f", "--file", required=True, metavar="FILE", help="task file (YAML or JSON)")
    tsub.add_parser("list", help="list tasks")
    ts = tsub.add_parser("status", help="one task in detail")
    ts.add_argument("id")
    td = tsub.add_parser("delete", help="stop and remove a task")
    td.add_argument("id")
    for name, text in (("status", "the daemon's status"), ("stats", "every task's counters"),
                       ("reload", "re-read the daemon's configuration"), ("stop", "stop the daemon")):
        sub.add_parser(name, help=text)
    for sp in [*tsub.choices.values()] + [sub.choices[n] for n in ("status", "stats", "reload", "stop")]:
        sp.add_argument("--socket", "-s", metavar="PATH", default=None,
                        help="daemon control socket (default /var/run/otus.sock, or $OTUS_SOCKET)")
        sp.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    return p


def _run(args: argparse.Namespace, stdout, stderr: TextIO) -> int:
    from otus_agent.capture.pcapfile import CaptureFileError
    from otus_agent.reassembly.datagrams import DatagramConfig
    from otus_agent.sip.framing import DEFAULT_PORTS, SipConfig
    from otus_agent.sip.records import DEFAULT_CORRELATION
    if args.frag_max_bytes < 65535:
        raise UserError("--frag-max-bytes must be at least 65535 (one whole datagram)")
    if args.frag_max_fragments < 2:
        raise UserError("--frag-max-fragments must be at least 2")
    cfg = DatagramConfig(verify_ipv4_checksum=not args.no_verify_checksum, decode_vxlan=not args.no_vxlan,
                         frag_timeout_s=args.frag_timeout, frag_max_datagrams=args.frag_max_datagrams,
                         frag_max_bytes=args.frag_max_bytes, frag_max_fragments=args.frag_max_fragments)
    if args.task:
        sip_cfg = _task_sip(args)
    else:
        sip_cfg = SipConfig(
            ports=tuple(args.sip_port) if args.sip_port else DEFAULT_PORTS,
            heuristic=not args.no_heuristic,
            correlation_headers=tuple(args.correlation_header) if args.correlation_header else DEFAULT_CORRELATION,
            error_records=not args.no_error_records,
            discard_methods=tuple(m.upper() for m in args.discard_method or ()),
            call_summaries=args.calls)
    args.parser_names, args.parser_settings = _parsers(args)
    if not args.interface:
        live_only = [opt for opt, used in (("--filter", args.bpf_filter is not None), ("--workers", args.workers != 1),
                                           ("--duration", args.duration), ("--max-packets", args.max_packets),
                                           ("--promisc", args.promisc), ("--write-pcap", args.write_pcap)) if used]
        if live_only:
            raise UserError(f"{', '.join(live_only)} need --interface (live capture)")
    out_f = None
    if args.output:
        try:
            out_f = open(args.output, "wb")
        except OSError as e:
            raise UserError(f"{args.output}: cannot write: {e.strerror}") from None
    target = out_f or stdout.buffer

    def write(data: bytes) -> None:
        target.write(data)
        if args.interface:
            target.flush()  # live: records leave as they come
    try:
        if args.interface:
            summary = _run_live(args, cfg, sip_cfg, write)
        else:
            summary = _run_file(args, cfg, sip_cfg, write)
        target.flush()
    finally:
        if out_f is not None:
            out_f.close()
    stderr.write(json.dumps(summary, separators=(",", ":")) + "\n")
    if summary.get("error"):
        raise CaptureFileError(summary["error"])
    return EXIT_OK


def _task_sip(args: argparse.Namespace):
    """``--task``: the task file's SIP section as the stage's settings, its parsers as ``--parsers``."""
    from otus_agent.sip.framing import SipConfig
    from otus_spec import load_task
    flags = [opt for opt, used in (("--sip-port", args.sip_port), ("--no-heuristic", args.no_heuristic),
                                   ("--correlation-header", args.correlation_header),
                                   ("--no-error-records", args.no_error_records),
                                   ("--discard-method", args.discard_method),
                                   ("--parsers", args.parsers != "sip")) if used]
    if flags:
        raise UserError(f"{', '.join(flags)}: the task file sets these (its sip section and parsers)")
    spec = load_task(args.task)
    cfg = SipConfig.from_options(spec.sip)
    cfg.call_summaries = cfg.call_summaries or args.calls
    args.parsers = ",".join(spec.parsers)
    if args.bpf_filter is None and args.interface and spec.bpf_filter is not None:
        args.bpf_filter = spec.bpf_filter
    return cfg


def _parsers(args: argparse.Namespace) -> tuple[tuple[str, ...], dict]:
    """``--parsers`` checked against the registry, and the settings of the parsers it names."""
    from otus_agent.engine.parsers import PARSERS
    names = tuple(dict.fromkeys(n.strip().lower() for n in args.parsers.split(",") if n.strip()))
    unknown = [n for n in names if n not in PARSERS or n == "datagrams"]
    if unknown or not names:
        known = ", ".join(n for n in PARSERS if n != "datagrams")
        raise UserError(f"--parsers: unknown parser {', '.join(unknown) or '(none given)'}; known: {known}")
    if "rtp" in names and "sip" not in names:
        raise UserError("--parsers: rtp finds its streams in SIP's SDP: add sip")
    if "detect" in names and "sip" not in names and "flow" not in names:
        raise UserError("--parsers: detect reads sip records and flow events: add sip or flow")
    if args.datagrams and names != ("sip",):
        raise UserError("--datagrams replaces the parsers: leave --parsers out")
    settings: dict = {}
    if "rtp" in names:
        from otus_agent.media.stage import MediaConfig
        settings["rtp"] = MediaConfig(interim_s=args.media_interim, heuristic=args.media_heuristic)
    return names, settings


def _kafka_settings(args: argparse.Namespace):
    if not args.kafka_brokers:
        if args.console:
            raise UserError("--console goes with --kafka-brokers")
        return None
    import logging

    from otus_agent.reporters.sink import KafkaSettings
    brokers = [b.strip() for b in args.kafka_brokers.split(",") if b.strip()]
    for b in brokers:
        host, sep, port = b.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise UserError(f"--kafka-brokers: expected HOST:PORT, got {b!r}")
    spool = args.spool_dir or ("/var/lib/otus/spool" if os.geteuid() == 0 else
                               os.path.expanduser("~/.local/state/otus/spool"))
    import importlib.util
    if importlib.util.find_spec("confluent_kafka") is None:
        raise UserError("Kafka output needs confluent-kafka: pip install confluent-kafka")
    # `otus run` keeps stderr for its summary: broker state shows there (kafka_* counters)
    rd = logging.getLogger("otus.kafka.librdkafka")
    rd.addHandler(logging.NullHandler())
    rd.propagate = False
    options: dict = {}
    for opt in args.kafka_option or ():
        key, sep, value = opt.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--kafka-option: expected KEY=VALUE, got {opt!r}")
        options[key.strip()] = value
    from pydantic import ValidationError

    from otus_spec import KafkaAuth
    env = "OTUS_KAFKA_SASL_PASSWORD" if os.environ.get("OTUS_KAFKA_SASL_PASSWORD") else None
    try:   # the one rule for secrets in client settings (the kafka reporter's and otus console's)
        conf = KafkaAuth(options=options, password_env=env).client_conf()
    except ValidationError as e:
        raise UserError("--kafka-option: " + "; ".join(str(x["msg"]).removeprefix("Value error, ")
                                                        for x in e.errors())
                        + "; otus run reads the SASL password from $OTUS_KAFKA_SASL_PASSWORD") from None
    return KafkaSettings(brokers, args.kafka_topic, spool, args.spool_max_bytes, args.spool_full,
                         args.kafka_flush_timeout, conf or None)


def _hep_settings(args: argparse.Namespace):
    if not args.hep:
        return None
    import socket as _socket

    from otus_agent.reporters.sink import HepSettings
    host, sep, port = args.hep.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--hep: expected HOST:PORT, got {args.hep!r}")
    password = os.environ.get("OTUS_HEP_PASSWORD")  # from the environment only: never on a command line
    return HepSettings(args.hep, args.hep_proto, args.hep_node_id, args.hep_node_name or _socket.gethostname(),
                       password)


def _run_file(args: argparse.Namespace, cfg: DatagramConfig, sip_cfg: SipConfig, write) -> dict:
    from otus_agent.capture.pcapfile import CaptureFileError, open_capture
    from otus_agent.engine.pipeline import EngineConfig, build_engine, quiet_gc
    kafka = _kafka_settings(args)
    hep = _hep_settings(args)
    if args.datagrams and (kafka is not None or hep is not None):
        raise UserError("--datagrams cannot go to Kafka or HEP")
    config = EngineConfig(cfg, ("datagrams",) if args.datagrams else args.parser_names,
                          {"sip": sip_cfg, **args.parser_settings}, kafka, hep, lines=kafka is None or args.console)
    try:
        engine = build_engine(config, write)
    except (OSError, ValueError) as e:
        raise UserError(f"reporter: {e}") from None
    tmpdir = None
    try:
        path = args.pcap
        if args.demo:
            import tempfile

            from otus_agent.sim.callgen import WorkloadSpec, generate
            tmpdir = tempfile.TemporaryDirectory(prefix="otus-demo-")
            path = os.path.join(tmpdir.name, "demo.pcap")
            with open(path, "wb") as f:
                generate(f, WorkloadSpec(calls=args.demo_calls, rtp_packets=2))
        error = None
        quiet_gc()
        with open_capture(path) as reader:
            try:
                engine.run(reader.batches())
            except CaptureFileError as e:
                error = e  # what was read before the damage is still reported
        engine.finish()
        summary = {"file": "demo" if args.demo else path, **engine.summary()}
        if engine.sink is not None:
            summary["report"] = engine.close(kafka.flush_timeout_s if kafka is not None else 0)
        if error is not None:
            summary["error"] = str(error)
        return summary
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()


def _run_live(args: argparse.Namespace, cfg: DatagramConfig, sip_cfg: SipConfig, write) -> dict:
    from otus_agent.capture import afpacket, bpf
    from otus_agent.engine.live import LiveConfig, run_live
    from otus_agent.engine.parsers import capture_clauses
    if args.datagrams:
        raise UserError("--datagrams works with --pcap only")
    if args.ring_block_size & (args.ring_block_size - 1) or args.ring_block_size < 4096:
        raise UserError("--ring-block-size must be a power of two of at least 4096")
    if args.ring_blocks < 2:
        raise UserError("--ring-blocks must be at least 2")
    expr = args.bpf_filter if args.bpf_filter is not None else bpf.default_filter(
        sip_cfg.ports, capture_clauses(args.parser_names, args.parser_settings))
    if args.write_pcap and not os.path.isdir(os.path.dirname(os.path.abspath(args.write_pcap))):
        raise UserError(f"--write-pcap: directory does not exist: {os.path.dirname(args.write_pcap)}")
    live = LiveConfig(
        interfaces=args.interface, filter_expr=expr or None,
        ring=afpacket.RingConfig(args.ring_block_size, args.ring_blocks, args.block_timeout, args.snaplen,
                                 args.promisc),
        workers=args.workers, duration_s=args.duration, max_packets=args.max_packets,
        pcap_path=args.write_pcap, pcap_max_bytes=args.pcap_max_bytes, pcap_max_files=args.pcap_max_files)
    live.kafka = _kafka_settings(args)
    live.hep = _hep_settings(args)
    live.lines = live.kafka is None or args.console
    live.parsers, live.settings = args.parser_names, args.parser_settings
    if args.output and args.workers > 1:
        live.output_path = args.output     # workers append to it themselves (opened and emptied by _run)
    if args.workers == 1:
        from otus_agent.engine.pipeline import quiet_gc
        quiet_gc()      # this process runs the one capture loop (fanout workers do it in theirs)
    try:
        summary = run_live(live, cfg, sip_cfg, write)
    except afpacket.CaptureError as e:
        raise UserError(str(e)) from None
    return {"interfaces": args.interface, "filter": expr, **summary}


def _daemon(args: argparse.Namespace) -> int:
    from otus_agent.daemon.server import Daemon
    from otus_spec import load_config
    cfg = load_config(args.config)
    return Daemon(args.config, cfg).run()


def _validate(args: argparse.Namespace) -> int:
    from otus_agent.capture.afpacket import CaptureError
    from otus_agent.daemon.task import check_filter
    from otus_spec import SpecError, load_task
    spec = load_task(args.file)
    try:
        check_filter(spec)  # offline: interfaces may exist only where the task will run
    except CaptureError as e:
        raise SpecError(f"{os.path.basename(args.file)}: bpf_filter: {e}") from None
    if args.output == "json":
        print(json.dumps({"valid": True, "task": spec.model_dump(mode="json")}))
    else:
        print(f"{args.file}: valid task {spec.id!r} on {', '.join(spec.interfaces)}")
    return EXIT_OK


def _table(rows: list[dict], cols: list[str]) -> str:
    def cell(v: object) -> str:
        if v is None:
            return "-"
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)
    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _control(args: argparse.Namespace) -> int:
    from otus_agent.daemon.uds import request
    from otus_spec import load_task
    path = args.socket or os.environ.get("OTUS_SOCKET") or "/var/run/otus.sock"
    if args.command == "task":
        if args.task_cmd == "create":
            spec = load_task(args.file)
            payload = {"cmd": "task.create", "spec": spec.model_dump(mode="json")}
        else:
            payload = {"cmd": f"task.{args.task_cmd}", **({"id": args.id} if hasattr(args, "id") else {})}
    else:
        payload = {"cmd": args.command}
    try:
        reply = request(path, payload)
    except ConnectionError as e:
        raise UserError(str(e)) from None
    if not reply.get("ok"):
        raise UserError(reply.get("error", "request failed"))
    result = reply["result"]
    if args.output == "json":
        print(json.dumps(result))
    elif isinstance(result, list):
        print(_table(result, ["id", "status", "interfaces", "packets", "kernel_drops", "sip_messages", "reason"]))
    elif args.command == "task" and args.task_cmd in ("create", "delete", "status"):
        print(_table([result], ["id", "status", "interfaces", "packets", "kernel_drops", "sip_messages", "reason"]))
    elif isinstance(result, dict):
        for k, v in result.items():
            print(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    else:
        print(result)
    return EXIT_OK


# bad input, printed as one line: (module, class); a class counts only once its module is loaded, since
# a command that never imported it cannot have raised it (and importing it to check would cost start-up)
_USER_ERRORS = (("otus_agent.capture.pcapfile", "CaptureFileError"), ("otus_spec", "SpecError"))


def _is_user_error(e: Exception) -> bool:
    if isinstance(e, UserError):
        return True
    kinds = tuple(getattr(sys.modules[m], name) for m, name in _USER_ERRORS if m in sys.modules)
    return isinstance(e, kinds)


def _command(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` when it leads (no option before it), else None (the whole parser)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_command(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "run":
            return _run(args, sys.stdout, sys.stderr)
        if args.command == "daemon":
            return _daemon(args)
        if args.command == "validate":
            return _validate(args)
        if args.command in ("console", "filter"):
            return args.func(args)
        if args.command == "agent":
            from otus_agent.kube.main import run as run_agent
            return run_agent(args)
        if args.command in ("task", "status", "stats", "reload", "stop"):
            return _control(args)
    except KeyboardInterrupt:
        sys.stderr.write("otus: interrupted\n")
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as e:
        if not _is_user_error(e):
            raise
        sys.stderr.write(f"otus: error: {e}\n")
        return EXIT_USAGE
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
