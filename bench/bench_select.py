"""What SIP selectors (sip.match, issue 18) cost on the realistic PBX workload.

Whole-process CPU of ``otus run --pcap FILE --output F``, start-up included, as bench_realistic.py
measures it: without a selector, and through ``--task`` with a selector that admits every dialog
(the worst case: each message is judged and every record still written), one that admits none
(every message judged and dropped), and one with a header condition (the header block read for
each request).  Prints messages per CPU-second and each figure's ratio to the plain run.

    python bench/bench_select.py [--calls 100000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_realistic import best, fmt, otus_run, workload  # noqa: E402

CASES = {
    "every dialog (methods: [INVITE, REGISTER, OPTIONS])": {"methods": ["INVITE", "REGISTER", "OPTIONS"]},
    "no dialog (methods: [MESSAGE])": {"methods": ["MESSAGE"]},
    "header (X-Tenant equals acme)": {"headers": [{"name": "X-Tenant", "equals": "acme"}]},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    pcap, info = workload(a.calls)
    msgs = info["sip_messages"]
    print(f"workload: {pcap.name}  {info['calls']:,} calls, {msgs:,} SIP messages")
    with tempfile.TemporaryDirectory() as d:
        work = pathlib.Path(d)
        out = work / "records.jsonl"
        plain = best([otus_run(pcap, out) for _ in range(a.repeat)])
        print(f"  {'no selector':52s} {fmt(msgs, plain)}")
        for name, match in CASES.items():
            task = work / "task.yaml"
            task.write_text(yaml.safe_dump({"id": "bench", "interfaces": ["eth0"], "sip": {"match": match}}))
            r = best([otus_run(pcap, out, "--task", str(task)) for _ in range(a.repeat)])
            sel = r["summary"]["sip"]["select"]
            print(f"  {name:52s} {fmt(msgs, r)}")
            print(f"  {'':52s} {plain['cpu'] / r['cpu']:.2f} of the plain figure; matched dialogs "
                  f"{sel['matched_dialogs']:,}, unmatched messages {sel['unmatched']:,}")


if __name__ == "__main__":
    main()
