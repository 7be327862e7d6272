"""Wiring one task's capture to its reporters, live or from a file, built in one place.

* ``pipeline``: ``build_engine(EngineConfig, write)`` returns the ``Engine`` -- decoded batch ->
  reassembly (``DatagramStage``) -> parsers -> record sink (JSON lines, Kafka, HEP); it consumes a
  batch (``feed``), writes out (``flush``), ends input (``finish``) and reports (``summary``).
  ``otus run --pcap`` (``cli.main``), live capture and each fanout worker (``live``), and daemon and
  Kubernetes tasks (through ``live``) all build it there.
* ``parsers``: the parser registry, ``PARSERS``.  A new parser (RTP, DNS, flow) is one factory and
  one entry there, enabled by name in ``EngineConfig.parsers``, its settings under the same name in
  ``EngineConfig.settings``; see that module's docstring for the steps.
* ``live``: live capture around the engine (rings, fanout workers, pcap writing, latency).

Nothing is imported here, so a command pays only for the modules it uses.
"""
