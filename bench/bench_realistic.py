"""Issue 15's offline figures on the realistic PBX workload, with Suricata 7 and tshark side by side.

One run prints:
- ``otus run --pcap FILE --output OUT``: whole-process CPU time (user+sys of the child, from
  ``os.wait4``), start-up included -> SIP messages per CPU-second; the same with ``--calls`` and
  its ratio to the plain run;
- tshark's SIP field dump and Suricata 7 (only the SIP app-layer parser, eve ``sip`` output, no
  rules, ``--runmode single``) on the same file, and the ratios Otus/Suricata, Otus/tshark;
- max RSS with call summaries on at 10K and 100K open dialogs and past the dialog table's limit
  (files of INVITE and 200 only, so no dialog ends);
- start-up: wall time of ``otus run --pcap`` on a one-packet file.

The workload (``sim/pbx.py``: 100,000 calls = 700,000 SIP messages by default) is generated once
and cached under /tmp, keyed by the generator's source.  Suricata comes from Debian's
bookworm-backports; as root the bench adds that suite (same mirror as apt's sources) and installs
it when missing.  Usage: python bench/bench_realistic.py [--calls N] [--repeat N] [--skip-rss]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = pathlib.Path("/tmp/otus-bench-realistic")
OTUS = str(pathlib.Path(sys.executable).parent / "otus")

SURICATA_YAML = """%YAML 1.1
---
# Only the SIP app-layer parser, eve `sip` records only, no rules.
default-log-dir: {logdir}
default-rule-path: /dev/null
rule-files: []
classification-file: /etc/suricata/classification.config
reference-config-file: /etc/suricata/reference.config
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types:
        - sip
  - stats:
      enabled: no
app-layer:
  protocols:
    sip:
      enabled: yes
{disabled}
stream:
  memcap: 512mb
  reassembly:
    memcap: 1gb
logging:
  default-log-level: warning
  outputs:
    - console:
        enabled: yes
"""
OTHER_PROTOCOLS = ("http", "ftp", "smtp", "tls", "ssh", "imap", "smb", "dcerpc", "dns", "nfs", "ntp", "tftp",
                   "ike", "krb5", "quic", "dhcp", "snmp", "rfb", "mqtt", "telnet", "rdp", "http2",
                   "bittorrent-dht", "modbus", "dnp3", "enip", "pgsql")


def apt_mirror() -> str:
    """The Debian mirror apt already uses (deb822 .sources or one-line .list)."""
    files = [pathlib.Path("/etc/apt/sources.list"), *sorted(pathlib.Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file() or not f.name.endswith((".list", ".sources")):
            continue
        text = f.read_text(errors="replace")
        for m in re.finditer(r"^URIs:\s*(\S+)", text, re.M) if f.name.endswith(".sources") else \
                re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M):
            url = m.group(1)
            if "security" not in url and "debian" in url:
                return url
    return "http://deb.debian.org/debian"


def suricata_version() -> tuple[int, ...] | None:
    if shutil.which("suricata") is None:
        return None
    out = subprocess.run(["suricata", "-V"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def ensure_suricata() -> bool:
    """Suricata >= 7 from bookworm-backports; False (the Suricata figures are skipped) when it cannot be had."""
    v = suricata_version()
    if v is not None and v >= (7, 0):
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"  suricata 7 missing (found {v}) and not root: its figures are skipped")
        return False
    src = pathlib.Path("/etc/apt/sources.list.d/bookworm-backports.list")
    if not src.exists():
        src.write_text(f"deb {apt_mirror()} bookworm-backports main\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    ok = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"], env=env).returncode == 0 and \
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "-t",
                        "bookworm-backports", "suricata"], env=env, stdout=subprocess.DEVNULL).returncode == 0
    v = suricata_version()
    return ok and v is not None and v >= (7, 0)


def _gen_key() -> str:
    h = hashlib.sha256()
    for rel in ("sim/pbx.py", "sim/callgen.py", "sim/packets.py"):
        h.update((ROOT / "src" / "otus_agent" / rel).read_bytes())
    return h.hexdigest()[:12]


def workload(calls: int, seed: int = 15, **kw) -> tuple[pathlib.Path, dict]:
    """The cached PBX workload file and its counts (generated when the generator or the parameters change)."""
    from otus_agent.sim.callgen import WorkloadSpec, generate
    CACHE.mkdir(exist_ok=True)
    tag = hashlib.sha256(repr(sorted(kw.items())).encode()).hexdigest()[:8] if kw else "base"
    path = CACHE / f"pbx-{calls}-s{seed}-{tag}-{_gen_key()}.pcap"
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        t = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            wl = generate(f, WorkloadSpec(calls=calls, seed=seed, profile="pbx", **kw))
        info = {"calls": calls, "packets": wl.packets, "sip_messages": wl.sip_messages, "fragments": wl.fragments,
                "tcp_segments": wl.tcp_segments, "tcp_calls": sum(c.transport == "tcp" for c in wl.calls),
                "bytes": tmp.stat().st_size}
        tmp.rename(path)
        meta.write_text(json.dumps(info))
        print(f"  generated {path.name} in {time.perf_counter() - t:.0f} s")
    return path, json.loads(meta.read_text())


def measure(cmd: list[str], stdout=subprocess.DEVNULL, cwd: str | None = None, env: dict | None = None) -> dict:
    """Run ``cmd`` to the end; its own user+sys CPU and max RSS from wait4, wall from the clock."""
    t = time.perf_counter()
    err = tempfile.TemporaryFile()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=err, cwd=cwd, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    err.seek(0)
    text = err.read().decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {text[-2000:]}")
    return {"cpu": ru.ru_utime + ru.ru_stime, "user": ru.ru_utime, "sys": ru.ru_stime, "wall": wall,
            "rss_mb": ru.ru_maxrss / 1024, "stderr": text}


def otus_run(pcap: pathlib.Path, out: pathlib.Path, *extra: str, otus: str = OTUS, env: dict | None = None) -> dict:
    out.unlink(missing_ok=True)   # every run writes a new file (truncating the last run's would be charged to it)
    r = measure([otus, "run", "--pcap", str(pcap), "--output", str(out), *extra], env=env)
    r["summary"] = json.loads(r["stderr"].strip().splitlines()[-1])
    return r


def best(runs: list[dict]) -> dict:
    """The least CPU of several runs (the VM's speed drifts); the median is printed beside it."""
    b = min(runs, key=lambda r: r["cpu"])
    b["median_cpu"] = statistics.median(r["cpu"] for r in runs)
    return b


def fmt(msgs: int, r: dict) -> str:
    return (f"{msgs / r['cpu']:>10,.0f} msg/CPU-s  (cpu {r['cpu']:.2f} s = user {r['user']:.2f} + sys {r['sys']:.2f}"
            f"{', median ' + format(r['median_cpu'], '.2f') if 'median_cpu' in r else ''}; wall {r['wall']:.2f} s; "
            f"max RSS {r['rss_mb']:.0f} MB)")


def run_suricata(pcap: pathlib.Path, work: pathlib.Path) -> tuple[dict, int]:
    logdir = work / "suricata"
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir()
    cfg = work / "suricata.yaml"
    disabled = "\n".join(f"    {p}:\n      enabled: no" for p in OTHER_PROTOCOLS)
    cfg.write_text(SURICATA_YAML.format(logdir=logdir, disabled=disabled))
    r = measure(["suricata", "-c", str(cfg), "-r", str(pcap), "--runmode", "single", "-k", "none", "-l", str(logdir),
                 "-S", "/dev/null"])
    n = 0
    with open(logdir / "eve.json", "rb") as f:
        for line in f:
            n += b'"event_type":"sip"' in line
    return r, n


def one_packet_file(src: pathlib.Path, dst: pathlib.Path) -> None:
    from otus_agent.capture.pcapfile import PcapWriter, open_capture
    with open_capture(src) as r, open(dst, "wb") as f:
        w = PcapWriter(f, 1, snaplen=65535, nanosecond=True)
        batch = next(iter(r.batches()))
        w.write(batch.ts_ns[0], batch.packet(0))
        w.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each Otus measure (the least CPU is quoted)")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-anchors", action="store_true", help="no Suricata / tshark")
    ap.add_argument("--baseline", metavar="OTUS", help="another build's `otus` (e.g. main's checkout): its plain and "
                    "--calls figures are measured in the same run, interleaved with this build's (before/after)")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from otus_agent.decode.decoder import COMPILED
    from otus_agent.sip.framing import SipConfig
    have_suricata = not a.skip_anchors and ensure_suricata()
    pcap, info = workload(a.calls)
    msgs = info["sip_messages"]
    print("load average at the start: {:.2f} {:.2f} {:.2f} (2 cores shared; CPU time is quoted)".format(*os.getloadavg()))
    print(f"workload: {pcap}  {info['calls']:,} calls, {msgs:,} SIP messages, {info['packets']:,} packets, "
          f"{info['fragments']:,} IP fragments, {info['tcp_calls']:,} TCP calls, {info['bytes'] / 1e6:.0f} MB; "
          f"compiled={COMPILED}")
    with tempfile.TemporaryDirectory(prefix="otus-bench-") as tmp:
        work = pathlib.Path(tmp)
        out = work / "records.jsonl"
        if a.baseline:    # run without writing bytecode into the other checkout
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
            runs: dict[str, list] = {"base": [], "base_calls": [], "new": [], "new_calls": []}
            for _ in range(a.repeat):   # interleaved, so both builds see the same machine
                runs["base"].append(otus_run(pcap, out, otus=a.baseline, env=env))
                runs["new"].append(otus_run(pcap, out))
                runs["base_calls"].append(otus_run(pcap, out, "--calls", otus=a.baseline, env=env))
                runs["new_calls"].append(otus_run(pcap, out, "--calls"))
            b, bc, n, nc = (best(runs[k]) for k in ("base", "base_calls", "new", "new_calls"))
            print(f"  before ({a.baseline}), plain   {fmt(msgs, b)}")
            print(f"  after  (this build), plain     {fmt(msgs, n)}  -> {b['cpu'] / n['cpu']:.2f}x")
            print(f"  before, --calls                {fmt(msgs, bc)}  (--calls / plain {b['cpu'] / bc['cpu']:.2f})")
            print(f"  after,  --calls                {fmt(msgs, nc)}  -> {bc['cpu'] / nc['cpu']:.2f}x "
                  f"(--calls / plain {n['cpu'] / nc['cpu']:.2f})")
            print("  load average after the before/after runs: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        plain = best([otus_run(pcap, out) for _ in range(a.repeat)])
        got = plain["summary"]["sip"]["sip_messages"]
        print(f"  otus run --pcap --output FILE     {fmt(msgs, plain)}  [{got:,} SIP messages, "
              f"{out.stat().st_size / 1e6:.0f} MB of records]")
        calls = best([otus_run(pcap, out, "--calls") for _ in range(a.repeat)])
        n_calls = sum(1 for line in open(out, "rb") if b'"type":"call"' in line)
        print(f"  otus run --pcap --calls           {fmt(msgs, calls)}  [{n_calls:,} call summaries]")
        ours, ours_calls = msgs / plain["cpu"], msgs / calls["cpu"]
        print(f"  --calls / plain: {ours_calls / ours:.2f}  (goal >= 0.80)")
        print("  load average after the Otus runs: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        if not a.skip_anchors and shutil.which("tshark"):
            with open(work / "tshark.txt", "wb") as f:
                ts = measure(["tshark", "-n", "-r", str(pcap), "-Y", "sip", "-T", "fields", "-e", "sip.Call-ID",
                              "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "sip.from.tag", "-e", "sip.to.tag"],
                             stdout=f)
            n_ts = sum(1 for _ in open(work / "tshark.txt", "rb"))
            print(f"  tshark -Y sip -T fields           {fmt(msgs, ts)}  [{n_ts:,} lines]")
            print(f"  otus / tshark: {ours / (msgs / ts['cpu']):.1f}x  (goal >= 25x)")
        if have_suricata:
            sr, n_sr = run_suricata(pcap, work)
            print(f"  suricata 7 (sip only, single)     {fmt(msgs, sr)}  [{n_sr:,} eve sip records]")
            print(f"  otus / suricata: {ours / (msgs / sr['cpu']):.1f}x  (goal >= 5x)")
        one = work / "one.pcap"
        one_packet_file(pcap, one)
        starts = [otus_run(one, work / "one.jsonl")["wall"] for _ in range(7)]
        print(f"  start-up, one-packet file: wall best {min(starts):.3f} s, median {statistics.median(starts):.3f} s"
              f"  (goal <= 0.2 s)")
        if a.skip_rss:
            return
        # one file of INVITE/200 only, past the dialog table's limit; 10K and 100K are its first packets
        limit = SipConfig().max_calls
        big, inf = workload(limit + limit // 10, open_dialogs=True)
        for n in (10_000, 100_000, inf["calls"]):
            f = big
            if n < inf["calls"]:
                f = work / f"open-{n}.pcap"
                subprocess.run(["editcap", "-F", "nsecpcap", "-r", str(big), str(f),
                                f"1-{inf['packets'] * n // inf['calls']}"], check=True, stdout=subprocess.DEVNULL)
            r = otus_run(f, work / "rss.jsonl", "--calls")
            d = r["summary"]["sip"]["calls"]
            print(f"  RSS, --calls, {d['started']:>7,} dialogs opened, none ended: max RSS {r['rss_mb']:.0f} MB"
                  f"  (table limit {limit:,}, evictions {d['evictions']:,}; cpu {r['cpu']:.1f} s)  (goal <= 256 MB at"
                  f" 100K)")


if __name__ == "__main__":
    main()
