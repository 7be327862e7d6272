"""The live stream: Server-Sent Events read from the store's bounded feed.

Each reader keeps only its position in the feed (a sequence number), so a slow reader costs no
memory: when it falls further behind than the feed holds, it gets a ``gap`` event with the number of
records it missed and continues from the oldest one still there.  At most ``max_clients`` streams
are open at once (then 429).  Events are sent in batches every ``TICK`` seconds.
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import orjson
from starlette.requests import Request

from otus_agent.web.store import RecordStore

TICK = 0.25        # seconds between batches
HEARTBEAT = 15.0   # a comment line keeps proxies from closing an idle stream
BATCH = 2000       # feed entries per tick per reader, at most


class StreamHub:
    def __init__(self, store: RecordStore, max_clients: int = 32):
        self.store, self.max_clients = store, max_clients
        self.clients = 0
        self.events = self.gaps = 0

    def full(self) -> bool:
        return self.clients >= self.max_clients

    def stats(self) -> dict:
        return {"clients": self.clients, "max_clients": self.max_clients, "events_sent": self.events,
                "gaps": self.gaps}

    async def open(self, request: Request, last: int | None, kinds: set[str]) -> AsyncIterator[bytes]:
        self.clients += 1
        try:
            seq = self.store.seq if last is None else last
            beat = time.monotonic()
            yield b"retry: 2000\n\n"
            while not await request.is_disconnected():
                seq, missed, items = self.store.since(seq, BATCH)
                out = bytearray()
                if missed:
                    self.gaps += 1
                    out += b"event: gap\ndata: " + orjson.dumps({"missed": missed}) + b"\n\n"
                touched: dict[str, None] = {}
                for s, data, cid in items:
                    if "record" in kinds:
                        out += b"id: %d\nevent: record\ndata: " % s + data + b"\n\n"
                    if cid:
                        touched[cid] = None
                if "call" in kinds:
                    for cid in touched:
                        view = self.store.call(cid)
                        if view is not None:
                            out += b"id: %d\nevent: call\ndata: " % seq + orjson.dumps(view) + b"\n\n"
                if out:
                    self.events += len(items)
                    beat = time.monotonic()
                    yield bytes(out)
                elif time.monotonic() - beat > HEARTBEAT:
                    beat = time.monotonic()
                    yield b": keep-alive\n\n"
                if len(items) < BATCH:
                    await asyncio.sleep(TICK)
        finally:
            self.clients -= 1
