"""The engine of one task, built in one place: decoded batch -> reassembly -> parsers -> record sink.

``build_engine(config, write)`` is what ``otus run --pcap``, live capture (one process or each
fanout worker) and daemon/kube tasks all call; they differ only in where batches come from and
what they do around them (rings, pcap writing, latency).  The parsers come from the registry in
``engine/parsers.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from otus_agent.engine.parsers import PARSERS, Outputs, Parser
from otus_agent.reassembly.datagrams import DatagramConfig, DatagramStage

if TYPE_CHECKING:
    from otus_agent.capture.pcapfile import PacketBatch
    from otus_agent.decode.decoder import Decoder
    from otus_agent.reassembly.datagrams import Datagram
    from otus_agent.reporters.sink import HepSettings, KafkaSettings, RecordSink


@dataclass
class EngineConfig:
    """One engine's settings, already validated (from command-line flags or a TaskSpec)."""
    datagram: DatagramConfig = field(default_factory=DatagramConfig)
    parsers: tuple[str, ...] = ("sip",)                     # names in engine.parsers.PARSERS, run in this order
    settings: dict[str, Any] = field(default_factory=dict)  # parser name -> its settings (e.g. SipConfig)
    kafka: KafkaSettings | None = None
    hep: HepSettings | None = None
    lines: bool = True          # records as JSON lines to ``write``
    task: str = "run"           # names the Kafka spool and topic


def _fan(calls: list[Callable[[Datagram], None]]) -> Callable[[Datagram], None]:
    """One datagram to every parser, in the configured order."""
    def on_datagram(d: Datagram) -> None:
        for call in calls:
            call(d)
    return on_datagram


class Engine:
    """Consumes decoded batches (``feed``), hands records to the sink (``flush`` writes them out)."""

    def __init__(self, config: EngineConfig, write: Callable[[bytes], None], worker: int | None = None):
        unknown = [p for p in config.parsers if p not in PARSERS]
        if unknown or not config.parsers:
            raise ValueError(f"unknown parser {', '.join(unknown) or '(none given)'}; known: {', '.join(PARSERS)}")
        self.config = config
        self.sink: RecordSink | None = None
        if any(PARSERS[p].records for p in config.parsers):
            from otus_agent.reporters.sink import RecordSink
            self.sink = RecordSink(write if config.lines else None,
                                   config.kafka.reporter(config.task, worker) if config.kafka is not None else None,
                                   config.hep.reporter() if config.hep is not None else None)
        enabled = set(config.parsers)
        for p in config.parsers:
            wanted = PARSERS[p].listens
            if wanted and not enabled.intersection(wanted):
                raise ValueError(f"parser {p} reads the records of {' or '.join(wanted)}: enable it too")
        taps: dict[str, list] = {src: [] for p in config.parsers for src in PARSERS[p].listens if src in enabled}
        outputs = Outputs(self.sink, write, taps)
        self.parsers: dict[str, Parser] = {p: PARSERS[p].build(config.settings.get(p), outputs) for p in config.parsers}
        chain = [p for p in self.parsers.values() if p.on_datagram is not None]
        # batch parsers see every decoded packet, so a lane (which hides its packets from the
        # datagram path only) may still serve the one datagram parser
        self._ticks = [p.tick for p in self.parsers.values() if p.tick is not None]
        self.batch_hooks = [p.on_batch for p in self.parsers.values() if p.on_batch is not None]
        on_datagram: Callable[[Datagram], None] | None = None
        lane = None
        if len(chain) == 1:
            on_datagram, lane = chain[0].on_datagram, chain[0].lane
        elif chain:
            on_datagram = _fan([p.on_datagram for p in chain if p.on_datagram is not None])
            others = [n for n, p in self.parsers.items() if p.on_datagram is not None and n != "sip"]
            beside = self.parsers[others[0]].beside_sip if len(others) == 1 and "sip" in self.parsers else None
            if beside is not None:   # e.g. sip,rtp: RTP of known flows skips the Datagram and SIP's checks
                from otus_agent.sip.framing import SipConfig
                sip = config.settings.get("sip") or SipConfig()
                lane = beside(frozenset(sip.ports), sip.heuristic)
        self.datagrams = DatagramStage(config.datagram, on_datagram, lane=lane)
        # the lane marks the rows it handled (status 255), so batch parsers beside it read rows of
        # their own (one more compiled decode); without a lane they share the datagram stage's
        self._rows: Decoder | None = None
        if self.batch_hooks and self.datagrams.lane is not None:
            from otus_agent.decode.decoder import Decoder
            c = config.datagram
            self._rows = Decoder(4096, c.verify_ipv4_checksum, c.decode_vxlan)

    def feed(self, batch: PacketBatch) -> None:
        if not self.batch_hooks:
            self.datagrams.feed(batch)
            return
        if self._rows is not None:
            rows = self._rows.decode(batch.buf, batch.n, batch.offs, batch.caplens, batch.links)
            self.datagrams.feed(batch)
        else:
            self.datagrams.feed(batch)
            rows = self.datagrams.decoder.out   # the batch just decoded (fragments decode apart)
        for hook in self.batch_hooks:
            hook(batch, rows)

    def tick(self, now_ns: int) -> None:
        """Live capture, about once a second: parsers emit what time makes due (interims, timeouts)."""
        for t in self._ticks:
            t(now_ns)

    def run(self, batches: Iterable[PacketBatch]) -> None:
        if not self.batch_hooks:
            self.datagrams.run(batches)
            return
        for b in batches:
            self.feed(b)

    def flush(self) -> None:
        """Write out the records buffered so far (live capture: after every batch)."""
        if self.sink is not None:
            self.sink.flush()

    def finish(self) -> None:
        """End of input: each parser emits what it still holds, then everything is flushed."""
        for p in self.parsers.values():
            p.finish()
        self.flush()

    def summary(self) -> dict:
        """The decode and reassembly counters, then each parser's under its name."""
        s = self.datagrams.summary()
        for name, p in self.parsers.items():
            if p.summary is not None:
                s[name] = p.summary()
        return s

    def report(self) -> dict:
        """The reporters' counters so far (Kafka, HEP)."""
        return self.sink.stats() if self.sink is not None else {}

    def close(self, timeout: float) -> dict:
        """Flush and close the reporters (Kafka waits up to ``timeout``); their final counters."""
        return self.sink.close(timeout) if self.sink is not None else {}


GC_GEN0_THRESHOLD = 100_000   # objects allocated between young collections while an engine runs (default 700)


def quiet_gc() -> None:
    """For a process that runs one engine (``otus run --pcap``, a fanout worker): what start-up made is
    frozen out of the collector's sight, and young collections come 100x less often; no reference cycles
    are made per packet, so this only saves the GC's scans (bench/PROFILE.md).  Not for the daemon, whose
    tasks come and go."""
    import gc
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, g1, g2)


def build_engine(config: EngineConfig, write: Callable[[bytes], None], worker: int | None = None) -> Engine:
    """The engine for ``config``; records go to ``write`` (JSON lines) and the configured reporters.

    ``worker`` (fanout workers) gives each worker a Kafka spool of its own."""
    return Engine(config, write, worker)
