"""Minimal SIP user agents over real UDP sockets, for the local VoIP simulator.

The UAC places calls at a fixed rate: INVITE (with SDP), then ACK and, after
the hold time, BYE for answered calls; ACK for rejected ones.  The UAS
answers 100 Trying, 180 Ringing, then 200 OK with SDP, or 486 Busy Here for a
share of calls.  Both are just enough RFC 3261 for a capture to be checked
against: every message either side sends is listed in the UAC's final report.
Run one per network namespace: ``python -m otus_agent.sim.sipua uac|uas ...``.
"""
from __future__ import annotations

import argparse
import json
import random
import select
import signal
import socket
import sys
import time

ANSWERED = ["INVITE", "100", "180", "200", "ACK", "BYE", "200"]
BUSY = ["INVITE", "100", "486", "ACK"]
TIMEOUT_S = 4.0


def _headers(text: str) -> tuple[str, dict[str, str]]:
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    h = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        h[name.strip().lower()] = value.strip()
    return head[0], h


def _sdp(addr: str, port: int, sess: int) -> str:
    return (f"v=0\r\no=otus-sim {sess} 1 IN IP4 {addr}\r\ns=otus\r\nc=IN IP4 {addr}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\n")


# --------------------------------------------------------------------------- UAS
def uas(bind: str, port: int, busy_ratio: float, seed: int, stop_after: float) -> int:
    rnd = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind, port))
    tags: dict[str, str] = {}
    busy: dict[str, bool] = {}
    deadline = time.monotonic() + stop_after
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    while running[0] and time.monotonic() < deadline and len(tags) < 1_000_000:
        r, _, _ = select.select([s], [], [], 0.2)
        if not r:
            continue
        data, peer = s.recvfrom(65535)
        text = data.decode("utf-8", "replace")
        start, h = _headers(text)
        method = start.split(" ", 1)[0]
        cid = h.get("call-id", "")
        if method == "INVITE":
            tag = tags.setdefault(cid, f"uas{rnd.getrandbits(32):08x}")
            busy.setdefault(cid, rnd.random() < busy_ratio)

            def reply(code: int, reason: str, with_tag: bool, body: str = "") -> None:
                to = h["to"] + (f";tag={tag}" if with_tag else "")
                ctype = "Content-Type: application/sdp\r\n" if body else ""
                msg = (f"SIP/2.0 {code} {reason}\r\nVia: {h['via']}\r\nFrom: {h['from']}\r\nTo: {to}\r\n"
                       f"Call-ID: {cid}\r\nCSeq: {h['cseq']}\r\nContact: <sip:bob@{bind}:{port}>\r\n"
                       f"Server: otus-sim-uas\r\n{ctype}Content-Length: {len(body.encode())}\r\n\r\n{body}")
                s.sendto(msg.encode(), peer)
            reply(100, "Trying", False)
            if busy[cid]:
                reply(486, "Busy Here", True)
            else:
                reply(180, "Ringing", True)
                reply(200, "OK", True, _sdp(bind, 30000 + len(tags) % 20000, len(tags)))
        elif method == "BYE":
            msg = (f"SIP/2.0 200 OK\r\nVia: {h['via']}\r\nFrom: {h['from']}\r\nTo: {h['to']}\r\nCall-ID: {cid}\r\n"
                   f"CSeq: {h['cseq']}\r\nServer: otus-sim-uas\r\nContent-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), peer)
    s.close()
    return 0


# --------------------------------------------------------------------------- UAC
class Call:
    def __init__(self, n: int, run: str):
        self.cid = f"{run}-{n:06d}@otus-sim"
        self.tag = f"uac{n:06d}"
        self.n = n
        self.to_tag: str | None = None
        self.messages: list[str] = []
        self.state = "calling"          # calling, answered, busy, done, failed
        self.bye_at: float | None = None
        self.started = time.monotonic()
        self.ended: float | None = None


def uac(bind: str, port: int, target: str, target_port: int, calls: int, rate: float, hold_s: float, run: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind, port))
    dest = (target, target_port)
    active: dict[str, Call] = {}
    done: list[Call] = []
    interval = 1.0 / rate
    next_call = time.monotonic()
    placed = 0

    def send(c: Call, text: str, label: str) -> None:
        s.sendto(text.encode(), dest)
        c.messages.append(label)

    def request(c: Call, method: str, cseq: int, branch: str, body: str = "") -> str:
        to = f"<sip:bob@{target}>" + (f";tag={c.to_tag}" if c.to_tag else "")
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        return (f"{method} sip:bob@{target}:{target_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {bind}:{port};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n"
                f"From: \"Alice\" <sip:alice@{bind}>;tag={c.tag}\r\nTo: {to}\r\nCall-ID: {c.cid}\r\n"
                f"CSeq: {cseq} {method}\r\nContact: <sip:alice@{bind}:{port}>\r\nUser-Agent: otus-sim-uac\r\n"
                f"{ctype}Content-Length: {len(body.encode())}\r\n\r\n{body}")

    while placed < calls or active:
        now = time.monotonic()
        if placed < calls and now >= next_call:
            c = Call(placed, run)
            active[c.cid] = c
            send(c, request(c, "INVITE", 1, f"{c.tag}i", _sdp(bind, 20000 + placed % 20000, placed)), "INVITE")
            placed += 1
            next_call += interval
        for c in list(active.values()):
            if c.state == "answered" and c.bye_at is not None and now >= c.bye_at:
                send(c, request(c, "BYE", 2, f"{c.tag}b"), "BYE")
                c.state, c.bye_at = "bye", None
            if now - c.started > hold_s + TIMEOUT_S * 2 and c.state not in ("done", "failed"):
                c.state, c.ended = "failed", now
                done.append(active.pop(c.cid))
        wait = max(0.0, min(0.05, next_call - time.monotonic())) if placed < calls else 0.05
        r, _, _ = select.select([s], [], [], wait)
        if not r:
            continue
        data, _ = s.recvfrom(65535)
        start, h = _headers(data.decode("utf-8", "replace"))
        c = active.get(h.get("call-id", ""))
        if c is None or not start.startswith("SIP/2.0 "):
            continue
        code = start.split(" ", 2)[1]
        c.messages.append(code)
        method = h.get("cseq", "").split(" ")[-1]
        if method == "INVITE" and code == "200":
            c.to_tag = h.get("to", "").rpartition("tag=")[2] or None
            send(c, request(c, "ACK", 1, f"{c.tag}a"), "ACK")
            c.state, c.bye_at = "answered", time.monotonic() + hold_s
        elif method == "INVITE" and code >= "300":
            c.to_tag = h.get("to", "").rpartition("tag=")[2] or None
            send(c, request(c, "ACK", 1, f"{c.tag}i"), "ACK")   # non-2xx ACK: the INVITE's branch
            c.state, c.ended = "busy", time.monotonic()
            done.append(active.pop(c.cid))
        elif method == "BYE" and code == "200":
            c.state, c.ended = "done", time.monotonic()
            done.append(active.pop(c.cid))
    s.close()
    report = [{"call_id": c.cid, "outcome": c.state, "messages": c.messages,
               "duration_s": round((c.ended or time.monotonic()) - c.started, 3)} for c in done]
    json.dump({"calls": report}, sys.stdout)
    sys.stdout.write("\n")
    return 0 if all(c.state in ("done", "busy") for c in done) else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sipua", description="minimal SIP UAC/UAS for the local simulator")
    sub = ap.add_subparsers(dest="role", required=True)
    a = sub.add_parser("uas")
    a.add_argument("--bind", required=True)
    a.add_argument("--port", type=int, default=5060)
    a.add_argument("--busy-ratio", type=float, default=0.1)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--stop-after", type=float, default=600.0)
    c = sub.add_parser("uac")
    c.add_argument("--bind", required=True)
    c.add_argument("--port", type=int, default=5060)
    c.add_argument("--target", required=True)
    c.add_argument("--target-port", type=int, default=5060)
    c.add_argument("--calls", type=int, default=20)
    c.add_argument("--rate", type=float, default=5.0)
    c.add_argument("--hold", type=float, default=1.0)
    c.add_argument("--run", default="sim")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.role == "uas":
        return uas(args.bind, args.port, args.busy_ratio, args.seed, args.stop_after)
    return uac(args.bind, args.port, args.target, args.target_port, args.calls, args.rate, args.hold, args.run)


if __name__ == "__main__":
    sys.exit(main())
