"""``otus filter suggest``: a task filter proposed by an OpenAI-compatible model, checked, applied only on a yes.

The endpoint's URL and model come from flags or ``OTUS_LLM_URL``/``OTUS_LLM_MODEL``; the key only from the
environment (``OTUS_LLM_API_KEY`` unless ``--api-key-env`` names another variable), never from a flag.
Without ``--apply`` the checked suggestion is printed and nothing changes. With ``--apply TASK_FILE`` its
``bpf_filter`` and ``sip`` settings are merged into that task file, after a confirmation on the terminal
(or ``--yes``), and the result must still validate as a task.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable


def add_parser(sub) -> None:
    f = sub.add_parser("filter", help="filter helpers: `otus filter suggest \"SIP INVITEs from 10.1.0.0/16\"`")
    fsub = f.add_subparsers(dest="filter_command", required=True)
    s = fsub.add_parser("suggest", help="ask an OpenAI-compatible endpoint for a task filter, checked before shown",
                        description=__doc__)
    s.add_argument("request", help="the traffic to capture, in plain words")
    s.add_argument("--url", default=os.environ.get("OTUS_LLM_URL"),
                   help="base URL of the chat-completions API (default $OTUS_LLM_URL), e.g. http://127.0.0.1:8000/v1")
    s.add_argument("--model", default=os.environ.get("OTUS_LLM_MODEL"), help="model name (default $OTUS_LLM_MODEL)")
    s.add_argument("--api-key-env", default="OTUS_LLM_API_KEY", metavar="VAR",
                   help="environment variable holding the API key (default OTUS_LLM_API_KEY)")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer (default 60)")
    s.add_argument("--apply", metavar="TASK_FILE", help="merge the suggestion into this task file after confirmation")
    s.add_argument("--yes", action="store_true", help="with --apply: apply without asking")
    s.set_defaults(func=run)


class FilterUsageError(Exception):
    """Bad flags or a task file that cannot take the suggestion: shown as one line, exit 2."""


def _ask_terminal(text: str) -> bool:
    sys.stderr.write(text + " [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _merge_into(path: str) -> Callable:
    import yaml

    from otus_spec import TaskSpec

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as e:
        raise FilterUsageError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise FilterUsageError(f"{path}: not YAML: {e}") from None
    if not isinstance(doc, dict):
        raise FilterUsageError(f"{path}: a task file is a mapping")

    def apply(s) -> None:
        new = dict(doc)
        new["bpf_filter"] = s.bpf
        new["sip"] = {**(doc.get("sip") or {}), **s.sip.model_dump(exclude_unset=True)}
        try:
            TaskSpec.model_validate(new)
        except Exception as e:  # pydantic's ValidationError: one line per field
            raise FilterUsageError(f"{path}: the suggestion does not fit this task: {e}") from None
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            yaml.safe_dump(new, fh, sort_keys=False)
        os.replace(tmp, path)
    return apply


def run(args: argparse.Namespace, ask: Callable[[str], bool] = _ask_terminal) -> int:
    from otus_agent.suggest import SuggestError, SuggestSettings, confirm_and_apply, suggest_filter

    try:
        if not args.url or not args.model:
            raise FilterUsageError("--url and --model (or $OTUS_LLM_URL and $OTUS_LLM_MODEL) name the endpoint")
        if args.yes and not args.apply:
            raise FilterUsageError("--yes goes with --apply")
        apply = _merge_into(args.apply) if args.apply else None
        settings = SuggestSettings(url=args.url, model=args.model, api_key_env=args.api_key_env,
                                   timeout_s=args.timeout)
        suggestion = suggest_filter(args.request, settings)
        if apply is None:
            sys.stdout.write(suggestion.show() + "\n")
            return 0
        applied = confirm_and_apply(suggestion, (lambda _t: True) if args.yes else ask, apply)
        sys.stdout.write((f"applied to {args.apply}\n" if applied else "not applied\n"))
        return 0 if applied else 1
    except (FilterUsageError, SuggestError) as e:
        sys.stderr.write(f"otus: error: {e}\n")
        return 2
