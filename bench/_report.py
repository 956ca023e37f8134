"""How a benchmark reports: its figures one per line on stderr, then the whole result as one JSON line on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(result: dict[str, Any]) -> None:
    """Print ``result``: readable on stderr, and as the one JSON object of the last line on stdout."""
    width = max(map(len, result), default=0)
    for name, value in result.items():
        print(f"{name:>{width}}  {value}", file=sys.stderr)
    print(json.dumps(result))
