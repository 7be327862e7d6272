"""What SIP selectors (sip.match, issue 18) cost on the realistic PBX workload.

Whole-process CPU of ``otus run --pcap FILE --output F``, start-up included, as bench_realistic.py
measures it: without a selector, and through ``--task`` with a task file without selector (what
reading the task file costs: pydantic's import and the task contract, a fixed ~0.15-0.2 s), with a
selector that admits every dialog (the worst case: each message is judged and every record still
written), one that admits none (every message judged and dropped), and one with a header condition
(the header block read for each request).  Prints messages per CPU-second (the least CPU of the
repeats, the median beside it), each figure's ratio to the run without ``--task`` (the issue's goal:
>= 0.90) and to the task file without selector (the selector's own cost).  ``--baseline OTUS``
measures another build (e.g. main's checkout) in the same run, interleaved: before/after.

    python bench/bench_select.py [--calls 100000] [--repeat 3] [--baseline /work/main/.venv/bin/otus]

Use the 100,000-call workload (the default, the issue's realistic bench): on a small file the fixed
start-up of reading the task file is a larger share than on any real capture.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_realistic import OTUS, best, fmt, otus_run, workload  # noqa: E402

NO_TASK = "no selector, no task file"
TASK = "task file, no selector (reading it: pydantic)"
CASES = {
    NO_TASK: False,
    TASK: None,
    "every dialog (methods: [INVITE, REGISTER, OPTIONS])": {"methods": ["INVITE", "REGISTER", "OPTIONS"]},
    "no dialog (methods: [MESSAGE])": {"methods": ["MESSAGE"]},
    "header (X-Tenant equals acme)": {"headers": [{"name": "X-Tenant", "equals": "acme"}]},
}


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", metavar="OTUS", help="another build's `otus` (e.g. /work/main/.venv/bin/otus), "
                    "measured in the same run, interleaved with this build's")
    a = ap.parse_args()
    pcap, info = workload(a.calls)
    msgs = info["sip_messages"]
    print(f"load average at the start: {_load()} (CPU time is quoted)")
    print(f"workload: {pcap.name}  {info['calls']:,} calls, {msgs:,} SIP messages")
    builds = {"after": OTUS, **({"before": a.baseline} if a.baseline else {})}
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}   # write no bytecode into the other checkout
    with tempfile.TemporaryDirectory() as d:
        work = pathlib.Path(d)
        out = work / "records.jsonl"
        args: dict[str, tuple[str, ...]] = {}
        for i, (name, match) in enumerate(CASES.items()):
            if match is False:
                args[name] = ()
                continue
            task = work / f"task{i}.yaml"
            task.write_text(yaml.safe_dump({"id": "bench", "interfaces": ["eth0"],
                                            "sip": {"match": match} if match else {}}))
            args[name] = ("--task", str(task))
        runs: dict[tuple[str, str], list] = {(b, n): [] for b in builds for n in CASES}
        for _ in range(a.repeat):      # interleaved: every case and build sees the same machine
            for name in CASES:
                for b, otus in builds.items():
                    runs[b, name].append(otus_run(pcap, out, *args[name], otus=otus, env=env))
        for b, otus in builds.items():
            print(f"{b} ({otus}):")
            r = {n: best(runs[b, n]) for n in CASES}
            for name in CASES:
                x = r[name]
                print(f"  {name:52s} {fmt(msgs, x)}")
                if name == NO_TASK:
                    continue
                sel = x["summary"]["sip"].get("select", {})
                own = "" if name == TASK else f", {r[TASK]['cpu'] / x['cpu']:.2f} of the task file without selector"
                print(f"  {'':52s} {r[NO_TASK]['cpu'] / x['cpu']:.2f} of the plain figure (median "
                      f"{r[NO_TASK]['median_cpu'] / x['median_cpu']:.2f}){own}; matched dialogs "
                      f"{sel.get('matched_dialogs', 0):,}, unmatched messages {sel.get('unmatched', 0):,}")
        if a.baseline:
            print("after / before (CPU, least of the repeats; median):")
            for name in CASES:
                bf, af = best(runs["before", name]), best(runs["after", name])
                print(f"  {name:52s} {bf['cpu'] / af['cpu']:.2f}x  ({bf['median_cpu'] / af['median_cpu']:.2f}x)")
    print(f"load average at the end: {_load()}")


if __name__ == "__main__":
    main()
