"""IPv4/IPv6 reassembly rate, single core: fragments/s on generated fragmented SIP.

Usage: python bench/bench_reassembly.py [--datagrams N]
"""
from __future__ import annotations

import argparse
import random

from _common import best_of, load_pure

from otus_agent.decode import decoder as D
from otus_agent.reassembly import ipfrag_cy as ipfrag
from otus_agent.sim import packets as P


def build(n: int) -> list[tuple]:
    """n datagrams of 3-4 KB, IPv4 (80 %) and IPv6, 1500-byte MTU, interleaved."""
    rng = random.Random(1)
    frames = []
    for i in range(n):
        size = rng.randrange(3000, 4400)
        body = P.udp(b"\x0a\0\0\1", b"\x0a\0\0\2", 5060, 5060, bytes(size))
        if i % 5:
            frs = P.ipv4_fragments(bytes((10, 1, i >> 8 & 255, i & 255)), b"\x0a\0\0\2", 17, body, i & 0xFFFF)
        else:
            src = b"\xfd" + bytes(13) + (i & 0xFFFF).to_bytes(2, "big")
            frs = P.ipv6_fragments(src, b"\xfd" + bytes(14) + b"\2", 17, body, i)
        frames.append(frs)
    # interleave datagrams a little, as concurrent senders do
    out = []
    window = []
    for frs in frames:
        window.append(list(frs))
        if len(window) == 8:
            while any(window):
                for w in window:
                    if w:
                        out.append(w.pop(0))
            window = []
    for w in window:
        out.extend(w)
    dec = D.Decoder(1)
    located = []
    for f in out:
        o = dec.decode_one(f, 101)
        located.append((f, o[D.F_L3OFF], o[D.F_L3END], o[D.F_IPVER], o[D.F_FRAGHDR]))
    return located


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datagrams", type=int, default=20000)
    a = ap.parse_args()
    frags = build(a.datagrams)
    pure = load_pure("reassembly/ipfrag_cy.py", "bench_pure_ipfrag")
    print(f"workload: {len(frags)} fragments of {a.datagrams} datagrams, compiled={D.COMPILED}")
    for name, mod in (("compiled", ipfrag), ("pure-python", pure)):
        done = []

        def run(mod=mod, done=done):
            r = mod.FragmentReassembler()
            add = r.add
            k = 0
            for f, l3, end, v, fh in frags:
                if add(f, l3, end, v, fh, k) is not None:
                    k += 1
            done.append(k)
        t = best_of(run, 5 if name == "compiled" else 2)
        assert done[-1] == a.datagrams, done
        print(f"  reassembly {name:12s} {len(frags) / t:12,.0f} fragments/s  (target >= 200,000)")


if __name__ == "__main__":
    main()
