"""Layer 4: the copy-trading engine (built in the copy-trading issue)."""
