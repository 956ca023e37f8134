"""Layer 5: dashboard pages."""
