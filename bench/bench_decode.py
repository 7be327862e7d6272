"""L2-L4 decoding rate, single core: packets/s on a generated SIP+RTP workload.

Prints the compiled fast path, the same source run as pure Python, and a
straightforward struct-based CPython decoder (the reference the issue names).
Usage: python bench/bench_decode.py [--calls N] [--rtp N]
"""
from __future__ import annotations

import argparse
import struct
from array import array

from _common import best_of, load_pure, workload

from otus_agent.capture.pcapfile import open_capture
from otus_agent.decode import decoder as D


def naive_decode(pkt: bytes) -> tuple | None:
    """The straightforward way: struct per layer, a tuple per packet."""
    if len(pkt) < 14:
        return None
    etype = struct.unpack_from("!H", pkt, 12)[0]
    off = 14
    while etype in (0x8100, 0x88A8):
        etype = struct.unpack_from("!H", pkt, off + 2)[0]
        off += 4
    if etype == 0x0800:
        vihl, _, tot, _, fo, _, proto = struct.unpack_from("!BBHHHBB", pkt, off)
        src, dst = pkt[off + 12:off + 16], pkt[off + 16:off + 20]
        end = off + tot
        off += (vihl & 15) * 4
        if fo & 0x3FFF:
            return ("frag", src, dst)
    elif etype == 0x86DD:
        plen, proto = struct.unpack_from("!HB", pkt, off + 4)
        src, dst = pkt[off + 8:off + 24], pkt[off + 24:off + 40]
        end = off + 40 + plen
        off += 40
    else:
        return None
    if proto == 17:
        sport, dport, ulen = struct.unpack_from("!HHH", pkt, off)
        return (src, dst, sport, dport, pkt[off + 8:off + ulen])
    if proto == 6:
        sport, dport, seq, ack, doff, flags = struct.unpack_from("!HHIIBB", pkt, off)
        return (src, dst, sport, dport, seq, flags, pkt[off + (doff >> 4) * 4:end])
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--rtp", type=int, default=10)
    a = ap.parse_args()
    path = workload(a.calls, a.rtp)
    batches = []
    with open_capture(path) as r:
        for b in r.batches():
            batches.append((b.buf, b.n, array("q", b.offs), array("q", b.caplens), array("q", b.links)))
    n = sum(b[1] for b in batches)
    pure = load_pure("decode/l2l4_cy.py", "bench_pure_fastpath")
    results = {}
    for name, mod in (("compiled", D.fastpath), ("pure-python", pure)):
        out = array("q", bytes(8 * D.NF * 4096))
        cnt = array("q", bytes(8 * D.LAYOUT["NCOUNTERS"]))

        def run(mod=mod, out=out, cnt=cnt):
            for buf, k, offs, caps, links in batches:
                mod.decode_batch(buf, k, offs, caps, links, out, cnt, 3)
        t = best_of(run, 5 if name == "compiled" else 1)
        results[name] = n / t
    pkts = [buf[offs[i]:offs[i] + caps[i]] for buf, k, offs, caps, _ in batches for i in range(k)]
    t = best_of(lambda: [naive_decode(p) for p in pkts], 3)
    results["naive-struct"] = n / t
    from otus_agent.reassembly.datagrams import DatagramStage

    def end_to_end():
        p = DatagramStage()
        with open_capture(path) as r:
            p.run(r.batches())
    results["file->pipeline"] = n / best_of(end_to_end, 3)
    print(f"workload: {n} packets ({a.calls} calls, {a.rtp} RTP/direction/call), compiled={D.COMPILED}")
    for k, v in results.items():
        print(f"  L2-L4 decode {k:15s} {v:12,.0f} packets/s")
    print(f"  compiled / naive-struct ratio: {results['compiled'] / results['naive-struct']:.1f}x "
          f"(target >= 1,000,000 packets/s)")


if __name__ == "__main__":
    main()
