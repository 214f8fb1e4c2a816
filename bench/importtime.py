"""Summarise ``python -X importtime`` output: what a server imports before it answers."""

from __future__ import annotations

import re
from typing import Any

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
WATCHED = ("mlflow", "pandas", "numpy", "pyarrow", "uvicorn", "uvloop", "httptools", "orjson")


def summarise(stderr: str, top: int = 8) -> dict[str, Any]:
    """Total import time, module count, the slowest top-level imports, and the heavy ones."""
    entries = []
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match:
            self_us, cumulative_us, indent, name = match.groups()
            entries.append((len(indent), name, int(self_us), int(cumulative_us)))
    if not entries:
        return {"modules": 0, "total_ms": 0.0, "top": [], "imported": []}
    depth = min(e[0] for e in entries)
    top_level = [e for e in entries if e[0] == depth]
    # A package's cost is charged to whichever top-level import first pulled it in.
    slowest = sorted(top_level, key=lambda e: e[3], reverse=True)[:top]
    names = {e[1] for e in entries}
    return {
        "modules": len(entries),
        "total_ms": round(sum(e[3] for e in top_level) / 1000, 1),
        "top": [{"module": e[1], "cumulative_ms": round(e[3] / 1000, 1)} for e in slowest],
        "imported": [w for w in WATCHED if w in names],
    }
