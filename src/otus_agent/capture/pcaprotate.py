"""Rotating pcap output: at most ``max_files`` files of at most ``max_bytes`` each.

Files are named ``<stem>_<NNNNN>.pcap`` next to the given path; when a file
reaches its size limit the next one starts, and the oldest is deleted once
there are more than ``max_files`` (``rotations`` and ``deleted`` count it).
Each file is a complete classic pcap that Wireshark opens on its own.
"""
from __future__ import annotations

import os

from otus_agent.capture.pcapfile import PcapWriter


class RotatingPcapWriter:
    def __init__(self, path: str, linktype: int, max_bytes: int = 100 << 20, max_files: int = 10,
                 snaplen: int = 262144):
        if max_bytes < 4096 or max_files < 1:
            raise ValueError("pcap rotation: max_bytes >= 4096 and max_files >= 1")
        d = os.path.dirname(path) or "."
        if not os.path.isdir(d):
            raise ValueError(f"pcap output directory does not exist: {d}")
        stem = os.path.basename(path)
        if stem.endswith(".pcap"):
            stem = stem[:-5]
        self.dir, self.stem = d, stem
        self.linktype, self.max_bytes, self.max_files, self.snaplen = linktype, max_bytes, max_files, snaplen
        self.index = 0
        self.files: list[str] = []
        self.rotations = 0
        self.deleted = 0
        self.packets = 0
        self._w: PcapWriter | None = None
        self._open()

    def _open(self) -> None:
        self.index += 1
        name = os.path.join(self.dir, f"{self.stem}_{self.index:05d}.pcap")
        self._w = PcapWriter(open(name, "wb"), self.linktype, self.snaplen, nanosecond=True)
        self.files.append(name)
        while len(self.files) > self.max_files:
            old = self.files.pop(0)
            try:
                os.unlink(old)
                self.deleted += 1
            except FileNotFoundError:
                pass

    def write(self, ts_ns: int, data: bytes, wirelen: int | None = None) -> None:
        w = self._w
        if w.bytes_written + 16 + len(data) > self.max_bytes and w.packets:
            w.close()
            self.rotations += 1
            self._open()
            w = self._w
        w.write(ts_ns, data, wirelen)
        self.packets += 1

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None
