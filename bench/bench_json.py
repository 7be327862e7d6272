"""Record serialisation: orjson (what Otus uses) against the standard library, on real records."""
from __future__ import annotations

import json
import time

from _common import workload

from otus_agent.capture.pcapfile import open_capture
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.sip.framing import SipStage

try:
    import orjson
except ImportError:  # pragma: no cover
    orjson = None


def main() -> None:
    recs: list[dict] = []
    with open_capture(workload(2000, 0)) as r:
        st = SipStage(emit=recs.append)
        DatagramStage(sink=st.on_datagram).run(r.batches())
    n = len(recs)
    for name, fn in (("orjson", orjson.dumps if orjson else None),
                     ("json", lambda o: json.dumps(o, separators=(",", ":")).encode())):
        if fn is None:
            continue
        out = bytearray()
        t = time.perf_counter()
        for rec in recs:
            out += fn(rec)
        dt = time.perf_counter() - t
        print(f"  {name:7s} {n / dt:12,.0f} records/s  ({dt / n * 1e6:.2f} us per record)")


if __name__ == "__main__":
    main()
