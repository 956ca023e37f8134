"""Layer 5: dashboard pages (server-rendered, no inline scripts, strict CSP)."""

from pathlib import Path

WEB_DIR = Path(__file__).parent
