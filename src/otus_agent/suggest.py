"""``otus filter suggest``: ask an OpenAI-compatible chat-completions endpoint for a task filter.

The model proposes a BPF expression plus SIP selectors (``otus_spec.SipOptions`` fields). Its answer is
untrusted text: it must be one JSON object with only the expected keys, libpcap must compile the BPF and
the task model must accept the selectors, or ``SuggestError`` says what was wrong. Nothing is applied
here: ``confirm_and_apply`` shows the checked suggestion and applies it only when the user says yes.
The key comes from the environment (``api_key_env``), never from a command-line flag.
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from otus_agent.capture import linktypes
from otus_agent.capture.bpf import FilterError, compile_filter
from otus_spec import SipOptions

MAX_BPF = 2048
SYSTEM_PROMPT = (
    "You write capture filters for Otus, a SIP packet-capture agent. Answer with one JSON object and "
    "nothing else: {\"bpf\": <a tcpdump/libpcap filter expression>, \"sip\": <optional object with any of "
    "ports (list of ints), heuristic (bool), discard_methods (list of SIP methods)>, \"explanation\": "
    "<one sentence>}. The BPF selects packets in the kernel; keep IP fragments if SIP over UDP may be "
    "fragmented (add 'or (ip[6:2] & 0x3fff != 0)').")


class SuggestError(Exception):
    """The endpoint could not be asked, or its answer is not a usable filter; the message says which."""


class SuggestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="base URL of the OpenAI-compatible API, e.g. http://localhost:8000/v1")
    model: str = Field(min_length=1)
    api_key_env: str = Field(default="OTUS_LLM_API_KEY", description="environment variable holding the key")
    timeout_s: float = Field(default=60.0, gt=0)
    max_response_bytes: int = Field(default=1 << 20, ge=1024)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bpf: str = Field(min_length=1, max_length=MAX_BPF)
    sip: dict = Field(default_factory=dict)
    explanation: str = Field(default="", max_length=2000)


@dataclass(frozen=True)
class FilterSuggestion:
    bpf: str
    sip: SipOptions
    explanation: str

    def show(self) -> str:
        return f"bpf_filter: {self.bpf}\nsip: {self.sip.model_dump_json()}\nwhy: {self.explanation}"


def _ask(request: str, s: SuggestSettings, env: Mapping[str, str]) -> str:
    if not s.url.startswith(("http://", "https://")):
        raise SuggestError(f"suggest url must be http(s)://, not {s.url!r}")
    body = json.dumps({"model": s.model, "temperature": 0, "messages": [
        {"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": request}]}).encode()
    headers = {"Content-Type": "application/json"}
    key = env.get(s.api_key_env)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(s.url.rstrip("/") + "/chat/completions", body, headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=s.timeout_s) as resp:  # noqa: S310 - the URL is the user's own
            raw = resp.read(s.max_response_bytes + 1)
    except urllib.error.HTTPError as e:
        raise SuggestError(f"the endpoint answered HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise SuggestError(f"cannot reach {s.url}: {getattr(e, 'reason', e)}") from None
    if len(raw) > s.max_response_bytes:
        raise SuggestError(f"the endpoint's answer is larger than {s.max_response_bytes} bytes")
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise SuggestError("the endpoint's answer is not a chat completion (choices[0].message.content)") from None
    if not isinstance(content, str):
        raise SuggestError("the model's message has no text content")
    return content


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def validate_answer(content: str, linktype: int = linktypes.ETHERNET) -> FilterSuggestion:
    """Check the model's text: one JSON object, a BPF libpcap compiles, selectors the task model accepts."""
    m = _FENCE.match(content)
    text = m.group(1) if m else content.strip()
    try:
        obj = json.loads(text)
    except ValueError:
        raise SuggestError("the model did not answer with a JSON object") from None
    if not isinstance(obj, dict):
        raise SuggestError("the model did not answer with a JSON object")
    try:
        ans = _Answer.model_validate(obj)
    except ValidationError as e:
        raise SuggestError(f"the model's answer has the wrong shape: {_first(e)}") from None
    if any(c in ans.bpf for c in "\0\n\r"):
        raise SuggestError("the model's BPF contains control characters")
    try:
        compile_filter(ans.bpf, linktype)
    except FilterError as e:
        raise SuggestError(f"the model's BPF does not compile: {e}") from None
    try:
        sip = SipOptions.model_validate(ans.sip)
    except ValidationError as e:
        raise SuggestError(f"the model's SIP selectors are not valid: {_first(e)}") from None
    return FilterSuggestion(ans.bpf, sip, ans.explanation)


def _first(e: ValidationError) -> str:
    err = e.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"


def suggest_filter(request: str, settings: SuggestSettings, env: Mapping[str, str] | None = None,
                   linktype: int = linktypes.ETHERNET) -> FilterSuggestion:
    """Ask the endpoint for a filter matching ``request`` (plain words) and return it checked."""
    if not request.strip():
        raise SuggestError("describe the traffic to capture, e.g. 'SIP INVITEs from 10.1.0.0/16 over TCP'")
    return validate_answer(_ask(request, settings, os.environ if env is None else env), linktype)


def confirm_and_apply(s: FilterSuggestion, ask: Callable[[str], bool],
                      apply: Callable[[FilterSuggestion], None]) -> bool:
    """Show the suggestion through ``ask``; only a yes applies it. Returns whether it was applied."""
    if not ask(s.show() + "\nApply this filter?"):
        return False
    apply(s)
    return True
