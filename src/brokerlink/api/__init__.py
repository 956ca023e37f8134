"""Layer 5: REST routers under /v1."""
