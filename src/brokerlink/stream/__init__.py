"""Layer 5: the WebSocket hub at /v1/stream (built in the public-API issue)."""
