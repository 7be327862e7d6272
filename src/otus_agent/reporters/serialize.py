"""JSON serialisation of records: orjson when available (measured ~10x faster here), else json."""
from __future__ import annotations

import json

try:
    from orjson import dumps as _dumps

    def dumps(obj: object) -> bytes:
        return _dumps(obj)
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    def dumps(obj: object) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
