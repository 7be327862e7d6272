"""The console under load: RECORDS/s through the real record tap (task side TapSender -> daemon side
TapReceiver -> RecordStore) for SECONDS, with the HTTP server up and the page open in Debian's
chromium (when present) on the live stream.  Prints the process RSS over time, the store's size and
evictions, the tap's drops, and the page's update rate (call events received, renders per second).

    python -m bench.bench_console [RECORDS_PER_S] [SECONDS]
"""
from __future__ import annotations

import os
import shutil
import sys
import time

import orjson
from _common import scratch_dir


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    from otus_agent.daemon.tap import TapReceiver, TapSender
    from otus_agent.web.server import HttpServer
    from otus_agent.web.store import RecordStore

    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    d = str(scratch_dir("otus-console-bench-"))
    store = RecordStore()              # the daemon's defaults: 1000 calls, 64 MiB
    rx = TapReceiver(os.path.join(d, "tap.sock"), store.add_line)
    rx.start()
    http = HttpServer(("127.0.0.1", 0), store, None, lambda: None, 1 << 20)
    http.start()
    tx = TapSender(os.path.join(d, "tap.sock"))
    page = pw = browser = None
    if shutil.which("/usr/bin/chromium"):
        from playwright.sync_api import sync_playwright
        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        page = browser.new_context(bypass_csp=True).new_page()
        time.sleep(0.5)
        page.goto(f"http://127.0.0.1:{http.port}/")
        page.wait_for_function("window.otusConsole && window.otusConsole.streamOpen")
    print(f"rate {rate} records/s for {seconds} s; RSS at start {rss_mib():.1f} MiB", flush=True)
    base = {"v": 1, "type": "sip", "src_ip": "10.0.0.1", "src_port": 5060, "dst_ip": "10.0.0.2", "dst_port": 5060,
            "transport": "udp", "cseq_num": 1, "from_user": "alice", "to_user": "bob", "agent": "bench", "task": "b",
            "user_agent": "bench-ua/1.0", "request_uri": "sip:bob@10.0.0.2"}
    steps = [("INVITE", None, "INVITE"), (None, 100, "INVITE"), (None, 180, "INVITE"), (None, 200, "INVITE"),
             ("ACK", None, "ACK"), ("BYE", None, "BYE"), (None, 200, "BYE")]
    start = time.monotonic()
    sent, peak = 0, 0.0
    last_print = start
    ev0 = rd0 = 0
    while time.monotonic() - start < seconds:
        t = time.monotonic() - start
        due = int(t * rate)
        lines = bytearray()
        while sent < due:
            m, code, cm = steps[sent % len(steps)]
            call = sent // len(steps)
            lines += orjson.dumps({**base, "ts": time.time_ns(), "method": m, "status_code": code, "cseq_method": cm,
                                   "call_id": f"bench-{call}@h", "via_branch": f"z9hG4bK{call}-{cm}"}) + b"\n"
            sent += 1
        if lines:
            tx.write(bytes(lines))
        now = time.monotonic()
        if now - last_print >= 10:
            peak = max(peak, rss_mib())
            line = f"t={now - start:5.1f}s RSS {rss_mib():6.1f} MiB store {store.stats()['calls']} calls " \
                   f"{store.stats()['bytes'] / 2**20:.1f} MiB evicted {store.stats()['evicted_calls']}"
            if page is not None:
                st = page.evaluate("window.otusConsole")
                line += (f"; page: {(st['callEvents'] - ev0) / (now - last_print):.0f} call events/s, "
                         f"{(st['renders'] - rd0) / (now - last_print):.1f} renders/s")
                ev0, rd0 = st["callEvents"], st["renders"]
            print(line, flush=True)
            last_print = now
        if page is not None:
            page.wait_for_timeout(20)   # the page's event loop runs in this thread: let it breathe
        else:
            time.sleep(0.02)
    time.sleep(1)
    s = store.stats()
    peak = max(peak, rss_mib())
    print(f"sent {sent} records; tap sent {tx.stats()['sent_lines']} dropped {tx.stats()['dropped_lines']}; "
          f"store received {s['records']} ({s['records'] / seconds:.0f}/s), calls {s['calls']}/{s['max_calls']}, "
          f"{s['bytes'] / 2**20:.1f}/{s['max_bytes'] / 2**20:.0f} MiB, evicted {s['evicted_calls']}; "
          f"peak RSS {peak:.1f} MiB")
    if browser is not None and pw is not None:
        browser.close()
        pw.stop()
    http.close()
    rx.close()
    tx.close()


if __name__ == "__main__":
    main()
